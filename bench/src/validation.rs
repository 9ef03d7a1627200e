//! Issue #3: `POST /v1/validate` of the real server (`ledger serve`, release build, its own
//! process) against a minimal axum server answering from a `HashMap` of the same size
//! (`validation-baseline`, package `bench-baseline`, its own process), both driven by
//! `wrk -t2 -c64` in alternating runs; plus the server's resident memory.
//!
//! Seeding: the catalogue goes through the command services; the licenses are written as real
//! `LicenseIssued` events in multi-row INSERTs (through the insert trigger, so the hash chain is
//! the same as for any writer), then every projector runs to the head, so the server loads
//! `rm_validation` exactly as in production. Keys are derived from a seed by [`key`], the one
//! derivation: the wrk script and the baseline server get them from it, the baseline on its
//! stdin, so it holds the very same keys.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use commands::clock::SystemClock;
use commands::keys::KeyHasher;
use commands::ledger::{NewOrganization, NewProduct};
use commands::{CommandContext, EventStore, Ledger};
use domain::AggregateType;
use domain::event::{Actor, EventMetadata, encode_payload};
use domain::keys::LicenseKey;
use domain::license::{LicenseEvent, LicenseIssued};
use domain::policy::{PolicyTerms, PolicyTermsInput};
use domain::stream::{ClaimScope, claim_stream_id};
use domain::values::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::postgres::PgPool;

use crate::harness::{median, min_max};

const PEPPER: [u8; 32] = [0x5a; 32];

/// The key of license `i` of a seeded set.
fn key(prefix: &KeyPrefix, seed: u64, i: u64) -> LicenseKey {
    let digest = Sha256::digest(format!("ledger-bench:{seed}:{i}").as_bytes());
    let mut entropy = [0u8; 20];
    entropy.copy_from_slice(&digest[..20]);
    LicenseKey::from_entropy(prefix, &entropy)
}

/// What seeding produced.
pub struct Seeded {
    pub app_id: String,
    pub prefix: KeyPrefix,
}

/// Seeds `n` licenses and brings every projector to the head.
///
/// # Errors
/// Database errors.
pub async fn seed(pool: &PgPool, n: u64, seed: u64) -> anyhow::Result<Seeded> {
    let hasher = KeyHasher::new(PEPPER);
    let ledger = Ledger::new(
        EventStore::new(pool.clone()),
        hasher.clone(),
        Arc::new(SystemClock),
    );
    let ctx = CommandContext::new(Actor::Operator, "bench-seed");
    let err = |e: commands::LedgerError| anyhow::anyhow!("{e}");
    let org = ledger
        .register_organization(
            &ctx,
            NewOrganization {
                name: Name::parse("Bench")?,
                kind: OrganizationKind::Customer,
                parent_id: None,
            },
        )
        .await
        .map_err(err)?;
    let product = ledger
        .define_product(
            &ctx,
            NewProduct {
                name: Name::parse("Bench Studio")?,
                kind: ProductKind::Application,
                app_id: None,
                parent_product_id: None,
                key_prefix: None,
            },
        )
        .await
        .map_err(err)?;
    let product_state = product.aggregate.state().context("product")?.clone();
    let terms = PolicyTerms::new(PolicyTermsInput {
        model: LicenseModel::NodeLocked,
        seats: SeatCount::new(3)?,
        duration_days: Some(365),
        trial_days: None,
        features: FeatureSet::parse(&["pro", "export.pdf"])?,
        offline_allowed: true,
        offline_grace_days: 14,
        payment_grace_days: 7,
        maintenance_months: Some(12),
        lease_seconds: None,
    })?;
    let policy = ledger
        .define_policy(&ctx, product.id, Name::parse("Pro")?, terms.clone())
        .await
        .map_err(err)?;
    let now = chrono::Utc::now();
    let metadata = serde_json::to_string(&EventMetadata::new(Actor::Operator, "bench-seed"))?;
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let batch = (n - i).min(2_000);
        let (mut event_ids, mut stream_ids, mut payloads, mut claims) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for j in i..i + batch {
            let k = key(&product_state.key_prefix, seed, j);
            let hash = hasher.hash(&k);
            let id = uuid::Uuid::now_v7();
            let event = LicenseEvent::Issued(Box::new(LicenseIssued {
                product_id: product.id,
                app_id: product_state.app_id,
                policy_id: policy.id,
                policy_version: 1,
                organization_id: org.id,
                key_hash: hash,
                key_prefix: k.support_prefix(),
                seats: SeatCount::new(3)?,
                features: terms.features.clone(),
                starts_at: now,
                expires_at: Some(now + chrono::Duration::days(365)),
                trial_ends_at: None,
                maintenance_until: None,
                source: LicenseSource::Import,
                terms: terms.clone(),
            }));
            event_ids.push(uuid::Uuid::now_v7());
            stream_ids.push(id.to_string());
            payloads.push(serde_json::to_string(&encode_payload(&event)?)?);
            claims.push(hash.to_hex());
        }
        let claim_streams: Vec<String> = stream_ids
            .iter()
            .map(|s| claim_stream_id(AggregateType::License, s))
            .collect();
        let metadatas = vec![metadata.clone(); stream_ids.len()];
        sqlx::query(
            "WITH c AS (INSERT INTO unique_claims (scope, value, stream_id) \
                        SELECT $7, v, s FROM UNNEST($5::text[], $6::text[]) AS t(v, s)) \
             INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             SELECT e, $8, a, 1, 'LicenseIssued', '1', p::json, m::json \
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[]) AS t(e, a, p, m)",
        )
        .bind(&event_ids)
        .bind(&stream_ids)
        .bind(&payloads)
        .bind(&metadatas)
        .bind(&claims)
        .bind(&claim_streams)
        .bind(ClaimScope::LicenseKey.as_str())
        .bind(AggregateType::License.as_str())
        .execute(pool)
        .await?;
        i += batch;
        if i % 100_000 == 0 || i == n {
            eprintln!(
                "seeded {i} licenses ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!("running every projector to the head…");
    let mut runs = Vec::new();
    for p in projections::all() {
        let pool = pool.clone();
        runs.push(tokio::spawn(async move {
            projections::engine::ensure_checkpoint(&pool, p.name()).await?;
            projections::engine::catch_up_to_head(
                &pool,
                p.as_ref(),
                5_000,
                Duration::from_secs(3_600),
            )
            .await?;
            anyhow::Ok(())
        }));
    }
    for r in runs {
        r.await??;
    }
    eprintln!(
        "seeded and projected in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(Seeded {
        app_id: product_state.app_id.to_string(),
        prefix: product_state.key_prefix,
    })
}

// ----- driving both with wrk -----

pub(crate) struct Process {
    pub(crate) child: Child,
    pub(crate) addr: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")?;
    Ok(kb / 1024.0)
}

pub(crate) fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().context("bench has no directory")?.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: build it with `cargo build --release -p api -p bench -p bench-baseline`",
            path.display()
        );
    }
    Ok(path)
}

pub(crate) fn start_ours(
    ledger: &Path,
    url: &str,
    data_dir: &Path,
) -> anyhow::Result<(Process, Duration)> {
    start_ours_with(ledger, url, data_dir, &[])
}

/// [`start_ours`] with more arguments for `ledger serve`.
pub(crate) fn start_ours_with(
    ledger: &Path,
    url: &str,
    data_dir: &Path,
    more: &[&str],
) -> anyhow::Result<(Process, Duration)> {
    let started = Instant::now();
    let mut child = Command::new(ledger)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--rate-limit-rps",
            "0",
            "--client-rate-limit-rps",
            "0",
        ])
        .arg("--database-url")
        .arg(url)
        .arg("--data-dir")
        .arg(data_dir)
        .args(more)
        .env("LEDGER_KEY_PEPPER", hex::encode(PEPPER))
        .env("LEDGER_LOG_FORMAT", "json")
        .env("RUST_LOG", "warn,api=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let mut addr = None;
    let mut said = Vec::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if let Ok(log) = serde_json::from_str::<Value>(&line)
            && log["fields"]["message"] == "license-ledger listening"
        {
            addr = log["fields"]["addr"].as_str().map(str::to_owned);
            break;
        }
        said.push(line);
    }
    let addr = addr.with_context(|| format!("the server did not start:\n{}", said.join("\n")))?;
    Ok((Process { child, addr }, started.elapsed()))
}

/// Starts `validation-baseline` and hands it the keys of the seeded set on its stdin, one per
/// line, derived here by [`key`]: the baseline derives nothing, so it cannot hold other keys.
fn start_baseline(exe: &Path, seeded: &Seeded, n: u64, seed: u64) -> anyhow::Result<Process> {
    let mut child = Command::new(exe)
        .args(["--licenses", &n.to_string()])
        .args(["--app-id", &seeded.app_id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    // Held by `Process` from here on, so an error below still kills the child.
    let stdin = child.stdin.take().context("stdin")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut baseline = Process {
        child,
        addr: String::new(),
    };
    let mut keys = BufWriter::new(stdin);
    for i in 0..n {
        writeln!(keys, "{}", key(&seeded.prefix, seed, i).expose())?;
    }
    // Dropping stdin is the end of the list: the baseline starts serving once it sees EOF.
    drop(keys.into_inner().map_err(|e| e.into_error())?);
    let line = BufReader::new(stdout)
        .lines()
        .next()
        .context("no output")??;
    baseline.addr = line
        .strip_prefix("listening ")
        .context("unexpected output")?
        .to_owned();
    Ok(baseline)
}

/// wrk's requests/s and p99 latency (seconds).
fn wrk(addr: &str, script: &Path, seconds: u64) -> anyhow::Result<(f64, f64)> {
    wrk_with(addr, script, seconds, 64)
}

/// [`wrk`] with `connections` concurrent connections (two threads, or one for one connection).
pub(crate) fn wrk_with(
    addr: &str,
    script: &Path,
    seconds: u64,
    connections: usize,
) -> anyhow::Result<(f64, f64)> {
    let out = Command::new("wrk")
        .args([
            // wrk refuses fewer connections than threads.
            &format!("-t{}", connections.clamp(1, 2)),
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(format!("http://{addr}"))
        .output()
        .context("wrk is not installed (Debian package `wrk`)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps: f64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("unexpected wrk output:\n{text}"))?;
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(str::trim)
        .and_then(parse_duration)
        .with_context(|| format!("no p99 in wrk output:\n{text}"))?;
    if text.contains("Non-2xx") {
        bail!("wrk saw errors:\n{text}");
    }
    Ok((rps, p99))
}

fn parse_duration(v: &str) -> Option<f64> {
    let (number, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        _ => return None,
    })
}

/// A wrk script cycling, in random order, through a sample of the keys (all of them up to
/// 100,000).
fn write_script(
    script: &Path,
    seeded: &Seeded,
    licenses: u64,
    key_seed: u64,
) -> anyhow::Result<()> {
    let sample = licenses.min(100_000);
    let step = (licenses / sample).max(1);
    let mut lua = String::from(
        "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
    );
    lua.push_str(&format!(
        "wrk.headers[\"X-App-Id\"] = \"{}\"\nlocal bodies = {{\n",
        seeded.app_id
    ));
    for i in 0..sample {
        lua.push_str(&format!(
            "'{{\"key\":\"{}\"}}',\n",
            key(&seeded.prefix, key_seed, i * step).expose()
        ));
    }
    lua.push_str("}\nlocal n = #bodies\nrequest = function()\n  return wrk.format(nil, \"/v1/validate\", nil, bodies[math.random(n)])\nend\n");
    std::fs::write(script, lua)?;
    Ok(())
}

/// Seeds `licenses` into `pool`'s database and writes the wrk script (key seed 42, pepper of this
/// benchmark: start the server with `LEDGER_KEY_PEPPER=5a5a…5a`).
///
/// # Errors
/// Database and file errors.
pub async fn seed_with_script(pool: &PgPool, licenses: u64, script: &Path) -> anyhow::Result<()> {
    let seeded = seed(pool, licenses, 42).await?;
    write_script(script, &seeded, licenses, 42)?;
    eprintln!(
        "App GUID {}; start the server with LEDGER_KEY_PEPPER={}",
        seeded.app_id,
        hex::encode(PEPPER)
    );
    Ok(())
}

/// Seeds, starts both servers, alternates wrk runs and prints a Markdown table.
///
/// # Errors
/// Database, process and wrk errors.
pub async fn run(
    pool: PgPool,
    url: &str,
    licenses: u64,
    seconds: u64,
    cycles: usize,
) -> anyhow::Result<()> {
    // Both servers are found before seeding, which takes minutes at a million licenses.
    let ledger = sibling("ledger")?;
    let baseline_exe = sibling("validation-baseline")?;
    let key_seed = 42;
    let seeded = seed(&pool, licenses, key_seed).await?;
    let data_dir = std::env::temp_dir().join(format!("ledger-bench-{}", uuid::Uuid::now_v7()));
    let (ours, startup) = start_ours(&ledger, url, &data_dir)?;
    let rss_loaded = rss_mib(ours.child.id())?;
    let baseline = start_baseline(&baseline_exe, &seeded, licenses, key_seed)?;
    let baseline_rss = rss_mib(baseline.child.id())?;

    let script = std::env::temp_dir().join(format!("ledger-bench-{}.lua", uuid::Uuid::now_v7()));
    write_script(&script, &seeded, licenses, key_seed)?;

    // Both answer VALID for a seeded key before measuring.
    for (name, p) in [("ours", &ours), ("baseline", &baseline)] {
        let (rps, _) = wrk(&p.addr, &script, 2)?;
        eprintln!("warm-up {name}: {rps:.0} requests/s");
    }
    let (mut rps_ours, mut rps_base, mut p99_ours, mut p99_base) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for cycle in 0..cycles {
        let order: [(&str, &Process); 2] = if cycle % 2 == 0 {
            [("ours", &ours), ("baseline", &baseline)]
        } else {
            [("baseline", &baseline), ("ours", &ours)]
        };
        for (name, p) in order {
            let (rps, p99) = wrk(&p.addr, &script, seconds)?;
            eprintln!(
                "{licenses} licenses cycle {} {name}: {rps:.0} requests/s, p99 {:.2} ms",
                cycle + 1,
                p99 * 1e3
            );
            if name == "ours" {
                rps_ours.push(rps);
                p99_ours.push(p99);
            } else {
                rps_base.push(rps);
                p99_base.push(p99);
            }
        }
    }
    let rss_after = rss_mib(ours.child.id())?;
    let rps_ratio: Vec<f64> = rps_ours.iter().zip(&rps_base).map(|(a, b)| a / b).collect();
    let p99_ratio: Vec<f64> = p99_ours.iter().zip(&p99_base).map(|(a, b)| a / b).collect();
    let (rlo, rhi) = min_max(&rps_ratio);
    let (plo, phi) = min_max(&p99_ratio);
    println!(
        "| {licenses} | {:.0} | {:.0} | {:.2} ({rlo:.2}-{rhi:.2}) | {:.2} / {:.2} | {:.2} ({plo:.2}-{phi:.2}) | {rss_loaded:.0} / {rss_after:.0} | {baseline_rss:.0} | {:.1} |",
        median(&rps_base),
        median(&rps_ours),
        median(&rps_ratio),
        median(&p99_base) * 1e3,
        median(&p99_ours) * 1e3,
        median(&p99_ratio),
        startup.as_secs_f64(),
    );
    let _ = std::fs::remove_file(script);
    drop(ours);
    let _ = std::fs::remove_dir_all(data_dir);
    Ok(())
}

/// The table header for [`run`]'s lines.
pub fn header() {
    println!(
        "\n| licenses | baseline req/s | ours req/s | ours / baseline req/s (median, min-max) | p99 baseline / ours (ms) | ours / baseline p99 (median, min-max) | our RSS loaded / after (MiB) | baseline RSS (MiB) | our start-up (s) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
}
