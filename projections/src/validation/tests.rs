//! Tests of the compact entry: its fold against the License aggregate's (a property test), and
//! the sharing of classes and feature sets.

use std::sync::Arc;

use domain::Timestamp;
use domain::ids::{AppId, InstallationId, LicenseId, PolicyId, ProductId};
use domain::keys::KeyHash;
use domain::license::{LicenseEvent, LicenseIssued};
use uuid::Uuid;

use super::{Interner, ValidationEntry};
use domain::license::License;
use domain::policy::{PolicyTerms, PolicyTermsInput};
use domain::values::*;
use proptest::prelude::*;

fn t0() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn issued(model: LicenseModel) -> LicenseEvent {
    LicenseEvent::Issued(Box::new(LicenseIssued {
        product_id: ProductId::from_uuid(Uuid::from_u128(1)),
        app_id: AppId::parse(Uuid::from_u128(2)).unwrap(),
        policy_id: PolicyId::from_uuid(Uuid::from_u128(3)),
        policy_version: 1,
        organization_id: domain::ids::OrganizationId::from_uuid(Uuid::from_u128(4)),
        key_hash: KeyHash::from_bytes([1; 32]),
        key_prefix: "AB-CDEF".into(),
        seats: SeatCount::new(3).unwrap(),
        features: FeatureSet::parse(&["pro"]).unwrap(),
        starts_at: t0(),
        expires_at: Some(t0() + chrono::Duration::days(30)),
        trial_ends_at: None,
        maintenance_until: None,
        source: LicenseSource::Admin,
        terms: PolicyTerms::new(PolicyTermsInput {
            model,
            seats: SeatCount::new(3).unwrap(),
            duration_days: Some(30),
            trial_days: None,
            features: FeatureSet::parse(&["pro"]).unwrap(),
            offline_allowed: true,
            offline_grace_days: 3,
            payment_grace_days: 3,
            maintenance_months: None,
            lease_seconds: None,
        })
        .unwrap(),
    }))
}

fn any_event() -> impl Strategy<Value = LicenseEvent> {
    let inst = (0u128..4).prop_map(|n| InstallationId::from_uuid(Uuid::from_u128(100 + n)));
    let when = (0i64..100).prop_map(|h| t0() + chrono::Duration::hours(h));
    prop_oneof![
        Just(LicenseEvent::Suspended {
            reason: Reason::parse("x").unwrap()
        }),
        Just(LicenseEvent::Reinstated {}),
        Just(LicenseEvent::Revoked {
            reason: Reason::parse("x").unwrap(),
            category: RevocationCategory::Fraud,
        }),
        when.clone()
            .prop_map(|expires_at| LicenseEvent::Renewed { expires_at }),
        (1u32..9).prop_map(|s| LicenseEvent::SeatsChanged {
            seats: SeatCount::new(s).unwrap()
        }),
        prop::sample::select(vec!["a", "b", "pro"]).prop_map(|f| {
            LicenseEvent::EntitlementsChanged {
                features: FeatureSet::parse(&[f]).unwrap(),
            }
        }),
        any::<u8>().prop_map(|b| LicenseEvent::KeyRotated {
            key_hash: KeyHash::from_bytes([b; 32]),
            key_prefix: "AB-X".into()
        }),
        (inst.clone(), 0u8..3).prop_map(|(installation_id, f)| {
            LicenseEvent::InstallationActivated {
                installation_id,
                fingerprint: Fingerprint::parse(&format!("fp{f}")).unwrap(),
                hostname: None,
                platform: None,
                environment: Environment::Production,
                activated_at: t0(),
            }
        }),
        (inst.clone(), when.clone()).prop_map(|(installation_id, expires_at)| {
            LicenseEvent::FloatingLeaseGranted {
                installation_id,
                expires_at,
            }
        }),
        inst.clone()
            .prop_map(|installation_id| LicenseEvent::InstallationDeactivated {
                installation_id,
                reason: DeactivationReason::Client
            }),
        inst.clone()
            .prop_map(|installation_id| LicenseEvent::FloatingLeaseExpired { installation_id }),
        inst.prop_map(|installation_id| LicenseEvent::FloatingLeaseReleased { installation_id }),
        when.clone()
            .prop_map(|grace_until| LicenseEvent::PaymentFailed { grace_until }),
        Just(LicenseEvent::PaymentRecovered {}),
        Just(LicenseEvent::SubscriptionPaused {}),
        Just(LicenseEvent::SubscriptionResumed {}),
        when.clone()
            .prop_map(|at| LicenseEvent::CancellationScheduled { at }),
        Just(LicenseEvent::CancellationWithdrawn {}),
        Just(LicenseEvent::TrialEnded {}),
        Just(LicenseEvent::SubscriptionReactivated {}),
        when.prop_map(|ends_at| LicenseEvent::TrialStarted { ends_at }),
        Just(LicenseEvent::SubscriptionCanceled {}),
        Just(LicenseEvent::SubscriptionLinked {
            gateway: "stripe".into(),
            subscription_id: "s".into(),
            customer_id: "c".into()
        }),
        Just(LicenseEvent::Transferred {
            organization_id: domain::ids::OrganizationId::from_uuid(Uuid::from_u128(9))
        }),
    ]
}

proptest! {
    /// The compact fold never drifts from the aggregate's own fold.
    #[test]
    fn the_compact_fold_equals_the_aggregate_fold(floating in any::<bool>(), events in prop::collection::vec(any_event(), 0..25)) {
        let model = if floating { LicenseModel::Floating } else { LicenseModel::NodeLocked };
        let id = LicenseId::from_uuid(Uuid::from_u128(7));
        let mut interner = Interner::default();
        let first = issued(model);
        let LicenseEvent::Issued(payload) = &first else { unreachable!() };
        let mut entry = ValidationEntry::issued(id, payload, 1, &mut interner);
        let mut license = License::default();
        license.fold(first.clone());
        for (i, e) in events.iter().enumerate() {
            entry.apply(e, i as i64 + 2, &mut interner);
            license.fold(e.clone());
        }
        let expected = ValidationEntry::from_state(id, license.state().unwrap(), events.len() as i64 + 1, &mut interner);
        prop_assert_eq!(&entry, &expected);
        // And the decision agrees on both, at a few instants.
        for h in [0i64, 50, 120] {
            let now = t0() + chrono::Duration::hours(h);
            let a = domain::validation::decide(&entry, now, Some("fp1"), &[]);
            let b = domain::validation::decide(license.state().unwrap(), now, Some("fp1"), &[]);
            prop_assert_eq!(a, b);
        }
    }
}

#[test]
fn equal_classes_and_feature_sets_are_shared() {
    let mut interner = Interner::default();
    let LicenseEvent::Issued(p) = issued(LicenseModel::NodeLocked) else {
        unreachable!()
    };
    let a = ValidationEntry::issued(
        LicenseId::from_uuid(Uuid::from_u128(1)),
        &p,
        1,
        &mut interner,
    );
    let b = ValidationEntry::issued(
        LicenseId::from_uuid(Uuid::from_u128(2)),
        &p,
        1,
        &mut interner,
    );
    assert!(Arc::ptr_eq(&a.class, &b.class));
    assert!(Arc::ptr_eq(&a.features, &b.features));
    assert!(
        std::mem::size_of::<ValidationEntry>() <= 136,
        "{}",
        std::mem::size_of::<ValidationEntry>()
    );
}
