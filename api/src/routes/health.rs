//! Liveness and readiness.

use application::operations::Readiness;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// `/healthz` and `/readyz`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// `/healthz`'s answer.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct Health {
    /// Always `ok`.
    status: String,
}

/// `/readyz`'s answer.
#[derive(utoipa::ToSchema)]
#[schema(as = Readiness)]
#[allow(dead_code)]
struct ReadyAnswer {
    /// `ready`, `lagging` or `unavailable`.
    status: String,
    /// `ok`, `unreachable` or `busy` (no connection of the request pool within 3 s).
    database: String,
    #[schema(nullable = false)]
    detail: Option<String>,
    /// Per projector: `name`, `pending_events`, `oldest_pending_ms`, `within_bound` (or `error`).
    #[schema(nullable = false)]
    projections: Option<Vec<Object>>,
}

/// Any JSON object (the readiness of one projector).
type Object = std::collections::BTreeMap<String, serde_json::Value>;

/// The process is alive and answering.
#[utoipa::path(get, path = "/healthz", tag = "health", summary = "Liveness",
    responses((status = 200, description = "The process answers", body = Health)))]
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// How long `/readyz` may take. A probe that waits longer than this for a connection of the
/// request pool is itself the answer: requests wait as long, so the server is not ready. (Load
/// balancers' probes time out after a few seconds; one that hangs tells them nothing.)
const READINESS_BOUND: std::time::Duration = std::time::Duration::from_secs(3);

/// The database answers and every projector is within its lag bound.
#[utoipa::path(get, path = "/readyz", tag = "health", summary = "Readiness",
    responses(
        (status = 200, description = "Ready: the database answers, every projector within its bound", body = ReadyAnswer),
        (status = 503, description = "Not ready: database unreachable or busy, or a projector lagging", body = ReadyAnswer),
    ))]
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
