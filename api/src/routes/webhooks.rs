//! `/v1/webhooks/stripe`: Stripe's webhooks, verified over the raw bytes before anything reads
//! them and stored once by event id (`application::billing`). No bearer token: the signature is
//! the credential. Processing happens apart from the request, so Stripe is answered at once.

use application::billing::Received;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;

use crate::error::ApiError;
use crate::openapi::Problem;
use crate::state::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The webhook routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stripe_webhook))
}

/// Receives a Stripe event.
///
/// The webhook's body limit: Stripe's events carry whole objects (an invoice with its lines),
/// so at least 1 MiB, whatever the administration limit `max_body`.
pub fn webhook_body_limit(max_body: usize) -> usize {
    max_body.max(1 << 20)
}

/// The `Stripe-Signature` header is checked over the body's bytes before the body is parsed: any
/// `v1` signature under any configured secret (`--stripe-webhook-secret`), its `t` within 300 s
/// of the server's clock. Otherwise 400 `INVALID_SIGNATURE` and nothing is stored. A verified
/// event is stored once by its id and answered 200 at once (`duplicate: true` when it was stored
/// already); its effects follow asynchronously and its outcome is recorded in the billing inbox.
#[utoipa::path(post, path = "/v1/webhooks/stripe", tag = "billing", summary = "Stripe webhook",
    params(("Stripe-Signature" = String, Header, description = "`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"{t}.{body}\">`, as Stripe sends it")),
    request_body(content = Object, description = "A Stripe event (`{id, type, created, data: {object}}`), as Stripe signed it", content_type = "application/json"),
    responses(
        (status = 200, description = "Stored (or stored already)", body = Received),
        (status = 400, response = Problem),
        (status = 413, response = Problem),
    ))]
async fn stripe_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Received>, ApiError> {
    // Refused as every route refuses: problem+json (axum's own rejection is plain text).
    let body = body.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                domain::ErrorCode::PayloadTooLarge,
                format!(
                    "the body is larger than {} bytes",
                    webhook_body_limit(state.config.max_body_bytes)
                ),
            )
        } else {
            ApiError::bad_request(
                domain::ErrorCode::MalformedBody,
                rejection.body_text(),
                None,
            )
        }
    })?;
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    Ok(Json(
        state.app.receive_stripe_event(signature, &body).await?,
    ))
}
