//! `ledger-replay` under this package's name, so end-to-end tests can run and kill it.

fn main() -> std::process::ExitCode {
    replay_tool::cli::main()
}
