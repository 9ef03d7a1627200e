//! The administration API end to end: the real server on 127.0.0.1:0 against real PostgreSQL,
//! driven over HTTP. Every route, and every kind of bad input with its status and code — and,
//! for each refusal, that nothing was written.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tests::{TestApp, TestDb, test_config};

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

#[tokio::test]
async fn a_license_goes_through_its_whole_lifecycle_over_http() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let issued = app.issue(&c).await;
    let license = id(&issued);
    let key = issued["key"].as_str().unwrap();
    assert!(key.starts_with("ACMEST-"), "{key}");
    assert_eq!(issued["status"], "active");
    assert_eq!(issued["key_prefix"].as_str().unwrap(), &key[..11]);
    assert_eq!(issued["app_id"].as_str().unwrap(), c.app_id);
    assert_eq!(issued["seats"], 3);
    assert_eq!(issued["features"], json!(["pro"]));
    assert_eq!(issued["policy_version"], 1);

    let path = format!("/v1/licenses/{license}");
    let suspended = app
        .post(&format!("{path}/suspend"), json!({"reason": "chargeback"}))
        .await;
    assert_eq!(suspended.status, StatusCode::OK);
    assert_eq!(suspended.body["status"], "suspended");
    assert_eq!(suspended.body["suspension_reason"], "chargeback");

    let reinstated = app
        .call(Method::POST, &format!("{path}/reinstate"), None)
        .await;
    assert_eq!(reinstated.status, StatusCode::OK);
    assert_eq!(reinstated.body["status"], "active");

    let renewed = app
        .post(
            &format!("{path}/renew"),
            json!({"expires_at": "2099-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(renewed.status, StatusCode::OK, "{:?}", renewed.body);
    assert_eq!(renewed.body["expires_at"], "2099-01-01T00:00:00Z");

    let other = app
        .post(
            "/v1/organizations",
            json!({"name": "Globex", "kind": "customer"}),
        )
        .await;
    let transferred = app
        .post(
            &format!("{path}/transfer"),
            json!({"organization_id": id(&other.body)}),
        )
        .await;
    assert_eq!(transferred.status, StatusCode::OK);
    assert_eq!(transferred.body["organization_id"], other.body["id"]);

    let entitled = app
        .put(
            &format!("{path}/entitlements"),
            json!({"features": ["pro", "export.pdf"]}),
        )
        .await;
    assert_eq!(entitled.body["features"], json!(["export.pdf", "pro"]));
    let seats = app
        .put(&format!("{path}/seats"), json!({"seats": 10}))
        .await;
    assert_eq!(seats.body["seats"], 10);
    let maintained = app
        .put(
            &format!("{path}/maintenance"),
            json!({"until": "2030-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(maintained.body["maintenance_until"], "2030-01-01T00:00:00Z");

    let rotated = app
        .call(Method::POST, &format!("{path}/rotate-key"), None)
        .await;
    assert_eq!(rotated.status, StatusCode::OK);
    let new_key = rotated.body["key"].as_str().unwrap();
    assert_ne!(new_key, key);
    assert_eq!(rotated.body["key_prefix"].as_str().unwrap(), &new_key[..11]);
    assert!(rotated.body.get("key").is_some());

    let revoked = app
        .post(
            &format!("{path}/revoke"),
            json!({"reason": "contract ended"}),
        )
        .await;
    assert_eq!(revoked.body["status"], "revoked");
    assert_eq!(revoked.body["version"], 10);

    let read = app.get(&path).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["status"], "revoked");
    assert_eq!(read.body["version"], 10);
    assert!(
        read.body.get("key").is_none(),
        "the key is never shown again"
    );

    // The events, chained: each previous_hash is the hash of the event before.
    let events = app.get(&format!("{path}/events")).await;
    let list = events.body["events"].as_array().unwrap();
    let types: Vec<&str> = list.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "LicenseIssued",
            "LicenseSuspended",
            "LicenseReinstated",
            "LicenseRenewed",
            "LicenseTransferred",
            "EntitlementsChanged",
            "SeatsChanged",
            "MaintenanceExtended",
            "LicenseKeyRotated",
            "LicenseRevoked"
        ]
    );
    assert_eq!(list[0]["previous_hash"], "0".repeat(64));
    for pair in list.windows(2) {
        assert_eq!(pair[1]["previous_hash"], pair[0]["hash"]);
        assert!(pair[0]["position"].as_i64() < pair[1]["position"].as_i64());
    }
    assert!(list.iter().all(|e| {
        e["metadata"]["actor"]
            .as_str()
            .unwrap()
            .starts_with("api_token:")
    }));
    assert!(
        !events.body.to_string().contains(key),
        "the key never appears in the log"
    );

    // The read model caught up: the license is listed under its new organization.
    app.projected().await;
    let listed = app
        .get(&format!("/v1/organizations/{}/licenses", id(&other.body)))
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["licenses"][0]["id"], license.as_str());
    assert_eq!(listed.body["licenses"][0]["status"], "revoked");
    let old_owner = app
        .get(&format!("/v1/organizations/{}/licenses", c.organization_id))
        .await;
    assert_eq!(old_owner.body["licenses"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn catalogue_resources_can_be_read_back_and_listed() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let org = app
        .get(&format!("/v1/organizations/{}", c.organization_id))
        .await;
    assert_eq!(org.body["name"], "Acme GmbH");
    let child = app
        .post(
            "/v1/organizations",
            json!({"name": "Acme Berlin", "kind": "customer", "parent_id": c.organization_id}),
        )
        .await;
    assert_eq!(child.status, StatusCode::CREATED);
    assert_eq!(child.body["parent_id"], c.organization_id.as_str());
    assert_eq!(
        child.header("location").unwrap(),
        format!("/v1/organizations/{}", id(&child.body))
    );
    let product = app.get(&format!("/v1/products/{}", c.product_id)).await;
    assert_eq!(product.body["app_id"], c.app_id.as_str());
    let plugin = app
        .post("/v1/products", json!({"name": "Render Plugin", "kind": "plugin", "parent_product_id": c.product_id, "key_prefix": "RNDR"}))
        .await;
    assert_eq!(plugin.status, StatusCode::CREATED, "{:?}", plugin.body);
    assert_eq!(plugin.body["key_prefix"], "RNDR");
    let policy = app.get(&format!("/v1/policies/{}", c.policy_id)).await;
    assert_eq!(
        (policy.body["version"].clone(), policy.body["seats"].clone()),
        (json!(1), json!(3))
    );

    // Revising makes version 2; issued licenses keep version 1.
    let license = app.issue(&c).await;
    let revised = app
        .put(
            &format!("/v1/policies/{}", c.policy_id),
            json!({"name": "Pro", "model": "floating", "seats": 5, "duration_days": null, "features": ["pro"],
                   "offline_allowed": false, "offline_grace_days": 0, "payment_grace_days": 7}),
        )
        .await;
    assert_eq!(revised.status, StatusCode::OK, "{:?}", revised.body);
    assert_eq!(revised.body["version"], 2);
    assert_eq!(revised.body["lease_seconds"], 900);
    let still_v1 = app.get(&format!("/v1/licenses/{}", id(&license))).await;
    assert_eq!(still_v1.body["policy_version"], 1);
    assert_eq!(still_v1.body["model"], "node_locked");
    let v2 = app.issue(&c).await;
    assert_eq!(v2["policy_version"], 2);
    assert_eq!(v2["expires_at"], Value::Null, "version 2 is perpetual");

    let retired = app
        .call(
            Method::POST,
            &format!("/v1/policies/{}/retire", c.policy_id),
            None,
        )
        .await;
    assert_eq!(retired.body["retired"], true);
    let refused = app
        .post(
            "/v1/licenses",
            json!({"policy_id": c.policy_id, "organization_id": c.organization_id}),
        )
        .await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "POLICY_RETIRED")
    );

    app.projected().await;
    let orgs = app.get("/v1/organizations").await;
    assert_eq!(orgs.body["organizations"].as_array().unwrap().len(), 2);
    let children = app
        .get(&format!(
            "/v1/organizations?parent_id={}",
            c.organization_id
        ))
        .await;
    assert_eq!(children.body["organizations"].as_array().unwrap().len(), 1);
    let products = app.get("/v1/products?limit=1").await;
    assert_eq!(products.body["products"].as_array().unwrap().len(), 1);
    let next = products.body["next_cursor"]
        .as_str()
        .expect("a second page");
    let page2 = app.get(&format!("/v1/products?limit=1&after={next}")).await;
    assert_eq!(page2.body["products"][0]["name"], "Render Plugin");
    let policies = app
        .get(&format!("/v1/policies?product_id={}", c.product_id))
        .await;
    assert_eq!(policies.body["policies"][0]["version"], 2);
    assert_eq!(policies.body["policies"][0]["retired"], true);
    let projections = app.get("/v1/projections").await;
    assert_eq!(
        projections.body["projections"].as_array().unwrap().len(),
        projections::all().len()
    );
    app.stop().await;
}

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

#[tokio::test]
async fn missing_bad_or_revoked_tokens_are_unauthorized_and_roles_are_enforced() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let license = id(&app.issue(&c).await);
    let auditor = app.token(domain::values::Role::VendorAuditor).await;
    let support = app.token(domain::values::Role::VendorSupport).await;
    let before = app.event_count().await;
    let anonymous = app
        .client
        .get(format!("{}/v1/licenses/{license}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    for bad in [
        "nonsense",
        "llt_0000_0000",
        &format!("{}x", app.admin_token),
        &app.admin_token.replace("llt_0", "llt_1"),
    ] {
        let answer = app
            .call_as(
                bad,
                Method::GET,
                &format!("/v1/licenses/{license}"),
                None,
                &[],
            )
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            "{bad}"
        );
    }
    let read = app
        .call_as(
            &auditor,
            Method::GET,
            &format!("/v1/licenses/{license}"),
            None,
            &[],
        )
        .await;
    assert_eq!(read.status, StatusCode::OK);
    let write = app
        .call_as(
            &auditor,
            Method::POST,
            &format!("/v1/licenses/{license}/suspend"),
            Some(json!({"reason": "x"})),
            &[],
        )
        .await;
    assert_eq!(
        (write.status, write.code()),
        (StatusCode::FORBIDDEN, "FORBIDDEN")
    );
    let suspend = app
        .call_as(
            &support,
            Method::POST,
            &format!("/v1/licenses/{license}/suspend"),
            Some(json!({"reason": "x"})),
            &[],
        )
        .await;
    assert_eq!(suspend.status, StatusCode::OK);
    let revoke = app
        .call_as(
            &support,
            Method::POST,
            &format!("/v1/licenses/{license}/revoke"),
            Some(json!({"reason": "x"})),
            &[],
        )
        .await;
    assert_eq!(revoke.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.event_count().await,
        before + 1,
        "only the support suspension was written"
    );

    // An administrator mints a short-lived auditor token over the API, then revokes it.
    let minted = app
        .post(
            "/v1/tokens",
            json!({"role": "vendor_auditor", "ttl_seconds": 600, "label": "audit 2026"}),
        )
        .await;
    assert_eq!(minted.status, StatusCode::CREATED, "{:?}", minted.body);
    let token = minted.body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        app.call_as(&token, Method::GET, "/v1/products", None, &[])
            .await
            .status,
        StatusCode::OK
    );
    let revoked = app
        .call(
            Method::POST,
            &format!("/v1/tokens/{}/revoke", id(&minted.body)),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    let after = app
        .call_as(&token, Method::GET, "/v1/products", None, &[])
        .await;
    assert_eq!(
        after.status,
        StatusCode::UNAUTHORIZED,
        "revocation takes effect at once"
    );
    let escalate = app
        .call_as(
            &support,
            Method::POST,
            "/v1/tokens",
            Some(json!({"role": "vendor_admin"})),
            &[],
        )
        .await;
    assert_eq!(escalate.status, StatusCode::FORBIDDEN);
    app.stop().await;
}

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
    .fetch_one(app.server.state.ledger.store().pool())
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
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(
        again.body["key"],
        Value::Null,
        "the key is shown to the first request only"
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

#[tokio::test]
async fn a_license_can_be_read_as_of_an_earlier_instant() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let license = id(&app.issue(&c).await);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let before_suspension = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    app.post(
        &format!("/v1/licenses/{license}/suspend"),
        json!({"reason": "audit"}),
    )
    .await;
    let then = app
        .get(&format!(
            "/v1/licenses/{license}?as_of={}",
            before_suspension.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        ))
        .await;
    assert_eq!(then.status, StatusCode::OK, "{:?}", then.body);
    assert_eq!(
        (then.body["status"].clone(), then.body["version"].clone()),
        (json!("active"), json!(1))
    );
    let now = app.get(&format!("/v1/licenses/{license}")).await;
    assert_eq!(now.body["status"], "suspended");
    let before_issue = app
        .get(&format!(
            "/v1/licenses/{license}?as_of=2000-01-01T00:00:00Z"
        ))
        .await;
    assert_eq!(before_issue.status, StatusCode::NOT_FOUND);
    let bad = app
        .get(&format!("/v1/licenses/{license}?as_of=yesterday"))
        .await;
    assert_eq!(
        (bad.status, bad.code()),
        (StatusCode::BAD_REQUEST, "INVALID_QUERY")
    );
    app.stop().await;
}

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
