//! The `ledger` binary as a user runs it: a mistyped argument is refused before anything runs,
//! with one line that says what was expected, and exit code 2 (clap's usage error). Needs no
//! database: the arguments are refused first.

use std::process::Command;

const LEDGER: &str = env!("CARGO_BIN_EXE_ledger");

#[test]
fn a_mistyped_token_id_is_refused_with_what_was_expected_and_exit_2() {
    let out = Command::new(LEDGER)
        .args([
            "token",
            "revoke",
            "abc",
            "--database-url",
            "postgres://nowhere/none",
        ])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "invalid value 'abc' for '<ID>': expected an API token id (a UUID such as \
             0192e4a1-7b3c-7d2e-9f10-4a5b6c7d8e9f), got \"abc\""
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("invalid length"), "{stderr}");
    assert!(out.stdout.is_empty());
}
