//! Refusals: a malformed body names the offending field, an unknown id is not found wherever it
//! appears, an invalid transition is unprocessable with a stable code — and none of them writes
//! an event.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tests::TestApp;

use crate::support::id;

#[tokio::test]
async fn malformed_bodies_are_refused_naming_the_field_and_write_nothing() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let before = app.event_count().await;
    let cases: Vec<(&str, Value, &str, Option<&str>)> = vec![
        (
            "/v1/organizations",
            json!({"kind": "customer"}),
            "INVALID_FIELD",
            Some("name"),
        ),
        (
            "/v1/organizations",
            json!({"name": "", "kind": "customer"}),
            "INVALID_FIELD",
            Some("name"),
        ),
        (
            "/v1/organizations",
            json!({"name": "x", "kind": "reseller"}),
            "INVALID_FIELD",
            Some("kind"),
        ),
        (
            "/v1/organizations",
            json!({"name": "x", "kind": "customer", "colour": "red"}),
            "INVALID_FIELD",
            Some("colour"),
        ),
        (
            "/v1/organizations",
            json!({"name": "x", "kind": "customer", "parent_id": "nope"}),
            "INVALID_FIELD",
            Some("parent_id"),
        ),
        (
            "/v1/products",
            json!({"name": "x", "kind": "application", "app_id": "00000000-0000-0000-0000-000000000000"}),
            "INVALID_FIELD",
            Some("app_id"),
        ),
        (
            "/v1/products",
            json!({"name": "x", "kind": "application", "key_prefix": "lower"}),
            "INVALID_FIELD",
            Some("key_prefix"),
        ),
        (
            "/v1/policies",
            json!({"product_id": c.product_id, "name": "P", "model": "node_locked", "seats": 0, "duration_days": 1,
            "features": [], "offline_allowed": false, "offline_grace_days": 0, "payment_grace_days": 0}),
            "INVALID_FIELD",
            Some("seats"),
        ),
        (
            "/v1/policies",
            json!({"product_id": c.product_id, "name": "P", "model": "node_locked", "seats": 1,
            "features": [], "offline_allowed": false, "offline_grace_days": 0, "payment_grace_days": 0}),
            "INVALID_FIELD",
            Some("duration_days"),
        ),
        (
            "/v1/policies",
            json!({"product_id": c.product_id, "name": "P", "model": "node_locked", "seats": 1, "duration_days": 1,
            "features": ["ok", "not ok"], "offline_allowed": false, "offline_grace_days": 0, "payment_grace_days": 0}),
            "INVALID_FIELD",
            Some("features[1]"),
        ),
        (
            "/v1/policies",
            json!({"product_id": c.product_id, "name": "P", "model": "node_locked", "seats": 1, "duration_days": 1,
            "features": [], "offline_allowed": false, "offline_grace_days": 0, "payment_grace_days": 0, "lease_seconds": 60}),
            "INVALID_FIELD",
            Some("lease_seconds"),
        ),
        (
            "/v1/licenses",
            json!({"organization_id": c.organization_id}),
            "INVALID_FIELD",
            Some("policy_id"),
        ),
        (
            "/v1/licenses",
            json!({"policy_id": c.policy_id, "organization_id": c.organization_id, "expires_at": "tomorrow"}),
            "INVALID_FIELD",
            Some("expires_at"),
        ),
    ];
    for (path, body, code, field) in cases {
        let answer = app.post(path, body.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{path} {body}: {:?}",
            answer.body
        );
        assert_eq!(answer.code(), code, "{body}");
        assert_eq!(
            answer.body["field"].as_str(),
            field,
            "{body}: {:?}",
            answer.body
        );
        assert_eq!(
            answer.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(answer.body["status"], 400);
        assert!(
            answer.body["type"]
                .as_str()
                .unwrap()
                .starts_with("https://")
        );
        assert!(!answer.body["detail"].as_str().unwrap().is_empty());
    }
    // Not JSON at all, and JSON under another content type.
    let raw = app
        .client
        .post(format!("{}/v1/organizations", app.base))
        .bearer_auth(&app.admin_token)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    let problem: Value = raw.json().await.unwrap();
    assert_eq!(problem["code"], "MALFORMED_JSON");
    let form = app
        .client
        .post(format!("{}/v1/organizations", app.base))
        .bearer_auth(&app.admin_token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=x&kind=customer")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(app.event_count().await, before, "nothing was written");
    app.stop().await;
}

#[tokio::test]
async fn unknown_ids_are_not_found_whether_in_the_path_or_the_body() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let before = app.event_count().await;
    let ghost = "01a0f000-0000-7000-8000-000000000000";
    for (method, path, body, code) in [
        (
            Method::GET,
            format!("/v1/licenses/{ghost}"),
            None,
            "LICENSE_NOT_FOUND",
        ),
        (
            Method::GET,
            "/v1/licenses/not-a-uuid".to_owned(),
            None,
            "LICENSE_NOT_FOUND",
        ),
        // Not UTF-8 once decoded: no id either (was a plain-text 400 from the path extractor).
        (
            Method::GET,
            "/v1/licenses/%FF".to_owned(),
            None,
            "LICENSE_NOT_FOUND",
        ),
        (
            Method::GET,
            "/v1/organizations/%C3%28/licenses".to_owned(),
            None,
            "ORGANIZATION_NOT_FOUND",
        ),
        (
            Method::POST,
            "/v1/tokens/%FF%FE/revoke".to_owned(),
            None,
            "TOKEN_NOT_FOUND",
        ),
        (
            Method::GET,
            format!("/v1/licenses/{ghost}/events"),
            None,
            "LICENSE_NOT_FOUND",
        ),
        (
            Method::POST,
            format!("/v1/licenses/{ghost}/suspend"),
            Some(json!({"reason": "x"})),
            "LICENSE_NOT_FOUND",
        ),
        (
            Method::POST,
            format!("/v1/licenses/{ghost}/reinstate"),
            None,
            "LICENSE_NOT_FOUND",
        ),
        (
            Method::POST,
            format!("/v1/licenses/{ghost}/rotate-key"),
            None,
            "LICENSE_NOT_FOUND",
        ),
        (
            Method::PUT,
            format!("/v1/licenses/{ghost}/seats"),
            Some(json!({"seats": 2})),
            "LICENSE_NOT_FOUND",
        ),
        (
            Method::GET,
            format!("/v1/organizations/{ghost}"),
            None,
            "ORGANIZATION_NOT_FOUND",
        ),
        (
            Method::GET,
            format!("/v1/organizations/{ghost}/licenses"),
            None,
            "ORGANIZATION_NOT_FOUND",
        ),
        (
            Method::GET,
            format!("/v1/products/{ghost}"),
            None,
            "PRODUCT_NOT_FOUND",
        ),
        (
            Method::GET,
            format!("/v1/policies/{ghost}"),
            None,
            "POLICY_NOT_FOUND",
        ),
        (
            Method::POST,
            "/v1/licenses".to_owned(),
            Some(json!({"policy_id": ghost, "organization_id": c.organization_id})),
            "POLICY_NOT_FOUND",
        ),
        (
            Method::POST,
            "/v1/licenses".to_owned(),
            Some(json!({"policy_id": c.policy_id, "organization_id": ghost})),
            "ORGANIZATION_NOT_FOUND",
        ),
        (
            Method::POST,
            "/v1/policies".to_owned(),
            Some(
                json!({"product_id": ghost, "name": "P", "model": "node_locked", "seats": 1,
            "duration_days": null, "features": [], "offline_allowed": false, "offline_grace_days": 0, "payment_grace_days": 0}),
            ),
            "PRODUCT_NOT_FOUND",
        ),
        (
            Method::POST,
            "/v1/organizations".to_owned(),
            Some(json!({"name": "x", "kind": "customer", "parent_id": ghost})),
            "ORGANIZATION_NOT_FOUND",
        ),
        (
            Method::POST,
            "/v1/products".to_owned(),
            Some(json!({"name": "x", "kind": "plugin", "parent_product_id": ghost})),
            "PRODUCT_NOT_FOUND",
        ),
    ] {
        let answer = app.call(method.clone(), &path, body).await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {:?}",
            answer.body
        );
        assert_eq!(answer.code(), code, "{method} {path}");
    }
    let license = id(&app.issue(&c).await);
    let transfer = app
        .post(
            &format!("/v1/licenses/{license}/transfer"),
            json!({"organization_id": ghost}),
        )
        .await;
    assert_eq!(
        (transfer.status, transfer.code()),
        (StatusCode::NOT_FOUND, "ORGANIZATION_NOT_FOUND")
    );
    assert_eq!(
        app.event_count().await,
        before + 1,
        "only the license issue was written"
    );
    let route = app.get("/v1/nothing-here").await;
    assert_eq!(
        (route.status, route.code()),
        (StatusCode::NOT_FOUND, "ROUTE_NOT_FOUND")
    );
    let method = app.call(Method::DELETE, "/v1/licenses", None).await;
    assert_eq!(
        (method.status, method.code()),
        (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED")
    );
    app.stop().await;
}

#[tokio::test]
async fn invalid_transitions_are_unprocessable_with_a_stable_code_and_write_nothing() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let license = id(&app.issue(&c).await);
    let path = format!("/v1/licenses/{license}");
    let before = app.event_count().await;
    let reinstate_active = app
        .call(Method::POST, &format!("{path}/reinstate"), None)
        .await;
    assert_eq!(
        (reinstate_active.status, reinstate_active.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "LICENSE_NOT_SUSPENDED")
    );
    let renew_past = app
        .post(
            &format!("{path}/renew"),
            json!({"expires_at": "2001-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(renew_past.code(), "INVALID_EXPIRY");
    let same_org = app
        .post(
            &format!("{path}/transfer"),
            json!({"organization_id": c.organization_id}),
        )
        .await;
    assert_eq!(same_org.code(), "SAME_ORGANIZATION");
    let plugin_without_parent = app
        .post("/v1/products", json!({"name": "P", "kind": "plugin"}))
        .await;
    assert_eq!(
        (plugin_without_parent.status, plugin_without_parent.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "PARENT_PRODUCT_REQUIRED")
    );
    let expired_issue = app
        .post("/v1/licenses", json!({"policy_id": c.policy_id, "organization_id": c.organization_id, "expires_at": "2001-01-01T00:00:00Z"}))
        .await;
    assert_eq!(expired_issue.code(), "INVALID_EXPIRY");
    assert_eq!(app.event_count().await, before);

    app.post(&format!("{path}/suspend"), json!({"reason": "audit"}))
        .await;
    let twice = app
        .post(&format!("{path}/suspend"), json!({"reason": "audit"}))
        .await;
    assert_eq!(twice.code(), "LICENSE_ALREADY_SUSPENDED");
    app.post(&format!("{path}/revoke"), json!({"reason": "fraud"}))
        .await;
    let after_revoke = app.event_count().await;
    for (method, action, body) in [
        (
            Method::POST,
            "renew",
            Some(json!({"expires_at": "2099-01-01T00:00:00Z"})),
        ),
        (Method::POST, "reinstate", None),
        (Method::POST, "suspend", Some(json!({"reason": "again"}))),
        (Method::POST, "revoke", Some(json!({"reason": "again"}))),
        (Method::POST, "rotate-key", None),
        (Method::PUT, "seats", Some(json!({"seats": 1}))),
        (Method::PUT, "entitlements", Some(json!({"features": []}))),
    ] {
        let answer = app.call(method, &format!("{path}/{action}"), body).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "LICENSE_REVOKED"),
            "{action}"
        );
    }
    assert_eq!(app.event_count().await, after_revoke);
    let same_app = app
        .post(
            "/v1/products",
            json!({"name": "Clone", "kind": "application", "app_id": c.app_id}),
        )
        .await;
    assert_eq!(
        (same_app.status, same_app.code()),
        (StatusCode::CONFLICT, "APP_ID_TAKEN")
    );
    assert_eq!(app.event_count().await, after_revoke);
    app.stop().await;
}

/// "No body" is no body or `{}`: a JSON array, a field, or anything else is refused before the
/// command runs (an empty array used to pass for nothing).
#[tokio::test]
async fn routes_without_a_body_take_nothing_or_an_empty_object() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let license = app.issue(&c).await;
    let path = format!("/v1/licenses/{}", license["id"].as_str().unwrap());
    app.post(&format!("{path}/suspend"), json!({"reason": "audit"}))
        .await;
    let before = app.event_count().await;
    for body in [
        json!([]),
        json!([1]),
        json!({"x": 1}),
        json!(null),
        json!(""),
    ] {
        let answer = app
            .call(
                Method::POST,
                &format!("{path}/reinstate"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {:?}",
            answer.body
        );
    }
    assert_eq!(app.event_count().await, before);
    for body in [None, Some(json!({}))] {
        let answer = app
            .call(Method::POST, &format!("{path}/reinstate"), body)
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        app.post(&format!("{path}/suspend"), json!({"reason": "audit"}))
            .await;
    }
    app.stop().await;
}

/// Authorization is decided before the body is read: a role that may not write gets 403 for a
/// malformed body too, never the body's schema details (issue #15).
#[tokio::test]
async fn a_role_that_may_not_write_is_refused_before_its_body_is_read() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let license = app.issue(&c).await;
    let auditor = app.token(domain::values::Role::VendorAuditor).await;
    let support = app.token(domain::values::Role::VendorSupport).await;
    let bad = json!({"nonsense": [1, 2, 3]});
    let lid = id(&license);
    let writes = [
        (Method::POST, "/v1/organizations".to_owned()),
        (Method::POST, "/v1/products".to_owned()),
        (Method::POST, "/v1/policies".to_owned()),
        (Method::POST, "/v1/licenses".to_owned()),
        (Method::POST, format!("/v1/licenses/{lid}/renew")),
        (Method::POST, format!("/v1/licenses/{lid}/suspend")),
        (Method::POST, "/v1/tokens".to_owned()),
        (
            Method::PATCH,
            format!("/v1/organizations/{}", c.organization_id),
        ),
        (
            Method::POST,
            format!("/v1/organizations/{}/users", c.organization_id),
        ),
    ];
    let before = app.event_count().await;
    for (method, path) in &writes {
        let answer = app
            .call_as(&auditor, method.clone(), path, Some(bad.clone()), &[])
            .await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {:?}",
            answer.body
        );
        assert_eq!(answer.code(), "FORBIDDEN");
        assert!(
            answer.body.get("field").is_none(),
            "{method} {path}: {:?}",
            answer.body
        );
    }
    // Support may suspend: its malformed body is then the body's problem.
    let suspend = app
        .call_as(
            &support,
            Method::POST,
            &format!("/v1/licenses/{lid}/suspend"),
            Some(bad.clone()),
            &[],
        )
        .await;
    assert_eq!(
        suspend.status,
        StatusCode::BAD_REQUEST,
        "{:?}",
        suspend.body
    );
    assert_eq!(app.event_count().await, before);
}

/// A customer role holds at an organization: a token with one and no organization is bound to
/// nothing (service tokens name theirs: tests/tests/impersonation.rs).
#[tokio::test]
async fn a_token_with_a_customer_role_and_no_organization_is_refused() {
    let app = TestApp::start().await;
    let before = app.event_count().await;
    let answer = app
        .post("/v1/tokens", json!({"role": "customer_admin"}))
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{:?}", answer.body);
    assert_eq!(answer.body["code"], "INVALID_FIELD");
    assert_eq!(answer.body["field"], "organization_id");
    assert_eq!(app.event_count().await, before);
    let unknown = app.post("/v1/tokens", json!({"role": "superuser"})).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
}

/// A name made only of invisible characters names nothing: refused wherever a name is given.
#[tokio::test]
async fn names_made_only_of_invisible_characters_are_refused() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let before = app.event_count().await;
    for name in ["\u{200b}", "\u{200b}\u{200d}\u{feff}", " \u{2060} "] {
        for (method, path, body) in [
            (
                Method::POST,
                "/v1/organizations".to_owned(),
                json!({"name": name, "kind": "customer"}),
            ),
            (
                Method::PATCH,
                format!("/v1/organizations/{}", c.organization_id),
                json!({"name": name}),
            ),
            (
                Method::POST,
                "/v1/products".to_owned(),
                json!({"name": name, "kind": "application"}),
            ),
        ] {
            let answer = app.call(method.clone(), &path, Some(body)).await;
            assert_eq!(
                answer.status,
                StatusCode::BAD_REQUEST,
                "{method} {path} {name:?}: {:?}",
                answer.body
            );
            assert_eq!(answer.body["field"], "name");
        }
    }
    assert_eq!(app.event_count().await, before);
}
