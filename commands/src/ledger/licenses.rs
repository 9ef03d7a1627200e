//! Licenses: issuing them with a fresh key, their lifecycle, and what client applications do
//! with them (activations, floating leases, offline tokens).

use domain::DomainError;
use domain::Timestamp;
use domain::ids::{InstallationId, LicenseId, OrganizationId, PolicyId, UserId};
use domain::keys::{KeyHash, LicenseKey};
use domain::license::{Assignee, IssueLicense, License, LicenseAction, LicenseCommand};
use domain::stream::{AggregateType, ClaimScope, id_from_claim_stream};
use domain::values::{
    DeactivationReason, Environment, FeatureSet, Fingerprint, Label, LicenseSource,
    OfflineTokenKind, SeatCount,
};
use uuid::Uuid;

use super::{Ledger, LedgerError};
use crate::executor::{CommandContext, Outcome};
use crate::keys;

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

impl Ledger {
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
        self.issue_license_as(ctx, LicenseId::from_uuid(Uuid::now_v7()), input)
            .await
    }

    /// Issues license `id`: for an id derived from what provisions it (a Checkout session), so
    /// that provisioning twice issues once — the second command finds the stream and is refused
    /// `LICENSE_ALREADY_ISSUED` (see [`Ledger::issue_license`] for the key).
    ///
    /// # Errors
    /// Refusals and infrastructure errors.
    pub async fn issue_license_as(
        &self,
        ctx: &CommandContext,
        id: LicenseId,
        input: NewLicense,
    ) -> Result<(Outcome<License>, Option<LicenseKey>), LedgerError> {
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
        let outcome = self.store.execute_new(id, command, ctx).await?;
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
        Ok(self.store.execute(id, command, ctx).await?)
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
        let (license, _) = self.store.load::<License>(id).await?;
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
        let outcome = self.store.execute(id, command, ctx).await?;
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
            "SELECT stream_id FROM unique_claims WHERE scope = $1 AND value = $2",
        )
        .bind(ClaimScope::LicenseKey.as_str())
        .bind(key_hash.to_hex())
        .fetch_optional(self.store.pool())
        .await?;
        Ok(stream
            .as_deref()
            .and_then(|s| id_from_claim_stream(AggregateType::License, s)))
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

    /// Names user `user_id` (whose state the caller read, [`Ledger::user`]) on a license
    /// (no-op when it is named already). Its home organization's lineage is read here; the
    /// license's organization is the one its stream holds when the command is decided.
    ///
    /// # Errors
    /// `USER_DEACTIVATED`, `ASSIGNEE_OUTSIDE_ORGANIZATION`, `TOO_MANY_ASSIGNMENTS`,
    /// `LICENSE_REVOKED`; infrastructure errors.
    pub async fn assign(
        &self,
        ctx: &CommandContext,
        license_id: LicenseId,
        user_id: UserId,
        user: &domain::user::UserState,
    ) -> Result<Outcome<License>, LedgerError> {
        let home = self.organization_ref(user.organization_id).await?;
        let assignee = Assignee {
            user_id,
            deactivated: user.deactivated,
            lineage: home.facts.map(|f| f.lineage).unwrap_or_default(),
        };
        self.license_command(ctx, license_id, LicenseAction::Assign(assignee))
            .await
    }

    /// Records a payment gateway's fact on a license (`domain::billing`): what changed, once.
    ///
    /// # Errors
    /// `LICENSE_NOT_FOUND`, `LICENSE_REVOKED`; infrastructure errors.
    pub async fn sync_billing(
        &self,
        ctx: &CommandContext,
        license_id: LicenseId,
        target: domain::billing::BillingTarget,
        observed: domain::billing::Observation,
    ) -> Result<Outcome<License>, LedgerError> {
        self.license_command(
            ctx,
            license_id,
            LicenseAction::SyncBilling { target, observed },
        )
        .await
    }

    /// The license a gateway's subscription is linked to, or that recorded a fact of it while
    /// following another (`domain::billing::followed`), from the log (the indexes of
    /// `SubscriptionLinked`, migration 0014, and `SubscriptionSynced`, 0017).
    ///
    /// # Errors
    /// Database errors.
    pub async fn license_of_subscription(
        &self,
        gateway: &str,
        subscription_id: &str,
    ) -> Result<Option<LicenseId>, LedgerError> {
        let stream: Option<String> = sqlx::query_scalar(
            // The link first (one event, usually); the facts only for a subscription no license
            // follows yet. COALESCE reads its second query only when the first finds nothing:
            // every fact of a subscription is on one license, so any of them names it, and a
            // subscription's growing history is not read on every event.
            "SELECT COALESCE( \
               (SELECT aggregate_id FROM events \
                WHERE event_type = 'SubscriptionLinked' AND aggregate_type = 'License' \
                  AND payload->>'subscription_id' = $1 AND payload->>'gateway' = $2 \
                ORDER BY global_position DESC LIMIT 1), \
               (SELECT aggregate_id FROM events \
                WHERE event_type = 'SubscriptionSynced' AND aggregate_type = 'License' \
                  AND payload->'fact'->'target'->>'subscription_id' = $1 \
                  AND payload->'fact'->'target'->>'gateway' = $2 \
                LIMIT 1))",
        )
        .bind(subscription_id)
        .bind(gateway)
        .fetch_one(self.store.pool())
        .await?;
        Ok(stream
            .as_deref()
            .and_then(|s| Uuid::parse_str(s).ok())
            .map(LicenseId::from_uuid))
    }

    /// Takes user `user_id`'s name off a license.
    ///
    /// # Errors
    /// `ASSIGNMENT_NOT_FOUND`; infrastructure errors.
    pub async fn unassign(
        &self,
        ctx: &CommandContext,
        license_id: LicenseId,
        user_id: UserId,
    ) -> Result<Outcome<License>, LedgerError> {
        self.license_command(ctx, license_id, LicenseAction::Unassign { user_id })
            .await
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
        Ok(self.store.execute(license_id, command, ctx).await?)
    }
}
