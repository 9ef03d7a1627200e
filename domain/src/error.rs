//! Every refusal a command can meet, each with a stable `code` (the public contract of error
//! responses) and a [`RejectionKind`] that the API maps to an HTTP status in one place.

use crate::ids::{ApiTokenId, InstallationId, LicenseId, OrganizationId, PolicyId, ProductId};
use crate::validation::ValidationCode;

/// How a refusal should be understood by a caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectionKind {
    /// Something the command names does not exist.
    NotFound,
    /// The command collides with something that already exists.
    Conflict,
    /// The command is well-formed but not allowed in the current state.
    Unprocessable,
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

    #[error("policy {0} does not exist")]
    PolicyNotFound(PolicyId),
    #[error("policy {0} already exists")]
    PolicyAlreadyDefined(PolicyId),
    #[error("policy {0} is retired")]
    PolicyRetired(PolicyId),
    #[error("{0}")]
    InvalidPolicyTerms(String),

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

    #[error("API token {0} does not exist")]
    ApiTokenNotFound(ApiTokenId),
    #[error("API token {0} already exists")]
    ApiTokenAlreadyIssued(ApiTokenId),
    #[error("API token {0} is already revoked")]
    ApiTokenAlreadyRevoked(ApiTokenId),
}

impl DomainError {
    /// The stable, UPPER_SNAKE code clients branch on.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::OrganizationNotFound(_) => "ORGANIZATION_NOT_FOUND",
            Self::OrganizationAlreadyRegistered(_)
            | Self::ProductAlreadyDefined(_)
            | Self::PolicyAlreadyDefined(_)
            | Self::LicenseAlreadyIssued(_)
            | Self::ApiTokenAlreadyIssued(_) => "ALREADY_EXISTS",
            Self::OrganizationClosed(_) => "ORGANIZATION_CLOSED",
            Self::OrganizationCycle(_) => "ORGANIZATION_CYCLE",
            Self::NotAPartner(_) => "NOT_A_PARTNER",
            Self::DelegationAlreadyGranted(_) => "DELEGATION_ALREADY_GRANTED",
            Self::DelegationNotGranted(_) => "DELEGATION_NOT_GRANTED",
            Self::ProductNotFound(_) => "PRODUCT_NOT_FOUND",
            Self::ParentProductRequired(_) => "PARENT_PRODUCT_REQUIRED",
            Self::InvalidParentProduct(_) => "INVALID_PARENT_PRODUCT",
            Self::PolicyNotFound(_) => "POLICY_NOT_FOUND",
            Self::PolicyRetired(_) => "POLICY_RETIRED",
            Self::InvalidPolicyTerms(_) => "INVALID_POLICY_TERMS",
            Self::LicenseNotFound(_) => "LICENSE_NOT_FOUND",
            Self::LicenseRevoked(_) => "LICENSE_REVOKED",
            Self::LicenseAlreadySuspended(_) => "LICENSE_ALREADY_SUSPENDED",
            Self::LicenseNotSuspended(_) => "LICENSE_NOT_SUSPENDED",
            Self::InvalidExpiry(_) => "INVALID_EXPIRY",
            Self::LicensePerpetual(_) => "LICENSE_PERPETUAL",
            Self::SameOrganization(_) => "SAME_ORGANIZATION",
            Self::SeatsBelowActivations { .. } => "SEATS_BELOW_ACTIVATIONS",
            Self::LicenseNotValid(code) => code.as_str(),
            Self::TooManyActivations { .. } => "TOO_MANY_ACTIVATIONS",
            Self::InstallationNotFound(_) => "INSTALLATION_NOT_FOUND",
            Self::NotFloating => "NOT_FLOATING",
            Self::LeaseExpired(_) => "LEASE_EXPIRED",
            Self::OfflineNotAllowed => "OFFLINE_NOT_ALLOWED",
            Self::ApiTokenNotFound(_) => "TOKEN_NOT_FOUND",
            Self::ApiTokenAlreadyRevoked(_) => "TOKEN_ALREADY_REVOKED",
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
            | Self::ApiTokenNotFound(_) => RejectionKind::NotFound,
            Self::OrganizationAlreadyRegistered(_)
            | Self::ProductAlreadyDefined(_)
            | Self::PolicyAlreadyDefined(_)
            | Self::LicenseAlreadyIssued(_)
            | Self::ApiTokenAlreadyIssued(_)
            | Self::TooManyActivations { .. }
            | Self::LeaseExpired(_) => RejectionKind::Conflict,
            Self::OrganizationClosed(_)
            | Self::OrganizationCycle(_)
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
            | Self::LicenseNotValid(_)
            | Self::NotFloating
            | Self::OfflineNotAllowed
            | Self::ApiTokenAlreadyRevoked(_) => RejectionKind::Unprocessable,
        }
    }
}
