//! The `ledger-replay` binary: see [`replay_tool::cli`].

fn main() -> std::process::ExitCode {
    replay_tool::cli::main()
}
