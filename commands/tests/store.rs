//! The event store against a real PostgreSQL: append-only enforcement, the hash chain, optimistic
//! concurrency under contention, unique claims, idempotency, and cqrs-es interoperability.
//! Each test gets a fresh database with all migrations (`testdb::TestDb::migrated`), dropped when
//! it ends.

use std::collections::HashSet;
use std::sync::Arc;

use commands::Ledger;
use commands::clock::SystemClock;
use commands::executor::{CommandContext, CommandError, Idempotency};
use commands::keys::KeyHasher;
use commands::ledger::{LicenseChange, NewLicense, NewOrganization, NewProduct};
use commands::store::{AppendBatch, AppendError, EventStore, NewEvent};
use domain::AggregateType;
use domain::event::Actor;
use domain::ids::{AppId, LicenseId};
use domain::integrity::{CanonicalFields, GENESIS_HASH, chain_hash};
use domain::policy::{PolicyTerms, PolicyTermsInput};
use domain::values::*;
use serde_json::json;
use sqlx::{PgPool, Row};
use testdb::TestDb;
use uuid::Uuid;

fn ctx() -> CommandContext {
    CommandContext::new(Actor::System, format!("test-{}", Uuid::now_v7()))
}

fn ledger(pool: &PgPool) -> Ledger {
    Ledger::new(
        EventStore::new(pool.clone()),
        KeyHasher::new([7; 32]),
        Arc::new(SystemClock),
    )
}

fn event(n: i64) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "Noted".into(),
        event_version: "1".into(),
        payload: json!({ "n": n, "text": "line\nbreak é \u{1F600}" }),
        metadata: json!({ "actor": "system", "correlation_id": format!("c{n}") }),
    }
}

/// The aggregate type of the raw appends below. The store neither reads nor checks payloads, so
/// any type serves; no aggregate decodes these `Noted` events.
const NOTE: AggregateType = AggregateType::Organization;

fn batch(stream: &str, expected_version: i64, events: Vec<NewEvent>) -> AppendBatch {
    AppendBatch {
        aggregate_type: NOTE,
        aggregate_id: stream.into(),
        expected_version,
        events,
        claims: Vec::new(),
    }
}

/// Recomputes every stream's chain in Rust from the stored text forms and compares it with the
/// hashes the database trigger wrote.
async fn assert_chains_verify(pool: &PgPool) -> usize {
    let rows = sqlx::query(
        "SELECT event_id, global_position, aggregate_type, aggregate_id, sequence, event_type, \
         event_version, recorded_at, payload::text AS payload_text, metadata::text AS metadata_text, hash \
         FROM events ORDER BY aggregate_type, aggregate_id, sequence",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut previous = GENESIS_HASH;
    let mut stream = (String::new(), String::new());
    for row in &rows {
        let key = (
            row.get::<String, _>("aggregate_type"),
            row.get::<String, _>("aggregate_id"),
        );
        if key != stream {
            previous = GENESIS_HASH;
            stream = key.clone();
        }
        let payload_text: String = row.get("payload_text");
        let metadata_text: String = row.get("metadata_text");
        let fields = CanonicalFields {
            event_id: row.get("event_id"),
            global_position: row.get("global_position"),
            aggregate_type: &key.0,
            aggregate_id: &key.1,
            sequence: row.get("sequence"),
            event_type: &row.get::<String, _>("event_type"),
            event_version: &row.get::<String, _>("event_version"),
            recorded_at: row.get("recorded_at"),
            payload_text: &payload_text,
            metadata_text: &metadata_text,
        };
        let expected = chain_hash(&previous, &fields);
        let stored: Vec<u8> = row.get("hash");
        assert_eq!(
            stored,
            expected.to_vec(),
            "hash of {:?} seq {}",
            key,
            fields.sequence
        );
        previous = expected;
    }
    rows.len()
}

#[tokio::test]
async fn appended_events_load_back_in_order_with_a_verifiable_chain() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    let store = EventStore::new(pool.clone());
    let first = store
        .append(&batch("a", 0, vec![event(1), event(2)]))
        .await
        .unwrap();
    assert_eq!(first.iter().map(|e| e.sequence).collect::<Vec<_>>(), [1, 2]);
    store.append(&batch("a", 2, vec![event(3)])).await.unwrap();
    store.append(&batch("b", 0, vec![event(1)])).await.unwrap();

    let loaded = store.load_stream(NOTE, "a", 0).await.unwrap();
    assert_eq!(
        loaded.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(loaded[2].payload["n"], 3);
    assert!(
        loaded
            .windows(2)
            .all(|w| w[0].global_position < w[1].global_position)
    );
    assert_eq!(store.load_stream(NOTE, "a", 2).await.unwrap().len(), 1);
    assert_eq!(assert_chains_verify(&pool).await, 4);
}

#[tokio::test]
async fn the_database_sets_recorded_at_and_tx_id_whatever_the_writer_sends() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    sqlx::query(
        "INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at, tx_id, hash) \
         VALUES ($1, 'Note', 'x', 1, 'Noted', '1', '{}', '{}', '2001-01-01', '1'::xid8, '\\xdeadbeef')",
    )
    .bind(Uuid::now_v7())
    .execute(&pool)
    .await
    .unwrap();
    let row = sqlx::query(
        "SELECT recorded_at > now() - interval '1 minute' AS fresh, tx_id <> '1'::xid8 AS real_tx, length(hash) AS len FROM events",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(row.get::<bool, _>("fresh"));
    assert!(row.get::<bool, _>("real_tx"));
    assert_eq!(row.get::<i32, _>("len"), 32);
    assert_chains_verify(&pool).await;
}

#[tokio::test]
async fn the_database_refuses_update_delete_and_truncate_even_for_a_superuser() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    let store = EventStore::new(pool.clone());
    store.append(&batch("a", 0, vec![event(1)])).await.unwrap();
    for sql in [
        "UPDATE events SET payload = '{\"n\": 2}'",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let err = sqlx::query(sql).execute(&pool).await.unwrap_err();
        let db = err.as_database_error().expect("a database error");
        assert_eq!(db.code().as_deref(), Some("LLA01"), "{sql}: {db}");
        assert!(db.message().contains("append-only"));
    }
    assert_eq!(store.load_stream(NOTE, "a", 0).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_application_role_has_no_privilege_to_change_events() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    let store = EventStore::new(pool.clone());
    store.append(&batch("a", 0, vec![event(1)])).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET ROLE ledger_app")
        .execute(&mut *conn)
        .await
        .unwrap();
    for sql in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "TRUNCATE events",
        "DELETE FROM unique_claims",
    ] {
        let err = sqlx::query(sql).execute(&mut *conn).await.unwrap_err();
        let db = err.as_database_error().unwrap();
        assert_eq!(db.code().as_deref(), Some("42501"), "{sql}: {db}"); // insufficient_privilege
    }
    // ...but it can append and read.
    commands::store::append_with(&mut *conn, &batch("a", 1, vec![event(2)]))
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(n, 2);
}

#[tokio::test]
async fn a_stale_or_gapped_append_is_a_conflict_and_writes_nothing() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    let store = EventStore::new(pool.clone());
    store.append(&batch("a", 0, vec![event(1)])).await.unwrap();
    let stale = store
        .append(&batch("a", 0, vec![event(9), event(10)]))
        .await;
    assert!(matches!(stale, Err(AppendError::Conflict)), "{stale:?}");
    let gap = store.append(&batch("a", 5, vec![event(9)])).await;
    assert!(matches!(gap, Err(AppendError::Conflict)), "{gap:?}");
    assert_eq!(store.load_stream(NOTE, "a", 0).await.unwrap().len(), 1);
}

/// 32 tasks race to append to one stream, each reloading and retrying on conflict. Whatever was
/// acknowledged is in the stream exactly once, and the sequences are 1..=n without a hole.
#[tokio::test]
async fn thirty_two_racing_appenders_leave_a_contiguous_stream_and_lose_no_acknowledged_event() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    let store = EventStore::new(pool.clone());
    let mut tasks = Vec::new();
    for task in 0..32i64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for n in 0..3 {
                for _attempt in 0..200 {
                    let version = store
                        .load_stream(NOTE, "hot", 0)
                        .await
                        .unwrap()
                        .last()
                        .map_or(0, |e| e.sequence);
                    let e = event(task * 100 + n);
                    let id = e.event_id;
                    match store.append(&batch("hot", version, vec![e])).await {
                        Ok(_) => {
                            acknowledged.push(id);
                            break;
                        }
                        Err(AppendError::Conflict) => tokio::task::yield_now().await,
                        Err(other) => panic!("{other}"),
                    }
                }
            }
            acknowledged
        }));
    }
    let mut acknowledged = Vec::new();
    for t in tasks {
        acknowledged.extend(t.await.unwrap());
    }
    let stream = store.load_stream(NOTE, "hot", 0).await.unwrap();
    let sequences: Vec<i64> = stream.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=stream.len() as i64).collect::<Vec<_>>());
    let stored: HashSet<Uuid> = stream.iter().map(|e| e.event_id).collect();
    assert_eq!(stored.len(), stream.len());
    for id in &acknowledged {
        assert!(stored.contains(id), "acknowledged event {id} is missing");
    }
    assert_eq!(
        acknowledged.len(),
        stream.len(),
        "only acknowledged events are stored"
    );
    assert_eq!(acknowledged.len(), 96);
    assert_chains_verify(&pool).await;
}

async fn catalogue(ledger: &Ledger) -> (domain::ids::OrganizationId, domain::ids::PolicyId) {
    let org = ledger
        .register_organization(
            &ctx(),
            NewOrganization {
                name: Name::parse("Acme").unwrap(),
                kind: OrganizationKind::Customer,
                parent_id: None,
            },
        )
        .await
        .unwrap();
    let product = ledger
        .define_product(
            &ctx(),
            NewProduct {
                name: Name::parse("Studio").unwrap(),
                kind: ProductKind::Application,
                app_id: None,
                parent_product_id: None,
                key_prefix: None,
            },
        )
        .await
        .unwrap();
    let terms = PolicyTerms::new(PolicyTermsInput {
        model: LicenseModel::NodeLocked,
        seats: SeatCount::new(2).unwrap(),
        duration_days: Some(365),
        trial_days: None,
        features: FeatureSet::parse(&["pro"]).unwrap(),
        offline_allowed: false,
        offline_grace_days: 0,
        payment_grace_days: 7,
        maintenance_months: None,
        lease_seconds: None,
    })
    .unwrap();
    let policy = ledger
        .define_policy(&ctx(), product.id, Name::parse("Pro").unwrap(), terms)
        .await
        .unwrap();
    (org.id, policy.id)
}

fn new_license(org: domain::ids::OrganizationId, policy: domain::ids::PolicyId) -> NewLicense {
    NewLicense {
        policy_id: policy,
        organization_id: org,
        seats: None,
        features: None,
        expires_at: None,
        source: LicenseSource::Admin,
    }
}

#[tokio::test]
async fn a_taken_app_guid_refuses_the_whole_command() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    let ledger = ledger(&pool);
    let app_id = AppId::parse(Uuid::new_v4()).unwrap();
    let product = |name: &str| NewProduct {
        name: Name::parse(name).unwrap(),
        kind: ProductKind::Application,
        app_id: Some(app_id),
        parent_product_id: None,
        key_prefix: None,
    };
    ledger.define_product(&ctx(), product("One")).await.unwrap();
    let err = ledger
        .define_product(&ctx(), product("Two"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, commands::LedgerError::Command(CommandError::ClaimTaken { scope, .. }) if scope == "app_id"),
        "{err:?}"
    );
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'Product'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

/// Ten administrators suspend the same license at once: exactly one suspension is recorded and the
/// nine others are told it is already suspended — decided on the winner's state, not a stale one.
#[tokio::test]
async fn racing_commands_on_one_license_are_decided_on_fresh_state() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    let ledger = ledger(&pool);
    let (org, policy) = catalogue(&ledger).await;
    let (issued, _) = ledger
        .issue_license(&ctx(), new_license(org, policy))
        .await
        .unwrap();
    let id: LicenseId = issued.id;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move {
            ledger
                .change_license(
                    &ctx(),
                    id,
                    LicenseChange::Suspend {
                        reason: Reason::parse("audit").unwrap(),
                    },
                )
                .await
        }));
    }
    let mut ok = 0;
    let mut already = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(commands::LedgerError::Command(CommandError::Rejected(e))) => {
                assert_eq!(e.code(), "LICENSE_ALREADY_SUSPENDED");
                already += 1;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!((ok, already), (1, 9));
    let events = ledger
        .store()
        .load_stream(AggregateType::License, &id.to_string(), 0)
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_outcome_and_refuses_another_request() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    let ledger = ledger(&pool);
    let (org, policy) = catalogue(&ledger).await;
    let mut keyed = ctx();
    keyed.idempotency = Some(Idempotency {
        key: "order-4711".into(),
        request_hash: "h1".into(),
    });
    let (first, key) = ledger
        .issue_license(&keyed, new_license(org, policy))
        .await
        .unwrap();
    assert!(key.is_some() && !first.replayed);
    let mut again = keyed.clone();
    again.correlation_id = "a-retry".into();
    let (second, key) = ledger
        .issue_license(&again, new_license(org, policy))
        .await
        .unwrap();
    assert!(second.replayed);
    assert!(key.is_none(), "a replay cannot show the key again");
    assert_eq!(second.id, first.id);
    assert_eq!(second.version, first.version);

    let mut other = keyed.clone();
    other.idempotency.as_mut().unwrap().request_hash = "h2".into();
    let err = ledger
        .issue_license(&other, new_license(org, policy))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        commands::LedgerError::Command(CommandError::IdempotencyKeyReused)
    ));

    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'License'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn concurrent_requests_with_one_idempotency_key_record_one_license() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    let ledger = ledger(&pool);
    let (org, policy) = catalogue(&ledger).await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move {
            let mut keyed = ctx();
            keyed.idempotency = Some(Idempotency {
                key: "same".into(),
                request_hash: "h".into(),
            });
            ledger.issue_license(&keyed, new_license(org, policy)).await
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        let (outcome, _) = t.await.unwrap().unwrap();
        ids.insert(outcome.id);
    }
    assert_eq!(ids.len(), 1, "every request answers with the same license");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'License'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

/// Two server nodes, each with its own aggregate cache, act on one license. A node's cache goes
/// stale whenever the other node writes; every decision must still be taken on the current state:
/// a stale "active" must not refuse a reinstatement, nor allow a second suspension.
#[tokio::test]
async fn nodes_with_stale_caches_still_decide_on_the_current_state() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    let node_a = ledger(&pool);
    let node_b = ledger(&pool);
    let (org, policy) = catalogue(&node_a).await;
    let (issued, _) = node_a
        .issue_license(&ctx(), new_license(org, policy))
        .await
        .unwrap();
    let id: LicenseId = issued.id;
    let suspend = || LicenseChange::Suspend {
        reason: Reason::parse("audit").unwrap(),
    };
    // Node A has the license cached as active; node B suspends it.
    assert!(
        node_a
            .store()
            .cache()
            .get::<domain::license::License>(AggregateType::License.as_str(), &id.to_string())
            .is_some()
    );
    node_b.change_license(&ctx(), id, suspend()).await.unwrap();
    // A's stale cache says "active": reinstating must not be refused as "not suspended".
    let reinstated = node_a
        .change_license(&ctx(), id, LicenseChange::Reinstate)
        .await
        .unwrap();
    assert_eq!(reinstated.version, 3);
    // B's cache still says "suspended": suspending again must succeed, not be refused.
    node_b.change_license(&ctx(), id, suspend()).await.unwrap();
    // A's cache says "active" again (stale): a second suspension must be refused, not recorded.
    let err = node_a
        .change_license(&ctx(), id, suspend())
        .await
        .unwrap_err();
    match err {
        commands::LedgerError::Command(CommandError::Rejected(e)) => {
            assert_eq!(e.code(), "LICENSE_ALREADY_SUSPENDED")
        }
        other => panic!("{other:?}"),
    }
    // A no-op decided on a stale cache is re-checked too: A still caches 2 seats when B sets 5,
    // so A setting 2 looks like a no-op to A but is a real change to record.
    node_b
        .change_license(
            &ctx(),
            id,
            LicenseChange::ChangeSeats {
                seats: SeatCount::new(5).unwrap(),
            },
        )
        .await
        .unwrap();
    let same = node_a
        .change_license(
            &ctx(),
            id,
            LicenseChange::ChangeSeats {
                seats: SeatCount::new(2).unwrap(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        same.appended.len(),
        1,
        "2 differs from the current 5, so it is recorded"
    );
    let events = node_a
        .store()
        .load_stream(AggregateType::License, &id.to_string(), 0)
        .await
        .unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "LicenseIssued",
            "LicenseSuspended",
            "LicenseReinstated",
            "LicenseSuspended",
            "SeatsChanged",
            "SeatsChanged"
        ]
    );
    assert_chains_verify(&pool).await;
}
