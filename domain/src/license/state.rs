//! The state of an issued license and the fold that builds it from events. The fold is total:
//! every stored sequence of events folds, whatever decisions allowed at the time, because the
//! read models, the as-of view and the aggregate all replay the same log through it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{License, LicenseEvent, LicenseIssued};
use crate::ids::{AppId, InstallationId, OrganizationId, PolicyId, ProductId, UserId};
use crate::keys::KeyHash;
use crate::policy::PolicyTerms;
use crate::validation::LicenseFacts;
use crate::values::{
    Environment, FeatureSet, Fingerprint, Label, LicenseModel, LicenseSource, Reason,
    RevocationCategory, SeatCount,
};
use crate::{DomainError, Timestamp};

/// One active installation of a license.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    pub fingerprint: Fingerprint,
    pub environment: Environment,
    pub hostname: Option<Label>,
    pub platform: Option<Label>,
    pub activated_at: Timestamp,
    /// For a floating license: the seat is held until then, unless renewed.
    #[serde(default)]
    pub lease_expires_at: Option<Timestamp>,
}

impl Activation {
    /// Whether it holds a seat at `now` (a lapsed floating lease does not, even before its
    /// expiry is recorded).
    pub fn active_at(&self, now: Timestamp) -> bool {
        self.lease_expires_at.is_none_or(|end| now < end)
    }
}

/// The billing side of a license, mirrored from the payment gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Billing {
    /// A paid subscription is linked (`gateway`, `subscription_id`).
    pub subscription: Option<(String, String)>,
    pub payment_grace_until: Option<Timestamp>,
    pub paused: bool,
    pub cancel_at: Option<Timestamp>,
    pub canceled: bool,
    /// The linked subscription is in its trial (`TrialStarted` until `TrialEnded`): the trial
    /// limits the license as if no subscription were linked.
    #[serde(default)]
    pub trialing: bool,
    /// The gateway facts applied, in the gateway's order (`crate::billing::derive`).
    #[serde(default)]
    pub facts: Vec<crate::billing::BillingFact>,
}

/// The state of an issued license. Stored as JSON in the license read model, so fields added
/// later carry `#[serde(default)]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LicenseState {
    pub product_id: ProductId,
    pub app_id: AppId,
    pub policy_id: PolicyId,
    pub policy_version: u32,
    pub organization_id: OrganizationId,
    pub key_hash: KeyHash,
    pub key_prefix: String,
    pub seats: SeatCount,
    pub features: FeatureSet,
    pub terms: PolicyTerms,
    pub source: LicenseSource,
    pub starts_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub trial_ends_at: Option<Timestamp>,
    pub maintenance_until: Option<Timestamp>,
    /// Why it is suspended, while it is.
    pub suspension: Option<Reason>,
    /// Why it was revoked; revocation is final.
    pub revocation: Option<Reason>,
    /// The revocation's category (`unspecified` for revocations recorded before categories).
    #[serde(default)]
    pub revocation_category: Option<RevocationCategory>,
    /// Active installations by id.
    #[serde(default)]
    pub activations: BTreeMap<InstallationId, Activation>,
    #[serde(default)]
    pub billing: Billing,
    /// The users named on the license; for a `named_user` policy each holds a seat.
    #[serde(default)]
    pub assignees: BTreeSet<UserId>,
}

impl LicenseState {
    /// Whether the license's terms allow offline use (offline tokens, air-gapped activation):
    /// asked before an air-gapped activation takes a seat, and by the offline token's decision.
    ///
    /// # Errors
    /// [`DomainError::OfflineNotAllowed`].
    pub fn check_offline_allowed(&self) -> Result<(), DomainError> {
        if self.terms.offline_allowed {
            Ok(())
        } else {
            Err(DomainError::OfflineNotAllowed)
        }
    }

    /// The active installation of `fingerprint` at `now`.
    pub fn installation_of(&self, fingerprint: &str, now: Timestamp) -> Option<InstallationId> {
        self.activations
            .iter()
            .find(|(_, a)| a.fingerprint.as_str() == fingerprint && a.active_at(now))
            .map(|(id, _)| *id)
    }

    /// The seats named users hold: every assignee of a `named_user` license, none otherwise.
    pub fn named_seats_used(&self) -> u32 {
        if self.terms.model == LicenseModel::NamedUser {
            u32::try_from(self.assignees.len()).unwrap_or(u32::MAX)
        } else {
            0
        }
    }

    /// Floating installations whose lease has lapsed at `now`.
    pub fn lapsed_leases(&self, now: Timestamp) -> Vec<InstallationId> {
        self.activations
            .iter()
            .filter(|(_, a)| !a.active_at(now))
            .map(|(id, _)| *id)
            .collect()
    }
}

impl LicenseFacts for LicenseState {
    fn revoked(&self) -> bool {
        self.revocation.is_some()
    }
    fn suspended(&self) -> bool {
        self.suspension.is_some()
    }
    fn paused(&self) -> bool {
        self.billing.paused
    }
    fn payment_grace_until(&self) -> Option<Timestamp> {
        self.billing.payment_grace_until
    }
    fn canceled(&self) -> bool {
        self.billing.canceled
    }
    fn cancel_at(&self) -> Option<Timestamp> {
        self.billing.cancel_at
    }
    fn subscribed(&self) -> bool {
        self.billing.subscription.is_some() && !self.billing.trialing
    }
    fn gateway_trial(&self) -> bool {
        self.billing.subscription.is_some() && self.billing.trialing
    }
    fn trial_ends_at(&self) -> Option<Timestamp> {
        self.trial_ends_at
    }
    fn expires_at(&self) -> Option<Timestamp> {
        self.expires_at
    }
    fn seats(&self) -> u32 {
        self.seats.get()
    }
    fn model(&self) -> LicenseModel {
        self.terms.model
    }
    fn features(&self) -> &FeatureSet {
        &self.features
    }
    fn active_installations(&self, now: Timestamp) -> u32 {
        let n = self
            .activations
            .values()
            .filter(|a| a.active_at(now))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
    fn is_activated(&self, fingerprint: &str, now: Timestamp) -> bool {
        self.installation_of(fingerprint, now).is_some()
    }
}

impl License {
    /// Applies an event to the state. Total: every stored sequence of events folds.
    pub fn fold(&mut self, event: LicenseEvent) {
        if let LicenseEvent::Issued(issued) = event {
            let LicenseIssued {
                product_id,
                app_id,
                policy_id,
                policy_version,
                organization_id,
                key_hash,
                key_prefix,
                seats,
                features,
                starts_at,
                expires_at,
                trial_ends_at,
                maintenance_until,
                source,
                terms,
            } = *issued;
            *self = Self::Issued(Box::new(LicenseState {
                product_id,
                app_id,
                policy_id,
                policy_version,
                organization_id,
                key_hash,
                key_prefix,
                seats,
                features,
                terms,
                source,
                starts_at,
                expires_at,
                trial_ends_at,
                maintenance_until,
                suspension: None,
                revocation: None,
                revocation_category: None,
                activations: BTreeMap::new(),
                billing: Billing::default(),
                assignees: BTreeSet::new(),
            }));
            return;
        }
        let Self::Issued(state) = self else {
            return; // sequence 1 of a license stream is always LicenseIssued
        };
        match event {
            LicenseEvent::Issued(_) => {}
            LicenseEvent::Suspended { reason } => state.suspension = Some(reason),
            LicenseEvent::Reinstated {} => state.suspension = None,
            LicenseEvent::Renewed { expires_at } => state.expires_at = Some(expires_at),
            LicenseEvent::Transferred { organization_id } => {
                state.organization_id = organization_id;
            }
            LicenseEvent::EntitlementsChanged { features } => state.features = features,
            LicenseEvent::SeatsChanged { seats } => state.seats = seats,
            LicenseEvent::MaintenanceExtended { until } => state.maintenance_until = Some(until),
            LicenseEvent::KeyRotated {
                key_hash,
                key_prefix,
            } => {
                state.key_hash = key_hash;
                state.key_prefix = key_prefix;
            }
            LicenseEvent::Revoked { reason, category } => {
                state.revocation = Some(reason);
                state.revocation_category = Some(category);
            }
            LicenseEvent::InstallationActivated {
                installation_id,
                fingerprint,
                hostname,
                platform,
                environment,
                activated_at,
            } => {
                state.activations.insert(
                    installation_id,
                    Activation {
                        fingerprint,
                        environment,
                        hostname,
                        platform,
                        activated_at,
                        lease_expires_at: None,
                    },
                );
            }
            LicenseEvent::FloatingLeaseGranted {
                installation_id,
                expires_at,
            } => {
                if let Some(a) = state.activations.get_mut(&installation_id) {
                    a.lease_expires_at = Some(expires_at);
                }
            }
            LicenseEvent::InstallationDeactivated {
                installation_id, ..
            }
            | LicenseEvent::FloatingLeaseReleased { installation_id }
            | LicenseEvent::FloatingLeaseExpired { installation_id } => {
                state.activations.remove(&installation_id);
            }
            LicenseEvent::OfflineTokenIssued { .. } => {}
            LicenseEvent::SubscriptionLinked {
                gateway,
                subscription_id,
                ..
            } => state.billing.subscription = Some((gateway, subscription_id)),
            LicenseEvent::PaymentFailed { grace_until } => {
                state.billing.payment_grace_until = Some(grace_until);
            }
            LicenseEvent::PaymentRecovered {} => state.billing.payment_grace_until = None,
            LicenseEvent::SubscriptionPaused {} => state.billing.paused = true,
            LicenseEvent::SubscriptionResumed {} => state.billing.paused = false,
            LicenseEvent::CancellationScheduled { at } => state.billing.cancel_at = Some(at),
            LicenseEvent::SubscriptionCanceled {} => state.billing.canceled = true,
            LicenseEvent::TrialStarted { ends_at } => {
                state.trial_ends_at = Some(ends_at);
                state.billing.trialing = true;
            }
            LicenseEvent::TrialEnded {} => state.billing.trialing = false,
            LicenseEvent::SubscriptionReactivated {} => state.billing.canceled = false,
            LicenseEvent::CancellationWithdrawn {} => state.billing.cancel_at = None,
            LicenseEvent::SubscriptionSynced { fact } => {
                let facts = &mut state.billing.facts;
                if let Err(place) = facts.binary_search_by(|f| f.observed.cmp(&fact.observed)) {
                    facts.insert(place, fact);
                }
            }
            LicenseEvent::Assigned { user_id } => {
                state.assignees.insert(user_id);
            }
            LicenseEvent::Unassigned { user_id } => {
                state.assignees.remove(&user_id);
            }
        }
    }
}
