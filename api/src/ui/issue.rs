//! What the vendor's staff and customer administrators bring into the ledger from the UI, with
//! the reach and permissions of the matching API routes:
//!
//! - `/organizations/new`: registers an organization (`POST /v1/organizations`): a root or any
//!   kind for the vendor's administrators, a customer organization below one for whoever
//!   manages organizations there (a customer administrator adds its locations).
//! - `/licenses/new`: issues a license of a policy to an organization (`POST /v1/licenses`,
//!   the administrator's); the next page shows its key, once.

use askama::Template;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use commands::ledger::{NewLicense, NewOrganization};
use domain::Timestamp;
use domain::ids::{OrganizationId, PolicyId};
use domain::values::{LicenseSource, NewName, OrganizationKind};
use projections::queries::Order;
use uuid::Uuid;

use super::pages::{NewKey, OrgHeader, Query, parse_instant};
use super::{
    Names, Nav, UiError, UiForm, Viewer, after_change, feature_codes, form_key, html, invalid,
    seat_count, settled,
};
use crate::auth::Permission;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/organizations/new",
            get(new_organization).post(register_organization),
        )
        .route("/licenses/new", get(new_license).post(issue_license))
}

// ----- organizations -----

#[derive(Template)]
#[template(path = "new_organization.html")]
struct NewOrganizationPage {
    nav: Nav,
    parent: Option<OrgHeader>,
    kinds: Vec<&'static str>,
    form_key: String,
}

async fn new_organization(
    State(state): State<AppState>,
    viewer: Viewer,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let q = Query::of(raw.as_deref());
    let parent_id: Option<OrganizationId> = q.uuid("parent_id")?.map(OrganizationId::from_uuid);
    // The form is offered to whoever may post it: below a parent, a manager of organizations
    // there (a parent out of reach is 404); a root, the vendor's administrators.
    state
        .app
        .catalogue()
        .authorize_new_organization(
            &viewer.session.access,
            parent_id,
            OrganizationKind::Customer,
        )
        .await?;
    let parent = match parent_id {
        Some(id) => Some(OrgHeader::of(&state, &viewer.session.access, id).await?),
        None => None,
    };
    Ok(html(
        StatusCode::OK,
        &NewOrganizationPage {
            nav: viewer.nav(),
            parent,
            kinds: application::catalogue::Catalogue::registrable_kinds(&viewer.session.access)
                .iter()
                .map(|k| k.as_str())
                .collect(),
            form_key: form_key(),
        },
    ))
}

async fn register_organization(
    State(state): State<AppState>,
    form: UiForm,
) -> Result<Response, UiError> {
    let viewer = &form.viewer;
    let parent_id = form
        .get("parent_id")
        .map(|raw| {
            raw.parse::<OrganizationId>()
                .map_err(|_| UiError::BadRequest("the parent is not an organization id".into()))
        })
        .transpose()?;
    let input = NewOrganization {
        name: NewName::parse(form.require("name")?)
            .map_err(invalid("the name"))?
            .into_name(),
        kind: OrganizationKind::parse(form.get("kind").unwrap_or("customer"))
            .map_err(invalid("the kind"))?,
        parent_id,
    };
    state
        .app
        .catalogue()
        .authorize_new_organization(&viewer.session.access, input.parent_id, input.kind)
        .await?;
    let context = form.command("register-organization");
    let written = state
        .app
        .catalogue()
        .create_organization(&context, input)
        .await?;
    after_change(&state, &format!("/organizations/{}", written.view.id)).await
}

// ----- licenses -----

/// A policy a license may be issued under, as the form offers it.
struct PolicyChoice {
    id: Uuid,
    label: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "new_license.html")]
struct NewLicensePage {
    nav: Nav,
    organization: Option<OrgHeader>,
    policies: Vec<PolicyChoice>,
    /// A policy was named by the link (else the select starts on "choose").
    chosen: bool,
    /// More policies exist than the form lists.
    more: bool,
    form_key: String,
}

fn admin(viewer: &Viewer) -> Result<(), UiError> {
    viewer.require(Permission::Admin, "issuing licenses is the administrator's")
}

/// The most policies the form offers (a vendor has tens).
const MAX_POLICIES: i64 = 500;

async fn new_license(
    State(state): State<AppState>,
    viewer: Viewer,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    admin(&viewer)?;
    let q = Query::of(raw.as_deref());
    let organization = match q.uuid("organization_id")? {
        Some(id) => Some(
            OrgHeader::of(
                &state,
                &viewer.session.access,
                OrganizationId::from_uuid(id),
            )
            .await?,
        ),
        None => None,
    };
    let chosen = q.uuid("policy_id")?;
    let listed = state
        .app
        .catalogue()
        .policies(
            None,
            application::catalogue::PageRequest {
                cursor: None,
                limit: MAX_POLICIES,
                order: Order::Asc,
            },
        )
        .await?;
    let more = listed.next_cursor.is_some();
    let live: Vec<_> = listed.items.into_iter().filter(|p| !p.retired).collect();
    let names = Names::of(&state, live.iter().map(|p| p.product_id)).await?;
    let mut policies: Vec<PolicyChoice> = live
        .into_iter()
        .map(|p| PolicyChoice {
            label: format!(
                "{} — {} (version {})",
                names.name(&p.product_id),
                p.name,
                p.version
            ),
            selected: Some(p.id) == chosen,
            id: p.id,
        })
        .collect();
    policies.sort_by(|a, b| a.label.cmp(&b.label));
    Ok(html(
        StatusCode::OK,
        &NewLicensePage {
            nav: viewer.nav(),
            organization,
            chosen: policies.iter().any(|p| p.selected),
            policies,
            more,
            form_key: form_key(),
        },
    ))
}

async fn issue_license(State(state): State<AppState>, form: UiForm) -> Result<Response, UiError> {
    let viewer = &form.viewer;
    admin(viewer)?;
    let id_of = |field: &str, what: &str| -> Result<Uuid, UiError> {
        form.require(field)?
            .parse::<Uuid>()
            .map_err(|_| UiError::BadRequest(format!("{what} is not an id")))
    };
    let organization_id = OrganizationId::from_uuid(id_of("organization_id", "the organization")?);
    let policy_id = PolicyId::from_uuid(id_of("policy_id", "the policy")?);
    // Blank: the policy's.
    let seats = form.get("seats").map(seat_count).transpose()?;
    // Blank: the policy's.
    let features = form
        .get("features")
        .map(|raw| feature_codes(Some(raw), "the features"))
        .transpose()?;
    let expires_at: Option<Timestamp> = form.get("expires_at").map(parse_instant).transpose()?;
    let context = form.command("issue-license");
    let written = state
        .app
        .licenses()
        .issue(
            &context,
            NewLicense {
                policy_id,
                organization_id,
                seats,
                features,
                expires_at,
                source: LicenseSource::Admin,
            },
        )
        .await?;
    // The key, this once (`None` when the form was posted twice: shown to the first post).
    // The license exists now: a failure to wait for the read models must not turn the only
    // sight of its key into a "nothing was changed" page.
    if let Err(e) = settled(&state).await {
        tracing::warn!(error = ?e, "the read models were not awaited after an issue");
    }
    Ok(html(
        StatusCode::CREATED,
        &NewKey {
            nav: viewer.nav(),
            license_id: written.view.license.id,
            key: written.view.key,
            issued: true,
        },
    ))
}
