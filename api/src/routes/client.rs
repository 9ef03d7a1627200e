//! The client-application API (`X-App-Id` header, license key in the body): validation,
//! activations, floating-lease heartbeats, offline tokens and the JWKS. Contract:
//! `docs/client-protocol.md`.
//!
//! Every request first passes the edge (`application::edge`): the key must open a license of the
//! application presenting it. Unknown keys and keys of another application both answer 403, with
//! the same body. Validation answers from the in-memory validation model; activations and
//! offline tokens are License commands (`App::licenses`).

use application::licenses::{ActivationRequest, client_context};
use application::validate::ValidateRequest;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use commands::{CommandContext, Idempotency};
use domain::ErrorCode;
use domain::ids::LicenseId;
use domain::ids::{AppId, InstallationId};
use domain::values::{DeactivationReason, Environment, Fingerprint, Label, OfflineTokenKind};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{Body, ReqId, parse_json, path_id};
use crate::state::AppState;

/// The client routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/validate", post(validate))
        .route("/v1/activations", post(activate))
        .route("/v1/activations/{id}/deactivate", post(deactivate))
        .route("/v1/activations/{id}/heartbeat", post(heartbeat))
        .route("/v1/offline-tokens", post(offline_token))
}

/// The JWKS route (public, cacheable).
pub fn jwks_routes() -> Router<AppState> {
    Router::new().route("/.well-known/jwks.json", get(jwks))
}

async fn jwks(State(state): State<AppState>) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    (headers, Json(state.app.signing().jwks())).into_response()
}

/// The App GUID of the request.
fn app_id(headers: &HeaderMap) -> Result<AppId, ApiError> {
    let raw = headers.get("x-app-id").ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::MissingAppId,
            "send the product's App GUID in the X-App-Id header",
            Some("X-App-Id".into()),
        )
    })?;
    raw.to_str()
        .ok()
        .and_then(|s| AppId::parse_str(s).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::InvalidAppId,
                "X-App-Id must be a UUID",
                Some("X-App-Id".into()),
            )
        })
}

/// The context of a client application's command. With an `Idempotency-Key`, the key is recorded
/// on the command's events too, scoped by the license: the stored answers' safety net (a retry
/// that runs again, after a server died mid-request, appends nothing twice; ADR 0016).
fn context(
    request_id: String,
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
    license_id: LicenseId,
) -> Result<CommandContext, ApiError> {
    let mut ctx = client_context(request_id);
    if let Some(key) = crate::idempotency::key_of(headers)? {
        let digest =
            crate::idempotency::request_digest(&axum::http::Method::POST, uri.path(), body);
        ctx.idempotency = Some(Idempotency {
            key: format!("license:{license_id}/{key}"),
            request_hash: hex::encode(digest),
        });
    }
    Ok(ctx)
}

fn installation_id(raw: &str) -> Result<InstallationId, ApiError> {
    path_id(raw, ErrorCode::InstallationNotFound, "installation")
}

async fn validate(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let app = app_id(&headers)?;
    let request: ValidateRequest = parse_json(&body)?;
    let answer = state.app.validate(&app, &request)?;
    let mut response = answer.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivateBody {
    key: String,
    fingerprint: Fingerprint,
    #[serde(default)]
    hostname: Option<Label>,
    #[serde(default)]
    platform: Option<Label>,
    #[serde(default)]
    environment: Option<Environment>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    key: String,
}

async fn activate(
    State(state): State<AppState>,
    ReqId(request_id): ReqId,
    uri: Uri,
    headers: HeaderMap,
    Body(raw_body): Body,
) -> Result<Response, ApiError> {
    let app = app_id(&headers)?;
    let body: ActivateBody = parse_json(&raw_body)?;
    let license_id = state.app.open_license(&app, &body.key).await?;
    let activated = state
        .app
        .licenses()
        .activate(
            &context(request_id, &headers, &uri, &raw_body, license_id)?,
            license_id,
            ActivationRequest {
                fingerprint: body.fingerprint,
                hostname: body.hostname,
                platform: body.platform,
                environment: body.environment.unwrap_or(Environment::Production),
            },
        )
        .await?;
    let status = if activated.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(activated.installation)).into_response())
}

async fn deactivate(
    State(state): State<AppState>,
    ReqId(request_id): ReqId,
    Path(raw): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    Body(raw_body): Body,
) -> Result<Response, ApiError> {
    let app = app_id(&headers)?;
    let body: KeyBody = parse_json(&raw_body)?;
    let installation = installation_id(&raw)?;
    let license_id = state.app.open_license(&app, &body.key).await?;
    let view = state
        .app
        .licenses()
        .deactivate(
            &context(request_id, &headers, &uri, &raw_body, license_id)?,
            license_id,
            installation,
            DeactivationReason::Client,
        )
        .await?;
    Ok(Json(view).into_response())
}

async fn heartbeat(
    State(state): State<AppState>,
    ReqId(request_id): ReqId,
    Path(raw): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    Body(raw_body): Body,
) -> Result<Response, ApiError> {
    let app = app_id(&headers)?;
    let body: KeyBody = parse_json(&raw_body)?;
    let installation = installation_id(&raw)?;
    let license_id = state.app.open_license(&app, &body.key).await?;
    let ctx = context(request_id, &headers, &uri, &raw_body, license_id)?;
    let lease = state
        .app
        .licenses()
        .heartbeat(&ctx, license_id, installation)
        .await?;
    Ok(Json(lease).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OfflineTokenBody {
    key: String,
    #[serde(default)]
    fingerprint: Option<Fingerprint>,
}

async fn offline_token(
    State(state): State<AppState>,
    ReqId(request_id): ReqId,
    uri: Uri,
    headers: HeaderMap,
    Body(raw_body): Body,
) -> Result<Response, ApiError> {
    let app = app_id(&headers)?;
    let body: OfflineTokenBody = parse_json(&raw_body)?;
    let license_id = state.app.open_license(&app, &body.key).await?;
    let token = state
        .app
        .licenses()
        .offline_token(
            &context(request_id, &headers, &uri, &raw_body, license_id)?,
            license_id,
            OfflineTokenKind::Offline,
            body.fingerprint,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(token)).into_response())
}
