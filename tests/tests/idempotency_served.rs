//! `Idempotency-Key` on the binary as users run it (ADR 0016): `ledger serve` prunes stored
//! answers after their retention by itself (its `IdempotencyPruner` job); answers are written
//! just after their responses, so a server killed with `kill -9` before writing one leaves a retry
//! that executes nothing (the events' index) and answers the first outcome, and a server stopped
//! with SIGTERM writes every pending answer before it exits.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use sqlx::PgPool;
use tests::{RawAnswer, TestDb, mint_token, send_raw, spawn_server, temp_data_dir};

const BIN: &str = env!("CARGO_BIN_EXE_ledger-e2e-server");

/// The request every test sends; a retry must send the same bytes.
const BODY: &[u8] = br#"{"name": "Acme GmbH", "kind": "customer"}"#;

async fn register(client: &reqwest::Client, base: &str, token: &str, key: &str) -> RawAnswer {
    let auth = format!("Bearer {token}");
    send_raw(
        client,
        base,
        Method::POST,
        "/v1/organizations",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("idempotency-key", key),
        ],
        BODY.to_vec(),
    )
    .await
}

async fn registered(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'OrganizationRegistered'")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn stored(pool: &PgPool, key: &str) -> Option<String> {
    sqlx::query_scalar("SELECT state FROM idempotency_keys WHERE key = $1")
        .bind(key)
        .fetch_optional(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_serve_prunes_stored_answers_after_their_retention() {
    let db = TestDb::create().await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    let data_dir = temp_data_dir();
    let token = mint_token(BIN, &db);
    let server = spawn_server(BIN, &db, &data_dir, &["--idempotency-retention-secs", "2"]);
    let client = reqwest::Client::new();
    let first = register(&client, &server.base, &token, "prune-me").await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = register(&client, &server.base, &token, "prune-me").await;
    assert_eq!(
        (again.header("idempotent-replayed"), &again.body),
        (Some("true"), &first.body)
    );
    // Written just after the response.
    written(&pool, "prune-me").await;
    assert_eq!(stored(&pool, "prune-me").await.as_deref(), Some("done"));
    // Nobody calls the pruner: the server deletes the answer by itself once it is 2 s old (it
    // looks every 2 s).
    let since = Instant::now();
    while stored(&pool, "prune-me").await.is_some() {
        assert!(
            since.elapsed() < Duration::from_secs(15),
            "the answer was never pruned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The events still hold the key: a late retry runs the handler again, which appends
    // nothing and answers the same organization (the safety net, ADR 0016).
    let late = register(&client, &server.base, &token, "prune-me").await;
    assert_eq!(late.status, StatusCode::CREATED);
    let id = |a: &RawAnswer| a.json()["id"].clone();
    assert_eq!(id(&late), id(&first));
    assert_eq!(registered(&pool).await, 1);
    pool.close().await;
    drop(server);
    db.drop_db().await;
}

/// Waits until the answer of `key` is written (just after its response).
async fn written(pool: &PgPool, key: &str) {
    let since = Instant::now();
    while stored(pool, key).await.is_none() {
        assert!(since.elapsed() < Duration::from_secs(5), "never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Takes the table's lock that the answers' writer needs, so that an answer waits, unwritten,
/// while the server already answered; returns once the writer waits on it.
async fn hold_answers(pool: &PgPool) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut held = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE idempotency_keys IN EXCLUSIVE MODE")
        .execute(&mut *held)
        .await
        .unwrap();
    held
}

async fn writer_waits(pool: &PgPool) {
    let since = Instant::now();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
               AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO idempotency_keys%'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "the answer's write never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The server answers, then dies (`kill -9`) before its answer is written. The retry, on the
/// restarted server, runs the handler: the key recorded on the first request's event makes the
/// command append nothing and answer the organization registered the first time; from then on
/// that answer is stored and replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_before_writing_an_answer_executes_its_retry_once() {
    let db = TestDb::create().await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    let data_dir = temp_data_dir();
    let token = mint_token(BIN, &db);
    let mut server = spawn_server(BIN, &db, &data_dir, &[]);
    let client = reqwest::Client::new();

    let held = hold_answers(&pool).await;
    let first = register(&client, &server.base, &token, "killed").await;
    assert_eq!(first.status, StatusCode::CREATED);
    writer_waits(&pool).await;
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    // The dead server's blocked INSERT would still run once the lock goes: PostgreSQL notices a
    // dead client only when it next talks to it. End its sessions first, as the database would
    // once TCP gave up on them.
    loop {
        let left: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
              WHERE datname = current_database() AND application_name = ANY($1)",
        )
        .bind([
            application::app::REQUESTS_APPLICATION_NAME,
            application::app::JOBS_APPLICATION_NAME,
        ])
        .fetch_one(&pool)
        .await
        .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    held.rollback().await.unwrap();
    assert_eq!(stored(&pool, "killed").await, None, "the answer was lost");
    assert_eq!(registered(&pool).await, 1);

    let server = spawn_server(BIN, &db, &data_dir, &[]);
    let retried = register(&client, &server.base, &token, "killed").await;
    assert_eq!(retried.status, StatusCode::CREATED, "{:?}", retried.json());
    assert_eq!(retried.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        retried.json()["id"],
        first.json()["id"],
        "the first organization"
    );
    assert_eq!(registered(&pool).await, 1, "executed once");
    written(&pool, "killed").await;
    let again = register(&client, &server.base, &token, "killed").await;
    assert_eq!(
        (again.header("idempotent-replayed"), &again.body),
        (Some("true"), &retried.body)
    );
    assert_eq!(registered(&pool).await, 1);
    pool.close().await;
    drop(server);
    db.drop_db().await;
}

/// A server stopped with SIGTERM while an answer waits for its write writes it before exiting:
/// the retry, on the next server, replays the first answer byte for byte (a secret shown once
/// would be answered again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_writes_the_pending_answers() {
    let db = TestDb::create().await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    let data_dir = temp_data_dir();
    let token = mint_token(BIN, &db);
    let mut server = spawn_server(BIN, &db, &data_dir, &[]);
    let client = reqwest::Client::new();

    let held = hold_answers(&pool).await;
    let first = register(&client, &server.base, &token, "stopped").await;
    assert_eq!(first.status, StatusCode::CREATED);
    writer_waits(&pool).await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // A server with nothing pending stops within a fraction of a second; this one waits (up to
    // 10 s) for its answer's write, which waits for the lock. A server that exited without its
    // answer would leave the INSERT to run after its death, once the lock goes: the wait is the
    // evidence that the drain, not that leftover, writes it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server waits for its pending answer"
    );
    held.rollback().await.unwrap();
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0: {exit:?}");
    assert_eq!(stored(&pool, "stopped").await.as_deref(), Some("done"));

    let server = spawn_server(BIN, &db, &data_dir, &[]);
    let again = register(&client, &server.base, &token, "stopped").await;
    assert_eq!(
        (again.header("idempotent-replayed"), &again.body),
        (Some("true"), &first.body)
    );
    assert_eq!(registered(&pool).await, 1);
    pool.close().await;
    drop(server);
    db.drop_db().await;
}

/// A keyed creation held up past the request deadline (the events' table locked, five seconds
/// with a one-second deadline) is answered 503, and runs on: a duplicate meanwhile gets 409, and
/// once the lock goes the retry gets the created license with its key — the secret an attacker
/// saw lost (`"key": null`) when the deadline dropped the request after its statement was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_request_past_the_deadline_runs_on_and_keeps_its_secret() {
    let db = TestDb::create().await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    let data_dir = temp_data_dir();
    let token = mint_token(BIN, &db);
    let server = spawn_server(BIN, &db, &data_dir, &["--request-timeout-secs", "1"]);
    let client = reqwest::Client::new();
    let organization = register(&client, &server.base, &token, "org").await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let auth = format!("Bearer {token}");
    let product = send_raw(
        &client,
        &server.base,
        Method::POST,
        "/v1/products",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        br#"{"name": "Studio", "kind": "application"}"#.to_vec(),
    )
    .await
    .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let policy = send_raw(
        &client,
        &server.base,
        Method::POST,
        "/v1/policies",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        serde_json::to_vec(&serde_json::json!({"product_id": product, "name": "Pro",
            "model": "node_locked", "seats": 1, "duration_days": 30, "features": [],
            "offline_allowed": false, "offline_grace_days": 0, "payment_grace_days": 0}))
        .unwrap(),
    )
    .await
    .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = serde_json::to_vec(
        &serde_json::json!({"policy_id": policy, "organization_id": organization}),
    )
    .unwrap();
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("idempotency-key", "slow"),
    ];
    let issue = || {
        send_raw(
            &client,
            &server.base,
            Method::POST,
            "/v1/licenses",
            &headers,
            body.clone(),
        )
    };

    let mut appends = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE")
        .execute(&mut *appends)
        .await
        .unwrap();
    let late = issue().await;
    assert_eq!(late.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(late.json()["code"], "TIMEOUT");
    let duplicate = issue().await;
    assert_eq!(
        duplicate.status,
        StatusCode::CONFLICT,
        "{:?}",
        duplicate.json()
    );
    assert_eq!(duplicate.json()["code"], "IDEMPOTENCY_IN_PROGRESS");
    // Past four deadlines, where the request once was dropped while its statement, already
    // sent, still committed once the lock went (an attacker's second finding).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let still = issue().await;
    assert_eq!(still.status, StatusCode::CONFLICT, "{:?}", still.json());
    appends.commit().await.unwrap();

    let since = Instant::now();
    let retried = loop {
        let answer = issue().await;
        if answer.status != StatusCode::CONFLICT {
            break answer;
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "still in progress"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(retried.status, StatusCode::CREATED, "{:?}", retried.json());
    assert_eq!(retried.header("idempotent-replayed"), Some("true"));
    assert!(
        retried.json()["key"]
            .as_str()
            .is_some_and(|k| !k.is_empty()),
        "the license key is answered: {:?}",
        retried.json()
    );
    let issued: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'LicenseIssued'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(issued, 1);
    pool.close().await;
    drop(server);
    db.drop_db().await;
}
