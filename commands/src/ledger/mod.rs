//! The command services: what the application layer (and the operator CLI) call to change the
//! ledger.
//!
//! Each method looks up the facts a decision needs about *other* aggregates (does the policy exist,
//! is the organization open, which App GUID has the product), stamps the time, new ids and fresh
//! key material into the command, and runs it through [`EventStore::execute`]. Decisions
//! themselves stay in `domain`.
//!
//! One module per concern: [`catalogue`] (organizations, products, policies), [`licenses`]
//! (issue, lifecycle, activations, leases, offline tokens), [`tokens`] (administration tokens),
//! [`users`] (users, invitations, roles), [`releases`] (releases, artifacts, upgrade paths);
//! here, the facts about referenced aggregates that several of them look up.

use std::collections::HashSet;
use std::sync::Arc;

use domain::ids::{OrganizationId, PolicyId, ProductId};
use domain::organization::{Organization, OrganizationFacts, OrganizationRef};
use domain::policy::{Policy, PolicyRef};
use domain::product::{Product, ProductRef};
use domain::{DomainError, Timestamp};

use crate::clock::Clock;
use crate::executor::CommandError;
use crate::keys::{EntropyError, KeyHasher};
use crate::store::EventStore;

mod catalogue;
mod licenses;
mod releases;
mod tokens;
mod users;

pub use catalogue::{NewOrganization, NewProduct};
pub use licenses::{LicenseChange, NewLicense};
pub use releases::{NewDownload, NewRelease};
pub use users::NewUser;

/// Why a service call failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Entropy(#[from] EntropyError),
}

impl From<DomainError> for LedgerError {
    fn from(e: DomainError) -> Self {
        Self::Command(CommandError::Rejected(e))
    }
}

impl From<sqlx::Error> for LedgerError {
    fn from(e: sqlx::Error) -> Self {
        Self::Command(CommandError::Database(e))
    }
}

/// The write side of the ledger.
#[derive(Clone, Debug)]
pub struct Ledger {
    store: EventStore,
    hasher: KeyHasher,
    clock: Arc<dyn Clock>,
}

impl Ledger {
    /// Services over `store`, hashing keys with `hasher`, stamping time from `clock`.
    pub fn new(store: EventStore, hasher: KeyHasher, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            hasher,
            clock,
        }
    }

    /// These services over another pool ([`EventStore::on_pool`]).
    #[must_use]
    pub fn on_pool(&self, pool: sqlx::PgPool) -> Self {
        Self {
            store: self.store.on_pool(pool),
            ..self.clone()
        }
    }

    /// The event store.
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// The key hasher (validation hashes presented keys with it).
    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    /// The clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
    /// An organization with its facts (open/closed, kind, lineage to the root).
    ///
    /// # Errors
    /// Database or decoding errors.
    pub async fn organization_ref(
        &self,
        id: OrganizationId,
    ) -> Result<OrganizationRef, LedgerError> {
        let mut lineage = Vec::new();
        let mut seen = HashSet::new();
        let mut cursor = Some(id);
        let mut facts = None;
        while let Some(current) = cursor {
            // The domain refuses a child below MAX_DEPTH ancestors, so the walk needs no more.
            if !seen.insert(current) || lineage.len() >= domain::organization::MAX_DEPTH {
                break;
            }
            let (org, _) = self.store.load::<Organization>(current).await?;
            let Some(state) = org.state() else {
                break;
            };
            if current == id {
                facts = Some((state.kind, state.closed));
            }
            lineage.push(current);
            cursor = state.parent_id;
        }
        Ok(OrganizationRef {
            id,
            facts: facts.map(|(kind, closed)| OrganizationFacts {
                kind,
                closed,
                lineage,
            }),
        })
    }

    /// A product with its facts.
    ///
    /// # Errors
    /// Database or decoding errors.
    pub async fn product_ref(&self, id: ProductId) -> Result<ProductRef, LedgerError> {
        let (product, _) = self.store.load::<Product>(id).await?;
        Ok(ProductRef {
            id,
            facts: product.state().map(domain::product::ProductState::facts),
        })
    }

    /// A policy with its current version's facts.
    ///
    /// # Errors
    /// Database or decoding errors.
    pub async fn policy_ref(&self, id: PolicyId) -> Result<PolicyRef, LedgerError> {
        let (policy, _) = self.store.load::<Policy>(id).await?;
        Ok(PolicyRef {
            id,
            facts: policy.state().map(domain::policy::PolicyState::facts),
        })
    }
}
