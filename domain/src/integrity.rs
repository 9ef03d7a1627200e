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

/// Domain-separation prefixes of the log's Merkle tree.
const LEAF: u8 = 0x00;
const NODE: u8 = 0x01;

/// The leaf of an event in the log's Merkle tree: binds its position and its chained hash, so an
/// event moved, removed, inserted or rewritten changes the root.
pub fn log_leaf(global_position: i64, event_hash: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([LEAF]);
    h.update(global_position.to_be_bytes());
    h.update(event_hash);
    h.finalize().into()
}

fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([NODE]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// An append-only Merkle accumulator (a Merkle mountain range) over the log in commit order: each
/// event adds a leaf in O(log n), and [`LogAccumulator::root`] commits to every leaf so far.
/// Checkpoints sign its root; its state is small enough to store with each checkpoint so the next
/// one continues where it stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogAccumulator {
    /// Number of leaves.
    pub count: u64,
    /// Roots of the perfect subtrees, from the largest (oldest) to the smallest, with heights.
    peaks: Vec<(u32, [u8; 32])>,
}

impl LogAccumulator {
    /// Adds the next event.
    pub fn push(&mut self, global_position: i64, event_hash: &[u8]) {
        let mut height = 0;
        let mut hash = log_leaf(global_position, event_hash);
        while let Some((h, left)) = self.peaks.last().copied() {
            if h != height {
                break;
            }
            self.peaks.pop();
            hash = node(&left, &hash);
            height += 1;
        }
        self.peaks.push((height, hash));
        self.count += 1;
    }

    /// The root over every leaf so far (the peaks bagged from the right); 32 zero bytes when empty.
    pub fn root(&self) -> [u8; 32] {
        let mut peaks = self.peaks.iter().rev();
        let Some((_, last)) = peaks.next() else {
            return [0; 32];
        };
        peaks.fold(*last, |acc, (_, peak)| node(peak, &acc))
    }
}

/// What a checkpoint's signature covers: the accumulator's state after the log up to and including
/// the event `(tx_id, global_position)` in commit order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointStatement {
    pub event_count: u64,
    pub tx_id: i64,
    pub global_position: i64,
    pub root: [u8; 32],
    pub signed_at: Timestamp,
}

impl CheckpointStatement {
    /// The bytes signed (ES256) by the server's key.
    pub fn signing_bytes(&self) -> Vec<u8> {
        format!(
            "ledger-checkpoint/1\n{}\n{}\n{}\n{}\n{}",
            self.event_count,
            self.tx_id,
            self.global_position,
            hex::encode(self.root),
            self.signed_at.timestamp_micros()
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod accumulator_tests {
    use super::*;

    /// The root of a plain recursive Merkle tree over the same leaves, split at the largest power
    /// of two (what the mountain range must agree with, bagged the same way).
    fn reference(leaves: &[[u8; 32]]) -> [u8; 32] {
        // Peaks: perfect trees of decreasing size, left to right.
        let mut peaks = Vec::new();
        let mut rest = leaves;
        while !rest.is_empty() {
            let size = 1usize << (usize::BITS - 1 - rest.len().leading_zeros());
            peaks.push(perfect(&rest[..size]));
            rest = &rest[size..];
        }
        let mut it = peaks.iter().rev();
        let Some(last) = it.next() else {
            return [0; 32];
        };
        it.fold(*last, |acc, p| node(p, &acc))
    }

    fn perfect(leaves: &[[u8; 32]]) -> [u8; 32] {
        if leaves.len() == 1 {
            return leaves[0];
        }
        let (l, r) = leaves.split_at(leaves.len() / 2);
        node(&perfect(l), &perfect(r))
    }

    #[test]
    fn the_accumulator_matches_a_plain_merkle_tree_at_every_size() {
        let mut acc = LogAccumulator::default();
        let mut leaves = Vec::new();
        for i in 0..70i64 {
            let hash = [i as u8; 32];
            acc.push(i + 1, &hash);
            leaves.push(log_leaf(i + 1, &hash));
            assert_eq!(acc.root(), reference(&leaves), "after {} leaves", i + 1);
            assert_eq!(acc.count, i as u64 + 1);
        }
        let json = serde_json::to_string(&acc).unwrap();
        assert_eq!(serde_json::from_str::<LogAccumulator>(&json).unwrap(), acc);
    }

    #[test]
    fn any_change_to_any_leaf_changes_the_root() {
        let build = |edit: Option<usize>| {
            let mut acc = LogAccumulator::default();
            for i in 0..33usize {
                let mut hash = [i as u8; 32];
                if edit == Some(i) {
                    hash[0] ^= 1;
                }
                acc.push(i as i64, &hash);
            }
            acc.root()
        };
        let clean = build(None);
        for i in 0..33 {
            assert_ne!(build(Some(i)), clean, "leaf {i}");
        }
        let mut moved = LogAccumulator::default();
        for i in 0..33usize {
            moved.push(if i == 5 { 99 } else { i as i64 }, &[i as u8; 32]);
        }
        assert_ne!(moved.root(), clean, "a moved position changes the root");
    }
}
