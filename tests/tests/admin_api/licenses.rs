//! A license over HTTP: every lifecycle command in turn, the chained event log it leaves, the
//! read model catching up, and reads as of an earlier instant.

use reqwest::{Method, StatusCode};
use serde_json::json;
use tests::TestApp;

use crate::support::id;

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

/// A license transferred in shows its new owner nothing of its time with the former one: its
/// past at an instant the former owner held it answers as unknown, as the present answers the
/// former owner; vendors read both.
#[tokio::test]
async fn a_transferred_licenses_past_stays_its_former_owners() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let acme = c.organization_id.clone();
    let globex = app
        .post(
            "/v1/organizations",
            json!({"name": "Globex", "kind": "customer"}),
        )
        .await;
    let globex = globex.body["id"].as_str().unwrap().to_owned();
    let license = app
        .post(
            "/v1/licenses",
            json!({"policy_id": c.policy_id, "organization_id": globex}),
        )
        .await;
    let id = license.body["id"].as_str().unwrap().to_owned();
    let suspended = app
        .post(
            &format!("/v1/licenses/{id}/suspend"),
            json!({"reason": "Globex unpaid invoice INV-778"}),
        )
        .await;
    assert_eq!(suspended.status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let then = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let moved = app
        .post(
            &format!("/v1/licenses/{id}/transfer"),
            json!({"organization_id": acme}),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    let token = |org: String| {
        let app = &app;
        async move {
            let minted = app
                .post(
                    "/v1/tokens",
                    json!({"role": "license_manager", "organization_id": org}),
                )
                .await;
            minted.body["token"].as_str().unwrap().to_owned()
        }
    };
    let (acme_token, globex_token) = (token(acme.clone()).await, token(globex.clone()).await);
    let as_of = format!("/v1/licenses/{id}?as_of={then}");
    let now = format!("/v1/licenses/{id}");
    let unknown = format!("/v1/licenses/{}?as_of={then}", uuid::Uuid::now_v7());
    assert_eq!(
        app.call_as(&acme_token, Method::GET, &now, None, &[])
            .await
            .status,
        StatusCode::OK
    );
    let past = app
        .call_as(&acme_token, Method::GET, &as_of, None, &[])
        .await;
    let none = app
        .call_as(&acme_token, Method::GET, &unknown, None, &[])
        .await;
    assert_eq!(past.status, StatusCode::NOT_FOUND);
    assert_eq!(past.code(), none.code());
    assert!(
        !format!("{:?}", past.body).contains("INV-778"),
        "nothing of the former owner's time: {:?}",
        past.body
    );
    assert_eq!(
        app.call_as(&globex_token, Method::GET, &now, None, &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let vendor = app.get(&as_of).await;
    assert_eq!(vendor.status, StatusCode::OK);
    assert_eq!(vendor.body["organization_id"], json!(globex));
    assert_eq!(
        vendor.body["suspension_reason"],
        "Globex unpaid invoice INV-778"
    );
}
