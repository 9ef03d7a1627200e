//! `bench replay` (issue #4): the auditor's tools on one seeded database, each next to a plain
//! baseline measured in the same run.
//!
//! One fresh database (`bench_replay` by default, dropped and recreated at the start, dropped at
//! the end) is seeded by `replay_tool::seed` (100k licenses, 1M events, one license of 10,000
//! events), vacuumed, and then:
//!
//! - **(a) plain read**: every row of `events` in commit order, decoded with
//!   `projections::engine::recorded_event` and dropped: keyset-paged in batches of 5,000 as the
//!   rebuild reader pages (a), and as one streamed query (a'), both in index order (`ORDER BY
//!   events.tx_id, events.global_position`, qualified:
//!   [`EVENT_COLUMNS`](projections::engine::EVENT_COLUMNS) outputs `tx_id::text::bigint AS
//!   tx_id`, and a bare `ORDER BY tx_id` names that output column, which no index provides, so
//!   PostgreSQL would sort the whole remaining log for every page).
//! - **(a-r)**, **(a-v)**: the reads of the rebuild (`projections::engine::read_replay_events` in a
//!   loop: payload and metadata kept as JSON text)
//!   and of verify (its query and row decoder) exactly as those tools phrase them, with nothing
//!   done with the events: where their time goes.
//! - **(b) `rebuild --all`**: `replay_tool::rebuild::rebuild` of every replayable projection,
//!   shadow tables and swap included; ratio (b)/(a), target ≥ 0.5.
//! - **(d) verify**: `replay_tool::verify::verify_database` (hash chains, sequences; a seeded log
//!   has no signed checkpoints); target ≥ 50,000 events/s, ratios to (a) and (a').
//!
//! All six run `cycles` times, their order rotated each cycle; ratios are medians
//! of per-cycle ratios. Then, on the rebuilt read models (snapshots every 100 events), once no
//! autovacuum worker runs in the database (the swapped-in tables get vacuumed):
//!
//! - **(c) as-of**: `application::asof::license_view` of the long license at random instants
//!   between its first and last `recorded_at`, and at exactly the last one; p50/p99/max, target
//!   p99 < 20 ms. Baseline: the same instant folded without snapshots (every event of the stream
//!   recorded at or before it, read, decoded and folded by `domain::license::License`). The two
//!   alternate sample by sample, and each sample is cross-checked (untimed) against
//!   `application::asof::license_as_of`: same state, same version.
//!
//! The process runs without transparent huge pages, as `ledger-replay` does
//! (`replay_tool::without_huge_pages`): baselines and tools alike.
//!
//! `--per-projection` also rebuilds each projection alone, each next to a plain read, and applies
//! each alone (then all six) to empty copies of its tables from the log read in index order: the
//! projections' own cost, without the rebuild reader's sort.
//!
//! Layout: this module holds the options, the run and the report of the walks; [`walks`] the
//! walks over the whole log measured each cycle, (a) to (d); [`as_of`] the as-of reads (c);
//! [`per_projection`] the `--per-projection` measurements.

mod as_of;
mod per_projection;
mod walks;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use domain::ids::LicenseId;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

use crate::harness::{median, min_max, ratio_cell, ratios};
use as_of::as_of;
use per_projection::per_projection;
use walks::{STEPS, read_as_rebuild, read_as_verify, read_paged, read_streamed, rebuild, verify};

/// Options of `bench replay`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Licenses to seed (the long license included).
    #[arg(long, default_value_t = 100_000)]
    pub licenses: u64,
    /// Events to seed, approximately.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Events of the long license read as of instants.
    #[arg(long, default_value_t = 10_000)]
    pub long_license_events: u64,
    /// Organizations to seed.
    #[arg(long, default_value_t = 1_000)]
    pub organizations: u64,
    /// Cycles of plain reads, rebuild and verify (order rotated each cycle).
    #[arg(long, default_value_t = 3)]
    pub cycles: usize,
    /// As-of reads at random instants between the long license's first and last event.
    #[arg(long, default_value_t = 1_000)]
    pub instants: usize,
    /// As-of reads at exactly the long license's last `recorded_at`.
    #[arg(long, default_value_t = 100)]
    pub at_last: usize,
    /// Also rebuild each projection alone, next to a plain read (where a rebuild's time goes).
    #[arg(long)]
    pub per_projection: bool,
    /// The database to (re)create on the server of DATABASE_URL.
    #[arg(long, default_value = "bench_replay")]
    pub database: String,
    /// Keep the database afterwards.
    #[arg(long)]
    pub keep: bool,
}

/// Recreates the database, seeds it, measures, drops it (unless `--keep`).
///
/// # Errors
/// Database errors, a failed verification, as-of results that disagree with the full fold.
pub async fn run(server_url: &str, o: &Options) -> anyhow::Result<()> {
    // As `ledger-replay` runs: the rebuild here is its library call, in this process. The plain
    // reads it is compared with run in the same process, so under the same setting.
    if let Err(err) = replay_tool::without_huge_pages() {
        eprintln!("transparent huge pages stay on ({err}), as they would for ledger-replay");
    }
    ensure!(
        !o.database.is_empty()
            && o.database
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "--database must be a plain lower-case identifier"
    );
    ensure!(
        o.cycles > 0,
        "--cycles must be at least 1 (as-of reads need a rebuild)"
    );
    let (base, _) = server_url
        .rsplit_once('/')
        .context("DATABASE_URL has no database")?;
    let url = format!("{base}/{}", o.database);
    let mut admin = PgConnection::connect(server_url).await?;
    let drop_sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", o.database);
    sqlx::query(&drop_sql).execute(&mut admin).await?;
    sqlx::query(&format!("CREATE DATABASE {}", o.database))
        .execute(&mut admin)
        .await?;
    let result = measure(&url, o).await;
    if !o.keep {
        sqlx::query(&drop_sql).execute(&mut admin).await?;
    }
    let _ = admin.close().await;
    result
}

/// Per-cycle figures of one measurement.
#[derive(Default)]
struct Series {
    events: u64,
    seconds: Vec<f64>,
    rates: Vec<f64>,
}

impl Series {
    fn push(&mut self, events: u64, seconds: f64) {
        self.events = events;
        self.seconds.push(seconds);
        self.rates.push(events as f64 / seconds.max(1e-9));
    }
}

async fn measure(url: &str, o: &Options) -> anyhow::Result<()> {
    commands::db::migrate(url).await?;
    // The application role, as `ledger-replay seed|verify|state` and the API use.
    let app = commands::db::connect(url, 4).await?;
    // The schema owner, for the plain reads and VACUUM.
    let owner = PgPoolOptions::new().max_connections(4).connect(url).await?;
    println!(
        "# PostgreSQL {}",
        sqlx::query_scalar::<_, String>("SHOW server_version")
            .fetch_one(&owner)
            .await?
    );

    // Seed.
    let options = replay_tool::seed::SeedOptions {
        licenses: o.licenses,
        events: o.events,
        long_license_events: o.long_license_events,
        organizations: o.organizations,
    };
    let tenth = AtomicU64::new(0);
    let seeded = replay_tool::seed::seed(&app, &options, &|done, total| {
        let step = done * 10 / total.max(1);
        if tenth.fetch_max(step, Ordering::Relaxed) < step {
            eprintln!("seed: {done}/{total} events");
        }
    })
    .await?;
    eprintln!(
        "seeded {} events ({} licenses, {} organizations) in {:.0} s",
        seeded.events, seeded.licenses, seeded.organizations, seeded.seconds
    );
    let started = Instant::now();
    sqlx::query("VACUUM (ANALYZE) events")
        .execute(&owner)
        .await?;
    eprintln!(
        "VACUUM (ANALYZE) events: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // The seeding left about a GB of dirty pages and WAL: written out now, rather than by the
    // checkpointer during the first cycles' measurements.
    let started = Instant::now();
    match sqlx::query("CHECKPOINT").execute(&owner).await {
        Ok(_) => eprintln!("CHECKPOINT: {:.1} s", started.elapsed().as_secs_f64()),
        Err(err) => eprintln!(
            "CHECKPOINT refused ({err}): the first cycles may pay for the seeding's writes"
        ),
    }

    // Warm-up (untimed in the results): the log into the caches.
    let (n, s) = read_paged(&owner).await?;
    eprintln!("warm-up read: {n} events in {s:.1} s");

    // (a), (a'), (a-r), (a-v), (b), (d), in this order in `series`.
    let mut series: Vec<Series> = (0..STEPS.len()).map(|_| Series::default()).collect();
    for cycle in 0..o.cycles {
        let mut line = Vec::new();
        for k in 0..STEPS.len() {
            let step = (cycle + k) % STEPS.len();
            let (n, s) = match step {
                0 => read_paged(&owner).await?,
                1 => read_streamed(&owner).await?,
                2 => read_as_rebuild(&owner).await?,
                3 => read_as_verify(&owner).await?,
                4 => rebuild(url, &[], cycle == 0).await?,
                _ => verify(&app, seeded.events).await?,
            };
            series[step].push(n, s);
            line.push(format!("{} {:.0}/s", STEPS[step].0, n as f64 / s));
        }
        eprintln!("cycle {:>2}: {}", cycle + 1, line.join("  "));
    }
    for s in &series {
        ensure!(
            s.events == seeded.events,
            "a walk saw {} events, the seed wrote {}",
            s.events,
            seeded.events
        );
    }

    println!();
    println!(
        "Seeded: {} events, {} licenses, {} organizations, long license of {} events; {} cycles.",
        seeded.events, seeded.licenses, seeded.organizations, o.long_license_events, o.cycles
    );
    println!();
    println!(
        "| step | s (median) | events/s (median) | ratio (median of cycles, min-max) | target |"
    );
    println!("|---|---:|---:|---:|---:|");
    let vs = |a: usize, b: usize| {
        format!(
            "{} × {}",
            ratio_cell(&ratios(&series[a].rates, &series[b].rates)),
            STEPS[b].0
        )
    };
    let ratio_cells: [String; 6] = [
        "1.00".to_owned(),
        vs(1, 0),
        vs(2, 0),
        vs(3, 1),
        format!("{}; {}", vs(4, 0), vs(4, 2)),
        format!("{}; {}; {}", vs(5, 0), vs(5, 1), vs(5, 3)),
    ];
    for (step, ratio) in ratio_cells.iter().enumerate() {
        let (name, what, target) = STEPS[step];
        println!(
            "| {name} {what} | {:.1} | {:.0} | {ratio} | {target} |",
            median(&series[step].seconds),
            median(&series[step].rates)
        );
    }
    let (lo, hi) = min_max(&series[5].rates);
    println!();
    println!("verify events/s per cycle: min {lo:.0}, max {hi:.0}");

    // (c) as-of reads of the long license, on the read models the rebuilds left, once the
    // autovacuum of the swapped-in tables is over (on two vCPUs it takes one of them).
    let waited = quiet_autovacuum(&owner, Duration::from_secs(300)).await?;
    eprintln!("waited {waited:.0} s for autovacuum to finish");
    let long = seeded
        .long_license_id
        .context("the seed wrote no long license (--long-license-events 0)")?;
    as_of(&app, LicenseId::from_uuid(long), o).await?;

    if o.per_projection {
        per_projection(url, &owner).await?;
    }
    app.close().await;
    owner.close().await;
    Ok(())
}

/// Waits (up to `limit`) until no autovacuum worker runs in this database; seconds waited.
async fn quiet_autovacuum(pool: &PgPool, limit: Duration) -> anyhow::Result<f64> {
    let started = Instant::now();
    while started.elapsed() < limit {
        let busy: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity \
             WHERE backend_type = 'autovacuum worker' AND datname = current_database())",
        )
        .fetch_one(pool)
        .await?;
        if !busy {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(started.elapsed().as_secs_f64())
}
