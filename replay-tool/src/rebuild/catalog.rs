//! What PostgreSQL's catalog says of a table: its indexes and constraints, as the shadow copies
//! are prepared and as the swap checks them against the live table's.

use std::collections::HashMap;

use anyhow::bail;
use sqlx::Row;
use sqlx::postgres::PgConnection;

/// The indexes of `schema.table` that are neither unique nor behind a constraint: name and
/// definition.
pub(super) async fn plain_indexes(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT c.relname::text, pg_get_indexdef(i.indexrelid) \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = $1 AND t.relname = $2 AND NOT i.indisunique \
           AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) \
         ORDER BY c.relname",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(&mut *conn)
    .await?)
}

/// The constraints `k` of table `$2` in schema `$1`.
const CONSTRAINTS_OF: &str = "FROM pg_constraint k JOIN pg_class t ON t.oid = k.conrelid \
     JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = $1 AND t.relname = $2";

/// The primary key of `schema.table`, if it has one: constraint name (also its index's) and the
/// index's definition.
pub(super) async fn primary_key(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> anyhow::Result<Option<(String, String)>> {
    Ok(sqlx::query_as(&format!(
        "SELECT k.conname::text, pg_get_indexdef(k.conindid) {CONSTRAINTS_OF} AND k.contype = 'p'"
    ))
    .bind(schema)
    .bind(table)
    .fetch_optional(&mut *conn)
    .await?)
}

/// The constraints of `schema.table`: name and definition, sorted.
pub(super) async fn constraints(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(&format!(
        "SELECT k.conname::text, pg_get_constraintdef(k.oid) {CONSTRAINTS_OF} ORDER BY 1, 2"
    ))
    .bind(schema)
    .bind(table)
    .fetch_all(&mut *conn)
    .await?)
}

/// The indexes of `schema.table`: definition (from `USING` on, which names no table) to name.
pub(super) async fn indexes(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> anyhow::Result<HashMap<String, String>> {
    let rows = sqlx::query("SELECT indexname::text AS name, indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = $2")
        .bind(schema)
        .bind(table)
        .fetch_all(&mut *conn)
        .await?;
    let mut out = HashMap::new();
    for row in rows {
        let name: String = row.try_get("name")?;
        let definition: String = row.try_get("indexdef")?;
        let unique = definition.starts_with("CREATE UNIQUE");
        let tail = definition
            .split_once(" USING ")
            .map_or(definition.as_str(), |(_, t)| t);
        let key = format!("{}{tail}", if unique { "UNIQUE " } else { "" });
        if out.insert(key.clone(), name).is_some() {
            bail!("table {schema}.{table} has two identical indexes ({key})");
        }
    }
    Ok(out)
}

/// `name` as a quoted SQL identifier.
pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
