//! Reading the log: the columns and the commit order every reader shares, the next events
//! after a checkpoint below the commit horizon (as [`RecordedEvent`]s for the projectors, as
//! [`ReplayEvent`]s for a rebuild), and where a projector stands.
//!
//! Kept apart from the runner because every log reader (rebuild, checkpoint signer, verify,
//! export) spells its queries with these, not only the projectors. The row decoder, the columns
//! and the commit order themselves live in `eventlog`, which the store reads with too.

use domain::event::RecordedEvent;
use domain::{AggregateType, Timestamp};
use serde_json::value::RawValue;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{Checkpoint, ProjectionError};

// The row, its columns and the commit order are the events table's, shared with the store:
// defined once in `eventlog`, named here as every projection has always named them.
pub use eventlog::{AFTER_BELOW_HORIZON, COMMIT_ORDER, EVENT_COLUMNS, recorded_event};

/// An event as a rebuild reads it: the fields of a [`RecordedEvent`], with the payload and the
/// metadata kept as the JSON text the server sent. A License event's payload is decoded straight
/// from that text ([`ReplayBatch::decoded`](super::ReplayBatch::decoded)) and audit reads
/// three metadata fields from it; a rebuild never needs them as [`serde_json::Value`]s, and
/// building then freeing two of those per event was a quarter of its own work (ADR 0010).
#[derive(Clone, Debug)]
pub struct ReplayEvent {
    pub global_position: i64,
    pub tx_id: i64,
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// The event's fields, as JSON text.
    pub payload: Box<RawValue>,
    /// The event's metadata object, as JSON text.
    pub metadata: Box<RawValue>,
    pub recorded_at: Timestamp,
    pub hash: Vec<u8>,
}

impl ReplayEvent {
    /// The same event as every projector reads it, for the projections that apply a rebuild's
    /// events as the live projector does.
    ///
    /// # Errors
    /// JSON text `serde_json` cannot hold as a value (nested too deep).
    pub fn to_recorded(&self) -> Result<RecordedEvent, ProjectionError> {
        let value = |text: &RawValue| {
            serde_json::from_str(text.get()).map_err(|err| {
                ProjectionError::Inconsistent(format!(
                    "event {} at position {}: {err}",
                    self.event_id, self.global_position
                ))
            })
        };
        Ok(RecordedEvent {
            global_position: self.global_position,
            tx_id: self.tx_id,
            event_id: self.event_id,
            aggregate_type: self.aggregate_type.clone(),
            aggregate_id: self.aggregate_id.clone(),
            sequence: self.sequence,
            event_type: self.event_type.clone(),
            event_version: self.event_version.clone(),
            payload: value(&self.payload)?,
            metadata: value(&self.metadata)?,
            recorded_at: self.recorded_at,
            hash: self.hash.clone(),
        })
    }
}

/// Reads a row selected with [`EVENT_COLUMNS`] as a rebuild holds it.
///
/// # Errors
/// When a column is missing or of another type, or a JSON column is not JSON.
pub fn replay_event(row: &PgRow) -> Result<ReplayEvent, sqlx::Error> {
    let Json(payload) = row.try_get("payload")?;
    let Json(metadata) = row.try_get("metadata")?;
    Ok(ReplayEvent {
        global_position: row.try_get("global_position")?,
        tx_id: row.try_get("tx_id")?,
        event_id: row.try_get("event_id")?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload,
        metadata,
        recorded_at: row.try_get("recorded_at")?,
        hash: row.try_get("hash")?,
    })
}

/// The next events of `types` (every type when empty) after `after`, in commit order, only from transactions older than
/// every transaction still running (see the [engine](super)'s documentation).
///
/// # Errors
/// Database errors.
pub async fn read_events(
    conn: &mut PgConnection,
    after: &Checkpoint,
    types: &[AggregateType],
    limit: i64,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    let rows = fetch_after(conn, after, types, limit).await?;
    rows.iter().map(recorded_event).collect()
}

/// [`read_events`] of every type as a rebuild reads them: the same rows, as [`ReplayEvent`]s.
///
/// # Errors
/// Database errors.
pub async fn read_replay_events(
    conn: &mut PgConnection,
    after: &Checkpoint,
    limit: i64,
) -> Result<Vec<ReplayEvent>, sqlx::Error> {
    let rows = read_replay_rows(conn, after, limit).await?;
    rows.iter().map(replay_event).collect()
}

/// The rows [`read_replay_events`] decodes, undecoded: a rebuild's reader asks for the next page
/// as soon as it has these ([`row_checkpoint`] of the last one) and leaves the decoding
/// ([`replay_event`]) to another task, so that the server reads the next page while the client
/// decodes this one.
///
/// # Errors
/// Database errors.
pub async fn read_replay_rows(
    conn: &mut PgConnection,
    after: &Checkpoint,
    limit: i64,
) -> Result<Vec<PgRow>, sqlx::Error> {
    fetch_after(conn, after, &[], limit).await
}

/// Where a row selected with [`EVENT_COLUMNS`] stands in commit order.
///
/// # Errors
/// When a column is missing or of another type.
pub fn row_checkpoint(row: &PgRow) -> Result<Checkpoint, sqlx::Error> {
    Ok(Checkpoint {
        tx_id: row.try_get("tx_id")?,
        position: row.try_get("global_position")?,
    })
}

/// The rows [`read_events`] reads.
async fn fetch_after(
    conn: &mut PgConnection,
    after: &Checkpoint,
    types: &[AggregateType],
    limit: i64,
) -> Result<Vec<PgRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE {AFTER_BELOW_HORIZON} \
           AND (cardinality($3::text[]) = 0 OR aggregate_type = ANY($3)) \
         {COMMIT_ORDER} LIMIT $4"
    );
    sqlx::query(&sql)
        .bind(after.tx_id.to_string())
        .bind(after.position)
        .bind(type_names(types))
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// What lies after a position in the log, as one statement sees it ([`look_ahead`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ahead {
    /// Whether a committed event of the types lies after the position, below the commit horizon
    /// or not. When it does but a reader finds nothing below the horizon, an open transaction
    /// elsewhere is holding it back for a moment, and retrying shortly beats waiting for the
    /// next poll.
    pub pending: bool,
    /// The last event below the commit horizon, of any type. When nothing is `pending`, no event
    /// of the types lies between the position and this one, nor ever will: everything up to it
    /// is committed or rolled back. A reader may move past it ([`Ahead::past`]; a runner keeps
    /// it as a `Clear` stretch) instead of looking through the same events of other types again
    /// on every wake-up.
    pub head: Option<Checkpoint>,
}

impl Ahead {
    /// Where a reader that looked from `from` may move to without reading: the head below the
    /// horizon, when nothing of its types is pending and the head lies beyond `from`. The one
    /// rule the runners, the validation model and the organization tree move by.
    pub fn past(&self, from: &Checkpoint) -> Option<Checkpoint> {
        self.head
            .clone()
            .filter(|head| !self.pending && head > from)
    }
}

/// Whether committed events of `types` (every type when empty) lie after `after`, and the last
/// event below the horizon, in one statement (one snapshot, so the two agree).
///
/// The queries are written for the generic plan PostgreSQL settles on for a prepared statement
/// run over and over. The `EXISTS` this replaces had a generic plan that read the whole table on
/// every wake-up of every projector: costed to its first match, a sequential scan looked cheaper
/// than the index. Each probe here is an `ORDER BY ... LIMIT 1` in the commit-order index's own
/// order, which a plan serves from the index; the types are a statement of their own rather than
/// `cardinality($n) = 0 OR ...`, so the filter is plain.
///
/// While a long transaction holds the horizon back, the typed probe reads the events committed
/// since the position until it finds one of the types, as every reader of the log does then.
///
/// # Errors
/// Database errors.
pub async fn look_ahead(
    conn: &mut PgConnection,
    after: &Checkpoint,
    types: &[AggregateType],
) -> Result<Ahead, sqlx::Error> {
    let query = if types.is_empty() {
        LOOK_AHEAD_ANY
    } else {
        LOOK_AHEAD_TYPED
    };
    let mut q = sqlx::query(query)
        .bind(after.tx_id.to_string())
        .bind(after.position);
    if !types.is_empty() {
        q = q.bind(type_names(types));
    }
    let row = q.fetch_one(conn).await?;
    let head: Option<Vec<i64>> = row.try_get("head")?;
    Ok(Ahead {
        pending: row.try_get("pending")?,
        head: head.and_then(|h| match h[..] {
            [tx_id, position] => Some(Checkpoint { tx_id, position }),
            _ => None,
        }),
    })
}

/// [`look_ahead`] for every type.
/// Spelled out rather than with [`COMMIT_ORDER`]: its probes read the index backwards too, and
/// every column is qualified, so no output alias can shadow `tx_id`.
pub const LOOK_AHEAD_ANY: &str = "SELECT \
     (SELECT 1 FROM events WHERE (events.tx_id, events.global_position) > ($1::text::xid8, $2) \
      ORDER BY events.tx_id, events.global_position LIMIT 1) IS NOT NULL AS pending, \
     (SELECT ARRAY[events.tx_id::text::bigint, events.global_position] FROM events \
      WHERE events.tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
      ORDER BY events.tx_id DESC, events.global_position DESC LIMIT 1) AS head";

/// [`look_ahead`] for the types in `$3`.
pub const LOOK_AHEAD_TYPED: &str = "SELECT \
     (SELECT 1 FROM events WHERE (events.tx_id, events.global_position) > ($1::text::xid8, $2) \
        AND events.aggregate_type = ANY($3::text[]) \
      ORDER BY events.tx_id, events.global_position LIMIT 1) IS NOT NULL AS pending, \
     (SELECT ARRAY[events.tx_id::text::bigint, events.global_position] FROM events \
      WHERE events.tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
      ORDER BY events.tx_id DESC, events.global_position DESC LIMIT 1) AS head";

/// The checkpoint of projector `name` (zero when it has none yet).
///
/// # Errors
/// Database errors.
pub async fn checkpoint(conn: &mut PgConnection, name: &str) -> Result<Checkpoint, sqlx::Error> {
    let row = sqlx::query(
        "SELECT last_tx_id::text::bigint AS tx, last_position FROM projector_checkpoints WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some(row) => Checkpoint {
            tx_id: row.try_get("tx")?,
            position: row.try_get("last_position")?,
        },
        None => Checkpoint::default(),
    })
}

/// Aggregate types as the `aggregate_type` column spells them, for a `= ANY($n)` filter (empty:
/// every type).
pub(crate) fn type_names(types: &[AggregateType]) -> Vec<&'static str> {
    types.iter().map(|t| t.as_str()).collect()
}
