//! `/v1/tokens`: mint and revoke administration tokens.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use domain::ErrorCode;
use domain::ids::ApiTokenId;
use domain::values::{Name, Role};
use serde::Deserialize;

use super::answer;
use crate::auth::Permission;
use crate::error::ApiError;
use crate::extract::{Command, NoBody, path_id};
use crate::state::AppState;

/// The token routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tokens", post(create_token))
        .route("/v1/tokens/{id}/revoke", post(revoke_token))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    role: Role,
    #[serde(default)]
    label: Option<Name>,
    /// Lifetime in seconds (60 s to 365 days); absent: 24 hours.
    #[serde(default)]
    ttl_seconds: Option<i64>,
}

async fn create_token(
    State(state): State<AppState>,
    cmd: Command<CreateToken>,
) -> Result<Response, ApiError> {
    cmd.principal.require(Permission::Admin)?;
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
            cmd.body.label,
            chrono::Duration::seconds(ttl),
        )
        .await?;
    Ok(answer(StatusCode::CREATED, None, written))
}

async fn revoke_token(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    cmd: Command<NoBody>,
) -> Result<Response, ApiError> {
    cmd.principal.require(Permission::Admin)?;
    let id: ApiTokenId = path_id(&raw, ErrorCode::TokenNotFound, "token")?;
    let written = state.app.revoke_token(&cmd.context, id).await?;
    Ok(answer(StatusCode::OK, None, written))
}
