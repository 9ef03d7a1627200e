//! `/v1/organizations`: register, read, list, and an organization's licenses.

use application::views::OrganizationView;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use commands::ledger::NewOrganization;
use domain::ErrorCode;
use domain::ids::OrganizationId;
use domain::values::{Name, OrganizationKind};
use projections::queries::OrganizationFilter;
use serde::Deserialize;

use super::{PAGE_PARAMS, Params, answer, page};
use crate::auth::{Permission, Principal};
use crate::error::ApiError;
use crate::extract::{Command, path_id};
use crate::state::AppState;

/// The organization routes.
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
}

fn organization_id(raw: &str) -> Result<OrganizationId, ApiError> {
    path_id(raw, ErrorCode::OrganizationNotFound, "organization")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOrganization {
    name: Name,
    kind: OrganizationKind,
    #[serde(default)]
    parent_id: Option<OrganizationId>,
}

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

async fn get_organization(
    State(state): State<AppState>,
    principal: Principal,
    Path(raw): Path<String>,
) -> Result<Json<OrganizationView>, ApiError> {
    principal.require(Permission::Read)?;
    let id = organization_id(&raw)?;
    Ok(Json(state.app.catalogue().organization(id).await?))
}

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

async fn organization_licenses(
    State(state): State<AppState>,
    principal: Principal,
    Path(raw): Path<String>,
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
