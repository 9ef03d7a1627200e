//! Validation: the decision and its codes, App GUID enforcement that leaks nothing, bad headers
//! and bodies; and a change answered by this process visible to validation within 100 ms.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tests::TestApp;

use crate::support::{OTHER_APP, s};

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
