//! The write side of license-ledger: the PostgreSQL event store and the command services.
//!
//! # Layout
//! - [`store`]: append-only, hash-chained event log; one-statement appends with optimistic
//!   concurrency and unique claims.
//! - [`executor`]: load, decide, append, retry; idempotency keys.
//! - [`ledger`]: the command services the application layer calls ([`ledger::Ledger`]).
//! - [`cache`]: per-process aggregate cache (never trusted for correctness).
//! - [`locks`]: per-aggregate queues within a process.
//! - [`replays`]: tells a request's front end that its command replayed a recorded key.
//! - [`keys`]: key material from the OS CSPRNG and the keyed hash of license keys.
//! - [`clock`]: the time stamped into commands.
//! - [`db`]: connecting and migrating.
//!
//! Architecture invariant: `commands` never depends on `projections`; it only appends and reads
//! streams.

pub mod cache;
pub mod clock;
pub mod db;
pub mod executor;
pub mod keys;
pub mod ledger;
pub mod locks;
pub mod replays;
pub mod store;

pub use executor::{CommandContext, CommandError, Idempotency, Loaded, Outcome};
pub use ledger::{Ledger, LedgerError};
pub use store::EventStore;
