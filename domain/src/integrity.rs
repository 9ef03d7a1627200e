//! Tamper evidence: the canonical bytes of an event and the per-stream hash chain.
//!
//! `hash(event) = sha256(hash(previous event in its stream) || canonical(event))`, with 32 zero
//! bytes before the first event. The database computes it on insert (migration 0001, trigger
//! `events_before_insert`); this module computes the same bytes independently so a verifier does
//! not have to trust functions stored in the database it is checking.
//!
//! The canonical bytes are UTF-8 lines joined by `\n`:
//! `ledger-event/1`, event id (hyphenated, lower case), global position, aggregate type,
//! aggregate id, sequence, event type, event version, `recorded_at` as integer microseconds since
//! the Unix epoch, then the payload and the metadata exactly as stored (`json` columns keep the
//! writer's bytes).

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::Timestamp;

/// The hash that precedes the first event of every stream.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// The fields an event's hash covers, as stored.
#[derive(Clone, Copy, Debug)]
pub struct CanonicalFields<'a> {
    pub event_id: Uuid,
    pub global_position: i64,
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub sequence: i64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub recorded_at: Timestamp,
    /// The payload exactly as stored (`payload::text`).
    pub payload_text: &'a str,
    /// The metadata exactly as stored (`metadata::text`).
    pub metadata_text: &'a str,
}

/// The canonical bytes of an event, identical to what the insert trigger hashes.
pub fn canonical_event(f: &CanonicalFields<'_>) -> Vec<u8> {
    let recorded_at = f.recorded_at.timestamp_micros();
    format!(
        "ledger-event/1\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
        f.event_id.hyphenated(),
        f.global_position,
        f.aggregate_type,
        f.aggregate_id,
        f.sequence,
        f.event_type,
        f.event_version,
        recorded_at,
        f.payload_text,
        f.metadata_text,
    )
    .into_bytes()
}

/// The chained hash of an event given the hash of the event before it in its stream.
pub fn chain_hash(previous: &[u8; 32], fields: &CanonicalFields<'_>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(canonical_event(fields));
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn fields() -> CanonicalFields<'static> {
        CanonicalFields {
            event_id: Uuid::parse_str("0193a0b2-7c4e-7d2a-9f00-000000000001").unwrap(),
            global_position: 42,
            aggregate_type: "License",
            aggregate_id: "0193a0b2-7c4e-7d2a-9f00-0000000000aa",
            sequence: 3,
            event_type: "LicenseSuspended",
            event_version: "1",
            recorded_at: chrono::Utc
                .with_ymd_and_hms(2026, 3, 1, 10, 0, 0)
                .unwrap()
                .checked_add_signed(chrono::Duration::microseconds(7))
                .unwrap(),
            payload_text: r#"{"reason": "chargeback"}"#,
            metadata_text: r#"{"actor": "system", "correlation_id": "r1"}"#,
        }
    }

    #[test]
    fn canonical_bytes_have_the_documented_layout() {
        let text = String::from_utf8(canonical_event(&fields())).unwrap();
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines[0], "ledger-event/1");
        assert_eq!(lines[8], "1772359200000007");
        assert_eq!(lines.len(), 11);
    }

    #[test]
    fn any_change_to_a_covered_field_or_the_chain_changes_the_hash() {
        let base = chain_hash(&GENESIS_HASH, &fields());
        let mut moved = fields();
        moved.global_position = 43;
        assert_ne!(chain_hash(&GENESIS_HASH, &moved), base);
        let mut edited = fields();
        edited.payload_text = r#"{"reason": "chargebacK"}"#;
        assert_ne!(chain_hash(&GENESIS_HASH, &edited), base);
        assert_ne!(chain_hash(&[1; 32], &fields()), base);
    }
}
