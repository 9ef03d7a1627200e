//! Download links through HTTP (ADR 0023), with the server's clock moved: a perpetual license
//! whose maintenance ended sees only the releases published while it ran; a link is granted
//! only for what the license sees, serves the bytes with `Range`, `ETag` and `Repr-Digest`, is
//! refused once expired, altered, yanked or no longer seen, and every completed transfer is
//! an event the audit trail shows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64ct::{Base64, Encoding};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tests::{TestApp, TestDb, test_config};

struct Shipped {
    release: String,
    artifact: Value,
    bytes: Vec<u8>,
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(17).wrapping_add(seed))
        .collect()
}

/// Drafts `version`, uploads one file and publishes it.
async fn ship(app: &TestApp, product: &str, version: &str, channel: &str, seed: u8) -> Shipped {
    let draft = app
        .post(
            &format!("/v1/products/{product}/releases"),
            json!({"version": version, "channel": channel}),
        )
        .await;
    assert_eq!(draft.status, StatusCode::CREATED, "{:?}", draft.body);
    let release = draft.body["id"].as_str().unwrap().to_owned();
    let bytes = payload(300_000 + usize::from(seed), seed);
    let up = app
        .client
        .put(format!(
            "{}/v1/releases/{release}/artifacts/studio-{version}.tar.gz?platform=linux&arch=x86_64",
            app.base
        ))
        .bearer_auth(&app.admin_token)
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), StatusCode::CREATED);
    let artifact: Value = up.json().await.unwrap();
    let published = app
        .post(&format!("/v1/releases/{release}/publish"), json!({}))
        .await;
    assert_eq!(published.status, StatusCode::OK, "{:?}", published.body);
    Shipped {
        release,
        artifact,
        bytes,
    }
}

/// Grants a link to `shipped`'s artifact for `license`, once the read model knows the artifact.
async fn link(app: &TestApp, shipped: &Shipped, license: &str) -> tests::Answer {
    let path = format!(
        "/v1/artifacts/{}/download-links",
        shipped.artifact["id"].as_str().unwrap()
    );
    let since = Instant::now();
    loop {
        let answer = app.post(&path, json!({"license_id": license})).await;
        // The artifact's release is found through the read model, which may trail the log.
        if answer.body["code"] != "ARTIFACT_NOT_FOUND" || since.elapsed() > Duration::from_secs(10)
        {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn fetch(app: &TestApp, url: &str, range: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(url);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_follow_what_a_license_sees_and_serve_verifiable_bytes() {
    let db = TestDb::create().await;
    let clock = Arc::new(commands::clock::OffsetClock::default());
    let mut config = test_config(&db);
    config.app.clock = clock.clone();
    let mut app = TestApp::start_with(db, config).await;
    // Perpetual, one month of maintenance; stable and lts.
    let c = app
        .catalogue_with(
            json!({"name": "Perpetual", "model": "node_locked", "seats": 2,
            "duration_days": null, "features": ["pro"], "offline_allowed": false,
            "offline_grace_days": 0, "payment_grace_days": 0, "maintenance_months": 1,
            "channels": ["stable", "lts"]}),
        )
        .await;
    let policy = app.get(&format!("/v1/policies/{}", c.policy_id)).await;
    assert_eq!(policy.body["channels"], json!(["stable", "lts"]));
    let license = app.issue(&c).await["id"].as_str().unwrap().to_owned();

    let v72 = ship(&app, &c.product_id, "7.2.0", "stable", 1).await;
    let beta = ship(&app, &c.product_id, "8.0.0-beta.1", "beta", 2).await;
    // Maintenance ends; later releases are not this license's.
    clock.advance(chrono::Duration::days(40));
    // (The administrator's token, an hour long, expired with the jump.)
    app.admin_token = app.token(domain::values::Role::VendorAdmin).await;
    let v74 = ship(&app, &c.product_id, "7.4.0", "lts", 3).await;

    let granted = link(&app, &v72, &license).await;
    assert_eq!(granted.status, StatusCode::CREATED, "{:?}", granted.body);
    assert_eq!(granted.body["license_id"], license);
    assert_eq!(granted.body["artifact"], v72.artifact);
    let url = granted.body["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&app.base), "{url}");
    for (shipped, rule) in [(&beta, "channel"), (&v74, "maintenance")] {
        let refused = link(&app, shipped, &license).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{:?}",
            refused.body
        );
        assert_eq!(refused.body["code"], "RELEASE_NOT_VISIBLE");
        assert!(
            refused.body["detail"].as_str().unwrap().contains(rule),
            "{:?}",
            refused.body
        );
    }
    // The portal's download area: what the organization's licenses see, no more.
    let listed = app
        .get(&format!("/v1/organizations/{}/releases", c.organization_id))
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
    let versions: Vec<&str> = listed.body["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["7.2.0"], "{:?}", listed.body);
    assert_eq!(listed.body["releases"][0]["license_ids"], json!([license]));
    assert_eq!(listed.body["complete"], true);
    let windows = app
        .get(&format!(
            "/v1/organizations/{}/releases?platform=windows",
            c.organization_id
        ))
        .await;
    assert_eq!(windows.body["releases"], json!([]), "a Linux-only release");
    let bad = app
        .get(&format!(
            "/v1/organizations/{}/releases?platform=beos",
            c.organization_id
        ))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // Customers, through service tokens: the organization's download manager sees and links;
    // a license manager (no download right) is refused; another customer's administrator
    // finds nothing, as if it did not exist; vendor-wide lists are not for customers.
    let service = async |role: &str, organization: &str| -> String {
        let minted = app
            .post(
                "/v1/tokens",
                json!({"role": role, "organization_id": organization}),
            )
            .await;
        assert_eq!(minted.status, StatusCode::CREATED, "{:?}", minted.body);
        minted.body["token"].as_str().unwrap().to_owned()
    };
    let foreign = app
        .post(
            "/v1/organizations",
            json!({"name": "Globex", "kind": "customer"}),
        )
        .await;
    let foreign = foreign.body["id"].as_str().unwrap().to_owned();
    let manager = service("download_manager", &c.organization_id).await;
    let licenses_only = service("license_manager", &c.organization_id).await;
    let stranger = service("customer_admin", &foreign).await;
    let as_ = async |token: &str, method: reqwest::Method, path: &str, body: Option<Value>| {
        app.call_as(token, method, path, body, &[]).await
    };
    let listing = format!("/v1/organizations/{}/releases", c.organization_id);
    let links_path = format!(
        "/v1/artifacts/{}/download-links",
        v72.artifact["id"].as_str().unwrap()
    );
    let ask = json!({"license_id": license});
    let seen = as_(&manager, reqwest::Method::GET, &listing, None).await;
    assert_eq!(seen.status, StatusCode::OK, "{:?}", seen.body);
    assert_eq!(seen.body["releases"][0]["version"], "7.2.0");
    let linked = as_(
        &manager,
        reqwest::Method::POST,
        &links_path,
        Some(ask.clone()),
    )
    .await;
    assert_eq!(linked.status, StatusCode::CREATED, "{:?}", linked.body);
    assert!(linked.body["url"].is_string());
    let refused = as_(
        &licenses_only,
        reqwest::Method::POST,
        &links_path,
        Some(ask.clone()),
    )
    .await;
    // Vendor support reads every organization's download area.
    let support = app.token(domain::values::Role::VendorSupport).await;
    let read = as_(&support, reqwest::Method::GET, &listing, None).await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);
    for (method, path, body, code) in [
        (
            reqwest::Method::GET,
            listing.clone(),
            None,
            "ORGANIZATION_NOT_FOUND",
        ),
        (
            reqwest::Method::POST,
            links_path.clone(),
            Some(ask.clone()),
            "LICENSE_NOT_FOUND",
        ),
        (
            reqwest::Method::GET,
            format!("/v1/organizations/{}/download-counts", c.organization_id),
            None,
            "ORGANIZATION_NOT_FOUND",
        ),
    ] {
        let hidden = as_(&stranger, method, &path, body).await;
        assert_eq!(
            hidden.status,
            StatusCode::NOT_FOUND,
            "{path}: {:?}",
            hidden.body
        );
        assert_eq!(hidden.body["code"], code, "{path}");
    }
    for path in [
        format!("/v1/releases/{}/downloads", v72.release),
        format!("/v1/releases/{}/download-counts", v72.release),
        format!("/v1/products/{}/releases", c.product_id),
    ] {
        let vendor_only = as_(&manager, reqwest::Method::GET, &path, None).await;
        assert_eq!(
            vendor_only.status,
            StatusCode::FORBIDDEN,
            "{path}: {:?}",
            vendor_only.body
        );
    }
    let draft = as_(
        &manager,
        reqwest::Method::POST,
        &format!("/v1/products/{}/releases", c.product_id),
        Some(json!({"version": "9.9.9", "channel": "stable"})),
    )
    .await;
    assert_eq!(draft.status, StatusCode::FORBIDDEN);
    let unknown = app
        .post(
            &format!("/v1/artifacts/{}/download-links", uuid::Uuid::now_v7()),
            json!({"license_id": license}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.body["code"], "ARTIFACT_NOT_FOUND");

    // The whole file, verifiable: digest headers and the signature through the SDK.
    let whole = fetch(&app, &url, None).await;
    assert_eq!(whole.status(), StatusCode::OK);
    let sha = v72.artifact["sha256"].as_str().unwrap();
    let headers = whole.headers().clone();
    assert_eq!(headers["etag"], format!("\"{sha}\"").as_str());
    assert_eq!(
        headers["repr-digest"],
        format!(
            "sha-256=:{}:",
            Base64::encode_string(&Sha256::digest(&v72.bytes))
        )
        .as_str()
    );
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(
        headers["content-length"],
        v72.bytes.len().to_string().as_str()
    );
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("studio-7.2.0.tar.gz")
    );
    let body = whole.bytes().await.unwrap();
    assert_eq!(body.as_ref(), v72.bytes.as_slice());
    let jwks = app
        .client
        .get(format!("{}/.well-known/jwks.json", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let jwks = client::jwks::Jwks::from_json(&jwks).unwrap();
    let claims = client::artifact::ArtifactClaims::from_json(&v72.artifact.to_string()).unwrap();
    client::artifact::verify_artifact(&body, &claims, &jwks).unwrap();

    // Resumed: the first 100,000 bytes, then the rest, make the same file.
    let head = fetch(&app, &url, Some("bytes=0-99999")).await;
    assert_eq!(head.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        head.headers()["content-range"],
        format!("bytes 0-99999/{}", v72.bytes.len()).as_str()
    );
    let mut resumed = head.bytes().await.unwrap().to_vec();
    let tail = fetch(&app, &url, Some("bytes=100000-")).await;
    assert_eq!(tail.status(), StatusCode::PARTIAL_CONTENT);
    resumed.extend_from_slice(&tail.bytes().await.unwrap());
    assert_eq!(resumed, v72.bytes);
    let outside = fetch(&app, &url, Some(&format!("bytes={}-", v72.bytes.len()))).await;
    assert_eq!(outside.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        outside.headers()["content-range"],
        format!("bytes */{}", v72.bytes.len()).as_str()
    );
    // Conditional requests: the version held already, 304; another version expected, 412.
    let etag = format!("\"{sha}\"");
    let unchanged = app
        .client
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
    let other = app
        .client
        .get(&url)
        .header("if-match", "\"0000\"")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::PRECONDITION_FAILED);
    // If-Match compares strongly: this file's tag marked weak does not match.
    let weak = app
        .client
        .get(&url)
        .header("if-match", format!("W/{etag}"))
        .send()
        .await
        .unwrap();
    assert_eq!(weak.status(), StatusCode::PRECONDITION_FAILED);
    // (A first byte only: a whole file would be a served transfer, which is counted below.)
    let strong = app
        .client
        .get(&url)
        .header("if-match", &etag)
        .header("range", "bytes=0-0")
        .send()
        .await
        .unwrap();
    assert_eq!(strong.status(), StatusCode::PARTIAL_CONTENT);
    // An If-Range of another version: the whole file.
    let stale = app
        .client
        .get(&url)
        .header("range", "bytes=0-9")
        .header("if-range", "\"0000\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::OK);

    // Altered, expired: refused.
    let mut altered = url.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [altered, format!("{}/v1/downloads/nonsense", app.base)] {
        let refused = fetch(&app, &bad, None).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["code"], "DOWNLOAD_LINK_INVALID");
    }
    clock.advance(chrono::Duration::seconds(301));
    app.admin_token = app.token(domain::values::Role::VendorAdmin).await;
    let expired = fetch(&app, &url, None).await;
    assert_eq!(expired.status(), StatusCode::FORBIDDEN);

    // A yanked release: its fresh link is refused too, its history kept.
    let fresh = link(&app, &v72, &license).await;
    assert_eq!(fresh.status, StatusCode::CREATED);
    let yanked = app
        .post(
            &format!("/v1/releases/{}/yank", v72.release),
            json!({"reason": "broken installer"}),
        )
        .await;
    assert_eq!(yanked.status, StatusCode::OK);
    let refused = fetch(&app, fresh.body["url"].as_str().unwrap(), None).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let refused = link(&app, &v72, &license).await;
    assert_eq!(refused.body["code"], "RELEASE_NOT_VISIBLE");

    // A license that stops seeing a release: its link stops working.
    let v76 = ship(&app, &c.product_id, "7.6.0", "stable", 4).await;
    let renewed = app
        .call(
            reqwest::Method::PUT,
            &format!("/v1/licenses/{license}/maintenance"),
            Some(json!({"until": "2099-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(renewed.status, StatusCode::OK, "{:?}", renewed.body);
    let granted = link(&app, &v76, &license).await;
    assert_eq!(granted.status, StatusCode::CREATED, "{:?}", granted.body);
    let suspended = app
        .post(
            &format!("/v1/licenses/{license}/suspend"),
            json!({"reason": "chargeback"}),
        )
        .await;
    assert_eq!(suspended.status, StatusCode::OK);
    let refused = fetch(&app, granted.body["url"].as_str().unwrap(), None).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    // Every transfer that delivers the file's end is an event; the audit shows who was granted
    // what, and when it was served. For the 7.2 link: the whole file, the range that completed
    // the resumed download and the If-Range answer (the whole file); the first range (inside
    // the file), the 416 and the refused requests recorded nothing.
    let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
    let since = Instant::now();
    let served: Vec<(String, i64)> = loop {
        let rows: Vec<(String, serde_json::Value)> = sqlx::query_as(
            "SELECT aggregate_id, payload::jsonb FROM events WHERE event_type = 'DownloadServed' ORDER BY global_position",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        if rows.len() >= 3 || since.elapsed() > Duration::from_secs(10) {
            break rows
                .into_iter()
                .map(|(id, p)| (id, p["bytes"].as_i64().unwrap()))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let total = v72.bytes.len() as i64;
    let mut sizes: Vec<i64> = served.iter().map(|(_, b)| *b).collect();
    sizes.sort_unstable();
    let mut expected = vec![total, total, total - 100_000];
    expected.sort_unstable();
    assert_eq!(sizes, expected, "{served:?}");

    // The read model: who was granted what, and the counts by release and organization.
    let since = Instant::now();
    loop {
        let counts = app
            .get(&format!("/v1/releases/{}/download-counts", v72.release))
            .await;
        assert_eq!(counts.status, StatusCode::OK, "{:?}", counts.body);
        if counts.body["served"] == 3 || since.elapsed() > Duration::from_secs(10) {
            // The administrator's two links and the download manager's one.
            assert_eq!(counts.body["granted"], 3, "{:?}", counts.body);
            assert_eq!(counts.body["served"], 3, "{:?}", counts.body);
            assert_eq!(
                counts.body["bytes"],
                3 * total - 100_000,
                "{:?}",
                counts.body
            );
            assert_eq!(counts.body["groups"][0]["id"], c.organization_id);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let links = app
        .get(&format!("/v1/releases/{}/downloads", v72.release))
        .await;
    let links = links.body["downloads"].as_array().unwrap().clone();
    assert_eq!(links.len(), 3);
    assert_eq!(links[0]["license_id"], license);
    assert!(
        links[0]["granted_to"]
            .as_str()
            .unwrap()
            .starts_with("api_token:")
    );
    assert_eq!(links[0]["served"], 3);
    assert_eq!(links[1]["served"], 0);
    assert_eq!(links[2]["served"], 0);
    // The audit trail: the grant under the token that asked for it, each transfer after it,
    // in the link's own stream.
    let link_id = links[0]["id"].as_str().unwrap();
    let since = Instant::now();
    let trail: Vec<(String, String)> = loop {
        let entries = app.get("/v1/audit?limit=1000").await.body["entries"]
            .as_array()
            .unwrap()
            .clone();
        let trail: Vec<(String, String)> = entries
            .iter()
            .filter(|e| e["subject_id"] == link_id)
            .map(|e| {
                (
                    e["action"].as_str().unwrap().to_owned(),
                    e["actor"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        if trail.len() >= 4 || since.elapsed() > Duration::from_secs(10) {
            break trail;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(trail.len(), 4, "{trail:?}");
    assert_eq!(trail[0].0, "DownloadGranted");
    assert_eq!(trail[0].1, links[0]["granted_to"].as_str().unwrap());
    assert!(
        trail[1..]
            .iter()
            .all(|(action, actor)| action == "DownloadServed" && actor == "system"),
        "{trail:?}"
    );
    let org = app
        .get(&format!(
            "/v1/organizations/{}/download-counts",
            c.organization_id
        ))
        .await;
    assert_eq!(org.status, StatusCode::OK, "{:?}", org.body);
    assert_eq!(org.body["served"], 3);
    assert_eq!(org.body["groups"][0]["id"], v72.release);
    pool.close().await;
}

async fn updates(
    app: &TestApp,
    app_id: &str,
    body: Value,
    key: Option<&str>,
) -> (StatusCode, Option<String>, Value) {
    let mut request = app
        .client
        .post(format!("{}/v1/updates", app.base))
        .header("x-app-id", app_id)
        .json(&body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        replayed,
        response.json().await.unwrap_or(Value::Null),
    )
}

/// Uploads one more file to a drafted release.
async fn add_file(app: &TestApp, release: &str, name: &str, platform: &str, seed: u8) {
    let up = app
        .client
        .put(format!(
            "{}/v1/releases/{release}/artifacts/{name}?platform={platform}&arch=x86_64",
            app.base
        ))
        .bearer_auth(&app.admin_token)
        .body(payload(5_000, seed))
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installation_is_told_its_update_path_with_links_to_its_platforms_files() {
    let db = TestDb::create().await;
    let clock = Arc::new(commands::clock::OffsetClock::default());
    let mut config = test_config(&db);
    config.app.clock = clock.clone();
    let app = TestApp::start_with(db, config).await;
    let c = app
        .catalogue_with(json!({"name": "Yearly", "model": "node_locked", "seats": 2,
            "duration_days": 365, "features": ["pro"], "offline_allowed": false,
            "offline_grace_days": 0, "payment_grace_days": 0, "maintenance_months": 12}))
        .await;
    let key = app.issue(&c).await["key"].as_str().unwrap().to_owned();
    let product = &c.product_id;
    // 7.2, 7.4, 7.5 (yanked), 7.6, each for Linux and Windows; 8.0 beta.
    let mut shipped = Vec::new();
    for (i, version) in ["7.2.0", "7.4.0", "7.5.0", "7.6.0"].iter().enumerate() {
        let draft = app
            .post(
                &format!("/v1/products/{product}/releases"),
                json!({"version": version, "channel": "stable", "notes": format!("Release {version}")}),
            )
            .await;
        let release = draft.body["id"].as_str().unwrap().to_owned();
        let seed = u8::try_from(i * 2).unwrap();
        add_file(
            &app,
            &release,
            &format!("studio-{version}.tar.gz"),
            "linux",
            seed,
        )
        .await;
        add_file(
            &app,
            &release,
            &format!("studio-{version}.msi"),
            "windows",
            seed + 1,
        )
        .await;
        let published = app
            .post(&format!("/v1/releases/{release}/publish"), json!({}))
            .await;
        assert_eq!(published.status, StatusCode::OK);
        shipped.push(release);
    }
    let beta = ship(&app, product, "8.0.0-beta.1", "beta", 40).await;
    let _ = beta;
    let yanked = app
        .post(
            &format!("/v1/releases/{}/yank", shipped[2]),
            json!({"reason": "data loss on upgrade"}),
        )
        .await;
    assert_eq!(yanked.status, StatusCode::OK);
    let path = app
        .call(
            reqwest::Method::PUT,
            &format!("/v1/products/{product}/upgrade-paths"),
            Some(json!({"from": "7.2", "to": "7.6.0", "via": ["7.4.0"]})),
        )
        .await;
    assert_eq!(path.status, StatusCode::OK, "{:?}", path.body);

    // The read model catches up with the last publish and the yank.
    let ask =
        json!({"key": key, "current_version": "7.2.0", "platform": "linux", "arch": "x86_64"});
    let since = Instant::now();
    let answer = loop {
        let (status, _, body) = updates(&app, &c.app_id, ask.clone(), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["path"] == json!(["7.4.0", "7.6.0"]) || since.elapsed() > Duration::from_secs(10) {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(answer["update_available"], true);
    assert_eq!(answer["path"], json!(["7.4.0", "7.6.0"]), "{answer}");
    // The next step comes with links; the newest is named, its files offered once it is next.
    let next = &answer["next"];
    assert_eq!(next["version"], "7.4.0");
    assert_eq!(next["notes"], "Release 7.4.0");
    let files = next["artifacts"].as_array().unwrap();
    assert_eq!(files.len(), 1, "only the Linux file: {next}");
    assert_eq!(files[0]["filename"], "studio-7.4.0.tar.gz");
    let bytes = app
        .client
        .get(files[0]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.as_ref(), payload(5_000, 2).as_slice());
    assert_eq!(
        hex::encode(Sha256::digest(&bytes)),
        files[0]["sha256"].as_str().unwrap()
    );
    assert_eq!(answer["latest"]["version"], "7.6.0");
    assert_eq!(answer["latest"]["artifacts"], json!([]));
    let mut from_74 = ask.clone();
    from_74["current_version"] = json!("7.4.0");
    let (_, _, answer) = updates(&app, &c.app_id, from_74, None).await;
    assert_eq!(answer["next"], answer["latest"]);
    assert_eq!(
        answer["next"]["artifacts"][0]["filename"],
        "studio-7.6.0.tar.gz"
    );

    // From a patch release of 7.2 the same path; from 7.4 straight on; from 7.6 nothing; the
    // beta channel (not the policy's) is never offered.
    for (from, expected) in [
        ("7.2.3", json!(["7.4.0", "7.6.0"])),
        ("7.4.0", json!(["7.6.0"])),
        ("7.6.0", json!([])),
        ("9.0.0", json!([])),
    ] {
        let mut asked = ask.clone();
        asked["current_version"] = json!(from);
        let (status, _, body) = updates(&app, &c.app_id, asked, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["path"], expected, "from {from}: {body}");
        assert_eq!(body["update_available"], expected != json!([]));
    }
    let mut asked = ask.clone();
    asked["channel"] = json!("beta");
    let (_, _, body) = updates(&app, &c.app_id, asked, None).await;
    assert_eq!(body["update_available"], false, "{body}");

    // A retry asks afresh, key or not (a replayed answer would hand out dead links): each
    // answer links the same file with a fresh grant.
    let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
    let grants = async || -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'DownloadGranted'")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let before = grants().await;
    let (_, replayed, first) = updates(&app, &c.app_id, ask.clone(), Some("upd-1")).await;
    assert_eq!(replayed, None);
    let (_, replayed, again) = updates(&app, &c.app_id, ask.clone(), Some("upd-1")).await;
    assert_eq!(replayed, None);
    assert_eq!(again["path"], first["path"]);
    assert_ne!(
        again["next"]["artifacts"][0]["url"],
        first["next"]["artifacts"][0]["url"]
    );
    assert_eq!(grants().await, before + 2);

    // The newest yanked a moment ago, before the read model knows: never offered, no error.
    let yanked = app
        .post(
            &format!("/v1/releases/{}/yank", shipped[3]),
            json!({"reason": "corrupts projects"}),
        )
        .await;
    assert_eq!(yanked.status, StatusCode::OK);
    let mut from_74 = ask.clone();
    from_74["current_version"] = json!("7.4.0");
    let (status, _, body) = updates(&app, &c.app_id, from_74, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["update_available"], false, "{body}");

    // Bad input: not SemVer, an unknown platform, another application's key.
    let mut bad = ask.clone();
    bad["current_version"] = json!("7.2");
    let (status, _, body) = updates(&app, &c.app_id, bad, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "current_version", "{body}");
    let mut bad = ask.clone();
    bad["platform"] = json!("beos");
    let (status, _, _) = updates(&app, &c.app_id, bad, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, body) =
        updates(&app, &uuid::Uuid::new_v4().to_string(), ask.clone(), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // A suspended license is offered nothing.
    let license = app
        .get(&format!(
            "/v1/licenses?key_prefix={}",
            &key[..key.find('-').unwrap() + 3]
        ))
        .await;
    let license_id = license.body["licenses"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let suspended = app
        .post(
            &format!("/v1/licenses/{license_id}/suspend"),
            json!({"reason": "chargeback"}),
        )
        .await;
    assert_eq!(suspended.status, StatusCode::OK);
    let (status, _, body) = updates(&app, &c.app_id, ask.clone(), None).await;
    // The key still opens the license (validation tells the client it is suspended); a
    // suspended license sees no release, so no update is offered and no link granted.
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"update_available": false, "next": null, "latest": null, "path": []})
    );
    pool.close().await;
}
