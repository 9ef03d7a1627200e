//! (c) of `bench replay`: as-of reads of the long license (`application::asof::license_view`)
//! at random instants and at its last `recorded_at`, each alternating sample by sample with the
//! same instant folded without snapshots, and each cross-checked (untimed) against
//! `application::asof::license_as_of`; reported as p50/p99/max.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use domain::Timestamp;
use domain::ids::LicenseId;
use domain::license::{License, LicenseEvent};
use projections::engine::{EVENT_COLUMNS, recorded_event};
use sqlx::PgPool;

use domain::AggregateType;

use super::Options;

/// The baseline of (c): the stream up to `at`, read, decoded and folded, no snapshot;
/// (state, version).
async fn full_fold(pool: &PgPool, id: LicenseId, at: Timestamp) -> anyhow::Result<(License, i64)> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_type = $3 AND aggregate_id = $1 \
         AND recorded_at <= $2 ORDER BY sequence"
    );
    let rows = sqlx::query(&sql)
        .bind(id.to_string())
        .bind(at)
        .bind(AggregateType::License.as_str())
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
pub(super) async fn as_of(pool: &PgPool, id: LicenseId, o: &Options) -> anyhow::Result<()> {
    let (first, last, distinct): (Timestamp, Timestamp, i64) = sqlx::query_as(
        "SELECT min(recorded_at), max(recorded_at), count(DISTINCT recorded_at) FROM events \
         WHERE aggregate_type = $2 AND aggregate_id = $1",
    )
    .bind(id.to_string())
    .bind(AggregateType::License.as_str())
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
