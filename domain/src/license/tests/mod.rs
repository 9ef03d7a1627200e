//! Unit tests of the License aggregate, given/when/then with cqrs-es' `TestFramework`, grouped by
//! what a reader looks for: issuing, the lifecycle commands, the stored event contract, the use
//! of seats (activations, leases, offline tokens) and the billing facts.
//!
//! This module holds the fixtures they share: the standard test license (365 days, 3 seats,
//! feature `pro`) and its references. `t`, `now`, `lid`, `terms` and `issued` are `pub(crate)`
//! because the status tests fold the same license.

mod activations;
mod assignments;
mod billing;
mod event;
mod issuing;
mod lifecycle;

use cqrs_es::test::TestFramework;
use uuid::Uuid;

use super::*;
use crate::Timestamp;
use crate::ids::{AppId, LicenseId, OrganizationId, PolicyId, ProductId};
use crate::keys::KeyHash;
use crate::organization::{OrganizationFacts, OrganizationRef};
use crate::policy::{PolicyFacts, PolicyRef, PolicyTerms};
use crate::product::{ProductFacts, ProductRef};
use crate::values::{
    KeyPrefix, LicenseSource, Name, OrganizationKind, ProductKind, Reason, RevocationCategory,
};

type Fw = TestFramework<License>;

pub(crate) fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}
pub(crate) fn now() -> Timestamp {
    t("2026-03-01T10:00:00Z")
}
pub(crate) fn lid() -> LicenseId {
    LicenseId::from_uuid(Uuid::from_u128(1))
}
fn org(n: u128) -> OrganizationId {
    OrganizationId::from_uuid(Uuid::from_u128(n))
}
pub(crate) fn terms() -> PolicyTerms {
    PolicyTerms::new(crate::policy::tests::input()).unwrap()
}
pub(crate) fn issue_with(terms: PolicyTerms, expires_at: Option<Timestamp>) -> IssueLicense {
    let product_id = ProductId::from_uuid(Uuid::from_u128(20));
    IssueLicense {
        policy: PolicyRef {
            id: PolicyId::from_uuid(Uuid::from_u128(30)),
            facts: Some(PolicyFacts {
                product_id,
                version: 2,
                terms,
                retired: false,
            }),
        },
        product: ProductRef {
            id: product_id,
            facts: Some(ProductFacts {
                name: Name::parse("Studio").unwrap(),
                kind: ProductKind::Application,
                app_id: AppId::parse(Uuid::from_u128(21)).unwrap(),
                key_prefix: KeyPrefix::parse("ST").unwrap(),
            }),
        },
        organization: open_org(10),
        key_hash: KeyHash::from_bytes([7; 32]),
        key_prefix: "ST-ABCD".into(),
        seats: None,
        features: None,
        expires_at,
        source: LicenseSource::Admin,
    }
}
fn open_org(n: u128) -> OrganizationRef {
    OrganizationRef {
        id: org(n),
        facts: Some(OrganizationFacts {
            kind: OrganizationKind::Customer,
            closed: false,
            lineage: vec![org(n)],
        }),
    }
}
fn cmd(action: LicenseAction) -> LicenseCommand {
    LicenseCommand {
        license_id: lid(),
        at: now(),
        action,
    }
}
/// A license issued under `terms` at `at`, expiring at `expires_at`: what the billing and
/// release tests fold their facts into or read.
pub(crate) fn issued_at(
    terms: PolicyTerms,
    at: Timestamp,
    expires_at: Option<Timestamp>,
) -> License {
    let mut license = License::NotIssued;
    let events = license
        .decide(&LicenseCommand {
            license_id: lid(),
            at,
            action: LicenseAction::Issue(Box::new(issue_with(terms, expires_at))),
        })
        .unwrap();
    for event in events {
        license.fold(event);
    }
    license
}
/// The event issuing the standard test license (365 days, 3 seats, feature `pro`).
pub(crate) fn issued() -> LicenseEvent {
    let events = License::NotIssued
        .decide(&cmd(LicenseAction::Issue(Box::new(issue_with(
            terms(),
            None,
        )))))
        .unwrap();
    events.into_iter().next().unwrap()
}
fn reason(s: &str) -> Reason {
    Reason::parse(s).unwrap()
}
fn suspended() -> LicenseEvent {
    LicenseEvent::Suspended {
        reason: reason("chargeback"),
    }
}
fn revoked() -> LicenseEvent {
    LicenseEvent::Revoked {
        reason: reason("fraud"),
        category: RevocationCategory::Fraud,
    }
}
