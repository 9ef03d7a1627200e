//! Tests of the validation decision, driven by a license described directly by its facts: every
//! code reachable alone, the first failure in domain order winning, the warnings of a valid
//! license, the end of offline use; and properties over arbitrary facts.

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
    gateway_trial: bool,
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
    fn gateway_trial(&self) -> bool {
        self.gateway_trial
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
        gateway_trial: false,
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

#[test]
fn a_gateways_trial_validates_a_day_past_its_end_while_its_conversion_arrives() {
    let ended = |ago: Duration, gateway_trial: bool| Facts {
        trial_end: Some(now() - ago),
        gateway_trial,
        ..good()
    };
    // A policy's own trial ends on the dot.
    assert_eq!(
        code(&ended(Duration::seconds(1), false), None, &[]),
        ValidationCode::TrialExpired
    );
    // Stripe's: valid (warned) for a day, then expired.
    let d = decide(&ended(Duration::hours(23), true), now(), None, &[]);
    assert_eq!(d.code, ValidationCode::Valid);
    assert!(d.warnings.contains(&Warning::TrialEnding { days: 0 }));
    assert_eq!(
        code(&ended(GATEWAY_TRIAL_SLACK, true), None, &[]),
        ValidationCode::TrialExpired
    );
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
        any::<[bool; 6]>(),
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
                gateway_trial: b[5],
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
            || (!f.subscribed && f.trial_end.is_some_and(|e| {
                now() >= e + if f.gateway_trial { GATEWAY_TRIAL_SLACK } else { Duration::zero() }
            }))
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
