//! The audit trail as an auditor reads it: filtered by license, paginated by cursor, each entry
//! with its actor and correlation id; and the latest signed checkpoint served over the API.

use reqwest::StatusCode;
use serde_json::json;
use tests::TestApp;

use crate::support::{checkpoint_everything, id};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_trail_is_filtered_and_paginated_and_checkpoints_are_served() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let license = id(&app.issue(&c).await);
    let path = format!("/v1/licenses/{license}");
    app.post(&format!("{path}/suspend"), json!({"reason": "chargeback"}))
        .await;
    app.post(&format!("{path}/reinstate"), json!({})).await;
    app.projected().await;

    let first = app
        .get(&format!("/v1/audit?license_id={license}&limit=2"))
        .await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let entries = first.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    // Opaque since ADR 0017 (it was the raw log position): passed back as it came.
    let cursor = first.body["next_cursor"].as_str().expect("a next cursor");
    let second = app
        .get(&format!(
            "/v1/audit?license_id={license}&limit=2&cursor={cursor}"
        ))
        .await;
    let rest = second.body["entries"].as_array().unwrap();
    assert_eq!(rest.len(), 1);
    let actions: Vec<&str> = entries
        .iter()
        .chain(rest)
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["LicenseIssued", "LicenseSuspended", "LicenseReinstated"]
    );
    for entry in entries.iter().chain(rest) {
        assert!(
            entry["actor"].as_str().unwrap().starts_with("api_token:"),
            "{entry}"
        );
        assert!(entry["correlation_id"].is_string(), "{entry}");
    }
    let bad = app.get("/v1/audit?limit=0").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = app.get("/v1/audit?from=last-week").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = app.get("/v1/audit?actor=%00").await;
    assert_eq!(
        (bad.status, bad.code()),
        (StatusCode::BAD_REQUEST, "INVALID_QUERY")
    );
    let anonymous = app
        .client
        .get(format!("{}/v1/audit", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // Checkpoints: signed on demand here (the server does it every N events or T seconds).
    let none = app.get("/v1/checkpoints/latest").await;
    let count = app.event_count().await;
    assert_eq!(checkpoint_everything(&app).await, count);
    let latest = app.get("/v1/checkpoints/latest").await;
    assert!(none.status == StatusCode::NOT_FOUND || none.status == StatusCode::OK);
    assert_eq!(latest.status, StatusCode::OK, "{:?}", latest.body);
    assert_eq!(latest.body["event_count"], count);
    assert!(latest.body["position"].as_i64().unwrap() > 0);
    assert_eq!(latest.body["root"].as_str().unwrap().len(), 64);
    app.stop().await;
}
