//! Signed checkpoints of the log: every N events or T seconds the server signs, with its current
//! key, the Merkle root over every event so far in commit order (`domain::integrity`), and stores
//! it with the leaves it added (`log_checkpoints`, append-only). An auditor verifies them with the
//! public keys alone (`ledger-replay verify`, `verify-export`).
//!
//! [`run`] is one of the server's background jobs, started with the others by [`crate::jobs`]
//! (and so by `ledger serve`): `--checkpoint-every-events` / `--checkpoint-every-secs`.

use std::time::Duration;

use base64ct::{Base64UrlUnpadded, Encoding};
use domain::Timestamp;
use domain::integrity::CheckpointStatement;
use serde::Serialize;
use sqlx::{PgPool, Row};
use tokio_util::sync::CancellationToken;

use crate::App;

/// Advisory-lock key of the checkpoint signer (one signer at a time across nodes).
const SIGNER_LOCK: i64 = 5_172;

/// Signs the next checkpoint if at least `min_events` events are pending (or any, when `force`);
/// returns its event count.
///
/// # Errors
/// Database errors.
pub async fn sign_next(
    app: &App,
    max_events: i64,
    min_events: usize,
    force: bool,
) -> anyhow::Result<Option<i64>> {
    // A background job's work: the jobs pool, never a request's connection.
    let pool = app.jobs_pool();
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
    let key = app.signing().current();
    let statement = CheckpointStatement {
        event_count: pending.accumulator.count,
        tx_id: pending.boundary.tx_id,
        global_position: pending.boundary.position,
        root: pending.accumulator.root(),
        signed_at: app.now(),
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
pub async fn run(app: App, every_events: usize, every: Duration, shutdown: CancellationToken) {
    let mut last_signed = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1).min(every)) => {}
        }
        let due = last_signed.elapsed() >= every;
        let max = i64::try_from(every_events.max(1)).unwrap_or(i64::MAX);
        match sign_next(&app, max, every_events, due).await {
            Ok(Some(_)) => last_signed = tokio::time::Instant::now(),
            Ok(None) if due => last_signed = tokio::time::Instant::now(),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "could not sign a checkpoint; will retry"),
        }
    }
}

/// A signed checkpoint, as `GET /v1/checkpoints/latest` shows it.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckpointView {
    pub checkpoint_id: i64,
    /// The global position of the last event covered.
    pub position: i64,
    /// The writing transaction of the last event covered.
    pub tx_id: i64,
    /// Events covered, from the first of the log.
    pub event_count: i64,
    /// The Merkle root over every event covered, hex.
    pub root: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub signed_at: Timestamp,
    /// The signing key (in the JWKS).
    pub kid: String,
    /// ES256 `r || s`, base64url.
    pub signature: String,
    /// What was signed, for auditors.
    pub algorithm: &'static str,
}

/// The latest checkpoint; `None` before the first is signed.
///
/// # Errors
/// Database errors.
pub async fn latest(pool: &PgPool) -> Result<Option<CheckpointView>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT checkpoint_id, event_count, tx_id::text::bigint AS tx, global_position, root, signed_at, kid, signature \
         FROM log_checkpoints ORDER BY event_count DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(CheckpointView {
            checkpoint_id: r.try_get("checkpoint_id")?,
            position: r.try_get("global_position")?,
            tx_id: r.try_get("tx")?,
            event_count: r.try_get("event_count")?,
            root: hex::encode(r.try_get::<Vec<u8>, _>("root")?),
            signed_at: r.try_get("signed_at")?,
            kid: r.try_get("kid")?,
            signature: Base64UrlUnpadded::encode_string(&r.try_get::<Vec<u8>, _>("signature")?),
            algorithm: "ES256 over ledger-checkpoint/1 (see domain::integrity::CheckpointStatement)",
        })
    })
    .transpose()
}
