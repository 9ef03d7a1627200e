//! The customer portal's pages of an organization beyond its licenses (issue #18):
//!
//! - `/organizations/{id}/users`: its users and their roles; a `customer_admin` (or a vendor
//!   administrator) invites by e-mail with a role, as `POST /v1/organizations/{id}/users` does.
//! - `/users/{id}/impersonate`: vendor support acts as a customer's user for up to an hour
//!   (`POST /v1/impersonations`); every page then shows a banner whose "End" revokes the
//!   impersonation's token (`POST /v1/tokens/{id}/revoke`, from within itself).
//! - `/organizations/{id}/offline`: offline activation by file: the customer's administrator
//!   uploads the request file an air-gapped machine wrote and downloads the answer to carry
//!   back (`POST /v1/offline-activations`, `routes::offline::answer_request_file`).
//! - `/organizations/{id}/audit`: its audit trail (and its descendants'), for whoever reads
//!   its licenses (`application::portal::Portal::audit`).
//! - `/organizations/{id}/downloads`: the releases its licenses see, each file with its size,
//!   SHA-256 and signature; "Download" grants a short-lived link for one of the licenses that
//!   see it (`POST /v1/artifacts/{id}/download-links`) and sends the browser to it.
//!
//! Reach and permissions are the use cases' own (`application::users`, `portal`,
//! `downloads`): a page of a foreign organization is the same 404 as an unknown one.

use std::collections::BTreeSet;

use application::catalogue::PageRequest;
use application::users::UserInput;
use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use domain::ids::{ArtifactId, LicenseId, OrganizationId, UserId};
use domain::reach::Action;
use domain::values::{Email, Reason, Role};
use projections::queries::Order;
use uuid::Uuid;

use super::pages::OrgHeader;
use super::{Names, Nav, UiError, UiForm, Viewer, after_change, form_key, html};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/organizations/{id}/users", get(users).post(invite))
        .route("/organizations/{id}/downloads", get(downloads))
        .route("/organizations/{id}/audit", get(organization_audit))
        .route(
            "/users/{id}/impersonate",
            get(confirm_impersonation).post(impersonate),
        )
        .route("/impersonation/end", post(end_impersonation))
        .route("/users/{id}/roles", post(set_roles))
        .route(
            "/users/{id}/deactivate",
            get(confirm_user_deactivation).post(deactivate_user),
        )
        .route("/users/{id}/reactivate", post(reactivate_user))
        .route(
            "/organizations/{id}/offline",
            get(offline).post(answer_offline),
        )
        .route("/artifacts/{id}/download", post(download))
}

fn organization_id(raw: &str) -> Result<OrganizationId, UiError> {
    raw.parse().map_err(|_| UiError::NotFound)
}

struct UserRow {
    id: Uuid,
    email: String,
    status: String,
    roles: String,
    /// Its role at this organization (the role select starts on it).
    role_here: String,
    /// The viewer itself (it does not deactivate itself from here).
    is_viewer: bool,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    nav: Nav,
    organization: OrgHeader,
    users: Vec<UserRow>,
    more: bool,
    may_invite: bool,
    /// Vendor support (not already acting as someone): each active user can be impersonated.
    may_impersonate: bool,
    roles: Vec<&'static str>,
    form_key: String,
}

/// The roles the viewer may hand out at an organization of `organization_kind`: customer
/// roles, and vendor roles at the vendor's own for a vendor administrator
/// (`users::check_may_grant` decides again on the post).
fn grantable(viewer: &Viewer, organization_kind: &str) -> Vec<&'static str> {
    // Vendor roles are held at the vendor's organization only (the ledger refuses them
    // elsewhere): offered there, to a vendor administrator.
    let vendor_roles =
        organization_kind == "vendor" && viewer.session.access.may_everywhere(Action::Administer);
    Role::ALL
        .iter()
        .copied()
        .filter(|r| vendor_roles || !Role::parse(r).is_ok_and(Role::is_vendor))
        .collect()
}

async fn users(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(raw): Path<String>,
) -> Result<Response, UiError> {
    let id = organization_id(&raw)?;
    let access = &viewer.session.access;
    let listed = state
        .app
        .users()
        .list(
            access,
            id,
            PageRequest {
                cursor: None,
                limit: 200,
                order: Order::Asc,
            },
        )
        .await?;
    let organization = OrgHeader::of(&state, &viewer.session.access, id).await?;
    let may_invite = state
        .app
        .authorize_organization(access, id, Action::ManageUsers)
        .await
        .is_ok();
    let roles = grantable(&viewer, &organization.kind);
    let users = listed
        .items
        .into_iter()
        .map(|u| UserRow {
            role_here: u
                .roles
                .iter()
                .find(|r| r.organization_id == organization.id)
                .map(|r| r.role.clone())
                .unwrap_or_default(),
            is_viewer: matches!(
                &viewer.session.access.kind,
                application::access::PrincipalKind::User { id: me, .. } if Uuid::from(*me) == u.id
            ),
            id: u.id,
            email: u.email,
            status: u.status,
            roles: u
                .roles
                .iter()
                .map(|r| r.role.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    Ok(html(
        StatusCode::OK,
        &UsersPage {
            nav: viewer.nav(),
            organization,
            more: listed.next_cursor.is_some(),
            users,
            may_invite,
            may_impersonate: viewer.session.access.impersonation.is_none()
                && viewer.session.access.may_everywhere(Action::Impersonate),
            roles,
            form_key: form_key(),
        },
    ))
}

async fn invite(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: UiForm,
) -> Result<Response, UiError> {
    let id = organization_id(&raw)?;
    let email = Email::parse(form.require("email")?)
        .map_err(|e| UiError::BadRequest(format!("the e-mail address: {e}")))?;
    let role = Role::parse(form.require("role")?)
        .map_err(|e| UiError::BadRequest(format!("the role: {e}")))?;
    let viewer = &form.viewer;
    let context = form.command(&format!("invite/{id}"));
    state
        .app
        .users()
        .create(
            &context,
            &viewer.session.access,
            id,
            UserInput {
                email,
                roles: BTreeSet::from([role]),
                issuer: None,
                subject: None,
            },
        )
        .await?;
    after_change(&state, &format!("/organizations/{id}/users")).await
}

#[derive(Template)]
#[template(path = "confirm_impersonation.html")]
struct ConfirmImpersonation {
    nav: Nav,
    user: application::users::UserView,
    form_key: String,
}

/// The longest impersonation (API.md: at most an hour), as the application bounds it.
const MAX_IMPERSONATION_MINUTES: i64 = application::operations::MAX_IMPERSONATION.num_minutes();

fn user_id(raw: &str) -> Result<UserId, UiError> {
    raw.parse().map_err(|_| UiError::NotFound)
}

async fn confirm_impersonation(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(raw): Path<String>,
) -> Result<Response, UiError> {
    let id = user_id(&raw)?;
    viewer
        .principal()
        .require_somewhere(Action::Impersonate)
        .map_err(|_| UiError::Forbidden("impersonation is vendor support's".into()))?;
    let user = state.app.users().get(&viewer.session.access, id).await?;
    Ok(html(
        StatusCode::OK,
        &ConfirmImpersonation {
            nav: viewer.nav(),
            user,
            form_key: form_key(),
        },
    ))
}

async fn impersonate(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: UiForm,
) -> Result<Response, UiError> {
    let id = user_id(&raw)?;
    let viewer = &form.viewer;
    if viewer.session.access.impersonation.is_some() {
        return Err(UiError::BadRequest(
            "end the present impersonation first".into(),
        ));
    }
    let reason = Reason::parse(form.require("reason")?)
        .map_err(|e| UiError::BadRequest(format!("the reason: {e}")))?;
    let minutes: i64 = form
        .get("minutes")
        .unwrap_or("30")
        .parse()
        .ok()
        .filter(|m| (1..=MAX_IMPERSONATION_MINUTES).contains(m))
        .ok_or_else(|| {
            UiError::BadRequest(format!(
                "the duration: 1 to {MAX_IMPERSONATION_MINUTES} minutes"
            ))
        })?;
    let context = form.command(&format!("impersonate/{id}"));
    let started = state
        .app
        .start_impersonation(
            &context,
            &viewer.session.access,
            id,
            reason,
            chrono::Duration::minutes(minutes),
        )
        .await?;
    state
        .app
        .sessions()
        .set_impersonation(&viewer.session.hash, Some(started.view.id))
        .await?;
    after_change(&state, "/").await
}

async fn end_impersonation(
    State(state): State<AppState>,
    form: UiForm,
) -> Result<Response, UiError> {
    let viewer = &form.viewer;
    if let Some(impersonation) = &viewer.session.access.impersonation {
        let context = viewer.command(None, "end-impersonation");
        // Ended from within itself, as the API's banner does; already ended is fine.
        match state
            .app
            .revoke_token(&context, &viewer.session.access, impersonation.token)
            .await
        {
            Ok(_) => {}
            Err(application::AppError::Command(commands::CommandError::Rejected(_))) => {}
            Err(e) => return Err(e.into()),
        }
    }
    state
        .app
        .sessions()
        .set_impersonation(&viewer.session.hash, None)
        .await?;
    after_change(&state, "/").await
}

#[derive(Template)]
#[template(path = "offline.html")]
struct OfflinePage {
    nav: Nav,
    organization: OrgHeader,
}

/// Who may answer request files on organization `id`'s page: who manages installations there,
/// or vendor support.
async fn may_answer_here(
    state: &AppState,
    viewer: &Viewer,
    id: OrganizationId,
) -> Result<(), UiError> {
    let access = &viewer.session.access;
    if access.may_everywhere(Action::Support) {
        // Vendor support reaches every organization; an unknown one is still unknown.
        state.app.catalogue().organization(id).await?;
        return Ok(());
    }
    state
        .app
        .authorize_organization(access, id, Action::ManageInstallations)
        .await?;
    Ok(())
}

/// The largest request file taken (the SDK writes well under 2 KiB).
const MAX_REQUEST_FILE: usize = 64 * 1024;

async fn offline(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(raw): Path<String>,
) -> Result<Response, UiError> {
    let id = organization_id(&raw)?;
    may_answer_here(&state, &viewer, id).await?;
    Ok(html(
        StatusCode::OK,
        &OfflinePage {
            nav: viewer.nav(),
            organization: OrgHeader::of(&state, &viewer.session.access, id).await?,
        },
    ))
}

/// Takes the request file a person picked (multipart: the CSRF token first, then the file),
/// answers it as `POST /v1/offline-activations` does, and hands the answer back as a file to
/// carry to the machine.
async fn answer_offline(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: axum::http::HeaderMap,
    Path(raw): Path<String>,
    multipart: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, Response> {
    super::check_origin(&headers, &state).map_err(IntoResponse::into_response)?;
    let id = organization_id(&raw).map_err(IntoResponse::into_response)?;
    // The page's organization as its GET checks it: a path out of reach is unknown, whatever
    // the file (whose key decides the license).
    may_answer_here(&state, &viewer, id)
        .await
        .map_err(IntoResponse::into_response)?;
    let bad = |why: &str| UiError::BadRequest(why.to_owned()).into_response();
    let mut multipart = multipart.map_err(|_| bad("send the request file with the page's form"))?;
    let mut csrf: Option<Vec<u8>> = None;
    let mut file: Option<Vec<u8>> = None;
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|_| bad("the form could not be read"))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        let mut bytes = Vec::new();
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|_| bad("the form could not be read"))?
        {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > MAX_REQUEST_FILE {
                return Err(bad("this is not a request file: it is far too large"));
            }
        }
        match name.as_str() {
            "csrf" if csrf.is_none() => csrf = Some(bytes),
            "request" if file.is_none() => file = Some(bytes),
            _ => return Err(bad("the form sends a field it has not")),
        }
        // The token is checked before the file is used.
        if name == "csrf" {
            super::check_csrf(&viewer, csrf.as_deref()).map_err(IntoResponse::into_response)?;
        }
    }
    super::check_csrf(&viewer, csrf.as_deref()).map_err(IntoResponse::into_response)?;
    let file = file
        .filter(|f| !f.is_empty())
        .ok_or_else(|| bad("pick the request file the machine wrote"))?;
    let answer = crate::routes::offline::answer_request_file(
        &state,
        &viewer.principal(),
        viewer.request_id.clone(),
        &file,
        None,
    )
    .await
    .map_err(|e| UiError::from(e).into_response())?;
    let name = if answer.contains("ACTIVATION RESPONSE") {
        "activation-response.txt"
    } else {
        "deactivation-receipt.txt"
    };
    Ok((
        StatusCode::OK,
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_owned(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        answer,
    )
        .into_response())
}

/// Refuses a change to one's own user from the users page (its role, its deactivation): a
/// slip would lock oneself out with no way back; another administrator makes it (the API, for
/// scripts, allows it).
fn not_oneself(viewer: &Viewer, id: UserId) -> Result<(), UiError> {
    if matches!(
        &viewer.session.access.kind,
        application::access::PrincipalKind::User { id: me, .. } if *me == id
    ) {
        return Err(UiError::Forbidden(
            "another administrator changes your own user".into(),
        ));
    }
    Ok(())
}

/// Sets a user's roles at an organization to the one chosen (`PUT /v1/users/{id}/roles`
/// with one role; none chosen revokes them all there).
async fn set_roles(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: UiForm,
) -> Result<Response, UiError> {
    let id = user_id(&raw)?;
    let organization = organization_id(form.require("organization_id")?)?;
    let roles = match form.get("role") {
        None | Some("none") => BTreeSet::new(),
        Some(r) => BTreeSet::from([
            Role::parse(r).map_err(|e| UiError::BadRequest(format!("the role: {e}")))?
        ]),
    };
    let viewer = &form.viewer;
    not_oneself(viewer, id)?;
    let context = form.command(&format!("roles/{id}/{organization}"));
    state
        .app
        .users()
        .set_roles(&context, &viewer.session.access, id, organization, roles)
        .await?;
    after_change(&state, &format!("/organizations/{organization}/users")).await
}

#[derive(Template)]
#[template(path = "confirm_user_deactivation.html")]
struct ConfirmUserDeactivation {
    nav: Nav,
    user: application::users::UserView,
    organization_id: Uuid,
    form_key: String,
}

async fn confirm_user_deactivation(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(raw): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Response, UiError> {
    let id = user_id(&raw)?;
    let user = state.app.users().get(&viewer.session.access, id).await?;
    not_oneself(&viewer, id)?;
    let q = super::pages::Query::of(query.as_deref());
    let organization_id = q.uuid("organization_id")?.unwrap_or(user.organization_id);
    Ok(html(
        StatusCode::OK,
        &ConfirmUserDeactivation {
            nav: viewer.nav(),
            user,
            organization_id,
            form_key: form_key(),
        },
    ))
}

/// Deactivates a user (`POST /v1/users/{id}/deactivate`): its logins and sessions end.
async fn deactivate_user(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: UiForm,
) -> Result<Response, UiError> {
    switch_user(&state, &raw, &form, false).await
}

/// Reactivates a deactivated user (`POST /v1/users/{id}/reactivate`): it logs in again, with
/// the roles it held. A form of one button on the users page: undoing is not destructive.
async fn reactivate_user(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: UiForm,
) -> Result<Response, UiError> {
    switch_user(&state, &raw, &form, true).await
}

/// Deactivates or reactivates (`active`) the user of path segment `raw`, never the viewer,
/// and goes back to the users page of the form's organization.
async fn switch_user(
    state: &AppState,
    raw: &str,
    form: &UiForm,
    active: bool,
) -> Result<Response, UiError> {
    let id = user_id(raw)?;
    let organization = organization_id(form.require("organization_id")?)?;
    let viewer = &form.viewer;
    not_oneself(viewer, id)?;
    let users = state.app.users();
    let access = &viewer.session.access;
    if active {
        let context = form.command(&format!("reactivate-user/{id}"));
        users.reactivate(&context, access, id).await?;
    } else {
        let context = form.command(&format!("deactivate-user/{id}"));
        users.deactivate(&context, access, id).await?;
    }
    after_change(state, &format!("/organizations/{organization}/users")).await
}

#[derive(Template)]
#[template(path = "organization_audit.html")]
struct OrganizationAudit {
    nav: Nav,
    organization: OrgHeader,
    entries: Vec<projections::queries::AuditRow>,
    names: Names,
    next: Option<String>,
}

impl OrganizationAudit {
    fn when(row: &projections::queries::AuditRow) -> String {
        super::pages::show(&row.recorded_at)
    }
}

/// An organization's own audit trail (and its descendants'): what its people and the vendor
/// did to its licenses, users and itself, newest first.
async fn organization_audit(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(raw): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Response, UiError> {
    let id = organization_id(&raw)?;
    let q = super::pages::Query::of(query.as_deref());
    let listed = state
        .app
        .portal()
        .audit(&viewer.session.access, id, q.page(100, Order::Desc))
        .await?;
    let next = q.next(&format!("/organizations/{id}/audit"), listed.next_cursor);
    // Its licenses' key prefixes, and its own people by e-mail for a viewer that may read its
    // users (the users page's permission); the vendor's staff and other organizations' people
    // stay ids: not the customer's to know by name.
    let reads_users = state
        .app
        .authorize_at(
            &viewer.session.access,
            id,
            domain::reach::Action::ReadUsers,
            || application::access::organization_not_found(id),
        )
        .await
        .is_ok();
    let actors: Vec<&str> = if reads_users {
        listed
            .items
            .iter()
            .flat_map(|e| [Some(e.actor.as_str()), e.impersonated_by.as_deref()])
            .flatten()
            .collect()
    } else {
        Vec::new()
    };
    let names = Names::of(&state, listed.items.iter().filter_map(|e| e.license_id))
        .await?
        .with_actors(&state, actors, Some(id))
        .await?;
    Ok(html(
        StatusCode::OK,
        &OrganizationAudit {
            names,
            nav: viewer.nav(),
            organization: OrgHeader::of(&state, &viewer.session.access, id).await?,
            entries: listed.items,
            next,
        },
    ))
}

struct FileRow {
    id: Uuid,
    filename: String,
    platform: String,
    arch: String,
    size: String,
    sha256: String,
    signature: String,
    kid: String,
}

struct ReleaseRow {
    product: String,
    version: String,
    channel: String,
    published: String,
    notes: String,
    /// The license a download is granted through (the first that sees the release).
    license_id: Uuid,
    files: Vec<FileRow>,
}

#[derive(Template)]
#[template(path = "downloads.html")]
struct DownloadsPage {
    nav: Nav,
    organization: OrgHeader,
    releases: Vec<ReleaseRow>,
    complete: bool,
}

/// A size for people: bytes, KiB, MiB or GiB.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

async fn downloads(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(raw): Path<String>,
) -> Result<Response, UiError> {
    let id = organization_id(&raw)?;
    let visible = state
        .app
        .portal()
        .releases(&viewer.session.access, id, None, None)
        .await?;
    let organization = OrgHeader::of(&state, &viewer.session.access, id).await?;
    // Products the organization's licenses see: their names are the customer's to read.
    let names = Names::of(
        &state,
        visible.releases.iter().map(|r| r.release.product_id),
    )
    .await?;
    let releases = visible
        .releases
        .into_iter()
        .filter_map(|r| {
            let license_id = *r.license_ids.first()?;
            Some(ReleaseRow {
                product: names.name(&r.release.product_id),
                version: r.release.version,
                channel: r.release.channel,
                published: r
                    .release
                    .published_at
                    .map(|t| t.format("%Y-%m-%d").to_string())
                    .unwrap_or_default(),
                notes: r.release.notes.unwrap_or_default(),
                license_id,
                files: r
                    .release
                    .artifacts
                    .into_iter()
                    .map(|a| FileRow {
                        id: a.id,
                        filename: a.filename,
                        platform: a.platform,
                        arch: a.arch,
                        size: size(a.size),
                        sha256: a.sha256,
                        signature: a.signature,
                        kid: a.kid,
                    })
                    .collect(),
            })
        })
        .collect();
    Ok(html(
        StatusCode::OK,
        &DownloadsPage {
            nav: viewer.nav(),
            organization,
            releases,
            complete: visible.complete,
        },
    ))
}

async fn download(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: UiForm,
) -> Result<Response, UiError> {
    let artifact: ArtifactId = raw.parse().map_err(|_| UiError::NotFound)?;
    let license: LicenseId = form
        .require("license_id")?
        .parse()
        .map_err(|_| UiError::NotFound)?;
    let viewer = &form.viewer;
    // Each press grants a new link (a link is for one transfer, five minutes): no form key.
    let context = viewer.command(None, "download");
    let granted = state
        .app
        .downloads()
        .grant(&viewer.session.access, &context, artifact, license)
        .await?;
    // The link serves from the log, not a read model: no wait.
    Ok(Redirect::to(&granted.view.url).into_response())
}

#[cfg(test)]
mod tests {
    use super::size;

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(size(512), "512 bytes");
        assert_eq!(size(300_000), "293.0 KiB");
        assert_eq!(size(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
