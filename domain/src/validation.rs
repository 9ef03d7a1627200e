//! The validation decision: given what is known about a license and the clock, the one code a
//! client application gets, first failure wins (DOMAIN.md), with warnings when it is valid.
//!
//! The decision reads a license through [`LicenseFacts`], implemented by the aggregate's state and
//! by the compact entry the API keeps in memory for each license, so the endpoint that answers
//! thousands of checks a second and the aggregate deciding an activation share one function.

use serde::Serialize;

use crate::Timestamp;
use crate::values::{FeatureCode, FeatureSet, LicenseModel};

/// Days before the end of a trial from which `TRIAL_ENDING` is warned.
pub const TRIAL_ENDING_WARNING_DAYS: u32 = 3;
/// Days before expiry from which `EXPIRING` is warned.
pub const EXPIRING_WARNING_DAYS: u32 = 14;

/// What the decision needs to know about a license.
pub trait LicenseFacts {
    fn revoked(&self) -> bool;
    fn suspended(&self) -> bool;
    /// The subscription is paused.
    fn paused(&self) -> bool;
    /// A payment failed; the license stays usable until this instant.
    fn payment_grace_until(&self) -> Option<Timestamp>;
    /// The subscription was canceled.
    fn canceled(&self) -> bool;
    /// When a scheduled cancellation takes effect (the end of the paid period).
    fn cancel_at(&self) -> Option<Timestamp>;
    /// A paid subscription is linked (a trial then no longer limits the license).
    fn subscribed(&self) -> bool;
    /// The trial is a payment gateway's (a linked subscription trialing): its conversion
    /// arrives as an event, which gets [`GATEWAY_TRIAL_SLACK`] to arrive.
    fn gateway_trial(&self) -> bool {
        false
    }
    fn trial_ends_at(&self) -> Option<Timestamp>;
    fn expires_at(&self) -> Option<Timestamp>;
    fn seats(&self) -> u32;
    fn model(&self) -> LicenseModel;
    fn features(&self) -> &FeatureSet;
    /// Installations using a seat at `now` (a floating lease that has lapsed uses none).
    fn active_installations(&self, now: Timestamp) -> u32;
    /// Whether `fingerprint` holds an active installation at `now`.
    fn is_activated(&self, fingerprint: &str, now: Timestamp) -> bool;
}

/// The code of a validation answer. `NotFound` and `AppMismatch` are decided at the edge (the key
/// and the App GUID) and answered as 403; the others come from [`decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, strum::EnumIter)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ValidationCode {
    NotFound,
    AppMismatch,
    Revoked,
    Suspended,
    Paused,
    Overdue,
    TrialExpired,
    Expired,
    NotActivated,
    TooManyActivations,
    FeaturesMissing,
    Valid,
}

impl ValidationCode {
    /// The stable code.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "NOT_FOUND",
            Self::AppMismatch => "APP_MISMATCH",
            Self::Revoked => "REVOKED",
            Self::Suspended => "SUSPENDED",
            Self::Paused => "PAUSED",
            Self::Overdue => "OVERDUE",
            Self::TrialExpired => "TRIAL_EXPIRED",
            Self::Expired => "EXPIRED",
            Self::NotActivated => "NOT_ACTIVATED",
            Self::TooManyActivations => "TOO_MANY_ACTIVATIONS",
            Self::FeaturesMissing => "FEATURES_MISSING",
            Self::Valid => "VALID",
        }
    }

    /// A sentence for people.
    pub const fn detail(self) -> &'static str {
        match self {
            // As long as the other edge refusal's answer, byte for byte, so that the two cost
            // the same to write (`api::error` tests it): the code is 3 bytes shorter twice.
            Self::NotFound => "no license has this key for this application",
            Self::AppMismatch => "the key belongs to another application",
            Self::Revoked => "the license is revoked or its subscription has ended",
            Self::Suspended => "the license is suspended",
            Self::Paused => "the subscription is paused",
            Self::Overdue => "a payment failed and the payment grace period is over",
            Self::TrialExpired => "the trial is over and no subscription is paid",
            Self::Expired => "the license has expired",
            Self::NotActivated => "this device is not activated on the license",
            Self::TooManyActivations => "more devices are activated than the license has seats",
            Self::FeaturesMissing => "a requested feature is not included in the license",
            Self::Valid => "the license is valid",
        }
    }
}

/// Something a client should tell its user about a license that is still valid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Warning {
    PaymentGrace { until: Timestamp },
    TrialEnding { days: u32 },
    Expiring { days: u32 },
}

/// A validation answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub code: ValidationCode,
    pub warnings: Vec<Warning>,
    /// Requested features the license lacks (with `FEATURES_MISSING`).
    pub missing_features: Vec<FeatureCode>,
}

impl Decision {
    /// Whether the license may be used.
    pub fn valid(&self) -> bool {
        self.code == ValidationCode::Valid
    }
}

fn refused(code: ValidationCode) -> Decision {
    Decision {
        code,
        warnings: Vec::new(),
        missing_features: Vec::new(),
    }
}

/// Whether the trial limits the license at `now` (a trial without a paid subscription).
fn in_trial(l: &impl LicenseFacts) -> Option<Timestamp> {
    l.trial_ends_at().filter(|_| !l.subscribed())
}

/// How long past its end a gateway's trial still validates: Stripe charges at the trial's end
/// and tells the ledger by webhook (redelivered for days when the ledger was down), so a
/// customer who paid on time is not locked out while that event is on its way. Offline tokens
/// still end at the trial's end.
pub const GATEWAY_TRIAL_SLACK: chrono::Duration = chrono::Duration::hours(24);

/// Whether the subscription has ended: canceled, and the paid period (if any) is over.
fn subscription_ended(l: &impl LicenseFacts, now: Timestamp) -> bool {
    l.canceled() && l.cancel_at().is_none_or(|end| now >= end)
}

/// The decision for `license` at `now`, for a client that presents `fingerprint` (if any) and
/// asks for `requested` features. Codes are checked in DOMAIN.md's order; the first that applies
/// is the answer.
pub fn decide(
    license: &impl LicenseFacts,
    now: Timestamp,
    fingerprint: Option<&str>,
    requested: &[FeatureCode],
) -> Decision {
    use ValidationCode as C;
    if license.revoked() || subscription_ended(license, now) {
        return refused(C::Revoked);
    }
    if license.suspended() {
        return refused(C::Suspended);
    }
    if license.paused() {
        return refused(C::Paused);
    }
    let grace = license.payment_grace_until();
    if grace.is_some_and(|until| now >= until) {
        return refused(C::Overdue);
    }
    let trial_end = in_trial(license);
    let slack = if license.gateway_trial() {
        GATEWAY_TRIAL_SLACK
    } else {
        chrono::Duration::zero()
    };
    if trial_end.is_some_and(|end| now >= end + slack) {
        return refused(C::TrialExpired);
    }
    let expires_at = license.expires_at();
    if expires_at.is_some_and(|end| now >= end) {
        return refused(C::Expired);
    }
    if let Some(fp) = fingerprint
        && !license.is_activated(fp, now)
    {
        return refused(C::NotActivated);
    }
    if license.active_installations(now) > license.seats() {
        return refused(C::TooManyActivations);
    }
    let missing: Vec<FeatureCode> = requested
        .iter()
        .filter(|f| !license.features().contains(f))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Decision {
            code: C::FeaturesMissing,
            warnings: Vec::new(),
            missing_features: missing,
        };
    }
    let mut warnings = Vec::new();
    if let Some(until) = grace {
        warnings.push(Warning::PaymentGrace { until });
    }
    if let Some(end) = trial_end {
        let days = crate::status::days_remaining(now, end);
        if days <= TRIAL_ENDING_WARNING_DAYS {
            warnings.push(Warning::TrialEnding { days });
        }
    }
    // The license ends at its expiry or at the end of a canceled subscription's paid period.
    let ends = match (
        expires_at,
        license.cancel_at().filter(|_| license.canceled()),
    ) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if let Some(end) = ends {
        let days = crate::status::days_remaining(now, end);
        if days <= EXPIRING_WARNING_DAYS {
            warnings.push(Warning::Expiring { days });
        }
    }
    Decision {
        code: C::Valid,
        warnings,
        missing_features: Vec::new(),
    }
}

/// When an offline copy of the license must stop working, at the latest: its expiry, the end of a
/// trial, or the end of a canceled subscription's paid period. `None` for a perpetual license.
pub fn usable_until(license: &impl LicenseFacts) -> Option<Timestamp> {
    [
        license.expires_at(),
        in_trial(license),
        license.cancel_at().filter(|_| license.canceled()),
        license.payment_grace_until(),
    ]
    .into_iter()
    .flatten()
    .min()
}

#[cfg(test)]
mod tests;
