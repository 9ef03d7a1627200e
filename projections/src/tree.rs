//! [`TreeModel`]: the organization tree and the partner delegations in each process's memory,
//! what every authorization asks reach about (`domain::reach`).
//!
//! Loaded from `rm_organizations` (with each organization's version) and the `organizations`
//! projector's checkpoint from one snapshot. Reach must see a move or a revoked delegation from
//! the very next request on (ADR 0020), so before an authorization the model reads the
//! Organization events it has not applied:
//! - in commit order below the horizon, as every log reader does (the checkpoint advances);
//! - and **beyond the horizon**: every committed Organization event after the checkpoint,
//!   whatever transaction is still open elsewhere on the server. A commit-ordered reader waits
//!   for those (it must never skip one), but the tree needs no global order: each organization's
//!   parent and delegations are its own stream's, and a stream's events commit in sequence. Each
//!   event is applied once, by its stream's version, whichever read brings it first.
//!
//! It looks when anything was appended since it last looked (the process's append counter, which
//! NOTIFY moves for other processes), and at least every [`MAX_AGE`] (another server's NOTIFY
//! may be lost). While nothing is appended, an authorization costs no query. The Organization
//! events are read through the partial index of migration 0011.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use domain::AggregateType;
use domain::event::RecordedEvent;
use domain::ids::OrganizationId;
use domain::organization::OrganizationEvent;
use domain::reach::Tree;
use futures_util::TryStreamExt;
use sqlx::Row;
use sqlx::postgres::PgPool;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::engine::{self, Checkpoint, EVENT_COLUMNS, ProjectionError, recorded_event};

/// The longest the model goes without looking at the log when asked.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// The model's state: the tree, read through [`TreeState::tree`].
pub struct TreeState {
    tree: Tree,
    /// Where the commit-ordered read stands.
    checkpoint: Checkpoint,
    /// Each organization's stream version applied.
    versions: HashMap<OrganizationId, i64>,
    /// The append counter (`notify::ChangeSignal`) when the model last looked, and when.
    seen: Option<(u64, Instant)>,
}

impl TreeState {
    /// The tree.
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// Where the commit-ordered read stands: past the last Organization event, and past the
    /// other events below the horizon once a refresh found none of its own among them.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// Applies `e` unless its stream's version says it was applied already.
    fn apply(&mut self, e: &RecordedEvent) -> Result<(), ProjectionError> {
        let id: OrganizationId = e.aggregate_id.parse().map_err(|_| {
            ProjectionError::Inconsistent(format!(
                "organization stream id {:?} is not a UUID",
                e.aggregate_id
            ))
        })?;
        let applied = self.versions.get(&id).copied().unwrap_or(0);
        if e.sequence <= applied {
            return Ok(());
        }
        match e.decode::<OrganizationEvent>()? {
            OrganizationEvent::Registered { parent_id, .. } => self.tree.insert(id, parent_id),
            OrganizationEvent::Moved { new_parent_id } => self.tree.insert(id, new_parent_id),
            OrganizationEvent::PartnerDelegationGranted { partner_id } => {
                self.tree.delegate(id, partner_id);
            }
            OrganizationEvent::PartnerDelegationRevoked { partner_id } => {
                self.tree.revoke(id, partner_id);
            }
            OrganizationEvent::Renamed { .. }
            | OrganizationEvent::Closed {}
            | OrganizationEvent::CustomerLinked { .. } => {}
        }
        self.versions.insert(id, e.sequence);
        Ok(())
    }
}

/// The organization tree, following the log.
pub struct TreeModel {
    inner: RwLock<TreeState>,
    /// One refresh at a time.
    refreshing: Mutex<()>,
}

impl std::fmt::Debug for TreeModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeModel")
            .field("organizations", &self.read().tree.len())
            .finish()
    }
}

/// Committed Organization events after the checkpoint `($1, $2)`, beyond the horizon too.
fn beyond_horizon() -> String {
    format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE events.aggregate_type = 'Organization' \
           AND (events.tx_id, events.global_position) > ($1::text::xid8, $2) \
         {} LIMIT 1000",
        engine::COMMIT_ORDER
    )
}

impl TreeModel {
    fn read(&self) -> RwLockReadGuard<'_, TreeState> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, TreeState> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Loads `rm_organizations` and the `organizations` projector's checkpoint from one snapshot.
    ///
    /// # Errors
    /// Database errors.
    pub async fn load(pool: &PgPool) -> Result<Arc<Self>, ProjectionError> {
        engine::ensure_checkpoint(pool, "organizations").await?;
        let mut tx = pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let checkpoint = engine::checkpoint(&mut tx, "organizations").await?;
        let mut tree = Tree::new();
        let mut versions = HashMap::new();
        {
            let mut rows = sqlx::query(
                "SELECT id, parent_id, delegated_partners, version FROM rm_organizations",
            )
            .fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                let id = OrganizationId::from_uuid(row.try_get::<Uuid, _>("id")?);
                let parent = row
                    .try_get::<Option<Uuid>, _>("parent_id")?
                    .map(OrganizationId::from_uuid);
                tree.insert(id, parent);
                for partner in row.try_get::<Vec<Uuid>, _>("delegated_partners")? {
                    tree.delegate(id, OrganizationId::from_uuid(partner));
                }
                versions.insert(id, row.try_get::<i64, _>("version")?);
            }
        }
        tx.commit().await?;
        tracing::info!(organizations = tree.len(), "organization tree loaded");
        Ok(Arc::new(Self {
            inner: RwLock::new(TreeState {
                tree,
                checkpoint,
                versions,
                seen: None,
            }),
            refreshing: Mutex::new(()),
        }))
    }

    fn stale(&self, appends: u64) -> bool {
        self.read()
            .seen
            .is_none_or(|(seen, at)| seen != appends || at.elapsed() >= MAX_AGE)
    }

    /// The tree, brought up to every committed Organization event first when appends happened
    /// since the model last looked (`appends`: the process's append counter,
    /// `ChangeSignal::appends`) or it looked longer than [`MAX_AGE`] ago.
    ///
    /// # Errors
    /// Database errors and events that cannot be decoded.
    pub async fn current(
        &self,
        pool: &PgPool,
        appends: u64,
    ) -> Result<RwLockReadGuard<'_, TreeState>, ProjectionError> {
        if self.stale(appends) {
            let _one = self.refreshing.lock().await;
            if self.stale(appends) {
                // Taken before reading: an append after this instant moves the counter again.
                let looked_at = Instant::now();
                self.refresh(pool).await?;
                self.write().seen = Some((appends, looked_at));
            }
        }
        Ok(self.read())
    }

    /// Applies the Organization events appended since the last refresh: in commit order below
    /// the horizon (the checkpoint advances), then every committed one beyond it. Returns how
    /// many it read.
    ///
    /// # Errors
    /// Database errors and events that cannot be decoded.
    pub async fn refresh(&self, pool: &PgPool) -> Result<usize, ProjectionError> {
        // Most refreshes find no Organization event at all: one look answers them, and moves the
        // checkpoint past the other events below the horizon, so that the next look does not
        // read through them again (the tree's checkpoint otherwise stays at the last
        // Organization event, however much was appended since).
        {
            let after = self.read().checkpoint.clone();
            let mut conn = pool.acquire().await?;
            let ahead =
                engine::look_ahead(&mut conn, &after, &[AggregateType::Organization]).await?;
            drop(conn);
            if !ahead.pending {
                if let Some(head) = ahead.past(&after) {
                    let mut state = self.write();
                    if state.checkpoint == after {
                        state.checkpoint = head;
                    }
                }
                return Ok(0);
            }
        }
        let mut total = 0;
        loop {
            let after = self.read().checkpoint.clone();
            let mut conn = pool.acquire().await?;
            let events =
                engine::read_events(&mut conn, &after, &[AggregateType::Organization], 1000)
                    .await?;
            drop(conn);
            if events.is_empty() {
                break;
            }
            let mut state = self.write();
            if state.checkpoint != after {
                continue;
            }
            for e in &events {
                state.apply(e)?;
            }
            let last = events.last().expect("not empty");
            state.checkpoint = Checkpoint {
                tx_id: last.tx_id,
                position: last.global_position,
            };
            total += events.len();
        }
        // Beyond the horizon: committed, but behind a transaction still open somewhere on the
        // server. Applied by version; the commit-ordered read meets them again later and skips.
        let mut after = self.read().checkpoint.clone();
        loop {
            let rows = sqlx::query(&beyond_horizon())
                .bind(after.tx_id.to_string())
                .bind(after.position)
                .fetch_all(pool)
                .await?;
            if rows.is_empty() {
                break;
            }
            let events = rows
                .iter()
                .map(recorded_event)
                .collect::<Result<Vec<_>, _>>()?;
            let mut state = self.write();
            for e in &events {
                state.apply(e)?;
            }
            let last = events.last().expect("not empty");
            after = Checkpoint {
                tx_id: last.tx_id,
                position: last.global_position,
            };
            total += events.len();
            if events.len() < 1000 {
                break;
            }
        }
        Ok(total)
    }
}
