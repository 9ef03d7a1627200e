//! Running the ledger (vendor roles): the audit trail (`GET /v1/audit`), the latest signed
//! checkpoint of the log (`GET /v1/checkpoints/latest`) and projector lag (`GET /v1/projections`).

use application::checkpoints::CheckpointView;
use axum::Json;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::routing::get;
use projections::queries::AuditFilter;
use serde_json::{Value, json};

use super::{PAGE_PARAMS, Params};
use crate::auth::{Permission, Principal};
use crate::error::ApiError;
use crate::state::AppState;

/// The operations routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/audit", get(audit))
        .route("/v1/checkpoints/latest", get(latest_checkpoint))
        .route("/v1/projections", get(projection_status))
}

async fn audit(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
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
    };
    let listed = state.app.audit(&filter, q.page()?).await?;
    let mut body = json!({ "entries": listed.items });
    if let Some(cursor) = listed.next_cursor {
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
