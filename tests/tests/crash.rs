//! Crash safety: `kill -9` the real server process while clients send commands, restart it, and
//! check that
//! - every command answered 2xx is in the log exactly once, and every refused one not at all;
//! - every stream's hash chain still verifies;
//! - the read models the restarted projectors finished equal a rebuild from position 0.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::integrity::{CanonicalFields, GENESIS_HASH, chain_hash};
use serde_json::{Value, json};
use sqlx::{PgPool, Row};
use tests::{TestDb, mint_token, spawn_server, temp_data_dir};

const BIN: &str = env!("CARGO_BIN_EXE_ledger-e2e-server");

/// What a client saw for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Answered(u16),
    NoAnswer,
}

async fn send(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    body: Value,
    request_id: &str,
) -> (Seen, Value) {
    let result = client
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .header("x-request-id", request_id)
        .json(&body)
        .send()
        .await;
    match result {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.json::<Value>().await {
                Ok(body) => (Seen::Answered(status), body),
                Err(_) => (Seen::NoAnswer, Value::Null),
            }
        }
        Err(_) => (Seen::NoAnswer, Value::Null),
    }
}

async fn dump(pool: &PgPool, table: &str) -> Vec<String> {
    sqlx::query_scalar(&format!(
        "SELECT row_to_json(t)::text FROM {table} t ORDER BY 1"
    ))
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn verify_chains(pool: &PgPool) -> usize {
    let rows = sqlx::query(
        "SELECT event_id, global_position, aggregate_type, aggregate_id, sequence, event_type, event_version, \
         recorded_at, payload::text AS p, metadata::text AS m, hash FROM events ORDER BY aggregate_type, aggregate_id, sequence",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut previous = GENESIS_HASH;
    let mut expected_sequence = 1;
    let mut stream = (String::new(), String::new());
    for row in &rows {
        let key = (
            row.get::<String, _>("aggregate_type"),
            row.get::<String, _>("aggregate_id"),
        );
        if key != stream {
            previous = GENESIS_HASH;
            expected_sequence = 1;
            stream = key.clone();
        }
        let sequence: i64 = row.get("sequence");
        assert_eq!(
            sequence, expected_sequence,
            "contiguous sequences in {key:?}"
        );
        expected_sequence += 1;
        let (p, m): (String, String) = (row.get("p"), row.get("m"));
        let fields = CanonicalFields {
            event_id: row.get("event_id"),
            global_position: row.get("global_position"),
            aggregate_type: &key.0,
            aggregate_id: &key.1,
            sequence,
            event_type: &row.get::<String, _>("event_type"),
            event_version: &row.get::<String, _>("event_version"),
            recorded_at: row.get("recorded_at"),
            payload_text: &p,
            metadata_text: &m,
        };
        let expected = chain_hash(&previous, &fields);
        assert_eq!(
            row.get::<Vec<u8>, _>("hash"),
            expected.to_vec(),
            "chain of {key:?} at {sequence}"
        );
        previous = expected;
    }
    rows.len()
}

#[tokio::test]
async fn killing_the_server_mid_write_loses_and_duplicates_nothing() {
    let db = TestDb::create().await;
    let data_dir = temp_data_dir();
    let mut server = spawn_server(BIN, &db, &data_dir, &[]);
    let token = mint_token(BIN, &db);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let base = server.base.clone();

    let (_, org) = send(
        &client,
        &base,
        &token,
        "/v1/organizations",
        json!({"name": "Acme", "kind": "customer"}),
        "setup-org",
    )
    .await;
    let (_, product) = send(
        &client,
        &base,
        &token,
        "/v1/products",
        json!({"name": "Studio", "kind": "application"}),
        "setup-product",
    )
    .await;
    let (_, policy) = send(
        &client, &base, &token, "/v1/policies",
        json!({"product_id": product["id"], "name": "Pro", "model": "node_locked", "seats": 3, "duration_days": 365,
               "features": ["pro"], "offline_allowed": false, "offline_grace_days": 0, "payment_grace_days": 7}),
        "setup-policy",
    )
    .await;
    let issue_body = json!({"policy_id": policy["id"], "organization_id": org["id"]});

    // Eight clients issue licenses and suspend/reinstate them as fast as they can.
    let seen: Arc<Mutex<HashMap<String, Seen>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..8 {
        let (client, base, token, seen, issue_body) = (
            client.clone(),
            base.clone(),
            token.clone(),
            seen.clone(),
            issue_body.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut mine: Vec<String> = Vec::new();
            for n in 0.. {
                let request_id = format!("w{w}-{n}");
                let (path, body) = match (n % 3, mine.last()) {
                    (1, Some(license)) => (
                        format!("/v1/licenses/{license}/suspend"),
                        json!({"reason": "load test"}),
                    ),
                    (2, Some(license)) => (format!("/v1/licenses/{license}/reinstate"), json!({})),
                    _ => ("/v1/licenses".to_owned(), issue_body.clone()),
                };
                let (outcome, answer) =
                    send(&client, &base, &token, &path, body, &request_id).await;
                seen.lock().unwrap().insert(request_id, outcome);
                if outcome == Seen::NoAnswer {
                    return; // the server is gone
                }
                if path == "/v1/licenses"
                    && let Some(id) = answer["id"].as_str()
                {
                    mine.push(id.to_owned());
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.child.kill().expect("kill -9 the server");
    server.child.wait().unwrap();
    for w in workers {
        w.await.unwrap();
    }
    let seen = Arc::try_unwrap(seen).unwrap().into_inner().unwrap();
    let answered_ok = seen
        .values()
        .filter(|s| matches!(s, Seen::Answered(200 | 201)))
        .count();
    assert!(
        answered_ok > 50,
        "the clients got real work done before the kill ({answered_ok})"
    );

    // Restart on the same database and data directory; the projectors resume where they stopped.
    let restarted = spawn_server(BIN, &db, &data_dir, &[]);
    let pool = db.pool().await;
    let counts: HashMap<String, i64> = sqlx::query(
        "SELECT metadata->>'correlation_id' AS id, count(*) AS n FROM events GROUP BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get("id"), r.get("n")))
    .collect();
    for (request_id, outcome) in &seen {
        let recorded = counts.get(request_id).copied().unwrap_or(0);
        match outcome {
            Seen::Answered(200 | 201) => assert_eq!(
                recorded, 1,
                "{request_id} was acknowledged, so it is in the log exactly once"
            ),
            Seen::Answered(status) => assert_eq!(
                recorded, 0,
                "{request_id} was refused ({status}), so nothing was written"
            ),
            Seen::NoAnswer => assert!(recorded <= 1, "{request_id} unanswered: at most once"),
        }
    }
    assert!(
        counts.values().all(|n| *n == 1),
        "no request recorded twice"
    );
    let events = verify_chains(&pool).await;
    assert!(events as i64 >= answered_ok as i64);

    // Wait for every restarted projector to reach the head, then compare with a rebuild.
    for p in projections::all() {
        for attempt in 0.. {
            let lag = projections::engine::lag(&pool, p.as_ref()).await.unwrap();
            if lag.pending_events == 0 {
                break;
            }
            assert!(
                attempt < 600,
                "projector {} did not catch up after the restart: {lag:?}",
                p.name()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let tables = [
        "rm_organizations",
        "rm_products",
        "rm_policies",
        "rm_licenses",
        "rm_validation",
    ];
    let mut live = Vec::new();
    for table in tables {
        live.push(dump(&pool, table).await);
    }
    // A graceful stop this time: SIGTERM, exit 0.
    let mut restarted = restarted;
    let status = Command::new("kill")
        .args(["-TERM", &restarted.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = restarted.child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0: {exit:?}");

    use projections::engine::rebuild;
    rebuild(&pool, &projections::catalogue::OrganizationsProjection, 500)
        .await
        .unwrap();
    rebuild(&pool, &projections::catalogue::ProductsProjection, 500)
        .await
        .unwrap();
    rebuild(&pool, &projections::catalogue::PoliciesProjection, 500)
        .await
        .unwrap();
    rebuild(&pool, &projections::licenses::LicensesProjection, 500)
        .await
        .unwrap();
    rebuild(&pool, &projections::validation::ValidationProjection, 500)
        .await
        .unwrap();
    for (i, table) in tables.iter().enumerate() {
        let rebuilt = dump(&pool, table).await;
        assert_eq!(rebuilt.len(), live[i].len(), "{table}: row count");
        assert_eq!(rebuilt, live[i], "{table}: live rows equal a rebuild");
    }
    assert!(live[3].len() >= 20, "licenses were projected");
    pool.close().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    db.drop_db().await;
}

const WEBHOOK_SECRET: &str = "whsec_crash_0123456789";

/// Delivers a signed Stripe event of id `id` the way Stripe does.
async fn deliver(client: &reqwest::Client, base: &str, id: &str, created: i64) -> Seen {
    let body = serde_json::to_vec(&json!({
        "id": id, "object": "event", "api_version": "2025-08-27.basil", "created": created,
        "livemode": false, "type": "invoice.upcoming",
        "data": {"object": {"id": "in_1", "object": "invoice", "customer": "cus_1"}}
    }))
    .unwrap();
    let answer = tests::stripe::post_signed(
        client,
        base,
        WEBHOOK_SECRET,
        chrono::Utc::now().timestamp(),
        body,
    )
    .await;
    match answer {
        Ok(answer) if answer.status() == 200 => match answer.json::<Value>().await {
            // 200 for a delivery that stored the event, 208 (Already Reported) in this test's
            // book for one that found it stored.
            Ok(body) if body["duplicate"] == true => Seen::Answered(208),
            Ok(_) => Seen::Answered(200),
            Err(_) => Seen::NoAnswer,
        },
        Ok(answer) => Seen::Answered(answer.status().as_u16()),
        Err(_) => Seen::NoAnswer,
    }
}

/// The webhook's intake commits events in batches (ADR 0022, "Intake by group commit"): killed
/// mid-batch, the server has acknowledged only events whose batch committed, and Stripe's
/// redelivery after the restart stores each of the others once.
#[tokio::test]
async fn killing_the_server_mid_intake_loses_no_acknowledged_stripe_event() {
    let db = TestDb::create().await;
    let data_dir = temp_data_dir();
    let server = spawn_server(
        BIN,
        &db,
        &data_dir,
        &["--stripe-webhook-secret", WEBHOOK_SECRET],
    );
    let mut server = server;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let created = chrono::Utc::now().timestamp();

    // Sixteen senders deliver fresh events as fast as they can until the server is killed.
    let seen: Arc<Mutex<HashMap<String, Seen>>> = Arc::default();
    let mut senders = Vec::new();
    for s in 0..16 {
        let (client, base, seen) = (client.clone(), server.base.clone(), seen.clone());
        senders.push(tokio::spawn(async move {
            for n in 0.. {
                let id = format!("evt_crash_{s}_{n}");
                let outcome = deliver(&client, &base, &id, created).await;
                seen.lock().unwrap().insert(id, outcome);
                if outcome == Seen::NoAnswer {
                    return;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.child.kill().expect("kill -9 the server");
    server.child.wait().unwrap();
    for s in senders {
        s.await.unwrap();
    }
    let seen = Arc::try_unwrap(seen).unwrap().into_inner().unwrap();
    let pool = db.pool().await;
    let stored: std::collections::HashSet<String> =
        sqlx::query_scalar("SELECT event_id FROM billing_inbox")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let mut acknowledged = 0;
    for (id, outcome) in &seen {
        match outcome {
            Seen::Answered(200) => {
                acknowledged += 1;
                assert!(
                    stored.contains(id),
                    "{id} was acknowledged, so it is stored"
                );
            }
            Seen::Answered(status) => panic!("{id}: the webhook answered {status}"),
            Seen::NoAnswer => {}
        }
    }
    assert!(
        acknowledged > 100,
        "the senders got events in before the kill ({acknowledged})"
    );

    // Stripe redelivers what it has no 2xx for (here: everything, again); each is stored once.
    let restarted = spawn_server(
        BIN,
        &db,
        &data_dir,
        &["--stripe-webhook-secret", WEBHOOK_SECRET],
    );
    for (id, before) in &seen {
        let again = deliver(&client, &restarted.base, id, created).await;
        match before {
            Seen::Answered(_) => assert_eq!(again, Seen::Answered(208), "{id} was stored"),
            // Unanswered: stored by its batch's commit before the kill, or now.
            _ => assert!(
                matches!(again, Seen::Answered(200 | 208)),
                "{id} redelivered: {again:?}"
            ),
        }
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM billing_inbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        stored,
        i64::try_from(seen.len()).unwrap(),
        "every event stored"
    );
    drop(restarted);
    pool.close().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    db.drop_db().await;
}
