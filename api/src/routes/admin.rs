//! The vendor administration API (`Authorization: Bearer`): organizations, products, policies,
//! licenses and their lifecycle, administration tokens.
//!
//! Commands answer with the resource as the command left it (folded on the write side, so it
//! reflects the command at once). Single reads fold the resource's stream (read-your-writes, and
//! `as_of` for licenses); lists read the projections and may trail by the projector's lag.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use commands::ledger::{LicenseChange, NewLicense, NewOrganization, NewProduct};
use commands::{Loaded, Outcome};
use domain::Timestamp;
use domain::api_token::ApiToken;
use domain::ids::{ApiTokenId, AppId, LicenseId, OrganizationId, PolicyId, ProductId};
use domain::license::License;
use domain::organization::Organization;
use domain::policy::{Policy, PolicyAction, PolicyTerms, PolicyTermsInput};
use domain::product::Product;
use domain::values::{
    FeatureSet, KeyPrefix, LicenseModel, LicenseSource, Name, OrganizationKind, ProductKind,
    Reason, RevocationCategory, Role, SeatCount,
};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::auth::{Permission, Principal};
use crate::error::ApiError;
use crate::extract::{Command, NoBody, path_id};
use crate::state::AppState;
use crate::views::{
    EventView, LicenseView, LicenseWithKey, OrganizationView, Page, PolicyView, ProductView,
};

/// The administration routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/organizations",
            post(create_organization).get(list_organizations),
        )
        .route("/v1/organizations/{id}", get(get_organization))
        .route(
            "/v1/organizations/{id}/licenses",
            get(organization_licenses),
        )
        .route("/v1/products", post(create_product).get(list_products))
        .route("/v1/products/{id}", get(get_product))
        .route("/v1/policies", post(create_policy).get(list_policies))
        .route("/v1/policies/{id}", get(get_policy).put(revise_policy))
        .route("/v1/policies/{id}/retire", post(retire_policy))
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
        .route("/v1/tokens", post(create_token))
        .route("/v1/tokens/{id}/revoke", post(revoke_token))
        .route("/v1/projections", get(projection_status))
}

/// A command's answer: the status, the `Location` of a created resource, and the
/// `Idempotent-Replayed` marker on replays.
fn answer<T: serde::Serialize>(
    status: StatusCode,
    location: Option<String>,
    replayed: bool,
    body: T,
) -> Response {
    let mut headers = HeaderMap::new();
    if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(header::LOCATION, location);
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    (status, headers, Json(body)).into_response()
}

fn uuid_of(outcome_id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(outcome_id).map_err(|e| ApiError::internal(&e))
}

/// List parameters: `after` (cursor) and `limit` (1-1000, default 100).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    after: Option<Uuid>,
    limit: Option<i64>,
    parent_id: Option<Uuid>,
    product_id: Option<Uuid>,
}

fn list_query(
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<ListQuery, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::bad_request("INVALID_QUERY", e.body_text(), None))?;
    crate::extract::page_limit(q.limit)?;
    Ok(q)
}

fn next_cursor<T>(items: &[T], limit: i64, id: impl Fn(&T) -> Uuid) -> Option<Uuid> {
    (items.len() as i64 == limit)
        .then(|| items.last().map(id))
        .flatten()
}

// ----- organizations -----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOrganization {
    name: Name,
    kind: OrganizationKind,
    #[serde(default)]
    parent_id: Option<OrganizationId>,
}

fn organization_view(o: &Outcome<Organization>) -> Result<OrganizationView, ApiError> {
    let state = o
        .aggregate
        .state()
        .ok_or_else(|| ApiError::internal(&"organization command left no state"))?;
    Ok(OrganizationView::new(
        uuid_of(&o.aggregate_id)?,
        state,
        o.created_at,
        o.updated_at,
        o.version,
    ))
}

async fn create_organization(
    State(state): State<AppState>,
    cmd: Command<CreateOrganization>,
) -> Result<Response, ApiError> {
    cmd.principal.require(Permission::Admin)?;
    let outcome = state
        .ledger
        .register_organization(
            &cmd.context,
            NewOrganization {
                name: cmd.body.name,
                kind: cmd.body.kind,
                parent_id: cmd.body.parent_id,
            },
        )
        .await?;
    let view = organization_view(&outcome)?;
    Ok(answer(
        StatusCode::CREATED,
        Some(format!("/v1/organizations/{}", view.id)),
        outcome.replayed,
        view,
    ))
}

async fn get_organization(
    State(state): State<AppState>,
    principal: Principal,
    Path(raw): Path<String>,
) -> Result<Json<OrganizationView>, ApiError> {
    principal.require(Permission::Read)?;
    let id: OrganizationId = path_id(&raw, "ORGANIZATION_NOT_FOUND", "organization")?;
    let loaded: Loaded<Organization> = state.ledger.store().read(&id.to_string()).await?;
    let org = loaded.aggregate.state().ok_or_else(|| {
        ApiError::not_found(
            "ORGANIZATION_NOT_FOUND",
            format!("organization {id} does not exist"),
        )
    })?;
    Ok(Json(OrganizationView::new(
        id.into(),
        org,
        loaded.created_at,
        loaded.updated_at,
        loaded.version,
    )))
}

async fn list_organizations(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page<serde_json::Value>>, ApiError> {
    principal.require(Permission::Read)?;
    let q = list_query(query)?;
    let limit = q.limit.unwrap_or(100);
    let rows = projections::queries::organizations(
        state.ledger.store().pool(),
        q.parent_id,
        q.after,
        limit,
    )
    .await?;
    let cursor = next_cursor(&rows, limit, |r| r.id);
    let views: Vec<_> = rows.into_iter().map(OrganizationView::from_row).collect();
    Ok(Json(Page {
        items: json!({ "organizations": views }),
        next_cursor: cursor,
    }))
}

async fn organization_licenses(
    State(state): State<AppState>,
    principal: Principal,
    Path(raw): Path<String>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page<serde_json::Value>>, ApiError> {
    principal.require(Permission::Read)?;
    let id: OrganizationId = path_id(&raw, "ORGANIZATION_NOT_FOUND", "organization")?;
    let q = list_query(query)?;
    let exists = state
        .ledger
        .store()
        .read::<Organization>(&id.to_string())
        .await?
        .exists();
    if !exists {
        return Err(ApiError::not_found(
            "ORGANIZATION_NOT_FOUND",
            format!("organization {id} does not exist"),
        ));
    }
    let limit = q.limit.unwrap_or(100);
    let rows = projections::queries::organization_licenses(
        state.ledger.store().pool(),
        id.into(),
        q.after,
        limit,
    )
    .await?;
    let cursor = next_cursor(&rows, limit, |r| r.id);
    let now = state.ledger.now();
    let views: Vec<LicenseView> = rows
        .iter()
        .map(|r| {
            LicenseView::new(
                r.id,
                &r.state,
                Some(r.created_at),
                Some(r.updated_at),
                r.version,
                now,
            )
        })
        .collect();
    Ok(Json(Page {
        items: json!({ "licenses": views }),
        next_cursor: cursor,
    }))
}

// ----- products -----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateProduct {
    name: Name,
    kind: ProductKind,
    #[serde(default)]
    app_id: Option<AppId>,
    #[serde(default)]
    parent_product_id: Option<ProductId>,
    #[serde(default)]
    key_prefix: Option<KeyPrefix>,
}

async fn create_product(
    State(state): State<AppState>,
    cmd: Command<CreateProduct>,
) -> Result<Response, ApiError> {
    cmd.principal.require(Permission::Admin)?;
    let b = cmd.body;
    let outcome = state
        .ledger
        .define_product(
            &cmd.context,
            NewProduct {
                name: b.name,
                kind: b.kind,
                app_id: b.app_id,
                parent_product_id: b.parent_product_id,
                key_prefix: b.key_prefix,
            },
        )
        .await?;
    let product = outcome
        .aggregate
        .state()
        .ok_or_else(|| ApiError::internal(&"product command left no state"))?;
    let view = ProductView::new(
        uuid_of(&outcome.aggregate_id)?,
        product,
        outcome.created_at,
        outcome.updated_at,
        outcome.version,
    );
    Ok(answer(
        StatusCode::CREATED,
        Some(format!("/v1/products/{}", view.id)),
        outcome.replayed,
        view,
    ))
}

async fn get_product(
    State(state): State<AppState>,
    principal: Principal,
    Path(raw): Path<String>,
) -> Result<Json<ProductView>, ApiError> {
    principal.require(Permission::Read)?;
    let id: ProductId = path_id(&raw, "PRODUCT_NOT_FOUND", "product")?;
    let loaded: Loaded<Product> = state.ledger.store().read(&id.to_string()).await?;
    let product = loaded.aggregate.state().ok_or_else(|| {
        ApiError::not_found("PRODUCT_NOT_FOUND", format!("product {id} does not exist"))
    })?;
    Ok(Json(ProductView::new(
        id.into(),
        product,
        loaded.created_at,
        loaded.updated_at,
        loaded.version,
    )))
}

async fn list_products(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page<serde_json::Value>>, ApiError> {
    principal.require(Permission::Read)?;
    let q = list_query(query)?;
    let limit = q.limit.unwrap_or(100);
    let rows = projections::queries::products(state.ledger.store().pool(), q.after, limit).await?;
    let cursor = next_cursor(&rows, limit, |r| r.id);
    let views: Vec<_> = rows.into_iter().map(ProductView::from_row).collect();
    Ok(Json(Page {
        items: json!({ "products": views }),
        next_cursor: cursor,
    }))
}

// ----- policies -----

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
            ApiError::bad_request("INVALID_FIELD", e.to_string(), Some(e.field.to_owned()))
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

fn policy_view(o: &Outcome<Policy>) -> Result<PolicyView, ApiError> {
    let policy = o
        .aggregate
        .state()
        .ok_or_else(|| ApiError::internal(&"policy command left no state"))?;
    Ok(PolicyView::new(
        uuid_of(&o.aggregate_id)?,
        policy,
        o.created_at,
        o.updated_at,
    ))
}

async fn create_policy(
    State(state): State<AppState>,
    cmd: Command<CreatePolicy>,
) -> Result<Response, ApiError> {
    cmd.principal.require(Permission::Admin)?;
    let (product_id, body) = cmd.body.split();
    let (name, terms) = body.terms()?;
    let outcome = state
        .ledger
        .define_policy(&cmd.context, product_id, name, terms)
        .await?;
    let view = policy_view(&outcome)?;
    Ok(answer(
        StatusCode::CREATED,
        Some(format!("/v1/policies/{}", view.id)),
        outcome.replayed,
        view,
    ))
}

async fn revise_policy(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    cmd: Command<PolicyBody>,
) -> Result<Response, ApiError> {
    cmd.principal.require(Permission::Admin)?;
    let id: PolicyId = path_id(&raw, "POLICY_NOT_FOUND", "policy")?;
    let (name, terms) = cmd.body.terms()?;
    let outcome = state
        .ledger
        .change_policy(&cmd.context, id, PolicyAction::Revise { name, terms })
        .await?;
    Ok(answer(
        StatusCode::OK,
        None,
        outcome.replayed,
        policy_view(&outcome)?,
    ))
}

async fn retire_policy(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    cmd: Command<NoBody>,
) -> Result<Response, ApiError> {
    cmd.principal.require(Permission::Admin)?;
    let id: PolicyId = path_id(&raw, "POLICY_NOT_FOUND", "policy")?;
    let outcome = state
        .ledger
        .change_policy(&cmd.context, id, PolicyAction::Retire)
        .await?;
    Ok(answer(
        StatusCode::OK,
        None,
        outcome.replayed,
        policy_view(&outcome)?,
    ))
}

async fn get_policy(
    State(state): State<AppState>,
    principal: Principal,
    Path(raw): Path<String>,
) -> Result<Json<PolicyView>, ApiError> {
    principal.require(Permission::Read)?;
    let id: PolicyId = path_id(&raw, "POLICY_NOT_FOUND", "policy")?;
    let loaded: Loaded<Policy> = state.ledger.store().read(&id.to_string()).await?;
    let policy = loaded.aggregate.state().ok_or_else(|| {
        ApiError::not_found("POLICY_NOT_FOUND", format!("policy {id} does not exist"))
    })?;
    Ok(Json(PolicyView::new(
        id.into(),
        policy,
        loaded.created_at,
        loaded.updated_at,
    )))
}

async fn list_policies(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page<serde_json::Value>>, ApiError> {
    principal.require(Permission::Read)?;
    let q = list_query(query)?;
    let limit = q.limit.unwrap_or(100);
    let rows =
        projections::queries::policies(state.ledger.store().pool(), q.product_id, q.after, limit)
            .await?;
    let cursor = next_cursor(&rows, limit, |r| r.id);
    let views: Vec<_> = rows.into_iter().map(PolicyView::from_row).collect();
    Ok(Json(Page {
        items: json!({ "policies": views }),
        next_cursor: cursor,
    }))
}

// ----- licenses -----

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

fn license_view(state: &AppState, o: &Outcome<License>) -> Result<LicenseView, ApiError> {
    let license = o
        .aggregate
        .state()
        .ok_or_else(|| ApiError::internal(&"license command left no state"))?;
    Ok(LicenseView::new(
        uuid_of(&o.aggregate_id)?,
        license,
        o.created_at,
        o.updated_at,
        o.version,
        state.ledger.now(),
    ))
}

async fn issue_license(
    State(state): State<AppState>,
    cmd: Command<IssueLicenseBody>,
) -> Result<Response, ApiError> {
    cmd.principal.require(Permission::Admin)?;
    let b = cmd.body;
    let (outcome, key) = state
        .ledger
        .issue_license(
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
    state.observe(&outcome);
    let view = license_view(&state, &outcome)?;
    let location = format!("/v1/licenses/{}", view.id);
    let body = LicenseWithKey {
        license: view,
        key: key.map(|k| k.expose().to_owned()),
    };
    Ok(answer(
        StatusCode::CREATED,
        Some(location),
        outcome.replayed,
        body,
    ))
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
    query: Result<Query<AsOfQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<LicenseView>, ApiError> {
    principal.require(Permission::Read)?;
    let id: LicenseId = path_id(&raw, "LICENSE_NOT_FOUND", "license")?;
    let Query(q) =
        query.map_err(|e| ApiError::bad_request("INVALID_QUERY", e.body_text(), None))?;
    let as_of = crate::extract::query_instant("as_of", q.as_of.as_deref())?;
    if let Some(at) = as_of {
        // The same fold as `ledger-replay state --license ID --at T` (crate::timetravel).
        let view = crate::timetravel::license_view_as_of(state.ledger.store().pool(), id, at)
            .await?
            .ok_or_else(|| {
                ApiError::not_found(
                    "LICENSE_NOT_FOUND",
                    format!("license {id} does not exist at {}", at.to_rfc3339()),
                )
            })?;
        return Ok(Json(view));
    }
    let loaded: Loaded<License> = state.ledger.store().read(&id.to_string()).await?;
    let license = loaded.aggregate.state().ok_or_else(|| {
        ApiError::not_found("LICENSE_NOT_FOUND", format!("license {id} does not exist"))
    })?;
    Ok(Json(LicenseView::new(
        id.into(),
        license,
        loaded.created_at,
        loaded.updated_at,
        loaded.version,
        state.ledger.now(),
    )))
}

async fn license_events(
    State(state): State<AppState>,
    principal: Principal,
    Path(raw): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(Permission::Read)?;
    let id: LicenseId = path_id(&raw, "LICENSE_NOT_FOUND", "license")?;
    let events = state
        .ledger
        .store()
        .load_stream("License", &id.to_string(), 0)
        .await?;
    if events.is_empty() {
        return Err(ApiError::not_found(
            "LICENSE_NOT_FOUND",
            format!("license {id} does not exist"),
        ));
    }
    Ok(Json(
        json!({ "license_id": id, "events": EventView::chain(&events) }),
    ))
}

async fn change(
    state: &AppState,
    raw: &str,
    cmd: &Command<impl std::fmt::Debug>,
    permission: Permission,
    change: LicenseChange,
) -> Result<Response, ApiError> {
    cmd.principal.require(permission)?;
    let id: LicenseId = path_id(raw, "LICENSE_NOT_FOUND", "license")?;
    let outcome = state
        .ledger
        .change_license(&cmd.context, id, change)
        .await?;
    state.observe(&outcome);
    Ok(answer(
        StatusCode::OK,
        None,
        outcome.replayed,
        license_view(state, &outcome)?,
    ))
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
    let id: LicenseId = path_id(&raw, "LICENSE_NOT_FOUND", "license")?;
    let (outcome, key) = state.ledger.rotate_license_key(&cmd.context, id).await?;
    state.observe(&outcome);
    let body = LicenseWithKey {
        license: license_view(&state, &outcome)?,
        key: key.map(|k| k.expose().to_owned()),
    };
    Ok(answer(StatusCode::OK, None, outcome.replayed, body))
}

// ----- administration tokens -----

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
            "INVALID_FIELD",
            "ttl_seconds: must be between 60 and 31536000",
            Some("ttl_seconds".into()),
        ));
    }
    let (id, secret) = state
        .ledger
        .issue_api_token(
            &cmd.context,
            cmd.body.role,
            cmd.body.label,
            Some(chrono::Duration::seconds(ttl)),
        )
        .await?;
    let loaded: Loaded<ApiToken> = state.ledger.store().read(&id.to_string()).await?;
    let expires_at = loaded.aggregate.state().and_then(|s| s.expires_at);
    Ok(answer(
        StatusCode::CREATED,
        None,
        false,
        json!({ "id": id, "role": cmd.body.role, "token": secret.expose(), "expires_at": expires_at }),
    ))
}

async fn revoke_token(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    cmd: Command<NoBody>,
) -> Result<Response, ApiError> {
    cmd.principal.require(Permission::Admin)?;
    let id: ApiTokenId = path_id(&raw, "TOKEN_NOT_FOUND", "token")?;
    let outcome = state.ledger.revoke_api_token(&cmd.context, id).await?;
    let revoked_at = outcome.aggregate.state().and_then(|s| s.revoked_at);
    Ok(answer(
        StatusCode::OK,
        None,
        outcome.replayed,
        json!({ "id": id, "revoked_at": revoked_at }),
    ))
}

// ----- operations -----

async fn projection_status(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(Permission::Read)?;
    let mut lags = Vec::new();
    for p in state.projections.iter() {
        lags.push(projections::engine::lag(state.ledger.store().pool(), p.as_ref()).await?);
    }
    Ok(Json(json!({ "projections": lags })))
}
