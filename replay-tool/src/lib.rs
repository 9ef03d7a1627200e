//! `ledger-replay`: the auditor's and support's tool. The binary (`src/main.rs`) is a thin shell
//! over [`cli::main`], so end-to-end tests can run the same entry point under their own binary
//! and kill it mid-run.
//!
//! # Layout
//! - [`cli`]: the command line (API.md, "Audit and time travel") and exit codes.
//! - [`rebuild`]: replaying read models into shadow tables and swapping them in.
//! - [`state`]: a license or an organization as of an instant.
//! - [`verify`]: the integrity checks shared by `verify` (database) and `verify-export` (file).
//! - [`export`]: JSON Lines export of the log and its checkpoints.
//! - [`seed`]: a realistic synthetic history for benchmarks.
//! - [`progress`]: progress reporting (a bar on a terminal, plain lines otherwise).

pub mod cli;
pub mod export;
pub mod progress;
pub mod rebuild;
pub mod seed;
pub mod state;
pub mod verify;
