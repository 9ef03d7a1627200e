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
//!
//! # Layout
//! - `reader`: the event columns, the commit order and the readers of the log ([`read_events`],
//!   [`read_replay_rows`], [`replay_event`], [`checkpoint`], ...).
//! - `runner`: [`run_batch`], [`catch_up`], [`catch_up_to_head`], [`rebuild`], [`lag`] and
//!   [`ProjectorRunner`].
//! - `fold`: the License folds that write each row once ([`BulkApply`], [`ReplayBatch`],
//!   [`BULK_ROWS`]).
//!
//! This module keeps the contracts ([`Projection`], [`ReplaySafe`], [`ProjectionError`],
//! [`Checkpoint`]). The submodules are private and what they offer is re-exported here, so that
//! every user names it `engine::X` whichever file holds it.

use async_trait::async_trait;
use domain::AggregateType;
use domain::event::{EventCodecError, RecordedEvent};
use sqlx::PgConnection;

mod fold;
mod reader;
mod runner;

pub use fold::{BULK_ROWS, BulkApply, ReplayBatch, WRITE_CHUNK, decode_license};
pub(crate) use fold::{
    HeldFold, LicenseRecord, RecordFields, RowFold, apply_folded, free_elsewhere,
};
pub use reader::{
    AFTER_BELOW_HORIZON, Ahead, COMMIT_ORDER, EVENT_COLUMNS, LOOK_AHEAD_ANY, LOOK_AHEAD_TYPED,
    ReplayEvent, checkpoint, look_ahead, read_events, read_replay_events, read_replay_rows,
    recorded_event, replay_event, row_checkpoint,
};
pub use runner::{
    HELD_BACK_RETRY, ProjectorLag, ProjectorRunner, RunnerConfig, catch_up, catch_up_to_head,
    ensure_checkpoint, lag, rebuild, run_batch,
};

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
    fn aggregate_types(&self) -> &'static [AggregateType];
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

/// Where a projector stands. Ordered as the log is read: by transaction, then position.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Checkpoint {
    pub tx_id: i64,
    pub position: i64,
}
