//! One rebuild, under the advisory lock: the workers (one per projection), the decoder and the
//! reader of the walk over the log, then the primary keys made again and the swaps (steps 2 to 4
//! of the module documentation of [`super`]).

use std::sync::Arc;

use anyhow::{Context, bail};
use projections::engine::{
    Checkpoint, ReplayBatch, read_replay_rows, replay_event, row_checkpoint,
};
use projections::{ProjectionError, ReplaySafe};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Connection, Row};
use tokio::sync::mpsc;

use super::builds::IndexBuilds;
use super::shadow::{Shadow, prepare_shadow, shadow_connection};
use super::swap::swap;
use super::worker::worker;
use super::{BATCH, Report};
use crate::progress::Progress;

/// Batches a worker may have queued before the decoder waits for it: room for the reader to run
/// ahead while a worker writes. With [`DECODE_QUEUE`], up to about 125,000 events are held in
/// memory (the queued batches, one read, one decoded, one being applied by each worker), their
/// License events also decoded.
const QUEUE: usize = 16;
/// Batches read ahead of the decoder.
const DECODE_QUEUE: usize = 4;

/// [`super::rebuild`] once it holds the lock: steps 2 to 4 of the module documentation of
/// [`super`].
pub(super) async fn rebuild_locked(
    pool: &PgPool,
    selected: &[Arc<dyn ReplaySafe>],
    progress: &Progress,
) -> anyhow::Result<Report> {
    progress.phase("preparing");
    let Shadow { deferred, keys } = prepare_shadow(pool, selected).await?;

    // The workers: one per projection, each on its own connection into the shadow schema.
    let mut senders = Vec::new();
    let mut workers = tokio::task::JoinSet::new();
    let mut decode = false;
    let builds = Arc::new(IndexBuilds::new(selected.len()));
    for (i, (projection, deferred)) in selected.iter().zip(deferred).enumerate() {
        let (tx, rx) = mpsc::channel::<Arc<ReplayBatch>>(QUEUE);
        let mut conn = shadow_connection(pool).await?;
        let projection = Arc::clone(projection);
        let bulk = projection.bulk(projections::engine::BULK_ROWS);
        decode |= bulk.as_ref().is_some_and(|b| b.folds_licenses());
        senders.push(tx);
        let builds = Arc::clone(&builds);
        workers.spawn(async move {
            let applied = worker(&mut conn, projection.as_ref(), bulk, deferred, &builds, rx).await;
            let _ = conn.close().await;
            (i, applied)
        });
    }

    // The decoder, between the reader and the workers: decodes each page's rows, and its
    // License events once for every bulk applier that folds them (only when there is one: audit
    // or the catalogue alone need none), as a task on the runtime's threads while the reader, on
    // the caller's, fetches the next page. Decoding the rows in the reader kept the server idle
    // while the client decoded, and the reader was the walk's slowest stage (ADR 0010). Returns
    // whether every worker took every batch.
    let (to_decoder, mut decoder_rx) = mpsc::channel::<Vec<PgRow>>(DECODE_QUEUE);
    let decoder = tokio::spawn(async move {
        while let Some(rows) = decoder_rx.recv().await {
            let events = rows
                .iter()
                .map(|row| replay_event(row).map_err(|err| undecodable(row, &err)))
                .collect::<Result<Vec<_>, _>>()?;
            drop(rows);
            let batch = Arc::new(if decode {
                ReplayBatch::decoded(events)?
            } else {
                ReplayBatch::undecoded(events)
            });
            for sender in &senders {
                if sender.send(Arc::clone(&batch)).await.is_err() {
                    // A worker stopped on an error; its join handle says which.
                    return Ok(false);
                }
            }
        }
        Ok::<_, ProjectionError>(true)
    });

    // The reader: the log once, in commit order below the horizon.
    progress.phase("reading the log");
    let mut reader = pool.acquire().await?;
    let mut at = Checkpoint::default();
    let mut read = 0_u64;
    loop {
        let events = read_replay_rows(&mut reader, &at, BATCH).await?;
        let Some(last) = events.last() else { break };
        at = row_checkpoint(last)?;
        let n = events.len() as u64;
        read += n;
        if to_decoder.send(events).await.is_err() {
            break; // the decoder stopped: it says why below
        }
        progress.inc(n);
    }
    drop(reader);
    drop(to_decoder);
    progress.phase("indexing");
    let handed_over = match decoder.await {
        Ok(Ok(all)) => all,
        Ok(Err(err)) => {
            workers.abort_all();
            return Err(anyhow::Error::new(err).context("decoding the log for the rebuild"));
        }
        Err(err) => {
            workers.abort_all();
            return Err(anyhow::anyhow!("the rebuild's decoder panicked: {err}"));
        }
    };
    // In the order they finish: the first error stops the others at once, rather than after
    // their own final writes and index builds.
    let mut counts = vec![0_u64; selected.len()];
    while let Some(joined) = workers.join_next().await {
        let (i, applied) = match joined {
            Ok(done) => done,
            Err(err) => {
                workers.abort_all();
                return Err(anyhow::anyhow!("a rebuild worker panicked: {err}"));
            }
        };
        match applied {
            Ok(n) => counts[i] = n,
            Err(err) => {
                workers.abort_all();
                return Err(err.context(format!("rebuilding projection {}", selected[i].name())));
            }
        }
    }
    if !handed_over {
        bail!("a rebuild worker stopped early");
    }
    // Every index is built: the primary keys built as plain unique indexes become keys again.
    for sql in &keys {
        sqlx::query(sql)
            .execute(pool)
            .await
            .with_context(|| format!("restoring a primary key: {sql}"))?;
    }
    progress.phase("swapping in");

    // The server may have been upgraded (and migrated) meanwhile: copies made for the schema
    // this rebuild began with must not replace tables of another.
    commands::db::ensure_migrated(pool)
        .await
        .context("the schema changed during the rebuild; nothing was swapped in")?;
    let mut rebuilt = Vec::new();
    // Every worker has applied every batch: the copies stand where the reader stopped.
    for (projection, applied) in selected.iter().zip(counts) {
        let done = swap(pool, projection.as_ref(), applied, at.clone())
            .await
            .with_context(|| format!("swapping in projection {}", projection.name()))?;
        rebuilt.push(done);
    }
    Ok(Report::new(read, progress.seconds(), rebuilt))
}

/// A row of the log that does not decode, named by its position when that much can be read.
fn undecodable(row: &PgRow, err: &sqlx::Error) -> ProjectionError {
    let at = row.try_get::<i64, _>("global_position").map_or_else(
        |_| "an unknown position".to_owned(),
        |p| format!("position {p}"),
    );
    ProjectionError::Inconsistent(format!("the event at {at} does not decode: {err}"))
}
