//! The catch-up projector engine.
//!
//! A projector folds the log into its read-model tables. One batch is one transaction:
//!
//! 1. lock the projector's checkpoint row (`FOR UPDATE`);
//! 2. read the next events after the checkpoint **in commit order**, only from transactions older
//!    than every transaction still running (`tx_id < pg_snapshot_xmin(pg_current_snapshot())`);
//! 3. apply them to the read model;
//! 4. advance the checkpoint; commit.
//!
//! Steps 3 and 4 commit together, so every event is applied exactly once whatever crashes when.
//! Step 2 is what makes that "every": ordering by `global_position` alone skips an event whose
//! transaction took its position early and committed late (docs/adr/0003).
//!
//! [`ProjectorRunner`] keeps one projector current: it becomes the single active instance across
//! processes by holding a session advisory lock, wakes on `LISTEN ledger_events` or an in-process
//! signal, and polls as a fallback. The checkpoint row lock keeps batches exactly-once even if two
//! instances ever ran at once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use domain::Timestamp;
use domain::event::{EventCodecError, RecordedEvent, VersionedEvent, decode_payload_raw};
use domain::ids::LicenseId;
use domain::license::LicenseEvent;
use serde_json::value::RawValue;
use sqlx::postgres::{PgListener, PgPool, PgRow};
use sqlx::types::Json;
use sqlx::{Connection, PgConnection, Row};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::notify::CHANNEL;

/// Columns of `events` as a [`RecordedEvent`] reads them (kept identical to
/// `commands::store::EVENT_COLUMNS`; `projections` does not depend on `commands`).
pub const EVENT_COLUMNS: &str = "global_position, tx_id::text::bigint AS tx_id, event_id, \
     aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, \
     recorded_at, hash";

/// The log's reading order, for every reader (projectors, rebuild, checkpoints, verify,
/// export). Qualified on purpose: [`EVENT_COLUMNS`] outputs `tx_id::text::bigint AS tx_id`, and a
/// bare `tx_id` in `ORDER BY` would name that output column, which no index provides —
/// PostgreSQL would sort the rest of the log instead of walking `events_commit_order`.
pub const COMMIT_ORDER: &str = "ORDER BY events.tx_id, events.global_position";

/// Events after checkpoint `($1 tx_id as text, $2 position)` and committed before every
/// transaction still running: what a reader may take now without ever skipping one later.
pub const AFTER_BELOW_HORIZON: &str = "(events.tx_id, events.global_position) > ($1::text::xid8, $2) \
     AND events.tx_id < pg_snapshot_xmin(pg_current_snapshot())";

/// Reads a row selected with [`EVENT_COLUMNS`].
///
/// # Errors
/// When a column is missing or of another type.
pub fn recorded_event(row: &sqlx::postgres::PgRow) -> Result<RecordedEvent, sqlx::Error> {
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

/// An event as a rebuild reads it: the fields of a [`RecordedEvent`], with the payload and the
/// metadata kept as the JSON text the server sent. A License event's payload is decoded straight
/// from that text ([`ReplayBatch::decoded`]) and audit reads three metadata fields from it; a
/// rebuild never needs them as [`serde_json::Value`]s, and building then freeing two of those
/// per event was a quarter of its own work (ADR 0010).
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

/// Why a projection could not apply an event. The batch rolls back and is retried; the projector
/// does not skip past an event it cannot apply.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Decode(#[from] EventCodecError),
    #[error("{0}")]
    Inconsistent(String),
}

/// A read model kept current from the log.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// Stable name: the key of its checkpoint row and advisory lock.
    fn name(&self) -> &'static str;
    /// The tables it owns and alone writes (emptied on rebuild).
    fn tables(&self) -> &'static [&'static str];
    /// The aggregate types whose events it reads; empty for every type.
    fn aggregate_types(&self) -> &'static [&'static str];
    /// Applies one event inside the batch's transaction.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError>;

    /// Applies consecutive events (commit order) inside one transaction. The default applies them
    /// one by one; projections with many rows override it to read and write each table once per
    /// batch (a rebuild of a million events would otherwise cost a million round trips).
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        for event in events {
            self.apply(conn, event).await?;
        }
        Ok(())
    }
}

/// A projection whose `apply` only writes its own tables: no e-mail, no webhook, nothing outside
/// the transaction. Only these can be rebuilt by replaying the log; a projection with side effects
/// does not implement it, so passing one to [`rebuild`] does not compile.
pub trait ReplaySafe: Projection {
    /// Whether it only ever adds rows to its tables, in a rebuild and live alike: it never reads,
    /// updates or upserts a row it wrote. A rebuild then builds the copies' primary keys after
    /// the walk, from the rows, instead of keeping them current row by row (a duplicate still
    /// fails the rebuild, when the key is built). `false` by default: an upsert needs its key.
    fn only_inserts(&self) -> bool {
        false
    }

    /// How a rebuild into empty copies of [`Projection::tables`] applies the whole log, when the
    /// projection has a faster way than [`Projection::apply_batch`] per batch; `None` (the
    /// default) means batch by batch.
    ///
    /// The rows it leaves must equal, byte for byte, what `apply_batch` leaves after the same
    /// events: the rebuild swaps them in for the live ones (`ledger-replay rebuild`, tested by the
    /// replay-equivalence test).
    ///
    /// `hold`: the rows it may keep in memory before it writes them out ([`BULK_ROWS`] in a
    /// rebuild; tests pass small numbers to exercise the writes in between).
    fn bulk(&self, hold: usize) -> Option<Box<dyn BulkApply>> {
        let _ = hold;
        None
    }
}

/// A rebuild's applier: keeps what it folds in memory across batches and writes each row once
/// (or whenever it holds as many rows as it was allowed), instead of reading and rewriting every
/// row a batch touches. Only for tables that start empty and that nothing else writes meanwhile —
/// the shadow copies of a rebuild — so it needs no transaction of its own: a crash discards the
/// copies. After an error it must be dropped, not fed again: what it held may be half written.
#[async_trait]
pub trait BulkApply: Send {
    /// Folds the next batch (commit order); it reads the events of its projection's aggregate
    /// types.
    async fn feed(
        &mut self,
        conn: &mut PgConnection,
        batch: &ReplayBatch,
    ) -> Result<(), ProjectionError>;
    /// Writes everything still held.
    async fn finish(&mut self, conn: &mut PgConnection) -> Result<(), ProjectionError>;
    /// Whether it folds License events, which the batches it is fed must then carry decoded
    /// ([`ReplayBatch::decoded`]).
    fn folds_licenses(&self) -> bool;
}

/// A batch of the log as a rebuild hands it to every applier: the events, and each License event
/// decoded once for all the appliers that fold it (licenses and validation both do: decoding it
/// twice was an eighth of the rebuild's own work).
pub struct ReplayBatch {
    events: Vec<ReplayEvent>,
    /// The License events of `events`, in order: index into `events`, the license and the event
    /// decoded; `None` when the rebuild has no applier that folds them.
    licenses: Option<Vec<(usize, LicenseId, LicenseEvent)>>,
}

impl ReplayBatch {
    /// Decodes the License events of `events` (consecutive events in commit order), for the
    /// [`BulkApply`] appliers.
    ///
    /// # Errors
    /// A License event that does not decode (unknown type or version, bad payload): the License
    /// folds could not apply it. The error names the event.
    pub fn decoded(events: Vec<ReplayEvent>) -> Result<Self, ProjectionError> {
        let licenses = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.aggregate_type == LicenseEvent::AGGREGATE_TYPE)
            .map(|(i, e)| {
                let (license, event) = read_license(e.into(), || {
                    decode_payload_raw(&e.event_type, &e.event_version, &e.payload)
                })?;
                Ok((i, license, event))
            })
            .collect::<Result<_, ProjectionError>>()?;
        Ok(Self {
            events,
            licenses: Some(licenses),
        })
    }

    /// The events alone, for a rebuild none of whose projections folds License events.
    pub fn undecoded(events: Vec<ReplayEvent>) -> Self {
        Self {
            events,
            licenses: None,
        }
    }

    /// Every event of the batch.
    pub fn events(&self) -> &[ReplayEvent] {
        &self.events
    }

    /// The License events, each with its record.
    ///
    /// # Errors
    /// When the batch was built [`undecoded`](Self::undecoded): a rebuild that feeds a License
    /// fold must decode.
    pub(crate) fn licenses(&self) -> Result<Vec<LicenseRecord<'_>>, ProjectionError> {
        let Some(licenses) = &self.licenses else {
            return Err(ProjectionError::Inconsistent(
                "a rebuild fed a License fold a batch without its License events decoded".into(),
            ));
        };
        Ok(licenses
            .iter()
            .map(|(i, license, event)| LicenseRecord {
                record: (&self.events[*i]).into(),
                license: *license,
                event,
            })
            .collect())
    }
}

/// A License event read from its record: the license (its stream id) and the event decoded,
/// for every fold of License events (projections, the validation model, as-of reads). The error
/// names the event (a projector stops at it, and the operator must find it).
pub fn decode_license(e: &RecordedEvent) -> Result<(LicenseId, LicenseEvent), ProjectionError> {
    read_license(e.into(), || e.decode::<LicenseEvent>())
}

/// The license of `record` and its event as `decode` reads it, or an error naming the event.
fn read_license(
    record: RecordFields<'_>,
    decode: impl FnOnce() -> Result<LicenseEvent, EventCodecError>,
) -> Result<(LicenseId, LicenseEvent), ProjectionError> {
    let named = |err: &dyn std::fmt::Display| {
        ProjectionError::Inconsistent(format!(
            "event {} at position {} (License {:?}, sequence {}): {err}",
            record.event_id, record.global_position, record.aggregate_id, record.sequence
        ))
    };
    let license = record
        .aggregate_id
        .parse()
        .map_err(|_| named(&"the stream id is not a license id"))?;
    let event = decode().map_err(|err| named(&err))?;
    Ok((license, event))
}

/// An event's record without its payload and metadata, from a [`RecordedEvent`] (live) or a
/// [`ReplayEvent`] (rebuild): what the License folds read besides the event itself, and audit
/// besides three metadata fields.
#[derive(Clone, Copy)]
pub(crate) struct RecordFields<'a> {
    pub(crate) event_id: Uuid,
    pub(crate) global_position: i64,
    pub(crate) aggregate_type: &'a str,
    pub(crate) aggregate_id: &'a str,
    pub(crate) sequence: i64,
    pub(crate) event_type: &'a str,
    pub(crate) recorded_at: Timestamp,
}

impl<'a> From<&'a RecordedEvent> for RecordFields<'a> {
    fn from(e: &'a RecordedEvent) -> Self {
        Self {
            event_id: e.event_id,
            global_position: e.global_position,
            aggregate_type: &e.aggregate_type,
            aggregate_id: &e.aggregate_id,
            sequence: e.sequence,
            event_type: &e.event_type,
            recorded_at: e.recorded_at,
        }
    }
}

impl<'a> From<&'a ReplayEvent> for RecordFields<'a> {
    fn from(e: &'a ReplayEvent) -> Self {
        Self {
            event_id: e.event_id,
            global_position: e.global_position,
            aggregate_type: &e.aggregate_type,
            aggregate_id: &e.aggregate_id,
            sequence: e.sequence,
            event_type: &e.event_type,
            recorded_at: e.recorded_at,
        }
    }
}

/// A License event decoded, with its license and its record: what a [`RowFold`] folds.
#[derive(Clone, Copy)]
pub(crate) struct LicenseRecord<'a> {
    pub(crate) record: RecordFields<'a>,
    pub(crate) license: LicenseId,
    pub(crate) event: &'a LicenseEvent,
}

/// What a projection of License events with many rows keeps in memory while it applies events:
/// the rows the events touch, loaded from its tables, folded, written back. The live projector
/// uses one per batch ([`apply_folded`]); a rebuild keeps one across the whole walk
/// ([`HeldFold`]).
#[async_trait]
pub(crate) trait RowFold: Default + Send + 'static {
    /// Loads the stored rows of the events' streams that it does not hold yet.
    async fn load(
        &mut self,
        conn: &mut PgConnection,
        events: &[LicenseRecord<'_>],
    ) -> Result<(), ProjectionError>;
    /// Folds the events into the rows held (an absent row starts empty).
    fn fold(&mut self, events: &[LicenseRecord<'_>]) -> Result<(), ProjectionError>;
    /// Rows held.
    fn held(&self) -> usize;
    /// Writes every row held and forgets them. `fresh`: none of them has a stored row yet (a
    /// rebuild's first write), so they may be copied in rather than upserted.
    async fn write(&mut self, conn: &mut PgConnection, fresh: bool) -> Result<(), ProjectionError>;
    /// Writes what may be written at any time (rows that are only ever inserted) when it holds
    /// `hold` or more of them. None by default.
    async fn write_inserts(
        &mut self,
        conn: &mut PgConnection,
        hold: usize,
    ) -> Result<(), ProjectionError> {
        let _ = (conn, hold);
        Ok(())
    }
}

/// One batch of the live projector (License events) through a [`RowFold`]: load, fold, upsert.
pub(crate) async fn apply_folded<F: RowFold>(
    conn: &mut PgConnection,
    events: &[RecordedEvent],
) -> Result<(), ProjectionError> {
    let decoded = events
        .iter()
        .map(decode_license)
        .collect::<Result<Vec<_>, _>>()?;
    let events: Vec<LicenseRecord<'_>> = events
        .iter()
        .zip(&decoded)
        .map(|(record, (license, event))| LicenseRecord {
            record: record.into(),
            license: *license,
            event,
        })
        .collect();
    let mut fold = F::default();
    fold.load(conn, &events).await?;
    fold.fold(&events)?;
    fold.write(conn, false).await
}

/// A rebuild's [`BulkApply`] over one [`RowFold`] kept across batches: written out whenever it
/// holds `hold` rows, and at the end, so that each row is written once per rebuild instead of
/// once per batch that touches it.
pub(crate) struct HeldFold<F> {
    fold: F,
    hold: usize,
    /// Whether anything was written yet: until then the copies are empty and there is nothing
    /// to load.
    wrote: bool,
}

impl<F: RowFold> HeldFold<F> {
    pub(crate) fn boxed(hold: usize) -> Box<dyn BulkApply> {
        Box::new(Self {
            fold: F::default(),
            hold: hold.max(1),
            wrote: false,
        })
    }
}

#[async_trait]
impl<F: RowFold> BulkApply for HeldFold<F> {
    async fn feed(
        &mut self,
        conn: &mut PgConnection,
        batch: &ReplayBatch,
    ) -> Result<(), ProjectionError> {
        let events = batch.licenses()?;
        if events.is_empty() {
            return Ok(());
        }
        if self.wrote {
            self.fold.load(conn, &events).await?;
        }
        self.fold.fold(&events)?;
        if self.fold.held() >= self.hold {
            self.fold.write(conn, !self.wrote).await?;
            self.wrote = true;
        } else {
            self.fold.write_inserts(conn, self.hold).await?;
        }
        Ok(())
    }

    async fn finish(&mut self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        self.fold.write(conn, !self.wrote).await
    }

    fn folds_licenses(&self) -> bool {
        true
    }
}

/// Rows a [`BulkApply`] holds in memory before it writes them out and starts over, per kind of
/// row (licenses, snapshots, validation entries): what bounds a rebuild's memory whatever the
/// size of the log. A license's state is one to a few KB (more with many activations), so the
/// licenses projection may hold a few hundred MB to a GB.
pub const BULK_ROWS: usize = 250_000;

/// Frees `value` on one of the runtime's blocking threads (at once when there is no runtime). A
/// rebuild's folds end holding every license's state or entry: freeing 100,000 of them took the
/// worker that writes last a few hundred milliseconds, at the very end of a rebuild, while the
/// other cores had nothing left to do.
pub(crate) fn free_elsewhere<T: Send + 'static>(value: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(move || drop(value));
        }
        Err(_) => drop(value),
    }
}

/// Rows per statement when a projection writes many at once: keeps each statement's parameters
/// to a few MB.
pub const WRITE_CHUNK: usize = 10_000;

/// Where a projector stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub tx_id: i64,
    pub position: i64,
}

/// How far behind the log a projector is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ProjectorLag {
    pub name: String,
    pub last_position: i64,
    pub events_applied: i64,
    /// Events of its types not applied yet (counted up to 100,000).
    pub pending_events: i64,
    /// Age of the oldest pending event, in milliseconds (0 when none).
    pub oldest_pending_ms: i64,
}

/// Creates the checkpoint row when missing.
///
/// # Errors
/// Database errors.
pub async fn ensure_checkpoint(pool: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO projector_checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .execute(pool)
    .await?;
    Ok(())
}

/// Applies the next batch of at most `limit` events; returns how many were applied.
///
/// # Errors
/// Database errors and events the projection cannot apply (nothing of the batch is kept).
pub async fn run_batch<P: Projection + ?Sized>(
    pool: &PgPool,
    projection: &P,
    limit: i64,
) -> Result<usize, ProjectionError> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "SELECT last_tx_id::text::bigint AS tx, last_position FROM projector_checkpoints \
         WHERE name = $1 FOR UPDATE",
    )
    .bind(projection.name())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Err(ProjectionError::Inconsistent(format!(
            "no checkpoint row for projector {}",
            projection.name()
        )));
    };
    let checkpoint = Checkpoint {
        tx_id: row.try_get("tx")?,
        position: row.try_get("last_position")?,
    };
    let events = read_events(&mut tx, &checkpoint, projection.aggregate_types(), limit).await?;
    if events.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    projection.apply_batch(&mut tx, &events).await?;
    let last = events.last().map_or(checkpoint, |e| Checkpoint {
        tx_id: e.tx_id,
        position: e.global_position,
    });
    sqlx::query(
        "UPDATE projector_checkpoints SET last_tx_id = $2::text::xid8, last_position = $3, \
         events_applied = events_applied + $4, updated_at = now() WHERE name = $1",
    )
    .bind(projection.name())
    .bind(last.tx_id.to_string())
    .bind(last.position)
    .bind(events.len() as i64)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(events.len())
}

/// The next events of `types` (every type when empty) after `after`, in commit order, only from transactions older than
/// every transaction still running (see the module documentation).
///
/// # Errors
/// Database errors.
pub async fn read_events(
    conn: &mut PgConnection,
    after: &Checkpoint,
    types: &[&str],
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
    types: &[&str],
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
        .bind(types)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// Whether committed events of `types` lie after `after`, horizon or not: when a reader finds
/// nothing below the horizon but this holds, an open transaction elsewhere is holding it back for
/// a moment, and retrying shortly beats waiting for the next poll.
///
/// # Errors
/// Database errors.
pub async fn has_pending(
    conn: &mut PgConnection,
    after: &Checkpoint,
    types: &[&str],
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM events WHERE (tx_id, global_position) > ($1::text::xid8, $2) AND (cardinality($3::text[]) = 0 OR aggregate_type = ANY($3)))",
    )
    .bind(after.tx_id.to_string())
    .bind(after.position)
    .bind(types)
    .fetch_one(conn)
    .await
}

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

/// Whether any committed event of the projection's types lies after its checkpoint (horizon or
/// not). One indexed query: the idle check that keeps a waiting projector cheap.
///
/// # Errors
/// Database errors.
pub async fn pending<P: Projection + ?Sized>(
    pool: &PgPool,
    projection: &P,
) -> Result<bool, sqlx::Error> {
    let types: Vec<&str> = projection.aggregate_types().to_vec();
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM events e, projector_checkpoints c \
         WHERE c.name = $1 AND (e.tx_id, e.global_position) > (c.last_tx_id, c.last_position) \
           AND (cardinality($2::text[]) = 0 OR e.aggregate_type = ANY($2)))",
    )
    .bind(projection.name())
    .bind(&types)
    .fetch_one(pool)
    .await
}

/// Applies batches until the projector has reached the commit horizon; returns the total.
///
/// # Errors
/// See [`run_batch`].
pub async fn catch_up<P: Projection + ?Sized>(
    pool: &PgPool,
    projection: &P,
    batch_size: i64,
) -> Result<usize, ProjectionError> {
    let mut total = 0;
    loop {
        let n = run_batch(pool, projection, batch_size).await?;
        total += n;
        if n == 0 {
            return Ok(total);
        }
    }
}

/// Catches up until every committed event of the projection's types is applied — not only those
/// below the commit horizon, which a writing transaction anywhere in the cluster (even in another
/// database) holds back for as long as it stays open. Returns the number applied.
///
/// # Errors
/// See [`run_batch`]; [`ProjectionError::Inconsistent`] when the head is not reached in `timeout`.
pub async fn catch_up_to_head<P: Projection + ?Sized>(
    pool: &PgPool,
    projection: &P,
    batch_size: i64,
    timeout: Duration,
) -> Result<usize, ProjectionError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut total = 0;
    loop {
        total += catch_up(pool, projection, batch_size).await?;
        if lag(pool, projection).await?.pending_events == 0 {
            return Ok(total);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ProjectionError::Inconsistent(format!(
                "projector {} did not reach the head of the log within {timeout:?}; \
                 a long-running writing transaction is holding the commit horizon",
                projection.name()
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Empties the projection's tables and its checkpoint, then replays the whole log into them, in
/// place. Readers see empty tables until it completes; use the replay tool's table swap on a
/// serving system.
///
/// # Errors
/// Database errors and events the projection cannot apply.
pub async fn rebuild<P: ReplaySafe>(
    pool: &PgPool,
    projection: &P,
    batch_size: i64,
) -> Result<usize, ProjectionError> {
    ensure_checkpoint(pool, projection.name()).await?;
    let mut tx = pool.begin().await?;
    // Holding the checkpoint row keeps a live runner's batches out while the tables are emptied.
    sqlx::query("SELECT 1 FROM projector_checkpoints WHERE name = $1 FOR UPDATE")
        .bind(projection.name())
        .execute(&mut *tx)
        .await?;
    for table in projection.tables() {
        sqlx::query(&format!("TRUNCATE {table}"))
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(
        "UPDATE projector_checkpoints SET last_tx_id = '0'::xid8, last_position = 0, \
         events_applied = 0, updated_at = now() WHERE name = $1",
    )
    .bind(projection.name())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    catch_up_to_head(pool, projection, batch_size, Duration::from_secs(60)).await
}

/// How far behind the log `projection` is.
///
/// # Errors
/// Database errors.
pub async fn lag<P: Projection + ?Sized>(
    pool: &PgPool,
    projection: &P,
) -> Result<ProjectorLag, sqlx::Error> {
    let types: Vec<&str> = projection.aggregate_types().to_vec();
    let row = sqlx::query(
        "WITH cp AS (SELECT last_tx_id, last_position, events_applied FROM projector_checkpoints WHERE name = $1), \
         pending AS (SELECT e.recorded_at FROM events e, cp \
                     WHERE (e.tx_id, e.global_position) > (cp.last_tx_id, cp.last_position) \
                       AND (cardinality($2::text[]) = 0 OR e.aggregate_type = ANY($2)) \
                     ORDER BY e.tx_id, e.global_position LIMIT 100000) \
         SELECT (SELECT last_position FROM cp) AS last_position, \
                (SELECT events_applied FROM cp) AS events_applied, \
                (SELECT count(*) FROM pending) AS pending, \
                (SELECT COALESCE((EXTRACT(EPOCH FROM now() - min(recorded_at)) * 1000)::bigint, 0) FROM pending) AS oldest_ms",
    )
    .bind(projection.name())
    .bind(&types)
    .fetch_one(pool)
    .await?;
    Ok(ProjectorLag {
        name: projection.name().to_owned(),
        last_position: row.try_get::<Option<i64>, _>("last_position")?.unwrap_or(0),
        events_applied: row
            .try_get::<Option<i64>, _>("events_applied")?
            .unwrap_or(0),
        pending_events: row.try_get("pending")?,
        oldest_pending_ms: row.try_get("oldest_ms")?,
    })
}

/// How soon a reader looks again when committed events wait behind an open transaction.
pub const HELD_BACK_RETRY: Duration = Duration::from_millis(2);

/// Settings of a runner.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Events per transaction.
    pub batch_size: i64,
    /// How often to look for events when no notification arrives.
    pub poll_interval: Duration,
    /// How often a standby instance tries to become the active one.
    pub standby_interval: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
            standby_interval: Duration::from_secs(2),
        }
    }
}

/// Keeps one projection current until cancelled.
pub struct ProjectorRunner {
    pool: PgPool,
    projection: Arc<dyn Projection>,
    wake: watch::Receiver<u64>,
    config: RunnerConfig,
}

impl ProjectorRunner {
    /// A runner for `projection`, woken by `wake` (in-process appends) besides `LISTEN`.
    pub fn new(
        pool: PgPool,
        projection: Arc<dyn Projection>,
        wake: watch::Receiver<u64>,
        config: RunnerConfig,
    ) -> Self {
        Self {
            pool,
            projection,
            wake,
            config,
        }
    }

    /// Runs until `shutdown` is cancelled. Errors are logged and retried after a pause; a
    /// projector never skips an event.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let name = self.projection.name();
        if let Err(e) = ensure_checkpoint(&self.pool, name).await {
            tracing::error!(projector = name, error = %e, "cannot create checkpoint row");
        }
        while !shutdown.is_cancelled() {
            match self.lead(&shutdown).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::error!(projector = name, error = %e, "projector failed; retrying");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.config.standby_interval) => {}
            }
        }
        tracing::debug!(projector = name, "projector stopped");
    }

    /// Becomes the active instance (or returns to wait as standby) and projects until cancelled
    /// or the leadership connection is lost.
    async fn lead(&mut self, shutdown: &CancellationToken) -> Result<(), ProjectionError> {
        let name = self.projection.name();
        // A connection of our own: the advisory lock lives exactly as long as this session.
        let mut leader: PgConnection = self.pool.acquire().await?.detach();
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(5170, hashtext('projector:' || $1))")
                .bind(name)
                .fetch_one(&mut leader)
                .await?;
        if !locked {
            tracing::debug!(projector = name, "another instance is active; standing by");
            return Ok(());
        }
        tracing::info!(projector = name, "projector active");
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        let mut held_back = Duration::ZERO;
        loop {
            // Idle is one cheap query; a batch transaction only when there is something to read.
            match pending(&self.pool, self.projection.as_ref()).await {
                Ok(false) => held_back = Duration::ZERO,
                Ok(true) => {
                    match catch_up(&self.pool, self.projection.as_ref(), self.config.batch_size)
                        .await
                    {
                        Ok(n) if n > 0 => {
                            tracing::debug!(projector = name, events = n, "applied");
                            held_back = Duration::ZERO;
                        }
                        Ok(_) => {
                            // Committed events wait behind an open transaction: look again soon,
                            // backing off up to the poll interval while it stays open.
                            held_back =
                                (held_back * 2).clamp(HELD_BACK_RETRY, self.config.poll_interval);
                            tokio::time::sleep(held_back).await;
                        }
                        Err(e) => {
                            tracing::error!(projector = name, error = %e, "batch failed; will retry");
                            tokio::time::sleep(self.config.poll_interval).await;
                        }
                    }
                    continue;
                }
                Err(e) => {
                    tracing::error!(projector = name, error = %e, "cannot read the log; will retry");
                    tokio::time::sleep(self.config.poll_interval).await;
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => {
                    let _ = leader.close().await;
                    return Ok(());
                }
                changed = self.wake.changed() => {
                    if changed.is_err() {
                        // The in-process signal is gone; keep going on LISTEN and polling.
                        tokio::time::sleep(self.config.poll_interval).await;
                    }
                }
                notification = listener.try_recv() => {
                    if let Err(e) = notification {
                        tracing::warn!(projector = name, error = %e, "LISTEN connection lost; reconnecting");
                    }
                }
                () = tokio::time::sleep(self.config.poll_interval) => {
                    if leader.ping().await.is_err() {
                        tracing::warn!(projector = name, "lost the leadership connection");
                        return Ok(());
                    }
                }
            }
        }
    }
}
