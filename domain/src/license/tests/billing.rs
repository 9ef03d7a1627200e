//! Billing facts mirrored from the payment gateway, and what they do to status and validation.

use chrono::Duration;

use super::*;
use crate::validation::{self, ValidationCode};

#[test]
fn billing_facts_drive_status_and_validation() {
    use crate::status::{LicenseStatus, status_at};
    let fold = |events: Vec<LicenseEvent>| {
        let mut l = License::default();
        for e in events {
            l.fold(e);
        }
        l.state().unwrap().clone()
    };
    let grace = fold(vec![
        issued(),
        LicenseEvent::PaymentFailed {
            grace_until: now() + Duration::days(3),
        },
    ]);
    assert_eq!(status_at(&grace, now()), LicenseStatus::PastDue);
    assert!(validation::decide(&grace, now(), None, &[]).valid());
    assert_eq!(
        validation::decide(&grace, now() + Duration::days(3), None, &[]).code,
        ValidationCode::Overdue
    );
    let recovered = fold(vec![
        issued(),
        LicenseEvent::PaymentFailed { grace_until: now() },
        LicenseEvent::PaymentRecovered {},
    ]);
    assert_eq!(status_at(&recovered, now()), LicenseStatus::Active);
    let paused = fold(vec![issued(), LicenseEvent::SubscriptionPaused {}]);
    assert_eq!(
        validation::decide(&paused, now(), None, &[]).code,
        ValidationCode::Paused
    );
    let resumed = fold(vec![
        issued(),
        LicenseEvent::SubscriptionPaused {},
        LicenseEvent::SubscriptionResumed {},
    ]);
    assert!(validation::decide(&resumed, now(), None, &[]).valid());
    let period_end = now() + Duration::days(10);
    let canceled = fold(vec![
        issued(),
        LicenseEvent::CancellationScheduled { at: period_end },
        LicenseEvent::SubscriptionCanceled {},
    ]);
    assert_eq!(status_at(&canceled, now()), LicenseStatus::Active);
    assert!(validation::decide(&canceled, now(), None, &[]).valid());
    assert_eq!(status_at(&canceled, period_end), LicenseStatus::Canceled);
    assert_eq!(
        validation::decide(&canceled, period_end, None, &[]).code,
        ValidationCode::Revoked
    );
}
