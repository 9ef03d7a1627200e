//! An in-process cache of aggregate states, so a command usually costs one round trip (the
//! append) instead of two (load, then append).
//!
//! The cache is never trusted for correctness: a command decided on a stale state appends at a
//! sequence that already exists, the database refuses it, and the executor reloads the stream's
//! tail and decides again. Refusals and no-ops decided on a cached state are re-checked against the
//! tail before they are answered (see `executor`). Several server nodes may therefore each cache
//! the same aggregate.
//!
//! Eviction is two-generational: entries go into `young`; when `young` reaches half the capacity
//! it becomes `old` and the previous `old` is dropped. An entry read from `old` moves back to
//! `young`. That approximates least-recently-used with O(1) work and a hard bound on entries.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use domain::Timestamp;

/// A cached aggregate at a stream version.
#[derive(Clone, Debug)]
pub struct Cached<A> {
    pub aggregate: A,
    pub version: i64,
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
}

impl<A: Default> Cached<A> {
    /// The state of a stream with no events.
    pub fn empty() -> Self {
        Self {
            aggregate: A::default(),
            version: 0,
            created_at: None,
            updated_at: None,
        }
    }
}

type Key = (&'static str, String);
type Entry = Arc<dyn Any + Send + Sync>;

#[derive(Default)]
struct Generations {
    young: HashMap<Key, Entry>,
    old: HashMap<Key, Entry>,
}

/// The cache, shared by every clone of an `EventStore`.
pub struct AggregateCache {
    capacity: usize,
    inner: Mutex<Generations>,
}

impl std::fmt::Debug for AggregateCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateCache")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl AggregateCache {
    /// A cache holding at most `capacity` aggregates (0 disables caching).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        // A panic while holding this lock cannot leave the maps inconsistent (single inserts and
        // removes), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A copy of the cached state of `(aggregate_type, id)`.
    pub fn get<A: Clone + Send + Sync + 'static>(
        &self,
        aggregate_type: &'static str,
        id: &str,
    ) -> Option<Cached<A>> {
        if self.capacity == 0 {
            return None;
        }
        let key = (aggregate_type, id.to_owned());
        let mut g = self.lock();
        let entry = match g.young.get(&key) {
            Some(e) => e.clone(),
            None => {
                let e = g.old.remove(&key)?;
                g.young.insert(key, e.clone());
                e
            }
        };
        entry.downcast_ref::<Cached<A>>().cloned()
    }

    /// Stores the state of `(aggregate_type, id)`, replacing an older version.
    pub fn put<A: Send + Sync + 'static>(
        &self,
        aggregate_type: &'static str,
        id: &str,
        cached: Cached<A>,
    ) {
        if self.capacity == 0 {
            return;
        }
        let key = (aggregate_type, id.to_owned());
        let mut g = self.lock();
        g.old.remove(&key);
        g.young.insert(key, Arc::new(cached));
        if g.young.len() >= self.capacity.div_ceil(2) {
            g.old = std::mem::take(&mut g.young);
        }
    }

    /// Forgets `(aggregate_type, id)`.
    pub fn remove(&self, aggregate_type: &'static str, id: &str) {
        let key = (aggregate_type, id.to_owned());
        let mut g = self.lock();
        g.young.remove(&key);
        g.old.remove(&key);
    }

    /// Number of cached aggregates.
    pub fn len(&self) -> usize {
        let g = self.lock();
        g.young.len() + g.old.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(v: i64) -> Cached<String> {
        Cached {
            aggregate: format!("v{v}"),
            version: v,
            created_at: None,
            updated_at: None,
        }
    }

    #[test]
    fn stores_returns_and_replaces() {
        let cache = AggregateCache::new(10);
        assert!(cache.get::<String>("T", "a").is_none());
        cache.put("T", "a", entry(1));
        cache.put("T", "a", entry(2));
        assert_eq!(cache.get::<String>("T", "a").unwrap().version, 2);
        assert!(cache.get::<String>("U", "a").is_none(), "types do not mix");
        assert!(
            cache.get::<u32>("T", "a").is_none(),
            "a wrong type is a miss, not a panic"
        );
        cache.remove("T", "a");
        assert!(cache.get::<String>("T", "a").is_none());
    }

    #[test]
    fn stays_bounded_and_keeps_recently_used_entries() {
        let cache = AggregateCache::new(100);
        for i in 0..1000 {
            cache.put("T", &i.to_string(), entry(i));
            // Entry "0" is used all the time and must survive.
            assert!(
                cache.get::<String>("T", "0").is_some(),
                "hot entry evicted at {i}"
            );
        }
        assert!(cache.len() <= 100, "{}", cache.len());
        assert!(
            cache.get::<String>("T", "1").is_none(),
            "cold entries are evicted"
        );
    }

    #[test]
    fn a_zero_capacity_cache_caches_nothing() {
        let cache = AggregateCache::new(0);
        cache.put("T", "a", entry(1));
        assert!(cache.get::<String>("T", "a").is_none());
    }
}
