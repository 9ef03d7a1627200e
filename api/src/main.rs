//! `ledger`: see [`api::cli`].

fn main() -> std::process::ExitCode {
    api::cli::main()
}
