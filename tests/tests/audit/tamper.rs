//! Tamper detection: copies of one signed log, each tampered a different way (a payload byte,
//! a deleted event, two swapped events, a stream rewritten with a recomputed chain), must fail
//! `verify` naming the event; the untouched log and its export verify clean, and an edited,
//! foreign-keyed or truncated export fails offline.

use std::io::BufReader;
use std::process::Command;

use domain::integrity::{CanonicalFields, chain_hash};
use serde_json::json;
use sqlx::{Connection, PgConnection, PgPool, Row};
use tests::{TestApp, TestDb};

use crate::support::{REPLAY, checkpoint_everything, id};

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
    let jwks =
        client::jwks::Jwks::from_json(&app.server.state.app.signing().jwks().to_string()).unwrap();
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
    std::fs::write(
        &jwks_file,
        app.server.state.app.signing().jwks().to_string(),
    )
    .unwrap();
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
    // The stopped server's database is the template of every tampered copy.
    let TestApp {
        db: template,
        server,
        ..
    } = app;
    server.shutdown().await;

    // 1. One payload byte changed ("unpaid invoice" -> "unpaid invoicf").
    let db = TestDb::copy_of(&template).await;
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
    let db = TestDb::copy_of(&template).await;
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
    let db = TestDb::copy_of(&template).await;
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
    let db = TestDb::copy_of(&template).await;
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
    let foreign = application::signing::KeyPair::generate().unwrap();
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
