//! Users with external identities, end to end: the real identity provider (`tests/idp`,
//! oidc-provider) issues the access tokens, the server verifies them against the provider's
//! discovery and keys, and reach decides what each user sees.
//!
//! The issue's "done when": a vendor invites a customer admin; that person logs in, sees its
//! organizations in `/v1/me`, creates a sub-organization and a license manager there, reads its
//! subtree's licenses, and a foreign organization's license answers 404 exactly as an unknown one.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;
use tests::idp::{IdpUser, TestIdp};
use tests::{TestApp, TestDb, test_config};

/// A server that accepts the test provider's tokens.
async fn start(idp: &TestIdp) -> TestApp {
    let db = TestDb::create().await;
    let mut config = test_config(&db);
    config.app.oidc.issuers = vec![domain::values::Issuer::parse(idp.issuer()).unwrap()];
    TestApp::start_with(db, config).await
}

async fn as_user(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> tests::Answer {
    app.call_as(token, method, path, body, &[]).await
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

#[tokio::test]
async fn an_invited_customer_admin_logs_in_and_sees_exactly_its_subtree() {
    let idp = TestIdp::start().await;
    let app = start(&idp).await;

    // The vendor's catalogue: Acme (the customer), Globex (another), a license for each.
    let acme = app.catalogue().await;
    let globex = app
        .post(
            "/v1/organizations",
            json!({"name": "Globex", "kind": "customer"}),
        )
        .await;
    assert_eq!(globex.status, StatusCode::CREATED, "{:?}", globex.body);
    let acme_license = app.issue(&acme).await;
    let globex_license = app
        .post(
            "/v1/licenses",
            json!({"policy_id": acme.policy_id, "organization_id": id(&globex.body)}),
        )
        .await;
    assert_eq!(globex_license.status, StatusCode::CREATED);

    // The vendor invites Acme's administrator by email.
    let invited = app
        .post(
            &format!("/v1/organizations/{}/users", acme.organization_id),
            json!({"email": "Ana@Acme.example", "roles": ["customer_admin"]}),
        )
        .await;
    assert_eq!(invited.status, StatusCode::CREATED, "{:?}", invited.body);
    assert_eq!(invited.body["status"], "invited");
    assert_eq!(invited.body["email"], "ana@acme.example");
    // Bound to the one provider configured, and shown.
    assert_eq!(invited.body["issuer"], idp.issuer());
    assert_eq!(invited.body["subject"], Value::Null);
    let ana_id = id(&invited.body);

    // An invitation for an email that already is a user's: 409.
    let again = app
        .post(
            &format!("/v1/organizations/{}/users", id(&globex.body)),
            json!({"email": "ana@acme.example", "roles": []}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{:?}", again.body);
    assert_eq!(again.body["code"], "EMAIL_TAKEN");

    // Ana logs in at her identity provider; her first token claims the invitation.
    let ana = IdpUser::verified("ana-0001", "ana@acme.example");
    let token = idp.access_token(&ana).await;
    let me = as_user(&app, &token, Method::GET, "/v1/me", None).await;
    assert_eq!(me.status, StatusCode::OK, "{:?} {}", me.body, idp.logs());
    assert_eq!(me.body["principal"]["kind"], "user");
    assert_eq!(me.body["principal"]["id"], ana_id);
    assert_eq!(
        me.body["roles"],
        json!([{"organization_id": acme.organization_id, "role": "customer_admin"}])
    );
    let seen: Vec<&str> = me.body["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(seen, vec![acme.organization_id.as_str()]);
    let user = app.get(&format!("/v1/users/{ana_id}")).await;
    assert_eq!(user.body["status"], "active");
    assert_eq!(user.body["issuer"], idp.issuer());
    assert_eq!(user.body["subject"], "ana-0001");

    // She creates a location under Acme and a license manager there.
    let berlin = as_user(
        &app,
        &token,
        Method::POST,
        "/v1/organizations",
        Some(json!({"name": "Acme Berlin", "kind": "customer", "parent_id": acme.organization_id})),
    )
    .await;
    assert_eq!(berlin.status, StatusCode::CREATED, "{:?}", berlin.body);
    let manager = as_user(
        &app,
        &token,
        Method::POST,
        &format!("/v1/organizations/{}/users", id(&berlin.body)),
        Some(json!({"email": "lou@acme.example", "roles": ["license_manager"]})),
    )
    .await;
    assert_eq!(manager.status, StatusCode::CREATED, "{:?}", manager.body);
    app.projected().await;
    let users = as_user(
        &app,
        &token,
        Method::GET,
        &format!("/v1/organizations/{}/users", id(&berlin.body)),
        None,
    )
    .await;
    assert_eq!(users.status, StatusCode::OK, "{:?}", users.body);
    assert_eq!(users.body["users"][0]["email"], "lou@acme.example");
    assert_eq!(users.body["users"][0]["status"], "invited");
    assert_eq!(
        users.body["users"][0]["roles"],
        json!([{"organization_id": id(&berlin.body), "role": "license_manager"}])
    );
    let foreign_users = as_user(
        &app,
        &token,
        Method::GET,
        &format!("/v1/organizations/{}/users", id(&globex.body)),
        None,
    )
    .await;
    assert_eq!(foreign_users.status, StatusCode::NOT_FOUND);
    // She may not hand out a vendor role, nor create a root organization.
    let escalate = as_user(
        &app,
        &token,
        Method::PUT,
        &format!("/v1/users/{}/roles", id(&manager.body)),
        Some(json!({"organization_id": id(&berlin.body), "roles": ["vendor_admin"]})),
    )
    .await;
    assert_eq!(
        escalate.status,
        StatusCode::FORBIDDEN,
        "{:?}",
        escalate.body
    );
    let root = as_user(
        &app,
        &token,
        Method::POST,
        "/v1/organizations",
        Some(json!({"name": "Elsewhere", "kind": "customer"})),
    )
    .await;
    assert_eq!(root.status, StatusCode::FORBIDDEN, "{:?}", root.body);

    // Her subtree's license reads; Globex's answers exactly as a license that does not exist.
    let own = as_user(
        &app,
        &token,
        Method::GET,
        &format!("/v1/licenses/{}", id(&acme_license)),
        None,
    )
    .await;
    assert_eq!(own.status, StatusCode::OK, "{:?}", own.body);
    let foreign_id = id(&globex_license.body);
    let unknown_id = uuid::Uuid::now_v7().to_string();
    let foreign = as_user(
        &app,
        &token,
        Method::GET,
        &format!("/v1/licenses/{foreign_id}"),
        None,
    )
    .await;
    let unknown = as_user(
        &app,
        &token,
        Method::GET,
        &format!("/v1/licenses/{unknown_id}"),
        None,
    )
    .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        serde_json::to_string(&foreign.body)
            .unwrap()
            .replace(&foreign_id, "ID"),
        serde_json::to_string(&unknown.body)
            .unwrap()
            .replace(&unknown_id, "ID"),
        "a foreign license answers byte for byte as an unknown one"
    );
    let foreign_org = as_user(
        &app,
        &token,
        Method::GET,
        &format!("/v1/organizations/{}", id(&globex.body)),
        None,
    )
    .await;
    assert_eq!(
        foreign_org.status,
        StatusCode::NOT_FOUND,
        "{:?}",
        foreign_org.body
    );
    // The portal's reads of her subtree: a license of the location, one device on it.
    let berlin_license = app
        .post(
            "/v1/licenses",
            json!({"policy_id": acme.policy_id, "organization_id": id(&berlin.body)}),
        )
        .await;
    assert_eq!(berlin_license.status, StatusCode::CREATED);
    let activated = app
        .client_call(
            "/v1/activations",
            &acme.app_id,
            json!({"key": berlin_license.body["key"], "fingerprint": "berlin-pc-1"}),
        )
        .await;
    assert_eq!(
        activated.status,
        StatusCode::CREATED,
        "{:?}",
        activated.body
    );
    app.projected().await;
    let acme_path = format!("/v1/organizations/{}", acme.organization_id);
    let own_only = as_user(
        &app,
        &token,
        Method::GET,
        &format!("{acme_path}/licenses"),
        None,
    )
    .await;
    assert_eq!(own_only.status, StatusCode::OK, "{:?}", own_only.body);
    assert_eq!(own_only.body["licenses"].as_array().unwrap().len(), 1);
    let subtree = as_user(
        &app,
        &token,
        Method::GET,
        &format!("{acme_path}/licenses?include_descendants=true"),
        None,
    )
    .await;
    assert_eq!(
        subtree.body["licenses"].as_array().unwrap().len(),
        2,
        "{:?}",
        subtree.body
    );
    let installations = as_user(
        &app,
        &token,
        Method::GET,
        &format!("{acme_path}/installations?include_descendants=true"),
        None,
    )
    .await;
    assert_eq!(
        installations.status,
        StatusCode::OK,
        "{:?}",
        installations.body
    );
    let listed = installations.body["installations"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["fingerprint"], "berlin-pc-1");
    assert_eq!(listed[0]["license_id"], id(&berlin_license.body));
    let entitlements = as_user(
        &app,
        &token,
        Method::GET,
        &format!("{acme_path}/entitlements?include_descendants=true"),
        None,
    )
    .await;
    assert_eq!(
        entitlements.status,
        StatusCode::OK,
        "{:?}",
        entitlements.body
    );
    let product = &entitlements.body["products"][0];
    assert_eq!(product["product_id"], acme.product_id);
    assert_eq!(product["licenses"], 2);
    assert_eq!(product["seats_total"], 6);
    assert_eq!(product["seats_used"], 1);
    assert_eq!(product["features"], json!(["pro"]));
    assert_eq!(entitlements.body["complete"], true);
    for route in ["licenses", "installations", "entitlements"] {
        let foreign = as_user(
            &app,
            &token,
            Method::GET,
            &format!("/v1/organizations/{}/{route}", id(&globex.body)),
            None,
        )
        .await;
        assert_eq!(
            foreign.status,
            StatusCode::NOT_FOUND,
            "{route}: {:?}",
            foreign.body
        );
    }

    // Vendor-wide routes are not hers.
    let all = as_user(&app, &token, Method::GET, "/v1/licenses", None).await;
    assert_eq!(all.status, StatusCode::FORBIDDEN);

    // Deactivated: her very next request is refused.
    let off = app
        .post(&format!("/v1/users/{ana_id}/deactivate"), json!({}))
        .await;
    assert_eq!(off.status, StatusCode::OK, "{:?}", off.body);
    let after = as_user(&app, &token, Method::GET, "/v1/me", None).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);

    // The audit trail names the user as the actor of what she did.
    app.projected().await;
    let audit = app.get(&format!("/v1/audit?actor=user:{ana_id}")).await;
    assert_eq!(audit.status, StatusCode::OK, "{:?}", audit.body);
    let types: Vec<&str> = audit.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"InvitationClaimed"), "{types:?}");
    assert!(types.contains(&"OrganizationRegistered"), "{types:?}");
    assert!(types.contains(&"UserInvited"), "{types:?}");

    // The users' read model is rebuilt from the log exactly as the projector left it.
    let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
    let dump = || {
        let pool = &pool;
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT coalesce(string_agg(u::text, E'\\n' ORDER BY id), '') FROM rm_users u",
            )
            .fetch_one(pool)
            .await
            .unwrap()
        }
    };
    let live = dump().await;
    assert_eq!(live.lines().count(), 2, "{live}");
    assert!(live.contains("t,"), "Ana is deactivated: {live}");
    replay_tool::rebuild::rebuild(
        &app.db.url,
        projections::replayable(),
        &replay_tool::progress::Progress::quiet("rebuild", 0),
    )
    .await
    .unwrap();
    assert_eq!(dump().await, live);
    pool.close().await;
    app.stop().await;
}

#[tokio::test]
async fn every_bad_token_answers_the_same_401() {
    let idp = TestIdp::start().await;
    let db = TestDb::create().await;
    let clock = std::sync::Arc::new(commands::clock::OffsetClock::default());
    let mut config = test_config(&db);
    config.app.oidc.issuers = vec![domain::values::Issuer::parse(idp.issuer()).unwrap()];
    config.app.clock = clock.clone();
    let app = TestApp::start_with(db, config).await;
    let org = app
        .post(
            "/v1/organizations",
            json!({"name": "Acme", "kind": "customer"}),
        )
        .await;
    let ana = IdpUser::verified("ana", "ana@acme.example");
    let registered = app
        .post(
            &format!("/v1/organizations/{}/users", id(&org.body)),
            json!({"email": "ana@acme.example", "roles": ["support_contact"], "issuer": idp.issuer(), "subject": "ana"}),
        )
        .await;
    assert_eq!(
        registered.status,
        StatusCode::CREATED,
        "{:?}",
        registered.body
    );
    let good = idp.access_token(&ana).await;
    let me = |token: String| {
        let app = &app;
        async move { as_user(app, &token, Method::GET, "/v1/me", None).await }
    };
    assert_eq!(me(good.clone()).await.status, StatusCode::OK);

    use base64ct::{Base64UrlUnpadded, Encoding};
    let b64 = |bytes: &[u8]| Base64UrlUnpadded::encode_string(bytes);
    let (header, rest) = good.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let header_json: Value =
        serde_json::from_slice(&Base64UrlUnpadded::decode_vec(header).unwrap()).unwrap();
    let kid = header_json["kid"].as_str().unwrap().to_owned();
    // The payload with one claim changed, the signature kept.
    let tampered = {
        let mut claims: Value =
            serde_json::from_slice(&Base64UrlUnpadded::decode_vec(payload).unwrap()).unwrap();
        claims["sub"] = json!("mallory");
        format!(
            "{header}.{}.{signature}",
            b64(&serde_json::to_vec(&claims).unwrap())
        )
    };
    let unsigned = format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
    let unknown_kid = format!(
        "{}.{payload}.{signature}",
        b64(br#"{"alg":"ES256","kid":"not-a-key-of-the-issuer"}"#)
    );
    // The classic confusion: HS256 with the issuer's public key (its JWK's text) as the secret.
    let hs256_with_public_key = {
        let jwks: Value = reqwest::get(format!("{}/jwks", idp.issuer()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let public = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid.as_str())
            .unwrap()
            .to_string();
        let claims: Value =
            serde_json::from_slice(&Base64UrlUnpadded::decode_vec(payload).unwrap()).unwrap();
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some(kid.clone());
        jsonwebtoken::encode(
            &h,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let wrong_audience = idp.access_token_for(&ana, "other-api").await;
    // A second provider the server was not configured with, issuing for the same audience.
    let other_idp = TestIdp::start().await;
    let foreign_issuer = other_idp.access_token(&ana).await;
    let cases = [
        ("tampered", tampered),
        ("unsigned", unsigned),
        ("unknown kid", unknown_kid),
        ("HS256 with the public key", hs256_with_public_key),
        ("wrong audience", wrong_audience),
        ("foreign issuer", foreign_issuer),
        ("garbage", "eyJ.not.ajwt".to_owned()),
        (
            "an unknown user",
            idp.access_token(&IdpUser::verified("eve", "eve@example.com"))
                .await,
        ),
    ];
    let mut bodies = Vec::new();
    for (what, token) in &cases {
        let answer = me(token.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {:?}",
            answer.body
        );
        bodies.push((what, serde_json::to_string(&answer.body).unwrap()));
    }
    // Expired, then not valid yet (issued in the future), by the server's clock: the provider's
    // token lives an hour, the leeway is a minute either way.
    clock.advance(chrono::Duration::seconds(3600 + 61));
    let expired = me(good.clone()).await;
    assert_eq!(
        expired.status,
        StatusCode::UNAUTHORIZED,
        "expired: {:?}",
        expired.body
    );
    bodies.push((&"expired", serde_json::to_string(&expired.body).unwrap()));
    clock.advance(chrono::Duration::seconds(-(3600 + 61) - 120));
    let early = me(good.clone()).await;
    assert_eq!(
        early.status,
        StatusCode::UNAUTHORIZED,
        "issued in the future: {:?}",
        early.body
    );
    bodies.push((
        &"issued in the future",
        serde_json::to_string(&early.body).unwrap(),
    ));
    clock.advance(chrono::Duration::seconds(120));
    assert_eq!(
        me(good).await.status,
        StatusCode::OK,
        "the same token, back in its lifetime"
    );
    for (what, body) in &bodies {
        assert_eq!(body, &bodies[0].1, "{what} answers another body");
    }
    app.stop().await;
}

/// A user deactivated by mistake comes back with its roles (its e-mail stays its own: it could
/// not be invited anew), by whoever may deactivate it, and nobody else.
#[tokio::test]
async fn a_deactivated_user_is_reactivated_with_its_roles() {
    let idp = TestIdp::start().await;
    let app = start(&idp).await;
    let acme = org(&app, "Acme", "customer", None).await;
    let foreign = org(&app, "Foreign", "customer", None).await;
    let cam = user_at(&app, &idp, &acme, "cam", json!(["customer_admin"])).await;
    let fox = user_at(&app, &idp, &foreign, "fox", json!(["customer_admin"])).await;
    let ana = user_at(&app, &idp, &acme, "ana", json!(["license_manager"])).await;
    let ana_id = as_user(&app, &ana, Method::GET, "/v1/me", None).await.body["principal"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let off = as_user(
        &app,
        &cam,
        Method::POST,
        &format!("/v1/users/{ana_id}/deactivate"),
        Some(json!({})),
    )
    .await;
    assert_eq!(off.status, StatusCode::OK, "{:?}", off.body);
    let refused = as_user(&app, &ana, Method::GET, "/v1/me", None).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let anew = as_user(
        &app,
        &cam,
        Method::POST,
        &format!("/v1/organizations/{acme}/users"),
        Some(json!({"email": "ana@example.com", "roles": ["license_manager"]})),
    )
    .await;
    assert_eq!(anew.status, StatusCode::CONFLICT, "{:?}", anew.body);
    assert_eq!(anew.body["code"], "EMAIL_TAKEN");

    // A foreign administrator: the same 404 as for an unknown user.
    let foreign_try = as_user(
        &app,
        &fox,
        Method::POST,
        &format!("/v1/users/{ana_id}/reactivate"),
        Some(json!({})),
    )
    .await;
    assert_eq!(foreign_try.status, StatusCode::NOT_FOUND);

    let on = as_user(
        &app,
        &cam,
        Method::POST,
        &format!("/v1/users/{ana_id}/reactivate"),
        Some(json!({})),
    )
    .await;
    assert_eq!(on.status, StatusCode::OK, "{:?}", on.body);
    assert_eq!(on.body["status"], "active", "{:?}", on.body);
    assert_eq!(
        on.body["roles"][0]["role"], "license_manager",
        "{:?}",
        on.body
    );
    let back = as_user(&app, &ana, Method::GET, "/v1/me", None).await;
    assert_eq!(back.status, StatusCode::OK, "her token works again");
    // An active user: answered unchanged, nothing recorded.
    let again = as_user(
        &app,
        &cam,
        Method::POST,
        &format!("/v1/users/{ana_id}/reactivate"),
        Some(json!({})),
    )
    .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["version"], on.body["version"]);
    // The list shows her active again.
    app.projected().await;
    let listed = as_user(
        &app,
        &cam,
        Method::GET,
        &format!("/v1/organizations/{acme}/users"),
        None,
    )
    .await;
    let row = listed.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == ana_id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(row["status"], "active", "{row}");
    app.stop().await;
}

/// Registers `subject` (verified email `<subject>@example.com`) at `organization` with `roles`,
/// linked to the provider's identity at once (vendor administration), and returns its token.
async fn user_at(
    app: &TestApp,
    idp: &TestIdp,
    organization: &str,
    subject: &str,
    roles: Value,
) -> String {
    let email = format!("{subject}@example.com");
    let created = app
        .post(
            &format!("/v1/organizations/{organization}/users"),
            json!({"email": email, "roles": roles, "issuer": idp.issuer(), "subject": subject}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    idp.access_token(&IdpUser::verified(subject, &email)).await
}

async fn org(app: &TestApp, name: &str, kind: &str, parent: Option<&str>) -> String {
    let created = app
        .post(
            "/v1/organizations",
            json!({"name": name, "kind": kind, "parent_id": parent}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    id(&created.body)
}

#[tokio::test]
async fn reach_follows_moves_and_delegations_from_the_next_request_on() {
    let idp = TestIdp::start().await;
    let app = start(&idp).await;
    let corp = org(&app, "Corp", "customer", None).await;
    let sub = org(&app, "Corp Sub", "customer", Some(&corp)).await;
    let other = org(&app, "Other", "customer", None).await;
    let partner = org(&app, "Partner", "partner", None).await;
    let corp_admin = user_at(&app, &idp, &corp, "corp-admin", json!(["customer_admin"])).await;
    let sub_admin = user_at(&app, &idp, &sub, "sub-admin", json!(["customer_admin"])).await;
    let partner_admin = user_at(
        &app,
        &idp,
        &partner,
        "partner-admin",
        json!(["customer_admin"]),
    )
    .await;
    let get = |token: &str, path: String| {
        let app = &app;
        let token = token.to_owned();
        async move { as_user(app, &token, Method::GET, &path, None).await }
    };
    assert_eq!(
        get(&corp_admin, format!("/v1/organizations/{sub}"))
            .await
            .status,
        StatusCode::OK
    );

    // A transaction left open elsewhere on the server holds the commit horizon back: reach must
    // not wait for it.
    let server = tests::server_url();
    let mut blocker = sqlx::PgConnection::connect(&server).await.unwrap();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query("SELECT txid_current()")
        .execute(&mut blocker)
        .await
        .unwrap();

    let moved = app
        .post(
            &format!("/v1/organizations/{sub}/move"),
            json!({"parent_id": other}),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    let gone = get(&corp_admin, format!("/v1/organizations/{sub}")).await;
    assert_eq!(
        gone.status,
        StatusCode::NOT_FOUND,
        "the move is seen at once: {:?}",
        gone.body
    );
    let listed = get(
        &corp_admin,
        format!("/v1/organizations/{corp}/licenses?include_descendants=true"),
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK);
    // Its own admin still reaches it, wherever it is.
    assert_eq!(
        get(&sub_admin, format!("/v1/organizations/{sub}"))
            .await
            .status,
        StatusCode::OK
    );

    // A delegation to the partner: its admin reaches the customer at once, marked delegated,
    // and may not delegate it onwards; revoked, it is gone at once.
    let delegated = app
        .post(
            &format!("/v1/organizations/{other}/delegations"),
            json!({"partner_id": partner}),
        )
        .await;
    assert_eq!(delegated.status, StatusCode::OK, "{:?}", delegated.body);
    let me = get(&partner_admin, "/v1/me".to_owned()).await;
    assert_eq!(me.status, StatusCode::OK);
    let reached: Vec<(String, bool)> = me.body["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["id"].as_str().unwrap().to_owned(),
                o["delegated"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(reached.contains(&(other.clone(), true)), "{reached:?}");
    assert!(reached.contains(&(sub.clone(), true)), "{reached:?}");
    assert!(reached.contains(&(partner.clone(), false)), "{reached:?}");
    let shadow = as_user(
        &app,
        &partner_admin,
        Method::POST,
        "/v1/organizations",
        Some(json!({"name": "Shadow", "kind": "partner", "parent_id": partner})),
    )
    .await;
    assert_eq!(
        shadow.status,
        StatusCode::FORBIDDEN,
        "only the vendor creates partners: {:?}",
        shadow.body
    );
    let onwards = as_user(
        &app,
        &partner_admin,
        Method::POST,
        &format!("/v1/organizations/{other}/delegations"),
        Some(json!({"partner_id": partner})),
    )
    .await;
    assert_eq!(onwards.status, StatusCode::FORBIDDEN, "{:?}", onwards.body);
    // Nor grant its own people a role at the customer: the customer could neither list nor
    // revoke that grant, and it would outlive the delegation. The customer's own people it
    // administers.
    let partner_admin_id = me.body["principal"]["id"].as_str().unwrap().to_owned();
    let self_grant = as_user(
        &app,
        &partner_admin,
        Method::PUT,
        &format!("/v1/users/{partner_admin_id}/roles"),
        Some(json!({"organization_id": other, "roles": ["customer_admin"]})),
    )
    .await;
    assert_eq!(
        self_grant.status,
        StatusCode::FORBIDDEN,
        "{:?}",
        self_grant.body
    );
    let invited = as_user(
        &app,
        &partner_admin,
        Method::POST,
        &format!("/v1/organizations/{other}/users"),
        Some(json!({"email": "new-at-other@example.com", "roles": ["license_manager"]})),
    )
    .await;
    assert_eq!(invited.status, StatusCode::CREATED, "{:?}", invited.body);
    let revoked = app
        .call(
            Method::DELETE,
            &format!("/v1/organizations/{other}/delegations/{partner}"),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{:?}", revoked.body);
    assert_eq!(
        get(&partner_admin, format!("/v1/organizations/{other}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();

    // A customer admin links no identity, and an administrator of a location may not lock out
    // one of its parent's.
    let link = as_user(
        &app,
        &sub_admin,
        Method::POST,
        &format!("/v1/organizations/{sub}/users"),
        Some(
            json!({"email": "x@example.com", "roles": [], "issuer": idp.issuer(), "subject": "x"}),
        ),
    )
    .await;
    assert_eq!(link.status, StatusCode::FORBIDDEN, "{:?}", link.body);
    let climber = app
        .post(
            &format!("/v1/organizations/{sub}/users"),
            json!({"email": "climber@example.com", "roles": ["support_contact"]}),
        )
        .await;
    let climber = id(&climber.body);
    let raised = app
        .put(
            &format!("/v1/users/{climber}/roles"),
            json!({"organization_id": other, "roles": ["customer_admin"]}),
        )
        .await;
    assert_eq!(raised.status, StatusCode::OK, "{:?}", raised.body);
    let sub_admin_other = user_at(&app, &idp, &sub, "sub-admin-2", json!(["customer_admin"])).await;
    // `sub` is now below `other`; give the climber a role at `corp`, out of the sub admins' reach.
    let at_corp = app
        .put(
            &format!("/v1/users/{climber}/roles"),
            json!({"organization_id": corp, "roles": ["customer_admin"]}),
        )
        .await;
    assert_eq!(at_corp.status, StatusCode::OK);
    let seen = get(&sub_admin_other, format!("/v1/users/{climber}")).await;
    assert_eq!(seen.status, StatusCode::OK, "{:?}", seen.body);
    assert!(
        seen.body["roles"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["organization_id"] != corp.as_str()),
        "roles out of reach are not shown: {:?}",
        seen.body
    );
    let lockout = as_user(
        &app,
        &sub_admin_other,
        Method::POST,
        &format!("/v1/users/{climber}/deactivate"),
        Some(json!({})),
    )
    .await;
    assert_eq!(lockout.status, StatusCode::FORBIDDEN, "{:?}", lockout.body);

    // Within one tree a customer administrator grants both ways: a location's user a role at
    // the corporation above it, and the corporation's own user one at the location.
    let other_admin = user_at(&app, &idp, &other, "other-admin", json!(["customer_admin"])).await;
    let up = as_user(
        &app,
        &other_admin,
        Method::PUT,
        &format!("/v1/users/{climber}/roles"),
        Some(json!({"organization_id": other, "roles": ["customer_admin", "license_manager"]})),
    )
    .await;
    assert_eq!(up.status, StatusCode::OK, "{:?}", up.body);
    let at_home = app
        .post(
            &format!("/v1/organizations/{other}/users"),
            json!({"email": "at-other@example.com", "roles": []}),
        )
        .await;
    let at_home = id(&at_home.body);
    let down = as_user(
        &app,
        &other_admin,
        Method::PUT,
        &format!("/v1/users/{at_home}/roles"),
        Some(json!({"organization_id": sub, "roles": ["license_manager"]})),
    )
    .await;
    assert_eq!(down.status, StatusCode::OK, "{:?}", down.body);

    // Two Authorization headers: neither is taken.
    let two = app
        .call_as(
            &corp_admin,
            Method::GET,
            "/v1/me",
            None,
            &[("authorization", "Bearer llt_x_y")],
        )
        .await;
    assert_eq!(two.status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn an_invitation_is_claimed_through_its_own_provider_only() {
    let idp = TestIdp::start().await;
    let other_idp = TestIdp::start().await;
    let db = TestDb::create().await;
    let mut config = test_config(&db);
    config.app.oidc.issuers = vec![
        domain::values::Issuer::parse(idp.issuer()).unwrap(),
        domain::values::Issuer::parse(other_idp.issuer()).unwrap(),
    ];
    let app = TestApp::start_with(db, config).await;
    let acme = org(&app, "Acme", "customer", None).await;
    let users = format!("/v1/organizations/{acme}/users");
    // Several providers: an invitation names the one it is claimed through.
    let unbound = app
        .post(
            &users,
            json!({"email": "ana@acme.example", "roles": ["customer_admin"]}),
        )
        .await;
    assert_eq!(
        unbound.status,
        StatusCode::BAD_REQUEST,
        "{:?}",
        unbound.body
    );
    assert_eq!(unbound.body["field"], "issuer");
    let unknown = app
        .post(
            &users,
            json!({"email": "ana@acme.example", "roles": [], "issuer": "https://elsewhere.example"}),
        )
        .await;
    assert_eq!(
        unknown.status,
        StatusCode::BAD_REQUEST,
        "{:?}",
        unknown.body
    );
    let invited = app
        .post(
            &users,
            json!({"email": "ana@acme.example", "roles": ["customer_admin"], "issuer": idp.issuer()}),
        )
        .await;
    assert_eq!(invited.status, StatusCode::CREATED, "{:?}", invited.body);
    // The other provider vouches for the same email: not its invitation.
    let ana = IdpUser::verified("ana", "ana@acme.example");
    let stolen = other_idp.access_token(&ana).await;
    assert_eq!(
        as_user(&app, &stolen, Method::GET, "/v1/me", None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // A Kelvin sign is not a `k`: no claim either.
    let kelvin = IdpUser::verified("mallory", "\u{212a}ate@acme.example");
    let kate = app
        .post(
            &users,
            json!({"email": "kate@acme.example", "roles": [], "issuer": idp.issuer()}),
        )
        .await;
    assert_eq!(kate.status, StatusCode::CREATED);
    let fake = idp.access_token(&kelvin).await;
    assert_eq!(
        as_user(&app, &fake, Method::GET, "/v1/me", None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Its own provider claims it.
    let own = idp.access_token(&ana).await;
    let me = as_user(&app, &own, Method::GET, "/v1/me", None).await;
    assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
    app.stop().await;
}
