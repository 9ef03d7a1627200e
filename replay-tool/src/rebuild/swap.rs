//! The swap: one transaction per projection that catches its copies up to the commit horizon
//! and puts them in place of the live tables, under the live index names.

use anyhow::{Context, bail};
use projections::ReplaySafe;
use projections::engine::{Checkpoint, read_events};
use sqlx::postgres::{PgConnection, PgPool};

use super::catalog::{constraints, indexes, quote_ident};
use super::{BATCH, Rebuilt, SHADOW_SCHEMA};

/// Catches the copies up to the commit horizon and puts them in place of the live tables, in one
/// transaction that holds the projector's checkpoint row.
pub(super) async fn swap(
    pool: &PgPool,
    projection: &dyn ReplaySafe,
    mut applied: u64,
    walked: Checkpoint,
) -> anyhow::Result<Rebuilt> {
    let name = projection.name();
    projections::engine::ensure_checkpoint(pool, name).await?;
    let mut tx = pool.begin().await?;
    // Live readers hold their table locks for one statement; waiting longer than this means
    // something else is wrong, and giving up leaves the live tables as they were.
    sqlx::query("SET LOCAL lock_timeout = '30s'")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT 1 FROM projector_checkpoints WHERE name = $1 FOR UPDATE")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("SET LOCAL search_path TO {SHADOW_SCHEMA}, public"))
        .execute(&mut *tx)
        .await?;
    let mut at = walked;
    loop {
        let events = read_events(&mut tx, &at, projection.aggregate_types(), BATCH).await?;
        let Some(last) = events.last() else { break };
        at = Checkpoint {
            tx_id: last.tx_id,
            position: last.global_position,
        };
        projection.apply_batch(&mut tx, &events).await?;
        applied += events.len() as u64;
    }
    sqlx::query("SET LOCAL search_path TO public")
        .execute(&mut *tx)
        .await?;
    for table in projection.tables() {
        replace_table(&mut tx, table).await?;
    }
    sqlx::query(
        "UPDATE projector_checkpoints SET last_tx_id = $2::text::xid8, last_position = $3, \
         events_applied = $4, updated_at = now() WHERE name = $1",
    )
    .bind(name)
    .bind(at.tx_id.to_string())
    .bind(at.position)
    .bind(i64::try_from(applied)?)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(
        projection = name,
        events = applied,
        position = at.position,
        "rebuilt and swapped in"
    );
    Ok(Rebuilt {
        projection: name,
        events_applied: applied,
        position: at.position,
    })
}

/// Drops `public.table` and moves the shadow copy into its place, renaming the copy's indexes
/// (and so its constraints) to the live names, which migrations and operators refer to.
async fn replace_table(conn: &mut PgConnection, table: &str) -> anyhow::Result<()> {
    let live = indexes(conn, "public", table).await?;
    let live_constraints = constraints(conn, "public", table).await?;
    let owner: String = sqlx::query_scalar(
        "SELECT tableowner::text FROM pg_tables WHERE schemaname = 'public' AND tablename = $1",
    )
    .bind(table)
    .fetch_one(&mut *conn)
    .await
    .with_context(|| format!("live table {table} is missing"))?;
    sqlx::query(&format!("DROP TABLE public.{table}"))
        .execute(&mut *conn)
        .await?;
    sqlx::query(&format!(
        "ALTER TABLE {SHADOW_SCHEMA}.{table} SET SCHEMA public"
    ))
    .execute(&mut *conn)
    .await?;
    sqlx::query(&format!(
        "ALTER TABLE public.{table} OWNER TO {}",
        quote_ident(&owner)
    ))
    .execute(&mut *conn)
    .await?;
    let moved = indexes(conn, "public", table).await?;
    // The copy's indexes were partly built by this tool (see `prepare_shadow`): one missing would
    // silently leave production without it.
    if let Some((definition, name)) = live.iter().find(|(d, _)| !moved.contains_key(*d)) {
        bail!("the rebuilt {table} lacks index {name} ({definition})");
    }
    // Two steps, so that no rename collides with a name still held by another moved index.
    let mut renames = Vec::new();
    for (definition, name) in &moved {
        let Some(wanted) = live.get(definition) else {
            bail!("index {name} of the rebuilt {table} has no live counterpart ({definition})");
        };
        if wanted != name {
            let temporary = format!("ledger_rebuild_tmp_{}", renames.len());
            sqlx::query(&format!(
                "ALTER INDEX public.{} RENAME TO {temporary}",
                quote_ident(name)
            ))
            .execute(&mut *conn)
            .await?;
            renames.push((temporary, wanted.clone()));
        }
    }
    for (temporary, wanted) in renames {
        sqlx::query(&format!(
            "ALTER INDEX public.{temporary} RENAME TO {}",
            quote_ident(&wanted)
        ))
        .execute(&mut *conn)
        .await?;
    }
    // A unique index is not a primary key (`prepare_shadow` turns some keys into plain unique
    // indexes while the copies fill): the constraints must be the live ones too.
    let moved_constraints = constraints(conn, "public", table).await?;
    if moved_constraints != live_constraints {
        bail!(
            "the rebuilt {table} has constraints {moved_constraints:?}, the live one had {live_constraints:?}"
        );
    }
    Ok(())
}
