//! Offline tokens: verified with the JWKS alone by a standard JWT library, still valid after a
//! key rotation until the old key is retired; refused when the policy or license forbids them.

use reqwest::StatusCode;
use serde_json::json;
use tests::{Catalogue, TestApp, TestDb, test_config};

use crate::support::{OTHER_APP, s, verify_with_jsonwebtoken};

#[tokio::test]
async fn offline_tokens_verify_with_a_standard_jwt_library_and_survive_key_rotation() {
    let db = TestDb::create().await;
    let config = test_config(&db);
    let data_dir = config.app.data_dir.clone();
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
    let new_kid = application::signing::rotate(&data_dir).unwrap();
    app.server.state.app.signing().reload_if_changed();
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
    application::signing::retire(&data_dir, &old_kid).unwrap();
    app.server.state.app.signing().reload_if_changed();
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
