//! Audit and time travel, end to end (issue #4): the real server on loopback, real PostgreSQL,
//! real signatures, and `ledger-replay` as a library and as a process.
//!
//! - as-of: `GET /v1/licenses/{id}` snapshotted at 100 instants during a scenario equals the
//!   as-of read of each instant afterwards, through the API and through `ledger-replay state`;
//! - replay equivalence: every read model rebuilt (shadow tables + swap) while the server serves
//!   equals what the live projectors produced, and the server keeps serving;
//! - tamper detection: a payload byte changed, an event deleted, two events swapped, a stream's
//!   middle rewritten with a recomputed chain: `verify` fails naming the event, every time; the
//!   untouched log verifies clean; the same through an export verified with the JWKS alone;
//! - crash: `kill -9` a rebuild midway; the live read models are untouched and a rerun completes.

use std::io::BufReader;
use std::process::{Command, Stdio};
use std::time::Duration;

use domain::integrity::{CanonicalFields, chain_hash};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool, Row};
use tests::{TestApp, TestDb};

const REPLAY: &str = env!("CARGO_BIN_EXE_ledger-replay-e2e");

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

/// The database clock: the instants `recorded_at` is measured in.
async fn db_now(pool: &PgPool) -> chrono::DateTime<chrono::Utc> {
    sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A fingerprint of every rebuildable read model: row count and md5 of all rows in a fixed order.
async fn read_models(pool: &PgPool) -> Vec<(String, i64, String)> {
    let mut out = Vec::new();
    for p in projections::replayable() {
        for table in p.tables() {
            let row = sqlx::query(&format!(
                "SELECT count(*) AS n, coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') AS h FROM {table} t"
            ))
            .fetch_one(pool)
            .await
            .unwrap();
            out.push(((*table).to_owned(), row.get("n"), row.get("h")));
        }
    }
    out
}

/// Drives a lifecycle over several licenses; after each step, snapshots one license through the
/// API with the instant it was taken at.
async fn scenario(
    app: &TestApp,
    snapshots: usize,
) -> Vec<(String, chrono::DateTime<chrono::Utc>, Value)> {
    let c = app.catalogue().await;
    let other = app
        .post(
            "/v1/organizations",
            json!({"name": "Globex", "kind": "customer"}),
        )
        .await;
    let licenses: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(id(&app.issue(&c).await));
        }
        v
    };
    let pool = app.db.pool().await;
    let mut taken = Vec::new();
    for step in 0..snapshots {
        let license = &licenses[step % licenses.len()];
        let path = format!("/v1/licenses/{license}");
        let current = app.get(&path).await.body;
        // One command per step, chosen to be valid in the license's current state.
        let answer = match (current["status"].as_str().unwrap(), step % 5) {
            ("suspended", _) => app.post(&format!("{path}/reinstate"), json!({})).await,
            ("revoked", _) => app.get(&path).await,
            (_, 0) => {
                app.post(
                    &format!("{path}/suspend"),
                    json!({"reason": "unpaid invoice"}),
                )
                .await
            }
            (_, 1) => {
                let year = 2030 + step as i32;
                app.post(
                    &format!("{path}/renew"),
                    json!({"expires_at": format!("{year}-01-01T00:00:00Z")}),
                )
                .await
            }
            (_, 2) => {
                let to = if current["organization_id"] == c.organization_id.as_str() {
                    id(&other.body)
                } else {
                    c.organization_id.clone()
                };
                app.post(&format!("{path}/transfer"), json!({"organization_id": to}))
                    .await
            }
            (_, 3) => {
                app.put(&format!("{path}/seats"), json!({"seats": 1 + step % 7}))
                    .await
            }
            _ if step == snapshots - 7 => {
                app.post(
                    &format!("{path}/revoke"),
                    json!({"reason": "contract ended"}),
                )
                .await
            }
            _ => {
                let features = if step % 2 == 0 {
                    json!(["pro"])
                } else {
                    json!(["pro", "export.pdf"])
                };
                app.put(
                    &format!("{path}/entitlements"),
                    json!({"features": features}),
                )
                .await
            }
        };
        assert!(answer.status.is_success(), "step {step}: {:?}", answer.body);
        let snapshot = app.get(&path).await;
        assert_eq!(snapshot.status, StatusCode::OK);
        let at = db_now(&pool).await;
        taken.push((license.clone(), at, snapshot.body));
    }
    pool.close().await;
    taken
}

fn without_as_of(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("as_of");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn as_of_reads_equal_snapshots_and_a_rebuild_equals_the_live_read_models() {
    let app = TestApp::start().await;
    let taken = scenario(&app, 100).await;
    let pool = app.db.pool().await;

    // As-of correctness: 100/100, through the API and through `ledger-replay state` (library).
    let mut equal = 0;
    for (license, at, snapshot) in &taken {
        let t = at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let answer = app
            .get(&format!(
                "/v1/licenses/{license}?as_of={}",
                t.replace('+', "%2B")
            ))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        assert_eq!(
            answer.body["as_of"]
                .as_str()
                .map(|s| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap()),
            Some(*at)
        );
        let cli = replay_tool::state::license(&pool, license.parse().unwrap(), *at)
            .await
            .unwrap();
        assert_eq!(
            serde_json::to_value(&cli.license).unwrap(),
            answer.body,
            "CLI and API differ at {t}"
        );
        assert_eq!(
            cli.events.last().unwrap().sequence,
            answer.body["version"].as_i64().unwrap()
        );
        if without_as_of(answer.body) == without_as_of(snapshot.clone()) {
            equal += 1;
        } else {
            panic!("as-of read at {t} differs from the snapshot taken then");
        }
    }
    assert_eq!(equal, 100);
    // Before the license existed: 404, and `state` says so.
    let (license, _, _) = &taken[0];
    let before = app
        .get(&format!(
            "/v1/licenses/{license}?as_of=2000-01-01T00:00:00Z"
        ))
        .await;
    assert_eq!(before.status, StatusCode::NOT_FOUND);
    assert!(matches!(
        replay_tool::state::license(
            &pool,
            license.parse().unwrap(),
            "2000-01-01T00:00:00Z".parse().unwrap()
        )
        .await,
        Err(replay_tool::state::StateError::NotFound(_))
    ));
    let bad = app
        .get(&format!("/v1/licenses/{license}?as_of=yesterday"))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["field"], "as_of");

    // Organization state: its licenses then.
    let org = taken[0].2["organization_id"].as_str().unwrap().to_owned();
    let org_state =
        replay_tool::state::organization(&pool, org.parse().unwrap(), db_now(&pool).await)
            .await
            .unwrap();
    let listed = app.get(&format!("/v1/organizations/{org}/licenses")).await;
    app.projected().await;
    let listed = if listed.status == StatusCode::OK {
        app.get(&format!("/v1/organizations/{org}/licenses")).await
    } else {
        listed
    };
    let mut api_ids: Vec<String> = listed.body["licenses"]
        .as_array()
        .unwrap()
        .iter()
        .map(id)
        .collect();
    api_ids.sort();
    let mut cli_ids: Vec<String> = org_state
        .licenses
        .iter()
        .map(|l| l.id.to_string())
        .collect();
    cli_ids.sort();
    assert_eq!(cli_ids, api_ids);

    // Replay equivalence, while the server serves.
    app.projected().await;
    let live = read_models(&pool).await;
    assert!(live.iter().any(|(t, n, _)| t == "rm_audit" && *n > 100));
    // Storage parameters, the migrations' and an operator's, must survive the swap — also one
    // the catalog keeps in a form that does not parse back unquoted (`fillfactor=0x5A`).
    sqlx::query("ALTER TABLE rm_audit SET (fillfactor = '0x5A', toast.autovacuum_enabled = false)")
        .execute(&pool)
        .await
        .unwrap();
    let parameters = storage_parameters(&pool).await;
    assert!(parameters.contains(&(
        "rm_licenses".to_owned(),
        Some(vec!["toast_tuple_target=8160".to_owned()]),
        None
    )));
    assert!(parameters.contains(&(
        "rm_audit".to_owned(),
        Some(vec!["fillfactor=0x5A".to_owned()]),
        Some(vec!["autovacuum_enabled=false".to_owned()])
    )));
    let report = replay_tool::rebuild::rebuild(
        &app.db.url,
        projections::replayable(),
        &replay_tool::progress::Progress::quiet("rebuild", 0),
    )
    .await
    .unwrap();
    assert_eq!(report.projections.len(), 6);
    let rebuilt = read_models(&pool).await;
    assert_eq!(
        rebuilt, live,
        "the rebuilt read models differ from the live ones"
    );
    assert_eq!(storage_parameters(&pool).await, parameters);
    // The swapped-in tables kept their index names and serve the server (as ledger_app).
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE tablename = 'rm_licenses' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        names,
        [
            "rm_licenses_key_hash",
            "rm_licenses_organization",
            "rm_licenses_pkey"
        ]
    );
    let schema: Option<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname = 'ledger_rebuild'",
    )
    .fetch_optional(&pool)
    .await
    .unwrap();
    assert_eq!(schema, None, "the shadow schema is dropped");
    let c = app.catalogue().await;
    let fresh = id(&app.issue(&c).await);
    app.projected().await;
    let listed = app
        .get(&format!("/v1/organizations/{}/licenses", c.organization_id))
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["licenses"][0]["id"], fresh.as_str());
    let audit = app.get(&format!("/v1/audit?license_id={fresh}")).await;
    assert_eq!(audit.status, StatusCode::OK, "{:?}", audit.body);
    assert_eq!(audit.body["entries"].as_array().unwrap().len(), 1);

    pool.close().await;
    app.stop().await;
}

/// Per read-model table: its storage parameters and its TOAST table's.
type StorageParameters = Vec<(String, Option<Vec<String>>, Option<Vec<String>>)>;

async fn storage_parameters(pool: &PgPool) -> StorageParameters {
    sqlx::query_as(
        "SELECT c.relname::text, c.reloptions::text[], t.reloptions::text[] FROM pg_class c \
         LEFT JOIN pg_class t ON t.oid = c.reltoastrelid \
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' \
           AND c.relname LIKE 'rm\\_%' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_trail_is_filtered_and_paginated_and_checkpoints_are_served() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let license = id(&app.issue(&c).await);
    let path = format!("/v1/licenses/{license}");
    app.post(&format!("{path}/suspend"), json!({"reason": "chargeback"}))
        .await;
    app.post(&format!("{path}/reinstate"), json!({})).await;
    app.projected().await;

    let first = app
        .get(&format!("/v1/audit?license_id={license}&limit=2"))
        .await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let entries = first.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let cursor = first.body["next_cursor"].as_i64().expect("a next cursor");
    let second = app
        .get(&format!(
            "/v1/audit?license_id={license}&limit=2&cursor={cursor}"
        ))
        .await;
    let rest = second.body["entries"].as_array().unwrap();
    assert_eq!(rest.len(), 1);
    let actions: Vec<&str> = entries
        .iter()
        .chain(rest)
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["LicenseIssued", "LicenseSuspended", "LicenseReinstated"]
    );
    for entry in entries.iter().chain(rest) {
        assert!(
            entry["actor"].as_str().unwrap().starts_with("api_token:"),
            "{entry}"
        );
        assert!(entry["correlation_id"].is_string(), "{entry}");
    }
    let bad = app.get("/v1/audit?limit=0").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = app.get("/v1/audit?from=last-week").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let anonymous = app
        .client
        .get(format!("{}/v1/audit", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // Checkpoints: signed on demand here (the server does it every N events or T seconds).
    let none = app.get("/v1/checkpoints/latest").await;
    let count = app.event_count().await;
    assert_eq!(checkpoint_everything(&app).await, count);
    let latest = app.get("/v1/checkpoints/latest").await;
    assert!(none.status == StatusCode::NOT_FOUND || none.status == StatusCode::OK);
    assert_eq!(latest.status, StatusCode::OK, "{:?}", latest.body);
    assert_eq!(latest.body["event_count"], count);
    assert!(latest.body["position"].as_i64().unwrap() > 0);
    assert_eq!(latest.body["root"].as_str().unwrap().len(), 64);
    app.stop().await;
}

/// Signs checkpoints until one covers every event so far; returns its event count. (The
/// server's own signer may hold the signing lock at that moment: then it signs, and we look again.)
async fn checkpoint_everything(app: &TestApp) -> i64 {
    let count = app.event_count().await;
    for _ in 0..200 {
        api::checkpoints::sign_next(&app.server.state, 1_000_000, 0, true)
            .await
            .unwrap();
        let latest = app.get("/v1/checkpoints/latest").await;
        if latest.body["event_count"].as_i64() >= Some(count) {
            return latest.body["event_count"].as_i64().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no checkpoint covered the {count} events");
}

/// A superuser connection with the append-only triggers disabled for one tampering statement.
async fn tamper(url: &str, sql: &str) {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query("ALTER TABLE events DISABLE TRIGGER USER")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    sqlx::query("ALTER TABLE events ENABLE TRIGGER USER")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

async fn verify(
    url: &str,
    jwks: &client::jwks::Jwks,
) -> Result<replay_tool::verify::Summary, replay_tool::verify::Failure> {
    let pool = PgPool::connect(url).await.unwrap();
    let outcome = replay_tool::verify::verify_database(
        &pool,
        Some(jwks),
        &replay_tool::progress::Progress::quiet("verify", 0),
    )
    .await
    .unwrap();
    pool.close().await;
    outcome
}

/// A copy of `template` to tamper with.
async fn copy_of(template: &TestDb) -> TestDb {
    let copy = TestDb::create().await;
    let mut admin = PgConnection::connect(&tests::server_url()).await.unwrap();
    sqlx::query(&format!("DROP DATABASE {}", copy.name))
        .execute(&mut admin)
        .await
        .unwrap();
    // The stopped server's idle pool may still hold a session; a template must have none.
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
        .bind(&template.name)
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(&format!(
        "CREATE DATABASE {} TEMPLATE {}",
        copy.name, template.name
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    copy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_names_every_tampered_event_and_passes_an_untouched_log() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let license = id(&app.issue(&c).await);
    let path = format!("/v1/licenses/{license}");
    app.post(
        &format!("{path}/suspend"),
        json!({"reason": "unpaid invoice"}),
    )
    .await;
    app.post(&format!("{path}/reinstate"), json!({})).await;
    app.put(&format!("{path}/seats"), json!({"seats": 2})).await;
    app.post(
        &format!("{path}/renew"),
        json!({"expires_at": "2031-01-01T00:00:00Z"}),
    )
    .await;
    let _other = app.issue(&c).await;
    let signed = checkpoint_everything(&app).await;
    // One more event after the checkpoint: covered by its chain only.
    app.post(&format!("{path}/suspend"), json!({"reason": "audit"}))
        .await;
    let jwks = client::jwks::Jwks::from_json(&app.server.state.signing.jwks().to_string()).unwrap();
    let export_clean =
        std::env::temp_dir().join(format!("ledger-export-{}.jsonl", uuid::Uuid::now_v7()));

    // The untouched log verifies clean (library and binary), and so does its export.
    let clean = verify(&app.db.url, &jwks)
        .await
        .expect("an untouched log verifies");
    assert_eq!(
        clean.events,
        u64::try_from(app.event_count().await).unwrap()
    );
    // Ours, and any the server's own signer added meanwhile.
    assert!(clean.checkpoints >= 1);
    assert!(
        clean.events_under_checkpoints >= u64::try_from(signed).unwrap(),
        "{clean:?}"
    );
    assert!(clean.events_after_last_checkpoint >= 1, "{clean:?}");
    let jwks_file = std::env::temp_dir().join(format!("ledger-jwks-{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&jwks_file, app.server.state.signing.jwks().to_string()).unwrap();
    let status = Command::new(REPLAY)
        .args(["verify", "--database-url", &app.db.url, "--jwks"])
        .arg(&jwks_file)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let status = Command::new(REPLAY)
        .args(["export", "--database-url", &app.db.url, "--out"])
        .arg(&export_clean)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let verified = Command::new(REPLAY)
        .arg("verify-export")
        .arg(&export_clean)
        .arg("--jwks")
        .arg(&jwks_file)
        .output()
        .unwrap();
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );

    // The positions of the license's events, by sequence.
    let pool = app.db.pool().await;
    let rows = sqlx::query("SELECT sequence, global_position, event_id FROM events WHERE aggregate_id = $1 ORDER BY sequence")
        .bind(&license)
        .fetch_all(&pool)
        .await
        .unwrap();
    let position = |seq: i64| -> i64 {
        rows.iter()
            .find(|r| r.get::<i64, _>("sequence") == seq)
            .unwrap()
            .get("global_position")
    };
    pool.close().await;
    let template = {
        let name = app.db.name.clone();
        let url = app.db.url.clone();
        app.server.shutdown().await;
        TestDb { name, url }
    };

    // 1. One payload byte changed ("unpaid invoice" -> "unpaid invoicf").
    let db = copy_of(&template).await;
    tamper(&db.url, &format!(
        "UPDATE events SET payload = replace(payload::text, 'unpaid invoice', 'unpaid invoicf')::json WHERE global_position = {}",
        position(2)
    ))
    .await;
    let failure = verify(&db.url, &jwks)
        .await
        .expect_err("a changed byte is detected");
    assert_eq!(failure.position, Some(position(2)), "{failure}");
    assert!(failure.event_id.is_some(), "{failure}");
    // The binary: exit 1 and the event named on stderr.
    let out = Command::new(REPLAY)
        .args(["verify", "--database-url", &db.url, "--jwks"])
        .arg(&jwks_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("event at position {}", position(2))),
        "{stderr}"
    );
    db.drop_db().await;

    // 2. An event deleted from the middle of a stream.
    let db = copy_of(&template).await;
    tamper(
        &db.url,
        &format!("DELETE FROM events WHERE global_position = {}", position(3)),
    )
    .await;
    let failure = verify(&db.url, &jwks)
        .await
        .expect_err("a deleted event is detected");
    assert_eq!(failure.position, Some(position(3)), "{failure}");
    db.drop_db().await;

    // 3. Two events swapped (their places in the stream exchanged).
    let db = copy_of(&template).await;
    tamper(&db.url, &format!(
        "UPDATE events SET sequence = sequence + 1000000 WHERE global_position IN ({a}, {b}); \
         UPDATE events SET sequence = CASE WHEN global_position = {a} THEN 3 ELSE 2 END WHERE global_position IN ({a}, {b});",
        a = position(2),
        b = position(3)
    ))
    .await;
    let failure = verify(&db.url, &jwks)
        .await
        .expect_err("swapped events are detected");
    assert_eq!(failure.position, Some(position(2)), "{failure}");
    db.drop_db().await;

    // 4. The middle of the stream rewritten with a consistently recomputed chain: every hash
    //    agrees with its content, only the signed checkpoint can tell.
    let db = copy_of(&template).await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    let events = sqlx::query(&format!(
        "SELECT {}, payload::text AS payload_text, metadata::text AS metadata_text FROM events WHERE aggregate_id = $1 ORDER BY sequence",
        projections::engine::EVENT_COLUMNS
    ))
    .bind(&license)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    let mut previous = domain::integrity::GENESIS_HASH;
    let mut statements = String::new();
    for row in &events {
        let e = projections::engine::recorded_event(row).unwrap();
        let mut payload: String = row.get("payload_text");
        if e.sequence == 4 {
            payload = payload.replace("\"seats\":2", "\"seats\":9");
            assert!(payload.contains("\"seats\":9"), "{payload}");
        }
        let metadata: String = row.get("metadata_text");
        let fields = CanonicalFields {
            event_id: e.event_id,
            global_position: e.global_position,
            aggregate_type: &e.aggregate_type,
            aggregate_id: &e.aggregate_id,
            sequence: e.sequence,
            event_type: &e.event_type,
            event_version: &e.event_version,
            recorded_at: e.recorded_at,
            payload_text: &payload,
            metadata_text: &metadata,
        };
        let hash = chain_hash(&previous, &fields);
        if e.sequence >= 4 {
            statements.push_str(&format!(
                "UPDATE events SET payload = '{}'::json, hash = '\\x{}'::bytea WHERE global_position = {};\n",
                payload.replace('\'', "''"),
                hex::encode(hash),
                e.global_position
            ));
        }
        previous = hash;
    }
    tamper(&db.url, &statements).await;
    let failure = verify(&db.url, &jwks)
        .await
        .expect_err("a rewritten stream is detected");
    assert_eq!(failure.position, Some(position(4)), "{failure}");
    assert!(failure.problem.contains("rewritten"), "{failure}");
    // The export of the tampered log fails offline too, at the same event.
    let export = std::env::temp_dir().join(format!("ledger-export-{}.jsonl", uuid::Uuid::now_v7()));
    let status = Command::new(REPLAY)
        .args(["export", "--database-url", &db.url, "--out"])
        .arg(&export)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let out = Command::new(REPLAY)
        .arg("verify-export")
        .arg(&export)
        .arg("--jwks")
        .arg(&jwks_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("event at position {}", position(4)))
    );
    db.drop_db().await;

    // An edited export line, and an export checked against someone else's keys, both fail.
    let text = std::fs::read_to_string(&export_clean).unwrap();
    let edited = text.replacen("unpaid invoice", "unpaid invoicf", 1);
    assert_ne!(edited, text);
    let reader = BufReader::new(edited.as_bytes());
    let failure = replay_tool::export::verify_export(
        reader,
        Some(&jwks),
        &replay_tool::progress::Progress::quiet("x", 0),
    )
    .unwrap()
    .expect_err("an edited export is detected");
    assert_eq!(failure.position, Some(position(2)));
    let foreign = api::signing::KeyPair::generate().unwrap();
    let foreign =
        client::jwks::Jwks::from_json(&json!({"keys": [foreign.jwk()]}).to_string()).unwrap();
    let failure = replay_tool::export::verify_export(
        BufReader::new(text.as_bytes()),
        Some(&foreign),
        &replay_tool::progress::Progress::quiet("x", 0),
    )
    .unwrap()
    .expect_err("foreign keys do not verify the checkpoints");
    assert!(failure.checkpoint_id.is_some(), "{failure}");
    let truncated: String = text
        .lines()
        .take(text.lines().count() - 1)
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        replay_tool::export::verify_export(
            BufReader::new(truncated.as_bytes()),
            Some(&jwks),
            &replay_tool::progress::Progress::quiet("x", 0)
        )
        .unwrap()
        .is_err()
    );
    let _ = std::fs::remove_file(&export_clean);
    let _ = std::fs::remove_file(&export);
    let _ = std::fs::remove_file(&jwks_file);
    template.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_killed_midway_leaves_the_live_read_models_untouched_and_a_rerun_completes() {
    let db = TestDb::create().await;
    commands::db::migrate(&db.url).await.unwrap();
    let pool = commands::db::connect(&db.url, 4).await.unwrap();
    replay_tool::seed::seed(
        &pool,
        &replay_tool::seed::SeedOptions {
            licenses: 6_000,
            events: 120_000,
            long_license_events: 1_000,
            organizations: 100,
        },
        &|_, _| {},
    )
    .await
    .unwrap();
    for p in projections::all() {
        projections::engine::ensure_checkpoint(&pool, p.name())
            .await
            .unwrap();
        projections::engine::catch_up_to_head(&pool, p.as_ref(), 5_000, Duration::from_secs(300))
            .await
            .unwrap();
    }
    pool.close().await;
    let owner = db.pool().await;
    let live = read_models(&owner).await;
    let checkpoints: Vec<(String, i64)> =
        sqlx::query_as("SELECT name, last_position FROM projector_checkpoints ORDER BY name")
            .fetch_all(&owner)
            .await
            .unwrap();

    let mut child = Command::new(REPLAY)
        .args(["rebuild", "--all", "--database-url", &db.url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Stop the rebuild midway, deterministically: once its shadow tables exist, hold an
    // exclusive lock on the audit copy. The audit worker then waits at its next write and the
    // reader at its full queue: the catalogue copies are half written (they apply batch by
    // batch), licenses and validation still hold their folds in memory, nothing is swapped.
    let waiting = std::time::Instant::now();
    while sqlx::query_scalar::<_, Option<String>>(
        "SELECT to_regclass('ledger_rebuild.rm_audit')::text",
    )
    .fetch_one(&owner)
    .await
    .unwrap()
    .is_none()
    {
        assert!(
            waiting.elapsed() < Duration::from_secs(60),
            "no shadow tables after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut hold = owner.begin().await.unwrap();
    sqlx::query("SET LOCAL lock_timeout = '30s'")
        .execute(&mut *hold)
        .await
        .unwrap();
    sqlx::query("LOCK TABLE ledger_rebuild.rm_audit IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *hold)
        .await
        .unwrap();
    let shadow_rows = loop {
        let rows: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM ledger_rebuild.rm_organizations) \
                  + (SELECT count(*) FROM ledger_rebuild.rm_policies)",
        )
        .fetch_one(&owner)
        .await
        .unwrap();
        if rows > 0 || waiting.elapsed() > Duration::from_secs(60) {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        child.try_wait().unwrap().is_none(),
        "the rebuild finished although its audit copy was locked"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    hold.rollback().await.unwrap();
    assert!(
        shadow_rows > 0,
        "the rebuild had written into its shadow tables"
    );
    assert_eq!(
        read_models(&owner).await,
        live,
        "a killed rebuild changed the live read models"
    );
    let after: Vec<(String, i64)> =
        sqlx::query_as("SELECT name, last_position FROM projector_checkpoints ORDER BY name")
            .fetch_all(&owner)
            .await
            .unwrap();
    assert_eq!(after, checkpoints);

    let out = Command::new(REPLAY)
        .args(["rebuild", "--all", "--database-url", &db.url])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        read_models(&owner).await,
        live,
        "the rerun rebuilt the same read models"
    );
    let unknown = Command::new(REPLAY)
        .args([
            "rebuild",
            "--projection",
            "mailer",
            "--database-url",
            &db.url,
        ])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("known: organizations"));
    owner.close().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn state_before_a_schema_change_shows_the_upcast_values() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let license = id(&app.issue(&c).await);
    let pool = app.db.pool().await;
    // A revocation as the first release wrote it: LicenseRevoked v1, no `category`.
    sqlx::query(
        "INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT $2, 'License', aggregate_id, 2, 'LicenseRevoked', '1', '{\"reason\":\"contract ended\"}'::json, metadata \
         FROM events WHERE aggregate_type = 'License' AND aggregate_id = $1 AND sequence = 1",
    )
    .bind(&license)
    .bind(uuid::Uuid::now_v7())
    .execute(&pool)
    .await
    .unwrap();
    let at = db_now(&pool).await;
    let state = replay_tool::state::license(&pool, license.parse().unwrap(), at)
        .await
        .unwrap();
    assert_eq!(state.license.status, "revoked");
    assert_eq!(
        state.license.revocation_reason.as_deref(),
        Some("contract ended")
    );
    assert_eq!(state.license.revocation_category, Some("unspecified"));
    assert_eq!(
        state.events[1].version, "1",
        "the stored event keeps its version"
    );
    let t = at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let api = app.get(&format!("/v1/licenses/{license}?as_of={t}")).await;
    assert_eq!(api.body, serde_json::to_value(&state.license).unwrap());
    let table = replay_tool::state::license_table(&state);
    assert!(table.contains("unspecified: contract ended"), "{table}");
    assert!(table.contains("LicenseRevoked v1"), "{table}");
    pool.close().await;
    app.stop().await;
}
