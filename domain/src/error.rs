//! Every refusal a command can meet, each with a stable [`ErrorCode`] (the public contract of
//! error responses) and a [`RejectionKind`] that the API maps to an HTTP status in one place.

use crate::codes::ErrorCode;
use crate::ids::{
    ApiTokenId, DownloadId, InstallationId, LicenseId, OrganizationId, PolicyId, ProductId,
    ReleaseId, UserId,
};
use crate::validation::ValidationCode;
use crate::values::{OrganizationKind, Role};

/// How a refusal should be understood by a caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectionKind {
    /// Something the command names does not exist.
    NotFound,
    /// The command collides with something that already exists.
    Conflict,
    /// The command is well-formed but not allowed in the current state.
    Unprocessable,
    /// The command is not well-formed: its fields contradict each other (400).
    Invalid,
}

/// A command refused by an aggregate. Deterministic: the same state and command always give the
/// same refusal, so tests can expect them exactly.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("organization {0} does not exist")]
    OrganizationNotFound(OrganizationId),
    #[error("organization {0} already exists")]
    OrganizationAlreadyRegistered(OrganizationId),
    #[error("organization {0} is closed")]
    OrganizationClosed(OrganizationId),
    #[error("moving the organization under {0} would make it its own ancestor")]
    OrganizationCycle(OrganizationId),
    #[error("an organization tree may be at most {max} levels deep")]
    OrganizationTooDeep { max: usize },
    #[error("organization {0} is not a partner")]
    NotAPartner(OrganizationId),
    #[error("partner {0} already administers this organization")]
    DelegationAlreadyGranted(OrganizationId),
    #[error("partner {0} does not administer this organization")]
    DelegationNotGranted(OrganizationId),

    #[error("product {0} does not exist")]
    ProductNotFound(ProductId),
    #[error("product {0} already exists")]
    ProductAlreadyDefined(ProductId),
    #[error("a {0} product must name its parent product")]
    ParentProductRequired(&'static str),
    #[error("{0}")]
    InvalidParentProduct(String),
    #[error("{0}")]
    InvalidUpgradePath(String),

    #[error("release {0} does not exist")]
    ReleaseNotFound(ReleaseId),
    #[error("release {0} already exists")]
    ReleaseAlreadyDrafted(ReleaseId),
    #[error("release {0} is not a draft: its artifacts are final")]
    ReleaseNotDraft(ReleaseId),
    #[error("release {0} is a draft; only a published release is yanked")]
    ReleaseNotPublished(ReleaseId),
    #[error("release {0} is yanked already")]
    ReleaseYanked(ReleaseId),
    #[error("release {0} has no artifacts; upload one before publishing")]
    ReleaseHasNoArtifacts(ReleaseId),
    #[error("the release holds another file named {0:?}; artifacts are immutable")]
    ArtifactExists(String),
    #[error("the license does not see this release: {0}")]
    ReleaseNotVisible(crate::release::Unseen),
    #[error("download {0} was granted already")]
    DownloadAlreadyGranted(DownloadId),
    #[error("download {0} was never granted")]
    DownloadNotGranted(DownloadId),

    #[error("policy {0} does not exist")]
    PolicyNotFound(PolicyId),
    #[error("policy {0} already exists")]
    PolicyAlreadyDefined(PolicyId),
    #[error("policy {0} is retired")]
    PolicyRetired(PolicyId),
    #[error("{0}")]
    InvalidPolicyTerms(String),
    #[error("price {price_id} is linked to policy {policy_id}; unlink it there first")]
    PriceLinkedElsewhere {
        price_id: String,
        policy_id: PolicyId,
    },

    #[error("license {0} does not exist")]
    LicenseNotFound(LicenseId),
    #[error("license {0} already exists")]
    LicenseAlreadyIssued(LicenseId),
    #[error("license {0} is revoked; a revoked license cannot change")]
    LicenseRevoked(LicenseId),
    #[error("license {0} is already suspended")]
    LicenseAlreadySuspended(LicenseId),
    #[error("license {0} is not suspended")]
    LicenseNotSuspended(LicenseId),
    #[error("{0}")]
    InvalidExpiry(String),
    #[error("license {0} is perpetual; it has no expiry to renew")]
    LicensePerpetual(LicenseId),
    #[error("the license already belongs to organization {0}")]
    SameOrganization(OrganizationId),
    #[error(
        "cannot lower seats to {seats}: {active} installations are active; deactivate some first"
    )]
    SeatsBelowActivations { seats: u32, active: u32 },

    #[error("{}", .0.detail())]
    LicenseNotValid(ValidationCode),
    #[error("all {seats} seats of the license are in use; deactivate an installation first")]
    TooManyActivations { seats: u32 },
    #[error("installation {0} is not active on this license")]
    InstallationNotFound(InstallationId),
    #[error("the license is not floating; only floating installations hold leases")]
    NotFloating,
    #[error("the lease of installation {0} has expired; activate again")]
    LeaseExpired(InstallationId),
    #[error("the license's policy does not allow offline use")]
    OfflineNotAllowed,
    #[error("all {seats} named-user seats of the license are assigned; unassign a user first")]
    TooManyAssignments { seats: u32 },
    #[error(
        "cannot lower seats to {seats}: {assigned} users are named on the license; unassign some first"
    )]
    SeatsBelowAssignments { seats: u32, assigned: u32 },
    #[error(
        "user {user_id} is not of organization {organization_id} or one below it: a license is assigned to its own organization's users"
    )]
    AssigneeOutsideOrganization {
        user_id: UserId,
        organization_id: OrganizationId,
    },
    #[error("user {0} is not assigned to this license")]
    AssignmentNotFound(UserId),

    #[error("API token {0} does not exist")]
    ApiTokenNotFound(ApiTokenId),
    #[error("API token {0} already exists")]
    ApiTokenAlreadyIssued(ApiTokenId),
    #[error("API token {0} is already revoked")]
    ApiTokenAlreadyRevoked(ApiTokenId),
    #[error("the vendor role {0} holds everywhere; a token with it is bound to no organization")]
    VendorRoleBound(Role),
    #[error("the customer role {0} holds at an organization; name it in organization_id")]
    CustomerRoleUnbound(Role),
    #[error("user {0} holds a vendor role: vendor staff are not impersonated")]
    StaffNotImpersonated(UserId),

    #[error("user {0} does not exist")]
    UserNotFound(UserId),
    #[error("user {0} already exists")]
    UserAlreadyRegistered(UserId),
    #[error("user {0} is deactivated")]
    UserDeactivated(UserId),
    #[error("the invitation of user {0} was claimed already")]
    InvitationAlreadyClaimed(UserId),
    #[error(
        "an invitation is claimed by a token carrying its email, verified by the identity provider"
    )]
    InvitationEmailUnverified,
    #[error("this invitation is claimed through another identity provider")]
    InvitationIssuerMismatch,
    #[error("the role {role} is not held at a {kind} organization")]
    RoleNotHeldThere { role: Role, kind: OrganizationKind },
}

impl DomainError {
    /// The stable code clients branch on.
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::OrganizationNotFound(_) => ErrorCode::OrganizationNotFound,
            Self::OrganizationAlreadyRegistered(_)
            | Self::ProductAlreadyDefined(_)
            | Self::PolicyAlreadyDefined(_)
            | Self::LicenseAlreadyIssued(_)
            | Self::ApiTokenAlreadyIssued(_) => ErrorCode::AlreadyExists,
            Self::OrganizationClosed(_) => ErrorCode::OrganizationClosed,
            Self::OrganizationCycle(_) => ErrorCode::OrganizationCycle,
            Self::OrganizationTooDeep { .. } => ErrorCode::OrganizationTooDeep,
            Self::NotAPartner(_) => ErrorCode::NotAPartner,
            Self::DelegationAlreadyGranted(_) => ErrorCode::DelegationAlreadyGranted,
            Self::DelegationNotGranted(_) => ErrorCode::DelegationNotGranted,
            Self::ProductNotFound(_) => ErrorCode::ProductNotFound,
            Self::ParentProductRequired(_) => ErrorCode::ParentProductRequired,
            Self::InvalidParentProduct(_) => ErrorCode::InvalidParentProduct,
            Self::InvalidUpgradePath(_) => ErrorCode::InvalidUpgradePath,
            Self::ReleaseNotFound(_) => ErrorCode::ReleaseNotFound,
            Self::ReleaseAlreadyDrafted(_) => ErrorCode::AlreadyExists,
            Self::ReleaseNotDraft(_) => ErrorCode::ReleaseNotDraft,
            Self::ReleaseNotPublished(_) => ErrorCode::ReleaseNotPublished,
            Self::ReleaseYanked(_) => ErrorCode::ReleaseYanked,
            Self::ReleaseHasNoArtifacts(_) => ErrorCode::ReleaseHasNoArtifacts,
            Self::ArtifactExists(_) => ErrorCode::ArtifactExists,
            Self::ReleaseNotVisible(_) => ErrorCode::ReleaseNotVisible,
            Self::DownloadAlreadyGranted(_) => ErrorCode::AlreadyExists,
            Self::DownloadNotGranted(_) => ErrorCode::DownloadLinkInvalid,
            Self::PolicyNotFound(_) => ErrorCode::PolicyNotFound,
            Self::PolicyRetired(_) => ErrorCode::PolicyRetired,
            Self::InvalidPolicyTerms(_) => ErrorCode::InvalidPolicyTerms,
            Self::PriceLinkedElsewhere { .. } => ErrorCode::PriceLinkedElsewhere,
            Self::LicenseNotFound(_) => ErrorCode::LicenseNotFound,
            Self::LicenseRevoked(_) => ErrorCode::LicenseRevoked,
            Self::LicenseAlreadySuspended(_) => ErrorCode::LicenseAlreadySuspended,
            Self::LicenseNotSuspended(_) => ErrorCode::LicenseNotSuspended,
            Self::InvalidExpiry(_) => ErrorCode::InvalidExpiry,
            Self::LicensePerpetual(_) => ErrorCode::LicensePerpetual,
            Self::SameOrganization(_) => ErrorCode::SameOrganization,
            Self::SeatsBelowActivations { .. } => ErrorCode::SeatsBelowActivations,
            Self::LicenseNotValid(code) => ErrorCode::Validation(*code),
            Self::TooManyActivations { .. } => {
                ErrorCode::Validation(ValidationCode::TooManyActivations)
            }
            Self::InstallationNotFound(_) => ErrorCode::InstallationNotFound,
            Self::NotFloating => ErrorCode::NotFloating,
            Self::LeaseExpired(_) => ErrorCode::LeaseExpired,
            Self::OfflineNotAllowed => ErrorCode::OfflineNotAllowed,
            Self::TooManyAssignments { .. } => ErrorCode::TooManyAssignments,
            Self::SeatsBelowAssignments { .. } => ErrorCode::SeatsBelowAssignments,
            Self::AssigneeOutsideOrganization { .. } => ErrorCode::AssigneeOutsideOrganization,
            Self::AssignmentNotFound(_) => ErrorCode::AssignmentNotFound,
            Self::ApiTokenNotFound(_) => ErrorCode::TokenNotFound,
            Self::ApiTokenAlreadyRevoked(_) => ErrorCode::TokenAlreadyRevoked,
            Self::VendorRoleBound(_) | Self::CustomerRoleUnbound(_) => ErrorCode::InvalidField,
            Self::StaffNotImpersonated(_) => ErrorCode::StaffNotImpersonated,
            Self::UserNotFound(_) => ErrorCode::UserNotFound,
            Self::UserAlreadyRegistered(_) => ErrorCode::AlreadyExists,
            Self::UserDeactivated(_) => ErrorCode::UserDeactivated,
            Self::InvitationAlreadyClaimed(_) => ErrorCode::InvitationAlreadyClaimed,
            Self::InvitationEmailUnverified => ErrorCode::InvitationEmailUnverified,
            Self::InvitationIssuerMismatch => ErrorCode::InvitationIssuerMismatch,
            Self::RoleNotHeldThere { .. } => ErrorCode::RoleNotHeldThere,
        }
    }

    /// The request field a refusal of the request's own shape names (a 400's `field`).
    pub const fn field(&self) -> Option<&'static str> {
        match self {
            Self::VendorRoleBound(_) | Self::CustomerRoleUnbound(_) => Some("organization_id"),
            Self::InvalidUpgradePath(_) => Some("via"),
            _ => None,
        }
    }

    /// How the refusal reads to a caller.
    pub const fn kind(&self) -> RejectionKind {
        match self {
            Self::OrganizationNotFound(_)
            | Self::ProductNotFound(_)
            | Self::PolicyNotFound(_)
            | Self::LicenseNotFound(_)
            | Self::InstallationNotFound(_)
            | Self::ApiTokenNotFound(_)
            | Self::UserNotFound(_)
            | Self::ReleaseNotFound(_)
            | Self::AssignmentNotFound(_) => RejectionKind::NotFound,
            Self::OrganizationAlreadyRegistered(_)
            | Self::ProductAlreadyDefined(_)
            | Self::PolicyAlreadyDefined(_)
            | Self::LicenseAlreadyIssued(_)
            | Self::ApiTokenAlreadyIssued(_)
            | Self::UserAlreadyRegistered(_)
            | Self::InvitationAlreadyClaimed(_)
            | Self::TooManyActivations { .. }
            | Self::TooManyAssignments { .. }
            | Self::PriceLinkedElsewhere { .. }
            | Self::ReleaseAlreadyDrafted(_)
            | Self::ReleaseNotDraft(_)
            | Self::ReleaseNotPublished(_)
            | Self::ReleaseYanked(_)
            | Self::ReleaseHasNoArtifacts(_)
            | Self::ArtifactExists(_)
            | Self::DownloadAlreadyGranted(_)
            | Self::LeaseExpired(_) => RejectionKind::Conflict,
            Self::OrganizationClosed(_)
            | Self::OrganizationCycle(_)
            | Self::OrganizationTooDeep { .. }
            | Self::NotAPartner(_)
            | Self::DelegationAlreadyGranted(_)
            | Self::DelegationNotGranted(_)
            | Self::ParentProductRequired(_)
            | Self::InvalidParentProduct(_)
            | Self::PolicyRetired(_)
            | Self::InvalidPolicyTerms(_)
            | Self::LicenseRevoked(_)
            | Self::LicenseAlreadySuspended(_)
            | Self::LicenseNotSuspended(_)
            | Self::InvalidExpiry(_)
            | Self::LicensePerpetual(_)
            | Self::SameOrganization(_)
            | Self::SeatsBelowActivations { .. }
            | Self::SeatsBelowAssignments { .. }
            | Self::AssigneeOutsideOrganization { .. }
            | Self::LicenseNotValid(_)
            | Self::NotFloating
            | Self::OfflineNotAllowed
            | Self::ApiTokenAlreadyRevoked(_)
            | Self::StaffNotImpersonated(_)
            | Self::UserDeactivated(_)
            | Self::InvitationEmailUnverified
            | Self::InvitationIssuerMismatch
            | Self::ReleaseNotVisible(_)
            | Self::DownloadNotGranted(_)
            | Self::RoleNotHeldThere { .. } => RejectionKind::Unprocessable,
            Self::VendorRoleBound(_)
            | Self::CustomerRoleUnbound(_)
            | Self::InvalidUpgradePath(_) => RejectionKind::Invalid,
        }
    }
}
