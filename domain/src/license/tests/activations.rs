//! The use of a license's seats: activations and deactivations, floating leases and their
//! heartbeats and lapses, offline tokens.

use chrono::Duration;
use uuid::Uuid;

use super::*;
use crate::error::DomainError;
use crate::ids::InstallationId;
use crate::validation::ValidationCode;
use crate::values::{
    DeactivationReason, Environment, Fingerprint, LicenseModel, OfflineTokenKind, SeatCount,
};

fn iid(n: u128) -> InstallationId {
    InstallationId::from_uuid(Uuid::from_u128(1000 + n))
}
fn fp(s: &str) -> Fingerprint {
    Fingerprint::parse(s).unwrap()
}
fn activate(n: u128, fingerprint: &str) -> LicenseAction {
    LicenseAction::Activate {
        installation_id: iid(n),
        fingerprint: fp(fingerprint),
        hostname: None,
        platform: None,
        environment: Environment::Production,
    }
}
fn activated(n: u128, fingerprint: &str) -> LicenseEvent {
    LicenseEvent::InstallationActivated {
        installation_id: iid(n),
        fingerprint: fp(fingerprint),
        hostname: None,
        platform: None,
        environment: Environment::Production,
        activated_at: now(),
    }
}
fn floating_issued(seats: u32, lease: u32) -> LicenseEvent {
    let mut terms = terms();
    terms.model = LicenseModel::Floating;
    terms.lease_seconds = Some(lease);
    terms.seats = SeatCount::new(seats).unwrap();
    License::NotIssued
        .decide(&cmd(LicenseAction::Issue(Box::new(issue_with(
            terms, None,
        )))))
        .unwrap()
        .remove(0)
}
fn at(offset_seconds: i64, action: LicenseAction) -> LicenseCommand {
    LicenseCommand {
        license_id: lid(),
        at: now() + Duration::seconds(offset_seconds),
        action,
    }
}

#[test]
fn activating_a_new_device_takes_a_seat() {
    Fw::with(())
        .given(vec![issued()])
        .when(cmd(activate(1, "fp-1")))
        .then_expect_events(vec![activated(1, "fp-1")]);
}

#[test]
fn activating_an_active_fingerprint_again_changes_nothing() {
    Fw::with(())
        .given(vec![issued(), activated(1, "fp-1")])
        .when(cmd(activate(2, "fp-1")))
        .then_expect_events(vec![]);
}

#[test]
fn activating_beyond_the_seat_limit_is_refused() {
    let full = vec![
        issued(),
        activated(1, "a"),
        activated(2, "b"),
        activated(3, "c"),
    ];
    Fw::with(())
        .given(full)
        .when(cmd(activate(4, "d")))
        .then_expect_error(DomainError::TooManyActivations { seats: 3 });
}

#[test]
fn a_license_that_is_not_valid_cannot_be_activated() {
    Fw::with(())
        .given(vec![issued(), suspended()])
        .when(cmd(activate(1, "a")))
        .then_expect_error(DomainError::LicenseNotValid(ValidationCode::Suspended));
    Fw::with(())
        .given(vec![issued()])
        .when(at(400 * 86_400, activate(1, "a")))
        .then_expect_error(DomainError::LicenseNotValid(ValidationCode::Expired));
    Fw::with(())
        .given(vec![issued(), revoked()])
        .when(cmd(activate(1, "a")))
        .then_expect_error(DomainError::LicenseRevoked(lid()));
}

#[test]
fn deactivating_frees_the_seat_even_on_a_revoked_license() {
    Fw::with(())
        .given(vec![issued(), activated(1, "a"), revoked()])
        .when(cmd(LicenseAction::Deactivate {
            installation_id: iid(1),
            reason: DeactivationReason::Client,
        }))
        .then_expect_events(vec![LicenseEvent::InstallationDeactivated {
            installation_id: iid(1),
            reason: DeactivationReason::Client,
        }]);
    Fw::with(())
        .given(vec![issued()])
        .when(cmd(LicenseAction::Deactivate {
            installation_id: iid(9),
            reason: DeactivationReason::Client,
        }))
        .then_expect_error(DomainError::InstallationNotFound(iid(9)));
}

#[test]
fn a_floating_activation_holds_a_lease_renewed_by_heartbeats_past_half_time() {
    let lease_end = now() + Duration::seconds(600);
    Fw::with(())
        .given(vec![floating_issued(2, 600)])
        .when(cmd(activate(1, "a")))
        .then_expect_events(vec![
            activated(1, "a"),
            LicenseEvent::FloatingLeaseGranted {
                installation_id: iid(1),
                expires_at: lease_end,
            },
        ]);
    let history = vec![
        floating_issued(2, 600),
        activated(1, "a"),
        LicenseEvent::FloatingLeaseGranted {
            installation_id: iid(1),
            expires_at: lease_end,
        },
    ];
    // Early beat: nothing to record.
    Fw::with(())
        .given(history.clone())
        .when(at(
            60,
            LicenseAction::Heartbeat {
                installation_id: iid(1),
            },
        ))
        .then_expect_events(vec![]);
    // Past half the lease: renewed from now.
    Fw::with(())
        .given(history.clone())
        .when(at(
            400,
            LicenseAction::Heartbeat {
                installation_id: iid(1),
            },
        ))
        .then_expect_events(vec![LicenseEvent::FloatingLeaseGranted {
            installation_id: iid(1),
            expires_at: now() + Duration::seconds(1000),
        }]);
    // Too late: the seat is gone.
    Fw::with(())
        .given(history)
        .when(at(
            600,
            LicenseAction::Heartbeat {
                installation_id: iid(1),
            },
        ))
        .then_expect_error(DomainError::LeaseExpired(iid(1)));
    // A node-locked installation has no lease.
    Fw::with(())
        .given(vec![issued(), activated(1, "a")])
        .when(cmd(LicenseAction::Heartbeat {
            installation_id: iid(1),
        }))
        .then_expect_error(DomainError::NotFloating);
}

#[test]
fn lapsed_leases_free_their_seats_and_are_recorded() {
    let history = vec![
        floating_issued(1, 600),
        activated(1, "a"),
        LicenseEvent::FloatingLeaseGranted {
            installation_id: iid(1),
            expires_at: now() + Duration::seconds(600),
        },
    ];
    // While the lease runs, the only seat is taken.
    Fw::with(())
        .given(history.clone())
        .when(at(10, activate(2, "b")))
        .then_expect_error(DomainError::TooManyActivations { seats: 1 });
    // After it lapsed, a new device gets the seat and the expiry is recorded first.
    Fw::with(())
        .given(history.clone())
        .when(at(601, activate(2, "b")))
        .then_expect_events(vec![
            LicenseEvent::FloatingLeaseExpired {
                installation_id: iid(1),
            },
            LicenseEvent::InstallationActivated {
                installation_id: iid(2),
                fingerprint: fp("b"),
                hostname: None,
                platform: None,
                environment: Environment::Production,
                activated_at: now() + Duration::seconds(601),
            },
            LicenseEvent::FloatingLeaseGranted {
                installation_id: iid(2),
                expires_at: now() + Duration::seconds(1201),
            },
        ]);
    Fw::with(())
        .given(history.clone())
        .when(at(601, LicenseAction::ExpireLeases))
        .then_expect_events(vec![LicenseEvent::FloatingLeaseExpired {
            installation_id: iid(1),
        }]);
    Fw::with(())
        .given(history)
        .when(at(10, LicenseAction::ExpireLeases))
        .then_expect_events(vec![]);
}

#[test]
fn offline_tokens_need_an_offline_policy_and_a_valid_license_and_never_outlive_it() {
    let jti = Uuid::from_u128(77);
    let token = |kind, fingerprint: Option<&str>| LicenseAction::IssueOfflineToken {
        jti,
        kind,
        fingerprint: fingerprint.map(fp),
    };
    // 14 days of offline grace inside a 365-day license.
    Fw::with(())
        .given(vec![issued()])
        .when(cmd(token(OfflineTokenKind::Offline, None)))
        .then_expect_events(vec![LicenseEvent::OfflineTokenIssued {
            jti,
            kind: OfflineTokenKind::Offline,
            installation_id: None,
            fingerprint: None,
            issued_at: now(),
            expires_at: now() + Duration::days(14),
        }]);
    // Five days before expiry the token ends with the license.
    let late = now() + Duration::days(360);
    let events = License::default()
        .decide(&cmd(LicenseAction::Issue(Box::new(issue_with(
            terms(),
            None,
        )))))
        .unwrap();
    let mut license = License::default();
    for e in events {
        license.fold(e);
    }
    let issued_late = license
        .decide(&LicenseCommand {
            license_id: lid(),
            at: late,
            action: token(OfflineTokenKind::Offline, None),
        })
        .unwrap();
    let LicenseEvent::OfflineTokenIssued { expires_at, .. } = &issued_late[0] else {
        panic!()
    };
    assert_eq!(Some(*expires_at), license.state().unwrap().expires_at);
    // Bound to an activated device: the installation is named.
    Fw::with(())
        .given(vec![issued(), activated(1, "a")])
        .when(cmd(token(OfflineTokenKind::OfflineActivation, Some("a"))))
        .then_expect_events(vec![LicenseEvent::OfflineTokenIssued {
            jti,
            kind: OfflineTokenKind::OfflineActivation,
            installation_id: Some(iid(1)),
            fingerprint: Some(fp("a")),
            issued_at: now(),
            expires_at: now() + Duration::days(365),
        }]);
    Fw::with(())
        .given(vec![issued()])
        .when(cmd(token(OfflineTokenKind::Offline, Some("not-activated"))))
        .then_expect_error(DomainError::LicenseNotValid(ValidationCode::NotActivated));
    Fw::with(())
        .given(vec![issued(), suspended()])
        .when(cmd(token(OfflineTokenKind::Offline, None)))
        .then_expect_error(DomainError::LicenseNotValid(ValidationCode::Suspended));
    let mut online_only = terms();
    online_only.offline_allowed = false;
    let events = License::NotIssued
        .decide(&cmd(LicenseAction::Issue(Box::new(issue_with(
            online_only,
            None,
        )))))
        .unwrap();
    Fw::with(())
        .given(events)
        .when(cmd(token(OfflineTokenKind::Offline, None)))
        .then_expect_error(DomainError::OfflineNotAllowed);
}
