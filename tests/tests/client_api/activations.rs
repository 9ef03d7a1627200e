//! Activations and seats: a fingerprint takes a seat once, deactivation frees it, seats cannot
//! drop below the active installations, and the limit holds under 100 parallel activations.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tests::TestApp;

use crate::support::{OTHER_APP, s};

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
