//! The events of a license's stream: the stored contract. Their `event_type` strings, versions
//! and JSON shapes are what the events table holds and the hash chain covers, so they never
//! change; a new shape is a new version with an upcaster from the old one (pinned by the golden
//! fixtures in `domain/tests/golden/`).

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::event::{UniqueClaim, VersionedEvent};
use crate::ids::{AppId, InstallationId, OrganizationId, PolicyId, ProductId, UserId};
use crate::keys::KeyHash;
use crate::policy::PolicyTerms;
use crate::stream::{AggregateType, ClaimScope};
use crate::values::{
    DeactivationReason, Environment, FeatureSet, Fingerprint, Label, LicenseSource,
    OfflineTokenKind, Reason, RevocationCategory, SeatCount,
};

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
    /// A subscription's trial runs until `ends_at` (issue #16).
    #[serde(rename = "TrialStarted")]
    TrialStarted { ends_at: Timestamp },
    /// An ended subscription is live again (Stripe brings `unpaid` back to `active` once paid).
    #[serde(rename = "SubscriptionReactivated")]
    SubscriptionReactivated {},
    /// The subscription's trial is over: paid, or ended otherwise (the standing says).
    #[serde(rename = "TrialEnded")]
    TrialEnded {},
    /// A scheduled cancellation was taken back: the subscription renews.
    #[serde(rename = "CancellationWithdrawn")]
    CancellationWithdrawn {},
    /// A gateway fact the license applied: what the subscription said in gateway event
    /// `fact.observed` (`crate::billing`). The license's billing state is derived from its facts in
    /// the gateway's order; the events before this one in the same command are what changed.
    #[serde(rename = "SubscriptionSynced")]
    SubscriptionSynced { fact: crate::billing::BillingFact },
    /// A user is named on the license (round 2).
    #[serde(rename = "LicenseAssigned")]
    Assigned { user_id: UserId },
    #[serde(rename = "LicenseUnassigned")]
    Unassigned { user_id: UserId },
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
            Self::TrialStarted { .. } => "TrialStarted",
            Self::SubscriptionReactivated {} => "SubscriptionReactivated",
            Self::TrialEnded {} => "TrialEnded",
            Self::CancellationWithdrawn {} => "CancellationWithdrawn",
            Self::SubscriptionSynced { .. } => "SubscriptionSynced",
            Self::Assigned { .. } => "LicenseAssigned",
            Self::Unassigned { .. } => "LicenseUnassigned",
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
    const AGGREGATE_TYPE: &'static str = AggregateType::License.as_str();
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
        ("TrialStarted", "1"),
        ("SubscriptionReactivated", "1"),
        ("TrialEnded", "1"),
        ("CancellationWithdrawn", "1"),
        ("SubscriptionSynced", "1"),
        ("LicenseAssigned", "1"),
        ("LicenseUnassigned", "1"),
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
            scope: ClaimScope::LicenseKey.as_str(),
            value: key_hash.to_hex(),
        }]
    }
}
