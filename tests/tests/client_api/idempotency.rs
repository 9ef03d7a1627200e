//! `Idempotency-Key` on the client routes (ADR 0016): every write a client application sends
//! (activations, deactivations, heartbeats, offline tokens) and the air-gapped route answer a retry
//! with the first answer byte for byte and execute nothing; keys are scoped per license key;
//! another body is refused; malformed keys are refused naming the header; validation takes no key.

use base64ct::{Base64, Encoding};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tests::{RawAnswer, TestApp, send_raw};

use crate::support::s;

async fn client_post(
    app: &TestApp,
    path: &str,
    app_id: &str,
    body: &Value,
    key: &str,
) -> RawAnswer {
    send_raw(
        &app.client,
        &app.base,
        Method::POST,
        path,
        &[
            ("x-app-id", app_id),
            ("content-type", "application/json"),
            ("idempotency-key", key),
        ],
        serde_json::to_vec(body).unwrap(),
    )
    .await
}

/// Sends the same request three times: the retries' answers are the first again, marked, and
/// append nothing.
async fn twice(
    app: &TestApp,
    send: impl AsyncFn() -> RawAnswer,
    expected: StatusCode,
) -> RawAnswer {
    let first = send().await;
    assert_eq!(
        first.status,
        expected,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let before = app.event_count().await;
    let again = send().await;
    assert_eq!(again.status, first.status);
    assert_eq!(
        String::from_utf8_lossy(&again.body),
        String::from_utf8_lossy(&first.body),
        "byte for byte"
    );
    assert_eq!(again.header("content-type"), first.header("content-type"));
    assert_eq!(first.header("idempotent-replayed"), None);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    // Once the answer is written and the server's memory has forgotten it, the retry runs its
    // handler: the key recorded on the command's event makes it append nothing, and the stored
    // first answer is answered.
    app.server.state.app.idempotency().drain().await;
    assert_eq!(
        app.server.state.app.idempotency().held(),
        0,
        "the memory forgot the answer"
    );
    let from_table = send().await;
    assert_eq!(from_table.status, first.status);
    assert_eq!(
        String::from_utf8_lossy(&from_table.body),
        String::from_utf8_lossy(&first.body),
        "byte for byte, from the table"
    );
    assert_eq!(from_table.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        app.event_count().await,
        before,
        "the retries executed nothing"
    );
    first
}

fn request_file(label: &str, json: &Value) -> String {
    let encoded = Base64::encode_string(json.to_string().as_bytes());
    format!(
        "-----BEGIN LICENSE-LEDGER {label}-----\n{encoded}\n-----END LICENSE-LEDGER {label}-----\n"
    )
}

#[tokio::test]
async fn every_client_write_answers_a_retry_byte_for_byte_and_executes_nothing() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let key = s(&app.issue(&c).await, "key");
    let activated = twice(
        &app,
        async || {
            client_post(
                &app,
                "/v1/activations",
                &c.app_id,
                &json!({"key": key, "fingerprint": "pc-1"}),
                "act-1",
            )
            .await
        },
        StatusCode::CREATED,
    )
    .await;
    let installation = s(&activated.json(), "installation_id");
    twice(
        &app,
        async || {
            client_post(
                &app,
                "/v1/offline-tokens",
                &c.app_id,
                &json!({"key": key, "fingerprint": "pc-1"}),
                "tok-1",
            )
            .await
        },
        StatusCode::CREATED,
    )
    .await;
    twice(
        &app,
        async || {
            client_post(
                &app,
                &format!("/v1/activations/{installation}/deactivate"),
                &c.app_id,
                &json!({"key": key}),
                "deact-1",
            )
            .await
        },
        StatusCode::OK,
    )
    .await;

    // A floating license's heartbeat.
    let f = app
        .catalogue_with(json!({"name": "Team", "model": "floating", "seats": 1, "duration_days": 365, "features": [],
                               "offline_allowed": false, "offline_grace_days": 0, "payment_grace_days": 0, "lease_seconds": 600}))
        .await;
    let floating = s(&app.issue(&f).await, "key");
    let seat = client_post(
        &app,
        "/v1/activations",
        &f.app_id,
        &json!({"key": floating, "fingerprint": "seat-a"}),
        "seat-a",
    )
    .await;
    assert_eq!(seat.status, StatusCode::CREATED);
    let seat = s(&seat.json(), "installation_id");
    // In the first half of its lease a heartbeat changes nothing (no event): a success that
    // changed nothing is not kept, and its retry is evaluated afresh (ADR 0019) — here, the
    // same lease again, unmarked, and still nothing appended.
    let beat = async || {
        client_post(
            &app,
            &format!("/v1/activations/{seat}/heartbeat"),
            &f.app_id,
            &json!({"key": floating}),
            "beat-1",
        )
        .await
    };
    app.server.state.app.idempotency().drain().await;
    let before = app.event_count().await;
    let first = beat().await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(app.server.state.app.idempotency().held(), 0, "nothing kept");
    let again = beat().await;
    assert_eq!((again.status, &again.body), (first.status, &first.body));
    assert_eq!(again.header("idempotent-replayed"), None);
    assert_eq!(app.event_count().await, before);

    // The air-gapped route: an administrator posts a request file.
    let request = json!({"version": 1, "type": "activation", "app_id": c.app_id, "key": key, "fingerprint": "vault-pc",
                         "created_at": "2026-11-23T10:00:00Z", "nonce": uuid::Uuid::new_v4()});
    let file = request_file("ACTIVATION REQUEST", &request);
    let auth = format!("Bearer {}", app.admin_token);
    let post_file = async |file: &str, key: &str| {
        send_raw(
            &app.client,
            &app.base,
            Method::POST,
            "/v1/offline-activations",
            &[
                ("authorization", &auth),
                ("content-type", "text/plain"),
                ("idempotency-key", key),
            ],
            file.as_bytes().to_vec(),
        )
        .await
    };
    let offline = twice(
        &app,
        async || post_file(&file, "file-1").await,
        StatusCode::OK,
    )
    .await;
    assert!(
        String::from_utf8_lossy(&offline.body)
            .starts_with("-----BEGIN LICENSE-LEDGER ACTIVATION RESPONSE-----")
    );
    // Another request file with the used key is refused, and activates nothing.
    let other = json!({"version": 1, "type": "activation", "app_id": c.app_id, "key": key, "fingerprint": "vault-pc-2",
                       "created_at": "2026-11-23T10:00:00Z", "nonce": uuid::Uuid::new_v4()});
    let before = app.event_count().await;
    let reused = post_file(&request_file("ACTIVATION REQUEST", &other), "file-1").await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.json()["code"], "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(app.event_count().await, before, "nothing activated");

    // The deactivation's request file: its retry, once the device is freed, is refused by the
    // handler before any command (the fingerprint is not active any more); the stored first
    // answer is answered all the same.
    let mut deactivation = request.clone();
    deactivation["type"] = json!("deactivation");
    let receipt = twice(
        &app,
        async || {
            post_file(
                &request_file("DEACTIVATION REQUEST", &deactivation),
                "file-2",
            )
            .await
        },
        StatusCode::OK,
    )
    .await;
    assert!(
        String::from_utf8_lossy(&receipt.body)
            .starts_with("-----BEGIN LICENSE-LEDGER DEACTIVATION RECEIPT-----")
    );
    // A file for a device already active (activated online): its activation changes nothing
    // and records no key, its token does. Freed, then the file retried: the first answer, and no
    // second activation (it took a seat again, found by an attacker).
    let online = client_post(
        &app,
        "/v1/activations",
        &c.app_id,
        &json!({"key": key, "fingerprint": "vault-3"}),
        "online-3",
    )
    .await;
    assert_eq!(online.status, StatusCode::CREATED);
    let online_id = s(&online.json(), "installation_id");
    let mut active = request.clone();
    active["fingerprint"] = json!("vault-3");
    active["nonce"] = json!(uuid::Uuid::new_v4());
    let active_file = request_file("ACTIVATION REQUEST", &active);
    let first = post_file(&active_file, "file-3").await;
    assert_eq!(first.status, StatusCode::OK);
    let freed = client_post(
        &app,
        &format!("/v1/activations/{online_id}/deactivate"),
        &c.app_id,
        &json!({"key": key}),
        "free-3",
    )
    .await;
    assert_eq!(freed.status, StatusCode::OK);
    app.server.state.app.idempotency().drain().await;
    let before = app.event_count().await;
    let again = post_file(&active_file, "file-3").await;
    assert_eq!((again.status, &again.body), (StatusCode::OK, &first.body));
    assert_eq!(app.event_count().await, before, "not activated again");

    // The activation's file retried now, its device freed: the first answer again, and the
    // device is not activated a second time.
    let before = app.event_count().await;
    let again = post_file(&file, "file-1").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, offline.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(app.event_count().await, before, "not activated again");
    app.stop().await;
}

/// A request file for a license whose policy allows no offline use is refused before a seat is
/// taken (the activation ran, then the token was refused: the seat was gone, found by an
/// attacker).
#[tokio::test]
async fn an_offline_activation_the_policy_refuses_takes_no_seat() {
    let app = TestApp::start().await;
    let c = app
        .catalogue_with(
            json!({"name": "Online only", "model": "node_locked", "seats": 1, "duration_days": 30,
                               "features": [], "offline_allowed": false, "offline_grace_days": 0,
                               "payment_grace_days": 0}),
        )
        .await;
    let key = s(&app.issue(&c).await, "key");
    let request = json!({"version": 1, "type": "activation", "app_id": c.app_id, "key": key, "fingerprint": "vault",
                         "created_at": "2026-11-23T10:00:00Z", "nonce": uuid::Uuid::new_v4()});
    let auth = format!("Bearer {}", app.admin_token);
    let before = app.event_count().await;
    let refused = send_raw(
        &app.client,
        &app.base,
        Method::POST,
        "/v1/offline-activations",
        &[
            ("authorization", &auth),
            ("content-type", "text/plain"),
            ("idempotency-key", "n-1"),
        ],
        request_file("ACTIVATION REQUEST", &request).into_bytes(),
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.json()["code"], "OFFLINE_NOT_ALLOWED");
    assert_eq!(app.event_count().await, before, "no seat taken");
    let online = client_post(
        &app,
        "/v1/activations",
        &c.app_id,
        &json!({"key": key, "fingerprint": "pc"}),
        "pc-1",
    )
    .await;
    assert_eq!(online.status, StatusCode::CREATED, "the one seat is free");
    app.stop().await;
}

#[tokio::test]
async fn the_same_key_from_two_license_keys_executes_twice_and_another_body_is_refused() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let one = s(&app.issue(&c).await, "key");
    let two = s(&app.issue(&c).await, "key");
    let before = app.event_count().await;
    let a = client_post(
        &app,
        "/v1/activations",
        &c.app_id,
        &json!({"key": one, "fingerprint": "pc-1"}),
        "same",
    )
    .await;
    let b = client_post(
        &app,
        "/v1/activations",
        &c.app_id,
        &json!({"key": two, "fingerprint": "pc-1"}),
        "same",
    )
    .await;
    assert_eq!(
        (a.status, b.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert_eq!(b.header("idempotent-replayed"), None);
    assert_ne!(a.json()["license_id"], b.json()["license_id"]);
    assert_eq!(app.event_count().await, before + 2, "both executed");
    let reused = client_post(
        &app,
        "/v1/activations",
        &c.app_id,
        &json!({"key": one, "fingerprint": "pc-2"}),
        "same",
    )
    .await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.json()["code"], "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(app.event_count().await, before + 2);
    app.stop().await;
}

#[tokio::test]
async fn malformed_keys_on_client_routes_are_refused_naming_the_header() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let key = s(&app.issue(&c).await, "key");
    let before = app.event_count().await;
    let long = "k".repeat(256);
    let installation = uuid::Uuid::now_v7();
    for bad in ["", long.as_str(), "two words", "caf\u{e9}"] {
        for path in [
            "/v1/activations".to_owned(),
            format!("/v1/activations/{installation}/deactivate"),
            format!("/v1/activations/{installation}/heartbeat"),
            "/v1/offline-tokens".to_owned(),
        ] {
            let mut request = app
                .client
                .post(format!("{}{path}", app.base))
                .header("x-app-id", &c.app_id)
                .json(&json!({"key": key, "fingerprint": "pc-1"}));
            request = match reqwest::header::HeaderValue::from_bytes(bad.as_bytes()) {
                Ok(v) => request.header("idempotency-key", v),
                Err(_) => continue,
            };
            let answer = request.send().await.unwrap();
            assert_eq!(
                answer.status(),
                StatusCode::BAD_REQUEST,
                "{bad:?} on {path}"
            );
            let body: Value = answer.json().await.unwrap();
            assert_eq!(body["code"], "INVALID_IDEMPOTENCY_KEY");
            assert_eq!(body["field"], "Idempotency-Key");
        }
    }
    assert_eq!(app.event_count().await, before);
    app.stop().await;
}

/// Validation appends nothing and answers the license as it is now: it takes no key, and the
/// header changes nothing.
#[tokio::test]
async fn validation_takes_no_idempotency_key() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let key = s(&app.issue(&c).await, "key");
    for _ in 0..2 {
        let answer =
            client_post(&app, "/v1/validate", &c.app_id, &json!({"key": key}), "v-1").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.header("idempotent-replayed"), None);
    }
    assert_eq!(stored_rows(&app).await, 0);
    app.stop().await;
}

/// The stored answers, once every answer given so far is written.
async fn stored_rows(app: &TestApp) -> i64 {
    app.server.state.app.idempotency().drain().await;
    sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(app.server.state.app.pool())
        .await
        .unwrap()
}

/// A keyed request whose license key opens no license of the presenting application (no
/// `X-App-Id`, a malformed key, an unknown key, another product's key) claims nothing: it is
/// refused as without a key and leaves no row behind, so strangers never share a scope (an
/// attacker's requests with malformed keys all landed in one scope, and one caller's key was
/// refused as reused because another had used it).
#[tokio::test]
async fn a_key_that_opens_no_license_claims_nothing() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let key = s(&app.issue(&c).await, "key");
    let other = app
        .catalogue_with(
            json!({"name": "Other", "model": "node_locked", "seats": 1, "duration_days": 30, "features": [],
            "offline_allowed": false, "offline_grace_days": 0, "payment_grace_days": 7}),
        )
        .await;
    let before = stored_rows(&app).await;
    let cases = [
        (
            c.app_id.as_str(),
            json!({"key": "not-a-key", "fingerprint": "f-1"}),
        ),
        (
            c.app_id.as_str(),
            json!({"key": "ACME-0000-0000-0000-0000-0000", "fingerprint": "f-1"}),
        ),
        (
            other.app_id.as_str(),
            json!({"key": key, "fingerprint": "f-1"}),
        ),
        ("not-a-uuid", json!({"key": key, "fingerprint": "f-1"})),
    ];
    for (app_id, body) in &cases {
        for attempt in 0..2 {
            let answer = client_post(&app, "/v1/activations", app_id, body, "shared-key").await;
            assert!(
                matches!(
                    answer.status,
                    StatusCode::BAD_REQUEST | StatusCode::FORBIDDEN
                ),
                "{app_id} {body} (attempt {attempt}): {}",
                String::from_utf8_lossy(&answer.body)
            );
            assert_eq!(answer.header("idempotent-replayed"), None);
        }
    }
    // Without X-App-Id at all.
    let bare = send_raw(
        &app.client,
        &app.base,
        Method::POST,
        "/v1/activations",
        &[
            ("content-type", "application/json"),
            ("idempotency-key", "shared-key"),
        ],
        serde_json::to_vec(&json!({"key": key, "fingerprint": "f-1"})).unwrap(),
    )
    .await;
    assert_eq!(bare.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        stored_rows(&app).await,
        before,
        "no row for a key that opens nothing"
    );
    // The real key then uses the same Idempotency-Key as its own.
    let activated = client_post(
        &app,
        "/v1/activations",
        &c.app_id,
        &json!({"key": key, "fingerprint": "f-1"}),
        "shared-key",
    )
    .await;
    assert_eq!(activated.status, StatusCode::CREATED);
    assert_eq!(stored_rows(&app).await, before + 1);
}

/// Keys are scoped per license key, on the stored answers and on the events alike: after a
/// rotation, the license's new key sending an `Idempotency-Key` its old key used runs the request
/// (it was refused as reused, the events' key being scoped by the license).
#[tokio::test]
async fn after_a_rotation_the_new_license_key_has_keys_of_its_own() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let license = app.issue(&c).await;
    let old_key = s(&license, "key");
    let first = client_post(
        &app,
        "/v1/activations",
        &c.app_id,
        &json!({"key": old_key, "fingerprint": "f-rot-1"}),
        "rot-1",
    )
    .await;
    assert_eq!(
        first.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let rotated = app
        .call(
            Method::POST,
            &format!("/v1/licenses/{}/rotate-key", s(&license, "id")),
            None,
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{:?}", rotated.body);
    let new_key = rotated.body["key"].as_str().unwrap();
    let again = client_post(
        &app,
        "/v1/activations",
        &c.app_id,
        &json!({"key": new_key, "fingerprint": "f-rot-2"}),
        "rot-1",
    )
    .await;
    assert_eq!(
        again.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&again.body)
    );
    assert_eq!(
        again.header("idempotent-replayed"),
        None,
        "run, not replayed"
    );
}
