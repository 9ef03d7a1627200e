//! `bench replay --per-projection`: where a rebuild's time goes, projection by projection. Each
//! projection rebuilt alone next to a plain read, and each applied alone (then all six) to empty
//! copies of its tables from the log read in index order: the projections' own cost, without the
//! rebuild reader.

use std::time::Instant;

use projections::engine::{EVENT_COLUMNS, recorded_event};
use replay_tool::progress::Progress;
use sqlx::{Connection, PgPool};

use super::walks::{PAGE, read_paged};

/// Each projection rebuilt alone, each next to a plain paged read; then each projection's own
/// cost: the log read in index order and applied to empty copies of its tables, serially.
pub(super) async fn per_projection(url: &str, owner: &PgPool) -> anyhow::Result<()> {
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
