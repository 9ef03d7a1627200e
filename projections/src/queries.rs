//! Readers of the read models, for list endpoints. Single resources are read by folding their
//! stream (read-your-writes); lists come from here and may trail the log by the projector's lag.

use domain::Timestamp;
use domain::license::LicenseState;
use domain::status::LicenseStatus;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder, Row};
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
    /// `<gateway>:<customer id>` of each gateway customer it is.
    pub customers: Vec<String>,
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
    /// `{"<gateway>": ["<price id>", ...]}`.
    pub prices: serde_json::Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
}

fn page(limit: i64) -> i64 {
    limit.clamp(1, MAX_PAGE)
}

/// The order of a list: by its key (ids are UUID v7, so creation order; audit by log position).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Order {
    /// Oldest first (the default).
    #[default]
    Asc,
    /// Newest first.
    Desc,
}

impl Order {
    /// `ORDER BY` direction.
    fn sql(self) -> &'static str {
        match self {
            Self::Asc => "ASC",
            Self::Desc => "DESC",
        }
    }
    /// The comparison that keeps the keys after a cursor in this order.
    fn after(self) -> &'static str {
        match self {
            Self::Asc => " > ",
            Self::Desc => " < ",
        }
    }
    /// The stable text of the order (`asc`, `desc`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Asc => "asc",
            Self::Desc => "desc",
        }
    }
}

/// Which part of a list to read: after the key `after` (the last key of the previous page), in
/// `order`, `limit` rows. A reader fetches one row more than `limit`, so the caller knows whether
/// a next page exists without asking for an empty one.
#[derive(Clone, Copy, Debug)]
pub struct Window<K> {
    pub after: Option<K>,
    pub order: Order,
    pub limit: i64,
}

impl<K> Window<K> {
    /// The first page in `order`.
    pub fn first(order: Order, limit: i64) -> Self {
        Self {
            after: None,
            order,
            limit,
        }
    }
}

/// Appends ` AND key > after ORDER BY key LIMIT limit + 1` (or `<`/`DESC`) to a query whose
/// `WHERE` is open. Every list pages this way on a key with an index that ends with it, so a page
/// is a range read in order, never a sort of everything that matches.
fn keyset<'a, K>(q: &mut QueryBuilder<'a, Postgres>, key: &str, window: &Window<K>)
where
    K: 'a + Clone + sqlx::Encode<'a, Postgres> + sqlx::Type<Postgres> + Send,
{
    if let Some(after) = &window.after {
        q.push(" AND ").push(key).push(window.order.after());
        q.push_bind(after.clone());
    }
    q.push(" ORDER BY ")
        .push(key)
        .push(" ")
        .push(window.order.sql())
        .push(" LIMIT ");
    q.push_bind(page(window.limit) + 1);
}

/// A status of the license list's `status` filter, as SQL over the columns of migration 0008:
/// the rows whose `domain::status::status_at(state, now)` is `status` (tested against it).
fn push_status(q: &mut QueryBuilder<'_, Postgres>, status: LicenseStatus, now: Timestamp) {
    // Not canceled at `now` by a cancellation with an end date (one without is `lifecycle`).
    let not_canceled = |q: &mut QueryBuilder<'_, Postgres>| {
        q.push(" AND (cancel_at IS NULL OR cancel_at > ");
        q.push_bind(now);
        q.push(")");
    };
    match status {
        LicenseStatus::Revoked => {
            q.push(" AND lifecycle = 'revoked'");
        }
        LicenseStatus::Canceled => {
            q.push(" AND (lifecycle = 'canceled' OR cancel_at <= ");
            q.push_bind(now);
            q.push(")");
        }
        LicenseStatus::Suspended | LicenseStatus::Paused | LicenseStatus::PastDue => {
            q.push(" AND lifecycle = ");
            q.push_bind(status.as_str());
            not_canceled(q);
        }
        LicenseStatus::Trialing => {
            q.push(" AND lifecycle = 'trial' AND trial_ends_at > ");
            q.push_bind(now);
            not_canceled(q);
        }
        LicenseStatus::Expired => {
            q.push(" AND ((lifecycle = 'trial' AND trial_ends_at <= ");
            q.push_bind(now);
            q.push(") OR (lifecycle = 'term' AND expires_at <= ");
            q.push_bind(now);
            q.push("))");
            not_canceled(q);
        }
        LicenseStatus::Active => {
            q.push(" AND lifecycle = 'term' AND (expires_at IS NULL OR expires_at > ");
            q.push_bind(now);
            q.push(")");
            not_canceled(q);
        }
    }
}

/// The filters of `GET /v1/licenses`; every one present must hold.
#[derive(Clone, Debug, Default)]
pub struct LicenseFilter {
    /// Licenses held by this organization ...
    pub organization_id: Option<Uuid>,
    /// ... or by it and any organization below it.
    pub include_descendants: bool,
    /// With `include_descendants`: the organization and those below it as the caller knows
    /// them (the in-memory tree, which follows the log without the read model's lag), instead
    /// of walking `rm_organizations`.
    pub subtree: Option<Vec<Uuid>>,
    pub product_id: Option<Uuid>,
    pub policy_id: Option<Uuid>,
    /// The status at `now`.
    pub status: Option<LicenseStatus>,
    /// Support prefixes from `.0` (included) to `.1` (excluded), byte-wise: the range of every
    /// text that starts with what support typed (`application` builds it from a checked prefix).
    pub key_prefix: Option<(String, String)>,
    /// Licenses that end (`expires_at`) strictly before this instant; perpetual ones never do.
    pub expires_before: Option<Timestamp>,
    /// Licenses naming this user now (the state's `assignees`).
    pub user_id: Option<Uuid>,
}

const LICENSE_COLUMNS: &str =
    "SELECT id, state, created_at, updated_at, version FROM rm_licenses WHERE true";

fn license_rows(rows: &[PgRow]) -> Result<Vec<LicenseRow>, sqlx::Error> {
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

/// The query of [`licenses`] (behind `EXPLAIN (ANALYZE, BUFFERS)` when `explain`): only the
/// filters present reach the SQL (no `$1 IS NULL OR ...`, which a generic plan cannot serve from
/// an index).
///
/// With `include_descendants`, the page is read per organization of the tree: a lateral query
/// takes at most a page from each organization's `(organization_id, id)` range, in order, and
/// the pages are merged, instead of reading every license of the tree and sorting them all.
fn license_query<'a>(
    explain: bool,
    filter: &'a LicenseFilter,
    now: Timestamp,
    window: &Window<Uuid>,
) -> QueryBuilder<'a, Postgres> {
    let mut q = QueryBuilder::new(if explain {
        "EXPLAIN (ANALYZE, BUFFERS) "
    } else {
        ""
    });
    let tree = filter
        .organization_id
        .filter(|_| filter.include_descendants);
    if let Some(ids) = filter.subtree.as_ref().filter(|_| tree.is_some()) {
        q.push("SELECT l.* FROM unnest(");
        q.push_bind(ids.clone());
        q.push("::uuid[]) t(id) CROSS JOIN LATERAL (");
    } else if let Some(root) = tree {
        // The organization and everything below it; UNION stops at a cycle, were one stored.
        q.push(
            "SELECT l.* FROM (WITH RECURSIVE tree(id) AS (SELECT id FROM rm_organizations WHERE id = ",
        );
        q.push_bind(root);
        q.push(
            " UNION SELECT o.id FROM rm_organizations o JOIN tree t ON o.parent_id = t.id) \
             SELECT id FROM tree) t CROSS JOIN LATERAL (",
        );
    }
    q.push(LICENSE_COLUMNS);
    if tree.is_some() {
        q.push(" AND organization_id = t.id");
    } else if let Some(org) = filter.organization_id {
        q.push(" AND organization_id = ");
        q.push_bind(org);
    }
    if let Some(product) = filter.product_id {
        q.push(" AND product_id = ");
        q.push_bind(product);
    }
    if let Some(policy) = filter.policy_id {
        q.push(" AND policy_id = ");
        q.push_bind(policy);
    }
    if let Some(status) = filter.status {
        push_status(&mut q, status, now);
    }
    if let Some((from, to)) = &filter.key_prefix {
        // The pattern operators compare bytes, as the text_pattern_ops index is ordered. The
        // bounds are written into the SQL when they are plain key text (letters, digits, `-`:
        // always, from `SupportPrefixSearch`), so PostgreSQL plans each search for its own
        // bounds: a cached generic plan guesses the selectivity of a range of unknown bounds and
        // may walk the primary key instead, reading the whole table for a short prefix
        // (BENCHMARKS.md, "Lists"). The upper bound is the text with its last character's
        // successor, so `9` and `Z` end it in `:` and `[`: any printable ASCII but a quote or a
        // backslash is written as it is (standard-conforming strings: nothing else escapes a
        // literal). Anything else, never produced by `SupportPrefixSearch`, is bound.
        let plain = |t: &str| {
            t.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'\'' && b != b'\\')
        };
        if plain(from) && plain(to) {
            q.push(format!(
                " AND key_prefix ~>=~ '{from}' AND key_prefix ~<~ '{to}'"
            ));
        } else {
            q.push(" AND key_prefix ~>=~ ");
            q.push_bind(from.as_str());
            q.push(" AND key_prefix ~<~ ");
            q.push_bind(to.as_str());
        }
    }
    if let Some(before) = filter.expires_before {
        q.push(" AND expires_at < ");
        q.push_bind(before);
    }
    if let Some(user) = filter.user_id {
        // The licenses the user was ever assigned (the log's partial index, migration 0012),
        // then those whose state names the user now.
        let user = user.to_string();
        q.push(
            " AND id IN (SELECT aggregate_id::uuid FROM events WHERE event_type = 'LicenseAssigned' \
             AND aggregate_type = 'License' AND payload->>'user_id' = ",
        );
        q.push_bind(user.clone());
        q.push(") AND (state->'assignees')::jsonb ? ");
        q.push_bind(user);
    }
    keyset(&mut q, "id", window);
    if tree.is_some() {
        q.push(") l ORDER BY l.id ")
            .push(window.order.sql())
            .push(" LIMIT ");
        q.push_bind(page(window.limit) + 1);
    }
    q
}

/// Licenses that pass `filter` at `now`, a window of them by id.
///
/// # Errors
/// Database errors, or a stored state this build cannot read (rebuild the projection).
pub async fn licenses(
    pool: &PgPool,
    filter: &LicenseFilter,
    now: Timestamp,
    window: &Window<Uuid>,
) -> Result<Vec<LicenseRow>, sqlx::Error> {
    let mut q = license_query(false, filter, now, window);
    license_rows(&q.build().fetch_all(pool).await?)
}

/// PostgreSQL's plan of [`licenses`] for these arguments, executed (`EXPLAIN (ANALYZE,
/// BUFFERS)`, text): how tests and the benchmark show that a filtered page reads an index.
///
/// # Errors
/// Database errors.
pub async fn explain_licenses(
    pool: &PgPool,
    filter: &LicenseFilter,
    now: Timestamp,
    window: &Window<Uuid>,
) -> Result<String, sqlx::Error> {
    let mut q = license_query(true, filter, now, window);
    let lines: Vec<String> = q.build_query_scalar().fetch_all(pool).await?;
    Ok(lines.join("\n"))
}

/// Licenses of an organization, a window of them by id.
///
/// # Errors
/// Database errors, or a stored state this build cannot read (rebuild the projection).
pub async fn organization_licenses(
    pool: &PgPool,
    organization_id: Uuid,
    window: &Window<Uuid>,
) -> Result<Vec<LicenseRow>, sqlx::Error> {
    let filter = LicenseFilter {
        organization_id: Some(organization_id),
        ..LicenseFilter::default()
    };
    // `now` serves only the status filter, which is absent here.
    licenses(pool, &filter, Timestamp::UNIX_EPOCH, window).await
}

/// Reads a row selected with the columns of [`OrganizationRow`].
fn organization_row(r: &PgRow) -> Result<OrganizationRow, sqlx::Error> {
    Ok(OrganizationRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        kind: r.try_get("kind")?,
        parent_id: r.try_get("parent_id")?,
        delegated_partners: r.try_get("delegated_partners")?,
        customers: r.try_get("customers")?,
        closed: r.try_get("closed")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        version: r.try_get("version")?,
    })
}

/// The filters of `GET /v1/organizations`.
#[derive(Clone, Debug, Default)]
pub struct OrganizationFilter {
    pub parent_id: Option<Uuid>,
    /// `customer`, `partner` or `vendor`.
    pub kind: Option<String>,
    /// Names containing this text, case-insensitively (matched literally: `%` and `_` are
    /// escaped).
    pub q: Option<String>,
}

/// `text` as a `LIKE` pattern that matches it literally anywhere (escape character `\`).
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The organizations of `ids` (those the read model holds), by id: what `GET /v1/me` names
/// the organizations a principal reaches with.
///
/// # Errors
/// Database errors.
pub async fn organizations_by_id(
    pool: &PgPool,
    ids: &[Uuid],
) -> Result<Vec<OrganizationRow>, sqlx::Error> {
    sqlx::query(
        "SELECT id, name, kind, parent_id, delegated_partners, closed, customers, created_at, updated_at, version \
         FROM rm_organizations WHERE id = ANY($1) ORDER BY id",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?
    .iter()
    .map(organization_row)
    .collect()
}

/// The display names of the organizations, products and policies among `ids` that the read
/// models hold, and the key prefixes of the licenses (ids are UUIDs, unique across the four): what a page
/// shows in place of an id.
///
/// # Errors
/// Database errors.
pub async fn names(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_as(
        "SELECT id, name FROM rm_organizations WHERE id = ANY($1) \
         UNION ALL SELECT id, name FROM rm_products WHERE id = ANY($1) \
         UNION ALL SELECT id, name FROM rm_policies WHERE id = ANY($1) \
         UNION ALL SELECT id, key_prefix FROM rm_licenses WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// The e-mail addresses of the users among `ids`, of those homed at one of `homes` when given:
/// what an audit page shows in place of an actor's id.
///
/// # Errors
/// Database errors.
pub async fn user_emails(
    pool: &PgPool,
    ids: &[Uuid],
    homes: Option<&[Uuid]>,
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_as(
        "SELECT id, email FROM rm_users WHERE id = ANY($1) \
         AND ($2::uuid[] IS NULL OR organization_id = ANY($2))",
    )
    .bind(ids)
    .bind(homes)
    .fetch_all(pool)
    .await
}

/// The impersonations recorded since `since` that started as user `user` or by it, and are
/// not revoked: what a deactivation of `user` revokes (every impersonation lasts at most an hour,
/// so `since` bounds the read to the log's last hour through `events_recorded_at`).
///
/// # Errors
/// Database errors.
pub async fn unrevoked_impersonations(
    pool: &PgPool,
    user: Uuid,
    since: Timestamp,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT e.aggregate_id::uuid FROM events e \
         WHERE e.recorded_at >= $2 AND e.aggregate_type = 'ApiToken' \
         AND e.event_type = 'ImpersonationStarted' \
         AND (e.payload->>'user_id' = $1::text OR e.payload->>'started_by' = 'user:' || $1::text) \
         AND NOT EXISTS (SELECT 1 FROM events r WHERE r.aggregate_type = 'ApiToken' \
         AND r.aggregate_id = e.aggregate_id AND r.event_type = 'ApiTokenRevoked')",
    )
    .bind(user)
    .bind(since)
    .fetch_all(pool)
    .await
}

/// Organizations that pass `filter`, a window of them by id.
///
/// # Errors
/// Database errors.
pub async fn organizations(
    pool: &PgPool,
    filter: &OrganizationFilter,
    window: &Window<Uuid>,
) -> Result<Vec<OrganizationRow>, sqlx::Error> {
    let mut q = QueryBuilder::new(
        "SELECT id, name, kind, parent_id, delegated_partners, closed, customers, created_at, updated_at, version \
         FROM rm_organizations WHERE true",
    );
    if let Some(parent) = filter.parent_id {
        q.push(" AND parent_id = ");
        q.push_bind(parent);
    }
    if let Some(kind) = &filter.kind {
        q.push(" AND kind = ");
        q.push_bind(kind.clone());
    }
    if let Some(text) = &filter.q {
        q.push(" AND name ILIKE ");
        q.push_bind(contains_pattern(text));
        q.push(" ESCAPE '\\'");
    }
    keyset(&mut q, "id", window);
    q.build()
        .fetch_all(pool)
        .await?
        .iter()
        .map(organization_row)
        .collect()
}

/// Products, a window of them by id.
///
/// # Errors
/// Database errors.
pub async fn products(
    pool: &PgPool,
    window: &Window<Uuid>,
) -> Result<Vec<ProductRow>, sqlx::Error> {
    let mut q = QueryBuilder::new(
        "SELECT id, name, kind, app_id, parent_product_id, key_prefix, created_at, updated_at, version \
         FROM rm_products WHERE true",
    );
    keyset(&mut q, "id", window);
    q.build()
        .fetch_all(pool)
        .await?
        .iter()
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

/// Policies, optionally of one product, a window of them by id.
///
/// # Errors
/// Database errors.
pub async fn policies(
    pool: &PgPool,
    product_id: Option<Uuid>,
    window: &Window<Uuid>,
) -> Result<Vec<PolicyRow>, sqlx::Error> {
    let mut q = QueryBuilder::new(
        "SELECT id, product_id, name, policy_version, terms, retired, prices, created_at, updated_at, version \
         FROM rm_policies WHERE true",
    );
    if let Some(product) = product_id {
        q.push(" AND product_id = ");
        q.push_bind(product);
    }
    keyset(&mut q, "id", window);
    q.build()
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            Ok(PolicyRow {
                id: r.try_get("id")?,
                product_id: r.try_get("product_id")?,
                name: r.try_get("name")?,
                policy_version: r.try_get("policy_version")?,
                terms: r.try_get("terms")?,
                retired: r.try_get("retired")?,
                prices: r.try_get("prices")?,
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
    /// The vendor staff member who caused the event acting as `actor` (an impersonation).
    pub impersonated_by: Option<String>,
}

/// A filter of the audit trail.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub license_id: Option<Uuid>,
    pub actor: Option<String>,
    /// Only what concerns these organizations: their licenses' events (of the licenses they hold
    /// now, those recorded while one of them held it), their own, and their users' (a
    /// customer's audit trail).
    pub organizations: Option<Vec<Uuid>>,
}

/// Audit rows that pass `filter`, a window of them by log position.
///
/// # Errors
/// Database errors.
pub async fn audit(
    pool: &PgPool,
    filter: &AuditFilter,
    window: &Window<i64>,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    const COLUMNS: &str = "SELECT position, event_id, recorded_at, actor, action, subject_type, subject_id, \
         sequence, license_id, correlation_id, causation_id, impersonated_by FROM rm_audit WHERE true";
    let filters = |q: &mut QueryBuilder<'_, Postgres>| {
        if let Some(from) = filter.from {
            q.push(" AND recorded_at >= ");
            q.push_bind(from);
        }
        if let Some(to) = filter.to {
            q.push(" AND recorded_at <= ");
            q.push_bind(to);
        }
        if let Some(license) = filter.license_id {
            q.push(" AND license_id = ");
            q.push_bind(license);
        }
        if let Some(organizations) = &filter.organizations {
            let ids: Vec<String> = organizations.iter().map(ToString::to_string).collect();
            // A license's events while these organizations held it: the one that held it at
            // an event is named by the stream's last issue or transfer up to that event (found
            // through the partial index `rm_audit_license_holders`, then the event's payload).
            // What happened under a former owner before a transfer stays the former owner's.
            q.push(" AND ((license_id IN (SELECT id FROM rm_licenses WHERE organization_id = ANY(");
            q.push_bind(organizations.clone());
            q.push(
                ")) AND (SELECT (h.payload->>'organization_id')::uuid FROM events h \
                 WHERE h.event_id = (SELECT t.event_id FROM rm_audit t \
                 WHERE t.license_id = rm_audit.license_id \
                 AND t.action IN ('LicenseIssued', 'LicenseTransferred') \
                 AND t.position <= rm_audit.position \
                 ORDER BY t.position DESC LIMIT 1)) = ANY(",
            );
            q.push_bind(organizations.clone());
            q.push(")) OR (subject_type = 'Organization' AND subject_id = ANY(");
            q.push_bind(ids);
            q.push(
                ")) OR (subject_type = 'User' AND subject_id IN \
                    (SELECT id::text FROM rm_users WHERE organization_id = ANY(",
            );
            q.push_bind(organizations.clone());
            q.push("))))");
        }
    };
    let mut q = QueryBuilder::new("");
    if let Some(actor) = &filter.actor {
        // The events the actor caused, and those it caused as someone else (impersonation):
        // each side a window of its own index in position order, merged.
        q.push("SELECT * FROM ((");
        for (n, column) in ["actor", "impersonated_by"].into_iter().enumerate() {
            if n > 0 {
                q.push(") UNION (");
            }
            q.push(COLUMNS);
            filters(&mut q);
            q.push(format!(" AND {column} = "));
            q.push_bind(actor.clone());
            keyset(&mut q, "position", window);
        }
        q.push(")) u ORDER BY position ")
            .push(window.order.sql())
            .push(" LIMIT ");
        q.push_bind(page(window.limit) + 1);
    } else {
        q.push(COLUMNS);
        filters(&mut q);
        keyset(&mut q, "position", window);
    }
    q.build()
        .fetch_all(pool)
        .await?
        .iter()
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
                impersonated_by: r.try_get("impersonated_by")?,
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

/// A user row of `rm_users`.
#[derive(Clone, Debug)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub organization_id: Uuid,
    pub issuer: Option<String>,
    pub subject: Option<String>,
    pub deactivated: bool,
    /// `<organization id>:<role>` each.
    pub roles: Vec<String>,
    pub version: i64,
}

/// The users registered or invited at `organization_id`, by id.
///
/// # Errors
/// Database errors.
pub async fn organization_users(
    pool: &PgPool,
    organization_id: Uuid,
    window: &Window<Uuid>,
) -> Result<Vec<UserRow>, sqlx::Error> {
    let mut q = QueryBuilder::new(
        "SELECT id, email, organization_id, issuer, subject, deactivated, roles, version \
         FROM rm_users WHERE organization_id = ",
    );
    q.push_bind(organization_id);
    keyset(&mut q, "id", window);
    q.build()
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            Ok(UserRow {
                id: r.try_get("id")?,
                email: r.try_get("email")?,
                organization_id: r.try_get("organization_id")?,
                issuer: r.try_get("issuer")?,
                subject: r.try_get("subject")?,
                deactivated: r.try_get("deactivated")?,
                roles: r.try_get("roles")?,
                version: r.try_get("version")?,
            })
        })
        .collect()
}

/// The license installation `installation_id` was activated on, from the log (the partial index
/// of migration 0012): read-your-writes, whichever server took the activation.
///
/// # Errors
/// Database errors.
pub async fn license_of_installation(
    pool: &PgPool,
    installation_id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    let id: Option<String> = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE event_type = 'InstallationActivated' \
         AND aggregate_type = 'License' AND payload->>'installation_id' = $1 LIMIT 1",
    )
    .bind(installation_id.to_string())
    .fetch_optional(pool)
    .await?;
    Ok(id.and_then(|id| Uuid::parse_str(&id).ok()))
}

/// The release stream holding artifact `artifact_id`, from the log (migration 0018's
/// `events_artifact_id`): read-your-writes, a link asked for right after the upload or the
/// publish finds its file whatever the read model's lag.
///
/// # Errors
/// Database errors.
pub async fn release_of_artifact(
    pool: &PgPool,
    artifact_id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    let id: Option<String> = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE event_type = 'ArtifactAdded' \
         AND payload ->> 'artifact_id' = $1 LIMIT 1",
    )
    .bind(artifact_id.to_string())
    .fetch_optional(pool)
    .await?;
    Ok(id.and_then(|id| Uuid::parse_str(&id).ok()))
}

/// Whether some `ArtifactAdded` names the digest `sha256` (hex), from the log (migration
/// 0018's `events_artifact_digest`): what the artifact store keeps.
///
/// # Errors
/// Database errors.
pub async fn artifact_digest_named(pool: &PgPool, sha256: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM events WHERE event_type = 'ArtifactAdded' \
         AND payload ->> 'sha256' = $1)",
    )
    .bind(sha256)
    .fetch_one(pool)
    .await
}

/// Every digest (hex) some `ArtifactAdded` names, from the log: what a sweep of the artifact
/// store keeps (the read model may trail or be rebuilding).
///
/// # Errors
/// Database errors.
pub async fn named_artifact_digests(
    pool: &PgPool,
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    Ok(sqlx::query_scalar::<_, Option<String>>(
        "SELECT DISTINCT payload ->> 'sha256' FROM events WHERE event_type = 'ArtifactAdded'",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .flatten()
    .collect())
}

/// One event of the billing inbox (`billing_inbox`, migrations 0014-0015).
#[derive(Clone, Debug)]
pub struct InboxRow {
    /// Arrival order: the list's key.
    pub seq: i64,
    pub event_id: String,
    pub event_type: String,
    pub created: Timestamp,
    pub received_at: Timestamp,
    /// `pending`, `processed`, `ignored` or `failed`.
    pub outcome: String,
    pub reason: Option<String>,
    pub attempts: i32,
    pub next_attempt_at: Option<Timestamp>,
    pub processed_at: Option<Timestamp>,
}

const INBOX_COLUMNS: &str = "seq, event_id, event_type, created, received_at, \
     coalesce(outcome, 'pending') AS outcome, reason, attempts, \
     CASE WHEN outcome IS NULL OR outcome = 'failed' THEN next_attempt_at END AS next_attempt_at, \
     processed_at";

fn inbox_row(r: &PgRow) -> Result<InboxRow, sqlx::Error> {
    Ok(InboxRow {
        seq: r.try_get("seq")?,
        event_id: r.try_get("event_id")?,
        event_type: r.try_get("event_type")?,
        created: r.try_get("created")?,
        received_at: r.try_get("received_at")?,
        outcome: r.try_get("outcome")?,
        reason: r.try_get("reason")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        processed_at: r.try_get("processed_at")?,
    })
}

/// Inbox events in arrival order, by outcome (`pending` for those not taken yet) and type.
///
/// # Errors
/// Database errors.
pub async fn billing_inbox(
    pool: &PgPool,
    outcome: Option<&str>,
    event_type: Option<&str>,
    window: &Window<i64>,
) -> Result<Vec<InboxRow>, sqlx::Error> {
    let mut q = QueryBuilder::new(format!(
        "SELECT {INBOX_COLUMNS} FROM billing_inbox WHERE true"
    ));
    match outcome {
        Some("pending") => {
            q.push(" AND outcome IS NULL");
        }
        Some(outcome) => {
            q.push(" AND outcome = ");
            q.push_bind(outcome.to_owned());
        }
        None => {}
    }
    if let Some(event_type) = event_type {
        q.push(" AND event_type = ");
        q.push_bind(event_type.to_owned());
    }
    keyset(&mut q, "seq", window);
    q.build()
        .fetch_all(pool)
        .await?
        .iter()
        .map(inbox_row)
        .collect()
}

/// Makes inbox event `id` due at `now`, whatever its outcome, with its automatic attempts
/// counted afresh (support retries once what it needed is put right); `None` when there is no
/// such event.
///
/// # Errors
/// Database errors.
pub async fn retry_billing_event(
    pool: &PgPool,
    id: &str,
    now: Timestamp,
) -> Result<Option<InboxRow>, sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE billing_inbox SET outcome = NULL, next_attempt_at = $2, attempts = 0 \
         WHERE event_id = $1 RETURNING {INBOX_COLUMNS}"
    ))
    .bind(id)
    .bind(now)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(inbox_row)
    .transpose()
}

/// A release row of `rm_releases`, with its artifacts.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReleaseRow {
    pub id: Uuid,
    pub product_id: Uuid,
    pub release_version: String,
    pub channel: String,
    pub status: String,
    pub notes: Option<String>,
    pub entitlements: Vec<String>,
    pub published_at: Option<Timestamp>,
    pub yanked_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
    /// In upload order.
    pub artifacts: Vec<ArtifactRow>,
}

/// An artifact row of `rm_artifacts`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ArtifactRow {
    pub id: Uuid,
    pub release_id: Uuid,
    pub filename: String,
    pub platform: String,
    pub arch: String,
    pub size: i64,
    pub sha256: String,
    pub signature: String,
    pub kid: String,
}

/// A product's releases (optionally of one version, as written), a window of them by id, each
/// with its artifacts.
///
/// # Errors
/// Database errors.
pub async fn releases(
    pool: &PgPool,
    product_id: Uuid,
    release_version: Option<&str>,
    window: &Window<Uuid>,
) -> Result<Vec<ReleaseRow>, sqlx::Error> {
    let mut q = QueryBuilder::new(
        "SELECT id, product_id, release_version, channel, status, notes, entitlements, published_at, \
         yanked_reason, created_at, updated_at, version FROM rm_releases WHERE product_id = ",
    );
    q.push_bind(product_id);
    if let Some(v) = release_version {
        q.push(" AND release_version = ").push_bind(v.to_owned());
    }
    keyset(&mut q, "id", window);
    let mut rows = q
        .build()
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            Ok(ReleaseRow {
                id: r.try_get("id")?,
                product_id: r.try_get("product_id")?,
                release_version: r.try_get("release_version")?,
                channel: r.try_get("channel")?,
                status: r.try_get("status")?,
                notes: r.try_get("notes")?,
                entitlements: r.try_get("entitlements")?,
                published_at: r.try_get("published_at")?,
                yanked_reason: r.try_get("yanked_reason")?,
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
                version: r.try_get("version")?,
                artifacts: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let artifacts = sqlx::query(
        "SELECT id, release_id, filename, platform, arch, size, sha256, signature, kid \
         FROM rm_artifacts WHERE release_id = ANY($1) ORDER BY release_id, id",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    for r in &artifacts {
        let artifact = ArtifactRow {
            id: r.try_get("id")?,
            release_id: r.try_get("release_id")?,
            filename: r.try_get("filename")?,
            platform: r.try_get("platform")?,
            arch: r.try_get("arch")?,
            size: r.try_get("size")?,
            sha256: r.try_get("sha256")?,
            signature: r.try_get("signature")?,
            kid: r.try_get("kid")?,
        };
        if let Some(release) = rows.iter_mut().find(|x| x.id == artifact.release_id) {
            release.artifacts.push(artifact);
        }
    }
    Ok(rows)
}

/// A download link of `rm_downloads`, with its completed transfers.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DownloadRow {
    pub id: Uuid,
    pub artifact_id: Uuid,
    pub release_id: Uuid,
    pub license_id: Uuid,
    pub organization_id: Uuid,
    pub user_id: Option<Uuid>,
    pub granted_to: String,
    pub granted_at: Timestamp,
    pub expires_at: Timestamp,
    pub served: i32,
    pub bytes_served: i64,
    pub last_served_at: Option<Timestamp>,
}

/// A release's download links (optionally of one organization), a window of them by id.
///
/// # Errors
/// Database errors.
pub async fn downloads(
    pool: &PgPool,
    release_id: Uuid,
    organization_id: Option<Uuid>,
    window: &Window<Uuid>,
) -> Result<Vec<DownloadRow>, sqlx::Error> {
    let mut q = QueryBuilder::new(
        "SELECT id, artifact_id, release_id, license_id, organization_id, user_id, granted_to, \
         granted_at, expires_at, served, bytes_served, last_served_at FROM rm_downloads WHERE release_id = ",
    );
    q.push_bind(release_id);
    if let Some(org) = organization_id {
        q.push(" AND organization_id = ").push_bind(org);
    }
    keyset(&mut q, "id", window);
    q.build()
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            Ok(DownloadRow {
                id: r.try_get("id")?,
                artifact_id: r.try_get("artifact_id")?,
                release_id: r.try_get("release_id")?,
                license_id: r.try_get("license_id")?,
                organization_id: r.try_get("organization_id")?,
                user_id: r.try_get("user_id")?,
                granted_to: r.try_get("granted_to")?,
                granted_at: r.try_get("granted_at")?,
                expires_at: r.try_get("expires_at")?,
                served: r.try_get("served")?,
                bytes_served: r.try_get("bytes_served")?,
                last_served_at: r.try_get("last_served_at")?,
            })
        })
        .collect()
}

/// Download counts grouped by one key: links granted, completed transfers, bytes.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DownloadCount {
    /// The organization (counts of a release) or the release (counts of an organization).
    pub key: Uuid,
    pub granted: i64,
    pub served: i64,
    pub bytes: i64,
}

/// A release's download counts per organization, or an organization's per release
/// (`by_release`), largest first.
///
/// # Errors
/// Database errors.
pub async fn download_counts(
    pool: &PgPool,
    id: Uuid,
    by_release: bool,
) -> Result<Vec<DownloadCount>, sqlx::Error> {
    // Two fixed statements (no identifier from input is ever spliced in).
    let sql = if by_release {
        "SELECT release_id AS key, count(*) AS granted, coalesce(sum(served), 0)::bigint AS served, \
         coalesce(sum(bytes_served), 0)::bigint AS bytes FROM rm_downloads WHERE organization_id = $1 \
         GROUP BY release_id ORDER BY served DESC, key"
    } else {
        "SELECT organization_id AS key, count(*) AS granted, coalesce(sum(served), 0)::bigint AS served, \
         coalesce(sum(bytes_served), 0)::bigint AS bytes FROM rm_downloads WHERE release_id = $1 \
         GROUP BY organization_id ORDER BY served DESC, key"
    };
    sqlx::query(sql)
        .bind(id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            Ok(DownloadCount {
                key: r.try_get("key")?,
                granted: r.try_get("granted")?,
                served: r.try_get("served")?,
                bytes: r.try_get("bytes")?,
            })
        })
        .collect()
}

/// A product's published releases that are not yanked, with their artifacts, by id: what the
/// update check and the portal's listing decide visibility over.
///
/// # Errors
/// Database errors.
pub async fn published_releases(
    pool: &PgPool,
    product_id: Uuid,
) -> Result<Vec<ReleaseRow>, sqlx::Error> {
    let mut all = Vec::new();
    let mut window = Window::first(Order::Asc, MAX_PAGE);
    loop {
        let mut page = releases(pool, product_id, None, &window).await?;
        let more = page.len() as i64 > MAX_PAGE;
        page.truncate(usize::try_from(MAX_PAGE).unwrap_or(usize::MAX));
        window.after = page.last().map(|r| r.id);
        all.extend(page.into_iter().filter(|r| r.status == "published"));
        if !more {
            return Ok(all);
        }
    }
}

// ----- the web UI's dashboard (issue #18) -----

/// How many licenses have each status at `now`, and how many active ones expire before
/// `soon`: one pass over `rm_licenses`, each status the list filter's own condition
/// ([`push_status`]), so the counts and the filtered lists they link to agree.
///
/// # Errors
/// Database errors.
pub async fn license_status_counts(
    pool: &PgPool,
    now: Timestamp,
    soon: Timestamp,
) -> Result<(Vec<(LicenseStatus, i64)>, i64), sqlx::Error> {
    let mut q = QueryBuilder::new("SELECT ");
    for (i, status) in LicenseStatus::ALL.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.push("count(*) FILTER (WHERE true");
        push_status(&mut q, *status, now);
        q.push(")");
    }
    q.push(", count(*) FILTER (WHERE true");
    push_status(&mut q, LicenseStatus::Active, now);
    // `<`, as the list's `expires_before`: the count and the list it links to agree.
    q.push(" AND expires_at < ");
    q.push_bind(soon);
    q.push(") FROM rm_licenses");
    let row = q.build().fetch_one(pool).await?;
    let counts = LicenseStatus::ALL
        .iter()
        .enumerate()
        .map(|(i, s)| Ok((*s, row.try_get::<i64, _>(i)?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let expiring = row.try_get::<i64, _>(LicenseStatus::ALL.len())?;
    Ok((counts, expiring))
}

/// Events of `event_types` recorded on each UTC day since `since`, as `(day, event_type,
/// count)`: the dashboard's activity plot (through `events_recorded_at`).
///
/// # Errors
/// Database errors.
pub async fn events_per_day(
    pool: &PgPool,
    event_types: &[&str],
    since: Timestamp,
) -> Result<Vec<(chrono::NaiveDate, String, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT (recorded_at AT TIME ZONE 'UTC')::date AS day, event_type, count(*) AS n \
           FROM events WHERE recorded_at >= $1 AND event_type = ANY($2) \
          GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(since)
    .bind(event_types)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("day")?, r.try_get("event_type")?, r.try_get("n")?)))
        .collect()
}

/// Payment gateway events received since `since`, by outcome (`pending` for those not taken
/// yet): the dashboard's billing plot.
///
/// # Errors
/// Database errors.
pub async fn billing_outcome_counts(
    pool: &PgPool,
    since: Timestamp,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT coalesce(outcome, 'pending') AS outcome, count(*) AS n FROM billing_inbox \
          WHERE received_at >= $1 GROUP BY 1 ORDER BY 1",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("outcome")?, r.try_get("n")?)))
        .collect()
}
