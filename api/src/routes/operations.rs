//! Running the ledger (vendor roles): the audit trail (`GET /v1/audit`), the latest signed
//! checkpoint of the log (`GET /v1/checkpoints/latest`) and projector lag (`GET /v1/projections`).

use application::checkpoints::CheckpointView;
use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use domain::ErrorCode;
use projections::queries::AuditFilter;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::{Permission, Principal};
use crate::error::ApiError;
use crate::extract::{page_limit, query_instant};
use crate::state::AppState;

/// The operations routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/audit", get(audit))
        .route("/v1/checkpoints/latest", get(latest_checkpoint))
        .route("/v1/projections", get(projection_status))
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

async fn latest_checkpoint(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<CheckpointView>, ApiError> {
    principal.require(Permission::Read)?;
    Ok(Json(state.app.latest_checkpoint().await?))
}

async fn projection_status(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::Read)?;
    let lags = state.app.projector_lags().await?;
    Ok(Json(json!({ "projections": lags })))
}
