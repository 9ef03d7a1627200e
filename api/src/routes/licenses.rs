//! `/v1/licenses`: issue, read (now or as of an instant), the event history, every lifecycle
//! change and key rotation. Every command goes through `App::licenses`, which keeps the
//! validation model current.

use application::catalogue::LicenseQuery;
use application::views::{DeactivationView, LicenseView, LicenseWithKey, Written};
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use commands::ledger::{LicenseChange, NewLicense};
use domain::ids::{InstallationId, LicenseId, OrganizationId, PolicyId, UserId};
use domain::status::LicenseStatus;
use domain::values::{FeatureSet, LicenseSource, Reason, RevocationCategory, SeatCount};
use domain::{ErrorCode, Timestamp};
use serde::Deserialize;
use serde_json::json;

use super::{PAGE_PARAMS, Params, answer, page};
use crate::auth::{Permission, Principal};
use crate::error::ApiError;
use crate::extract::{
    Admin, AssignsLicenses, Command, ManagesInstallations, Needs, NoBody, PathParam, Support,
    TwoPathParams, path_id,
};
use crate::openapi::{Problem, schemas};
use crate::state::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The license routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(issue_license, list_licenses))
        .routes(routes!(get_license))
        .routes(routes!(license_events))
        .routes(routes!(license_installations))
        .routes(routes!(suspend_license))
        .routes(routes!(reinstate_license))
        .routes(routes!(renew_license))
        .routes(routes!(revoke_license))
        .routes(routes!(transfer_license))
        .routes(routes!(rotate_license_key))
        .routes(routes!(change_entitlements))
        .routes(routes!(change_seats))
        .routes(routes!(extend_maintenance))
        .routes(routes!(assign_license))
        .routes(routes!(unassign_license))
        .routes(routes!(deactivate_installation))
}

/// A license's event stream.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct LicenseEvents {
    license_id: uuid::Uuid,
    events: Vec<application::views::EventView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[schema(nullable = false)]
    next_cursor: Option<String>,
}

fn license_id(raw: &str) -> Result<LicenseId, ApiError> {
    path_id(raw, ErrorCode::LicenseNotFound, "license")
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct IssueLicenseBody {
    #[schema(value_type = uuid::Uuid)]
    policy_id: PolicyId,
    #[schema(value_type = uuid::Uuid)]
    organization_id: OrganizationId,
    /// The policy's seats when absent.
    #[serde(default)]
    #[schema(value_type = Option<schemas::SeatCount>)]
    seats: Option<SeatCount>,
    /// The policy's features when absent.
    #[serde(default)]
    #[schema(value_type = Option<schemas::FeatureSet>)]
    features: Option<FeatureSet>,
    /// From the policy's duration when absent.
    #[serde(default)]
    #[schema(value_type = Option<schemas::Instant>)]
    expires_at: Option<Timestamp>,
}

/// Issues a license of a policy to an organization; the key is in this answer only.
#[utoipa::path(post, path = "/v1/licenses", tag = "licenses", summary = "Issue a license",
    request_body = IssueLicenseBody,
    responses(
        (status = 201, description = "Issued, with its key (`null` on a replay)", body = LicenseWithKey,
            headers(("Location" = String, description = "The license's URL"))),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn issue_license(
    State(state): State<AppState>,
    cmd: Command<IssueLicenseBody, Admin>,
) -> Result<Response, ApiError> {
    let b = cmd.body;
    let written = state
        .app
        .licenses()
        .issue(
            &cmd.context,
            NewLicense {
                policy_id: b.policy_id,
                organization_id: b.organization_id,
                seats: b.seats,
                features: b.features,
                expires_at: b.expires_at,
                source: LicenseSource::Admin,
            },
        )
        .await?;
    let location = format!("/v1/licenses/{}", written.view.license.id);
    Ok(answer(StatusCode::CREATED, Some(location), written))
}

/// The statuses `GET /v1/licenses?status=` takes.
const STATUSES: [LicenseStatus; 8] = [
    LicenseStatus::Trialing,
    LicenseStatus::Active,
    LicenseStatus::PastDue,
    LicenseStatus::Paused,
    LicenseStatus::Suspended,
    LicenseStatus::Expired,
    LicenseStatus::Canceled,
    LicenseStatus::Revoked,
];

/// Licenses, oldest first, a page at a time, filtered (filters combine with AND).
#[utoipa::path(get, path = "/v1/licenses", tag = "licenses", summary = "List and search licenses",
    params(
        ("organization_id" = Option<uuid::Uuid>, Query, description = "Only this organization's licenses"),
        ("include_descendants" = Option<bool>, Query, description = "With organization_id: its descendants' licenses too"),
        ("product_id" = Option<uuid::Uuid>, Query, description = "Only this product's licenses"),
        ("policy_id" = Option<uuid::Uuid>, Query, description = "Only licenses issued under this policy"),
        ("status" = Option<String>, Query, pattern = "^(active|trialing|past_due|paused|suspended|expired|canceled|revoked)$", description = "Only licenses in this status now"),
        ("key_prefix" = Option<String>, Query, description = "The start of a license key as a customer reads it: the product prefix, a hyphen and 2-4 characters (e.g. `ACME-7K2Q`); never a whole key"),
        ("expires_before" = Option<String>, Query, format = DateTime, description = "Only licenses expiring before this RFC 3339 instant"),
        ("user_id" = Option<uuid::Uuid>, Query, description = "Only licenses this user is assigned to (`POST /v1/licenses/{id}/assignments`)"),
        super::PageParams,
    ),
    responses((status = 200, description = "A page", body = super::LicensePage), (status = 400, response = Problem)))]
async fn list_licenses(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Permission::Read)?;
    let q = Params::parse(
        query.as_deref(),
        &[
            &PAGE_PARAMS[..],
            &[
                "organization_id",
                "include_descendants",
                "product_id",
                "policy_id",
                "status",
                "key_prefix",
                "expires_before",
                "user_id",
            ],
        ]
        .concat(),
    )?;
    let organization_id = q.uuid("organization_id")?;
    let include_descendants = q.bool("include_descendants")?.unwrap_or(false);
    if include_descendants && organization_id.is_none() {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            "include_descendants needs organization_id: whose descendants?",
            Some("include_descendants".to_owned()),
        ));
    }
    let statuses = STATUSES.map(|s| (s.as_str(), s));
    let filter = LicenseQuery {
        organization_id,
        include_descendants,
        product_id: q.uuid("product_id")?,
        policy_id: q.uuid("policy_id")?,
        status: q.one_of("status", &statuses)?,
        key_prefix: q.get("key_prefix").map(str::to_owned),
        expires_before: q.instant("expires_before")?,
        user_id: q.uuid("user_id")?,
    };
    let listed = state.app.catalogue().licenses(filter, q.page()?).await?;
    page("licenses", listed)
}

/// A license's active installations, oldest first, a page at a time.
#[utoipa::path(get, path = "/v1/licenses/{id}/installations", tag = "licenses", summary = "A license's installations",
    params(("id" = uuid::Uuid, Path, description = "The license"), super::PageParams),
    responses((status = 200, description = "A page", body = super::InstallationPage), (status = 400, response = Problem), (status = 404, response = Problem)))]
async fn license_installations(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(raw): PathParam,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Permission::Read)?;
    let id = license_id(&raw)?;
    let q = Params::parse(query.as_deref(), &PAGE_PARAMS)?;
    let listed = state.app.catalogue().installations(id, q.page()?).await?;
    page("installations", listed)
}

/// One license, now or as it was at an instant.
#[utoipa::path(get, path = "/v1/licenses/{id}", tag = "licenses", summary = "Read a license",
    params(
        ("id" = uuid::Uuid, Path, description = "The license"),
        ("as_of" = Option<String>, Query, format = DateTime, description = "The license as it was at this RFC 3339 instant (folded from the log)"),
    ),
    responses((status = 200, description = "The license; `status` derived at `as_of`", body = LicenseView),
              (status = 400, response = Problem), (status = 404, response = Problem)))]
async fn get_license(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(raw): PathParam,
    RawQuery(query): RawQuery,
) -> Result<Json<LicenseView>, ApiError> {
    let id = license_id(&raw)?;
    let q = Params::parse(query.as_deref(), &["as_of"])?;
    // `as_of`: the same fold as `ledger-replay state --license ID --at T` (application::asof).
    // Reach decides: a license out of reach answers as an unknown one.
    let view = state
        .app
        .licenses()
        .get_for(&principal.access, id, q.instant("as_of")?)
        .await?;
    Ok(Json(view))
}

/// A license's events with their hash chain.
#[utoipa::path(get, path = "/v1/licenses/{id}/events", tag = "licenses", summary = "A license's events",
    params(("id" = uuid::Uuid, Path, description = "The license"), super::PageParams),
    responses((status = 200, description = "A page of the stream by sequence, oldest first unless `order=desc`", body = LicenseEvents),
              (status = 400, response = Problem), (status = 404, response = Problem)))]
async fn license_events(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(raw): PathParam,
    RawQuery(query): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(Permission::Read)?;
    let id = license_id(&raw)?;
    let q = Params::parse(query.as_deref(), &PAGE_PARAMS)?;
    let listed = state.app.licenses().events(id, q.page()?).await?;
    let mut body = json!({ "license_id": id, "events": listed.items });
    if let Some(cursor) = listed.next_cursor {
        body["next_cursor"] = json!(cursor);
    }
    Ok(Json(body))
}

async fn change(
    state: &AppState,
    raw: &str,
    cmd: &Command<impl std::fmt::Debug, impl Needs>,
    change: LicenseChange,
) -> Result<Response, ApiError> {
    let id = license_id(raw)?;
    let written: Written<LicenseView> = state
        .app
        .licenses()
        .change(&cmd.context, id, change)
        .await?;
    Ok(answer(StatusCode::OK, None, written))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    #[schema(value_type = schemas::Reason)]
    reason: Reason,
}

/// Suspends a license (support or admin).
#[utoipa::path(post, path = "/v1/licenses/{id}/suspend", tag = "licenses", summary = "Suspend a license",
    params(("id" = uuid::Uuid, Path, description = "The license")),
    request_body = ReasonBody,
    responses(
        (status = 200, description = "The license as the change left it", body = LicenseView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn suspend_license(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<ReasonBody, Support>,
) -> Result<Response, ApiError> {
    let reason = cmd.body.reason.clone();
    change(&state, &raw, &cmd, LicenseChange::Suspend { reason }).await
}

/// Lifts a suspension (support or admin).
#[utoipa::path(post, path = "/v1/licenses/{id}/reinstate", tag = "licenses", summary = "Reinstate a license",
    params(("id" = uuid::Uuid, Path, description = "The license")),
    request_body(content = Option<super::EmptyBody>, description = "Nothing, or `{}`"),
    responses(
        (status = 200, description = "The license as the change left it", body = LicenseView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn reinstate_license(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<NoBody, Support>,
) -> Result<Response, ApiError> {
    change(&state, &raw, &cmd, LicenseChange::Reinstate).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    #[schema(value_type = schemas::Reason)]
    reason: Reason,
    /// `fraud`, `refund`, `contract_ended` or `unspecified` (the default).
    #[serde(default)]
    #[schema(value_type = Option<schemas::RevocationCategory>)]
    category: Option<RevocationCategory>,
}

/// Revokes a license for good.
#[utoipa::path(post, path = "/v1/licenses/{id}/revoke", tag = "licenses", summary = "Revoke a license",
    params(("id" = uuid::Uuid, Path, description = "The license")),
    request_body = RevokeBody,
    responses(
        (status = 200, description = "The license as the change left it", body = LicenseView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn revoke_license(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<RevokeBody, Admin>,
) -> Result<Response, ApiError> {
    let reason = cmd.body.reason.clone();
    let category = cmd.body.category.unwrap_or(RevocationCategory::Unspecified);
    change(
        &state,
        &raw,
        &cmd,
        LicenseChange::Revoke { reason, category },
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RenewBody {
    #[schema(value_type = schemas::Instant)]
    expires_at: Timestamp,
}

/// Moves the expiry to a later instant.
#[utoipa::path(post, path = "/v1/licenses/{id}/renew", tag = "licenses", summary = "Renew a license",
    params(("id" = uuid::Uuid, Path, description = "The license")),
    request_body = RenewBody,
    responses(
        (status = 200, description = "The license as the change left it", body = LicenseView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn renew_license(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<RenewBody, Admin>,
) -> Result<Response, ApiError> {
    let expires_at = cmd.body.expires_at;
    change(&state, &raw, &cmd, LicenseChange::Renew { expires_at }).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    #[schema(value_type = uuid::Uuid)]
    organization_id: OrganizationId,
}

/// Moves a license to another organization.
#[utoipa::path(post, path = "/v1/licenses/{id}/transfer", tag = "licenses", summary = "Transfer a license",
    params(("id" = uuid::Uuid, Path, description = "The license")),
    request_body = TransferBody,
    responses(
        (status = 200, description = "The license as the change left it", body = LicenseView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn transfer_license(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<TransferBody, Admin>,
) -> Result<Response, ApiError> {
    let organization_id = cmd.body.organization_id;
    change(
        &state,
        &raw,
        &cmd,
        LicenseChange::Transfer { organization_id },
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EntitlementsBody {
    #[schema(value_type = schemas::FeatureSet)]
    features: FeatureSet,
}

/// Replaces the license's features.
#[utoipa::path(put, path = "/v1/licenses/{id}/entitlements", tag = "licenses", summary = "Set the features",
    params(("id" = uuid::Uuid, Path, description = "The license")),
    request_body = EntitlementsBody,
    responses(
        (status = 200, description = "The license as the change left it", body = LicenseView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn change_entitlements(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<EntitlementsBody, Admin>,
) -> Result<Response, ApiError> {
    let features = cmd.body.features.clone();
    change(
        &state,
        &raw,
        &cmd,
        LicenseChange::ChangeEntitlements { features },
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SeatsBody {
    #[schema(value_type = schemas::SeatCount)]
    seats: SeatCount,
}

/// Changes the seat count (not below the active installations).
#[utoipa::path(put, path = "/v1/licenses/{id}/seats", tag = "licenses", summary = "Set the seats",
    params(("id" = uuid::Uuid, Path, description = "The license")),
    request_body = SeatsBody,
    responses(
        (status = 200, description = "The license as the change left it", body = LicenseView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn change_seats(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<SeatsBody, Admin>,
) -> Result<Response, ApiError> {
    let seats = cmd.body.seats;
    change(&state, &raw, &cmd, LicenseChange::ChangeSeats { seats }).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MaintenanceBody {
    #[schema(value_type = schemas::Instant)]
    until: Timestamp,
}

/// Extends maintenance (updates included) to an instant.
#[utoipa::path(put, path = "/v1/licenses/{id}/maintenance", tag = "licenses", summary = "Extend maintenance",
    params(("id" = uuid::Uuid, Path, description = "The license")),
    request_body = MaintenanceBody,
    responses(
        (status = 200, description = "The license as the change left it", body = LicenseView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn extend_maintenance(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<MaintenanceBody, Admin>,
) -> Result<Response, ApiError> {
    let until = cmd.body.until;
    change(
        &state,
        &raw,
        &cmd,
        LicenseChange::ExtendMaintenance { until },
    )
    .await
}

/// Replaces the key; the new one is in this answer only (`null` on a replay).
#[utoipa::path(post, path = "/v1/licenses/{id}/rotate-key", tag = "licenses", summary = "Rotate the key",
    params(("id" = uuid::Uuid, Path, description = "The license")),
    request_body(content = Option<super::EmptyBody>, description = "Nothing, or `{}`"),
    responses(
        (status = 200, description = "The license as the change left it", body = LicenseWithKey),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn rotate_license_key(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<NoBody, Admin>,
) -> Result<Response, ApiError> {
    let id = license_id(&raw)?;
    let written = state.app.licenses().rotate_key(&cmd.context, id).await?;
    Ok(answer(StatusCode::OK, None, written))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AssignmentBody {
    /// The user to name on the license: of the license's organization or one below it.
    #[schema(value_type = uuid::Uuid)]
    user_id: UserId,
}

/// Names a user on a license (named users).
///
/// For a `named_user` policy each user named holds a seat: once `seats` users are named, 409
/// `TOO_MANY_ASSIGNMENTS`. A user named already: 200 and the license unchanged. A user the
/// caller does not reach: 404 `USER_NOT_FOUND`, as an unknown one; a user outside the license's
/// organization and its descendants: 422 `ASSIGNEE_OUTSIDE_ORGANIZATION`; a deactivated user:
/// 422 `USER_DEACTIVATED`. Allowed to `vendor_admin`, and to `customer_admin` and
/// `license_manager` at the license's organization or above.
#[utoipa::path(post, path = "/v1/licenses/{id}/assignments", tag = "licenses", summary = "Assign a license to a user",
    params(("id" = uuid::Uuid, Path, description = "The license")),
    request_body = AssignmentBody,
    responses(
        (status = 201, description = "The user is named; the license as the assignment left it", body = LicenseView),
        (status = 200, description = "The user was named already; the license", body = LicenseView),
        (status = 400, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 409, response = Problem),
        (status = 422, response = Problem),
    ))]
async fn assign_license(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<AssignmentBody, AssignsLicenses>,
) -> Result<Response, ApiError> {
    let id = license_id(&raw)?;
    let assigned = state
        .app
        .licenses()
        .assign(&cmd.context, &cmd.principal.access, id, cmd.body.user_id)
        .await?;
    let status = if assigned.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(answer(status, None, assigned.written))
}

/// Takes a user's name off a license, freeing its seat.
///
/// A user not named on the license (or an id that is none): 404 `ASSIGNMENT_NOT_FOUND`.
#[utoipa::path(delete, path = "/v1/licenses/{id}/assignments/{user_id}", tag = "licenses", summary = "Unassign a license from a user",
    params(
        ("id" = uuid::Uuid, Path, description = "The license"),
        ("user_id" = uuid::Uuid, Path, description = "The user named on it"),
    ),
    request_body(content = Option<super::EmptyBody>, description = "Nothing, or `{}`"),
    responses(
        (status = 200, description = "The license as the change left it", body = LicenseView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn unassign_license(
    State(state): State<AppState>,
    TwoPathParams(raw, raw_user): TwoPathParams,
    cmd: Command<NoBody, AssignsLicenses>,
) -> Result<Response, ApiError> {
    let id = license_id(&raw)?;
    let user_id: UserId = path_id(
        &raw_user,
        ErrorCode::AssignmentNotFound,
        "assignment of user",
    )?;
    let written = state
        .app
        .licenses()
        .unassign(&cmd.context, &cmd.principal.access, id, user_id)
        .await?;
    Ok(answer(StatusCode::OK, None, written))
}

/// Ends an installation from the portal or the dashboard (moving a machine): its seat is free
/// at once, and the client's next validation answers `NOT_ACTIVATED`.
///
/// Allowed to `vendor_admin`, and to `customer_admin` and `license_manager` at the license's
/// organization or above. An installation unknown, ended already or out of reach: 404
/// `INSTALLATION_NOT_FOUND`.
#[utoipa::path(post, path = "/v1/installations/{id}/deactivate", tag = "licenses", summary = "Deactivate an installation (portal)",
    params(("id" = uuid::Uuid, Path, description = "The installation")),
    request_body(content = Option<super::EmptyBody>, description = "Nothing, or `{}`"),
    responses(
        (status = 200, description = "Deactivated", body = DeactivationView),
        (status = 400, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn deactivate_installation(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<NoBody, ManagesInstallations>,
) -> Result<Response, ApiError> {
    let id: InstallationId = path_id(&raw, ErrorCode::InstallationNotFound, "installation")?;
    let done = state
        .app
        .licenses()
        .deactivate_installation(&cmd.context, &cmd.principal.access, id)
        .await?;
    Ok(axum::response::IntoResponse::into_response(Json(done)))
}
