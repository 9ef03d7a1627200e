//! The guard against the real PostgreSQL: a test that panics still drops its database, a copy is
//! a database of its own, and the sweep drops a dead process's leftover but nothing of a live
//! process or of anyone else.

use std::sync::{Arc, Mutex};

use sqlx::{Connection, PgConnection};
use testdb::TestDb;

async fn exists(name: &str) -> bool {
    let mut admin = PgConnection::connect(&testdb::server_url()).await.unwrap();
    let found: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    admin.close().await.unwrap();
    found
}

async fn create_raw(name: &str) {
    let mut admin = PgConnection::connect(&testdb::server_url()).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
}

async fn drop_raw(name: &str) {
    let mut admin = PgConnection::connect(&testdb::server_url()).await.unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
}

/// As `#[tokio::test]` runs a test: a runtime blocked on the body, on a thread the harness
/// watches. The body panics with a pool still open on its database (a failed assertion midway).
#[tokio::test]
async fn a_test_that_panics_still_drops_its_database() {
    let made = Arc::new(Mutex::new(None));
    let seen = made.clone();
    let outcome = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let db = TestDb::migrated().await;
                *seen.lock().unwrap() = Some(db.name.clone());
                let pool = db.pool().await;
                let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                assert_eq!(events, 1, "a failed assertion");
            });
    })
    .join();
    assert!(outcome.is_err(), "the body panicked");
    let name = made
        .lock()
        .unwrap()
        .clone()
        .expect("the body made a database");
    assert!(!exists(&name).await, "{name} was left behind");
}

#[tokio::test]
async fn a_database_is_dropped_at_the_end_of_its_scope_and_a_copy_is_its_own() {
    let original = TestDb::migrated().await;
    let pool = original.pool().await;
    sqlx::query("CREATE TABLE marker (n int)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let copy = TestDb::copy_of(&original).await;
    assert_ne!(copy.name, original.name);
    let copy_pool = copy.pool().await;
    sqlx::query("INSERT INTO marker VALUES (1)")
        .execute(&copy_pool)
        .await
        .unwrap();
    let pool = original.pool().await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM marker")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 0, "the copy changed the original");
    let names = [original.name.clone(), copy.name.clone()];
    // Pools still open: the drop ends their sessions.
    drop(copy);
    drop(original);
    for name in names {
        assert!(!exists(&name).await, "{name} was left behind");
    }
    drop((pool, copy_pool));
}

#[tokio::test]
async fn the_sweep_drops_a_dead_processs_leftover_and_keeps_a_live_processs_database() {
    // Process ids above Linux's largest (2^22) never exist; process 1 always does.
    let dead = testdb::name_made_by(99_999_999);
    let live = testdb::name_made_by(1);
    let someone_elses = format!(
        "not_a_test_db_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    for name in [&dead, &live, &someone_elses] {
        create_raw(name).await;
    }
    testdb::sweep_leftovers().await;
    let (dead_left, live_left, others_left) = (
        exists(&dead).await,
        exists(&live).await,
        exists(&someone_elses).await,
    );
    for name in [&dead, &live, &someone_elses] {
        drop_raw(name).await;
    }
    assert!(!dead_left, "the leftover of a dead process stays");
    assert!(live_left, "a live process's database was dropped");
    assert!(others_left, "someone else's database was dropped");
}
