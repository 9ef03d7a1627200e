//! The stored event contract of a license: old versions still read, through the upcaster, and
//! versions from the future are refused.

use cqrs_es::DomainEvent;

use super::*;

#[test]
fn a_version_1_revocation_reads_as_unspecified_through_the_upcaster() {
    let v1 = serde_json::json!({"reason": "contract terminated"});
    let event: LicenseEvent = crate::event::decode_payload("LicenseRevoked", "1", v1).unwrap();
    assert_eq!(
        event,
        LicenseEvent::Revoked {
            reason: reason("contract terminated"),
            category: RevocationCategory::Unspecified,
        }
    );
    assert_eq!(
        event.event_version(),
        "2",
        "written anew, it would be version 2"
    );
    let unknown =
        crate::event::decode_payload::<LicenseEvent>("LicenseRevoked", "3", serde_json::json!({}));
    assert!(
        unknown.is_err(),
        "a version from the future is refused, not guessed"
    );
}
