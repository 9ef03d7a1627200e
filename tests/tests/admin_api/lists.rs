//! Lists (ADR 0017): `GET /v1/licenses` with each filter, key-prefix lookup as support types
//! it, pagination to the end in both orders while rows are appended, every list's cursor, the
//! installations of a license, and the refusals: cursors from elsewhere or altered
//! (`INVALID_CURSOR`), unknown and invalid parameters (`INVALID_QUERY` naming each), NUL.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tests::{Catalogue, TestApp};

use crate::support::id;

/// The ids of a page's items under `name`.
fn ids(answer: &tests::Answer, name: &str) -> Vec<String> {
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.body[name]
        .as_array()
        .unwrap_or_else(|| panic!("{name} in {:?}", answer.body))
        .iter()
        .map(|item| {
            item["id"]
                .as_str()
                .or_else(|| item["installation_id"].as_str())
                .map_or_else(|| item["position"].to_string(), str::to_owned)
        })
        .collect()
}

/// Every item of a list, page by page of `limit`, following `next_cursor` to the end.
async fn walk(app: &TestApp, path: &str, name: &str, limit: u32) -> Vec<String> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let url = match &cursor {
            None => format!("{path}{sep}limit={limit}"),
            Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
        };
        let page = app.get(&url).await;
        let items = ids(&page, name);
        assert!(items.len() <= limit as usize);
        all.extend(items);
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return all,
        }
    }
    panic!("{path} never ended");
}

/// A set of the ids of the licenses listed by `query`.
async fn listed(app: &TestApp, query: &str) -> HashSet<String> {
    walk(app, &format!("/v1/licenses?{query}"), "licenses", 1000)
        .await
        .into_iter()
        .collect()
}

fn set(items: &[&Value]) -> HashSet<String> {
    items.iter().map(|v| id(v)).collect()
}

async fn organization(app: &TestApp, name: &str, parent: Option<&str>) -> String {
    let answer = app
        .post(
            "/v1/organizations",
            json!({"name": name, "kind": "customer", "parent_id": parent}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    id(&answer.body)
}

async fn issue_to(app: &TestApp, policy: &str, org: &str, extra: Value) -> Value {
    let mut body = json!({"policy_id": policy, "organization_id": org});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let answer = app.post("/v1/licenses", body).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    answer.body
}

#[tokio::test]
async fn licenses_are_found_by_each_filter_and_by_the_prefix_support_reads_out() {
    let app = TestApp::start().await;
    let c: Catalogue = app.catalogue().await;
    let parent = c.organization_id.clone();
    let child = organization(&app, "Acme Berlin", Some(&parent)).await;
    let grandchild = organization(&app, "Acme Berlin QA", Some(&child)).await;
    let other = organization(&app, "Globex", None).await;
    let product2 = app
        .post(
            "/v1/products",
            json!({"name": "Trial Tool", "kind": "application", "key_prefix": "TT"}),
        )
        .await;
    let product2 = id(&product2.body);
    let trial_policy = app
        .post(
            "/v1/policies",
            json!({"product_id": product2, "name": "Trial", "model": "node_locked", "seats": 1,
                   "duration_days": null, "trial_days": 14, "features": [], "offline_allowed": false,
                   "offline_grace_days": 0, "payment_grace_days": 0}),
        )
        .await;
    assert_eq!(
        trial_policy.status,
        StatusCode::CREATED,
        "{:?}",
        trial_policy.body
    );
    let trial_policy = id(&trial_policy.body);

    let a1 = issue_to(&app, &c.policy_id, &parent, json!({})).await;
    let a2 = issue_to(&app, &c.policy_id, &parent, json!({})).await;
    let b1 = issue_to(&app, &c.policy_id, &child, json!({})).await;
    let g1 = issue_to(&app, &c.policy_id, &grandchild, json!({})).await;
    // Far enough ahead to be still active at the checks below on a loaded machine.
    let ends = chrono::Utc::now() + chrono::Duration::seconds(8);
    let soon = ends.to_rfc3339();
    let ending = issue_to(&app, &c.policy_id, &other, json!({"expires_at": soon})).await;
    let trial = issue_to(&app, &trial_policy, &other, json!({})).await;
    let suspend = app
        .post(
            &format!("/v1/licenses/{}/suspend", id(&a2)),
            json!({"reason": "unpaid"}),
        )
        .await;
    assert_eq!(suspend.status, StatusCode::OK, "{:?}", suspend.body);
    let revoke = app
        .post(
            &format!("/v1/licenses/{}/revoke", id(&b1)),
            json!({"reason": "fraud"}),
        )
        .await;
    assert_eq!(revoke.status, StatusCode::OK, "{:?}", revoke.body);
    app.projected().await;

    let everything = set(&[&a1, &a2, &b1, &g1, &ending, &trial]);
    assert_eq!(listed(&app, "").await, everything);
    assert_eq!(
        listed(&app, &format!("organization_id={parent}")).await,
        set(&[&a1, &a2])
    );
    assert_eq!(
        listed(
            &app,
            &format!("organization_id={parent}&include_descendants=true")
        )
        .await,
        set(&[&a1, &a2, &b1, &g1])
    );
    // The tree is read organization by organization and merged: paged one by one, in both
    // orders, it is the same licenses in id order.
    let tree_path = format!("/v1/licenses?organization_id={parent}&include_descendants=true");
    let one_by_one = walk(&app, &tree_path, "licenses", 1).await;
    let mut sorted: Vec<String> = set(&[&a1, &a2, &b1, &g1]).into_iter().collect();
    sorted.sort();
    assert_eq!(one_by_one, sorted);
    let mut newest_first = walk(&app, &format!("{tree_path}&order=desc"), "licenses", 3).await;
    newest_first.reverse();
    assert_eq!(newest_first, sorted);
    assert_eq!(
        listed(
            &app,
            &format!("organization_id={child}&include_descendants=true")
        )
        .await,
        set(&[&b1, &g1])
    );
    assert_eq!(
        listed(
            &app,
            &format!("organization_id={parent}&include_descendants=false")
        )
        .await,
        set(&[&a1, &a2])
    );
    assert_eq!(
        listed(&app, &format!("product_id={product2}")).await,
        set(&[&trial])
    );
    assert_eq!(
        listed(&app, &format!("policy_id={}", c.policy_id)).await,
        set(&[&a1, &a2, &b1, &g1, &ending])
    );
    assert_eq!(listed(&app, "status=suspended").await, set(&[&a2]));
    assert_eq!(listed(&app, "status=revoked").await, set(&[&b1]));
    assert_eq!(listed(&app, "status=trialing").await, set(&[&trial]));
    assert_eq!(
        listed(&app, "status=active").await,
        set(&[&a1, &g1, &ending])
    );
    assert_eq!(
        listed(
            &app,
            &format!("status=active&organization_id={parent}&include_descendants=true")
        )
        .await,
        set(&[&a1, &g1])
    );
    let next_year = (chrono::Utc::now() + chrono::Duration::days(300)).to_rfc3339();
    assert_eq!(
        listed(&app, &format!("expires_before={}", urlencode(&next_year))).await,
        set(&[&ending])
    );
    // Status is derived when read: the license ending in 8 s is expired once that passes,
    // without any event.
    let wait = (ends - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + std::time::Duration::from_millis(200)).await;
    assert_eq!(listed(&app, "status=expired").await, set(&[&ending]));
    assert_eq!(listed(&app, "status=active").await, set(&[&a1, &g1]));
    assert!(listed(&app, "status=paused").await.is_empty());

    // The support prefix, as support types what the customer reads out: any case, look-alikes
    // (O for 0), and only its first characters.
    for license in [&a1, &trial] {
        let shown = license["key_prefix"].as_str().unwrap().to_owned();
        let key = license["key"].as_str().unwrap();
        assert!(key.starts_with(&shown));
        let typed = shown.to_ascii_lowercase().replace('0', "o");
        let found = listed(&app, &format!("key_prefix={typed}")).await;
        assert!(found.contains(&id(license)), "{typed}");
        assert!(found.len() <= 2, "{found:?}");
        let short = &shown[..shown.len() - 2];
        assert!(
            listed(&app, &format!("key_prefix={short}"))
                .await
                .contains(&id(license))
        );
        // The whole key is a secret: refused, never searched.
        let whole = app.get(&format!("/v1/licenses?key_prefix={key}")).await;
        assert_eq!(
            (whole.status, whole.body["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("key_prefix"))
        );
    }
    app.stop().await;
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn every_list_pages_to_the_end_in_both_orders_without_duplicates_or_gaps() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let mut issued = Vec::new();
    for _ in 0..7 {
        issued.push(id(&app.issue(&c).await));
    }
    app.projected().await;

    // Oldest first, with two licenses appended after the first page: they come at the end.
    let first = app.get("/v1/licenses?limit=3").await;
    let mut seen = ids(&first, "licenses");
    let mut cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let desc_first = app.get("/v1/licenses?limit=3&order=desc").await;
    let mut seen_desc = ids(&desc_first, "licenses");
    let mut desc_cursor = desc_first.body["next_cursor"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        issued.push(id(&app.issue(&c).await));
    }
    app.projected().await;
    loop {
        let page = app
            .get(&format!("/v1/licenses?limit=3&cursor={cursor}"))
            .await;
        seen.extend(ids(&page, "licenses"));
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(
        seen, issued,
        "oldest first, each once, the appended ones last"
    );
    // Newest first from before the appends: the rest of the original seven, newest to oldest.
    loop {
        let page = app
            .get(&format!(
                "/v1/licenses?limit=3&order=desc&cursor={desc_cursor}"
            ))
            .await;
        seen_desc.extend(ids(&page, "licenses"));
        match page.body["next_cursor"].as_str() {
            Some(next) => desc_cursor = next.to_owned(),
            None => break,
        }
    }
    let mut original: Vec<String> = issued[..7].to_vec();
    original.reverse();
    assert_eq!(seen_desc, original);
    // A last page that is exactly full has no next cursor.
    let exact = app.get("/v1/licenses?limit=9").await;
    assert_eq!(ids(&exact, "licenses").len(), 9);
    assert!(exact.body.get("next_cursor").is_none(), "{:?}", exact.body);

    // Every other list pages the same way, in both orders.
    for _ in 0..2 {
        organization(&app, "More", Some(&c.organization_id)).await;
    }
    app.projected().await;
    let lists = [
        ("/v1/licenses".to_owned(), "licenses"),
        ("/v1/organizations".to_owned(), "organizations"),
        (
            format!("/v1/organizations?parent_id={}", c.organization_id),
            "organizations",
        ),
        ("/v1/products".to_owned(), "products"),
        ("/v1/policies".to_owned(), "policies"),
        (
            format!("/v1/organizations/{}/licenses", c.organization_id),
            "licenses",
        ),
        ("/v1/audit".to_owned(), "entries"),
    ];
    for (path, name) in &lists {
        let all = walk(&app, path, name, 1000).await;
        assert!(!all.is_empty(), "{path}");
        let paged = walk(&app, path, name, 2).await;
        assert_eq!(paged, all, "{path} page by page");
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut desc = walk(&app, &format!("{path}{sep}order=desc"), name, 2).await;
        desc.reverse();
        assert_eq!(desc, all, "{path} newest first");
        let distinct: HashSet<&String> = all.iter().collect();
        assert_eq!(distinct.len(), all.len(), "{path} has no duplicates");
    }
    // `after`, the name `cursor` had before (ADR 0017), still takes the next cursor.
    let first = app.get("/v1/organizations?limit=1").await;
    let next = first.body["next_cursor"].as_str().unwrap();
    let second = app
        .get(&format!("/v1/organizations?limit=1&after={next}"))
        .await;
    assert_eq!(ids(&second, "organizations").len(), 1);
    assert_ne!(ids(&second, "organizations"), ids(&first, "organizations"));
    app.stop().await;
}

#[tokio::test]
async fn a_license_lists_its_installations_page_by_page() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let license = app.issue_with(&c, 5).await;
    let key = license["key"].as_str().unwrap();
    let mut installations = Vec::new();
    for fingerprint in ["m1", "m2", "m3", "m4"] {
        let answer = app
            .client_call(
                "/v1/activations",
                &c.app_id,
                json!({"key": key, "fingerprint": fingerprint}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
        installations.push(answer.body["installation_id"].as_str().unwrap().to_owned());
    }
    let path = format!("/v1/licenses/{}/installations", id(&license));
    let mut sorted = installations.clone();
    sorted.sort();
    assert_eq!(walk(&app, &path, "installations", 3).await, sorted);
    let mut desc = walk(&app, &format!("{path}?order=desc"), "installations", 1).await;
    desc.reverse();
    assert_eq!(desc, sorted);
    let unknown = app
        .get("/v1/licenses/00000000-0000-7000-8000-000000000000/installations")
        .await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::NOT_FOUND, "LICENSE_NOT_FOUND")
    );
    // A cursor of one license's installations does not continue another's.
    let other = app.issue(&c).await;
    let first = app.get(&format!("{path}?limit=1")).await;
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let foreign = app
        .get(&format!(
            "/v1/licenses/{}/installations?cursor={cursor}",
            id(&other)
        ))
        .await;
    assert_eq!(
        (foreign.status, foreign.code()),
        (StatusCode::BAD_REQUEST, "INVALID_CURSOR")
    );
    app.stop().await;
}

#[tokio::test]
async fn foreign_altered_and_made_up_cursors_are_refused() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    for _ in 0..3 {
        app.issue(&c).await;
    }
    app.projected().await;
    let page = app.get("/v1/licenses?limit=1&status=active").await;
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    let ok = app
        .get(&format!(
            "/v1/licenses?limit=1&status=active&cursor={cursor}"
        ))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    let mut altered: Vec<char> = cursor.chars().collect();
    altered[10] = if altered[10] == 'A' { 'B' } else { 'A' };
    let altered: String = altered.into_iter().collect();
    let refused = [
        format!("/v1/organizations?cursor={cursor}"),
        format!(
            "/v1/organizations/{}/licenses?cursor={cursor}",
            c.organization_id
        ),
        format!("/v1/audit?cursor={cursor}"),
        format!("/v1/licenses?cursor={cursor}"),
        format!("/v1/licenses?status=revoked&cursor={cursor}"),
        format!("/v1/licenses?status=active&order=desc&cursor={cursor}"),
        format!("/v1/licenses?status=active&cursor={altered}"),
        "/v1/licenses?cursor=garbage".to_owned(),
        "/v1/licenses?cursor=".to_owned(),
        format!("/v1/licenses?cursor={}", "A".repeat(500)),
        // A raw id, what `after` took before cursors were opaque.
        format!("/v1/products?after={}", c.product_id),
        "/v1/audit?cursor=12".to_owned(),
    ];
    for path in &refused {
        let answer = app.get(path).await;
        assert_eq!(
            (answer.status, answer.code(), answer.body["field"].as_str()),
            (StatusCode::BAD_REQUEST, "INVALID_CURSOR", Some("cursor")),
            "{path}: {:?}",
            answer.body
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn each_invalid_or_unknown_query_parameter_is_refused_by_its_name() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let license = app.issue(&c).await;
    let uuid = "00000000-0000-7000-8000-000000000001";
    let cases: Vec<(String, &str)> = vec![
        ("/v1/licenses?limit=0".into(), "limit"),
        ("/v1/licenses?limit=1001".into(), "limit"),
        ("/v1/licenses?limit=ten".into(), "limit"),
        ("/v1/licenses?limit=-1".into(), "limit"),
        ("/v1/licenses?limit=1&limit=2".into(), "limit"),
        ("/v1/licenses?order=up".into(), "order"),
        (
            "/v1/licenses?organization_id=acme".into(),
            "organization_id",
        ),
        (
            "/v1/licenses?include_descendants=yes".into(),
            "include_descendants",
        ),
        (
            "/v1/licenses?include_descendants=true".into(),
            "include_descendants",
        ),
        ("/v1/licenses?product_id=1".into(), "product_id"),
        ("/v1/licenses?policy_id=".into(), "policy_id"),
        ("/v1/licenses?status=sleeping".into(), "status"),
        ("/v1/licenses?status=ACTIVE".into(), "status"),
        ("/v1/licenses?key_prefix=A".into(), "key_prefix"),
        ("/v1/licenses?key_prefix=ACME".into(), "key_prefix"),
        ("/v1/licenses?key_prefix=AC-%25%25".into(), "key_prefix"),
        ("/v1/licenses?key_prefix=AC-__".into(), "key_prefix"),
        ("/v1/licenses?key_prefix=AC-%00%00".into(), "key_prefix"),
        (
            "/v1/licenses?expires_before=tomorrow".into(),
            "expires_before",
        ),
        ("/v1/licenses?user_id=ana".into(), "user_id"),
        ("/v1/licenses?after=x".into(), "after"),
        ("/v1/licenses?cursor=a&cursor=b".into(), "cursor"),
        ("/v1/licenses?stauts=active".into(), "stauts"),
        ("/v1/organizations?kind=person".into(), "kind"),
        ("/v1/organizations?parent_id=root".into(), "parent_id"),
        ("/v1/organizations?q=".into(), "q"),
        (format!("/v1/organizations?q={}", "x".repeat(201)), "q"),
        ("/v1/organizations?q=a%00b".into(), "q"),
        ("/v1/organizations?name=x".into(), "name"),
        ("/v1/products?after=x&cursor=y".into(), "after"),
        ("/v1/products?product_id=x".into(), "product_id"),
        ("/v1/policies?product_id=x".into(), "product_id"),
        ("/v1/audit?actor=%00".into(), "actor"),
        ("/v1/audit?actor=a%0Ab".into(), "actor"),
        ("/v1/audit?from=last-week".into(), "from"),
        ("/v1/audit?to=1".into(), "to"),
        ("/v1/audit?license_id=x".into(), "license_id"),
        ("/v1/audit?after=x".into(), "after"),
        (
            format!("/v1/licenses/{}?as_of=yesterday", id(&license)),
            "as_of",
        ),
        (format!("/v1/licenses/{}?at=now", id(&license)), "at"),
        (
            format!("/v1/licenses/{}/installations?limit=0", id(&license)),
            "limit",
        ),
        (
            format!("/v1/licenses/{}/installations?fingerprint=x", id(&license)),
            "fingerprint",
        ),
        (
            format!(
                "/v1/organizations/{}/licenses?status=active",
                c.organization_id
            ),
            "status",
        ),
    ];
    for (path, field) in &cases {
        let answer = app.get(path).await;
        assert_eq!(
            (answer.status, answer.code(), answer.body["field"].as_str()),
            (StatusCode::BAD_REQUEST, "INVALID_QUERY", Some(*field)),
            "{path}: {:?}",
            answer.body
        );
        assert_eq!(
            answer.header("content-type"),
            Some("application/problem+json")
        );
    }
    // The same parameters, valid, are answered.
    for path in [
        format!(
            "/v1/licenses?limit=1000&order=asc&organization_id={uuid}&include_descendants=false"
        ),
        "/v1/organizations?q=100%25_%5C&kind=vendor".to_owned(),
        "/v1/audit?actor=operator&order=desc".to_owned(),
    ] {
        let answer = app.get(&path).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {:?}", answer.body);
    }
    // `q` is matched literally: `%` and `_` are no wildcards.
    organization(&app, "100% Cotton_Ltd", None).await;
    app.projected().await;
    let percent = app.get("/v1/organizations?q=0%25%20cotton_").await;
    assert_eq!(
        ids(&percent, "organizations").len(),
        1,
        "{:?}",
        percent.body
    );
    let wildcard = app.get("/v1/organizations?q=%25").await;
    assert_eq!(
        ids(&wildcard, "organizations").len(),
        1,
        "{:?}",
        wildcard.body
    );
    let kinds = app.get("/v1/organizations?kind=customer&q=acme").await;
    assert_eq!(
        ids(&kinds, "organizations"),
        vec![c.organization_id.clone()]
    );
    // Authentication is checked before the query: no hint about parameters to strangers.
    let anonymous = app
        .client
        .get(format!("{}/v1/licenses?stauts=x", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

/// Routes that take no query parameter refuse any, by name, before anything runs: a typo such as
/// `?as_of=` on a route that has no such reading must not answer as if it had been read. The
/// token is checked first (401 as on the lists), an empty query is no parameter, and a refused
/// write appends nothing.
#[tokio::test]
async fn routes_without_query_parameters_refuse_any() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let license = app.issue(&c).await;
    let key = license["key"].as_str().unwrap();
    let before = app.event_count().await;
    let get_cases = [
        format!(
            "/v1/organizations/{}?as_of=2026-01-01T00:00:00Z",
            c.organization_id
        ),
        format!("/v1/products/{}?expand=policies", c.product_id),
        format!("/v1/licenses/{}/events?limit=10&x=1", id(&license)),
    ];
    let posts = [
        (
            format!("/v1/licenses/{}/suspend?force=true", id(&license)),
            json!({"reason": "typo in the query"}),
            "force",
        ),
        (
            "/v1/organizations?dry_run=1".to_owned(),
            json!({"name": "Never", "kind": "customer"}),
            "dry_run",
        ),
    ];
    for path in &get_cases {
        let answer = app.get(path).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::BAD_REQUEST, "INVALID_QUERY"),
            "{path}: {:?}",
            answer.body
        );
        assert!(
            answer.body["field"].is_string(),
            "{path}: {:?}",
            answer.body
        );
    }
    for (path, body, field) in &posts {
        let answer = app.post(path, body.clone()).await;
        assert_eq!(
            (answer.status, answer.code(), answer.body["field"].as_str()),
            (StatusCode::BAD_REQUEST, "INVALID_QUERY", Some(*field)),
            "{path}: {:?}",
            answer.body
        );
    }
    assert_eq!(
        app.event_count().await,
        before,
        "a refused write appends nothing"
    );
    // A client route too (no bearer token there).
    let validated = app
        .client_call(
            "/v1/validate?fingerprint=abc",
            &c.app_id,
            json!({"key": key, "fingerprint": "device-1"}),
        )
        .await;
    assert_eq!(
        (
            validated.status,
            validated.code(),
            validated.body["field"].as_str()
        ),
        (
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY",
            Some("fingerprint")
        ),
        "{:?}",
        validated.body
    );
    // Without a token that authenticates: 401, as everywhere.
    let anonymous = app
        .call_as(
            "llt_nope",
            reqwest::Method::GET,
            &format!("/v1/products/{}?expand=policies", c.product_id),
            None,
            &[],
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    // An empty query is no parameter.
    let empty = app.get(&format!("/v1/products/{}?", c.product_id)).await;
    assert_eq!(empty.status, StatusCode::OK, "{:?}", empty.body);
}

/// A license's event stream pages like every list, by sequence, in both orders; every event of
/// every page links to the hash of the one before it in the stream (the first page's first to
/// the genesis hash), so an auditor can check the chain page by page.
#[tokio::test]
async fn a_license_stream_pages_by_sequence_with_its_hash_chain_intact() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let license = app.issue(&c).await;
    let path = format!("/v1/licenses/{}", id(&license));
    for _ in 0..6 {
        let suspended = app
            .post(&format!("{path}/suspend"), json!({"reason": "paging"}))
            .await;
        assert_eq!(suspended.status, StatusCode::OK, "{:?}", suspended.body);
        let reinstated = app
            .call(reqwest::Method::POST, &format!("{path}/reinstate"), None)
            .await;
        assert_eq!(reinstated.status, StatusCode::OK, "{:?}", reinstated.body);
    }
    // The whole stream in one page: the reference.
    let whole = app.get(&format!("{path}/events?limit=1000")).await;
    assert_eq!(whole.status, StatusCode::OK, "{:?}", whole.body);
    assert!(whole.body.get("next_cursor").is_none(), "{:?}", whole.body);
    let all: Vec<Value> = whole.body["events"].as_array().unwrap().clone();
    assert!(all.len() >= 13, "{} events", all.len());
    let genesis = "0".repeat(64);
    for (i, event) in all.iter().enumerate() {
        assert_eq!(event["sequence"], json!(i + 1));
        let previous = if i == 0 {
            genesis.as_str()
        } else {
            all[i - 1]["hash"].as_str().unwrap()
        };
        assert_eq!(event["previous_hash"], previous, "event {}", i + 1);
    }
    // Page by page, both ways, with odd page sizes: the same events with the same links.
    for (order, limit) in [
        ("asc", 1),
        ("asc", 4),
        ("asc", 5),
        ("desc", 1),
        ("desc", 4),
        ("desc", 5),
    ] {
        let mut walked: Vec<Value> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let url = match &cursor {
                None => format!("{path}/events?order={order}&limit={limit}"),
                Some(c) => format!("{path}/events?order={order}&limit={limit}&cursor={c}"),
            };
            let page = app.get(&url).await;
            assert_eq!(page.status, StatusCode::OK, "{url}: {:?}", page.body);
            let events = page.body["events"].as_array().unwrap();
            assert!(events.len() <= limit, "{url}");
            walked.extend(events.iter().cloned());
            match page.body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
            assert!(walked.len() <= all.len(), "{url} never ends");
        }
        if order == "desc" {
            walked.reverse();
        }
        assert_eq!(walked, all, "order={order} limit={limit}");
    }
    // Its cursors continue only this stream in this order.
    let first = app.get(&format!("{path}/events?limit=2")).await;
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let other = app.issue(&c).await;
    for url in [
        format!("{path}/events?order=desc&cursor={cursor}"),
        format!("/v1/licenses/{}/events?cursor={cursor}", id(&other)),
        format!("/v1/licenses?cursor={cursor}"),
        format!("{path}/events?cursor=AQAAAAAAAAACAAAAAAAAAAAAAAAAAAAAAA"),
    ] {
        let refused = app.get(&url).await;
        assert_eq!(
            (refused.status, refused.code()),
            (StatusCode::BAD_REQUEST, "INVALID_CURSOR"),
            "{url}: {:?}",
            refused.body
        );
    }
    let ghost = app
        .get("/v1/licenses/00000000-0000-7000-8000-000000000009/events")
        .await;
    assert_eq!(ghost.status, StatusCode::NOT_FOUND);
}
