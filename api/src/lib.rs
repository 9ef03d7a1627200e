//! The HTTP face of license-ledger and the `ledger` binary. The only crate that knows HTTP: a
//! handler extracts the request, calls one use case of the application layer (`application`),
//! and renders the answer.
//!
//! # Layout
//! - [`server`]: the router and its layers ([`server::app_router`]), and starting/stopping the
//!   whole server ([`server::start`], [`server::serve`]).
//! - [`routes`]: handlers, one module per resource (organizations, products, policies, licenses,
//!   tokens, operations), the client applications' routes, air-gapped files, health.
//! - [`extract`]: body, path and command extractors answering problem+json that names the field.
//! - [`auth`]: bearer tokens and role permissions.
//! - [`error`]: [`error::ApiError`], the single mapping of every failure to a status and code.
//! - [`limits`], [`request_id`]: rate limits (per token, per address) with their headers,
//!   deadline, request ids.
//! - [`metrics`]: `GET /metrics` (Prometheus text) and the request counters and timings.
//! - [`listener`]: the accept loop: header-read and idle timeouts, the per-address connection
//!   cap, backoff on failed accepts, graceful shutdown.
//! - [`state`]: what handlers reach: the `application::App` and the HTTP settings.
//! - [`openapi`]: the OpenAPI document (`/v1/openapi.json`) and the reference page (`/docs`),
//!   built from the same registration table as the router ([`server::route_table`]).
//! - [`cli`]: `ledger serve | migrate | token | keys | billing | releases`.
//! - [`publish`]: `ledger releases publish`, a release pipeline's HTTP client of the server.

pub mod auth;
pub mod cli;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod openapi;
pub mod publish;
pub mod request_id;
pub mod routes;
pub mod server;
pub mod state;
pub mod ui;
