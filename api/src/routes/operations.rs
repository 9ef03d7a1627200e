//! Running the ledger (vendor roles): the audit trail (`GET /v1/audit`), the latest signed
//! checkpoint of the log (`GET /v1/checkpoints/latest`) and projector lag (`GET /v1/projections`).

use application::checkpoints::CheckpointView;
use axum::Json;
use axum::extract::{RawQuery, State};
use projections::queries::{AuditFilter, AuditRow};
use serde_json::{Value, json};

use super::{PAGE_PARAMS, Params};
use crate::auth::{Permission, Principal};
use crate::error::ApiError;
use crate::openapi::Problem;
use crate::state::AppState;
use projections::engine::ProjectorLag;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The operations routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(audit))
        .routes(routes!(latest_checkpoint))
        .routes(routes!(projection_status))
}

/// A page of the audit trail.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct AuditPage {
    entries: Vec<AuditEntry>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[schema(nullable = false)]
    next_cursor: Option<String>,
}

/// One event of the audit trail (`projections::queries::AuditRow`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct AuditEntry {
    position: i64,
    event_id: uuid::Uuid,
    recorded_at: chrono::DateTime<chrono::Utc>,
    /// `api_token:<id>`, `operator`, `system`, `client`, ...
    actor: String,
    /// The event type.
    action: String,
    subject_type: String,
    subject_id: String,
    sequence: i64,
    license_id: Option<uuid::Uuid>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    /// The vendor staff member who caused the event acting as `actor` (an impersonation).
    impersonated_by: Option<String>,
}

/// Every projector's lag.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct Projections {
    projections: Vec<Lag>,
}

/// How far behind the log a projector is (`projections::engine::ProjectorLag`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct Lag {
    name: String,
    last_position: i64,
    events_applied: i64,
    /// Events of its types not applied yet (counted up to 100,000).
    pending_events: i64,
    /// Age of the oldest pending event, in milliseconds (0 when none).
    oldest_pending_ms: i64,
}

/// Keeps [`Lag`] the shape of what the route serializes: a field added to `ProjectorLag` and
/// not to the schema fails to compile here.
#[allow(dead_code)]
fn lag_schema_matches(l: ProjectorLag) -> Lag {
    let ProjectorLag {
        name,
        last_position,
        events_applied,
        pending_events,
        oldest_pending_ms,
    } = l;
    Lag {
        name,
        last_position,
        events_applied,
        pending_events,
        oldest_pending_ms,
    }
}

/// Keeps [`AuditEntry`] the shape of `AuditRow` (see [`lag_schema_matches`]).
#[allow(dead_code)]
fn audit_schema_matches(r: AuditRow) -> AuditEntry {
    let AuditRow {
        position,
        event_id,
        recorded_at,
        actor,
        action,
        subject_type,
        subject_id,
        sequence,
        license_id,
        correlation_id,
        causation_id,
        impersonated_by,
    } = r;
    AuditEntry {
        position,
        event_id,
        recorded_at,
        actor,
        action,
        subject_type,
        subject_id,
        sequence,
        license_id,
        correlation_id,
        causation_id,
        impersonated_by,
    }
}

/// The audit trail: one entry per event, oldest first, filtered.
#[utoipa::path(get, path = "/v1/audit", tag = "operations", summary = "The audit trail",
    params(
        ("from" = Option<String>, Query, format = DateTime, description = "Recorded at or after this RFC 3339 instant"),
        ("to" = Option<String>, Query, format = DateTime, description = "Recorded before this RFC 3339 instant"),
        ("license_id" = Option<uuid::Uuid>, Query, description = "Only this license's events"),
        ("actor" = Option<String>, Query, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$", description = "Only this actor's events (`api_token:<id>`, `user:<id>`, `operator`, ...), including those it caused impersonating a user; no control characters"),
        super::PageParams,
    ),
    responses((status = 200, description = "A page", body = AuditPage), (status = 400, response = Problem)))]
async fn audit(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<axum::response::Response, ApiError> {
    principal.require(Permission::Read)?;
    // Control characters (NUL above all, which PostgreSQL refuses in text) are refused in every
    // value by `Params::parse`: `actor=%00` is a malformed query, not a server error.
    let q = Params::parse(
        query.as_deref(),
        &[&PAGE_PARAMS[..], &["from", "to", "license_id", "actor"]].concat(),
    )?;
    let filter = AuditFilter {
        from: q.instant("from")?,
        to: q.instant("to")?,
        license_id: q.uuid("license_id")?,
        // Actors are short (`api_token:<id>`, `user:<id>`, `operator`); a longer text matches
        // none and is refused rather than sent to the database.
        actor: q.text("actor", 200)?,
        organizations: None,
    };
    let listed = state.app.audit(&filter, q.page()?).await?;
    super::page("entries", listed)
}

/// The latest signed checkpoint of the log.
#[utoipa::path(get, path = "/v1/checkpoints/latest", tag = "operations", summary = "Latest signed checkpoint",
    responses((status = 200, description = "The checkpoint", body = CheckpointView),
              (status = 404, response = Problem)))]
async fn latest_checkpoint(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<CheckpointView>, ApiError> {
    principal.require(Permission::Read)?;
    Ok(Json(state.app.latest_checkpoint().await?))
}

/// How far behind the log each projector is.
#[utoipa::path(get, path = "/v1/projections", tag = "operations", summary = "Projector lag",
    responses((status = 200, description = "Every projector", body = Projections)))]
async fn projection_status(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::Read)?;
    let lags = state.app.projector_lags().await?;
    Ok(Json(json!({ "projections": lags })))
}
