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

/// The projector runners of `ledger serve` move their checkpoints past the events of other
/// projectors (ADR 0003, "The idle look"): after writes that are all Organization events, the
/// projectors that read none of them stand at the last event too, having applied nothing, so
/// that neither their next look nor `/v1/projections` reads through those events again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_serve_moves_every_projector_past_the_events_it_does_not_read() {
    let db = TestDb::create().await;
    let data_dir = temp_data_dir();
    let token = mint_token(BIN, &db);
    let server = spawn_server(BIN, &db, &data_dir, &[]);
    let client = reqwest::Client::new();
    for i in 0..30 {
        let created = client
            .post(format!("{}/v1/organizations", server.base))
            .bearer_auth(&token)
            .json(&json!({"name": format!("Acme {i}"), "kind": "customer"}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status().as_u16(), 201);
    }
    let last: i64 = sqlx::query_scalar("SELECT max(global_position) FROM events")
        .fetch_one(&db.pool().await)
        .await
        .unwrap();
    let url = format!("{}/v1/projections", server.base);
    let since = Instant::now();
    let projections = loop {
        let (status, body) = get(&client, &url, &token).await;
        assert_eq!(status, 200, "{body}");
        let all = body["projections"].as_array().unwrap().clone();
        if all.iter().all(|p| p["last_position"] == last) {
            break all;
        }
        assert!(
            since.elapsed() < Duration::from_secs(15),
            "not every projector reached position {last}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let applied = |name: &str| {
        projections
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no projector {name}"))["events_applied"]
            .as_i64()
    };
    assert_eq!(applied("organizations"), Some(30));
    for name in ["products", "policies", "licenses", "releases", "validation"] {
        assert_eq!(applied(name), Some(0), "{name} applied nothing");
    }
    assert!(projections.iter().all(|p| p["pending_events"] == 0));
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

/// A binary run without a database says so and names what to pass; it never falls back to a
/// default database (a `ledger token` minted into the server's `postgres` database, which no
/// ledger reads, looked like success). Cargo's configuration sets no `DATABASE_URL` either, so
/// this is what `cargo run` without one does too.
#[test]
fn without_a_database_url_every_binary_says_what_to_pass() {
    let license = uuid::Uuid::now_v7().to_string();
    let out = std::env::temp_dir().join(format!("ledger-export-{license}.jsonl"));
    let out = out.to_str().unwrap();
    let cases: &[(&str, &[&str], i32)] = &[
        (BIN, &["serve", "--listen", "127.0.0.1:0"], 1),
        (BIN, &["migrate"], 1),
        (BIN, &["token", "--role", "vendor_admin"], 1),
        (BIN, &["token", "revoke", &license], 1),
        (
            REPLAY,
            &[
                "state",
                "--license",
                &license,
                "--at",
                "2026-01-01T00:00:00Z",
            ],
            2,
        ),
        (REPLAY, &["rebuild", "--all"], 2),
        (REPLAY, &["export", "--out", out], 2),
    ];
    let example = "e.g. postgres://postgres@127.0.0.1:5432/license_ledger";
    for (url, said) in [
        (
            None,
            format!(
                "error: DATABASE_URL is not set; pass --database-url or set DATABASE_URL, {example}"
            ),
        ),
        (
            Some(""),
            format!(
                "error: the database URL is empty; pass --database-url or set DATABASE_URL, {example}"
            ),
        ),
    ] {
        for (bin, args, code) in cases {
            let mut command = std::process::Command::new(bin);
            command.args(*args).env_remove("DATABASE_URL");
            if let Some(url) = url {
                command.env("DATABASE_URL", url);
            }
            let ran = command.output().unwrap();
            let stderr = String::from_utf8_lossy(&ran.stderr);
            assert_eq!(ran.status.code(), Some(*code), "{args:?}: {stderr}");
            assert_eq!(
                stderr.trim_end(),
                said,
                "{args:?} with DATABASE_URL={url:?}"
            );
        }
    }
}

/// A closed stdout (`ledger token ... | head -c0`, a reader that exits early) is an error like any
/// other: one `error:` line on stderr and exit 1, never a panic with a backtrace (found by a
/// helper following the README: `ledger keys list | awk '... exit'` panicked).
#[tokio::test]
async fn a_closed_stdout_is_an_error_line_not_a_panic() {
    let db = TestDb::create().await;
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader); // every write to the pipe now fails with EPIPE
    let ran = std::process::Command::new(BIN)
        .args([
            "token",
            "--role",
            "vendor_auditor",
            "--ttl",
            "1h",
            "--database-url",
            &db.url,
        ])
        .env_remove("RUST_BACKTRACE")
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert_eq!(ran.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("error: ") && l.contains("Broken pipe")),
        "{stderr}"
    );
    db.drop_db().await;
}

/// Users sign in through the identity provider given to `ledger serve --oidc-issuer` (the flag
/// as users pass it, parsed by the binary), and the users' read model is kept by the binary's
/// own projectors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_serve_takes_its_oidc_issuer_and_projects_users() {
    use tests::idp::{IdpUser, TestIdp};
    let idp = TestIdp::start().await;
    let db = TestDb::create().await;
    let data_dir = temp_data_dir();
    let token = mint_token(BIN, &db);
    let server = spawn_server(BIN, &db, &data_dir, &["--oidc-issuer", idp.issuer()]);
    let client = reqwest::Client::new();
    let org = client
        .post(format!("{}/v1/organizations", server.base))
        .bearer_auth(&token)
        .json(&json!({"name": "Acme GmbH", "kind": "customer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(org.status().as_u16(), 201);
    let org: Value = org.json().await.unwrap();
    let users_url = format!(
        "{}/v1/organizations/{}/users",
        server.base,
        org["id"].as_str().unwrap()
    );
    let invited = client
        .post(&users_url)
        .bearer_auth(&token)
        .json(&json!({"email": "ana@acme.example", "roles": ["customer_admin"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(invited.status().as_u16(), 201);

    let ana = idp
        .access_token(&IdpUser::verified("ana", "ana@acme.example"))
        .await;
    let (status, me) = get(&client, &format!("{}/v1/me", server.base), &ana).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["principal"]["email"], "ana@acme.example");

    // The users' projector of the binary lists her, linked now.
    let since = Instant::now();
    loop {
        let (status, body) = get(&client, &users_url, &ana).await;
        assert_eq!(status, 200, "{body}");
        if body["users"][0]["status"] == "active" {
            assert_eq!(body["users"][0]["subject"], "ana");
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "not projected: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);
    db.drop_db().await;
}

/// Stripe webhooks reach `ledger serve` with its secrets given as users give them (the flag, a
/// rotation's two secrets comma-separated), and the binary's own billing consumer takes the
/// stored event and records its outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_serve_takes_stripe_webhooks_and_its_consumer_processes_them() {
    let db = TestDb::create().await;
    let data_dir = temp_data_dir();
    let server = spawn_server(
        BIN,
        &db,
        &data_dir,
        &["--stripe-webhook-secret", "whsec_a,whsec_b"],
    );
    let client = reqwest::Client::new();
    let body = serde_json::to_vec(&json!({
        "id": "evt_served", "object": "event", "created": chrono::Utc::now().timestamp(),
        "type": "product.created", "livemode": false,
        "data": {"object": {"id": "prod_1", "object": "product"}}
    }))
    .unwrap();
    let answer = tests::stripe::post_signed(
        &client,
        &server.base,
        "whsec_b",
        chrono::Utc::now().timestamp(),
        body,
    )
    .await
    .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let since = Instant::now();
    loop {
        let outcome: Option<String> =
            sqlx::query_scalar("SELECT outcome FROM billing_inbox WHERE event_id = 'evt_served'")
                .fetch_one(&db.pool().await)
                .await
                .unwrap();
        if let Some(outcome) = outcome {
            assert_eq!(outcome, "ignored");
            break;
        }
        assert!(since.elapsed() < Duration::from_secs(10), "not processed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A back-fill through `ledger billing import`: the event delivered already is stored once;
    // the new one is processed by the server's consumer; `ledger billing list` shows both.
    let export = data_dir.join("events.jsonl");
    let line = |id: &str| {
        json!({"id": id, "object": "event", "created": chrono::Utc::now().timestamp(),
               "type": "invoice.paid", "data": {"object": {"id": "in_1", "object": "invoice"}}})
        .to_string()
    };
    std::fs::write(
        &export,
        format!("{}\n\n{}\n", line("evt_served"), line("evt_backfill")),
    )
    .unwrap();
    let billing = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .arg("billing")
            .args(args)
            .arg("--database-url")
            .arg(&db.url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (_, said) = billing(&["import", export.to_str().unwrap()]);
    assert!(
        said.contains("1 event(s) stored, 1 received already"),
        "{said}"
    );
    let since = Instant::now();
    loop {
        let (listed, _) = billing(&["list"]);
        let lines: Vec<&str> = listed.lines().collect();
        if lines.len() == 2 && lines.iter().all(|l| l.contains("\tignored\t")) {
            assert!(lines[1].starts_with("evt_backfill\tinvoice.paid\tignored\t1\t"));
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "not processed: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);
    db.drop_db().await;
}
