//! The license list's filters against a real PostgreSQL (ADR 0017):
//! - the status filter, SQL over the columns of migration 0008, picks exactly the licenses whose
//!   `domain::status::status_at` is that status, for every combination of the facts status
//!   depends on, at instants before, between and after their dates;
//! - migration 0008's backfill of those columns from stored states gives what the projector
//!   writes;
//! - a filtered page at 200,000 licenses reads an index, never `rm_licenses` sequentially.

use domain::Timestamp;
use domain::ids::{AppId, OrganizationId, PolicyId, ProductId};
use domain::keys::KeyHash;
use domain::license::{License, LicenseEvent, LicenseIssued, LicenseState};
use domain::policy::{PolicyTerms, PolicyTermsInput};
use domain::status::{LicenseStatus, status_at};
use domain::values::*;
use projections::licenses::ListColumns;
use projections::queries::{self, LicenseFilter, Order, Window};
use sqlx::PgPool;
use testdb::TestDb;
use uuid::Uuid;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn issued(org: Uuid, product: Uuid, policy: Uuid) -> LicenseState {
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
    let mut license = License::default();
    license.fold(LicenseEvent::Issued(Box::new(LicenseIssued {
        product_id: ProductId::from_uuid(product),
        app_id: AppId::parse(Uuid::new_v4()).unwrap(),
        policy_id: PolicyId::from_uuid(policy),
        policy_version: 1,
        organization_id: OrganizationId::from_uuid(org),
        key_hash: KeyHash::from_bytes([1; 32]),
        key_prefix: "ST-0000".to_owned(),
        seats: SeatCount::new(2).unwrap(),
        features: FeatureSet::parse(&["pro"]).unwrap(),
        starts_at: t("2026-01-01T00:00:00Z"),
        expires_at: None,
        trial_ends_at: None,
        maintenance_until: None,
        source: LicenseSource::Admin,
        terms,
    })));
    license.state().unwrap().clone()
}

/// Inserts `state` as the projector writes a license: its columns from the state.
async fn insert(pool: &PgPool, id: Uuid, state: &LicenseState, key_prefix: &str) {
    let listed = ListColumns::of(state);
    sqlx::query(
        "INSERT INTO rm_licenses (id, organization_id, product_id, app_id, policy_id, key_hash, key_prefix, state, \
           created_at, updated_at, version, lifecycle, cancel_at, trial_ends_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::json, now(), now(), 1, $9, $10, $11, $12)",
    )
    .bind(id)
    .bind(Uuid::from(state.organization_id))
    .bind(Uuid::from(state.product_id))
    .bind(*state.app_id.as_uuid())
    .bind(Uuid::from(state.policy_id))
    .bind(state.key_hash.as_bytes().to_vec())
    .bind(key_prefix)
    .bind(serde_json::to_string(state).unwrap())
    .bind(listed.lifecycle)
    .bind(listed.cancel_at)
    .bind(listed.trial_ends_at)
    .bind(listed.expires_at)
    .execute(pool)
    .await
    .unwrap();
}

/// Every id the license list gives for `filter` at `now`, paged to the end.
async fn all_listed(pool: &PgPool, filter: &LicenseFilter, now: Timestamp) -> Vec<Uuid> {
    let mut window = Window::first(Order::Asc, 1000);
    let mut ids = Vec::new();
    loop {
        let rows = queries::licenses(pool, filter, now, &window).await.unwrap();
        let more = rows.len() > 1000;
        ids.extend(rows.iter().take(1000).map(|r| r.id));
        if !more {
            return ids;
        }
        window.after = ids.last().copied();
    }
}

#[tokio::test]
async fn the_status_filter_picks_exactly_the_licenses_status_at_derives() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    let base = issued(Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let early = t("2026-03-01T00:00:00Z");
    let late = t("2026-09-01T00:00:00Z");
    let dates = [None, Some(early), Some(late)];
    let mut states = Vec::new();
    for revoked in [false, true] {
        for suspended in [false, true] {
            for paused in [false, true] {
                for grace in [None, Some(late)] {
                    for (canceled, cancel_at) in [
                        (false, None),
                        (true, None),
                        (true, Some(early)),
                        (true, Some(late)),
                        (false, Some(early)),
                    ] {
                        for subscribed in [false, true] {
                            for trial in dates {
                                for expires in dates {
                                    let mut s = base.clone();
                                    if revoked {
                                        s.revocation = Some(Reason::parse("r").unwrap());
                                    }
                                    if suspended {
                                        s.suspension = Some(Reason::parse("s").unwrap());
                                    }
                                    s.billing.paused = paused;
                                    s.billing.payment_grace_until = grace;
                                    s.billing.canceled = canceled;
                                    s.billing.cancel_at = cancel_at;
                                    if subscribed {
                                        s.billing.subscription =
                                            Some(("stripe".into(), "sub_1".into()));
                                    }
                                    s.trial_ends_at = trial;
                                    s.expires_at = expires;
                                    states.push((Uuid::now_v7(), s));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    for (id, state) in &states {
        insert(&pool, *id, state, "ST-0000").await;
    }
    let statuses = [
        LicenseStatus::Trialing,
        LicenseStatus::Active,
        LicenseStatus::PastDue,
        LicenseStatus::Paused,
        LicenseStatus::Suspended,
        LicenseStatus::Expired,
        LicenseStatus::Canceled,
        LicenseStatus::Revoked,
    ];
    for now in [
        t("2026-01-15T00:00:00Z"),
        early,
        t("2026-06-01T00:00:00Z"),
        late,
        t("2027-01-01T00:00:00Z"),
    ] {
        let mut seen = 0;
        for status in statuses {
            let filter = LicenseFilter {
                status: Some(status),
                ..LicenseFilter::default()
            };
            let listed = all_listed(&pool, &filter, now).await;
            let expected: Vec<Uuid> = states
                .iter()
                .filter(|(_, s)| status_at(s, now) == status)
                .map(|(id, _)| *id)
                .collect();
            assert_eq!(listed, expected, "{status:?} at {now}");
            seen += listed.len();
        }
        assert_eq!(seen, states.len(), "every license has one status at {now}");
    }

    // Migration 0008's backfill, run again over these rows, derives the same columns from the
    // stored states as the projector did.
    let before: Vec<String> = sqlx::query_scalar(
        "SELECT concat_ws('|', id, lifecycle, cancel_at, trial_ends_at, expires_at) FROM rm_licenses ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let migration = include_str!("../../migrations/0008_list_filters.sql");
    let start = migration.find("UPDATE rm_licenses").unwrap();
    let end = start + migration[start..].find(';').unwrap();
    sqlx::query(
        "UPDATE rm_licenses SET lifecycle = 'x', cancel_at = NULL, trial_ends_at = NULL, expires_at = NULL",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(&migration[start..end])
        .execute(&pool)
        .await
        .unwrap();
    let after: Vec<String> = sqlx::query_scalar(
        "SELECT concat_ws('|', id, lifecycle, cancel_at, trial_ends_at, expires_at) FROM rm_licenses ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(before, after);
}

/// Fills `rm_licenses` with `n` rows shaped as the projector writes them (the columns the lists
/// read; the state is one small stored state, which no plan looks into), spread over 1,000
/// organizations, 20 products and 100 policies, a tenth suspended or revoked, expiries over two
/// years, support prefixes random as keys are.
async fn load(pool: &PgPool, n: i64, state: &LicenseState) {
    sqlx::query(
        "INSERT INTO rm_licenses (id, organization_id, product_id, app_id, policy_id, key_hash, key_prefix, state, \
           created_at, updated_at, version, lifecycle, cancel_at, trial_ends_at, expires_at) \
         SELECT uuid_generate_v7_like(i), \
                ('00000000-0000-7000-8000-' || lpad(to_hex(i % 1000), 12, '0'))::uuid, \
                ('00000000-0000-7001-8000-' || lpad(to_hex(i % 20), 12, '0'))::uuid, \
                ('00000000-0000-4002-8000-' || lpad(to_hex(i % 20), 12, '0'))::uuid, \
                ('00000000-0000-7003-8000-' || lpad(to_hex(i % 100), 12, '0'))::uuid, \
                sha256(int8send(i)), \
                'P' || (i % 20) || '-' || upper(substr(md5(i::text), 1, 4)), \
                $2::text::json, now(), now(), 1, \
                CASE WHEN i % 20 = 0 THEN 'suspended' WHEN i % 20 = 1 THEN 'revoked' WHEN i % 10 = 2 THEN 'trial' ELSE 'term' END, \
                NULL, \
                CASE WHEN i % 10 = 2 THEN timestamptz '2026-01-01' + (i % 730) * interval '1 day' END, \
                CASE WHEN i % 4 <> 0 THEN timestamptz '2026-01-01' + (i % 730) * interval '1 day' END \
         FROM generate_series(1, $1) AS i",
    )
    .bind(n)
    .bind(serde_json::to_string(state).unwrap())
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE rm_licenses")
        .execute(pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_filtered_page_reads_an_index_not_the_whole_table() {
    let db = TestDb::migrated().await;
    let pool = db.pool().await;
    // Time-ordered ids as UUID v7 are, from a row number.
    sqlx::query(
        "CREATE FUNCTION uuid_generate_v7_like(i bigint) RETURNS uuid LANGUAGE sql IMMUTABLE AS \
         $$ SELECT (lpad(to_hex(i), 12, '0') || '7000' || '8000' || lpad(to_hex(i), 12, '0'))::uuid $$",
    )
    .execute(&pool)
    .await
    .unwrap();
    let state = issued(Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    load(&pool, 200_000, &state).await;
    // The organizations of those licenses: the first 100 at the top, each other below one of them.
    sqlx::query(
        "INSERT INTO rm_organizations (id, name, kind, parent_id, created_at, updated_at, version) \
         SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, 'Org ' || i, 'customer', \
                CASE WHEN i >= 100 THEN ('00000000-0000-7000-8000-' || lpad(to_hex(i % 100), 12, '0'))::uuid END, \
                now(), now(), 1 \
         FROM generate_series(0, 999) AS i",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE rm_organizations")
        .execute(&pool)
        .await
        .unwrap();
    let org = Uuid::parse_str("00000000-0000-7000-8000-00000000002a").unwrap();
    let product = Uuid::parse_str("00000000-0000-7001-8000-000000000007").unwrap();
    let policy = Uuid::parse_str("00000000-0000-7003-8000-000000000011").unwrap();
    let prefix: String =
        sqlx::query_scalar("SELECT key_prefix FROM rm_licenses LIMIT 1 OFFSET 777")
            .fetch_one(&pool)
            .await
            .unwrap();
    let now = t("2026-06-01T00:00:00Z");
    let tree = Uuid::parse_str("00000000-0000-7000-8000-000000000007").unwrap();
    let filters = [
        (
            "organization tree",
            LicenseFilter {
                organization_id: Some(tree),
                include_descendants: true,
                ..Default::default()
            },
        ),
        (
            "organization",
            LicenseFilter {
                organization_id: Some(org),
                ..Default::default()
            },
        ),
        (
            "product",
            LicenseFilter {
                product_id: Some(product),
                ..Default::default()
            },
        ),
        (
            "policy",
            LicenseFilter {
                policy_id: Some(policy),
                ..Default::default()
            },
        ),
        (
            "revoked",
            LicenseFilter {
                status: Some(LicenseStatus::Revoked),
                ..Default::default()
            },
        ),
        (
            "suspended",
            LicenseFilter {
                status: Some(LicenseStatus::Suspended),
                ..Default::default()
            },
        ),
        (
            "active",
            LicenseFilter {
                status: Some(LicenseStatus::Active),
                ..Default::default()
            },
        ),
        (
            "expired",
            LicenseFilter {
                status: Some(LicenseStatus::Expired),
                ..Default::default()
            },
        ),
        (
            "trialing",
            LicenseFilter {
                status: Some(LicenseStatus::Trialing),
                ..Default::default()
            },
        ),
        (
            "short key prefix",
            LicenseFilter {
                key_prefix: Some((
                    prefix[..prefix.len() - 2].to_owned(),
                    format!("{}\u{7f}", &prefix[..prefix.len() - 2]),
                )),
                ..Default::default()
            },
        ),
        (
            "key prefix",
            LicenseFilter {
                key_prefix: Some((prefix.clone(), format!("{prefix}\u{7f}"))),
                ..Default::default()
            },
        ),
        (
            "expires before",
            LicenseFilter {
                expires_before: Some(t("2026-01-05T00:00:00Z")),
                ..Default::default()
            },
        ),
        (
            "product and status",
            LicenseFilter {
                product_id: Some(product),
                status: Some(LicenseStatus::Active),
                ..Default::default()
            },
        ),
    ];
    for (name, filter) in &filters {
        for order in [Order::Asc, Order::Desc] {
            // Repeated past PostgreSQL's five custom plans, so a generic plan is judged too.
            for _ in 0..7 {
                let plan =
                    queries::explain_licenses(&pool, filter, now, &Window::first(order, 100))
                        .await
                        .unwrap();
                assert!(
                    !plan.contains("Seq Scan on rm_licenses"),
                    "{name} ({order:?}) reads the table sequentially:\n{plan}"
                );
                assert!(plan.contains("Index"), "{name}: {plan}");
            }
        }
    }
    // A product's or a policy's licenses in one status read the (product or policy, lifecycle,
    // id) range, not the whole product in id order (migration 0009).
    for (name, filter, index) in [
        (
            "product and active",
            LicenseFilter {
                product_id: Some(product),
                status: Some(LicenseStatus::Active),
                ..Default::default()
            },
            "rm_licenses_product_lifecycle",
        ),
        (
            "product and suspended",
            LicenseFilter {
                product_id: Some(product),
                status: Some(LicenseStatus::Suspended),
                ..Default::default()
            },
            "rm_licenses_product_lifecycle",
        ),
        (
            "policy and active",
            LicenseFilter {
                policy_id: Some(policy),
                status: Some(LicenseStatus::Active),
                ..Default::default()
            },
            "rm_licenses_policy_lifecycle",
        ),
    ] {
        for order in [Order::Asc, Order::Desc] {
            for _ in 0..7 {
                let plan =
                    queries::explain_licenses(&pool, &filter, now, &Window::first(order, 100))
                        .await
                        .unwrap();
                assert!(
                    plan.contains(index),
                    "{name} ({order:?}) does not read {index}:\n{plan}"
                );
            }
        }
    }
}
