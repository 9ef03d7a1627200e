//! What the seed writes: exactly the history it reports, obeying the store's contract, decoding
//! through the domain's decoders and folding through every projector; the same history every
//! time; and nothing into a log that is not empty.

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
use replay_tool::seed::{SeedOptions, seed};
use sqlx::{PgPool, Row};

use crate::{seed_into, with_db};

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
