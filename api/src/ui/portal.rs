//! The customer portal's pages of an organization beyond its licenses (issue #18):
//!
//! - `/organizations/{id}/users`: its users and their roles; a `customer_admin` (or a vendor
//!   administrator) invites by e-mail with a role, as `POST /v1/organizations/{id}/users` does.
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
use domain::ids::{ArtifactId, LicenseId, OrganizationId};
use domain::reach::Action;
use domain::values::{Email, Role};
use projections::queries::Order;
use uuid::Uuid;

use super::pages::OrgHeader;
use super::{Nav, UiError, UiForm, Viewer, form_key, html};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/organizations/{id}/users", get(users).post(invite))
        .route("/organizations/{id}/downloads", get(downloads))
        .route("/artifacts/{id}/download", post(download))
}

fn organization_id(raw: &str) -> Result<OrganizationId, UiError> {
    raw.parse().map_err(|_| UiError::NotFound)
}

struct UserRow {
    email: String,
    status: String,
    roles: String,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    nav: Nav,
    organization: OrgHeader,
    users: Vec<UserRow>,
    more: bool,
    may_invite: bool,
    roles: Vec<&'static str>,
    form_key: String,
}

/// The roles the viewer may hand out: customer roles, and vendor roles for a vendor
/// administrator (`users::check_may_grant` decides again on the post).
fn grantable(viewer: &Viewer) -> Vec<&'static str> {
    let vendor_admin = viewer.session.access.may_everywhere(Action::Administer);
    Role::ALL
        .iter()
        .copied()
        .filter(|r| vendor_admin || !Role::parse(r).is_ok_and(Role::is_vendor))
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
    let organization = OrgHeader::of(&state, id).await?;
    let may_invite = state
        .app
        .authorize_organization(access, id, Action::ManageUsers)
        .await
        .is_ok();
    Ok(html(
        StatusCode::OK,
        &UsersPage {
            nav: viewer.nav(),
            organization,
            more: listed.next_cursor.is_some(),
            users: listed
                .items
                .into_iter()
                .map(|u| UserRow {
                    email: u.email,
                    status: u.status,
                    roles: u
                        .roles
                        .iter()
                        .map(|r| r.role.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
                .collect(),
            may_invite,
            roles: grantable(&viewer),
            form_key: form_key(),
        },
    ))
}

async fn invite(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: Result<UiForm, Response>,
) -> Result<Response, Response> {
    let form = form?;
    let run = async {
        let id = organization_id(&raw)?;
        let email = Email::parse(form.require("email")?)
            .map_err(|e| UiError::BadRequest(format!("the e-mail address: {e}")))?;
        let role = Role::parse(form.require("role")?)
            .map_err(|e| UiError::BadRequest(format!("the role: {e}")))?;
        let viewer = &form.viewer;
        let context = viewer.command(form.get("form_key"), &format!("invite/{id}"));
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
        Ok::<_, UiError>(Redirect::to(&format!("/organizations/{id}/users")).into_response())
    };
    run.await.map_err(IntoResponse::into_response)
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
    let organization = OrgHeader::of(&state, id).await?;
    let releases = visible
        .releases
        .into_iter()
        .filter_map(|r| {
            let license_id = *r.license_ids.first()?;
            Some(ReleaseRow {
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
    form: Result<UiForm, Response>,
) -> Result<Response, Response> {
    let form = form?;
    let run = async {
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
        Ok::<_, UiError>(Redirect::to(&granted.view.url).into_response())
    };
    run.await.map_err(IntoResponse::into_response)
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
