//! `Idempotency-Key` on the binary as users run it (ADR 0016): `ledger serve` prunes stored
//! answers after their retention by itself (its `IdempotencyPruner` job), and a server killed
//! with `kill -9` in the middle of a request leaves the key to a retry that executes the request
//! exactly once.

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

/// The request is held, by locks the test takes, after its event is appended and before its
/// answer is stored; then the server is killed. The claim stays `in_progress` until the request
/// deadline has passed; a retry then takes it over, runs the handler again — the events' own
/// index makes its command append nothing — and from then on every retry gets that answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_server_was_killed_midway_executes_once_when_retried() {
    let db = TestDb::create().await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    let data_dir = temp_data_dir();
    let token = mint_token(BIN, &db);
    let deadline = ["--request-timeout-secs", "6"];
    let mut server = spawn_server(BIN, &db, &data_dir, &deadline);
    let client = reqwest::Client::new();

    let mut appends = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE")
        .execute(&mut *appends)
        .await
        .unwrap();
    let (c, base, t) = (client.clone(), server.base.clone(), token.clone());
    let in_flight = tokio::spawn(async move {
        // Its server dies: no answer, and that is the point.
        let _ = c
            .post(format!("{base}/v1/organizations"))
            .bearer_auth(t)
            .header("idempotency-key", "killed")
            .header("content-type", "application/json")
            .body(BODY)
            .send()
            .await;
    });
    let since = Instant::now();
    while stored(&pool, "killed").await.is_none() {
        assert!(since.elapsed() < Duration::from_secs(10), "never claimed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut answer_row = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM idempotency_keys WHERE key = 'killed' FOR UPDATE")
        .execute(&mut *answer_row)
        .await
        .unwrap();
    appends.commit().await.unwrap();
    while registered(&pool).await == 0 {
        assert!(since.elapsed() < Duration::from_secs(10), "never appended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    // A statement the server sent just before it died (its answer's store, waiting on the lock
    // above) would still run once the lock goes: PostgreSQL notices a dead client only when it
    // next talks to it. Ending the dead server's sessions first, as the database would once TCP
    // gave up on them, keeps the claim `in_progress`, whichever side of the kill that statement
    // fell (without this the test failed now and then: the answer was stored after the kill).
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
    answer_row.rollback().await.unwrap();
    in_flight.await.unwrap();
    assert_eq!(
        stored(&pool, "killed").await.as_deref(),
        Some("in_progress")
    );

    let server = spawn_server(BIN, &db, &data_dir, &deadline);
    let retried = loop {
        let answer = register(&client, &server.base, &token, "killed").await;
        if answer.status != StatusCode::CONFLICT {
            break answer;
        }
        // Until the dead request's deadline has passed, its claim stands.
        assert_eq!(answer.json()["code"], "IDEMPOTENCY_IN_PROGRESS");
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "the claim was never taken over"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(retried.status, StatusCode::CREATED, "{:?}", retried.json());
    assert_eq!(registered(&pool).await, 1, "executed once");
    let event_stream: String = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE event_type = 'OrganizationRegistered'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(retried.json()["id"], event_stream.as_str());
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
