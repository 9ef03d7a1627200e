//! `ledger-replay`: the auditor's and support's tool. The binary (`src/main.rs`) is a thin shell
//! over [`cli::main`], so end-to-end tests can run the same entry point under their own binary
//! and kill it mid-run.
//!
//! # Layout
//! - [`cli`]: the command line (`docs/api.md`, "Audit and time travel") and exit codes.
//! - [`rebuild`]: replaying read models into shadow tables and swapping them in.
//! - [`state`]: a license or an organization as of an instant.
//! - [`verify`]: the integrity checks shared by `verify` (database) and `verify-export` (file).
//! - [`export`]: JSON Lines export of the log and its checkpoints.
//! - [`seed`]: a realistic synthetic history for benchmarks.
//! - [`progress`]: progress reporting (a bar on a terminal, plain lines otherwise).
//! - [`without_huge_pages`]: how the tool asks the kernel for its memory.

pub mod cli;
pub mod export;
pub mod progress;
pub mod rebuild;
pub mod seed;
pub mod state;
pub mod verify;

/// Turns transparent huge pages off for this process (Linux; elsewhere it does nothing), as
/// `ledger-replay` does before anything else.
///
/// Why: mimalloc asks for huge pages (`MADV_HUGEPAGE`) and hands freed memory back to the kernel
/// a second later. A rebuild allocates and frees hundreds of MB as it walks the log, so each
/// page it touches again is faulted in anew, and the kernel zeroes 2 MB for each fault in a huge
/// page however little of it is used: 6% of a whole rebuild's CPU time went to that zeroing
/// (perf, 2026-11-24; ADR 0010). With 4 KB pages the same walk costs about 0.6 CPU-s less.
/// The server keeps huge pages: its memory is long-lived, not churned.
///
/// # Errors
/// When the kernel refuses (the tool then runs as before; callers only log it).
pub fn without_huge_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    rustix::thread::disable_transparent_huge_pages(true)?;
    Ok(())
}
