//! Artifacts in an S3-compatible store (ADR 0024): `ledger serve --artifact-store
//! s3://bucket/prefix`, started as users start it, against moto's S3 server from PyPI. Uploads
//! land under their digest in the bucket through multipart uploads (several parts for a large
//! file), nothing in the data directory; retries by content, a broken-off upload leaving no
//! object and no event, downloads with `Range` read from the bucket, the start-up sweep clearing
//! only what is old enough, and a store that does not answer stopping the server at start.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tests::s3::Moto;
use tests::{ServerProcess, TestDb, mint_token, spawn_server_env, temp_data_dir};
use tokio::io::AsyncWriteExt;

const BIN: &str = env!("CARGO_BIN_EXE_ledger-e2e-server");
/// Room for a file of three parts (`object::PART` is 8 MiB).
const LIMIT: usize = 64 * 1024 * 1024;

struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

struct Reply {
    status: u16,
    replayed: bool,
    body: Value,
}

impl Api {
    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.bearer_auth(&self.token).send().await.unwrap();
        let status = response.status().as_u16();
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        let body = response.json().await.unwrap_or(Value::Null);
        Reply {
            status,
            replayed,
            body,
        }
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(self.client.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    async fn upload(&self, release: &str, name: &str, bytes: Vec<u8>) -> Reply {
        self.send(
            self.client
                .put(format!(
                    "{}/v1/releases/{release}/artifacts/{name}?platform=linux&arch=x86_64",
                    self.base
                ))
                .header("content-type", "application/octet-stream")
                .body(bytes),
        )
        .await
    }

    fn created(reply: &Reply) -> String {
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.body["id"].as_str().unwrap().to_owned()
    }
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) ^ ((i >> 13) as u8))
        .collect()
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn serve(
    db: &TestDb,
    data_dir: &Path,
    moto: &Moto,
    store: &str,
    stale_secs: &str,
) -> ServerProcess {
    let limit = LIMIT.to_string();
    let args = [
        "--artifact-store",
        store,
        "--max-artifact-bytes",
        &limit,
        "--artifact-stale-secs",
        stale_secs,
    ];
    spawn_server_env(BIN, db, data_dir, &args, None, &moto.env()).0
}

/// Waits until `moto`'s keys under `prefix` are `want` (clean-ups run as tasks of their own).
async fn keys_become(moto: &Moto, bucket: &str, prefix: &str, want: &[String]) {
    let since = Instant::now();
    loop {
        let keys = moto.keys(bucket, prefix).await;
        if keys == want {
            return;
        }
        assert!(
            since.elapsed() < Duration::from_secs(15),
            "{prefix}: {keys:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_live_in_an_s3_store_from_upload_to_download() {
    let moto = Moto::start(Path::new(env!("CARGO_TARGET_TMPDIR"))).await;
    let bucket = moto.bucket().await;
    let store = format!("s3://{bucket}/vendor/artifacts");
    let db = TestDb::create().await;
    let data_dir = temp_data_dir();
    let server = serve(&db, &data_dir, &moto, &store, "3600");
    let api = Api {
        client: reqwest::Client::new(),
        base: server.base.clone(),
        token: mint_token(BIN, &db),
    };
    let content_prefix = "vendor/artifacts/sha256/";
    let staging_prefix = "vendor/artifacts/staging/";

    let org = Api::created(
        &api.post(
            "/v1/organizations",
            json!({"name": "Acme GmbH", "kind": "customer"}),
        )
        .await,
    );
    let product = Api::created(
        &api.post(
            "/v1/products",
            json!({"name": "Studio", "kind": "application"}),
        )
        .await,
    );
    let policy = Api::created(
        &api.post(
            "/v1/policies",
            json!({"product_id": product, "name": "Pro", "model": "node_locked", "seats": 3,
                   "duration_days": 365, "features": ["pro"], "offline_allowed": false,
                   "offline_grace_days": 0, "payment_grace_days": 7}),
        )
        .await,
    );
    let license = Api::created(
        &api.post(
            "/v1/licenses",
            json!({"policy_id": policy, "organization_id": org}),
        )
        .await,
    );
    let release = Api::created(
        &api.post(
            &format!("/v1/products/{product}/releases"),
            json!({"version": "8.0.0", "channel": "stable"}),
        )
        .await,
    );

    // A file of three parts (8 MiB each, the last shorter) and one of a single part.
    let large = payload(2 * 8 * 1024 * 1024 + 123_457, 1);
    let small = payload(70_000, 2);
    let up = api
        .upload(&release, "studio-8.0.0.tar.gz", large.clone())
        .await;
    let large_artifact = Api::created(&up);
    assert_eq!(up.body["sha256"], hex_sha256(&large));
    assert_eq!(up.body["size"], large.len());
    let up = api
        .upload(&release, "studio-8.0.0.sig", small.clone())
        .await;
    Api::created(&up);
    let mut stored = vec![
        format!("{content_prefix}{}", hex_sha256(&large)),
        format!("{content_prefix}{}", hex_sha256(&small)),
    ];
    stored.sort();
    assert_eq!(moto.keys(&bucket, content_prefix).await, stored);
    keys_become(&moto, &bucket, staging_prefix, &[]).await;
    assert_eq!(
        moto.get(&bucket, &format!("{content_prefix}{}", hex_sha256(&large)))
            .await,
        large,
        "the bucket holds the uploaded bytes"
    );
    // The data directory holds no artifact.
    let local = std::fs::read_dir(data_dir.join("artifacts/sha256"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(local, 0);

    // The same bytes under the same name replay; other bytes under it are refused.
    let again = api
        .upload(&release, "studio-8.0.0.tar.gz", large.clone())
        .await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert!(again.replayed);
    assert_eq!(again.body["id"], large_artifact.as_str());
    let other = api
        .upload(&release, "studio-8.0.0.tar.gz", payload(1000, 3))
        .await;
    assert_eq!(other.status, 409, "{}", other.body);
    assert_eq!(other.body["code"], "ARTIFACT_EXISTS");
    keys_become(&moto, &bucket, content_prefix, &stored).await;
    keys_become(&moto, &bucket, staging_prefix, &[]).await;

    // A client that goes away after more than a part: its multipart upload is aborted, no
    // object and no event is left.
    let addr = api.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PUT /v1/releases/{release}/artifacts/partial.bin HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\n\r\n",
        api.token,
        20 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
        .write_all(&payload(10 * 1024 * 1024, 4))
        .await
        .unwrap();
    stream.flush().await.unwrap();
    let since = Instant::now();
    // One part of the two the sent bytes make is received, the next is being gathered.
    while moto.open_uploads(&bucket, staging_prefix).await != [1] {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "no part was uploaded: {:?}",
            moto.open_uploads(&bucket, staging_prefix).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stream);
    let since = Instant::now();
    while !moto.open_uploads(&bucket, staging_prefix).await.is_empty() {
        assert!(
            since.elapsed() < Duration::from_secs(15),
            "the broken-off multipart upload was not aborted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    keys_become(&moto, &bucket, staging_prefix, &[]).await;
    keys_become(&moto, &bucket, content_prefix, &stored).await;
    assert_eq!(tests::count_events(&db, "ArtifactAdded").await, 2);

    // Published, linked, downloaded whole and in part from the bucket.
    let published = api
        .post(&format!("/v1/releases/{release}/publish"), json!({}))
        .await;
    assert_eq!(published.status, 200, "{}", published.body);
    let link_path = format!("/v1/artifacts/{large_artifact}/download-links");
    let since = Instant::now();
    let link = loop {
        let link = api.post(&link_path, json!({"license_id": license})).await;
        // The artifact is found through the read model, which may trail the log.
        if link.body["code"] != "ARTIFACT_NOT_FOUND" || since.elapsed() > Duration::from_secs(10) {
            break link;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(link.status, 201, "{}", link.body);
    let url = link.body["url"].as_str().unwrap().to_owned();
    let whole = api.client.get(&url).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(
        whole.headers()["etag"].to_str().unwrap(),
        format!("\"{}\"", hex_sha256(&large))
    );
    let got = whole.bytes().await.unwrap();
    assert_eq!(hex_sha256(&got), hex_sha256(&large));
    let (from, to) = (8 * 1024 * 1024 - 10, 8 * 1024 * 1024 + 9_999);
    let part = api
        .client
        .get(&url)
        .header("range", format!("bytes={from}-{to}"))
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"].to_str().unwrap(),
        format!("bytes {from}-{to}/{}", large.len())
    );
    assert_eq!(part.bytes().await.unwrap().as_ref(), &large[from..=to]);
    let since = Instant::now();
    while tests::count_events(&db, "DownloadServed").await != 1 {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "no DownloadServed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Leftovers as a killed server leaves them: a staging object, and a content object no
    // event names. A start clears only what is older than --artifact-stale-secs.
    drop(server);
    let orphan = payload(5000, 5);
    moto.put(
        &bucket,
        &format!("{staging_prefix}abandoned"),
        payload(100, 6),
    )
    .await;
    moto.put(
        &bucket,
        &format!("{content_prefix}{}", hex_sha256(&orphan)),
        orphan.clone(),
    )
    .await;
    let mut with_orphan = stored.clone();
    with_orphan.push(format!("{content_prefix}{}", hex_sha256(&orphan)));
    with_orphan.sort();
    let server = serve(&db, &data_dir, &moto, &store, "3600");
    assert_eq!(moto.keys(&bucket, content_prefix).await, with_orphan);
    assert_eq!(
        moto.keys(&bucket, staging_prefix).await,
        vec![format!("{staging_prefix}abandoned")],
        "a fresh leftover may be another server's upload in flight"
    );
    drop(server);
    // Old enough for --artifact-stale-secs 2 (the store's clock counts whole seconds), and a
    // staging object that is not: an upload in flight on another server, as far as a starting
    // server can tell.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    moto.put(
        &bucket,
        &format!("{staging_prefix}in-flight"),
        payload(100, 7),
    )
    .await;
    // A file an earlier configuration left in the data directory is not served from the
    // bucket: the start says so.
    std::fs::write(
        data_dir.join("artifacts/sha256").join(hex_sha256(b"local")),
        b"local",
    )
    .unwrap();
    let (server, logs) = tests::spawn_server_env(
        BIN,
        &db,
        &data_dir,
        &[
            "--artifact-store",
            &store,
            "--max-artifact-bytes",
            &LIMIT.to_string(),
            "--artifact-stale-secs",
            "2",
        ],
        None,
        &moto.env(),
    );
    let warned = logs.lock().unwrap().iter().any(|l| {
        l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("the data directory holds artifact files"))
            && l["fields"]["files"] == 1
    });
    assert!(warned, "no warning of the data directory's files");
    assert_eq!(moto.keys(&bucket, content_prefix).await, stored);
    assert_eq!(
        moto.keys(&bucket, staging_prefix).await,
        vec![format!("{staging_prefix}in-flight")]
    );
    // What is recorded is still served.
    let link = api_with(&server, &api)
        .post(&link_path, json!({"license_id": license}))
        .await;
    assert_eq!(link.status, 201, "{}", link.body);
    let got = api
        .client
        .get(link.body["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), large.as_slice());
    drop(server);
    db.drop_db().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// `api`'s client and token against another server process.
fn api_with(server: &ServerProcess, api: &Api) -> Api {
    Api {
        client: api.client.clone(),
        base: server.base.clone(),
        token: api.token.clone(),
    }
}

/// Runs `ledger serve` with `args` and returns its exit status and standard error, killing it
/// if it is still running after 60 s (it should have stopped by itself).
fn serve_fails(db: &TestDb, data_dir: &Path, env: &[(&str, String)], args: &[&str]) -> String {
    let mut command = std::process::Command::new(BIN);
    let mut child = tests::server_env(&mut command, env)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &db.url,
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let since = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if since.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("`serve {args:?}` kept running");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "`serve {args:?}` succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_serve_stops_the_server_at_start() {
    let moto = Moto::start(Path::new(env!("CARGO_TARGET_TMPDIR"))).await;
    let db = TestDb::create().await;
    let data_dir = temp_data_dir();
    let env = moto.env();
    let stderr = serve_fails(
        &db,
        &data_dir,
        &env,
        &["--artifact-store", "gs://bucket/artifacts"],
    );
    assert!(stderr.contains("s3://bucket[/prefix]"), "{stderr}");
    let stderr = serve_fails(&db, &data_dir, &env, &["--artifact-store", "s3://"]);
    assert!(stderr.contains("names no bucket"), "{stderr}");
    // A bucket that does not exist: refused before the server listens.
    let stderr = serve_fails(
        &db,
        &data_dir,
        &env,
        &["--artifact-store", "s3://no-such-bucket/artifacts"],
    );
    assert!(stderr.contains("does not answer"), "{stderr}");
    // Plain http only when asked for.
    let plain: Vec<_> = env
        .iter()
        .filter(|(k, _)| *k != "AWS_ALLOW_HTTP")
        .cloned()
        .collect();
    let bucket = moto.bucket().await;
    let at = format!("s3://{bucket}");
    let stderr = serve_fails(&db, &data_dir, &plain, &["--artifact-store", &at]);
    assert!(stderr.contains("AWS_ALLOW_HTTP=true"), "{stderr}");
    // Nothing listens there: refused before the server listens, within the check's 30 s.
    let mut nowhere = env.clone();
    for (k, v) in &mut nowhere {
        if *k == "AWS_ENDPOINT_URL" {
            *v = "http://127.0.0.1:9".to_owned();
        }
    }
    let stderr = serve_fails(&db, &data_dir, &nowhere, &["--artifact-store", &at]);
    assert!(stderr.contains("does not answer"), "{stderr}");
    // S3 copies at most 5 GiB in one request.
    let stderr = serve_fails(
        &db,
        &data_dir,
        &env,
        &[
            "--artifact-store",
            &format!("s3://{bucket}"),
            "--max-artifact-bytes",
            "6000000000",
        ],
    );
    assert!(stderr.contains("5 GiB"), "{stderr}");
    db.drop_db().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}
