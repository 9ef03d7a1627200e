//! `/v1/organizations`: register, read, list, and an organization's licenses; its lifecycle
//! (rename, move, close), its children, and the partners it delegates its administration to.

use application::views::OrganizationView;
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use commands::ledger::NewOrganization;
use domain::ErrorCode;
use domain::ids::OrganizationId;
use domain::reach::Action;
use domain::values::{NewName, OrganizationKind};
use projections::queries::OrganizationFilter;
use serde::Deserialize;

use super::{PAGE_PARAMS, Params, answer, page};
use crate::auth::{Permission, Principal};
use crate::error::ApiError;
use crate::extract::{
    Admin, Command, ManagesDelegations, ManagesOrganizations, NoBody, PathParam, TwoPathParams,
    path_id,
};
use crate::openapi::{Problem, schemas};
use crate::state::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The organization routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_organization, list_organizations))
        .routes(routes!(get_organization, rename_organization))
        .routes(routes!(organization_licenses))
        .routes(routes!(organization_installations))
        .routes(routes!(organization_entitlements))
        .routes(routes!(organization_subscriptions))
        .routes(routes!(organization_children))
        .routes(routes!(move_organization))
        .routes(routes!(close_organization))
        .routes(routes!(grant_delegation))
        .routes(routes!(revoke_delegation))
}

fn organization_id(raw: &str) -> Result<OrganizationId, ApiError> {
    path_id(raw, ErrorCode::OrganizationNotFound, "organization")
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateOrganization {
    #[schema(value_type = schemas::Name)]
    name: NewName,
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
    cmd: Command<CreateOrganization, ManagesOrganizations>,
) -> Result<Response, ApiError> {
    let input = NewOrganization {
        name: cmd.body.name.into_name(),
        kind: cmd.body.kind,
        parent_id: cmd.body.parent_id,
    };
    state
        .app
        .catalogue()
        .authorize_new_organization(&cmd.principal.access, input.parent_id, input.kind)
        .await?;
    let written = state
        .app
        .catalogue()
        .create_organization(&cmd.context, input)
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
    let id = organization_id(&raw)?;
    state
        .app
        .authorize_organization(&principal.access, id, Action::ReadOrganizations)
        .await?;
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

/// The licenses of an organization (and of its descendants with `include_descendants=true`), a
/// page at a time: the portal's license list, for anyone who may read licenses there.
#[utoipa::path(get, path = "/v1/organizations/{id}/licenses", tag = "organizations", summary = "An organization's licenses",
    params(
        ("id" = uuid::Uuid, Path, description = "The organization"),
        ("include_descendants" = Option<bool>, Query, description = "Also the licenses of every organization below it"),
        super::PageParams, super::AfterParam,
    ),
    responses((status = 200, description = "A page", body = super::LicensePage), (status = 400, response = Problem), (status = 404, response = Problem)))]
async fn organization_licenses(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(raw): PathParam,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let id = organization_id(&raw)?;
    let q = Params::parse(
        query.as_deref(),
        &[&PAGE_PARAMS[..], &["after", "include_descendants"]].concat(),
    )?;
    let listed = state
        .app
        .portal()
        .licenses(
            &principal.access,
            id,
            q.bool("include_descendants")?.unwrap_or(false),
            q.page()?,
        )
        .await?;
    page("licenses", listed)
}

/// The installations of an organization's licenses (and of its descendants' with
/// `include_descendants=true`), by installation id, a page at a time.
#[utoipa::path(get, path = "/v1/organizations/{id}/installations", tag = "organizations", summary = "An organization's installations",
    params(
        ("id" = uuid::Uuid, Path, description = "The organization"),
        ("include_descendants" = Option<bool>, Query, description = "Also the installations of every organization below it"),
        super::PageParams,
    ),
    responses((status = 200, description = "A page", body = super::OrganizationInstallationPage), (status = 400, response = Problem), (status = 404, response = Problem)))]
async fn organization_installations(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(raw): PathParam,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let id = organization_id(&raw)?;
    let q = Params::parse(
        query.as_deref(),
        &[&PAGE_PARAMS[..], &["include_descendants"]].concat(),
    )?;
    let listed = state
        .app
        .portal()
        .installations(
            &principal.access,
            id,
            q.bool("include_descendants")?.unwrap_or(false),
            q.page()?,
        )
        .await?;
    page("installations", listed)
}

/// What an organization (and its descendants with `include_descendants=true`) is entitled to,
/// per product: features, seats total and used, the latest expiry and end of maintenance of its
/// usable licenses.
#[utoipa::path(get, path = "/v1/organizations/{id}/entitlements", tag = "organizations", summary = "An organization's entitlements",
    params(
        ("id" = uuid::Uuid, Path, description = "The organization"),
        ("include_descendants" = Option<bool>, Query, description = "Also every organization below it"),
    ),
    responses((status = 200, description = "Per product", body = application::portal::EntitlementsView), (status = 400, response = Problem), (status = 404, response = Problem)))]
async fn organization_entitlements(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(raw): PathParam,
    RawQuery(query): RawQuery,
) -> Result<Json<application::portal::EntitlementsView>, ApiError> {
    let id = organization_id(&raw)?;
    let q = Params::parse(query.as_deref(), &["include_descendants"])?;
    Ok(Json(
        state
            .app
            .portal()
            .entitlements(
                &principal.access,
                id,
                q.bool("include_descendants")?.unwrap_or(false),
            )
            .await?,
    ))
}

/// The payment gateway's subscriptions of an organization's licenses (and its descendants' with
/// `include_descendants=true`), as their billing facts give them (`billing_admin`,
/// `customer_admin` and vendor roles).
#[utoipa::path(get, path = "/v1/organizations/{id}/subscriptions", tag = "organizations", summary = "An organization's subscriptions",
    params(
        ("id" = uuid::Uuid, Path, description = "The organization"),
        ("include_descendants" = Option<bool>, Query, description = "Also every organization below it"),
    ),
    responses((status = 200, description = "One per license with a subscription", body = application::portal::SubscriptionsView), (status = 400, response = Problem), (status = 403, response = Problem), (status = 404, response = Problem)))]
async fn organization_subscriptions(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(raw): PathParam,
    RawQuery(query): RawQuery,
) -> Result<Json<application::portal::SubscriptionsView>, ApiError> {
    let id = organization_id(&raw)?;
    let q = Params::parse(query.as_deref(), &["include_descendants"])?;
    Ok(Json(
        state
            .app
            .portal()
            .subscriptions(
                &principal.access,
                id,
                q.bool("include_descendants")?.unwrap_or(false),
            )
            .await?,
    ))
}

/// The direct children of an organization, a page at a time.
///
/// Read from the read model, which may trail a change by the projector's lag: the rows of
/// `GET /v1/organizations?parent_id=`, by id, but an unknown organization is 404
/// `ORGANIZATION_NOT_FOUND` rather than an empty page, and the cursors are this list's own.
#[utoipa::path(get, path = "/v1/organizations/{id}/children", tag = "organizations", summary = "An organization's children",
    params(("id" = uuid::Uuid, Path, description = "The organization"), super::PageParams),
    responses((status = 200, description = "A page", body = super::OrganizationPage), (status = 400, response = Problem), (status = 404, response = Problem)))]
async fn organization_children(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(raw): PathParam,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let id = organization_id(&raw)?;
    state
        .app
        .authorize_organization(&principal.access, id, Action::ReadOrganizations)
        .await?;
    let q = Params::parse(query.as_deref(), &PAGE_PARAMS)?;
    let listed = state
        .app
        .catalogue()
        .organization_children(id, q.page()?)
        .await?;
    page("organizations", listed)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RenameOrganization {
    #[schema(value_type = schemas::Name)]
    name: NewName,
}

/// Renames an organization.
///
/// The name it has already changes nothing. A closed organization changes no more: 422
/// `ORGANIZATION_CLOSED`.
#[utoipa::path(patch, path = "/v1/organizations/{id}", tag = "organizations", summary = "Rename an organization",
    params(("id" = uuid::Uuid, Path, description = "The organization")),
    request_body = RenameOrganization,
    responses(
        (status = 200, description = "The organization as the change left it", body = OrganizationView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 422, response = Problem),
    ))]
async fn rename_organization(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<RenameOrganization, ManagesOrganizations>,
) -> Result<Response, ApiError> {
    let id = organization_id(&raw)?;
    state
        .app
        .authorize_organization(&cmd.principal.access, id, Action::ManageOrganizations)
        .await?;
    let written = state
        .app
        .catalogue()
        .rename_organization(&cmd.context, id, cmd.body.name.into_name())
        .await?;
    Ok(answer(StatusCode::OK, None, written))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MoveOrganization {
    /// The new parent; `null` or absent: the organization becomes a root.
    #[serde(default)]
    #[schema(value_type = Option<uuid::Uuid>)]
    parent_id: Option<OrganizationId>,
}

/// Moves an organization, with everything below it.
///
/// Under `parent_id` (`null` or absent: it becomes a root); where it is already changes
/// nothing. An unknown organization or parent: 404 `ORGANIZATION_NOT_FOUND`, as when
/// registering under one. 422 `ORGANIZATION_CYCLE` under itself or one of its descendants;
/// `ORGANIZATION_CLOSED` for a closed organization or parent; `ORGANIZATION_TOO_DEEP` when its
/// deepest descendant would end up deeper than the tree may be (32 levels). Moves are
/// serialized across every server on the database, so concurrent moves never make a cycle: of
/// A moved under B and B under A, one succeeds and the other is 422; 409 `CONFLICT` when other
/// moves kept the tree for 10 s.
#[utoipa::path(post, path = "/v1/organizations/{id}/move", tag = "organizations", summary = "Move an organization",
    params(("id" = uuid::Uuid, Path, description = "The organization")),
    request_body = MoveOrganization,
    responses(
        (status = 200, description = "The organization as the move left it", body = OrganizationView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 422, response = Problem),
    ))]
async fn move_organization(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<MoveOrganization, Admin>,
) -> Result<Response, ApiError> {
    let id = organization_id(&raw)?;
    let written = state
        .app
        .catalogue()
        .move_organization(&cmd.context, id, cmd.body.parent_id)
        .await?;
    Ok(answer(StatusCode::OK, None, written))
}

/// Closes an organization for good.
///
/// It changes no more, takes no new children (registered or moved under it) and no license is
/// issued or transferred to it. Closing does not cascade: its children stay where they are,
/// open, and can still be moved away (close them first to close a whole tree). Closing it
/// again: 422 `ORGANIZATION_CLOSED`.
#[utoipa::path(post, path = "/v1/organizations/{id}/close", tag = "organizations", summary = "Close an organization",
    params(("id" = uuid::Uuid, Path, description = "The organization")),
    request_body(content = Option<super::EmptyBody>, description = "Nothing, or `{}`"),
    responses(
        (status = 200, description = "The organization, `closed: true`", body = OrganizationView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 422, response = Problem),
    ))]
async fn close_organization(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<NoBody, Admin>,
) -> Result<Response, ApiError> {
    let id = organization_id(&raw)?;
    let written = state
        .app
        .catalogue()
        .close_organization(&cmd.context, id)
        .await?;
    Ok(answer(StatusCode::OK, None, written))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct GrantDelegation {
    /// The partner organization (of kind `partner`) that is to administer this one.
    #[schema(value_type = uuid::Uuid)]
    partner_id: OrganizationId,
}

/// Delegates the administration of an organization (and its descendants) to a partner.
///
/// The answer is the organization, the partner now in `delegated_partners`. An unknown
/// organization or partner: 404 `ORGANIZATION_NOT_FOUND`; 422 `NOT_A_PARTNER` for an
/// organization not of kind `partner`, `ORGANIZATION_CLOSED` for a closed organization or
/// partner, `DELEGATION_ALREADY_GRANTED` for a partner delegated already.
#[utoipa::path(post, path = "/v1/organizations/{id}/delegations", tag = "organizations", summary = "Delegate to a partner",
    params(("id" = uuid::Uuid, Path, description = "The organization")),
    request_body = GrantDelegation,
    responses(
        (status = 200, description = "The organization as the delegation left it", body = OrganizationView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 422, response = Problem),
    ))]
async fn grant_delegation(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<GrantDelegation, ManagesDelegations>,
) -> Result<Response, ApiError> {
    let id = organization_id(&raw)?;
    state
        .app
        .authorize_organization(&cmd.principal.access, id, Action::ManageDelegations)
        .await?;
    let partner = cmd.body.partner_id;
    let written = state
        .app
        .catalogue()
        .grant_partner_delegation(&cmd.context, id, partner)
        .await
        .map_err(|e| {
            // Whether an id is an organization, a closed one, or not a partner is not a
            // customer's to learn about organizations it does not reach: one answer, as for an
            // unknown id.
            if cmd.principal.access.everywhere().is_empty() && names_partner(&e, partner) {
                application::access::organization_not_found(partner)
            } else {
                e
            }
        })?;
    Ok(answer(StatusCode::OK, None, written))
}

/// Whether `e` refuses a delegation for what `partner` is (unknown, closed, not a partner).
fn names_partner(e: &application::AppError, partner: OrganizationId) -> bool {
    use domain::DomainError as D;
    matches!(
        e,
        application::AppError::Command(commands::CommandError::Rejected(
            D::OrganizationNotFound(p) | D::OrganizationClosed(p) | D::NotAPartner(p)
        )) if *p == partner
    )
}

/// Ends a partner's delegation.
///
/// The answer is the organization, the partner gone from `delegated_partners`. An unknown
/// organization (or a `partner_id` that is no id): 404 `ORGANIZATION_NOT_FOUND`; a partner not
/// delegated: 422 `DELEGATION_NOT_GRANTED`; a closed organization: 422 `ORGANIZATION_CLOSED`.
#[utoipa::path(delete, path = "/v1/organizations/{id}/delegations/{partner_id}", tag = "organizations", summary = "End a partner's delegation",
    params(
        ("id" = uuid::Uuid, Path, description = "The organization"),
        ("partner_id" = uuid::Uuid, Path, description = "The partner organization"),
    ),
    request_body(content = Option<super::EmptyBody>, description = "Nothing, or `{}`"),
    responses(
        (status = 200, description = "The organization as the revocation left it", body = OrganizationView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 422, response = Problem),
    ))]
async fn revoke_delegation(
    State(state): State<AppState>,
    TwoPathParams(raw_id, raw_partner): TwoPathParams,
    cmd: Command<NoBody, ManagesDelegations>,
) -> Result<Response, ApiError> {
    let id = organization_id(&raw_id)?;
    let partner_id = organization_id(&raw_partner)?;
    state
        .app
        .authorize_organization(&cmd.principal.access, id, Action::ManageDelegations)
        .await?;
    let written = state
        .app
        .catalogue()
        .revoke_partner_delegation(&cmd.context, id, partner_id)
        .await?;
    Ok(answer(StatusCode::OK, None, written))
}
