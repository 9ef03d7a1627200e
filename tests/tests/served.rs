//! The server as users run it: `ledger serve` (here its e2e stand-in binary, the same entry
//! point) starts every background job by itself. Round 1 shipped a checkpoint signer that only
//! tests ever ran; these tests fail when a job is written but not started.

use std::time::{Duration, Instant};

use application::jobs::Job;
use serde_json::{Value, json};
use strum::IntoEnumIterator;
use tests::{TestApp, TestDb, mint_token, spawn_server, temp_data_dir};

const BIN: &str = env!("CARGO_BIN_EXE_ledger-e2e-server");
const REPLAY: &str = env!("CARGO_BIN_EXE_ledger-replay-e2e");

/// GET `path` with `token`: status and JSON body.
async fn get(client: &reqwest::Client, url: &str, token: &str) -> (u16, Value) {
    let response = client.get(url).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_serve_signs_a_checkpoint_by_itself_within_its_interval() {
    let db = TestDb::create().await;
    let data_dir = temp_data_dir();
    let token = mint_token(BIN, &db);
    let server = spawn_server(
        BIN,
        &db,
        &data_dir,
        &[
            "--checkpoint-every-secs",
            "2",
            "--checkpoint-every-events",
            "100000",
        ],
    );
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{}/v1/organizations", server.base))
        .bearer_auth(&token)
        .json(&json!({"name": "Acme GmbH", "kind": "customer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let since = Instant::now();

    // Nobody calls the signer: the server must sign on its own, within its interval (2 s; the
    // signer looks every second), far below the 100,000 events that would also trigger it.
    let url = format!("{}/v1/checkpoints/latest", server.base);
    let checkpoint = loop {
        let (status, body) = get(&client, &url, &token).await;
        if status == 200 {
            break body;
        }
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["code"], "NO_CHECKPOINT");
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "no checkpoint signed within 10 s of an interval of 2 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db.pool().await)
        .await
        .unwrap();
    assert_eq!(
        checkpoint["event_count"].as_i64(),
        Some(events),
        "the checkpoint covers the token and the organization: {checkpoint}"
    );

    // What it signed verifies with the public keys alone, as an auditor checks it.
    let (_, jwks) = get(
        &client,
        &format!("{}/.well-known/jwks.json", server.base),
        &token,
    )
    .await;
    let jwks_file = data_dir.join("auditor-jwks.json");
    std::fs::write(&jwks_file, jwks.to_string()).unwrap();
    let verify = std::process::Command::new(REPLAY)
        .args(["verify", "--json", "--jwks"])
        .arg(&jwks_file)
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "ledger-replay verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    let summary: Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert!(summary["checkpoints"].as_u64() >= Some(1), "{summary}");
    assert_eq!(
        summary["events_under_checkpoints"].as_i64(),
        Some(events),
        "every event lies under a signature that verified: {summary}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_starts_every_background_job() {
    let app = TestApp::start().await;
    let every: Vec<Job> = Job::iter().collect();
    assert_eq!(app.server.jobs(), every.as_slice());
    app.stop().await;
}
