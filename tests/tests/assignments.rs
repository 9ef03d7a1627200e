//! Named users and the portal's side of installations (issue #15), end to end with the real
//! identity provider: a license manager names users of its subtree on a `named_user` license
//! (the seats count them, race-free), ends an installation a client activated, and the audit
//! trail names the user who did it. Out of reach answers exactly as unknown.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tests::idp::{IdpUser, TestIdp};
use tests::{TestApp, TestDb, test_config};

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

async fn start(idp: Option<&TestIdp>) -> TestApp {
    let db = TestDb::create().await;
    let mut config = test_config(&db);
    if let Some(idp) = idp {
        config.app.oidc.issuers = vec![domain::values::Issuer::parse(idp.issuer()).unwrap()];
    }
    TestApp::start_with(db, config).await
}

/// A `named_user` policy of `seats` seats (`catalogue_with` creates the organization too).
async fn named_user_catalogue(app: &TestApp, seats: u32) -> tests::Catalogue {
    app.catalogue_with(json!({
        "name": "Team", "model": "named_user", "seats": seats, "duration_days": 365,
        "features": ["pro"], "offline_allowed": false, "offline_grace_days": 0,
        "payment_grace_days": 7
    }))
    .await
}

async fn organization(app: &TestApp, name: &str, parent: Option<&str>) -> String {
    let a = app
        .post(
            "/v1/organizations",
            json!({"name": name, "kind": "customer", "parent_id": parent}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    id(&a.body)
}

async fn invite(app: &TestApp, org: &str, email: &str, roles: Value) -> String {
    let a = app
        .post(
            &format!("/v1/organizations/{org}/users"),
            json!({"email": email, "roles": roles}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    id(&a.body)
}

#[tokio::test]
async fn a_license_manager_names_users_of_its_subtree_and_ends_installations() {
    let idp = TestIdp::start().await;
    let app = start(Some(&idp)).await;
    let c = named_user_catalogue(&app, 2).await;
    let acme = c.organization_id.clone();
    let berlin = organization(&app, "Acme Berlin", Some(&acme)).await;
    let globex = organization(&app, "Globex", None).await;
    let license = app.issue(&c).await;
    let license_id = id(&license);
    let key = license["key"].as_str().unwrap().to_owned();

    // Lou manages Acme's licenses; she logs in through the provider.
    let lou_id = app
        .post(
            &format!("/v1/organizations/{acme}/users"),
            json!({"email": "lou@acme.example", "roles": ["license_manager"],
                   "issuer": idp.issuer(), "subject": "lou-1"}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let lou = idp
        .access_token(&IdpUser::verified("lou-1", "lou@acme.example"))
        .await;
    // A support contact at Acme reads but may not assign.
    app.post(
        &format!("/v1/organizations/{acme}/users"),
        json!({"email": "sam@acme.example", "roles": ["support_contact"],
               "issuer": idp.issuer(), "subject": "sam-1"}),
    )
    .await;
    let sam = idp
        .access_token(&IdpUser::verified("sam-1", "sam@acme.example"))
        .await;
    // Named users: two at Berlin (below Acme), one more at Acme, one at Globex.
    let ben = invite(&app, &berlin, "ben@acme.example", json!([])).await;
    let bea = invite(&app, &berlin, "bea@acme.example", json!([])).await;
    let abe = invite(&app, &acme, "abe@acme.example", json!([])).await;
    let gil = invite(&app, &globex, "gil@globex.example", json!([])).await;

    let assign = |token: String, user: String| {
        let app = &app;
        let path = format!("/v1/licenses/{license_id}/assignments");
        async move {
            app.call_as(
                &token,
                Method::POST,
                &path,
                Some(json!({ "user_id": user })),
                &[],
            )
            .await
        }
    };
    let first = assign(lou.clone(), ben.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    assert_eq!(first.body["assignees"], json!([ben]));
    // Named already: 200, nothing appended.
    let again = assign(lou.clone(), ben.clone()).await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    assert_eq!(again.body["version"], first.body["version"]);
    let second = assign(lou.clone(), bea.clone()).await;
    assert_eq!(second.status, StatusCode::CREATED, "{:?}", second.body);
    // Two seats, two users: the third is refused.
    let full = assign(lou.clone(), abe.clone()).await;
    assert_eq!(full.status, StatusCode::CONFLICT, "{:?}", full.body);
    assert_eq!(full.body["code"], "TOO_MANY_ASSIGNMENTS");
    // A user Lou does not reach answers exactly as an unknown one.
    let foreign = assign(lou.clone(), gil.clone()).await;
    let unknown_user = uuid::Uuid::now_v7().to_string();
    let unknown = assign(lou.clone(), unknown_user.clone()).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{:?}", foreign.body);
    assert_eq!(foreign.body["code"], "USER_NOT_FOUND");
    assert_eq!(
        foreign.body.to_string().replace(&gil, "ID"),
        unknown.body.to_string().replace(&unknown_user, "ID")
    );
    // The vendor reaches Globex's user, but a license goes to its own organization's users.
    let outside = assign(app.admin_token.clone(), gil.clone()).await;
    assert_eq!(outside.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(outside.body["code"], "ASSIGNEE_OUTSIDE_ORGANIZATION");
    // A support contact reaches the license but may not assign: 403; a body it got wrong is
    // not looked at.
    let refused = app
        .call_as(
            &sam,
            Method::POST,
            &format!("/v1/licenses/{license_id}/assignments"),
            Some(json!({"user_id": 7})),
            &[],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);

    // The seats used are the users named (read models, which may trail the log: caught up
    // first); the vendor finds Ben's licenses by user.
    app.projected().await;
    let entitlements = app
        .call_as(
            &lou,
            Method::GET,
            &format!("/v1/organizations/{acme}/entitlements"),
            None,
            &[],
        )
        .await;
    assert_eq!(entitlements.body["products"][0]["seats_used"], 2);
    app.projected().await;
    let by_user = app.get(&format!("/v1/licenses?user_id={ben}")).await;
    assert_eq!(by_user.status, StatusCode::OK, "{:?}", by_user.body);
    let ids: Vec<&str> = by_user.body["licenses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![license_id.as_str()]);

    // Unassigning frees the seat; the same again: 404.
    let path = format!("/v1/licenses/{license_id}/assignments/{ben}");
    let off = app.call_as(&lou, Method::DELETE, &path, None, &[]).await;
    assert_eq!(off.status, StatusCode::OK, "{:?}", off.body);
    assert_eq!(off.body["assignees"], json!([bea]));
    let off_again = app.call_as(&lou, Method::DELETE, &path, None, &[]).await;
    assert_eq!(off_again.status, StatusCode::NOT_FOUND);
    assert_eq!(off_again.body["code"], "ASSIGNMENT_NOT_FOUND");
    assert_eq!(
        assign(lou.clone(), abe.clone()).await.status,
        StatusCode::CREATED
    );
    app.projected().await;
    let by_ben = app.get(&format!("/v1/licenses?user_id={ben}")).await;
    assert_eq!(by_ben.body["licenses"], json!([]), "Ben is named no more");

    // A client activates a machine; Lou ends that installation from the portal.
    let activated = app
        .client_call(
            "/v1/activations",
            &c.app_id,
            json!({"key": key, "fingerprint": "ben-laptop"}),
        )
        .await;
    assert_eq!(
        activated.status,
        StatusCode::CREATED,
        "{:?}",
        activated.body
    );
    let installation = activated.body["installation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deactivate = |token: String, installation: String| {
        let app = &app;
        async move {
            app.call_as(
                &token,
                Method::POST,
                &format!("/v1/installations/{installation}/deactivate"),
                None,
                &[],
            )
            .await
        }
    };
    // Someone of Globex does not learn it exists.
    let gia = app
        .post(
            &format!("/v1/organizations/{globex}/users"),
            json!({"email": "gia@globex.example", "roles": ["customer_admin"],
                   "issuer": idp.issuer(), "subject": "gia-1"}),
        )
        .await;
    assert_eq!(gia.status, StatusCode::CREATED);
    let gia = idp
        .access_token(&IdpUser::verified("gia-1", "gia@globex.example"))
        .await;
    let foreign = deactivate(gia.clone(), installation.clone()).await;
    let unknown_installation = uuid::Uuid::now_v7().to_string();
    let unknown = deactivate(gia.clone(), unknown_installation.clone()).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{:?}", foreign.body);
    assert_eq!(foreign.body["code"], "INSTALLATION_NOT_FOUND");
    assert_eq!(
        foreign.body.to_string().replace(&installation, "ID"),
        unknown
            .body
            .to_string()
            .replace(&unknown_installation, "ID")
    );
    assert_eq!(
        deactivate(sam.clone(), installation.clone()).await.status,
        StatusCode::FORBIDDEN
    );
    let ended = deactivate(lou.clone(), installation.clone()).await;
    assert_eq!(ended.status, StatusCode::OK, "{:?}", ended.body);
    assert_eq!(ended.body["license_id"], license_id);
    assert_eq!(ended.body["fingerprint"], "ben-laptop");
    let ended_again = deactivate(lou.clone(), installation.clone()).await;
    assert_eq!(ended_again.status, StatusCode::NOT_FOUND);
    assert_eq!(ended_again.body["code"], "INSTALLATION_NOT_FOUND");
    let validated = app
        .client_call(
            "/v1/validate",
            &c.app_id,
            json!({"key": key, "fingerprint": "ben-laptop"}),
        )
        .await;
    assert_eq!(
        validated.body["code"], "NOT_ACTIVATED",
        "{:?}",
        validated.body
    );

    // The audit trail names Lou for each of it.
    app.projected().await;
    let audit = app.get(&format!("/v1/audit?actor=user:{lou_id}")).await;
    assert_eq!(audit.status, StatusCode::OK, "{:?}", audit.body);
    let actions: Vec<&str> = audit.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec![
            "LicenseAssigned",
            "LicenseAssigned",
            "LicenseUnassigned",
            "LicenseAssigned",
            "InstallationDeactivated"
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_hundred_parallel_assignments_fill_exactly_the_named_seats() {
    let app = start(None).await;
    let c = named_user_catalogue(&app, 5).await;
    let license_id = id(&app.issue(&c).await);
    let mut users = Vec::new();
    for n in 0..100 {
        users.push(
            invite(
                &app,
                &c.organization_id,
                &format!("user-{n}@acme.example"),
                json!([]),
            )
            .await,
        );
    }
    let path = format!("/v1/licenses/{license_id}/assignments");
    // All at once, each on its own task: the license stream's version decides who gets a seat.
    let mut tasks = tokio::task::JoinSet::new();
    for user in &users {
        let (client, token) = (app.client.clone(), app.admin_token.clone());
        let url = format!("{}{path}", app.base);
        let user = user.clone();
        tasks.spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(token)
                .json(&json!({ "user_id": user }))
                .send()
                .await
                .expect("request sent");
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body)
        });
    }
    let mut answers = Vec::new();
    while let Some(done) = tasks.join_next().await {
        answers.push(done.expect("the task ran"));
    }
    let created = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .count();
    let refused = answers
        .iter()
        .filter(|(status, body)| {
            *status == StatusCode::CONFLICT && body["code"] == "TOO_MANY_ASSIGNMENTS"
        })
        .count();
    assert_eq!((created, refused), (5, 95), "{answers:?}");
    let license = app.get(&format!("/v1/licenses/{license_id}")).await;
    assert_eq!(license.body["assignees"].as_array().unwrap().len(), 5);
    // The log holds exactly five assignments.
    let events = app
        .get(&format!("/v1/licenses/{license_id}/events?limit=100"))
        .await;
    let assigned = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "LicenseAssigned")
        .count();
    assert_eq!(assigned, 5);
    app.stop().await;
}
