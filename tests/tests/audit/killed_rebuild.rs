//! A rebuild killed with SIGKILL midway, on a seeded log of 120 000 events: the live read models
//! and projector checkpoints are untouched, and a rerun completes with the same read models.

use std::process::{Command, Stdio};
use std::time::Duration;

use tests::TestDb;

use crate::support::{REPLAY, read_models};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_killed_midway_leaves_the_live_read_models_untouched_and_a_rerun_completes() {
    let db = TestDb::create().await;
    commands::db::migrate(&db.url).await.unwrap();
    let pool = commands::db::connect(&db.url, 4).await.unwrap();
    replay_tool::seed::seed(
        &pool,
        &replay_tool::seed::SeedOptions {
            licenses: 6_000,
            events: 120_000,
            long_license_events: 1_000,
            organizations: 100,
        },
        &|_, _| {},
    )
    .await
    .unwrap();
    for p in projections::all() {
        projections::engine::ensure_checkpoint(&pool, p.name())
            .await
            .unwrap();
        projections::engine::catch_up_to_head(&pool, p.as_ref(), 5_000, Duration::from_secs(300))
            .await
            .unwrap();
    }
    pool.close().await;
    let owner = db.pool().await;
    let live = read_models(&owner).await;
    let checkpoints: Vec<(String, i64)> =
        sqlx::query_as("SELECT name, last_position FROM projector_checkpoints ORDER BY name")
            .fetch_all(&owner)
            .await
            .unwrap();

    let mut child = Command::new(REPLAY)
        .args(["rebuild", "--all", "--database-url", &db.url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Stop the rebuild midway, deterministically: once its shadow tables exist, hold an
    // exclusive lock on the audit copy. The audit worker then waits at its next write and the
    // reader at its full queue: the catalogue copies are half written (they apply batch by
    // batch), licenses and validation still hold their folds in memory, nothing is swapped.
    let waiting = std::time::Instant::now();
    while sqlx::query_scalar::<_, Option<String>>(
        "SELECT to_regclass('ledger_rebuild.rm_audit')::text",
    )
    .fetch_one(&owner)
    .await
    .unwrap()
    .is_none()
    {
        assert!(
            waiting.elapsed() < Duration::from_secs(60),
            "no shadow tables after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut hold = owner.begin().await.unwrap();
    sqlx::query("SET LOCAL lock_timeout = '30s'")
        .execute(&mut *hold)
        .await
        .unwrap();
    sqlx::query("LOCK TABLE ledger_rebuild.rm_audit IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *hold)
        .await
        .unwrap();
    let shadow_rows = loop {
        let rows: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM ledger_rebuild.rm_organizations) \
                  + (SELECT count(*) FROM ledger_rebuild.rm_policies)",
        )
        .fetch_one(&owner)
        .await
        .unwrap();
        if rows > 0 || waiting.elapsed() > Duration::from_secs(60) {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        child.try_wait().unwrap().is_none(),
        "the rebuild finished although its audit copy was locked"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    hold.rollback().await.unwrap();
    assert!(
        shadow_rows > 0,
        "the rebuild had written into its shadow tables"
    );
    assert_eq!(
        read_models(&owner).await,
        live,
        "a killed rebuild changed the live read models"
    );
    let after: Vec<(String, i64)> =
        sqlx::query_as("SELECT name, last_position FROM projector_checkpoints ORDER BY name")
            .fetch_all(&owner)
            .await
            .unwrap();
    assert_eq!(after, checkpoints);

    let out = Command::new(REPLAY)
        .args(["rebuild", "--all", "--database-url", &db.url])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        read_models(&owner).await,
        live,
        "the rerun rebuilt the same read models"
    );
    let unknown = Command::new(REPLAY)
        .args([
            "rebuild",
            "--projection",
            "mailer",
            "--database-url",
            &db.url,
        ])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("known: organizations"));
    owner.close().await;
    db.drop_db().await;
}
