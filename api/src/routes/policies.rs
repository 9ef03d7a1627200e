//! `/v1/policies`: define, revise (next version), retire, read, list.

use application::views::PolicyView;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use domain::ErrorCode;
use domain::ids::{PolicyId, ProductId};
use domain::policy::{PolicyAction, PolicyTerms, PolicyTermsInput};
use domain::values::{FeatureSet, LicenseModel, Name, SeatCount};
use serde::Deserialize;

use super::{PAGE_PARAMS, Params, answer, page};
use crate::auth::{Permission, Principal};
use crate::error::ApiError;
use crate::extract::{Command, NoBody, path_id};
use crate::state::AppState;

/// The policy routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/policies", post(create_policy).get(list_policies))
        .route("/v1/policies/{id}", get(get_policy).put(revise_policy))
        .route("/v1/policies/{id}/retire", post(retire_policy))
}

fn policy_id(raw: &str) -> Result<PolicyId, ApiError> {
    path_id(raw, ErrorCode::PolicyNotFound, "policy")
}

/// Present and possibly `null` (as opposed to absent): `duration_days: null` means perpetual and
/// must be said explicitly.
fn nullable<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    name: Name,
    model: LicenseModel,
    seats: SeatCount,
    #[serde(deserialize_with = "nullable")]
    duration_days: Option<u32>,
    #[serde(default)]
    trial_days: Option<u32>,
    features: FeatureSet,
    offline_allowed: bool,
    offline_grace_days: u32,
    payment_grace_days: u32,
    #[serde(default)]
    maintenance_months: Option<u32>,
    #[serde(default)]
    lease_seconds: Option<u32>,
}

impl PolicyBody {
    fn terms(self) -> Result<(Name, PolicyTerms), ApiError> {
        let terms = PolicyTerms::new(PolicyTermsInput {
            model: self.model,
            seats: self.seats,
            duration_days: self.duration_days,
            trial_days: self.trial_days,
            features: self.features,
            offline_allowed: self.offline_allowed,
            offline_grace_days: self.offline_grace_days,
            payment_grace_days: self.payment_grace_days,
            maintenance_months: self.maintenance_months,
            lease_seconds: self.lease_seconds,
        })
        .map_err(|e| {
            ApiError::bad_request(
                ErrorCode::InvalidField,
                e.to_string(),
                Some(e.field.to_owned()),
            )
        })?;
        Ok((self.name, terms))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePolicy {
    product_id: ProductId,
    name: Name,
    model: LicenseModel,
    seats: SeatCount,
    #[serde(deserialize_with = "nullable")]
    duration_days: Option<u32>,
    #[serde(default)]
    trial_days: Option<u32>,
    features: FeatureSet,
    offline_allowed: bool,
    offline_grace_days: u32,
    payment_grace_days: u32,
    #[serde(default)]
    maintenance_months: Option<u32>,
    #[serde(default)]
    lease_seconds: Option<u32>,
}

impl CreatePolicy {
    fn split(self) -> (ProductId, PolicyBody) {
        (
            self.product_id,
            PolicyBody {
                name: self.name,
                model: self.model,
                seats: self.seats,
                duration_days: self.duration_days,
                trial_days: self.trial_days,
                features: self.features,
                offline_allowed: self.offline_allowed,
                offline_grace_days: self.offline_grace_days,
                payment_grace_days: self.payment_grace_days,
                maintenance_months: self.maintenance_months,
                lease_seconds: self.lease_seconds,
            },
        )
    }
}

async fn create_policy(
    State(state): State<AppState>,
    cmd: Command<CreatePolicy>,
) -> Result<Response, ApiError> {
    cmd.principal.require(Permission::Admin)?;
    let (product_id, body) = cmd.body.split();
    let (name, terms) = body.terms()?;
    let written = state
        .app
        .catalogue()
        .create_policy(&cmd.context, product_id, name, terms)
        .await?;
    let location = format!("/v1/policies/{}", written.view.id);
    Ok(answer(StatusCode::CREATED, Some(location), written))
}

async fn revise_policy(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    cmd: Command<PolicyBody>,
) -> Result<Response, ApiError> {
    cmd.principal.require(Permission::Admin)?;
    let id = policy_id(&raw)?;
    let (name, terms) = cmd.body.terms()?;
    let written = state
        .app
        .catalogue()
        .change_policy(&cmd.context, id, PolicyAction::Revise { name, terms })
        .await?;
    Ok(answer(StatusCode::OK, None, written))
}

async fn retire_policy(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    cmd: Command<NoBody>,
) -> Result<Response, ApiError> {
    cmd.principal.require(Permission::Admin)?;
    let id = policy_id(&raw)?;
    let written = state
        .app
        .catalogue()
        .change_policy(&cmd.context, id, PolicyAction::Retire)
        .await?;
    Ok(answer(StatusCode::OK, None, written))
}

async fn get_policy(
    State(state): State<AppState>,
    principal: Principal,
    Path(raw): Path<String>,
) -> Result<Json<PolicyView>, ApiError> {
    principal.require(Permission::Read)?;
    let id = policy_id(&raw)?;
    Ok(Json(state.app.catalogue().policy(id).await?))
}

async fn list_policies(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Permission::Read)?;
    let q = Params::parse(
        query.as_deref(),
        &[&PAGE_PARAMS[..], &["after", "product_id"]].concat(),
    )?;
    let listed = state
        .app
        .catalogue()
        .policies(q.uuid("product_id")?, q.page()?)
        .await?;
    page("policies", listed)
}
