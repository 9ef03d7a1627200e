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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
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
    /// Every code, in the order of the decision (first failure wins).
    pub const ALL: [Self; 12] = [
        Self::NotFound,
        Self::AppMismatch,
        Self::Revoked,
        Self::Suspended,
        Self::Paused,
        Self::Overdue,
        Self::TrialExpired,
        Self::Expired,
        Self::NotActivated,
        Self::TooManyActivations,
        Self::FeaturesMissing,
        Self::Valid,
    ];

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
            Self::NotFound => "no license has this key",
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
    if trial_end.is_some_and(|end| now >= end) {
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
mod tests {
    use super::*;
    use chrono::Duration;
    use proptest::prelude::*;

    /// A license described directly by its facts, to reach every code.
    #[derive(Clone, Debug)]
    struct Facts {
        revoked: bool,
        suspended: bool,
        paused: bool,
        grace: Option<Timestamp>,
        canceled: bool,
        cancel_at: Option<Timestamp>,
        subscribed: bool,
        trial_end: Option<Timestamp>,
        expires: Option<Timestamp>,
        seats: u32,
        active: Vec<String>,
        features: FeatureSet,
    }

    impl LicenseFacts for Facts {
        fn revoked(&self) -> bool {
            self.revoked
        }
        fn suspended(&self) -> bool {
            self.suspended
        }
        fn paused(&self) -> bool {
            self.paused
        }
        fn payment_grace_until(&self) -> Option<Timestamp> {
            self.grace
        }
        fn canceled(&self) -> bool {
            self.canceled
        }
        fn cancel_at(&self) -> Option<Timestamp> {
            self.cancel_at
        }
        fn subscribed(&self) -> bool {
            self.subscribed
        }
        fn trial_ends_at(&self) -> Option<Timestamp> {
            self.trial_end
        }
        fn expires_at(&self) -> Option<Timestamp> {
            self.expires
        }
        fn seats(&self) -> u32 {
            self.seats
        }
        fn model(&self) -> LicenseModel {
            LicenseModel::NodeLocked
        }
        fn features(&self) -> &FeatureSet {
            &self.features
        }
        fn active_installations(&self, _: Timestamp) -> u32 {
            self.active.len() as u32
        }
        fn is_activated(&self, fp: &str, _: Timestamp) -> bool {
            self.active.iter().any(|a| a == fp)
        }
    }

    fn now() -> Timestamp {
        "2026-06-01T12:00:00Z".parse().unwrap()
    }

    fn good() -> Facts {
        Facts {
            revoked: false,
            suspended: false,
            paused: false,
            grace: None,
            canceled: false,
            cancel_at: None,
            subscribed: false,
            trial_end: None,
            expires: Some(now() + Duration::days(100)),
            seats: 2,
            active: vec!["fp-1".into()],
            features: FeatureSet::parse(&["pro", "export"]).unwrap(),
        }
    }

    fn code(f: &Facts, fp: Option<&str>, features: &[&str]) -> ValidationCode {
        let requested: Vec<FeatureCode> = features
            .iter()
            .map(|f| FeatureCode::parse(f).unwrap())
            .collect();
        decide(f, now(), fp, &requested).code
    }

    /// Every code is reachable, and each one alone produces it.
    #[test]
    fn each_failure_alone_gives_its_code() {
        use ValidationCode as C;
        let past = Some(now() - Duration::seconds(1));
        let future = Some(now() + Duration::days(1));
        let cases: Vec<(Facts, Option<&str>, Vec<&str>, C)> = vec![
            (
                Facts {
                    revoked: true,
                    ..good()
                },
                None,
                vec![],
                C::Revoked,
            ),
            (
                Facts {
                    canceled: true,
                    cancel_at: None,
                    ..good()
                },
                None,
                vec![],
                C::Revoked,
            ),
            (
                Facts {
                    canceled: true,
                    cancel_at: past,
                    ..good()
                },
                None,
                vec![],
                C::Revoked,
            ),
            (
                Facts {
                    suspended: true,
                    ..good()
                },
                None,
                vec![],
                C::Suspended,
            ),
            (
                Facts {
                    paused: true,
                    ..good()
                },
                None,
                vec![],
                C::Paused,
            ),
            (
                Facts {
                    grace: past,
                    ..good()
                },
                None,
                vec![],
                C::Overdue,
            ),
            (
                Facts {
                    trial_end: past,
                    ..good()
                },
                None,
                vec![],
                C::TrialExpired,
            ),
            (
                Facts {
                    expires: past,
                    ..good()
                },
                None,
                vec![],
                C::Expired,
            ),
            (good(), Some("fp-2"), vec![], C::NotActivated),
            (
                Facts { seats: 0, ..good() },
                None,
                vec![],
                C::TooManyActivations,
            ),
            (good(), None, vec!["pro", "cloud"], C::FeaturesMissing),
            (good(), Some("fp-1"), vec!["pro"], C::Valid),
            (
                Facts {
                    canceled: true,
                    cancel_at: future,
                    ..good()
                },
                None,
                vec![],
                C::Valid,
            ),
            (
                Facts {
                    trial_end: past,
                    subscribed: true,
                    ..good()
                },
                None,
                vec![],
                C::Valid,
            ),
            (
                Facts {
                    expires: None,
                    ..good()
                },
                None,
                vec![],
                C::Valid,
            ),
        ];
        for (facts, fp, features, expected) in cases {
            assert_eq!(
                code(&facts, fp, &features),
                expected,
                "{facts:?} {fp:?} {features:?}"
            );
        }
    }

    #[test]
    fn the_first_failure_in_domain_order_wins() {
        use ValidationCode as C;
        let past = Some(now() - Duration::seconds(1));
        let everything_wrong = Facts {
            revoked: true,
            suspended: true,
            paused: true,
            grace: past,
            trial_end: past,
            expires: past,
            seats: 0,
            ..good()
        };
        let mut f = everything_wrong.clone();
        let order = [
            C::Revoked,
            C::Suspended,
            C::Paused,
            C::Overdue,
            C::TrialExpired,
            C::Expired,
            C::NotActivated,
            C::TooManyActivations,
            C::FeaturesMissing,
            C::Valid,
        ];
        for expected in order {
            assert_eq!(code(&f, Some("fp-9"), &["cloud"]), expected, "{f:?}");
            // Clear the failure just seen; the next one in order must surface.
            match expected {
                C::Revoked => f.revoked = false,
                C::Suspended => f.suspended = false,
                C::Paused => f.paused = false,
                C::Overdue => f.grace = None,
                C::TrialExpired => f.trial_end = None,
                C::Expired => f.expires = None,
                C::NotActivated => f.active.push("fp-9".into()),
                C::TooManyActivations => f.seats = 5,
                C::FeaturesMissing => f.features = FeatureSet::parse(&["cloud"]).unwrap(),
                _ => {}
            }
        }
    }

    #[test]
    fn a_valid_license_warns_about_grace_trial_and_expiry() {
        let f = Facts {
            grace: Some(now() + Duration::days(2)),
            trial_end: Some(now() + Duration::hours(30)),
            expires: Some(now() + Duration::days(10)),
            ..good()
        };
        let d = decide(&f, now(), None, &[]);
        assert!(d.valid());
        assert_eq!(
            d.warnings,
            vec![
                Warning::PaymentGrace {
                    until: now() + Duration::days(2)
                },
                Warning::TrialEnding { days: 2 },
                Warning::Expiring { days: 10 },
            ]
        );
        let quiet = decide(&good(), now(), None, &[]);
        assert!(quiet.warnings.is_empty(), "100 days left warns of nothing");
        let missing = decide(
            &good(),
            now(),
            None,
            &[FeatureCode::parse("cloud").unwrap()],
        );
        assert_eq!(
            missing.missing_features,
            vec![FeatureCode::parse("cloud").unwrap()]
        );
    }

    #[test]
    fn offline_use_ends_at_the_earliest_limit() {
        let f = Facts {
            trial_end: Some(now() + Duration::days(5)),
            expires: Some(now() + Duration::days(50)),
            ..good()
        };
        assert_eq!(usable_until(&f), Some(now() + Duration::days(5)));
        let perpetual = Facts {
            expires: None,
            ..good()
        };
        assert_eq!(usable_until(&perpetual), None);
        let subscribed = Facts {
            trial_end: Some(now()),
            subscribed: true,
            ..good()
        };
        assert_eq!(usable_until(&subscribed), subscribed.expires);
    }

    fn arbitrary_facts() -> impl Strategy<Value = Facts> {
        let t = prop::option::of(-200i64..200).prop_map(|d| d.map(|d| now() + Duration::hours(d)));
        (
            any::<[bool; 5]>(),
            t.clone(),
            t.clone(),
            t.clone(),
            t,
            0u32..4,
            0usize..4,
        )
            .prop_map(
                |(b, grace, cancel_at, trial_end, expires, seats, active)| Facts {
                    revoked: b[0],
                    suspended: b[1],
                    paused: b[2],
                    canceled: b[3],
                    subscribed: b[4],
                    grace,
                    cancel_at,
                    trial_end,
                    expires,
                    seats,
                    active: (0..active).map(|i| format!("fp-{i}")).collect(),
                    features: FeatureSet::parse(&["pro"]).unwrap(),
                },
            )
    }

    proptest! {
        /// Valid exactly when no rule refuses, and never valid with a refusing fact.
        #[test]
        fn valid_means_no_rule_refuses(f in arbitrary_facts()) {
            let d = decide(&f, now(), None, &[]);
            let refused = f.revoked || (f.canceled && f.cancel_at.is_none_or(|e| now() >= e)) || f.suspended || f.paused
                || f.grace.is_some_and(|g| now() >= g)
                || (!f.subscribed && f.trial_end.is_some_and(|e| now() >= e))
                || f.expires.is_some_and(|e| now() >= e)
                || f.active.len() as u32 > f.seats;
            prop_assert_eq!(d.valid(), !refused);
            prop_assert!(d.valid() || d.warnings.is_empty());
        }

        /// A still-usable offline copy never outlives the license.
        #[test]
        fn usable_until_never_exceeds_expiry(f in arbitrary_facts()) {
            if let (Some(u), Some(e)) = (usable_until(&f), f.expires) {
                prop_assert!(u <= e);
            }
        }
    }
}
