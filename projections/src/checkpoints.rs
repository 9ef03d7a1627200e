//! Reading the log for signed checkpoints: what the next checkpoint covers. Signing and storing
//! is the server's (it holds the keys); verifying is the replay tool's.
//!
//! A checkpoint commits to every event up to a point in commit order: the accumulator
//! (`domain::integrity::LogAccumulator`) continues from the previous checkpoint's state over the
//! events after its boundary, below the commit horizon (so a late-committing transaction can never
//! slip in behind a checkpoint), and the checkpoint also keeps those events' leaves.

use domain::integrity::LogAccumulator;
use sqlx::PgConnection;
use sqlx::Row;

use crate::engine::{AFTER_BELOW_HORIZON, COMMIT_ORDER, Checkpoint, ProjectionError};

/// The next checkpoint to sign, before signing.
#[derive(Clone, Debug)]
pub struct Pending {
    pub accumulator: LogAccumulator,
    /// The last event covered.
    pub boundary: Checkpoint,
    /// `(position, event hash)` of the events added since the previous checkpoint.
    pub leaves: Vec<(i64, Vec<u8>)>,
}

impl Pending {
    /// The leaves as stored: 40 bytes each, position big-endian then hash.
    pub fn leaves_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.leaves.len() * 40);
        for (position, hash) in &self.leaves {
            out.extend_from_slice(&position.to_be_bytes());
            out.extend_from_slice(hash);
        }
        out
    }
}

/// The previous checkpoint's accumulator and boundary (empty when there is none).
///
/// # Errors
/// Database errors or an unreadable accumulator.
pub async fn last(
    conn: &mut PgConnection,
) -> Result<(LogAccumulator, Checkpoint), ProjectionError> {
    let row = sqlx::query(
        "SELECT accumulator, tx_id::text::bigint AS tx, global_position FROM log_checkpoints \
         ORDER BY event_count DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        None => Ok((LogAccumulator::default(), Checkpoint::default())),
        Some(row) => {
            let accumulator = serde_json::from_value(row.try_get("accumulator")?).map_err(|e| {
                ProjectionError::Inconsistent(format!("checkpoint accumulator: {e}"))
            })?;
            Ok((
                accumulator,
                Checkpoint {
                    tx_id: row.try_get("tx")?,
                    position: row.try_get("global_position")?,
                },
            ))
        }
    }
}

/// What the next checkpoint would cover: at most `max_events` events after the previous one;
/// `None` when no event was committed since.
///
/// # Errors
/// Database errors.
/// Run it inside the transaction that inserts the checkpoint, holding the signer's lock, so two
/// signers can never both continue from the same previous checkpoint.
pub async fn next(
    conn: &mut PgConnection,
    max_events: i64,
) -> Result<Option<Pending>, ProjectionError> {
    let (mut accumulator, boundary) = last(conn).await?;
    // Only what a leaf needs: the signer looks every second, and payloads are most of a row.
    let sql = format!(
        "SELECT events.tx_id::text::bigint AS tx, global_position, hash FROM events \
         WHERE {AFTER_BELOW_HORIZON} {COMMIT_ORDER} LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(boundary.tx_id.to_string())
        .bind(boundary.position)
        .bind(max_events)
        .fetch_all(&mut *conn)
        .await?;
    let Some(last) = rows.last() else {
        return Ok(None);
    };
    let boundary = Checkpoint {
        tx_id: last.try_get("tx")?,
        position: last.try_get("global_position")?,
    };
    let mut leaves = Vec::with_capacity(rows.len());
    for row in &rows {
        let position: i64 = row.try_get("global_position")?;
        let hash: Vec<u8> = row.try_get("hash")?;
        accumulator.push(position, &hash);
        leaves.push((position, hash));
    }
    Ok(Some(Pending {
        accumulator,
        boundary,
        leaves,
    }))
}
