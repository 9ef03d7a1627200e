//! The projector engine against a real PostgreSQL: exactly-once under concurrent, delayed and
//! rolled-back writers; one active instance across runners; rebuild equals live; lag.

use domain::AggregateType;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use domain::event::{RecordedEvent, VersionedEvent, encode_payload};
use domain::ids::*;
use domain::keys::KeyHash;
use domain::license::{LicenseEvent, LicenseIssued};
use domain::organization::OrganizationEvent;
use domain::policy::{PolicyEvent, PolicyTerms, PolicyTermsInput};
use domain::product::ProductEvent;
use domain::values::*;
use projections::engine::{self, Projection, ProjectionError, ReplaySafe};
use projections::notify::ChangeSignal;
use projections::{ProjectorRunner, RunnerConfig};
use serde_json::json;
use sqlx::{PgConnection, PgPool, Row};
use testdb::TestDb;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Records every event it is given; applying one twice violates the primary key.
struct Seen;

#[async_trait]
impl Projection for Seen {
    fn name(&self) -> &'static str {
        "test_seen"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["test_seen"]
    }
    fn aggregate_types(&self) -> &'static [AggregateType] {
        &[NOTE]
    }
    async fn apply(
        &self,
        conn: &mut PgConnection,
        e: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        sqlx::query("INSERT INTO test_seen (event_id, position) VALUES ($1, $2)")
            .bind(e.event_id)
            .bind(e.global_position)
            .execute(conn)
            .await?;
        Ok(())
    }
}
impl ReplaySafe for Seen {}

/// The aggregate type of the `Noted` events these tests write. No projection that decodes
/// payloads reads it (only audit, which copies any type), so fake events are safe under it.
const NOTE: AggregateType = AggregateType::ApiToken;

async fn create_seen(pool: &PgPool) {
    sqlx::query("CREATE TABLE test_seen (event_id uuid PRIMARY KEY, position bigint NOT NULL, applied bigserial)")
        .execute(pool)
        .await
        .unwrap();
    engine::ensure_checkpoint(pool, "test_seen").await.unwrap();
}

async fn insert_note(conn: &mut PgConnection, stream: &str, sequence: i64) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ($1, $4, $2, $3, 'Noted', '1', '{}', '{}')",
    )
    .bind(id)
    .bind(stream)
    .bind(sequence)
    .bind(NOTE.as_str())
    .execute(conn)
    .await
    .unwrap();
    id
}

fn random_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    u64::from_le_bytes(b) % n
}

/// Eight writers commit transactions of one to three events; a quarter are held open for up to
/// 60 ms after taking their positions (so later positions commit first), a fifth roll back. A
/// projector runs batches throughout. It must apply every committed event once and nothing else.
#[tokio::test]
async fn concurrent_delayed_and_rolled_back_writers_are_projected_exactly_once() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    create_seen(&pool).await;
    let done = Arc::new(AtomicBool::new(false));
    let projector = {
        let pool = pool.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut batches = 0;
            while !done.load(Ordering::SeqCst) {
                engine::run_batch(&pool, &Seen, 7).await.unwrap();
                batches += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            batches
        })
    };
    let mut writers = Vec::new();
    for w in 0..8 {
        let pool = pool.clone();
        writers.push(tokio::spawn(async move {
            let mut committed = Vec::new();
            for t in 0..25 {
                let mut tx = pool.begin().await.unwrap();
                let stream = format!("w{w}-t{t}");
                let n = 1 + random_below(3) as i64;
                let mut ids = Vec::new();
                for seq in 1..=n {
                    ids.push(insert_note(&mut tx, &stream, seq).await);
                }
                if random_below(4) == 0 {
                    tokio::time::sleep(Duration::from_millis(random_below(60))).await;
                }
                if random_below(5) == 0 {
                    tx.rollback().await.unwrap();
                } else {
                    tx.commit().await.unwrap();
                    committed.extend(ids);
                }
            }
            committed
        }));
    }
    let mut committed = HashSet::new();
    for w in writers {
        committed.extend(w.await.unwrap());
    }
    engine::catch_up_to_head(&pool, &Seen, 100, Duration::from_secs(10))
        .await
        .unwrap();
    done.store(true, Ordering::SeqCst);
    let batches = projector.await.unwrap();
    assert!(batches > 10, "the projector ran while writers were writing");

    let rows = sqlx::query("SELECT event_id FROM test_seen")
        .fetch_all(&pool)
        .await
        .unwrap();
    let seen: HashSet<Uuid> = rows.iter().map(|r| r.get("event_id")).collect();
    assert_eq!(rows.len(), seen.len(), "no event applied twice");
    let skipped: Vec<_> = committed.difference(&seen).collect();
    assert!(skipped.is_empty(), "skipped committed events: {skipped:?}");
    let phantom: Vec<_> = seen.difference(&committed).collect();
    assert!(
        phantom.is_empty(),
        "applied rolled-back events: {phantom:?}"
    );
    let applied: i64 = sqlx::query_scalar(
        "SELECT events_applied FROM projector_checkpoints WHERE name = 'test_seen'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(applied as usize, committed.len());
}

/// The naive reader our engine exists to avoid: position order without the commit horizon skips
/// an event whose transaction took its position early and committed late. This keeps the test
/// above honest: the scenario it builds really breaks position-ordered projectors.
#[tokio::test]
async fn a_late_commit_is_not_skipped_although_a_later_position_committed_first() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    create_seen(&pool).await;
    let mut slow = pool.begin().await.unwrap();
    let early = insert_note(&mut slow, "slow", 1).await; // takes the lower position, commits last
    let mut fast = pool.acquire().await.unwrap();
    let late = insert_note(&mut fast, "fast", 1).await;
    // Position order would now deliver `late` and move past `early`'s position for good.
    let naive: Vec<Uuid> =
        sqlx::query_scalar("SELECT event_id FROM events ORDER BY global_position")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(naive, vec![late], "only the later position is visible");
    // Our engine waits: the slow transaction is still running, so nothing is past the horizon.
    assert_eq!(engine::run_batch(&pool, &Seen, 10).await.unwrap(), 0);
    slow.commit().await.unwrap();
    engine::catch_up_to_head(&pool, &Seen, 10, Duration::from_secs(10))
        .await
        .unwrap();
    let seen: HashSet<Uuid> = sqlx::query_scalar("SELECT event_id FROM test_seen")
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(seen, HashSet::from([early, late]));
}

#[tokio::test]
async fn only_one_runner_is_active_and_a_standby_takes_over() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    create_seen(&pool).await;
    let signal = ChangeSignal::new();
    let first = CancellationToken::new();
    let second = CancellationToken::new();
    let run = |token: CancellationToken| tokio::spawn(quick_runner(&pool, &signal).run(token));
    let a = run(first.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b = run(second.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        active_runners(&pool).await,
        1,
        "exactly one active instance"
    );

    let mut conn = pool.acquire().await.unwrap();
    let before = insert_note(&mut conn, "s", 1).await;
    signal.bump();
    wait_until_seen(&pool, before).await;
    first.cancel();
    a.await.unwrap();
    let after = insert_note(&mut conn, "s", 2).await;
    wait_until_seen(&pool, after).await; // the standby became active and applied it
    second.cancel();
    b.await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM test_seen")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 2);
}

/// The projector instances active on `pool`'s database: the holders of a projector advisory lock
/// (`ProjectorRunner::lead`) in this database. Advisory locks belong to the database they were
/// taken in, and `pg_locks` lists the whole server's: a `ledger serve`, or another test, on the
/// same PostgreSQL holds the same keys in its own database, and must not count here.
async fn active_runners(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = 5170 \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Another ledger on the same PostgreSQL (as a `ledger serve` on its own database: the same
/// projector, so the same advisory lock key, held there) neither counts as an instance of this
/// database's projector nor keeps this database's runner standing by.
#[tokio::test]
async fn a_runner_on_another_database_of_the_server_neither_counts_nor_blocks_this_one() {
    let other = TestDb::migrated().await;
    let other_pool = other.pool().await;
    create_seen(&other_pool).await;
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    create_seen(&pool).await;
    let signal = ChangeSignal::new();
    let run = |pool: &PgPool, token: CancellationToken| {
        tokio::spawn(quick_runner(pool, &signal).run(token))
    };
    let theirs_stop = CancellationToken::new();
    let theirs = run(&other_pool, theirs_stop.clone());
    for attempt in 0.. {
        if active_runners(&other_pool).await == 1 {
            break;
        }
        assert!(
            attempt < 400,
            "the other database's runner never became active"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let ours_stop = CancellationToken::new();
    let ours = run(&pool, ours_stop.clone());
    // Ours is active although the server holds the same key elsewhere: it applies an event.
    let mut conn = pool.acquire().await.unwrap();
    let id = insert_note(&mut conn, "s", 1).await;
    signal.bump();
    wait_until_seen(&pool, id).await;
    assert_eq!(active_runners(&pool).await, 1, "this database's instances");
    assert_eq!(
        active_runners(&other_pool).await,
        1,
        "the other's instances"
    );

    ours_stop.cancel();
    theirs_stop.cancel();
    ours.await.unwrap();
    theirs.await.unwrap();
}

async fn wait_until_seen(pool: &PgPool, id: Uuid) {
    for _ in 0..200 {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT position FROM test_seen WHERE event_id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
                .unwrap();
        if found.is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("event {id} was never projected");
}

#[tokio::test]
async fn lag_counts_what_is_not_applied_yet() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    create_seen(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    for seq in 1..=3 {
        insert_note(&mut conn, "l", seq).await;
    }
    let lag = engine::lag(&pool, &Seen).await.unwrap();
    assert_eq!(lag.pending_events, 3);
    engine::catch_up_to_head(&pool, &Seen, 2, Duration::from_secs(10))
        .await
        .unwrap();
    let lag = engine::lag(&pool, &Seen).await.unwrap();
    assert_eq!(
        (
            lag.pending_events,
            lag.events_applied,
            lag.oldest_pending_ms
        ),
        (0, 3, 0)
    );
}

// ----- a projector whose events are rare -----

/// An aggregate type `Seen` does not read: the events of every other projector, to it.
const ELSEWHERE: &str = "Elsewhere";

async fn insert_elsewhere(conn: &mut PgConnection, stream: &str, sequence: i64) {
    sqlx::query(
        "INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ($1, $4, $2, $3, 'Happened', '1', '{}', '{}')",
    )
    .bind(Uuid::now_v7())
    .bind(stream)
    .bind(sequence)
    .bind(ELSEWHERE)
    .execute(conn)
    .await
    .unwrap();
}

async fn stored_checkpoint(pool: &PgPool) -> engine::Checkpoint {
    let mut conn = pool.acquire().await.unwrap();
    engine::checkpoint(&mut conn, "test_seen").await.unwrap()
}

async fn last_event(pool: &PgPool) -> engine::Checkpoint {
    let (tx_id, position): (i64, i64) = sqlx::query_as(
        "SELECT tx_id::text::bigint, global_position FROM events \
         ORDER BY tx_id DESC, global_position DESC LIMIT 1",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    engine::Checkpoint { tx_id, position }
}

/// Waits until the stored checkpoint of `Seen` is `target` (the runner writes it within a poll
/// interval of moving there).
async fn wait_for_checkpoint(pool: &PgPool, target: &engine::Checkpoint) {
    for attempt in 0.. {
        let at = stored_checkpoint(pool).await;
        if at == *target {
            return;
        }
        assert!(
            attempt < 200,
            "the checkpoint never reached {target:?}: it is at {at:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A runner of `Seen` that polls every 20 ms and stands by for 50 ms between attempts.
fn quick_runner(pool: &PgPool, signal: &ChangeSignal) -> ProjectorRunner {
    ProjectorRunner::new(
        pool.clone(),
        Arc::new(Seen),
        signal.subscribe(),
        RunnerConfig {
            batch_size: 50,
            poll_interval: Duration::from_millis(20),
            standby_interval: Duration::from_millis(50),
        },
    )
}

/// A projector's checkpoint used to move only when it applied an event: one whose types are
/// rare looked through every other event since its last one on every wake-up, a cost that grew
/// with the log. The runner now moves its checkpoint past what holds none of its events, applies
/// nothing for them, and still applies its own when they come.
#[tokio::test]
async fn a_runner_moves_its_checkpoint_past_the_events_of_other_projectors() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    create_seen(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    let mine = insert_note(&mut conn, "mine", 1).await;
    for seq in 1..=300 {
        insert_elsewhere(&mut conn, "other", seq).await;
    }
    let signal = ChangeSignal::new();
    let stop = CancellationToken::new();
    let runner = tokio::spawn(quick_runner(&pool, &signal).run(stop.clone()));
    signal.bump();
    wait_until_seen(&pool, mine).await;
    let head = last_event(&pool).await;
    wait_for_checkpoint(&pool, &head).await;
    let lag = engine::lag(&pool, &Seen).await.unwrap();
    assert_eq!((lag.events_applied, lag.pending_events), (1, 0));

    // More of both: its own is applied, and the checkpoint follows the log again.
    for seq in 301..=310 {
        insert_elsewhere(&mut conn, "other", seq).await;
    }
    let later = insert_note(&mut conn, "mine", 2).await;
    insert_elsewhere(&mut conn, "other", 311).await;
    signal.bump();
    wait_until_seen(&pool, later).await;
    let head = last_event(&pool).await;
    wait_for_checkpoint(&pool, &head).await;
    stop.cancel();
    runner.await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM test_seen")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 2, "only its own events, each once");
}

/// Moving past other projectors' events must not move past one of its own that commits late: an
/// event whose transaction is still open when the runner moves on lies above the commit horizon,
/// so the stretch it skips ends below it, and the event is applied once it commits.
#[tokio::test]
async fn a_late_commit_is_applied_after_the_runner_moved_past_later_events_of_other_types() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    create_seen(&pool).await;
    let signal = ChangeSignal::new();
    let stop = CancellationToken::new();
    let runner = tokio::spawn(quick_runner(&pool, &signal).run(stop.clone()));
    let mut conn = pool.acquire().await.unwrap();
    // First, proof that the runner moves: its checkpoint reaches these.
    for seq in 1..=20 {
        insert_elsewhere(&mut conn, "before", seq).await;
    }
    signal.bump();
    let before = last_event(&pool).await;
    // The runner moves past the others' events.
    wait_for_checkpoint(&pool, &before).await;
    let mut slow = pool.begin().await.unwrap();
    let late = insert_note(&mut slow, "slow", 1).await; // the lower transaction id, committed last
    let (late_tx, late_position): (i64, i64) = sqlx::query_as(
        "SELECT tx_id::text::bigint, global_position FROM events WHERE event_id = $1",
    )
    .bind(late)
    .fetch_one(&mut *slow)
    .await
    .unwrap();
    let late_at = engine::Checkpoint {
        tx_id: late_tx,
        position: late_position,
    };
    for seq in 1..=50 {
        insert_elsewhere(&mut conn, "other", seq).await;
    }
    signal.bump();
    // Let the runner look several times (and write its checkpoint) while `slow` stays open.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        stored_checkpoint(&pool).await < late_at,
        "the checkpoint moved past an event whose transaction is still open"
    );
    slow.commit().await.unwrap();
    for seq in 51..=60 {
        insert_elsewhere(&mut conn, "other", seq).await;
    }
    signal.bump();
    wait_until_seen(&pool, late).await;
    stop.cancel();
    runner.await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM test_seen")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

/// The runner's idle look (every wake-up of every projector) reads the commit-order index under
/// the generic plan PostgreSQL switches a prepared statement to after five runs. The `EXISTS`
/// it replaces had a generic plan that read the whole table: 7 ms at 22,000 events, on every
/// write, for every projector.
#[tokio::test]
async fn the_look_ahead_reads_an_index_under_a_generic_plan() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    let mut conn = pool.acquire().await.unwrap();
    for seq in 1..=2000 {
        insert_elsewhere(&mut conn, "other", seq).await;
    }
    sqlx::query("ANALYZE events")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("SET plan_cache_mode = force_generic_plan")
        .execute(&mut *conn)
        .await
        .unwrap();
    for (name, sql, args) in [
        ("typed", engine::LOOK_AHEAD_TYPED, "('0', 0, '{ApiToken}')"),
        ("any", engine::LOOK_AHEAD_ANY, "('0', 0)"),
    ] {
        sqlx::query(&format!("PREPARE look_{name} AS {sql}"))
            .execute(&mut *conn)
            .await
            .unwrap();
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN EXECUTE look_{name}{args}"))
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        let plan = plan.join("\n");
        // Both probes (what is pending, and the head) walk the commit-order index, in its
        // order: no sequential scan, no other index, nothing sorted.
        assert!(
            !plan.contains("Seq Scan") && !plan.contains("Sort") && !plan.contains("Bitmap"),
            "{name}: the look-ahead reads the log another way:\n{plan}"
        );
        assert_eq!(
            plan.matches("using events_commit_order on events").count(),
            2,
            "{name}:\n{plan}"
        );
    }
}

/// The organization tree (read before authorizations) moves its checkpoint past other events too,
/// and still applies the Organization events that come after them.
#[tokio::test]
async fn the_organization_tree_moves_past_other_events_and_applies_its_own() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    let tree = projections::tree::TreeModel::load(&pool).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    for seq in 1..=100 {
        insert_elsewhere(&mut conn, "other", seq).await;
    }
    assert_eq!(tree.refresh(&pool).await.unwrap(), 0);
    let head = last_event(&pool).await;
    assert_eq!(tree.current(&pool, 0).await.unwrap().checkpoint(), &head);
    let org = Uuid::now_v7();
    append(
        &mut conn,
        org,
        1,
        &OrganizationEvent::Registered {
            name: Name::parse("Acme").unwrap(),
            kind: OrganizationKind::Customer,
            parent_id: None,
        },
    )
    .await;
    insert_elsewhere(&mut conn, "other", 101).await;
    assert_eq!(tree.refresh(&pool).await.unwrap(), 1);
    let state = tree.current(&pool, 0).await.unwrap();
    assert!(state.tree().contains(OrganizationId::from_uuid(org)));
}

// ----- the real read models: rebuild equals live -----

async fn append<E: VersionedEvent>(conn: &mut PgConnection, id: Uuid, sequence: i64, event: &E) {
    sqlx::query(
        "INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(Uuid::now_v7())
    .bind(E::AGGREGATE_TYPE)
    .bind(id.to_string())
    .bind(sequence)
    .bind(event.event_type())
    .bind(event.event_version())
    .bind(encode_payload(event).unwrap())
    .bind(json!({"actor": "system", "correlation_id": "test"}))
    .execute(conn)
    .await
    .unwrap();
}

async fn dump(pool: &PgPool, table: &str) -> Vec<String> {
    sqlx::query_scalar(&format!(
        "SELECT row_to_json(t)::text FROM {table} t ORDER BY id"
    ))
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn rebuilding_the_read_models_from_position_zero_gives_the_rows_the_live_projectors_wrote() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    let mut conn = pool.acquire().await.unwrap();
    let org = Uuid::now_v7();
    let other_org = Uuid::now_v7();
    let product = Uuid::now_v7();
    let policy = Uuid::now_v7();
    let t = |s: &str| -> domain::Timestamp { s.parse().unwrap() };
    let name = |s: &str| Name::parse(s).unwrap();
    for (id, n) in [(org, "Acme"), (other_org, "Globex")] {
        append(
            &mut conn,
            id,
            1,
            &OrganizationEvent::Registered {
                name: name(n),
                kind: OrganizationKind::Customer,
                parent_id: None,
            },
        )
        .await;
    }
    append(
        &mut conn,
        org,
        2,
        &OrganizationEvent::Renamed {
            name: name("Acme AG"),
        },
    )
    .await;
    append(
        &mut conn,
        product,
        1,
        &ProductEvent::Defined {
            name: name("Studio"),
            kind: ProductKind::Application,
            app_id: AppId::parse(Uuid::new_v4()).unwrap(),
            parent_product_id: None,
            key_prefix: KeyPrefix::parse("ST").unwrap(),
        },
    )
    .await;
    let terms = PolicyTerms::new(PolicyTermsInput {
        model: LicenseModel::NodeLocked,
        seats: SeatCount::new(2).unwrap(),
        duration_days: Some(30),
        trial_days: None,
        features: FeatureSet::parse(&["pro"]).unwrap(),
        offline_allowed: false,
        offline_grace_days: 0,
        payment_grace_days: 3,
        maintenance_months: None,
        lease_seconds: None,
    })
    .unwrap();
    append(
        &mut conn,
        policy,
        1,
        &PolicyEvent::Defined {
            product_id: ProductId::from_uuid(product),
            name: name("Pro"),
            version: 1,
            terms: terms.clone(),
        },
    )
    .await;
    append(
        &mut conn,
        policy,
        2,
        &PolicyEvent::Revised {
            version: 2,
            name: name("Pro+"),
            terms: terms.clone(),
        },
    )
    .await;
    for i in 0..5u8 {
        let license = Uuid::now_v7();
        append(
            &mut conn,
            license,
            1,
            &LicenseEvent::Issued(Box::new(LicenseIssued {
                product_id: ProductId::from_uuid(product),
                app_id: AppId::parse(Uuid::new_v4()).unwrap(),
                policy_id: PolicyId::from_uuid(policy),
                policy_version: 2,
                organization_id: OrganizationId::from_uuid(org),
                key_hash: KeyHash::from_bytes([i; 32]),
                key_prefix: format!("ST-000{i}"),
                seats: SeatCount::new(2).unwrap(),
                features: FeatureSet::parse(&["pro"]).unwrap(),
                starts_at: t("2026-01-01T00:00:00Z"),
                expires_at: Some(t("2026-02-01T00:00:00Z")),
                trial_ends_at: None,
                maintenance_until: None,
                source: LicenseSource::Admin,
                terms: terms.clone(),
            })),
        )
        .await;
        append(
            &mut conn,
            license,
            2,
            &LicenseEvent::Suspended {
                reason: Reason::parse("audit").unwrap(),
            },
        )
        .await;
        if i % 2 == 0 {
            append(&mut conn, license, 3, &LicenseEvent::Reinstated {}).await;
            append(
                &mut conn,
                license,
                4,
                &LicenseEvent::Transferred {
                    organization_id: OrganizationId::from_uuid(other_org),
                },
            )
            .await;
        }
    }
    let projections = projections::all();
    for p in &projections {
        engine::ensure_checkpoint(&pool, p.name()).await.unwrap();
        engine::catch_up_to_head(&pool, p.as_ref(), 3, Duration::from_secs(10))
            .await
            .unwrap();
    }
    let tables = [
        "rm_organizations",
        "rm_products",
        "rm_policies",
        "rm_licenses",
    ];
    let mut live = Vec::new();
    for table in tables {
        live.push(dump(&pool, table).await);
    }
    assert_eq!(live[3].len(), 5);
    assert!(live[0][0].contains("Acme AG"));

    engine::rebuild(
        &pool,
        &projections::catalogue::OrganizationsProjection,
        1000,
    )
    .await
    .unwrap();
    engine::rebuild(&pool, &projections::catalogue::ProductsProjection, 1000)
        .await
        .unwrap();
    engine::rebuild(&pool, &projections::catalogue::PoliciesProjection, 1000)
        .await
        .unwrap();
    engine::rebuild(&pool, &projections::licenses::LicensesProjection, 1000)
        .await
        .unwrap();
    for (i, table) in tables.iter().enumerate() {
        assert_eq!(dump(&pool, table).await, live[i], "{table} after rebuild");
    }
}

/// The one `LISTEN` of a process: a notification another process sent wakes the subscribers; the
/// process's own, sent by its forwarder after a local append, does not wake them a second time
/// (the append hook woke them already).
#[tokio::test]
async fn a_process_is_woken_by_other_processes_notifications_not_by_its_own() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    let signal = ChangeSignal::new();
    let mut woken = signal.subscribe();
    let token = CancellationToken::new();
    let listening = tokio::spawn(signal.clone().listen(
        pool.clone(),
        Duration::from_millis(50),
        token.clone(),
    ));
    let forwarding = tokio::spawn(signal.clone().forward_to_postgres(
        pool.clone(),
        Duration::from_millis(10),
        token.clone(),
    ));
    // Connected: the listener wakes everyone once when it starts listening.
    tokio::time::timeout(Duration::from_secs(10), woken.changed())
        .await
        .expect("the listener started")
        .unwrap();
    woken.borrow_and_update();

    // A local append: one wake from the hook, none from the notification coming back.
    signal.bump();
    assert!(woken.has_changed().unwrap(), "the hook wakes at once");
    woken.borrow_and_update();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(
        !woken.has_changed().unwrap(),
        "the process's own notification woke it a second time"
    );

    // Another process's append (an older node's notification has no origin).
    sqlx::query("SELECT pg_notify('ledger_events', '')")
        .execute(&pool)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), woken.changed())
        .await
        .expect("another process's notification wakes it")
        .unwrap();
    token.cancel();
    listening.await.unwrap();
    forwarding.await.unwrap();
}
