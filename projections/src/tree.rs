//! [`TreeModel`]: the organization tree and the partner delegations in each process's memory,
//! what every authorization asks reach about (`domain::reach`).
//!
//! Loaded from `rm_organizations` with the `organizations` projector's checkpoint from one
//! snapshot, then it follows the log itself (Organization events, commit order). Reach must see a
//! move or a delegation "from the next request on", so besides following in the background the
//! model is brought to the log's head before an authorization whenever an append happened since
//! it last looked ([`TreeModel::current`]): one query that finds nothing on most requests,
//! none at all while nothing was appended.

use std::sync::{Arc, RwLock, RwLockReadGuard};

use domain::AggregateType;
use domain::ids::OrganizationId;
use domain::organization::OrganizationEvent;
use domain::reach::Tree;
use futures_util::TryStreamExt;
use sqlx::Row;
use sqlx::postgres::PgPool;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::engine::{self, Checkpoint, ProjectionError};

/// The model's state: the tree, read through [`TreeState::tree`].
pub struct TreeState {
    tree: Tree,
    checkpoint: Checkpoint,
    /// The append counter (`notify::ChangeSignal`) when the model last reached the log's head.
    seen: u64,
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

impl TreeModel {
    fn read(&self) -> RwLockReadGuard<'_, TreeState> {
        self.inner
            .read()
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
        {
            let mut rows =
                sqlx::query("SELECT id, parent_id, delegated_partners FROM rm_organizations")
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
            }
        }
        tx.commit().await?;
        tracing::info!(organizations = tree.len(), "organization tree loaded");
        Ok(Arc::new(Self {
            inner: RwLock::new(TreeState {
                tree,
                checkpoint,
                seen: 0,
            }),
            refreshing: Mutex::new(()),
        }))
    }

    /// The tree, brought to the log's head first when appends happened since the model last
    /// looked (`appends`: the process's append counter, `ChangeSignal::any`).
    ///
    /// # Errors
    /// Database errors and events that cannot be decoded.
    pub async fn current(
        &self,
        pool: &PgPool,
        appends: u64,
    ) -> Result<RwLockReadGuard<'_, TreeState>, ProjectionError> {
        if self.read().seen != appends {
            let _one = self.refreshing.lock().await;
            if self.read().seen != appends {
                self.refresh(pool).await?;
                // An event committed behind a transaction still open is held back (commit
                // order); the counter is taken as seen only when nothing waits, so the next
                // request looks again.
                let after = self.read().checkpoint.clone();
                let mut conn = pool.acquire().await?;
                let waiting =
                    engine::has_pending(&mut conn, &after, &[AggregateType::Organization]).await?;
                drop(conn);
                if !waiting {
                    self.inner
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .seen = appends;
                }
            }
        }
        Ok(self.read())
    }

    /// Applies the Organization events appended since the last refresh; returns how many.
    ///
    /// # Errors
    /// Database errors and events that cannot be decoded.
    pub async fn refresh(&self, pool: &PgPool) -> Result<usize, ProjectionError> {
        let mut total = 0;
        loop {
            let after = self.read().checkpoint.clone();
            let mut conn = pool.acquire().await?;
            let events =
                engine::read_events(&mut conn, &after, &[AggregateType::Organization], 1000)
                    .await?;
            drop(conn);
            if events.is_empty() {
                return Ok(total);
            }
            let mut inner = self
                .inner
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if inner.checkpoint != after {
                continue;
            }
            for e in &events {
                let id: OrganizationId = e.aggregate_id.parse().map_err(|_| {
                    ProjectionError::Inconsistent(format!(
                        "organization stream id {:?} is not a UUID",
                        e.aggregate_id
                    ))
                })?;
                match e.decode::<OrganizationEvent>()? {
                    OrganizationEvent::Registered { parent_id, .. } => {
                        inner.tree.insert(id, parent_id);
                    }
                    OrganizationEvent::Moved { new_parent_id } => {
                        inner.tree.insert(id, new_parent_id);
                    }
                    OrganizationEvent::PartnerDelegationGranted { partner_id } => {
                        inner.tree.delegate(id, partner_id);
                    }
                    OrganizationEvent::PartnerDelegationRevoked { partner_id } => {
                        inner.tree.revoke(id, partner_id);
                    }
                    OrganizationEvent::Renamed { .. } | OrganizationEvent::Closed {} => {}
                }
            }
            let last = events.last().expect("not empty");
            inner.checkpoint = Checkpoint {
                tx_id: last.tx_id,
                position: last.global_position,
            };
            total += events.len();
        }
    }
}

impl TreeState {
    /// The tree.
    pub fn tree(&self) -> &Tree {
        &self.tree
    }
}
