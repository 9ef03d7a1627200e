//! `/v1/tokens`: mint and revoke administration and service tokens; `/v1/impersonations`:
//! vendor staff acting as a user (a token of the same kind, with the user's rights).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use domain::ErrorCode;
use domain::ids::{ApiTokenId, OrganizationId, UserId};
use domain::values::{NewName, Reason, Role};
use serde::Deserialize;

use super::answer;
use crate::error::ApiError;
use crate::extract::{Admin, Command, Impersonates, NoBody, PathParam, RevokesTokens, path_id};
use crate::openapi::{Problem, schemas};
use crate::state::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The token routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(start_impersonation))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    /// A vendor role (everywhere), or a customer role held at `organization_id` (a service
    /// token for a customer's or partner's integration).
    #[schema(value_type = schemas::Role)]
    role: Role,
    /// With a customer role: the organization it holds at (and over its descendants). Leave it
    /// out for a vendor role.
    #[serde(default)]
    #[schema(value_type = Option<uuid::Uuid>)]
    organization_id: Option<OrganizationId>,
    #[serde(default)]
    #[schema(value_type = Option<schemas::Name>)]
    label: Option<NewName>,
    /// Lifetime in seconds (60 s to 365 days); absent: 24 hours.
    #[serde(default)]
    #[schema(minimum = 60, maximum = 31_536_000)]
    ttl_seconds: Option<i64>,
}

/// Mints an administration token (a vendor role) or a service token (a customer role bound to
/// an organization); its secret is in this answer only (and in its replay: a retry with the same
/// `Idempotency-Key` within the retention answers the same token, stored encrypted; after the
/// retention the retry mints nothing and shows `token: null`).
///
/// A customer role without `organization_id`, or a vendor role with one: 400 `INVALID_FIELD`.
/// An unknown organization: 404; a closed one: 422 `ORGANIZATION_CLOSED`; the vendor's own: 422
/// `ROLE_NOT_HELD_THERE`.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", summary = "Mint a token",
    request_body = CreateToken,
    responses(
        (status = 201, description = "Minted; a retry with the same Idempotency-Key answers the same token", body = application::operations::MintedToken),
        (status = 400, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 422, response = Problem),
    ))]
async fn create_token(
    State(state): State<AppState>,
    cmd: Command<CreateToken, Admin>,
) -> Result<Response, ApiError> {
    let ttl = cmd.body.ttl_seconds.unwrap_or(86_400);
    if !(60..=365 * 86_400).contains(&ttl) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidField,
            "ttl_seconds: must be between 60 and 31536000",
            Some("ttl_seconds".into()),
        ));
    }
    let written = state
        .app
        .mint_token(
            &cmd.context,
            cmd.body.role,
            cmd.body.organization_id,
            cmd.body.label.map(NewName::into_name),
            chrono::Duration::seconds(ttl),
        )
        .await?;
    Ok(answer(StatusCode::CREATED, None, written))
}

/// Revokes a token at once: any, for a vendor administrator; an impersonation, for the staff
/// member who started it or from within the impersonation itself (403 otherwise).
#[utoipa::path(post, path = "/v1/tokens/{id}/revoke", tag = "tokens", summary = "Revoke a token",
    params(("id" = uuid::Uuid, Path, description = "The token's id")),
    request_body(content = Option<super::EmptyBody>, description = "Nothing, or `{}`"),
    responses(
        (status = 200, description = "Revoked", body = application::operations::RevokedToken),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn revoke_token(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<NoBody, RevokesTokens>,
) -> Result<Response, ApiError> {
    let id: ApiTokenId = path_id(&raw, ErrorCode::TokenNotFound, "token")?;
    let written = state
        .app
        .revoke_token(&cmd.context, &cmd.principal.access, id)
        .await?;
    Ok(answer(StatusCode::OK, None, written))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct StartImpersonation {
    /// The user to act as: a customer's user (vendor staff are not impersonated).
    #[schema(value_type = uuid::Uuid)]
    user_id: UserId,
    /// Why (a ticket, a call): recorded in `ImpersonationStarted`.
    #[schema(value_type = schemas::Reason)]
    reason: Reason,
    /// Lifetime in seconds, 60 to 3600; absent: 900 (15 minutes).
    #[serde(default)]
    #[schema(minimum = 60, maximum = 3600)]
    ttl_seconds: Option<i64>,
}

/// Starts an impersonation: a token that acts with exactly the user's rights (read at each
/// request), every event it causes carrying `actor` = the user and `impersonated_by` = the
/// caller; `GET /v1/audit?actor=` finds those events by either. End it early with
/// `POST /v1/tokens/{id}/revoke` (the starter, the impersonation itself or a vendor admin).
/// Vendor support or administration only.
///
/// An unknown user: 404 `USER_NOT_FOUND`; a deactivated one: 422 `USER_DEACTIVATED`; one holding
/// a vendor role: 422 `STAFF_NOT_IMPERSONATED`; `ttl_seconds` outside 60-3600: 400.
#[utoipa::path(post, path = "/v1/impersonations", tag = "tokens", summary = "Act as a user (support)",
    request_body = StartImpersonation,
    responses(
        (status = 201, description = "Started; the token is shown in this answer only (and its replay)", body = application::operations::ImpersonationView),
        (status = 400, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 422, response = Problem),
    ))]
async fn start_impersonation(
    State(state): State<AppState>,
    cmd: Command<StartImpersonation, Impersonates>,
) -> Result<Response, ApiError> {
    let ttl = cmd.body.ttl_seconds.unwrap_or(900);
    if !(60..=3600).contains(&ttl) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidField,
            "ttl_seconds: an impersonation lasts 60 to 3600 seconds",
            Some("ttl_seconds".into()),
        ));
    }
    let written = state
        .app
        .start_impersonation(
            &cmd.context,
            &cmd.principal.access,
            cmd.body.user_id,
            cmd.body.reason.clone(),
            chrono::Duration::seconds(ttl),
        )
        .await?;
    Ok(answer(StatusCode::CREATED, None, written))
}
