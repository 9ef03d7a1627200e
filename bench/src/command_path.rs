//! Issue #2: the command path against a raw INSERT of a comparable event row and against
//! cqrs-es + postgres-es as shipped, with 1 and 16 writers.
//!
//! - **raw**: single-row autocommit `INSERT`s into `bench_raw_events`, a copy of `events` with the
//!   same columns, constraints and indexes and no triggers (no hash chain);
//! - **cqrs-es + postgres-es** as shipped: `CqrsFramework` over `PostgresEventRepository` (its own
//!   tables), registering a new organization per command;
//! - **ours**: `Ledger::register_organization`, the full command path.

use std::sync::Arc;
use std::time::Duration;

use commands::clock::SystemClock;
use commands::keys::KeyHasher;
use commands::ledger::NewOrganization;
use commands::{CommandContext, EventStore, Ledger};
use cqrs_es::CqrsFramework;
use cqrs_es::persist::PersistedEventStore;
use domain::event::Actor;
use domain::ids::OrganizationId;
use domain::organization::{Organization, OrganizationAction, OrganizationCommand};
use domain::values::{Name, OrganizationKind};
use postgres_es::PostgresEventRepository;
use sqlx::postgres::PgPool;

use crate::harness::{Op, interleave, median, op, ratio_cell, ratios};

/// The raw baseline's table (`LIKE` never copies triggers) and postgres-es's own tables.
pub const BASELINE_TABLES: &str = "
CREATE TABLE bench_raw_events (LIKE events INCLUDING ALL);
CREATE TABLE pges_events (
    aggregate_type text NOT NULL, aggregate_id text NOT NULL, sequence bigint CHECK (sequence >= 0) NOT NULL,
    event_type text NOT NULL, event_version text NOT NULL, payload json NOT NULL, metadata json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence));
CREATE TABLE pges_snapshots (
    aggregate_type text NOT NULL, aggregate_id text NOT NULL, last_sequence bigint CHECK (last_sequence >= 0) NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL, payload json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence));
";

/// A raw single-row INSERT of an event row, autocommit.
pub fn raw_insert(pool: PgPool) -> Op {
    op(move || {
        let pool = pool.clone();
        async move {
            sqlx::query(
                "INSERT INTO bench_raw_events (event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                 VALUES ($1, 'Organization', $2, 1, 'OrganizationRegistered', '1', $3, $4)",
            )
            .bind(uuid::Uuid::now_v7())
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(serde_json::json!({"kind": "customer", "name": "Benchmark Organization", "parent_id": null}))
            .bind(serde_json::json!({"actor": "system", "correlation_id": "bench"}))
            .execute(&pool)
            .await?;
            Ok(())
        }
    })
}

/// Runs the benchmark and prints a Markdown table.
///
/// # Errors
/// Database errors.
pub async fn run(
    pool: PgPool,
    slice: Duration,
    cycles: usize,
    writers: &[usize],
) -> anyhow::Result<()> {
    sqlx::raw_sql(BASELINE_TABLES).execute(&pool).await?;
    let pges = Arc::new(CqrsFramework::new(
        PersistedEventStore::<PostgresEventRepository, Organization>::new_event_store(
            PostgresEventRepository::new(pool.clone()).with_tables("pges_events", "pges_snapshots"),
        ),
        vec![],
        (),
    ));
    let ledger = Ledger::new(
        EventStore::new(pool.clone()),
        KeyHasher::new([1; 32]),
        Arc::new(SystemClock),
    );
    let name = || Name::parse("Benchmark Organization").expect("valid");
    let pges_op = op(move || {
        let pges = pges.clone();
        async move {
            let id = OrganizationId::from_uuid(uuid::Uuid::now_v7());
            let command = OrganizationCommand {
                organization_id: id,
                at: chrono::Utc::now(),
                action: OrganizationAction::Register {
                    name: name(),
                    kind: OrganizationKind::Customer,
                    parent: None,
                },
            };
            pges.execute(&id.to_string(), command)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
        }
    });
    let ours = op(move || {
        let ledger = ledger.clone();
        async move {
            ledger
                .register_organization(
                    &CommandContext::new(Actor::System, "bench"),
                    NewOrganization {
                        name: name(),
                        kind: OrganizationKind::Customer,
                        parent_id: None,
                    },
                )
                .await
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!("{e}"))
        }
    });
    let scenarios = [
        ("raw", raw_insert(pool.clone())),
        ("postgres-es", pges_op),
        ("ours", ours),
    ];
    for (_, o) in &scenarios {
        crate::harness::rate(o, 4, Duration::from_millis(500)).await?; // warm up
    }
    println!(
        "\n| writers | raw INSERT /s | cqrs-es + postgres-es /s | ours /s | ours / raw (median, min-max) | ours / postgres-es (median) | target ours / raw |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &w in writers {
        let r = interleave(&scenarios, w, slice, cycles).await?;
        let target = if w == 1 { "≥ 0.90" } else { "≥ 0.70" };
        println!(
            "| {w} | {:.0} | {:.0} | {:.0} | {} | {:.2} | {target} |",
            median(&r[0]),
            median(&r[1]),
            median(&r[2]),
            ratio_cell(&ratios(&r[2], &r[0])),
            median(&ratios(&r[2], &r[1]))
        );
    }
    Ok(())
}

/// Issue #14: the command path with and without an `Idempotency-Key`, side by side. With a key,
/// an operation does what the HTTP API does for a request carrying one: digest the request, claim
/// the key in the store of answers (`application::idempotency`), run the command with the key
/// recorded on its event (the events' own unique index), and store the encrypted answer.
///
/// # Errors
/// Database errors.
pub async fn run_idempotency(
    pool: PgPool,
    slice: Duration,
    cycles: usize,
    writers: &[usize],
) -> anyhow::Result<()> {
    use application::idempotency::{Claimed, IdempotencyStore, StoredAnswer};
    use commands::Idempotency;
    use sha2::{Digest, Sha256};

    let ledger = Ledger::new(
        EventStore::new(pool.clone()),
        KeyHasher::new([1; 32]),
        Arc::new(SystemClock),
    );
    let store = IdempotencyStore::new(
        pool.clone(),
        &[1; 32],
        application::idempotency::DEFAULT_RETENTION,
    );
    let (ledger_for_parts, store_for_parts) = (ledger.clone(), store.clone());
    let input = || NewOrganization {
        name: Name::parse("Benchmark Organization").expect("valid"),
        kind: OrganizationKind::Customer,
        parent_id: None,
    };
    // The answer's body, which the handler serializes with or without a key.
    let answer_body = |outcome: &commands::Outcome<domain::organization::Organization>| {
        serde_json::to_vec(&serde_json::json!({
            "id": outcome.id.to_string(), "name": "Benchmark Organization",
            "kind": "customer", "parent_id": null, "status": "active",
            "created_at": outcome.created_at, "updated_at": outcome.updated_at,
        }))
    };
    let plain = {
        let ledger = ledger.clone();
        op(move || {
            let ledger = ledger.clone();
            async move {
                let outcome = ledger
                    .register_organization(&CommandContext::new(Actor::System, "bench"), input())
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                std::hint::black_box(answer_body(&outcome)?);
                Ok(())
            }
        })
    };
    let keyed = op(move || {
        let (ledger, store) = (ledger.clone(), store.clone());
        async move {
            let body = br#"{"name": "Benchmark Organization", "kind": "customer"}"#;
            let digest: [u8; 32] = Sha256::new()
                .chain_update(b"POST\n/v1/organizations\n")
                .chain_update(body)
                .finalize()
                .into();
            let key = uuid::Uuid::now_v7().to_string();
            let Claimed::Fresh(claim) = store.claim("token:bench", &key, &digest) else {
                anyhow::bail!("a fresh key was found claimed");
            };
            let mut ctx = CommandContext::new(Actor::System, "bench");
            ctx.idempotency = Some(Idempotency {
                key: key.clone(),
                request_hash: hex::encode(digest),
            });
            // As the middleware runs a request: observing whether the events' index replayed.
            let (outcome, seen) =
                commands::replays::observe(ledger.register_organization(&ctx, input())).await;
            let outcome = outcome.map_err(|e| anyhow::anyhow!("{e}"))?;
            anyhow::ensure!(seen.recorded, "a fresh key was not recorded on its event");
            let answer = StoredAnswer {
                status: 201,
                headers: vec![
                    ("content-type".into(), "application/json".into()),
                    (
                        "location".into(),
                        format!("/v1/organizations/{}", outcome.id),
                    ),
                ],
                body: answer_body(&outcome)?,
            };
            store.complete(&claim, &answer, seen.recorded)?;
            Ok(())
        }
    });
    // The two halves apart, to see which one costs: the key on the event only (the events'
    // unique index), and the store of answers only (claim, answer) around a command without key.
    let event_key_only = {
        let ledger = ledger_for_parts.clone();
        op(move || {
            let ledger = ledger.clone();
            async move {
                let mut ctx = CommandContext::new(Actor::System, "bench");
                ctx.idempotency = Some(Idempotency {
                    key: uuid::Uuid::now_v7().to_string(),
                    request_hash: "00".repeat(32),
                });
                ledger
                    .register_organization(&ctx, input())
                    .await
                    .map(|_| ())
                    .map_err(|e| anyhow::anyhow!("{e}"))
            }
        })
    };
    let store_only = {
        let (ledger, store) = (ledger_for_parts.clone(), store_for_parts.clone());
        op(move || {
            let (ledger, store) = (ledger.clone(), store.clone());
            async move {
                let key = uuid::Uuid::now_v7().to_string();
                let Claimed::Fresh(claim) = store.claim("token:bench", &key, &[0; 32]) else {
                    anyhow::bail!("a fresh key was found claimed");
                };
                let outcome = ledger
                    .register_organization(&CommandContext::new(Actor::System, "bench"), input())
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let answer = StoredAnswer {
                    status: 201,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: outcome.id.to_string().into_bytes(),
                };
                store.complete(&claim, &answer, true)?;
                Ok(())
            }
        })
    };
    // Answers are written after the response: each keyed slice lasts until they are written.
    let drained = {
        let store = store_for_parts.clone();
        op(move || {
            let store = store.clone();
            async move {
                store.drain().await;
                Ok(())
            }
        })
    };
    let scenarios = [
        ("without keys", plain, None),
        ("with keys", keyed, Some(drained.clone())),
        ("key on the event only", event_key_only, None),
        ("store of answers only", store_only, Some(drained)),
    ];
    for (_, o, settle) in &scenarios {
        // warm up
        crate::harness::rate_settled(o, settle.as_ref(), 4, Duration::from_millis(500)).await?;
    }
    println!(
        "\n| writers | without keys /s | with keys /s | with / without (median, min-max) | key on the event only / without | store only / without | target |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &w in writers {
        let r = crate::harness::interleave_settled(&scenarios, w, slice, cycles).await?;
        println!(
            "| {w} | {:.0} | {:.0} | {} | {} | {} | ≥ 0.90 at 16 |",
            median(&r[0]),
            median(&r[1]),
            ratio_cell(&ratios(&r[1], &r[0])),
            ratio_cell(&ratios(&r[2], &r[0])),
            ratio_cell(&ratios(&r[3], &r[0])),
        );
    }
    Ok(())
}
