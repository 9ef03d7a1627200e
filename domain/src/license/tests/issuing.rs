//! Issuing a license: what the policy, product and organization facts become in
//! `LicenseIssued`, and when issuing is refused.

use chrono::Duration;
use uuid::Uuid;

use super::*;
use crate::error::DomainError;
use crate::values::{FeatureSet, LicenseModel, SeatCount};

#[test]
fn issuing_copies_the_policy_terms_and_derives_dates() {
    let LicenseEvent::Issued(issued) = issued() else {
        panic!("expected LicenseIssued")
    };
    assert_eq!(issued.policy_version, 2);
    assert_eq!(issued.seats.get(), 3);
    assert_eq!(issued.starts_at, now());
    assert_eq!(issued.expires_at, Some(now() + Duration::days(365)));
    assert_eq!(issued.trial_ends_at, None);
    assert_eq!(issued.maintenance_until, Some(t("2027-03-01T10:00:00Z")));
    assert_eq!(issued.app_id, AppId::parse(Uuid::from_u128(21)).unwrap());
}

#[test]
fn issuing_honours_overrides_and_trials() {
    let mut trial_terms = terms();
    trial_terms.trial_days = 14;
    trial_terms.duration_days = None;
    let mut issue = issue_with(trial_terms, Some(t("2030-01-01T00:00:00Z")));
    issue.seats = Some(SeatCount::new(9).unwrap());
    issue.features = Some(FeatureSet::parse(&["a", "b"]).unwrap());
    let events = License::NotIssued
        .decide(&cmd(LicenseAction::Issue(Box::new(issue))))
        .unwrap();
    let LicenseEvent::Issued(issued) = &events[0] else {
        panic!()
    };
    assert_eq!(issued.seats.get(), 9);
    assert_eq!(issued.features, FeatureSet::parse(&["a", "b"]).unwrap());
    assert_eq!(issued.expires_at, Some(t("2030-01-01T00:00:00Z")));
    assert_eq!(issued.trial_ends_at, Some(now() + Duration::days(14)));
}

#[test]
fn issuing_is_refused_for_missing_or_unusable_references() {
    let mut issue = issue_with(terms(), None);
    issue.policy.facts = None;
    Fw::with(())
        .given_no_previous_events()
        .when(cmd(LicenseAction::Issue(Box::new(issue))))
        .then_expect_error(DomainError::PolicyNotFound(PolicyId::from_uuid(
            Uuid::from_u128(30),
        )));

    let mut issue = issue_with(terms(), None);
    issue.policy.facts.as_mut().unwrap().retired = true;
    Fw::with(())
        .given_no_previous_events()
        .when(cmd(LicenseAction::Issue(Box::new(issue))))
        .then_expect_error(DomainError::PolicyRetired(PolicyId::from_uuid(
            Uuid::from_u128(30),
        )));

    let mut issue = issue_with(terms(), None);
    issue.organization.facts = None;
    Fw::with(())
        .given_no_previous_events()
        .when(cmd(LicenseAction::Issue(Box::new(issue))))
        .then_expect_error(DomainError::OrganizationNotFound(org(10)));

    let mut issue = issue_with(terms(), None);
    issue.organization.facts.as_mut().unwrap().closed = true;
    Fw::with(())
        .given_no_previous_events()
        .when(cmd(LicenseAction::Issue(Box::new(issue))))
        .then_expect_error(DomainError::OrganizationClosed(org(10)));

    let issue = issue_with(terms(), Some(now()));
    let err = Fw::with(())
        .given_no_previous_events()
        .when(cmd(LicenseAction::Issue(Box::new(issue))))
        .inspect_result()
        .unwrap_err();
    assert_eq!(err.code(), "INVALID_EXPIRY");
}

#[test]
fn issuing_twice_is_a_conflict() {
    Fw::with(())
        .given(vec![issued()])
        .when(cmd(LicenseAction::Issue(Box::new(issue_with(
            terms(),
            None,
        )))))
        .then_expect_error(DomainError::LicenseAlreadyIssued(lid()));
}

#[test]
fn a_floating_policy_keeps_its_lease_on_the_license() {
    let floating = PolicyTerms::new(crate::policy::PolicyTermsInput {
        model: LicenseModel::Floating,
        ..crate::policy::tests::input()
    })
    .unwrap();
    let events = License::NotIssued
        .decide(&cmd(LicenseAction::Issue(Box::new(issue_with(
            floating, None,
        )))))
        .unwrap();
    let mut license = License::default();
    for e in events {
        license.fold(e);
    }
    assert_eq!(license.state().unwrap().terms.lease_seconds, Some(900));
}
