//! `license-check`: verify a license token, or write the request files of an air-gapped machine,
//! from the command line, without writing code.
//!
//! ```text
//! license-check verify --jwks jwks.json --app-id GUID [--fingerprint FP] TOKEN|@FILE
//! license-check request activate --app-id GUID --key KEY --fingerprint FP [--hostname H]
//!                                [--platform P] [--environment production|test] [--out FILE]
//! license-check request deactivate --app-id GUID --key KEY --fingerprint FP [--out FILE]
//! license-check verify-artifact --jwks jwks.json --artifact ARTIFACT.json|- FILE
//! ```
//!
//! `verify-artifact` checks a downloaded file against the artifact object its release lists
//! (`GET /v1/releases/{id}`, a download link's `artifact`, `POST /v1/updates`), saved as JSON or
//! piped on stdin: its SHA-256, and the signature over its product, version, name, platform and
//! digest. `verified: FILE` on stdout, or `invalid: <reason>` on stderr and exit status 1.
//!
//! `verify` prints three lines on stdout for a valid token: `valid: license ID (…)`, `offline
//! token valid until T` (the token's own `exp`) and `license expiry: …` (not the token's).
//!
//! Exit status: 0 when the token is valid (or the file was written), 1 when the token is
//! refused (`invalid: <reason>` on stderr), 2 when the command cannot run (bad arguments, an
//! unreadable file, a refused JWKS).
//!
//! The license key can come from `LICENSE_LEDGER_KEY` instead of `--key`, so it does not show in
//! the process list; it is never echoed, not even in an error.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{SecondsFormat, Utc};
use clap::{Args, Parser, Subcommand};

use client::files::{ActivationRequest, DeactivationRequest, token_from_text};
use client::jwks::Jwks;
use client::values::{AppId, Environment, Fingerprint, Label, LicenseKey};
use client::verify::{Claims, TokenKind, Verifier};

#[derive(Parser)]
#[command(
    name = "license-check",
    version,
    about = "Check license-ledger tokens and write air-gapped request files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify an offline token or an activation response file against a pinned JWKS.
    Verify(VerifyArgs),
    /// Write a request file for an air-gapped machine.
    #[command(subcommand)]
    Request(RequestCommand),
    /// Verify a downloaded artifact: its SHA-256, and the server's signature over it.
    VerifyArtifact(VerifyArtifactArgs),
}

#[derive(Args)]
struct VerifyArtifactArgs {
    /// The trusted JWKS file (public keys only).
    #[arg(long, value_name = "FILE")]
    jwks: PathBuf,
    /// The artifact object as the API shows it (JSON), or `-` to read it from stdin.
    #[arg(long, value_name = "JSON")]
    artifact: String,
    /// The downloaded file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

#[derive(Args)]
struct VerifyArgs {
    /// The trusted JWKS file (public keys only).
    #[arg(long, value_name = "FILE")]
    jwks: PathBuf,
    /// This application's App GUID.
    #[arg(long, value_name = "GUID")]
    app_id: AppId,
    /// This device's fingerprint (required for device-bound tokens).
    #[arg(long, value_name = "FP")]
    fingerprint: Option<String>,
    /// The compact token, or `@FILE` for a file holding a token or an activation response.
    #[arg(value_name = "TOKEN")]
    token: String,
}

#[derive(Subcommand)]
enum RequestCommand {
    /// Write an activation request file.
    Activate(ActivateArgs),
    /// Write a deactivation request file.
    Deactivate(Common),
}

#[derive(Args)]
struct Common {
    /// The product's App GUID.
    #[arg(long, value_name = "GUID")]
    app_id: AppId,
    /// The license key (or set LICENSE_LEDGER_KEY).
    #[arg(
        long,
        env = "LICENSE_LEDGER_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    key: String,
    /// This device's fingerprint.
    #[arg(long, value_name = "FP")]
    fingerprint: Fingerprint,
    /// Write the file here (owner-only permissions) instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct ActivateArgs {
    #[command(flatten)]
    common: Common,
    /// The machine's hostname, to show to administrators.
    #[arg(long)]
    hostname: Option<Label>,
    /// The platform, to show to administrators.
    #[arg(long)]
    platform: Option<Label>,
    /// production or test.
    #[arg(long, default_value = "production")]
    environment: Environment,
}

/// A failure that stops the command: `Invalid` is a refused token (exit 1), `Error` anything
/// else (exit 2).
enum Failure {
    Invalid(String),
    Error(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Verify(args) => verify(&args),
        Command::Request(RequestCommand::Activate(args)) => request_activation(args),
        Command::Request(RequestCommand::Deactivate(args)) => request_deactivation(args),
        Command::VerifyArtifact(args) => verify_artifact(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Invalid(reason)) => {
            eprintln!("invalid: {reason}");
            ExitCode::from(1)
        }
        Err(Failure::Error(reason)) => {
            eprintln!("error: {reason}");
            ExitCode::from(2)
        }
    }
}

fn verify(args: &VerifyArgs) -> Result<(), Failure> {
    let jwks_text = read(&args.jwks)?;
    let jwks = Jwks::from_json(&jwks_text)
        .map_err(|e| Failure::Error(format!("{}: {e}", args.jwks.display())))?;
    let text = match args.token.strip_prefix('@') {
        Some(path) => read(Path::new(path))?,
        None => args.token.clone(),
    };
    let token = token_from_text(&text).map_err(|e| Failure::Invalid(e.to_string()))?;
    let claims = Verifier::new(jwks)
        .verify(&token, args.app_id, args.fingerprint.as_deref(), Utc::now())
        .map_err(|e| Failure::Invalid(e.to_string()))?;
    println!("{}", summary(&claims));
    Ok(())
}

fn verify_artifact(args: &VerifyArtifactArgs) -> Result<(), Failure> {
    let jwks_text = read(&args.jwks)?;
    let jwks = Jwks::from_json(&jwks_text)
        .map_err(|e| Failure::Error(format!("{}: {e}", args.jwks.display())))?;
    let text = if args.artifact == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| Failure::Error(format!("stdin: {e}")))?;
        text
    } else {
        read(Path::new(&args.artifact))?
    };
    let artifact = client::artifact::ArtifactClaims::from_json(&text)
        .map_err(|e| Failure::Error(format!("{}: {e}", args.artifact)))?;
    client::artifact::verify_artifact_file(&args.file, &artifact, &jwks).map_err(|e| match e {
        client::artifact::ArtifactError::Io(io) => {
            Failure::Error(format!("{}: {io}", args.file.display()))
        }
        refused => Failure::Invalid(refused.to_string()),
    })?;
    println!("verified: {}", args.file.display());
    Ok(())
}

/// What a valid token says, in three lines that keep the token's validity and the license's
/// apart: a token's `exp` is only the end of this offline grant (the policy's offline grace,
/// capped by the license's expiry, trial end and paid period), and printing it as "expires" made
/// users read it as the license's expiry (issue #13). The claims carry no license expiry
/// (`docs/client-protocol.md`), so the third line says where to find it instead of guessing.
fn summary(claims: &Claims) -> String {
    let mut details = Vec::new();
    if let Some(status) = &claims.status {
        details.push(format!("status at issue: {status}"));
    }
    if !claims.features.is_empty() {
        details.push(format!("features: {}", claims.features.join(" ")));
    }
    if let Some(fingerprint) = &claims.fingerprint {
        details.push(format!("device: {fingerprint}"));
    }
    let mut first = format!("valid: license {}", claims.license_id());
    if !details.is_empty() {
        first.push_str(&format!(" ({})", details.join(", ")));
    }
    let until = claims
        .expires_at()
        .to_rfc3339_opts(SecondsFormat::Secs, true);
    if claims.kind == TokenKind::OfflineActivation {
        // An air-gapped activation lasts as long as the license does: its `exp` is the license's
        // expiry, trial end or end of the paid period (ten years for a perpetual license), per
        // docs/client-protocol.md.
        return format!(
            "{first}\n\
             offline activation valid until {until} (the license's expiry, trial end or end of \
             the paid period; ten years ahead for a perpetual license)"
        );
    }
    format!(
        "{first}\n\
         offline token valid until {until} (verify a fresh token before then)\n\
         license expiry: not in the token (a token never outlives its license; the server's \
         POST /v1/validate and GET /v1/licenses/{{id}} give the date)"
    )
}

fn request_activation(args: ActivateArgs) -> Result<(), Failure> {
    let key = parse_key(&args.common.key)?;
    let mut request =
        ActivationRequest::new(args.common.app_id, key, args.common.fingerprint, Utc::now());
    request.hostname = args.hostname;
    request.platform = args.platform;
    request.environment = args.environment;
    emit(&request.to_file_text(), args.common.out.as_deref())
}

fn request_deactivation(args: Common) -> Result<(), Failure> {
    let key = parse_key(&args.key)?;
    let request = DeactivationRequest::new(args.app_id, key, args.fingerprint, Utc::now());
    emit(&request.to_file_text(), args.out.as_deref())
}

/// The key, parsed here rather than by clap so a bad key is never echoed in the error.
fn parse_key(raw: &str) -> Result<LicenseKey, Failure> {
    LicenseKey::parse(raw).map_err(|e| Failure::Error(format!("--key: {e}")))
}

fn emit(text: &str, out: Option<&Path>) -> Result<(), Failure> {
    let Some(path) = out else {
        print!("{text}");
        return Ok(());
    };
    // The file holds the license key: owner-only, like a credential.
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(
        &mut options
            .open(path)
            .map_err(|e| Failure::Error(format!("{}: {e}", path.display())))?,
        text.as_bytes(),
    )
    .map_err(|e| Failure::Error(format!("{}: {e}", path.display())))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn read(path: &Path) -> Result<String, Failure> {
    fs::read_to_string(path).map_err(|e| Failure::Error(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: serde_json::Value) -> Claims {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_summary_tells_the_token_validity_from_the_license_expiry() {
        let text = summary(&claims(serde_json::json!({
            "iss": "license-ledger",
            "sub": "0e3b8f3c-5a5d-4b8e-9a51-6f3c2d1e0a9b",
            "aud": "6f1c1d3e-0b8a-4c53-9d2f-1a2b3c4d5e6f",
            "iat": 1_785_000_000, "nbf": 1_785_000_000, "exp": 1_786_204_800,
            "jti": "7d0f4e2a-1c3b-4a5d-8e6f-9a0b1c2d3e4f",
            "features": ["pro", "export.pdf"],
            "fingerprint": "laptop-1",
            "status": "trialing",
            "kind": "offline",
        })));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "valid: license 0e3b8f3c-5a5d-4b8e-9a51-6f3c2d1e0a9b (status at issue: trialing, \
                 features: pro export.pdf, device: laptop-1)",
                "offline token valid until 2026-08-08T16:00:00Z (verify a fresh token before \
                 then)",
                "license expiry: not in the token (a token never outlives its license; the \
                 server's POST /v1/validate and GET /v1/licenses/{id} give the date)",
            ]
        );
        assert!(!text.contains("expires"), "{text}");
    }

    #[test]
    fn a_bare_token_has_no_empty_details() {
        let text = summary(&claims(serde_json::json!({
            "iss": "license-ledger",
            "sub": "0e3b8f3c-5a5d-4b8e-9a51-6f3c2d1e0a9b",
            "aud": "6f1c1d3e-0b8a-4c53-9d2f-1a2b3c4d5e6f",
            "iat": 0, "nbf": 0, "exp": 60,
            "jti": "7d0f4e2a-1c3b-4a5d-8e6f-9a0b1c2d3e4f",
            "kind": "offline_activation",
        })));
        assert!(
            text.starts_with(
                "valid: license 0e3b8f3c-5a5d-4b8e-9a51-6f3c2d1e0a9b\n\
                 offline activation valid until 1970-01-01T00:01:00Z (the license's expiry"
            ),
            "{text}"
        );
        assert!(!text.contains("not in the token"), "{text}");
    }
}
