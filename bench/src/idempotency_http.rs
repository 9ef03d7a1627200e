//! Issue #14 through the binary as users run it: `POST /v1/organizations` on `ledger serve`
//! (release build, rate limits off), driven by `wrk` with and without an `Idempotency-Key` (a
//! fresh key per request), in alternating slices. What a vendor's integration sees: the request's
//! whole path (HTTP, authentication, the middleware, the command, the answer, the projectors
//! that follow), and the answers' writes after the responses, which run on the same machine
//! while the next requests are served.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::harness::{median, ratio_cell, ratios};
use crate::validation::{sibling, start_ours, wrk_with};

/// The Lua script of one arm: every request registers an organization; `keyed` adds a key no
/// other request carries: `run` (a nonce the caller draws afresh for every slice: wrk loads
/// the script anew for each run, and its counters restart), the thread, a counter. Runs 1-3
/// of BENCHMARKS.md drew one nonce per bench run, so from the second slice on the keyed arm
/// was mostly replays of earlier answers, which execute nothing.
fn script(token: &str, keyed: bool, run: &str) -> String {
    let key = if keyed {
        r#"headers["Idempotency-Key"] = run .. "-" .. tid .. "-" .. counter"#
    } else {
        ""
    };
    format!(
        r#"local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local counter = 0
run = "{run}"
local body = '{{"name": "Benchmark Organization", "kind": "customer"}}'
function request()
  counter = counter + 1
  local headers = {{}}
  headers["Authorization"] = "Bearer {token}"
  headers["Content-Type"] = "application/json"
  {key}
  return wrk.format("POST", "/v1/organizations", headers, body)
end
"#
    )
}

/// CPU time (user + system) the process has used, from `/proc/<pid>/stat`.
pub(crate) fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces, inside parentheses).
    let rest = stat.rsplit_once(')').context("stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11).context("utime")?.parse::<f64>()?
        + fields.get(12).context("stime")?.parse::<f64>()?;
    // USER_HZ is 100 on Linux.
    Ok(ticks / 100.0)
}

pub(crate) fn mint(ledger: &Path, url: &str) -> anyhow::Result<String> {
    let out = Command::new(ledger)
        .args([
            "token",
            "--role",
            "vendor_admin",
            "--ttl",
            "1h",
            "--database-url",
            url,
        ])
        .output()?;
    if !out.status.success() {
        bail!("ledger token: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// Runs `cycles` pairs of `seconds`-long slices at each number of `connections`.
///
/// # Errors
/// A missing binary or `wrk`, a server that does not start, any non-2xx answer.
pub async fn run(
    url: &str,
    seconds: u64,
    cycles: usize,
    connections: &[usize],
) -> anyhow::Result<()> {
    let ledger = sibling("ledger")?;
    let data_dir = std::env::temp_dir().join(format!("ledger-bench-{}", uuid::Uuid::now_v7()));
    let (ours, _) = start_ours(&ledger, url, &data_dir)?;
    let token = mint(&ledger, url)?;
    let run = uuid::Uuid::now_v7().to_string();
    let dir = std::env::temp_dir();
    let plain = dir.join(format!("ledger-bench-plain-{run}.lua"));
    let keyed = dir.join(format!("ledger-bench-keyed-{run}.lua"));
    std::fs::write(&plain, script(&token, false, &run))?;
    // The keyed script is written before each keyed slice, with a nonce of its own.
    let fresh_keys = || -> std::io::Result<String> {
        let nonce = uuid::Uuid::now_v7().to_string();
        std::fs::write(&keyed, script(&token, true, &nonce))?;
        Ok(nonce)
    };
    // Every answer must come from an executed request: the slice's new events (those with its
    // keys, for the keyed arm) are counted against its answers.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    let last_position = || async {
        sqlx::query_scalar::<_, Option<i64>>("SELECT max(global_position) FROM events")
            .fetch_one(&pool)
            .await
            .map(Option::unwrap_or_default)
    };
    let appended_since = |position: i64, nonce: Option<String>| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM events WHERE global_position > $1 \
                   AND ($2::text IS NULL OR metadata ->> 'idempotency_key' LIKE $2 || '-%')",
            )
            .bind(position)
            .bind(nonce)
            .fetch_one(&pool)
            .await
        }
    };
    // Warm-up of both arms.
    wrk_with(&ours.addr, &plain, 2, 4)?;
    fresh_keys()?;
    wrk_with(&ours.addr, &keyed, 2, 4)?;
    println!(
        "\n| connections | without keys /s | with keys /s | with / without (median, min-max) | p99 without / with (ms) | server CPU µs/request without / with | target |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &c in connections {
        let (mut without, mut with) = (Vec::new(), Vec::new());
        let (mut p99_without, mut p99_with) = (Vec::new(), Vec::new());
        let (mut cpu_without, mut cpu_with) = (Vec::new(), Vec::new());
        for cycle in 0..cycles {
            // Alternating which arm goes first; a pause after each slice, so that the answers
            // written after the keyed slice's last responses are not paid by the next slice.
            let order = if cycle % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for keyed_arm in order {
                let (script, nonce) = if keyed_arm {
                    (&keyed, Some(fresh_keys()?))
                } else {
                    (&plain, None)
                };
                let position_before = last_position().await?;
                let cpu_before = cpu_seconds(ours.child.id())?;
                let (rps, p99) = wrk_with(&ours.addr, script, seconds, c)
                    .with_context(|| format!("wrk, keyed: {keyed_arm}"))?;
                // The server's CPU per request, in µs (the pause below included: the answers
                // written after the slice's responses).
                tokio::time::sleep(Duration::from_millis(500)).await;
                // Each answer wrk counted registered an organization (a replay would not). wrk
                // divides by its actual run time, at least `seconds`: `rps × seconds` is at most
                // the answers it counted, and requests still in flight at its end only add events.
                #[allow(clippy::cast_precision_loss)]
                let appended = appended_since(position_before, nonce).await? as f64;
                #[allow(clippy::cast_precision_loss)]
                let answered = (rps * seconds as f64).floor();
                if appended < answered {
                    bail!(
                        "keyed: {keyed_arm}: {answered:.0} answers but {appended:.0} new events: \
                         some were answered without appending"
                    );
                }
                #[allow(clippy::cast_precision_loss)]
                let us =
                    (cpu_seconds(ours.child.id())? - cpu_before) * 1e6 / (rps * seconds as f64);
                if keyed_arm {
                    with.push(rps);
                    p99_with.push(p99);
                    cpu_with.push(us);
                } else {
                    without.push(rps);
                    p99_without.push(p99);
                    cpu_without.push(us);
                }
            }
            eprintln!(
                "connections {c:>2} cycle {:>2}: without keys {:.0}/s ({:.0} µs CPU)  with keys {:.0}/s ({:.0} µs CPU)",
                cycle + 1,
                without[cycle],
                cpu_without[cycle],
                with[cycle],
                cpu_with[cycle]
            );
        }
        println!(
            "| {c} | {:.0} | {:.0} | {} | {:.2} / {:.2} | {:.0} / {:.0} | ≥ 0.90 at 16 |",
            median(&without),
            median(&with),
            ratio_cell(&ratios(&with, &without)),
            median(&p99_without) * 1000.0,
            median(&p99_with) * 1000.0,
            median(&cpu_without),
            median(&cpu_with),
        );
    }
    let _ = std::fs::remove_file(plain);
    let _ = std::fs::remove_file(keyed);
    drop(ours);
    let _ = std::fs::remove_dir_all(data_dir);
    Ok(())
}
