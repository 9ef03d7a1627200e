//! Liveness and readiness.

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
    let pool = state.ledger.store().pool();
    if !commands::db::ping(pool).await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "database": "unreachable" })),
        );
    }
    let bound_ms = i64::try_from(state.config.max_projector_lag.as_millis()).unwrap_or(i64::MAX);
    let mut ready = true;
    let mut report = Vec::new();
    for p in state.projections.iter() {
        match projections::engine::lag(pool, p.as_ref()).await {
            Ok(lag) => {
                let within = lag.oldest_pending_ms <= bound_ms;
                ready &= within;
                report.push(json!({ "name": lag.name, "pending_events": lag.pending_events,
                                    "oldest_pending_ms": lag.oldest_pending_ms, "within_bound": within }));
            }
            Err(e) => {
                ready = false;
                tracing::warn!(projector = p.name(), error = %e, "cannot read projector lag");
                report.push(json!({ "name": p.name(), "error": "lag unavailable" }));
            }
        }
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(
            json!({ "status": if ready { "ready" } else { "lagging" }, "database": "ok", "projections": report }),
        ),
    )
}
