//! Integrity verification of the log, shared by `ledger-replay verify` (reading the database) and
//! `verify-export` (reading an export file, no database).
//!
//! Three independent checks, none of which trusts anything stored in the database it checks:
//!
//! 1. **Checkpoints**: replaying every checkpoint's leaves, in order, through a fresh
//!    [`LogAccumulator`] must give each checkpoint's event count and root, and each statement must
//!    carry a valid ES256 signature by a key of the auditor's JWKS. A forged or edited checkpoint
//!    fails here.
//! 2. **Hash chains**: every event's hash is recomputed from its content and the hash of the event
//!    before it in its stream ([`chain_hash`]); sequences must run 1, 2, 3... without gaps. An edited
//!    byte, a moved or swapped event, or a removed middle event fails here.
//! 3. **Coverage**: walking the log in commit order, the n-th event must be the n-th leaf the
//!    checkpoints signed (same position, same hash) for as far as the checkpoints reach, so a
//!    stream rewritten with a consistently recomputed chain, or an event removed from the end of a
//!    stream, still fails. Events after the last checkpoint are covered by check 2 only; the
//!    server signs a checkpoint every N events or T seconds to keep that window short.
//!
//! The first failure is reported with the event it concerns (position, stream, sequence, id).
//!
//! # Layout
//! - `records`: what is checked ([`EventRecord`], [`CheckpointRecord`]) and what a check says
//!   ([`Failure`], [`Summary`]).
//! - `verifier`: the checks themselves ([`Verifier`]), source-independent.
//! - `database`: reading events and checkpoints from the database, and the walk of
//!   [`verify_database`].
//!
//! [`LogAccumulator`]: domain::integrity::LogAccumulator
//! [`chain_hash`]: domain::integrity::chain_hash

mod database;
mod records;
mod verifier;

pub use database::{
    EVENT_TEXT_COLUMNS, append_only_guards, event_record, load_checkpoints, verify_database,
};
pub use records::{CheckpointRecord, EventRecord, Failure, Summary};
pub use verifier::{Coverage, Verifier};
