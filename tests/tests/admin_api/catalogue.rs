//! The catalogue a license is issued from: organizations (and their children), products (and
//! plugins), policies (revised into new versions, then retired), read back and listed in pages.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tests::TestApp;

use crate::support::id;

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

/// Corporate > subsidiary > location needs three levels; the ledger allows 32 and refuses the
/// 33rd with a clear code, writing nothing.
#[tokio::test]
async fn an_organization_tree_deeper_than_32_levels_is_refused() {
    let app = TestApp::start().await;
    let mut parent: Option<String> = None;
    for depth in 1..=32 {
        let mut body = json!({"name": format!("Level {depth}"), "kind": "customer"});
        if let Some(p) = &parent {
            body["parent_id"] = json!(p);
        }
        let created = app.post("/v1/organizations", body).await;
        assert_eq!(
            created.status,
            StatusCode::CREATED,
            "level {depth}: {:?}",
            created.body
        );
        parent = Some(id(&created.body));
    }
    let before = app.event_count().await;
    let deeper = app
        .post(
            "/v1/organizations",
            json!({"name": "Level 33", "kind": "customer", "parent_id": parent}),
        )
        .await;
    assert_eq!(
        (deeper.status, deeper.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "ORGANIZATION_TOO_DEEP"),
        "{:?}",
        deeper.body
    );
    assert_eq!(app.event_count().await, before);
    app.stop().await;
}
