//! The answers of writes sent with an `Idempotency-Key` (table `idempotency_keys`, ADR 0016): a
//! retry with the same key and request gets the first answer again, byte for byte, and executes
//! nothing.
//!
//! Two layers, so that a keyed request costs no statement before its command:
//! - **In this process's memory**, a request [`IdempotencyStore::claim`]s its (scope, key): a
//!   concurrent duplicate gets `InProgress`, another request with the key `Reused`. The request
//!   then runs, its command recording the key on its first event, and either
//!   [`IdempotencyStore::complete`]s the claim with its (successful) answer or
//!   [`IdempotencyStore::release`]s it. A completed answer stays in memory, where a retry finds
//!   it, until one writer has stored it with every answer completed meanwhile (one statement
//!   for many answers, after the responses); then the memory forgets it.
//! - **The events' own `(actor, idempotency_key)` index** decides for everything the memory
//!   does not hold (a retry after the answer was written, on another server process, after a
//!   restart): the retry's command appends nothing and answers the first request's outcome, or
//!   refuses another request with the key. Only then is the table read
//!   ([`IdempotencyStore::stored`]), for the first answer's exact bytes, which hold what the
//!   events do not (a secret shown once).
//!
//! A graceful shutdown writes every pending answer ([`IdempotencyStore::drain`]); a process killed
//! between a response and its answer's write loses that answer, and a retry is answered from the
//! events (a secret shown once is not shown again then).
//!
//! Bodies are stored encrypted (XChaCha20-Poly1305, key derived from the server's pepper, the
//! row's scope, key, status and headers as associated data): a token's or license key's secret,
//! shown once, is answered again to a retry but never stored in clear. A row whose body does not
//! decrypt (another pepper, a row moved to another scope) is treated as absent.
//!
//! The scope is the principal, spelled by the front end (`token:<id>`, `key:<keyed hash>`); this
//! module knows no HTTP, only statuses as numbers and headers as text.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use sqlx::{PgPool, Row};
use tokio::sync::Notify;
use uuid::Uuid;

/// How long answers are kept by default: API.md promises 24 hours.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Rows the pruner deletes per statement, so that a large backlog never holds one long
/// transaction (and its locks) over the table.
const PRUNE_BATCH: i64 = 10_000;

/// Answers waiting for their write at most; beyond (the database unreachable for long), the
/// oldest are given up, with a warning: their retries run their handlers, under the events'
/// index.
const MAX_PENDING: usize = 100_000;

/// How long the writer waits for more answers before it writes what it has.
const WRITE_LINGER: Duration = Duration::from_millis(25);

/// Attempts to write an answer the database refuses (not an unreachable database) before it is
/// given up.
const WRITE_ATTEMPTS: u32 = 5;

/// Answers one statement writes at most.
const WRITE_BATCH: usize = 1_000;

const NONCE_LEN: usize = 24;

/// A request's hold on its key, to complete or release.
#[derive(Clone, Debug)]
pub struct Claim {
    scope: String,
    key: String,
    claim_id: Uuid,
}

/// An answer as stored: status, headers (name, value) and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What a claim found.
#[derive(Debug)]
pub enum Claimed {
    /// The key is this request's: run it, then complete or release the claim.
    Fresh(Claim),
    /// The first request's answer: answer it again, execute nothing.
    Replay(StoredAnswer),
    /// A request with this key is still running.
    InProgress,
    /// The key was first used with another request (method, path or body).
    Reused,
}

/// A claim held in memory: by a running request (`answer` none), or by an answer not yet written.
struct Held {
    claim_id: Uuid,
    request_hash: [u8; 32],
    answer: Option<StoredAnswer>,
}

type Claims = HashMap<(String, String), Held>;

/// The store of idempotent answers, over the request pool.
#[derive(Clone)]
pub struct IdempotencyStore {
    pool: PgPool,
    cipher: XChaCha20Poly1305,
    retention: Duration,
    claims: Arc<Mutex<Claims>>,
    writer: Arc<Writer>,
}

/// A stored row, as a retry reads it.
struct Found {
    request_hash: Vec<u8>,
    done: bool,
    status: Option<i16>,
    headers: Option<String>,
    body: Option<Vec<u8>>,
    expired: bool,
}

/// An answer to write.
struct Answered {
    claim: Claim,
    /// Of a request that executed for the first time (see [`IdempotencyStore::complete`]).
    first: bool,
    request_hash: [u8; 32],
    status: i16,
    headers: String,
    sealed: Vec<u8>,
}

/// The answers waiting for their write, and whether a writer task is running.
#[derive(Default)]
struct Writer {
    state: Mutex<WriterState>,
    /// Woken when the writer has nothing left to write.
    idle: Notify,
    /// Tells the writer to write without lingering (a drain waits).
    flush_now: Notify,
}

#[derive(Default)]
struct WriterState {
    pending: std::collections::VecDeque<Answered>,
    running: bool,
}

/// Clears the writer's flag when its task ends abnormally (a panic, its runtime dropped before
/// or while it ran), so that no drain waits for a writer that is gone and the next answer starts
/// one. Disarmed by the writer's normal end, which clears the flag itself.
struct Running {
    store: IdempotencyStore,
    armed: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.armed {
            self.store
                .writer
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .running = false;
            self.store.writer.idle.notify_waiters();
        }
    }
}

impl std::fmt::Debug for IdempotencyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyStore")
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

/// The answer-encryption key: HMAC-SHA256 of a fixed label under the pepper, so it is neither the
/// pepper itself (which keys license-key hashes) nor usable to compute those.
fn answer_key(pepper: &[u8; 32]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(pepper).expect("HMAC takes any key");
    mac.update(b"license-ledger/idempotency-answers/1");
    mac.finalize().into_bytes().into()
}

/// The associated data of a row's body: the body decrypts only in the row it was written for,
/// with the status and headers it was written with.
fn associated_data(scope: &str, key: &str, status: u16, headers: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(scope.len() + key.len() + headers.len() + 40);
    aad.extend_from_slice(b"license-ledger/idempotency/1\0");
    aad.extend_from_slice(scope.as_bytes());
    aad.push(0);
    aad.extend_from_slice(key.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&status.to_be_bytes());
    aad.extend_from_slice(headers.as_bytes());
    aad
}

fn interval(d: Duration) -> String {
    format!("{} milliseconds", d.as_millis())
}

impl IdempotencyStore {
    /// A store over `pool`, encrypting with a key derived from `pepper`, keeping answers for
    /// `retention`.
    pub fn new(pool: PgPool, pepper: &[u8; 32], retention: Duration) -> Self {
        let key = answer_key(pepper);
        Self {
            pool,
            cipher: XChaCha20Poly1305::new((&key).into()),
            retention,
            claims: Arc::default(),
            writer: Arc::default(),
        }
    }

    /// How long answers are kept.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    fn claims(&self) -> std::sync::MutexGuard<'_, Claims> {
        self.claims.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims `key` in `scope` for a request whose digest is `request_hash`, in this process's
    /// memory (no statement): `Fresh` unless a request with this key runs here now (`InProgress`)
    /// or its answer waits here for its write (`Replay`), or either holds another request
    /// (`Reused`). See the module documentation for what the events' index adds.
    pub fn claim(&self, scope: &str, key: &str, request_hash: &[u8; 32]) -> Claimed {
        let claim_id = Uuid::now_v7();
        let mut claims = self.claims();
        let id = (scope.to_owned(), key.to_owned());
        if let Some(held) = claims.get(&id) {
            return if held.request_hash != *request_hash {
                Claimed::Reused
            } else if let Some(answer) = &held.answer {
                Claimed::Replay(answer.clone())
            } else {
                Claimed::InProgress
            };
        }
        claims.insert(
            id,
            Held {
                claim_id,
                request_hash: *request_hash,
                answer: None,
            },
        );
        Claimed::Fresh(Claim {
            scope: scope.to_owned(),
            key: key.to_owned(),
            claim_id,
        })
    }

    /// The answer stored for `key` in `scope` within the retention, read when the events' index
    /// said the request ran before (its command appended nothing, and answered the first
    /// outcome): `Replay` with the first answer, byte for byte; `Reused` when the stored answer
    /// is another request's; `None` when none is stored (pruned, lost with a process that died
    /// before writing it, or undecryptable). One statement, on retries only: never on a first
    /// execution's path.
    ///
    /// # Errors
    /// Database errors.
    pub async fn stored(
        &self,
        scope: &str,
        key: &str,
        request_hash: &[u8; 32],
    ) -> Result<Option<Claimed>, sqlx::Error> {
        let found = read_row(&self.pool, scope, key, self.retention).await?;
        // An answer past the retention is gone, whatever the pruner has not deleted yet; a row
        // left `in_progress` by a server of an earlier version holds no answer.
        let Some(row) = found.filter(|row| !row.expired && row.done) else {
            return Ok(None);
        };
        if row.request_hash != request_hash[..] {
            return Ok(Some(Claimed::Reused));
        }
        let opened = match (row.status, &row.headers, &row.body) {
            (Some(status), Some(headers), Some(body)) => {
                self.open(scope, key, status, headers, body)
            }
            _ => None,
        };
        if opened.is_none() {
            tracing::warn!("a stored idempotent answer does not decrypt (another pepper?)");
        }
        Ok(opened.map(Claimed::Replay))
    }

    /// Keeps the answer of the request holding `claim`: answered from memory to a retry at once,
    /// written to the table shortly after (see the module documentation). Nothing happens when
    /// the claim is no longer held.
    ///
    /// `first`: the request executed for the first time (its command recorded the key on a new
    /// event, which the events' index allows once per key): its answer replaces whatever is
    /// stored for the key. Otherwise (a request that appended nothing, or whose command replayed
    /// the key and found no stored answer) it is stored only where none is: a re-derived answer
    /// must never replace a first answer another process is about to write.
    ///
    /// # Errors
    /// No randomness for the nonce (the claim is released then).
    pub fn complete(
        &self,
        claim: &Claim,
        answer: &StoredAnswer,
        first: bool,
    ) -> Result<(), sqlx::Error> {
        let headers = serde_json::to_string(&answer.headers).expect("strings serialize");
        let sealed = match self.seal(
            &claim.scope,
            &claim.key,
            answer.status,
            &headers,
            &answer.body,
        ) {
            Ok(sealed) => sealed,
            Err(e) => {
                self.release(claim);
                return Err(e);
            }
        };
        let request_hash = {
            let mut claims = self.claims();
            match claims.get_mut(&(claim.scope.clone(), claim.key.clone())) {
                Some(held) if held.claim_id == claim.claim_id => {
                    held.answer = Some(answer.clone());
                    held.request_hash
                }
                _ => return Ok(()),
            }
        };
        self.enqueue(Answered {
            claim: claim.clone(),
            first,
            request_hash,
            status: i16::try_from(answer.status).unwrap_or(i16::MAX),
            headers,
            sealed,
        });
        Ok(())
    }

    /// Gives the key back: a retry runs the request again.
    pub fn release(&self, claim: &Claim) {
        let mut claims = self.claims();
        let id = (claim.scope.clone(), claim.key.clone());
        if claims
            .get(&id)
            .is_some_and(|h| h.claim_id == claim.claim_id)
        {
            claims.remove(&id);
        }
    }

    /// Waits until no claim is held and every answer is written (or given up): at shutdown,
    /// after the last request, and in tests and benchmarks that look at the table. The writer
    /// writes at once, without lingering.
    pub async fn drain(&self) {
        loop {
            let idle = self.writer.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            let writing = {
                let state = self
                    .writer
                    .state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                state.running || !state.pending.is_empty()
            };
            if writing {
                self.writer.flush_now.notify_one();
                self.start_writer();
                idle.await;
            } else if self.claims().is_empty() {
                return;
            } else {
                // Requests still running hold claims; their answers come (or they release).
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// How many claims this process holds (running requests, answers not yet written).
    pub fn held(&self) -> usize {
        self.claims().len()
    }

    /// Starts a writer when answers wait and none runs.
    fn start_writer(&self) {
        let start = {
            let mut state = self
                .writer
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            !state.pending.is_empty() && !std::mem::replace(&mut state.running, true)
        };
        if start {
            // The guard exists before the task: a task dropped before its first poll (its
            // runtime shutting down) clears the flag all the same.
            let running = Running {
                store: self.clone(),
                armed: true,
            };
            tokio::spawn(async move { running.store.clone().write_pending(running).await });
        }
    }

    /// Queues an answer for the writer, starting it when none runs.
    fn enqueue(&self, answered: Answered) {
        {
            let mut state = self
                .writer
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            state.pending.push_back(answered);
            if state.pending.len() > MAX_PENDING
                && let Some(lost) = state.pending.pop_front()
            {
                tracing::warn!(
                    "too many idempotent answers wait for the database; the oldest is given up (its retry runs again)"
                );
                self.release(&lost.claim);
            }
        }
        self.start_writer();
    }

    /// The writer: writes what is pending, a batch per statement, until nothing is.
    async fn write_pending(self, mut running: Running) {
        loop {
            // Lingers so that one statement carries every answer completed meanwhile: the
            // writer is off the requests' path, and a statement per answer or two cost the
            // command path a third of its rate at 16 writers (BENCHMARKS.md).
            tokio::select! {
                () = tokio::time::sleep(WRITE_LINGER) => {}
                () = self.writer.flush_now.notified() => {}
            }
            let batch: Vec<Answered> = {
                let mut state = self
                    .writer
                    .state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if state.pending.is_empty() {
                    // In the section that found nothing pending: an answer queued after it
                    // finds no writer running and starts one.
                    state.running = false;
                    running.armed = false;
                    drop(state);
                    self.writer.idle.notify_waiters();
                    return;
                }
                let n = state.pending.len().min(WRITE_BATCH);
                state.pending.drain(..n).collect()
            };
            self.write_batch(batch).await;
        }
    }

    /// Writes `batch`, then lets the memory forget its answers (a retry finds the rows from now
    /// on). While the database is unreachable the batch is retried with back-off, however long
    /// (the pending answers behind it are bounded by [`MAX_PENDING`]); a batch refused for
    /// another reason is written row by row, and a row refused [`WRITE_ATTEMPTS`] times is given
    /// up (its retry runs its handler, under the events' index).
    async fn write_batch(&self, batch: Vec<Answered>) {
        let mut queue = std::collections::VecDeque::from([batch]);
        while let Some(rows) = queue.pop_front() {
            let mut failures = 0u32;
            loop {
                match write_rows(&self.pool, &rows, self.retention).await {
                    Ok(()) => {
                        for answered in &rows {
                            self.release(&answered.claim);
                        }
                        break;
                    }
                    Err(e) if unreachable(&e) => {
                        failures = failures.saturating_add(1);
                        if failures == 1 || failures.is_multiple_of(20) {
                            tracing::warn!(error = %e, answers = rows.len(), failures, "could not store idempotent answers; the database is unreachable, will retry");
                        }
                    }
                    Err(e) if rows.len() > 1 => {
                        tracing::warn!(error = %e, answers = rows.len(), "a batch of idempotent answers was refused; writing them one by one");
                        queue.extend(rows.into_iter().map(|row| vec![row]));
                        break;
                    }
                    Err(e) => {
                        failures += 1;
                        if failures >= WRITE_ATTEMPTS {
                            tracing::error!(error = %e, "an idempotent answer was refused; given up (its retry runs again)");
                            for answered in &rows {
                                self.release(&answered.claim);
                            }
                            break;
                        }
                        tracing::warn!(error = %e, failures, "an idempotent answer was refused; will retry");
                    }
                }
                let wait = Duration::from_millis(50u64 << failures.min(6));
                tokio::time::sleep(wait).await;
            }
        }
    }

    fn seal(
        &self,
        scope: &str,
        key: &str,
        status: u16,
        headers: &str,
        body: &[u8],
    ) -> Result<Vec<u8>, sqlx::Error> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| sqlx::Error::Protocol(format!("no randomness for a nonce: {e}")))?;
        let aad = associated_data(scope, key, status, headers);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            .map_err(|_| sqlx::Error::Protocol("the answer could not be encrypted".into()))?;
        let mut stored = Vec::with_capacity(NONCE_LEN + sealed.len());
        stored.extend_from_slice(&nonce);
        stored.extend_from_slice(&sealed);
        Ok(stored)
    }

    fn open(
        &self,
        scope: &str,
        key: &str,
        status: i16,
        headers: &str,
        stored: &[u8],
    ) -> Option<StoredAnswer> {
        let status = u16::try_from(status).ok()?;
        if stored.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = stored.split_at(NONCE_LEN);
        let aad = associated_data(scope, key, status, headers);
        let body = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .ok()?;
        let headers = serde_json::from_str(headers).ok()?;
        Some(StoredAnswer {
            status,
            headers,
            body,
        })
    }
}

/// Reads the stored row of `key` in `scope`, if any.
async fn read_row(
    pool: &PgPool,
    scope: &str,
    key: &str,
    retention: Duration,
) -> Result<Option<Found>, sqlx::Error> {
    let Some(row) = sqlx::query(
        "SELECT request_hash, state = 'done' AS done, status, headers::text AS headers, body, \
                created_at < now() - $3::interval AS expired \
           FROM idempotency_keys WHERE scope = $1 AND key = $2",
    )
    .bind(scope)
    .bind(key)
    .bind(interval(retention))
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    Ok(Some(Found {
        request_hash: row.try_get("request_hash")?,
        done: row.try_get("done")?,
        status: row.try_get("status")?,
        headers: row.try_get("headers")?,
        body: row.try_get("body")?,
        expired: row.try_get("expired")?,
    }))
}

/// Whether a write failed because the database cannot be reached now (worth retrying for as
/// long as it lasts), rather than because it refused the statement.
fn unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        // Connection exceptions, insufficient resources, operator intervention (a shutdown, a
        // database starting up): SQLSTATE classes 08, 53 and 57.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| ["08", "53", "57"].iter().any(|class| c.starts_with(class))),
        _ => false,
    }
}

/// Writes answers. A first execution's answer replaces whatever the key's row holds: the events'
/// index let its request record the key, so no earlier request with the key executed, and a row
/// there holds a request that changed nothing or an answer re-derived from the events. Any other
/// answer is written only where no answer is (or one past the retention, or a claim left
/// `in_progress` by a server of ADR 0016's version): it must not replace the first answer.
async fn write_rows(
    pool: &PgPool,
    rows: &[Answered],
    retention: Duration,
) -> Result<(), sqlx::Error> {
    let (first, other): (Vec<&Answered>, Vec<&Answered>) = rows.iter().partition(|a| a.first);
    for (group, replaces) in [(first, true), (other, false)] {
        if group.is_empty() {
            continue;
        }
        let mut scopes = Vec::with_capacity(group.len());
        let mut keys = Vec::with_capacity(group.len());
        let mut hashes = Vec::with_capacity(group.len());
        let mut ids = Vec::with_capacity(group.len());
        let mut statuses = Vec::with_capacity(group.len());
        let mut headers = Vec::with_capacity(group.len());
        let mut bodies = Vec::with_capacity(group.len());
        let mut seen = std::collections::HashSet::new();
        // A key twice in one statement would fail it ("cannot affect row a second time"); the
        // memory keeps one claim per key, so this only guards against what cannot happen.
        for row in group.iter().rev() {
            if !seen.insert((row.claim.scope.as_str(), row.claim.key.as_str())) {
                continue;
            }
            scopes.push(row.claim.scope.as_str());
            keys.push(row.claim.key.as_str());
            hashes.push(&row.request_hash[..]);
            ids.push(row.claim.claim_id);
            statuses.push(row.status);
            headers.push(row.headers.as_str());
            bodies.push(row.sealed.as_slice());
        }
        let only_where = if replaces {
            ""
        } else {
            " WHERE idempotency_keys.created_at < now() - $8::interval \
                 OR idempotency_keys.state <> 'done'"
        };
        let sql = format!(
            "INSERT INTO idempotency_keys \
                    (scope, key, request_hash, claim_id, state, status, headers, body) \
             SELECT scope, key, request_hash, claim_id, 'done', status, headers::json, body \
               FROM unnest($1::text[], $2::text[], $3::bytea[], $4::uuid[], $5::int2[], \
                           $6::text[], $7::bytea[]) \
                    AS u(scope, key, request_hash, claim_id, status, headers, body) \
             ON CONFLICT (scope, key) DO UPDATE \
                SET request_hash = EXCLUDED.request_hash, claim_id = EXCLUDED.claim_id, \
                    state = 'done', status = EXCLUDED.status, headers = EXCLUDED.headers, \
                    body = EXCLUDED.body, created_at = now(){only_where}"
        );
        let mut query = sqlx::query(&sql)
            .bind(&scopes)
            .bind(&keys)
            .bind(&hashes)
            .bind(&ids)
            .bind(&statuses)
            .bind(&headers)
            .bind(&bodies);
        if !replaces {
            query = query.bind(interval(retention));
        }
        query.execute(pool).await?;
    }
    Ok(())
}

/// Deletes the answers and claims older than `retention`, in batches; how many went.
///
/// # Errors
/// Database errors.
pub async fn prune(pool: &PgPool, retention: Duration) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    loop {
        let batch = sqlx::query(
            "DELETE FROM idempotency_keys WHERE ctid IN ( \
                SELECT ctid FROM idempotency_keys WHERE created_at < now() - $1::interval LIMIT $2)",
        )
        .bind(interval(retention))
        .bind(PRUNE_BATCH)
        .execute(pool)
        .await?
        .rows_affected();
        deleted += batch;
        if batch < u64::try_from(PRUNE_BATCH).unwrap_or(u64::MAX) {
            return Ok(deleted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> IdempotencyStore {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .expect("a lazy pool");
        IdempotencyStore::new(pool, &[7; 32], DEFAULT_RETENTION)
    }

    /// Claims in memory: a duplicate while the first runs is in progress, another request with
    /// the key reused, a completed answer replayed; while the database is unreachable, the answer
    /// waits in memory, retried, and is not given up (a failover must not lose answers).
    #[tokio::test(start_paused = true)]
    async fn claims_are_held_in_memory_and_answers_wait_out_an_unreachable_database() {
        let store = store();
        let (one, two) = ([1; 32], [2; 32]);
        let Claimed::Fresh(claim) = store.claim("token:a", "k", &one) else {
            panic!("a new key is fresh");
        };
        assert!(matches!(
            store.claim("token:a", "k", &one),
            Claimed::InProgress
        ));
        assert!(matches!(store.claim("token:a", "k", &two), Claimed::Reused));
        let Claimed::Fresh(other) = store.claim("token:b", "k", &one) else {
            panic!("another scope's key is its own");
        };
        store.release(&other);
        let answer = StoredAnswer {
            status: 201,
            headers: vec![("content-type".into(), "application/json".into())],
            body: b"{}".to_vec(),
        };
        store.complete(&claim, &answer, true).unwrap();
        // The pool points nowhere: every write fails as unreachable (the paused clock skips the
        // back-off; ten minutes pass).
        tokio::time::sleep(Duration::from_secs(600)).await;
        match store.claim("token:a", "k", &one) {
            Claimed::Replay(replayed) => assert_eq!(replayed, answer),
            other => panic!("expected the answer from memory, got {other:?}"),
        }
        assert_eq!(store.held(), 1);
    }

    #[test]
    fn only_an_unreachable_database_is_waited_out() {
        assert!(unreachable(&sqlx::Error::PoolTimedOut));
        assert!(unreachable(&sqlx::Error::Io(std::io::Error::other(
            "reset"
        ))));
        assert!(!unreachable(&sqlx::Error::PoolClosed));
        assert!(!unreachable(&sqlx::Error::Protocol("refused".into())));
    }

    #[tokio::test]
    async fn a_released_claim_frees_its_key_and_a_stale_release_frees_nothing() {
        let store = store();
        let Claimed::Fresh(first) = store.claim("token:a", "k", &[1; 32]) else {
            panic!("fresh");
        };
        store.release(&first);
        let Claimed::Fresh(second) = store.claim("token:a", "k", &[1; 32]) else {
            panic!("fresh again after the release");
        };
        store.release(&first); // the first request's late release
        assert!(matches!(
            store.claim("token:a", "k", &[1; 32]),
            Claimed::InProgress
        ));
        store.release(&second);
    }

    #[tokio::test]
    async fn a_sealed_body_opens_only_in_its_own_row_with_its_own_status_and_headers() {
        let store = store();
        let headers = r#"[["content-type","application/json"]]"#;
        let body = br#"{"token":"llt_secret"}"#;
        let sealed = store
            .seal("token:a", "k1", 201, headers, body)
            .expect("sealed");
        assert!(
            !sealed.windows(10).any(|w| w == b"llt_secret"),
            "the secret is not stored in clear"
        );
        let opened = store.open("token:a", "k1", 201, headers, &sealed).unwrap();
        assert_eq!(opened.body, body);
        assert_eq!(opened.status, 201);
        assert!(store.open("token:b", "k1", 201, headers, &sealed).is_none());
        assert!(store.open("token:a", "k2", 201, headers, &sealed).is_none());
        assert!(store.open("token:a", "k1", 200, headers, &sealed).is_none());
        assert!(store.open("token:a", "k1", 201, "[]", &sealed).is_none());
        let other = IdempotencyStore::new(store.pool.clone(), &[8; 32], DEFAULT_RETENTION);
        assert!(other.open("token:a", "k1", 201, headers, &sealed).is_none());
        assert_ne!(
            store.seal("token:a", "k1", 201, headers, body).unwrap(),
            sealed,
            "a fresh nonce each time"
        );
    }
}
