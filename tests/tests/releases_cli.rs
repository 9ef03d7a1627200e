//! `ledger releases publish` as a release pipeline runs it (issue #17 item 6): the real binary
//! against the real server binary over HTTP. It drafts, streams the files up and publishes,
//! printing digests that match the files; re-running it records nothing; other bytes under a
//! published name, a mistyped target, a wrong token, another channel and a yanked release are
//! refused with the reason; two pipelines racing on one version publish it once.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tests::{ServerProcess, TestDb, mint_token, spawn_server, temp_data_dir};

const BIN: &str = env!("CARGO_BIN_EXE_ledger-e2e-server");

struct Setup {
    db: TestDb,
    _server: ServerProcess,
    base: String,
    token: String,
    http: reqwest::Client,
    product: String,
    dir: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn setup() -> Setup {
    let db = TestDb::create().await;
    let token = mint_token(BIN, &db);
    let server = spawn_server(BIN, &db, &temp_data_dir(), &[]);
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let created = http
        .post(format!("{base}/v1/products"))
        .bearer_auth(&token)
        .json(&json!({"name": "Studio", "kind": "application"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let product = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = temp_data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    Setup {
        db,
        _server: server,
        base,
        token,
        http,
        product,
        dir,
    }
}

impl Setup {
    /// Writes a file of the pipeline's output.
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Runs `ledger releases publish --server … --product … ARGS` with the token in
    /// `LEDGER_TOKEN`.
    async fn publish(&self, token: &str, args: &[&str]) -> Output {
        tokio::process::Command::new(BIN)
            .args([
                "releases",
                "publish",
                "--server",
                &self.base,
                "--product",
                &self.product,
            ])
            .args(args)
            .env("LEDGER_TOKEN", token)
            .env_remove("LEDGER_SERVER")
            .output()
            .await
            .expect("run ledger releases publish")
    }

    async fn get(&self, path: &str) -> Value {
        let answer = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
        answer.json().await.unwrap()
    }

    async fn events(&self, event_type: &str) -> i64 {
        tests::count_events(&self.db, event_type).await
    }

    /// Drafted, added, published: the events a run may record.
    async fn counts(&self) -> [i64; 3] {
        [
            self.events("ReleaseDrafted").await,
            self.events("ArtifactAdded").await,
            self.events("ReleasePublished").await,
        ]
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Bytes no other file of a test holds.
fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
        .collect()
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_publishes_its_files_and_a_rerun_records_nothing() {
    let s = setup().await;
    // Larger than one chunk read from disk (256 KiB), and a name that needs encoding in a URL.
    let linux = payload(700 * 1024 + 13, 1);
    let manual = payload(5000, 2);
    let linux_path = s.file("studio-7.4.0-linux-x86_64.tar.gz", &linux);
    let manual_path = s.file("Studio 7.4.0 manual+notes.pdf", &manual);
    let notes_path = s.file("notes.md", b"Faster.\nSmaller.\n");
    let linux_arg = format!("{}=linux/x86_64", arg(&linux_path));
    let args = [
        "--version",
        "7.4.0",
        "--channel",
        "stable",
        "--notes-file",
        arg(&notes_path),
        "--entitlement",
        "pro",
        &linux_arg,
        arg(&manual_path),
    ];

    let first = s.publish(&s.token, &args).await;
    let (stdout, stderr) = (text(&first.stdout), text(&first.stderr));
    assert_eq!(first.status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(
        lines[0],
        format!(
            "{}  studio-7.4.0-linux-x86_64.tar.gz  linux/x86_64  {} bytes",
            sha256(&linux),
            linux.len()
        )
    );
    assert_eq!(
        lines[1],
        format!(
            "{}  Studio 7.4.0 manual+notes.pdf  any/any  {} bytes",
            sha256(&manual),
            manual.len()
        )
    );
    let published: Vec<&str> = lines[2].split(' ').collect();
    assert_eq!(published.len(), 4, "{}", lines[2]);
    assert_eq!(
        (published[0], published[2], published[3]),
        ("published", "7.4.0", "(stable)")
    );
    let release_id = published[1];
    assert!(!stdout.contains(&s.token) && !stderr.contains(&s.token));

    let release = s.get(&format!("/v1/releases/{release_id}")).await;
    assert_eq!(release["status"], "published", "{release}");
    assert_eq!(release["version"], "7.4.0");
    assert_eq!(release["channel"], "stable");
    assert_eq!(release["notes"], "Faster.\nSmaller.");
    assert_eq!(release["entitlements"], json!(["pro"]));
    let artifacts = release["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 2, "{release}");
    for (artifact, (name, bytes, platform, arch)) in artifacts.iter().zip([
        (
            "studio-7.4.0-linux-x86_64.tar.gz",
            &linux,
            "linux",
            "x86_64",
        ),
        ("Studio 7.4.0 manual+notes.pdf", &manual, "any", "any"),
    ]) {
        assert_eq!(artifact["filename"], name);
        assert_eq!(artifact["sha256"], sha256(bytes));
        assert_eq!(artifact["size"], bytes.len());
        assert_eq!(artifact["platform"], platform);
        assert_eq!(artifact["arch"], arch);
    }
    assert_eq!(s.counts().await, [1, 2, 1]);

    // The same command again: the same answer, nothing recorded.
    let again = s.publish(&s.token, &args).await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout), stdout);
    assert_eq!(s.counts().await, [1, 2, 1]);

    // Other bytes under a published name (same length, one byte changed): refused, naming the
    // file and the server's code; nothing recorded.
    let mut changed = manual.clone();
    changed[100] ^= 0xff;
    std::fs::write(&manual_path, &changed).unwrap();
    let refused = s.publish(&s.token, &args).await;
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    let error = stderr.lines().last().unwrap();
    assert!(error.starts_with("error: "), "{stderr}");
    assert!(error.contains("Studio 7.4.0 manual+notes.pdf"), "{error}");
    assert!(error.contains("ARTIFACT_EXISTS"), "{error}");
    assert!(!text(&refused.stdout).contains("published"));
    assert_eq!(s.counts().await, [1, 2, 1]);

    // A file added to a published release: refused (files go to drafts only).
    let extra = s.file("studio-7.4.0.dmg", &payload(100, 3));
    let late = s
        .publish(
            &s.token,
            &["--version", "7.4.0", "--channel", "stable", arg(&extra)],
        )
        .await;
    let stderr = text(&late.stderr);
    assert_eq!(late.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("studio-7.4.0.dmg"), "{stderr}");
    assert!(stderr.contains("RELEASE_NOT_DRAFT"), "{stderr}");
    assert_eq!(s.counts().await, [1, 2, 1]);

    // Other entitlements than the draft's: refused, since they decide who sees the release.
    let wider = s
        .publish(
            &s.token,
            &[
                "--version",
                "7.4.0",
                "--channel",
                "stable",
                "--entitlement",
                "enterprise",
                &linux_arg,
            ],
        )
        .await;
    let stderr = text(&wider.stderr);
    assert_eq!(wider.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("drafted with the entitlements [pro]"),
        "{stderr}"
    );
    assert_eq!(s.counts().await, [1, 2, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_targets_wrong_tokens_other_channels_and_yanked_releases_are_refused() {
    let s = setup().await;
    let file = s.file("studio-8.0.0.zip", &payload(2048, 4));

    // A platform the ledger does not know: refused before any request.
    let beos = format!("{}=beos/x86_64", arg(&file));
    let out = s
        .publish(
            &s.token,
            &["--version", "8.0.0", "--channel", "stable", &beos],
        )
        .await;
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("beos"), "{stderr}");
    assert_eq!(s.counts().await, [0, 0, 0]);

    // A wrong token: the server's 401 and its detail, and the token shown nowhere.
    let wrong = "llt_this_is_not_a_valid_token_0123456789abcdef";
    let out = s
        .publish(
            wrong,
            &["--version", "8.0.0", "--channel", "stable", arg(&file)],
        )
        .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let error = stderr.lines().last().unwrap();
    assert!(error.starts_with("error: "), "{stderr}");
    assert!(error.contains("401"), "{error}");
    assert!(error.contains("UNAUTHORIZED"), "{error}");
    assert!(
        error.contains("the bearer token is invalid, expired or revoked"),
        "{error}"
    );
    assert!(!stderr.contains(wrong) && !text(&out.stdout).contains(wrong));
    assert_eq!(s.counts().await, [0, 0, 0]);

    // No token at all: said, before any request.
    let out = s
        .publish(
            "",
            &["--version", "8.0.0", "--channel", "stable", arg(&file)],
        )
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("LEDGER_TOKEN"));

    // Published on stable; the same version asked on beta is refused with the channel it has.
    let ok = s
        .publish(
            &s.token,
            &["--version", "8.0.0", "--channel", "stable", arg(&file)],
        )
        .await;
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let beta = s
        .publish(
            &s.token,
            &["--version", "8.0.0", "--channel", "beta", arg(&file)],
        )
        .await;
    let stderr = text(&beta.stderr);
    assert_eq!(beta.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("channel stable, not beta"), "{stderr}");

    // A yanked release is not published again.
    let release_id = text(&ok.stdout)
        .lines()
        .last()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .to_owned();
    let yank = s
        .http
        .post(format!("{}/v1/releases/{release_id}/yank", s.base))
        .bearer_auth(&s.token)
        .json(&json!({"reason": "broken installer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(yank.status(), 200);
    let yanked = s
        .publish(
            &s.token,
            &["--version", "8.0.0", "--channel", "stable", arg(&file)],
        )
        .await;
    let stderr = text(&yanked.stderr);
    assert_eq!(yanked.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("yanked (broken installer)"), "{stderr}");
    assert_eq!(s.counts().await, [1, 1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pipelines_racing_on_one_version_publish_it_once() {
    let s = setup().await;
    let a = s.file("a.tar.gz", &payload(300 * 1024, 5));
    let b = s.file("b.zip", &payload(4000, 6));
    let b_arg = format!("{}=windows/arm64", arg(&b));
    let args = [
        "--version",
        "9.1.0-beta.1",
        "--channel",
        "beta",
        arg(&a),
        &b_arg,
    ];
    let (one, two) = tokio::join!(s.publish(&s.token, &args), s.publish(&s.token, &args));
    for out in [&one, &two] {
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    assert_eq!(text(&one.stdout), text(&two.stdout));
    assert!(
        text(&one.stdout)
            .lines()
            .last()
            .unwrap()
            .ends_with(" 9.1.0-beta.1 (beta)")
    );
    assert_eq!(s.counts().await, [1, 2, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_holding_files_the_command_does_not_name_is_not_published() {
    let s = setup().await;
    // A draft that already holds a file (an earlier run's mistake, an upload through the API).
    let draft: Value = s
        .http
        .post(format!("{}/v1/products/{}/releases", s.base, s.product))
        .bearer_auth(&s.token)
        .json(&json!({"version": "9.3.0", "channel": "stable"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stray = s
        .http
        .put(format!(
            "{}/v1/releases/{}/artifacts/backdoor.exe",
            s.base,
            draft["id"].as_str().unwrap()
        ))
        .bearer_auth(&s.token)
        .body(payload(100, 6))
        .send()
        .await
        .unwrap();
    assert_eq!(stray.status(), 201);
    let shipped = s.file("studio-9.3.0.tar.gz", &payload(3000, 5));
    let run = s
        .publish(
            &s.token,
            &["--version", "9.3.0", "--channel", "stable", arg(&shipped)],
        )
        .await;
    let stderr = text(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("backdoor.exe"), "{stderr}");
    assert_eq!(
        s.counts().await,
        [1, 1, 0],
        "nothing uploaded, nothing published"
    );
}
