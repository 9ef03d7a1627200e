//! The application layer of license-ledger: the use cases every front end calls — the HTTP API
//! (`api`), the replay tool (`replay-tool`) and the benchmarks (`bench`) — the views they answer
//! with, and the server's background jobs. It composes the write side (`commands`) and the read
//! side (`projections`), which never depend on each other, and knows no HTTP: a front end
//! extracts a request, calls one function here, and renders what it returns.
//!
//! # Layout
//! - [`app`]: [`App`], the ledger opened for serving (database, secrets, validation model,
//!   signing keys), and [`AppConfig`].
//! - [`jobs`]: [`jobs::Jobs::start`], the one place every background job starts (the intake's
//!   writers carry requests, not jobs: [`App`] starts them with the first webhook).
//! - [`licenses`]: every License command, each showing its result to validation at once.
//! - [`catalogue`]: organizations, products, policies; [`operations`]: administration tokens,
//!   audit, checkpoints, readiness.
//! - [`releases`]: releases, uploads, upgrade paths; [`artifacts`]: the artifact store
//!   (content-addressed files, staged while hashed, swept at start-up); [`downloads`]: signed
//!   download links, checked again when used.
//! - [`edge`]: the key-to-license check of every client route; [`validate`]: the validation
//!   answer.
//! - [`asof`]: licenses and organizations as of an instant (the API and `ledger-replay state`).
//! - [`tokens`]: the claims of offline tokens and receipts, the SDK's own types;
//!   [`signing`]: the keystore and JWKS; [`checkpoints`]: the checkpoint signer.
//! - [`lists`]: paging every list alike, with opaque cursors bound to their list and filters.
//! - [`billing`]: Stripe webhooks in, the inbox's consumer; [`intake`]: the inbox's group
//!   commit.
//! - [`idempotency`]: the stored answers of writes sent with an `Idempotency-Key`, encrypted.
//! - [`views`]: response bodies; [`error`]: [`AppError`]; [`datadir`]: secrets on disk.
//!
//! Architecture invariant: `application` knows no HTTP (no `axum`, no status codes); `api`,
//! `replay-tool` and `bench` reach the ledger through it.

pub mod access;
pub mod app;
pub mod args;
pub mod artifacts;
pub mod asof;
pub mod billing;
pub mod catalogue;
pub mod checkpoints;
pub mod datadir;
pub mod downloads;
pub mod edge;
pub mod error;
pub mod idempotency;
pub mod intake;
pub mod jobs;
pub mod licenses;
pub mod lists;
pub mod oidc;
pub mod operations;
pub mod portal;
pub mod releases;
pub mod sessions;
pub mod signing;
pub mod tokens;
pub mod usage;
pub mod users;
pub mod validate;
pub mod views;

pub use app::{App, AppConfig};
pub use error::AppError;
