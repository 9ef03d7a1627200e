//! The end-to-end test harness: a fresh PostgreSQL database per test, the real server started on
//! `127.0.0.1:0` (in process, or as a child process for crash tests), and an HTTP client.
//!
//! The databases are `testdb`'s: each test creates its own on the server of `DATABASE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`) and drops it when it ends. When the
//! server is unreachable the tests fail with instructions; they never skip.

pub mod browser;
pub mod idp;
pub mod s3;
pub mod stripe;
pub mod venv;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::server::{RunningServer, ServeConfig};
use commands::CommandContext;
use domain::event::Actor;
use domain::values::Role;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// A database of its own per test (`testdb`), dropped when the test ends, however it ends.
pub use testdb::{TestDb, server_url};

/// A fresh, private data directory.
pub fn temp_data_dir() -> PathBuf {
    std::env::temp_dir().join(format!("ledger-e2e-{}", uuid::Uuid::now_v7()))
}

/// The configuration tests run the server with: loopback port 0, no rate limit unless asked,
/// fast projector polling.
pub fn test_config(db: &TestDb) -> ServeConfig {
    let mut config = ServeConfig::new(db.url.clone(), temp_data_dir());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.rate_limit_per_second = 0;
    config.client_rate_limit_per_second = 0;
    config.token_rate_limits = [Role::VendorAdmin, Role::VendorSupport, Role::VendorAuditor]
        .map(|role| api::limits::RoleRate {
            role,
            rate: api::limits::Rate::new(0, 0),
        })
        .to_vec();
    // Tests run side by side, some with two servers on one database, against one PostgreSQL
    // whose max_connections is 100: each in-process server keeps 12 request connections (and
    // its jobs pool), so three at once stay well inside it.
    config.app.db_max_connections = 12;
    config.jobs.projector_poll_interval = Duration::from_millis(50);
    config.jobs.lease_check_interval = Duration::from_millis(200);
    config
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The `code` of a problem answer.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
    /// A header's text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The server under test, with a client and an administrator token.
pub struct TestApp {
    pub db: TestDb,
    pub server: RunningServer,
    pub base: String,
    pub client: reqwest::Client,
    pub admin_token: String,
}

impl TestApp {
    /// A server on a fresh database.
    pub async fn start() -> Self {
        let db = TestDb::create().await;
        let config = test_config(&db);
        Self::start_with(db, config).await
    }

    /// A server on `db` with `config`.
    pub async fn start_with(db: TestDb, config: ServeConfig) -> Self {
        let server = api::server::start(config).await.expect("server starts");
        let base = format!("http://{}", server.addr);
        let admin_token = Self::mint(&server, Role::VendorAdmin).await;
        Self {
            db,
            server,
            base,
            client: reqwest::Client::new(),
            admin_token,
        }
    }

    async fn mint(server: &RunningServer, role: Role) -> String {
        let ctx = CommandContext::new(Actor::Operator, "test-setup");
        let minted = server
            .state
            .app
            .mint_token(&ctx, role, None, None, chrono::Duration::hours(1))
            .await
            .expect("mint token");
        minted.view.token.expect("a fresh token shows its secret")
    }

    /// A token with `role`.
    pub async fn token(&self, role: Role) -> String {
        Self::mint(&self.server, role).await
    }

    /// Sends a request with the administrator token.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.call_as(&self.admin_token, method, path, body, &[])
            .await
    }

    /// Sends a request with `token` and extra headers.
    pub async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body read");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    /// POST with the administrator token.
    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }

    /// GET with the administrator token.
    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    /// PUT with the administrator token.
    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.call(Method::PUT, path, Some(body)).await
    }

    /// A client-application request: `X-App-Id` header, JSON body, no bearer token.
    pub async fn client_call(&self, path: &str, app_id: &str, body: Value) -> Answer {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("x-app-id", app_id)
            .json(&body)
            .send()
            .await
            .expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body read");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Waits until every projector has applied every committed event.
    pub async fn projected(&self) {
        let pool = self.server.state.app.pool().clone();
        for p in projections::all() {
            for attempt in 0.. {
                let lag = projections::engine::lag(&pool, p.as_ref())
                    .await
                    .expect("lag");
                if lag.pending_events == 0 {
                    break;
                }
                assert!(attempt < 400, "projector {} stuck: {lag:?}", p.name());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// Number of events in the log.
    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(self.server.state.app.pool())
            .await
            .unwrap()
    }

    /// Stops the server and drops its database.
    pub async fn stop(self) {
        self.server.shutdown().await;
        self.db.drop_db().await;
    }
}

/// A small catalogue: an organization, an application product and a policy.
pub struct Catalogue {
    pub organization_id: String,
    pub product_id: String,
    pub app_id: String,
    pub policy_id: String,
}

impl TestApp {
    /// Creates a customer organization, an application and a node-locked policy (3 seats, 365
    /// days, feature `pro`, offline 14 days).
    pub async fn catalogue(&self) -> Catalogue {
        self.catalogue_with(serde_json::json!({
            "name": "Pro", "model": "node_locked", "seats": 3, "duration_days": 365, "features": ["pro"],
            "offline_allowed": true, "offline_grace_days": 14, "payment_grace_days": 7
        }))
        .await
    }

    /// Like [`TestApp::catalogue`] with the given policy body (without `product_id`).
    pub async fn catalogue_with(&self, policy_body: Value) -> Catalogue {
        let org = self
            .post(
                "/v1/organizations",
                serde_json::json!({"name": "Acme GmbH", "kind": "customer"}),
            )
            .await;
        assert_eq!(org.status, StatusCode::CREATED, "{:?}", org.body);
        let product = self
            .post(
                "/v1/products",
                serde_json::json!({"name": "Acme Studio", "kind": "application"}),
            )
            .await;
        assert_eq!(product.status, StatusCode::CREATED, "{:?}", product.body);
        let mut policy_body = policy_body;
        policy_body["product_id"] = product.body["id"].clone();
        let policy = self.post("/v1/policies", policy_body).await;
        assert_eq!(policy.status, StatusCode::CREATED, "{:?}", policy.body);
        Catalogue {
            organization_id: org.body["id"].as_str().unwrap().to_owned(),
            product_id: product.body["id"].as_str().unwrap().to_owned(),
            app_id: product.body["app_id"].as_str().unwrap().to_owned(),
            policy_id: policy.body["id"].as_str().unwrap().to_owned(),
        }
    }

    /// Issues a license under `policy_id` with `seats`; returns its body (with `key`).
    pub async fn issue_with(&self, c: &Catalogue, seats: u32) -> Value {
        let answer = self
            .post(
                "/v1/licenses",
                serde_json::json!({"policy_id": c.policy_id, "organization_id": c.organization_id, "seats": seats}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
        answer.body
    }

    /// Issues a license under the catalogue's policy; returns its body (with `key`).
    pub async fn issue(&self, c: &Catalogue) -> Value {
        let answer = self
            .post(
                "/v1/licenses",
                serde_json::json!({"policy_id": c.policy_id, "organization_id": c.organization_id}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
        answer.body
    }
}

// ----- the server as a process of its own -----

/// A `ledger serve` process of the binary under test.
pub struct ServerProcess {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Drop for ServerProcess {
    /// A test that fails midway must not leave its server running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bin serve` (the `ledger` entry point; integration tests pass
/// `env!("CARGO_BIN_EXE_ledger-e2e-server")`) exactly as a user would, on a free loopback port,
/// with `extra` flags, and waits for its "listening" log line.
pub fn spawn_server(bin: &str, db: &TestDb, data_dir: &Path, extra: &[&str]) -> ServerProcess {
    spawn_server_logged(bin, db, data_dir, extra, None).0
}

/// Every JSON log line a spawned server has written so far.
pub type ServerLogs = Arc<Mutex<Vec<Value>>>;

/// [`spawn_server`], keeping every log line the server writes, and, with `nofile`, under
/// `ulimit -n nofile` (through `sh`, which `exec`s the server: the server is the child).
pub fn spawn_server_logged(
    bin: &str,
    db: &TestDb,
    data_dir: &Path,
    extra: &[&str],
    nofile: Option<u32>,
) -> (ServerProcess, ServerLogs) {
    spawn_server_env(bin, db, data_dir, extra, nofile, &[])
}

/// [`spawn_server_logged`] with `env` set in the server's environment (the AWS variables of an
/// S3 artifact store, say).
pub fn spawn_server_env(
    bin: &str,
    db: &TestDb,
    data_dir: &Path,
    extra: &[&str],
    nofile: Option<u32>,
    env: &[(&str, String)],
) -> (ServerProcess, ServerLogs) {
    let mut command = match nofile {
        None => Command::new(bin),
        Some(n) => {
            let mut sh = Command::new("sh");
            sh.arg("-c")
                .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                .arg(bin);
            sh
        }
    };
    let mut child = server_env(&mut command, env)
        .args(["serve", "--listen", "127.0.0.1:0", "--rate-limit-rps", "0"])
        .args(extra)
        .arg("--database-url")
        .arg(&db.url)
        .arg("--data-dir")
        .arg(data_dir)
        .env("LEDGER_LOG_FORMAT", "json")
        .env("RUST_LOG", "info,sqlx=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the server binary");
    let stderr = child.stderr.take().unwrap();
    let logs = ServerLogs::default();
    let kept = logs.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let Ok(log) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            // Kept before the address is announced: a test that reads the logs right after
            // `spawn_server_logged` returns finds the "listening" line among them.
            let addr = (log["fields"]["message"] == "license-ledger listening").then(|| {
                log["fields"]["addr"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            });
            kept.lock().unwrap().push(log);
            if let Some(addr) = addr {
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server reports its address");
    let server = ServerProcess {
        child,
        base: format!("http://{addr}"),
    };
    (server, logs)
}

/// How many `event_type` events `db`'s log holds (for tests that run the server as a process).
pub async fn count_events(db: &TestDb, event_type: &str) -> i64 {
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let n = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
        .bind(event_type)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

/// Sets `env` in a server's environment, with every `AWS_*` variable of the tests' own
/// environment removed first: a developer's S3 settings must not redirect a test's store.
pub fn server_env<'c>(command: &'c mut Command, env: &[(&str, String)]) -> &'c mut Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AWS_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().map(|(k, v)| (k, v)))
}

/// `bin token --role vendor_admin`: a token minted as an operator mints one.
pub fn mint_token(bin: &str, db: &TestDb) -> String {
    let out = Command::new(bin)
        .args([
            "token",
            "--role",
            "vendor_admin",
            "--ttl",
            "1h",
            "--database-url",
            &db.url,
        ])
        .output()
        .expect("run ledger token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

// ----- answers as bytes (idempotent replays are compared byte for byte) -----

/// An HTTP answer as received: status, headers and the body's bytes.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl RawAnswer {
    /// A header's text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Sends `method path` to `base` with `headers` and the raw `body`, and keeps the answer's bytes.
pub async fn send_raw(
    client: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> RawAnswer {
    let mut request = client.request(method, format!("{base}{path}")).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request sent");
    RawAnswer {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.bytes().await.expect("body read").to_vec(),
    }
}
