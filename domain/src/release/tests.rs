//! Every rule of DOMAIN.md "Releases and downloads", one table row each, and the update paths
//! of its example ("7.2 to 7.6 only via 7.4").

use super::*;
use crate::license::LicenseState;
use crate::values::Reason;

const DAY: i64 = 86_400;

fn at(days: i64) -> Timestamp {
    chrono::DateTime::from_timestamp(days * DAY, 0).unwrap()
}

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

/// A license of product 20 (features `pro`), issued at day 0, expiring at `expires` (`None`:
/// perpetual).
fn license(expires: Option<i64>) -> LicenseState {
    crate::license::tests::issued_at(crate::license::tests::terms(), at(0), expires.map(at))
        .state()
        .unwrap()
        .clone()
}

fn product() -> ProductId {
    ProductId::from_uuid(uuid::Uuid::from_u128(20))
}

fn sight(maintenance_until: Option<i64>, channels: &[Channel]) -> Sight {
    Sight {
        product_id: product(),
        channels: channels.to_vec(),
        maintenance_until: maintenance_until.map(at),
    }
}

fn release(version: &str, published: Option<i64>) -> ReleaseFacts {
    ReleaseFacts {
        product_id: product(),
        version: v(version),
        channel: Channel::Stable,
        entitlements: FeatureSet::default(),
        published_at: published.map(at),
        yanked: false,
    }
}

#[test]
fn each_rule_of_visibility() {
    let now = at(100);
    let active = license(Some(365));
    let stable = sight(None, &[]);
    let yes = release("7.4.0", Some(50));
    type Case = (
        &'static str,
        ReleaseFacts,
        LicenseState,
        Sight,
        Result<(), Unseen>,
    );
    let mut cases: Vec<Case> = vec![(
        "published, stable, active",
        yes.clone(),
        active.clone(),
        stable.clone(),
        Ok(()),
    )];
    // Rule 1.
    cases.push((
        "a draft",
        release("7.4.0", None),
        active.clone(),
        stable.clone(),
        Err(Unseen::NotPublished),
    ));
    let mut yanked = yes.clone();
    yanked.yanked = true;
    cases.push((
        "yanked",
        yanked,
        active.clone(),
        stable.clone(),
        Err(Unseen::Yanked),
    ));
    let mut other = yes.clone();
    other.product_id = ProductId::from_uuid(uuid::Uuid::from_u128(21));
    cases.push((
        "another product's",
        other,
        active.clone(),
        stable.clone(),
        Err(Unseen::OtherProduct),
    ));
    // Rule 2: stable by default; a policy's channels.
    let mut beta = yes.clone();
    beta.channel = Channel::Beta;
    cases.push((
        "beta, policy says nothing",
        beta.clone(),
        active.clone(),
        stable.clone(),
        Err(Unseen::Channel(Channel::Beta)),
    ));
    cases.push((
        "beta, policy allows it",
        beta,
        active.clone(),
        sight(None, &[Channel::Stable, Channel::Beta]),
        Ok(()),
    ));
    cases.push((
        "stable, policy allows lts only",
        yes.clone(),
        active.clone(),
        sight(None, &[Channel::Lts]),
        Err(Unseen::Channel(Channel::Stable)),
    ));
    // Rule 3: every entitlement.
    let mut module = yes.clone();
    module.entitlements = FeatureSet::parse(&["pro", "cad"]).unwrap();
    cases.push((
        "an entitlement missing",
        module,
        active.clone(),
        stable.clone(),
        Err(Unseen::Entitlement(FeatureCode::parse("cad").unwrap())),
    ));
    let mut held = yes.clone();
    held.entitlements = FeatureSet::parse(&["pro"]).unwrap();
    cases.push((
        "its entitlement held",
        held,
        active.clone(),
        stable.clone(),
        Ok(()),
    ));
    // Rule 4: usable now, or the perpetual fallback.
    cases.push((
        "expired",
        yes.clone(),
        license(Some(90)),
        stable.clone(),
        Err(Unseen::NotUsable),
    ));
    let mut suspended = active.clone();
    suspended.suspension = Some(Reason::parse("chargeback").unwrap());
    cases.push((
        "suspended",
        yes.clone(),
        suspended.clone(),
        stable.clone(),
        Err(Unseen::NotUsable),
    ));
    let mut revoked = active.clone();
    revoked.revocation = Some(Reason::parse("fraud").unwrap());
    cases.push((
        "revoked",
        yes.clone(),
        revoked,
        stable.clone(),
        Err(Unseen::NotUsable),
    ));
    let mut perpetual_suspended = license(None);
    perpetual_suspended.suspension = Some(Reason::parse("chargeback").unwrap());
    cases.push((
        "perpetual, maintenance ended, suspended",
        yes.clone(),
        perpetual_suspended,
        sight(Some(60), &[]),
        Err(Unseen::NotUsable),
    ));
    // Rule 5 and the perpetual fallback: releases of the maintenance only.
    cases.push((
        "perpetual, published while maintenance ran",
        yes.clone(),
        license(None),
        sight(Some(60), &[]),
        Ok(()),
    ));
    cases.push((
        "perpetual, published after maintenance",
        release("7.6.0", Some(70)),
        license(None),
        sight(Some(60), &[]),
        Err(Unseen::AfterMaintenance),
    ));
    cases.push((
        "published the day maintenance ends",
        release("7.5.0", Some(60)),
        license(None),
        sight(Some(60), &[]),
        Ok(()),
    ));
    cases.push((
        "active, published after maintenance",
        release("7.6.0", Some(70)),
        active.clone(),
        sight(Some(60), &[]),
        Err(Unseen::AfterMaintenance),
    ));
    // The first failing rule is the one said.
    let mut draft_beta = release("8.0.0-beta.1", None);
    draft_beta.channel = Channel::Beta;
    cases.push((
        "a draft on beta",
        draft_beta,
        active.clone(),
        stable.clone(),
        Err(Unseen::NotPublished),
    ));
    for (name, release, license, sight, expected) in cases {
        assert_eq!(
            visibility(&release, &license, &sight, now),
            expected,
            "{name}"
        );
    }
}

#[test]
fn versions_order_as_semver_orders_them() {
    let mut versions: Vec<Version> = [
        "1.0.0",
        "1.0.0-rc.1",
        "1.0.0-beta.11",
        "1.0.0-beta.2",
        "1.0.0-beta",
        "1.0.0-alpha.beta",
        "1.0.0-alpha.1",
        "1.0.0-alpha",
        "0.9.10",
        "0.9.9",
        "10.0.0",
        "2.0.0",
    ]
    .iter()
    .map(|s| v(s))
    .collect();
    versions.sort();
    let sorted: Vec<String> = versions.iter().map(ToString::to_string).collect();
    assert_eq!(
        sorted,
        [
            "0.9.9",
            "0.9.10",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "2.0.0",
            "10.0.0",
        ]
    );
    // Build metadata takes no part in precedence: one version.
    assert_eq!(v("1.0.0+a"), v("1.0.0+b"));
    assert_eq!(v("1.0.0+a").to_string(), "1.0.0+a");
    assert!(v("8.0.0-beta.2").is_prerelease() && !v("8.0.0").is_prerelease());
    for bad in [
        "v1.0.0",
        "1.0",
        "1",
        "1.0.0.0",
        "01.0.0",
        "1.0.0-",
        "",
        " 1.0.0",
        "1.0.0-beta..1",
    ] {
        assert!(Version::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn channels_read_as_written() {
    for c in [Channel::Stable, Channel::Lts, Channel::Beta] {
        assert_eq!(Channel::parse(c.as_str()).unwrap(), c);
    }
    assert!(Channel::parse("Stable").is_err());
    assert!(Channel::parse("nightly").is_err());
}

#[test]
fn update_paths_follow_declared_paths_and_only_visible_versions() {
    let seen = |list: &[&str]| list.iter().map(|s| v(s)).collect::<Vec<_>>();
    let via_74 = UpgradePath {
        from: VersionRange::parse("7.2").unwrap(),
        to: v("7.6.0"),
        via: vec![v("7.4.0")],
    };
    let names = |steps: Vec<Version>| steps.iter().map(ToString::to_string).collect::<Vec<_>>();
    let visible = seen(&["7.2.0", "7.4.0", "7.6.0"]);
    // DOMAIN.md's example.
    assert_eq!(
        names(update_path(
            &v("7.2.0"),
            &visible,
            std::slice::from_ref(&via_74)
        )),
        ["7.4.0", "7.6.0"]
    );
    // Without a declared path: the newest directly.
    assert_eq!(names(update_path(&v("7.2.0"), &visible, &[])), ["7.6.0"]);
    assert_eq!(
        names(update_path(
            &v("7.3.0"),
            &visible,
            std::slice::from_ref(&via_74)
        )),
        ["7.6.0"]
    );
    // Up to date, or nothing visible: nothing to install.
    assert!(update_path(&v("7.6.0"), &visible, &[]).is_empty());
    assert!(update_path(&v("7.2.0"), &[], std::slice::from_ref(&via_74)).is_empty());
    // A path through a version the license does not see (yanked, say) is not taken.
    let without_74 = seen(&["7.2.0", "7.6.0"]);
    assert_eq!(
        names(update_path(
            &v("7.2.0"),
            &without_74,
            std::slice::from_ref(&via_74)
        )),
        ["7.6.0"]
    );
    // Paths chain, then the newest directly.
    let to_80 = UpgradePath {
        from: VersionRange::parse("7.6.0").unwrap(),
        to: v("8.0.0"),
        via: vec![v("7.8.0")],
    };
    let later = seen(&["7.4.0", "7.6.0", "7.8.0", "8.0.0", "8.2.0"]);
    assert_eq!(
        names(update_path(&v("7.2.0"), &later, &[via_74.clone(), to_80])),
        ["7.4.0", "7.6.0", "7.8.0", "8.0.0", "8.2.0"]
    );
    // A path beyond the newest visible version is not taken.
    assert_eq!(
        names(update_path(&v("7.2.0"), &seen(&["7.4.0"]), &[via_74])),
        ["7.4.0"]
    );
}

#[test]
fn file_names_are_names_not_paths() {
    for good in [
        "studio-7.4.0-x86_64.msi",
        "Studio 7.4.0.dmg",
        "studio_7.4.0_arm64.tar.gz",
        "ñandú-7.4.0.zip",
        ".hidden",
    ] {
        assert_eq!(Filename::parse(good).unwrap().as_str(), good);
    }
    let long = "a".repeat(Filename::MAX_BYTES + 1);
    let long_utf8 = "é".repeat(128); // 256 bytes, 128 characters
    for bad in [
        "",
        "../etc/passwd",
        "..",
        "a..b",
        "dir/file.msi",
        "dir\\file.msi",
        "C:file.msi",
        "file\u{0}.msi",
        "file\n.msi",
        "file\u{7f}.msi",
        "say\"hi\".msi",
        " file.msi",
        "file.msi ",
        "what?.msi",
        long.as_str(),
        long_utf8.as_str(),
    ] {
        assert!(Filename::parse(bad).is_err(), "{bad:?}");
    }
    assert!(Filename::parse(&"a".repeat(Filename::MAX_BYTES)).is_ok());
}

#[test]
fn ranges_read_a_bare_version_as_that_version_with_its_omitted_parts_free() {
    let r = |s: &str| VersionRange::parse(s).unwrap();
    assert!(r("7.2").matches(&v("7.2.0")));
    assert!(r("7.2").matches(&v("7.2.9")));
    // Not Cargo's caret: "from 7.2" is not "from 7.4".
    assert!(!r("7.2").matches(&v("7.4.0")));
    assert!(r("7.2.1").matches(&v("7.2.1")));
    assert!(!r("7.2.1").matches(&v("7.2.2")));
    assert!(r(">=7.0, <7.3").matches(&v("7.2.5")));
    assert!(!r(">=7.0, <7.3").matches(&v("7.3.0")));
    // Stored in SemVer's normal form, read back the same.
    assert_eq!(r("7.2").to_string(), "=7.2");
    assert_eq!(r(&r("7.2").to_string()), r("7.2"));
    for bad in ["", "seven", "7.2.x.1", "=>7"] {
        assert!(VersionRange::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_patch_release_of_the_start_takes_the_declared_path() {
    let path = UpgradePath::new(
        VersionRange::parse("7.2").unwrap(),
        v("7.6.0"),
        vec![v("7.4.0")],
    )
    .unwrap();
    let visible = [v("7.2.0"), v("7.2.3"), v("7.4.0"), v("7.6.0")];
    let steps = update_path(&v("7.2.3"), &visible, std::slice::from_ref(&path));
    assert_eq!(steps, [v("7.4.0"), v("7.6.0")]);
}

#[test]
fn upgrade_paths_lead_from_their_start_through_ascending_steps_to_their_end() {
    let r = |s: &str| VersionRange::parse(s).unwrap();
    assert!(UpgradePath::new(r("7.2"), v("7.6.0"), vec![]).is_ok());
    assert!(UpgradePath::new(r("7.2"), v("7.6.0"), vec![v("7.3.0"), v("7.4.0")]).is_ok());
    for (from, to, via) in [
        // Leads to a version it starts from.
        ("7.2", "7.2.5", vec![]),
        // Steps out of order, repeated, at or above the end, or within the start.
        ("7.2", "7.6.0", vec![v("7.4.0"), v("7.3.0")]),
        ("7.2", "7.6.0", vec![v("7.4.0"), v("7.4.0")]),
        ("7.2", "7.6.0", vec![v("7.6.0")]),
        ("7.2", "7.6.0", vec![v("7.8.0")]),
        ("7.2", "7.6.0", vec![v("7.2.4")]),
    ] {
        assert!(
            UpgradePath::new(r(from), v(to), via.clone()).is_err(),
            "{from} -> {to} via {via:?}"
        );
    }
    let too_many = (0..=UpgradePath::MAX_VIA)
        .map(|i| v(&format!("7.3.{i}")))
        .collect();
    assert!(UpgradePath::new(r("7.2"), v("8.0.0"), too_many).is_err());
}

mod lifecycle {
    //! The Release aggregate: what each command does in each status (ADR 0023).

    use super::*;
    use crate::DomainError;
    use crate::event::VersionedEvent;
    use crate::ids::{ArtifactId, ReleaseId};
    use crate::product::{ProductFacts, ProductRef};
    use crate::stream::ClaimScope;
    use crate::values::{Arch, KeyPrefix, Name, Platform, ProductKind};
    use cqrs_es::test::TestFramework;

    type Fw = TestFramework<Release>;

    fn rid() -> ReleaseId {
        ReleaseId::from_uuid(uuid::Uuid::from_u128(30))
    }

    fn command(action: ReleaseAction) -> ReleaseCommand {
        ReleaseCommand {
            release_id: rid(),
            at: at(10),
            action,
        }
    }

    fn draft(exists: bool) -> ReleaseAction {
        ReleaseAction::Draft {
            product: ProductRef {
                id: product(),
                facts: exists.then(|| ProductFacts {
                    name: Name::parse("Studio").unwrap(),
                    kind: ProductKind::Application,
                    app_id: crate::ids::AppId::parse(uuid::Uuid::from_u128(21)).unwrap(),
                    key_prefix: KeyPrefix::parse("STU").unwrap(),
                }),
            },
            version: v("7.4.0"),
            channel: Channel::Stable,
            notes: None,
            entitlements: FeatureSet::default(),
        }
    }

    fn drafted() -> ReleaseEvent {
        ReleaseEvent::Drafted {
            product_id: product(),
            version: v("7.4.0"),
            channel: Channel::Stable,
            notes: None,
            entitlements: FeatureSet::default(),
        }
    }

    fn artifact(name: &str, byte: u8) -> Artifact {
        Artifact {
            artifact_id: ArtifactId::from_uuid(uuid::Uuid::now_v7()),
            filename: Filename::parse(name).unwrap(),
            platform: Platform::Linux,
            arch: Arch::X86_64,
            size: 10,
            sha256: Sha256Digest::from_bytes([byte; 32]),
            signature: "sig".to_owned(),
            kid: "kid".to_owned(),
        }
    }

    fn yank() -> ReleaseAction {
        ReleaseAction::Yank {
            reason: Reason::parse("broken").unwrap(),
        }
    }

    #[test]
    fn a_release_is_drafted_once_of_an_existing_product() {
        Fw::with(())
            .given_no_previous_events()
            .when(command(draft(true)))
            .then_expect_events(vec![drafted()]);
        Fw::with(())
            .given_no_previous_events()
            .when(command(draft(false)))
            .then_expect_error(DomainError::ProductNotFound(product()));
        Fw::with(())
            .given(vec![drafted()])
            .when(command(draft(true)))
            .then_expect_error(DomainError::ReleaseAlreadyDrafted(rid()));
        for action in [
            ReleaseAction::Publish,
            yank(),
            ReleaseAction::AddArtifact(artifact("a.tar.gz", 1)),
        ] {
            Fw::with(())
                .given_no_previous_events()
                .when(command(action))
                .then_expect_error(DomainError::ReleaseNotFound(rid()));
        }
    }

    #[test]
    fn artifacts_go_to_drafts_once_per_name_and_a_retry_records_nothing() {
        let first = artifact("a.tar.gz", 1);
        Fw::with(())
            .given(vec![drafted()])
            .when(command(ReleaseAction::AddArtifact(first.clone())))
            .then_expect_events(vec![ReleaseEvent::ArtifactAdded(first.clone())]);
        // The same bytes again (a new id and signature): nothing recorded.
        Fw::with(())
            .given(vec![drafted(), ReleaseEvent::ArtifactAdded(first.clone())])
            .when(command(ReleaseAction::AddArtifact(artifact("a.tar.gz", 1))))
            .then_expect_events(vec![]);
        // Other bytes under the name: refused.
        Fw::with(())
            .given(vec![drafted(), ReleaseEvent::ArtifactAdded(first.clone())])
            .when(command(ReleaseAction::AddArtifact(artifact("a.tar.gz", 2))))
            .then_expect_error(DomainError::ArtifactExists("a.tar.gz".to_owned()));
        // After publishing: refused, but a retry of a recorded upload still answers it.
        let published = vec![
            drafted(),
            ReleaseEvent::ArtifactAdded(first.clone()),
            ReleaseEvent::Published {
                published_at: at(10),
            },
        ];
        Fw::with(())
            .given(published.clone())
            .when(command(ReleaseAction::AddArtifact(artifact("b.tar.gz", 3))))
            .then_expect_error(DomainError::ReleaseNotDraft(rid()));
        Fw::with(())
            .given(published)
            .when(command(ReleaseAction::AddArtifact(artifact("a.tar.gz", 1))))
            .then_expect_events(vec![]);
    }

    #[test]
    fn publishing_needs_an_artifact_and_happens_once() {
        Fw::with(())
            .given(vec![drafted()])
            .when(command(ReleaseAction::Publish))
            .then_expect_error(DomainError::ReleaseHasNoArtifacts(rid()));
        let with_file = vec![drafted(), ReleaseEvent::ArtifactAdded(artifact("a", 1))];
        Fw::with(())
            .given(with_file.clone())
            .when(command(ReleaseAction::Publish))
            .then_expect_events(vec![ReleaseEvent::Published {
                published_at: at(10),
            }]);
        let mut published = with_file;
        published.push(ReleaseEvent::Published {
            published_at: at(10),
        });
        Fw::with(())
            .given(published)
            .when(command(ReleaseAction::Publish))
            .then_expect_error(DomainError::ReleaseNotDraft(rid()));
    }

    #[test]
    fn only_a_published_release_is_yanked_and_once() {
        let with_file = vec![drafted(), ReleaseEvent::ArtifactAdded(artifact("a", 1))];
        Fw::with(())
            .given(with_file.clone())
            .when(command(yank()))
            .then_expect_error(DomainError::ReleaseNotPublished(rid()));
        let mut published = with_file;
        published.push(ReleaseEvent::Published {
            published_at: at(10),
        });
        Fw::with(())
            .given(published.clone())
            .when(command(yank()))
            .then_expect_events(vec![ReleaseEvent::Yanked {
                reason: Reason::parse("broken").unwrap(),
            }]);
        published.push(ReleaseEvent::Yanked {
            reason: Reason::parse("broken").unwrap(),
        });
        let state = {
            let mut r = Release::default();
            for e in published.clone() {
                cqrs_es::Aggregate::apply(&mut r, e);
            }
            r
        };
        let s = state.state().unwrap();
        assert_eq!(s.status(), ReleaseStatus::Yanked);
        assert!(s.facts().yanked);
        Fw::with(())
            .given(published.clone())
            .when(command(yank()))
            .then_expect_error(DomainError::ReleaseYanked(rid()));
        Fw::with(())
            .given(published)
            .when(command(ReleaseAction::Publish))
            .then_expect_error(DomainError::ReleaseNotDraft(rid()));
    }

    #[test]
    fn versions_equal_but_for_build_metadata_claim_the_same_value() {
        let claim = |s: &str| release_version_claim(product(), &v(s));
        assert_eq!(claim("7.4.0+a"), claim("7.4.0+b"));
        assert_eq!(claim("7.4.0+a"), claim("7.4.0"));
        assert_ne!(claim("7.4.0"), claim("7.4.0-rc.1"));
        assert_eq!(
            drafted().unique_claims()[0].scope,
            ClaimScope::ReleaseVersion.as_str()
        );
    }
}

#[test]
fn versions_and_requirements_are_bounded() {
    let long = format!("1.0.0+{}", "a".repeat(Version::MAX_BYTES));
    assert!(Version::parse(&long).is_err());
    let at_limit = format!("1.0.0+{}", "a".repeat(Version::MAX_BYTES - 6));
    assert!(Version::parse(&at_limit).is_ok());
    assert!(VersionRange::parse(&format!(">={}", "1".repeat(Version::MAX_BYTES))).is_err());
}

#[test]
fn file_names_that_read_otherwise_than_they_are_are_refused() {
    for bad in [
        ".",
        "trailing.",
        "evil\u{202e}gpj.exe",
        "zero\u{200b}width.zip",
        "a\u{2215}b.zip",
        "a\u{ff0f}b.zip",
        "CON",
        "nul.txt",
        "com1.zip",
        "LPT9",
        "100%.zip",
    ] {
        assert!(Filename::parse(bad).is_err(), "{bad:?}");
    }
    for good in [
        "console.zip",
        "com10.zip",
        "lpt0.zip",
        "nul-free.txt",
        "studio.tar.gz",
    ] {
        assert!(Filename::parse(good).is_ok(), "{good:?}");
    }
}

#[test]
fn new_uploads_meet_the_rules_added_since_names_were_first_stored() {
    for bad in [
        "COM0",
        "lpt0.txt",
        "COM\u{b9}.txt",
        "lpt\u{b3}",
        "CONIN$",
        "conout$.log",
        "CON .txt",
        "nul   .zip",
        "a\u{2216}b.zip",
        "a\u{fe68}b.zip",
        "a\u{2028}b.zip",
        "a\u{2029}b.zip",
    ] {
        // Stored names like these still load; a new upload is refused.
        assert!(Filename::parse(bad).is_ok(), "{bad:?} loads");
        assert!(Filename::parse_new(bad).is_err(), "{bad:?} is refused");
    }
    for bad in ["CON", "a/b", "x\u{202e}y"] {
        assert!(Filename::parse_new(bad).is_err(), "{bad:?}");
    }
    for good in [
        "console.zip",
        "com10.zip",
        "lpt.zip",
        "conin.txt",
        "studio 7.4.tar.gz",
        "studio.tar.gz",
    ] {
        assert!(Filename::parse_new(good).is_ok(), "{good:?}");
    }
}

#[test]
fn upgrade_paths_lead_upwards_from_where_they_start_and_name_no_build() {
    let r = |s: &str| VersionRange::parse(s).unwrap();
    assert!(UpgradePath::new(r("7.2"), v("7.6.0"), vec![v("7.1.0")]).is_err());
    assert!(UpgradePath::new(r("7.6"), v("7.2.0"), vec![]).is_err());
    assert!(UpgradePath::new(r("7.2"), v("7.6.0+b"), vec![]).is_err());
    assert!(UpgradePath::new(r("7.2"), v("7.6.0"), vec![v("7.4.0+b")]).is_err());
    assert!(UpgradePath::new(r(">=7.0, <7.3"), v("7.6.0"), vec![v("7.4.0")]).is_ok());
    assert_eq!(r(">=7.0, <7.3").floor(), Some(v("7.0.0")));
    assert_eq!(r("<8").floor(), None);
}

#[test]
fn a_file_runs_on_its_own_platform_and_architecture_or_any() {
    use crate::values::{Arch, Platform};
    assert!(Platform::Linux.runs_on(Platform::Linux));
    assert!(Platform::Any.runs_on(Platform::Windows));
    assert!(!Platform::Linux.runs_on(Platform::Windows));
    assert!(!Platform::Linux.runs_on(Platform::Any));
    assert!(Arch::Any.runs_on(Arch::Arm64));
    assert!(!Arch::X86_64.runs_on(Arch::Arm64));
}
