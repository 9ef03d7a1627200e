//! Users and `GET /v1/me`: users invited or registered at an organization, their roles, their
//! deactivation; who the caller is and which organizations it reaches. Authorization is reach's
//! (`application::users`); a user or organization out of reach answers exactly as an unknown one.

use std::collections::BTreeSet;

use application::users::{MeView, UserInput, UserView};
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use domain::ErrorCode;
use domain::ids::{OrganizationId, UserId};
use domain::values::{Email, Issuer, Role, Subject};
use serde::Deserialize;

use super::answer;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{Command, ManagesUsers, NoBody, PathParam, path_id};
use crate::openapi::{Problem, schemas};
use crate::state::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The user routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_user, list_users))
        .routes(routes!(get_user))
        .routes(routes!(set_roles))
        .routes(routes!(deactivate_user))
        .routes(routes!(reactivate_user))
        .routes(routes!(me))
}

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    path_id(raw, ErrorCode::UserNotFound, "user")
}

fn organization_id(raw: &str) -> Result<OrganizationId, ApiError> {
    path_id(raw, ErrorCode::OrganizationNotFound, "organization")
}

/// Refuses a role list given twice over: `roles` is a set, a repeated role is a typo.
fn role_set(roles: Vec<Role>) -> Result<BTreeSet<Role>, ApiError> {
    let n = roles.len();
    let set: BTreeSet<Role> = roles.into_iter().collect();
    if set.len() != n {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidField,
            "roles: a role is named twice",
            Some("roles".into()),
        ));
    }
    Ok(set)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    #[schema(value_type = schemas::Email)]
    email: Email,
    /// The roles at this organization (and its descendants).
    #[schema(value_type = Vec<schemas::Role>, max_items = 8)]
    roles: Vec<Role>,
    /// A configured identity provider. With `subject` (vendor administrators only): the user
    /// is linked to that identity at once. Alone: the invitation is claimed through this
    /// provider only. Absent: an invitation claimed through the only configured provider (with
    /// several configured, name one).
    #[serde(default)]
    #[schema(value_type = Option<schemas::Issuer>)]
    issuer: Option<Issuer>,
    #[serde(default)]
    #[schema(value_type = Option<schemas::Subject>)]
    subject: Option<Subject>,
}

/// Invites a user to an organization (or registers one with its identity).
#[utoipa::path(post, path = "/v1/organizations/{id}/users", tag = "users", summary = "Invite a user",
    params(("id" = uuid::Uuid, Path, description = "The organization")),
    request_body = CreateUser,
    responses(
        (status = 201, description = "Invited (status `invited`) or registered (`active`)", body = UserView,
            headers(("Location" = String, description = "The user's URL"))),
        (status = 400, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 409, response = Problem),
        (status = 422, response = Problem),
    ))]
async fn create_user(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<CreateUser, ManagesUsers>,
) -> Result<Response, ApiError> {
    let organization = organization_id(&raw)?;
    let input = UserInput {
        email: cmd.body.email,
        roles: role_set(cmd.body.roles)?,
        issuer: cmd.body.issuer,
        subject: cmd.body.subject,
    };
    let written = state
        .app
        .users()
        .create(&cmd.context, &cmd.principal.access, organization, input)
        .await?;
    let location = format!("/v1/users/{}", written.view.id);
    Ok(answer(StatusCode::CREATED, Some(location), written))
}

/// The users registered or invited at an organization, a page at a time.
#[utoipa::path(get, path = "/v1/organizations/{id}/users", tag = "users", summary = "An organization's users",
    params(("id" = uuid::Uuid, Path, description = "The organization"), super::PageParams),
    responses((status = 200, description = "A page", body = super::UserPage), (status = 400, response = Problem),
              (status = 403, response = Problem), (status = 404, response = Problem)))]
async fn list_users(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(raw): PathParam,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let organization = organization_id(&raw)?;
    let q = super::Params::parse(query.as_deref(), &super::PAGE_PARAMS)?;
    let listed = state
        .app
        .users()
        .list(&principal.access, organization, q.page()?)
        .await?;
    super::page("users", listed)
}

/// One user.
#[utoipa::path(get, path = "/v1/users/{id}", tag = "users", summary = "Read a user",
    params(("id" = uuid::Uuid, Path, description = "The user")),
    responses((status = 200, description = "The user", body = UserView), (status = 404, response = Problem)))]
async fn get_user(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(raw): PathParam,
) -> Result<Json<UserView>, ApiError> {
    let id = user_id(&raw)?;
    Ok(Json(state.app.users().get(&principal.access, id).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SetRoles {
    #[schema(value_type = uuid::Uuid)]
    organization_id: OrganizationId,
    /// The user's roles at that organization from now on (empty: none there).
    #[schema(value_type = Vec<schemas::Role>, max_items = 8)]
    roles: Vec<Role>,
}

/// Sets a user's roles at an organization: grants and revokes the difference.
#[utoipa::path(put, path = "/v1/users/{id}/roles", tag = "users", summary = "Set a user's roles",
    params(("id" = uuid::Uuid, Path, description = "The user")),
    request_body = SetRoles,
    responses(
        (status = 200, description = "The user with its roles", body = UserView),
        (status = 400, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 422, response = Problem),
    ))]
async fn set_roles(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<SetRoles, ManagesUsers>,
) -> Result<Response, ApiError> {
    let id = user_id(&raw)?;
    let roles = role_set(cmd.body.roles)?;
    let written = state
        .app
        .users()
        .set_roles(
            &cmd.context,
            &cmd.principal.access,
            id,
            cmd.body.organization_id,
            roles,
        )
        .await?;
    Ok(answer(StatusCode::OK, None, written))
}

/// Deactivates a user: its tokens stop authenticating from the next request on.
#[utoipa::path(post, path = "/v1/users/{id}/deactivate", tag = "users", summary = "Deactivate a user",
    params(("id" = uuid::Uuid, Path, description = "The user")),
    request_body(content = Option<super::EmptyBody>, description = "Nothing, or `{}`"),
    responses(
        (status = 200, description = "Deactivated", body = UserView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 422, response = Problem),
    ))]
async fn deactivate_user(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<NoBody, ManagesUsers>,
) -> Result<Response, ApiError> {
    let id = user_id(&raw)?;
    let written = state
        .app
        .users()
        .deactivate(&cmd.context, &cmd.principal.access, id)
        .await?;
    Ok(answer(StatusCode::OK, None, written))
}

/// Reactivates a deactivated user: its tokens and logins work again, with the roles it held
/// (an active user is answered unchanged).
#[utoipa::path(post, path = "/v1/users/{id}/reactivate", tag = "users", summary = "Reactivate a user",
    params(("id" = uuid::Uuid, Path, description = "The user")),
    request_body(content = Option<super::EmptyBody>, description = "Nothing, or `{}`"),
    responses(
        (status = 200, description = "Active", body = UserView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn reactivate_user(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<NoBody, ManagesUsers>,
) -> Result<Response, ApiError> {
    let id = user_id(&raw)?;
    let written = state
        .app
        .users()
        .reactivate(&cmd.context, &cmd.principal.access, id)
        .await?;
    Ok(answer(StatusCode::OK, None, written))
}

/// Who is asking: the principal, its roles, and the organizations it reaches.
#[utoipa::path(get, path = "/v1/me", tag = "users", summary = "Who am I",
    responses((status = 200, description = "The caller", body = MeView)))]
async fn me(State(state): State<AppState>, principal: Principal) -> Result<Json<MeView>, ApiError> {
    Ok(Json(state.app.users().me(&principal.access).await?))
}
