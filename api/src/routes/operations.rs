//! Running the ledger (vendor roles): the audit trail (`GET /v1/audit`), the latest signed
//! checkpoint of the log (`GET /v1/checkpoints/latest`) and projector lag (`GET /v1/projections`).

use application::checkpoints::CheckpointView;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use domain::ErrorCode;
use projections::queries::{AuditFilter, AuditRow};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::{Permission, Principal};
use crate::error::ApiError;
use crate::extract::{page_limit, query_instant};
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
    next_cursor: Option<i64>,
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
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    from: Option<String>,
    to: Option<String>,
    license_id: Option<Uuid>,
    actor: Option<String>,
    cursor: Option<i64>,
    limit: Option<i64>,
}

/// The audit trail: one entry per event, oldest first, filtered.
#[utoipa::path(get, path = "/v1/audit", tag = "operations", summary = "The audit trail",
    params(
        ("from" = Option<String>, Query, format = DateTime, description = "Recorded at or after this RFC 3339 instant"),
        ("to" = Option<String>, Query, format = DateTime, description = "Recorded before this RFC 3339 instant"),
        ("license_id" = Option<uuid::Uuid>, Query, description = "Only this license's events"),
        ("actor" = Option<String>, Query, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$", description = "Only this actor's events (`api_token:<id>`, `operator`, ...); no control characters"),
        ("cursor" = Option<i64>, Query, description = "`next_cursor` of the previous page"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "Page size, 1-1000 (default 100)"),
    ),
    responses((status = 200, description = "A page", body = AuditPage), (status = 400, response = Problem)))]
async fn audit(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::Read)?;
    let Query(q) =
        query.map_err(|e| ApiError::bad_request(ErrorCode::InvalidQuery, e.body_text(), None))?;
    let limit = page_limit(q.limit)?.unwrap_or(100);
    // Actors are printable (`api_token:<id>`, `operator`, ...); a control character (NUL above
    // all, which PostgreSQL refuses in text) can match none, so it is a malformed query.
    if q.actor
        .as_deref()
        .is_some_and(|a| a.chars().any(char::is_control))
    {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            "actor must not contain control characters",
            Some("actor".into()),
        ));
    }
    let filter = AuditFilter {
        from: query_instant("from", q.from.as_deref())?,
        to: query_instant("to", q.to.as_deref())?,
        license_id: q.license_id,
        actor: q.actor,
        after: q.cursor,
    };
    let (rows, next) = state.app.audit(&filter, limit).await?;
    let mut body = json!({ "entries": rows });
    if let Some(cursor) = next {
        body["next_cursor"] = json!(cursor);
    }
    Ok(Json(body))
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
