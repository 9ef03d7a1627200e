//! The client-application API (`X-App-Id` header, license key in the body): validation,
//! activations, floating-lease heartbeats, offline tokens and the JWKS. Contract:
//! `docs/client-protocol.md`.
//!
//! Every request first passes the edge (`application::edge`): the key must open a license of the
//! application presenting it. Unknown keys and keys of another application both answer 403, with
//! the same body. Validation answers from the in-memory validation model; activations and
//! offline tokens are License commands (`App::licenses`).

use application::licenses::{ActivationRequest, client_context};
use application::tokens::SignedToken;
use application::validate::ValidateRequest;
use application::views::{DeactivationView, InstallationView, LeaseView};
use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commands::{CommandContext, Idempotency};
use domain::ErrorCode;
use domain::ids::{AppId, InstallationId};
use domain::values::{DeactivationReason, Environment, Fingerprint, Label, OfflineTokenKind};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::extract::{Body, PathParam, ReqId, parse_json, path_id};
use crate::openapi::{Problem, schemas};
use crate::state::AppState;

/// The client routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(validate))
        .routes(routes!(activate))
        .routes(routes!(deactivate))
        .routes(routes!(heartbeat))
        .routes(routes!(offline_token))
        .routes(routes!(updates))
}

/// The JWKS route (public, cacheable).
pub fn jwks_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(jwks))
}

/// A JSON Web Key Set (RFC 7517) of the server's ES256 public keys.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct Jwks {
    /// `{kty: "EC", crv: "P-256", x, y, kid, use: "sig", alg: "ES256"}` each.
    keys: Vec<std::collections::BTreeMap<String, String>>,
}

/// The public keys that verify offline tokens, receipts and checkpoints.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "health", summary = "Public signing keys",
    responses((status = 200, description = "The key set (cacheable for 5 minutes)", body = Jwks),
        // Limited per address like the client routes (ADR 0018).
        (status = 429, response = Problem)))]
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
/// on the command's events too, scoped as the stored answers are, by the license key's keyed
/// hash (never the key): the stored answers' safety net (a retry that runs again, after a server
/// died mid-request, appends nothing twice; ADR 0016). Scoped by the license instead, the same
/// `Idempotency-Key` sent with the license's new key after a rotation was refused as reused.
fn context(
    state: &AppState,
    request_id: String,
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
    license_key: &str,
) -> Result<CommandContext, ApiError> {
    let mut ctx = client_context(request_id);
    if let Some(key) = crate::idempotency::key_of(headers)? {
        let digest =
            crate::idempotency::request_digest(&axum::http::Method::POST, uri.path(), body);
        ctx.idempotency = Some(Idempotency {
            key: format!(
                "{}/{key}",
                crate::idempotency::client_scope(state, license_key)
            ),
            request_hash: hex::encode(digest),
        });
    }
    Ok(ctx)
}

fn installation_id(raw: &str) -> Result<InstallationId, ApiError> {
    path_id(raw, ErrorCode::InstallationNotFound, "installation")
}

/// The validation answer (`docs/client-protocol.md`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct Validation {
    valid: bool,
    /// `VALID` or why not (`EXPIRED`, `SUSPENDED`, `FINGERPRINT_NOT_ACTIVATED`, ...).
    code: String,
    detail: String,
    license: ValidatedLicense,
    /// Conditions worth telling the user (a trial ending, a license near expiry).
    warnings: Vec<serde_json::Value>,
}

/// The license a validation answer is about.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ValidatedLicense {
    id: uuid::Uuid,
    status: String,
    product_id: uuid::Uuid,
    policy: ValidatedPolicy,
    features: Vec<String>,
    seats: u32,
    activations: u32,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    trial_days_remaining: Option<u32>,
}

/// The policy version a validated license follows.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ValidatedPolicy {
    id: uuid::Uuid,
    version: u32,
    model: String,
}

/// The schema of a validation request (`application::validate::ValidateRequest`, which the
/// handler parses; `Deserialize` here only states `deny_unknown_fields` to the schema).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ValidateRequest)]
#[allow(dead_code)]
struct ValidateBody {
    /// The license key.
    key: String,
    #[serde(default)]
    #[schema(value_type = Option<schemas::Fingerprint>)]
    fingerprint: Option<String>,
    /// Features the application needs; a missing one is `FEATURES_MISSING`. Not `null`.
    #[serde(default)]
    #[schema(value_type = Vec<schemas::FeatureCode>)]
    features: Vec<String>,
}

/// Is this license key valid for this application (and device, and features)?
#[utoipa::path(post, path = "/v1/validate", tag = "client", summary = "Validate a license key",
    request_body = ValidateBody,
    responses((status = 200, description = "The decision; `valid: false` with its `code` when not", body = Validation)))]
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ActivateBody {
    /// The license key.
    key: String,
    #[schema(value_type = schemas::Fingerprint)]
    fingerprint: Fingerprint,
    #[serde(default)]
    #[schema(value_type = Option<schemas::Label>)]
    hostname: Option<Label>,
    #[serde(default)]
    #[schema(value_type = Option<schemas::Label>)]
    platform: Option<Label>,
    /// `production` unless said.
    #[serde(default)]
    #[schema(value_type = Option<schemas::Environment>)]
    environment: Option<Environment>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    /// The license key.
    key: String,
}

/// Takes a seat for a device (or finds it active: 200).
#[utoipa::path(post, path = "/v1/activations", tag = "client", summary = "Activate a device",
    request_body = ActivateBody,
    responses(
        (status = 201, description = "Activated", body = InstallationView),
        (status = 200, description = "The fingerprint was active already", body = InstallationView),
        (status = 409, response = Problem),
        (status = 422, response = Problem),
    ))]
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
            &context(&state, request_id, &headers, &uri, &raw_body, &body.key)?,
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

/// Frees the seat of an installation.
#[utoipa::path(post, path = "/v1/activations/{id}/deactivate", tag = "client", summary = "Deactivate an installation",
    params(("id" = uuid::Uuid, Path, description = "The installation")),
    request_body = KeyBody,
    responses(
        (status = 200, description = "Deactivated", body = DeactivationView),
        // INSTALLATION_NOT_FOUND: no active installation with this id on the license, one
        // already deactivated included (a retry that must get the first answer sends a key).
        (status = 404, response = Problem),
        (status = 409, response = Problem),
        (status = 422, response = Problem),
    ))]
async fn deactivate(
    State(state): State<AppState>,
    ReqId(request_id): ReqId,
    PathParam(raw): PathParam,
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
            &context(&state, request_id, &headers, &uri, &raw_body, &body.key)?,
            license_id,
            installation,
            DeactivationReason::Client,
        )
        .await?;
    Ok(Json(view).into_response())
}

/// Extends a floating installation's lease.
#[utoipa::path(post, path = "/v1/activations/{id}/heartbeat", tag = "client", summary = "Renew a floating lease",
    params(("id" = uuid::Uuid, Path, description = "The installation")),
    request_body = KeyBody,
    responses(
        (status = 200, description = "The lease, extended", body = LeaseView),
        (status = 404, response = Problem),
        (status = 409, response = Problem),
        (status = 422, response = Problem),
    ))]
async fn heartbeat(
    State(state): State<AppState>,
    ReqId(request_id): ReqId,
    PathParam(raw): PathParam,
    uri: Uri,
    headers: HeaderMap,
    Body(raw_body): Body,
) -> Result<Response, ApiError> {
    let app = app_id(&headers)?;
    let body: KeyBody = parse_json(&raw_body)?;
    let installation = installation_id(&raw)?;
    let license_id = state.app.open_license(&app, &body.key).await?;
    let ctx = context(&state, request_id, &headers, &uri, &raw_body, &body.key)?;
    let lease = state
        .app
        .licenses()
        .heartbeat(&ctx, license_id, installation)
        .await?;
    Ok(Json(lease).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct OfflineTokenBody {
    /// The license key.
    key: String,
    /// Binds the token to this device (which must be activated).
    #[serde(default)]
    #[schema(value_type = Option<schemas::Fingerprint>)]
    fingerprint: Option<Fingerprint>,
}

/// A signed token the application verifies offline with the JWKS.
#[utoipa::path(post, path = "/v1/offline-tokens", tag = "client", summary = "Issue an offline token",
    request_body = OfflineTokenBody,
    responses(
        (status = 201, description = "The token (compact ES256 JWS)", body = SignedToken),
        (status = 409, response = Problem),
        (status = 422, response = Problem),
    ))]
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
            &context(&state, request_id, &headers, &uri, &raw_body, &body.key)?,
            license_id,
            OfflineTokenKind::Offline,
            body.fingerprint,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(token)).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdatesBody {
    /// The license key.
    key: String,
    /// The version installed (SemVer 2.0).
    #[schema(value_type = schemas::Version)]
    current_version: domain::release::Version,
    #[schema(value_type = schemas::Platform)]
    platform: domain::values::Platform,
    #[schema(value_type = schemas::Arch)]
    arch: domain::values::Arch,
    /// Only this channel's releases (the license's policy must allow it).
    #[serde(default)]
    #[schema(value_type = Option<schemas::Channel>)]
    channel: Option<domain::values::Channel>,
}

/// Is there an update for this installation? The newest release the license sees with a file
/// for the platform, the versions to install on the way (declared upgrade paths), and download
/// links (300 s) for the newest's files.
#[utoipa::path(post, path = "/v1/updates", tag = "client", summary = "Check for updates",
    request_body = UpdatesBody,
    responses(
        (status = 200, description = "The update, or none", body = application::views::UpdateView),
    ))]
async fn updates(
    State(state): State<AppState>,
    ReqId(request_id): ReqId,
    headers: HeaderMap,
    Body(raw_body): Body,
) -> Result<Response, ApiError> {
    let app = app_id(&headers)?;
    let body: UpdatesBody = parse_json(&raw_body)?;
    let license_id = state.app.open_license(&app, &body.key).await?;
    // No idempotency key: the answer's links expire in minutes, so a retry asks afresh.
    let ctx = client_context(request_id);
    let update = state
        .app
        .releases()
        .updates(
            &ctx,
            application::releases::UpdateQuery {
                license_id,
                current_version: body.current_version,
                platform: body.platform,
                arch: body.arch,
                channel: body.channel,
            },
        )
        .await?;
    Ok((StatusCode::OK, Json(update)).into_response())
}
