//! The UI's pages. Each asks the application layer what the matching API route asks, with the
//! session's access, so the reach and the permissions are the API's: vendor pages check
//! [`Permission`]s as the vendor routes do, organization pages go through
//! `application::portal`, whose reach makes a foreign organization the same 404 as an unknown
//! one.
//!
//! - `/`: the dashboard for vendor roles (counts and plots), the user's organizations for
//!   customers.
//! - `/licenses`: the license search (vendor roles): key prefix, organization, product, status.
//! - `/licenses/{id}`: a license; with `?at=` as it stood then, and (vendor roles) the events
//!   behind it. Suspend and reinstate through a confirmation page.
//! - `/organizations/{id}`: an organization's licenses and installations (portal), with
//!   deactivation through a confirmation page.

use application::catalogue::{LicenseQuery, PageRequest};
use application::views::{EventView, LicenseView};
use askama::Template;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use chrono::Timelike;
use commands::ledger::LicenseChange;
use domain::Timestamp;
use domain::ids::{InstallationId, LicenseId, OrganizationId};
use domain::status::LicenseStatus;
use domain::values::Reason;
use projections::queries::Order;
use uuid::Uuid;

use super::svg::{self, Bar, Pattern, Series};
use super::{Names, Nav, UiError, UiForm, Viewer, after_change, form_key, html};
use crate::auth::Permission;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/licenses", get(licenses))
        .route("/licenses/{id}", get(license))
        .route("/licenses/{id}/{action}", get(confirm_change).post(change))
        .route("/organizations", get(organizations))
        .route("/organizations/{id}", get(organization))
        .route(
            "/installations/{id}/deactivate",
            get(confirm_deactivation).post(deactivate),
        )
}

/// The query's parameters by name (the last of a repeated one).
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn of(raw: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(n, v)| (n.into_owned(), v.trim().to_owned()))
                .filter(|(_, v)| !v.is_empty())
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The query without `name`, encoded (for a link that drops it).
    pub fn without(&self, name: &str) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (n, v) in self.0.iter().filter(|(n, _)| n != name) {
            s.append_pair(n, v);
        }
        s.finish()
    }

    /// The page this query asks for: its `cursor`, `limit` items, in `order`.
    pub fn page(&self, limit: i64, order: Order) -> PageRequest {
        PageRequest {
            cursor: self.get("cursor").map(str::to_owned),
            limit,
            order,
        }
    }

    /// The link to the page after this one at `path` (this query, its cursor replaced), if a
    /// page follows.
    pub fn next(&self, path: &str, next_cursor: Option<String>) -> Option<String> {
        next_cursor.map(|cursor| format!("{path}?{}", self.with("cursor", &cursor)))
    }

    /// The query with `name` set to `value` (a next page's cursor), encoded.
    pub fn with(&self, name: &str, value: &str) -> String {
        let mut s = form_urlencoded::Serializer::new(self.without(name));
        s.append_pair(name, value);
        s.finish()
    }

    pub fn uuid(&self, name: &str) -> Result<Option<Uuid>, UiError> {
        self.get(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| UiError::BadRequest(format!("{name} is not an id: {v:?}")))
            })
            .transpose()
    }
}

/// An instant typed into a `datetime-local` field (UTC) or given as RFC 3339.
pub fn parse_instant(raw: &str) -> Result<Timestamp, UiError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(raw, format) {
            return Ok(t.and_utc());
        }
    }
    Err(UiError::BadRequest(format!(
        "{raw:?} is not an instant: give a date and time such as 2026-12-01T09:30 (UTC)"
    )))
}

/// What a page shows of an instant: UTC, to the second.
pub fn show(t: &Timestamp) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn show_opt(t: Option<&Timestamp>) -> String {
    t.map_or_else(|| "—".to_owned(), show)
}

// ----- home -----

/// A count that links to the list it counts.
struct Count {
    label: String,
    value: i64,
    href: String,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    nav: Nav,
    counts: Vec<Count>,
    expiring: i64,
    expiring_href: String,
    status_plot: String,
    activity_plot: String,
    activity_rows: Vec<(String, i64, i64)>,
    validations_plot: String,
    /// Every code answered in the period, with its count.
    validation_totals: Vec<(String, i64)>,
    billing_plot: String,
    billing: Vec<(String, i64)>,
}

struct OrganizationLink {
    id: Uuid,
    name: String,
    kind: String,
    depth: usize,
    delegated: bool,
}

#[derive(Template)]
#[template(path = "portal_home.html")]
struct PortalHome {
    nav: Nav,
    organizations: Vec<OrganizationLink>,
}

/// The days a plot of activity covers.
const ACTIVITY_DAYS: i64 = 14;

fn status_class(status: LicenseStatus) -> &'static str {
    match status {
        LicenseStatus::Active | LicenseStatus::Trialing => "ok",
        LicenseStatus::PastDue | LicenseStatus::Paused | LicenseStatus::Suspended => "warn",
        LicenseStatus::Expired | LicenseStatus::Canceled | LicenseStatus::Revoked => "bad",
    }
}

async fn home(State(state): State<AppState>, viewer: Viewer) -> Result<Response, UiError> {
    let nav = viewer.nav();
    if !nav.vendor {
        let me = state.app.users().me(&viewer.session.access).await?;
        return Ok(html(
            StatusCode::OK,
            &PortalHome {
                nav,
                organizations: tree(me.organizations.into_iter().map(Node::from).collect()),
            },
        ));
    }
    let pool = state.app.pool();
    let now = state.app.now();
    // Whole seconds: the list the count links to is filtered by the same instant.
    let soon = (now + chrono::Duration::days(30))
        .with_nanosecond(0)
        .unwrap_or(now);
    let (by_status, expiring) = projections::queries::license_status_counts(pool, now, soon)
        .await
        .map_err(application::AppError::from)?;
    let counts = by_status
        .iter()
        .map(|(s, n)| Count {
            label: s.as_str().replace('_', " "),
            value: *n,
            href: format!("/licenses?status={}", s.as_str()),
        })
        .collect();
    let status_plot = svg::bars(
        "by-status",
        "Licenses by status",
        &by_status
            .iter()
            .map(|(s, n)| Bar {
                label: s.as_str().replace('_', " "),
                value: *n,
                class: status_class(*s),
            })
            .collect::<Vec<_>>(),
    );
    // Activity: installations activated and deactivated per day, the last two weeks (UTC).
    let today = now.date_naive();
    let first = today - chrono::Duration::days(ACTIVITY_DAYS - 1);
    let since = first
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or(now);
    let kinds = ["InstallationActivated", "InstallationDeactivated"];
    let per_day = projections::queries::events_per_day(pool, &kinds, since)
        .await
        .map_err(application::AppError::from)?;
    let days: Vec<chrono::NaiveDate> = first.iter_days().take_while(|d| *d <= today).collect();
    let values: Vec<Vec<i64>> = kinds
        .iter()
        .map(|kind| {
            days.iter()
                .map(|day| {
                    per_day
                        .iter()
                        .find(|(d, k, _)| d == day && k == kind)
                        .map_or(0, |(_, _, n)| *n)
                })
                .collect()
        })
        .collect();
    let series = vec![
        Series {
            name: "activated".into(),
            class: "ok",
            pattern: Pattern::Solid,
        },
        Series {
            name: "deactivated".into(),
            class: "warn",
            pattern: Pattern::Hatched,
        },
    ];
    let activity_plot = svg::stacked_days(
        "activity",
        "Installations activated and deactivated per day",
        &days,
        &series,
        &values,
    );
    // Validations per day, by what they answered (the codes grouped, each group its pattern).
    let validated = application::usage::per_day(pool, first)
        .await
        .map_err(application::AppError::from)?;
    let groups: [(&str, &[&str]); 4] = [
        ("valid", &["VALID"]),
        (
            "license not valid",
            &[
                "REVOKED",
                "SUSPENDED",
                "PAUSED",
                "OVERDUE",
                "TRIAL_EXPIRED",
                "EXPIRED",
            ],
        ),
        (
            "device or features",
            &["NOT_ACTIVATED", "TOO_MANY_ACTIVATIONS", "FEATURES_MISSING"],
        ),
        ("unknown key or app", &["NOT_FOUND", "APP_MISMATCH"]),
    ];
    let validation_values: Vec<Vec<i64>> = groups
        .iter()
        .map(|(_, codes)| {
            days.iter()
                .map(|day| {
                    validated
                        .iter()
                        .filter(|(d, c, _)| d == day && codes.contains(&c.as_str()))
                        .map(|(_, _, n)| *n)
                        .sum()
                })
                .collect()
        })
        .collect();
    let validation_series: Vec<Series> = groups
        .iter()
        .zip(Pattern::ALL)
        .zip(["ok", "warn", "warn", "bad"])
        .map(|(((name, _), pattern), class)| Series {
            name: (*name).to_owned(),
            class,
            pattern,
        })
        .collect();
    let validations_plot = svg::stacked_days(
        "validations",
        "Validations per day by answer",
        &days,
        &validation_series,
        &validation_values,
    );
    let mut validation_totals: Vec<(String, i64)> = Vec::new();
    for (_, code, n) in &validated {
        match validation_totals.iter_mut().find(|(c, _)| c == code) {
            Some((_, total)) => *total += n,
            None => validation_totals.push((code.clone(), *n)),
        }
    }
    let activity_rows = days
        .iter()
        .enumerate()
        .map(|(i, d)| (d.to_string(), values[0][i], values[1][i]))
        .collect();
    let billing = projections::queries::billing_outcome_counts(
        pool,
        now - chrono::Duration::days(ACTIVITY_DAYS),
    )
    .await
    .map_err(application::AppError::from)?;
    let billing_plot = svg::bars(
        "billing",
        "Stripe events of the last two weeks by outcome",
        &billing
            .iter()
            .map(|(outcome, n)| Bar {
                label: outcome.clone(),
                value: *n,
                class: match outcome.as_str() {
                    "processed" => "ok",
                    "failed" => "bad",
                    _ => "warn",
                },
            })
            .collect::<Vec<_>>(),
    );
    Ok(html(
        StatusCode::OK,
        &Dashboard {
            nav,
            counts,
            expiring,
            // The same bound as the count, to the second (RFC 3339, percent-encoded).
            expiring_href: format!(
                "/licenses?status=active&{}",
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("expires_before", &soon.to_rfc3339())
                    .finish()
            ),
            status_plot,
            activity_plot,
            activity_rows,
            validations_plot,
            validation_totals,
            billing_plot,
            billing,
        },
    ))
}

/// An organization placed in a tree.
pub struct Node {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub parent_id: Option<Uuid>,
    pub delegated: bool,
}

impl From<application::users::ReachedOrganizationView> for Node {
    fn from(o: application::users::ReachedOrganizationView) -> Self {
        Self {
            id: o.id,
            name: o.name,
            kind: o.kind,
            parent_id: o.parent_id,
            delegated: o.delegated,
        }
    }
}

/// Organizations as an indented tree, parents before children, siblings by name; one whose
/// parent is not among them is a root.
fn tree(organizations: Vec<Node>) -> Vec<OrganizationLink> {
    let ids: std::collections::HashSet<Uuid> = organizations.iter().map(|o| o.id).collect();
    let mut out = Vec::new();
    fn walk(
        parent: Option<Uuid>,
        depth: usize,
        all: &[Node],
        ids: &std::collections::HashSet<Uuid>,
        out: &mut Vec<OrganizationLink>,
    ) {
        let mut children: Vec<_> = all
            .iter()
            .filter(|o| match parent {
                None => o.parent_id.is_none_or(|p| !ids.contains(&p)),
                Some(p) => o.parent_id == Some(p),
            })
            .collect();
        children.sort_by(|a, b| a.name.cmp(&b.name));
        for o in children {
            out.push(OrganizationLink {
                id: o.id,
                name: o.name.clone(),
                kind: o.kind.clone(),
                depth,
                delegated: o.delegated,
            });
            // The log refuses cycles (ORGANIZATION_CYCLE); the bound guards the page anyway.
            if depth < 32 {
                walk(Some(o.id), depth + 1, all, ids, out);
            }
        }
    }
    walk(None, 0, &organizations, &ids, &mut out);
    out
}

/// The vendor's view of every organization: searched by name, or the whole tree (at most
/// [`MAX_TREE`] organizations).
#[derive(Template)]
#[template(path = "organizations.html")]
struct Organizations {
    nav: Nav,
    q: String,
    organizations: Vec<OrganizationLink>,
    more: bool,
    may_register: bool,
}

/// The most organizations the vendor's tree shows at once.
const MAX_TREE: i64 = 1000;

async fn organizations(
    State(state): State<AppState>,
    viewer: Viewer,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    viewer.require(
        Permission::Read,
        "every organization is for the vendor's staff",
    )?;
    let q = Query::of(raw.as_deref());
    let text = q.get("q").map(str::to_owned);
    if text.as_deref().is_some_and(|t| t.chars().count() > 200) {
        return Err(UiError::BadRequest("the search text is too long".into()));
    }
    let listed = state
        .app
        .catalogue()
        .organizations(
            projections::queries::OrganizationFilter {
                parent_id: None,
                kind: None,
                q: text,
            },
            PageRequest {
                cursor: None,
                limit: MAX_TREE,
                order: Order::Asc,
            },
        )
        .await?;
    // The tree's "New organization…" registers a root: what the registration allows.
    let may_register = state
        .app
        .catalogue()
        .authorize_new_organization(
            &viewer.session.access,
            None,
            domain::values::OrganizationKind::Customer,
        )
        .await
        .is_ok();
    Ok(html(
        StatusCode::OK,
        &Organizations {
            nav: viewer.nav(),
            q: q.get("q").unwrap_or_default().to_owned(),
            more: listed.next_cursor.is_some(),
            may_register,
            organizations: tree(
                listed
                    .items
                    .into_iter()
                    .map(|o| Node {
                        id: o.id,
                        name: o.name,
                        kind: o.kind,
                        parent_id: o.parent_id,
                        delegated: false,
                    })
                    .collect(),
            ),
        },
    ))
}

// ----- license search -----

#[cfg(test)]
mod tests {
    use super::search_prefix;

    #[test]
    fn a_pasted_key_is_cut_to_what_the_ledger_keeps() {
        assert_eq!(search_prefix(" ACMEST-B3XCGQGW-AAAA-BBBB "), "ACMEST-B3XC");
        assert_eq!(search_prefix("ACMEST-B3"), "ACMEST-B3");
        assert_eq!(search_prefix("ACMEST"), "ACMEST");
    }
}

#[derive(Template)]
#[template(path = "licenses.html")]
struct Licenses {
    nav: Nav,
    key_prefix: String,
    organization_id: String,
    product_id: String,
    status: String,
    statuses: Vec<&'static str>,
    searched: bool,
    licenses: Vec<LicenseView>,
    names: Names,
    next: Option<String>,
    may_issue: bool,
    /// The products, for the product select: (id, name).
    products: Vec<(String, String)>,
    /// What the search did with a typed key prefix, when it is not plain.
    note: Option<String>,
}

async fn licenses(
    State(state): State<AppState>,
    viewer: Viewer,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    viewer.require(
        Permission::Read,
        "the license search is for the vendor's staff",
    )?;
    let q = Query::of(raw.as_deref());
    let status = q
        .get("status")
        .map(|s| {
            LicenseStatus::ALL
                .into_iter()
                .find(|x| x.as_str() == s)
                .ok_or_else(|| UiError::BadRequest(format!("no status is called {s:?}")))
        })
        .transpose()?;
    let expires_before = q.get("expires_before").map(parse_instant).transpose()?;
    let products = state
        .app
        .catalogue()
        .products(PageRequest {
            cursor: None,
            limit: 500,
            order: Order::Asc,
        })
        .await?
        .items;
    // A product's key prefix alone ("ACMEST") names the product: its licenses are listed. A
    // pasted key is cut to what the ledger keeps of it, and the page says so: the search finds
    // licenses, it does not check a key.
    let typed = q.get("key_prefix");
    let named_product = typed.filter(|t| !t.contains('-')).and_then(|t| {
        products
            .iter()
            .find(|p| p.key_prefix.eq_ignore_ascii_case(t))
    });
    let key_prefix = typed.filter(|_| named_product.is_none()).map(search_prefix);
    let note = match (named_product, typed, &key_prefix) {
        (Some(p), _, _) => Some(format!(
            "{} alone is the key prefix of {}: its licenses are listed.",
            p.key_prefix, p.name
        )),
        (None, Some(typed), Some(kept)) if kept.as_str() != typed => Some(format!(
            "Searched by {kept}, the start of the key the ledger keeps (it stores only a key's \
             hash): the rest of what was typed is not compared. To check a whole key, validate it."
        )),
        _ => None,
    };
    let query = LicenseQuery {
        organization_id: q.uuid("organization_id")?,
        include_descendants: q.get("include_descendants").is_some(),
        product_id: match named_product {
            Some(p) => Some(p.id),
            None => q.uuid("product_id")?,
        },
        policy_id: None,
        status,
        key_prefix,
        expires_before,
        user_id: None,
    };
    let searched = !q.0.is_empty();
    let listed = state
        .app
        .catalogue()
        .licenses(query, q.page(50, Order::Asc))
        .await?;
    let next = q.next("/licenses", listed.next_cursor);
    let names = Names::of(
        &state,
        listed
            .items
            .iter()
            .flat_map(|l| [l.organization_id, l.product_id]),
    )
    .await?;
    Ok(html(
        StatusCode::OK,
        &Licenses {
            nav: viewer.nav(),
            key_prefix: q.get("key_prefix").unwrap_or_default().to_owned(),
            organization_id: q.get("organization_id").unwrap_or_default().to_owned(),
            product_id: q.get("product_id").unwrap_or_default().to_owned(),
            status: q.get("status").unwrap_or_default().to_owned(),
            statuses: LicenseStatus::ALL.iter().map(|s| s.as_str()).collect(),
            searched,
            licenses: listed.items,
            names,
            next,
            may_issue: viewer.principal().require(Permission::Admin).is_ok(),
            products: products
                .into_iter()
                .map(|p| (p.id.to_string(), p.name))
                .collect(),
            note,
        },
    ))
}

/// What support types into the key-prefix field, as the search takes it: a whole key pasted
/// (or more of it than the ledger keeps) is cut to the product's prefix and the next four
/// characters, so nobody has to count; anything else goes as typed.
fn search_prefix(typed: &str) -> String {
    let typed = typed.trim();
    let mut groups = typed.split('-');
    match (groups.next(), groups.next()) {
        (Some(product), Some(next)) if !product.is_empty() && !next.is_empty() => {
            format!("{product}-{}", next.chars().take(4).collect::<String>())
        }
        _ => typed.to_owned(),
    }
}

// ----- one license -----

/// An event as the license page lists it.
struct EventRow {
    sequence: i64,
    event_type: String,
    recorded_at: String,
    actor: String,
    data: String,
}

impl EventRow {
    fn of(e: &EventView) -> Self {
        Self {
            sequence: e.sequence,
            event_type: e.event_type.clone(),
            recorded_at: show(&e.recorded_at),
            actor: e
                .metadata
                .get("actor")
                .map(|a| match a {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default(),
            data: serde_json::to_string(&e.data).unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "license.html")]
struct LicensePage {
    nav: Nav,
    license: LicenseView,
    expires: String,
    maintenance: String,
    created: String,
    /// The instant asked, when time-travelling.
    at: Option<String>,
    at_value: String,
    events: Vec<EventRow>,
    events_complete: bool,
    actions: Vec<ActionLink>,
    names: Names,
}

/// The most events the license page lists.
const MAX_EVENTS: i64 = 200;

fn license_id(raw: &str) -> Result<LicenseId, UiError> {
    raw.parse().map_err(|_| UiError::NotFound)
}

async fn license(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, UiError> {
    let id = license_id(&raw)?;
    let q = Query::of(query.as_deref());
    let at = q.get("at").map(parse_instant).transpose()?;
    if at.is_some_and(|at| at > state.app.now()) {
        return Err(UiError::BadRequest(
            "That instant is in the future: a license's history ends now.".into(),
        ));
    }
    let access = &viewer.session.access;
    let license = match (state.app.licenses().get_for(access, id, at).await, at) {
        (Err(application::AppError::NotFound { .. }), Some(at)) => {
            // Say why, once the license itself is the viewer's to see (else: the same 404).
            let now = state.app.licenses().get_for(access, id, None).await?;
            let issued = now.created_at.unwrap_or(at);
            return Err(UiError::BadRequest(if at < issued {
                format!(
                    "The license was not issued yet at {}: it was issued at {}.",
                    show(&at),
                    show(&issued)
                )
            } else {
                format!(
                    "At {} the license was another organization's: its past before it was \
                     transferred here is not yours to see.",
                    show(&at)
                )
            }));
        }
        (answer, _) => answer?,
    };
    let nav = viewer.nav();
    // The events are the vendor's (as `GET /v1/licenses/{id}/events`); with `at`, those
    // recorded by then: the ones the state shown folds.
    let (events, events_complete) = if nav.vendor {
        let page = state
            .app
            .licenses()
            .events(
                id,
                PageRequest {
                    cursor: None,
                    limit: MAX_EVENTS,
                    order: Order::Asc,
                },
            )
            .await?;
        // Complete when the page holds the whole stream, or an event after `at` (every one
        // up to `at` is then on the page).
        let complete = page.next_cursor.is_none()
            || at.is_some_and(|at| page.items.iter().any(|e| e.recorded_at > at));
        let rows = page
            .items
            .iter()
            .filter(|e| at.is_none_or(|at| e.recorded_at <= at))
            .map(EventRow::of)
            .collect();
        (rows, complete)
    } else {
        (Vec::new(), true)
    };
    // Actions act on the license now: none while looking at the past.
    let actions = if at.is_none() {
        actions_for(access, license.status)
    } else {
        Vec::new()
    };
    let actors: Vec<&str> = events.iter().map(|e| e.actor.as_str()).collect();
    let names = Names::of(
        &state,
        [
            license.organization_id,
            license.product_id,
            license.policy_id,
        ],
    )
    .await?
    .with_actors(&state, actors, None)
    .await?;
    Ok(html(
        StatusCode::OK,
        &LicensePage {
            nav,
            expires: show_opt(license.expires_at.as_ref()),
            maintenance: show_opt(license.maintenance_until.as_ref()),
            created: show_opt(license.created_at.as_ref()),
            at: at.as_ref().map(show),
            at_value: at.map_or_else(String::new, |t| t.format("%Y-%m-%dT%H:%M:%S").to_string()),
            events,
            events_complete,
            actions,
            names,
            license,
        },
    ))
}

/// A lifecycle action of the license page, each behind a confirmation page whose form asks
/// what the matching API route's body holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Action {
    Suspend,
    Reinstate,
    Revoke,
    Renew,
    Transfer,
    Seats,
    Maintenance,
    Entitlements,
    RotateKey,
}

impl Action {
    const ALL: [Self; 9] = [
        Self::Suspend,
        Self::Reinstate,
        Self::Revoke,
        Self::Renew,
        Self::Transfer,
        Self::Seats,
        Self::Maintenance,
        Self::Entitlements,
        Self::RotateKey,
    ];

    fn parse(raw: &str) -> Result<Self, UiError> {
        Self::ALL
            .into_iter()
            .find(|a| a.name() == raw)
            .ok_or(UiError::NotFound)
    }

    /// The path segment (`/licenses/{id}/{name}`), as the API's.
    fn name(self) -> &'static str {
        match self {
            Self::Suspend => "suspend",
            Self::Reinstate => "reinstate",
            Self::Revoke => "revoke",
            Self::Renew => "renew",
            Self::Transfer => "transfer",
            Self::Seats => "seats",
            Self::Maintenance => "maintenance",
            Self::Entitlements => "entitlements",
            Self::RotateKey => "rotate-key",
        }
    }

    /// What the button says.
    fn label(self) -> &'static str {
        match self {
            Self::Suspend => "Suspend",
            Self::Reinstate => "Reinstate",
            Self::Revoke => "Revoke",
            Self::Renew => "Renew",
            Self::Transfer => "Transfer",
            Self::Seats => "Change seats",
            Self::Maintenance => "Extend maintenance",
            Self::Entitlements => "Change features",
            Self::RotateKey => "Regenerate the key",
        }
    }

    /// What it does, for the confirmation page.
    fn consequence(self) -> &'static str {
        match self {
            Self::Suspend => "Its installations stop validating until it is reinstated.",
            Self::Reinstate => "Its installations validate again.",
            Self::Revoke => {
                "Revocation is final: the license never validates again, and cannot be reinstated."
            }
            Self::Renew => "The license runs until the new end you give.",
            Self::Transfer => {
                "The license moves to another organization, with its installations; the present one no longer sees it."
            }
            Self::Seats => {
                "Installations above a lower count keep running until deactivated; new ones are refused."
            }
            Self::Maintenance => "Releases published until then are the license's to download.",
            Self::Entitlements => "Applications see the new features at their next validation.",
            Self::RotateKey => {
                "The present key stops working at once. The new key is shown once, on the next page: give it to the customer."
            }
        }
    }

    /// Suspend and reinstate are support's (vendor support or admin); the rest, the
    /// administrator's, as the API's routes decide.
    fn permission(self) -> Permission {
        match self {
            Self::Suspend | Self::Reinstate => Permission::Support,
            _ => Permission::Admin,
        }
    }

    fn danger(self) -> bool {
        matches!(self, Self::Suspend | Self::Revoke | Self::RotateKey)
    }
}

/// An action as the license page links it.
struct ActionLink {
    name: &'static str,
    label: &'static str,
    danger: bool,
}

/// The actions `access` may take on a license in `status`, in the order of the page.
fn actions_for(access: &application::access::Access, status: &str) -> Vec<ActionLink> {
    if status == LicenseStatus::Revoked.as_str() {
        return Vec::new();
    }
    Action::ALL
        .into_iter()
        .filter(|a| access.may_everywhere(a.permission().action()))
        .filter(|a| match a {
            Action::Suspend => status != LicenseStatus::Suspended.as_str(),
            Action::Reinstate => status == LicenseStatus::Suspended.as_str(),
            _ => true,
        })
        .map(|a| ActionLink {
            name: a.name(),
            label: a.label(),
            danger: a.danger(),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "confirm_change.html")]
struct ConfirmChange {
    nav: Nav,
    license: LicenseView,
    action: &'static str,
    label: &'static str,
    consequence: &'static str,
    danger: bool,
    categories: Vec<&'static str>,
    features: String,
    form_key: String,
}

async fn confirm_change(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((raw, action)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let id = license_id(&raw)?;
    let action = Action::parse(&action)?;
    let license = may_act(&state, &viewer, id, action).await?;
    Ok(html(
        StatusCode::OK,
        &ConfirmChange {
            nav: viewer.nav(),
            features: license.features.join(", "),
            license,
            action: action.name(),
            label: action.label(),
            consequence: action.consequence(),
            danger: action.danger(),
            categories: domain::values::RevocationCategory::ALL.to_vec(),
            form_key: form_key(),
        },
    ))
}

#[derive(Template)]
#[template(path = "new_key.html")]
pub struct NewKey {
    pub nav: Nav,
    pub license_id: Uuid,
    /// `None` on a replay: the key was shown to the first post and is kept nowhere.
    pub key: Option<String>,
    /// True for a license just issued (`ui::issue`), false for a regenerated key.
    pub issued: bool,
}

/// The license `id` now, once `viewer` may take `action` on it: reach first (out of reach:
/// 404 as unknown), then the action's permission (403). The API asks the permission first;
/// both answer a foreign license as an unknown one. The confirmation page and the post ask
/// the same.
async fn may_act(
    state: &AppState,
    viewer: &Viewer,
    id: LicenseId,
    action: Action,
) -> Result<LicenseView, UiError> {
    let license = state
        .app
        .licenses()
        .get_for(&viewer.session.access, id, None)
        .await?;
    viewer
        .principal()
        .require(action.permission())
        .map_err(|_| {
            UiError::Forbidden(format!(
                "{} is not among what you may do to licenses",
                action.label()
            ))
        })?;
    Ok(license)
}

/// An instant of a form's `datetime-local` field (UTC), named `field`.
fn instant_field(form: &UiForm, field: &str) -> Result<Timestamp, UiError> {
    parse_instant(form.require(field)?)
}

async fn change(
    State(state): State<AppState>,
    Path((raw, action)): Path<(String, String)>,
    form: UiForm,
) -> Result<Response, UiError> {
    let id = license_id(&raw)?;
    let action = Action::parse(&action)?;
    let viewer = &form.viewer;
    may_act(&state, viewer, id, action).await?;
    let context = form.command(&format!("{}/{id}", action.name()));
    let change = match action {
        Action::Suspend => LicenseChange::Suspend {
            reason: Reason::parse(form.require("reason")?).map_err(super::invalid("the reason"))?,
        },
        Action::Reinstate => LicenseChange::Reinstate,
        Action::Revoke => LicenseChange::Revoke {
            reason: Reason::parse(form.require("reason")?).map_err(super::invalid("the reason"))?,
            category: domain::values::RevocationCategory::parse(
                form.get("category").unwrap_or("unspecified"),
            )
            .map_err(super::invalid("the category"))?,
        },
        Action::Renew => LicenseChange::Renew {
            expires_at: instant_field(&form, "expires_at")?,
        },
        Action::Transfer => LicenseChange::Transfer {
            organization_id: form
                .require("organization_id")?
                .parse()
                .map_err(|_| UiError::BadRequest("the organization id is not an id".into()))?,
        },
        Action::Seats => LicenseChange::ChangeSeats {
            seats: super::seat_count(form.require("seats")?)?,
        },
        Action::Maintenance => LicenseChange::ExtendMaintenance {
            until: instant_field(&form, "until")?,
        },
        Action::Entitlements => LicenseChange::ChangeEntitlements {
            features: super::feature_codes(form.get("features"), "the features")?,
        },
        Action::RotateKey => {
            let written = state.app.licenses().rotate_key(&context, id).await?;
            // Shown once; a replay (the form posted twice) has no key to show.
            return Ok(html(
                StatusCode::OK,
                &NewKey {
                    nav: viewer.nav(),
                    license_id: id.into(),
                    key: written.view.key,
                    issued: false,
                },
            ));
        }
    };
    state.app.licenses().change(&context, id, change).await?;
    after_change(&state, &format!("/licenses/{id}")).await
}

// ----- an organization (portal) -----

struct InstallationRow {
    id: Uuid,
    license_id: Uuid,
    fingerprint: String,
    hostname: String,
    platform: String,
    activated_at: String,
}

/// What an organization's pages show of it: what `GET /v1/me` shows of the organizations a
/// user reaches, no more (a `license_manager` may not read the organization itself: its Stripe
/// customers and delegations stay out of the page's reach).
pub struct OrgHeader {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub closed: bool,
    /// The tabs the viewer may open (the others would answer 403): its users, and offline
    /// activation.
    pub users_tab: bool,
    pub offline_tab: bool,
}

impl OrgHeader {
    /// The header of organization `id`, which the caller has authorized already, with the
    /// tabs `access` may open there.
    pub async fn of(
        state: &AppState,
        access: &application::access::Access,
        id: OrganizationId,
    ) -> Result<Self, UiError> {
        let o = state.app.catalogue().organization(id).await?;
        let may = |action| async move {
            state
                .app
                .authorize_at(access, id, action, || {
                    application::access::organization_not_found(id)
                })
                .await
                .is_ok()
        };
        Ok(Self {
            id: o.id,
            name: o.name,
            kind: o.kind,
            closed: o.closed,
            users_tab: may(domain::reach::Action::ReadUsers).await,
            offline_tab: may(domain::reach::Action::ManageInstallations).await,
        })
    }
}

#[derive(Template)]
#[template(path = "organization.html")]
struct OrganizationPage {
    nav: Nav,
    organization: OrgHeader,
    licenses: Vec<LicenseView>,
    more_licenses: bool,
    installations: Vec<InstallationRow>,
    more_installations: bool,
    may_manage_installations: bool,
    may_issue: bool,
    may_add_below: bool,
    names: Names,
}

async fn organization(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(raw): Path<String>,
) -> Result<Response, UiError> {
    let id: OrganizationId = raw.parse().map_err(|_| UiError::NotFound)?;
    let access = &viewer.session.access;
    let page = || PageRequest {
        cursor: None,
        limit: 100,
        order: Order::Asc,
    };
    // Reach decides first, inside `portal`: a foreign organization is 404 like an unknown one.
    let licenses = state
        .app
        .portal()
        .licenses(access, id, true, page())
        .await?;
    let installations = state
        .app
        .portal()
        .installations(access, id, true, page())
        .await?;
    let organization = OrgHeader::of(&state, access, id).await?;
    let may_manage_installations = state
        .app
        .authorize_at(
            access,
            id,
            domain::reach::Action::ManageInstallations,
            || application::access::organization_not_found(id),
        )
        .await
        .is_ok();
    let may_add_below = state
        .app
        .authorize_organization(access, id, domain::reach::Action::ManageOrganizations)
        .await
        .is_ok();
    let names = Names::of(&state, licenses.items.iter().map(|l| l.product_id)).await?;
    Ok(html(
        StatusCode::OK,
        &OrganizationPage {
            nav: viewer.nav(),
            may_issue: viewer.principal().require(Permission::Admin).is_ok(),
            may_add_below,
            names,
            organization,
            more_licenses: licenses.next_cursor.is_some(),
            licenses: licenses.items,
            more_installations: installations.next_cursor.is_some(),
            installations: installations
                .items
                .into_iter()
                .map(|i| InstallationRow {
                    id: i.installation.installation_id,
                    license_id: i.license_id,
                    fingerprint: i.installation.fingerprint,
                    hostname: i.installation.hostname.unwrap_or_default(),
                    platform: i.installation.platform.unwrap_or_default(),
                    activated_at: show(&i.installation.activated_at),
                })
                .collect(),
            may_manage_installations,
        },
    ))
}

#[derive(Template)]
#[template(path = "confirm_deactivation.html")]
struct ConfirmDeactivation {
    nav: Nav,
    installation_id: Uuid,
    back: String,
    form_key: String,
}

async fn confirm_deactivation(
    viewer: Viewer,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, UiError> {
    let installation_id: Uuid = raw.parse().map_err(|_| UiError::NotFound)?;
    let q = Query::of(query.as_deref());
    let back = q
        .uuid("organization_id")?
        .map_or_else(|| "/".to_owned(), |o| format!("/organizations/{o}"));
    Ok(html(
        StatusCode::OK,
        &ConfirmDeactivation {
            nav: viewer.nav(),
            installation_id,
            back,
            form_key: form_key(),
        },
    ))
}

async fn deactivate(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: UiForm,
) -> Result<Response, UiError> {
    let installation_id: InstallationId = raw.parse().map_err(|_| UiError::NotFound)?;
    let viewer = &form.viewer;
    let context = form.command(&format!("deactivate/{installation_id}"));
    state
        .app
        .licenses()
        .deactivate_installation(&context, &viewer.session.access, installation_id)
        .await?;
    let back = form
        .get("back")
        .filter(|b| application::sessions::is_local_path(b))
        .unwrap_or("/");
    after_change(&state, back).await
}
