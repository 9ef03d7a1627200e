//! `replay_tool::seed` against a real PostgreSQL: a fresh database per test (from `DATABASE_URL`,
//! `.cargo/config.toml` sets the local default), migrated like production, written through the
//! application role. The history must be exactly what it reports, obey the store's contract
//! (contiguous sequences, a hash chain the trigger and `domain::integrity` agree on, claims), decode
//! through the domain's decoders, and fold through every projector; and it must be deterministic.
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
use sqlx::{Connection, PgConnection, PgPool};

fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database of its own, migrated, dropped when the test body is done (panicked or not).
struct ScratchDb {
    name: String,
    url: String,
}

impl ScratchDb {
    async fn create() -> Self {
        let admin_url = server_url();
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {admin_url}: {e}"));
        let name = format!(
            "seed_test_{}_{}",
            chrono::Utc::now().timestamp_millis(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let (base, _) = admin_url.rsplit_once('/').expect("a database path");
        let url = format!("{base}/{name}");
        commands::db::migrate(&url).await.expect("migrate");
        Self { name, url }
    }

    async fn drop_db(&self) {
        if let Ok(mut admin) = PgConnection::connect(&server_url()).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin)
            .await;
        }
    }
}

/// Runs `body` on a fresh database and drops it afterwards, also when `body` panics.
async fn with_db<F, Fut>(body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let db = ScratchDb::create().await;
    let outcome = tokio::spawn(body(db.url.clone())).await;
    db.drop_db().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
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
