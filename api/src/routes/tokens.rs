//! `/v1/tokens`: mint and revoke administration tokens.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use domain::ErrorCode;
use domain::ids::ApiTokenId;
use domain::values::{NewName, Role};
use serde::Deserialize;

use super::answer;
use crate::error::ApiError;
use crate::extract::{Admin, Command, NoBody, PathParam, path_id};
use crate::openapi::{Problem, schemas};
use crate::state::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The token routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_token))
        .routes(routes!(revoke_token))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    #[schema(value_type = schemas::VendorRole)]
    role: Role,
    #[serde(default)]
    #[schema(value_type = Option<schemas::Name>)]
    label: Option<NewName>,
    /// Lifetime in seconds (60 s to 365 days); absent: 24 hours.
    #[serde(default)]
    #[schema(minimum = 60, maximum = 31_536_000)]
    ttl_seconds: Option<i64>,
}

/// Mints an administration token; its secret is in this answer only (and in its replay: a retry
/// with the same `Idempotency-Key` within the retention answers the same token, stored encrypted;
/// after the retention the retry mints nothing and shows `token: null`).
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", summary = "Mint a token",
    request_body = CreateToken,
    responses(
        (status = 201, description = "Minted; a retry with the same Idempotency-Key answers the same token", body = application::operations::MintedToken),
        (status = 403, response = Problem),
    ))]
async fn create_token(
    State(state): State<AppState>,
    cmd: Command<CreateToken, Admin>,
) -> Result<Response, ApiError> {
    if !cmd.body.role.is_vendor() {
        // Customers' roles are held by users at organizations (and, later, by service tokens
        // bound to one): a customer role here would be bound to nothing.
        return Err(ApiError::bad_request(
            ErrorCode::InvalidField,
            "role: an administration token holds a vendor role (vendor_admin, vendor_support or vendor_auditor)",
            Some("role".into()),
        ));
    }
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
            cmd.body.label.map(NewName::into_name),
            chrono::Duration::seconds(ttl),
        )
        .await?;
    Ok(answer(StatusCode::CREATED, None, written))
}

/// Revokes a token at once.
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
    cmd: Command<NoBody, Admin>,
) -> Result<Response, ApiError> {
    let id: ApiTokenId = path_id(&raw, ErrorCode::TokenNotFound, "token")?;
    let written = state.app.revoke_token(&cmd.context, id).await?;
    Ok(answer(StatusCode::OK, None, written))
}
