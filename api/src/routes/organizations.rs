//! `/v1/organizations`: register, read, list, and an organization's licenses.

use application::views::OrganizationView;
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use commands::ledger::NewOrganization;
use domain::ErrorCode;
use domain::ids::OrganizationId;
use domain::values::{Name, OrganizationKind};
use projections::queries::OrganizationFilter;
use serde::Deserialize;

use super::{PAGE_PARAMS, Params, answer, page};
use crate::auth::{Permission, Principal};
use crate::error::ApiError;
use crate::extract::{Command, PathParam, path_id};
use crate::openapi::{Problem, schemas};
use crate::state::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The organization routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_organization, list_organizations))
        .routes(routes!(get_organization))
        .routes(routes!(organization_licenses))
}

fn organization_id(raw: &str) -> Result<OrganizationId, ApiError> {
    path_id(raw, ErrorCode::OrganizationNotFound, "organization")
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateOrganization {
    #[schema(value_type = schemas::Name)]
    name: Name,
    #[schema(value_type = schemas::OrganizationKind)]
    kind: OrganizationKind,
    #[serde(default)]
    #[schema(value_type = Option<uuid::Uuid>)]
    parent_id: Option<OrganizationId>,
}

/// Registers an organization (under `parent_id` when given).
#[utoipa::path(post, path = "/v1/organizations", tag = "organizations", summary = "Register an organization",
    request_body = CreateOrganization,
    responses(
        (status = 201, description = "Registered", body = OrganizationView,
            headers(("Location" = String, description = "The organization's URL"))),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn create_organization(
    State(state): State<AppState>,
    cmd: Command<CreateOrganization>,
) -> Result<Response, ApiError> {
    cmd.principal.require(Permission::Admin)?;
    let written = state
        .app
        .catalogue()
        .create_organization(
            &cmd.context,
            NewOrganization {
                name: cmd.body.name,
                kind: cmd.body.kind,
                parent_id: cmd.body.parent_id,
            },
        )
        .await?;
    let location = format!("/v1/organizations/{}", written.view.id);
    Ok(answer(StatusCode::CREATED, Some(location), written))
}

/// One organization.
#[utoipa::path(get, path = "/v1/organizations/{id}", tag = "organizations", summary = "Read an organization",
    params(("id" = uuid::Uuid, Path, description = "The organization")),
    responses((status = 200, description = "The organization", body = OrganizationView), (status = 404, response = Problem)))]
async fn get_organization(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(raw): PathParam,
) -> Result<Json<OrganizationView>, ApiError> {
    principal.require(Permission::Read)?;
    let id = organization_id(&raw)?;
    Ok(Json(state.app.catalogue().organization(id).await?))
}

/// Organizations, oldest first, a page at a time.
#[utoipa::path(get, path = "/v1/organizations", tag = "organizations", summary = "List organizations",
    params(
        ("parent_id" = Option<uuid::Uuid>, Query, description = "Only the children of this organization"),
        ("kind" = Option<String>, Query, pattern = "^(customer|partner|vendor)$", description = "Only organizations of this kind: customer, partner or vendor"),
        ("q" = Option<String>, Query, min_length = 1, max_length = 200, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$", description = "Only organizations whose name contains this text (case-insensitive, literal)"),
        super::PageParams,
        super::AfterParam,
    ),
    responses((status = 200, description = "A page", body = super::OrganizationPage), (status = 400, response = Problem)))]
async fn list_organizations(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Permission::Read)?;
    let q = Params::parse(
        query.as_deref(),
        &[&PAGE_PARAMS[..], &["after", "parent_id", "kind", "q"]].concat(),
    )?;
    let kinds = [
        OrganizationKind::Customer,
        OrganizationKind::Partner,
        OrganizationKind::Vendor,
    ]
    .map(|k| (k.as_str(), k));
    let filter = OrganizationFilter {
        parent_id: q.uuid("parent_id")?,
        kind: q.one_of("kind", &kinds)?.map(|k| k.as_str().to_owned()),
        q: q.text("q", 200)?,
    };
    let listed = state
        .app
        .catalogue()
        .organizations(filter, q.page()?)
        .await?;
    page("organizations", listed)
}

/// The licenses of an organization, a page at a time.
#[utoipa::path(get, path = "/v1/organizations/{id}/licenses", tag = "organizations", summary = "An organization's licenses",
    params(("id" = uuid::Uuid, Path, description = "The organization"), super::PageParams, super::AfterParam),
    responses((status = 200, description = "A page", body = super::LicensePage), (status = 400, response = Problem), (status = 404, response = Problem)))]
async fn organization_licenses(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(raw): PathParam,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Permission::Read)?;
    let id = organization_id(&raw)?;
    let q = Params::parse(query.as_deref(), &[&PAGE_PARAMS[..], &["after"]].concat())?;
    let listed = state
        .app
        .catalogue()
        .organization_licenses(id, q.page()?)
        .await?;
    page("licenses", listed)
}
