//! `/v1/licenses`: issue, read (now or as of an instant), the event history, every lifecycle
//! change and key rotation. Every command goes through `App::licenses`, which keeps the
//! validation model current.

use application::views::{LicenseView, Written};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use commands::ledger::{LicenseChange, NewLicense};
use domain::ids::{LicenseId, OrganizationId, PolicyId};
use domain::values::{FeatureSet, LicenseSource, Reason, RevocationCategory, SeatCount};
use domain::{ErrorCode, Timestamp};
use serde::Deserialize;
use serde_json::json;

use super::answer;
use crate::auth::{Permission, Principal};
use crate::error::ApiError;
use crate::extract::{Command, NoBody, path_id};
use crate::state::AppState;

/// The license routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/licenses", post(issue_license))
        .route("/v1/licenses/{id}", get(get_license))
        .route("/v1/licenses/{id}/events", get(license_events))
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AsOfQuery {
    as_of: Option<String>,
}

async fn get_license(
    State(state): State<AppState>,
    principal: Principal,
    Path(raw): Path<String>,
    query: Result<Query<AsOfQuery>, QueryRejection>,
) -> Result<Json<LicenseView>, ApiError> {
    principal.require(Permission::Read)?;
    let id = license_id(&raw)?;
    let Query(q) =
        query.map_err(|e| ApiError::bad_request(ErrorCode::InvalidQuery, e.body_text(), None))?;
    let licenses = state.app.licenses();
    let view = match crate::extract::query_instant("as_of", q.as_of.as_deref())? {
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
