//! `/v1/policies`: define, revise (next version), retire, read, list.

use application::views::PolicyView;
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use domain::ErrorCode;
use domain::ids::{PolicyId, ProductId};
use domain::policy::{PolicyAction, PolicyTerms, PolicyTermsInput};
use domain::values::{Channel, FeatureSet, LicenseModel, Name, NewName, SeatCount};
use serde::Deserialize;

use super::{PAGE_PARAMS, Params, answer, page};
use crate::auth::{Permission, Principal};
use crate::error::ApiError;
use crate::extract::{Admin, Command, NoBody, PathParam, path_id};
use crate::openapi::{Problem, schemas};
use crate::state::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The policy routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_policy, list_policies))
        .routes(routes!(get_policy, revise_policy))
        .routes(routes!(retire_policy))
        .routes(routes!(link_stripe_prices))
}

fn policy_id(raw: &str) -> Result<PolicyId, ApiError> {
    path_id(raw, ErrorCode::PolicyNotFound, "policy")
}

// The bounds in the schemas below are `domain::policy::PolicyTerms::new`'s.

/// Present and possibly `null` (as opposed to absent): `duration_days: null` means perpetual and
/// must be said explicitly.
fn nullable<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    #[schema(value_type = schemas::Name)]
    name: NewName,
    #[schema(value_type = schemas::LicenseModel)]
    model: LicenseModel,
    #[schema(value_type = schemas::SeatCount)]
    seats: SeatCount,
    /// Days a license runs from issue, 1-36500; `null` (stated explicitly) is perpetual.
    #[serde(deserialize_with = "nullable")]
    #[schema(required = true, minimum = 1, maximum = 36_500)]
    duration_days: Option<u32>,
    /// Days of trial, 0-365 (default 0).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 365)]
    trial_days: Option<u32>,
    #[schema(value_type = schemas::FeatureSet)]
    features: FeatureSet,
    offline_allowed: bool,
    /// Days an offline token outlives its last check, 0-365; at least 1 when offline use is
    /// allowed.
    #[schema(minimum = 0, maximum = 365)]
    offline_grace_days: u32,
    /// Days a license stays valid after a failed payment, 0-365.
    #[schema(minimum = 0, maximum = 365)]
    payment_grace_days: u32,
    /// Months of updates included from issue, 0-1200.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1200)]
    maintenance_months: Option<u32>,
    /// Floating policies only (else 400): lease length, 60-86400 s (default 900).
    #[serde(default)]
    #[schema(minimum = 60, maximum = 86_400)]
    lease_seconds: Option<u32>,
    /// The release channels its licenses see (default `[stable]`; at least one).
    #[serde(default)]
    #[schema(value_type = Option<Vec<schemas::Channel>>, min_items = 1)]
    channels: Option<Vec<Channel>>,
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
        .and_then(|terms| match &self.channels {
            Some(channels) => terms.with_channels(channels),
            None => Ok(terms),
        })
        .map_err(|e| {
            ApiError::bad_request(
                ErrorCode::InvalidField,
                e.to_string(),
                Some(e.field.to_owned()),
            )
        })?;
        Ok((self.name.into_name(), terms))
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreatePolicy {
    #[schema(value_type = uuid::Uuid)]
    product_id: ProductId,
    #[schema(value_type = schemas::Name)]
    name: NewName,
    #[schema(value_type = schemas::LicenseModel)]
    model: LicenseModel,
    #[schema(value_type = schemas::SeatCount)]
    seats: SeatCount,
    /// Days a license runs from issue, 1-36500; `null` (stated explicitly) is perpetual.
    #[serde(deserialize_with = "nullable")]
    #[schema(required = true, minimum = 1, maximum = 36_500)]
    duration_days: Option<u32>,
    /// Days of trial, 0-365 (default 0).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 365)]
    trial_days: Option<u32>,
    #[schema(value_type = schemas::FeatureSet)]
    features: FeatureSet,
    offline_allowed: bool,
    /// Days an offline token outlives its last check, 0-365; at least 1 when offline use is
    /// allowed.
    #[schema(minimum = 0, maximum = 365)]
    offline_grace_days: u32,
    /// Days a license stays valid after a failed payment, 0-365.
    #[schema(minimum = 0, maximum = 365)]
    payment_grace_days: u32,
    /// Months of updates included from issue, 0-1200.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1200)]
    maintenance_months: Option<u32>,
    /// Floating policies only (else 400): lease length, 60-86400 s (default 900).
    #[serde(default)]
    #[schema(minimum = 60, maximum = 86_400)]
    lease_seconds: Option<u32>,
    /// The release channels its licenses see (default `[stable]`; at least one).
    #[serde(default)]
    #[schema(value_type = Option<Vec<schemas::Channel>>, min_items = 1)]
    channels: Option<Vec<Channel>>,
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
                channels: self.channels,
            },
        )
    }
}

/// Defines a policy (version 1) of a product.
#[utoipa::path(post, path = "/v1/policies", tag = "policies", summary = "Define a policy",
    request_body = CreatePolicy,
    responses(
        (status = 201, description = "Defined", body = PolicyView,
            headers(("Location" = String, description = "The policy's URL"))),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn create_policy(
    State(state): State<AppState>,
    cmd: Command<CreatePolicy, Admin>,
) -> Result<Response, ApiError> {
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

/// States the next version of a policy's terms (licenses keep theirs until changed).
#[utoipa::path(put, path = "/v1/policies/{id}", tag = "policies", summary = "Revise a policy",
    params(("id" = uuid::Uuid, Path, description = "The policy")),
    request_body = PolicyBody,
    responses(
        (status = 200, description = "The policy at its new version", body = PolicyView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn revise_policy(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<PolicyBody, Admin>,
) -> Result<Response, ApiError> {
    let id = policy_id(&raw)?;
    let (name, terms) = cmd.body.terms()?;
    let written = state
        .app
        .catalogue()
        .change_policy(&cmd.context, id, PolicyAction::Revise { name, terms })
        .await?;
    Ok(answer(StatusCode::OK, None, written))
}

/// Retires a policy: no new license may use it.
#[utoipa::path(post, path = "/v1/policies/{id}/retire", tag = "policies", summary = "Retire a policy",
    params(("id" = uuid::Uuid, Path, description = "The policy")),
    request_body(content = Option<super::EmptyBody>, description = "Nothing, or `{}`"),
    responses(
        (status = 200, description = "Retired", body = PolicyView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn retire_policy(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<NoBody, Admin>,
) -> Result<Response, ApiError> {
    let id = policy_id(&raw)?;
    let written = state
        .app
        .catalogue()
        .change_policy(&cmd.context, id, PolicyAction::Retire)
        .await?;
    Ok(answer(StatusCode::OK, None, written))
}

/// The most prices one policy is sold through.
const MAX_PRICES: usize = 100;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct StripePricesBody {
    /// Every Stripe price (`price_…`) the policy is sold through; `[]` unlinks them all. A
    /// price belongs to one policy that is not retired.
    #[schema(max_items = 100, value_type = Vec<schemas::PriceId>)]
    price_ids: Vec<String>,
}

/// Links Stripe prices to a policy: a subscription to one of them issues its license under
/// this policy, with the subscription item's quantity × the policy's seats.
#[utoipa::path(put, path = "/v1/policies/{id}/stripe-prices", tag = "policies",
    summary = "Link Stripe prices to a policy",
    params(("id" = uuid::Uuid, Path, description = "The policy")),
    request_body = StripePricesBody,
    responses(
        (status = 200, description = "The policy with its prices", body = PolicyView),
        (status = 400, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 409, response = Problem),
        (status = 422, response = Problem),
    ))]
async fn link_stripe_prices(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<StripePricesBody, Admin>,
) -> Result<Response, ApiError> {
    let id = policy_id(&raw)?;
    if cmd.body.price_ids.len() > MAX_PRICES {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidField,
            format!("at most {MAX_PRICES} prices"),
            Some("price_ids".to_owned()),
        ));
    }
    let price_ids = cmd
        .body
        .price_ids
        .iter()
        .map(|p| domain::billing::PriceId::parse(p))
        .collect::<Result<_, _>>()
        .map_err(|why| {
            ApiError::bad_request(ErrorCode::InvalidField, why, Some("price_ids".to_owned()))
        })?;
    let written = state
        .app
        .catalogue()
        .link_stripe_prices(&cmd.context, id, price_ids)
        .await?;
    Ok(answer(StatusCode::OK, None, written))
}

/// One policy at its current version.
#[utoipa::path(get, path = "/v1/policies/{id}", tag = "policies", summary = "Read a policy",
    params(("id" = uuid::Uuid, Path, description = "The policy")),
    responses((status = 200, description = "The policy", body = PolicyView), (status = 404, response = Problem)))]
async fn get_policy(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(raw): PathParam,
) -> Result<Json<PolicyView>, ApiError> {
    principal.require(Permission::Read)?;
    let id = policy_id(&raw)?;
    Ok(Json(state.app.catalogue().policy(id).await?))
}

/// Policies, oldest first, a page at a time.
#[utoipa::path(get, path = "/v1/policies", tag = "policies", summary = "List policies",
    params(
        ("product_id" = Option<uuid::Uuid>, Query, description = "Only this product's policies"),
        super::PageParams,
        super::AfterParam,
    ),
    responses((status = 200, description = "A page", body = super::PolicyPage), (status = 400, response = Problem)))]
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
