//! `Idempotency-Key` on every write (API.md "API conventions", ADR 0016): the middleware that
//! claims a request's key in the application's store before the handler runs and keeps the
//! handler's answer after it, so that a retry with the same key and request is answered the first
//! answer again, byte for byte (status, headers, body), with `Idempotent-Replayed: true`, and
//! executes nothing.
//!
//! - Another request (method, path and query, body) with a used key: 422 `IDEMPOTENCY_KEY_REUSED`.
//! - The first request still running: 409 `IDEMPOTENCY_IN_PROGRESS` with `Retry-After: 1`
//!   (answered at once rather than waited for: a client's retry loop already handles 409s, and a
//!   waiting request would hold a connection and a worker for as long as the first one runs).
//! - Keys are scoped per principal: the administration token (`token:<id>`) on the administration
//!   routes, the license key on the client routes (`key:<keyed hash>`, the hash the ledger already
//!   keys licenses by; never the key itself). The same key sent by two principals runs twice.
//! - What is kept: successes that executed (2xx, the key recorded on an event) and replays the
//!   events' index re-derived. A refusal, a failure, or a success that changed nothing executed
//!   nothing; its claim is released and a retry is evaluated afresh. A keyed request whose client
//!   went away, or whom the deadline answered 503, runs to its end all the same and keeps its
//!   answer (see [`run`]).
//! - Where: claims and fresh answers in the server's memory, answers written to the table just
//!   after the response (`application::idempotency`); a retry the memory does not hold runs its
//!   handler, whose command finds the key on its first event (the events' index), appends
//!   nothing and answers the first outcome, which this middleware then replaces by the stored
//!   first answer's bytes. A server killed midway holds no claim: its retry runs the same way.
//! - `POST /v1/validate` takes no key: it appends nothing and answers the license as it is now.
//!
//! A request without the header costs nothing here but looking for it.

use application::idempotency::{Claim, Claimed, IdempotencyStore, StoredAnswer};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::ErrorCode;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// The request header.
pub const HEADER: &str = "idempotency-key";

/// The answer header that marks a replay.
pub const REPLAYED: &str = "idempotent-replayed";

/// What the middleware needs: the application.
#[derive(Clone)]
pub struct Idempotency {
    state: AppState,
}

impl Idempotency {
    /// The middleware's state.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// The idempotency key as the events record it (their `idempotency_key`, looked up with the
/// events' actor): the key itself, or for an impersonation `impersonation:<token id>/<key>`,
/// whose events name the user as their actor: the staff member's keys are not the user's.
pub fn event_key(principal: &crate::auth::Principal, key: String) -> String {
    match &principal.access.impersonation {
        Some(i) => format!("impersonation:{}/{key}", i.token),
        None => key,
    }
}

/// The `Idempotency-Key` of a request, checked: absent, or 1-255 visible ASCII characters.
///
/// # Errors
/// 400 `INVALID_IDEMPOTENCY_KEY` naming the header.
pub fn key_of(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    // One key per request: with two, which one applies would be whichever a proxy put first.
    if values.next().is_some() {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidIdempotencyKey,
            "send one Idempotency-Key header, not several",
            Some("Idempotency-Key".to_owned()),
        ));
    }
    value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::InvalidIdempotencyKey,
                "Idempotency-Key must be 1-255 visible ASCII characters",
                Some("Idempotency-Key".to_owned()),
            )
        })
}

/// The digest a key is bound to: method, path with query, and body.
pub fn request_digest(method: &Method, path_and_query: &str, body: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(method.as_str().as_bytes());
    hash.update(b"\n");
    hash.update(path_and_query.as_bytes());
    hash.update(b"\n");
    hash.update(body);
    hash.finalize().into()
}

fn is_write(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// Middleware of the administration routes: scoped by the bearer token.
pub async fn admin(State(idem): State<Idempotency>, req: Request, next: Next) -> Response {
    if !is_write(req.method()) || !req.headers().contains_key(HEADER) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    // Authenticated here (the handler reuses the principal from the extensions): the scope must
    // be a principal, never whatever token someone presents. A caller who does not authenticate
    // gets the handler's own 401, and claims nothing.
    let Ok(principal) = Principal::from_request_parts(&mut parts, &idem.state).await else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    let key = match key_of(&parts.headers) {
        Ok(key) => key.unwrap_or_default().to_owned(),
        Err(e) => return e.into_response(),
    };
    let bytes = match read_body(&idem, body).await {
        Ok(bytes) => bytes,
        Err(e) => return e.into_response(),
    };
    // One scope per credential: `token:<id>` (the spelling answers were stored under before
    // users existed, kept so that retries across an upgrade find theirs; an impersonation is its
    // token's, apart from the user's own requests), `user:<id>`.
    let scope = match principal.access.credential() {
        domain::event::Actor::ApiToken(id) => format!("token:{id}"),
        other => other.to_string(),
    };
    run(&idem, scope, key, parts, bytes, next).await
}

#[derive(Deserialize)]
struct KeyOnly {
    key: Option<String>,
}

/// The scope of a client request's keys: the license key's keyed hash (the hash the ledger
/// already keys licenses by; never the key itself).
pub fn client_scope(state: &AppState, license_key: &str) -> String {
    format!("key:{}", state.app.key_hash(license_key).to_hex())
}

/// Middleware of the client routes: scoped by the license key in the body. Only a request whose
/// key opens a license of the application presenting it (the client edge, as the handler checks
/// it) claims anything: a missing `X-App-Id`, a malformed or unknown key runs the handler, which
/// refuses it, and leaves no row behind (an attacker's 100 keyed requests without `X-App-Id` left
/// 100 stored refusals, all in the one scope of malformed keys, where strangers' keys collided).
pub async fn client(State(idem): State<Idempotency>, req: Request, next: Next) -> Response {
    if !is_write(req.method())
        || crate::openapi::KEYLESS_WRITES.contains(&req.uri().path())
        || !req.headers().contains_key(HEADER)
    {
        return next.run(req).await;
    }
    let key = match key_of(req.headers()) {
        Ok(key) => key.unwrap_or_default().to_owned(),
        Err(e) => return e.into_response(),
    };
    let (parts, body) = req.into_parts();
    let bytes = match read_body(&idem, body).await {
        Ok(bytes) => bytes,
        Err(e) => return e.into_response(),
    };
    // A body without a readable key, or a key that opens no license of the presented
    // application, is refused by the handler, which runs nothing: no claim.
    let license_key = serde_json::from_slice::<KeyOnly>(&bytes)
        .ok()
        .and_then(|b| b.key);
    let app_id = parts
        .headers
        .get("x-app-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| domain::ids::AppId::parse_str(v).ok());
    let opens = match (&license_key, &app_id) {
        (Some(license_key), Some(app_id)) => idem
            .state
            .app
            .open_license(app_id, license_key)
            .await
            .is_ok(),
        _ => false,
    };
    let (Some(license_key), true) = (license_key, opens) else {
        return next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
    };
    let scope = client_scope(&idem.state, &license_key);
    run(&idem, scope, key, parts, bytes, next).await
}

async fn read_body(idem: &Idempotency, body: Body) -> Result<Bytes, ApiError> {
    let limit = idem.state.config.max_body_bytes;
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("the body is larger than {limit} bytes, or could not be read"),
        )
    })
}

/// Claims `key` in `scope`, then replays, refuses, or runs the request and keeps its answer.
///
/// All of it runs in a task of its own, which neither the client going away (a reset connection
/// drops the request's future) nor the request deadline (the outer layer answers 503 and drops
/// the request's future) cuts, and which has no bound of its own: cut between its command's
/// statement and its answer's keeping, the retry would be answered from the events, where a
/// token's or license key's secret is not — and a statement already sent runs on in PostgreSQL
/// whatever becomes of the future that sent it, so no bound here could stop it from committing.
/// Found by attackers resetting connections (`tests/tests/admin_api/idempotency.rs` resets them)
/// and holding the events' lock past the deadline, then past four deadlines, the bound this task
/// had (`tests/tests/idempotency_served.rs`). Meanwhile the key's claim is held: 409.
async fn run(
    idem: &Idempotency,
    scope: String,
    key: String,
    parts: axum::http::request::Parts,
    bytes: Bytes,
    next: Next,
) -> Response {
    use tracing::Instrument;
    let idem = idem.clone();
    let task = tokio::spawn(
        async move { execute(&idem, scope, key, parts, bytes, next).await }
            .instrument(tracing::Span::current()),
    );
    match task.await {
        Ok(response) => response,
        Err(e) => ApiError::internal(&e).into_response(),
    }
}

async fn execute(
    idem: &Idempotency,
    scope: String,
    key: String,
    parts: axum::http::request::Parts,
    bytes: Bytes,
    next: Next,
) -> Response {
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |p| p.as_str());
    let digest = request_digest(&parts.method, target, &bytes);
    let store = idem.state.app.idempotency();
    let claim = match store.claim(&scope, &key, &digest) {
        Claimed::Fresh(claim) => claim,
        Claimed::Replay(answer) => return replay(answer),
        Claimed::InProgress => return in_progress(),
        Claimed::Reused => return reused(),
    };
    let mut guard = Held {
        store: store.clone(),
        claim: Some(claim),
    };
    let (response, seen) =
        commands::replays::observe(next.run(Request::from_parts(parts, Body::from(bytes)))).await;
    let (head, body) = response.into_parts();
    if !seen.recorded {
        // Not a first execution, or not one at all. The events' index found the key recorded
        // by an earlier request (the command appended nothing and answered that request's
        // outcome), or the request appended nothing (a command with nothing to change, a
        // refusal: an offline deactivation of a device the first request freed). The answer
        // stored for the key, if any, is the first answer byte for byte, secrets included;
        // without one (a first request that changed nothing, an answer pruned or lost with a
        // server that died before writing it), this one stands.
        match store.stored(&scope, &key, &digest).await {
            Ok(Some(Claimed::Replay(first))) => {
                guard.release();
                return replay(first);
            }
            Ok(Some(_)) => {
                guard.release();
                return reused();
            }
            Ok(None) => {}
            Err(e) => {
                // Not kept: a re-derived answer must not stand in for a first answer that is
                // stored but could not be read.
                tracing::warn!(error = %e, "could not read a stored idempotent answer; answering without it");
                guard.release();
                return Response::from_parts(head, body);
            }
        }
    }
    let mut head = head;
    if seen.replayed && head.status.is_success() {
        // The events' index answered the first request's outcome: a replay, whether or not the
        // handler marks it (the client routes' handlers do not).
        head.headers
            .insert(REPLAYED, HeaderValue::from_static("true"));
    }
    // Kept: a first execution's success, or a replay re-derived from the events (stored only
    // where no answer is). Not kept: a refusal or failure, and a success that changed nothing
    // (no event recorded the key, so nothing would stop its retry from running the command
    // again once the memory forgot it: it is evaluated afresh every time instead, ADR 0019).
    if !is_kept(head.status) || !(seen.recorded || seen.replayed) {
        guard.release();
        return Response::from_parts(head, body);
    }
    // Handlers answer from memory, so collecting the body costs a copy of what is in hand.
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        guard.release();
        return ApiError::internal(&"an answer's body could not be read").into_response();
    };
    let answer = StoredAnswer {
        status: head.status.as_u16(),
        headers: stored_headers(&head.headers),
        body: bytes.to_vec(),
    };
    guard.complete(&answer, seen.recorded);
    Response::from_parts(head, Body::from(bytes))
}

fn in_progress() -> Response {
    let mut response = ApiError::new(
        StatusCode::CONFLICT,
        ErrorCode::IdempotencyInProgress,
        "a request with this Idempotency-Key is still running; retry shortly for its answer",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn reused() -> Response {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::IdempotencyKeyReused,
        "this Idempotency-Key was already used with a different request",
    )
    .into_response()
}

/// Whether an answer is kept for replays: a success only. A refusal (4xx) or a failure (5xx)
/// executed nothing, so its retry is evaluated afresh rather than refused again for a day: the
/// events' index, which decides for a retry the memory does not hold, knows only of requests
/// that appended (ADR 0016).
fn is_kept(status: StatusCode) -> bool {
    status.is_success()
}

/// The headers a replay answers again: the handler's own (`Content-Type`, `Location`, ...), not
/// the framing ones hyper recomputes, nor a replay marker of the events' safety net.
fn stored_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "content-length" | "transfer-encoding" | "connection" | "date" | REPLAYED
            )
        })
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect()
}

fn replay(answer: StoredAnswer) -> Response {
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    for (name, value) in answer.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.append(name, value);
        }
    }
    headers.insert(REPLAYED, HeaderValue::from_static("true"));
    response
}

/// A claim held by a running request: completed or released by the request, or released when
/// the request is dropped midway (the client went away, the deadline struck).
struct Held {
    store: IdempotencyStore,
    claim: Option<Claim>,
}

impl Held {
    fn complete(&mut self, answer: &StoredAnswer, first: bool) {
        let Some(claim) = self.claim.take() else {
            return;
        };
        if let Err(e) = self.store.complete(&claim, answer, first) {
            // The answer is given all the same (the claim was released); a retry runs again and
            // the events' index keeps its command from appending twice.
            tracing::warn!(error = %e, "could not keep an idempotent answer; its key is released");
        }
    }

    fn release(&mut self) {
        if let Some(claim) = self.claim.take() {
            self.store.release(&claim);
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters() {
        let with = |v: &[u8]| {
            let mut h = HeaderMap::new();
            h.insert(HEADER, HeaderValue::from_bytes(v).unwrap());
            key_of(&h).map(|k| k.map(str::to_owned))
        };
        assert_eq!(with(b"order-42").unwrap().as_deref(), Some("order-42"));
        assert!(with(&[b'a'; 255]).is_ok());
        for bad in [
            &b""[..],
            &[b'a'; 256],
            b"two words",
            b"tab\there",
            b"caf\xc3\xa9",
        ] {
            let e = with(bad).unwrap_err();
            assert_eq!(e.code(), "INVALID_IDEMPOTENCY_KEY");
            assert_eq!(e.field(), Some("Idempotency-Key"));
        }
        assert_eq!(key_of(&HeaderMap::new()).unwrap(), None);
        let mut two = HeaderMap::new();
        two.append(HEADER, HeaderValue::from_static("k-1"));
        two.append(HEADER, HeaderValue::from_static("k-2"));
        let e = key_of(&two).unwrap_err();
        assert_eq!(e.code(), "INVALID_IDEMPOTENCY_KEY");
    }

    #[test]
    fn only_successes_are_kept() {
        for kept in [200, 201, 204] {
            assert!(is_kept(StatusCode::from_u16(kept).unwrap()), "{kept}");
        }
        for released in [400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 503] {
            assert!(
                !is_kept(StatusCode::from_u16(released).unwrap()),
                "{released}"
            );
        }
    }
}
