//! `ledger-replay`: the auditor's and support's tool (rebuild, state at an instant, verify,
//! export). Its subcommands are the contract of API.md; their implementation is issue #4. Until
//! then every subcommand says so and exits non-zero, so no script mistakes it for success.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Replay, inspect and verify the license-ledger event log.
#[derive(Debug, Parser)]
#[command(name = "ledger-replay", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Rebuild read models from the log.
    Rebuild,
    /// The state of a license or organization at an instant.
    State,
    /// Walk the whole log: hash chains, checkpoints, append-only.
    Verify,
    /// Export events with hashes and checkpoints as JSON Lines.
    Export,
    /// Verify an export offline with the public keys.
    VerifyExport,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    eprintln!(
        "error: `ledger-replay {:?}` is not available in this build yet (issue #4)",
        cli.command
    );
    ExitCode::from(2)
}
