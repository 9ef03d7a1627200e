//! The web UI's login and logout (API.md "Web UI"; ADR 0025):
//!
//! - `GET /auth/login?return_to=/path` starts a login (`application::sessions::Sessions::begin`)
//!   and redirects to the provider, setting the login, sealed, in a short-lived cookie scoped
//!   to the callback (nothing is stored on the server);
//! - `GET /auth/callback?code=…&state=…` finishes it, sets the session cookie, and goes back to
//!   `return_to`; a provider's `error` (the user cancelled, say) shows a page with it;
//! - `POST /auth/logout` (a form with the CSRF token) ends the session and clears the cookie.
//!
//! Every failure of a login shows a page that says what to do; why, for the operator, is logged
//! (never a code, token or cookie).

use application::sessions::{LOGIN_TIMEOUT, LoginError};
use askama::Template;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::{UiError, UiForm, cookie, html, secure, session_cookie};
use crate::request_id::RequestId;
use crate::state::AppState;

/// The login's cookie (the login in flight, sealed). Behind https it is `__Host-` (so no sibling subdomain can plant
/// its own state and finish the victim's login as the attacker) and hence `Path=/`; on plain
/// http it is only sent to the callback.
fn login_cookie(state: &AppState) -> (&'static str, &'static str) {
    if secure(state) {
        ("__Host-ledger_login", "/")
    } else {
        ("ledger_login", "/auth/callback")
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/logout", post(logout))
        .route("/auth/logged-out", get(logged_out))
}

#[derive(Template)]
#[template(path = "login_failed.html")]
struct LoginFailed<'a> {
    title: &'a str,
    detail: &'a str,
    retry: bool,
}

fn failed(status: StatusCode, title: &str, detail: &str, retry: bool) -> Response {
    html(
        status,
        &LoginFailed {
            title,
            detail,
            retry,
        },
    )
}

fn login_failed(e: &LoginError) -> Response {
    match e {
        LoginError::NotConfigured => failed(
            StatusCode::SERVICE_UNAVAILABLE,
            "Login is not configured",
            "This server has no login for its web UI yet. Its operator starts it with \
             --oidc-issuer and --ui-oidc-client-id (see the README's \"Web UI\").",
            false,
        ),
        LoginError::Provider(why) => {
            tracing::warn!(reason = %why, "web UI login: the identity provider failed");
            failed(
                StatusCode::SERVICE_UNAVAILABLE,
                "The identity provider did not answer",
                "Logging in needs the identity provider, which could not be reached. Try again \
                 in a moment.",
                true,
            )
        }
        LoginError::Refused(why) => {
            tracing::info!(reason = %why, "web UI login refused");
            failed(
                StatusCode::BAD_REQUEST,
                "The login did not complete",
                "This login is not valid any more (it took too long, was finished already, or \
                 was started in another browser). Start again.",
                true,
            )
        }
        LoginError::NoUser(why) => {
            tracing::info!(reason = %why, "web UI login: no active user");
            failed(
                StatusCode::FORBIDDEN,
                "No access",
                "You are logged in at the identity provider, but this ledger has no active user \
                 for you. Ask an administrator of your organization to invite your e-mail \
                 address.",
                false,
            )
        }
        LoginError::App(e) => {
            tracing::error!(error = %e, "web UI login failed");
            failed(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "The server could not complete the login just now. Try again in a moment.",
                true,
            )
        }
    }
}

/// `name=value` with the flags every cookie of the UI has.
fn set_cookie(
    state: &AppState,
    name: &str,
    value: &str,
    path: &str,
    max_age: Option<u64>,
) -> HeaderValue {
    let mut cookie = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Lax");
    if secure(state) {
        cookie.push_str("; Secure");
    }
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    // Values are base64url and names constants: always a valid header.
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The one query parameter `name`, decoded.
fn param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

async fn login(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let return_to = param(query.as_deref(), "return_to").unwrap_or_else(|| "/".to_owned());
    match state.app.sessions().begin(&return_to).await {
        Ok(started) => {
            let mut response = Redirect::to(&started.url).into_response();
            let (name, path) = login_cookie(&state);
            response.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(
                    &state,
                    name,
                    &started.cookie,
                    path,
                    Some(LOGIN_TIMEOUT.as_secs()),
                ),
            );
            response
        }
        Err(e) => login_failed(&e),
    }
}

async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::Extension(request_id): axum::Extension<RequestId>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.as_deref();
    if let Some(error) = param(query, "error") {
        // The provider's answer (RFC 6749 4.1.2.1): the user said no, or the client is not
        // registered as configured.
        tracing::info!(error = %application::oidc::short(&error), "web UI login: the identity provider answered an error");
        let detail = if error == "access_denied" {
            "The identity provider did not let you in (the login was cancelled or refused)."
        } else {
            "The identity provider refused the login. If this persists, its operator should \
             check the ledger's client there (its redirect URI is this server's /auth/callback)."
        };
        return failed(StatusCode::FORBIDDEN, "The login was refused", detail, true);
    }
    let (Some(code), Some(login_state)) = (param(query, "code"), param(query, "state")) else {
        return failed(
            StatusCode::BAD_REQUEST,
            "The login did not complete",
            "This address is where the identity provider sends you back; it needs its code and \
             state. Start again.",
            true,
        );
    };
    let (login_name, login_path) = login_cookie(&state);
    let browser_login = cookie(&headers, login_name);
    if browser_login.is_none() {
        // The provider sends the browser back to the public URL: a login started under
        // another name of this server (localhost for 127.0.0.1) left its cookie there.
        let detail = format!(
            "This browser started no login at {0}. If you opened this server under another \
             address, open {0}/ instead and log in from there.",
            state.app.public_url()
        );
        let mut response = failed(
            StatusCode::BAD_REQUEST,
            "The login did not complete",
            &detail,
            true,
        );
        response.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(&state, login_name, "", login_path, Some(0)),
        );
        return response;
    }
    let finished = state
        .app
        .sessions()
        .finish(&login_state, &code, browser_login, &request_id.0)
        .await;
    let mut response = match finished {
        Ok(session) => {
            // A session this browser held before (another user on a shared machine) ends: one
            // browser, one session.
            if let Some(previous) = cookie(&headers, session_cookie(&state))
                && let Err(e) = state.app.sessions().end(previous).await
            {
                tracing::warn!(error = %e, "web UI login: the previous session could not be ended");
            }
            let mut response = Redirect::to(&session.return_to).into_response();
            // A session cookie (no Max-Age): the browser forgets it when it closes; the server
            // ends it at its idle limit or lifetime anyway.
            response.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(&state, session_cookie(&state), &session.token, "/", None),
            );
            response
        }
        Err(e) => login_failed(&e),
    };
    // The login's cookie has served, whatever the outcome.
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&state, login_name, "", login_path, Some(0)),
    );
    response
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<UiForm, Response>,
) -> Response {
    match form {
        Ok(_) => {}
        // A missing or stale token, or another site's form: nobody is logged out by a forgery.
        Err(refused) if refused.status() == StatusCode::FORBIDDEN => return refused,
        // No live session (expired already): nothing to end.
        Err(_) => return Redirect::to("/").into_response(),
    }
    if let Some(token) = cookie(&headers, session_cookie(&state))
        && let Err(e) = state.app.sessions().end(token).await
    {
        return UiError::from(e).into_response();
    }
    let mut response = Redirect::to("/auth/logged-out").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&state, session_cookie(&state), "", "/", Some(0)),
    );
    response
}

#[derive(Template)]
#[template(path = "logged_out.html")]
struct LoggedOut;

async fn logged_out() -> Response {
    html(StatusCode::OK, &LoggedOut)
}
