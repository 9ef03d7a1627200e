//! The `ledger` binary, for the crash tests of this package: same entry point, same code.

fn main() -> std::process::ExitCode {
    api::cli::main()
}
