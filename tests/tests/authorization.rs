//! The authorization matrix (issue #15): routes × principals, the expected status of every cell
//! from one table, against the real server with tokens of the real identity provider. A cell
//! expected 404 must answer byte for byte as the same request for an unknown id (ids aside): no
//! principal learns that a resource out of its reach exists.
//!
//! Principals: the three vendor roles (administration tokens); users holding `customer_admin`
//! at a parent, at its child and at a foreign organization; `license_manager` and
//! `support_contact` at the parent; a partner's admin whose partner the parent is delegated to;
//! one whose delegation was revoked; a deactivated user; a service token holding
//! `customer_admin` at the parent; and vendor support impersonating the parent's admin. The
//! last two answer exactly as the parent's admin does: a token acts with the rights it holds,
//! whoever holds it.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tests::idp::{IdpUser, TestIdp};
use tests::{TestApp, TestDb, test_config};

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

/// The principals, in the table's column order.
const PRINCIPALS: [&str; 13] = [
    "vendor_admin",
    "vendor_support",
    "vendor_auditor",
    "admin@parent",
    "admin@child",
    "license_manager@parent",
    "support_contact@parent",
    "admin@foreign",
    "partner",
    "revoked partner",
    "deactivated",
    "service token",
    "impersonation",
];

/// A route: what to send, and for a 404 cell the same request about unknown ids.
struct Route {
    name: &'static str,
    method: Method,
    path: String,
    unknown_path: String,
    body: Option<Value>,
    /// The expected status per principal, in [`PRINCIPALS`] order.
    expected: [u16; 13],
}

#[tokio::test]
async fn every_route_answers_every_principal_as_the_table_says() {
    let idp = TestIdp::start().await;
    let db = TestDb::create().await;
    let mut config = test_config(&db);
    config.app.oidc.issuers = vec![domain::values::Issuer::parse(idp.issuer()).unwrap()];
    let app = TestApp::start_with(db, config).await;

    // The world: Parent > Child; Foreign; Partner (delegated Parent); Partner2 (revoked).
    let c = app.catalogue().await;
    let parent = c.organization_id.clone();
    let mk = |name: &'static str, kind: &'static str, parent: Option<String>| {
        let app = &app;
        async move {
            let a = app
                .post(
                    "/v1/organizations",
                    json!({"name": name, "kind": kind, "parent_id": parent}),
                )
                .await;
            assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
            id(&a.body)
        }
    };
    let child = mk("Child", "customer", Some(parent.clone())).await;
    let foreign = mk("Foreign", "customer", None).await;
    let partner = mk("Partner", "partner", None).await;
    let partner2 = mk("Partner Two", "partner", None).await;
    let license = id(&app.issue(&c).await);
    for p in [&partner, &partner2] {
        let d = app
            .post(
                &format!("/v1/organizations/{parent}/delegations"),
                json!({"partner_id": p}),
            )
            .await;
        assert_eq!(d.status, StatusCode::OK, "{:?}", d.body);
    }
    let revoke = app
        .call(
            Method::DELETE,
            &format!("/v1/organizations/{parent}/delegations/{partner2}"),
            None,
        )
        .await;
    assert_eq!(revoke.status, StatusCode::OK);

    // Users, linked to the provider's identities at once.
    let user = |org: String, subject: &'static str, role: &'static str| {
        let app = &app;
        let idp = &idp;
        async move {
            let email = format!("{subject}@example.com");
            let created = app
                .post(
                    &format!("/v1/organizations/{org}/users"),
                    json!({"email": email, "roles": [role], "issuer": idp.issuer(), "subject": subject}),
                )
                .await;
            assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
            (
                id(&created.body),
                idp.access_token(&IdpUser::verified(subject, &email)).await,
            )
        }
    };
    let mut tokens = vec![
        app.admin_token.clone(),
        app.token(domain::values::Role::VendorSupport).await,
        app.token(domain::values::Role::VendorAuditor).await,
    ];
    let mut admin_parent = String::new();
    for (org, subject, role) in [
        (parent.clone(), "admin-parent", "customer_admin"),
        (child.clone(), "admin-child", "customer_admin"),
        (parent.clone(), "manager-parent", "license_manager"),
        (parent.clone(), "contact-parent", "support_contact"),
        (foreign.clone(), "admin-foreign", "customer_admin"),
        (partner.clone(), "admin-partner", "customer_admin"),
        (partner2.clone(), "admin-partner-two", "customer_admin"),
    ] {
        let (user_id, token) = user(org, subject, role).await;
        if subject == "admin-parent" {
            admin_parent = user_id;
        }
        tokens.push(token);
    }
    let (gone, gone_token) = user(parent.clone(), "gone-parent", "customer_admin").await;
    let off = app
        .post(&format!("/v1/users/{gone}/deactivate"), json!({}))
        .await;
    assert_eq!(off.status, StatusCode::OK);
    tokens.push(gone_token);
    let service = app
        .post(
            "/v1/tokens",
            json!({"role": "customer_admin", "organization_id": parent, "label": "parent's CRM"}),
        )
        .await;
    assert_eq!(service.status, StatusCode::CREATED, "{:?}", service.body);
    tokens.push(service.body["token"].as_str().unwrap().to_owned());
    let support = tokens[1].clone();
    let impersonation = app
        .call_as(
            &support,
            Method::POST,
            "/v1/impersonations",
            Some(json!({"user_id": admin_parent, "reason": "ticket 17"})),
            &[],
        )
        .await;
    assert_eq!(
        impersonation.status,
        StatusCode::CREATED,
        "{:?}",
        impersonation.body
    );
    tokens.push(impersonation.body["token"].as_str().unwrap().to_owned());
    assert_eq!(tokens.len(), PRINCIPALS.len());
    app.projected().await;

    let unknown = uuid::Uuid::now_v7().to_string();
    let o = |org: &str, rest: &str| format!("/v1/organizations/{org}{rest}");
    let get = |name, path: String, unknown_path: String, expected| Route {
        name,
        method: Method::GET,
        path,
        unknown_path,
        body: None,
        expected,
    };
    //             vadmin vsupp vaud  a@par a@chi lm@p  sc@p  a@for partn revok deact svc   imp
    let read_org = [
        200, 200, 200, 200, 404, 403, 200, 404, 200, 404, 401, 200, 200,
    ];
    let read_child = [
        200, 200, 200, 200, 200, 403, 200, 404, 200, 404, 401, 200, 200,
    ];
    let read_licenses = [
        200, 200, 200, 200, 404, 200, 200, 404, 200, 404, 401, 200, 200,
    ];
    let read_users = [
        200, 200, 200, 200, 404, 403, 403, 404, 200, 404, 401, 200, 200,
    ];
    let vendor_wide = [
        200, 200, 200, 403, 403, 403, 403, 403, 403, 403, 401, 403, 403,
    ];
    let everyone = [
        200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 401, 200, 200,
    ];
    let routes = vec![
        get(
            "GET organization",
            o(&parent, ""),
            o(&unknown, ""),
            read_org,
        ),
        get(
            "GET child organization",
            o(&child, ""),
            o(&unknown, ""),
            read_child,
        ),
        get(
            "GET children",
            o(&parent, "/children"),
            o(&unknown, "/children"),
            read_org,
        ),
        get(
            "GET licenses of",
            o(&parent, "/licenses?include_descendants=true"),
            o(&unknown, "/licenses?include_descendants=true"),
            read_licenses,
        ),
        get(
            "GET installations of",
            o(&parent, "/installations"),
            o(&unknown, "/installations"),
            read_licenses,
        ),
        get(
            "GET entitlements of",
            o(&parent, "/entitlements"),
            o(&unknown, "/entitlements"),
            read_licenses,
        ),
        get(
            "GET subscriptions of",
            o(&parent, "/subscriptions?include_descendants=true"),
            o(&unknown, "/subscriptions?include_descendants=true"),
            //  vadmin vsupp vaud  a@par a@chi lm@p  sc@p  a@for partn revok deact svc   imp
            [
                200, 200, 200, 200, 404, 403, 403, 404, 200, 404, 401, 200, 200,
            ],
        ),
        get(
            "GET users of",
            o(&parent, "/users"),
            o(&unknown, "/users"),
            read_users,
        ),
        get(
            "GET license",
            format!("/v1/licenses/{license}"),
            format!("/v1/licenses/{unknown}"),
            read_licenses,
        ),
        get(
            "GET license as of",
            format!("/v1/licenses/{license}?as_of=2030-01-01T00:00:00Z"),
            format!("/v1/licenses/{unknown}?as_of=2030-01-01T00:00:00Z"),
            read_licenses,
        ),
        get(
            "GET all licenses",
            "/v1/licenses".into(),
            "/v1/licenses".into(),
            vendor_wide,
        ),
        get(
            "GET audit",
            "/v1/audit".into(),
            "/v1/audit".into(),
            vendor_wide,
        ),
        get(
            "GET products",
            "/v1/products".into(),
            "/v1/products".into(),
            vendor_wide,
        ),
        get("GET me", "/v1/me".into(), "/v1/me".into(), everyone),
        Route {
            name: "PATCH child organization",
            method: Method::PATCH,
            path: o(&child, ""),
            unknown_path: o(&unknown, ""),
            body: Some(json!({"name": "Child renamed"})),
            //        vadmin vsupp vaud  a@par a@chi lm@p  sc@p  a@for partn revok deact svc   imp
            expected: [
                200, 403, 403, 200, 200, 403, 403, 404, 200, 404, 401, 200, 200,
            ],
        },
        Route {
            name: "POST users of",
            method: Method::POST,
            path: o(&parent, "/users"),
            unknown_path: o(&unknown, "/users"),
            body: None, // per principal, below: emails are unique
            expected: [
                201, 403, 403, 201, 404, 403, 403, 404, 201, 404, 401, 201, 201,
            ],
        },
        Route {
            name: "POST assignments",
            method: Method::POST,
            path: format!("/v1/licenses/{license}/assignments"),
            unknown_path: format!("/v1/licenses/{unknown}/assignments"),
            body: Some(json!({"user_id": admin_parent})),
            // The vendor names her first (201); every later one finds her named (200).
            expected: [
                201, 403, 403, 200, 404, 200, 403, 404, 200, 404, 401, 200, 200,
            ],
        },
        Route {
            name: "POST impersonations (vendor support)",
            method: Method::POST,
            path: "/v1/impersonations".into(),
            unknown_path: "/v1/impersonations".into(),
            body: Some(json!({"user_id": admin_parent, "reason": "matrix"})),
            expected: [
                201, 201, 403, 403, 403, 403, 403, 403, 403, 403, 401, 403, 403,
            ],
        },
        Route {
            name: "POST move (vendor only)",
            method: Method::POST,
            path: o(&child, "/move"),
            unknown_path: o(&unknown, "/move"),
            body: Some(json!({"parent_id": parent})),
            expected: [
                200, 403, 403, 403, 403, 403, 403, 403, 403, 403, 401, 403, 403,
            ],
        },
    ];

    let mut failures = Vec::new();
    for route in &routes {
        for (k, principal) in PRINCIPALS.iter().enumerate() {
            let body = route.body.clone().or_else(|| {
                (route.method == Method::POST)
                    .then(|| json!({"email": format!("new-{k}@example.com"), "roles": []}))
            });
            let answer = app
                .call_as(
                    &tokens[k],
                    route.method.clone(),
                    &route.path,
                    body.clone(),
                    &[],
                )
                .await;
            let expected = route.expected[k];
            if answer.status.as_u16() != expected {
                failures.push(format!(
                    "{} as {principal}: {} (expected {expected}) {:?}",
                    route.name, answer.status, answer.body
                ));
                continue;
            }
            if expected == 404 {
                let twin = app
                    .call_as(
                        &tokens[k],
                        route.method.clone(),
                        &route.unknown_path,
                        body,
                        &[],
                    )
                    .await;
                let strip = |v: &Value| {
                    let mut text = serde_json::to_string(v).unwrap();
                    for x in [
                        &parent, &child, &foreign, &partner, &partner2, &license, &unknown,
                    ] {
                        text = text.replace(x.as_str(), "ID");
                    }
                    text
                };
                if twin.status != answer.status || strip(&twin.body) != strip(&answer.body) {
                    failures.push(format!(
                        "{} as {principal}: a foreign id answers {:?}, an unknown one {} {:?}",
                        route.name, answer.body, twin.status, twin.body
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cells differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    app.stop().await;
}
