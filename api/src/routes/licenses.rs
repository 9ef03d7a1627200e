//! `/v1/licenses`: issue, read (now or as of an instant), the event history, every lifecycle
//! change and key rotation. Every command goes through `App::licenses`, which keeps the
//! validation model current.

use application::catalogue::LicenseQuery;
use application::views::{LicenseView, Written};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use commands::ledger::{LicenseChange, NewLicense};
use domain::ids::{LicenseId, OrganizationId, PolicyId};
use domain::status::LicenseStatus;
use domain::values::{FeatureSet, LicenseSource, Reason, RevocationCategory, SeatCount};
use domain::{ErrorCode, Timestamp};
use serde::Deserialize;
use serde_json::json;

use super::{PAGE_PARAMS, Params, answer, page};
use crate::auth::{Permission, Principal};
use crate::error::ApiError;
use crate::extract::{Command, NoBody, path_id};
use crate::state::AppState;

/// The license routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/licenses", post(issue_license).get(list_licenses))
        .route("/v1/licenses/{id}", get(get_license))
        .route("/v1/licenses/{id}/events", get(license_events))
        .route(
            "/v1/licenses/{id}/installations",
            get(license_installations),
        )
        .route("/v1/licenses/{id}/suspend", post(suspend_license))
        .route("/v1/licenses/{id}/reinstate", post(reinstate_license))
        .route("/v1/licenses/{id}/renew", post(renew_license))
        .route("/v1/licenses/{id}/revoke", post(revoke_license))
        .route("/v1/licenses/{id}/transfer", post(transfer_license))
        .route("/v1/licenses/{id}/rotate-key", post(rotate_license_key))
        .route("/v1/licenses/{id}/entitlements", put(change_entitlements))
        .route("/v1/licenses/{id}/seats", put(change_seats))
        .route("/v1/licenses/{id}/maintenance", put(extend_maintenance))
}

fn license_id(raw: &str) -> Result<LicenseId, ApiError> {
    path_id(raw, ErrorCode::LicenseNotFound, "license")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueLicenseBody {
    policy_id: PolicyId,
    organization_id: OrganizationId,
    #[serde(default)]
    seats: Option<SeatCount>,
    #[serde(default)]
    features: Option<FeatureSet>,
    #[serde(default)]
    expires_at: Option<Timestamp>,
}

async fn issue_license(
    State(state): State<AppState>,
    cmd: Command<IssueLicenseBody>,
) -> Result<Response, ApiError> {
    cmd.principal.require(Permission::Admin)?;
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
    if q.get("user_id").is_some() {
        // Reserved by the contract for named users, who do not exist yet (ADR 0017): refused
        // rather than answered with a list the filter did not narrow.
        return Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            "user_id is reserved for licenses assigned to users, which this server does not \
             have yet; leave it out",
            Some("user_id".to_owned()),
        ));
    }
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
    };
    let listed = state.app.catalogue().licenses(filter, q.page()?).await?;
    page("licenses", listed)
}

async fn license_installations(
    State(state): State<AppState>,
    principal: Principal,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Permission::Read)?;
    let id = license_id(&raw)?;
    let q = Params::parse(query.as_deref(), &PAGE_PARAMS)?;
    let listed = state.app.catalogue().installations(id, q.page()?).await?;
    page("installations", listed)
}

async fn get_license(
    State(state): State<AppState>,
    principal: Principal,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<LicenseView>, ApiError> {
    principal.require(Permission::Read)?;
    let id = license_id(&raw)?;
    let q = Params::parse(query.as_deref(), &["as_of"])?;
    let licenses = state.app.licenses();
    let view = match q.instant("as_of")? {
        // The same fold as `ledger-replay state --license ID --at T` (application::asof).
        Some(at) => licenses.get_as_of(id, at).await?,
        None => licenses.get(id).await?,
    };
    Ok(Json(view))
}

async fn license_events(
    State(state): State<AppState>,
    principal: Principal,
    Path(raw): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(Permission::Read)?;
    let id = license_id(&raw)?;
    let events = state.app.licenses().events(id).await?;
    Ok(Json(json!({ "license_id": id, "events": events })))
}

async fn change(
    state: &AppState,
    raw: &str,
    cmd: &Command<impl std::fmt::Debug>,
    permission: Permission,
    change: LicenseChange,
) -> Result<Response, ApiError> {
    cmd.principal.require(permission)?;
    let id = license_id(raw)?;
    let written: Written<LicenseView> = state
        .app
        .licenses()
        .change(&cmd.context, id, change)
        .await?;
    Ok(answer(StatusCode::OK, None, written))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: Reason,
}

async fn suspend_license(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    cmd: Command<ReasonBody>,
) -> Result<Response, ApiError> {
    let reason = cmd.body.reason.clone();
    change(
        &state,
        &raw,
        &cmd,
        Permission::Support,
        LicenseChange::Suspend { reason },
    )
    .await
}

async fn reinstate_license(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    cmd: Command<NoBody>,
) -> Result<Response, ApiError> {
    change(
        &state,
        &raw,
        &cmd,
        Permission::Support,
        LicenseChange::Reinstate,
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    reason: Reason,
    /// `fraud`, `refund`, `contract_ended` or `unspecified` (the default).
    #[serde(default)]
    category: Option<RevocationCategory>,
}

async fn revoke_license(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    cmd: Command<RevokeBody>,
) -> Result<Response, ApiError> {
    let reason = cmd.body.reason.clone();
    let category = cmd.body.category.unwrap_or(RevocationCategory::Unspecified);
    change(
        &state,
        &raw,
        &cmd,
        Permission::Admin,
        LicenseChange::Revoke { reason, category },
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewBody {
    expires_at: Timestamp,
}

async fn renew_license(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    cmd: Command<RenewBody>,
) -> Result<Response, ApiError> {
    let expires_at = cmd.body.expires_at;
    change(
        &state,
        &raw,
        &cmd,
        Permission::Admin,
        LicenseChange::Renew { expires_at },
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    organization_id: OrganizationId,
}

async fn transfer_license(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    cmd: Command<TransferBody>,
) -> Result<Response, ApiError> {
    let organization_id = cmd.body.organization_id;
    change(
        &state,
        &raw,
        &cmd,
        Permission::Admin,
        LicenseChange::Transfer { organization_id },
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntitlementsBody {
    features: FeatureSet,
}

async fn change_entitlements(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    cmd: Command<EntitlementsBody>,
) -> Result<Response, ApiError> {
    let features = cmd.body.features.clone();
    change(
        &state,
        &raw,
        &cmd,
        Permission::Admin,
        LicenseChange::ChangeEntitlements { features },
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeatsBody {
    seats: SeatCount,
}

async fn change_seats(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    cmd: Command<SeatsBody>,
) -> Result<Response, ApiError> {
    let seats = cmd.body.seats;
    change(
        &state,
        &raw,
        &cmd,
        Permission::Admin,
        LicenseChange::ChangeSeats { seats },
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaintenanceBody {
    until: Timestamp,
}

async fn extend_maintenance(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    cmd: Command<MaintenanceBody>,
) -> Result<Response, ApiError> {
    let until = cmd.body.until;
    change(
        &state,
        &raw,
        &cmd,
        Permission::Admin,
        LicenseChange::ExtendMaintenance { until },
    )
    .await
}

async fn rotate_license_key(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    cmd: Command<NoBody>,
) -> Result<Response, ApiError> {
    cmd.principal.require(Permission::Admin)?;
    let id = license_id(&raw)?;
    let written = state.app.licenses().rotate_key(&cmd.context, id).await?;
    Ok(answer(StatusCode::OK, None, written))
}
