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
    // The administrator's token is limited per token (ADR 0018).
    config.token_rate_limits = vec![api::limits::RoleRate {
        role: domain::values::Role::VendorAdmin,
        rate: api::limits::Rate::new(5, 5),
    }];
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
    // A refused request with a body leaves it unread: the answer says the connection closes.
    let refused = app
        .post(
            "/v1/organizations",
            json!({"name": "Late", "kind": "customer"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.header("connection"), Some("close"));
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

#[tokio::test]
async fn readiness_answers_busy_within_seconds_when_the_request_pool_has_no_connection() {
    let db = TestDb::create().await;
    let mut config = test_config(&db);
    config.app.db_max_connections = 1;
    let app = TestApp::start_with(db, config).await;
    // The request pool's one connection, held as a stuck request would hold it.
    let held = app.server.state.app.pool().acquire().await.unwrap();
    let asked = std::time::Instant::now();
    let ready = app.get("/readyz").await;
    let took = asked.elapsed();
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        ready.body
    );
    assert_eq!(ready.body["database"], "busy", "{:?}", ready.body);
    // Bounded at 3 s (the pool would have made it wait 10 s, then answer "unreachable").
    assert!(took < std::time::Duration::from_secs(8), "{took:?}");
    drop(held);
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    app.stop().await;
}
