//! Signed checkpoints of the log: every N events or T seconds the server signs, with its current
//! key, the Merkle root over every event so far in commit order (`domain::integrity`), and stores
//! it with the leaves it added (`log_checkpoints`, append-only). An auditor verifies them with the
//! public keys alone (`ledger-replay verify`, `verify-export`).

use std::time::Duration;

use base64ct::{Base64UrlUnpadded, Encoding};
use domain::integrity::CheckpointStatement;
use serde_json::{Value, json};
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Advisory-lock key of the checkpoint signer (one signer at a time across nodes).
const SIGNER_LOCK: i64 = 5_172;

/// Signs the next checkpoint if at least `min_events` events are pending (or any, when `force`);
/// returns its event count.
///
/// # Errors
/// Database errors.
pub async fn sign_next(
    state: &AppState,
    max_events: i64,
    min_events: usize,
    force: bool,
) -> anyhow::Result<Option<i64>> {
    let pool = state.ledger.store().pool();
    let mut tx = pool.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(SIGNER_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(None); // another node is signing
    }
    let Some(pending) = projections::checkpoints::next(&mut tx, max_events).await? else {
        return Ok(None);
    };
    if pending.leaves.len() < min_events && !force {
        return Ok(None);
    }
    let key = state.signing.current();
    let statement = CheckpointStatement {
        event_count: pending.accumulator.count,
        tx_id: pending.boundary.tx_id,
        global_position: pending.boundary.position,
        root: pending.accumulator.root(),
        signed_at: state.ledger.now(),
    };
    let signature = key.sign_bytes(&statement.signing_bytes());
    let count = i64::try_from(statement.event_count)?;
    sqlx::query(
        "INSERT INTO log_checkpoints (event_count, tx_id, global_position, root, leaves, accumulator, signed_at, kid, signature) \
         VALUES ($1, $2::text::xid8, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(count)
    .bind(statement.tx_id.to_string())
    .bind(statement.global_position)
    .bind(&statement.root[..])
    .bind(pending.leaves_bytes())
    .bind(serde_json::to_value(&pending.accumulator)?)
    .bind(statement.signed_at)
    .bind(&key.kid)
    .bind(&signature[..])
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(event_count = count, position = statement.global_position, kid = %key.kid, "signed a checkpoint of the log");
    Ok(Some(count))
}

/// Signs a checkpoint whenever `every_events` events are pending, or `every` has passed with any
/// pending, until cancelled.
pub async fn run(
    state: AppState,
    every_events: usize,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut last_signed = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1).min(every)) => {}
        }
        let due = last_signed.elapsed() >= every;
        let max = i64::try_from(every_events.max(1)).unwrap_or(i64::MAX);
        match sign_next(&state, max, every_events, due).await {
            Ok(Some(_)) => last_signed = tokio::time::Instant::now(),
            Ok(None) if due => last_signed = tokio::time::Instant::now(),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "could not sign a checkpoint; will retry"),
        }
    }
}

/// The latest checkpoint, as `GET /v1/checkpoints/latest` shows it.
///
/// # Errors
/// Database errors.
pub async fn latest(state: &AppState) -> Result<Option<Value>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT checkpoint_id, event_count, tx_id::text::bigint AS tx, global_position, root, signed_at, kid, signature \
         FROM log_checkpoints ORDER BY event_count DESC LIMIT 1",
    )
    .fetch_optional(state.ledger.store().pool())
    .await?;
    row.map(|r| {
        Ok(json!({
            "checkpoint_id": r.try_get::<i64, _>("checkpoint_id")?,
            "position": r.try_get::<i64, _>("global_position")?,
            "tx_id": r.try_get::<i64, _>("tx")?,
            "event_count": r.try_get::<i64, _>("event_count")?,
            "root": hex::encode(r.try_get::<Vec<u8>, _>("root")?),
            "signed_at": r.try_get::<domain::Timestamp, _>("signed_at")?,
            "kid": r.try_get::<String, _>("kid")?,
            "signature": Base64UrlUnpadded::encode_string(&r.try_get::<Vec<u8>, _>("signature")?),
            "algorithm": "ES256 over ledger-checkpoint/1 (see domain::integrity::CheckpointStatement)",
        }))
    })
    .transpose()
}
