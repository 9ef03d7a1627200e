//! The vendor's products and releases (issue #18), with the permissions of their API routes:
//! reading needs `Permission::Read`, every change `Permission::Admin`.
//!
//! - `/products`: the products; `/products/{id}`: one with its policies (their terms), its
//!   releases and a form that drafts a release (`POST /v1/products/{id}/releases`).
//! - `/releases/{id}`: a release with its files; while a draft, an upload form (the file
//!   streams into the artifact store, as `PUT /v1/releases/{id}/artifacts/{filename}`), and
//!   publish; once published, yank with a reason.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use commands::ledger::NewRelease;
use domain::ids::{ProductId, ReleaseId};
use domain::release::Filename;
use domain::values::{Arch, Channel, FeatureSet, Platform, Reason};
use projections::queries::Order;

use super::{Nav, UiError, UiForm, Viewer, after_change, form_key, html};
use crate::auth::Permission;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/products", get(products))
        .route("/products/{id}", get(product))
        .route("/products/{id}/releases", post(draft))
        .route("/releases/{id}", get(release))
        .route("/releases/{id}/publish", post(publish))
        .route("/releases/{id}/yank", post(yank))
}

/// The upload: no deadline and no body limit but the store's (`--max-artifact-bytes`), as the
/// API's transfers (`server::RouteTable::transfers`).
pub fn transfer_routes() -> Router<AppState> {
    Router::new().route("/releases/{id}/artifacts", post(upload))
}

fn read(viewer: &Viewer) -> Result<(), UiError> {
    viewer
        .principal()
        .require(Permission::Read)
        .map_err(|_| UiError::Forbidden("products and releases are the vendor's".into()))
}

fn admin(viewer: &Viewer) -> Result<(), UiError> {
    viewer
        .principal()
        .require(Permission::Admin)
        .map_err(|_| UiError::Forbidden("changing releases is the administrator's".into()))
}

#[derive(Template)]
#[template(path = "products.html")]
struct ProductsPage {
    nav: Nav,
    products: Vec<application::views::ProductView>,
    more: bool,
}

async fn products(State(state): State<AppState>, viewer: Viewer) -> Result<Response, UiError> {
    read(&viewer)?;
    let listed = state
        .app
        .catalogue()
        .products(application::catalogue::PageRequest {
            cursor: None,
            limit: 500,
            order: Order::Asc,
        })
        .await?;
    Ok(html(
        StatusCode::OK,
        &ProductsPage {
            nav: viewer.nav(),
            more: listed.next_cursor.is_some(),
            products: listed.items,
        },
    ))
}

#[derive(Template)]
#[template(path = "product.html")]
struct ProductPage {
    nav: Nav,
    product: application::views::ProductView,
    policies: Vec<PolicyRow>,
    releases: Vec<application::views::ReleaseView>,
    more: bool,
    may_change: bool,
    channels: Vec<&'static str>,
    form_key: String,
}

/// A policy as the product page lists it: its terms as `name: value` pairs.
struct PolicyRow {
    name: String,
    version: u32,
    retired: bool,
    terms: Vec<(String, String)>,
    prices: String,
}

impl PolicyRow {
    fn of(p: application::views::PolicyView) -> Self {
        let terms = match &p.terms {
            serde_json::Value::Object(map) => map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let value = match v {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Array(items) => items
                            .iter()
                            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                            .collect::<Vec<_>>()
                            .join(", "),
                        other => other.to_string(),
                    };
                    (k.replace('_', " "), value)
                })
                .collect(),
            _ => Vec::new(),
        };
        Self {
            name: p.name,
            version: p.version,
            retired: p.retired,
            terms,
            prices: p.stripe_price_ids.join(", "),
        }
    }
}

fn product_id(raw: &str) -> Result<ProductId, UiError> {
    raw.parse().map_err(|_| UiError::NotFound)
}

fn release_id(raw: &str) -> Result<ReleaseId, UiError> {
    raw.parse().map_err(|_| UiError::NotFound)
}

async fn product(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(raw): Path<String>,
) -> Result<Response, UiError> {
    read(&viewer)?;
    let id = product_id(&raw)?;
    let product = state.app.catalogue().product(id).await?;
    let policies = state
        .app
        .catalogue()
        .policies(
            Some(product.id),
            application::catalogue::PageRequest {
                cursor: None,
                limit: 200,
                order: Order::Asc,
            },
        )
        .await?;
    let listed = state
        .app
        .releases()
        .list(
            id,
            None,
            application::catalogue::PageRequest {
                cursor: None,
                limit: 200,
                order: Order::Desc,
            },
        )
        .await?;
    Ok(html(
        StatusCode::OK,
        &ProductPage {
            nav: viewer.nav(),
            product,
            policies: policies.items.into_iter().map(PolicyRow::of).collect(),
            more: listed.next_cursor.is_some(),
            releases: listed.items,
            may_change: admin(&viewer).is_ok(),
            channels: Channel::ALL.to_vec(),
            form_key: form_key(),
        },
    ))
}

fn invalid(what: &'static str) -> impl Fn(domain::values::InvalidValue) -> UiError {
    move |e| UiError::BadRequest(format!("{what}: {e}"))
}

async fn draft(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: UiForm,
) -> Result<Response, UiError> {
    admin(&form.viewer)?;
    let product_id = product_id(&raw)?;
    let version = domain::release::Version::parse(form.require("version")?)
        .map_err(invalid("the version"))?;
    let channel =
        Channel::parse(form.get("channel").unwrap_or("stable")).map_err(invalid("the channel"))?;
    let notes = form
        .get("notes")
        .map(domain::release::Notes::parse)
        .transpose()
        .map_err(invalid("the notes"))?;
    let codes: Vec<&str> = form
        .get("entitlements")
        .unwrap_or("")
        .split([',', ' '])
        .filter(|c| !c.is_empty())
        .collect();
    let entitlements = FeatureSet::parse(&codes).map_err(invalid("the entitlements"))?;
    let context = form
        .viewer
        .command(form.get("form_key"), &format!("draft/{product_id}"));
    let written = state
        .app
        .releases()
        .create(
            &context,
            NewRelease {
                product_id,
                version,
                channel,
                notes,
                entitlements,
            },
        )
        .await?;
    after_change(&state, &format!("/releases/{}", written.view.id)).await
}

#[derive(Template)]
#[template(path = "release.html")]
struct ReleasePage {
    nav: Nav,
    release: application::views::ReleaseView,
    may_change: bool,
    platforms: Vec<&'static str>,
    arches: Vec<&'static str>,
    form_key: String,
}

async fn release(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(raw): Path<String>,
) -> Result<Response, UiError> {
    read(&viewer)?;
    let release = state.app.releases().get(release_id(&raw)?).await?;
    Ok(html(
        StatusCode::OK,
        &ReleasePage {
            nav: viewer.nav(),
            release,
            may_change: admin(&viewer).is_ok(),
            platforms: Platform::ALL.to_vec(),
            arches: Arch::ALL.to_vec(),
            form_key: form_key(),
        },
    ))
}

async fn publish(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: UiForm,
) -> Result<Response, UiError> {
    admin(&form.viewer)?;
    let id = release_id(&raw)?;
    let context = form
        .viewer
        .command(form.get("form_key"), &format!("publish/{id}"));
    state.app.releases().publish(&context, id).await?;
    after_change(&state, &format!("/releases/{id}")).await
}

async fn yank(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: UiForm,
) -> Result<Response, UiError> {
    admin(&form.viewer)?;
    let id = release_id(&raw)?;
    let reason = Reason::parse(form.require("reason")?).map_err(invalid("the reason"))?;
    let context = form
        .viewer
        .command(form.get("form_key"), &format!("yank/{id}"));
    state.app.releases().yank(&context, id, reason).await?;
    after_change(&state, &format!("/releases/{id}")).await
}

/// The upload form, read as it arrives: the CSRF token, the platform and the architecture
/// first (the page's form sends them in that order), then the file, whose bytes stream into
/// the artifact store without being held.
async fn upload(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: axum::http::HeaderMap,
    Path(raw): Path<String>,
    multipart: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, Response> {
    let run = async {
        super::check_origin(&headers, &state)?;
        admin(&viewer)?;
        let release_id = release_id(&raw)?;
        let bad = |why: &str| UiError::BadRequest(why.to_owned());
        let mut multipart =
            multipart.map_err(|_| bad("send the file with the release page's form"))?;
        let mut fields: Vec<(String, String)> = Vec::new();
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|_| bad("the form could not be read"))?
        {
            let name = field.name().unwrap_or_default().to_owned();
            if name != "file" {
                if fields.iter().any(|(n, _)| *n == name) || fields.len() > 8 {
                    return Err(bad("the form sends a field twice"));
                }
                let text = field
                    .text()
                    .await
                    .map_err(|_| bad("the form could not be read"))?;
                if text.len() > 4096 {
                    return Err(bad("a field of the form is too long"));
                }
                fields.push((name, text));
                continue;
            }
            // The file: only after the token was checked, and the other fields read.
            let get = |n: &str| {
                fields
                    .iter()
                    .find(|(name, _)| name == n)
                    .map(|(_, v)| v.as_str())
            };
            super::check_csrf(&viewer, get("csrf").map(str::as_bytes))?;
            let platform = Platform::parse(get("platform").unwrap_or("any"))
                .map_err(invalid("the platform"))?;
            let arch = Arch::parse(get("arch").unwrap_or("any")).map_err(invalid("the arch"))?;
            let raw_name = field
                .file_name()
                .map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n).to_owned())
                .filter(|n| !n.is_empty())
                .ok_or_else(|| bad("pick a file"))?;
            let filename = Filename::parse_new(&raw_name).map_err(invalid("the file's name"))?;
            let context = viewer.command(None, "upload");
            state
                .app
                .releases()
                .upload(
                    &context,
                    application::releases::Upload {
                        release_id,
                        filename,
                        platform,
                        arch,
                    },
                    field,
                )
                .await?;
            return after_change(&state, &format!("/releases/{release_id}")).await;
        }
        Err(bad("pick a file"))
    };
    run.await.map_err(IntoResponse::into_response)
}
