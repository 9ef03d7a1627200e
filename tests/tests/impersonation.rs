//! Service tokens and impersonation (issue #15), end to end: a token bound to an organization
//! acts with its customer role there and nowhere else; vendor support acts as a customer's user
//! with exactly that user's rights, every event naming the user as `actor` and the staff member
//! as `impersonated_by`, and `GET /v1/audit?actor=` finds those events by either.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tests::idp::{IdpUser, TestIdp};
use tests::{TestApp, TestDb, test_config};

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> tests::Answer {
    app.call_as(token, method, path, body, &[]).await
}

fn actions(audit: &Value) -> Vec<(String, String, Option<String>)> {
    audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
                e["impersonated_by"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_service_token_holds_its_customer_role_at_its_organization_only() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let acme = c.organization_id.clone();
    let own = id(&app.issue(&c).await);
    let globex = app
        .post(
            "/v1/organizations",
            json!({"name": "Globex", "kind": "customer"}),
        )
        .await;
    let globex = id(&globex.body);
    let foreign = app
        .post(
            "/v1/licenses",
            json!({"policy_id": c.policy_id, "organization_id": globex}),
        )
        .await;
    let foreign = id(&foreign.body);

    let minted = app
        .post(
            "/v1/tokens",
            json!({"role": "license_manager", "organization_id": acme, "label": "Acme's CRM"}),
        )
        .await;
    assert_eq!(minted.status, StatusCode::CREATED, "{:?}", minted.body);
    assert_eq!(minted.body["role"], "license_manager");
    assert_eq!(minted.body["organization_id"], acme);
    let token = minted.body["token"].as_str().unwrap().to_owned();
    let token_id = id(&minted.body);

    // Acme's licenses: yes; Globex's: exactly as unknown; the vendor-wide list: 403.
    let read = call(
        &app,
        &token,
        Method::GET,
        &format!("/v1/licenses/{own}"),
        None,
    )
    .await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    let out = call(
        &app,
        &token,
        Method::GET,
        &format!("/v1/licenses/{foreign}"),
        None,
    )
    .await;
    let unknown_id = uuid::Uuid::now_v7().to_string();
    let unknown = call(
        &app,
        &token,
        Method::GET,
        &format!("/v1/licenses/{unknown_id}"),
        None,
    )
    .await;
    assert_eq!(out.status, StatusCode::NOT_FOUND);
    assert_eq!(
        out.body.to_string().replace(&foreign, "ID"),
        unknown.body.to_string().replace(&unknown_id, "ID")
    );
    let all = call(&app, &token, Method::GET, "/v1/licenses", None).await;
    assert_eq!(all.status, StatusCode::FORBIDDEN);
    // A license manager does not manage users: 403 before the body is read.
    let users = call(
        &app,
        &token,
        Method::POST,
        &format!("/v1/organizations/{acme}/users"),
        Some(json!({"email": 7})),
    )
    .await;
    assert_eq!(users.status, StatusCode::FORBIDDEN, "{:?}", users.body);
    // It names a user of Acme on Acme's license; the audit trail names the token.
    let bo = app
        .post(
            &format!("/v1/organizations/{acme}/users"),
            json!({"email": "bo@acme.example", "roles": []}),
        )
        .await;
    let assigned = call(
        &app,
        &token,
        Method::POST,
        &format!("/v1/licenses/{own}/assignments"),
        Some(json!({"user_id": id(&bo.body)})),
    )
    .await;
    assert_eq!(assigned.status, StatusCode::CREATED, "{:?}", assigned.body);
    let me = call(&app, &token, Method::GET, "/v1/me", None).await;
    assert_eq!(me.body["principal"]["kind"], "token");
    assert_eq!(
        me.body["roles"],
        json!([{"organization_id": acme, "role": "license_manager"}])
    );
    assert_eq!(me.body["all_organizations"], false);
    app.projected().await;
    let audit = app
        .get(&format!("/v1/audit?actor=api_token:{token_id}"))
        .await;
    assert_eq!(
        actions(&audit.body),
        vec![(
            "LicenseAssigned".to_owned(),
            format!("api_token:{token_id}"),
            None
        )]
    );

    // Bad input, nothing minted: a customer role bound to nothing, a vendor role bound to an
    // organization, an organization that does not exist.
    let before = app.event_count().await;
    for (body, status, code) in [
        (
            json!({"role": "license_manager"}),
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD",
        ),
        (
            json!({"role": "vendor_support", "organization_id": acme}),
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD",
        ),
        (
            json!({"role": "customer_admin", "organization_id": unknown_id}),
            StatusCode::NOT_FOUND,
            "ORGANIZATION_NOT_FOUND",
        ),
        (
            json!({"role": "owner", "organization_id": acme}),
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD",
        ),
    ] {
        let refused = app.post("/v1/tokens", body.clone()).await;
        assert_eq!(refused.status, status, "{body}: {:?}", refused.body);
        assert_eq!(refused.body["code"], code, "{body}");
    }
    assert_eq!(app.event_count().await, before);
    let closed = app
        .post(&format!("/v1/organizations/{globex}/close"), json!({}))
        .await;
    assert_eq!(closed.status, StatusCode::OK, "{:?}", closed.body);
    let before = app.event_count().await;
    let refused = app
        .post(
            "/v1/tokens",
            json!({"role": "customer_admin", "organization_id": globex}),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        refused.body
    );
    assert_eq!(refused.body["code"], "ORGANIZATION_CLOSED");
    assert_eq!(app.event_count().await, before);

    // Revoked: 401 on the next request.
    let revoked = app
        .post(&format!("/v1/tokens/{token_id}/revoke"), json!({}))
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    let after = call(
        &app,
        &token,
        Method::GET,
        &format!("/v1/licenses/{own}"),
        None,
    )
    .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn support_acts_as_a_customer_user_and_the_audit_names_both() {
    let idp = TestIdp::start().await;
    let db = TestDb::create().await;
    let mut config = test_config(&db);
    config.app.oidc.issuers = vec![domain::values::Issuer::parse(idp.issuer()).unwrap()];
    let app = TestApp::start_with(db, config).await;
    let c = app.catalogue().await;
    let acme = c.organization_id.clone();
    let license = id(&app.issue(&c).await);
    let globex = app
        .post(
            "/v1/organizations",
            json!({"name": "Globex", "kind": "customer"}),
        )
        .await;
    let globex = id(&globex.body);
    let ana = app
        .post(
            &format!("/v1/organizations/{acme}/users"),
            json!({"email": "ana@acme.example", "roles": ["customer_admin"],
                   "issuer": idp.issuer(), "subject": "ana-1"}),
        )
        .await;
    assert_eq!(ana.status, StatusCode::CREATED, "{:?}", ana.body);
    let ana = id(&ana.body);
    let support = app.token(domain::values::Role::VendorSupport).await;
    let support_me = call(&app, &support, Method::GET, "/v1/me", None).await;
    let support_actor = format!(
        "api_token:{}",
        support_me.body["principal"]["id"].as_str().unwrap()
    );

    // Support starts an impersonation of Ana for a ticket.
    let started = call(
        &app,
        &support,
        Method::POST,
        "/v1/impersonations",
        Some(
            json!({"user_id": ana, "reason": "ticket 4711: cannot see Berlin", "ttl_seconds": 600}),
        ),
    )
    .await;
    assert_eq!(started.status, StatusCode::CREATED, "{:?}", started.body);
    assert_eq!(started.body["user_id"], ana);
    let token = started.body["token"].as_str().unwrap().to_owned();
    let impersonation = id(&started.body);
    let expires: chrono::DateTime<chrono::Utc> = started.body["expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let lifetime = expires - chrono::Utc::now();
    assert!(
        lifetime <= chrono::Duration::seconds(600) && lifetime > chrono::Duration::seconds(590)
    );

    // The token is Ana, with her rights and no more, and says who is behind it.
    let me = call(&app, &token, Method::GET, "/v1/me", None).await;
    assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
    assert_eq!(me.body["principal"]["kind"], "user");
    assert_eq!(me.body["principal"]["id"], ana);
    assert_eq!(me.body["principal"]["impersonated_by"], support_actor);
    assert_eq!(
        call(
            &app,
            &token,
            Method::GET,
            &format!("/v1/licenses/{license}"),
            None
        )
        .await
        .status,
        StatusCode::OK
    );
    for (method, path) in [
        (Method::GET, format!("/v1/organizations/{globex}")),
        (Method::GET, "/v1/licenses".to_owned()),
        (Method::GET, "/v1/audit".to_owned()),
    ] {
        let answer = call(&app, &token, method, &path, None).await;
        assert!(
            matches!(answer.status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN),
            "{path}: {:?}",
            answer.status
        );
    }
    // Support may suspend licenses; as Ana it may not (she may not), nor impersonate again.
    let suspend = call(
        &app,
        &token,
        Method::POST,
        &format!("/v1/licenses/{license}/suspend"),
        Some(json!({"reason": "x"})),
    )
    .await;
    assert_eq!(suspend.status, StatusCode::FORBIDDEN);
    let again = call(
        &app,
        &token,
        Method::POST,
        "/v1/impersonations",
        Some(json!({"user_id": ana, "reason": "x"})),
    )
    .await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);

    // As Ana, support creates a location; the event names Ana and support.
    let berlin = call(
        &app,
        &token,
        Method::POST,
        "/v1/organizations",
        Some(json!({"name": "Acme Berlin", "kind": "customer", "parent_id": acme})),
    )
    .await;
    assert_eq!(berlin.status, StatusCode::CREATED, "{:?}", berlin.body);
    app.projected().await;
    let by_user = app.get(&format!("/v1/audit?actor=user:{ana}")).await;
    assert_eq!(
        actions(&by_user.body),
        vec![(
            "OrganizationRegistered".to_owned(),
            format!("user:{ana}"),
            Some(support_actor.clone())
        )]
    );
    let by_staff = app.get(&format!("/v1/audit?actor={support_actor}")).await;
    assert_eq!(
        actions(&by_staff.body),
        vec![
            (
                "ImpersonationStarted".to_owned(),
                support_actor.clone(),
                None
            ),
            (
                "OrganizationRegistered".to_owned(),
                format!("user:{ana}"),
                Some(support_actor.clone())
            ),
        ]
    );
    // The stored event carries both in its metadata.
    let stored: (String, String) = sqlx::query_as(
        "SELECT metadata->>'actor', metadata->>'impersonated_by' FROM events \
         WHERE event_type = 'OrganizationRegistered' AND aggregate_id = $1",
    )
    .bind(id(&berlin.body))
    .fetch_one(app.server.state.app.pool())
    .await
    .unwrap();
    assert_eq!(stored, (format!("user:{ana}"), support_actor.clone()));

    // Ana's own requests and support's requests as Ana keep apart idempotency keys: the same
    // key with another body is neither refused nor answered with the other's answer.
    let ana_token = idp
        .access_token(&IdpUser::verified("ana-1", "ana@acme.example"))
        .await;
    let mut names = Vec::new();
    for (bearer, name) in [(&ana_token, "Acme Hamburg"), (&token, "Acme Munich")] {
        let created = app
            .call_as(
                bearer,
                Method::POST,
                "/v1/organizations",
                Some(json!({"name": name, "kind": "customer", "parent_id": acme})),
                &[("idempotency-key", "create-location-1")],
            )
            .await;
        assert_eq!(
            created.status,
            StatusCode::CREATED,
            "{name}: {:?}",
            created.body
        );
        names.push(created.body["name"].as_str().unwrap().to_owned());
    }
    assert_eq!(names, vec!["Acme Hamburg", "Acme Munich"]);

    // Refusals: an auditor may not impersonate; over an hour; an unknown user; vendor staff.
    let auditor = app.token(domain::values::Role::VendorAuditor).await;
    let refused = call(
        &app,
        &auditor,
        Method::POST,
        "/v1/impersonations",
        Some(json!({"user_id": ana, "reason": "x"})),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let vendor_org = app
        .post(
            "/v1/organizations",
            json!({"name": "Vendor Inc", "kind": "vendor"}),
        )
        .await;
    let staff = app
        .post(
            &format!("/v1/organizations/{}/users", id(&vendor_org.body)),
            json!({"email": "vic@vendor.example", "roles": ["vendor_admin"]}),
        )
        .await;
    assert_eq!(staff.status, StatusCode::CREATED, "{:?}", staff.body);
    let before = app.event_count().await;
    for (body, status, code) in [
        (
            json!({"user_id": ana, "reason": "x", "ttl_seconds": 3601}),
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD",
        ),
        (
            json!({"user_id": ana, "reason": "x", "ttl_seconds": 59}),
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD",
        ),
        (
            json!({"user_id": ana, "reason": ""}),
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD",
        ),
        (
            json!({"user_id": uuid::Uuid::now_v7(), "reason": "x"}),
            StatusCode::NOT_FOUND,
            "USER_NOT_FOUND",
        ),
        (
            json!({"user_id": id(&staff.body), "reason": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "STAFF_NOT_IMPERSONATED",
        ),
    ] {
        let answer = call(
            &app,
            &support,
            Method::POST,
            "/v1/impersonations",
            Some(body.clone()),
        )
        .await;
        assert_eq!(answer.status, status, "{body}: {:?}", answer.body);
        assert_eq!(answer.body["code"], code, "{body}");
    }
    assert_eq!(app.event_count().await, before, "nothing half-written");

    // Support ends its impersonation early; the impersonation can end itself (the portal's
    // banner); anyone else may not end one.
    let start = |reason: &'static str| {
        let (app, support, ana) = (&app, &support, &ana);
        async move {
            let started = call(
                app,
                support,
                Method::POST,
                "/v1/impersonations",
                Some(json!({"user_id": ana, "reason": reason})),
            )
            .await;
            assert_eq!(started.status, StatusCode::CREATED, "{:?}", started.body);
            (
                id(&started.body),
                started.body["token"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (second, second_token) = start("follow-up").await;
    let not_theirs = call(
        &app,
        &second_token,
        Method::POST,
        &format!("/v1/tokens/{impersonation}/revoke"),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        not_theirs.status,
        StatusCode::FORBIDDEN,
        "{:?}",
        not_theirs.body
    );
    let ended = call(
        &app,
        &support,
        Method::POST,
        &format!("/v1/tokens/{impersonation}/revoke"),
        Some(json!({})),
    )
    .await;
    assert_eq!(ended.status, StatusCode::OK, "{:?}", ended.body);
    assert_eq!(
        call(&app, &token, Method::GET, "/v1/me", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&app, &second_token, Method::GET, "/v1/me", None)
            .await
            .status,
        StatusCode::OK
    );
    let itself = call(
        &app,
        &second_token,
        Method::POST,
        &format!("/v1/tokens/{second}/revoke"),
        None,
    )
    .await;
    assert_eq!(itself.status, StatusCode::OK, "{:?}", itself.body);
    assert_eq!(
        call(&app, &second_token, Method::GET, "/v1/me", None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    // The staff side is read at each request too: its token revoked, its impersonations stop.
    let other_support = app.token(domain::values::Role::VendorSupport).await;
    let other_id = call(&app, &other_support, Method::GET, "/v1/me", None)
        .await
        .body["principal"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let by_other = call(
        &app,
        &other_support,
        Method::POST,
        "/v1/impersonations",
        Some(json!({"user_id": ana, "reason": "night shift"})),
    )
    .await;
    let by_other = by_other.body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        call(&app, &by_other, Method::GET, "/v1/me", None)
            .await
            .status,
        StatusCode::OK
    );
    app.post(&format!("/v1/tokens/{other_id}/revoke"), json!({}))
        .await;
    assert_eq!(
        call(&app, &by_other, Method::GET, "/v1/me", None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    // A user who comes to hold a vendor role is no longer acted as (support would act with
    // staff rights).
    let val = app
        .post(
            &format!("/v1/organizations/{}/users", id(&vendor_org.body)),
            json!({"email": "val@vendor.example", "roles": []}),
        )
        .await;
    let val = id(&val.body);
    let as_val = call(
        &app,
        &support,
        Method::POST,
        "/v1/impersonations",
        Some(json!({"user_id": val, "reason": "before her first day"})),
    )
    .await;
    assert_eq!(as_val.status, StatusCode::CREATED, "{:?}", as_val.body);
    let as_val = as_val.body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        call(&app, &as_val, Method::GET, "/v1/me", None)
            .await
            .status,
        StatusCode::OK
    );
    let granted = app
        .put(
            &format!("/v1/users/{val}/roles"),
            json!({"organization_id": id(&vendor_org.body), "roles": ["vendor_admin"]}),
        )
        .await;
    assert_eq!(granted.status, StatusCode::OK, "{:?}", granted.body);
    for (method, path) in [(Method::GET, "/v1/me"), (Method::POST, "/v1/tokens")] {
        let answer = call(
            &app,
            &as_val,
            method,
            path,
            Some(json!({"role": "vendor_admin"})),
        )
        .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
    }

    // The user's side: Ana deactivated, acting as her stops.
    let (_, third_token) = start("last one").await;
    let off = app
        .post(&format!("/v1/users/{ana}/deactivate"), json!({}))
        .await;
    assert_eq!(off.status, StatusCode::OK);
    assert_eq!(
        call(&app, &third_token, Method::GET, "/v1/me", None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    app.stop().await;
}

/// Deactivating a user ends the impersonations of it: revoked, so that reactivating the user
/// does not bring a forgotten one back.
#[tokio::test]
async fn a_deactivation_ends_the_impersonations_of_the_user_for_good() {
    let idp = TestIdp::start().await;
    let db = TestDb::create().await;
    let mut config = test_config(&db);
    config.app.oidc.issuers = vec![domain::values::Issuer::parse(idp.issuer()).unwrap()];
    let app = TestApp::start_with(db, config).await;
    let c = app.catalogue().await;
    let acme = c.organization_id.clone();
    let ana = app
        .post(
            &format!("/v1/organizations/{acme}/users"),
            json!({"email": "ana@acme.example", "roles": ["customer_admin"],
                   "issuer": idp.issuer(), "subject": "ana-1"}),
        )
        .await;
    let ana = id(&ana.body);
    let support = app.token(domain::values::Role::VendorSupport).await;
    let started = call(
        &app,
        &support,
        Method::POST,
        "/v1/impersonations",
        Some(json!({"user_id": ana, "reason": "ticket 4712", "ttl_seconds": 900})),
    )
    .await;
    assert_eq!(started.status, StatusCode::CREATED, "{:?}", started.body);
    let token = started.body["token"].as_str().unwrap().to_owned();
    let me = call(&app, &token, Method::GET, "/v1/me", None).await;
    assert_eq!(me.status, StatusCode::OK);

    for step in ["deactivate", "reactivate"] {
        let answer = app
            .post(&format!("/v1/users/{ana}/{step}"), json!({}))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{step}: {:?}", answer.body);
    }
    let me = call(&app, &token, Method::GET, "/v1/me", None).await;
    assert_eq!(
        me.status,
        StatusCode::UNAUTHORIZED,
        "revoked at the deactivation: {:?}",
        me.body
    );
    // A retried deactivation finds nothing left to revoke, and fails on nothing.
    for step in ["deactivate", "deactivate"] {
        let answer = app
            .post(&format!("/v1/users/{ana}/{step}"), json!({}))
            .await;
        assert!(
            matches!(
                answer.status,
                StatusCode::OK | StatusCode::UNPROCESSABLE_ENTITY
            ),
            "{step}: {:?}",
            answer.body
        );
    }
    app.stop().await;
}
