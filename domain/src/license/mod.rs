//! The License aggregate: the *right* to use a product — who, what, until when, how many seats,
//! which features — and its lifecycle (issue, suspend, reinstate, renew, transfer, revoke,
//! entitlements, seats, key rotation, maintenance).
//!
//! Status is never stored: [`crate::status::status_at`] derives it from the state and the clock.
//! The *use* of the right (installations, floating leases) lives in the same stream, so seat limits
//! are decided against one consistent state: two activations racing for the last seat append at
//! the same sequence and the database lets only one of them through.
//!
//! Billing facts (subscription linked, payment failed, paused, canceled) are recorded by the
//! Stripe integration; the validation decision reads them through [`LicenseFacts`].

use std::collections::BTreeMap;

use chrono::{Duration, Months};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::error::DomainError;
use crate::event::{UniqueClaim, VersionedEvent};
use crate::ids::{AppId, InstallationId, LicenseId, OrganizationId, PolicyId, ProductId};
use crate::keys::KeyHash;
use crate::organization::OrganizationRef;
use crate::policy::{PolicyRef, PolicyTerms};
use crate::product::ProductRef;
use crate::validation::{self, LicenseFacts, ValidationCode};
use crate::values::{
    DeactivationReason, Environment, FeatureSet, Fingerprint, Label, LicenseModel, LicenseSource,
    OfflineTokenKind, Reason, RevocationCategory, SeatCount,
};

/// A command to a license.
#[derive(Clone, Debug, PartialEq)]
pub struct LicenseCommand {
    pub license_id: LicenseId,
    /// The decision time, stamped by the write side.
    pub at: Timestamp,
    pub action: LicenseAction,
}

/// What to do to the license.
#[derive(Clone, Debug, PartialEq)]
pub enum LicenseAction {
    Issue(Box<IssueLicense>),
    Suspend {
        reason: Reason,
    },
    Reinstate,
    Renew {
        expires_at: Timestamp,
    },
    Transfer {
        organization: OrganizationRef,
    },
    Revoke {
        reason: Reason,
        category: RevocationCategory,
    },
    ChangeEntitlements {
        features: FeatureSet,
    },
    ChangeSeats {
        seats: SeatCount,
    },
    RotateKey {
        key_hash: KeyHash,
        key_prefix: String,
    },
    ExtendMaintenance {
        until: Timestamp,
    },
    /// Use a seat on a device. Activating an already active fingerprint changes nothing.
    Activate {
        installation_id: InstallationId,
        fingerprint: Fingerprint,
        hostname: Option<Label>,
        platform: Option<Label>,
        environment: Environment,
    },
    /// Free a seat.
    Deactivate {
        installation_id: InstallationId,
        reason: DeactivationReason,
    },
    /// A floating installation is still in use: extend its lease.
    Heartbeat {
        installation_id: InstallationId,
    },
    /// Record the floating leases that have lapsed (run by the ledger itself).
    ExpireLeases,
    /// Record an offline token; the decision fixes its expiry.
    IssueOfflineToken {
        jti: uuid::Uuid,
        kind: OfflineTokenKind,
        fingerprint: Option<Fingerprint>,
    },
}

/// Everything issuing a license needs, looked up by the write side.
#[derive(Clone, Debug, PartialEq)]
pub struct IssueLicense {
    pub policy: PolicyRef,
    /// The policy's product.
    pub product: ProductRef,
    pub organization: OrganizationRef,
    /// Keyed hash of the freshly generated key.
    pub key_hash: KeyHash,
    /// Support prefix of the key (`ACME-7K3Q`).
    pub key_prefix: String,
    /// Overrides the policy's seats.
    pub seats: Option<SeatCount>,
    /// Overrides the policy's features.
    pub features: Option<FeatureSet>,
    /// Overrides the expiry the policy's duration gives.
    pub expires_at: Option<Timestamp>,
    pub source: LicenseSource,
}

/// Events of a license's stream. The serde names are the stored `event_type`s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LicenseEvent {
    #[serde(rename = "LicenseIssued")]
    Issued(Box<LicenseIssued>),
    #[serde(rename = "LicenseSuspended")]
    Suspended { reason: Reason },
    #[serde(rename = "LicenseReinstated")]
    Reinstated {},
    #[serde(rename = "LicenseRenewed")]
    Renewed { expires_at: Timestamp },
    #[serde(rename = "LicenseTransferred")]
    Transferred { organization_id: OrganizationId },
    #[serde(rename = "EntitlementsChanged")]
    EntitlementsChanged { features: FeatureSet },
    #[serde(rename = "SeatsChanged")]
    SeatsChanged { seats: SeatCount },
    #[serde(rename = "MaintenanceExtended")]
    MaintenanceExtended { until: Timestamp },
    #[serde(rename = "LicenseKeyRotated")]
    KeyRotated {
        key_hash: KeyHash,
        key_prefix: String,
    },
    /// Version 2 added `category`; version 1 events are upcast with `unspecified`.
    #[serde(rename = "LicenseRevoked")]
    Revoked {
        reason: Reason,
        category: RevocationCategory,
    },
    #[serde(rename = "InstallationActivated")]
    InstallationActivated {
        installation_id: InstallationId,
        fingerprint: Fingerprint,
        hostname: Option<Label>,
        platform: Option<Label>,
        environment: Environment,
        activated_at: Timestamp,
    },
    #[serde(rename = "InstallationDeactivated")]
    InstallationDeactivated {
        installation_id: InstallationId,
        reason: DeactivationReason,
    },
    #[serde(rename = "FloatingLeaseGranted")]
    FloatingLeaseGranted {
        installation_id: InstallationId,
        expires_at: Timestamp,
    },
    #[serde(rename = "FloatingLeaseReleased")]
    FloatingLeaseReleased { installation_id: InstallationId },
    #[serde(rename = "FloatingLeaseExpired")]
    FloatingLeaseExpired { installation_id: InstallationId },
    #[serde(rename = "OfflineTokenIssued")]
    OfflineTokenIssued {
        jti: uuid::Uuid,
        kind: OfflineTokenKind,
        installation_id: Option<InstallationId>,
        fingerprint: Option<Fingerprint>,
        issued_at: Timestamp,
        expires_at: Timestamp,
    },
    #[serde(rename = "SubscriptionLinked")]
    SubscriptionLinked {
        gateway: String,
        subscription_id: String,
        customer_id: String,
    },
    #[serde(rename = "PaymentFailed")]
    PaymentFailed { grace_until: Timestamp },
    #[serde(rename = "PaymentRecovered")]
    PaymentRecovered {},
    #[serde(rename = "SubscriptionPaused")]
    SubscriptionPaused {},
    #[serde(rename = "SubscriptionResumed")]
    SubscriptionResumed {},
    #[serde(rename = "CancellationScheduled")]
    CancellationScheduled { at: Timestamp },
    #[serde(rename = "SubscriptionCanceled")]
    SubscriptionCanceled {},
}

/// The payload of `LicenseIssued`: the license's terms at issue, self-contained (the policy terms
/// are copied so the license reads the same whatever happens to the policy later).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LicenseIssued {
    pub product_id: ProductId,
    pub app_id: AppId,
    pub policy_id: PolicyId,
    pub policy_version: u32,
    pub organization_id: OrganizationId,
    pub key_hash: KeyHash,
    pub key_prefix: String,
    pub seats: SeatCount,
    pub features: FeatureSet,
    pub starts_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub trial_ends_at: Option<Timestamp>,
    pub maintenance_until: Option<Timestamp>,
    pub source: LicenseSource,
    pub terms: PolicyTerms,
}

impl DomainEvent for LicenseEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Issued(_) => "LicenseIssued",
            Self::Suspended { .. } => "LicenseSuspended",
            Self::Reinstated {} => "LicenseReinstated",
            Self::Renewed { .. } => "LicenseRenewed",
            Self::Transferred { .. } => "LicenseTransferred",
            Self::EntitlementsChanged { .. } => "EntitlementsChanged",
            Self::SeatsChanged { .. } => "SeatsChanged",
            Self::MaintenanceExtended { .. } => "MaintenanceExtended",
            Self::KeyRotated { .. } => "LicenseKeyRotated",
            Self::Revoked { .. } => "LicenseRevoked",
            Self::InstallationActivated { .. } => "InstallationActivated",
            Self::InstallationDeactivated { .. } => "InstallationDeactivated",
            Self::FloatingLeaseGranted { .. } => "FloatingLeaseGranted",
            Self::FloatingLeaseReleased { .. } => "FloatingLeaseReleased",
            Self::FloatingLeaseExpired { .. } => "FloatingLeaseExpired",
            Self::OfflineTokenIssued { .. } => "OfflineTokenIssued",
            Self::SubscriptionLinked { .. } => "SubscriptionLinked",
            Self::PaymentFailed { .. } => "PaymentFailed",
            Self::PaymentRecovered {} => "PaymentRecovered",
            Self::SubscriptionPaused {} => "SubscriptionPaused",
            Self::SubscriptionResumed {} => "SubscriptionResumed",
            Self::CancellationScheduled { .. } => "CancellationScheduled",
            Self::SubscriptionCanceled {} => "SubscriptionCanceled",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        match self {
            Self::Revoked { .. } => "2",
            _ => "1",
        }
        .to_owned()
    }
}

impl VersionedEvent for LicenseEvent {
    const AGGREGATE_TYPE: &'static str = "License";
    const VERSIONS: &'static [(&'static str, &'static str)] = &[
        ("LicenseIssued", "1"),
        ("LicenseSuspended", "1"),
        ("LicenseReinstated", "1"),
        ("LicenseRenewed", "1"),
        ("LicenseTransferred", "1"),
        ("EntitlementsChanged", "1"),
        ("SeatsChanged", "1"),
        ("MaintenanceExtended", "1"),
        ("LicenseKeyRotated", "1"),
        ("LicenseRevoked", "2"),
        ("InstallationActivated", "1"),
        ("InstallationDeactivated", "1"),
        ("FloatingLeaseGranted", "1"),
        ("FloatingLeaseReleased", "1"),
        ("FloatingLeaseExpired", "1"),
        ("OfflineTokenIssued", "1"),
        ("SubscriptionLinked", "1"),
        ("PaymentFailed", "1"),
        ("PaymentRecovered", "1"),
        ("SubscriptionPaused", "1"),
        ("SubscriptionResumed", "1"),
        ("CancellationScheduled", "1"),
        ("SubscriptionCanceled", "1"),
    ];

    /// LicenseRevoked v1 `{reason}` became v2 `{reason, category}`: old revocations read as
    /// `unspecified`. Stored v1 events are never rewritten.
    fn upcast(
        event_type: &str,
        event_version: &str,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, crate::event::EventCodecError> {
        match (event_type, event_version, payload) {
            ("LicenseRevoked", "1", serde_json::Value::Object(mut fields)) => {
                fields.insert(
                    "category".to_owned(),
                    serde_json::Value::from("unspecified"),
                );
                Ok(serde_json::Value::Object(fields))
            }
            (event_type, event_version, _) => {
                Err(crate::event::EventCodecError::UnsupportedVersion {
                    event_type: event_type.to_owned(),
                    event_version: event_version.to_owned(),
                })
            }
        }
    }

    /// A key hash opens exactly one license, forever (a rotated-away key is never reused).
    fn unique_claims(&self) -> Vec<UniqueClaim> {
        let key_hash = match self {
            Self::Issued(issued) => &issued.key_hash,
            Self::KeyRotated { key_hash, .. } => key_hash,
            _ => return Vec::new(),
        };
        vec![UniqueClaim {
            scope: "license_key",
            value: key_hash.to_hex(),
        }]
    }
}

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
}

impl LicenseState {
    /// The active installation of `fingerprint` at `now`.
    pub fn installation_of(&self, fingerprint: &str, now: Timestamp) -> Option<InstallationId> {
        self.activations
            .iter()
            .find(|(_, a)| a.fingerprint.as_str() == fingerprint && a.active_at(now))
            .map(|(id, _)| *id)
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
        self.billing.subscription.is_some()
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

/// The License aggregate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum License {
    /// No `LicenseIssued` yet.
    #[default]
    NotIssued,
    Issued(Box<LicenseState>),
}

fn days(n: u32) -> Duration {
    Duration::days(i64::from(n))
}

impl License {
    /// The state, when issued.
    pub fn state(&self) -> Option<&LicenseState> {
        match self {
            Self::NotIssued => None,
            Self::Issued(s) => Some(s),
        }
    }

    /// Decides a command: the events it causes (none when it changes nothing), or why it is
    /// refused.
    ///
    /// # Errors
    /// The [`DomainError`] naming the refused rule.
    pub fn decide(&self, cmd: &LicenseCommand) -> Result<Vec<LicenseEvent>, DomainError> {
        let id = cmd.license_id;
        let state = match (self, &cmd.action) {
            (Self::NotIssued, LicenseAction::Issue(issue)) => return Self::issue(cmd.at, issue),
            (Self::Issued(_), LicenseAction::Issue(_)) => {
                return Err(DomainError::LicenseAlreadyIssued(id));
            }
            (Self::NotIssued, _) => return Err(DomainError::LicenseNotFound(id)),
            (Self::Issued(state), _) => state,
        };
        // Freeing seats is housekeeping, allowed whatever the license's state.
        match &cmd.action {
            LicenseAction::Deactivate {
                installation_id,
                reason,
            } => return Self::deactivate(state, *installation_id, *reason),
            LicenseAction::ExpireLeases => {
                return Ok(state
                    .lapsed_leases(cmd.at)
                    .into_iter()
                    .map(|installation_id| LicenseEvent::FloatingLeaseExpired { installation_id })
                    .collect());
            }
            _ => {}
        }
        // Revocation is final: nothing else changes a revoked license.
        if state.revocation.is_some() {
            return Err(DomainError::LicenseRevoked(id));
        }
        let events = match &cmd.action {
            LicenseAction::Issue(_)
            | LicenseAction::Deactivate { .. }
            | LicenseAction::ExpireLeases => unreachable!("handled above"),
            LicenseAction::Activate {
                installation_id,
                fingerprint,
                hostname,
                platform,
                environment,
            } => {
                return Self::activate(
                    state,
                    cmd.at,
                    *installation_id,
                    fingerprint,
                    hostname,
                    platform,
                    *environment,
                );
            }
            LicenseAction::Heartbeat { installation_id } => {
                return Self::heartbeat(state, cmd.at, *installation_id);
            }
            LicenseAction::IssueOfflineToken {
                jti,
                kind,
                fingerprint,
            } => return Self::offline_token(state, cmd.at, *jti, *kind, fingerprint.as_ref()),
            LicenseAction::Suspend { reason } => {
                if state.suspension.is_some() {
                    return Err(DomainError::LicenseAlreadySuspended(id));
                }
                vec![LicenseEvent::Suspended {
                    reason: reason.clone(),
                }]
            }
            LicenseAction::Reinstate => {
                if state.suspension.is_none() {
                    return Err(DomainError::LicenseNotSuspended(id));
                }
                vec![LicenseEvent::Reinstated {}]
            }
            LicenseAction::Renew { expires_at } => {
                let Some(current) = state.expires_at else {
                    return Err(DomainError::LicensePerpetual(id));
                };
                if *expires_at <= cmd.at {
                    return Err(DomainError::InvalidExpiry(
                        "expires_at must be in the future".into(),
                    ));
                }
                if *expires_at <= current {
                    return Err(DomainError::InvalidExpiry(format!(
                        "a renewal must extend the license beyond its current expiry {}",
                        current.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    )));
                }
                vec![LicenseEvent::Renewed {
                    expires_at: *expires_at,
                }]
            }
            LicenseAction::Transfer { organization } => {
                organization.require_open()?;
                if organization.id == state.organization_id {
                    return Err(DomainError::SameOrganization(organization.id));
                }
                vec![LicenseEvent::Transferred {
                    organization_id: organization.id,
                }]
            }
            LicenseAction::Revoke { reason, category } => vec![LicenseEvent::Revoked {
                reason: reason.clone(),
                category: *category,
            }],
            LicenseAction::ChangeEntitlements { features } => {
                if *features == state.features {
                    vec![]
                } else {
                    vec![LicenseEvent::EntitlementsChanged {
                        features: features.clone(),
                    }]
                }
            }
            LicenseAction::ChangeSeats { seats } => {
                let active = state.active_installations(cmd.at);
                if seats.get() < active {
                    return Err(DomainError::SeatsBelowActivations {
                        seats: seats.get(),
                        active,
                    });
                }
                if *seats == state.seats {
                    vec![]
                } else {
                    vec![LicenseEvent::SeatsChanged { seats: *seats }]
                }
            }
            LicenseAction::RotateKey {
                key_hash,
                key_prefix,
            } => vec![LicenseEvent::KeyRotated {
                key_hash: *key_hash,
                key_prefix: key_prefix.clone(),
            }],
            LicenseAction::ExtendMaintenance { until } => {
                if *until <= cmd.at || state.maintenance_until.is_some_and(|m| *until <= m) {
                    return Err(DomainError::InvalidExpiry(
                        "maintenance can only be extended to a later date".into(),
                    ));
                }
                vec![LicenseEvent::MaintenanceExtended { until: *until }]
            }
        };
        Ok(events)
    }

    /// The refusal for a license that is not valid at `at` (ignoring devices and features).
    fn require_valid(state: &LicenseState, at: Timestamp) -> Result<(), DomainError> {
        let decision = validation::decide(state, at, None, &[]);
        match decision.code {
            ValidationCode::Valid | ValidationCode::TooManyActivations => Ok(()),
            code => Err(DomainError::LicenseNotValid(code)),
        }
    }

    fn activate(
        state: &LicenseState,
        at: Timestamp,
        installation_id: InstallationId,
        fingerprint: &Fingerprint,
        hostname: &Option<Label>,
        platform: &Option<Label>,
        environment: Environment,
    ) -> Result<Vec<LicenseEvent>, DomainError> {
        Self::require_valid(state, at)?;
        if state.installation_of(fingerprint.as_str(), at).is_some() {
            return Ok(vec![]); // already active: the caller answers with that installation
        }
        // Lapsed leases free their seats now, recorded before the new activation.
        let mut events: Vec<LicenseEvent> = state
            .lapsed_leases(at)
            .into_iter()
            .map(|installation_id| LicenseEvent::FloatingLeaseExpired { installation_id })
            .collect();
        if state.active_installations(at) >= state.seats.get() {
            return Err(DomainError::TooManyActivations {
                seats: state.seats.get(),
            });
        }
        events.push(LicenseEvent::InstallationActivated {
            installation_id,
            fingerprint: fingerprint.clone(),
            hostname: hostname.clone(),
            platform: platform.clone(),
            environment,
            activated_at: at,
        });
        if let (LicenseModel::Floating, Some(lease)) =
            (state.terms.model, state.terms.lease_seconds)
        {
            events.push(LicenseEvent::FloatingLeaseGranted {
                installation_id,
                expires_at: at + Duration::seconds(i64::from(lease)),
            });
        }
        Ok(events)
    }

    fn deactivate(
        state: &LicenseState,
        installation_id: InstallationId,
        reason: DeactivationReason,
    ) -> Result<Vec<LicenseEvent>, DomainError> {
        let activation = state
            .activations
            .get(&installation_id)
            .ok_or(DomainError::InstallationNotFound(installation_id))?;
        Ok(vec![if activation.lease_expires_at.is_some() {
            LicenseEvent::FloatingLeaseReleased { installation_id }
        } else {
            LicenseEvent::InstallationDeactivated {
                installation_id,
                reason,
            }
        }])
    }

    fn heartbeat(
        state: &LicenseState,
        at: Timestamp,
        installation_id: InstallationId,
    ) -> Result<Vec<LicenseEvent>, DomainError> {
        let activation = state
            .activations
            .get(&installation_id)
            .ok_or(DomainError::InstallationNotFound(installation_id))?;
        let (Some(lease_end), Some(lease)) =
            (activation.lease_expires_at, state.terms.lease_seconds)
        else {
            return Err(DomainError::NotFloating);
        };
        if at >= lease_end {
            return Err(DomainError::LeaseExpired(installation_id));
        }
        Self::require_valid(state, at)?;
        let lease = Duration::seconds(i64::from(lease));
        // Renew once half the lease is used: a client beating every few seconds records an
        // event per half lease, not per beat.
        if lease_end - at > lease / 2 {
            return Ok(vec![]);
        }
        Ok(vec![LicenseEvent::FloatingLeaseGranted {
            installation_id,
            expires_at: at + lease,
        }])
    }

    fn offline_token(
        state: &LicenseState,
        at: Timestamp,
        jti: uuid::Uuid,
        kind: OfflineTokenKind,
        fingerprint: Option<&Fingerprint>,
    ) -> Result<Vec<LicenseEvent>, DomainError> {
        if !state.terms.offline_allowed {
            return Err(DomainError::OfflineNotAllowed);
        }
        let decision = validation::decide(state, at, fingerprint.map(Fingerprint::as_str), &[]);
        if !decision.valid() {
            return Err(DomainError::LicenseNotValid(decision.code));
        }
        let installation_id = fingerprint.and_then(|fp| state.installation_of(fp.as_str(), at));
        let limit = validation::usable_until(state);
        let expires_at = match kind {
            OfflineTokenKind::Offline => {
                let grace = at + days(state.terms.offline_grace_days);
                limit.map_or(grace, |l| l.min(grace))
            }
            // An air-gapped machine cannot come back for a new token: it runs to the license's
            // end, or ten years for a perpetual license.
            OfflineTokenKind::OfflineActivation => {
                if fingerprint.is_none() {
                    return Err(DomainError::LicenseNotValid(ValidationCode::NotActivated));
                }
                limit.unwrap_or(at + days(3650))
            }
        };
        Ok(vec![LicenseEvent::OfflineTokenIssued {
            jti,
            kind,
            installation_id,
            fingerprint: fingerprint.cloned(),
            issued_at: at,
            expires_at,
        }])
    }

    fn issue(at: Timestamp, issue: &IssueLicense) -> Result<Vec<LicenseEvent>, DomainError> {
        let policy = issue.policy.require_current()?;
        let product = issue.product.require()?;
        if issue.product.id != policy.product_id {
            return Err(DomainError::ProductNotFound(policy.product_id));
        }
        issue.organization.require_open()?;
        let terms = &policy.terms;
        let expires_at = match issue.expires_at {
            Some(explicit) if explicit <= at => {
                return Err(DomainError::InvalidExpiry(
                    "expires_at must be in the future".into(),
                ));
            }
            Some(explicit) => Some(explicit),
            None => terms.duration_days.map(|d| at + days(d)),
        };
        let trial_ends_at = (terms.trial_days > 0).then(|| at + days(terms.trial_days));
        let maintenance_until = terms
            .maintenance_months
            .filter(|m| *m > 0)
            .and_then(|m| at.checked_add_months(Months::new(m)));
        Ok(vec![LicenseEvent::Issued(Box::new(LicenseIssued {
            product_id: issue.product.id,
            app_id: product.app_id,
            policy_id: issue.policy.id,
            policy_version: policy.version,
            organization_id: issue.organization.id,
            key_hash: issue.key_hash,
            key_prefix: issue.key_prefix.clone(),
            seats: issue.seats.unwrap_or(terms.seats),
            features: issue
                .features
                .clone()
                .unwrap_or_else(|| terms.features.clone()),
            starts_at: at,
            expires_at,
            trial_ends_at,
            maintenance_until,
            source: issue.source,
            terms: terms.clone(),
        }))])
    }

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
        }
    }
}

impl Aggregate for License {
    const TYPE: &'static str = "License";
    type Command = LicenseCommand;
    type Event = LicenseEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(&command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.fold(event);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::organization::OrganizationFacts;
    use crate::policy::PolicyFacts;
    use crate::product::ProductFacts;
    use crate::values::{KeyPrefix, LicenseModel, Name, OrganizationKind, ProductKind};
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    type Fw = TestFramework<License>;

    pub(crate) fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }
    pub(crate) fn now() -> Timestamp {
        t("2026-03-01T10:00:00Z")
    }
    pub(crate) fn lid() -> LicenseId {
        LicenseId::from_uuid(Uuid::from_u128(1))
    }
    fn org(n: u128) -> OrganizationId {
        OrganizationId::from_uuid(Uuid::from_u128(n))
    }
    pub(crate) fn terms() -> PolicyTerms {
        PolicyTerms::new(crate::policy::tests::input()).unwrap()
    }
    fn issue_with(terms: PolicyTerms, expires_at: Option<Timestamp>) -> IssueLicense {
        let product_id = ProductId::from_uuid(Uuid::from_u128(20));
        IssueLicense {
            policy: PolicyRef {
                id: PolicyId::from_uuid(Uuid::from_u128(30)),
                facts: Some(PolicyFacts {
                    product_id,
                    version: 2,
                    terms,
                    retired: false,
                }),
            },
            product: ProductRef {
                id: product_id,
                facts: Some(ProductFacts {
                    name: Name::parse("Studio").unwrap(),
                    kind: ProductKind::Application,
                    app_id: AppId::parse(Uuid::from_u128(21)).unwrap(),
                    key_prefix: KeyPrefix::parse("ST").unwrap(),
                }),
            },
            organization: open_org(10),
            key_hash: KeyHash::from_bytes([7; 32]),
            key_prefix: "ST-ABCD".into(),
            seats: None,
            features: None,
            expires_at,
            source: LicenseSource::Admin,
        }
    }
    fn open_org(n: u128) -> OrganizationRef {
        OrganizationRef {
            id: org(n),
            facts: Some(OrganizationFacts {
                kind: OrganizationKind::Customer,
                closed: false,
                lineage: vec![org(n)],
            }),
        }
    }
    fn cmd(action: LicenseAction) -> LicenseCommand {
        LicenseCommand {
            license_id: lid(),
            at: now(),
            action,
        }
    }
    /// The event issuing the standard test license (365 days, 3 seats, feature `pro`).
    pub(crate) fn issued() -> LicenseEvent {
        let events = License::NotIssued
            .decide(&cmd(LicenseAction::Issue(Box::new(issue_with(
                terms(),
                None,
            )))))
            .unwrap();
        events.into_iter().next().unwrap()
    }
    fn reason(s: &str) -> Reason {
        Reason::parse(s).unwrap()
    }
    fn suspended() -> LicenseEvent {
        LicenseEvent::Suspended {
            reason: reason("chargeback"),
        }
    }
    fn revoked() -> LicenseEvent {
        LicenseEvent::Revoked {
            reason: reason("fraud"),
            category: RevocationCategory::Fraud,
        }
    }

    #[test]
    fn issuing_copies_the_policy_terms_and_derives_dates() {
        let LicenseEvent::Issued(issued) = issued() else {
            panic!("expected LicenseIssued")
        };
        assert_eq!(issued.policy_version, 2);
        assert_eq!(issued.seats.get(), 3);
        assert_eq!(issued.starts_at, now());
        assert_eq!(issued.expires_at, Some(now() + Duration::days(365)));
        assert_eq!(issued.trial_ends_at, None);
        assert_eq!(issued.maintenance_until, Some(t("2027-03-01T10:00:00Z")));
        assert_eq!(issued.app_id, AppId::parse(Uuid::from_u128(21)).unwrap());
    }

    #[test]
    fn issuing_honours_overrides_and_trials() {
        let mut trial_terms = terms();
        trial_terms.trial_days = 14;
        trial_terms.duration_days = None;
        let mut issue = issue_with(trial_terms, Some(t("2030-01-01T00:00:00Z")));
        issue.seats = Some(SeatCount::new(9).unwrap());
        issue.features = Some(FeatureSet::parse(&["a", "b"]).unwrap());
        let events = License::NotIssued
            .decide(&cmd(LicenseAction::Issue(Box::new(issue))))
            .unwrap();
        let LicenseEvent::Issued(issued) = &events[0] else {
            panic!()
        };
        assert_eq!(issued.seats.get(), 9);
        assert_eq!(issued.features, FeatureSet::parse(&["a", "b"]).unwrap());
        assert_eq!(issued.expires_at, Some(t("2030-01-01T00:00:00Z")));
        assert_eq!(issued.trial_ends_at, Some(now() + Duration::days(14)));
    }

    #[test]
    fn issuing_is_refused_for_missing_or_unusable_references() {
        let mut issue = issue_with(terms(), None);
        issue.policy.facts = None;
        Fw::with(())
            .given_no_previous_events()
            .when(cmd(LicenseAction::Issue(Box::new(issue))))
            .then_expect_error(DomainError::PolicyNotFound(PolicyId::from_uuid(
                Uuid::from_u128(30),
            )));

        let mut issue = issue_with(terms(), None);
        issue.policy.facts.as_mut().unwrap().retired = true;
        Fw::with(())
            .given_no_previous_events()
            .when(cmd(LicenseAction::Issue(Box::new(issue))))
            .then_expect_error(DomainError::PolicyRetired(PolicyId::from_uuid(
                Uuid::from_u128(30),
            )));

        let mut issue = issue_with(terms(), None);
        issue.organization.facts = None;
        Fw::with(())
            .given_no_previous_events()
            .when(cmd(LicenseAction::Issue(Box::new(issue))))
            .then_expect_error(DomainError::OrganizationNotFound(org(10)));

        let mut issue = issue_with(terms(), None);
        issue.organization.facts.as_mut().unwrap().closed = true;
        Fw::with(())
            .given_no_previous_events()
            .when(cmd(LicenseAction::Issue(Box::new(issue))))
            .then_expect_error(DomainError::OrganizationClosed(org(10)));

        let issue = issue_with(terms(), Some(now()));
        let err = Fw::with(())
            .given_no_previous_events()
            .when(cmd(LicenseAction::Issue(Box::new(issue))))
            .inspect_result()
            .unwrap_err();
        assert_eq!(err.code(), "INVALID_EXPIRY");
    }

    #[test]
    fn issuing_twice_is_a_conflict() {
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::Issue(Box::new(issue_with(
                terms(),
                None,
            )))))
            .then_expect_error(DomainError::LicenseAlreadyIssued(lid()));
    }

    #[test]
    fn every_lifecycle_command_to_an_unissued_license_is_not_found() {
        for action in lifecycle_actions() {
            Fw::with(())
                .given_no_previous_events()
                .when(cmd(action))
                .then_expect_error(DomainError::LicenseNotFound(lid()));
        }
    }

    #[test]
    fn every_lifecycle_command_to_a_revoked_license_is_refused() {
        for action in lifecycle_actions() {
            Fw::with(())
                .given(vec![issued(), revoked()])
                .when(cmd(action))
                .then_expect_error(DomainError::LicenseRevoked(lid()));
        }
        // Also when it was suspended before being revoked.
        Fw::with(())
            .given(vec![issued(), suspended(), revoked()])
            .when(cmd(LicenseAction::Reinstate))
            .then_expect_error(DomainError::LicenseRevoked(lid()));
    }

    fn lifecycle_actions() -> Vec<LicenseAction> {
        vec![
            LicenseAction::Suspend {
                reason: reason("x"),
            },
            LicenseAction::Reinstate,
            LicenseAction::Renew {
                expires_at: t("2030-01-01T00:00:00Z"),
            },
            LicenseAction::Transfer {
                organization: open_org(11),
            },
            LicenseAction::Revoke {
                reason: reason("x"),
                category: RevocationCategory::Unspecified,
            },
            LicenseAction::ChangeEntitlements {
                features: FeatureSet::default(),
            },
            LicenseAction::ChangeSeats {
                seats: SeatCount::new(1).unwrap(),
            },
            LicenseAction::RotateKey {
                key_hash: KeyHash::from_bytes([8; 32]),
                key_prefix: "ST-WXYZ".into(),
            },
            LicenseAction::ExtendMaintenance {
                until: t("2030-01-01T00:00:00Z"),
            },
        ]
    }

    #[test]
    fn suspending_an_active_license_records_the_reason() {
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::Suspend {
                reason: reason("chargeback"),
            }))
            .then_expect_events(vec![suspended()]);
    }

    #[test]
    fn suspending_a_suspended_license_is_refused() {
        Fw::with(())
            .given(vec![issued(), suspended()])
            .when(cmd(LicenseAction::Suspend {
                reason: reason("again"),
            }))
            .then_expect_error(DomainError::LicenseAlreadySuspended(lid()));
    }

    #[test]
    fn reinstating_needs_a_suspension() {
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::Reinstate))
            .then_expect_error(DomainError::LicenseNotSuspended(lid()));
        Fw::with(())
            .given(vec![issued(), suspended()])
            .when(cmd(LicenseAction::Reinstate))
            .then_expect_events(vec![LicenseEvent::Reinstated {}]);
        Fw::with(())
            .given(vec![issued(), suspended(), LicenseEvent::Reinstated {}])
            .when(cmd(LicenseAction::Reinstate))
            .then_expect_error(DomainError::LicenseNotSuspended(lid()));
    }

    #[test]
    fn renewing_must_extend_into_the_future() {
        let later = t("2028-01-01T00:00:00Z");
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::Renew { expires_at: later }))
            .then_expect_events(vec![LicenseEvent::Renewed { expires_at: later }]);
        // Before the current expiry (2027-03-01): refused.
        let err = Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::Renew {
                expires_at: t("2026-12-01T00:00:00Z"),
            }))
            .inspect_result()
            .unwrap_err();
        assert_eq!(err.code(), "INVALID_EXPIRY");
        // In the past: refused, even for an expired license.
        let err = Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::Renew {
                expires_at: t("2020-01-01T00:00:00Z"),
            }))
            .inspect_result()
            .unwrap_err();
        assert_eq!(err.code(), "INVALID_EXPIRY");
    }

    #[test]
    fn renewing_a_suspended_license_is_allowed_and_keeps_it_suspended() {
        let later = t("2028-01-01T00:00:00Z");
        let mut license = License::default();
        for e in [issued(), suspended()] {
            license.fold(e);
        }
        let events = license
            .decide(&cmd(LicenseAction::Renew { expires_at: later }))
            .unwrap();
        for e in events {
            license.fold(e);
        }
        let state = license.state().unwrap();
        assert!(state.suspension.is_some());
        assert_eq!(state.expires_at, Some(later));
    }

    #[test]
    fn renewing_a_perpetual_license_is_refused() {
        let mut perpetual = terms();
        perpetual.duration_days = None;
        let events = License::NotIssued
            .decide(&cmd(LicenseAction::Issue(Box::new(issue_with(
                perpetual, None,
            )))))
            .unwrap();
        Fw::with(())
            .given(events)
            .when(cmd(LicenseAction::Renew {
                expires_at: t("2030-01-01T00:00:00Z"),
            }))
            .then_expect_error(DomainError::LicensePerpetual(lid()));
    }

    #[test]
    fn transferring_moves_the_license_to_an_open_organization() {
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::Transfer {
                organization: open_org(11),
            }))
            .then_expect_events(vec![LicenseEvent::Transferred {
                organization_id: org(11),
            }]);
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::Transfer {
                organization: open_org(10),
            }))
            .then_expect_error(DomainError::SameOrganization(org(10)));
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::Transfer {
                organization: OrganizationRef {
                    id: org(12),
                    facts: None,
                },
            }))
            .then_expect_error(DomainError::OrganizationNotFound(org(12)));
    }

    #[test]
    fn revoking_is_final() {
        Fw::with(())
            .given(vec![issued(), suspended()])
            .when(cmd(LicenseAction::Revoke {
                reason: reason("fraud"),
                category: RevocationCategory::Fraud,
            }))
            .then_expect_events(vec![revoked()]);
    }

    #[test]
    fn a_version_1_revocation_reads_as_unspecified_through_the_upcaster() {
        let v1 = serde_json::json!({"reason": "contract terminated"});
        let event: LicenseEvent = crate::event::decode_payload("LicenseRevoked", "1", v1).unwrap();
        assert_eq!(
            event,
            LicenseEvent::Revoked {
                reason: reason("contract terminated"),
                category: RevocationCategory::Unspecified,
            }
        );
        assert_eq!(
            event.event_version(),
            "2",
            "written anew, it would be version 2"
        );
        let unknown = crate::event::decode_payload::<LicenseEvent>(
            "LicenseRevoked",
            "3",
            serde_json::json!({}),
        );
        assert!(
            unknown.is_err(),
            "a version from the future is refused, not guessed"
        );
    }

    #[test]
    fn changing_entitlements_and_seats_records_only_real_changes() {
        let features = FeatureSet::parse(&["pro", "export"]).unwrap();
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::ChangeEntitlements {
                features: features.clone(),
            }))
            .then_expect_events(vec![LicenseEvent::EntitlementsChanged { features }]);
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::ChangeEntitlements {
                features: FeatureSet::parse(&["pro"]).unwrap(),
            }))
            .then_expect_events(vec![]);
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::ChangeSeats {
                seats: SeatCount::new(3).unwrap(),
            }))
            .then_expect_events(vec![]);
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::ChangeSeats {
                seats: SeatCount::new(1).unwrap(),
            }))
            .then_expect_events(vec![LicenseEvent::SeatsChanged {
                seats: SeatCount::new(1).unwrap(),
            }]);
    }

    #[test]
    fn seats_cannot_drop_below_active_installations() {
        let mut license = License::default();
        license.fold(issued());
        let License::Issued(state) = &mut license else {
            panic!()
        };
        for n in 0..2u128 {
            state.activations.insert(
                InstallationId::from_uuid(Uuid::from_u128(100 + n)),
                Activation {
                    fingerprint: Fingerprint::parse(&format!("fp-{n}")).unwrap(),
                    environment: Environment::Production,
                    hostname: None,
                    platform: None,
                    activated_at: now(),
                    lease_expires_at: None,
                },
            );
        }
        let err = license
            .decide(&cmd(LicenseAction::ChangeSeats {
                seats: SeatCount::new(1).unwrap(),
            }))
            .unwrap_err();
        assert_eq!(
            err,
            DomainError::SeatsBelowActivations {
                seats: 1,
                active: 2
            }
        );
        assert!(
            license
                .decide(&cmd(LicenseAction::ChangeSeats {
                    seats: SeatCount::new(2).unwrap()
                }))
                .is_ok()
        );
    }

    #[test]
    fn rotating_the_key_replaces_hash_and_prefix() {
        let mut license = License::default();
        license.fold(issued());
        license.fold(LicenseEvent::KeyRotated {
            key_hash: KeyHash::from_bytes([9; 32]),
            key_prefix: "ST-NEW1".into(),
        });
        let state = license.state().unwrap();
        assert_eq!(state.key_hash, KeyHash::from_bytes([9; 32]));
        assert_eq!(state.key_prefix, "ST-NEW1");
    }

    #[test]
    fn maintenance_only_extends() {
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::ExtendMaintenance {
                until: t("2028-03-01T10:00:00Z"),
            }))
            .then_expect_events(vec![LicenseEvent::MaintenanceExtended {
                until: t("2028-03-01T10:00:00Z"),
            }]);
        let err = Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::ExtendMaintenance {
                until: t("2026-06-01T00:00:00Z"),
            }))
            .inspect_result()
            .unwrap_err();
        assert_eq!(err.code(), "INVALID_EXPIRY");
    }

    #[test]
    fn a_floating_policy_keeps_its_lease_on_the_license() {
        let floating = PolicyTerms::new(crate::policy::PolicyTermsInput {
            model: LicenseModel::Floating,
            ..crate::policy::tests::input()
        })
        .unwrap();
        let events = License::NotIssued
            .decide(&cmd(LicenseAction::Issue(Box::new(issue_with(
                floating, None,
            )))))
            .unwrap();
        let mut license = License::default();
        for e in events {
            license.fold(e);
        }
        assert_eq!(license.state().unwrap().terms.lease_seconds, Some(900));
    }

    // ----- activations, leases, offline tokens -----

    fn iid(n: u128) -> InstallationId {
        InstallationId::from_uuid(Uuid::from_u128(1000 + n))
    }
    fn fp(s: &str) -> Fingerprint {
        Fingerprint::parse(s).unwrap()
    }
    fn activate(n: u128, fingerprint: &str) -> LicenseAction {
        LicenseAction::Activate {
            installation_id: iid(n),
            fingerprint: fp(fingerprint),
            hostname: None,
            platform: None,
            environment: Environment::Production,
        }
    }
    fn activated(n: u128, fingerprint: &str) -> LicenseEvent {
        LicenseEvent::InstallationActivated {
            installation_id: iid(n),
            fingerprint: fp(fingerprint),
            hostname: None,
            platform: None,
            environment: Environment::Production,
            activated_at: now(),
        }
    }
    fn floating_issued(seats: u32, lease: u32) -> LicenseEvent {
        let mut terms = terms();
        terms.model = LicenseModel::Floating;
        terms.lease_seconds = Some(lease);
        terms.seats = SeatCount::new(seats).unwrap();
        License::NotIssued
            .decide(&cmd(LicenseAction::Issue(Box::new(issue_with(
                terms, None,
            )))))
            .unwrap()
            .remove(0)
    }
    fn at(offset_seconds: i64, action: LicenseAction) -> LicenseCommand {
        LicenseCommand {
            license_id: lid(),
            at: now() + Duration::seconds(offset_seconds),
            action,
        }
    }

    #[test]
    fn activating_a_new_device_takes_a_seat() {
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(activate(1, "fp-1")))
            .then_expect_events(vec![activated(1, "fp-1")]);
    }

    #[test]
    fn activating_an_active_fingerprint_again_changes_nothing() {
        Fw::with(())
            .given(vec![issued(), activated(1, "fp-1")])
            .when(cmd(activate(2, "fp-1")))
            .then_expect_events(vec![]);
    }

    #[test]
    fn activating_beyond_the_seat_limit_is_refused() {
        let full = vec![
            issued(),
            activated(1, "a"),
            activated(2, "b"),
            activated(3, "c"),
        ];
        Fw::with(())
            .given(full)
            .when(cmd(activate(4, "d")))
            .then_expect_error(DomainError::TooManyActivations { seats: 3 });
    }

    #[test]
    fn a_license_that_is_not_valid_cannot_be_activated() {
        Fw::with(())
            .given(vec![issued(), suspended()])
            .when(cmd(activate(1, "a")))
            .then_expect_error(DomainError::LicenseNotValid(ValidationCode::Suspended));
        Fw::with(())
            .given(vec![issued()])
            .when(at(400 * 86_400, activate(1, "a")))
            .then_expect_error(DomainError::LicenseNotValid(ValidationCode::Expired));
        Fw::with(())
            .given(vec![issued(), revoked()])
            .when(cmd(activate(1, "a")))
            .then_expect_error(DomainError::LicenseRevoked(lid()));
    }

    #[test]
    fn deactivating_frees_the_seat_even_on_a_revoked_license() {
        Fw::with(())
            .given(vec![issued(), activated(1, "a"), revoked()])
            .when(cmd(LicenseAction::Deactivate {
                installation_id: iid(1),
                reason: DeactivationReason::Client,
            }))
            .then_expect_events(vec![LicenseEvent::InstallationDeactivated {
                installation_id: iid(1),
                reason: DeactivationReason::Client,
            }]);
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::Deactivate {
                installation_id: iid(9),
                reason: DeactivationReason::Client,
            }))
            .then_expect_error(DomainError::InstallationNotFound(iid(9)));
    }

    #[test]
    fn a_floating_activation_holds_a_lease_renewed_by_heartbeats_past_half_time() {
        let lease_end = now() + Duration::seconds(600);
        Fw::with(())
            .given(vec![floating_issued(2, 600)])
            .when(cmd(activate(1, "a")))
            .then_expect_events(vec![
                activated(1, "a"),
                LicenseEvent::FloatingLeaseGranted {
                    installation_id: iid(1),
                    expires_at: lease_end,
                },
            ]);
        let history = vec![
            floating_issued(2, 600),
            activated(1, "a"),
            LicenseEvent::FloatingLeaseGranted {
                installation_id: iid(1),
                expires_at: lease_end,
            },
        ];
        // Early beat: nothing to record.
        Fw::with(())
            .given(history.clone())
            .when(at(
                60,
                LicenseAction::Heartbeat {
                    installation_id: iid(1),
                },
            ))
            .then_expect_events(vec![]);
        // Past half the lease: renewed from now.
        Fw::with(())
            .given(history.clone())
            .when(at(
                400,
                LicenseAction::Heartbeat {
                    installation_id: iid(1),
                },
            ))
            .then_expect_events(vec![LicenseEvent::FloatingLeaseGranted {
                installation_id: iid(1),
                expires_at: now() + Duration::seconds(1000),
            }]);
        // Too late: the seat is gone.
        Fw::with(())
            .given(history)
            .when(at(
                600,
                LicenseAction::Heartbeat {
                    installation_id: iid(1),
                },
            ))
            .then_expect_error(DomainError::LeaseExpired(iid(1)));
        // A node-locked installation has no lease.
        Fw::with(())
            .given(vec![issued(), activated(1, "a")])
            .when(cmd(LicenseAction::Heartbeat {
                installation_id: iid(1),
            }))
            .then_expect_error(DomainError::NotFloating);
    }

    #[test]
    fn lapsed_leases_free_their_seats_and_are_recorded() {
        let history = vec![
            floating_issued(1, 600),
            activated(1, "a"),
            LicenseEvent::FloatingLeaseGranted {
                installation_id: iid(1),
                expires_at: now() + Duration::seconds(600),
            },
        ];
        // While the lease runs, the only seat is taken.
        Fw::with(())
            .given(history.clone())
            .when(at(10, activate(2, "b")))
            .then_expect_error(DomainError::TooManyActivations { seats: 1 });
        // After it lapsed, a new device gets the seat and the expiry is recorded first.
        Fw::with(())
            .given(history.clone())
            .when(at(601, activate(2, "b")))
            .then_expect_events(vec![
                LicenseEvent::FloatingLeaseExpired {
                    installation_id: iid(1),
                },
                LicenseEvent::InstallationActivated {
                    installation_id: iid(2),
                    fingerprint: fp("b"),
                    hostname: None,
                    platform: None,
                    environment: Environment::Production,
                    activated_at: now() + Duration::seconds(601),
                },
                LicenseEvent::FloatingLeaseGranted {
                    installation_id: iid(2),
                    expires_at: now() + Duration::seconds(1201),
                },
            ]);
        Fw::with(())
            .given(history.clone())
            .when(at(601, LicenseAction::ExpireLeases))
            .then_expect_events(vec![LicenseEvent::FloatingLeaseExpired {
                installation_id: iid(1),
            }]);
        Fw::with(())
            .given(history)
            .when(at(10, LicenseAction::ExpireLeases))
            .then_expect_events(vec![]);
    }

    #[test]
    fn offline_tokens_need_an_offline_policy_and_a_valid_license_and_never_outlive_it() {
        let jti = Uuid::from_u128(77);
        let token = |kind, fingerprint: Option<&str>| LicenseAction::IssueOfflineToken {
            jti,
            kind,
            fingerprint: fingerprint.map(fp),
        };
        // 14 days of offline grace inside a 365-day license.
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(token(OfflineTokenKind::Offline, None)))
            .then_expect_events(vec![LicenseEvent::OfflineTokenIssued {
                jti,
                kind: OfflineTokenKind::Offline,
                installation_id: None,
                fingerprint: None,
                issued_at: now(),
                expires_at: now() + Duration::days(14),
            }]);
        // Five days before expiry the token ends with the license.
        let late = now() + Duration::days(360);
        let events = License::default()
            .decide(&cmd(LicenseAction::Issue(Box::new(issue_with(
                terms(),
                None,
            )))))
            .unwrap();
        let mut license = License::default();
        for e in events {
            license.fold(e);
        }
        let issued_late = license
            .decide(&LicenseCommand {
                license_id: lid(),
                at: late,
                action: token(OfflineTokenKind::Offline, None),
            })
            .unwrap();
        let LicenseEvent::OfflineTokenIssued { expires_at, .. } = &issued_late[0] else {
            panic!()
        };
        assert_eq!(Some(*expires_at), license.state().unwrap().expires_at);
        // Bound to an activated device: the installation is named.
        Fw::with(())
            .given(vec![issued(), activated(1, "a")])
            .when(cmd(token(OfflineTokenKind::OfflineActivation, Some("a"))))
            .then_expect_events(vec![LicenseEvent::OfflineTokenIssued {
                jti,
                kind: OfflineTokenKind::OfflineActivation,
                installation_id: Some(iid(1)),
                fingerprint: Some(fp("a")),
                issued_at: now(),
                expires_at: now() + Duration::days(365),
            }]);
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(token(OfflineTokenKind::Offline, Some("not-activated"))))
            .then_expect_error(DomainError::LicenseNotValid(ValidationCode::NotActivated));
        Fw::with(())
            .given(vec![issued(), suspended()])
            .when(cmd(token(OfflineTokenKind::Offline, None)))
            .then_expect_error(DomainError::LicenseNotValid(ValidationCode::Suspended));
        let mut online_only = terms();
        online_only.offline_allowed = false;
        let events = License::NotIssued
            .decide(&cmd(LicenseAction::Issue(Box::new(issue_with(
                online_only,
                None,
            )))))
            .unwrap();
        Fw::with(())
            .given(events)
            .when(cmd(token(OfflineTokenKind::Offline, None)))
            .then_expect_error(DomainError::OfflineNotAllowed);
    }

    #[test]
    fn billing_facts_drive_status_and_validation() {
        use crate::status::{LicenseStatus, status_at};
        let fold = |events: Vec<LicenseEvent>| {
            let mut l = License::default();
            for e in events {
                l.fold(e);
            }
            l.state().unwrap().clone()
        };
        let grace = fold(vec![
            issued(),
            LicenseEvent::PaymentFailed {
                grace_until: now() + Duration::days(3),
            },
        ]);
        assert_eq!(status_at(&grace, now()), LicenseStatus::PastDue);
        assert!(validation::decide(&grace, now(), None, &[]).valid());
        assert_eq!(
            validation::decide(&grace, now() + Duration::days(3), None, &[]).code,
            ValidationCode::Overdue
        );
        let recovered = fold(vec![
            issued(),
            LicenseEvent::PaymentFailed { grace_until: now() },
            LicenseEvent::PaymentRecovered {},
        ]);
        assert_eq!(status_at(&recovered, now()), LicenseStatus::Active);
        let paused = fold(vec![issued(), LicenseEvent::SubscriptionPaused {}]);
        assert_eq!(
            validation::decide(&paused, now(), None, &[]).code,
            ValidationCode::Paused
        );
        let resumed = fold(vec![
            issued(),
            LicenseEvent::SubscriptionPaused {},
            LicenseEvent::SubscriptionResumed {},
        ]);
        assert!(validation::decide(&resumed, now(), None, &[]).valid());
        let period_end = now() + Duration::days(10);
        let canceled = fold(vec![
            issued(),
            LicenseEvent::CancellationScheduled { at: period_end },
            LicenseEvent::SubscriptionCanceled {},
        ]);
        assert_eq!(status_at(&canceled, now()), LicenseStatus::Active);
        assert!(validation::decide(&canceled, now(), None, &[]).valid());
        assert_eq!(status_at(&canceled, period_end), LicenseStatus::Canceled);
        assert_eq!(
            validation::decide(&canceled, period_end, None, &[]).code,
            ValidationCode::Revoked
        );
    }
}
