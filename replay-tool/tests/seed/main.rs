//! `replay_tool::seed` against a real PostgreSQL: a fresh database per test (`testdb`: on the
//! server of `DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`), migrated like
//! production, written through the application role. The history must be exactly what it
//! reports, obey the store's contract (contiguous sequences, a hash chain the trigger and
//! `domain::integrity` agree on, claims), decode through the domain's decoders, and fold through
//! every projector; and it must be deterministic.
//! The rebuild's bulk appliers, fed that history, must leave the rows the live projectors leave.
//!
//! One test binary (one link) with a module per feature:
//! - `history`: what the seed writes, and that it writes it the same way every time.
//! - `rebuild`: the rebuild and its bulk appliers over a seeded history.
//! - `license_reads`: a license read as of an instant, and license states across migration 0006.
//! - `cli`: the `ledger-replay` binary: argument errors, and the rebuild's progress and report.

mod cli;
mod history;
mod license_reads;
mod rebuild;

use std::sync::Mutex;
use std::time::Duration;

use replay_tool::seed::{SeedOptions, SeedReport, seed};
use sqlx::PgPool;

/// Runs `body` on a fresh, migrated database of its own, dropped afterwards, also when `body`
/// panics (the guard drops it while the panic unwinds).
async fn with_db<F, Fut>(body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = testdb::TestDb::migrated().await;
    body(db.url.clone()).await;
}

/// Seeds through the application role, as the server's pool would.
async fn seed_into(url: &str, options: &SeedOptions) -> (SeedReport, Vec<(u64, u64)>) {
    let pool = commands::db::connect(url, 8).await.expect("app pool");
    let calls = Mutex::new(Vec::new());
    let report = seed(&pool, options, &|done, total| {
        calls.lock().unwrap().push((done, total));
    })
    .await
    .expect("seed");
    pool.close().await;
    (report, calls.into_inner().unwrap())
}

/// Runs the live projector of `projection` over the whole log, batch by batch (small batches:
/// many reads of stored rows).
async fn project(pool: &PgPool, projection: &dyn projections::Projection) {
    projections::engine::ensure_checkpoint(pool, projection.name())
        .await
        .unwrap();
    projections::engine::catch_up_to_head(pool, projection, 500, Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("projector {}: {e}", projection.name()));
}
