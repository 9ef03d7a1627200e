//! Audit and time travel, end to end (issue #4): the real server on loopback, real PostgreSQL,
//! real signatures, and `ledger-replay` as a library and as a process.
//!
//! - as-of: `GET /v1/licenses/{id}` snapshotted at 100 instants during a scenario equals the
//!   as-of read of each instant afterwards, through the API and through `ledger-replay state`;
//! - replay equivalence: every read model rebuilt (shadow tables + swap) while the server serves
//!   equals what the live projectors produced, and the server keeps serving;
//! - tamper detection: a payload byte changed, an event deleted, two events swapped, a stream's
//!   middle rewritten with a recomputed chain: `verify` fails naming the event, every time; the
//!   untouched log verifies clean; the same through an export verified with the JWKS alone;
//! - crash: `kill -9` a rebuild midway; the live read models are untouched and a rerun completes.
//!
//! One test binary (one link) with a module per concern:
//! - `as_of`: the 100-instant scenario read back as of each instant, then every read model
//!   rebuilt on its log and compared; and as-of state across a schema change (upcasting);
//! - `trail`: the audit trail's filters and pages, and the signed checkpoints served;
//! - `tamper`: `verify` and `verify-export` against tampered copies of one log;
//! - `killed_rebuild`: `kill -9` of a rebuild midway, then a rerun;
//! - `support`: the `ledger-replay` binary and the helpers the modules share.

mod as_of;
mod killed_rebuild;
mod support;
mod tamper;
mod trail;
