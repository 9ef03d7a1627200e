//! Per-aggregate locks within one process: commands to the same aggregate queue instead of racing.
//!
//! Correctness never depends on them — the database refuses a stale append from another process
//! just the same — but without them a hundred simultaneous activations of one license would each
//! lose the race up to a hundred times. The map holds only aggregates with a command running or
//! waiting.
//!
//! One decision cannot be left to a stream's optimistic concurrency: one that rests on facts
//! about *other* streams which a concurrent command may change (two organizations moved under
//! each other: each move appends to its own stream, each read the other's old lineage). Those
//! commands hold a [`DatabaseLock`], an advisory lock every process on the database shares, from
//! before they read their facts until their append has committed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

type Key = (&'static str, String);

/// The lock table.
#[derive(Debug, Default)]
pub struct KeyedLocks {
    map: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
}

/// Holds one aggregate's lock until dropped.
pub struct KeyedGuard<'a> {
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    locks: &'a KeyedLocks,
    key: Key,
}

impl KeyedLocks {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<tokio::sync::Mutex<()>>>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for the lock of `(aggregate_type, id)`.
    pub async fn lock(&self, aggregate_type: &'static str, id: &str) -> KeyedGuard<'_> {
        let key = (aggregate_type, id.to_owned());
        let mutex = self.table().entry(key.clone()).or_default().clone();
        KeyedGuard {
            guard: Some(mutex.lock_owned().await),
            locks: self,
            key,
        }
    }

    /// Aggregates with a command running or waiting.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for KeyedGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut table = self.locks.table();
        // Only the table still holds it: nobody runs or waits; forget it.
        if table
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            table.remove(&self.key);
        }
    }
}

/// The advisory lock of changes to the shape of the organization tree (moves), in the ledger's
/// one-key advisory lock space next to the checkpoint signer's `5_172` and the rebuild's `5_173`.
pub const ORGANIZATION_TREE_LOCK: i64 = 5_174;

/// The advisory lock of links between gateway prices and policies (a price belongs to one
/// policy), next to [`ORGANIZATION_TREE_LOCK`].
pub const PRICE_LINKS_LOCK: i64 = 5_175;

/// How long a command waits for a [`DatabaseLock`] before it gives up with a database error
/// (`lock_timeout`): as long as a request waits for a pooled connection.
const LOCK_WAIT: &str = "10s";

/// A session advisory lock held on a connection of its own, opened for it and closed with it.
///
/// Not a connection of the request pool, for two reasons. The command under the lock still needs
/// one to read its facts and append, so a pooled holder would deadlock a pool of one connection
/// (`--db-max-connections 1`) and starve small ones. And a session lock must never go back to a
/// pool with its connection (another borrower would hold it unknowingly): this connection is
/// closed when the lock is released, and dropped — the request cancelled midway — it closes its
/// socket, and PostgreSQL releases the lock with the session. Within a process, callers queue
/// on [`KeyedLocks`] first, so a process opens at most one such connection per lock at a time.
pub struct DatabaseLock {
    conn: PgConnection,
    key: i64,
}

impl DatabaseLock {
    /// Opens a connection to `pool`'s database, shown as `application_name` in
    /// `pg_stat_activity`, and waits there for the advisory lock `key`.
    ///
    /// # Errors
    /// The database is unreachable, or the lock was not granted within 10 s.
    pub async fn acquire(
        pool: &PgPool,
        key: i64,
        application_name: &str,
    ) -> Result<Self, sqlx::Error> {
        let options = (*pool.connect_options())
            .clone()
            .application_name(application_name)
            .options([("lock_timeout", LOCK_WAIT)]);
        let mut conn = options.connect().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(key)
            .execute(&mut conn)
            .await?;
        Ok(Self { conn, key })
    }

    /// Releases the lock and closes its connection. What was done under the lock has committed
    /// already: a failure here is only logged (closing the session releases the lock anyway).
    pub async fn release(mut self) {
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(self.key)
            .execute(&mut self.conn)
            .await;
        if let Err(error) = unlocked {
            tracing::warn!(key = self.key, %error, "advisory unlock failed; closing its session");
        }
        if let Err(error) = self.conn.close().await {
            tracing::debug!(key = self.key, %error, "closing an advisory lock's session failed");
        }
    }
}

/// Whether `error` is PostgreSQL giving up waiting for a lock (`lock_not_available`, after
/// `lock_timeout`): the lock's holders kept it, the database is not at fault.
pub fn is_lock_timeout(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("55P03"))
}

impl std::fmt::Debug for DatabaseLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseLock")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn commands_on_one_aggregate_run_one_at_a_time_and_the_table_empties() {
        let locks = Arc::new(KeyedLocks::default());
        let inside = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (locks, inside) = (locks.clone(), inside.clone());
            tasks.push(tokio::spawn(async move {
                let _g = locks.lock("License", "a").await;
                assert_eq!(
                    inside.fetch_add(1, Ordering::SeqCst),
                    0,
                    "two holders at once"
                );
                tokio::task::yield_now().await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(locks.is_empty());
        let _a = locks.lock("License", "a").await;
        let _b = locks.lock("License", "b").await; // other aggregates do not wait
    }
}
