//! The stable codes of every problem the ledger answers (`code` in problem+json, `docs/api.md`).
//!
//! Clients branch on these strings, so they are a public contract like event types: each is
//! spelled once, here. A refusal of the domain ([`crate::DomainError`]), a request the API cannot
//! read, and a failure of the server all name their code through [`ErrorCode`]; the validation
//! codes a refusal can carry (`NOT_FOUND`, `APP_MISMATCH`, the code of a license that is not
//! valid) keep their one spelling in [`ValidationCode`]. What status a code is answered with is
//! the API's business (`api::error`), not this module's.

use std::fmt;

use crate::validation::ValidationCode;

/// A problem's stable code. `ErrorCode::iter()` lists every one (the compiler keeps the list
/// complete) but [`ErrorCode::Validation`], whose codes [`ValidationCode::iter`] lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::EnumIter)]
pub enum ErrorCode {
    // ----- the request itself -----
    /// No route has this path.
    RouteNotFound,
    /// The route exists, not with this method.
    MethodNotAllowed,
    /// The body is not JSON.
    MalformedJson,
    /// The body could not be read.
    MalformedBody,
    /// A body field is missing, unknown or invalid (the problem names it).
    InvalidField,
    /// A query parameter is invalid.
    InvalidQuery,
    /// A list's `cursor` was not issued for this list, its filters and order, or was altered.
    InvalidCursor,
    /// The body is larger than the server accepts.
    PayloadTooLarge,
    /// The body is not JSON by its `Content-Type`.
    UnsupportedMediaType,
    /// The `Idempotency-Key` header is malformed.
    InvalidIdempotencyKey,
    /// A client request without `X-App-Id`.
    MissingAppId,
    /// A client request whose `X-App-Id` is not a UUID.
    InvalidAppId,
    /// An air-gapped request file that is not one.
    MalformedRequestFile,

    // ----- who is asking -----
    /// No or no valid credentials.
    Unauthorized,
    /// Authenticated, not allowed.
    Forbidden,
    /// Too many requests.
    RateLimited,

    // ----- resources -----
    OrganizationNotFound,
    ProductNotFound,
    PolicyNotFound,
    LicenseNotFound,
    InstallationNotFound,
    TokenNotFound,
    UserNotFound,
    ReleaseNotFound,
    ArtifactNotFound,
    /// No checkpoint of the log has been signed yet.
    NoCheckpoint,
    /// The resource exists already.
    AlreadyExists,
    /// Another product has this App GUID.
    AppIdTaken,
    /// The product has a release of this version (build metadata aside).
    ReleaseVersionExists,
    /// Other writers kept winning the race for a stream.
    Conflict,
    /// An `Idempotency-Key` first used with another request.
    IdempotencyKeyReused,
    /// A request with this `Idempotency-Key` is still running.
    IdempotencyInProgress,

    // ----- refusals of the domain -----
    OrganizationClosed,
    OrganizationCycle,
    /// Placing the organization there would make the tree deeper than the ledger allows.
    OrganizationTooDeep,
    NotAPartner,
    DelegationAlreadyGranted,
    DelegationNotGranted,
    ParentProductRequired,
    InvalidParentProduct,
    PolicyRetired,
    InvalidPolicyTerms,
    /// A gateway price is linked to another policy.
    PriceLinkedElsewhere,
    LicenseRevoked,
    LicenseAlreadySuspended,
    LicenseNotSuspended,
    InvalidExpiry,
    LicensePerpetual,
    SameOrganization,
    SeatsBelowActivations,
    NotFloating,
    LeaseExpired,
    OfflineNotAllowed,
    TokenAlreadyRevoked,
    /// The user is deactivated; it changes no more.
    UserDeactivated,
    /// The invitation was claimed already.
    InvitationAlreadyClaimed,
    /// The token claiming an invitation does not carry its email, verified.
    InvitationEmailUnverified,
    /// The token claiming an invitation is not of the issuer the invitation names.
    InvitationIssuerMismatch,
    /// A vendor role at a customer's organization, or a customer role at the vendor's.
    RoleNotHeldThere,
    /// Another user has this email.
    EmailTaken,
    /// Another user has this identity (issuer and subject).
    IdentityTaken,
    /// Every named-user seat of the license is assigned.
    TooManyAssignments,
    /// Seats cannot go below the users named on a `named_user` license.
    SeatsBelowAssignments,
    /// A license is assigned only to users of its organization or below.
    AssigneeOutsideOrganization,
    /// The user is not assigned to the license.
    AssignmentNotFound,
    /// Vendor staff are not impersonated.
    StaffNotImpersonated,
    /// A webhook's signature does not verify.
    InvalidSignature,
    /// No gateway event of that id was received.
    BillingEventNotFound,
    /// An upgrade path whose steps do not lead from its start to its end.
    InvalidUpgradePath,
    /// The release is published or yanked: its artifacts are final.
    ReleaseNotDraft,
    /// A draft is not yanked.
    ReleaseNotPublished,
    /// The release is yanked.
    ReleaseYanked,
    /// A release is published with at least one artifact.
    ReleaseHasNoArtifacts,
    /// The release holds another file of that name.
    ArtifactExists,
    /// The license does not see the release (the detail says which rule it fails).
    ReleaseNotVisible,
    /// A download link expired, altered, for a yanked release or a license that no longer sees
    /// it.
    DownloadLinkInvalid,
    /// A `Range` outside the file.
    RangeNotSatisfiable,
    /// An `If-Match` naming another version of the file.
    PreconditionFailed,
    /// A validation code: `NOT_FOUND` and `APP_MISMATCH` at the client edge, and the code of a
    /// license that is not valid for what was asked (`SUSPENDED`, `TOO_MANY_ACTIVATIONS`, ...).
    #[strum(disabled)]
    Validation(ValidationCode),

    // ----- the server -----
    /// An unexpected failure (the body says no more).
    Internal,
    /// A dependency (the database) is unavailable.
    Unavailable,
    /// The request ran past the server's deadline.
    Timeout,
}

impl ErrorCode {
    /// The stable UPPER_SNAKE spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RouteNotFound => "ROUTE_NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::MalformedJson => "MALFORMED_JSON",
            Self::MalformedBody => "MALFORMED_BODY",
            Self::InvalidField => "INVALID_FIELD",
            Self::InvalidQuery => "INVALID_QUERY",
            Self::InvalidCursor => "INVALID_CURSOR",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::InvalidIdempotencyKey => "INVALID_IDEMPOTENCY_KEY",
            Self::MissingAppId => "MISSING_APP_ID",
            Self::InvalidAppId => "INVALID_APP_ID",
            Self::MalformedRequestFile => "MALFORMED_REQUEST_FILE",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::RateLimited => "RATE_LIMITED",
            Self::OrganizationNotFound => "ORGANIZATION_NOT_FOUND",
            Self::ProductNotFound => "PRODUCT_NOT_FOUND",
            Self::PolicyNotFound => "POLICY_NOT_FOUND",
            Self::LicenseNotFound => "LICENSE_NOT_FOUND",
            Self::InstallationNotFound => "INSTALLATION_NOT_FOUND",
            Self::TokenNotFound => "TOKEN_NOT_FOUND",
            Self::UserNotFound => "USER_NOT_FOUND",
            Self::NoCheckpoint => "NO_CHECKPOINT",
            Self::AlreadyExists => "ALREADY_EXISTS",
            Self::AppIdTaken => "APP_ID_TAKEN",
            Self::ReleaseVersionExists => "RELEASE_VERSION_EXISTS",
            Self::ReleaseNotFound => "RELEASE_NOT_FOUND",
            Self::InvalidUpgradePath => "INVALID_UPGRADE_PATH",
            Self::ReleaseNotDraft => "RELEASE_NOT_DRAFT",
            Self::ReleaseNotPublished => "RELEASE_NOT_PUBLISHED",
            Self::ReleaseYanked => "RELEASE_YANKED",
            Self::ReleaseHasNoArtifacts => "RELEASE_HAS_NO_ARTIFACTS",
            Self::ArtifactExists => "ARTIFACT_EXISTS",
            Self::ArtifactNotFound => "ARTIFACT_NOT_FOUND",
            Self::ReleaseNotVisible => "RELEASE_NOT_VISIBLE",
            Self::DownloadLinkInvalid => "DOWNLOAD_LINK_INVALID",
            Self::RangeNotSatisfiable => "RANGE_NOT_SATISFIABLE",
            Self::PreconditionFailed => "PRECONDITION_FAILED",
            Self::Conflict => "CONFLICT",
            Self::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            Self::IdempotencyInProgress => "IDEMPOTENCY_IN_PROGRESS",
            Self::OrganizationClosed => "ORGANIZATION_CLOSED",
            Self::OrganizationCycle => "ORGANIZATION_CYCLE",
            Self::OrganizationTooDeep => "ORGANIZATION_TOO_DEEP",
            Self::NotAPartner => "NOT_A_PARTNER",
            Self::DelegationAlreadyGranted => "DELEGATION_ALREADY_GRANTED",
            Self::DelegationNotGranted => "DELEGATION_NOT_GRANTED",
            Self::ParentProductRequired => "PARENT_PRODUCT_REQUIRED",
            Self::InvalidParentProduct => "INVALID_PARENT_PRODUCT",
            Self::PolicyRetired => "POLICY_RETIRED",
            Self::InvalidPolicyTerms => "INVALID_POLICY_TERMS",
            Self::PriceLinkedElsewhere => "PRICE_LINKED_ELSEWHERE",
            Self::LicenseRevoked => "LICENSE_REVOKED",
            Self::LicenseAlreadySuspended => "LICENSE_ALREADY_SUSPENDED",
            Self::LicenseNotSuspended => "LICENSE_NOT_SUSPENDED",
            Self::InvalidExpiry => "INVALID_EXPIRY",
            Self::LicensePerpetual => "LICENSE_PERPETUAL",
            Self::SameOrganization => "SAME_ORGANIZATION",
            Self::SeatsBelowActivations => "SEATS_BELOW_ACTIVATIONS",
            Self::NotFloating => "NOT_FLOATING",
            Self::LeaseExpired => "LEASE_EXPIRED",
            Self::OfflineNotAllowed => "OFFLINE_NOT_ALLOWED",
            Self::TokenAlreadyRevoked => "TOKEN_ALREADY_REVOKED",
            Self::UserDeactivated => "USER_DEACTIVATED",
            Self::InvitationAlreadyClaimed => "INVITATION_ALREADY_CLAIMED",
            Self::InvitationEmailUnverified => "INVITATION_EMAIL_UNVERIFIED",
            Self::InvitationIssuerMismatch => "INVITATION_ISSUER_MISMATCH",
            Self::RoleNotHeldThere => "ROLE_NOT_HELD_THERE",
            Self::EmailTaken => "EMAIL_TAKEN",
            Self::IdentityTaken => "IDENTITY_TAKEN",
            Self::TooManyAssignments => "TOO_MANY_ASSIGNMENTS",
            Self::SeatsBelowAssignments => "SEATS_BELOW_ASSIGNMENTS",
            Self::AssigneeOutsideOrganization => "ASSIGNEE_OUTSIDE_ORGANIZATION",
            Self::AssignmentNotFound => "ASSIGNMENT_NOT_FOUND",
            Self::StaffNotImpersonated => "STAFF_NOT_IMPERSONATED",
            Self::InvalidSignature => "INVALID_SIGNATURE",
            Self::BillingEventNotFound => "BILLING_EVENT_NOT_FOUND",
            Self::Validation(code) => code.as_str(),
            Self::Internal => "INTERNAL",
            Self::Unavailable => "UNAVAILABLE",
            Self::Timeout => "TIMEOUT",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<ValidationCode> for ErrorCode {
    fn from(code: ValidationCode) -> Self {
        Self::Validation(code)
    }
}

/// So that tests can write `assert_eq!(err.code(), "LICENSE_REVOKED")`.
impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use strum::IntoEnumIterator;

    use super::*;

    #[test]
    fn every_code_is_upper_snake_and_spelled_once() {
        let all: Vec<&str> = ErrorCode::iter()
            .map(ErrorCode::as_str)
            .chain(ValidationCode::iter().map(ValidationCode::as_str))
            .collect();
        let distinct: HashSet<&str> = all.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            all.len(),
            "a code is spelled twice: {all:?}"
        );
        for code in all {
            assert!(
                !code.is_empty()
                    && code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
                    && !code.starts_with('_')
                    && !code.ends_with('_'),
                "{code} is not UPPER_SNAKE"
            );
        }
    }

    #[test]
    fn the_problem_codes_are_all_there() {
        // 81 of the API's own (releases the latest) plus the 12 validation codes: a code
        // removed by mistake shows here.
        assert_eq!(ErrorCode::iter().count(), 81);
        assert_eq!(ValidationCode::iter().count(), 12);
    }

    #[test]
    fn validation_codes_keep_their_spelling() {
        assert_eq!(
            ErrorCode::Validation(ValidationCode::AppMismatch).as_str(),
            "APP_MISMATCH"
        );
        assert_eq!(ErrorCode::LicenseNotFound, "LICENSE_NOT_FOUND");
    }
}
