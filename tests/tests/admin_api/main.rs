//! The administration API end to end: the real server on 127.0.0.1:0 against real PostgreSQL,
//! driven over HTTP. Every route, and every kind of bad input with its status and code — and,
//! for each refusal, that nothing was written.
//!
//! One test binary (one link) with a module per concern:
//! - `licenses`: a license's whole lifecycle over HTTP, and reading it as of an earlier instant;
//! - `catalogue`: organizations, products and policies read back, revised, retired and listed;
//! - `refusals`: malformed bodies, unknown ids and invalid transitions, each with its status and
//!   stable code, and nothing written;
//! - `tokens`: bearer tokens (missing, bad, revoked), roles, and minting tokens over the API;
//! - `requests`: request ids echoed into the events, and idempotency keys on a retried issue;
//! - `lists`: every list's filters, cursors and pagination, and its refusals of bad parameters;
//! - `idempotency`: `Idempotency-Key` replays byte for byte, refusals, scopes, 100 racing retries;
//! - `limits`: body size and rate limits, and the health and readiness probes;
//! - `support`: the small helpers the modules share.

mod catalogue;
mod idempotency;
mod licenses;
mod limits;
mod lists;
mod organizations;
mod refusals;
mod requests;
mod support;
mod tokens;
