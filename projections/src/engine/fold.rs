//! The License folds: a projection of License events with many rows folds them in memory and
//! writes each row it touched once, per batch in the live projector ([`apply_folded`]) and across
//! the whole walk in a rebuild ([`HeldFold`], a [`BulkApply`] fed [`ReplayBatch`]es).
//!
//! Also what those folds read: a License event decoded once, with the fields of its record
//! ([`LicenseRecord`], [`RecordFields`]), whether it came from a live batch or a rebuild.

use async_trait::async_trait;
use domain::Timestamp;
use domain::event::{EventCodecError, RecordedEvent, VersionedEvent, decode_payload_raw};
use domain::ids::LicenseId;
use domain::license::LicenseEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{ProjectionError, ReplayEvent};

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
