//! The vendor's products and releases (issue #18), with the permissions of their API routes:
//! reading needs `Permission::Read`, every change `Permission::Admin`.
//!
//! - `/products`: the products; `/products/{id}`: one with its policies (their terms), its
//!   releases and a form that drafts a release (`POST /v1/products/{id}/releases`).
//! - `/products` also defines a product (`POST /v1/products`); a product's page defines a
//!   policy (`POST /v1/policies`); `/policies/{id}`: a policy's terms, revised
//!   (`PUT /v1/policies/{id}`) or retired.
//! - `/releases/{id}`: a release with its files; while a draft, an upload form (the file
//!   streams into the artifact store, as `PUT /v1/releases/{id}/artifacts/{filename}`), and
//!   publish; once published, yank with a reason.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use commands::ledger::{NewProduct, NewRelease};
use domain::ids::{AppId, PolicyId};
use domain::ids::{ProductId, ReleaseId};
use domain::policy::{PolicyAction, PolicyTerms, PolicyTermsInput};
use domain::release::Filename;
use domain::values::{
    Arch, Channel, KeyPrefix, LicenseModel, Name, NewName, Platform, ProductKind, Reason,
};
use projections::queries::Order;

use super::{
    Names, Nav, UiError, UiForm, Viewer, after_change, feature_codes, form_key, html, invalid,
    seat_count,
};
use crate::auth::Permission;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/products", get(products).post(define_product))
        .route("/products/{id}", get(product))
        .route("/products/{id}/releases", post(draft))
        .route("/products/{id}/policies", post(define_policy))
        .route("/policies/{id}", get(policy).post(revise_policy))
        .route("/policies/{id}/retire", post(retire_policy))
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
    viewer.require(Permission::Read, "products and releases are the vendor's")
}

fn admin(viewer: &Viewer) -> Result<(), UiError> {
    viewer.require(
        Permission::Admin,
        "changing products, policies and releases is the administrator's",
    )
}

#[derive(Template)]
#[template(path = "products.html")]
struct ProductsPage {
    nav: Nav,
    products: Vec<application::views::ProductView>,
    more: bool,
    may_change: bool,
    kinds: Vec<&'static str>,
    form_key: String,
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
            may_change: admin(&viewer).is_ok(),
            kinds: ProductKind::ALL.to_vec(),
            form_key: form_key(),
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
    /// The one-time key of the release draft's form (the policy's is `form_key`).
    draft_key: String,
    /// The form defining a new policy, blank.
    fields: PolicyFields,
    models: Vec<&'static str>,
}

/// A policy as the product page lists it: its terms as `name: value` pairs.
struct PolicyRow {
    id: uuid::Uuid,
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
            id: p.id,
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
            draft_key: form_key(),
            fields: PolicyFields::blank(),
            models: LicenseModel::ALL.to_vec(),
        },
    ))
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
    let entitlements = feature_codes(form.get("entitlements"), "the entitlements")?;
    let context = form.command(&format!("draft/{product_id}"));
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

// ----- defining products and policies -----

async fn define_product(State(state): State<AppState>, form: UiForm) -> Result<Response, UiError> {
    admin(&form.viewer)?;
    let name = NewName::parse(form.require("name")?)
        .map_err(invalid("the name"))?
        .into_name();
    let kind = ProductKind::parse(form.require("kind")?).map_err(invalid("the kind"))?;
    let app_id = form
        .get("app_id")
        .map(|raw| {
            AppId::parse_str(raw).map_err(|e| UiError::BadRequest(format!("the App GUID: {e}")))
        })
        .transpose()?;
    let parent_product_id = form
        .get("parent_product_id")
        .map(|raw| {
            raw.parse::<ProductId>()
                .map_err(|_| UiError::BadRequest("the parent product: not a product".into()))
        })
        .transpose()?;
    let key_prefix = form
        .get("key_prefix")
        .map(KeyPrefix::parse)
        .transpose()
        .map_err(invalid("the key prefix"))?;
    let context = form.command("define-product");
    let written = state
        .app
        .catalogue()
        .create_product(
            &context,
            NewProduct {
                name,
                kind,
                app_id,
                parent_product_id,
                key_prefix,
            },
        )
        .await?;
    after_change(&state, &format!("/products/{}", written.view.id)).await
}

/// A policy form's fields as the page shows them: blank, or a policy's present terms.
struct PolicyFields {
    name: String,
    model: &'static str,
    seats: String,
    duration_days: String,
    trial_days: String,
    features: String,
    offline_allowed: bool,
    offline_grace_days: String,
    payment_grace_days: String,
    maintenance_months: String,
    lease_seconds: String,
    /// Each channel, and whether the policy's licenses see it.
    channels: Vec<(&'static str, bool)>,
}

impl PolicyFields {
    fn blank() -> Self {
        Self {
            name: String::new(),
            model: LicenseModel::NodeLocked.as_str(),
            seats: "1".into(),
            duration_days: "365".into(),
            trial_days: "0".into(),
            features: String::new(),
            offline_allowed: false,
            offline_grace_days: "0".into(),
            payment_grace_days: "7".into(),
            maintenance_months: "12".into(),
            lease_seconds: String::new(),
            channels: Channel::ALL
                .iter()
                .map(|c| (*c, *c == Channel::Stable.as_str()))
                .collect(),
        }
    }

    fn of(name: &str, terms: &PolicyTerms) -> Self {
        let opt = |v: Option<u32>| v.map_or_else(String::new, |v| v.to_string());
        Self {
            name: name.to_owned(),
            model: terms.model.as_str(),
            seats: terms.seats.get().to_string(),
            duration_days: opt(terms.duration_days),
            trial_days: terms.trial_days.to_string(),
            features: terms
                .features
                .iter()
                .map(|f| f.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            offline_allowed: terms.offline_allowed,
            offline_grace_days: terms.offline_grace_days.to_string(),
            payment_grace_days: terms.payment_grace_days.to_string(),
            maintenance_months: opt(terms.maintenance_months),
            lease_seconds: opt(terms.lease_seconds),
            channels: Channel::ALL
                .iter()
                .map(|c| (*c, terms.channels.iter().any(|t| t.as_str() == *c)))
                .collect(),
        }
    }
}

/// A whole number of form field `field` (`what` names it in the refusal), if given.
fn number(form: &UiForm, field: &str, what: &str) -> Result<Option<u32>, UiError> {
    form.get(field)
        .map(|raw| {
            raw.parse::<u32>()
                .map_err(|_| UiError::BadRequest(format!("{what}: a whole number")))
        })
        .transpose()
}

/// The name and terms a policy form states, checked by the domain as the API's body is.
fn policy_terms(form: &UiForm) -> Result<(Name, PolicyTerms), UiError> {
    let name = NewName::parse(form.require("name")?)
        .map_err(invalid("the name"))?
        .into_name();
    let model = LicenseModel::parse(form.require("model")?).map_err(invalid("the model"))?;
    let seats = seat_count(form.require("seats")?)?;
    let features = feature_codes(form.get("features"), "the features")?;
    let channels: Vec<Channel> = Channel::ALL
        .iter()
        .filter(|c| form.get(&format!("channel_{c}")).is_some())
        .map(|c| Channel::parse(c).map_err(invalid("the channels")))
        .collect::<Result<_, _>>()?;
    let terms = PolicyTerms::new(PolicyTermsInput {
        model,
        seats,
        // Blank is perpetual, as the API's explicit null.
        duration_days: number(form, "duration_days", "the duration in days")?,
        trial_days: number(form, "trial_days", "the trial in days")?,
        features,
        offline_allowed: form.get("offline_allowed").is_some(),
        offline_grace_days: number(form, "offline_grace_days", "the offline grace in days")?
            .unwrap_or(0),
        payment_grace_days: number(form, "payment_grace_days", "the payment grace in days")?
            .unwrap_or(0),
        maintenance_months: number(form, "maintenance_months", "the maintenance in months")?,
        lease_seconds: number(form, "lease_seconds", "the lease in seconds")?,
    })
    .and_then(|terms| terms.with_channels(&channels))
    .map_err(|e| UiError::BadRequest(e.to_string()))?;
    Ok((name, terms))
}

async fn define_policy(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: UiForm,
) -> Result<Response, UiError> {
    admin(&form.viewer)?;
    let product_id = product_id(&raw)?;
    let (name, terms) = policy_terms(&form)?;
    let context = form.command(&format!("define-policy/{product_id}"));
    let written = state
        .app
        .catalogue()
        .create_policy(&context, product_id, name, terms)
        .await?;
    after_change(&state, &format!("/policies/{}", written.view.id)).await
}

#[derive(Template)]
#[template(path = "policy.html")]
struct PolicyPage {
    nav: Nav,
    policy: PolicyRow,
    product_id: uuid::Uuid,
    product_name: String,
    may_change: bool,
    fields: PolicyFields,
    models: Vec<&'static str>,
    form_key: String,
    /// The retirement's own one-time key (the revision's is `form_key`).
    retire_key: String,
}

fn policy_id(raw: &str) -> Result<PolicyId, UiError> {
    raw.parse().map_err(|_| UiError::NotFound)
}

async fn policy(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(raw): Path<String>,
) -> Result<Response, UiError> {
    read(&viewer)?;
    let view = state.app.catalogue().policy(policy_id(&raw)?).await?;
    let terms: PolicyTerms = serde_json::from_value(view.terms.clone()).map_err(|e| {
        tracing::error!(error = %e, "a policy's terms did not read back");
        UiError::Unavailable
    })?;
    let product_name = Names::of(&state, [view.product_id])
        .await?
        .name(&view.product_id);
    Ok(html(
        StatusCode::OK,
        &PolicyPage {
            nav: viewer.nav(),
            fields: PolicyFields::of(&view.name, &terms),
            product_id: view.product_id,
            product_name,
            policy: PolicyRow::of(view),
            may_change: admin(&viewer).is_ok(),
            models: LicenseModel::ALL.to_vec(),
            form_key: form_key(),
            retire_key: form_key(),
        },
    ))
}

async fn revise_policy(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: UiForm,
) -> Result<Response, UiError> {
    admin(&form.viewer)?;
    let id = policy_id(&raw)?;
    let (name, terms) = policy_terms(&form)?;
    let context = form.command(&format!("revise-policy/{id}"));
    state
        .app
        .catalogue()
        .change_policy(&context, id, PolicyAction::Revise { name, terms })
        .await?;
    after_change(&state, &format!("/policies/{id}")).await
}

async fn retire_policy(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: UiForm,
) -> Result<Response, UiError> {
    admin(&form.viewer)?;
    let id = policy_id(&raw)?;
    if form.get("confirm").is_none() {
        return Err(UiError::BadRequest(
            "tick the box to confirm the retirement".into(),
        ));
    }
    let context = form.command(&format!("retire-policy/{id}"));
    state
        .app
        .catalogue()
        .change_policy(&context, id, PolicyAction::Retire)
        .await?;
    after_change(&state, &format!("/policies/{id}")).await
}

#[derive(Template)]
#[template(path = "release.html")]
struct ReleasePage {
    nav: Nav,
    release: application::views::ReleaseView,
    product_name: String,
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
    let product_name = Names::of(&state, [release.product_id])
        .await?
        .name(&release.product_id);
    Ok(html(
        StatusCode::OK,
        &ReleasePage {
            nav: viewer.nav(),
            product_name,
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
    let context = form.command(&format!("publish/{id}"));
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
    let context = form.command(&format!("yank/{id}"));
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
