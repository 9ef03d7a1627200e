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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use projections::engine::{
    BulkApply, Checkpoint, ReplayBatch, ReplayEvent, read_events, read_replay_rows, replay_event,
    row_checkpoint,
};
use projections::{ProjectionError, ReplaySafe};
use sqlx::postgres::PgRow;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Row};
use tokio::sync::mpsc;

use crate::progress::Progress;

/// Where the copies are built.
pub const SHADOW_SCHEMA: &str = "ledger_rebuild";
/// Advisory-lock key: one rebuild at a time.
pub const REBUILD_LOCK: i64 = 5_173;
/// Events read per batch.
pub const BATCH: i64 = 5_000;
/// Batches a worker may have queued before the decoder waits for it: room for the reader to run
/// ahead while a worker writes. With [`DECODE_QUEUE`], up to about 125,000 events are held in
/// memory (the queued batches, one read, one decoded, one being applied by each worker), their
/// License events also decoded.
const QUEUE: usize = 16;
/// Batches read ahead of the decoder.
const DECODE_QUEUE: usize = 4;

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
    pub events_read: u64,
    pub seconds: f64,
    pub projections: Vec<Rebuilt>,
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
    PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect_with(options)
        .await
        .with_context(|| "cannot connect to the database (check --database-url)".to_owned())
}

/// Rebuilds `selected` from the log and swaps the results in.
///
/// # Errors
/// A database whose schema is not this build's, another rebuild running, database errors, an
/// event a projection cannot apply (nothing live is changed in that case).
pub async fn rebuild(
    url: &str,
    selected: Vec<Arc<dyn ReplaySafe>>,
    progress: &Progress,
) -> anyhow::Result<Report> {
    let started = Instant::now();
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
    let result = rebuild_locked(&pool, &selected, progress, started).await;
    // Dropping the shadow schema is tidy-up; the next run does it anyway.
    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE"))
        .execute(&pool)
        .await;
    let _ = guard.close().await;
    // Say goodbye to the server rather than drop the sockets (which it logs as errors).
    pool.close().await;
    result
}

async fn rebuild_locked(
    pool: &PgPool,
    selected: &[Arc<dyn ReplaySafe>],
    progress: &Progress,
    started: Instant,
) -> anyhow::Result<Report> {
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
    progress.finish();

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
    Ok(Report {
        events_read: read,
        seconds: started.elapsed().as_secs_f64(),
        projections: rebuilt,
    })
}

/// A row of the log that does not decode, named by its position when that much can be read.
fn undecodable(row: &PgRow, err: &sqlx::Error) -> ProjectionError {
    let at = row.try_get::<i64, _>("global_position").map_or_else(
        |_| "an unknown position".to_owned(),
        |p| format!("position {p}"),
    );
    ProjectionError::Inconsistent(format!("the event at {at} does not decode: {err}"))
}

/// What [`prepare_shadow`] left to do once the copies are filled.
struct Shadow {
    /// Per projection, the statements that build the indexes it left out.
    deferred: Vec<Vec<String>>,
    /// The statements that make primary keys of the unique indexes among those.
    keys: Vec<String>,
}

/// Empty copies of every table of `selected` in the shadow schema, with the live grants. The
/// copies keep their primary keys and unique indexes (upserts need them) but not the others:
/// filling a table and then building an index is several times cheaper than keeping the index
/// current row by row. The tables of a projection that only inserts
/// ([`ReplaySafe::only_inserts`]) lose their primary keys too, rebuilt as unique indexes with
/// the others and made keys again before the swap ([`Shadow::keys`]).
async fn prepare_shadow(pool: &PgPool, selected: &[Arc<dyn ReplaySafe>]) -> anyhow::Result<Shadow> {
    let mut tx = pool.begin().await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA {SHADOW_SCHEMA}"))
        .execute(&mut *tx)
        .await?;
    let mut deferred = Vec::new();
    let mut keys = Vec::new();
    for projection in selected {
        let mut later = Vec::new();
        for table in projection.tables() {
            sqlx::query(&format!(
                "CREATE TABLE {SHADOW_SCHEMA}.{table} (LIKE public.{table} INCLUDING ALL)"
            ))
            .execute(&mut *tx)
            .await
            .with_context(|| format!("copying the definition of table {table}"))?;
            copy_storage_parameters(&mut tx, table).await?;
            // The swap requires the live constraints (`replace_table`); one that `LIKE` does not
            // copy (a foreign key) would fail every rebuild at its very end: say so now.
            let live_constraints = constraints(&mut tx, "public", table).await?;
            let copied = constraints(&mut tx, SHADOW_SCHEMA, table).await?;
            if copied != live_constraints {
                bail!(
                    "cannot copy the constraints of {table}: live {live_constraints:?}, copy \
                     {copied:?} (a rebuild copies tables with LIKE … INCLUDING ALL)"
                );
            }
            for (name, _) in plain_indexes(&mut tx, SHADOW_SCHEMA, table).await? {
                sqlx::query(&format!(
                    "DROP INDEX {SHADOW_SCHEMA}.{}",
                    quote_ident(&name)
                ))
                .execute(&mut *tx)
                .await?;
            }
            // A projection that only inserts needs no key to write its rows: its primary key is
            // built with the other indexes (a unique index, under the constraint's name) and
            // made the key again before the swap. Keeping it current row by row cost a rebuild
            // more than building it (ADR 0010).
            if projection.only_inserts()
                && let Some((name, definition)) = primary_key(&mut tx, SHADOW_SCHEMA, table).await?
            {
                let Some((_, tail)) = definition.split_once(" USING ") else {
                    bail!("cannot read the definition of index {name}: {definition}");
                };
                let name = quote_ident(&name);
                sqlx::query(&format!(
                    "ALTER TABLE {SHADOW_SCHEMA}.{table} DROP CONSTRAINT {name}"
                ))
                .execute(&mut *tx)
                .await?;
                later.push(format!(
                    "CREATE UNIQUE INDEX {name} ON {SHADOW_SCHEMA}.{table} USING {tail}"
                ));
                keys.push(format!(
                    "ALTER TABLE {SHADOW_SCHEMA}.{table} ADD CONSTRAINT {name} \
                     PRIMARY KEY USING INDEX {name}"
                ));
            }
            // Built under the live names: the swap then has nothing to rename.
            for (name, definition) in plain_indexes(&mut tx, "public", table).await? {
                let Some((_, tail)) = definition.split_once(" USING ") else {
                    bail!("cannot read the definition of index {name}: {definition}");
                };
                later.push(format!(
                    "CREATE INDEX {} ON {SHADOW_SCHEMA}.{table} USING {tail}",
                    quote_ident(&name)
                ));
            }
            // The same privileges as the live table, so the swapped-in table serves the server.
            let grants: Vec<(String, String)> = sqlx::query_as(
                "SELECT grantee, string_agg(privilege_type, ', ') FROM information_schema.role_table_grants \
                 WHERE table_schema = 'public' AND table_name = $1 \
                   AND grantee <> (SELECT tableowner FROM pg_tables WHERE schemaname = 'public' AND tablename = $1) \
                 GROUP BY grantee",
            )
            .bind(table)
            .fetch_all(&mut *tx)
            .await?;
            for (grantee, privileges) in grants {
                sqlx::query(&format!(
                    "GRANT {privileges} ON {SHADOW_SCHEMA}.{table} TO {}",
                    quote_ident(&grantee)
                ))
                .execute(&mut *tx)
                .await?;
            }
        }
        deferred.push(later);
    }
    tx.commit().await?;
    Ok(Shadow { deferred, keys })
}

/// Gives the shadow copy of `table` the live table's storage parameters (`fillfactor`,
/// `toast_tuple_target`, autovacuum settings, and those of its TOAST table), which `LIKE` leaves
/// behind: the swapped-in table must be stored as the migrations and the operator set it.
async fn copy_storage_parameters(conn: &mut PgConnection, table: &str) -> anyhow::Result<()> {
    let (own, toast): (Option<Vec<String>>, Option<Vec<String>>) = sqlx::query_as(
        "SELECT c.reloptions::text[], t.reloptions::text[] FROM pg_class c \
         LEFT JOIN pg_class t ON t.oid = c.reltoastrelid WHERE c.oid = $1::regclass",
    )
    .bind(format!("public.{table}"))
    .fetch_one(&mut *conn)
    .await
    .with_context(|| format!("reading the storage parameters of table {table}"))?;
    // The catalog keeps each option as `name=value` with the value as the operator wrote it
    // (`fillfactor='0x5A'` is stored as `fillfactor=0x5A`, which does not parse back): each part
    // goes back quoted, the value as a string, which PostgreSQL parses as it did the first time.
    let quoted = |prefix: &str, option: &str| -> anyhow::Result<String> {
        let Some((name, value)) = option.split_once('=') else {
            bail!("cannot read storage parameter {option:?} of table {table}");
        };
        Ok(format!(
            "{prefix}{} = '{}'",
            quote_ident(name),
            value.replace('\'', "''")
        ))
    };
    let options = own
        .unwrap_or_default()
        .iter()
        .map(|o| quoted("", o))
        .chain(
            toast
                .unwrap_or_default()
                .iter()
                .map(|o| quoted("toast.", o)),
        )
        .collect::<anyhow::Result<Vec<String>>>()?;
    if !options.is_empty() {
        sqlx::query(&format!(
            "ALTER TABLE {SHADOW_SCHEMA}.{table} SET ({})",
            options.join(", ")
        ))
        .execute(&mut *conn)
        .await
        .with_context(|| format!("copying the storage parameters of table {table}"))?;
    }
    Ok(())
}

/// The indexes of `schema.table` that are neither unique nor behind a constraint: name and
/// definition.
async fn plain_indexes(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT c.relname::text, pg_get_indexdef(i.indexrelid) \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = $1 AND t.relname = $2 AND NOT i.indisunique \
           AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) \
         ORDER BY c.relname",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(&mut *conn)
    .await?)
}

/// The constraints `k` of table `$2` in schema `$1`.
const CONSTRAINTS_OF: &str = "FROM pg_constraint k JOIN pg_class t ON t.oid = k.conrelid \
     JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = $1 AND t.relname = $2";

/// The primary key of `schema.table`, if it has one: constraint name (also its index's) and the
/// index's definition.
async fn primary_key(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> anyhow::Result<Option<(String, String)>> {
    Ok(sqlx::query_as(&format!(
        "SELECT k.conname::text, pg_get_indexdef(k.conindid) {CONSTRAINTS_OF} AND k.contype = 'p'"
    ))
    .bind(schema)
    .bind(table)
    .fetch_optional(&mut *conn)
    .await?)
}

/// A connection whose unqualified table names resolve to the shadow copies first.
async fn shadow_connection(pool: &PgPool) -> anyhow::Result<PgConnection> {
    let mut conn = pool.acquire().await?.detach();
    sqlx::query(&format!("SET search_path TO {SHADOW_SCHEMA}, public"))
        .execute(&mut conn)
        .await?;
    // Nobody reads the copies before the swap, and a crash discards them: their commits need
    // not wait for the disk. Index builds get room to sort in memory.
    sqlx::query("SET synchronous_commit TO off")
        .execute(&mut conn)
        .await?;
    sqlx::query("SET maintenance_work_mem TO '128MB'")
        .execute(&mut conn)
        .await?;
    // The workers already build indexes side by side, each taking the next from one queue
    // (`IndexBuilds`); a parallel build on top splits `maintenance_work_mem` among its
    // participants (the audit indexes then sort on disk) and costs more CPU for the same index
    // (ADR 0008).
    sqlx::query("SET max_parallel_maintenance_workers TO 0")
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

/// Applies every batch it receives (the events of its types) to the copies — through the
/// projection's [`ReplaySafe::bulk`] applier `bulk` when it has one, else one transaction per
/// batch — then hands the indexes [`prepare_shadow`] left out (`deferred`) to `builds` and
/// builds indexes from there, its own or another projection's, until none is left. Returns the
/// number of events applied.
async fn worker(
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

/// The index builds [`prepare_shadow`] left out, shared by the workers. A worker adds its
/// projection's once its rows are written, then builds from here — its own or another
/// projection's — until nothing is queued and no worker is still writing.
///
/// Why shared: the builds are the end of a rebuild, and they are not even. Audit's three
/// (1M rows each) take longer than every other projection's final write and builds together;
/// built one after the other by audit's own worker, they left a core idle for the last second
/// of a rebuild on two cores once the licenses' final write got shorter (ADR 0009). Idle
/// workers now take them, each on its own session, as serial builds (see
/// [`shadow_connection`]).
struct IndexBuilds {
    queue: std::sync::Mutex<BuildQueue>,
    changed: tokio::sync::Notify,
}

struct BuildQueue {
    /// Builds waiting for a worker: owning projection, statement.
    pending: std::collections::VecDeque<(&'static str, String)>,
    /// Workers whose rows are not all written yet: their builds are still to come.
    writing: usize,
}

impl IndexBuilds {
    fn new(workers: usize) -> Self {
        Self {
            queue: std::sync::Mutex::new(BuildQueue {
                pending: std::collections::VecDeque::new(),
                writing: workers,
            }),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BuildQueue> {
        // Nothing panics while holding it; a poisoned queue is still consistent.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `projection`'s rows are written: its builds may start.
    fn add(&self, projection: &'static str, builds: Vec<String>) {
        {
            let mut queue = self.lock();
            queue.writing -= 1;
            queue
                .pending
                .extend(builds.into_iter().map(|sql| (projection, sql)));
        }
        self.changed.notify_waiters();
    }

    /// The next build to run; `None` once every worker has written its rows and nothing is
    /// queued. Waits while nothing is queued but some worker is still writing.
    async fn next(&self) -> Option<(&'static str, String)> {
        loop {
            // Registered before looking, so that an `add` in between is not missed.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut queue = self.lock();
                if let Some(build) = queue.pending.pop_front() {
                    return Some(build);
                }
                if queue.writing == 0 {
                    return None;
                }
            }
            changed.await;
        }
    }
}

/// Whether `projection` reads events of `aggregate_type`: one of its aggregate types, or any
/// when it names none (as `engine::read_events` selects).
pub fn reads(projection: &dyn ReplaySafe, aggregate_type: &str) -> bool {
    let types = projection.aggregate_types();
    types.is_empty() || types.contains(&aggregate_type)
}

/// Catches the copies up to the commit horizon and puts them in place of the live tables, in one
/// transaction that holds the projector's checkpoint row.
async fn swap(
    pool: &PgPool,
    projection: &dyn ReplaySafe,
    mut applied: u64,
    walked: Checkpoint,
) -> anyhow::Result<Rebuilt> {
    let name = projection.name();
    projections::engine::ensure_checkpoint(pool, name).await?;
    let mut tx = pool.begin().await?;
    // Live readers hold their table locks for one statement; waiting longer than this means
    // something else is wrong, and giving up leaves the live tables as they were.
    sqlx::query("SET LOCAL lock_timeout = '30s'")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT 1 FROM projector_checkpoints WHERE name = $1 FOR UPDATE")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("SET LOCAL search_path TO {SHADOW_SCHEMA}, public"))
        .execute(&mut *tx)
        .await?;
    let mut at = walked;
    loop {
        let events = read_events(&mut tx, &at, projection.aggregate_types(), BATCH).await?;
        let Some(last) = events.last() else { break };
        at = Checkpoint {
            tx_id: last.tx_id,
            position: last.global_position,
        };
        projection.apply_batch(&mut tx, &events).await?;
        applied += events.len() as u64;
    }
    sqlx::query("SET LOCAL search_path TO public")
        .execute(&mut *tx)
        .await?;
    for table in projection.tables() {
        replace_table(&mut tx, table).await?;
    }
    sqlx::query(
        "UPDATE projector_checkpoints SET last_tx_id = $2::text::xid8, last_position = $3, \
         events_applied = $4, updated_at = now() WHERE name = $1",
    )
    .bind(name)
    .bind(at.tx_id.to_string())
    .bind(at.position)
    .bind(i64::try_from(applied)?)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(
        projection = name,
        events = applied,
        position = at.position,
        "rebuilt and swapped in"
    );
    Ok(Rebuilt {
        projection: name,
        events_applied: applied,
        position: at.position,
    })
}

/// Drops `public.table` and moves the shadow copy into its place, renaming the copy's indexes
/// (and so its constraints) to the live names, which migrations and operators refer to.
async fn replace_table(conn: &mut PgConnection, table: &str) -> anyhow::Result<()> {
    let live = indexes(conn, "public", table).await?;
    let live_constraints = constraints(conn, "public", table).await?;
    let owner: String = sqlx::query_scalar(
        "SELECT tableowner::text FROM pg_tables WHERE schemaname = 'public' AND tablename = $1",
    )
    .bind(table)
    .fetch_one(&mut *conn)
    .await
    .with_context(|| format!("live table {table} is missing"))?;
    sqlx::query(&format!("DROP TABLE public.{table}"))
        .execute(&mut *conn)
        .await?;
    sqlx::query(&format!(
        "ALTER TABLE {SHADOW_SCHEMA}.{table} SET SCHEMA public"
    ))
    .execute(&mut *conn)
    .await?;
    sqlx::query(&format!(
        "ALTER TABLE public.{table} OWNER TO {}",
        quote_ident(&owner)
    ))
    .execute(&mut *conn)
    .await?;
    let moved = indexes(conn, "public", table).await?;
    // The copy's indexes were partly built by this tool (see `prepare_shadow`): one missing would
    // silently leave production without it.
    if let Some((definition, name)) = live.iter().find(|(d, _)| !moved.contains_key(*d)) {
        bail!("the rebuilt {table} lacks index {name} ({definition})");
    }
    // Two steps, so that no rename collides with a name still held by another moved index.
    let mut renames = Vec::new();
    for (definition, name) in &moved {
        let Some(wanted) = live.get(definition) else {
            bail!("index {name} of the rebuilt {table} has no live counterpart ({definition})");
        };
        if wanted != name {
            let temporary = format!("ledger_rebuild_tmp_{}", renames.len());
            sqlx::query(&format!(
                "ALTER INDEX public.{} RENAME TO {temporary}",
                quote_ident(name)
            ))
            .execute(&mut *conn)
            .await?;
            renames.push((temporary, wanted.clone()));
        }
    }
    for (temporary, wanted) in renames {
        sqlx::query(&format!(
            "ALTER INDEX public.{temporary} RENAME TO {}",
            quote_ident(&wanted)
        ))
        .execute(&mut *conn)
        .await?;
    }
    // A unique index is not a primary key (`prepare_shadow` turns some keys into plain unique
    // indexes while the copies fill): the constraints must be the live ones too.
    let moved_constraints = constraints(conn, "public", table).await?;
    if moved_constraints != live_constraints {
        bail!(
            "the rebuilt {table} has constraints {moved_constraints:?}, the live one had {live_constraints:?}"
        );
    }
    Ok(())
}

/// The constraints of `schema.table`: name and definition, sorted.
async fn constraints(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(&format!(
        "SELECT k.conname::text, pg_get_constraintdef(k.oid) {CONSTRAINTS_OF} ORDER BY 1, 2"
    ))
    .bind(schema)
    .bind(table)
    .fetch_all(&mut *conn)
    .await?)
}

/// The indexes of `schema.table`: definition (from `USING` on, which names no table) to name.
async fn indexes(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> anyhow::Result<HashMap<String, String>> {
    let rows = sqlx::query("SELECT indexname::text AS name, indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = $2")
        .bind(schema)
        .bind(table)
        .fetch_all(&mut *conn)
        .await?;
    let mut out = HashMap::new();
    for row in rows {
        let name: String = row.try_get("name")?;
        let definition: String = row.try_get("indexdef")?;
        let unique = definition.starts_with("CREATE UNIQUE");
        let tail = definition
            .split_once(" USING ")
            .map_or(definition.as_str(), |(_, t)| t);
        let key = format!("{}{tail}", if unique { "UNIQUE " } else { "" });
        if out.insert(key.clone(), name).is_some() {
            bail!("table {schema}.{table} has two identical indexes ({key})");
        }
    }
    Ok(out)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::IndexBuilds;

    /// A worker done early waits for the builds of one still writing, rather than leaving them
    /// all to it; both take some; every build is handed out once; all stop when the last writer
    /// is done.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_workers_wait_for_and_share_the_builds_of_those_still_writing() {
        let builds = Arc::new(IndexBuilds::new(2));
        builds.add("catalogue", vec!["c1".to_owned()]);
        assert_eq!(builds.next().await, Some(("catalogue", "c1".to_owned())));

        // The helper reports each build it takes and waits for a go before the next, so that
        // the test decides who takes what, whatever the scheduler does.
        let (took_tx, mut took) = tokio::sync::mpsc::unbounded_channel::<String>();
        let (go, mut go_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let helper = {
            let builds = Arc::clone(&builds);
            tokio::spawn(async move {
                while let Some((owner, sql)) = builds.next().await {
                    took_tx.send(format!("{owner}:{sql}")).unwrap();
                    if go_rx.recv().await.is_none() {
                        break;
                    }
                }
            })
        };
        // Nothing queued, one writer left: the helper must wait, not stop.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!helper.is_finished(), "returned while a worker was writing");

        builds.add("audit", (1..=4).map(|i| format!("a{i}")).collect());
        let mut all = Vec::new();
        // The helper wakes and takes one; this worker takes the others.
        let first = tokio::time::timeout(Duration::from_secs(5), took.recv())
            .await
            .expect("the waiting worker takes a build once one is queued")
            .unwrap();
        all.push(first);
        let mut mine = 0;
        while let Some((owner, sql)) = builds.next().await {
            all.push(format!("{owner}:{sql}"));
            mine += 1;
        }
        assert!(mine > 0, "the owner took none of its builds");
        // Queue empty and nobody writing: the helper's next call ends it.
        go.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), helper)
            .await
            .expect("the helper stops once nothing is left")
            .unwrap();
        while let Ok(more) = took.try_recv() {
            all.push(more);
        }
        all.sort();
        assert_eq!(all, ["audit:a1", "audit:a2", "audit:a3", "audit:a4"]);
    }
}
