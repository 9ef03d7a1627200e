//! `replay_tool::seed` against a real PostgreSQL: a fresh database per test (from `DATABASE_URL`,
//! `.cargo/config.toml` sets the local default), migrated like production, written through the
//! application role. The history must be exactly what it reports, obey the store's contract
//! (contiguous sequences, a hash chain the trigger and `domain::integrity` agree on, claims), decode
//! through the domain's decoders, and fold through every projector; and it must be deterministic.
//! The rebuild's bulk appliers, fed that history, must leave the rows the live projectors leave.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use domain::api_token::ApiTokenEvent;
use domain::event::{EventMetadata, decode_payload};
use domain::integrity::{CanonicalFields, GENESIS_HASH, chain_hash};
use domain::license::LicenseEvent;
use domain::organization::OrganizationEvent;
use domain::policy::PolicyEvent;
use domain::product::ProductEvent;
use replay_tool::seed::{SeedOptions, SeedReport, seed};
use sqlx::{Connection, PgConnection, PgPool, Row};

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

struct Stored {
    position: i64,
    event_id: uuid::Uuid,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    recorded_at: domain::Timestamp,
    payload: String,
    metadata: String,
    hash: Vec<u8>,
}

async fn stored_events(pool: &PgPool) -> Vec<Stored> {
    sqlx::query(
        "SELECT global_position, event_id, aggregate_type, aggregate_id, sequence, event_type, \
         event_version, recorded_at, payload::text AS payload, metadata::text AS metadata, hash \
         FROM events ORDER BY aggregate_type, aggregate_id, sequence",
    )
    .fetch_all(pool)
    .await
    .expect("read the log")
    .iter()
    .map(|r| Stored {
        position: r.get("global_position"),
        event_id: r.get("event_id"),
        aggregate_type: r.get("aggregate_type"),
        aggregate_id: r.get("aggregate_id"),
        sequence: r.get("sequence"),
        event_type: r.get("event_type"),
        event_version: r.get("event_version"),
        recorded_at: r.get("recorded_at"),
        payload: r.get("payload"),
        metadata: r.get("metadata"),
        hash: r.get("hash"),
    })
    .collect()
}

/// Decodes an event with the decoder of its aggregate (upcasting included).
fn decodes(e: &Stored) -> Result<(), String> {
    let payload: serde_json::Value = serde_json::from_str(&e.payload).map_err(|x| x.to_string())?;
    let (t, v) = (e.event_type.as_str(), e.event_version.as_str());
    let result = match e.aggregate_type.as_str() {
        "License" => decode_payload::<LicenseEvent>(t, v, payload).map(drop),
        "Organization" => decode_payload::<OrganizationEvent>(t, v, payload).map(drop),
        "Product" => decode_payload::<ProductEvent>(t, v, payload).map(drop),
        "Policy" => decode_payload::<PolicyEvent>(t, v, payload).map(drop),
        "ApiToken" => decode_payload::<ApiTokenEvent>(t, v, payload).map(drop),
        other => return Err(format!("unknown aggregate type {other}")),
    };
    result.map_err(|x| x.to_string())?;
    let meta: EventMetadata = serde_json::from_str(&e.metadata).map_err(|x| x.to_string())?;
    if !meta.correlation_id.starts_with("seed-") || meta.effective_at.is_none() {
        return Err(format!("unexpected metadata {}", e.metadata));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_history_is_what_it_reports_and_every_projector_folds_it() {
    with_db(|url| async move {
        let options = SeedOptions {
            licenses: 2_000,
            events: 20_000,
            long_license_events: 500,
            organizations: 50,
        };
        let (report, calls) = seed_into(&url, &options).await;
        let pool = PgPool::connect(&url).await.unwrap();

        // The report is the log.
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(report.events, count as u64);
        let off = (report.events as f64 - options.events as f64).abs() / options.events as f64;
        assert!(off < 0.03, "{} events for {} asked", report.events, options.events);
        let streams = |t: &'static str| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(DISTINCT aggregate_id) FROM events WHERE aggregate_type = $1",
                )
                .bind(t)
                .fetch_one(&pool)
                .await
                .unwrap() as u64
            }
        };
        assert_eq!(report.licenses, options.licenses);
        assert_eq!(streams("License").await, report.licenses);
        assert_eq!(report.organizations, options.organizations);
        assert_eq!(streams("Organization").await, report.organizations);
        assert!(report.seconds > 0.0);

        // Progress after each batch, monotonic, ending at the total.
        assert!(!calls.is_empty());
        assert!(calls.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(calls.last().unwrap().0, report.events);
        assert!(calls.iter().all(|(done, total)| done <= total));

        // The long license: its events, spread over the whole log like real traffic.
        let long = report.long_license_id.expect("a long license").to_string();
        let (n, first, last): (i64, i64, i64) = sqlx::query_as(
            "SELECT count(*), min(global_position), max(global_position) FROM events \
             WHERE aggregate_type = 'License' AND aggregate_id = $1",
        )
        .bind(&long)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(n as u64, options.long_license_events);
        assert!(
            (last - first) as f64 > 0.8 * count as f64,
            "the long license spans {first}..{last} of {count}"
        );

        // Contiguous sequences from 1 in every stream (the primary key makes them unique).
        let broken: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT count(*) AS n, min(sequence) AS lo, max(sequence) AS hi \
             FROM events GROUP BY aggregate_type, aggregate_id) s WHERE lo <> 1 OR hi <> n",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(broken, 0);

        // Streams interleave: most licenses' events are not adjacent in the log.
        let adjacent: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT global_position - lag(global_position) OVER \
             (PARTITION BY aggregate_id ORDER BY sequence) AS step FROM events \
             WHERE aggregate_type = 'License') s WHERE step = 1",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(
            (adjacent as f64) < 0.2 * count as f64,
            "{adjacent} license events directly follow their predecessor"
        );

        // Every event decodes, and every hash is the chain `domain::integrity` specifies: also
        // for the several events of one stream a single INSERT statement carries.
        let events = stored_events(&pool).await;
        assert_eq!(events.len() as i64, count);
        let mut previous: HashMap<(&str, &str), [u8; 32]> = HashMap::new();
        let mut types = BTreeSet::new();
        for e in &events {
            if let Err(why) = decodes(e) {
                panic!("{} {} #{}: {why}", e.aggregate_type, e.aggregate_id, e.sequence);
            }
            types.insert(e.event_type.clone());
            let key = (e.aggregate_type.as_str(), e.aggregate_id.as_str());
            let before = if e.sequence == 1 {
                GENESIS_HASH
            } else {
                previous[&key]
            };
            let hash = chain_hash(
                &before,
                &CanonicalFields {
                    event_id: e.event_id,
                    global_position: e.position,
                    aggregate_type: &e.aggregate_type,
                    aggregate_id: &e.aggregate_id,
                    sequence: e.sequence,
                    event_type: &e.event_type,
                    event_version: &e.event_version,
                    recorded_at: e.recorded_at,
                    payload_text: &e.payload,
                    metadata_text: &e.metadata,
                },
            );
            assert_eq!(
                e.hash,
                hash.to_vec(),
                "hash of {} {} #{}",
                e.aggregate_type,
                e.aggregate_id,
                e.sequence
            );
            previous.insert(key, hash);
        }
        // Several events of one stream did share a statement (so the chain above covered it).
        let shared: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT 1 FROM events GROUP BY aggregate_type, aggregate_id, tx_id \
             HAVING count(*) > 1) s",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(shared > 0);

        // Mixed lifecycles.
        for t in [
            "ApiTokenIssued",
            "OrganizationRegistered",
            "OrganizationRenamed",
            "PartnerDelegationGranted",
            "ProductDefined",
            "PolicyDefined",
            "PolicyRevised",
            "PolicyRetired",
            "LicenseIssued",
            "LicenseSuspended",
            "LicenseReinstated",
            "LicenseRenewed",
            "LicenseTransferred",
            "EntitlementsChanged",
            "SeatsChanged",
            "MaintenanceExtended",
            "LicenseKeyRotated",
            "LicenseRevoked",
            "InstallationActivated",
            "InstallationDeactivated",
            "FloatingLeaseGranted",
            "FloatingLeaseReleased",
            "OfflineTokenIssued",
        ] {
            assert!(types.contains(t), "no {t} in {types:?}");
        }

        // The claims production writes with the events.
        let (keys, key_events): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM unique_claims WHERE scope = 'license_key'), \
             (SELECT count(*) FROM events WHERE event_type IN ('LicenseIssued', 'LicenseKeyRotated'))",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(keys, key_events);
        let apps: i64 =
            sqlx::query_scalar("SELECT count(*) FROM unique_claims WHERE scope = 'app_id'")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(apps as u64, streams("Product").await);

        // Every projector folds the whole history, through the application role.
        let app = commands::db::connect(&url, 4).await.unwrap();
        for projection in projections::all() {
            projections::engine::ensure_checkpoint(&app, projection.name())
                .await
                .unwrap();
            projections::engine::catch_up_to_head(
                &app,
                projection.as_ref(),
                2_000,
                Duration::from_secs(120),
            )
            .await
            .unwrap_or_else(|e| panic!("projector {}: {e}", projection.name()));
        }
        let count_of = |sql: &'static str| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(
            count_of("SELECT count(*) FROM rm_licenses").await as u64,
            report.licenses
        );
        assert_eq!(
            count_of("SELECT count(*) FROM rm_validation").await as u64,
            report.licenses
        );
        assert_eq!(
            count_of("SELECT count(*) FROM rm_organizations").await as u64,
            report.organizations
        );
        assert_eq!(count_of("SELECT count(*) FROM rm_audit").await, count);
        assert_eq!(
            count_of("SELECT coalesce(sum(version), 0)::bigint FROM rm_licenses").await,
            count_of("SELECT count(*) FROM events WHERE aggregate_type = 'License'").await
        );
        assert_eq!(
            count_of(
                "SELECT count(*) FROM rm_licenses WHERE state ->> 'revocation' IS NOT NULL"
            )
            .await,
            count_of("SELECT count(*) FROM events WHERE event_type = 'LicenseRevoked'").await
        );
        app.close().await;
        pool.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_is_deterministic_and_refuses_a_log_that_is_not_empty() {
    let options = SeedOptions {
        licenses: 150,
        events: 1_500,
        long_license_events: 100,
        organizations: 12,
    };
    let history = |url: String| async move {
        let pool = PgPool::connect(&url).await.unwrap();
        let rows: Vec<(uuid::Uuid, String, i64, String, String)> = sqlx::query_as(
            "SELECT event_id, aggregate_id, sequence, event_type, payload::text FROM events \
             ORDER BY event_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        rows
    };
    let first = std::sync::Arc::new(Mutex::new(Vec::new()));
    let kept = first.clone();
    with_db(move |url| async move {
        let (report, _) = seed_into(&url, &options).await;
        *kept.lock().unwrap() = history(url.clone()).await;
        // A second seed into the same log would collide with the first: refused up front.
        let pool = commands::db::connect(&url, 2).await.unwrap();
        let err = seed(&pool, &options, &|_, _| {}).await.unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(count as u64, report.events);
        pool.close().await;
    })
    .await;
    let first = std::mem::take(&mut *first.lock().unwrap());
    assert!(!first.is_empty());
    let second = std::sync::Arc::new(Mutex::new(Vec::new()));
    let kept = second.clone();
    with_db(move |url| async move {
        seed_into(&url, &options).await;
        *kept.lock().unwrap() = history(url).await;
    })
    .await;
    let second = std::mem::take(&mut *second.lock().unwrap());
    assert!(first == second, "two seeds wrote different histories");
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
            for (table, rows, _) in &live {
                assert!(
                    *rows > 0,
                    "the seeded history leaves {table} empty: nothing compared"
                );
            }
            if projection.bulk(1).is_none() {
                continue;
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
        for _ in 0..15 {
            projections::engine::run_batch(&pool, &licenses, 100)
                .await
                .unwrap();
        }
        for sql in [
            "ALTER TABLE rm_licenses ALTER COLUMN state TYPE jsonb USING state::jsonb",
            "ALTER TABLE rm_license_snapshots ALTER COLUMN state TYPE jsonb USING state::jsonb",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        // Migration 0006 itself, then the rest of the log on top of the converted rows.
        sqlx::raw_sql(include_str!(
            "../../migrations/0006_license_states_json.sql"
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
            projections::queries::organization_licenses(pool, organization, None, 1_000)
                .await
                .unwrap()
                .into_iter()
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
