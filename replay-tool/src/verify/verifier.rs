//! The three checks of the module documentation of [`super`], over records from any source:
//! checkpoints when the [`Verifier`] is made, then chains and coverage event by event.

use std::collections::HashMap;

use client::jwks::Jwks;
use domain::integrity::{CheckpointStatement, GENESIS_HASH, LogAccumulator, chain_hash};
use p256::ecdsa::Signature;
use p256::ecdsa::signature::Verifier as _;

use super::records::{CheckpointRecord, EventRecord, Failure, Summary};

/// Whether the source holds the whole log (the database, a full export) or a time window of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coverage {
    /// Every event, in commit order: completeness against the checkpoints is checked.
    Complete,
    /// A window (`export --from/--to`): each event present is checked against the chain and the
    /// signed leaves, but events outside the window cannot be, so nothing is said of completeness.
    Partial,
}

/// Checks events one by one, in commit order; see the module documentation.
pub struct Verifier {
    coverage: Coverage,
    /// Every signed leaf in commit order: `(position, event hash)`.
    leaves: Vec<(i64, [u8; 32])>,
    /// For each checkpoint, the leaf count it ends at and its id (to name it in failures).
    ends: Vec<(usize, i64)>,
    /// Partial coverage: `(position, hash, leaf index)` sorted by position, for lookups.
    by_position: Vec<(i64, [u8; 32], usize)>,
    /// Events checked against a signed leaf.
    signed_seen: u64,
    next_leaf: usize,
    /// `Type/id` -> (last sequence, last hash).
    streams: HashMap<String, (i64, [u8; 32])>,
    events: u64,
    checkpoints: u64,
    last_checkpoint_position: i64,
}

impl Verifier {
    /// Checks the checkpoints (check 1) and prepares for the events.
    ///
    /// # Errors
    /// The first checkpoint that is malformed, out of order, inconsistent with its predecessors'
    /// leaves, or not signed by a key of `keys`. `keys` may be `None` only when there is no
    /// checkpoint.
    pub fn new(
        keys: Option<&Jwks>,
        checkpoints: &[CheckpointRecord],
        coverage: Coverage,
    ) -> Result<Self, Failure> {
        let mut accumulator = LogAccumulator::default();
        let mut leaves = Vec::new();
        let mut ends = Vec::with_capacity(checkpoints.len());
        let mut sorted: Vec<&CheckpointRecord> = checkpoints.iter().collect();
        sorted.sort_by_key(|c| c.event_count);
        for c in sorted {
            let fail = |problem: String| Failure::at_checkpoint(c.checkpoint_id, problem);
            if c.leaves.len() % 40 != 0 || c.leaves.is_empty() {
                return Err(fail(format!(
                    "its leaves are {} bytes, not a positive multiple of 40",
                    c.leaves.len()
                )));
            }
            for leaf in c.leaves.chunks_exact(40) {
                let mut position = [0u8; 8];
                position.copy_from_slice(&leaf[..8]);
                let position = i64::from_be_bytes(position);
                let mut hash = [0u8; 32];
                hash.copy_from_slice(&leaf[8..]);
                accumulator.push(position, &hash);
                leaves.push((position, hash));
            }
            if i64::try_from(accumulator.count) != Ok(c.event_count) {
                return Err(fail(format!(
                    "it claims {} events but the checkpoints up to it hold {} leaves",
                    c.event_count, accumulator.count
                )));
            }
            if leaves.last().map(|(p, _)| *p) != Some(c.global_position) {
                return Err(fail(format!(
                    "its last leaf is not its boundary position {}",
                    c.global_position
                )));
            }
            let root = accumulator.root();
            if c.root.as_slice() != root.as_slice() {
                return Err(fail(format!(
                    "its root {} is not the root of its leaves {}",
                    hex::encode(&c.root),
                    hex::encode(root)
                )));
            }
            let Some(keys) = keys else {
                return Err(fail(
                    "checkpoint signatures need the public keys: pass --jwks FILE (the server's \
                     `ledger keys jwks --all`)"
                        .to_owned(),
                ));
            };
            let Some(key) = keys.key(&c.kid) else {
                return Err(fail(format!(
                    "it is signed by key {}, which is not in the JWKS given",
                    c.kid
                )));
            };
            let statement = CheckpointStatement {
                event_count: accumulator.count,
                tx_id: c.tx_id,
                global_position: c.global_position,
                root,
                signed_at: c.signed_at,
            };
            let valid = Signature::from_slice(&c.signature)
                .is_ok_and(|s| key.verify(&statement.signing_bytes(), &s).is_ok());
            if !valid {
                return Err(fail(format!(
                    "its signature by key {} does not verify",
                    c.kid
                )));
            }
            ends.push((leaves.len(), c.checkpoint_id));
        }
        let by_position = if coverage == Coverage::Partial {
            let mut sorted: Vec<_> = leaves
                .iter()
                .enumerate()
                .map(|(index, (position, hash))| (*position, *hash, index))
                .collect();
            sorted.sort_by_key(|(p, _, _)| *p);
            sorted
        } else {
            Vec::new()
        };
        Ok(Self {
            coverage,
            last_checkpoint_position: leaves.last().map_or(0, |(p, _)| *p),
            checkpoints: ends.len() as u64,
            leaves,
            ends,
            by_position,
            signed_seen: 0,
            next_leaf: 0,
            streams: HashMap::new(),
            events: 0,
        })
    }

    /// The checkpoint that signed leaf `index`.
    fn checkpoint_of(&self, index: usize) -> i64 {
        let at = self.ends.partition_point(|(end, _)| *end <= index);
        self.ends.get(at).map_or(0, |(_, id)| *id)
    }

    /// Checks the next event in commit order (checks 2 and 3).
    ///
    /// # Errors
    /// The first problem found, naming the event.
    pub fn event(&mut self, e: &EventRecord) -> Result<(), Failure> {
        self.events += 1;
        // Check 3 first for positions: when an event is missing, the event found in its place is
        // not the one to blame.
        let stored: [u8; 32] = e.hash.as_slice().try_into().map_err(|_| {
            Failure::at_event(
                e,
                format!("its stored hash is {} bytes, not 32", e.hash.len()),
            )
        })?;
        let signed = match self.coverage {
            Coverage::Complete => match self.leaves.get(self.next_leaf) {
                Some(&(position, hash)) => {
                    let checkpoint = self.checkpoint_of(self.next_leaf);
                    if position != e.position {
                        return Err(Failure::at_position(
                            position,
                            checkpoint,
                            format!(
                                "checkpoint {checkpoint} signed this event as number {} of the log, \
                                 but the log holds the event at position {} there: it was removed or moved",
                                self.next_leaf + 1,
                                e.position
                            ),
                        ));
                    }
                    self.next_leaf += 1;
                    Some((hash, checkpoint))
                }
                None => None,
            },
            Coverage::Partial => self
                .by_position
                .binary_search_by_key(&e.position, |(p, _, _)| *p)
                .ok()
                .map(|i| {
                    let (_, hash, index) = self.by_position[i];
                    (hash, self.checkpoint_of(index))
                }),
        };

        // Check 2: sequence and chain.
        let key = format!("{}/{}", e.aggregate_type, e.aggregate_id);
        let previous = match self.streams.get(&key) {
            Some(&(sequence, hash)) => {
                if e.sequence != sequence + 1 {
                    return Err(Failure::at_event(
                        e,
                        format!(
                            "its stream jumps from sequence {sequence} to {}: events are missing or reordered",
                            e.sequence
                        ),
                    ));
                }
                hash
            }
            None => match (self.coverage, e.previous_hash) {
                (Coverage::Partial, Some(previous)) if e.sequence > 1 => previous,
                _ if e.sequence == 1 => GENESIS_HASH,
                _ => {
                    return Err(Failure::at_event(
                        e,
                        format!(
                            "its stream starts at sequence {} instead of 1: earlier events are missing",
                            e.sequence
                        ),
                    ));
                }
            },
        };
        let computed = chain_hash(&previous, &e.fields());
        if computed != stored {
            return Err(Failure::at_event(
                e,
                "its content does not match its hash: it was altered after it was written \
                 (or an event before it in its stream was)"
                    .to_owned(),
            ));
        }
        if let Some((hash, checkpoint)) = signed
            && hash != stored
        {
            return Err(Failure::at_event(
                e,
                format!(
                    "it is not the event checkpoint {checkpoint} signed at this position: \
                     its stream was rewritten from here on"
                ),
            ));
        }
        if signed.is_some() {
            self.signed_seen += 1;
        }
        self.streams.insert(key, (e.sequence, stored));
        Ok(())
    }

    /// Ends the walk.
    ///
    /// # Errors
    /// With complete coverage, when signed events were never seen (removed from the end).
    pub fn finish(self) -> Result<Summary, Failure> {
        if self.coverage == Coverage::Complete
            && let Some(&(position, _)) = self.leaves.get(self.next_leaf)
        {
            let checkpoint = self.checkpoint_of(self.next_leaf);
            return Err(Failure::at_position(
                position,
                checkpoint,
                format!(
                    "checkpoint {checkpoint} signed this event as number {} of the log, but the log \
                     ends before it: it was removed",
                    self.next_leaf + 1
                ),
            ));
        }
        let under = self.signed_seen;
        Ok(Summary {
            events: self.events,
            streams: self.streams.len() as u64,
            checkpoints: self.checkpoints,
            events_under_checkpoints: under,
            events_after_last_checkpoint: self.events.saturating_sub(under),
            last_checkpoint_position: self.last_checkpoint_position,
        })
    }
}
