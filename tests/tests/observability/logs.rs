//! Request logs as an operator reads them at the most verbose level there is (`RUST_LOG=trace`,
//! JSON): each request's line carries its route template, status, latency and request id, and
//! no license key, token or secret of a whole session appears anywhere in them.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Client, Method};
use serde_json::{Value, json};
use tests::{TestDb, mint_token, temp_data_dir};

const BIN: &str = env!("CARGO_BIN_EXE_ledger-e2e-server");

/// The server process; killed when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ledger serve` with every log line kept as written (not only those that parse as JSON: a
/// secret in any line counts).
fn spawn(
    db: &TestDb,
    data_dir: &std::path::Path,
    pepper: &str,
) -> (Server, String, Arc<Mutex<String>>) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &db.url,
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .env("LEDGER_LOG_FORMAT", "json")
        .env("RUST_LOG", "trace")
        .env("LEDGER_KEY_PEPPER", pepper)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the server binary");
    let stderr = child.stderr.take().unwrap();
    let text = Arc::new(Mutex::new(String::new()));
    let kept = text.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(log) = serde_json::from_str::<Value>(&line)
                && log["fields"]["message"] == "license-ledger listening"
            {
                let _ = tx.send(
                    log["fields"]["addr"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
            let mut all = kept.lock().unwrap();
            all.push_str(&line);
            all.push('\n');
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server reports its address");
    (Server(child), format!("http://{addr}"), text)
}

/// One session's HTTP calls, remembering every secret that went over the wire.
struct Session {
    client: Client,
    base: String,
    secrets: Vec<String>,
}

impl Session {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Remembers `secret` and, for an administration token, its secret part, and for a license
    /// key, all but its public prefix (ids and key prefixes may be logged; secrets may not).
    fn keep(&mut self, secret: &str) {
        assert!(secret.len() >= 20, "not a secret: {secret:?}");
        self.secrets.push(secret.to_owned());
        if let Some(rest) = secret.strip_prefix("llt_")
            && let Some((_, part)) = rest.split_once('_')
        {
            self.secrets.push(part.to_owned());
        } else if let Some((_, rest)) = secret.split_once('-') {
            // PREFIX-AAAA…: the prefix shown to support is PREFIX-AAAA; the rest is secret.
            self.secrets.push(rest[4..].to_owned());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_at_trace_level_carry_routes_and_never_a_secret() {
    let db = TestDb::create().await;
    let data_dir = temp_data_dir();
    let pepper = hex::encode(uuid::Uuid::new_v4().as_bytes()).repeat(2);
    let admin = mint_token(BIN, &db);
    let (server, base, logs) = spawn(&db, &data_dir, &pepper);
    let mut s = Session {
        client: Client::new(),
        base,
        secrets: vec![pepper.clone(), pepper.to_uppercase()],
    };
    s.keep(&admin);
    let admin = Some(admin.as_str());

    // The catalogue.
    let (_, org) = s
        .call(
            Method::POST,
            "/v1/organizations",
            admin,
            &[],
            Some(json!({"name": "Acme", "kind": "customer"})),
        )
        .await;
    let (_, product) = s
        .call(
            Method::POST,
            "/v1/products",
            admin,
            &[],
            Some(json!({"name": "Studio", "kind": "application"})),
        )
        .await;
    let app_id = product["app_id"].as_str().unwrap().to_owned();
    let (status, policy) = s
        .call(
            Method::POST,
            "/v1/policies",
            admin,
            &[],
            Some(
                json!({"product_id": product["id"], "name": "Pro", "model": "node_locked",
                        "seats": 3, "duration_days": 365, "features": ["pro"],
                        "offline_allowed": true, "offline_grace_days": 14,
                        "payment_grace_days": 7}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{policy}");

    // Licenses, validated, activated, taken offline, rotated.
    let issue = json!({"policy_id": policy["id"], "organization_id": org["id"]});
    let (_, first) = s
        .call(
            Method::POST,
            "/v1/licenses",
            admin,
            &[],
            Some(issue.clone()),
        )
        .await;
    let (_, second) = s
        .call(Method::POST, "/v1/licenses", admin, &[], Some(issue))
        .await;
    let key = first["key"].as_str().unwrap().to_owned();
    s.keep(&key);
    s.keep(second["key"].as_str().unwrap());
    let license_id = first["id"].as_str().unwrap().to_owned();
    let client = [("x-app-id", app_id.as_str())];
    let (status, _) = s
        .call(
            Method::POST,
            "/v1/validate",
            None,
            &client,
            Some(json!({"key": key, "features": ["pro"]})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, activation) = s
        .call(
            Method::POST,
            "/v1/activations",
            None,
            &client,
            Some(json!({"key": key, "fingerprint": "machine-one-fingerprint", "hostname": "build-01"})),
        )
        .await;
    assert_eq!(status, 201, "{activation}");
    let installation = activation["installation_id"].as_str().unwrap().to_owned();
    let (status, offline) = s
        .call(
            Method::POST,
            "/v1/offline-tokens",
            None,
            &client,
            Some(json!({"key": key, "fingerprint": "machine-one-fingerprint"})),
        )
        .await;
    assert_eq!(status, 201, "{offline}");
    let jws = offline["token"].as_str().unwrap().to_owned();
    s.keep(&jws);
    s.keep(jws.rsplit('.').next().unwrap());
    let (status, _) = s
        .call(
            Method::POST,
            &format!("/v1/activations/{installation}/heartbeat"),
            None,
            &client,
            Some(json!({"key": key})),
        )
        .await;
    assert!(status < 500, "{status}");
    let (status, _) = s
        .call(
            Method::POST,
            &format!("/v1/activations/{installation}/deactivate"),
            None,
            &client,
            Some(json!({"key": key})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, rotated) = s
        .call(
            Method::POST,
            &format!("/v1/licenses/{license_id}/rotate-key"),
            admin,
            &[],
            None,
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    s.keep(&new_key);
    let (status, _) = s
        .call(
            Method::POST,
            "/v1/validate",
            None,
            &client,
            Some(json!({"key": new_key})),
        )
        .await;
    assert_eq!(status, 200);

    // Administration tokens made, used and revoked over the API.
    let (status, minted) = s
        .call(
            Method::POST,
            "/v1/tokens",
            admin,
            &[],
            Some(json!({"role": "vendor_support", "ttl_seconds": 3600})),
        )
        .await;
    assert_eq!(status, 201, "{minted}");
    let support = minted["token"].as_str().unwrap().to_owned();
    s.keep(&support);
    let (status, _) = s
        .call(
            Method::GET,
            &format!("/v1/licenses/{license_id}"),
            Some(&support),
            &[],
            None,
        )
        .await;
    assert_eq!(status, 200);
    let token_id = minted["id"].as_str().unwrap();
    let (status, _) = s
        .call(
            Method::POST,
            &format!("/v1/tokens/{token_id}/revoke"),
            admin,
            &[],
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .call(
            Method::GET,
            &format!("/v1/licenses/{license_id}"),
            Some(&support),
            &[],
            None,
        )
        .await;
    assert_eq!(status, 401, "a revoked token");

    // Bad requests that carry secrets where they do not belong.
    let forged = format!("llt_{}_{}", uuid::Uuid::now_v7(), "Q".repeat(43));
    s.keep(&forged);
    let bad: Vec<(Method, String, Option<&str>, Option<Value>)> = vec![
        (
            Method::GET,
            format!("/v1/licenses/{license_id}"),
            Some(forged.as_str()),
            None,
        ),
        (Method::GET, format!("/v1/licenses/{key}"), admin, None),
        (
            Method::GET,
            format!("/v1/licenses/{license_id}?as_of={new_key}"),
            admin,
            None,
        ),
        (Method::GET, format!("/v1/nowhere/{new_key}"), admin, None),
        (
            Method::POST,
            "/v1/licenses".into(),
            admin,
            Some(json!({"policy_id": new_key})),
        ),
        (
            Method::POST,
            "/v1/organizations".into(),
            admin,
            Some(json!({"name": key, "kind": "nonsense"})),
        ),
        (
            Method::GET,
            "/v1/audit".into(),
            Some(new_key.as_str()),
            None,
        ),
    ];
    for (method, path, token, body) in bad {
        let (status, answer) = s.call(method, &path, token, &[], body).await;
        assert!((400..500).contains(&status), "{path}: {status} {answer}");
    }
    let (status, _) = s
        .call(
            Method::POST,
            "/v1/validate",
            None,
            &client,
            Some(json!({"key": new_key, "extra": admin})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = s
        .call(
            Method::POST,
            "/v1/validate",
            None,
            &[("x-app-id", "not-a-uuid")],
            Some(json!({"key": new_key})),
        )
        .await;
    assert_eq!(status, 400);

    // Let the projectors and the log writer catch up, then stop the server (its last lines too).
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(server);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = logs.lock().unwrap().clone();
    assert!(text.lines().count() > 100, "trace level logs plenty");
    for secret in &s.secrets {
        if let Some(at) = text.find(secret.as_str()) {
            let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
            panic!("a secret is in the logs: {}", &text[line_start..line_end]);
        }
    }

    // Each request's line: route template, status, latency, request id.
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let finished = |route: &str| {
        lines.iter().find(|l| {
            l["fields"]["message"] == "finished processing request" && l["span"]["route"] == route
        })
    };
    for route in [
        "/v1/licenses/{id}/rotate-key",
        "/v1/validate",
        "/v1/tokens/{id}/revoke",
    ] {
        let line = finished(route).unwrap_or_else(|| panic!("no line for {route}"));
        assert!(line["fields"]["status"].is_u64(), "{line}");
        assert!(line["fields"]["latency"].is_string(), "{line}");
        assert!(
            line["span"]["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            "{line}"
        );
        assert!(line["span"].get("path").is_none(), "{line}");
    }
    let _ = std::fs::remove_dir_all(&data_dir);
    db.drop_db().await;
}
