//! The client-application API end to end: validation with App GUID enforcement, freshness of the
//! in-memory model, activations and seat limits under 100 parallel requests, floating leases and
//! their expiry, offline tokens verified by a standard JWT library, key rotation, and air-gapped
//! request files.
//!
//! One test binary (one link) with a module per concern:
//! - `validation`: decisions, App GUID enforcement, and how fast a change becomes visible;
//! - `activations`: activating, deactivating and seat limits, also under 100 parallel requests;
//! - `leases`: floating leases renewed by heartbeats and expiring by themselves;
//! - `offline_tokens`: tokens verified by `jsonwebtoken`, key rotation and retirement, refusals;
//! - `air_gapped`: activation and deactivation by request and response files;
//! - `idempotency`: `Idempotency-Key` replays on every client write, scopes per license key;
//! - `timing`: NOT_FOUND and APP_MISMATCH cost the same time;
//! - `support`: the helpers the modules share.

mod activations;
mod air_gapped;
mod idempotency;
mod leases;
mod offline_tokens;
mod support;
mod timing;
mod validation;
