//! The vendor's operations pages (issue #18), each with the permissions of its API route:
//!
//! - `/audit`: the audit trail (`GET /v1/audit`), filtered by period, license and actor, a
//!   page at a time; `/audit/export` downloads every matching entry as CSV.
//! - `/billing`: the Stripe inbox (`GET /v1/billing/events`) by outcome and type, with a retry
//!   for the administrator (`POST /v1/billing/events/{id}/retry`).

use application::catalogue::PageRequest;
use askama::Template;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use projections::queries::{AuditFilter, AuditRow, Order};

use super::pages::{Query, parse_instant, show};
use super::{Names, Nav, UiError, UiForm, Viewer, after_change, html};
use crate::auth::Permission;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/audit", get(audit))
        .route("/audit/export", get(export))
        .route("/billing", get(billing))
        .route("/billing/{id}/retry", post(retry))
}

/// The most entries one export holds: a larger one asks for a narrower period.
const MAX_EXPORT: usize = 100_000;
/// Entries per page of the audit page, and per read of an export.
const PAGE: i64 = 100;

fn vendor_read(viewer: &Viewer, what: &str) -> Result<(), UiError> {
    viewer.require(
        Permission::Read,
        &format!("{what} is for the vendor's staff"),
    )
}

/// The audit filter of a query, and the query without its cursor (for links).
fn audit_filter(q: &Query) -> Result<AuditFilter, UiError> {
    let actor = q.get("actor").map(str::to_owned);
    if actor
        .as_deref()
        .is_some_and(|a| a.chars().count() > 200 || a.chars().any(char::is_control))
    {
        return Err(UiError::BadRequest(
            "an actor is short and has no control characters (api_token:<id>, user:<id>, operator)"
                .into(),
        ));
    }
    Ok(AuditFilter {
        from: q.get("from").map(parse_instant).transpose()?,
        to: q.get("to").map(parse_instant).transpose()?,
        license_id: q.uuid("license_id")?,
        actor,
        organizations: None,
    })
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    nav: Nav,
    from: String,
    to: String,
    license_id: String,
    actor: String,
    entries: Vec<AuditRow>,
    names: Names,
    next: Option<String>,
    export: String,
}

impl AuditPage {
    fn when(row: &AuditRow) -> String {
        show(&row.recorded_at)
    }
}

async fn audit(
    State(state): State<AppState>,
    viewer: Viewer,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    vendor_read(&viewer, "the audit trail")?;
    let q = Query::of(raw.as_deref());
    let filter = audit_filter(&q)?;
    let listed = state.app.audit(&filter, q.page(PAGE, Order::Desc)).await?;
    let next = q.next("/audit", listed.next_cursor);
    let actors: Vec<&str> = listed
        .items
        .iter()
        .flat_map(|e| [Some(e.actor.as_str()), e.impersonated_by.as_deref()])
        .flatten()
        .collect();
    let names = Names::of(&state, listed.items.iter().filter_map(|e| e.license_id))
        .await?
        .with_actors(&state, actors, None)
        .await?;
    Ok(html(
        StatusCode::OK,
        &AuditPage {
            names,
            nav: viewer.nav(),
            from: q.get("from").unwrap_or_default().to_owned(),
            to: q.get("to").unwrap_or_default().to_owned(),
            license_id: q.get("license_id").unwrap_or_default().to_owned(),
            actor: q.get("actor").unwrap_or_default().to_owned(),
            entries: listed.items,
            next,
            export: format!("/audit/export?{}", q.without("cursor")),
        },
    ))
}

/// A CSV field: quoted when it holds a separator, a quote or a line break; a leading `=`,
/// `+`, `-` or `@` is prefixed with `'` so a spreadsheet does not run it as a formula.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

async fn export(
    State(state): State<AppState>,
    viewer: Viewer,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    vendor_read(&viewer, "the audit trail")?;
    let q = Query::of(raw.as_deref());
    let filter = audit_filter(&q)?;
    let mut csv = String::from(
        "position,recorded_at,actor,impersonated_by,action,subject_type,subject_id,sequence,license_id,correlation_id,event_id\r\n",
    );
    let mut cursor = None;
    let mut rows = 0usize;
    loop {
        let listed = state
            .app
            .audit(
                &filter,
                PageRequest {
                    cursor,
                    limit: 1000,
                    order: Order::Asc,
                },
            )
            .await?;
        for r in &listed.items {
            let fields = [
                r.position.to_string(),
                r.recorded_at.to_rfc3339(),
                r.actor.clone(),
                r.impersonated_by.clone().unwrap_or_default(),
                r.action.clone(),
                r.subject_type.clone(),
                r.subject_id.clone(),
                r.sequence.to_string(),
                r.license_id.map(|l| l.to_string()).unwrap_or_default(),
                r.correlation_id.clone().unwrap_or_default(),
                r.event_id.to_string(),
            ];
            csv.push_str(
                &fields
                    .iter()
                    .map(|f| csv_field(f))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            csv.push_str("\r\n");
        }
        rows += listed.items.len();
        if rows > MAX_EXPORT {
            return Err(UiError::BadRequest(format!(
                "more than {MAX_EXPORT} entries match: export a shorter period"
            )));
        }
        match listed.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let name = format!("audit-{}.csv", state.app.now().format("%Y%m%dT%H%M%SZ"));
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        csv,
    )
        .into_response())
}

struct InboxRow {
    id: String,
    event_type: String,
    received_at: String,
    outcome: String,
    reason: String,
    attempts: i32,
    next_attempt: String,
}

#[derive(Template)]
#[template(path = "billing.html")]
struct BillingPage {
    nav: Nav,
    outcome: String,
    event_type: String,
    outcomes: Vec<&'static str>,
    events: Vec<InboxRow>,
    next: Option<String>,
    may_retry: bool,
}

async fn billing(
    State(state): State<AppState>,
    viewer: Viewer,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    vendor_read(&viewer, "the billing inbox")?;
    let q = Query::of(raw.as_deref());
    let outcome = q
        .get("outcome")
        .map(|o| {
            application::billing::OUTCOMES
                .into_iter()
                .find(|x| *x == o)
                .ok_or_else(|| UiError::BadRequest(format!("no outcome is called {o:?}")))
        })
        .transpose()?;
    let event_type = q.get("type").map(str::to_owned);
    if event_type.as_deref().is_some_and(|t| t.len() > 255) {
        return Err(UiError::BadRequest("the type is too long".into()));
    }
    let listed = state
        .app
        .billing_events(outcome, event_type, q.page(PAGE, Order::Desc))
        .await?;
    let next = q.next("/billing", listed.next_cursor);
    Ok(html(
        StatusCode::OK,
        &BillingPage {
            nav: viewer.nav(),
            outcome: q.get("outcome").unwrap_or_default().to_owned(),
            event_type: q.get("type").unwrap_or_default().to_owned(),
            outcomes: application::billing::OUTCOMES.to_vec(),
            events: listed
                .items
                .into_iter()
                .map(|e| InboxRow {
                    id: e.id,
                    event_type: e.event_type,
                    received_at: show(&e.received_at),
                    outcome: e.outcome,
                    reason: e.reason.unwrap_or_default(),
                    attempts: e.attempts,
                    next_attempt: e.next_attempt_at.as_ref().map(show).unwrap_or_default(),
                })
                .collect(),
            next,
            may_retry: viewer
                .session
                .access
                .may_everywhere(Permission::Admin.action()),
        },
    ))
}

async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: UiForm,
) -> Result<Response, UiError> {
    form.viewer
        .require(Permission::Admin, "retrying is the administrator's")?;
    if id.is_empty()
        || id.chars().count() > domain::billing::stripe::MAX_EVENT_ID_CHARS
        || id.chars().any(char::is_control)
    {
        return Err(UiError::NotFound);
    }
    state.app.retry_billing_event(&id).await?;
    after_change(&state, "/billing").await
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("user:1"), "user:1");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-1+1"), "'-1+1");
    }
}
