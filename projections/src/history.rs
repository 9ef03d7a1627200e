//! Time travel: a license "as of" an instant — the state its events recorded at or before that
//! instant fold to — answered the same way for the API (`GET /v1/licenses/{id}?as_of=`) and the
//! replay tool (`ledger-replay state`).
//!
//! The fold starts from the latest snapshot (`rm_license_snapshots`, written every
//! [`crate::licenses::SNAPSHOT_EVERY`] events by the licenses projector) recorded at or before the
//! instant and applies only the events after it, so a license with thousands of events reads in
//! milliseconds. Snapshots are a shortcut, never a source: the events after a snapshot always come
//! from the log, and a snapshot this build cannot read is ignored in favour of the full fold.

use domain::Timestamp;
use domain::event::RecordedEvent;
use domain::ids::LicenseId;
use domain::license::{License, LicenseState};
use sqlx::Row;
use sqlx::postgres::PgPool;
use sqlx::types::Json;
use uuid::Uuid;

use crate::engine::{EVENT_COLUMNS, ProjectionError, decode_license, recorded_event};
use crate::licenses::SNAPSHOT_EVERY;

/// Events read by the first query after a snapshot: one more than lie between two snapshots, so
/// that one query reaches the first event past the instant whenever the snapshots are current.
const TAIL_PAGE: i64 = SNAPSHOT_EVERY + 1;

/// A license as of an instant.
#[derive(Clone, Debug)]
pub struct LicenseAsOf {
    pub state: LicenseState,
    /// The stream's version at that instant.
    pub version: i64,
    pub created_at: Timestamp,
    /// When the last event folded was recorded.
    pub updated_at: Timestamp,
    /// Events folded on top of the snapshot (0 when the snapshot was at the version).
    pub events_folded: usize,
}

/// The license `id` as of `at`; `None` when it did not exist yet.
///
/// # Errors
/// Database errors and events that cannot be decoded.
pub async fn license_as_of(
    pool: &PgPool,
    id: LicenseId,
    at: Timestamp,
) -> Result<Option<LicenseAsOf>, ProjectionError> {
    let snapshot = sqlx::query(
        "SELECT sequence, state FROM rm_license_snapshots \
         WHERE license_id = $1 AND recorded_at <= $2 ORDER BY sequence DESC LIMIT 1",
    )
    .bind(Uuid::from(id))
    .bind(at)
    .fetch_optional(pool)
    .await?;
    let (mut license, mut version) = match snapshot {
        Some(row) => match row.try_get::<Json<LicenseState>, _>("state") {
            Ok(Json(state)) => (
                License::Issued(Box::new(state)),
                row.try_get::<i64, _>("sequence")?,
            ),
            Err(e) => {
                tracing::warn!(license = %id, error = %e, "unreadable snapshot; folding the whole stream");
                (License::NotIssued, 0)
            }
        },
        None => (License::NotIssued, 0),
    };
    let tail = stream_between(pool, "License", &id.to_string(), version, at).await?;
    let mut updated_at = None;
    for event in &tail {
        // The one reader of License events: a bad one is named as the projectors name it.
        license.fold(decode_license(event)?.1);
        version = event.sequence;
        updated_at = Some(event.recorded_at);
    }
    let Some(state) = license.state().cloned() else {
        return Ok(None);
    };
    let times = sqlx::query(
        "SELECT min(recorded_at) AS created, max(recorded_at) AS updated FROM events \
         WHERE aggregate_type = 'License' AND aggregate_id = $1 AND sequence IN (1, $2)",
    )
    .bind(id.to_string())
    .bind(version)
    .fetch_one(pool)
    .await?;
    let created_at: Timestamp = times
        .try_get::<Option<Timestamp>, _>("created")?
        .unwrap_or(at);
    Ok(Some(LicenseAsOf {
        state,
        version,
        created_at,
        updated_at: updated_at
            .or(times.try_get("updated")?)
            .unwrap_or(created_at),
        events_folded: tail.len(),
    }))
}

/// Every event of a stream recorded at or before `at`, in order: the events behind a state.
///
/// # Errors
/// Database errors.
pub async fn stream_as_of(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
    at: Timestamp,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    stream_between(pool, aggregate_type, aggregate_id, 0, at).await
}

/// The events of a stream after sequence `after` and recorded at or before `at`, in order.
///
/// A stream's events are recorded in sequence order (ADR 0008), so the first one recorded after
/// `at` ends the read: pages of [`TAIL_PAGE`] events, then twice as many each time, until it.
/// (Filtering the stream by `recorded_at` instead read every later event of it: 10,000 rows for
/// a long license, hundreds of ms from a cold cache.)
///
/// # Errors
/// Database errors.
async fn stream_between(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
    after: i64,
    at: Timestamp,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
         AND sequence > $3 ORDER BY sequence LIMIT $4"
    );
    let mut events = Vec::new();
    let (mut after, mut page) = (after, TAIL_PAGE);
    loop {
        let rows = sqlx::query(&sql)
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(after)
            .bind(page)
            .fetch_all(pool)
            .await?;
        for row in &rows {
            let event = recorded_event(row)?;
            if event.recorded_at > at {
                return Ok(events);
            }
            after = event.sequence;
            events.push(event);
        }
        if i64::try_from(rows.len()).unwrap_or(i64::MAX) < page {
            return Ok(events);
        }
        page = page.saturating_mul(2);
    }
}
