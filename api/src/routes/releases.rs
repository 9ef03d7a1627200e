//! Releases (ADR 0023): `/v1/products/{id}/releases`, `/v1/releases/{id}` with its publish and
//! yank, `/v1/products/{id}/upgrade-paths`, and the streamed upload
//! `PUT /v1/releases/{id}/artifacts/{filename}` (in the transfer group: no body limit but the
//! store's own, no deadline, no idempotency store).

use application::views::{ReleaseView, UpgradePathsView};
use axum::Json;
use axum::extract::{RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use commands::CommandContext;
use commands::ledger::NewRelease;
use domain::ErrorCode;
use domain::ids::{ProductId, ReleaseId};
use domain::release::{Filename, Notes, UpgradePath, Version, VersionRange};
use domain::values::{Arch, Channel, FeatureSet, Platform, Reason};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{PAGE_PARAMS, Params, answer, page};
use crate::auth::{Permission, Principal};
use crate::error::ApiError;
use crate::extract::{Admin, Command, NoBody, PathParam, TwoPathParams, path_id};
use crate::openapi::{Problem, schemas};
use crate::request_id::RequestId;
use crate::state::AppState;

/// The release routes of the administration group.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_release, list_releases))
        .routes(routes!(get_release))
        .routes(routes!(publish_release))
        .routes(routes!(yank_release))
        .routes(routes!(declare_upgrade_path, get_upgrade_paths))
}

/// The upload, in the transfer group.
pub fn transfer_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(upload_artifact))
}

fn product_id(raw: &str) -> Result<ProductId, ApiError> {
    path_id(raw, ErrorCode::ProductNotFound, "product")
}

fn release_id(raw: &str) -> Result<ReleaseId, ApiError> {
    path_id(raw, ErrorCode::ReleaseNotFound, "release")
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateRelease {
    #[schema(value_type = schemas::Version)]
    version: Version,
    #[schema(value_type = schemas::Channel)]
    channel: Channel,
    #[serde(default)]
    #[schema(value_type = Option<schemas::Notes>)]
    notes: Option<Notes>,
    /// Features a license must hold, every one, to see the release (an edition, a module).
    #[serde(default)]
    #[schema(value_type = Option<schemas::FeatureSet>)]
    entitlements: Option<FeatureSet>,
}

/// Drafts a release of a product.
#[utoipa::path(post, path = "/v1/products/{id}/releases", tag = "releases", summary = "Draft a release",
    params(("id" = uuid::Uuid, Path, description = "The product")),
    request_body = CreateRelease,
    responses(
        (status = 201, description = "Drafted", body = ReleaseView,
            headers(("Location" = String, description = "The release's URL"))),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn create_release(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<CreateRelease, Admin>,
) -> Result<Response, ApiError> {
    let product_id = product_id(&raw)?;
    let b = cmd.body;
    let written = state
        .app
        .releases()
        .create(
            &cmd.context,
            NewRelease {
                product_id,
                version: b.version,
                channel: b.channel,
                notes: b.notes,
                entitlements: b.entitlements.unwrap_or_default(),
            },
        )
        .await?;
    let location = format!("/v1/releases/{}", written.view.id);
    Ok(answer(StatusCode::CREATED, Some(location), written))
}

/// A product's releases, oldest first, a page at a time.
#[utoipa::path(get, path = "/v1/products/{id}/releases", tag = "releases", summary = "List a product's releases",
    params(
        ("id" = uuid::Uuid, Path, description = "The product"),
        ("version" = Option<String>, Query, description = "Only the release of this version, as written"),
        super::PageParams,
    ),
    responses(
        (status = 200, description = "A page", body = super::ReleasePage),
        (status = 404, response = Problem),
    ))]
async fn list_releases(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(raw): PathParam,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Permission::Read)?;
    let id = product_id(&raw)?;
    let q = Params::parse(query.as_deref(), &[&PAGE_PARAMS[..], &["version"]].concat())?;
    let listed = state
        .app
        .releases()
        .list(id, q.text("version", 300)?, q.page()?)
        .await?;
    page("releases", listed)
}

/// One release, with its artifacts.
#[utoipa::path(get, path = "/v1/releases/{id}", tag = "releases", summary = "Read a release",
    params(("id" = uuid::Uuid, Path, description = "The release")),
    responses((status = 200, description = "The release", body = ReleaseView), (status = 404, response = Problem)))]
async fn get_release(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(raw): PathParam,
) -> Result<Json<ReleaseView>, ApiError> {
    principal.require(Permission::Read)?;
    let id = release_id(&raw)?;
    Ok(Json(state.app.releases().get(id).await?))
}

/// Publishes a draft: its artifacts become final and licenses that see it may download them.
#[utoipa::path(post, path = "/v1/releases/{id}/publish", tag = "releases", summary = "Publish a release",
    params(("id" = uuid::Uuid, Path, description = "The release")),
    request_body(content = Option<super::EmptyBody>, description = "Nothing, or `{}`"),
    responses(
        (status = 200, description = "The release, published", body = ReleaseView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn publish_release(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<NoBody, Admin>,
) -> Result<Response, ApiError> {
    let id = release_id(&raw)?;
    let written = state.app.releases().publish(&cmd.context, id).await?;
    Ok(answer(StatusCode::OK, None, written))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct YankBody {
    #[schema(value_type = schemas::Reason)]
    reason: Reason,
}

/// Yanks a published release: gone from listings and updates, its links refused, its history
/// and files kept.
#[utoipa::path(post, path = "/v1/releases/{id}/yank", tag = "releases", summary = "Yank a release",
    params(("id" = uuid::Uuid, Path, description = "The release")),
    request_body = YankBody,
    responses(
        (status = 200, description = "The release, yanked", body = ReleaseView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn yank_release(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<YankBody, Admin>,
) -> Result<Response, ApiError> {
    let id = release_id(&raw)?;
    let written = state
        .app
        .releases()
        .yank(&cmd.context, id, cmd.body.reason)
        .await?;
    Ok(answer(StatusCode::OK, None, written))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct DeclarePath {
    /// The versions the path starts from: a SemVer requirement; a bare version (`7.2`) is that
    /// version with its omitted parts free (every 7.2.x).
    #[schema(value_type = schemas::VersionRange)]
    from: VersionRange,
    #[schema(value_type = schemas::Version)]
    to: Version,
    /// The versions to install on the way, ascending, each above `from` and below `to`.
    #[serde(default)]
    #[schema(value_type = Option<Vec<schemas::Version>>)]
    via: Option<Vec<Version>>,
}

/// Declares an upgrade path ("7.2 to 7.6 only via 7.4"); the same `from` and `to` again
/// replaces its steps.
#[utoipa::path(put, path = "/v1/products/{id}/upgrade-paths", tag = "releases", summary = "Declare an upgrade path",
    params(("id" = uuid::Uuid, Path, description = "The product")),
    request_body = DeclarePath,
    responses(
        (status = 200, description = "The product's upgrade paths", body = UpgradePathsView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn declare_upgrade_path(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<DeclarePath, Admin>,
) -> Result<Response, ApiError> {
    let id = product_id(&raw)?;
    let b = cmd.body;
    let path = UpgradePath::new(b.from, b.to, b.via.unwrap_or_default()).map_err(|e| {
        ApiError::bad_request(
            ErrorCode::InvalidUpgradePath,
            e.to_string(),
            Some("via".into()),
        )
    })?;
    let written = state
        .app
        .releases()
        .declare_upgrade_path(&cmd.context, id, path)
        .await?;
    Ok(answer(StatusCode::OK, None, written))
}

/// A product's declared upgrade paths.
#[utoipa::path(get, path = "/v1/products/{id}/upgrade-paths", tag = "releases", summary = "A product's upgrade paths",
    params(("id" = uuid::Uuid, Path, description = "The product")),
    responses((status = 200, description = "The paths", body = UpgradePathsView), (status = 404, response = Problem)))]
async fn get_upgrade_paths(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(raw): PathParam,
) -> Result<Json<UpgradePathsView>, ApiError> {
    principal.require(Permission::Read)?;
    let id = product_id(&raw)?;
    Ok(Json(state.app.releases().upgrade_paths(id).await?))
}

/// Uploads an artifact: the raw bytes as the body, streamed to storage while hashed (never held
/// whole), at most `--max-artifact-bytes`. Answers the artifact with its SHA-256 and the
/// server's ES256 signature over it. The same bytes again under the same name answer the
/// recorded artifact with `Idempotent-Replayed: true`; other bytes 409 `ARTIFACT_EXISTS`.
#[utoipa::path(put, path = "/v1/releases/{id}/artifacts/{filename}", tag = "releases", summary = "Upload an artifact",
    params(
        ("id" = uuid::Uuid, Path, description = "The release (a draft)"),
        ("filename" = schemas::Filename, Path, description = "The file's name as customers download it"),
        ("platform" = Option<schemas::Platform>, Query, description = "Its operating system (default `any`)"),
        ("arch" = Option<schemas::Arch>, Query, description = "Its architecture (default `any`)"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes"),
    responses(
        (status = 201, description = "Stored and recorded, or the same upload replayed", body = application::views::ArtifactView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 408, response = Problem),
        (status = 409, response = Problem),
        (status = 413, response = Problem),
    ))]
async fn upload_artifact(
    State(state): State<AppState>,
    principal: Principal,
    TwoPathParams(raw_id, raw_name): TwoPathParams,
    RawQuery(query): RawQuery,
    request: Request,
) -> Result<Response, ApiError> {
    principal.require(Permission::Admin)?;
    let release_id = release_id(&raw_id)?;
    let filename = Filename::parse_new(&raw_name).map_err(|e| {
        ApiError::bad_request(
            ErrorCode::InvalidField,
            e.to_string(),
            Some("filename".into()),
        )
    })?;
    let q = Params::parse(query.as_deref(), &["platform", "arch"])?;
    let platform = q
        .get("platform")
        .map(Platform::parse)
        .transpose()
        .map_err(|e| {
            ApiError::bad_request(
                ErrorCode::InvalidQuery,
                format!("platform: {e}"),
                Some("platform".into()),
            )
        })?
        .unwrap_or(Platform::Any);
    let arch = q
        .get("arch")
        .map(Arch::parse)
        .transpose()
        .map_err(|e| {
            ApiError::bad_request(
                ErrorCode::InvalidQuery,
                format!("arch: {e}"),
                Some("arch".into()),
            )
        })?
        .unwrap_or(Arch::Any);
    // A body announced larger than the limit is refused before a byte is read.
    let announced = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let max = state.app.max_artifact_bytes();
    if announced.is_some_and(|n| n > max) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("the artifact is larger than {max} bytes (--max-artifact-bytes)"),
        ));
    }
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map_or_else(|| "unknown".to_owned(), |r| r.0.clone());
    let mut context = CommandContext::new(principal.actor(), request_id);
    context.impersonated_by = principal.access.impersonated_by().cloned();
    let body = request.into_body().into_data_stream();
    let written = state
        .app
        .releases()
        .upload(
            &context,
            application::releases::Upload {
                release_id,
                filename,
                platform,
                arch,
            },
            body,
        )
        .await?;
    let location = format!("/v1/releases/{release_id}");
    Ok(answer(StatusCode::CREATED, Some(location), written))
}
