//! [`ValidationEntry`]: one license as validation needs it, in about a hundred bytes, and the
//! fold that keeps it current ([`ValidationEntry::apply`]). The parts many licenses share are
//! interned ([`Interner`]); instants are microseconds since the epoch ([`NONE`] when absent).
//! It implements [`LicenseFacts`], so the domain's own decision runs on it.
//!
//! The table and the in-memory model both hold these entries; the private fields are visible to
//! the rest of `validation` (`pub(super)`) because the table reads and writes them as columns.

use std::collections::HashSet;
use std::sync::Arc;

use domain::Timestamp;
use domain::ids::{AppId, InstallationId, LicenseId, PolicyId, ProductId};
use domain::keys::KeyHash;
use domain::license::{LicenseEvent, LicenseIssued, LicenseState};
use domain::validation::LicenseFacts;
use domain::values::{FeatureSet, LicenseModel};
use serde::{Deserialize, Serialize};

/// What licenses of one policy version share.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LicenseClass {
    pub app_id: AppId,
    pub product_id: ProductId,
    pub policy_id: PolicyId,
    pub policy_version: u32,
    pub model: LicenseModel,
    pub offline_allowed: bool,
}

/// An active installation, as validation sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactActivation {
    pub installation_id: InstallationId,
    pub fingerprint: Box<str>,
    /// Microseconds since the epoch; [`NONE`] for a node-locked installation.
    pub lease_expires_at: i64,
}

/// The absent instant.
pub const NONE: i64 = i64::MIN;

pub(super) fn micros(t: Option<Timestamp>) -> i64 {
    t.map_or(NONE, |t| t.timestamp_micros())
}

pub(super) fn instant(m: i64) -> Option<Timestamp> {
    (m != NONE)
        .then(|| chrono::DateTime::from_timestamp_micros(m))
        .flatten()
}

const SUSPENDED: u8 = 1;
const REVOKED: u8 = 2;
const PAUSED: u8 = 4;
const SUBSCRIBED: u8 = 8;
const CANCELED: u8 = 16;
/// A linked subscription is in its trial: the trial limits the license as if none were linked.
const TRIALING: u8 = 32;

/// Shares equal license classes and feature sets between entries.
#[derive(Debug, Default)]
pub struct Interner {
    classes: HashSet<Arc<LicenseClass>>,
    features: HashSet<Arc<FeatureSet>>,
}

impl Interner {
    pub(super) fn class(&mut self, class: LicenseClass) -> Arc<LicenseClass> {
        if let Some(shared) = self.classes.get(&class) {
            return shared.clone();
        }
        let shared = Arc::new(class);
        self.classes.insert(shared.clone());
        shared
    }

    pub(super) fn features(&mut self, features: &FeatureSet) -> Arc<FeatureSet> {
        if let Some(shared) = self.features.get(features) {
            return shared.clone();
        }
        let shared = Arc::new(features.clone());
        self.features.insert(shared.clone());
        shared
    }
}

/// One license, as validation needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidationEntry {
    pub license_id: LicenseId,
    pub key_hash: KeyHash,
    pub class: Arc<LicenseClass>,
    pub features: Arc<FeatureSet>,
    pub seats: u32,
    pub(super) flags: u8,
    /// The license stream's version this entry reflects.
    pub version: i64,
    pub(super) expires_at: i64,
    pub(super) trial_ends_at: i64,
    pub(super) grace_until: i64,
    pub(super) cancel_at: i64,
    /// Sorted by installation id.
    pub activations: Option<Box<[CompactActivation]>>,
}

impl ValidationEntry {
    /// The entry of a just-issued license.
    pub fn issued(
        license_id: LicenseId,
        e: &LicenseIssued,
        version: i64,
        interner: &mut Interner,
    ) -> Self {
        Self {
            license_id,
            key_hash: e.key_hash,
            class: interner.class(LicenseClass {
                app_id: e.app_id,
                product_id: e.product_id,
                policy_id: e.policy_id,
                policy_version: e.policy_version,
                model: e.terms.model,
                offline_allowed: e.terms.offline_allowed,
            }),
            features: interner.features(&e.features),
            seats: e.seats.get(),
            flags: 0,
            version,
            expires_at: micros(e.expires_at),
            trial_ends_at: micros(e.trial_ends_at),
            grace_until: NONE,
            cancel_at: NONE,
            activations: None,
        }
    }

    /// The entry of a license in state `s` at `version` (what the fold must always equal).
    pub fn from_state(
        license_id: LicenseId,
        s: &LicenseState,
        version: i64,
        interner: &mut Interner,
    ) -> Self {
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        let activations: Vec<CompactActivation> = s
            .activations
            .iter()
            .map(|(id, a)| CompactActivation {
                installation_id: *id,
                fingerprint: a.fingerprint.as_str().into(),
                lease_expires_at: micros(a.lease_expires_at),
            })
            .collect();
        Self {
            license_id,
            key_hash: s.key_hash,
            class: interner.class(LicenseClass {
                app_id: s.app_id,
                product_id: s.product_id,
                policy_id: s.policy_id,
                policy_version: s.policy_version,
                model: s.terms.model,
                offline_allowed: s.terms.offline_allowed,
            }),
            features: interner.features(&s.features),
            seats: s.seats.get(),
            flags: flag(s.suspension.is_some(), SUSPENDED)
                | flag(s.revocation.is_some(), REVOKED)
                | flag(s.billing.paused, PAUSED)
                | flag(s.billing.subscription.is_some(), SUBSCRIBED)
                | flag(s.billing.canceled, CANCELED)
                | flag(s.billing.trialing, TRIALING),
            version,
            expires_at: micros(s.expires_at),
            trial_ends_at: micros(s.trial_ends_at),
            grace_until: micros(s.billing.payment_grace_until),
            cancel_at: micros(s.billing.cancel_at),
            activations: (!activations.is_empty()).then(|| activations.into_boxed_slice()),
        }
    }

    fn set(&mut self, bit: u8, on: bool) {
        if on {
            self.flags |= bit;
        } else {
            self.flags &= !bit;
        }
    }

    fn edit_activations(&mut self, edit: impl FnOnce(&mut Vec<CompactActivation>)) {
        let mut list = self.activations.take().map(Vec::from).unwrap_or_default();
        edit(&mut list);
        list.sort_by_key(|a| a.installation_id);
        self.activations = (!list.is_empty()).then(|| list.into_boxed_slice());
    }

    /// Applies the next event of the license's stream (sequence `version`). Returns the key hash
    /// it replaced when the event rotated the key.
    pub fn apply(
        &mut self,
        event: &LicenseEvent,
        version: i64,
        interner: &mut Interner,
    ) -> Option<KeyHash> {
        self.version = version;
        let mut replaced = None;
        match event {
            LicenseEvent::Issued(e) => {
                let fresh = Self::issued(self.license_id, e, version, interner);
                *self = fresh;
            }
            LicenseEvent::Suspended { .. } => self.set(SUSPENDED, true),
            LicenseEvent::Reinstated {} => self.set(SUSPENDED, false),
            LicenseEvent::Revoked { .. } => self.set(REVOKED, true),
            LicenseEvent::Renewed { expires_at } => self.expires_at = expires_at.timestamp_micros(),
            LicenseEvent::EntitlementsChanged { features } => {
                self.features = interner.features(features)
            }
            LicenseEvent::SeatsChanged { seats } => self.seats = seats.get(),
            LicenseEvent::KeyRotated { key_hash, .. } => {
                replaced = Some(std::mem::replace(&mut self.key_hash, *key_hash));
            }
            LicenseEvent::InstallationActivated {
                installation_id,
                fingerprint,
                ..
            } => {
                let activation = CompactActivation {
                    installation_id: *installation_id,
                    fingerprint: fingerprint.as_str().into(),
                    lease_expires_at: NONE,
                };
                // Like the aggregate's map: an id activated again replaces its entry.
                self.edit_activations(|list| {
                    list.retain(|a| a.installation_id != *installation_id);
                    list.push(activation);
                });
            }
            LicenseEvent::FloatingLeaseGranted {
                installation_id,
                expires_at,
            } => {
                let end = expires_at.timestamp_micros();
                self.edit_activations(|list| {
                    for a in list
                        .iter_mut()
                        .filter(|a| a.installation_id == *installation_id)
                    {
                        a.lease_expires_at = end;
                    }
                });
            }
            LicenseEvent::InstallationDeactivated {
                installation_id, ..
            }
            | LicenseEvent::FloatingLeaseReleased { installation_id }
            | LicenseEvent::FloatingLeaseExpired { installation_id } => {
                self.edit_activations(|list| {
                    list.retain(|a| a.installation_id != *installation_id)
                });
            }
            LicenseEvent::SubscriptionLinked { .. } => self.set(SUBSCRIBED, true),
            LicenseEvent::PaymentFailed { grace_until } => {
                self.grace_until = grace_until.timestamp_micros()
            }
            LicenseEvent::PaymentRecovered {} => self.grace_until = NONE,
            LicenseEvent::SubscriptionPaused {} => self.set(PAUSED, true),
            LicenseEvent::SubscriptionResumed {} => self.set(PAUSED, false),
            LicenseEvent::CancellationScheduled { at } => self.cancel_at = at.timestamp_micros(),
            LicenseEvent::SubscriptionCanceled {} => self.set(CANCELED, true),
            LicenseEvent::TrialStarted { ends_at } => {
                self.trial_ends_at = ends_at.timestamp_micros();
                self.set(TRIALING, true);
            }
            LicenseEvent::TrialEnded {} => self.set(TRIALING, false),
            LicenseEvent::SubscriptionReactivated {} => self.set(CANCELED, false),
            LicenseEvent::CancellationWithdrawn {} => self.cancel_at = NONE,
            // Facts validation does not read.
            LicenseEvent::Transferred { .. }
            | LicenseEvent::MaintenanceExtended { .. }
            | LicenseEvent::OfflineTokenIssued { .. }
            | LicenseEvent::Assigned { .. }
            | LicenseEvent::Unassigned { .. }
            | LicenseEvent::SubscriptionSynced { .. } => {}
        }
        replaced
    }

    /// Whether some floating lease has lapsed at `now`.
    pub fn has_lapsed_lease(&self, now: Timestamp) -> bool {
        let now = now.timestamp_micros();
        self.activations
            .iter()
            .flat_map(|list| list.iter())
            .any(|a| a.lease_expires_at != NONE && now >= a.lease_expires_at)
    }

    /// The active installation of `fingerprint` at `now`.
    pub fn installation_of(&self, fingerprint: &str, now: Timestamp) -> Option<&CompactActivation> {
        let now = now.timestamp_micros();
        self.activations
            .iter()
            .flat_map(|list| list.iter())
            .find(|a| {
                &*a.fingerprint == fingerprint
                    && (a.lease_expires_at == NONE || now < a.lease_expires_at)
            })
    }
}

impl LicenseFacts for ValidationEntry {
    fn revoked(&self) -> bool {
        self.flags & REVOKED != 0
    }
    fn suspended(&self) -> bool {
        self.flags & SUSPENDED != 0
    }
    fn paused(&self) -> bool {
        self.flags & PAUSED != 0
    }
    fn payment_grace_until(&self) -> Option<Timestamp> {
        instant(self.grace_until)
    }
    fn canceled(&self) -> bool {
        self.flags & CANCELED != 0
    }
    fn cancel_at(&self) -> Option<Timestamp> {
        instant(self.cancel_at)
    }
    fn subscribed(&self) -> bool {
        self.flags & SUBSCRIBED != 0 && self.flags & TRIALING == 0
    }
    fn gateway_trial(&self) -> bool {
        self.flags & SUBSCRIBED != 0 && self.flags & TRIALING != 0
    }
    fn trial_ends_at(&self) -> Option<Timestamp> {
        instant(self.trial_ends_at)
    }
    fn expires_at(&self) -> Option<Timestamp> {
        instant(self.expires_at)
    }
    fn seats(&self) -> u32 {
        self.seats
    }
    fn model(&self) -> LicenseModel {
        self.class.model
    }
    fn features(&self) -> &FeatureSet {
        &self.features
    }
    fn active_installations(&self, now: Timestamp) -> u32 {
        let now = now.timestamp_micros();
        let n = self
            .activations
            .iter()
            .flat_map(|list| list.iter())
            .filter(|a| a.lease_expires_at == NONE || now < a.lease_expires_at)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
    fn is_activated(&self, fingerprint: &str, now: Timestamp) -> bool {
        self.installation_of(fingerprint, now).is_some()
    }
}
