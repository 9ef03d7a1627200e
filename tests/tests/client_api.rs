//! The client-application API end to end: validation with App GUID enforcement, freshness of the
//! in-memory model, activations and seat limits under 100 parallel requests, floating leases and
//! their expiry, offline tokens verified by a standard JWT library, key rotation, and air-gapped
//! request files.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64ct::{Base64, Encoding};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tests::{Catalogue, TestApp, TestDb, test_config};

fn s(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} in {v}"))
        .to_owned()
}

const OTHER_APP: &str = "0f0e0d0c-0b0a-4999-8888-777766665555";

#[tokio::test]
async fn validation_answers_the_decision_and_enforces_the_app_guid() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let license = app.issue(&c).await;
    let key = s(&license, "key");
    app.projected().await;

    let ok = app
        .client_call(
            "/v1/validate",
            &c.app_id,
            json!({"key": key, "features": ["pro"]}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    assert_eq!(
        (ok.body["valid"].clone(), ok.body["code"].clone()),
        (json!(true), json!("VALID"))
    );
    assert_eq!(ok.body["license"]["id"], license["id"]);
    assert_eq!(ok.body["license"]["status"], "active");
    assert_eq!(ok.body["license"]["seats"], 3);
    assert_eq!(ok.body["license"]["activations"], 0);
    assert_eq!(ok.body["license"]["policy"]["version"], 1);
    assert_eq!(ok.body["warnings"], json!([]));
    // The key as a user types it.
    let typed = key.to_lowercase().replacen('-', " - ", 0);
    let lower = app
        .client_call("/v1/validate", &c.app_id, json!({"key": typed}))
        .await;
    assert_eq!(lower.body["code"], "VALID");

    let missing = app
        .client_call(
            "/v1/validate",
            &c.app_id,
            json!({"key": key, "features": ["cloud"]}),
        )
        .await;
    assert_eq!(
        (missing.body["valid"].clone(), missing.body["code"].clone()),
        (json!(false), json!("FEATURES_MISSING"))
    );
    let not_activated = app
        .client_call(
            "/v1/validate",
            &c.app_id,
            json!({"key": key, "fingerprint": "laptop-1"}),
        )
        .await;
    assert_eq!(not_activated.body["code"], "NOT_ACTIVATED");

    let mismatch = app
        .client_call("/v1/validate", OTHER_APP, json!({"key": key}))
        .await;
    assert_eq!(
        (mismatch.status, mismatch.code()),
        (StatusCode::FORBIDDEN, "APP_MISMATCH")
    );
    let unknown_key = key.replace(&key[7..15], "00000000");
    let unknown = app
        .client_call("/v1/validate", &c.app_id, json!({"key": unknown_key}))
        .await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::FORBIDDEN, "NOT_FOUND")
    );
    let garbage = app
        .client_call("/v1/validate", &c.app_id, json!({"key": "not a key"}))
        .await;
    assert_eq!(
        (garbage.status, garbage.code()),
        (StatusCode::FORBIDDEN, "NOT_FOUND")
    );
    assert!(
        !mismatch.body.to_string().contains(&key)
            && !unknown.body.to_string().contains(&unknown_key)
    );

    let no_header = app
        .client
        .post(format!("{}/v1/validate", app.base))
        .json(&json!({"key": key}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_header.status(), StatusCode::BAD_REQUEST);
    let bad_header = app
        .client_call("/v1/validate", "not-a-guid", json!({"key": key}))
        .await;
    assert_eq!(
        (bad_header.status, bad_header.code()),
        (StatusCode::BAD_REQUEST, "INVALID_APP_ID")
    );
    let no_key = app
        .client_call("/v1/validate", &c.app_id, json!({"fingerprint": "x"}))
        .await;
    assert_eq!(
        (no_key.status, no_key.body["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("key"))
    );
    let big = app
        .client_call(
            "/v1/validate",
            &c.app_id,
            json!({"key": "x".repeat(100_000)}),
        )
        .await;
    assert_eq!(
        (big.status, big.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE")
    );
    app.stop().await;
}

/// A command answered by this process shows in validation within 100 ms.
#[tokio::test]
async fn a_change_is_visible_to_validation_within_100_ms_of_the_answer() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let license = app.issue(&c).await;
    let (id, key) = (s(&license, "id"), s(&license, "key"));
    app.projected().await;
    for (action, body, expected) in [
        ("suspend", json!({"reason": "audit"}), "SUSPENDED"),
        ("reinstate", json!({}), "VALID"),
        ("revoke", json!({"reason": "fraud"}), "REVOKED"),
    ] {
        let answer = app.post(&format!("/v1/licenses/{id}/{action}"), body).await;
        assert_eq!(answer.status, StatusCode::OK);
        let answered = Instant::now();
        loop {
            let v = app
                .client_call("/v1/validate", &c.app_id, json!({"key": key}))
                .await;
            if v.body["code"] == expected {
                break;
            }
            assert!(
                answered.elapsed() < Duration::from_millis(100),
                "{action} not visible after 100 ms: {:?}",
                v.body
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let visible_after = answered.elapsed();
        assert!(
            visible_after < Duration::from_millis(100),
            "{action}: {visible_after:?}"
        );
    }
    // A newly issued license validates as soon as its issue is answered.
    let fresh = app.issue(&c).await;
    let answered = Instant::now();
    loop {
        let v = app
            .client_call("/v1/validate", &c.app_id, json!({"key": s(&fresh, "key")}))
            .await;
        if v.body["code"] == "VALID" {
            break;
        }
        assert!(
            answered.elapsed() < Duration::from_millis(100),
            "new license not visible: {:?}",
            v.body
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_one_seat_license_activates_one_machine_and_refuses_the_second() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let license = app.issue_with(&c, 1).await;
    let key = s(&license, "key");
    let first = app
        .client_call("/v1/activations", &c.app_id, json!({"key": key, "fingerprint": "laptop-1", "hostname": "anna-laptop", "platform": "windows-x64"}))
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    assert_eq!(first.body["fingerprint"], "laptop-1");
    assert_eq!(first.body["environment"], "production");
    assert_eq!(first.body["lease_expires_at"], Value::Null);
    let again = app
        .client_call(
            "/v1/activations",
            &c.app_id,
            json!({"key": key, "fingerprint": "laptop-1"}),
        )
        .await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "an active fingerprint is answered, not re-activated"
    );
    assert_eq!(again.body["installation_id"], first.body["installation_id"]);
    let second = app
        .client_call(
            "/v1/activations",
            &c.app_id,
            json!({"key": key, "fingerprint": "desktop-2"}),
        )
        .await;
    assert_eq!(
        (second.status, second.code()),
        (StatusCode::CONFLICT, "TOO_MANY_ACTIVATIONS")
    );
    let other_app = app
        .client_call(
            "/v1/activations",
            OTHER_APP,
            json!({"key": key, "fingerprint": "x"}),
        )
        .await;
    assert_eq!(
        (other_app.status, other_app.code()),
        (StatusCode::FORBIDDEN, "APP_MISMATCH")
    );

    // Validation sees the activation.
    app.projected().await;
    let v = app
        .client_call(
            "/v1/validate",
            &c.app_id,
            json!({"key": key, "fingerprint": "laptop-1"}),
        )
        .await;
    assert_eq!(
        (
            v.body["code"].clone(),
            v.body["license"]["activations"].clone()
        ),
        (json!("VALID"), json!(1))
    );
    // Seats cannot drop below active installations (the admin API refuses, writes nothing).
    let id = s(&license, "id");
    let zero_left = app
        .put(&format!("/v1/licenses/{id}/seats"), json!({"seats": 1}))
        .await;
    assert_eq!(zero_left.status, StatusCode::OK);
    let second_seat = app
        .put(&format!("/v1/licenses/{id}/seats"), json!({"seats": 2}))
        .await;
    assert_eq!(second_seat.body["seats"], 2);
    app.client_call(
        "/v1/activations",
        &c.app_id,
        json!({"key": key, "fingerprint": "desktop-2"}),
    )
    .await;
    let below = app
        .put(&format!("/v1/licenses/{id}/seats"), json!({"seats": 1}))
        .await;
    assert_eq!(
        (below.status, below.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "SEATS_BELOW_ACTIVATIONS")
    );

    // Moving the server: deactivate, then the seat is free again.
    let installation = s(&first.body, "installation_id");
    let wrong_key = app
        .client_call(
            &format!("/v1/activations/{installation}/deactivate"),
            &c.app_id,
            json!({"key": "ACMEST-00000000-00000000-00000000-00000000"}),
        )
        .await;
    assert_eq!(wrong_key.status, StatusCode::FORBIDDEN);
    let gone = app
        .client_call(
            &format!("/v1/activations/{installation}/deactivate"),
            &c.app_id,
            json!({"key": key}),
        )
        .await;
    assert_eq!(gone.status, StatusCode::OK, "{:?}", gone.body);
    assert!(gone.body["deactivated_at"].is_string());
    let twice = app
        .client_call(
            &format!("/v1/activations/{installation}/deactivate"),
            &c.app_id,
            json!({"key": key}),
        )
        .await;
    assert_eq!(
        (twice.status, twice.code()),
        (StatusCode::NOT_FOUND, "INSTALLATION_NOT_FOUND")
    );
    let third = app
        .client_call(
            "/v1/activations",
            &c.app_id,
            json!({"key": key, "fingerprint": "server-3"}),
        )
        .await;
    assert_eq!(third.status, StatusCode::CREATED);
    // Suspended: activation answers with the validation code.
    app.post(
        &format!("/v1/licenses/{id}/suspend"),
        json!({"reason": "audit"}),
    )
    .await;
    let suspended = app
        .client_call(
            "/v1/activations",
            &c.app_id,
            json!({"key": key, "fingerprint": "new"}),
        )
        .await;
    assert_eq!(
        (suspended.status, suspended.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "SUSPENDED")
    );
    let events = app.get(&format!("/v1/licenses/{id}/events")).await;
    let activated = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "InstallationActivated")
        .count();
    assert_eq!(activated, 3);
    app.stop().await;
}

/// 100 parallel activations with distinct fingerprints leave exactly as many active as there are
/// seats; every other request is told TOO_MANY_ACTIVATIONS.
#[tokio::test]
async fn seat_limits_hold_under_one_hundred_parallel_activations() {
    let app = Arc::new(TestApp::start().await);
    let c = app.catalogue().await;
    for seats in [1u32, 5, 10] {
        let license = app.issue_with(&c, seats).await;
        let key = s(&license, "key");
        let mut tasks = Vec::new();
        for n in 0..100 {
            let (app, key, app_id) = (app.clone(), key.clone(), c.app_id.clone());
            tasks.push(tokio::spawn(async move {
                app.client_call(
                    "/v1/activations",
                    &app_id,
                    json!({"key": key, "fingerprint": format!("machine-{n}")}),
                )
                .await
            }));
        }
        let mut created = 0;
        let mut refused = 0;
        for t in tasks {
            let answer = t.await.unwrap();
            match (answer.status, answer.code()) {
                (StatusCode::CREATED, _) => created += 1,
                (StatusCode::CONFLICT, "TOO_MANY_ACTIVATIONS") => refused += 1,
                other => panic!("unexpected answer {other:?}: {:?}", answer.body),
            }
        }
        assert_eq!(
            (created, refused),
            (seats, 100 - seats),
            "{seats}-seat license"
        );
        let view = app
            .get(&format!("/v1/licenses/{}", s(&license, "id")))
            .await;
        assert_eq!(
            view.body["activations"].as_array().unwrap().len() as u32,
            seats
        );
    }
    let app = Arc::try_unwrap(app).ok().expect("no other owner");
    app.stop().await;
}

#[tokio::test]
async fn floating_leases_are_renewed_by_heartbeats_and_expire_by_themselves() {
    let db = TestDb::create().await;
    let clock = Arc::new(commands::clock::OffsetClock::default());
    let mut config = test_config(&db);
    config.clock = clock.clone();
    let app = TestApp::start_with(db, config).await;
    let c = app
        .catalogue_with(json!({"name": "Team", "model": "floating", "seats": 1, "duration_days": 365, "features": [],
                               "offline_allowed": false, "offline_grace_days": 0, "payment_grace_days": 0, "lease_seconds": 600}))
        .await;
    let license = app.issue(&c).await;
    let key = s(&license, "key");
    let a = app
        .client_call(
            "/v1/activations",
            &c.app_id,
            json!({"key": key, "fingerprint": "seat-a"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let lease = s(&a.body, "lease_expires_at");
    let installation = s(&a.body, "installation_id");
    let b = app
        .client_call(
            "/v1/activations",
            &c.app_id,
            json!({"key": key, "fingerprint": "seat-b"}),
        )
        .await;
    assert_eq!(b.code(), "TOO_MANY_ACTIVATIONS");

    // A beat early in the lease changes nothing; past half the lease it renews.
    let early = app
        .client_call(
            &format!("/v1/activations/{installation}/heartbeat"),
            &c.app_id,
            json!({"key": key}),
        )
        .await;
    assert_eq!(
        (early.status, s(&early.body, "lease_expires_at")),
        (StatusCode::OK, lease.clone())
    );
    clock.advance(chrono::Duration::seconds(400));
    let renewed = app
        .client_call(
            &format!("/v1/activations/{installation}/heartbeat"),
            &c.app_id,
            json!({"key": key}),
        )
        .await;
    assert_ne!(s(&renewed.body, "lease_expires_at"), lease);

    // No more beats: the lease lapses, the background task records FloatingLeaseExpired and the
    // seat is free for another machine.
    clock.advance(chrono::Duration::seconds(700));
    let id = s(&license, "id");
    let started = Instant::now();
    loop {
        let events = app.get(&format!("/v1/licenses/{id}/events")).await;
        if events.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "FloatingLeaseExpired")
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "lease expiry was never recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let late = app
        .client_call(
            &format!("/v1/activations/{installation}/heartbeat"),
            &c.app_id,
            json!({"key": key}),
        )
        .await;
    assert_eq!(
        (late.status, late.code()),
        (StatusCode::NOT_FOUND, "INSTALLATION_NOT_FOUND")
    );
    let b = app
        .client_call(
            "/v1/activations",
            &c.app_id,
            json!({"key": key, "fingerprint": "seat-b"}),
        )
        .await;
    assert_eq!(b.status, StatusCode::CREATED, "{:?}", b.body);
    app.stop().await;
}

fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64ct::Base64UrlUnpadded::decode_vec(payload).unwrap()).unwrap()
}

/// Verifies `token` with nothing but the JWKS, using the `jsonwebtoken` crate.
fn verify_with_jsonwebtoken(token: &str, jwks: &Value, audience: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(jwks.clone()).map_err(|e| e.to_string())?;
    let jwk = set.find(&kid).ok_or("kid not in the JWKS")?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&["license-ledger"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn offline_tokens_verify_with_a_standard_jwt_library_and_survive_key_rotation() {
    let db = TestDb::create().await;
    let config = test_config(&db);
    let data_dir = config.data_dir.clone();
    let app = TestApp::start_with(db, config).await;
    let c = app.catalogue().await;
    let license = app.issue(&c).await;
    let key = s(&license, "key");
    app.client_call(
        "/v1/activations",
        &c.app_id,
        json!({"key": key, "fingerprint": "laptop-1"}),
    )
    .await;

    let issued = app
        .client_call(
            "/v1/offline-tokens",
            &c.app_id,
            json!({"key": key, "fingerprint": "laptop-1"}),
        )
        .await;
    assert_eq!(issued.status, StatusCode::CREATED, "{:?}", issued.body);
    let token = s(&issued.body, "token");
    let jwks = app.get("/.well-known/jwks.json").await.body;
    assert!(
        jwks.to_string().find("\"d\"").is_none(),
        "no private key in the JWKS"
    );
    let claims = verify_with_jsonwebtoken(&token, &jwks, &c.app_id)
        .expect("a standard library verifies our token");
    assert_eq!(claims["sub"], license["id"]);
    assert_eq!(claims["fingerprint"], "laptop-1");
    assert_eq!(claims["features"], json!(["pro"]));
    assert_eq!(claims["kind"], "offline");
    assert!(claims["installation_id"].is_string());
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!(
        exp - iat,
        14 * 86_400,
        "exp = now + offline grace (inside the license's year)"
    );
    assert!(
        verify_with_jsonwebtoken(&token, &jwks, OTHER_APP).is_err(),
        "another App GUID is refused"
    );
    let events = app
        .get(&format!("/v1/licenses/{}/events", s(&license, "id")))
        .await;
    let recorded = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "OfflineTokenIssued")
        .cloned()
        .unwrap();
    assert_eq!(recorded["data"]["jti"], claims["jti"]);

    // Rotate: new tokens use the new key, the old token still verifies with the published JWKS.
    let old_kid = s(&issued.body, "kid");
    let new_kid = api::signing::rotate(&data_dir).unwrap();
    app.server.state.signing.reload_if_changed();
    let jwks = app.get("/.well-known/jwks.json").await.body;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    verify_with_jsonwebtoken(&token, &jwks, &c.app_id)
        .expect("the old token still verifies after rotation");
    let fresh = app
        .client_call("/v1/offline-tokens", &c.app_id, json!({"key": key}))
        .await;
    assert_eq!(s(&fresh.body, "kid"), new_kid);
    verify_with_jsonwebtoken(&s(&fresh.body, "token"), &jwks, &c.app_id).unwrap();
    // Retire the old key: its tokens stop verifying.
    api::signing::retire(&data_dir, &old_kid).unwrap();
    app.server.state.signing.reload_if_changed();
    let jwks = app.get("/.well-known/jwks.json").await.body;
    assert!(verify_with_jsonwebtoken(&token, &jwks, &c.app_id).is_err());
    for file in std::fs::read_dir(data_dir.join("signing-keys")).unwrap() {
        let path = file.unwrap().path();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o077, 0, "{} is private", path.display());
    }
    app.stop().await;
}

#[tokio::test]
async fn offline_tokens_are_refused_when_the_policy_or_the_license_does_not_allow_them() {
    let app = TestApp::start().await;
    let online_only = app
        .catalogue_with(json!({"name": "Online", "model": "node_locked", "seats": 1, "duration_days": 30, "features": [],
                               "offline_allowed": false, "offline_grace_days": 0, "payment_grace_days": 0}))
        .await;
    let license = app.issue(&online_only).await;
    let refused = app
        .client_call(
            "/v1/offline-tokens",
            &online_only.app_id,
            json!({"key": s(&license, "key")}),
        )
        .await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "OFFLINE_NOT_ALLOWED")
    );
    let c: Catalogue = app.catalogue().await;
    let license = app.issue(&c).await;
    app.post(
        &format!("/v1/licenses/{}/suspend", s(&license, "id")),
        json!({"reason": "x"}),
    )
    .await;
    let suspended = app
        .client_call(
            "/v1/offline-tokens",
            &c.app_id,
            json!({"key": s(&license, "key")}),
        )
        .await;
    assert_eq!(
        (suspended.status, suspended.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "SUSPENDED")
    );
    let unbound = app
        .client_call(
            "/v1/offline-tokens",
            &c.app_id,
            json!({"key": s(&license, "key"), "fingerprint": "nope"}),
        )
        .await;
    assert_eq!(unbound.status, StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

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

/// NOT_FOUND and APP_MISMATCH cost the same: interleaved samples, compared by their medians.
#[tokio::test]
async fn not_found_and_app_mismatch_answer_alike_in_time() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let license = app.issue(&c).await;
    app.projected().await;
    let key = s(&license, "key");
    let unknown = key.replace(&key[7..15], "00000000");
    let time = |app_id: &'static str, key: String| {
        let app = &app;
        async move {
            let started = Instant::now();
            let answer = app
                .client_call("/v1/validate", app_id, json!({"key": key}))
                .await;
            (started.elapsed(), answer.code().to_owned())
        }
    };
    // Warm up connections and caches.
    for _ in 0..50 {
        time(OTHER_APP, key.clone()).await;
        time(OTHER_APP, unknown.clone()).await;
    }
    let mut mismatch = Vec::new();
    let mut not_found = Vec::new();
    for _ in 0..400 {
        let (t, code) = time(OTHER_APP, key.clone()).await;
        assert_eq!(code, "APP_MISMATCH");
        mismatch.push(t);
        let (t, code) = time(OTHER_APP, unknown.clone()).await;
        assert_eq!(code, "NOT_FOUND");
        not_found.push(t);
    }
    mismatch.sort();
    not_found.sort();
    let (m, n) = (mismatch[200].as_secs_f64(), not_found[200].as_secs_f64());
    let ratio = m / n;
    assert!(
        (0.8..1.25).contains(&ratio),
        "median APP_MISMATCH {m:.6}s vs NOT_FOUND {n:.6}s (ratio {ratio:.2})"
    );
    app.stop().await;
}
