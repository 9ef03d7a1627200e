//! What a caller's request headers do: an `x-request-id` is echoed and recorded as the events'
//! correlation id, an `idempotency-key` makes a retried issue answer the same license once.

use reqwest::{Method, StatusCode};
use serde_json::json;
use tests::TestApp;

use crate::support::id;

#[tokio::test]
async fn request_ids_are_echoed_and_recorded_as_the_events_correlation_id() {
    let app = TestApp::start().await;
    let answer = app
        .call_as(
            &app.admin_token,
            Method::POST,
            "/v1/organizations",
            Some(json!({"name": "Traced", "kind": "partner"})),
            &[("x-request-id", "support-ticket-4711")],
        )
        .await;
    assert_eq!(answer.header("x-request-id"), Some("support-ticket-4711"));
    let correlation: String = sqlx::query_scalar(
        "SELECT metadata->>'correlation_id' FROM events WHERE aggregate_id = $1",
    )
    .bind(id(&answer.body))
    .fetch_one(app.server.state.app.pool())
    .await
    .unwrap();
    assert_eq!(correlation, "support-ticket-4711");
    // A missing or unusable id is replaced by a generated one.
    let generated = app
        .call_as(
            &app.admin_token,
            Method::GET,
            "/v1/products",
            None,
            &[("x-request-id", "bad id with spaces")],
        )
        .await;
    let echoed = generated.header("x-request-id").unwrap();
    assert!(uuid::Uuid::parse_str(echoed).is_ok(), "{echoed}");
    app.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_makes_a_retried_issue_answer_the_same_license_once() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let body = json!({"policy_id": c.policy_id, "organization_id": c.organization_id});
    let key = [("idempotency-key", "order-2026-0042")];
    let first = app
        .call_as(
            &app.admin_token,
            Method::POST,
            "/v1/licenses",
            Some(body.clone()),
            &key,
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(first.body["key"].is_string());
    let before = app.event_count().await;
    let again = app
        .call_as(
            &app.admin_token,
            Method::POST,
            "/v1/licenses",
            Some(body.clone()),
            &key,
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        again.body, first.body,
        "the first answer again, its key included (stored encrypted, ADR 0016)"
    );
    assert_eq!(app.event_count().await, before);
    let mut other = body.clone();
    other["seats"] = json!(9);
    let reused = app
        .call_as(
            &app.admin_token,
            Method::POST,
            "/v1/licenses",
            Some(other),
            &key,
        )
        .await;
    assert_eq!(
        (reused.status, reused.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED")
    );
    assert_eq!(app.event_count().await, before);
    app.stop().await;
}

/// A retried mint answers the first token again, secret included (its answer is stored
/// encrypted, ADR 0016): never a new token that was never recorded, nor a second token.
#[tokio::test]
async fn a_retried_token_mint_answers_the_first_token_again_and_mints_nothing() {
    let app = TestApp::start().await;
    let body = json!({"role": "vendor_auditor", "ttl_seconds": 3600});
    let key = [("idempotency-key", "mint-ci-token-1")];
    let first = app
        .call_as(
            &app.admin_token,
            Method::POST,
            "/v1/tokens",
            Some(body.clone()),
            &key,
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    let secret = first.body["token"].as_str().unwrap().to_owned();
    let before = app.event_count().await;
    let again = app
        .call_as(
            &app.admin_token,
            Method::POST,
            "/v1/tokens",
            Some(body),
            &key,
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        again.body, first.body,
        "the same token, its secret included"
    );
    assert_eq!(app.event_count().await, before, "no second token");
    let works = app
        .call_as(&secret, Method::GET, "/v1/projections", None, &[])
        .await;
    assert_eq!(works.status, StatusCode::OK, "the first secret still opens");
    app.stop().await;
}
