//! `/v1/billing/events`: the billing inbox for the vendor's staff — every Stripe event received,
//! once, with what became of it — and the manual retry (`application::billing`).

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use domain::ErrorCode;

use super::{PAGE_PARAMS, Params, page};
use crate::auth::{Permission, Principal};
use crate::error::ApiError;
use crate::extract::{Admin, Command, NoBody, PathParam};
use crate::openapi::Problem;
use crate::state::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The billing routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(billing_events))
        .routes(routes!(retry_billing_event))
}

/// The Stripe events received, in arrival order, each once with its outcome (vendor roles).
#[utoipa::path(get, path = "/v1/billing/events", tag = "billing", summary = "The billing inbox",
    params(
        ("outcome" = Option<String>, Query, pattern = "^(pending|processed|ignored|failed)$", description = "Only events with this outcome"),
        ("type" = Option<String>, Query, description = "Only events of this Stripe type (`customer.subscription.updated`, ...)"),
        super::PageParams,
    ),
    responses((status = 200, description = "A page", body = super::BillingEventPage), (status = 400, response = Problem)))]
async fn billing_events(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Permission::Read)?;
    let q = Params::parse(
        query.as_deref(),
        &[&PAGE_PARAMS[..], &["outcome", "type"]].concat(),
    )?;
    let outcomes = application::billing::OUTCOMES.map(|o| (o, o));
    let listed = state
        .app
        .billing_events(
            q.one_of("outcome", &outcomes)?,
            q.text("type", 255)?,
            q.page()?,
        )
        .await?;
    page("events", listed)
}

/// Takes an event again at once (vendor administration): a failed one before its back-off runs
/// out, or any other after what it needed was put right. Its effects are idempotent.
#[utoipa::path(post, path = "/v1/billing/events/{id}/retry", tag = "billing", summary = "Retry a billing event",
    params(("id" = String, Path, description = "The Stripe event id (`evt_…`)")),
    request_body(content = Option<super::EmptyBody>, description = "Nothing, or `{}`"),
    responses(
        (status = 200, description = "Due again", body = application::billing::Retried),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn retry_billing_event(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    // Vendor administration, checked before anything else is read; the retry appends no event.
    _cmd: Command<NoBody, Admin>,
) -> Result<Response, ApiError> {
    // No stored event has such an id (the intake refuses them): not found, without a query
    // (a NUL would not even reach PostgreSQL).
    if raw.is_empty()
        || raw.chars().count() > domain::billing::stripe::MAX_EVENT_ID_CHARS
        || raw.chars().any(char::is_control)
    {
        return Err(ApiError::not_found(
            ErrorCode::BillingEventNotFound,
            format!("no Stripe event {raw:?} was received"),
        ));
    }
    let entry = state.app.retry_billing_event(&raw).await?;
    Ok(axum::response::IntoResponse::into_response((
        StatusCode::OK,
        axum::Json(entry),
    )))
}
