//! Issue #3: activations with concurrent clients against a raw single-row INSERT.
//!
//! "Ours" is `Ledger::activate`, the full command: the edge is not included (it is a lookup in
//! memory), the License aggregate decides against its seats and the validation decision, and one
//! `InstallationActivated` is appended with the hash chain. Clients spread over 2,000 licenses of
//! 1,000 seats each, as real activations spread over licenses.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use commands::clock::SystemClock;
use commands::keys::KeyHasher;
use commands::ledger::{NewLicense, NewOrganization, NewProduct};
use commands::{CommandContext, EventStore, Ledger};
use domain::event::Actor;
use domain::ids::LicenseId;
use domain::policy::{PolicyTerms, PolicyTermsInput};
use domain::values::*;
use sqlx::postgres::PgPool;

use crate::harness::{interleave, median, op, ratio_cell, ratios};

const LICENSES: usize = 2_000;

/// Creates the catalogue and `LICENSES` licenses; returns the ledger and their ids.
///
/// # Errors
/// Database errors.
pub async fn setup(pool: &PgPool, seats: u32) -> anyhow::Result<(Ledger, Vec<LicenseId>)> {
    let ledger = Ledger::new(
        EventStore::new(pool.clone()),
        KeyHasher::new([1; 32]),
        Arc::new(SystemClock),
    );
    let ctx = CommandContext::new(Actor::System, "bench-setup");
    let err = |e: commands::LedgerError| anyhow::anyhow!("{e}");
    let org = ledger
        .register_organization(
            &ctx,
            NewOrganization {
                name: Name::parse("Bench")?,
                kind: OrganizationKind::Customer,
                parent_id: None,
            },
        )
        .await
        .map_err(err)?;
    let product = ledger
        .define_product(
            &ctx,
            NewProduct {
                name: Name::parse("Bench")?,
                kind: ProductKind::Application,
                app_id: None,
                parent_product_id: None,
                key_prefix: None,
            },
        )
        .await
        .map_err(err)?;
    let terms = PolicyTerms::new(PolicyTermsInput {
        model: LicenseModel::NodeLocked,
        seats: SeatCount::new(seats)?,
        duration_days: Some(365),
        trial_days: None,
        features: FeatureSet::parse(&["pro"])?,
        offline_allowed: true,
        offline_grace_days: 14,
        payment_grace_days: 7,
        maintenance_months: None,
        lease_seconds: None,
    })?;
    let policy = ledger
        .define_policy(&ctx, product.id, Name::parse("Bench")?, terms)
        .await
        .map_err(err)?;
    let mut ids = Vec::with_capacity(LICENSES);
    for _ in 0..LICENSES {
        let (outcome, _) = ledger
            .issue_license(
                &ctx,
                NewLicense {
                    policy_id: policy.id,
                    organization_id: org.id,
                    seats: None,
                    features: None,
                    expires_at: None,
                    source: LicenseSource::Admin,
                },
            )
            .await
            .map_err(err)?;
        ids.push(outcome.id);
    }
    Ok((ledger, ids))
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
    sqlx::raw_sql(crate::command_path::BASELINE_TABLES)
        .execute(&pool)
        .await?;
    eprintln!("issuing {LICENSES} licenses…");
    let (ledger, ids) = setup(&pool, 1_000).await?;
    let ids = Arc::new(ids);
    let counter = Arc::new(AtomicU64::new(0));
    let ours = op(move || {
        let (ledger, ids, counter) = (ledger.clone(), ids.clone(), counter.clone());
        async move {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            let license = ids[(n % ids.len() as u64) as usize];
            ledger
                .activate(
                    &CommandContext::new(Actor::Client, "bench"),
                    license,
                    Fingerprint::parse(&format!("machine-{n}"))?,
                    None,
                    None,
                    Environment::Production,
                )
                .await
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!("{e}"))
        }
    });
    let scenarios = [
        ("raw", crate::command_path::raw_insert(pool.clone())),
        ("ours", ours),
    ];
    for (_, o) in &scenarios {
        crate::harness::rate(o, 4, Duration::from_millis(500)).await?;
    }
    println!(
        "\n| clients | raw INSERT /s | activations /s | activations / raw (median, min-max) | target |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for &w in writers {
        let r = interleave(&scenarios, w, slice, cycles).await?;
        let target = if w == 16 { "≥ 0.70" } else { "—" };
        println!(
            "| {w} | {:.0} | {:.0} | {} | {target} |",
            median(&r[0]),
            median(&r[1]),
            ratio_cell(&ratios(&r[1], &r[0]))
        );
    }
    Ok(())
}
