//! The `ledger-replay` binary as a user runs it (issue #13): a mistyped id or instant is refused
//! before anything runs, with one line that says what was expected and exit code 2; a rebuild
//! whose stderr is not a terminal reports its progress in plain lines and ends them with the very
//! figures (events, seconds, rate) its summary prints on stdout; a database that refuses
//! connections is one line, each cause once, without the password.

use replay_tool::seed::SeedOptions;
use tokio::process::Command;

use crate::{seed_into, with_db};

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
async fn a_database_that_refuses_connections_is_one_line_without_the_password() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let url = "postgres://auditor:hunter2-secret@127.0.0.1:1/ledger";
    for args in [
        &["verify", "--database-url", url][..],
        &["rebuild", "--all", "--database-url", url][..],
    ] {
        let (code, stdout, stderr) = replay(args).await;
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{args:?}: {stderr}");
        // Each cause once: sqlx's error quotes the OS error, and ours quoted sqlx's.
        let refused = stderr.to_lowercase().matches("refused").count();
        assert_eq!(refused, 1, "{args:?}: {stderr}");
    }
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

/// The figures at the end of a line: `… 2000 events in 0.4 s (5000 events/s)`.
fn figures(line: &str) -> &str {
    let at = line
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or_else(|| panic!("no figures in {line:?}"));
    &line[at..]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_reports_one_rate_on_stderr_and_stdout() {
    with_db(|url| async move {
        let options = SeedOptions {
            licenses: 200,
            events: 2_000,
            long_license_events: 50,
            organizations: 10,
        };
        seed_into(&url, &options).await;
        let (code, stdout, stderr) = replay(&["rebuild", "--all", "--database-url", &url]).await;
        assert_eq!(code, Some(0), "{stderr}");

        // stderr is a pipe here: plain progress lines, one per phase, then the final figures.
        for phase in ["reading the log", "swapping in"] {
            assert!(stderr.contains(&format!("rebuild: {phase}\n")), "{stderr}");
        }
        let last = stderr
            .lines()
            .rfind(|l| l.starts_with("rebuild: done, "))
            .unwrap_or_else(|| panic!("no final progress line in {stderr}"));
        let summary = stdout
            .lines()
            .find(|l| l.starts_with("rebuilt "))
            .unwrap_or_else(|| panic!("no summary in {stdout}"));
        let every = format!(
            "rebuilt {} projection(s) from ",
            projections::replayable().len()
        );
        let summary_figures = summary
            .strip_prefix(&every)
            .unwrap_or_else(|| panic!("{summary}"));
        assert_eq!(
            figures(last),
            summary_figures,
            "stderr: {stderr}\nstdout: {stdout}"
        );
        assert!(summary_figures.ends_with(" events/s)"), "{summary}");

        // `--json` carries the same rate, computed the same way.
        let (code, stdout, stderr) =
            replay(&["rebuild", "--all", "--json", "--database-url", &url]).await;
        assert_eq!(code, Some(0), "{stderr}");
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let events = report["events_read"].as_u64().unwrap();
        let seconds = report["seconds"].as_f64().unwrap();
        let rate = report["events_per_second"].as_f64().unwrap();
        assert!(events > 0, "{report}");
        assert!(
            (rate - events as f64 / seconds).abs() < 1e-6 * rate.max(1.0),
            "{report}"
        );
        let last = stderr
            .lines()
            .rfind(|l| l.starts_with("rebuild: done, "))
            .unwrap();
        assert_eq!(
            figures(last),
            format!("{events} events in {seconds:.1} s ({rate:.0} events/s)"),
            "{stderr}"
        );
    })
    .await;
}
