//! [`ValidationModel`]: the validation read model in each process's memory. It loads
//! `rm_validation` with the projector's checkpoint from one snapshot, then follows the log itself
//! (commit order, below the horizon), and takes the states this process's commands leave
//! ([`ValidationModel::observe`]); validation reads it by key hash.

use domain::AggregateType;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use domain::Timestamp;
use domain::event::RecordedEvent;
use domain::ids::LicenseId;
use domain::keys::KeyHash;
use domain::license::{LicenseEvent, LicenseState};
use futures_util::TryStreamExt;
use sqlx::postgres::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::entry::{Interner, ValidationEntry};
use super::table::{ValidationProjection, entry_from_row};
use crate::engine::{self, Checkpoint, Projection, ProjectionError};

/// Hashes a key hash by its first eight bytes. Key hashes are HMAC outputs under the server's
/// pepper: uniformly distributed and not choosable by anyone without the pepper, so SipHash's
/// protection against crafted collisions buys nothing here and costs every validation.
#[derive(Clone, Copy, Default)]
struct KeyHashHasher(u64);

impl std::hash::Hasher for KeyHashHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its length (via write_usize) and then its bytes.
        if bytes.len() >= 8 {
            let mut first = [0u8; 8];
            first.copy_from_slice(&bytes[..8]);
            self.0 ^= u64::from_le_bytes(first);
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

type KeyMap = HashMap<[u8; 32], u32, std::hash::BuildHasherDefault<KeyHashHasher>>;

#[derive(Default)]
struct Inner {
    entries: Vec<ValidationEntry>,
    by_key: KeyMap,
    /// (license id, slot), sorted by id: ids are time-ordered, so new licenses append.
    by_id: Vec<(Uuid, u32)>,
    interner: Interner,
    checkpoint: Checkpoint,
}

impl Inner {
    fn slot_of(&self, id: &Uuid) -> Option<u32> {
        self.by_id
            .binary_search_by(|(k, _)| k.cmp(id))
            .ok()
            .map(|i| self.by_id[i].1)
    }

    fn insert(&mut self, entry: ValidationEntry) {
        let id = Uuid::from(entry.license_id);
        let key = *entry.key_hash.as_bytes();
        let slot = u32::try_from(self.entries.len()).expect("fewer than 4 billion licenses");
        self.entries.push(entry);
        self.by_key.insert(key, slot);
        match self.by_id.binary_search_by(|(k, _)| k.cmp(&id)) {
            Ok(_) => {}
            Err(at) => self.by_id.insert(at, (id, slot)),
        }
    }

    fn apply(&mut self, e: &RecordedEvent) -> Result<(), ProjectionError> {
        let (license_id, event) = engine::decode_license(e)?;
        let id = Uuid::from(license_id);
        match self.slot_of(&id) {
            None => {
                if let LicenseEvent::Issued(issued) = &event {
                    let entry =
                        ValidationEntry::issued(license_id, issued, e.sequence, &mut self.interner);
                    self.insert(entry);
                }
                // Anything else for an unknown license came before its issue: impossible in one
                // stream, so there is nothing to apply it to.
            }
            Some(slot) => {
                let Inner {
                    entries,
                    interner,
                    by_key,
                    ..
                } = self;
                let entry = &mut entries[slot as usize];
                if e.sequence <= entry.version {
                    return Ok(()); // already in the loaded snapshot
                }
                if let Some(old) = entry.apply(&event, e.sequence, interner) {
                    by_key.remove(old.as_bytes());
                    by_key.insert(*entry.key_hash.as_bytes(), slot);
                }
            }
        }
        Ok(())
    }
}

/// The validation model in memory.
pub struct ValidationModel {
    inner: RwLock<Inner>,
}

impl std::fmt::Debug for ValidationModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidationModel")
            .field("licenses", &self.len())
            .finish()
    }
}

impl ValidationModel {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Loads `rm_validation` and the `validation` projector's checkpoint from one snapshot.
    ///
    /// # Errors
    /// Database errors and rows this build cannot read.
    pub async fn load(pool: &PgPool) -> Result<Arc<Self>, ProjectionError> {
        engine::ensure_checkpoint(pool, ValidationProjection.name()).await?;
        let mut tx = pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let checkpoint = engine::checkpoint(&mut tx, ValidationProjection.name()).await?;
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_validation")
            .fetch_one(&mut *tx)
            .await?;
        let n = usize::try_from(count).unwrap_or(0);
        let mut inner = Inner {
            entries: Vec::with_capacity(n),
            by_key: KeyMap::with_capacity_and_hasher(n, Default::default()),
            by_id: Vec::with_capacity(n),
            interner: Interner::default(),
            checkpoint,
        };
        {
            let mut rows =
                sqlx::query("SELECT * FROM rm_validation ORDER BY license_id").fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                let entry = entry_from_row(&row, &mut inner.interner)?;
                inner.insert(entry);
            }
        }
        tx.commit().await?;
        tracing::info!(licenses = inner.entries.len(), "validation model loaded");
        Ok(Arc::new(Self {
            inner: RwLock::new(inner),
        }))
    }

    /// Refreshes until no committed License event waits behind an open transaction (bounded:
    /// gives up after about a second and leaves the rest to the next wake-up).
    async fn refresh_to_head(&self, pool: &PgPool) -> Result<usize, ProjectionError> {
        let mut total = 0;
        let mut held_back = Duration::ZERO;
        for _ in 0..500 {
            let after = self.read().checkpoint.clone();
            let mut conn = pool.acquire().await?;
            // Idle is this one query. With nothing of ours ahead, the model moves past the
            // other events below the horizon, so that the next look starts from there rather
            // than from the last License event, however long ago that was.
            let ahead = engine::look_ahead(&mut conn, &after, &[AggregateType::License]).await?;
            if !ahead.pending {
                if let Some(head) = ahead.past(&after) {
                    let mut inner = self.write();
                    // A refresh may have moved meanwhile; then it knows better.
                    if inner.checkpoint == after {
                        inner.checkpoint = head;
                    }
                }
                break;
            }
            drop(conn);
            let applied = self.refresh(pool).await?;
            total += applied;
            if applied == 0 {
                // Committed events wait behind an open transaction: look again soon, backing off
                // while it stays open.
                held_back =
                    (held_back * 2).clamp(engine::HELD_BACK_RETRY, Duration::from_millis(250));
                tokio::time::sleep(held_back).await;
            } else {
                held_back = Duration::ZERO;
            }
        }
        Ok(total)
    }

    /// Applies the events appended since the last call; returns how many.
    ///
    /// # Errors
    /// Database errors and events that cannot be decoded.
    pub async fn refresh(&self, pool: &PgPool) -> Result<usize, ProjectionError> {
        let mut total = 0;
        loop {
            let after = self.read().checkpoint.clone();
            let mut conn = pool.acquire().await?;
            let events =
                engine::read_events(&mut conn, &after, &[AggregateType::License], 1000).await?;
            drop(conn);
            if events.is_empty() {
                return Ok(total);
            }
            let mut inner = self.write();
            // Another refresh may have advanced meanwhile: apply only what lies beyond.
            if inner.checkpoint != after {
                continue;
            }
            for e in &events {
                inner.apply(e)?;
            }
            let last = events.last().expect("not empty");
            inner.checkpoint = Checkpoint {
                tx_id: last.tx_id,
                position: last.global_position,
            };
            total += events.len();
        }
    }

    /// Follows the log until cancelled: on every change of `wake` (the process's own appends, and
    /// those of other processes its one listener hears of: `notify::ChangeSignal::listen`), and
    /// every `poll` otherwise. Takes a connection of `pool` only for a moment at a time.
    pub async fn follow(
        self: Arc<Self>,
        pool: PgPool,
        mut wake: watch::Receiver<u64>,
        poll: Duration,
        shutdown: CancellationToken,
    ) {
        loop {
            if let Err(e) = self.refresh_to_head(&pool).await {
                tracing::error!(error = %e, "validation model could not follow the log; retrying");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = wake.changed() => if changed.is_err() { tokio::time::sleep(poll).await },
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Takes the state a command just left a license in (this process answered the command), so
    /// validation sees it at once rather than when the follower reads the event. Ignored when the
    /// model already holds that version or a later one; the follower skips what this covered.
    pub fn observe(&self, license_id: LicenseId, state: &LicenseState, version: i64) {
        let mut inner = self.write();
        let id = Uuid::from(license_id);
        match inner.slot_of(&id) {
            None => {
                let entry =
                    ValidationEntry::from_state(license_id, state, version, &mut inner.interner);
                inner.insert(entry);
            }
            Some(slot) => {
                let Inner {
                    entries,
                    interner,
                    by_key,
                    ..
                } = &mut *inner;
                let entry = &mut entries[slot as usize];
                if version <= entry.version {
                    return;
                }
                let fresh = ValidationEntry::from_state(license_id, state, version, interner);
                if fresh.key_hash != entry.key_hash {
                    by_key.remove(entry.key_hash.as_bytes());
                    by_key.insert(*fresh.key_hash.as_bytes(), slot);
                }
                *entry = fresh;
            }
        }
    }

    /// Runs `f` on the entry of the license whose key hashes to `key_hash`. The stored hash is
    /// compared with the presented one in constant time (a rotated-away key finds nothing), and
    /// against a decoy when no entry was found, so that a hit and a miss do the same work.
    pub fn with_key<R>(
        &self,
        key_hash: &KeyHash,
        f: impl FnOnce(Option<&ValidationEntry>) -> R,
    ) -> R {
        static DECOY: KeyHash = KeyHash::from_bytes([0xA5; 32]);
        let inner = self.read();
        let found = inner
            .by_key
            .get(key_hash.as_bytes())
            .map(|slot| &inner.entries[*slot as usize]);
        let same = found.map_or(&DECOY, |e| &e.key_hash).ct_eq(key_hash);
        f(found.filter(|_| same))
    }

    /// Licenses holding a floating lease that has lapsed at `now`.
    pub fn lapsed_leases(&self, now: Timestamp) -> Vec<LicenseId> {
        self.read()
            .entries
            .iter()
            .filter(|e| e.has_lapsed_lease(now))
            .map(|e| e.license_id)
            .collect()
    }

    /// Number of licenses held.
    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    /// Whether no license is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where in the log the model stands.
    pub fn position(&self) -> i64 {
        self.read().checkpoint.position
    }
}
