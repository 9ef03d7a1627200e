//! Floating leases on a test clock: a heartbeat past half the lease renews it, and a lease with
//! no more beats expires by itself (the background task records it), freeing the seat.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tests::{TestApp, TestDb, test_config};

use crate::support::s;

#[tokio::test]
async fn floating_leases_are_renewed_by_heartbeats_and_expire_by_themselves() {
    let db = TestDb::create().await;
    let clock = Arc::new(commands::clock::OffsetClock::default());
    let mut config = test_config(&db);
    config.app.clock = clock.clone();
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
