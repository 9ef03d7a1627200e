//! `bench`: throughput of the ledger's write path against named baselines, in one run, on one
//! database, with the same pool settings, so the ratios mean something on a noisy machine.
//!
//! `bench commands` (issue "foundation") runs, for 1 and 16 concurrent writers:
//! - **raw**: single-row autocommit `INSERT`s of a comparable event row into a copy of `events`
//!   (same columns, constraints and indexes; no triggers, so no hash chain);
//! - **cqrs-es + postgres-es** as shipped: `CqrsFramework` over `PostgresEventRepository`,
//!   registering a new organization per command;
//! - **ours**: `Ledger::register_organization`, the full command path (load, decide, hash-chained
//!   append with the database's triggers).
//!
//! The machine is noisy (shared CPUs, shared disk), so scenarios are measured in short slices,
//! interleaved — raw, postgres-es, ours, then the next cycle in rotated order — and each cycle
//! yields its own ratio from slices measured seconds apart. The report gives the median of the
//! per-cycle ratios (and their spread), not a ratio of averages taken minutes apart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use commands::clock::SystemClock;
use commands::keys::KeyHasher;
use commands::ledger::NewOrganization;
use commands::{CommandContext, EventStore, Ledger};
use cqrs_es::CqrsFramework;
use cqrs_es::persist::PersistedEventStore;
use domain::event::Actor;
use domain::ids::OrganizationId;
use domain::organization::{Organization, OrganizationAction, OrganizationCommand};
use domain::values::{Name, OrganizationKind};
use postgres_es::PostgresEventRepository;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "license-ledger benchmarks against named baselines"
)]
struct Cli {
    /// Server to benchmark on; a fresh database is created on it and dropped afterwards.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    #[command(subcommand)]
    which: Which,
}

#[derive(Debug, Subcommand)]
enum Which {
    /// Command path vs raw INSERT vs cqrs-es + postgres-es.
    Commands {
        /// Milliseconds each scenario runs per slice.
        #[arg(long, default_value_t = 2000)]
        slice_ms: u64,
        /// Cycles of interleaved slices per writer count.
        #[arg(long, default_value_t = 10)]
        cycles: usize,
        /// Writer counts to measure.
        #[arg(long, value_delimiter = ',', default_value = "1,16")]
        writers: Vec<usize>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let name = format!("ledger_bench_{}", chrono::Utc::now().timestamp_millis());
    let (base, _) = cli
        .database_url
        .rsplit_once('/')
        .context("DATABASE_URL has no database")?;
    let url = format!("{base}/{name}");
    let mut admin = PgConnection::connect(&cli.database_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    let result = match cli.which {
        Which::Commands {
            slice_ms,
            cycles,
            writers,
        } => commands_bench(&url, Duration::from_millis(slice_ms), cycles, &writers).await,
    };
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    result
}

/// The raw baseline's table: `events` exactly — same columns, defaults, constraints and indexes —
/// without its triggers (`LIKE` never copies triggers), so "raw" is the cost of storing a
/// comparable row and the ratio is the cost of everything the ledger adds.
const RAW_TABLE: &str = "
CREATE TABLE bench_raw_events (LIKE events INCLUDING ALL);
CREATE TABLE pges_events (
    aggregate_type text NOT NULL, aggregate_id text NOT NULL, sequence bigint CHECK (sequence >= 0) NOT NULL,
    event_type text NOT NULL, event_version text NOT NULL, payload json NOT NULL, metadata json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence));
CREATE TABLE pges_snapshots (
    aggregate_type text NOT NULL, aggregate_id text NOT NULL, last_sequence bigint CHECK (last_sequence >= 0) NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL, payload json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence));
";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    Raw,
    PostgresEs,
    Ours,
}

impl Scenario {
    const ALL: [Self; 3] = [Self::Raw, Self::PostgresEs, Self::Ours];
}

struct Targets {
    raw_pool: PgPool,
    pges: Arc<
        CqrsFramework<Organization, PersistedEventStore<PostgresEventRepository, Organization>>,
    >,
    ledger: Ledger,
}

async fn commands_bench(
    url: &str,
    slice: Duration,
    cycles: usize,
    writers: &[usize],
) -> anyhow::Result<()> {
    commands::db::migrate(url).await?;
    let max = writers.iter().copied().max().unwrap_or(1) as u32 + 4;
    let pool = PgPoolOptions::new()
        .max_connections(max)
        .connect(url)
        .await?;
    sqlx::raw_sql(RAW_TABLE).execute(&pool).await?;
    let targets = Arc::new(Targets {
        raw_pool: pool.clone(),
        pges: Arc::new(CqrsFramework::new(
            PersistedEventStore::new_event_store(
                PostgresEventRepository::new(pool.clone())
                    .with_tables("pges_events", "pges_snapshots"),
            ),
            vec![],
            (),
        )),
        ledger: Ledger::new(
            EventStore::new(pool.clone()),
            KeyHasher::new([1; 32]),
            Arc::new(SystemClock),
        ),
    });
    println!(
        "# bench commands: slices of {} ms, {cycles} interleaved cycles per writer count, writers {writers:?}, PostgreSQL {}",
        slice.as_millis(),
        sqlx::query_scalar::<_, String>("SHOW server_version")
            .fetch_one(&pool)
            .await?
    );
    // Warm up every path (connections, prepared statements, caches).
    for s in Scenario::ALL {
        measure(&targets, s, 4, Duration::from_millis(500)).await?;
    }
    println!();
    println!(
        "| writers | raw INSERT /s | cqrs-es + postgres-es /s | ours /s | ours / raw (median, min-max) | ours / postgres-es (median) | target ours / raw |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &w in writers {
        let mut rates: [Vec<f64>; 3] = Default::default();
        let mut vs_raw = Vec::new();
        let mut vs_pges = Vec::new();
        for cycle in 0..cycles {
            let mut cycle_rates = [0.0; 3];
            for k in 0..3 {
                let i = (cycle + k) % 3;
                cycle_rates[i] = measure(&targets, Scenario::ALL[i], w, slice).await?;
            }
            eprintln!(
                "writers {w:>2} cycle {:>2}: raw {:>6.0}/s  postgres-es {:>6.0}/s  ours {:>6.0}/s  ours/raw {:.2}",
                cycle + 1,
                cycle_rates[0],
                cycle_rates[1],
                cycle_rates[2],
                cycle_rates[2] / cycle_rates[0]
            );
            for i in 0..3 {
                rates[i].push(cycle_rates[i]);
            }
            vs_raw.push(cycle_rates[2] / cycle_rates[0]);
            vs_pges.push(cycle_rates[2] / cycle_rates[1]);
        }
        let target = if w == 1 { "≥ 0.90" } else { "≥ 0.70" };
        let (lo, hi) = min_max(&vs_raw);
        println!(
            "| {w} | {:.0} | {:.0} | {:.0} | {:.2} ({lo:.2}-{hi:.2}) | {:.2} | {target} |",
            median(&rates[0]),
            median(&rates[1]),
            median(&rates[2]),
            median(&vs_raw),
            median(&vs_pges)
        );
    }
    Ok(())
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)))
}

/// Runs `scenario` with `writers` tasks for `duration`; returns completed operations per second.
async fn measure(
    targets: &Arc<Targets>,
    scenario: Scenario,
    writers: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (targets, stop, done) = (targets.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                one(&targets, scenario).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

fn payload() -> serde_json::Value {
    serde_json::json!({"kind": "customer", "name": "Benchmark Organization", "parent_id": null})
}

async fn one(t: &Targets, scenario: Scenario) -> anyhow::Result<()> {
    let id = OrganizationId::from_uuid(uuid::Uuid::now_v7());
    let name = Name::parse("Benchmark Organization").expect("valid");
    match scenario {
        Scenario::Raw => {
            sqlx::query(
                "INSERT INTO bench_raw_events (event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                 VALUES ($1, 'Organization', $2, 1, 'OrganizationRegistered', '1', $3, $4)",
            )
            .bind(uuid::Uuid::now_v7())
            .bind(id.to_string())
            .bind(payload())
            .bind(serde_json::json!({"actor": "system", "correlation_id": "bench"}))
            .execute(&t.raw_pool)
            .await?;
        }
        Scenario::PostgresEs => {
            t.pges
                .execute(
                    &id.to_string(),
                    OrganizationCommand {
                        organization_id: id,
                        at: chrono::Utc::now(),
                        action: OrganizationAction::Register {
                            name,
                            kind: OrganizationKind::Customer,
                            parent: None,
                        },
                    },
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Scenario::Ours => {
            t.ledger
                .register_organization(
                    &CommandContext::new(Actor::System, "bench"),
                    NewOrganization {
                        name,
                        kind: OrganizationKind::Customer,
                        parent_id: None,
                    },
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    Ok(())
}
