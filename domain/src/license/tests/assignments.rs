//! Named-user assignments: who may be named on a license, and the seats of `named_user`
//! policies counting the users named.

use uuid::Uuid;

use super::*;
use crate::error::DomainError;
use crate::ids::UserId;
use crate::values::{LicenseModel, SeatCount};

fn uid(n: u128) -> UserId {
    UserId::from_uuid(Uuid::from_u128(500 + n))
}
/// A user of organization 11, a child of the license's organization 10.
fn assignee(n: u128) -> Assignee {
    Assignee {
        user_id: uid(n),
        deactivated: false,
        lineage: vec![org(11), org(10)],
    }
}
fn assign(n: u128) -> LicenseAction {
    LicenseAction::Assign(assignee(n))
}
fn assigned(n: u128) -> LicenseEvent {
    LicenseEvent::Assigned { user_id: uid(n) }
}
fn named_user_issued(seats: u32) -> LicenseEvent {
    let mut terms = terms();
    terms.model = LicenseModel::NamedUser;
    terms.seats = SeatCount::new(seats).unwrap();
    License::NotIssued
        .decide(&cmd(LicenseAction::Issue(Box::new(issue_with(
            terms, None,
        )))))
        .unwrap()
        .remove(0)
}

#[test]
fn a_user_of_the_organization_or_below_is_named_once() {
    Fw::with(())
        .given(vec![named_user_issued(2)])
        .when(cmd(assign(1)))
        .then_expect_events(vec![assigned(1)]);
    // Naming a user already named changes nothing (a retried request is not a second seat).
    Fw::with(())
        .given(vec![named_user_issued(2), assigned(1)])
        .when(cmd(assign(1)))
        .then_expect_events(vec![]);
}

#[test]
fn named_user_seats_count_assignees() {
    Fw::with(())
        .given(vec![named_user_issued(2), assigned(1), assigned(2)])
        .when(cmd(assign(3)))
        .then_expect_error(DomainError::TooManyAssignments { seats: 2 });
    // Unassigning frees the seat.
    Fw::with(())
        .given(vec![
            named_user_issued(2),
            assigned(1),
            assigned(2),
            LicenseEvent::Unassigned { user_id: uid(1) },
        ])
        .when(cmd(assign(3)))
        .then_expect_events(vec![assigned(3)]);
    // Seats do not go below the users named.
    Fw::with(())
        .given(vec![named_user_issued(2), assigned(1), assigned(2)])
        .when(cmd(LicenseAction::ChangeSeats {
            seats: SeatCount::new(1).unwrap(),
        }))
        .then_expect_error(DomainError::SeatsBelowAssignments {
            seats: 1,
            assigned: 2,
        });
}

#[test]
fn other_models_record_assignees_without_counting_them_as_seats() {
    // The standard license is node-locked with 3 seats: a fourth user is named all the same.
    Fw::with(())
        .given(vec![issued(), assigned(1), assigned(2), assigned(3)])
        .when(cmd(assign(4)))
        .then_expect_events(vec![assigned(4)]);
}

#[test]
fn users_outside_the_organization_deactivated_users_and_revoked_licenses_are_refused() {
    let foreign = Assignee {
        lineage: vec![org(99)],
        ..assignee(1)
    };
    Fw::with(())
        .given(vec![named_user_issued(2)])
        .when(cmd(LicenseAction::Assign(foreign)))
        .then_expect_error(DomainError::AssigneeOutsideOrganization {
            user_id: uid(1),
            organization_id: org(10),
        });
    // A user of an ancestor of the license's organization is not below it either.
    let above = Assignee {
        lineage: vec![org(9)],
        ..assignee(1)
    };
    Fw::with(())
        .given(vec![named_user_issued(2)])
        .when(cmd(LicenseAction::Assign(above)))
        .then_expect_error(DomainError::AssigneeOutsideOrganization {
            user_id: uid(1),
            organization_id: org(10),
        });
    let gone = Assignee {
        deactivated: true,
        ..assignee(1)
    };
    Fw::with(())
        .given(vec![named_user_issued(2)])
        .when(cmd(LicenseAction::Assign(gone)))
        .then_expect_error(DomainError::UserDeactivated(uid(1)));
    Fw::with(())
        .given(vec![named_user_issued(2), revoked()])
        .when(cmd(assign(1)))
        .then_expect_error(DomainError::LicenseRevoked(lid()));
}

#[test]
fn the_rule_reads_the_license_organization_at_decision_time() {
    // Transferred to organization 11: a user of 11 is still below it, but one of a sibling
    // under 10 no longer is.
    let sibling = Assignee {
        lineage: vec![org(12), org(10)],
        ..assignee(2)
    };
    Fw::with(())
        .given(vec![
            named_user_issued(2),
            LicenseEvent::Transferred {
                organization_id: org(11),
            },
        ])
        .when(cmd(LicenseAction::Assign(sibling)))
        .then_expect_error(DomainError::AssigneeOutsideOrganization {
            user_id: uid(2),
            organization_id: org(11),
        });
}

#[test]
fn unassigning_a_user_not_named_is_not_found_and_works_on_a_revoked_license() {
    Fw::with(())
        .given(vec![named_user_issued(2)])
        .when(cmd(LicenseAction::Unassign { user_id: uid(1) }))
        .then_expect_error(DomainError::AssignmentNotFound(uid(1)));
    Fw::with(())
        .given(vec![named_user_issued(2), assigned(1), revoked()])
        .when(cmd(LicenseAction::Unassign { user_id: uid(1) }))
        .then_expect_events(vec![LicenseEvent::Unassigned { user_id: uid(1) }]);
}

#[test]
fn a_transfer_takes_the_former_owner_users_off_the_license() {
    let to = OrganizationRef {
        id: org(20),
        facts: Some(crate::organization::OrganizationFacts {
            kind: crate::values::OrganizationKind::Customer,
            closed: false,
            lineage: vec![org(20)],
        }),
    };
    Fw::with(())
        .given(vec![named_user_issued(2), assigned(1), assigned(2)])
        .when(cmd(LicenseAction::Transfer { organization: to }))
        .then_expect_events(vec![
            LicenseEvent::Unassigned { user_id: uid(1) },
            LicenseEvent::Unassigned { user_id: uid(2) },
            LicenseEvent::Transferred {
                organization_id: org(20),
            },
        ]);
}
