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
        from: v("7.2.0"),
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
        from: v("7.6.0"),
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
