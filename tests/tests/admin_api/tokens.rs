//! Authentication and authorization: missing, malformed and revoked bearer tokens, what each
//! role may do, and tokens minted and revoked over the API.

use reqwest::{Method, StatusCode};
use serde_json::json;
use tests::TestApp;

use crate::support::id;

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
