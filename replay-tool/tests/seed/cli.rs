//! The `ledger-replay` binary as a user runs it (issue #13): a mistyped id or instant is refused
//! before anything runs, with one line that says what was expected and exit code 2.

use tokio::process::Command;

const REPLAY: &str = env!("CARGO_BIN_EXE_ledger-replay");

/// Runs `ledger-replay` with `args`: exit code, stdout, stderr.
async fn replay(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(REPLAY)
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_mistyped_id_or_instant_is_refused_with_what_was_expected_and_exit_2() {
    // No database behind this URL: the arguments must be refused before any connection.
    let url = "postgres://nobody@127.0.0.1:1/none";
    let (code, stdout, stderr) = replay(&[
        "state",
        "--license",
        "abc",
        "--at",
        "2026-01-31T12:00:00Z",
        "--database-url",
        url,
    ])
    .await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "invalid value 'abc' for '--license <ID>': expected a license id (a UUID such as \
             0192e4a1-7b3c-7d2e-9f10-4a5b6c7d8e9f), got \"abc\""
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("invalid length"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");

    let (code, _, stderr) = replay(&[
        "state",
        "--organization",
        "0192e4a1-7b3c-7d2e-9f10-4a5b6c7d8e9f",
        "--at",
        "yesterday",
        "--database-url",
        url,
    ])
    .await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "invalid value 'yesterday' for '--at <INSTANT>': expected an RFC 3339 instant such \
             as 2026-01-31T12:00:00Z, got \"yesterday\""
        ),
        "{stderr}"
    );

    let (code, _, stderr) = replay(&[
        "export",
        "--out",
        "-",
        "--from",
        "2026-01-31",
        "--database-url",
        url,
    ])
    .await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("for '--from <INSTANT>': expected an RFC 3339 instant"),
        "{stderr}"
    );
}
