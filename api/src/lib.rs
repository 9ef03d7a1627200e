//! The HTTP face of license-ledger and the `ledger` binary. The only crate that knows HTTP.
//!
//! # Layout
//! - [`server`]: the router and its layers ([`server::app`]), and starting/stopping the whole
//!   server ([`server::start`], [`server::serve`]).
//! - [`routes`]: handlers, one module per audience (administration, client applications,
//!   air-gapped files, health).
//! - [`signing`]: offline-token signing keys and the JWKS.
//! - [`checkpoints`]: signed checkpoints of the log.
//! - [`extract`]: body, path and command extractors answering problem+json that names the field.
//! - [`auth`]: bearer tokens and role permissions.
//! - [`error`]: [`error::ApiError`], the single mapping of every failure to a status and code.
//! - [`views`]: response bodies.
//! - [`timetravel`]: licenses as of an instant (shared with `ledger-replay state`).
//! - [`limits`], [`request_id`]: rate limit, deadline, request ids.
//! - [`datadir`]: the server's secrets on disk.
//! - [`cli`]: `ledger serve | migrate | token`.

pub mod auth;
pub mod checkpoints;
pub mod cli;
pub mod datadir;
pub mod error;
pub mod extract;
pub mod limits;
pub mod request_id;
pub mod routes;
pub mod server;
pub mod signing;
pub mod state;
pub mod timetravel;
pub mod views;
