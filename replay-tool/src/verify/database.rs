//! The database as a source: events and checkpoints as records, the append-only guards, and
//! `ledger-replay verify`'s walk over the whole log ([`verify_database`]).

use client::jwks::Jwks;
use futures_util::TryStreamExt;
use projections::engine::COMMIT_ORDER;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{PgConnection, Row};

use super::records::{CheckpointRecord, EventRecord, Failure, Summary};
use super::verifier::{Coverage, Verifier};
use crate::progress::Progress;

/// The columns of `events` as an [`EventRecord`] reads them: payload and metadata as their exact
/// stored text, which is what the hash covers.
pub const EVENT_TEXT_COLUMNS: &str = "global_position, tx_id::text::bigint AS tx_id, event_id, \
     aggregate_type, aggregate_id, sequence, event_type, event_version, recorded_at, \
     payload::text AS payload, metadata::text AS metadata, hash";

/// Reads a row selected with [`EVENT_TEXT_COLUMNS`].
///
/// # Errors
/// When a column is missing or of another type.
pub fn event_record(row: &PgRow) -> Result<EventRecord, sqlx::Error> {
    Ok(EventRecord {
        position: row.try_get(0)?,
        tx_id: row.try_get(1)?,
        event_id: row.try_get(2)?,
        aggregate_type: row.try_get(3)?,
        aggregate_id: row.try_get(4)?,
        sequence: row.try_get(5)?,
        event_type: row.try_get(6)?,
        event_version: row.try_get(7)?,
        recorded_at: row.try_get(8)?,
        payload: row.try_get(9)?,
        metadata: row.try_get(10)?,
        hash: row.try_get(11)?,
        previous_hash: None,
    })
}

/// Every checkpoint, oldest first.
///
/// # Errors
/// Database errors.
pub async fn load_checkpoints(
    conn: &mut PgConnection,
) -> Result<Vec<CheckpointRecord>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT checkpoint_id, event_count, tx_id::text::bigint AS tx, global_position, root, leaves, \
                signed_at, kid, signature \
         FROM log_checkpoints ORDER BY event_count",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(CheckpointRecord {
                checkpoint_id: r.try_get("checkpoint_id")?,
                event_count: r.try_get("event_count")?,
                tx_id: r.try_get("tx")?,
                global_position: r.try_get("global_position")?,
                root: r.try_get("root")?,
                leaves: r.try_get("leaves")?,
                signed_at: r.try_get("signed_at")?,
                kid: r.try_get("kid")?,
                signature: r.try_get("signature")?,
            })
        })
        .collect()
}

/// The triggers that keep `events` and `log_checkpoints` append-only, and whether each is
/// present and enabled: a superuser can disable them, and an auditor should hear about it even
/// when the data still verifies.
///
/// # Errors
/// Database errors.
pub async fn append_only_guards(conn: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    let expected = [
        ("events", "events_refuse_update_delete"),
        ("events", "events_refuse_truncate"),
        ("events", "events_before_insert"),
        ("log_checkpoints", "log_checkpoints_refuse_update_delete"),
        ("log_checkpoints", "log_checkpoints_refuse_truncate"),
    ];
    let rows = sqlx::query(
        "SELECT c.relname::text AS tbl, t.tgname::text AS name, t.tgenabled::text AS enabled \
         FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
         WHERE c.relname IN ('events', 'log_checkpoints') AND NOT t.tgisinternal",
    )
    .fetch_all(conn)
    .await?;
    let mut problems = Vec::new();
    for (table, name) in expected {
        let found = rows.iter().find(|r| {
            r.try_get::<String, _>("tbl").is_ok_and(|t| t == table)
                && r.try_get::<String, _>("name").is_ok_and(|n| n == name)
        });
        match found {
            None => problems.push(format!("trigger {name} on {table} is missing")),
            Some(r) if r.try_get::<String, _>("enabled").is_ok_and(|e| e == "D") => {
                problems.push(format!("trigger {name} on {table} is disabled"));
            }
            Some(_) => {}
        }
    }
    Ok(problems)
}

/// Events per message between the reader and the checker.
const BATCH: usize = 2_048;

/// `ledger-replay verify`: every check of the module documentation over the whole database log,
/// in one repeatable-read snapshot (checkpoints and events consistent with each other). Reading
/// and checking overlap: rows stream from the server on this task while another thread hashes.
///
/// Returns the failure (if any) as the inner error; the outer error is operational (database
/// unreachable).
///
/// # Errors
/// Database errors.
pub async fn verify_database(
    pool: &PgPool,
    keys: Option<&Jwks>,
    progress: &Progress,
) -> anyhow::Result<Result<Summary, Failure>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let checkpoints = load_checkpoints(&mut tx).await?;
    let mut verifier = match Verifier::new(keys, &checkpoints, Coverage::Complete) {
        Ok(v) => v,
        Err(failure) => return Ok(Err(failure)),
    };
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<EventRecord>>(16);
    let checker = std::thread::spawn(move || -> Result<Summary, Failure> {
        while let Some(batch) = receiver.blocking_recv() {
            for event in &batch {
                verifier.event(event)?;
            }
        }
        verifier.finish()
    });
    let sql = format!("SELECT {EVENT_TEXT_COLUMNS} FROM events {COMMIT_ORDER}");
    let mut read_error = None;
    {
        let mut rows = sqlx::query(&sql).fetch(&mut *tx);
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            match rows.try_next().await {
                Ok(Some(row)) => match event_record(&row) {
                    Ok(e) => batch.push(e),
                    Err(e) => {
                        read_error = Some(anyhow::Error::from(e));
                        break;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    read_error = Some(e.into());
                    break;
                }
            }
            if batch.len() == BATCH {
                let n = batch.len() as u64;
                if sender
                    .send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                    .await
                    .is_err()
                {
                    break; // the checker stopped at a failure
                }
                progress.inc(n);
            }
        }
        if read_error.is_none() && !batch.is_empty() {
            let n = batch.len() as u64;
            if sender.send(batch).await.is_ok() {
                progress.inc(n);
            }
        }
    }
    drop(sender);
    let outcome = checker
        .join()
        .map_err(|_| anyhow::anyhow!("the verifying thread panicked"))?;
    if let Some(e) = read_error
        && outcome.is_ok()
    {
        return Err(e);
    }
    let guards = append_only_guards(&mut tx).await?;
    tx.rollback().await?;
    Ok(outcome.and_then(|summary| match guards.first() {
        Some(problem) => Err(Failure::source(format!(
            "the events verify, but the append-only guard is off: {problem}"
        ))),
        None => Ok(summary),
    }))
}
