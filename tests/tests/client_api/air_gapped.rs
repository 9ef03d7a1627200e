//! Air-gapped machines: activation and deactivation by armoured request files, answered with a
//! signed response and a receipt; broken files and wrong applications write nothing.

use base64ct::{Base64, Encoding};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tests::TestApp;

use crate::support::{OTHER_APP, jwt_claims, s, verify_with_jsonwebtoken};

/// `json` armoured as the SDK writes a request file: base64 in 64-column lines between
/// BEGIN/END markers naming `label`.
fn request_file(label: &str, json: &Value) -> String {
    let encoded = Base64::encode_string(json.to_string().as_bytes());
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN LICENSE-LEDGER {label}-----\n{}\n-----END LICENSE-LEDGER {label}-----\n",
        lines.join("\n")
    )
}

#[tokio::test]
async fn an_air_gapped_machine_is_activated_and_deactivated_with_files() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let license = app.issue_with(&c, 1).await;
    let key = s(&license, "key");
    let request = json!({"version": 1, "type": "activation", "app_id": c.app_id, "key": key, "fingerprint": "vault-pc-7",
                         "hostname": "vault", "platform": "linux-x64", "environment": "production",
                         "created_at": "2026-11-23T10:00:00Z", "nonce": uuid::Uuid::new_v4()});
    let post_file = |text: String| {
        app.client
            .post(format!("{}/v1/offline-activations", app.base))
            .bearer_auth(&app.admin_token)
            .header("content-type", "text/plain")
            .body(text)
            .send()
    };
    let response = post_file(request_file("ACTIVATION REQUEST", &request))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(
        text.starts_with("-----BEGIN LICENSE-LEDGER ACTIVATION RESPONSE-----\n"),
        "{text}"
    );
    let token = text.lines().nth(1).unwrap();
    let jwks = app.get("/.well-known/jwks.json").await.body;
    let claims = verify_with_jsonwebtoken(token, &jwks, &c.app_id).unwrap();
    assert_eq!(
        (claims["fingerprint"].clone(), claims["kind"].clone()),
        (json!("vault-pc-7"), json!("offline_activation"))
    );
    assert_eq!(
        claims["exp"].as_i64(),
        license["expires_at"]
            .as_str()
            .map(|t| chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp())
    );
    // The seat is taken by the air-gapped machine.
    let online = app
        .client_call(
            "/v1/activations",
            &c.app_id,
            json!({"key": key, "fingerprint": "other"}),
        )
        .await;
    assert_eq!(online.code(), "TOO_MANY_ACTIVATIONS");
    // Posting the same request again does not take a second seat.
    let again = post_file(request_file("ACTIVATION REQUEST", &request))
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);

    let mut deactivation = request.clone();
    deactivation["type"] = json!("deactivation");
    for field in ["hostname", "platform", "environment"] {
        deactivation.as_object_mut().unwrap().remove(field);
    }
    let receipt = post_file(request_file("DEACTIVATION REQUEST", &deactivation))
        .await
        .unwrap();
    assert_eq!(receipt.status(), StatusCode::OK);
    let receipt_text = receipt.text().await.unwrap();
    assert!(receipt_text.starts_with("-----BEGIN LICENSE-LEDGER DEACTIVATION RECEIPT-----"));
    let receipt_claims = jwt_claims(receipt_text.lines().nth(1).unwrap());
    assert_eq!(receipt_claims["kind"], "deactivation_receipt");
    let events = app
        .get(&format!("/v1/licenses/{}/events", s(&license, "id")))
        .await;
    let deactivated = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "InstallationDeactivated")
        .cloned()
        .unwrap();
    assert_eq!(deactivated["data"]["reason"], "offline_request");
    let online = app
        .client_call(
            "/v1/activations",
            &c.app_id,
            json!({"key": key, "fingerprint": "other"}),
        )
        .await;
    assert_eq!(online.status, StatusCode::CREATED, "the seat is free again");

    // Broken files and wrong applications are refused, nothing written.
    let before = app.event_count().await;
    for bad in [
        "",
        "hello",
        "-----BEGIN LICENSE-LEDGER ACTIVATION REQUEST-----\n!!!\n-----END LICENSE-LEDGER ACTIVATION REQUEST-----",
    ] {
        let answer = post_file(bad.to_owned()).await.unwrap();
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{bad:?}");
    }
    // The nonce is recorded forever as the events' causation: only the UUID the SDK writes.
    for nonce in [json!("abc\u{0000}def"), json!("x".repeat(40_000)), json!(7)] {
        let mut odd = request.clone();
        odd["nonce"] = nonce;
        let answer = post_file(request_file("ACTIVATION REQUEST", &odd))
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
        let problem: Value = answer.json().await.unwrap();
        assert_eq!(problem["code"], "MALFORMED_REQUEST_FILE");
        assert_eq!(problem["field"], "nonce", "{problem}");
        assert!(
            problem.to_string().len() < 1_000,
            "the problem does not echo the nonce"
        );
    }
    // `created_at` is the RFC 3339 instant the protocol says, nothing else (NUL and empty text
    // were taken).
    for created_at in [
        json!("\u{0000}\u{0001}"),
        json!(""),
        json!("yesterday"),
        json!(7),
    ] {
        let mut odd = request.clone();
        odd["created_at"] = created_at;
        let answer = post_file(request_file("ACTIVATION REQUEST", &odd))
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
        let problem: Value = answer.json().await.unwrap();
        assert_eq!(problem["field"], "created_at", "{problem}");
    }
    assert_eq!(app.event_count().await, before, "nothing written");
    let mut wrong_app = request.clone();
    wrong_app["app_id"] = json!(OTHER_APP);
    let answer = post_file(request_file("ACTIVATION REQUEST", &wrong_app))
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let anonymous = app
        .client
        .post(format!("{}/v1/offline-activations", app.base))
        .body(request_file("ACTIVATION REQUEST", &request))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.event_count().await, before);
    app.stop().await;
}

/// A customer's own administrator answers its machines' files (the portal's offline
/// activation, and the API with a service token), for its own licenses only: another
/// customer's key is the same 404 as a key no license has; a role that does not manage
/// installations may not answer at all.
#[tokio::test]
async fn a_customer_answers_its_own_request_files_and_no_one_elses() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let own = s(&app.issue_with(&c, 1).await, "key");
    let globex = app
        .post(
            "/v1/organizations",
            json!({"name": "Globex", "kind": "customer"}),
        )
        .await;
    let foreign = app
        .post(
            "/v1/licenses",
            json!({"policy_id": c.policy_id, "organization_id": globex.body["id"]}),
        )
        .await;
    let foreign = s(&foreign.body, "key");
    let token = |role: &'static str| {
        let app = &app;
        let org = c.organization_id.clone();
        async move {
            let minted = app
                .post("/v1/tokens", json!({"role": role, "organization_id": org}))
                .await;
            assert_eq!(minted.status, StatusCode::CREATED, "{:?}", minted.body);
            s(&minted.body, "token")
        }
    };
    let manager = token("license_manager").await;
    let reader = token("support_contact").await;
    let file = |key: &str| {
        request_file(
            "ACTIVATION REQUEST",
            &json!({"version": 1, "type": "activation", "app_id": c.app_id, "key": key,
                    "fingerprint": "vault-pc-9", "created_at": "2026-12-05T10:00:00Z",
                    "nonce": uuid::Uuid::new_v4()}),
        )
    };
    let post = |bearer: String, text: String| {
        app.client
            .post(format!("{}/v1/offline-activations", app.base))
            .bearer_auth(bearer)
            .header("content-type", "text/plain")
            .body(text)
            .send()
    };
    let answered = post(manager.clone(), file(&own)).await.unwrap();
    assert_eq!(answered.status(), StatusCode::OK);
    let out_of_reach = post(manager.clone(), file(&foreign)).await.unwrap();
    let unknown = post(manager, file("ACMEST-NOPE-NOPE-NOPE-NOPE"))
        .await
        .unwrap();
    assert_eq!(out_of_reach.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let (a, b): (Value, Value) = (
        out_of_reach.json().await.unwrap(),
        unknown.json().await.unwrap(),
    );
    assert_eq!((&a["code"], &a["detail"]), (&b["code"], &b["detail"]));
    let refused = post(reader, file(&own)).await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}
