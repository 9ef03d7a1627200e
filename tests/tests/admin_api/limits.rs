//! The server's protections and probes: oversized bodies and request floods are refused with
//! problems, while the health and readiness endpoints stay open and report their dependencies.

use reqwest::StatusCode;
use serde_json::json;
use tests::{TestApp, TestDb, test_config};

#[tokio::test]
async fn oversized_bodies_and_floods_are_refused_with_problems() {
    let db = TestDb::create().await;
    let mut config = test_config(&db);
    config.max_body_bytes = 1024;
    config.rate_limit_per_second = 5;
    config.rate_limit_burst = 5;
    let app = TestApp::start_with(db, config).await;
    let before = app.event_count().await;
    let big = json!({"name": "x".repeat(2000), "kind": "customer"});
    let answer = app.post("/v1/organizations", big).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE")
    );
    let mut limited = None;
    for _ in 0..20 {
        let a = app.get("/v1/products").await;
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(a);
            break;
        }
    }
    let limited = limited.expect("the rate limit applies");
    assert_eq!(limited.code(), "RATE_LIMITED");
    assert!(limited.header("retry-after").is_some());
    // Health endpoints are not rate limited (load balancers poll them).
    for _ in 0..20 {
        assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    }
    assert_eq!(app.event_count().await, before);
    app.stop().await;
}

#[tokio::test]
async fn health_and_readiness_report_the_database_and_projectors() {
    let app = TestApp::start().await;
    app.catalogue().await;
    app.projected().await;
    let health = app.get("/healthz").await;
    assert_eq!(health.body["status"], "ok");
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK, "{:?}", ready.body);
    assert_eq!(
        ready.body["projections"].as_array().unwrap().len(),
        projections::all().len()
    );
    app.stop().await;
}
