//! The Download aggregate: a link is granted only while the license sees the release, checked
//! against the visibility decision itself over generated releases, licenses and instants.

use cqrs_es::test::TestFramework;
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::release::{Unseen, Version};
use crate::values::{Channel, FeatureSet, Reason};

const DAY: i64 = 86_400;

fn at(days: i64) -> Timestamp {
    chrono::DateTime::from_timestamp(days * DAY, 0).unwrap()
}

fn did() -> DownloadId {
    DownloadId::from_uuid(Uuid::from_u128(70))
}

/// The standard test license of product 20 (features `pro`), issued at day 0.
fn license(expires: Option<i64>) -> LicenseState {
    crate::license::tests::issued_at(crate::license::tests::terms(), at(0), expires.map(at))
        .state()
        .unwrap()
        .clone()
}

fn release(published: Option<i64>) -> ReleaseFacts {
    ReleaseFacts {
        product_id: ProductId::from_uuid(Uuid::from_u128(20)),
        version: Version::parse("7.4.0").unwrap(),
        channel: Channel::Stable,
        entitlements: FeatureSet::default(),
        published_at: published.map(at),
        yanked: false,
    }
}

fn grant(release: ReleaseFacts, license: LicenseState, now: i64) -> DownloadCommand {
    DownloadCommand {
        download_id: did(),
        at: at(now),
        action: DownloadAction::Grant {
            artifact_id: ArtifactId::from_uuid(Uuid::from_u128(40)),
            release_id: ReleaseId::from_uuid(Uuid::from_u128(41)),
            release,
            license_id: LicenseId::from_uuid(Uuid::from_u128(1)),
            license: Box::new(license),
            user_id: None,
            expires_at: at(now) + chrono::Duration::minutes(5),
        },
    }
}

use crate::ids::ProductId;

#[test]
fn a_link_is_granted_to_a_license_that_sees_the_release_and_records_its_transfers() {
    let l = license(Some(365));
    let granted = DownloadEvent::Granted {
        artifact_id: ArtifactId::from_uuid(Uuid::from_u128(40)),
        release_id: ReleaseId::from_uuid(Uuid::from_u128(41)),
        license_id: LicenseId::from_uuid(Uuid::from_u128(1)),
        organization_id: l.organization_id,
        user_id: None,
        expires_at: at(100) + chrono::Duration::minutes(5),
    };
    TestFramework::<Download>::with(())
        .given_no_previous_events()
        .when(grant(release(Some(50)), l.clone(), 100))
        .then_expect_events(vec![granted.clone()]);
    TestFramework::<Download>::with(())
        .given_no_previous_events()
        .when(grant(release(None), l.clone(), 100))
        .then_expect_error(DomainError::ReleaseNotVisible(Unseen::NotPublished));
    TestFramework::<Download>::with(())
        .given(vec![granted.clone()])
        .when(grant(release(Some(50)), l, 100))
        .then_expect_error(DomainError::DownloadAlreadyGranted(did()));
    let serve = DownloadCommand {
        download_id: did(),
        at: at(100),
        action: DownloadAction::Serve { bytes: 1024 },
    };
    TestFramework::<Download>::with(())
        .given(vec![granted.clone()])
        .when(serve.clone())
        .then_expect_events(vec![DownloadEvent::Served { bytes: 1024 }]);
    // A link records its first MAX_SERVED transfers, no more.
    let mut full = vec![granted];
    full.extend((0..MAX_SERVED).map(|_| DownloadEvent::Served { bytes: 1 }));
    TestFramework::<Download>::with(())
        .given(full)
        .when(serve.clone())
        .then_expect_events(vec![]);
    TestFramework::<Download>::with(())
        .given_no_previous_events()
        .when(serve)
        .then_expect_error(DomainError::DownloadNotGranted(did()));
}

fn channel() -> impl Strategy<Value = Channel> {
    prop_oneof![
        Just(Channel::Stable),
        Just(Channel::Lts),
        Just(Channel::Beta)
    ]
}

proptest! {
    /// Whatever the release, the license and the instant: a link is granted exactly when the
    /// license sees the release then, and a refusal names the rule it fails.
    #[test]
    fn no_link_is_ever_granted_for_a_release_the_license_does_not_see(
        published in proptest::option::of(0i64..400),
        yanked in any::<bool>(),
        other_product in proptest::bool::weighted(0.1),
        release_channel in channel(),
        policy_channels in proptest::collection::vec(channel(), 1..3),
        needs in proptest::sample::subsequence(vec!["pro", "enterprise"], 0..=2),
        expires in proptest::option::of(1i64..400),
        maintenance in proptest::option::of(0i64..400),
        suspended in proptest::bool::weighted(0.15),
        now in 0i64..500,
    ) {
        let mut r = release(published);
        r.yanked = yanked;
        r.channel = release_channel;
        r.entitlements = FeatureSet::parse(&needs).unwrap();
        if other_product {
            r.product_id = ProductId::from_uuid(Uuid::from_u128(99));
        }
        let mut l = license(expires);
        l.terms = l.terms.clone().with_channels(&policy_channels).unwrap();
        l.maintenance_until = maintenance.map(at);
        if suspended {
            l.suspension = Some(Reason::parse("fraud check").unwrap());
        }
        let seen = visibility(&r, &l, &sight_of(&l), at(now));
        let decided = Download::default().decide(&grant(r, l, now));
        match seen {
            Ok(()) => {
                let granted = matches!(decided.as_deref(), Ok([DownloadEvent::Granted { .. }]));
                prop_assert!(granted, "{:?}", decided);
            }
            Err(unseen) => prop_assert_eq!(decided, Err(DomainError::ReleaseNotVisible(unseen))),
        }
    }
}
