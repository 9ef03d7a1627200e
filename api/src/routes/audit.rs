//! Audit routes (vendor roles): the audit trail (`GET /v1/audit`) and the latest signed
//! checkpoint of the log (`GET /v1/checkpoints/latest`).

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::{Permission, Principal};
use crate::error::ApiError;
use crate::extract::{page_limit, query_instant};
use crate::state::AppState;

/// The audit routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/audit", get(audit))
        .route("/v1/checkpoints/latest", get(latest_checkpoint))
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
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::Read)?;
    let Query(q) =
        query.map_err(|e| ApiError::bad_request("INVALID_QUERY", e.body_text(), None))?;
    let limit = page_limit(q.limit)?.unwrap_or(100);
    let filter = projections::queries::AuditFilter {
        from: query_instant("from", q.from.as_deref())?,
        to: query_instant("to", q.to.as_deref())?,
        license_id: q.license_id,
        actor: q.actor,
        after: q.cursor,
    };
    let rows = projections::queries::audit(state.ledger.store().pool(), &filter, limit).await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.position))
        .flatten();
    let mut body = json!({ "entries": rows });
    if let Some(cursor) = next {
        body["next_cursor"] = json!(cursor);
    }
    Ok(Json(body))
}

async fn latest_checkpoint(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require(Permission::Read)?;
    crate::checkpoints::latest(&state)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("NO_CHECKPOINT", "no checkpoint has been signed yet"))
}
