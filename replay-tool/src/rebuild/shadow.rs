//! The shadow schema: empty copies of the live tables (same grants and storage parameters,
//! non-unique indexes and some primary keys left for later), and the sessions the workers write
//! them through.

use std::sync::Arc;

use anyhow::{Context, bail};
use projections::ReplaySafe;
use sqlx::postgres::{PgConnection, PgPool};

use super::SHADOW_SCHEMA;
use super::catalog::{constraints, plain_indexes, primary_key, quote_ident};

/// What [`prepare_shadow`] left to do once the copies are filled.
pub(super) struct Shadow {
    /// Per projection, the statements that build the indexes it left out.
    pub(super) deferred: Vec<Vec<String>>,
    /// The statements that make primary keys of the unique indexes among those.
    pub(super) keys: Vec<String>,
}

/// Empty copies of every table of `selected` in the shadow schema, with the live grants. The
/// copies keep their primary keys and unique indexes (upserts need them) but not the others:
/// filling a table and then building an index is several times cheaper than keeping the index
/// current row by row. The tables of a projection that only inserts
/// ([`ReplaySafe::only_inserts`]) lose their primary keys too, rebuilt as unique indexes with
/// the others and made keys again before the swap ([`Shadow::keys`]).
pub(super) async fn prepare_shadow(
    pool: &PgPool,
    selected: &[Arc<dyn ReplaySafe>],
) -> anyhow::Result<Shadow> {
    let mut tx = pool.begin().await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA {SHADOW_SCHEMA}"))
        .execute(&mut *tx)
        .await?;
    let mut deferred = Vec::new();
    let mut keys = Vec::new();
    for projection in selected {
        let mut later = Vec::new();
        for table in projection.tables() {
            sqlx::query(&format!(
                "CREATE TABLE {SHADOW_SCHEMA}.{table} (LIKE public.{table} INCLUDING ALL)"
            ))
            .execute(&mut *tx)
            .await
            .with_context(|| format!("copying the definition of table {table}"))?;
            copy_storage_parameters(&mut tx, table).await?;
            // The swap requires the live constraints (`replace_table`); one that `LIKE` does not
            // copy (a foreign key) would fail every rebuild at its very end: say so now.
            let live_constraints = constraints(&mut tx, "public", table).await?;
            let copied = constraints(&mut tx, SHADOW_SCHEMA, table).await?;
            if copied != live_constraints {
                bail!(
                    "cannot copy the constraints of {table}: live {live_constraints:?}, copy \
                     {copied:?} (a rebuild copies tables with LIKE … INCLUDING ALL)"
                );
            }
            for (name, _) in plain_indexes(&mut tx, SHADOW_SCHEMA, table).await? {
                sqlx::query(&format!(
                    "DROP INDEX {SHADOW_SCHEMA}.{}",
                    quote_ident(&name)
                ))
                .execute(&mut *tx)
                .await?;
            }
            // A projection that only inserts needs no key to write its rows: its primary key is
            // built with the other indexes (a unique index, under the constraint's name) and
            // made the key again before the swap. Keeping it current row by row cost a rebuild
            // more than building it (ADR 0010).
            if projection.only_inserts()
                && let Some((name, definition)) = primary_key(&mut tx, SHADOW_SCHEMA, table).await?
            {
                let Some((_, tail)) = definition.split_once(" USING ") else {
                    bail!("cannot read the definition of index {name}: {definition}");
                };
                let name = quote_ident(&name);
                sqlx::query(&format!(
                    "ALTER TABLE {SHADOW_SCHEMA}.{table} DROP CONSTRAINT {name}"
                ))
                .execute(&mut *tx)
                .await?;
                later.push(format!(
                    "CREATE UNIQUE INDEX {name} ON {SHADOW_SCHEMA}.{table} USING {tail}"
                ));
                keys.push(format!(
                    "ALTER TABLE {SHADOW_SCHEMA}.{table} ADD CONSTRAINT {name} \
                     PRIMARY KEY USING INDEX {name}"
                ));
            }
            // Built under the live names: the swap then has nothing to rename.
            for (name, definition) in plain_indexes(&mut tx, "public", table).await? {
                let Some((_, tail)) = definition.split_once(" USING ") else {
                    bail!("cannot read the definition of index {name}: {definition}");
                };
                later.push(format!(
                    "CREATE INDEX {} ON {SHADOW_SCHEMA}.{table} USING {tail}",
                    quote_ident(&name)
                ));
            }
            // The same privileges as the live table, so the swapped-in table serves the server.
            let grants: Vec<(String, String)> = sqlx::query_as(
                "SELECT grantee, string_agg(privilege_type, ', ') FROM information_schema.role_table_grants \
                 WHERE table_schema = 'public' AND table_name = $1 \
                   AND grantee <> (SELECT tableowner FROM pg_tables WHERE schemaname = 'public' AND tablename = $1) \
                 GROUP BY grantee",
            )
            .bind(table)
            .fetch_all(&mut *tx)
            .await?;
            for (grantee, privileges) in grants {
                sqlx::query(&format!(
                    "GRANT {privileges} ON {SHADOW_SCHEMA}.{table} TO {}",
                    quote_ident(&grantee)
                ))
                .execute(&mut *tx)
                .await?;
            }
        }
        deferred.push(later);
    }
    tx.commit().await?;
    Ok(Shadow { deferred, keys })
}

/// Gives the shadow copy of `table` the live table's storage parameters (`fillfactor`,
/// `toast_tuple_target`, autovacuum settings, and those of its TOAST table), which `LIKE` leaves
/// behind: the swapped-in table must be stored as the migrations and the operator set it.
async fn copy_storage_parameters(conn: &mut PgConnection, table: &str) -> anyhow::Result<()> {
    let (own, toast): (Option<Vec<String>>, Option<Vec<String>>) = sqlx::query_as(
        "SELECT c.reloptions::text[], t.reloptions::text[] FROM pg_class c \
         LEFT JOIN pg_class t ON t.oid = c.reltoastrelid WHERE c.oid = $1::regclass",
    )
    .bind(format!("public.{table}"))
    .fetch_one(&mut *conn)
    .await
    .with_context(|| format!("reading the storage parameters of table {table}"))?;
    // The catalog keeps each option as `name=value` with the value as the operator wrote it
    // (`fillfactor='0x5A'` is stored as `fillfactor=0x5A`, which does not parse back): each part
    // goes back quoted, the value as a string, which PostgreSQL parses as it did the first time.
    let quoted = |prefix: &str, option: &str| -> anyhow::Result<String> {
        let Some((name, value)) = option.split_once('=') else {
            bail!("cannot read storage parameter {option:?} of table {table}");
        };
        Ok(format!(
            "{prefix}{} = '{}'",
            quote_ident(name),
            value.replace('\'', "''")
        ))
    };
    let options = own
        .unwrap_or_default()
        .iter()
        .map(|o| quoted("", o))
        .chain(
            toast
                .unwrap_or_default()
                .iter()
                .map(|o| quoted("toast.", o)),
        )
        .collect::<anyhow::Result<Vec<String>>>()?;
    if !options.is_empty() {
        sqlx::query(&format!(
            "ALTER TABLE {SHADOW_SCHEMA}.{table} SET ({})",
            options.join(", ")
        ))
        .execute(&mut *conn)
        .await
        .with_context(|| format!("copying the storage parameters of table {table}"))?;
    }
    Ok(())
}

/// A connection whose unqualified table names resolve to the shadow copies first.
pub(super) async fn shadow_connection(pool: &PgPool) -> anyhow::Result<PgConnection> {
    let mut conn = pool.acquire().await?.detach();
    sqlx::query(&format!("SET search_path TO {SHADOW_SCHEMA}, public"))
        .execute(&mut conn)
        .await?;
    // Nobody reads the copies before the swap, and a crash discards them: their commits need
    // not wait for the disk. Index builds get room to sort in memory.
    sqlx::query("SET synchronous_commit TO off")
        .execute(&mut conn)
        .await?;
    sqlx::query("SET maintenance_work_mem TO '128MB'")
        .execute(&mut conn)
        .await?;
    // The workers already build indexes side by side, each taking the next from one queue
    // (`IndexBuilds`); a parallel build on top splits `maintenance_work_mem` among its
    // participants (the audit indexes then sort on disk) and costs more CPU for the same index
    // (ADR 0008).
    sqlx::query("SET max_parallel_maintenance_workers TO 0")
        .execute(&mut conn)
        .await?;
    Ok(conn)
}
