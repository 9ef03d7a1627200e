//! The database pools of `ledger serve`, as users start it (issue #13): background jobs keep
//! their connections out of the request pool, so even a request pool of one connection answers
//! a burst of requests promptly; a pool that cannot work is refused at start-up; and a database
//! that refuses connections is one line on stderr, without the password.
//!
//! Round 2's projectors and validation follower each held a `LISTEN` connection of the request
//! pool: with `--db-max-connections 5` every request waited 10 s for a 503 and `/readyz` said
//! the database was unreachable.

use std::process::Command;
use std::time::{Duration, Instant};

use application::app::{JOBS_APPLICATION_NAME, REQUESTS_APPLICATION_NAME, background_connections};
use serde_json::{Value, json};
use tests::{ServerProcess, TestDb, mint_token, spawn_server, temp_data_dir};

const BIN: &str = env!("CARGO_BIN_EXE_ledger-e2e-server");

/// A request of the burst may take this long. With a pool of one connection the burst's 50
/// requests queue for it one after another, on a two-core machine that also runs other tests, so
/// the bound is generous; it stays under the 10 s a starved pool made every request wait (the
/// acquire timeout) before its 503, and a 503 fails the burst whatever its time.
const PROMPT: Duration = Duration::from_secs(9);

/// What the burst works on: an administrator token, a client application and a license.
struct Fixture {
    client: reqwest::Client,
    base: String,
    token: String,
    app_id: String,
    license_id: String,
    key: String,
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

impl Fixture {
    async fn new(server: &ServerProcess, token: String) -> Self {
        let client = reqwest::Client::new();
        let base = server.base.clone();
        let post = |path: &str, body: Value| {
            client
                .post(format!("{base}{path}"))
                .bearer_auth(&token)
                .json(&body)
        };
        let (status, org) = send(post(
            "/v1/organizations",
            json!({"name": "Acme GmbH", "kind": "customer"}),
        ))
        .await;
        assert_eq!(status, 201, "{org}");
        let (status, product) = send(post(
            "/v1/products",
            json!({"name": "Acme Studio", "kind": "application"}),
        ))
        .await;
        assert_eq!(status, 201, "{product}");
        let (status, policy) = send(post(
            "/v1/policies",
            json!({"product_id": product["id"], "name": "Pro", "model": "node_locked", "seats": 3,
                   "duration_days": 365, "features": ["pro"], "offline_allowed": true,
                   "offline_grace_days": 14, "payment_grace_days": 7}),
        ))
        .await;
        assert_eq!(status, 201, "{policy}");
        let (status, license) = send(post(
            "/v1/licenses",
            json!({"policy_id": policy["id"], "organization_id": org["id"]}),
        ))
        .await;
        assert_eq!(status, 201, "{license}");
        Self {
            client,
            base,
            token,
            app_id: product["app_id"].as_str().unwrap().to_owned(),
            license_id: license["id"].as_str().unwrap().to_owned(),
            key: license["key"].as_str().unwrap().to_owned(),
        }
    }

    /// The `i`-th request of a burst: readiness, lists, a fold, a write and a validation, the
    /// mix of what a server answers.
    fn request(&self, i: usize) -> (&'static str, reqwest::RequestBuilder) {
        let base = &self.base;
        let admin = |r: reqwest::RequestBuilder| r.bearer_auth(&self.token);
        match i % 5 {
            0 => ("GET /readyz", self.client.get(format!("{base}/readyz"))),
            1 => (
                "GET /v1/organizations",
                admin(self.client.get(format!("{base}/v1/organizations"))),
            ),
            2 => (
                "POST /v1/organizations",
                admin(self.client.post(format!("{base}/v1/organizations")))
                    .json(&json!({"name": format!("Customer {i}"), "kind": "customer"})),
            ),
            3 => (
                "POST /v1/validate",
                self.client
                    .post(format!("{base}/v1/validate"))
                    .header("x-app-id", &self.app_id)
                    .json(&json!({"key": self.key})),
            ),
            _ => (
                "GET /v1/licenses/{id}",
                admin(
                    self.client
                        .get(format!("{base}/v1/licenses/{}", self.license_id)),
                ),
            ),
        }
    }

    /// Sends `n` requests at once; every one must be answered successfully within [`PROMPT`].
    async fn burst(&self, n: usize) {
        let mut requests = tokio::task::JoinSet::new();
        for i in 0..n {
            let (what, request) = self.request(i);
            requests.spawn(async move {
                let started = Instant::now();
                let (status, body) = send(request).await;
                (what, status, body, started.elapsed())
            });
        }
        let mut failed = Vec::new();
        while let Some(answer) = requests.join_next().await {
            let (what, status, body, took) = answer.expect("request task");
            if !(200..300).contains(&status) || took >= PROMPT {
                failed.push(format!("{what}: {status} after {took:?}: {body}"));
            }
        }
        assert!(
            failed.is_empty(),
            "{} of {n} requests failed or were slow:\n{}",
            failed.len(),
            failed.join("\n")
        );
    }
}

/// The server's connections to the test database: the request pool's, the jobs pool's, and how
/// many of all sit in `LISTEN`.
struct Connections {
    requests: i64,
    jobs: i64,
    listening: i64,
}

async fn connections(owner: &sqlx::PgPool, db: &TestDb) -> Connections {
    let (requests, jobs, listening): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE application_name = $2), \
                count(*) FILTER (WHERE application_name = $3), \
                count(*) FILTER (WHERE query ILIKE 'LISTEN %') \
         FROM pg_stat_activity WHERE datname = $1",
    )
    .bind(&db.name)
    .bind(REQUESTS_APPLICATION_NAME)
    .bind(JOBS_APPLICATION_NAME)
    .fetch_one(owner)
    .await
    .unwrap();
    Connections {
        requests,
        jobs,
        listening,
    }
}

/// Projectors active on the test database: each holds its advisory lock on its session.
async fn active_projectors(owner: &sqlx::PgPool, db: &TestDb) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = 5170 \
         AND database = (SELECT oid FROM pg_database WHERE datname = $1)",
    )
    .bind(&db.name)
    .fetch_one(owner)
    .await
    .unwrap()
}

/// `ledger serve --db-max-connections <size>`: two bursts of 50 requests answered promptly, one
/// at start-up and one with every projector active, and the connections where they belong.
async fn serves_with_a_request_pool_of(size: u32) {
    let db = TestDb::create().await;
    let data_dir = temp_data_dir();
    let token = mint_token(BIN, &db);
    let server = spawn_server(
        BIN,
        &db,
        &data_dir,
        &["--db-max-connections", &size.to_string()],
    );
    // Right after start-up, while the jobs take their connections: issue #13's symptom was
    // every request waiting 10 s for a 503.
    let fixture = Fixture::new(&server, token).await;
    fixture.burst(50).await;
    // Every projector active, each holding its session; requests still answered.
    let owner = db.pool().await;
    let projectors = i64::try_from(projections::all().len()).unwrap();
    let since = Instant::now();
    while active_projectors(&owner, &db).await < projectors {
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "only {} of {projectors} projectors became active",
            active_projectors(&owner, &db).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fixture.burst(50).await;

    let seen = connections(&owner, &db).await;
    assert!(
        seen.requests <= i64::from(size),
        "{} connections of a request pool of {size}",
        seen.requests
    );
    let background = i64::from(background_connections());
    assert!(
        (projectors + 1..=background).contains(&seen.jobs),
        "the jobs pool holds a session per projector and the LISTEN connection, and at most \
         {background}: {} connections",
        seen.jobs
    );
    assert_eq!(seen.listening, 1, "one LISTEN connection per process");
    assert_eq!(
        active_projectors(&owner, &db).await,
        projectors,
        "still exactly one active instance per projector"
    );
    drop(server);
    owner.close().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_request_connections_answer_a_burst_promptly() {
    serves_with_a_request_pool_of(5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_connection_answers_a_burst_promptly() {
    serves_with_a_request_pool_of(1).await;
}

/// Runs `command` to its end (killed after a minute: a server that starts instead of refusing
/// must not hang the test); its exit status and stderr.
fn run_to_exit(command: &mut Command) -> (std::process::ExitStatus, String) {
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the ledger binary");
    let since = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if since.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after a minute: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_request_pool_of_no_connection_is_refused_at_start_up() {
    let data_dir = temp_data_dir();
    let (status, stderr) = run_to_exit(
        Command::new(BIN)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--db-max-connections",
                "0",
            ])
            // Refused before any connection: nothing listens on port 1.
            .args(["--database-url", "postgres://postgres@127.0.0.1:1/unused"])
            .arg("--data-dir")
            .arg(&data_dir),
    );
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("--db-max-connections")
            && stderr.contains("0 connections cannot answer any request: at least 1 is needed"),
        "{stderr}"
    );
    assert!(!data_dir.exists(), "nothing was started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_pool_larger_than_the_database_accepts_is_refused_at_start_up() {
    let db = TestDb::create().await;
    let data_dir = temp_data_dir();
    // As many as PostgreSQL accepts in all: with the jobs' connections that is too many. (Not a
    // huge number: the server would refuse it earlier, for its open-file limit.)
    let accepted: i32 = sqlx::query_scalar("SELECT current_setting('max_connections')::int")
        .fetch_one(&db.pool().await)
        .await
        .unwrap();
    let size = accepted.to_string();
    let (status, stderr) = run_to_exit(
        Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--db-max-connections", &size])
            .args(["--database-url", &db.url])
            .arg("--data-dir")
            .arg(&data_dir),
    );
    assert!(!status.success(), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "error: a request pool of {size} database connections cannot work"
        )) && last.contains("max_connections"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&data_dir);
    db.drop_db().await;
}

#[test]
fn a_refused_database_connection_is_one_line_without_the_password() {
    // A port nobody listens on: bound, then freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://ledger:s3cret-pw@127.0.0.1:{port}/ledger");
    let data_dir = temp_data_dir();
    let data_dir = data_dir.to_str().unwrap();
    let expected = format!(
        "error: cannot connect to PostgreSQL at 127.0.0.1:{port}/ledger: connection refused \
         (is PostgreSQL running and listening there?)"
    );
    for args in [
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir][..],
        &["migrate"],
        &["token", "--role", "vendor_admin"],
    ] {
        let (status, stderr) = run_to_exit(
            Command::new(BIN)
                .args(args)
                .args(["--database-url", &url])
                // As a user runs it: the default log filter and format.
                .env_remove("RUST_LOG")
                .env_remove("LEDGER_LOG_FORMAT"),
        );
        assert!(!status.success(), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end(), expected, "{args:?}");
        assert!(!stderr.contains("s3cret"), "{args:?}: {stderr}");
    }
}
