//! Group commit for the billing inbox (issue #16, ADR 0022 "Intake by group commit"): the
//! webhooks that arrive while a write is in flight are stored together, in one `INSERT` of many
//! rows and one commit, and each is answered only after that commit. A row-per-commit intake
//! spends most of the database's work on commits (one WAL flush, one round trip, one statement
//! each); under Stripe's bursts (a renewal day, a retry storm after an outage) that is the work
//! that decides how fast the endpoint answers.
//!
//! Invariants:
//! - an event is acknowledged (`Ok`) only once the transaction holding its row has committed;
//!   a server killed mid-batch has answered none of the batch, and Stripe redelivers them;
//! - a batch never fails an event for another's sake: when the batch's statement fails, each of
//!   its events is written alone, so only the one the database refuses is refused;
//! - alone, an event is written at once: a writer waits for the first event, never for a batch
//!   to fill, so a single sender's latency is the single-row `INSERT`'s plus a channel hop;
//! - one event id in a batch twice is stored once; the later copies answer `duplicate`, as a
//!   redelivery after the commit would.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use domain::Timestamp;
use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

/// How many events one batch holds at most.
const MAX_BATCH: usize = 64;

/// How many bytes of payload a batch gathers before it stops taking more (it may exceed this by
/// one body, at most the webhook's body limit): a batch is one statement, sent whole.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// How many batches are written at once: one commits while the next gathers what arrived
/// meanwhile. Each holds a connection of the request pool while it writes.
const WRITERS: usize = 2;

/// How many events may wait for a writer before senders wait to hand theirs over.
const QUEUE: usize = 1024;

/// One inbox row, read and checked by [`crate::billing`] before it comes here.
#[derive(Clone, Debug)]
pub struct InboxRow {
    pub event_id: String,
    pub event_type: String,
    pub created: Timestamp,
    pub livemode: bool,
    pub api_version: Option<String>,
    /// The body as received, stored as `json` (its bytes kept, not re-serialized).
    pub payload: String,
    pub received_at: Timestamp,
}

struct Pending {
    row: InboxRow,
    /// `Ok(true)` when this delivery stored the event, `Ok(false)` when it was stored already.
    reply: oneshot::Sender<Result<bool, sqlx::Error>>,
}

/// The writers of one server's intake, started on first use.
#[derive(Debug)]
pub struct Intake {
    queue: mpsc::Sender<Pending>,
    /// How many batches the writers took (a batch is one transaction unless refused whole).
    batches: Arc<AtomicU64>,
}

impl Intake {
    /// Starts the writers over `pool` (on the current tokio runtime). They stop when the last
    /// handle is dropped.
    pub fn start(pool: PgPool) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let batches = Arc::new(AtomicU64::new(0));
        for _ in 0..WRITERS {
            tokio::spawn(writer(pool.clone(), rx.clone(), batches.clone()));
        }
        Self { queue, batches }
    }

    /// How many batches were written so far: fewer than the events stored when they were
    /// committed together.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Stores `row` with whatever else is arriving, and answers once it is committed: `true`
    /// when this delivery stored it, `false` when its id was stored already.
    ///
    /// # Errors
    /// The database's, for this row (or the batch's, when the writers stopped).
    pub async fn store(&self, row: InboxRow) -> Result<bool, sqlx::Error> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { row, reply })
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        // A writer that died (a panic) drops the reply: nothing is known to be stored, so the
        // sender is refused and Stripe redelivers.
        answer.await.unwrap_or(Err(sqlx::Error::PoolClosed))
    }
}

async fn writer(pool: PgPool, rx: Arc<Mutex<mpsc::Receiver<Pending>>>, batches: Arc<AtomicU64>) {
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut bytes = first.row.payload.len();
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(next) => {
                        bytes += next.row.payload.len();
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            batch
        };
        batches.fetch_add(1, Ordering::Relaxed);
        // In a task of its own, so that a panic in one batch (its senders' replies dropped:
        // refused, redelivered) does not end this writer, and with it, once both are gone,
        // every later webhook.
        if let Err(e) = tokio::spawn(write(pool.clone(), batch)).await
            && e.is_panic()
        {
            tracing::error!(error = %e, "the webhook intake panicked writing a batch; its events were refused");
        }
    }
}

/// Writes one batch and answers each of its senders.
async fn write(pool: PgPool, batch: Vec<Pending>) {
    let rows: Vec<&InboxRow> = batch.iter().map(|p| &p.row).collect();
    let results = store_batch(&pool, &rows).await;
    for (pending, result) in batch.into_iter().zip(results) {
        // A sender that went away (its connection closed) is not waiting for the answer.
        let _ = pending.reply.send(result);
    }
}

/// Stores `rows` in one transaction when the database takes them all, else each alone; for
/// each row, in order, whether it stored its event (`true`) or found it stored already
/// (`false`, also for a later copy of an id in `rows`), or why the database refused it.
pub async fn store_batch(pool: &PgPool, rows: &[&InboxRow]) -> Vec<Result<bool, sqlx::Error>> {
    match insert(pool, rows).await {
        Ok(stored) => {
            // The first copy of an id takes the answer "stored"; the others are duplicates.
            let mut answered: HashSet<&str> = HashSet::new();
            rows.iter()
                .map(|row| {
                    Ok(stored.contains(&row.event_id) && answered.insert(row.event_id.as_str()))
                })
                .collect()
        }
        Err(e) if rows.len() == 1 => vec![Err(e)],
        // The database unreachable, a connection lost (perhaps after the commit): nothing is
        // known of any row, so every sender is refused (503: Stripe redelivers, and a row
        // committed after all answers `duplicate`). Row by row would wait out the pool's
        // timeout once per row.
        Err(e) if !refused_for_its_data(&e) => {
            let why = e.to_string();
            rows.iter()
                .map(|_| Err(sqlx::Error::Io(std::io::Error::other(why.clone()))))
                .collect()
        }
        Err(e) => {
            tracing::warn!(error = %e, events = rows.len(), "inbox batch refused; storing its events one by one");
            let mut results = Vec::with_capacity(rows.len());
            for row in rows {
                results.push(
                    insert(pool, &[*row])
                        .await
                        .map(|stored| stored.contains(&row.event_id)),
                );
            }
            results
        }
    }
}

/// Whether the database refused a statement for what it was given (a data exception, a
/// constraint, a limit: SQLSTATE classes 22, 23, 54), so that another row alone may go in.
fn refused_for_its_data(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("22") || c.starts_with("23") || c.starts_with("54")),
        _ => false,
    }
}

/// Inserts `rows` in one statement (one transaction), each id once; returns the ids this
/// statement stored (those not stored before).
///
/// # Errors
/// The database's; then nothing of `rows` is stored.
pub async fn insert(pool: &PgPool, rows: &[&InboxRow]) -> Result<HashSet<String>, sqlx::Error> {
    // One id twice in one statement: the first copy is the one sent.
    let mut seen: HashSet<&str> = HashSet::new();
    let mut unique: Vec<&InboxRow> = rows
        .iter()
        .copied()
        .filter(|row| seen.insert(row.event_id.as_str()))
        .collect();
    // In one order for every statement: two writers inserting the same ids wait for each other
    // (`ON CONFLICT` waits on a row being inserted) and, in opposite orders, would deadlock.
    // (Events of one batch arrived together: their order of arrival is no order.)
    unique.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    let ids: Vec<&str> = unique.iter().map(|r| r.event_id.as_str()).collect();
    let types: Vec<&str> = unique.iter().map(|r| r.event_type.as_str()).collect();
    let created: Vec<Timestamp> = unique.iter().map(|r| r.created).collect();
    let livemode: Vec<bool> = unique.iter().map(|r| r.livemode).collect();
    let versions: Vec<Option<&str>> = unique.iter().map(|r| r.api_version.as_deref()).collect();
    let payloads: Vec<&str> = unique.iter().map(|r| r.payload.as_str()).collect();
    let received: Vec<Timestamp> = unique.iter().map(|r| r.received_at).collect();
    let stored: Vec<String> = sqlx::query_scalar(
        "INSERT INTO billing_inbox (event_id, gateway, event_type, created, livemode, api_version, \
         payload, received_at, next_attempt_at) \
         SELECT id, 'stripe', kind, created, livemode, version, payload::json, received, received \
         FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bool[], $5::text[], \
                     $6::text[], $7::timestamptz[]) \
              AS r(id, kind, created, livemode, version, payload, received) \
         ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
    )
    .bind(&ids)
    .bind(&types)
    .bind(&created)
    .bind(&livemode)
    .bind(&versions)
    .bind(&payloads)
    .bind(&received)
    .fetch_all(pool)
    .await?;
    Ok(stored.into_iter().collect())
}
