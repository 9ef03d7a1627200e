//! A license's status, derived from its state and the clock — never stored as a flag, so it is
//! right at any instant without a scheduler flipping rows (a license expires by itself).

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::validation::LicenseFacts;

/// The status of a license at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenseStatus {
    Trialing,
    Active,
    /// Payment failed; inside or past the payment grace (validation tells the two apart).
    PastDue,
    Paused,
    Suspended,
    Expired,
    Canceled,
    Revoked,
}

impl LicenseStatus {
    /// Every status, in the order of the lifecycle (the dashboard counts them in this order).
    pub const ALL: [Self; 8] = [
        Self::Trialing,
        Self::Active,
        Self::PastDue,
        Self::Paused,
        Self::Suspended,
        Self::Expired,
        Self::Canceled,
        Self::Revoked,
    ];

    /// The stable text of the status.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Trialing => "trialing",
            Self::Active => "active",
            Self::PastDue => "past_due",
            Self::Paused => "paused",
            Self::Suspended => "suspended",
            Self::Expired => "expired",
            Self::Canceled => "canceled",
            Self::Revoked => "revoked",
        }
    }
}

/// The status of a license at `now`. The precedence follows the validation codes of DOMAIN.md:
/// revoked, canceled, suspended, paused, past due, then trial and expiry.
pub fn status_at(l: &impl LicenseFacts, now: Timestamp) -> LicenseStatus {
    if l.revoked() {
        return LicenseStatus::Revoked;
    }
    if l.canceled() && l.cancel_at().is_none_or(|end| now >= end) {
        return LicenseStatus::Canceled;
    }
    if l.suspended() {
        return LicenseStatus::Suspended;
    }
    if l.paused() {
        return LicenseStatus::Paused;
    }
    if l.payment_grace_until().is_some() {
        return LicenseStatus::PastDue;
    }
    if let Some(trial_end) = l.trial_ends_at().filter(|_| !l.subscribed()) {
        // A gateway's trial is honored as long as validation honors it.
        let slack = if l.gateway_trial() {
            crate::validation::GATEWAY_TRIAL_SLACK
        } else {
            chrono::Duration::zero()
        };
        if now < trial_end + slack {
            return LicenseStatus::Trialing;
        }
        return LicenseStatus::Expired;
    }
    if l.expires_at().is_some_and(|e| now >= e) {
        return LicenseStatus::Expired;
    }
    LicenseStatus::Active
}

/// Whole days from `now` until `end`, rounded up (a trial ending in 3 hours has 1 day left), and
/// 0 once it has passed.
pub fn days_remaining(now: Timestamp, end: Timestamp) -> u32 {
    let seconds = (end - now).num_seconds();
    if seconds <= 0 {
        return 0;
    }
    u32::try_from((seconds + 86_399) / 86_400).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::license::tests::{issued, now, t};
    use crate::license::{License, LicenseEvent, LicenseState};
    use crate::values::Reason;
    use chrono::Duration;

    fn folded(events: Vec<LicenseEvent>) -> LicenseState {
        let mut license = License::default();
        for e in events {
            license.fold(e);
        }
        license.state().unwrap().clone()
    }

    #[test]
    fn an_issued_license_is_active_until_it_expires() {
        let state = folded(vec![issued()]);
        assert_eq!(status_at(&state, now()), LicenseStatus::Active);
        let expiry = state.expires_at.unwrap();
        assert_eq!(
            status_at(&state, expiry - Duration::seconds(1)),
            LicenseStatus::Active
        );
        assert_eq!(status_at(&state, expiry), LicenseStatus::Expired);
    }

    #[test]
    fn revocation_outranks_suspension_and_suspension_outranks_expiry() {
        let reason = Reason::parse("x").unwrap();
        let suspended = folded(vec![
            issued(),
            LicenseEvent::Suspended {
                reason: reason.clone(),
            },
        ]);
        assert_eq!(
            status_at(&suspended, t("2099-01-01T00:00:00Z")),
            LicenseStatus::Suspended
        );
        let revoked = folded(vec![
            issued(),
            LicenseEvent::Suspended {
                reason: reason.clone(),
            },
            LicenseEvent::Revoked {
                reason,
                category: crate::values::RevocationCategory::Unspecified,
            },
        ]);
        assert_eq!(status_at(&revoked, now()), LicenseStatus::Revoked);
    }

    #[test]
    fn a_trial_is_trialing_then_expired() {
        let mut state = folded(vec![issued()]);
        state.trial_ends_at = Some(now() + Duration::days(14));
        assert_eq!(status_at(&state, now()), LicenseStatus::Trialing);
        assert_eq!(
            status_at(&state, now() + Duration::days(14)),
            LicenseStatus::Expired
        );
    }

    #[test]
    fn days_remaining_rounds_up_and_stops_at_zero() {
        assert_eq!(days_remaining(now(), now() + Duration::hours(3)), 1);
        assert_eq!(days_remaining(now(), now() + Duration::days(14)), 14);
        assert_eq!(days_remaining(now(), now() - Duration::days(1)), 0);
    }
}
