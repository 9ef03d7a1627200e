//! Measuring side by side on a noisy machine: every scenario runs in short slices, interleaved
//! and rotated each cycle, and each cycle yields its own ratios. Reports give medians of
//! per-cycle ratios, not ratios of averages taken minutes apart.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One operation of a scenario; called concurrently by every writer.
pub type Op =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> + Send + Sync>;

/// Wraps an async closure as an [`Op`].
pub fn op<F, Fut>(f: F) -> Op
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    Arc::new(move || Box::pin(f()))
}

/// Runs `op` with `writers` concurrent tasks for `duration`; completed operations per second.
///
/// # Errors
/// The first error of any operation.
pub async fn rate(op: &Op, writers: usize, duration: Duration) -> anyhow::Result<f64> {
    rate_settled(op, None, writers, duration).await
}

/// As [`rate`], and the slice lasts until `settle` has also run once after the last operation:
/// work a scenario leaves behind its answers (an answer written after the response) is paid
/// in its own slice, not in the next scenario's.
///
/// # Errors
/// The first error of any operation, or of `settle`.
pub async fn rate_settled(
    op: &Op,
    settle: Option<&Op>,
    writers: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (op, stop, done) = (op.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                op().await?;
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
    if let Some(settle) = settle {
        settle().await?;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// Rates of each scenario in each cycle: `result[scenario][cycle]`.
///
/// # Errors
/// The first error of any operation.
pub async fn interleave(
    scenarios: &[(&str, Op)],
    writers: usize,
    slice: Duration,
    cycles: usize,
) -> anyhow::Result<Vec<Vec<f64>>> {
    let settled: Vec<(&str, Op, Option<Op>)> = scenarios
        .iter()
        .map(|(name, op)| (*name, op.clone(), None))
        .collect();
    interleave_settled(&settled, writers, slice, cycles).await
}

/// As [`interleave`], each scenario with its own settling step (see [`rate_settled`]).
///
/// # Errors
/// The first error of any operation.
pub async fn interleave_settled(
    scenarios: &[(&str, Op, Option<Op>)],
    writers: usize,
    slice: Duration,
    cycles: usize,
) -> anyhow::Result<Vec<Vec<f64>>> {
    let n = scenarios.len();
    let mut rates = vec![Vec::new(); n];
    for cycle in 0..cycles {
        let mut line = Vec::new();
        let mut this = vec![0.0; n];
        for k in 0..n {
            let i = (cycle + k) % n;
            let (_, op, settle) = &scenarios[i];
            this[i] = rate_settled(op, settle.as_ref(), writers, slice).await?;
        }
        for (i, r) in this.iter().enumerate() {
            rates[i].push(*r);
            line.push(format!("{} {r:.0}/s", scenarios[i].0));
        }
        eprintln!(
            "writers {writers:>2} cycle {:>2}: {}",
            cycle + 1,
            line.join("  ")
        );
    }
    Ok(rates)
}

/// Per-cycle ratios `a[i] / b[i]`.
pub fn ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x / y).collect()
}

/// The median.
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The smallest and largest.
pub fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)))
}

/// `median (min-max)` of per-cycle ratios.
pub fn ratio_cell(r: &[f64]) -> String {
    let (lo, hi) = min_max(r);
    format!("{:.2} ({lo:.2}-{hi:.2})", median(r))
}
