//! An organization's lifecycle over HTTP: renamed, moved (with its subtree, never into a cycle,
//! never deeper than the tree may be), closed, its children listed, and partners delegated its
//! administration — each refusal with its status and code and nothing written; and moves racing
//! from two servers on one database, which must never leave a cycle.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tests::{Answer, TestApp, TestDb, test_config};

use crate::support::id;

/// How deep a tree may be (`domain::organization::MAX_DEPTH`).
const MAX_DEPTH: usize = domain::organization::MAX_DEPTH;

/// Registers an organization of `kind` named `name` (under `parent` when given); its id.
async fn register(app: &TestApp, name: &str, kind: &str, parent: Option<&str>) -> String {
    let answer = app
        .post(
            "/v1/organizations",
            json!({"name": name, "kind": kind, "parent_id": parent}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    id(&answer.body)
}

async fn move_to(app: &TestApp, org: &str, parent: Option<&str>) -> Answer {
    app.post(
        &format!("/v1/organizations/{org}/move"),
        json!({"parent_id": parent}),
    )
    .await
}

fn status_code(answer: &Answer) -> (StatusCode, &str) {
    (answer.status, answer.code())
}

#[tokio::test]
async fn renaming_changes_the_name_and_the_same_name_changes_nothing() {
    let app = TestApp::start().await;
    let org = register(&app, "Acme GmbH", "customer", None).await;
    let path = format!("/v1/organizations/{org}");

    let renamed = app
        .call(Method::PATCH, &path, Some(json!({"name": "Acme AG"})))
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{:?}", renamed.body);
    assert_eq!(
        (&renamed.body["name"], &renamed.body["version"]),
        (&json!("Acme AG"), &json!(2))
    );
    assert_eq!(app.get(&path).await.body["name"], "Acme AG");
    let again = app
        .call(Method::PATCH, &path, Some(json!({"name": "Acme AG"})))
        .await;
    assert_eq!(
        (again.status, &again.body["version"]),
        (StatusCode::OK, &json!(2)),
        "the same name appends nothing"
    );

    let before = app.event_count().await;
    for (body, field) in [
        (json!({"name": "Acme", "kind": "partner"}), "kind"),
        (json!({}), "name"),
        (json!({"name": ""}), "name"),
    ] {
        let refused = app.call(Method::PATCH, &path, Some(body.clone())).await;
        assert_eq!(
            (refused.status, refused.code(), &refused.body["field"]),
            (StatusCode::BAD_REQUEST, "INVALID_FIELD", &json!(field)),
            "{body}"
        );
    }
    let unknown = app
        .call(
            Method::PATCH,
            &format!("/v1/organizations/{}", uuid::Uuid::now_v7()),
            Some(json!({"name": "Nobody"})),
        )
        .await;
    assert_eq!(
        status_code(&unknown),
        (StatusCode::NOT_FOUND, "ORGANIZATION_NOT_FOUND")
    );
    let malformed = app
        .call(
            Method::PATCH,
            "/v1/organizations/not-an-id",
            Some(json!({"name": "Nobody"})),
        )
        .await;
    assert_eq!(
        status_code(&malformed),
        (StatusCode::NOT_FOUND, "ORGANIZATION_NOT_FOUND")
    );
    assert_eq!(app.event_count().await, before, "refusals write nothing");
    app.stop().await;
}

#[tokio::test]
async fn moving_places_an_organization_with_its_subtree_and_refuses_cycles() {
    let app = TestApp::start().await;
    let a = register(&app, "Acme Holding", "customer", None).await;
    let b = register(&app, "Acme Europe", "customer", None).await;
    let c = register(&app, "Acme Berlin", "customer", Some(&b)).await;

    // B (with C below it) under A: A > B > C.
    let moved = move_to(&app, &b, Some(&a)).await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    assert_eq!(moved.body["parent_id"], a.as_str());
    let c_now = app.get(&format!("/v1/organizations/{c}")).await;
    assert_eq!(c_now.body["parent_id"], b.as_str(), "C moved with B");
    // Where it is already: nothing happens.
    let same = move_to(&app, &b, Some(&a)).await;
    assert_eq!(
        (same.status, &same.body["version"]),
        (StatusCode::OK, &moved.body["version"])
    );

    let before = app.event_count().await;
    // Under itself, its child, its grandchild: each a cycle.
    for parent in [&a, &b, &c] {
        let refused = move_to(&app, &a, Some(parent)).await;
        assert_eq!(
            status_code(&refused),
            (StatusCode::UNPROCESSABLE_ENTITY, "ORGANIZATION_CYCLE"),
            "A under {parent}: {:?}",
            refused.body
        );
    }
    // An unknown parent is 404, as when registering under one; so is an unknown organization.
    let nowhere = uuid::Uuid::now_v7().to_string();
    let refused = move_to(&app, &b, Some(&nowhere)).await;
    assert_eq!(
        status_code(&refused),
        (StatusCode::NOT_FOUND, "ORGANIZATION_NOT_FOUND")
    );
    let registered = app
        .post(
            "/v1/organizations",
            json!({"name": "x", "kind": "customer", "parent_id": nowhere}),
        )
        .await;
    assert_eq!(status_code(&registered), status_code(&refused));
    let refused = move_to(&app, &nowhere, Some(&a)).await;
    assert_eq!(
        status_code(&refused),
        (StatusCode::NOT_FOUND, "ORGANIZATION_NOT_FOUND")
    );
    let refused = app
        .post(
            &format!("/v1/organizations/{b}/move"),
            json!({"parent_id": a, "name": "x"}),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "{:?}",
        refused.body
    );
    assert_eq!(app.event_count().await, before, "refusals write nothing");

    // To the root: `null`, or no parent_id at all.
    let rooted = move_to(&app, &c, None).await;
    assert_eq!(
        (rooted.status, &rooted.body["parent_id"]),
        (StatusCode::OK, &Value::Null)
    );
    let rooted = app
        .post(&format!("/v1/organizations/{b}/move"), json!({}))
        .await;
    assert_eq!(
        (rooted.status, &rooted.body["parent_id"]),
        (StatusCode::OK, &Value::Null)
    );
    // Now A may go below what was its subtree.
    let under = move_to(&app, &a, Some(&b)).await;
    assert_eq!(under.status, StatusCode::OK, "{:?}", under.body);
    app.stop().await;
}

#[tokio::test]
async fn a_moved_subtree_must_fit_within_the_maximum_depth() {
    let app = TestApp::start().await;
    // A chain of MAX_DEPTH - 2 levels, and a tree X > Y > Z of three.
    let mut chain: Vec<String> = Vec::new();
    for level in 0..MAX_DEPTH - 2 {
        let parent = chain.last().cloned();
        chain.push(
            register(
                &app,
                &format!("Level {level}"),
                "customer",
                parent.as_deref(),
            )
            .await,
        );
    }
    let x = register(&app, "X", "customer", None).await;
    let y = register(&app, "Y", "customer", Some(&x)).await;
    register(&app, "Z", "customer", Some(&y)).await;

    // Below the deepest link, X would be at MAX_DEPTH - 1 and Z at MAX_DEPTH + 1.
    let before = app.event_count().await;
    let deepest = chain.last().unwrap();
    let refused = move_to(&app, &x, Some(deepest)).await;
    assert_eq!(
        status_code(&refused),
        (StatusCode::UNPROCESSABLE_ENTITY, "ORGANIZATION_TOO_DEEP"),
        "{:?}",
        refused.body
    );
    // Y alone (with Z) fits there: Z lands at MAX_DEPTH exactly.
    assert_eq!(app.event_count().await, before);
    let fits = move_to(&app, &y, Some(deepest)).await;
    assert_eq!(fits.status, StatusCode::OK, "{:?}", fits.body);
    // One level up, X and its subtree fit too (Z at MAX_DEPTH again).
    let back = move_to(&app, &y, Some(&x)).await;
    assert_eq!(back.status, StatusCode::OK, "{:?}", back.body);
    let fits = move_to(&app, &x, Some(&chain[chain.len() - 2])).await;
    assert_eq!(fits.status, StatusCode::OK, "{:?}", fits.body);
    app.stop().await;
}

#[tokio::test]
async fn closing_an_organization_leaves_its_children_open_where_they_are() {
    let app = TestApp::start().await;
    let parent = register(&app, "Acme Holding", "customer", None).await;
    let child = register(&app, "Acme Berlin", "customer", Some(&parent)).await;
    let elsewhere = register(&app, "Beta AG", "customer", None).await;
    let close = |org: &str| format!("/v1/organizations/{org}/close");

    let closed = app.call(Method::POST, &close(&parent), None).await;
    assert_eq!(closed.status, StatusCode::OK, "{:?}", closed.body);
    assert_eq!(closed.body["closed"], true);
    let child_now = app.get(&format!("/v1/organizations/{child}")).await;
    assert_eq!(
        (&child_now.body["closed"], &child_now.body["parent_id"]),
        (&json!(false), &json!(parent)),
        "closing does not cascade"
    );

    let before = app.event_count().await;
    let refusals = [
        app.call(Method::POST, &close(&parent), Some(json!({})))
            .await,
        app.call(
            Method::PATCH,
            &format!("/v1/organizations/{parent}"),
            Some(json!({"name": "Acme Holding (old)"})),
        )
        .await,
        move_to(&app, &parent, None).await,
        move_to(&app, &elsewhere, Some(&parent)).await,
        app.post(
            "/v1/organizations",
            json!({"name": "Acme Munich", "kind": "customer", "parent_id": parent}),
        )
        .await,
    ];
    for refused in &refusals {
        assert_eq!(
            status_code(refused),
            (StatusCode::UNPROCESSABLE_ENTITY, "ORGANIZATION_CLOSED"),
            "{:?}",
            refused.body
        );
    }
    let unknown = app
        .call(
            Method::POST,
            &close(&uuid::Uuid::now_v7().to_string()),
            None,
        )
        .await;
    assert_eq!(
        status_code(&unknown),
        (StatusCode::NOT_FOUND, "ORGANIZATION_NOT_FOUND")
    );
    let with_body = app
        .call(Method::POST, &close(&child), Some(json!({"reason": "x"})))
        .await;
    assert_eq!(with_body.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.event_count().await, before, "refusals write nothing");

    // The child can leave its closed parent.
    let moved = move_to(&app, &child, Some(&elsewhere)).await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    app.stop().await;
}

#[tokio::test]
async fn children_are_listed_a_page_at_a_time() {
    let app = TestApp::start().await;
    let parent = register(&app, "Acme Holding", "customer", None).await;
    let mut children = Vec::new();
    for n in 0..5 {
        children.push(register(&app, &format!("Acme {n}"), "customer", Some(&parent)).await);
    }
    let grandchild = register(&app, "Acme 0 Site", "customer", Some(&children[0])).await;
    let leaf_moved_in = register(&app, "Beta AG", "customer", None).await;
    assert_eq!(
        move_to(&app, &leaf_moved_in, Some(&parent)).await.status,
        StatusCode::OK
    );
    children.push(leaf_moved_in);
    children.sort();
    app.projected().await;

    let mut seen = Vec::new();
    let mut path = format!("/v1/organizations/{parent}/children?limit=4");
    for pages in 1.. {
        let page = app.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        let rows = page.body["organizations"].as_array().unwrap();
        assert!(rows.iter().all(|r| r["parent_id"] == parent.as_str()));
        seen.extend(rows.iter().map(id));
        match page.body["next_cursor"].as_str() {
            Some(cursor) => {
                path = format!("/v1/organizations/{parent}/children?limit=4&cursor={cursor}");
            }
            None => {
                assert_eq!(pages, 2);
                break;
            }
        }
    }
    assert_eq!(
        seen, children,
        "every direct child once, by id; no grandchild"
    );

    let newest_first = app
        .get(&format!(
            "/v1/organizations/{parent}/children?order=desc&limit=1"
        ))
        .await;
    assert_eq!(
        id(&newest_first.body["organizations"][0]),
        *children.last().unwrap()
    );
    let leaf = app
        .get(&format!("/v1/organizations/{grandchild}/children"))
        .await;
    assert_eq!(
        (leaf.status, &leaf.body["organizations"]),
        (StatusCode::OK, &json!([]))
    );

    // A cursor of the organization list is not one of this list.
    let listed = app
        .get(&format!("/v1/organizations?parent_id={parent}&limit=1"))
        .await;
    let foreign = listed.body["next_cursor"].as_str().unwrap();
    let refused = app
        .get(&format!(
            "/v1/organizations/{parent}/children?cursor={foreign}"
        ))
        .await;
    assert_eq!(
        status_code(&refused),
        (StatusCode::BAD_REQUEST, "INVALID_CURSOR")
    );
    let refused = app
        .get(&format!(
            "/v1/organizations/{parent}/children?kind=customer"
        ))
        .await;
    assert_eq!(
        status_code(&refused),
        (StatusCode::BAD_REQUEST, "INVALID_QUERY")
    );
    for unknown in [uuid::Uuid::now_v7().to_string(), "not-an-id".to_owned()] {
        let refused = app
            .get(&format!("/v1/organizations/{unknown}/children"))
            .await;
        assert_eq!(
            status_code(&refused),
            (StatusCode::NOT_FOUND, "ORGANIZATION_NOT_FOUND")
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn partners_are_delegated_and_revoked_once_each() {
    let app = TestApp::start().await;
    let org = register(&app, "Acme GmbH", "customer", None).await;
    let partner = register(&app, "Channel Partner AG", "partner", None).await;
    let customer = register(&app, "Beta AG", "customer", None).await;
    let grant = format!("/v1/organizations/{org}/delegations");
    let revoke = |p: &str| format!("/v1/organizations/{org}/delegations/{p}");

    let granted = app.post(&grant, json!({"partner_id": partner})).await;
    assert_eq!(granted.status, StatusCode::OK, "{:?}", granted.body);
    assert_eq!(granted.body["delegated_partners"], json!([partner]));

    let before = app.event_count().await;
    let nowhere = uuid::Uuid::now_v7().to_string();
    for (body, expected) in [
        (
            json!({"partner_id": partner}),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "DELEGATION_ALREADY_GRANTED",
            ),
        ),
        (
            json!({"partner_id": customer}),
            (StatusCode::UNPROCESSABLE_ENTITY, "NOT_A_PARTNER"),
        ),
        (
            json!({"partner_id": nowhere}),
            (StatusCode::NOT_FOUND, "ORGANIZATION_NOT_FOUND"),
        ),
    ] {
        let refused = app.post(&grant, body.clone()).await;
        assert_eq!(
            status_code(&refused),
            expected,
            "{body}: {:?}",
            refused.body
        );
    }
    for body in [json!({}), json!({"partner_id": partner, "role": "x"})] {
        let refused = app.post(&grant, body.clone()).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{body}");
    }
    let unknown_org = app
        .post(
            &format!("/v1/organizations/{nowhere}/delegations"),
            json!({"partner_id": partner}),
        )
        .await;
    assert_eq!(
        status_code(&unknown_org),
        (StatusCode::NOT_FOUND, "ORGANIZATION_NOT_FOUND")
    );
    assert_eq!(app.event_count().await, before, "refusals write nothing");

    let revoked = app.call(Method::DELETE, &revoke(&partner), None).await;
    assert_eq!(revoked.status, StatusCode::OK, "{:?}", revoked.body);
    assert_eq!(revoked.body["delegated_partners"], json!([]));
    let before = app.event_count().await;
    let again = app.call(Method::DELETE, &revoke(&partner), None).await;
    assert_eq!(
        status_code(&again),
        (StatusCode::UNPROCESSABLE_ENTITY, "DELEGATION_NOT_GRANTED")
    );
    let malformed = app.call(Method::DELETE, &revoke("not-an-id"), None).await;
    assert_eq!(
        status_code(&malformed),
        (StatusCode::NOT_FOUND, "ORGANIZATION_NOT_FOUND")
    );
    assert_eq!(app.event_count().await, before, "refusals write nothing");

    // Granted again after the revocation; the read model follows.
    let regranted = app.post(&grant, json!({"partner_id": partner})).await;
    assert_eq!(regranted.status, StatusCode::OK, "{:?}", regranted.body);
    app.projected().await;
    let listed = app.get("/v1/organizations?kind=customer").await;
    let row = listed.body["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == org.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["delegated_partners"], json!([partner]));
    app.stop().await;
}

#[tokio::test]
async fn the_lifecycle_needs_an_administrator_and_reading_does_not() {
    let app = TestApp::start().await;
    let org = register(&app, "Acme GmbH", "customer", None).await;
    let partner = register(&app, "Channel Partner AG", "partner", None).await;
    let auditor = app.token(domain::values::Role::VendorAuditor).await;
    let base = format!("/v1/organizations/{org}");
    let writes = [
        (Method::PATCH, base.clone(), json!({"name": "Acme AG"})),
        (
            Method::POST,
            format!("{base}/move"),
            json!({"parent_id": null}),
        ),
        (Method::POST, format!("{base}/close"), json!({})),
        (
            Method::POST,
            format!("{base}/delegations"),
            json!({"partner_id": partner}),
        ),
        (
            Method::DELETE,
            format!("{base}/delegations/{partner}"),
            json!({}),
        ),
    ];
    let before = app.event_count().await;
    for (method, path, body) in writes {
        let refused = app
            .call_as(&auditor, method.clone(), &path, Some(body), &[])
            .await;
        assert_eq!(
            status_code(&refused),
            (StatusCode::FORBIDDEN, "FORBIDDEN"),
            "{method} {path}"
        );
    }
    assert_eq!(app.event_count().await, before);
    let children = app
        .call_as(
            &auditor,
            Method::GET,
            &format!("{base}/children"),
            None,
            &[],
        )
        .await;
    assert_eq!(children.status, StatusCode::OK);
    app.stop().await;
}

/// Sends a move to the server at `base`.
async fn move_on(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    org: &str,
    parent: &str,
) -> (StatusCode, Value) {
    // 40 moves that wait for one another on a 2-CPU machine may find the request pool busy
    // (503 "retry shortly"): a client retries those, as the answer says. The rule under test is
    // what the moves that ran decided.
    let since = std::time::Instant::now();
    loop {
        let response = client
            .post(format!("{base}/v1/organizations/{org}/move"))
            .bearer_auth(token)
            .json(&json!({"parent_id": parent}))
            .send()
            .await
            .expect("request sent");
        let status = response.status();
        if status != StatusCode::SERVICE_UNAVAILABLE || since.elapsed().as_secs() > 60 {
            return (status, response.json().await.unwrap_or(Value::Null));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The facts a move decides on are other organizations' (the new parent's lineage), read before
/// the command: unless moves are serialized, A under B and B under A both read the other as a
/// root and both succeed. 20 such pairs at once, each pair's two moves sent to two servers on
/// one database (so no process's own queue can order them): exactly one move of each pair
/// succeeds, the other is a cycle, and neither the log nor the read model holds a cycle.
#[tokio::test]
async fn concurrent_opposite_moves_never_make_a_cycle() {
    const PAIRS: usize = 20;
    let db = TestDb::create().await;
    let config = test_config(&db);
    let app = TestApp::start_with(db, config.clone()).await;
    let other = api::server::start(config)
        .await
        .expect("a second server on the same database starts");
    let bases = [app.base.clone(), format!("http://{}", other.addr)];

    let mut pairs = Vec::new();
    for n in 0..PAIRS {
        let a = register(&app, &format!("A{n}"), "customer", None).await;
        let b = register(&app, &format!("B{n}"), "customer", None).await;
        pairs.push((a, b));
    }
    let mut moves = tokio::task::JoinSet::new();
    for (n, (a, b)) in pairs.iter().enumerate() {
        for (side, (org, parent)) in [(a, b), (b, a)].into_iter().enumerate() {
            let (client, token) = (app.client.clone(), app.admin_token.clone());
            let base = bases[side].clone();
            let (org, parent) = (org.clone(), parent.clone());
            moves.spawn(async move {
                let answer = move_on(&client, &base, &token, &org, &parent).await;
                (n, answer)
            });
        }
    }
    let mut outcomes = vec![Vec::new(); PAIRS];
    while let Some(done) = moves.join_next().await {
        let (n, (status, body)) = done.expect("the move task ran");
        if status != StatusCode::OK {
            assert_eq!(
                (status, body["code"].as_str().unwrap_or("")),
                (StatusCode::UNPROCESSABLE_ENTITY, "ORGANIZATION_CYCLE"),
                "{body}"
            );
        }
        outcomes[n].push(status);
    }
    for (n, statuses) in outcomes.iter_mut().enumerate() {
        statuses.sort();
        assert_eq!(
            statuses,
            &[StatusCode::OK, StatusCode::UNPROCESSABLE_ENTITY],
            "pair {n}: one move succeeds, the other is a cycle"
        );
    }

    // The log (read back through the streams): one of each pair is the other's parent.
    for (a, b) in &pairs {
        let parent_of = |org: &String| {
            let app = &app;
            let org = org.clone();
            async move { app.get(&format!("/v1/organizations/{org}")).await.body["parent_id"].clone() }
        };
        let (pa, pb) = (parent_of(a).await, parent_of(b).await);
        assert!(
            (pa == json!(b) && pb.is_null()) || (pb == json!(a) && pa.is_null()),
            "{a}: {pa}, {b}: {pb}"
        );
    }
    // The read model: no organization is its own ancestor.
    app.projected().await;
    let cycles: i64 = sqlx::query_scalar(
        "WITH RECURSIVE up(start, id, steps) AS ( \
             SELECT id, parent_id, 1 FROM rm_organizations WHERE parent_id IS NOT NULL \
             UNION ALL \
             SELECT u.start, o.parent_id, u.steps + 1 FROM up u \
             JOIN rm_organizations o ON o.id = u.id \
             WHERE o.parent_id IS NOT NULL AND u.id <> u.start AND u.steps < 100) \
         SELECT count(*) FROM up WHERE id = start",
    )
    .fetch_one(app.server.state.app.pool())
    .await
    .unwrap();
    assert_eq!(cycles, 0, "the read model holds a cycle");
    let moved: i64 =
        sqlx::query_scalar("SELECT count(*) FROM rm_organizations WHERE parent_id IS NOT NULL")
            .fetch_one(app.server.state.app.pool())
            .await
            .unwrap();
    assert_eq!(moved, PAIRS as i64);
    other.shutdown().await;
    app.stop().await;
}
