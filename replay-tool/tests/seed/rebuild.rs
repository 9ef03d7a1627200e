//! The rebuild over a seeded history: its bulk appliers leave the rows the live projectors
//! leave, an event it cannot decode stops it with the live tables untouched, and a database whose
//! schema is not its build's is refused.

use std::time::Duration;

use replay_tool::seed::SeedOptions;
use sqlx::PgPool;

use crate::{project, seed_into, with_db};

/// Whether a rebuild's shadow schema exists (it must not, once a rebuild has ended or refused).
async fn has_shadow_schema(pool: &PgPool) -> bool {
    sqlx::query_scalar(&format!(
        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = '{}')",
        replay_tool::rebuild::SHADOW_SCHEMA
    ))
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Every table of `projection` as its row count and one digest over its rows in a fixed order.
async fn digests(
    pool: &PgPool,
    projection: &dyn projections::ReplaySafe,
) -> Vec<(String, i64, String)> {
    let mut out = Vec::new();
    for table in projection.tables() {
        let (rows, digest): (i64, Option<String>) = sqlx::query_as(&format!(
            "SELECT count(*), md5(string_agg(t::text, E'\\n' ORDER BY t::text)) FROM {table} t"
        ))
        .fetch_one(pool)
        .await
        .unwrap();
        out.push(((*table).to_owned(), rows, digest.unwrap_or_default()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_appliers_write_the_rows_the_live_projectors_write_whatever_they_hold() {
    with_db(|url| async move {
        let options = SeedOptions {
            licenses: 1_500,
            events: 15_000,
            long_license_events: 300,
            organizations: 30,
        };
        seed_into(&url, &options).await;
        let pool = PgPool::connect(&url).await.unwrap();
        let mut checked = 0;
        for projection in projections::replayable() {
            project(&pool, projection.as_ref()).await;
            let live = digests(&pool, projection.as_ref()).await;
            // Only bulk appliers are compared here; a projection without one rebuilds batch by
            // batch, as live (the users' read model: tests/tests/identity.rs rebuilds it).
            if projection.bulk(1).is_none() {
                continue;
            }
            for (table, rows, _) in &live {
                assert!(
                    *rows > 0,
                    "the seeded history leaves {table} empty: nothing compared"
                );
            }
            // Holding everything (one write at the end, copied in) and holding 7 rows (a write
            // every few events: copied first, then upserted over rows already written).
            for hold in [usize::MAX, 7] {
                let mut conn = pool.acquire().await.unwrap();
                for table in projection.tables() {
                    sqlx::query(&format!("TRUNCATE {table}"))
                        .execute(&mut *conn)
                        .await
                        .unwrap();
                }
                let mut bulk = projection.bulk(hold).unwrap();
                let mut at = projections::engine::Checkpoint::default();
                loop {
                    // The whole log, as a rebuild reads and hands it to every applier.
                    let events = projections::engine::read_replay_events(&mut conn, &at, 500)
                        .await
                        .unwrap();
                    let Some(last) = events.last() else { break };
                    at = projections::engine::Checkpoint {
                        tx_id: last.tx_id,
                        position: last.global_position,
                    };
                    let batch = projections::engine::ReplayBatch::decoded(events).unwrap();
                    bulk.feed(&mut conn, &batch).await.unwrap();
                }
                bulk.finish(&mut conn).await.unwrap();
                drop(conn);
                assert_eq!(
                    digests(&pool, projection.as_ref()).await,
                    live,
                    "projection {} in bulk, holding {hold} rows",
                    projection.name()
                );
            }
            checked += 1;
        }
        assert_eq!(
            checked, 3,
            "licenses, validation and audit have bulk appliers"
        );
        pool.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_stops_at_an_event_it_cannot_decode_and_leaves_the_live_tables_alone() {
    with_db(|url| async move {
        let options = SeedOptions {
            licenses: 200,
            events: 2_000,
            long_license_events: 100,
            organizations: 10,
        };
        seed_into(&url, &options).await;
        let pool = PgPool::connect(&url).await.unwrap();
        let mut live = Vec::new();
        for projection in projections::replayable() {
            project(&pool, projection.as_ref()).await;
            live.push(digests(&pool, projection.as_ref()).await);
        }
        // The next event of one license, of a type no release of the ledger ever wrote.
        sqlx::query(
            "INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             SELECT $1, 'License', aggregate_id, max(sequence) + 1, 'LicenseFrobnicated', '1', '{}'::json, '{}'::json \
             FROM events WHERE aggregate_type = 'License' GROUP BY aggregate_id ORDER BY aggregate_id LIMIT 1",
        )
        .bind(uuid::Uuid::now_v7())
        .execute(&pool)
        .await
        .unwrap();
        // The walk reads below the commit horizon, which any open transaction on the server (a
        // test running beside this one) holds back; an event above it is applied by the swap
        // instead. Wait until the walk will read it.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let below: bool = sqlx::query_scalar(
                "SELECT tx_id < pg_snapshot_xmin(pg_current_snapshot()) FROM events \
                 WHERE event_type = 'LicenseFrobnicated'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            if below {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the horizon never passed the event");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let err = replay_tool::rebuild::rebuild(
            &url,
            projections::replayable(),
            &replay_tool::progress::Progress::quiet("rebuild", 0),
        )
        .await
        .expect_err("an event that does not decode stops the rebuild");
        let message = format!("{err:#}");
        assert!(message.contains("decoding the log"), "{message}");
        assert!(message.contains("LicenseFrobnicated"), "{message}");
        assert!(message.contains("at position"), "the event is named: {message}");
        for (projection, before) in projections::replayable().iter().zip(&live) {
            assert_eq!(
                &digests(&pool, projection.as_ref()).await,
                before,
                "{} was changed by a failed rebuild",
                projection.name()
            );
        }
        assert!(!has_shadow_schema(&pool).await, "the shadow schema is dropped");

        // Audit records events without decoding them: rebuilt alone, it takes this one in.
        let report = replay_tool::rebuild::rebuild(
            &url,
            replay_tool::rebuild::select(&["audit".to_owned()]).unwrap(),
            &replay_tool::progress::Progress::quiet("rebuild", 0),
        )
        .await
        .expect("audit alone decodes nothing");
        assert_eq!(report.projections.len(), 1);
        let recorded: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM rm_audit WHERE action = 'LicenseFrobnicated'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(recorded, 1);
        pool.close().await;
    })
    .await;
}

/// A database whose schema is not this build's — a migration missing (migrated by an older
/// binary, or not at all), unknown (migrated by a newer one) or changed — is refused before the
/// rebuild touches anything, with an error that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_refuses_a_database_whose_schema_is_not_its_builds() {
    with_db(|url| async move {
        let pool = PgPool::connect(&url).await.unwrap();
        let last = commands::db::MIGRATOR
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap();
        // What an older binary would have left: the last migration not recorded (kept aside to
        // be put back below).
        for sql in [
            format!("CREATE TABLE saved_migration AS SELECT * FROM _sqlx_migrations WHERE version = {last}"),
            format!("DELETE FROM _sqlx_migrations WHERE version = {last}"),
        ] {
            sqlx::query(&sql).execute(&pool).await.unwrap();
        }
        let progress = replay_tool::progress::Progress::quiet("rebuild", 0);
        let err = replay_tool::rebuild::rebuild(&url, projections::replayable(), &progress)
            .await
            .expect_err("a database without the last migration must be refused");
        let message = format!("{err:#}");
        assert!(
            message.contains(&format!("lacks migration(s) [{last}]"))
                && message.contains("ledger migrate"),
            "{message}"
        );
        assert!(
            !has_shadow_schema(&pool).await,
            "refused before creating any copy"
        );

        // A newer version's migration, unknown to this build: refused too (its copies would
        // leave the newer columns at their defaults).
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99999999, 'from the future', true, '\\x00'::bytea, 0)",
        )
        .execute(&pool)
        .await
        .unwrap();
        let err = replay_tool::rebuild::rebuild(&url, projections::replayable(), &progress)
            .await
            .expect_err("a database migrated by a newer version must be refused");
        assert!(
            format!("{err:#}").contains("[99999999] that this build does not know"),
            "{err:#}"
        );
        // The last migration recorded again, but not as this build has it: refused.
        for sql in [
            "DELETE FROM _sqlx_migrations WHERE version = 99999999",
            "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) \
             SELECT version, description, installed_on, success, '\\x00'::bytea, execution_time FROM saved_migration",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        let err = replay_tool::rebuild::rebuild(&url, projections::replayable(), &progress)
            .await
            .expect_err("a changed migration must be refused");
        assert!(
            format!("{err:#}").contains(&format!("[{last}] applied to the database differ")),
            "{err:#}"
        );
        sqlx::query(&format!("DELETE FROM _sqlx_migrations WHERE version = {last}"))
            .execute(&pool)
            .await
            .unwrap();

        // No migration table at all: every migration is missing.
        sqlx::query("ALTER TABLE _sqlx_migrations RENAME TO away")
            .execute(&pool)
            .await
            .unwrap();
        let err = replay_tool::rebuild::rebuild(&url, projections::replayable(), &progress)
            .await
            .expect_err("an unmigrated database must be refused");
        assert!(format!("{err:#}").contains("lacks migration(s) [1, "), "{err:#}");

        // With every migration recorded again, it rebuilds.
        for sql in [
            "ALTER TABLE away RENAME TO _sqlx_migrations",
            "INSERT INTO _sqlx_migrations SELECT * FROM saved_migration",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        replay_tool::rebuild::rebuild(&url, projections::replayable(), &progress)
            .await
            .unwrap();
        pool.close().await;
    })
    .await;
}
