//! The command services: what the API (and the CLI) call to change the ledger.
//!
//! Each method looks up the facts a decision needs about *other* aggregates (does the policy exist,
//! is the organization open, which App GUID has the product), stamps the time, new ids and fresh
//! key material into the command, and runs it through [`EventStore::execute`]. Decisions
//! themselves stay in `domain`.

use std::collections::HashSet;
use std::sync::Arc;

use domain::api_token::{ApiToken, ApiTokenAction, ApiTokenCommand, TokenRejection};
use domain::ids::{ApiTokenId, InstallationId, LicenseId, OrganizationId, PolicyId, ProductId};
use domain::keys::{ApiTokenSecret, KeyHash, LicenseKey};
use domain::license::{IssueLicense, License, LicenseAction, LicenseCommand};
use domain::organization::{
    Organization, OrganizationAction, OrganizationCommand, OrganizationFacts, OrganizationRef,
};
use domain::policy::{Policy, PolicyAction, PolicyCommand, PolicyRef, PolicyTerms};
use domain::product::{Product, ProductAction, ProductCommand, ProductRef};
use domain::values::{
    DeactivationReason, Environment, FeatureSet, Fingerprint, KeyPrefix, Label, LicenseSource,
    Name, OfflineTokenKind, OrganizationKind, ProductKind, Role, SeatCount,
};
use domain::{DomainError, Timestamp};
use uuid::Uuid;

use crate::clock::Clock;
use crate::executor::{CommandContext, CommandError, Outcome};
use crate::keys::{self, EntropyError, KeyHasher};
use crate::store::EventStore;

/// How deep an organization tree may be (corporate > subsidiary > location needs three).
pub const MAX_ORGANIZATION_DEPTH: usize = 32;

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

/// A new organization.
#[derive(Clone, Debug)]
pub struct NewOrganization {
    pub name: Name,
    pub kind: OrganizationKind,
    pub parent_id: Option<OrganizationId>,
}

/// A new product.
#[derive(Clone, Debug)]
pub struct NewProduct {
    pub name: Name,
    pub kind: ProductKind,
    /// Generated (random) when absent.
    pub app_id: Option<domain::ids::AppId>,
    pub parent_product_id: Option<ProductId>,
    /// Derived from the name when absent.
    pub key_prefix: Option<KeyPrefix>,
}

/// A new license.
#[derive(Clone, Debug)]
pub struct NewLicense {
    pub policy_id: PolicyId,
    pub organization_id: OrganizationId,
    pub seats: Option<SeatCount>,
    pub features: Option<FeatureSet>,
    pub expires_at: Option<Timestamp>,
    pub source: LicenseSource,
}

/// A license command as the API states it (before facts are looked up).
#[derive(Clone, Debug)]
pub enum LicenseChange {
    Suspend {
        reason: domain::values::Reason,
    },
    Reinstate,
    Renew {
        expires_at: Timestamp,
    },
    Transfer {
        organization_id: OrganizationId,
    },
    Revoke {
        reason: domain::values::Reason,
        category: domain::values::RevocationCategory,
    },
    ChangeEntitlements {
        features: FeatureSet,
    },
    ChangeSeats {
        seats: SeatCount,
    },
    ExtendMaintenance {
        until: Timestamp,
    },
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

    // ----- facts about referenced aggregates -----

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
            if !seen.insert(current) || lineage.len() >= MAX_ORGANIZATION_DEPTH {
                break;
            }
            let (org, _) = self
                .store
                .load::<Organization>(&current.to_string())
                .await?;
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
        let (product, _) = self.store.load::<Product>(&id.to_string()).await?;
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
        let (policy, _) = self.store.load::<Policy>(&id.to_string()).await?;
        Ok(PolicyRef {
            id,
            facts: policy.state().map(domain::policy::PolicyState::facts),
        })
    }

    // ----- organizations -----

    /// Registers an organization.
    ///
    /// # Errors
    /// Refusals ([`DomainError`]) and infrastructure errors.
    pub async fn register_organization(
        &self,
        ctx: &CommandContext,
        input: NewOrganization,
    ) -> Result<Outcome<Organization>, LedgerError> {
        let id = OrganizationId::from_uuid(Uuid::now_v7());
        let parent = match input.parent_id {
            Some(parent_id) => Some(self.organization_ref(parent_id).await?),
            None => None,
        };
        let command = OrganizationCommand {
            organization_id: id,
            at: self.now(),
            action: OrganizationAction::Register {
                name: input.name,
                kind: input.kind,
                parent,
            },
        };
        Ok(self
            .store
            .execute_new(&id.to_string(), command, ctx)
            .await?)
    }

    // ----- products -----

    /// Defines a product; its App GUID is claimed for it alone.
    ///
    /// # Errors
    /// Refusals, a taken App GUID ([`CommandError::ClaimTaken`]), infrastructure errors.
    pub async fn define_product(
        &self,
        ctx: &CommandContext,
        input: NewProduct,
    ) -> Result<Outcome<Product>, LedgerError> {
        let id = ProductId::from_uuid(Uuid::now_v7());
        let parent = match input.parent_product_id {
            Some(parent_id) => Some(self.product_ref(parent_id).await?),
            None => None,
        };
        let app_id = match input.app_id {
            Some(app_id) => app_id,
            None => domain::ids::AppId::parse(Uuid::new_v4()).expect("a v4 UUID is never nil"),
        };
        let key_prefix = input
            .key_prefix
            .unwrap_or_else(|| KeyPrefix::from_product_name(&input.name));
        let command = ProductCommand {
            product_id: id,
            at: self.now(),
            action: ProductAction::Define {
                name: input.name,
                kind: input.kind,
                app_id,
                parent,
                key_prefix,
            },
        };
        Ok(self
            .store
            .execute_new(&id.to_string(), command, ctx)
            .await?)
    }

    // ----- policies -----

    /// Defines a policy (version 1).
    ///
    /// # Errors
    /// Refusals and infrastructure errors.
    pub async fn define_policy(
        &self,
        ctx: &CommandContext,
        product_id: ProductId,
        name: Name,
        terms: PolicyTerms,
    ) -> Result<Outcome<Policy>, LedgerError> {
        let id = PolicyId::from_uuid(Uuid::now_v7());
        let product = self.product_ref(product_id).await?;
        let command = PolicyCommand {
            policy_id: id,
            at: self.now(),
            action: PolicyAction::Define {
                product,
                name,
                terms,
            },
        };
        Ok(self
            .store
            .execute_new(&id.to_string(), command, ctx)
            .await?)
    }

    /// Revises a policy (next version) or retires it.
    ///
    /// # Errors
    /// Refusals and infrastructure errors.
    pub async fn change_policy(
        &self,
        ctx: &CommandContext,
        id: PolicyId,
        action: PolicyAction,
    ) -> Result<Outcome<Policy>, LedgerError> {
        let command = PolicyCommand {
            policy_id: id,
            at: self.now(),
            action,
        };
        Ok(self.store.execute(&id.to_string(), command, ctx).await?)
    }

    // ----- licenses -----

    /// Issues a license with a fresh key. The key is returned once and stored only as a hash;
    /// a replayed (idempotent) request gets `None`: the key was shown to the first request.
    ///
    /// # Errors
    /// Refusals and infrastructure errors.
    pub async fn issue_license(
        &self,
        ctx: &CommandContext,
        input: NewLicense,
    ) -> Result<(Outcome<License>, Option<LicenseKey>), LedgerError> {
        let id = LicenseId::from_uuid(Uuid::now_v7());
        let policy = self.policy_ref(input.policy_id).await?;
        let product_id = policy
            .facts
            .as_ref()
            .ok_or(DomainError::PolicyNotFound(input.policy_id))?
            .product_id;
        let product = self.product_ref(product_id).await?;
        let organization = self.organization_ref(input.organization_id).await?;
        let prefix = product
            .facts
            .as_ref()
            .ok_or(DomainError::ProductNotFound(product_id))?
            .key_prefix
            .clone();
        let key = keys::generate_license_key(&prefix)?;
        let command = LicenseCommand {
            license_id: id,
            at: self.now(),
            action: LicenseAction::Issue(Box::new(IssueLicense {
                policy,
                product,
                organization,
                key_hash: self.hasher.hash(&key),
                key_prefix: key.support_prefix(),
                seats: input.seats,
                features: input.features,
                expires_at: input.expires_at,
                source: input.source,
            })),
        };
        let outcome = self
            .store
            .execute_new(&id.to_string(), command, ctx)
            .await?;
        let key = (!outcome.replayed).then_some(key);
        Ok((outcome, key))
    }

    /// Applies a lifecycle change to a license.
    ///
    /// # Errors
    /// Refusals and infrastructure errors.
    pub async fn change_license(
        &self,
        ctx: &CommandContext,
        id: LicenseId,
        change: LicenseChange,
    ) -> Result<Outcome<License>, LedgerError> {
        let action = match change {
            LicenseChange::Suspend { reason } => LicenseAction::Suspend { reason },
            LicenseChange::Reinstate => LicenseAction::Reinstate,
            LicenseChange::Renew { expires_at } => LicenseAction::Renew { expires_at },
            LicenseChange::Transfer { organization_id } => LicenseAction::Transfer {
                organization: self.organization_ref(organization_id).await?,
            },
            LicenseChange::Revoke { reason, category } => {
                LicenseAction::Revoke { reason, category }
            }
            LicenseChange::ChangeEntitlements { features } => {
                LicenseAction::ChangeEntitlements { features }
            }
            LicenseChange::ChangeSeats { seats } => LicenseAction::ChangeSeats { seats },
            LicenseChange::ExtendMaintenance { until } => {
                LicenseAction::ExtendMaintenance { until }
            }
        };
        let command = LicenseCommand {
            license_id: id,
            at: self.now(),
            action,
        };
        Ok(self.store.execute(&id.to_string(), command, ctx).await?)
    }

    /// Replaces a license's key with a fresh one (the old key stops working at once).
    ///
    /// # Errors
    /// Refusals and infrastructure errors.
    pub async fn rotate_license_key(
        &self,
        ctx: &CommandContext,
        id: LicenseId,
    ) -> Result<(Outcome<License>, Option<LicenseKey>), LedgerError> {
        let (license, _) = self.store.load::<License>(&id.to_string()).await?;
        let Some(state) = license.state() else {
            return Err(DomainError::LicenseNotFound(id).into());
        };
        let product = self.product_ref(state.product_id).await?;
        let prefix = product
            .facts
            .map(|f| f.key_prefix)
            .ok_or(DomainError::ProductNotFound(state.product_id))?;
        let key = keys::generate_license_key(&prefix)?;
        let command = LicenseCommand {
            license_id: id,
            at: self.now(),
            action: LicenseAction::RotateKey {
                key_hash: self.hasher.hash(&key),
                key_prefix: key.support_prefix(),
            },
        };
        let outcome = self.store.execute(&id.to_string(), command, ctx).await?;
        let key = (!outcome.replayed).then_some(key);
        Ok((outcome, key))
    }

    // ----- client applications: activations, leases, offline tokens -----

    /// The license a key hash opens, from the claim recorded with the key (written in the same
    /// statement as the license, so never stale). The caller must still compare the license's
    /// current key hash: a rotated-away key keeps its claim.
    ///
    /// # Errors
    /// Database errors.
    pub async fn license_by_key_hash(
        &self,
        key_hash: &KeyHash,
    ) -> Result<Option<LicenseId>, LedgerError> {
        let stream: Option<String> = sqlx::query_scalar(
            "SELECT stream_id FROM unique_claims WHERE scope = 'license_key' AND value = $1",
        )
        .bind(key_hash.to_hex())
        .fetch_optional(self.store.pool())
        .await?;
        Ok(stream
            .as_deref()
            .and_then(|s| s.strip_prefix("License/"))
            .and_then(|id| id.parse().ok()))
    }

    /// Activates a device on a license (no-op when that fingerprint is already active).
    ///
    /// # Errors
    /// Refusals (`TOO_MANY_ACTIVATIONS`, the validation code) and infrastructure errors.
    pub async fn activate(
        &self,
        ctx: &CommandContext,
        license_id: LicenseId,
        fingerprint: Fingerprint,
        hostname: Option<Label>,
        platform: Option<Label>,
        environment: Environment,
    ) -> Result<Outcome<License>, LedgerError> {
        let action = LicenseAction::Activate {
            installation_id: InstallationId::from_uuid(Uuid::now_v7()),
            fingerprint,
            hostname,
            platform,
            environment,
        };
        self.license_command(ctx, license_id, action).await
    }

    /// Ends an installation (node-locked: deactivated; floating: lease released).
    ///
    /// # Errors
    /// `INSTALLATION_NOT_FOUND` and infrastructure errors.
    pub async fn deactivate(
        &self,
        ctx: &CommandContext,
        license_id: LicenseId,
        installation_id: InstallationId,
        reason: DeactivationReason,
    ) -> Result<Outcome<License>, LedgerError> {
        self.license_command(
            ctx,
            license_id,
            LicenseAction::Deactivate {
                installation_id,
                reason,
            },
        )
        .await
    }

    /// Extends a floating installation's lease.
    ///
    /// # Errors
    /// `LEASE_EXPIRED`, `NOT_FLOATING`, the validation code, infrastructure errors.
    pub async fn heartbeat(
        &self,
        ctx: &CommandContext,
        license_id: LicenseId,
        installation_id: InstallationId,
    ) -> Result<Outcome<License>, LedgerError> {
        self.license_command(
            ctx,
            license_id,
            LicenseAction::Heartbeat { installation_id },
        )
        .await
    }

    /// Records the lapsed floating leases of a license (safe to run on several nodes at once: a
    /// lease expired by one is simply no longer lapsed for the other).
    ///
    /// # Errors
    /// Infrastructure errors.
    pub async fn expire_leases(
        &self,
        ctx: &CommandContext,
        license_id: LicenseId,
    ) -> Result<Outcome<License>, LedgerError> {
        self.license_command(ctx, license_id, LicenseAction::ExpireLeases)
            .await
    }

    /// Records an offline token; the returned outcome's event carries its id and expiry, which the
    /// caller signs.
    ///
    /// # Errors
    /// `OFFLINE_NOT_ALLOWED`, the validation code, infrastructure errors.
    pub async fn record_offline_token(
        &self,
        ctx: &CommandContext,
        license_id: LicenseId,
        kind: OfflineTokenKind,
        fingerprint: Option<Fingerprint>,
    ) -> Result<Outcome<License>, LedgerError> {
        let action = LicenseAction::IssueOfflineToken {
            jti: Uuid::now_v7(),
            kind,
            fingerprint,
        };
        self.license_command(ctx, license_id, action).await
    }

    async fn license_command(
        &self,
        ctx: &CommandContext,
        license_id: LicenseId,
        action: LicenseAction,
    ) -> Result<Outcome<License>, LedgerError> {
        let command = LicenseCommand {
            license_id,
            at: self.now(),
            action,
        };
        Ok(self
            .store
            .execute(&license_id.to_string(), command, ctx)
            .await?)
    }

    // ----- administration tokens -----

    /// Mints an administration token; the secret is returned once.
    ///
    /// # Errors
    /// Infrastructure errors.
    pub async fn issue_api_token(
        &self,
        ctx: &CommandContext,
        role: Role,
        label: Option<Name>,
        ttl: Option<chrono::Duration>,
    ) -> Result<(ApiTokenId, ApiTokenSecret), LedgerError> {
        let id = ApiTokenId::from_uuid(Uuid::now_v7());
        let secret = keys::generate_api_token(id)?;
        let now = self.now();
        let command = ApiTokenCommand {
            token_id: id,
            at: now,
            action: ApiTokenAction::Issue {
                role,
                label,
                token_hash: secret.hash(),
                expires_at: ttl.map(|ttl| now + ttl),
            },
        };
        self.store
            .execute_new::<ApiToken>(&id.to_string(), command, ctx)
            .await?;
        Ok((id, secret))
    }

    /// Revokes an administration token.
    ///
    /// # Errors
    /// Refusals and infrastructure errors.
    pub async fn revoke_api_token(
        &self,
        ctx: &CommandContext,
        id: ApiTokenId,
    ) -> Result<Outcome<ApiToken>, LedgerError> {
        let command = ApiTokenCommand {
            token_id: id,
            at: self.now(),
            action: ApiTokenAction::Revoke,
        };
        Ok(self.store.execute(&id.to_string(), command, ctx).await?)
    }

    /// Checks a presented bearer token against its own stream.
    ///
    /// # Errors
    /// `Ok(Err(_))` when the token does not authenticate; `Err` on infrastructure errors.
    pub async fn authenticate(
        &self,
        presented: &ApiTokenSecret,
    ) -> Result<Result<Role, TokenRejection>, LedgerError> {
        let (token, _) = self
            .store
            .load::<ApiToken>(&presented.id().to_string())
            .await?;
        Ok(token.authenticate(&presented.hash(), self.now()))
    }
}
