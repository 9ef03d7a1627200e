//! Readers of the read models, for list endpoints. Single resources are read by folding their
//! stream (read-your-writes); lists come from here and may trail the log by the projector's lag.

use domain::Timestamp;
use domain::license::LicenseState;
use sqlx::Row;
use sqlx::postgres::PgPool;
use sqlx::types::Json;
use uuid::Uuid;

/// The largest page a list returns.
pub const MAX_PAGE: i64 = 1000;

/// A license row of `rm_licenses`.
#[derive(Clone, Debug)]
pub struct LicenseRow {
    pub id: Uuid,
    pub state: LicenseState,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
}

/// An organization row of `rm_organizations`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OrganizationRow {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub parent_id: Option<Uuid>,
    pub delegated_partners: Vec<Uuid>,
    pub closed: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
}

/// A product row of `rm_products`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ProductRow {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub app_id: Uuid,
    pub parent_product_id: Option<Uuid>,
    pub key_prefix: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
}

/// A policy row of `rm_policies`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PolicyRow {
    pub id: Uuid,
    pub product_id: Uuid,
    pub name: String,
    pub policy_version: i32,
    pub terms: serde_json::Value,
    pub retired: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
}

fn page(limit: i64) -> i64 {
    limit.clamp(1, MAX_PAGE)
}

/// Licenses of an organization, by id (ids are time-ordered), after the cursor `after`.
///
/// # Errors
/// Database errors, or a stored state this build cannot read (rebuild the projection).
pub async fn organization_licenses(
    pool: &PgPool,
    organization_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<LicenseRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, state, created_at, updated_at, version FROM rm_licenses \
         WHERE organization_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3",
    )
    .bind(organization_id)
    .bind(after)
    .bind(page(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let Json(state) = row.try_get("state")?;
            Ok(LicenseRow {
                id: row.try_get("id")?,
                state,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
                version: row.try_get("version")?,
            })
        })
        .collect()
}

/// Organizations by id after the cursor, optionally only the children of `parent_id`.
///
/// # Errors
/// Database errors.
pub async fn organizations(
    pool: &PgPool,
    parent_id: Option<Uuid>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<OrganizationRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, name, kind, parent_id, delegated_partners, closed, created_at, updated_at, version \
         FROM rm_organizations WHERE ($1::uuid IS NULL OR parent_id = $1) AND ($2::uuid IS NULL OR id > $2) \
         ORDER BY id LIMIT $3",
    )
    .bind(parent_id)
    .bind(after)
    .bind(page(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(OrganizationRow {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                kind: r.try_get("kind")?,
                parent_id: r.try_get("parent_id")?,
                delegated_partners: r.try_get("delegated_partners")?,
                closed: r.try_get("closed")?,
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
                version: r.try_get("version")?,
            })
        })
        .collect()
}

/// Products by id after the cursor.
///
/// # Errors
/// Database errors.
pub async fn products(
    pool: &PgPool,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<ProductRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, name, kind, app_id, parent_product_id, key_prefix, created_at, updated_at, version \
         FROM rm_products WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(page(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ProductRow {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                kind: r.try_get("kind")?,
                app_id: r.try_get("app_id")?,
                parent_product_id: r.try_get("parent_product_id")?,
                key_prefix: r.try_get("key_prefix")?,
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
                version: r.try_get("version")?,
            })
        })
        .collect()
}

/// Policies by id after the cursor, optionally of one product.
///
/// # Errors
/// Database errors.
pub async fn policies(
    pool: &PgPool,
    product_id: Option<Uuid>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<PolicyRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, product_id, name, policy_version, terms, retired, created_at, updated_at, version \
         FROM rm_policies WHERE ($1::uuid IS NULL OR product_id = $1) AND ($2::uuid IS NULL OR id > $2) \
         ORDER BY id LIMIT $3",
    )
    .bind(product_id)
    .bind(after)
    .bind(page(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(PolicyRow {
                id: r.try_get("id")?,
                product_id: r.try_get("product_id")?,
                name: r.try_get("name")?,
                policy_version: r.try_get("policy_version")?,
                terms: r.try_get("terms")?,
                retired: r.try_get("retired")?,
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
                version: r.try_get("version")?,
            })
        })
        .collect()
}

/// One audit row.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AuditRow {
    pub position: i64,
    pub event_id: Uuid,
    pub recorded_at: Timestamp,
    pub actor: String,
    pub action: String,
    pub subject_type: String,
    pub subject_id: String,
    pub sequence: i64,
    pub license_id: Option<Uuid>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
}

/// A filter of the audit trail.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub license_id: Option<Uuid>,
    pub actor: Option<String>,
    /// Rows after this position (the cursor of the previous page).
    pub after: Option<i64>,
}

/// Audit rows, oldest first (log position).
///
/// # Errors
/// Database errors.
pub async fn audit(
    pool: &PgPool,
    filter: &AuditFilter,
    limit: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT position, event_id, recorded_at, actor, action, subject_type, subject_id, sequence, license_id, \
                correlation_id, causation_id FROM rm_audit \
         WHERE ($1::timestamptz IS NULL OR recorded_at >= $1) AND ($2::timestamptz IS NULL OR recorded_at <= $2) \
           AND ($3::uuid IS NULL OR license_id = $3) AND ($4::text IS NULL OR actor = $4) \
           AND ($5::bigint IS NULL OR position > $5) \
         ORDER BY position LIMIT $6",
    )
    .bind(filter.from)
    .bind(filter.to)
    .bind(filter.license_id)
    .bind(&filter.actor)
    .bind(filter.after)
    .bind(page(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AuditRow {
                position: r.try_get("position")?,
                event_id: r.try_get("event_id")?,
                recorded_at: r.try_get("recorded_at")?,
                actor: r.try_get("actor")?,
                action: r.try_get("action")?,
                subject_type: r.try_get("subject_type")?,
                subject_id: r.try_get("subject_id")?,
                sequence: r.try_get("sequence")?,
                license_id: r.try_get("license_id")?,
                correlation_id: r.try_get("correlation_id")?,
                causation_id: r.try_get("causation_id")?,
            })
        })
        .collect()
}

/// Every license issued to, or transferred into, organization `id` by `at`: the candidates for
/// the organization's licenses as of `at` (each must still be folded to `at`: it may have been
/// transferred away since). Read from the log, not a read model, so it answers for any instant.
///
/// # Errors
/// Database errors, or a License stream whose id is not a license id.
pub async fn licenses_ever_held(
    pool: &PgPool,
    id: domain::ids::OrganizationId,
    at: Timestamp,
) -> Result<Vec<domain::ids::LicenseId>, crate::ProjectionError> {
    let streams: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = $3 \
           AND event_type IN ('LicenseIssued', 'LicenseTransferred') \
           AND payload ->> 'organization_id' = $1 AND recorded_at <= $2",
    )
    .bind(id.to_string())
    .bind(at)
    .bind(domain::AggregateType::License.as_str())
    .fetch_all(pool)
    .await?;
    streams
        .iter()
        .map(|s| {
            s.parse().map_err(|_| {
                crate::ProjectionError::Inconsistent(format!(
                    "license stream id {s:?} is not a UUID"
                ))
            })
        })
        .collect()
}
