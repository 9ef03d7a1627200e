//! Liveness and readiness.

use application::operations::Readiness;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

use crate::state::AppState;

/// `/healthz` and `/readyz`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The process is alive and answering.
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The database answers and every projector is within its lag bound.
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.app.readiness(state.config.max_projector_lag).await {
        Readiness::DatabaseUnreachable => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "database": "unreachable" })),
        ),
        Readiness::Checked { ready, projections } => {
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (
                status,
                Json(json!({ "status": if ready { "ready" } else { "lagging" },
                             "database": "ok", "projections": projections })),
            )
        }
    }
}
