//! Running projectors: one batch as one transaction with its checkpoint ([`run_batch`]), catching
//! up to the horizon or to the head, rebuilding in place, measuring lag, and
//! [`ProjectorRunner`], which keeps one projector current as the single active instance.

use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPool;
use sqlx::{Acquire, PgConnection, Postgres, Row};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    Checkpoint, Projection, ProjectionError, ReplaySafe, checkpoint, look_ahead, read_events,
};

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

/// Applies the next batch of at most `limit` events; returns how many were applied. On a pool
/// (`&PgPool`) or on a connection of the caller's (`&mut PgConnection`: a runner's session).
///
/// # Errors
/// Database errors and events the projection cannot apply (nothing of the batch is kept).
pub async fn run_batch<'c, P: Projection + ?Sized>(
    conn: impl Acquire<'c, Database = Postgres>,
    projection: &P,
    limit: i64,
) -> Result<usize, ProjectionError> {
    run_batch_from(conn, projection, limit, &Clear::default()).await
}

/// [`run_batch`], reading from past `clear` where it applies ([`Clear::start`]): what a runner
/// knows to hold none of the projection's events is not read through again.
///
/// # Errors
/// See [`run_batch`].
async fn run_batch_from<'c, P: Projection + ?Sized>(
    conn: impl Acquire<'c, Database = Postgres>,
    projection: &P,
    limit: i64,
    clear: &Clear,
) -> Result<usize, ProjectionError> {
    let mut tx = conn.begin().await?;
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
    let from = clear.start(&checkpoint);
    let events = read_events(&mut tx, &from, projection.aggregate_types(), limit).await?;
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

/// A stretch of the log past a projector's checkpoint that holds none of its events: no event of
/// its types lies in `(base, to]`, and all of it is below the commit horizon, where no event can
/// ever be added. A fact about the log, true for good once seen.
///
/// Why: a projector's checkpoint only moves when it applies an event, so one whose types are
/// rare (products, policies, users, releases, organizations) would otherwise look through every other event since its
/// last one on every wake-up, a cost growing with the log. The runner keeps this in memory, reads
/// from its end, and writes it to the checkpoint now and then ([`advance_over`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Clear {
    /// The stored checkpoint the stretch was seen from.
    base: Checkpoint,
    /// The last event of the stretch.
    to: Checkpoint,
}

impl Clear {
    /// Where to read from, given the stored checkpoint: the end of the stretch when the stretch
    /// covers everything between the two (the checkpoint is at or past `base`); the checkpoint
    /// otherwise, as after a rebuild moved it back.
    fn start(&self, stored: &Checkpoint) -> Checkpoint {
        if *stored >= self.base && self.to > *stored {
            self.to.clone()
        } else {
            stored.clone()
        }
    }
}

/// Moves the stored checkpoint of `name` to the end of `clear` when the stretch covers what lies
/// between them (the checkpoint is at or past its base, and before its end): the checkpoint then
/// says where the projector stands for others too (lag, readiness, a restart). Returns whether
/// it moved. A batch committed meanwhile, or a rebuild, leaves it as they left it.
///
/// # Errors
/// Database errors.
async fn advance_over(
    conn: &mut PgConnection,
    name: &str,
    clear: &Clear,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE projector_checkpoints SET last_tx_id = $4::text::xid8, last_position = $5, \
                updated_at = now() \
          WHERE name = $1 AND (last_tx_id, last_position) >= ($2::text::xid8, $3) \
            AND (last_tx_id, last_position) < ($4::text::xid8, $5)",
    )
    .bind(name)
    .bind(clear.base.tx_id.to_string())
    .bind(clear.base.position)
    .bind(clear.to.tx_id.to_string())
    .bind(clear.to.position)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
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

/// [`catch_up`] on one connection (a runner's session), reading from past `clear`.
async fn catch_up_on<P: Projection + ?Sized>(
    conn: &mut PgConnection,
    projection: &P,
    batch_size: i64,
    clear: &Clear,
) -> Result<usize, ProjectionError> {
    let mut total = 0;
    loop {
        let n = run_batch_from(&mut *conn, projection, batch_size, clear).await?;
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
    let types = super::reader::type_names(projection.aggregate_types());
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
///
/// An active runner has one connection of its pool, its *session*, for as long as it is active:
/// the advisory lock that makes it the single active instance lives exactly as long as the
/// connection that took it, and every batch runs on that connection too, so an active projector
/// costs one connection, never more. A standby holds none between its attempts. The runner does
/// not `LISTEN` itself: the process's one listener (`notify::ChangeSignal::listen`) wakes it
/// through `wake`, like the process's own appends do.
pub struct ProjectorRunner {
    pool: PgPool,
    projection: Arc<dyn Projection>,
    wake: watch::Receiver<u64>,
    config: RunnerConfig,
}

impl ProjectorRunner {
    /// A runner for `projection`, taking its session from `pool`, woken by `wake` (appends of
    /// this process, and of others when the process listens) and by polling.
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
    /// or an error ends the session.
    async fn lead(&mut self, shutdown: &CancellationToken) -> Result<(), ProjectionError> {
        let name = self.projection.name();
        // Each time, not only at start: a missing row reads as position zero, and a batch
        // then fails on it, which a start-up error would leave failing for good.
        ensure_checkpoint(&self.pool, name).await?;
        let mut session: PoolConnection<Postgres> = self.pool.acquire().await?;
        let asked: Result<bool, sqlx::Error> =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(5170, hashtext('projector:' || $1))")
                .bind(name)
                .fetch_one(&mut *session)
                .await;
        // A query that failed may have failed after the server granted the lock (a lost answer):
        // such a session is closed, never handed to the pool's next borrower. (`lead` is not
        // cancelled mid-query: shutdown is observed between batches.)
        let locked = asked.inspect_err(|_| session.close_on_drop())?;
        if !locked {
            tracing::debug!(projector = name, "another instance is active; standing by");
            return Ok(()); // the connection goes back to the pool holding no lock
        }
        // From here the connection holds the lock: it must never go back to the pool, where the
        // next borrower would hold the lock unknowingly and this projector would stall. Whatever
        // ends the session (an error, a panic, shutdown), the connection is closed, and the lock
        // with it.
        session.close_on_drop();
        tracing::info!(projector = name, "projector active");
        let result = self.project(&mut session, shutdown).await;
        let _ = session.close().await;
        result
    }

    /// Projects on the session until cancelled; an error ends the session (the connection may be
    /// what failed).
    async fn project(
        &mut self,
        session: &mut PgConnection,
        shutdown: &CancellationToken,
    ) -> Result<(), ProjectionError> {
        let name = self.projection.name();
        let types = self.projection.aggregate_types();
        let mut held_back = Duration::ZERO;
        // What this session has seen to hold none of the projection's events past its
        // checkpoint, and when it last wrote that to the checkpoint.
        let mut clear = Clear::default();
        let mut written = tokio::time::Instant::now();
        loop {
            // Idle is two cheap queries (the checkpoint, then what lies past it); a batch
            // transaction only when there is something to read.
            let stored = checkpoint(&mut *session, name).await?;
            let from = clear.start(&stored);
            let ahead = look_ahead(&mut *session, &from, types).await?;
            if ahead.pending {
                let n = catch_up_on(
                    &mut *session,
                    self.projection.as_ref(),
                    self.config.batch_size,
                    &clear,
                )
                .await?;
                if n > 0 {
                    tracing::debug!(projector = name, events = n, "applied");
                    held_back = Duration::ZERO;
                } else {
                    // Committed events wait behind an open transaction: look again soon, backing
                    // off up to the poll interval while it stays open.
                    held_back = (held_back * 2).clamp(HELD_BACK_RETRY, self.config.poll_interval);
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(held_back) => {}
                    }
                }
                continue;
            }
            // Nothing of ours past `from`: everything up to the head below the horizon is
            // covered, from the stored checkpoint on.
            if let Some(head) = ahead.past(&from) {
                clear = Clear {
                    base: stored.clone(),
                    to: head,
                };
            }
            // Written at most once per poll interval: a write per wake-up per projector would
            // cost the command path its group commit, and the stretch in memory already spares
            // this runner the reading; the checkpoint is for the others (lag, a restart).
            if clear.start(&stored) > stored && written.elapsed() >= self.config.poll_interval {
                advance_over(&mut *session, name, &clear).await?;
                written = tokio::time::Instant::now();
            }
            held_back = Duration::ZERO;
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                changed = self.wake.changed() => {
                    if changed.is_err() {
                        // The signal is gone; keep going on polling.
                        tokio::time::sleep(self.config.poll_interval).await;
                    }
                }
                () = tokio::time::sleep(self.config.poll_interval) => {
                    // Polling doubles as the check that the session (and its lock) still
                    // exists: the look-ahead fails on a lost connection and the session ends.
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Checkpoint, Clear};

    fn at(tx_id: i64, position: i64) -> Checkpoint {
        Checkpoint { tx_id, position }
    }

    #[test]
    fn a_clear_stretch_is_read_past_only_while_it_covers_the_gap_to_the_checkpoint() {
        let clear = Clear {
            base: at(10, 5),
            to: at(20, 9),
        };
        // At the base, or inside the stretch: read from its end.
        assert_eq!(clear.start(&at(10, 5)), at(20, 9));
        assert_eq!(clear.start(&at(15, 7)), at(20, 9));
        // Past its end (a batch applied further): the checkpoint.
        assert_eq!(clear.start(&at(21, 12)), at(21, 12));
        assert_eq!(clear.start(&at(20, 9)), at(20, 9));
        // Behind its base, as after a rebuild reset the checkpoint: the stretch says nothing of
        // what lies between, so the checkpoint.
        assert_eq!(clear.start(&at(0, 0)), at(0, 0));
        assert_eq!(clear.start(&at(10, 4)), at(10, 4));
        // None known.
        assert_eq!(Clear::default().start(&at(3, 1)), at(3, 1));
    }
}
