//! Per-aggregate locks within one process: commands to the same aggregate queue instead of racing.
//!
//! Correctness never depends on them — the database refuses a stale append from another process
//! just the same — but without them a hundred simultaneous activations of one license would each
//! lose the race up to a hundred times. The map holds only aggregates with a command running or
//! waiting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
