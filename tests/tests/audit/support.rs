//! Helpers the audit tests share: the `ledger-replay` binary, the database clock, a fingerprint
//! of the read models, and signing a checkpoint over the whole log.

use std::time::Duration;

use serde_json::Value;
use sqlx::{PgPool, Row};
use tests::TestApp;

/// The `ledger-replay` entry point, built under this package so tests can run and kill it.
pub(crate) const REPLAY: &str = env!("CARGO_BIN_EXE_ledger-replay-e2e");

/// The `id` of a resource as the API answered it.
pub(crate) fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

/// The database clock: the instants `recorded_at` is measured in.
pub(crate) async fn db_now(pool: &PgPool) -> chrono::DateTime<chrono::Utc> {
    sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A fingerprint of every rebuildable read model: row count and md5 of all rows in a fixed order.
pub(crate) async fn read_models(pool: &PgPool) -> Vec<(String, i64, String)> {
    let mut out = Vec::new();
    for p in projections::replayable() {
        for table in p.tables() {
            let row = sqlx::query(&format!(
                "SELECT count(*) AS n, coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') AS h FROM {table} t"
            ))
            .fetch_one(pool)
            .await
            .unwrap();
            out.push(((*table).to_owned(), row.get("n"), row.get("h")));
        }
    }
    out
}

/// Signs checkpoints until one covers every event so far; returns its event count. (The
/// server's own signer may hold the signing lock at that moment: then it signs, and we look again.)
pub(crate) async fn checkpoint_everything(app: &TestApp) -> i64 {
    let count = app.event_count().await;
    for _ in 0..200 {
        application::checkpoints::sign_next(&app.server.state.app, 1_000_000, 0, true)
            .await
            .unwrap();
        let latest = app.get("/v1/checkpoints/latest").await;
        if latest.body["event_count"].as_i64() >= Some(count) {
            return latest.body["event_count"].as_i64().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no checkpoint covered the {count} events");
}
