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

/// How long `/readyz` may take. A probe that waits longer than this for a connection of the
/// request pool is itself the answer: requests wait as long, so the server is not ready. (Load
/// balancers' probes time out after a few seconds; one that hangs tells them nothing.)
const READINESS_BOUND: std::time::Duration = std::time::Duration::from_secs(3);

/// The database answers and every projector is within its lag bound.
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let checked = tokio::time::timeout(
        READINESS_BOUND,
        state.app.readiness(state.config.max_projector_lag),
    )
    .await;
    let Ok(readiness) = checked else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "database": "busy",
                         "detail": "no database connection of the request pool within 3 s" })),
        );
    };
    match readiness {
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
