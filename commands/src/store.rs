//! The event store on PostgreSQL: load a stream, append to it with optimistic concurrency.
//!
//! One table (`events`, migration 0001) holds every stream. An append is **one SQL statement**:
//! the unique claims and all of a command's events go in together, so a command's events are
//! written entirely or not at all without a `BEGIN`/`COMMIT` round trip (docs/adr/0002). The
//! database refuses a stale append (primary key on `(aggregate_type, aggregate_id, sequence)`, or
//! the trigger's gap check), sets `recorded_at`, `tx_id` and the chained `hash`, and refuses any
//! later change to the row.

use std::sync::Arc;

use domain::event::{RecordedEvent, UniqueClaim};
use domain::stream::claim_stream_id;
use domain::{AggregateType, Timestamp};
use eventlog::EVENT_COLUMNS;

use crate::cache::AggregateCache;
use crate::locks::KeyedLocks;
use serde_json::Value;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{PgExecutor, Row};
use uuid::Uuid;

/// One event to append.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
}

/// Events to append to one stream, after `expected_version`.
#[derive(Clone, Debug)]
pub struct AppendBatch {
    pub aggregate_type: AggregateType,
    pub aggregate_id: String,
    /// The stream's version the events were decided on (0 for a new stream).
    pub expected_version: i64,
    pub events: Vec<NewEvent>,
    pub claims: Vec<UniqueClaim>,
}

/// What the store assigned to an appended event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendedEvent {
    pub event_id: Uuid,
    pub global_position: i64,
    pub sequence: i64,
    pub recorded_at: Timestamp,
    pub hash: Vec<u8>,
}

/// Why an append did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer appended to the stream since it was loaded: reload and decide again.
    #[error("the stream changed since it was loaded")]
    Conflict,
    /// A value the events claim is already claimed by another stream.
    #[error("{scope} {value} is already taken")]
    ClaimTaken { scope: String, value: String },
    /// The idempotency key was recorded by a concurrent request.
    #[error("the idempotency key was used concurrently")]
    IdempotencyKeyTaken,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Called after every successful append (wakes projectors; see `projections::notify`).
pub type AppendHook = Arc<dyn Fn() + Send + Sync>;

/// The PostgreSQL event store.
#[derive(Clone)]
pub struct EventStore {
    pool: PgPool,
    on_append: Option<AppendHook>,
    cache: Arc<AggregateCache>,
    locks: Arc<KeyedLocks>,
}

/// Aggregates cached per process unless configured otherwise.
pub const DEFAULT_CACHE_CAPACITY: usize = 20_000;

impl std::fmt::Debug for EventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStore").finish_non_exhaustive()
    }
}

const APPEND_SQL: &str = "
WITH claims AS (
    INSERT INTO unique_claims (scope, value, stream_id)
    SELECT c.scope, c.value, c.stream_id
    FROM UNNEST($9::text[], $10::text[], $11::text[]) AS c(scope, value, stream_id)
)
INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT e.event_id, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload::json, e.metadata::json
FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[])
    AS e(event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
ORDER BY e.sequence
RETURNING event_id, global_position, sequence, recorded_at, hash";

/// The common case, one event and no claim, as a plain single-row insert: measurably cheaper for
/// the server than unnesting arrays (BENCHMARKS.md).
const APPEND_ONE_SQL: &str = "
INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
VALUES ($1, $2, $3, $4, $5, $6, $7::json, $8::json)
RETURNING event_id, global_position, sequence, recorded_at, hash";

impl EventStore {
    /// A store over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            on_append: None,
            cache: Arc::new(AggregateCache::new(DEFAULT_CACHE_CAPACITY)),
            locks: Arc::default(),
        }
    }

    /// This store over another pool: the same cache, per-aggregate locks and append hook, other
    /// connections. A server's background jobs write through one on their own pool, so that they
    /// never wait for (or take) a connection of the request pool.
    #[must_use]
    pub fn on_pool(&self, pool: PgPool) -> Self {
        Self {
            pool,
            ..self.clone()
        }
    }

    /// The per-aggregate locks of this process.
    pub fn locks(&self) -> &KeyedLocks {
        &self.locks
    }

    /// The aggregate cache.
    pub fn cache(&self) -> &AggregateCache {
        &self.cache
    }

    /// Calls `hook` after every successful append through this store.
    #[must_use]
    pub fn with_append_hook(mut self, hook: AppendHook) -> Self {
        self.on_append = Some(hook);
        self
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The events of one stream after `after_sequence`, in order.
    ///
    /// # Errors
    /// Database errors.
    pub async fn load_stream(
        &self,
        aggregate_type: AggregateType,
        aggregate_id: &str,
        after_sequence: i64,
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        eventlog::load_stream(&self.pool, aggregate_type, aggregate_id, after_sequence).await
    }

    /// A window of a stream, for a page of it ([`eventlog::stream_window`]).
    ///
    /// # Errors
    /// Database errors.
    pub async fn stream_window(
        &self,
        aggregate_type: AggregateType,
        aggregate_id: &str,
        from: i64,
        descending: bool,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        eventlog::stream_window(
            &self.pool,
            aggregate_type,
            aggregate_id,
            from,
            descending,
            limit,
        )
        .await
    }

    /// Appends a batch through the pool (autocommit: the statement is its own transaction).
    ///
    /// # Errors
    /// [`AppendError::Conflict`] when the stream moved on, [`AppendError::ClaimTaken`] for a
    /// duplicate unique value, [`AppendError::IdempotencyKeyTaken`], or a database error.
    pub async fn append(&self, batch: &AppendBatch) -> Result<Vec<AppendedEvent>, AppendError> {
        let appended = append_with(&self.pool, batch).await?;
        for event in &batch.events {
            metrics::counter!(EVENTS_APPENDED, "type" => event.event_type.clone()).increment(1);
        }
        if let Some(hook) = &self.on_append {
            hook();
        }
        Ok(appended)
    }

    /// The first event a client's idempotency key was recorded on.
    ///
    /// # Errors
    /// Database errors.
    pub async fn find_idempotent(
        &self,
        actor: &str,
        key: &str,
    ) -> Result<Option<RecordedEvent>, sqlx::Error> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE (metadata ->> 'idempotency_key') IS NOT NULL \
               AND metadata ->> 'actor' = $1 AND metadata ->> 'idempotency_key' = $2"
        );
        let row = sqlx::query(&sql)
            .bind(actor)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(eventlog::recorded_event).transpose()
    }
}

/// The counter of events appended through [`EventStore::append`], by event type (`/metrics`).
pub const EVENTS_APPENDED: &str = "ledger_events_appended_total";

/// Appends a batch with any executor: the pool (autocommit) or a caller's open transaction.
///
/// # Errors
/// See [`EventStore::append`].
pub async fn append_with<'e, E: PgExecutor<'e>>(
    executor: E,
    batch: &AppendBatch,
) -> Result<Vec<AppendedEvent>, AppendError> {
    if let ([event], []) = (batch.events.as_slice(), batch.claims.as_slice()) {
        let row = sqlx::query(APPEND_ONE_SQL)
            .bind(event.event_id)
            .bind(batch.aggregate_type.as_str())
            .bind(&batch.aggregate_id)
            .bind(batch.expected_version + 1)
            .bind(&event.event_type)
            .bind(&event.event_version)
            .bind(json_text(&event.payload))
            .bind(json_text(&event.metadata))
            .fetch_one(executor)
            .await
            .map_err(classify)?;
        return Ok(vec![appended_from_row(&row)?]);
    }
    let n = batch.events.len();
    let mut ids = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    let mut versions = Vec::with_capacity(n);
    let mut payloads = Vec::with_capacity(n);
    let mut metadata = Vec::with_capacity(n);
    let mut sequences = Vec::with_capacity(n);
    for (i, event) in batch.events.iter().enumerate() {
        ids.push(event.event_id);
        types.push(event.event_type.as_str());
        versions.push(event.event_version.as_str());
        payloads.push(json_text(&event.payload));
        metadata.push(json_text(&event.metadata));
        sequences.push(batch.expected_version + 1 + i as i64);
    }
    let claim_scopes: Vec<&str> = batch.claims.iter().map(|c| c.scope).collect();
    let claim_values: Vec<&str> = batch.claims.iter().map(|c| c.value.as_str()).collect();
    let claim_streams: Vec<String> = batch
        .claims
        .iter()
        .map(|_| claim_stream_id(batch.aggregate_type, &batch.aggregate_id))
        .collect();
    let rows = sqlx::query(APPEND_SQL)
        .bind(&ids)
        .bind(vec![batch.aggregate_type.as_str(); n])
        .bind(vec![batch.aggregate_id.as_str(); n])
        .bind(&sequences)
        .bind(&types)
        .bind(&versions)
        .bind(&payloads)
        .bind(&metadata)
        .bind(&claim_scopes)
        .bind(&claim_values)
        .bind(&claim_streams)
        .fetch_all(executor)
        .await
        .map_err(classify)?;
    let mut appended = rows
        .iter()
        .map(appended_from_row)
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    appended.sort_by_key(|e| e.sequence);
    Ok(appended)
}

/// The JSON text to store (compact). The `json` columns keep these bytes exactly, and the hash
/// covers them.
fn json_text(value: &Value) -> String {
    serde_json::to_string(value).expect("a JSON value always serializes")
}

fn appended_from_row(row: &PgRow) -> Result<AppendedEvent, sqlx::Error> {
    Ok(AppendedEvent {
        event_id: row.try_get("event_id")?,
        global_position: row.try_get("global_position")?,
        sequence: row.try_get("sequence")?,
        recorded_at: row.try_get("recorded_at")?,
        hash: row.try_get("hash")?,
    })
}

/// Turns the database's refusals into what they mean for a writer.
fn classify(error: sqlx::Error) -> AppendError {
    let sqlx::Error::Database(db) = &error else {
        return AppendError::Database(error);
    };
    let code = db.code().unwrap_or_default();
    match (code.as_ref(), db.constraint()) {
        ("23505", Some("events_pkey")) | ("LLG01", _) => AppendError::Conflict,
        // Serialization failures and deadlocks are also "someone else got there first".
        ("40001" | "40P01", _) => AppendError::Conflict,
        ("23505", Some("events_idempotency_key")) => AppendError::IdempotencyKeyTaken,
        ("23505", Some("unique_claims_pkey")) => {
            let pg = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>();
            let (scope, value) = pg
                .and_then(|e| e.detail())
                .and_then(parse_claim_detail)
                .unwrap_or_else(|| ("unique value".to_owned(), String::new()));
            AppendError::ClaimTaken { scope, value }
        }
        _ => AppendError::Database(error),
    }
}

/// Reads `Key (scope, value)=(app_id, 1234...) already exists.`
fn parse_claim_detail(detail: &str) -> Option<(String, String)> {
    let inner = detail.split_once(")=(")?.1;
    let inner = inner.rsplit_once(") already exists")?.0;
    let (scope, value) = inner.split_once(", ")?;
    Some((scope.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_details_name_scope_and_value() {
        assert_eq!(
            parse_claim_detail("Key (scope, value)=(app_id, 6f1c) already exists."),
            Some(("app_id".into(), "6f1c".into()))
        );
        assert_eq!(parse_claim_detail("something else"), None);
    }
}
