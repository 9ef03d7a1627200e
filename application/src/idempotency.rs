//! The answers of writes sent with an `Idempotency-Key` (table `idempotency_keys`, ADR 0016): a
//! retry with the same key and request gets the first answer again, byte for byte, and executes
//! nothing.
//!
//! A request [`IdempotencyStore::claim`]s its (scope, key) with one `INSERT`; the front end runs
//! it and then either [`IdempotencyStore::complete`]s the claim with the answer or
//! [`IdempotencyStore::release`]s it (a 5xx, a dropped request: a retry may run again, and the
//! events' own idempotency index keeps a command from appending twice). A claim still
//! `in_progress` after `stale_after` (the request deadline) belonged to a server that died
//! mid-request: the next request with the same key and request takes it over.
//!
//! Bodies are stored encrypted (XChaCha20-Poly1305, key derived from the server's pepper, the
//! row's scope, key, status and headers as associated data): a token's or license key's secret,
//! shown once, is answered again to a retry but never stored in clear. A row whose body does not
//! decrypt (another pepper, a row moved to another scope) is treated as absent and taken over.
//!
//! The scope is the principal, spelled by the front end (`token:<id>`, `key:<keyed hash>`); this
//! module knows no HTTP, only statuses as numbers and headers as text.

use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;

use sqlx::{PgPool, Row};
use tokio::sync::oneshot;
use uuid::Uuid;

/// How long answers are kept by default: API.md promises 24 hours.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Rows the pruner deletes per statement, so that a large backlog never holds one long
/// transaction (and its locks) over the table.
const PRUNE_BATCH: i64 = 10_000;

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

/// The store of idempotent answers, over the request pool.
#[derive(Clone)]
pub struct IdempotencyStore {
    pool: PgPool,
    cipher: XChaCha20Poly1305,
    retention: Duration,
    claims: Arc<Batch<NewClaim>>,
    answers: Arc<Batch<Answered>>,
}

/// A first claim to insert.
struct NewClaim {
    scope: String,
    key: String,
    request_hash: Vec<u8>,
    claim_id: Uuid,
}

/// An answer to store over its claim.
struct Answered {
    claim: Claim,
    status: i16,
    headers: String,
    sealed: Vec<u8>,
}

/// Flushes of one kind under way at once: one would serialize every claim behind the statement in
/// flight. 4 measured 0.25 of the rate without keys at 16 writers on a quiet machine, 8 and 64
/// both 0.36 (BENCHMARKS.md): 8 leaves the pool's other connections to the commands, and
/// requests beyond 8 still share statements.
const CONCURRENT_FLUSHES: usize = 8;

type Reply = oneshot::Sender<Result<bool, SharedError>>;

/// A batch's error, given to each request of the batch: the kind that decides the answer (the
/// database unreachable: 503; anything else: 500) and its text. `sqlx::Error` is not `Clone`,
/// and a text alone made every outage of the store a 500.
#[derive(Clone, Debug)]
enum SharedError {
    Unavailable(String),
    Other(String),
}

impl SharedError {
    fn of(e: &sqlx::Error) -> Self {
        match e {
            // The kinds `api::error` answers 503 for.
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => Self::Unavailable(e.to_string()),
            _ => Self::Other(e.to_string()),
        }
    }

    /// An error of the same kind for the request that waited on the batch.
    fn into_error(self) -> sqlx::Error {
        match self {
            Self::Unavailable(text) => sqlx::Error::Io(std::io::Error::other(text)),
            Self::Other(text) => sqlx::Error::Protocol(text),
        }
    }
}

/// Concurrent requests' rows written by one statement (group commit): a request queues its row
/// and waits for a flush permit; whoever gets one writes every row queued by then, and the others
/// find their answer already given. At 16 writers one statement carries many rows where each
/// request paid a round trip and a transaction of its own (ADR 0016, BENCHMARKS.md).
struct Batch<T> {
    queue: std::sync::Mutex<Vec<(T, Reply)>>,
    flushing: tokio::sync::Semaphore,
}

impl<T> Default for Batch<T> {
    fn default() -> Self {
        Self {
            queue: std::sync::Mutex::new(Vec::new()),
            flushing: tokio::sync::Semaphore::new(CONCURRENT_FLUSHES),
        }
    }
}

impl<T: Send + 'static> Batch<T> {
    /// Writes `item` with whatever else is queued; what `flush` said of it (one `bool` per row).
    async fn submit<F, Fut>(&self, pool: &PgPool, item: T, flush: F) -> Result<bool, sqlx::Error>
    where
        F: FnOnce(PgPool, Vec<T>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<bool>, sqlx::Error>> + Send + 'static,
    {
        let (reply, mut answer) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((item, reply));
        let leader = self
            .flushing
            .acquire()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        // Another leader may have written this row while this request waited for the lock.
        let early = match answer.try_recv() {
            Ok(given) => Some(given),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(SharedError::Other(
                "a batched write was abandoned".to_owned(),
            ))),
        };
        if early.is_none() {
            let pending = std::mem::take(
                &mut *self
                    .queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            if !pending.is_empty() {
                let (items, replies): (Vec<T>, Vec<Reply>) = pending.into_iter().unzip();
                let written = flush(pool.clone(), items);
                // Spawned: a leader dropped midway (its request abandoned) must not leave the
                // other rows of its batch unwritten and their requests unanswered.
                let task = tokio::spawn(async move {
                    let result = written.await;
                    for (i, reply) in replies.into_iter().enumerate() {
                        let _ = reply.send(match &result {
                            Ok(each) => Ok(each.get(i).copied().unwrap_or(false)),
                            Err(e) => Err(SharedError::of(e)),
                        });
                    }
                });
                let _ = task.await;
            }
        }
        drop(leader);
        let given = match early {
            Some(given) => given,
            // Written by this flush, or by one an abandoned leader spawned.
            None => answer.await.unwrap_or_else(|_| {
                Err(SharedError::Other(
                    "a batched write was abandoned".to_owned(),
                ))
            }),
        };
        given.map_err(SharedError::into_error)
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
            answers: Arc::default(),
        }
    }

    /// How long answers are kept.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// Claims `key` in `scope` for a request whose digest is `request_hash`; see the module
    /// documentation. One statement when the key is new.
    ///
    /// # Errors
    /// Database errors.
    pub async fn claim(
        &self,
        scope: &str,
        key: &str,
        request_hash: &[u8; 32],
        stale_after: Duration,
    ) -> Result<Claimed, sqlx::Error> {
        // A row can vanish between two statements (released, pruned): then claim again. Three
        // rounds are plenty; a key released over and over answers "in progress".
        for _ in 0..3 {
            let claim_id = Uuid::now_v7();
            let row = NewClaim {
                scope: scope.to_owned(),
                key: key.to_owned(),
                request_hash: request_hash.to_vec(),
                claim_id,
            };
            if self.claims.submit(&self.pool, row, insert_claims).await? {
                return Ok(Claimed::Fresh(self.claim_of(scope, key, claim_id)));
            }
            let Some(row) = sqlx::query(
                "SELECT request_hash, claim_id, state, status, headers::text AS headers, body, \
                        created_at < now() - $3::interval AS expired, \
                        created_at < now() - $4::interval AS stale \
                   FROM idempotency_keys WHERE scope = $1 AND key = $2",
            )
            .bind(scope)
            .bind(key)
            .bind(interval(self.retention))
            .bind(interval(stale_after))
            .fetch_optional(&self.pool)
            .await?
            else {
                continue;
            };
            let held: Uuid = row.try_get("claim_id")?;
            let expired: bool = row.try_get("expired")?;
            let same: bool = row.try_get::<Vec<u8>, _>("request_hash")? == request_hash[..];
            let done = row.try_get::<String, _>("state")? == "done";
            // An answer past the retention is gone, whatever the pruner has not deleted yet.
            if !expired {
                if !same {
                    return Ok(Claimed::Reused);
                }
                if done {
                    let status: i16 = row.try_get("status")?;
                    let headers: String = row.try_get("headers")?;
                    let body: Vec<u8> = row.try_get("body")?;
                    if let Some(answer) = self.open(scope, key, status, &headers, &body) {
                        return Ok(Claimed::Replay(answer));
                    }
                    tracing::warn!(
                        "a stored idempotent answer does not decrypt (another pepper?); running the request again"
                    );
                } else if !row.try_get::<bool, _>("stale")? {
                    return Ok(Claimed::InProgress);
                }
            }
            // Expired, undecryptable, or claimed by a request that died: take it over, unless
            // another request took it first.
            if let Some(claim) = self.take_over(scope, key, request_hash, held).await? {
                return Ok(Claimed::Fresh(claim));
            }
        }
        Ok(Claimed::InProgress)
    }

    fn claim_of(&self, scope: &str, key: &str, claim_id: Uuid) -> Claim {
        Claim {
            scope: scope.to_owned(),
            key: key.to_owned(),
            claim_id,
        }
    }

    /// Replaces the claim `held` by a new one (compare and swap on `claim_id`).
    async fn take_over(
        &self,
        scope: &str,
        key: &str,
        request_hash: &[u8; 32],
        held: Uuid,
    ) -> Result<Option<Claim>, sqlx::Error> {
        let claim_id = Uuid::now_v7();
        let updated = sqlx::query(
            "UPDATE idempotency_keys SET claim_id = $4, request_hash = $3, state = 'in_progress', \
                    status = NULL, headers = NULL, body = NULL, created_at = now() \
              WHERE scope = $1 AND key = $2 AND claim_id = $5",
        )
        .bind(scope)
        .bind(key)
        .bind(&request_hash[..])
        .bind(claim_id)
        .bind(held)
        .execute(&self.pool)
        .await?;
        Ok((updated.rows_affected() == 1).then(|| self.claim_of(scope, key, claim_id)))
    }

    /// Stores the answer of the request holding `claim`. Nothing happens when the claim was taken
    /// over meanwhile (this request outlived its deadline): the successor answers.
    ///
    /// # Errors
    /// Database errors, or no randomness for the nonce.
    pub async fn complete(&self, claim: &Claim, answer: &StoredAnswer) -> Result<(), sqlx::Error> {
        let headers = serde_json::to_string(&answer.headers).expect("strings serialize");
        let sealed = self.seal(
            &claim.scope,
            &claim.key,
            answer.status,
            &headers,
            &answer.body,
        )?;
        let row = Answered {
            claim: claim.clone(),
            status: i16::try_from(answer.status).unwrap_or(i16::MAX),
            headers,
            sealed,
        };
        self.answers
            .submit(&self.pool, row, store_answers)
            .await
            .map(|_| ())
    }

    /// Gives the key back: a retry runs the request again.
    ///
    /// # Errors
    /// Database errors.
    pub async fn release(&self, claim: &Claim) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND claim_id = $3")
            .bind(&claim.scope)
            .bind(&claim.key)
            .bind(claim.claim_id)
            .execute(&self.pool)
            .await?;
        Ok(())
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

/// Inserts first claims; per row, whether it was inserted (the key was free). A key claimed twice
/// in one batch goes to the first row: `DO NOTHING` skips the second.
async fn insert_claims(pool: PgPool, rows: Vec<NewClaim>) -> Result<Vec<bool>, sqlx::Error> {
    let mut scopes = Vec::with_capacity(rows.len());
    let mut keys = Vec::with_capacity(rows.len());
    let mut hashes = Vec::with_capacity(rows.len());
    let mut ids = Vec::with_capacity(rows.len());
    for row in &rows {
        scopes.push(row.scope.as_str());
        keys.push(row.key.as_str());
        hashes.push(row.request_hash.as_slice());
        ids.push(row.claim_id);
    }
    let inserted: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO idempotency_keys (scope, key, request_hash, claim_id, state) \
         SELECT scope, key, request_hash, claim_id, 'in_progress' \
           FROM unnest($1::text[], $2::text[], $3::bytea[], $4::uuid[]) \
                AS u(scope, key, request_hash, claim_id) \
         ON CONFLICT DO NOTHING RETURNING claim_id",
    )
    .bind(&scopes)
    .bind(&keys)
    .bind(&hashes)
    .bind(&ids)
    .fetch_all(&pool)
    .await?;
    Ok(ids.iter().map(|id| inserted.contains(id)).collect())
}

/// Stores answers over the claims that are still theirs.
async fn store_answers(pool: PgPool, rows: Vec<Answered>) -> Result<Vec<bool>, sqlx::Error> {
    let mut scopes = Vec::with_capacity(rows.len());
    let mut keys = Vec::with_capacity(rows.len());
    let mut ids = Vec::with_capacity(rows.len());
    let mut statuses = Vec::with_capacity(rows.len());
    let mut headers = Vec::with_capacity(rows.len());
    let mut bodies = Vec::with_capacity(rows.len());
    for row in &rows {
        scopes.push(row.claim.scope.as_str());
        keys.push(row.claim.key.as_str());
        ids.push(row.claim.claim_id);
        statuses.push(row.status);
        headers.push(row.headers.as_str());
        bodies.push(row.sealed.as_slice());
    }
    sqlx::query(
        "UPDATE idempotency_keys k \
            SET state = 'done', status = u.status, headers = u.headers::json, body = u.body \
           FROM unnest($1::text[], $2::text[], $3::uuid[], $4::int2[], $5::text[], $6::bytea[]) \
                AS u(scope, key, claim_id, status, headers, body) \
          WHERE k.scope = u.scope AND k.key = u.key AND k.claim_id = u.claim_id",
    )
    .bind(&scopes)
    .bind(&keys)
    .bind(&ids)
    .bind(&statuses)
    .bind(&headers)
    .bind(&bodies)
    .execute(&pool)
    .await?;
    Ok(vec![true; rows.len()])
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

    #[test]
    fn a_batch_error_keeps_its_kind_for_every_request_of_the_batch() {
        let unavailable = SharedError::of(&sqlx::Error::PoolTimedOut).into_error();
        assert!(matches!(unavailable, sqlx::Error::Io(_)), "{unavailable:?}");
        let other = SharedError::of(&sqlx::Error::RowNotFound).into_error();
        assert!(matches!(other, sqlx::Error::Protocol(_)), "{other:?}");
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
