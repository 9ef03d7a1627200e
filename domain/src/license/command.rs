//! The commands of a license: what the write side can ask of it. Commands carry every outside
//! fact the decision needs (time, new ids, key material, the referenced policy, product and
//! organization), so deciding stays deterministic.

use crate::Timestamp;
use crate::ids::{InstallationId, LicenseId, OrganizationId, UserId};
use crate::keys::KeyHash;
use crate::organization::OrganizationRef;
use crate::policy::PolicyRef;
use crate::product::ProductRef;
use crate::values::{
    DeactivationReason, Environment, FeatureSet, Fingerprint, Label, LicenseSource,
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
    /// Name a user on the license (for `named_user` policies, a seat). Assigning a user already
    /// named changes nothing.
    Assign(Assignee),
    /// Take a user's name off the license, freeing its seat.
    Unassign {
        user_id: UserId,
    },
    /// Bring the license's billing state to what a gateway's subscription says, if the fact is
    /// newer than the last one applied (`crate::billing`).
    SyncBilling {
        target: crate::billing::BillingTarget,
        observed: crate::billing::Observation,
    },
}

/// A user to name on a license, with the facts the decision needs, looked up by the write side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignee {
    pub user_id: UserId,
    /// The user is deactivated: it is named on nothing new.
    pub deactivated: bool,
    /// The user's home organization and every organization above it, nearest first: a license
    /// is assigned only to users of its organization or below (the license's organization is
    /// read at decision time, so a transfer in between cannot slip past the rule).
    pub lineage: Vec<OrganizationId>,
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
