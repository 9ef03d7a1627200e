//! The lifecycle commands of an issued license: suspend, reinstate, renew, transfer, revoke,
//! entitlements and seats, key rotation, maintenance; and what an unissued or revoked license
//! answers to each of them.

use uuid::Uuid;

use super::*;
use crate::error::DomainError;
use crate::ids::InstallationId;
use crate::values::{Environment, FeatureSet, Fingerprint, SeatCount};

#[test]
fn every_lifecycle_command_to_an_unissued_license_is_not_found() {
    for action in lifecycle_actions() {
        Fw::with(())
            .given_no_previous_events()
            .when(cmd(action))
            .then_expect_error(DomainError::LicenseNotFound(lid()));
    }
}

#[test]
fn every_lifecycle_command_to_a_revoked_license_is_refused() {
    for action in lifecycle_actions() {
        Fw::with(())
            .given(vec![issued(), revoked()])
            .when(cmd(action))
            .then_expect_error(DomainError::LicenseRevoked(lid()));
    }
    // Also when it was suspended before being revoked.
    Fw::with(())
        .given(vec![issued(), suspended(), revoked()])
        .when(cmd(LicenseAction::Reinstate))
        .then_expect_error(DomainError::LicenseRevoked(lid()));
}

fn lifecycle_actions() -> Vec<LicenseAction> {
    vec![
        LicenseAction::Suspend {
            reason: reason("x"),
        },
        LicenseAction::Reinstate,
        LicenseAction::Renew {
            expires_at: t("2030-01-01T00:00:00Z"),
        },
        LicenseAction::Transfer {
            organization: open_org(11),
        },
        LicenseAction::Revoke {
            reason: reason("x"),
            category: RevocationCategory::Unspecified,
        },
        LicenseAction::ChangeEntitlements {
            features: FeatureSet::default(),
        },
        LicenseAction::ChangeSeats {
            seats: SeatCount::new(1).unwrap(),
        },
        LicenseAction::RotateKey {
            key_hash: KeyHash::from_bytes([8; 32]),
            key_prefix: "ST-WXYZ".into(),
        },
        LicenseAction::ExtendMaintenance {
            until: t("2030-01-01T00:00:00Z"),
        },
    ]
}

#[test]
fn suspending_an_active_license_records_the_reason() {
    Fw::with(())
        .given(vec![issued()])
        .when(cmd(LicenseAction::Suspend {
            reason: reason("chargeback"),
        }))
        .then_expect_events(vec![suspended()]);
}

#[test]
fn suspending_a_suspended_license_is_refused() {
    Fw::with(())
        .given(vec![issued(), suspended()])
        .when(cmd(LicenseAction::Suspend {
            reason: reason("again"),
        }))
        .then_expect_error(DomainError::LicenseAlreadySuspended(lid()));
}

#[test]
fn reinstating_needs_a_suspension() {
    Fw::with(())
        .given(vec![issued()])
        .when(cmd(LicenseAction::Reinstate))
        .then_expect_error(DomainError::LicenseNotSuspended(lid()));
    Fw::with(())
        .given(vec![issued(), suspended()])
        .when(cmd(LicenseAction::Reinstate))
        .then_expect_events(vec![LicenseEvent::Reinstated {}]);
    Fw::with(())
        .given(vec![issued(), suspended(), LicenseEvent::Reinstated {}])
        .when(cmd(LicenseAction::Reinstate))
        .then_expect_error(DomainError::LicenseNotSuspended(lid()));
}

#[test]
fn renewing_must_extend_into_the_future() {
    let later = t("2028-01-01T00:00:00Z");
    Fw::with(())
        .given(vec![issued()])
        .when(cmd(LicenseAction::Renew { expires_at: later }))
        .then_expect_events(vec![LicenseEvent::Renewed { expires_at: later }]);
    // Before the current expiry (2027-03-01): refused.
    let err = Fw::with(())
        .given(vec![issued()])
        .when(cmd(LicenseAction::Renew {
            expires_at: t("2026-12-01T00:00:00Z"),
        }))
        .inspect_result()
        .unwrap_err();
    assert_eq!(err.code(), "INVALID_EXPIRY");
    // In the past: refused, even for an expired license.
    let err = Fw::with(())
        .given(vec![issued()])
        .when(cmd(LicenseAction::Renew {
            expires_at: t("2020-01-01T00:00:00Z"),
        }))
        .inspect_result()
        .unwrap_err();
    assert_eq!(err.code(), "INVALID_EXPIRY");
}

#[test]
fn renewing_a_suspended_license_is_allowed_and_keeps_it_suspended() {
    let later = t("2028-01-01T00:00:00Z");
    let mut license = License::default();
    for e in [issued(), suspended()] {
        license.fold(e);
    }
    let events = license
        .decide(&cmd(LicenseAction::Renew { expires_at: later }))
        .unwrap();
    for e in events {
        license.fold(e);
    }
    let state = license.state().unwrap();
    assert!(state.suspension.is_some());
    assert_eq!(state.expires_at, Some(later));
}

#[test]
fn renewing_a_perpetual_license_is_refused() {
    let mut perpetual = terms();
    perpetual.duration_days = None;
    let events = License::NotIssued
        .decide(&cmd(LicenseAction::Issue(Box::new(issue_with(
            perpetual, None,
        )))))
        .unwrap();
    Fw::with(())
        .given(events)
        .when(cmd(LicenseAction::Renew {
            expires_at: t("2030-01-01T00:00:00Z"),
        }))
        .then_expect_error(DomainError::LicensePerpetual(lid()));
}

#[test]
fn transferring_moves_the_license_to_an_open_organization() {
    Fw::with(())
        .given(vec![issued()])
        .when(cmd(LicenseAction::Transfer {
            organization: open_org(11),
        }))
        .then_expect_events(vec![LicenseEvent::Transferred {
            organization_id: org(11),
        }]);
    Fw::with(())
        .given(vec![issued()])
        .when(cmd(LicenseAction::Transfer {
            organization: open_org(10),
        }))
        .then_expect_error(DomainError::SameOrganization(org(10)));
    Fw::with(())
        .given(vec![issued()])
        .when(cmd(LicenseAction::Transfer {
            organization: OrganizationRef {
                id: org(12),
                facts: None,
            },
        }))
        .then_expect_error(DomainError::OrganizationNotFound(org(12)));
}

#[test]
fn revoking_is_final() {
    Fw::with(())
        .given(vec![issued(), suspended()])
        .when(cmd(LicenseAction::Revoke {
            reason: reason("fraud"),
            category: RevocationCategory::Fraud,
        }))
        .then_expect_events(vec![revoked()]);
}

#[test]
fn changing_entitlements_and_seats_records_only_real_changes() {
    let features = FeatureSet::parse(&["pro", "export"]).unwrap();
    Fw::with(())
        .given(vec![issued()])
        .when(cmd(LicenseAction::ChangeEntitlements {
            features: features.clone(),
        }))
        .then_expect_events(vec![LicenseEvent::EntitlementsChanged { features }]);
    Fw::with(())
        .given(vec![issued()])
        .when(cmd(LicenseAction::ChangeEntitlements {
            features: FeatureSet::parse(&["pro"]).unwrap(),
        }))
        .then_expect_events(vec![]);
    Fw::with(())
        .given(vec![issued()])
        .when(cmd(LicenseAction::ChangeSeats {
            seats: SeatCount::new(3).unwrap(),
        }))
        .then_expect_events(vec![]);
    Fw::with(())
        .given(vec![issued()])
        .when(cmd(LicenseAction::ChangeSeats {
            seats: SeatCount::new(1).unwrap(),
        }))
        .then_expect_events(vec![LicenseEvent::SeatsChanged {
            seats: SeatCount::new(1).unwrap(),
        }]);
}

#[test]
fn seats_cannot_drop_below_active_installations() {
    let mut license = License::default();
    license.fold(issued());
    let License::Issued(state) = &mut license else {
        panic!()
    };
    for n in 0..2u128 {
        state.activations.insert(
            InstallationId::from_uuid(Uuid::from_u128(100 + n)),
            Activation {
                fingerprint: Fingerprint::parse(&format!("fp-{n}")).unwrap(),
                environment: Environment::Production,
                hostname: None,
                platform: None,
                activated_at: now(),
                lease_expires_at: None,
            },
        );
    }
    let err = license
        .decide(&cmd(LicenseAction::ChangeSeats {
            seats: SeatCount::new(1).unwrap(),
        }))
        .unwrap_err();
    assert_eq!(
        err,
        DomainError::SeatsBelowActivations {
            seats: 1,
            active: 2
        }
    );
    assert!(
        license
            .decide(&cmd(LicenseAction::ChangeSeats {
                seats: SeatCount::new(2).unwrap()
            }))
            .is_ok()
    );
}

#[test]
fn rotating_the_key_replaces_hash_and_prefix() {
    let mut license = License::default();
    license.fold(issued());
    license.fold(LicenseEvent::KeyRotated {
        key_hash: KeyHash::from_bytes([9; 32]),
        key_prefix: "ST-NEW1".into(),
    });
    let state = license.state().unwrap();
    assert_eq!(state.key_hash, KeyHash::from_bytes([9; 32]));
    assert_eq!(state.key_prefix, "ST-NEW1");
}

#[test]
fn maintenance_only_extends() {
    Fw::with(())
        .given(vec![issued()])
        .when(cmd(LicenseAction::ExtendMaintenance {
            until: t("2028-03-01T10:00:00Z"),
        }))
        .then_expect_events(vec![LicenseEvent::MaintenanceExtended {
            until: t("2028-03-01T10:00:00Z"),
        }]);
    let err = Fw::with(())
        .given(vec![issued()])
        .when(cmd(LicenseAction::ExtendMaintenance {
            until: t("2026-06-01T00:00:00Z"),
        }))
        .inspect_result()
        .unwrap_err();
    assert_eq!(err.code(), "INVALID_EXPIRY");
}
