//! The events table (migration 0001) as every reader sees it: the store reading a stream to
//! decide a command, projectors and the rebuild walking the log in commit order, as-of folds
//! reading a stream up to an instant, the checkpoint signer, `verify` and `export`.
//!
//! Both the write side (`commands`) and the read side (`projections`) read the same rows into the
//! same [`RecordedEvent`]; neither may depend on the other, so the shape of a row lives here, below
//! both, once. (A rebuild reads the same columns into `projections::engine::ReplayEvent`, which
//! keeps payload and metadata as JSON text; ADR 0010 and ADR 0011 say why the two stay apart.)
//!
//! # Layout
//! - [`EVENT_COLUMNS`] and [`recorded_event`]: the row.
//! - [`COMMIT_ORDER`] and [`AFTER_BELOW_HORIZON`]: the order every log reader follows.
//! - [`load_stream`] and [`stream_until`]: one stream, whole or up to an instant;
//!   [`stream_times`]: when a stream began and reached a version.

use domain::event::RecordedEvent;
use domain::{AggregateType, Timestamp};
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Row};

/// Columns of `events` as a [`RecordedEvent`] reads them, in order.
pub const EVENT_COLUMNS: &str = "global_position, tx_id::text::bigint AS tx_id, event_id, \
     aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, \
     recorded_at, hash";

/// The log's reading order, for every reader (projectors, rebuild, checkpoints, verify,
/// export). Qualified on purpose: [`EVENT_COLUMNS`] outputs `tx_id::text::bigint AS tx_id`, and a
/// bare `tx_id` in `ORDER BY` would name that output column, which no index provides —
/// PostgreSQL would sort the rest of the log instead of walking `events_commit_order`.
pub const COMMIT_ORDER: &str = "ORDER BY events.tx_id, events.global_position";

/// Events after checkpoint `($1 tx_id as text, $2 position)` and committed before every
/// transaction still running: what a reader may take now without ever skipping one later
/// (ADR 0003).
pub const AFTER_BELOW_HORIZON: &str = "(events.tx_id, events.global_position) > ($1::text::xid8, $2) \
     AND events.tx_id < pg_snapshot_xmin(pg_current_snapshot())";

/// Reads a row selected with [`EVENT_COLUMNS`].
///
/// # Errors
/// When a column is missing or of another type.
pub fn recorded_event(row: &PgRow) -> Result<RecordedEvent, sqlx::Error> {
    Ok(RecordedEvent {
        global_position: row.try_get("global_position")?,
        tx_id: row.try_get("tx_id")?,
        event_id: row.try_get("event_id")?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
        recorded_at: row.try_get("recorded_at")?,
        hash: row.try_get("hash")?,
    })
}

/// The events of one stream after `after_sequence`, in order.
///
/// # Errors
/// Database errors.
pub async fn load_stream<'e>(
    executor: impl PgExecutor<'e>,
    aggregate_type: AggregateType,
    aggregate_id: &str,
    after_sequence: i64,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence"
    );
    let rows = sqlx::query(&sql)
        .bind(aggregate_type.as_str())
        .bind(aggregate_id)
        .bind(after_sequence)
        .fetch_all(executor)
        .await?;
    rows.iter().map(recorded_event).collect()
}

/// At most `limit` events of a stream next to sequence `from`, for a page of it: with
/// `descending`, those before `from` newest first (`from` = `i64::MAX` for the newest); otherwise
/// those from `from` on, oldest first, *including* the event at `from` itself (the predecessor of
/// the page's first event, whose hash the page's first `previous_hash` is). Reads the stream's
/// `(aggregate_type, aggregate_id, sequence)` key range, never the whole stream.
///
/// # Errors
/// Database errors.
pub async fn stream_window<'e>(
    executor: impl PgExecutor<'e>,
    aggregate_type: AggregateType,
    aggregate_id: &str,
    from: i64,
    descending: bool,
    limit: i64,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    let sql = if descending {
        format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence < $3 \
             ORDER BY sequence DESC LIMIT $4"
        )
    } else {
        format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence >= $3 \
             ORDER BY sequence LIMIT $4"
        )
    };
    let rows = sqlx::query(&sql)
        .bind(aggregate_type.as_str())
        .bind(aggregate_id)
        .bind(from)
        .bind(limit)
        .fetch_all(executor)
        .await?;
    rows.iter().map(recorded_event).collect()
}

/// The events of a stream after sequence `after` and recorded at or before `at`, in order: the
/// events behind a state as of `at`.
///
/// A stream's events are recorded in sequence order (ADR 0008), so the first one recorded after
/// `at` ends the read: pages of `first_page` events (a caller folding from a snapshot passes one
/// more than lie between two snapshots, so one query usually suffices), then twice as many each
/// time, until it.
/// (Filtering the stream by `recorded_at` instead read every later event of it: 10,000 rows for
/// a long license, hundreds of ms from a cold cache.)
///
/// # Errors
/// Database errors.
pub async fn stream_until(
    pool: &sqlx::PgPool,
    aggregate_type: AggregateType,
    aggregate_id: &str,
    after: i64,
    at: Timestamp,
    first_page: i64,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
         AND sequence > $3 ORDER BY sequence LIMIT $4"
    );
    let mut events = Vec::new();
    let (mut after, mut page) = (after, first_page.max(1));
    loop {
        let rows = sqlx::query(&sql)
            .bind(aggregate_type.as_str())
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

/// When a stream's first event, and its event at `sequence`, were recorded: the `created_at` and
/// `updated_at` of a state folded up to `sequence`. `None` each when there is no such event.
///
/// # Errors
/// Database errors.
pub async fn stream_times(
    pool: &sqlx::PgPool,
    aggregate_type: AggregateType,
    aggregate_id: &str,
    sequence: i64,
) -> Result<(Option<Timestamp>, Option<Timestamp>), sqlx::Error> {
    let row = sqlx::query(
        "SELECT min(recorded_at) AS created, max(recorded_at) AS updated FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence IN (1, $3)",
    )
    .bind(aggregate_type.as_str())
    .bind(aggregate_id)
    .bind(sequence)
    .fetch_one(pool)
    .await?;
    Ok((row.try_get("created")?, row.try_get("updated")?))
}
