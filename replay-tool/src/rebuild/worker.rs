//! A projection's worker: applies the walk's batches to its copies, then builds deferred indexes
//! until none is left.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use projections::ReplaySafe;
use projections::engine::{BulkApply, ReplayBatch, ReplayEvent};
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tokio::sync::mpsc;

use super::builds::IndexBuilds;
use super::reads;

/// Applies every batch it receives (the events of its types) to the copies — through the
/// projection's [`ReplaySafe::bulk`] applier `bulk` when it has one, else one transaction per
/// batch — then hands the indexes [`prepare_shadow`] left out (`deferred`) to `builds` and
/// builds indexes from there, its own or another projection's, until none is left. Returns the
/// number of events applied.
///
/// [`prepare_shadow`]: super::shadow::prepare_shadow
pub(super) async fn worker(
    conn: &mut PgConnection,
    projection: &dyn ReplaySafe,
    bulk: Option<Box<dyn BulkApply>>,
    deferred: Vec<String>,
    builds: &IndexBuilds,
    mut rx: mpsc::Receiver<Arc<ReplayBatch>>,
) -> anyhow::Result<u64> {
    let mut applied = 0_u64;
    if let Some(mut bulk) = bulk {
        while let Some(batch) = rx.recv().await {
            bulk.feed(conn, &batch).await?;
            applied += batch
                .events()
                .iter()
                .filter(|e| reads(projection, &e.aggregate_type))
                .count() as u64;
        }
        let writing = Instant::now();
        bulk.finish(conn).await?;
        tracing::info!(
            projection = projection.name(),
            seconds = writing.elapsed().as_secs_f64(),
            "wrote what the fold held"
        );
    } else {
        while let Some(batch) = rx.recv().await {
            // These projections read few events (the catalogue's): each is read as the live
            // projector reads it.
            let mine = batch
                .events()
                .iter()
                .filter(|e| reads(projection, &e.aggregate_type))
                .map(ReplayEvent::to_recorded)
                .collect::<Result<Vec<_>, _>>()?;
            if mine.is_empty() {
                continue;
            }
            let mut tx = conn.begin().await?;
            projection.apply_batch(&mut tx, &mine).await?;
            applied += mine.len() as u64;
            tx.commit().await?;
        }
    }
    // Its rows are committed (copies are written in autocommit or per-batch transactions), so
    // any worker's session may index them.
    builds.add(projection.name(), deferred);
    while let Some((owner, sql)) = builds.next().await {
        let building = Instant::now();
        sqlx::query(&sql)
            .execute(&mut *conn)
            .await
            .with_context(|| format!("building index of projection {owner}: {sql}"))?;
        tracing::info!(
            projection = owner,
            by = projection.name(),
            seconds = building.elapsed().as_secs_f64(),
            "{sql}"
        );
    }
    Ok(applied)
}
