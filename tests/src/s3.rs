//! A local S3-compatible server for the artifact-store tests: moto's server mode from PyPI
//! (pinned in `tests/s3/requirements.txt`, installed by `crate::venv`), started on a free
//! loopback port for one test and killed when it ends. It checks no credentials; the server
//! under test signs its requests all the same, with the keys [`Moto::env`] gives it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    client: reqwest::Client,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An `Authorization` header naming [`Moto::env`]'s access key: moto keeps an object's owner
/// and refuses it to anonymous readers, but checks no signature.
const SIGNED_AS_TEST: &str = "AWS4-HMAC-SHA256 \
    Credential=ledger-test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";

fn requirements() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("s3")
        .join("requirements.txt")
}

impl Moto {
    /// Installs moto when needed and starts it; returns once it answers.
    pub async fn start(target_tmp: &Path) -> Self {
        let python = crate::venv::python(target_tmp, "moto-venv", &requirements());
        // A free port: bound and released. Another process taking it in between makes moto
        // fail to start, which the wait below reports.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto's server");
        let moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        let since = Instant::now();
        loop {
            if moto
                .client
                .get(format!("{}/moto-api/", moto.endpoint))
                .send()
                .await
                .is_ok()
            {
                return moto;
            }
            assert!(
                since.elapsed() < Duration::from_secs(60),
                "moto's server did not answer on {} within 60 s",
                moto.endpoint
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates a bucket named after the test, and returns its name.
    pub async fn bucket(&self) -> String {
        let name = format!("ledger-{}", uuid::Uuid::new_v4().simple());
        let created = self
            .client
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .expect("moto answers");
        assert!(
            created.status().is_success(),
            "bucket: {}",
            created.status()
        );
        name
    }

    /// The environment `ledger serve` reads the store's settings from (the standard AWS
    /// variables).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "ledger-test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "ledger-test-secret".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
        ]
    }

    /// The keys under `prefix` in `bucket`, sorted.
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let listed = self
            .client
            // Keys and prefixes here are hex, UUIDs and slashes: nothing to escape.
            .get(format!(
                "{}/{bucket}?list-type=2&prefix={prefix}",
                self.endpoint
            ))
            .send()
            .await
            .expect("moto answers");
        assert!(listed.status().is_success(), "list: {}", listed.status());
        let listed = listed.text().await.expect("a listing");
        let mut keys: Vec<String> = listed
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(k, _)| k.to_owned()))
            .collect();
        keys.sort();
        keys
    }

    /// The multipart uploads under `prefix` begun and neither completed nor aborted, with the
    /// number of parts each has received.
    pub async fn open_uploads(&self, bucket: &str, prefix: &str) -> Vec<usize> {
        let listed = self
            .signed_get(&format!("{bucket}?uploads&prefix={prefix}"))
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .expect("the bucket exists");
        let mut parts = Vec::new();
        for upload in listed.split("<Upload>").skip(1) {
            let field = |name: &str| {
                upload
                    .split_once(&format!("<{name}>"))
                    .and_then(|(_, rest)| rest.split_once(&format!("</{name}>")))
                    .map(|(value, _)| value.to_owned())
                    .expect("an upload's field")
            };
            let (key, id) = (field("Key"), field("UploadId"));
            // Gone since the listing (completed or aborted): not open.
            if let Some(listed) = self
                .signed_get(&format!("{bucket}/{key}?uploadId={id}"))
                .await
            {
                parts.push(String::from_utf8_lossy(&listed).matches("<Part>").count());
            }
        }
        parts
    }

    /// `None` when moto answers 404.
    async fn signed_get(&self, path: &str) -> Option<Vec<u8>> {
        let got = self
            .client
            .get(format!("{}/{path}", self.endpoint))
            .header("authorization", SIGNED_AS_TEST)
            .send()
            .await
            .expect("moto answers");
        if got.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        assert!(got.status().is_success(), "{path}: {}", got.status());
        Some(got.bytes().await.expect("an answer").to_vec())
    }

    /// Puts an object as another program would (unsigned: moto checks nothing).
    pub async fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) {
        let put = self
            .client
            .put(format!("{}/{bucket}/{key}", self.endpoint))
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .expect("moto answers");
        assert!(put.status().is_success(), "put {key}: {}", put.status());
    }

    /// An object's bytes.
    pub async fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        self.signed_get(&format!("{bucket}/{key}"))
            .await
            .unwrap_or_else(|| panic!("{key}: 404"))
    }
}
