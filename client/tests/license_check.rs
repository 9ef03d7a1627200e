//! The `license-check` binary, run as a user would: exit codes, output, and the files it writes.
#![cfg(feature = "cli")]

mod support;

use std::process::{Command, Output};

use serde_json::json;

use client::files::{ActivationRequest, ActivationResponse, DeactivationRequest};
use support::TempDir;
use support::testkit::{self, APP_ID, FINGERPRINT, OTHER_APP_ID, TestKey};

const KEY: &str = "ACME-SECRET-KEY-0001";

fn license_check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_license-check"))
        .args(args)
        .env_remove("LICENSE_LEDGER_KEY")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

struct Fixture {
    dir: TempDir,
    key: TestKey,
    jwks: String,
    token: String,
}

fn fixture() -> Fixture {
    let dir = TempDir::new("cli");
    let key = TestKey::generate();
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, key.jwks_json()).unwrap();
    let token = key.token(&testkit::claims(chrono::Utc::now().timestamp()));
    Fixture {
        jwks: jwks.to_str().unwrap().to_owned(),
        dir,
        key,
        token,
    }
}

fn verify(f: &Fixture, extra: &[&str], token: &str) -> Output {
    let mut args = vec!["verify", "--jwks", &f.jwks, "--app-id", APP_ID];
    args.extend_from_slice(extra);
    args.push(token);
    license_check(&args)
}

#[test]
fn a_valid_token_exits_0_and_tells_the_token_validity_from_the_license_expiry() {
    let f = fixture();
    let out = verify(&f, &["--fingerprint", FINGERPRINT], &f.token);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with("valid: license 0e3b8f3c-5a5d-4b8e-9a51-6f3c2d1e0a9b ("),
        "{stdout}"
    );
    assert!(lines[0].contains("features: pro export.pdf"), "{stdout}");
    // The token's `exp` (a day from now in the fixture) is the token's, and said to be.
    let until = lines[1]
        .strip_prefix("offline token valid until ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .unwrap_or_else(|| panic!("no token expiry in {stdout}"));
    let in_a_day = chrono::Utc::now() + chrono::Duration::days(1);
    assert!(
        until <= in_a_day && until > in_a_day - chrono::Duration::minutes(5),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("license expiry: not in the token"),
        "{stdout}"
    );
    assert!(!stdout.contains("expires"), "{stdout}");
}

#[test]
fn a_tampered_token_exits_1_with_the_reason() {
    let f = fixture();
    // Change one character in the middle of the claims.
    let mut bytes = f.token.clone().into_bytes();
    let middle = f.token.find('.').unwrap() + 10;
    bytes[middle] = if bytes[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    let out = verify(&f, &["--fingerprint", FINGERPRINT], &tampered);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        "invalid: the signature does not verify"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn other_refusals_exit_1_too() {
    let f = fixture();
    let out = verify(&f, &[], &f.token);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("invalid: the token is bound to a device fingerprint"));

    let out = verify(&f, &["--fingerprint", "another-device"], &f.token);
    assert_eq!(out.status.code(), Some(1));

    let out = license_check(&[
        "verify",
        "--jwks",
        &f.jwks,
        "--app-id",
        OTHER_APP_ID,
        "--fingerprint",
        FINGERPRINT,
        &f.token,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("invalid: the token is for App GUID"));

    let out = verify(&f, &[], "garbage");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_token_or_a_response_file_can_be_read_with_at() {
    let f = fixture();
    let raw = f.dir.join("token.jwt");
    std::fs::write(&raw, format!("{}\n", f.token)).unwrap();
    let mut claims = testkit::claims(chrono::Utc::now().timestamp());
    claims["kind"] = json!("offline_activation");
    let response = f.dir.join("response.txt");
    std::fs::write(
        &response,
        ActivationResponse::new(f.key.token(&claims)).to_file_text(),
    )
    .unwrap();
    for path in [raw, response] {
        let arg = format!("@{}", path.display());
        let out = verify(&f, &["--fingerprint", FINGERPRINT], &arg);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let out = verify(&f, &[], "@/nonexistent/token");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_jwks_with_a_private_key_stops_the_command() {
    let f = fixture();
    let mut jwk = f.key.public_jwk();
    jwk["d"] = json!(testkit::b64(&f.key.signing.to_bytes()));
    std::fs::write(&f.jwks, json!({"keys": [jwk]}).to_string()).unwrap();
    let out = verify(&f, &["--fingerprint", FINGERPRINT], &f.token);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("private key"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn request_files_are_written_for_air_gapped_machines() {
    let f = fixture();
    let out_path = f.dir.join("activate.req");
    let out = license_check(&[
        "request",
        "activate",
        "--app-id",
        APP_ID,
        "--key",
        KEY,
        "--fingerprint",
        FINGERPRINT,
        "--hostname",
        "build-07",
        "--platform",
        "linux-x86_64",
        "--out",
        out_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(&out_path).unwrap();
    let request = ActivationRequest::parse_file_text(&written).unwrap();
    assert_eq!(request.app_id.to_string(), APP_ID);
    assert_eq!(request.key.expose(), KEY);
    assert_eq!(request.fingerprint.as_str(), FINGERPRINT);
    assert_eq!(request.hostname.unwrap().as_str(), "build-07");
    assert_eq!(request.platform.unwrap().as_str(), "linux-x86_64");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Deactivation to standard output, with the key from the environment.
    let out = Command::new(env!("CARGO_BIN_EXE_license-check"))
        .args([
            "request",
            "deactivate",
            "--app-id",
            APP_ID,
            "--fingerprint",
            FINGERPRINT,
        ])
        .env("LICENSE_LEDGER_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let request = DeactivationRequest::parse_file_text(&text(&out.stdout)).unwrap();
    assert_eq!(request.key.expose(), KEY);
}

#[test]
fn a_bad_key_is_refused_without_being_echoed() {
    let secret = "SECRET PART";
    let out = license_check(&[
        "request",
        "deactivate",
        "--app-id",
        APP_ID,
        "--key",
        secret,
        "--fingerprint",
        FINGERPRINT,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !text(&out.stderr).contains("SECRET"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn verify_artifact_accepts_the_signed_file_and_refuses_an_altered_one() {
    use p256::ecdsa::Signature;
    use p256::ecdsa::signature::Signer;
    use sha2::{Digest, Sha256};

    let f = fixture();
    let bytes: Vec<u8> = (0..2_500_000u32).map(|i| (i % 253) as u8).collect();
    let file = f.dir.join("studio-7.4.0.tar.gz");
    std::fs::write(&file, &bytes).unwrap();
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let product = "0193a1b2-0000-7000-8000-000000000014";
    // The statement the server signs (docs/client-protocol.md, "Artifacts").
    let statement = format!(
        "license-ledger artifact v1\nproduct {product}\nversion 7.4.0\nfile studio-7.4.0.tar.gz\nplatform linux\narch x86_64\nsha256 {hex}\n"
    );
    let signature: Signature = f.key.signing.sign(statement.as_bytes());
    let artifact = |version: &str, kid: &str| {
        let path = f.dir.join(&format!("artifact-{version}-{kid}.json"));
        std::fs::write(
            &path,
            json!({"id": "0193a1b2-0000-7000-8000-000000000099", "product_id": product,
                   "version": version, "filename": "studio-7.4.0.tar.gz", "platform": "linux",
                   "arch": "x86_64", "size": bytes.len(), "sha256": hex,
                   "signature": testkit::b64(&signature.to_bytes()), "kid": kid})
            .to_string(),
        )
        .unwrap();
        path
    };
    let run = |artifact: &std::path::Path, path: &std::path::Path| {
        license_check(&[
            "verify-artifact",
            "--jwks",
            &f.jwks,
            "--artifact",
            artifact.to_str().unwrap(),
            path.to_str().unwrap(),
        ])
    };
    let good = artifact("7.4.0", &f.key.kid);
    let out = run(&good, &file);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("verified: "));

    let mut altered = bytes.clone();
    altered[2_000_000] ^= 0x40;
    let tampered = f.dir.join("tampered.tar.gz");
    std::fs::write(&tampered, &altered).unwrap();
    let out = run(&good, &tampered);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("invalid: the bytes hash to"),
        "{}",
        text(&out.stderr)
    );
    // The same file passed off as another version: its signature says otherwise.
    let out = run(&artifact("7.6.0", &f.key.kid), &file);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("does not verify"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&artifact("7.4.0", "another-kid"), &file);
    assert_eq!(out.status.code(), Some(1));
    let out = run(&good, &f.dir.join("missing.bin"));
    assert_eq!(out.status.code(), Some(2));
}
