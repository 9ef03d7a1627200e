//! Releases against `ledger serve` as users start it (ADR 0023): drafting with one version per
//! product, streamed uploads stored under their digest and signed with the server's key (checked
//! through the SDK with the served JWKS), retries by content, the lifecycle's refusals, upgrade
//! paths, and uploads that break off or run over the limit leaving nothing behind.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tests::{ServerProcess, TestDb, mint_token, spawn_server, temp_data_dir};
use tokio::io::AsyncWriteExt;

const BIN: &str = env!("CARGO_BIN_EXE_ledger-e2e-server");
const LIMIT: usize = 4 * 1024 * 1024;

struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

struct Reply {
    status: u16,
    replayed: bool,
    raw: Vec<u8>,
    body: Value,
}

impl Api {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Reply {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        reply(request.send().await.unwrap()).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn upload(&self, release: &str, name: &str, query: &str, bytes: Vec<u8>) -> Reply {
        let response = self
            .client
            .put(format!(
                "{}/v1/releases/{release}/artifacts/{name}{query}",
                self.base
            ))
            .bearer_auth(&self.token)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .unwrap();
        reply(response).await
    }
}

async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    let raw = response.bytes().await.unwrap().to_vec();
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Reply {
        status,
        replayed,
        raw,
        body,
    }
}

/// Bytes no other test uploads.
fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

async fn start(db: &TestDb, data_dir: &Path) -> (ServerProcess, Api) {
    let token = mint_token(BIN, db);
    let server = spawn_server(
        BIN,
        db,
        data_dir,
        &["--max-artifact-bytes", &LIMIT.to_string()],
    );
    let api = Api {
        client: reqwest::Client::new(),
        base: server.base.clone(),
        token,
    };
    (server, api)
}

async fn product(api: &Api) -> String {
    let p = api
        .post(
            "/v1/products",
            json!({"name": "Studio", "kind": "application"}),
        )
        .await;
    assert_eq!(p.status, 201, "{}", p.body);
    p.body["id"].as_str().unwrap().to_owned()
}

async fn draft(api: &Api, product: &str, version: &str) -> Reply {
    api.post(
        &format!("/v1/products/{product}/releases"),
        json!({"version": version, "channel": "stable", "notes": "Faster.\nSmaller.", "entitlements": ["pro"]}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_is_drafted_uploaded_signed_published_and_yanked() {
    let db = TestDb::create().await;
    let data_dir = temp_data_dir();
    let (_server, api) = start(&db, &data_dir).await;
    let product = product(&api).await;

    // One version per product, build metadata aside; SemVer only.
    let created = draft(&api, &product, "7.4.0").await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["status"], "draft");
    assert_eq!(created.body["entitlements"], json!(["pro"]));
    let release = created.body["id"].as_str().unwrap().to_owned();
    for same in ["7.4.0", "7.4.0+build.9"] {
        let again = draft(&api, &product, same).await;
        assert_eq!(again.status, 409, "{}", again.body);
        assert_eq!(again.body["code"], "RELEASE_VERSION_EXISTS");
    }
    for bad in ["7.4", "v7.4.0", "7.4.0.1", ""] {
        let refused = draft(&api, &product, bad).await;
        assert_eq!(refused.status, 400, "{bad:?}: {}", refused.body);
        assert_eq!(refused.body["field"], "version", "{}", refused.body);
    }
    let unknown = draft(&api, &uuid::Uuid::now_v7().to_string(), "1.0.0").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["code"], "PRODUCT_NOT_FOUND");

    // An upload: stored under its digest, signed by the server's key.
    let bytes = payload(3 * 1024 * 1024 + 17, 1);
    let up = api
        .upload(
            &release,
            "studio-7.4.0-x86_64.tar.gz",
            "?platform=linux&arch=x86_64",
            bytes.clone(),
        )
        .await;
    assert_eq!(up.status, 201, "{}", up.body);
    assert!(!up.replayed);
    let artifact = up.body.clone();
    assert_eq!(artifact["sha256"], hex_sha256(&bytes));
    assert_eq!(artifact["size"], bytes.len());
    assert_eq!(artifact["platform"], "linux");
    assert_eq!(artifact["arch"], "x86_64");
    assert_eq!(artifact["release_id"], release);
    let jwks_text = api
        .client
        .get(format!("{}/.well-known/jwks.json", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let jwks = client::jwks::Jwks::from_json(&jwks_text).unwrap();
    let claims = client::artifact::ArtifactClaims::from_json(&artifact.to_string()).unwrap();
    client::artifact::verify_artifact(&bytes, &claims, &jwks).unwrap();
    let mut altered = bytes.clone();
    altered[1000] ^= 1;
    assert!(client::artifact::verify_artifact(&altered, &claims, &jwks).is_err());
    let sha = artifact["sha256"].as_str().unwrap();
    // The file is where its digest says, whole; nothing is left staged.
    let stored = data_dir.join("artifacts/sha256").join(sha);
    assert_eq!(std::fs::read(&stored).unwrap(), bytes);
    assert!(files_in(&data_dir.join("artifacts/staging")).is_empty());

    // The same bytes again: the first answer, replayed, and no second event.
    let retry = api
        .upload(
            &release,
            "studio-7.4.0-x86_64.tar.gz",
            "?platform=linux&arch=x86_64",
            bytes.clone(),
        )
        .await;
    assert_eq!(retry.status, 201, "{}", retry.body);
    assert!(retry.replayed);
    assert_eq!(retry.raw, up.raw);
    assert_eq!(tests::count_events(&db, "ArtifactAdded").await, 1);
    // Other bytes under that name: artifacts are immutable.
    let other = api
        .upload(
            &release,
            "studio-7.4.0-x86_64.tar.gz",
            "?platform=linux&arch=x86_64",
            payload(1000, 2),
        )
        .await;
    assert_eq!(other.status, 409, "{}", other.body);
    assert_eq!(other.body["code"], "ARTIFACT_EXISTS");

    // Names that are paths, and bad queries and bodies.
    let long = "a".repeat(256);
    // (A bare `..` never reaches the server: URL normalization removes it on the client.)
    for (name, field) in [
        ("a..b.zip", "filename"),
        ("dir%2Fa.zip", "filename"),
        ("dir%5Ca.zip", "filename"),
        ("a%0Ab.zip", "filename"),
        (long.as_str(), "filename"),
    ] {
        let refused = api.upload(&release, name, "", payload(10, 3)).await;
        assert_eq!(refused.status, 400, "{name}: {}", refused.body);
        assert_eq!(refused.body["field"], field, "{name}: {}", refused.body);
    }
    let beos = api
        .upload(&release, "a.zip", "?platform=beos", payload(10, 3))
        .await;
    assert_eq!(beos.status, 400);
    assert_eq!(beos.body["field"], "platform");
    let unknown_param = api
        .upload(&release, "a.zip", "?color=red", payload(10, 3))
        .await;
    assert_eq!(unknown_param.status, 400);
    let empty = api.upload(&release, "a.zip", "", Vec::new()).await;
    assert_eq!(empty.status, 400, "{}", empty.body);
    let missing = api
        .upload(
            &uuid::Uuid::now_v7().to_string(),
            "a.zip",
            "",
            payload(10, 3),
        )
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["code"], "RELEASE_NOT_FOUND");
    // Over --max-artifact-bytes: 413, nothing stored, nothing recorded.
    let before = files_in(&data_dir.join("artifacts/sha256"));
    let big = api
        .upload(&release, "big.bin", "", payload(LIMIT + 1, 4))
        .await;
    assert_eq!(big.status, 413, "{}", big.body);
    assert_eq!(big.body["code"], "PAYLOAD_TOO_LARGE");
    assert_eq!(files_in(&data_dir.join("artifacts/sha256")), before);
    assert!(files_in(&data_dir.join("artifacts/staging")).is_empty());
    assert_eq!(tests::count_events(&db, "ArtifactAdded").await, 1);
    // Exactly the limit is accepted.
    let at_limit = api
        .upload(&release, "full.bin", "", payload(LIMIT, 5))
        .await;
    assert_eq!(at_limit.status, 201, "{}", at_limit.body);

    // A draft with no artifact is not published.
    let empty_release = draft(&api, &product, "7.5.0").await;
    let empty_id = empty_release.body["id"].as_str().unwrap();
    let refused = api
        .post(&format!("/v1/releases/{empty_id}/publish"), json!({}))
        .await;
    assert_eq!(refused.status, 409);
    assert_eq!(refused.body["code"], "RELEASE_HAS_NO_ARTIFACTS");
    // A draft is not yanked.
    let refused = api
        .post(
            &format!("/v1/releases/{empty_id}/yank"),
            json!({"reason": "no"}),
        )
        .await;
    assert_eq!(refused.status, 409);
    assert_eq!(refused.body["code"], "RELEASE_NOT_PUBLISHED");

    // Publish: artifacts final; a recorded upload still replays.
    let published = api
        .post(&format!("/v1/releases/{release}/publish"), json!({}))
        .await;
    assert_eq!(published.status, 200, "{}", published.body);
    assert_eq!(published.body["status"], "published");
    assert!(published.body["published_at"].is_string());
    let late = api.upload(&release, "late.zip", "", payload(10, 6)).await;
    assert_eq!(late.status, 409);
    assert_eq!(late.body["code"], "RELEASE_NOT_DRAFT");
    let rerun = api
        .upload(
            &release,
            "studio-7.4.0-x86_64.tar.gz",
            "?platform=linux&arch=x86_64",
            bytes.clone(),
        )
        .await;
    assert_eq!(rerun.status, 201);
    assert!(rerun.replayed);
    let twice = api
        .post(&format!("/v1/releases/{release}/publish"), json!({}))
        .await;
    assert_eq!(twice.status, 409);
    assert_eq!(twice.body["code"], "RELEASE_NOT_DRAFT");

    // A customer's license downloads it through a signed link, resumably.
    let org = api
        .post(
            "/v1/organizations",
            json!({"name": "Acme GmbH", "kind": "customer"}),
        )
        .await;
    let policy = api
        .post(
            "/v1/policies",
            json!({"product_id": product, "name": "Pro", "model": "node_locked", "seats": 1,
                   "duration_days": 365, "features": ["pro"], "offline_allowed": false,
                   "offline_grace_days": 0, "payment_grace_days": 0}),
        )
        .await;
    assert_eq!(policy.status, 201, "{}", policy.body);
    let license = api
        .post(
            "/v1/licenses",
            json!({"policy_id": policy.body["id"], "organization_id": org.body["id"]}),
        )
        .await;
    assert_eq!(license.status, 201, "{}", license.body);
    let since = Instant::now();
    let link = loop {
        let link = api
            .post(
                &format!(
                    "/v1/artifacts/{}/download-links",
                    artifact["id"].as_str().unwrap()
                ),
                json!({"license_id": license.body["id"]}),
            )
            .await;
        if link.status != 404 || since.elapsed() > Duration::from_secs(10) {
            break link;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(link.status, 201, "{}", link.body);
    let url = link.body["url"].as_str().unwrap();
    assert!(url.starts_with(&api.base), "{url}");
    let whole = api.client.get(url).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.bytes().await.unwrap().as_ref(), bytes.as_slice());
    let part = api
        .client
        .get(url)
        .header("range", "bytes=1000-")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap().as_ref(), &bytes[1000..]);

    // Yank: kept, with its reason, once.
    let yanked = api
        .post(
            &format!("/v1/releases/{release}/yank"),
            json!({"reason": "installer breaks on Windows Server 2019"}),
        )
        .await;
    assert_eq!(yanked.status, 200, "{}", yanked.body);
    assert_eq!(yanked.body["status"], "yanked");
    assert_eq!(
        yanked.body["yank_reason"],
        "installer breaks on Windows Server 2019"
    );
    let again = api
        .post(
            &format!("/v1/releases/{release}/yank"),
            json!({"reason": "again"}),
        )
        .await;
    assert_eq!(again.status, 409);
    assert_eq!(again.body["code"], "RELEASE_YANKED");
    let refused = api.client.get(url).send().await.unwrap();
    assert_eq!(refused.status(), 403, "a yanked release's link is refused");
    let read = api.get(&format!("/v1/releases/{release}")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["artifacts"].as_array().unwrap().len(), 2);
    assert_eq!(read.body["artifacts"][0], artifact);

    // The list (read model) catches up with the log.
    let since = Instant::now();
    loop {
        let page = api
            .get(&format!("/v1/products/{product}/releases?version=7.4.0"))
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        let releases = page.body["releases"].as_array().unwrap();
        if releases.len() == 1 && releases[0]["status"] == "yanked" {
            assert_eq!(releases[0]["artifacts"][0], artifact);
            assert_eq!(releases[0]["notes"], "Faster.\nSmaller.");
            break;
        }
        assert!(since.elapsed() < Duration::from_secs(10), "{}", page.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = api.get(&format!("/v1/products/{product}/releases")).await;
    assert_eq!(all.body["releases"].as_array().unwrap().len(), 2);
    let bad_query = api
        .get(&format!("/v1/products/{product}/releases?channel=beta"))
        .await;
    assert_eq!(bad_query.status, 400);

    // Upgrade paths: a requirement as start, steps checked, a repeat records nothing.
    let path = json!({"from": "7.2", "to": "7.6.0", "via": ["7.4.0"]});
    let declared = api
        .send(
            reqwest::Method::PUT,
            &format!("/v1/products/{product}/upgrade-paths"),
            Some(path.clone()),
        )
        .await;
    assert_eq!(declared.status, 200, "{}", declared.body);
    assert_eq!(
        declared.body["upgrade_paths"],
        json!([{"from": "=7.2", "to": "7.6.0", "via": ["7.4.0"]}])
    );
    let repeated = api
        .send(
            reqwest::Method::PUT,
            &format!("/v1/products/{product}/upgrade-paths"),
            Some(path),
        )
        .await;
    assert_eq!(repeated.status, 200);
    assert_eq!(tests::count_events(&db, "UpgradePathDeclared").await, 1);
    for bad in [
        json!({"from": "7.2", "to": "7.6.0", "via": ["7.8.0"]}),
        json!({"from": "7.2", "to": "7.2.5"}),
        json!({"from": "7.2", "to": "7.6.0", "via": ["7.5.0", "7.4.0"]}),
    ] {
        let refused = api
            .send(
                reqwest::Method::PUT,
                &format!("/v1/products/{product}/upgrade-paths"),
                Some(bad.clone()),
            )
            .await;
        assert_eq!(refused.status, 400, "{bad}: {}", refused.body);
        assert_eq!(refused.body["code"], "INVALID_UPGRADE_PATH");
    }
    let bad_from = api
        .send(
            reqwest::Method::PUT,
            &format!("/v1/products/{product}/upgrade-paths"),
            Some(json!({"from": "seven", "to": "7.6.0"})),
        )
        .await;
    assert_eq!(bad_from.status, 400);
    assert_eq!(bad_from.body["field"], "from");
    // A product that does not exist.
    let unknown = api
        .send(
            reqwest::Method::PUT,
            "/v1/products/7d444840-9dc0-11d1-b245-5ffdce74fad2/upgrade-paths",
            Some(json!({"from": "7.2", "to": "7.6.0"})),
        )
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(unknown.body["code"], "PRODUCT_NOT_FOUND");
    let read = api
        .get(&format!("/v1/products/{product}/upgrade-paths"))
        .await;
    assert_eq!(read.body["upgrade_paths"][0]["via"], json!(["7.4.0"]));
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// Racing requests: exactly one created (201), every other refused as a conflict (409).
fn one_winner(statuses: &[u16]) {
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_drafts_and_uploads_record_one_each() {
    let db = TestDb::create().await;
    let data_dir = temp_data_dir();
    let (_server, api) = start(&db, &data_dir).await;
    let product = product(&api).await;
    let api = std::sync::Arc::new(api);

    // 20 drafts of one version at once: one release.
    let drafts: Vec<_> = (0..20)
        .map(|_| {
            let api = api.clone();
            let product = product.clone();
            tokio::spawn(async move {
                let r = draft(&api, &product, "8.0.0").await;
                (r.status, r.body["id"].as_str().map(str::to_owned))
            })
        })
        .collect();
    let mut statuses = Vec::new();
    let mut release = String::new();
    for d in drafts {
        let (status, id) = d.await.unwrap();
        if status == 201 {
            release = id.unwrap();
        }
        statuses.push(status);
    }
    one_winner(&statuses);
    assert_eq!(tests::count_events(&db, "ReleaseDrafted").await, 1);

    // 20 uploads of different bytes under one name at once: one artifact.
    let uploads: Vec<_> = (0..20u8)
        .map(|i| {
            let api = api.clone();
            let release = release.clone();
            tokio::spawn(async move {
                api.upload(&release, "same-name.zip", "", payload(100_000, i))
                    .await
                    .status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for u in uploads {
        statuses.push(u.await.unwrap());
    }
    one_winner(&statuses);
    assert_eq!(tests::count_events(&db, "ArtifactAdded").await, 1);
    // The refused uploads took their files with them: one file, the recorded one.
    let stored = files_in(&data_dir.join("artifacts/sha256"));
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(files_in(&data_dir.join("artifacts/staging")).is_empty());
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// Sends the head of an upload announcing `announced` bytes, then `sent` of them.
async fn partial_upload(
    base: &str,
    token: &str,
    release: &str,
    announced: usize,
    sent: usize,
) -> tokio::net::TcpStream {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT /v1/releases/{release}/artifacts/partial.bin HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {announced}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&payload(sent, 9)).await.unwrap();
    stream.flush().await.unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_breaks_off_or_dies_with_the_server_leaves_nothing() {
    let db = TestDb::create().await;
    let data_dir = temp_data_dir();
    let (server, api) = start(&db, &data_dir).await;
    let product = product(&api).await;
    let release = draft(&api, &product, "9.0.0").await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let staging = data_dir.join("artifacts/staging");
    let content = data_dir.join("artifacts/sha256");

    // A body announced over the limit is refused before a byte is read.
    let mut announced = partial_upload(&api.base, &api.token, &release, LIMIT + 1, 0).await;
    let mut head = [0u8; 12];
    tokio::io::AsyncReadExt::read_exact(&mut announced, &mut head)
        .await
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");
    drop(announced);

    // The client goes away midway: the staging file is removed, nothing recorded.
    let stream = partial_upload(&api.base, &api.token, &release, 2_000_000, 500_000).await;
    let since = Instant::now();
    while files_in(&staging).is_empty() {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "the upload never staged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(stream);
    let since = Instant::now();
    while !files_in(&staging).is_empty() {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "a broken-off upload left {:?}",
            files_in(&staging)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(files_in(&content).is_empty());
    assert_eq!(tests::count_events(&db, "ArtifactAdded").await, 0);

    // kill -9 mid-upload: a staging file stays behind...
    let _stream = partial_upload(&api.base, &api.token, &release, 2_000_000, 500_000).await;
    let since = Instant::now();
    while files_in(&staging).is_empty() {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "the upload never staged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(server); // SIGKILL
    assert_eq!(files_in(&staging).len(), 1);
    // ...and, as if killed between the rename and the event, a content file no event names.
    let orphan = hex_sha256(b"never recorded");
    std::fs::write(content.join(&orphan), b"never recorded").unwrap();

    // The next start clears both (the unrecorded file kept aside for an operator); a
    // recorded artifact stays.
    let (_server, api) = start(&db, &data_dir).await;
    assert!(files_in(&staging).is_empty(), "{:?}", files_in(&staging));
    assert!(files_in(&content).is_empty(), "{:?}", files_in(&content));
    assert_eq!(
        files_in(&data_dir.join("artifacts/unreferenced")),
        vec![orphan.clone()]
    );
    // A second server on the same directory joins it without clearing anything: a file being
    // staged (by the first, as far as it knows) stays.
    let in_flight = staging.join("in-flight");
    std::fs::write(&in_flight, b"partial").unwrap();
    let second = spawn_server(BIN, &db, &data_dir, &[]);
    assert!(
        in_flight.exists(),
        "a second server cleared the first one's upload"
    );
    drop(second);
    std::fs::remove_file(&in_flight).unwrap();
    let kept = payload(10_000, 10);
    let up = api.upload(&release, "kept.bin", "", kept.clone()).await;
    assert_eq!(up.status, 201, "{}", up.body);
    drop(_server);
    let (_server, _api) = start(&db, &data_dir).await;
    assert_eq!(files_in(&content), vec![hex_sha256(&kept)]);
    assert_eq!(tests::count_events(&db, "ArtifactAdded").await, 1);
    let _ = std::fs::remove_dir_all(&data_dir);
}
