//! Issue #15 through the binary: what a request authenticated by an OIDC access token costs next
//! to the same request with an administration token. `ledger serve` (release, rate limits off,
//! its own database) trusts the tests' real identity provider (`tests/idp/server.mjs`, started
//! here); a customer organization and a user linked to the provider's identity (role
//! `customer_admin` there) are registered with the administration token; the user's access
//! token comes from the provider's authorization code flow with PKCE. Then `wrk` sends
//! `GET /v1/me` and `GET /v1/organizations/{id}` with one token and with the other, in
//! alternating slices on the same number of connections.
//!
//! Then the same authentications in this process, step by step, on the same database (the
//! functions the server calls): the administration token is one stream load
//! (`Ledger::authenticate`); the OIDC token is its verification (`Oidc::verify`: ES256 with the
//! provider's cached key), the unique-claim query (`Ledger::user_by_identity`) and the user's
//! stream load (`Ledger::user`). `SELECT 1` is the round trip they are made of.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use commands::clock::SystemClock;
use commands::keys::KeyHasher;
use commands::{EventStore, Ledger};
use domain::keys::ApiTokenSecret;
use domain::values::{Issuer, Subject};
use p256::ecdsa::signature::Verifier;
use serde_json::json;
use sqlx::PgPool;

use crate::harness::{median, ratio_cell, ratios};
use crate::idempotency_http::{cpu_seconds, mint};
use crate::validation::{sibling, start_ours_with, wrk_with};
use crate::{http1, idp};

/// What to run.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Seconds per wrk slice.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Alternating pairs of slices per request and number of connections.
    #[arg(long, default_value_t = 6)]
    cycles: usize,
    /// wrk connections (two threads).
    #[arg(long, value_delimiter = ',', default_value = "16")]
    connections: Vec<usize>,
    /// Calls per step of the in-process breakdown.
    #[arg(long, default_value_t = 2_000)]
    calls: usize,
    /// The identity provider's directory (`server.mjs`, `package-lock.json`); default: this
    /// workspace's `tests/idp`.
    #[arg(long)]
    idp_dir: Option<PathBuf>,
}

/// A wrk script sending `GET path` with `token`.
fn script(path: &str, token: &str) -> String {
    format!(
        "wrk.method = \"GET\"\nwrk.path = \"{path}\"\nwrk.headers[\"Authorization\"] = \"Bearer {token}\"\n"
    )
}

/// `method path` on the server with a bearer token and an optional JSON body.
fn call(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<http1::Response> {
    let bearer = format!("Bearer {token}");
    let body = body.map(serde_json::Value::to_string);
    let mut headers = vec![("Authorization", bearer.as_str())];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    http1::request(
        method,
        &format!("http://{addr}{path}"),
        &headers,
        body.as_deref().map(str::as_bytes),
    )
}

/// GETs `path` with `token` until it answers 200 (the read models follow the log within
/// milliseconds), and returns the body.
fn until_ok(addr: &str, path: &str, token: &str) -> anyhow::Result<serde_json::Value> {
    let mut last = None;
    for _ in 0..100 {
        let response = call(addr, "GET", path, token, None)?;
        if response.status == 200 {
            return response.json();
        }
        last = Some(format!("{} {}", response.status, response.text()));
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "GET {path} never answered 200: {}",
        last.unwrap_or_default()
    )
}

/// The server's p50, p99 (µs) of `ns`.
#[allow(clippy::cast_precision_loss)]
fn p50_p99(ns: &mut [u64]) -> (f64, f64) {
    ns.sort_unstable();
    let at = |q: f64| {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let i = ((ns.len() - 1) as f64 * q).round() as usize;
        ns[i] as f64 / 1e3
    };
    (at(0.5), at(0.99))
}

fn elapsed_ns(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Runs everything and prints Markdown tables.
///
/// # Errors
/// A missing binary, `wrk`, `node` or `npm`; a server or provider that does not start; any
/// answer other than the expected ones.
#[allow(clippy::too_many_lines)]
pub async fn run(pool: PgPool, url: &str, o: &Options) -> anyhow::Result<()> {
    let ledger_exe = sibling("ledger")?;
    let run_id = uuid::Uuid::now_v7();
    let tmp = std::env::temp_dir();
    let data_dir = tmp.join(format!("ledger-bench-{run_id}"));
    let idp_log = tmp.join(format!("ledger-bench-idp-{run_id}.log"));
    let idp_dir = o.idp_dir.clone().unwrap_or_else(idp::default_dir);
    let provider = idp::start(&idp_dir, &idp_log)?;
    let issuer = provider.addr.clone();
    eprintln!(
        "identity provider at {issuer} (its log: {})",
        idp_log.display()
    );
    let (server, _) = start_ours_with(
        &ledger_exe,
        url,
        &data_dir,
        &[
            "--oidc-issuer",
            &issuer,
            // Both principals' roles unlimited (the IP limits are off in start_ours_with).
            "--token-rate-limit",
            "vendor_admin=0",
            "--token-rate-limit",
            "customer_admin=0",
        ],
    )?;
    let addr = server.addr.clone();
    let admin = mint(&ledger_exe, url)?;

    // A customer and its user, linked to the provider's identity.
    let subject = format!("bench-{}", run_id.simple());
    let email = format!("{subject}@example.com");
    let created = call(
        &addr,
        "POST",
        "/v1/organizations",
        &admin,
        Some(&json!({"name": "Bench Customer", "kind": "customer"})),
    )?;
    if created.status != 201 {
        bail!(
            "POST /v1/organizations: {} {}",
            created.status,
            created.text()
        );
    }
    let organization = created.json()?["id"]
        .as_str()
        .context("no id in the organization")?
        .to_owned();
    let user = call(
        &addr,
        "POST",
        &format!("/v1/organizations/{organization}/users"),
        &admin,
        Some(&json!({
            "email": email,
            "roles": ["customer_admin"],
            "issuer": issuer,
            "subject": subject,
        })),
    )?;
    if user.status != 201 {
        bail!("POST …/users: {} {}", user.status, user.text());
    }
    let es256 = idp::access_token(&issuer, &subject, &email, "ES256")?;
    let rs256 = idp::access_token(&issuer, &subject, &email, "RS256")?;

    // Every token is answered 200 on both requests, and an OIDC token is the user.
    let org_path = format!("/v1/organizations/{organization}");
    let requests = [
        ("GET /v1/me", "/v1/me"),
        ("GET /v1/organizations/{id}", org_path.as_str()),
    ];
    let arms = [
        ("token", admin.as_str()),
        ("OIDC ES256", es256.as_str()),
        ("OIDC RS256", rs256.as_str()),
    ];
    for (_, path) in requests {
        for (_, token) in arms {
            until_ok(&addr, path, token)?;
        }
    }
    for (name, token) in &arms[1..] {
        let me = until_ok(&addr, "/v1/me", token)?;
        if me["principal"]["kind"] != "user" {
            bail!("the {name} token is not the user: {me}");
        }
    }

    let mut scripts: Vec<Vec<PathBuf>> = Vec::new();
    for (i, (_, path)) in requests.iter().enumerate() {
        let mut these = Vec::new();
        for (k, (_, token)) in arms.iter().enumerate() {
            let file = tmp.join(format!("ledger-bench-auth-{run_id}-{i}-{k}.lua"));
            std::fs::write(&file, script(path, token))?;
            these.push(file);
        }
        scripts.push(these);
    }
    // Warm-up of every arm.
    for file in scripts.iter().flatten() {
        wrk_with(&addr, file, 2, 16)?;
    }

    println!(
        "\n| request | connections | admin token req/s | OIDC ES256 req/s | ES256 / token (median, min-max) | OIDC RS256 req/s | RS256 / token (median, min-max) | p99 token / ES256 / RS256 (ms) | server CPU µs/request token / ES256 / RS256 | target OIDC / token ≥ 0.80 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for ((name, _), files) in requests.iter().zip(&scripts) {
        for &c in &o.connections {
            // [arm][cycle]
            let mut rps = vec![Vec::new(); arms.len()];
            let mut p99 = vec![Vec::new(); arms.len()];
            let mut cpu = vec![Vec::new(); arms.len()];
            for cycle in 0..o.cycles {
                // Each arm in turn, the first one rotating.
                for k in 0..arms.len() {
                    let arm = (cycle + k) % arms.len();
                    let before = cpu_seconds(server.child.id())?;
                    let (r, p) = wrk_with(&addr, &files[arm], o.seconds, c)
                        .with_context(|| format!("wrk {name}, {}", arms[arm].0))?;
                    #[allow(clippy::cast_precision_loss)]
                    let us =
                        (cpu_seconds(server.child.id())? - before) * 1e6 / (r * o.seconds as f64);
                    rps[arm].push(r);
                    p99[arm].push(p);
                    cpu[arm].push(us);
                }
                let line: Vec<String> = arms
                    .iter()
                    .enumerate()
                    .map(|(k, (arm, _))| {
                        format!("{arm} {:.0}/s ({:.0} µs CPU)", rps[k][cycle], cpu[k][cycle])
                    })
                    .collect();
                eprintln!("{name} c{c} cycle {:>2}: {}", cycle + 1, line.join("  "));
            }
            let es = ratios(&rps[1], &rps[0]);
            let rs = ratios(&rps[2], &rps[0]);
            let verdict = |r: &[f64]| if median(r) >= 0.8 { "met" } else { "missed" };
            println!(
                "| `{name}` | {c} | {:.0} | {:.0} | {} | {:.0} | {} | {:.1} / {:.1} / {:.1} | {:.0} / {:.0} / {:.0} | ES256 {}, RS256 {} |",
                median(&rps[0]),
                median(&rps[1]),
                ratio_cell(&es),
                median(&rps[2]),
                ratio_cell(&rs),
                median(&p99[0]) * 1e3,
                median(&p99[1]) * 1e3,
                median(&p99[2]) * 1e3,
                median(&cpu[0]),
                median(&cpu[1]),
                median(&cpu[2]),
                verdict(&es),
                verdict(&rs),
            );
        }
    }
    for file in scripts.iter().flatten() {
        let _ = std::fs::remove_file(file);
    }
    drop(server);

    // In-process, step by step, with the server stopped (nothing else runs).
    let ledger = Ledger::new(
        EventStore::new(pool.clone()),
        KeyHasher::new([0x5a; 32]),
        Arc::new(SystemClock),
    );
    let oidc = application::oidc::Oidc::new(&application::oidc::OidcConfig {
        issuers: vec![Issuer::parse(&issuer)?],
        audience: application::oidc::OidcConfig::DEFAULT_AUDIENCE.to_owned(),
    })?;
    let secret = ApiTokenSecret::parse(&admin).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let (iss, sub) = (Issuer::parse(&issuer)?, Subject::parse(&subject)?);
    let user_id = ledger
        .user_by_identity(&iss, &sub)
        .await?
        .context("the user is not found by its identity")?;
    // The ES256 signature alone, as jsonwebtoken checks it (the key decoded from its SEC1
    // bytes on every verification, then `VerifyingKey::verify`), with the provider's key.
    let (signing_input, signature) = es256
        .rsplit_once('.')
        .context("a JWT without a signature")?;
    let signature = p256::ecdsa::Signature::from_slice(&idp::base64url_decode(signature)?)?;
    let header: serde_json::Value = serde_json::from_slice(&idp::base64url_decode(
        es256.split('.').next().unwrap_or_default(),
    )?)?;
    let jwks_uri = http1::request(
        "GET",
        &format!("{issuer}/.well-known/openid-configuration"),
        &[],
        None,
    )?
    .json()?["jwks_uri"]
        .as_str()
        .context("no jwks_uri")?
        .to_owned();
    let jwks = http1::request("GET", &jwks_uri, &[], None)?.json()?;
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == header["kid"]))
        .context("the token's key is not in the JWKS")?;
    let mut sec1 = vec![4u8];
    for coordinate in ["x", "y"] {
        sec1.extend(idp::base64url_decode(
            jwk[coordinate].as_str().context("a coordinate")?,
        )?);
    }
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)?;
    key.verify(signing_input.as_bytes(), &signature)?;

    let names = [
        "SELECT 1 (one round trip)",
        "admin token: `Ledger::authenticate` (one stream load)",
        "OIDC: `Oidc::verify` ES256 (cached key)",
        "OIDC: `Oidc::verify` RS256 (cached key)",
        "OIDC: `Ledger::user_by_identity` (unique-claim query)",
        "OIDC: `Ledger::user` (stream load)",
        "of which: p256 `VerifyingKey::from_sec1_bytes` + `verify` (the ES256 signature alone)",
        "of which: p256 `verify` with the key already decoded",
    ];
    let mut times: Vec<Vec<u64>> = vec![Vec::new(); names.len()];
    for i in 0..o.calls + o.calls / 10 {
        for k in 0..names.len() {
            let step = (i + k) % names.len();
            let t = Instant::now();
            match step {
                0 => {
                    sqlx::query("SELECT 1").execute(&pool).await?;
                }
                1 => {
                    ledger
                        .authenticate(&secret)
                        .await?
                        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                }
                2 | 3 => {
                    let token = if step == 2 { &es256 } else { &rs256 };
                    oidc.verify(token, chrono::Utc::now())
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                }
                4 => {
                    ledger.user_by_identity(&iss, &sub).await?;
                }
                5 => {
                    ledger.user(user_id).await?;
                }
                6 => {
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(black_box(&sec1))?
                        .verify(signing_input.as_bytes(), &signature)?;
                }
                _ => {
                    black_box(&key).verify(signing_input.as_bytes(), &signature)?;
                }
            }
            // The first tenth warms up (the provider's keys are fetched on the first verify).
            if i >= o.calls / 10 {
                times[step].push(elapsed_ns(t));
            }
        }
    }
    let quantiles: Vec<(f64, f64)> = times.iter_mut().map(|t| p50_p99(t)).collect();
    println!(
        "\n| step (in process, {} calls each, interleaved) | p50 (µs) | p99 (µs) |",
        o.calls
    );
    println!("|---|---:|---:|");
    for (name, (p50, p99)) in names.iter().zip(&quantiles) {
        println!("| {name} | {p50:.0} | {p99:.0} |");
    }
    println!(
        "| **admin token, in all** | {:.0} | |\n| **OIDC ES256, in all** (verify + claim + stream) | {:.0} | |\n| **OIDC RS256, in all** | {:.0} | |",
        quantiles[1].0,
        quantiles[2].0 + quantiles[4].0 + quantiles[5].0,
        quantiles[3].0 + quantiles[4].0 + quantiles[5].0,
    );

    drop(provider);
    let _ = std::fs::remove_dir_all(data_dir);
    let _ = std::fs::remove_file(idp_log);
    Ok(())
}
