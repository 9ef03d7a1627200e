//! The client SDK (`client/`) against the real server: online validation, activation, offline
//! tokens with the fallback when the server is gone, and air-gapped files written and verified
//! by the SDK and answered by the server. The SDK is blocking, so it runs on blocking threads.

use client::files::{ActivationRequest, ActivationResponse};
use client::jwks::Jwks;
use client::online::{Client, Config};
use client::values::{AppId, Fingerprint, LicenseKey};
use client::verify::Verifier;
use reqwest::StatusCode;
use tests::TestApp;

#[tokio::test]
async fn the_sdk_validates_online_and_falls_back_to_its_offline_token_when_the_server_is_gone() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let license = app.issue(&c).await;
    let key = license["key"].as_str().unwrap().to_owned();
    app.projected().await;
    let jwks = app.get("/.well-known/jwks.json").await.body.to_string();
    let store = tests::temp_data_dir();
    let config = Config::new(
        app.base.clone(),
        AppId::parse(&c.app_id).unwrap(),
        LicenseKey::parse(&key).unwrap(),
        Jwks::from_json(&jwks).unwrap(),
        store.clone(),
    )
    .with_fingerprint(Fingerprint::parse("sdk-device-1").unwrap());
    // No cache: the call after the server is gone must take the offline path.
    let config = Config {
        cache_ttl: std::time::Duration::ZERO,
        ..config
    };
    let client = std::sync::Arc::new(Client::new(config).unwrap());

    let online = {
        let client = client.clone();
        tokio::task::spawn_blocking(move || {
            client
                .activate(None, None, client::values::Environment::Production)
                .unwrap();
            let validation = client.validate(&["pro"]).unwrap();
            client.fetch_offline_token().unwrap();
            validation
        })
        .await
        .unwrap()
    };
    assert!(online.is_valid() && !online.is_offline(), "{online:?}");

    // The server goes away: the stored, verified offline token stands in.
    app.stop().await;
    let offline = tokio::task::spawn_blocking(move || client.validate(&["pro"]))
        .await
        .unwrap();
    let offline = offline.unwrap();
    assert!(offline.is_valid() && offline.is_offline(), "{offline:?}");
    let _ = std::fs::remove_dir_all(store);
}

#[tokio::test]
async fn sdk_request_files_are_answered_by_the_server_and_the_response_verifies_in_the_sdk() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let license = app.issue(&c).await;
    let key = license["key"].as_str().unwrap();
    let app_id = AppId::parse(&c.app_id).unwrap();
    let request = ActivationRequest::new(
        app_id,
        LicenseKey::parse(key).unwrap(),
        Fingerprint::parse("air-gapped-9").unwrap(),
        chrono::Utc::now(),
    );
    let answer = app
        .client
        .post(format!("{}/v1/offline-activations", app.base))
        .bearer_auth(&app.admin_token)
        .header("content-type", "text/plain")
        .body(request.to_file_text())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let response = ActivationResponse::parse_file_text(&answer.text().await.unwrap()).unwrap();
    let jwks = Jwks::from_json(&app.get("/.well-known/jwks.json").await.body.to_string()).unwrap();
    let verifier = Verifier::new(jwks);
    let claims = response
        .verify(&verifier, app_id, Some("air-gapped-9"), chrono::Utc::now())
        .expect("the SDK verifies the server's response file");
    assert_eq!(
        claims.license_id().to_string(),
        license["id"].as_str().unwrap()
    );
    assert!(
        response
            .verify(
                &verifier,
                app_id,
                Some("another-machine"),
                chrono::Utc::now()
            )
            .is_err(),
        "bound to the fingerprint"
    );
    // A token from the online endpoint verifies too, and one flipped byte does not.
    let token = app
        .client_call(
            "/v1/offline-tokens",
            &c.app_id,
            serde_json::json!({"key": key}),
        )
        .await
        .body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    verifier
        .verify(&token, app_id, None, chrono::Utc::now())
        .unwrap();
    let mut tampered = token.into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert!(
        verifier
            .verify(&tampered, app_id, None, chrono::Utc::now())
            .is_err()
    );
    app.stop().await;
}
