//! Reading licenses from a seeded history: a long license as of any instant equals the full fold
//! of its stream, with snapshots or without, and license states converted by migration 0006 read
//! and fold as before.

use replay_tool::seed::SeedOptions;
use sqlx::PgPool;

use crate::{project, seed_into, with_db};

/// The long license folded from its whole stream as of `at`, without snapshots and read with a
/// query of its own (every event filtered by `recorded_at`): the reference
/// `application::asof::license_as_of` and `stream_as_of` must equal.
async fn full_fold(
    pool: &PgPool,
    id: &str,
    at: domain::Timestamp,
) -> Option<(domain::license::LicenseState, i64)> {
    let events: Vec<domain::event::RecordedEvent> = sqlx::query(&format!(
        "SELECT {} FROM events WHERE aggregate_type = 'License' AND aggregate_id = $1 \
         AND recorded_at <= $2 ORDER BY sequence",
        projections::engine::EVENT_COLUMNS
    ))
    .bind(id)
    .bind(at)
    .fetch_all(pool)
    .await
    .unwrap()
    .iter()
    .map(|row| projections::engine::recorded_event(row).unwrap())
    .collect();
    let listed = application::asof::stream_as_of(pool, domain::AggregateType::License, id, at)
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|e| e.global_position).collect::<Vec<_>>(),
        events.iter().map(|e| e.global_position).collect::<Vec<_>>(),
        "the events behind the state as of {at}"
    );
    let mut license = domain::license::License::NotIssued;
    for e in &events {
        license.fold(e.decode::<domain::license::LicenseEvent>().unwrap());
    }
    license
        .state()
        .cloned()
        .map(|s| (s, events.last().unwrap().sequence))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_reads_of_a_long_license_equal_the_full_fold_with_and_without_snapshots() {
    with_db(|url| async move {
        let options = SeedOptions {
            licenses: 500,
            events: 10_000,
            long_license_events: 1_000,
            organizations: 5,
        };
        let (report, _) = seed_into(&url, &options).await;
        let long = report.long_license_id.expect("a long license");
        let id = domain::ids::LicenseId::from_uuid(long);
        let pool = PgPool::connect(&url).await.unwrap();
        project(&pool, &projections::licenses::LicensesProjection).await;
        // Every instant an event of the stream was recorded at, a microsecond before each, and
        // one before the license and one after its last event.
        let times: Vec<domain::Timestamp> = sqlx::query_scalar(
            "SELECT DISTINCT recorded_at FROM events WHERE aggregate_type = 'License' \
             AND aggregate_id = $1 ORDER BY 1",
        )
        .bind(long.to_string())
        .fetch_all(&pool)
        .await
        .unwrap();
        assert!(
            times.len() > 3,
            "the seed spreads the long license over {} instants",
            times.len()
        );
        let micro = chrono::Duration::microseconds(1);
        let mut instants = vec![times[0] - micro, *times.last().unwrap() + micro];
        for t in &times {
            instants.extend([*t - micro, *t]);
        }
        // With the snapshots, then with none (a licenses projector far behind, or a rebuild's
        // first moments): the tail is then read from the first event, page after page.
        for with_snapshots in [true, false] {
            if !with_snapshots {
                sqlx::query("DELETE FROM rm_license_snapshots")
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            let mut folded_most = 0;
            for at in &instants {
                let found = application::asof::license_as_of(&pool, id, *at)
                    .await
                    .unwrap();
                let expected = full_fold(&pool, &long.to_string(), *at).await;
                match (found, expected) {
                    (None, None) => {}
                    (Some(found), Some((state, version))) => {
                        assert_eq!(
                            (&found.state, found.version),
                            (&state, version),
                            "as of {at}, snapshots: {with_snapshots}"
                        );
                        folded_most = folded_most.max(found.events_folded);
                    }
                    (found, expected) => panic!(
                        "as of {at}: found {:?}, expected {:?}",
                        found.map(|f| f.version),
                        expected.map(|e| e.1)
                    ),
                }
            }
            if with_snapshots {
                assert!(
                    folded_most < 100,
                    "folded {folded_most} events on a snapshot"
                );
            } else {
                assert_eq!(
                    folded_most, 1_000,
                    "the last instant folds the whole stream"
                );
            }
        }
        pool.close().await;
    })
    .await;
}

/// States written as `jsonb` before migration 0006 (jsonb's text form once converted: keys by
/// length, spaces) read back as the same states after it: the live projector loads converted
/// rows and folds on top of them, and the license list and the as-of reads (from converted
/// snapshots) answer what a database that was `json` all along answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn license_states_converted_by_migration_0006_read_and_fold_as_before() {
    with_db(|url| async move {
        let options = SeedOptions {
            licenses: 200,
            events: 3_000,
            long_license_events: 400,
            organizations: 3,
        };
        let (report, _) = seed_into(&url, &options).await;
        let long = domain::ids::LicenseId::from_uuid(report.long_license_id.unwrap());
        let pool = PgPool::connect(&url).await.unwrap();
        let licenses = projections::licenses::LicensesProjection;

        // Half the log projected, then stored as 0005 stored it (jsonb, which this build's
        // writers no longer speak, so the rows are converted to it).
        projections::engine::ensure_checkpoint(&pool, "licenses")
            .await
            .unwrap();
        // Up to 15 batches of 100. A batch applies only what lies below the commit horizon, which
        // a transaction in any database of the server (another test's seed) holds back while it
        // is open: an empty batch means "not yet", so wait for 15 that applied something.
        let pending = projections::engine::lag(&pool, &licenses)
            .await
            .unwrap()
            .pending_events;
        let half = usize::try_from(pending.min(1_500)).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let mut applied = 0;
        while applied < half {
            let n = projections::engine::run_batch(&pool, &licenses, 100)
                .await
                .unwrap();
            if n == 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the commit horizon never passed the seed's events"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            applied += n;
        }
        for sql in [
            "ALTER TABLE rm_licenses ALTER COLUMN state TYPE jsonb USING state::jsonb",
            "ALTER TABLE rm_license_snapshots ALTER COLUMN state TYPE jsonb USING state::jsonb",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        // Migration 0006 itself, then the rest of the log on top of the converted rows.
        sqlx::raw_sql(include_str!(
            "../../../migrations/0006_license_states_json.sql"
        ))
        .execute(&pool)
        .await
        .unwrap();
        let converted: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM rm_licenses WHERE state::text LIKE '%\": %') \
                  + (SELECT count(*) FROM rm_license_snapshots WHERE state::text LIKE '%\": %')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        let snapshots: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_license_snapshots")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(
            converted > 0 && snapshots > 0,
            "jsonb's text form in {converted} converted rows, {snapshots} snapshots"
        );
        project(&pool, &licenses).await;
        let after_conversion = answers(&pool, long).await;

        // The same log projected into json from the start.
        for sql in [
            "TRUNCATE rm_licenses, rm_license_snapshots",
            "DELETE FROM projector_checkpoints WHERE name = 'licenses'",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        project(&pool, &licenses).await;
        let json_born = answers(&pool, long).await;
        assert_eq!(after_conversion, json_born);
        pool.close().await;
    })
    .await;
}

/// What the read paths answer: every organization's license list, and the long license as of
/// every 25th instant of its stream.
async fn answers(
    pool: &PgPool,
    long: domain::ids::LicenseId,
) -> (
    Vec<(
        uuid::Uuid,
        domain::license::LicenseState,
        i64,
        domain::Timestamp,
    )>,
    Vec<(domain::license::LicenseState, i64)>,
) {
    let organizations: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT DISTINCT organization_id FROM rm_licenses ORDER BY 1")
            .fetch_all(pool)
            .await
            .unwrap();
    let mut listed = Vec::new();
    for organization in organizations {
        listed.extend(
            projections::queries::organization_licenses(
                pool,
                organization,
                &projections::queries::Window::first(projections::queries::Order::Asc, 1_000),
            )
            .await
            .unwrap()
            .into_iter()
            .take(1_000)
            .map(|row| (row.id, row.state, row.version, row.updated_at)),
        );
    }
    let instants: Vec<domain::Timestamp> = sqlx::query_scalar(
        "SELECT recorded_at FROM events WHERE aggregate_type = 'License' AND aggregate_id = $1 \
         AND sequence % 25 = 0 ORDER BY sequence",
    )
    .bind(long.to_string())
    .fetch_all(pool)
    .await
    .unwrap();
    let mut as_of = Vec::new();
    for at in instants {
        let found = application::asof::license_as_of(pool, long, at)
            .await
            .unwrap()
            .expect("the long license exists at its own instants");
        as_of.push((found.state, found.version));
    }
    (listed, as_of)
}
