//! `ledger-replay rebuild`: replays the log into fresh tables and swaps them in, while the live
//! server keeps serving from the old ones.
//!
//! # How
//! 1. A database whose schema is not this build's (a migration missing, unknown or changed) is
//!    refused ([`commands::db::ensure_migrated`]), before the walk and again before the swap:
//!    the copies are made `LIKE` the live tables and filled by this build's projections. One
//!    rebuild at a time: a session advisory lock ([`REBUILD_LOCK`]). A shadow schema left by an
//!    earlier run that was killed is dropped first; the live tables were never touched by it.
//! 2. Each projection gets empty copies of its tables in the schema [`SHADOW_SCHEMA`] (`LIKE …
//!    INCLUDING ALL`, same grants and storage parameters), without their non-unique indexes: those
//!    are built after the walk, under their live names, which costs a fraction of keeping them
//!    current row by row. A projection that only inserts ([`ReplaySafe::only_inserts`]: audit)
//!    loses its primary keys too; they are built as unique indexes with the others and made keys
//!    again before the swap. Its worker runs on a connection whose `search_path` puts that schema
//!    first, so the projection's own unqualified SQL writes the copies and reads `events` from
//!    `public`; it commits without waiting for the disk (a crash discards the copies anyway).
//! 3. One reader walks the log once, in commit order and below the commit horizon (the projector
//!    engine's order), in keyset pages as every projector reads; it asks for the next page as soon
//!    as it has a page's rows, and a decoder task decodes them meanwhile: into [`ReplayEvent`]s,
//!    payloads and metadata kept as JSON text, and each License event once, straight from that text
//!    ([`ReplayBatch`]). The decoder hands the batch to every worker through a bounded channel: the
//!    log is read and decoded once however many projections are rebuilt, and the slowest worker
//!    sets the pace. A projection with a [`ReplaySafe::bulk`] applier takes the batches as they
//!    are: licenses and validation keep their folds across batches and write each row once (up to
//!    [`projections::engine::BULK_ROWS`] held); audit copies each batch's rows in, as the live
//!    projector does, reading three metadata fields from the text. The catalogue's few events are
//!    read as every projector reads them and applied batch by batch. A worker done writing builds
//!    the indexes left out — its own or another projection's, from one queue ([`IndexBuilds`]) — so
//!    that audit's three big ones do not run one after the other while other cores idle. Each
//!    worker sets `maintenance_work_mem` to 128 MB for its builds, which are not parallel, and six
//!    may build at once: mind it on a small host.
//! 4. Swap, one transaction per projection: lock its checkpoint row (the live projector waits),
//!    apply what was committed since the walk into the copies, drop the live tables, move the
//!    copies into `public` under the old index names, and set the checkpoint to where the copies
//!    stand. Readers see either the old tables or the new ones, never a mix or an empty table; a
//!    crash before the commit leaves the old ones in place.
//!
//! Only [`projections::ReplaySafe`] projections are in the registry ([`projections::replayable`]):
//! a projection with side effects cannot be replayed, by construction.
//!
//! Runs as the schema owner (the migration user), not as `ledger_app`, which may not create or
//! drop tables.
//!
//! # Layout
//! - `walk`: one rebuild under the lock: the workers, the decoder and the reader of the walk,
//!   then the primary keys and the swaps.
//! - `shadow`: the shadow schema: empty copies of the live tables, and the workers' sessions.
//! - `worker`: a projection's worker, filling its copies; `builds`: the deferred index
//!   builds the workers share.
//! - `swap`: catching the copies up and putting them in place of the live tables.
//! - `catalog`: what PostgreSQL's catalog says of a table's indexes and constraints.
//!
//! [`ReplayEvent`]: projections::engine::ReplayEvent
//! [`ReplayBatch`]: projections::engine::ReplayBatch
//! [`IndexBuilds`]: builds::IndexBuilds

mod builds;
mod catalog;
mod shadow;
mod swap;
mod walk;
mod worker;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use anyhow::{Context, bail};
use projections::ReplaySafe;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

use crate::progress::Progress;

/// Where the copies are built.
pub const SHADOW_SCHEMA: &str = "ledger_rebuild";
/// Advisory-lock key: one rebuild at a time.
pub const REBUILD_LOCK: i64 = 5_173;
/// Events read per batch.
pub const BATCH: i64 = 5_000;

/// What a rebuild did, per projection.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Rebuilt {
    pub projection: &'static str,
    pub events_applied: u64,
    pub position: i64,
}

/// The result of a rebuild.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// Events read from the log: each once, however many projections were rebuilt.
    pub events_read: u64,
    /// Wall time of the whole rebuild (lock, copies, walk, index builds, swaps), on the clock of
    /// the [`Progress`] it reported to.
    pub seconds: f64,
    /// `events_read / seconds`: the one rate a rebuild reports, on the bar's end and in the
    /// summary alike ([`crate::progress::rate`]).
    pub events_per_second: f64,
    pub projections: Vec<Rebuilt>,
}

impl Report {
    /// The report of a rebuild that read `events_read` events and took `seconds`.
    pub fn new(events_read: u64, seconds: f64, projections: Vec<Rebuilt>) -> Self {
        Self {
            events_read,
            seconds,
            events_per_second: crate::progress::rate(events_read, seconds),
            projections,
        }
    }

    /// Events, seconds and rate, as the progress bar ends with them and the summary shows them.
    pub fn figures(&self) -> String {
        crate::progress::figures(self.events_read, self.seconds)
    }

    /// The summary line: `rebuilt 6 projection(s) from 1234 events in 0.2 s (6170 events/s)`.
    pub fn summary(&self) -> String {
        format!(
            "rebuilt {} projection(s) from {}",
            self.projections.len(),
            self.figures()
        )
    }
}

/// The projections named (all when `names` is empty).
///
/// # Errors
/// An unknown name, with the list of known ones.
pub fn select(names: &[String]) -> anyhow::Result<Vec<Arc<dyn ReplaySafe>>> {
    let all = projections::replayable();
    if names.is_empty() {
        return Ok(all);
    }
    let known: Vec<&str> = all.iter().map(|p| p.name()).collect();
    names
        .iter()
        .map(|name| {
            all.iter()
                .find(|p| p.name() == name)
                .cloned()
                .with_context(|| {
                    format!(
                        "no replayable projection named {name:?}; known: {}",
                        known.join(", ")
                    )
                })
        })
        .collect()
}

/// A pool for the rebuild: the URL's own role (the schema owner), no `SET ROLE`.
///
/// # Errors
/// When the database is unreachable.
pub async fn owner_pool(url: &str, connections: u32) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url
        .parse()
        .with_context(|| "cannot read --database-url".to_owned())?;
    // Index builds and copies of a million rows are meant to take seconds: sqlx's "slow
    // statement" warnings would only alarm the operator. The rebuild logs its own timings.
    let options = options.disable_statement_logging();
    commands::db::reachable(url, &options).await?;
    PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(|e| commands::db::DbError::unreachable(url, &e).into())
}

/// Rebuilds `selected` from the log and swaps the results in, reporting to `progress` (whose
/// clock, started when it was created, times the whole rebuild: create it just before).
///
/// # Errors
/// A database whose schema is not this build's, another rebuild running, database errors, an
/// event a projection cannot apply (nothing live is changed in that case).
pub async fn rebuild(
    url: &str,
    selected: Vec<Arc<dyn ReplaySafe>>,
    progress: &Progress,
) -> anyhow::Result<Report> {
    progress.phase("connecting");
    let pool = owner_pool(url, u32::try_from(selected.len()).unwrap_or(8) + 3).await?;
    commands::db::ensure_migrated(&pool).await?;
    let mut guard = pool.acquire().await?.detach();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(REBUILD_LOCK)
        .fetch_one(&mut guard)
        .await?;
    if !locked {
        bail!("another ledger-replay rebuild is running on this database");
    }
    let result = walk::rebuild_locked(&pool, &selected, progress).await;
    // Dropping the shadow schema is tidy-up; the next run does it anyway.
    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE"))
        .execute(&pool)
        .await;
    let _ = guard.close().await;
    // Say goodbye to the server rather than drop the sockets (which it logs as errors).
    pool.close().await;
    result
}

/// Whether `projection` reads events of `aggregate_type`: one of its aggregate types, or any
/// when it names none (as `engine::read_events` selects).
pub fn reads(projection: &dyn ReplaySafe, aggregate_type: &str) -> bool {
    let types = projection.aggregate_types();
    types.is_empty() || types.iter().any(|t| t.as_str() == aggregate_type)
}
