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
//!   events.tx_id, events.global_position`, qualified: [`EVENT_COLUMNS`] outputs
//!   `tx_id::text::bigint AS tx_id`, and a bare `ORDER BY tx_id` names that output column, which
//!   no index provides, so PostgreSQL would sort the whole remaining log for every page).
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
//! - **(c) as-of**: `api::timetravel::license_view_as_of` of the long license at random instants
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

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use domain::Timestamp;
use domain::ids::LicenseId;
use domain::license::{License, LicenseEvent};
use futures_util::TryStreamExt;
use projections::engine::{Checkpoint, EVENT_COLUMNS, read_replay_events, recorded_event};
use replay_tool::progress::Progress;
use replay_tool::verify::{EVENT_TEXT_COLUMNS, event_record};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

use crate::harness::{median, min_max, ratio_cell, ratios};

/// Rows per page of the keyset-paged read, as `replay_tool::rebuild::BATCH`.
const PAGE: i64 = replay_tool::rebuild::BATCH;

/// The walks over the whole log measured each cycle: label, description, target.
const STEPS: [(&str, &str, &str); 6] = [
    (
        "(a)",
        "plain read, keyset pages of 5,000 in index order (`ORDER BY events.tx_id, events.global_position`)",
        "—",
    ),
    ("(a')", "plain read, one streamed query in index order", "—"),
    (
        "(a-r)",
        "the rebuild's reading alone: `projections::engine::read_replay_events` pages of 5,000, fetched and decoded in turn",
        "—",
    ),
    (
        "(a-v)",
        "verify's read alone: its query (`EVENT_TEXT_COLUMNS`, index order) and row decoder",
        "—",
    ),
    ("(b)", "`rebuild --all`", "≥ 0.5 × (a)"),
    ("(d)", "`verify`", "≥ 50,000/s"),
];

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

/// (a): every event in commit order, keyset-paged like the rebuild reader; (events, seconds).
async fn read_paged(pool: &PgPool) -> anyhow::Result<(u64, f64)> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE (tx_id, global_position) > ($1::text::xid8, $2) \
         ORDER BY events.tx_id, events.global_position LIMIT $3"
    );
    let mut conn = pool.acquire().await?;
    let started = Instant::now();
    let (mut tx_id, mut position) = (0_i64, 0_i64);
    let mut n = 0_u64;
    loop {
        let rows = sqlx::query(&sql)
            .bind(tx_id.to_string())
            .bind(position)
            .bind(PAGE)
            .fetch_all(&mut *conn)
            .await?;
        let events = rows
            .iter()
            .map(recorded_event)
            .collect::<Result<Vec<_>, _>>()?;
        let Some(last) = events.last() else { break };
        (tx_id, position) = (last.tx_id, last.global_position);
        n += events.len() as u64;
        black_box(events);
    }
    Ok((n, started.elapsed().as_secs_f64()))
}

/// (a'): every event in commit order, one streamed query; (events, seconds).
async fn read_streamed(pool: &PgPool) -> anyhow::Result<(u64, f64)> {
    let sql =
        format!("SELECT {EVENT_COLUMNS} FROM events ORDER BY events.tx_id, events.global_position");
    let mut conn = pool.acquire().await?;
    let started = Instant::now();
    let mut n = 0_u64;
    let mut rows = sqlx::query(&sql).fetch(&mut *conn);
    while let Some(row) = rows.try_next().await? {
        black_box(recorded_event(&row)?);
        n += 1;
    }
    Ok((n, started.elapsed().as_secs_f64()))
}

/// (a-r): every event through `projections::engine::read_replay_events`: the rebuild's reading,
/// page fetch and row decoding in turn (a rebuild decodes on another task while it fetches the
/// next page); all types, pages of `replay_tool::rebuild::BATCH`; (events, seconds).
async fn read_as_rebuild(pool: &PgPool) -> anyhow::Result<(u64, f64)> {
    let mut conn = pool.acquire().await?;
    let started = Instant::now();
    let mut at = Checkpoint::default();
    let mut n = 0_u64;
    loop {
        let events = read_replay_events(&mut conn, &at, PAGE).await?;
        let Some(last) = events.last() else { break };
        at = Checkpoint {
            tx_id: last.tx_id,
            position: last.global_position,
        };
        n += events.len() as u64;
        black_box(events);
    }
    Ok((n, started.elapsed().as_secs_f64()))
}

/// (a-v): every event as `verify_database` reads it (its query and row decoder), without the
/// checks; (events, seconds).
async fn read_as_verify(pool: &PgPool) -> anyhow::Result<(u64, f64)> {
    // The query of `verify_database`.
    let sql = format!(
        "SELECT {EVENT_TEXT_COLUMNS} FROM events ORDER BY events.tx_id, events.global_position"
    );
    let mut conn = pool.acquire().await?;
    let started = Instant::now();
    let mut n = 0_u64;
    let mut rows = sqlx::query(&sql).fetch(&mut *conn);
    while let Some(row) = rows.try_next().await? {
        black_box(event_record(&row)?);
        n += 1;
    }
    Ok((n, started.elapsed().as_secs_f64()))
}

/// (b): a rebuild of `names` (all when empty); (events read, seconds as the report gives them).
async fn rebuild(url: &str, names: &[String], show: bool) -> anyhow::Result<(u64, f64)> {
    let selected = replay_tool::rebuild::select(names)?;
    let report =
        replay_tool::rebuild::rebuild(url, selected, &Progress::quiet("rebuild", 0)).await?;
    if show {
        for p in &report.projections {
            eprintln!(
                "  rebuilt {:<14} {:>9} events applied",
                p.projection, p.events_applied
            );
        }
    }
    Ok((report.events_read, report.seconds))
}

/// (d): `verify_database` with no keys (a seeded log has no checkpoints); (events, seconds).
async fn verify(pool: &PgPool, expected: u64) -> anyhow::Result<(u64, f64)> {
    let started = Instant::now();
    let outcome =
        replay_tool::verify::verify_database(pool, None, &Progress::quiet("verify", expected))
            .await?;
    let seconds = started.elapsed().as_secs_f64();
    match outcome {
        Ok(summary) => Ok((summary.events, seconds)),
        Err(failure) => bail!("verification failed on the seeded log: {failure}"),
    }
}

/// The baseline of (c): the stream up to `at`, read, decoded and folded, no snapshot;
/// (state, version).
async fn full_fold(pool: &PgPool, id: LicenseId, at: Timestamp) -> anyhow::Result<(License, i64)> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_type = 'License' AND aggregate_id = $1 \
         AND recorded_at <= $2 ORDER BY sequence"
    );
    let rows = sqlx::query(&sql)
        .bind(id.to_string())
        .bind(at)
        .fetch_all(pool)
        .await?;
    let mut license = License::NotIssued;
    let mut version = 0;
    for row in &rows {
        let event = recorded_event(row)?;
        license.fold(event.decode::<LicenseEvent>()?);
        version = event.sequence;
    }
    Ok((license, version))
}

/// One timed `license_view_as_of`.
async fn time_view(pool: &PgPool, id: LicenseId, at: Timestamp) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let view = application::asof::license_view(pool, id, at).await?;
    let took = started.elapsed();
    ensure!(view.is_some(), "license {id} not found as of {at}");
    black_box(view);
    Ok(took)
}

/// Latencies of one kind of instant.
#[derive(Default)]
struct Latencies {
    as_of: Vec<Duration>,
    full: Vec<Duration>,
    folded: Vec<usize>,
    full_events: Vec<i64>,
}

/// Nearest-rank percentile of sorted durations, in ms.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e3
}

/// (c): as-of reads of the long license vs the full fold, alternating sample by sample.
async fn as_of(pool: &PgPool, id: LicenseId, o: &Options) -> anyhow::Result<()> {
    let (first, last, distinct): (Timestamp, Timestamp, i64) = sqlx::query_as(
        "SELECT min(recorded_at), max(recorded_at), count(DISTINCT recorded_at) FROM events \
         WHERE aggregate_type = 'License' AND aggregate_id = $1",
    )
    .bind(id.to_string())
    .fetch_one(pool)
    .await?;
    let snapshots: i64 =
        sqlx::query_scalar("SELECT count(*) FROM rm_license_snapshots WHERE license_id = $1")
            .bind(uuid::Uuid::from(id))
            .fetch_one(pool)
            .await?;
    eprintln!(
        "long license {id}: {first} .. {last}, {distinct} distinct recorded_at, {snapshots} snapshots"
    );
    let span = u64::try_from((last - first).num_microseconds().unwrap_or(0)).unwrap_or(0);
    // Fixed seed: the same instants every run.
    let mut rng = replay_tool::seed::Rng(0xA50F_2026);
    let random: Vec<Timestamp> = (0..o.instants)
        .map(|_| {
            let offset = i64::try_from(rng.below(span + 1)).unwrap_or(0);
            first + chrono::Duration::microseconds(offset)
        })
        .collect();
    let at_last = vec![last; o.at_last];

    // Warm-up: plans and pages into the caches.
    for at in random.iter().take(20) {
        black_box(application::asof::license_view(pool, id, *at).await?);
        black_box(full_fold(pool, id, *at).await?);
    }

    let mut mismatches = 0_usize;
    let mut measured = Vec::new();
    for (label, instants) in [
        ("random instants between first and last", &random),
        ("at the last recorded_at", &at_last),
    ] {
        let mut l = Latencies::default();
        for (i, at) in instants.iter().enumerate() {
            let (d_as_of, (d_full, (full, version))) = if i % 2 == 0 {
                let a = time_view(pool, id, *at).await?;
                let started = Instant::now();
                let f = full_fold(pool, id, *at).await?;
                (a, (started.elapsed(), f))
            } else {
                let started = Instant::now();
                let f = full_fold(pool, id, *at).await?;
                let d = started.elapsed();
                (time_view(pool, id, *at).await?, (d, f))
            };
            // Untimed cross-check: the snapshot path folds to the same state and version.
            let found = application::asof::license_as_of(pool, id, *at)
                .await?
                .context("as-of found nothing")?;
            if Some(&found.state) != full.state() || found.version != version {
                mismatches += 1;
            }
            l.as_of.push(d_as_of);
            l.full.push(d_full);
            l.folded.push(found.events_folded);
            l.full_events.push(version);
        }
        measured.push((label, l));
    }

    println!();
    println!(
        "As-of reads of the long license ({} events, {snapshots} snapshots, {distinct} distinct \
         recorded_at), `license_view_as_of` vs the same instant folded without snapshots:",
        o.long_license_events
    );
    println!();
    println!(
        "| instants | n | as-of p50 / p99 / max (ms) | events folded after the snapshot (mean / max) | \
         full fold p50 / p99 / max (ms) | events in the full fold (mean) | full fold / as-of p50, p99 | target as-of p99 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut all = Latencies::default();
    for (label, l) in &measured {
        print_latency_row(label, l);
        all.as_of.extend(&l.as_of);
        all.full.extend(&l.full);
        all.folded.extend(&l.folded);
        all.full_events.extend(&l.full_events);
    }
    print_latency_row("all", &all);
    println!();
    println!(
        "as-of state and version equal to the full fold's in every sample: {}",
        if mismatches == 0 {
            "yes".to_owned()
        } else {
            format!("NO, {mismatches} mismatches")
        }
    );
    ensure!(
        mismatches == 0,
        "{mismatches} as-of results differ from the full fold"
    );
    Ok(())
}

fn print_latency_row(label: &str, l: &Latencies) {
    let mut a = l.as_of.clone();
    let mut f = l.full.clone();
    a.sort();
    f.sort();
    let n = a.len().max(1) as f64;
    let folded_mean = l.folded.iter().sum::<usize>() as f64 / n;
    let folded_max = l.folded.iter().max().copied().unwrap_or(0);
    let full_mean = l.full_events.iter().sum::<i64>() as f64 / n;
    let (a50, a99, amax) = (
        percentile(&a, 0.5),
        percentile(&a, 0.99),
        percentile(&a, 1.0),
    );
    let (f50, f99, fmax) = (
        percentile(&f, 0.5),
        percentile(&f, 0.99),
        percentile(&f, 1.0),
    );
    println!(
        "| {label} | {} | {a50:.2} / {a99:.2} / {amax:.2} | {folded_mean:.0} / {folded_max} | \
         {f50:.2} / {f99:.2} / {fmax:.2} | {full_mean:.0} | {:.1}, {:.1} | < 20 ms |",
        a.len(),
        f50 / a50,
        f99 / a99
    );
}

/// Each projection rebuilt alone, each next to a plain paged read; then each projection's own
/// cost: the log read in index order and applied to empty copies of its tables, serially.
async fn per_projection(url: &str, owner: &PgPool) -> anyhow::Result<()> {
    println!();
    println!(
        "Each projection rebuilt alone (every rebuild reads the whole log with `read_replay_events`), \
         and applied alone from the log read in index order (`ORDER BY events.tx_id, \
         events.global_position`, pages of 5,000, read then apply, no overlap):"
    );
    println!();
    println!(
        "| projection | events applied | rebuild alone s | rebuild events read/s | (a) events/s | \
         rebuild / (a) | index-ordered read + apply s | read + apply events/s | read + apply / (a) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let all = projections::replayable();
    for projection in &all {
        let name = projection.name().to_owned();
        let (n_a, s_a) = read_paged(owner).await?;
        let selected = replay_tool::rebuild::select(std::slice::from_ref(&name))?;
        let report =
            replay_tool::rebuild::rebuild(url, selected, &Progress::quiet("rebuild", 0)).await?;
        let applied: u64 = report.projections.iter().map(|p| p.events_applied).sum();
        let rate = report.events_read as f64 / report.seconds;
        let rate_a = n_a as f64 / s_a;
        let (read, _, seconds) = apply_only(owner, std::slice::from_ref(projection)).await?;
        let rate_apply = read as f64 / seconds;
        eprintln!(
            "  {name}: rebuild {rate:.0} events/s, read + apply {rate_apply:.0}/s (plain read {rate_a:.0}/s)"
        );
        println!(
            "| {name} | {applied} | {:.1} | {rate:.0} | {rate_a:.0} | {:.2} | {seconds:.1} | {rate_apply:.0} | {:.2} |",
            report.seconds,
            rate / rate_a,
            rate_apply / rate_a
        );
    }
    let (n_a, s_a) = read_paged(owner).await?;
    let (read, applied, seconds) = apply_only(owner, &all).await?;
    let rate_a = n_a as f64 / s_a;
    println!(
        "| all six, one after the other per page | {applied} | — | — | {rate_a:.0} | — | {seconds:.1} | {:.0} | {:.2} |",
        read as f64 / seconds,
        read as f64 / seconds / rate_a
    );
    Ok(())
}

/// Empty copies of `selected`'s tables in a schema of their own, filled from the whole log read
/// in index order (pages of `PAGE`); each page is read, then applied by each projection in turn,
/// one transaction per projection and page, as a rebuild worker does. (events read, events
/// applied, seconds); the copies are dropped afterwards.
async fn apply_only(
    owner: &PgPool,
    selected: &[std::sync::Arc<dyn projections::ReplaySafe>],
) -> anyhow::Result<(u64, u64, f64)> {
    const SCHEMA: &str = "bench_apply";
    let mut conn = owner.acquire().await?.detach();
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        .execute(&mut conn)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA {SCHEMA}"))
        .execute(&mut conn)
        .await?;
    for projection in selected {
        for table in projection.tables() {
            sqlx::query(&format!(
                "CREATE TABLE {SCHEMA}.{table} (LIKE public.{table} INCLUDING ALL)"
            ))
            .execute(&mut conn)
            .await?;
        }
    }
    sqlx::query(&format!("SET search_path TO {SCHEMA}, public"))
        .execute(&mut conn)
        .await?;
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE (tx_id, global_position) > ($1::text::xid8, $2) \
         ORDER BY events.tx_id, events.global_position LIMIT $3"
    );
    let mut reader = owner.acquire().await?;
    let started = Instant::now();
    let (mut tx_id, mut position) = (0_i64, 0_i64);
    let (mut read, mut applied) = (0_u64, 0_u64);
    loop {
        let rows = sqlx::query(&sql)
            .bind(tx_id.to_string())
            .bind(position)
            .bind(PAGE)
            .fetch_all(&mut *reader)
            .await?;
        let events = rows
            .iter()
            .map(recorded_event)
            .collect::<Result<Vec<_>, _>>()?;
        let Some(last) = events.last() else { break };
        (tx_id, position) = (last.tx_id, last.global_position);
        read += events.len() as u64;
        for projection in selected {
            let mine = events_for(projection.as_ref(), &events);
            if mine.is_empty() {
                continue;
            }
            let mut tx = conn.begin().await?;
            projection.apply_batch(&mut tx, &mine).await?;
            tx.commit().await?;
            applied += mine.len() as u64;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(reader);
    sqlx::query(&format!("DROP SCHEMA {SCHEMA} CASCADE"))
        .execute(&mut conn)
        .await?;
    let _ = conn.close().await;
    Ok((read, applied, seconds))
}

/// The events of `batch` that `projection` reads (`replay_tool::rebuild::reads`), borrowed when
/// that is all of them (audit's), as a live projector would get them.
fn events_for<'a>(
    projection: &dyn projections::ReplaySafe,
    batch: &'a [domain::event::RecordedEvent],
) -> std::borrow::Cow<'a, [domain::event::RecordedEvent]> {
    if projection.aggregate_types().is_empty() {
        std::borrow::Cow::Borrowed(batch)
    } else {
        std::borrow::Cow::Owned(
            batch
                .iter()
                .filter(|e| replay_tool::rebuild::reads(projection, &e.aggregate_type))
                .cloned()
                .collect(),
        )
    }
}
