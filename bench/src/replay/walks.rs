//! The walks over the whole log that `bench replay` measures each cycle, in rotated order: the
//! plain reads (a) and (a'), the reads of the rebuild (a-r) and of verify (a-v) alone, and the
//! tools themselves, `rebuild --all` (b) and `verify` (d). Each returns (events, seconds).

use std::hint::black_box;
use std::time::Instant;

use anyhow::bail;
use futures_util::TryStreamExt;
use projections::engine::{Checkpoint, EVENT_COLUMNS, read_replay_events, recorded_event};
use replay_tool::progress::Progress;
use replay_tool::verify::{EVENT_TEXT_COLUMNS, event_record};
use sqlx::PgPool;

/// Rows per page of the keyset-paged read, as `replay_tool::rebuild::BATCH`.
pub(super) const PAGE: i64 = replay_tool::rebuild::BATCH;

/// The walks over the whole log measured each cycle: label, description, target.
pub(super) const STEPS: [(&str, &str, &str); 6] = [
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

/// (a): every event in commit order, keyset-paged like the rebuild reader; (events, seconds).
pub(super) async fn read_paged(pool: &PgPool) -> anyhow::Result<(u64, f64)> {
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
pub(super) async fn read_streamed(pool: &PgPool) -> anyhow::Result<(u64, f64)> {
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
pub(super) async fn read_as_rebuild(pool: &PgPool) -> anyhow::Result<(u64, f64)> {
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
pub(super) async fn read_as_verify(pool: &PgPool) -> anyhow::Result<(u64, f64)> {
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
pub(super) async fn rebuild(url: &str, names: &[String], show: bool) -> anyhow::Result<(u64, f64)> {
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
pub(super) async fn verify(pool: &PgPool, expected: u64) -> anyhow::Result<(u64, f64)> {
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
