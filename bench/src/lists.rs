//! Issue #14: a filtered page of `GET /v1/licenses` at 1M licenses (ADR 0017), target p99 < 20 ms.
//!
//! Seeding: the catalogue (1,000 organizations, a tenth of them below another, 20 products with a
//! policy each, two of them trials) goes through the command services; the licenses are written as
//! real `LicenseIssued` events in multi-row INSERTs (through the insert trigger, as any writer),
//! with expiries spread over a year before and after now, and every 20th license suspended and
//! every 100th revoked by a second event. Then the `licenses`, `organizations` projectors run to
//! the head: `rm_licenses` holds exactly the rows (states and list columns) the live projector
//! writes. `ANALYZE` then, as autovacuum would after such a load.
//!
//! Measured: the use case every front end calls, `App::catalogue().licenses` (the SQL of the page
//! and the views of its 100 licenses, without HTTP), one request at a time; per filter, a first
//! page and the page its cursor continues to, with the filter's value drawn afresh each time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use application::catalogue::{LicenseQuery, PageRequest};
use application::{App, AppConfig};
use commands::clock::SystemClock;
use commands::keys::KeyHasher;
use commands::ledger::{NewOrganization, NewProduct};
use commands::{CommandContext, EventStore, Ledger};
use domain::AggregateType;
use domain::event::{Actor, EventMetadata, encode_payload};
use domain::ids::{OrganizationId, PolicyId, ProductId};
use domain::keys::LicenseKey;
use domain::license::{LicenseEvent, LicenseIssued};
use domain::policy::{PolicyTerms, PolicyTermsInput};
use domain::status::LicenseStatus;
use domain::values::*;
use projections::queries::{LicenseFilter, Order, Window};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgPool;

const PEPPER: [u8; 32] = [0x5a; 32];
const ORGANIZATIONS: usize = 1_000;
const PRODUCTS: usize = 20;

/// A small deterministic generator (xorshift), so runs draw the same values.
struct Draw(u64);

impl Draw {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).unwrap_or(0)
    }
}

struct Catalogue {
    organizations: Vec<OrganizationId>,
    products: Vec<(ProductId, KeyPrefix, domain::ids::AppId)>,
    policies: Vec<(PolicyId, PolicyTerms)>,
}

async fn catalogue(ledger: &Ledger) -> anyhow::Result<Catalogue> {
    let ctx = CommandContext::new(Actor::Operator, "bench-lists");
    let err = |e: commands::LedgerError| anyhow::anyhow!("{e}");
    let mut organizations: Vec<OrganizationId> = Vec::new();
    for i in 0..ORGANIZATIONS {
        // Organizations 100 and up sit below one of the first hundred: trees for
        // include_descendants.
        let parent = (i >= 100).then(|| organizations[i % 100]);
        let o = ledger
            .register_organization(
                &ctx,
                NewOrganization {
                    name: Name::parse(&format!("Customer {i}"))?,
                    kind: OrganizationKind::Customer,
                    parent_id: parent,
                },
            )
            .await
            .map_err(err)?;
        organizations.push(o.id);
    }
    let mut products = Vec::new();
    let mut policies = Vec::new();
    for i in 0..PRODUCTS {
        let p = ledger
            .define_product(
                &ctx,
                NewProduct {
                    name: Name::parse(&format!("Product {i}"))?,
                    kind: ProductKind::Application,
                    app_id: None,
                    parent_product_id: None,
                    key_prefix: Some(KeyPrefix::parse(&format!("P{i}"))?),
                },
            )
            .await
            .map_err(err)?;
        let state = p.aggregate.state().context("product")?.clone();
        let terms = PolicyTerms::new(PolicyTermsInput {
            model: LicenseModel::NodeLocked,
            seats: SeatCount::new(3)?,
            duration_days: Some(365),
            trial_days: if i < 2 { Some(30) } else { None },
            features: FeatureSet::parse(&["pro", "export.pdf"])?,
            offline_allowed: true,
            offline_grace_days: 14,
            payment_grace_days: 7,
            maintenance_months: Some(12),
            lease_seconds: None,
        })?;
        let policy = ledger
            .define_policy(&ctx, p.id, Name::parse("Standard")?, terms.clone())
            .await
            .map_err(err)?;
        products.push((p.id, state.key_prefix, state.app_id));
        policies.push((policy.id, terms));
    }
    Ok(Catalogue {
        organizations,
        products,
        policies,
    })
}

/// Writes `n` licenses as events (see the module's header) and projects them.
async fn seed(pool: &PgPool, n: usize) -> anyhow::Result<Catalogue> {
    let hasher = KeyHasher::new(PEPPER);
    let ledger = Ledger::new(
        EventStore::new(pool.clone()),
        hasher.clone(),
        Arc::new(SystemClock),
    );
    let c = catalogue(&ledger).await?;
    let now = chrono::Utc::now();
    let metadata = serde_json::to_string(&EventMetadata::new(Actor::Operator, "bench-lists"))?;
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let batch = (n - i).min(2_000);
        let (mut event_ids, mut stream_ids, mut sequences, mut types, mut versions, mut payloads) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for j in i..i + batch {
            let product = j % PRODUCTS;
            let (product_id, prefix, app_id) = &c.products[product];
            let (policy_id, terms) = &c.policies[product];
            let digest = Sha256::digest(format!("ledger-bench-lists:{j}").as_bytes());
            let mut entropy = [0u8; 20];
            entropy.copy_from_slice(&digest[..20]);
            let key = LicenseKey::from_entropy(prefix, &entropy);
            let id = uuid::Uuid::now_v7().to_string();
            // Expiries from a year ago to a year ahead: some licenses are expired.
            let offset = chrono::Duration::hours(i64::try_from(j % 17_520).unwrap_or(0) - 8_760);
            let mut events = vec![LicenseEvent::Issued(Box::new(LicenseIssued {
                product_id: *product_id,
                app_id: *app_id,
                policy_id: *policy_id,
                policy_version: 1,
                organization_id: c.organizations[(j / PRODUCTS) % ORGANIZATIONS],
                key_hash: hasher.hash(&key),
                key_prefix: key.support_prefix(),
                seats: SeatCount::new(3)?,
                features: terms.features.clone(),
                starts_at: now - chrono::Duration::days(400),
                expires_at: Some(now + offset),
                trial_ends_at: (product < 2).then(|| now + offset / 12),
                maintenance_until: None,
                source: LicenseSource::Import,
                terms: terms.clone(),
            }))];
            if j % 20 == 0 {
                events.push(LicenseEvent::Suspended {
                    reason: Reason::parse("unpaid")?,
                });
            } else if j % 100 == 1 {
                events.push(LicenseEvent::Revoked {
                    reason: Reason::parse("refund")?,
                    category: RevocationCategory::Unspecified,
                });
            }
            for (k, event) in events.iter().enumerate() {
                event_ids.push(uuid::Uuid::now_v7());
                stream_ids.push(id.clone());
                sequences.push(i64::try_from(k + 1)?);
                types.push(cqrs_es::DomainEvent::event_type(event));
                versions.push(cqrs_es::DomainEvent::event_version(event));
                payloads.push(serde_json::to_string(&encode_payload(event)?)?);
            }
        }
        let metadatas = vec![metadata.clone(); stream_ids.len()];
        sqlx::query(
            "INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             SELECT e, $8, a, s, t, v, p::json, m::json \
             FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[]) \
               AS x(e, a, s, t, v, p, m)",
        )
        .bind(&event_ids)
        .bind(&stream_ids)
        .bind(&sequences)
        .bind(&types)
        .bind(&versions)
        .bind(&payloads)
        .bind(&metadatas)
        .bind(AggregateType::License.as_str())
        .execute(pool)
        .await?;
        i += batch;
        if i % 100_000 == 0 || i == n {
            eprintln!(
                "seeded {i} licenses ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!("projecting licenses and organizations to the head…");
    for p in projections::all() {
        if !matches!(p.name(), "licenses" | "organizations") {
            continue;
        }
        projections::engine::ensure_checkpoint(pool, p.name()).await?;
        projections::engine::catch_up_to_head(pool, p.as_ref(), 5_000, Duration::from_secs(7_200))
            .await?;
    }
    sqlx::query("ANALYZE rm_licenses").execute(pool).await?;
    sqlx::query("ANALYZE rm_organizations")
        .execute(pool)
        .await?;
    eprintln!(
        "seeded and projected in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(c)
}

/// One filter of the benchmark: its name and a query drawn afresh for each request.
type Scenario = (&'static str, Box<dyn Fn(&mut Draw) -> LicenseQuery>);

fn scenarios(c: &Catalogue, prefixes: Vec<String>) -> Vec<Scenario> {
    let orgs = c.organizations.clone();
    let orgs2 = c.organizations.clone();
    let products: Vec<uuid::Uuid> = c.products.iter().map(|p| p.0.into()).collect();
    let products2 = products.clone();
    let policies: Vec<uuid::Uuid> = c.policies.iter().map(|p| p.0.into()).collect();
    let status = |s: LicenseStatus| -> Box<dyn Fn(&mut Draw) -> LicenseQuery> {
        Box::new(move |_| LicenseQuery {
            status: Some(s),
            ..LicenseQuery::default()
        })
    };
    let short_prefixes = prefixes.clone();
    vec![
        ("none", Box::new(|_| LicenseQuery::default())),
        (
            "organization_id",
            Box::new(move |d| LicenseQuery {
                organization_id: Some(orgs[d.below(orgs.len())].into()),
                ..LicenseQuery::default()
            }),
        ),
        (
            "organization_id + include_descendants",
            Box::new(move |d| LicenseQuery {
                organization_id: Some(orgs2[d.below(100)].into()),
                include_descendants: true,
                ..LicenseQuery::default()
            }),
        ),
        (
            "product_id",
            Box::new(move |d| LicenseQuery {
                product_id: Some(products[d.below(products.len())]),
                ..LicenseQuery::default()
            }),
        ),
        (
            "policy_id",
            Box::new(move |d| LicenseQuery {
                policy_id: Some(policies[d.below(policies.len())]),
                ..LicenseQuery::default()
            }),
        ),
        ("status=active", status(LicenseStatus::Active)),
        ("status=suspended", status(LicenseStatus::Suspended)),
        ("status=revoked", status(LicenseStatus::Revoked)),
        ("status=expired", status(LicenseStatus::Expired)),
        ("status=trialing", status(LicenseStatus::Trialing)),
        (
            "key_prefix (PREFIX-XXXX)",
            Box::new(move |d| LicenseQuery {
                key_prefix: Some(prefixes[d.below(prefixes.len())].clone()),
                ..LicenseQuery::default()
            }),
        ),
        (
            "key_prefix (PREFIX-XX)",
            Box::new(move |d| {
                let p = &short_prefixes[d.below(short_prefixes.len())];
                LicenseQuery {
                    key_prefix: Some(p[..p.len() - 2].to_owned()),
                    ..LicenseQuery::default()
                }
            }),
        ),
        (
            "expires_before (next 30 days)",
            Box::new(|_| LicenseQuery {
                expires_before: Some(chrono::Utc::now() + chrono::Duration::days(30)),
                ..LicenseQuery::default()
            }),
        ),
        (
            "product_id + status=active",
            Box::new(move |d| LicenseQuery {
                product_id: Some(products2[d.below(products2.len())]),
                status: Some(LicenseStatus::Active),
                ..LicenseQuery::default()
            }),
        ),
    ]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Seeds `n` licenses in `pool`'s database (at `url`) and measures each filter `requests` times
/// in each order.
///
/// # Errors
/// Database errors.
pub async fn run(pool: PgPool, url: &str, n: usize, requests: usize) -> anyhow::Result<()> {
    let c = seed(&pool, n).await?;
    let prefixes: Vec<String> =
        sqlx::query_scalar("SELECT key_prefix FROM rm_licenses TABLESAMPLE SYSTEM (1) LIMIT 1000")
            .fetch_all(&pool)
            .await?;
    let data_dir =
        std::env::temp_dir().join(format!("ledger-bench-lists-{}", uuid::Uuid::now_v7()));
    let mut config = AppConfig::new(url.to_owned(), data_dir.clone());
    config.key_pepper = Some(hex::encode(PEPPER));
    config.db_max_connections = 4;
    let app = App::open(&config).await?;
    let catalogue = app.catalogue();
    println!("\n### A page of 100 licenses at {n} licenses (`bench lists`)\n");
    println!(
        "{requests} requests per filter and order, one at a time: a first page, then the page its \
         `next_cursor` continues to; milliseconds.\n"
    );
    println!("| filter | order | p50 | p99 | max | rows on the first page (median) |");
    println!("|---|---|---:|---:|---:|---:|");
    let mut draw = Draw(0x2545_f491_4f6c_dd1d);
    let mut worst: f64 = 0.0;
    for (name, make) in scenarios(&c, prefixes) {
        for order in [Order::Asc, Order::Desc] {
            let mut times = Vec::with_capacity(requests);
            let mut rows = Vec::new();
            // A warm-up pass fills the plan cache and the buffer cache as a running server has.
            for pass in 0..2 {
                for _ in 0..requests / 2 {
                    let query = make(&mut draw);
                    let started = Instant::now();
                    let first = catalogue
                        .licenses(
                            query.clone(),
                            PageRequest {
                                cursor: None,
                                limit: 100,
                                order,
                            },
                        )
                        .await?;
                    let t1 = started.elapsed();
                    let mut t2 = None;
                    if let Some(cursor) = first.next_cursor.clone() {
                        let started = Instant::now();
                        catalogue
                            .licenses(
                                query,
                                PageRequest {
                                    cursor: Some(cursor),
                                    limit: 100,
                                    order,
                                },
                            )
                            .await?;
                        t2 = Some(started.elapsed());
                    }
                    if pass == 1 {
                        times.push(t1.as_secs_f64() * 1e3);
                        if let Some(t2) = t2 {
                            times.push(t2.as_secs_f64() * 1e3);
                        }
                        rows.push(first.items.len());
                    }
                }
            }
            times.sort_by(f64::total_cmp);
            rows.sort_unstable();
            let p99 = percentile(&times, 99.0);
            worst = worst.max(p99);
            println!(
                "| {name} | {} | {:.2} | {:.2} | {:.2} | {} |",
                order.as_str(),
                percentile(&times, 50.0),
                p99,
                times.last().copied().unwrap_or_default(),
                rows.get(rows.len() / 2).copied().unwrap_or_default(),
            );
        }
    }
    println!("\nWorst p99: {worst:.2} ms (target < 20 ms).\n");
    // One plan per kind of filter, as PostgreSQL ran it, for the record (ADR 0017).
    let now = chrono::Utc::now();
    for (name, filter) in [
        (
            "status=suspended",
            LicenseFilter {
                status: Some(LicenseStatus::Suspended),
                ..LicenseFilter::default()
            },
        ),
        (
            "product_id + status=active",
            LicenseFilter {
                product_id: Some(c.products[3].0.into()),
                status: Some(LicenseStatus::Active),
                ..LicenseFilter::default()
            },
        ),
        (
            "key_prefix P7-AB",
            LicenseFilter {
                key_prefix: Some(("P7-AB".into(), "P7-AC".into())),
                ..LicenseFilter::default()
            },
        ),
    ] {
        let plan = projections::queries::explain_licenses(
            &pool,
            &filter,
            now,
            &Window::first(Order::Asc, 100),
        )
        .await?;
        println!("Plan of `{name}`:\n\n```\n{plan}\n```\n");
    }
    drop(app);
    let _ = std::fs::remove_dir_all(data_dir);
    Ok(())
}
