//! The web UI served at `/`: the vendor's admin dashboard and the customer portal (issue #18,
//! ADR 0025). Server-rendered HTML from askama templates (`api/templates`, checked at compile
//! time), one stylesheet of our own, no JavaScript: every page works with a plain form post.
//!
//! - [`auth`]: `GET /auth/login`, `GET /auth/callback`, `POST /auth/logout` (OIDC
//!   authorization code with PKCE; `application::sessions` does the protocol).
//! - [`pages`]: the pages, each asking the application layer exactly what the API asks, with
//!   the same [`application::access::Access`]: a page reaches what the user's API calls reach,
//!   and what is out of reach is the same 404.
//! - [`portal`]: an organization's users (invitations) and downloads.
//! - [`catalog`]: products, their policies (define, revise, retire) and releases (draft, upload,
//!   publish, yank).
//! - [`issue`]: registering an organization and issuing a license (its key shown once).
//! - [`operations`]: the audit trail (with its CSV export) and the billing inbox.
//! - [`svg`]: the dashboard's plots.
//!
//! What holds for every UI route, here:
//! - **Session**: [`Viewer`] reads the session cookie (`HttpOnly`, `SameSite=Lax`, `Secure` and
//!   `__Host-` behind https); without a live session a page redirects to the login.
//! - **CSRF**: every state-changing request is a POST whose form carries the session's token;
//!   [`UiForm`] refuses it (403) otherwise, and also refuses a cross-site `Origin`.
//! - **Headers**: a strict Content-Security-Policy (nothing but this server's own stylesheet;
//!   no script, no frame), `no-store`, `nosniff`, no referrer to other sites.

pub mod auth;
pub mod catalog;
pub mod issue;
pub mod operations;
pub mod pages;
pub mod portal;
pub mod svg;

use application::AppError;
use application::sessions::Session;
use askama::Template;
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::request_id::RequestId;
use crate::state::AppState;

/// The session cookie's name: `__Host-` behind https, so no subdomain nor plain-http page can
/// set or shadow it; browsers refuse that prefix without `Secure`, hence plain-http's name.
pub fn session_cookie(state: &AppState) -> &'static str {
    if secure(state) {
        "__Host-ledger_session"
    } else {
        "ledger_session"
    }
}

/// Whether the server is reached over https (`--public-url`): cookies are then `Secure`.
pub fn secure(state: &AppState) -> bool {
    state.app.public_url().starts_with("https://")
}

/// Every path of the UI: pages for people, not API operations, so not in the OpenAPI document
/// (`tests/tests/openapi.rs` skips exactly these).
pub const PATHS: &[&str] = &[
    "/",
    "/ui/style.css",
    "/auth/login",
    "/auth/callback",
    "/auth/logout",
    "/auth/logged-out",
    "/licenses",
    "/licenses/new",
    "/licenses/{id}",
    "/licenses/{id}/{action}",
    "/organizations",
    "/organizations/new",
    "/organizations/{id}",
    "/installations/{id}/deactivate",
    "/organizations/{id}/users",
    "/users/{id}/impersonate",
    "/impersonation/end",
    "/users/{id}/roles",
    "/users/{id}/deactivate",
    "/users/{id}/reactivate",
    "/organizations/{id}/downloads",
    "/organizations/{id}/offline",
    "/organizations/{id}/audit",
    "/artifacts/{id}/download",
    "/audit",
    "/audit/export",
    "/billing",
    "/billing/{id}/retry",
    "/products",
    "/products/{id}",
    "/products/{id}/releases",
    "/products/{id}/policies",
    "/policies/{id}",
    "/policies/{id}/retire",
    "/releases/{id}",
    "/releases/{id}/publish",
    "/releases/{id}/yank",
    "/releases/{id}/artifacts",
];

/// The largest form a UI page posts (a reason, a few ids).
const MAX_FORM_BYTES: usize = 16 * 1024;

/// Every UI route, with the UI's headers. The server limits them per address like the client
/// routes (`server::app_router`); logins in flight are bounded too (`application::sessions`).
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/ui/style.css", get(stylesheet))
        .merge(auth::routes())
        .merge(pages::routes())
        .merge(portal::routes())
        .merge(operations::routes())
        .merge(catalog::routes())
        .merge(issue::routes())
        .layer(middleware::from_fn_with_state(state.clone(), error_pages))
        .layer(middleware::from_fn(headers))
}

/// The UI's uploads: the headers, but neither the deadline nor a body limit (the artifact
/// store's own limit applies), as the API's transfers.
pub fn transfer_routes(state: &AppState) -> Router<AppState> {
    catalog::transfer_routes()
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state.clone(), error_pages))
        .layer(middleware::from_fn(headers))
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../assets/ui.css"),
    )
        .into_response()
}

/// The UI's security headers on every answer.
async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// A failure a page shows as a page.
#[derive(Debug)]
pub enum UiError {
    /// 404: unknown, or out of the user's reach (the same page either way).
    NotFound,
    /// 403 with what was refused.
    Forbidden(String),
    /// 400 with what is wrong in what was sent.
    BadRequest(String),
    /// 503: the database or the provider failed; try again.
    Unavailable,
    /// A command's refusal (409/422): its message.
    Refused(String),
}

impl From<AppError> for UiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::NotFound { .. } => Self::NotFound,
            AppError::Forbidden(why) => Self::Forbidden(why),
            AppError::InvalidCursor => Self::BadRequest(e.to_string()),
            AppError::InvalidParameter { detail, .. } | AppError::InvalidField { detail, .. } => {
                Self::BadRequest(detail)
            }
            AppError::Command(commands::CommandError::Rejected(r)) => Self::Refused(r.to_string()),
            // A form posted again with other values, a write that raced another, or a value
            // another record holds: the person corrects it or tries again, nothing broke. Said
            // in the page's words, not the API's.
            AppError::Command(commands::CommandError::IdempotencyKeyReused) => Self::Refused(
                "This form was already sent with other values. Reload its page to start again."
                    .into(),
            ),
            AppError::Command(commands::CommandError::ClaimTaken { ref scope, .. }) => {
                Self::Refused(taken(scope).into())
            }
            AppError::Command(e @ commands::CommandError::Conflict { .. }) => {
                Self::Refused(e.to_string())
            }
            other => {
                tracing::error!(error = %other, "web UI request failed");
                Self::Unavailable
            }
        }
    }
}

/// What a form's refusal says when a value it names is another record's (a claim's scope,
/// `commands::ClaimScope`).
fn taken(scope: &str) -> &'static str {
    use domain::stream::ClaimScope;
    if scope == ClaimScope::UserEmail.as_str() {
        "Another user already has this e-mail address."
    } else if scope == ClaimScope::AppId.as_str() {
        "Another product already has this App GUID."
    } else if scope == ClaimScope::ReleaseVersion.as_str() {
        "This product already has a release of this version."
    } else if scope == ClaimScope::UserIdentity.as_str() {
        "Another user is already linked to this identity."
    } else {
        "Another record already holds this value."
    }
}

impl From<crate::error::ApiError> for UiError {
    fn from(e: crate::error::ApiError) -> Self {
        use axum::http::StatusCode as S;
        match e.status() {
            S::NOT_FOUND => Self::NotFound,
            S::FORBIDDEN => Self::Forbidden(e.detail().to_owned()),
            S::BAD_REQUEST | S::UNPROCESSABLE_ENTITY | S::PAYLOAD_TOO_LARGE => {
                Self::BadRequest(e.detail().to_owned())
            }
            S::CONFLICT => Self::Refused(e.detail().to_owned()),
            _ => {
                tracing::error!(code = e.code(), "web UI request failed");
                Self::Unavailable
            }
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    detail: &'a str,
    /// The navigation (and an impersonation's banner) when the request had a session.
    nav: Option<Nav>,
}

/// An error page to render, left in the response's extensions by [`UiError`]: the layer
/// [`error_pages`] renders it with the navigation of the request's session, if any.
#[derive(Clone, Debug)]
struct PendingError {
    title: &'static str,
    detail: String,
}

/// Renders the error pages [`UiError`] leaves, with the navigation bar and the impersonation
/// banner of the request's session (looked up only for an error): a person who hit a 404
/// keeps the way back and the banner's "End".
async fn error_pages(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let session_cookie = cookie(request.headers(), session_cookie(&state)).map(str::to_owned);
    let response = next.run(request).await;
    let Some(pending) = response.extensions().get::<PendingError>().cloned() else {
        return response;
    };
    let nav = match session_cookie {
        Some(token) => state
            .app
            .sessions()
            .get(&token)
            .await
            .ok()
            .flatten()
            .map(|session| {
                Viewer {
                    session,
                    request_id: String::new(),
                }
                .nav()
            }),
        None => None,
    };
    html(
        response.status(),
        &ErrorPage {
            title: pending.title,
            detail: &pending.detail,
            nav,
        },
    )
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let (status, title, detail) = match &self {
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here, or nothing you may see.",
            ),
            Self::Forbidden(why) => (StatusCode::FORBIDDEN, "Not allowed", why.as_str()),
            Self::BadRequest(why) => (StatusCode::BAD_REQUEST, "Bad request", why.as_str()),
            Self::Refused(why) => (StatusCode::CONFLICT, "Refused", why.as_str()),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "The server could not answer just now. Nothing was changed; try again in a moment.",
            ),
        };
        let mut response = status.into_response();
        response.extensions_mut().insert(PendingError {
            title,
            detail: detail.to_owned(),
        });
        response
    }
}

/// A rendered page with its status; a template that fails to render (it cannot, once it
/// compiled, short of a `Display` that fails) is a 500 logged.
pub fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a web UI template failed to render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// What the layout shows of the logged-in user: who, the CSRF token of its logout form, and
/// which part of the UI it sees.
#[derive(Clone, Debug)]
pub struct Nav {
    pub email: String,
    pub csrf: String,
    /// A vendor role: the dashboard, the license search.
    pub vendor: bool,
    /// During an impersonation: the staff member behind it (the banner, and its "End").
    pub impersonated_by: Option<String>,
}

/// The logged-in user of a page: its session and access. A page without one redirects to the
/// login, which comes back to the page.
#[derive(Clone, Debug)]
pub struct Viewer {
    pub session: Session,
    pub request_id: String,
}

impl Viewer {
    /// The layout's view of this user.
    pub fn nav(&self) -> Nav {
        let email = match &self.session.access.kind {
            application::access::PrincipalKind::User { email, .. } => email.as_str().to_owned(),
            application::access::PrincipalKind::Token { id, .. } => id.to_string(),
        };
        Nav {
            email,
            csrf: self.session.csrf.clone(),
            vendor: self
                .session
                .access
                .may_everywhere(domain::reach::Action::ReadLicenses),
            impersonated_by: self
                .session
                .access
                .impersonated_by()
                .map(ToString::to_string),
        }
    }

    /// The API's permission `permission` (everywhere, as the vendor routes ask it), or a 403
    /// saying `refused`.
    ///
    /// # Errors
    /// 403 without it.
    pub fn require(
        &self,
        permission: crate::auth::Permission,
        refused: &str,
    ) -> Result<(), UiError> {
        self.principal()
            .require(permission)
            .map_err(|_| UiError::Forbidden(refused.to_owned()))
    }

    /// The API's principal for the same access, for the same permission checks.
    pub fn principal(&self) -> crate::auth::Principal {
        crate::auth::Principal {
            access: self.session.access.clone(),
        }
    }

    /// The context of a command this user causes from a form: its actor, the request, and the
    /// form's one-time key as the command's idempotency key, so a form posted twice (a double
    /// click, a reload of the answer) records its change once. `request` is what the key's
    /// fingerprint covers (`UiForm::command`: the action and the form's fields).
    pub fn command(&self, form_key: Option<&str>, request: &str) -> commands::CommandContext {
        let principal = self.principal();
        let mut context = commands::CommandContext::new(principal.actor(), &self.request_id);
        context.impersonated_by = principal.access.impersonated_by().cloned();
        if let Some(key) = form_key.filter(|k| is_form_key(k)) {
            // The same key on another request is refused as a reused key.
            let digest = <sha2::Sha256 as sha2::Digest>::digest(format!("{request}\n{key}"));
            context.idempotency = Some(commands::Idempotency {
                key: crate::idempotency::event_key(&principal, format!("ui:{key}")),
                request_hash: hex::encode(digest),
            });
        }
        context
    }
}

/// The names of the organizations and products a page shows, in place of their ids
/// (`Catalogue::names`); an id the read models do not hold yet shows as itself.
#[derive(Debug, Default)]
pub struct Names(std::collections::HashMap<uuid::Uuid, String>);

impl Names {
    /// The names of `ids`, which the page's caller may see.
    pub async fn of(
        state: &AppState,
        ids: impl IntoIterator<Item = uuid::Uuid>,
    ) -> Result<Self, UiError> {
        Ok(Self(state.app.catalogue().names(ids).await?))
    }

    /// What the page shows for `id`.
    pub fn name(&self, id: &uuid::Uuid) -> String {
        self.0.get(id).cloned().unwrap_or_else(|| id.to_string())
    }

    /// With the e-mail addresses of the users among `actors` (audit actors, `user:<id>`):
    /// all of them for the vendor (`within` `None`), else those homed at `within` or below.
    pub async fn with_actors<'a>(
        mut self,
        state: &AppState,
        actors: impl IntoIterator<Item = &'a str>,
        within: Option<domain::ids::OrganizationId>,
    ) -> Result<Self, UiError> {
        let ids = actors.into_iter().filter_map(user_of);
        self.0
            .extend(state.app.catalogue().user_emails(ids, within).await?);
        Ok(self)
    }

    /// What the page shows for an actor: a user's e-mail when known, else the actor as
    /// recorded (`api_token:…`, `system`, a user out of the page's reach).
    pub fn actor(&self, actor: &str) -> String {
        user_of(actor)
            .and_then(|id| self.0.get(&id).cloned())
            .unwrap_or_else(|| actor.to_owned())
    }
}

/// The user an audit actor names (`user:<id>`).
fn user_of(actor: &str) -> Option<uuid::Uuid> {
    actor.strip_prefix("user:")?.parse().ok()
}

/// A refusal of a form's field `what`: a value the domain does not take.
pub fn invalid(what: &'static str) -> impl Fn(domain::values::InvalidValue) -> UiError {
    move |e| UiError::BadRequest(format!("{what}: {e}"))
}

/// A seat count as a form's number field sends it.
///
/// # Errors
/// 400 when it is not a whole number the domain takes.
pub fn seat_count(raw: &str) -> Result<domain::values::SeatCount, UiError> {
    raw.parse::<u32>()
        .map_err(|_| UiError::BadRequest("seats: a whole number".into()))
        .and_then(|n| domain::values::SeatCount::new(n).map_err(invalid("seats")))
}

/// Feature codes as a form's text field takes them: separated by commas or spaces.
///
/// # Errors
/// 400 naming `what` for a malformed code or too many.
pub fn feature_codes(
    text: Option<&str>,
    what: &str,
) -> Result<domain::values::FeatureSet, UiError> {
    let codes: Vec<&str> = text
        .unwrap_or("")
        .split([',', ' '])
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    domain::values::FeatureSet::parse(&codes)
        .map_err(|e| UiError::BadRequest(format!("{what}: {e}")))
}

/// How long a page shown after a change waits for the read models to hold it.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// A redirect to `to` once the read models hold what the request just changed (or
/// [`SETTLE`] has passed): the page the person sees next shows their change.
pub async fn after_change(state: &AppState, to: &str) -> Result<Response, UiError> {
    settled(state).await?;
    Ok(Redirect::to(to).into_response())
}

/// Waits until the read models hold what the request just changed (or [`SETTLE`] has
/// passed), for a page rendered in the answer itself (a new key, shown once).
pub async fn settled(state: &AppState) -> Result<(), UiError> {
    Ok(state.app.settle(SETTLE).await?)
}

/// A form's one-time key: a UUID the page rendered.
fn is_form_key(key: &str) -> bool {
    uuid::Uuid::parse_str(key).is_ok()
}

/// A fresh one-time key for a form.
pub fn form_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Where a request without a session goes: the login, returning to this page (GET only; a
/// form posted without a session goes back to the home page).
fn to_login(parts: &Parts) -> Response {
    let back = if parts.method == axum::http::Method::GET {
        parts
            .uri
            .path_and_query()
            .map_or("/", axum::http::uri::PathAndQuery::as_str)
    } else {
        "/"
    };
    let target: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("return_to", back)
        .finish();
    Redirect::to(&format!("/auth/login?{target}")).into_response()
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(viewer) = parts.extensions.get::<Self>() {
            return Ok(viewer.clone());
        }
        let Some(token) = cookie(&parts.headers, session_cookie(state)) else {
            return Err(to_login(parts));
        };
        let session = state
            .app
            .sessions()
            .get(token)
            .await
            .map_err(|e| UiError::from(e).into_response())?;
        let Some(session) = session else {
            return Err(to_login(parts));
        };
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map_or_else(|| "unknown".to_owned(), |r| r.0.clone());
        tracing::Span::current().record("actor", tracing::field::display(session.access.actor()));
        let viewer = Self {
            session,
            request_id,
        };
        parts.extensions.insert(viewer.clone());
        Ok(viewer)
    }
}

/// A form posted by a logged-in user, its CSRF token checked: the fields by name (each once).
#[derive(Debug)]
pub struct UiForm {
    pub viewer: Viewer,
    fields: Vec<(String, String)>,
}

impl UiForm {
    /// The value of field `name`, if sent and not blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The context of the command this form causes (`Viewer::command`), its idempotency
    /// fingerprint taken over `action` and every field the form sent but its token and key:
    /// the same form posted twice records once, and its key posted again with other values
    /// is refused (as the API refuses a key reused with another body), not answered with the
    /// first change.
    pub fn command(&self, action: &str) -> commands::CommandContext {
        let mut fields: Vec<&(String, String)> = self
            .fields
            .iter()
            .filter(|(n, _)| n != "csrf" && n != "form_key")
            .collect();
        fields.sort();
        let mut request = action.to_owned();
        for (name, value) in fields {
            // Lengths first: no two different forms spell the same text.
            request.push_str(&format!("\n{}:{name}={}:{value}", name.len(), value.len()));
        }
        self.viewer.command(self.get("form_key"), &request)
    }

    /// The value of field `name`.
    ///
    /// # Errors
    /// 400 naming it when missing or blank.
    pub fn require(&self, name: &str) -> Result<&str, UiError> {
        self.get(name)
            .ok_or_else(|| UiError::BadRequest(format!("the form lacks {name}")))
    }
}

impl FromRequest<AppState> for UiForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        check_origin(&parts.headers, state).map_err(IntoResponse::into_response)?;
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| UiError::BadRequest("the form is too large".into()).into_response())?;
        let mut fields: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(&bytes) {
            // The decoder replaces what is not UTF-8; a form of ours never sends that.
            if name.contains('\u{FFFD}') || value.contains('\u{FFFD}') {
                return Err(
                    UiError::BadRequest("the form is not UTF-8 text".into()).into_response()
                );
            }
            if fields.iter().any(|(n, _)| *n == name) {
                return Err(
                    UiError::BadRequest(format!("the form sends {name} twice")).into_response()
                );
            }
            fields.push((name.into_owned(), value.into_owned()));
        }
        let sent = fields
            .iter()
            .find(|(n, _)| n == "csrf")
            .map(|(_, v)| v.as_bytes());
        check_csrf(&viewer, sent).map_err(IntoResponse::into_response)?;
        Ok(Self { viewer, fields })
    }
}

/// A browser names the page a form was posted from: another site's is refused before the
/// token is even read (defence in depth; the token decides).
///
/// # Errors
/// 403 for another origin.
pub fn check_origin(headers: &HeaderMap, state: &AppState) -> Result<(), UiError> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let own = state.app.public_url();
        if origin.to_str().ok() != Some(origin_of(own)) {
            return Err(UiError::Forbidden(
                "this form was posted from another site".into(),
            ));
        }
    }
    Ok(())
}

/// The form's CSRF token `sent` must be the session's (compared in constant time).
///
/// # Errors
/// 403 when missing or another.
pub fn check_csrf(viewer: &Viewer, sent: Option<&[u8]>) -> Result<(), UiError> {
    let valid = sent.is_some_and(|sent| {
        subtle::ConstantTimeEq::ct_eq(sent, viewer.session.csrf.as_bytes()).into()
    });
    if valid {
        Ok(())
    } else {
        tracing::warn!("a web UI form was posted without its session's CSRF token");
        Err(UiError::Forbidden(
            "this form's security token is missing or stale: reload the page and try again".into(),
        ))
    }
}

/// `scheme://host[:port]` of a URL (what browsers send as `Origin`).
fn origin_of(url: &str) -> &str {
    let rest_start = url.find("://").map_or(0, |i| i + 3);
    match url[rest_start..].find('/') {
        Some(i) => &url[..rest_start + i],
        None => url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_and_authority() {
        assert_eq!(origin_of("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(
            origin_of("https://licenses.example.com/ledger"),
            "https://licenses.example.com"
        );
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("xledger_session=no; ledger_session=yes"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("other=1"));
        assert_eq!(cookie(&headers, "ledger_session"), Some("yes"));
        assert_eq!(cookie(&headers, "other"), Some("1"));
        assert_eq!(cookie(&headers, "missing"), None);
    }
}
