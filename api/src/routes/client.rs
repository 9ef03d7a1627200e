//! The client-application API (`X-App-Id` header, license key in the body): validation,
//! activations, floating-lease heartbeats, offline tokens and the JWKS. Contract:
//! `docs/client-protocol.md`.
//!
//! Every request first passes the *edge*: the App GUID is well-formed, the key opens a license,
//! and the license's product has this App GUID. Unknown keys and keys of another application
//! both answer 403 and cost the same work (a malformed key is hashed like a real one; the App
//! GUID is compared in constant time whether or not a license was found), so the answer's timing
//! does not reveal that a key exists under another product.
//!
//! Validation answers from the in-memory validation model; activations and offline tokens are
//! commands on the License aggregate.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use domain::event::Actor;
use domain::ids::{AppId, InstallationId, LicenseId};
use domain::keys::{KeyHash, LicenseKey};
use domain::license::{License, LicenseEvent, LicenseState};
use domain::status::{days_remaining, status_at};
use domain::validation::{self, LicenseFacts};
use domain::values::{
    DeactivationReason, Environment, FeatureCode, Fingerprint, Label, OfflineTokenKind,
};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::extract::{Body, ReqId, parse_json, path_id};
use crate::state::AppState;

/// The client routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/validate", post(validate))
        .route("/v1/activations", post(activate))
        .route("/v1/activations/{id}/deactivate", post(deactivate))
        .route("/v1/activations/{id}/heartbeat", post(heartbeat))
        .route("/v1/offline-tokens", post(offline_token))
}

/// The JWKS route (public, cacheable).
pub fn jwks_routes() -> Router<AppState> {
    Router::new().route("/.well-known/jwks.json", get(jwks))
}

async fn jwks(State(state): State<AppState>) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    (headers, Json(state.signing.jwks())).into_response()
}

/// The App GUID of the request.
fn app_id(headers: &HeaderMap) -> Result<AppId, ApiError> {
    let raw = headers.get("x-app-id").ok_or_else(|| {
        ApiError::bad_request(
            "MISSING_APP_ID",
            "send the product's App GUID in the X-App-Id header",
            Some("X-App-Id".into()),
        )
    })?;
    raw.to_str()
        .ok()
        .and_then(|s| AppId::parse_str(s).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "INVALID_APP_ID",
                "X-App-Id must be a UUID",
                Some("X-App-Id".into()),
            )
        })
}

fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "NOT_FOUND",
        validation::ValidationCode::NotFound.detail(),
    )
}

fn app_mismatch() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "APP_MISMATCH",
        validation::ValidationCode::AppMismatch.detail(),
    )
}

/// The key hash of a presented key. A malformed key is hashed too (as a key no license has), so
/// refusing it costs what refusing a well-formed unknown key costs.
fn key_hash(state: &AppState, raw: &str) -> KeyHash {
    let hasher = state.ledger.hasher();
    match LicenseKey::parse(raw) {
        Ok(key) => hasher.hash(&key),
        Err(_) => {
            let decoy = LicenseKey::from_entropy(
                &domain::values::KeyPrefix::parse("XX").expect("valid"),
                &[0; 20],
            );
            let _ = hasher.hash(&decoy);
            KeyHash::from_bytes([0; 32])
        }
    }
}

/// Whether the license's App GUID is the request's, compared in constant time; with no license,
/// compared against a decoy so both paths do the same work.
fn same_app(found: Option<&AppId>, presented: &AppId) -> (bool, bool) {
    const DECOY: [u8; 16] = [0xA5; 16];
    let expected = found.map_or(&DECOY, |a| a.as_uuid().as_bytes());
    let equal: bool = expected.ct_eq(presented.as_uuid().as_bytes()).into();
    (found.is_some(), equal)
}

/// The edge for commands: the license a key opens for this application. Falls back to the claims
/// table when the in-memory model does not know the key yet (a license issued a moment ago).
async fn edge_license(state: &AppState, app: &AppId, raw_key: &str) -> Result<LicenseId, ApiError> {
    let hash = key_hash(state, raw_key);
    let in_memory = state.validation.with_key(&hash, |entry| {
        let (found, same) = same_app(entry.map(|e| &e.class.app_id), app);
        (found, same, entry.map(|e| e.license_id))
    });
    match in_memory {
        (true, true, Some(id)) => Ok(id),
        (true, false, _) => Err(app_mismatch()),
        _ => {
            let Some(id) = state.ledger.license_by_key_hash(&hash).await? else {
                return Err(not_found());
            };
            let loaded = state
                .ledger
                .store()
                .read::<License>(&id.to_string())
                .await?;
            let license = loaded.aggregate.state().ok_or_else(not_found)?;
            // A rotated-away key keeps its claim: the license's current key must be this one.
            if !license.key_hash.ct_eq(&hash) {
                return Err(not_found());
            }
            match same_app(Some(&license.app_id), app) {
                (_, true) => Ok(id),
                _ => Err(app_mismatch()),
            }
        }
    }
}

// ----- validation -----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidateBody {
    key: String,
    #[serde(default)]
    fingerprint: Option<Fingerprint>,
    #[serde(default)]
    features: Vec<FeatureCode>,
}

/// Feature codes as a JSON array, straight from the set (no copy).
struct Codes<'a>(&'a domain::values::FeatureSet);

impl serde::Serialize for Codes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(FeatureCode::as_str))
    }
}

#[derive(serde::Serialize)]
struct PolicyInfo {
    id: domain::ids::PolicyId,
    version: u32,
    model: &'static str,
}

#[derive(serde::Serialize)]
struct LicenseInfo<'a> {
    id: LicenseId,
    status: &'static str,
    product_id: domain::ids::ProductId,
    policy: PolicyInfo,
    features: Codes<'a>,
    seats: u32,
    activations: u32,
    expires_at: Option<domain::Timestamp>,
    trial_days_remaining: Option<u32>,
}

#[derive(serde::Serialize)]
struct Answer<'a> {
    valid: bool,
    code: &'static str,
    detail: std::borrow::Cow<'static, str>,
    license: LicenseInfo<'a>,
    warnings: &'a [validation::Warning],
}

/// The validation answer for `e`, serialized while the model's entry is borrowed.
fn answer_json(
    e: &projections::validation::ValidationEntry,
    body: &ValidateBody,
    now: domain::Timestamp,
) -> Vec<u8> {
    let decision = validation::decide(
        e,
        now,
        body.fingerprint.as_ref().map(Fingerprint::as_str),
        &body.features,
    );
    let detail = if decision.missing_features.is_empty() {
        std::borrow::Cow::Borrowed(decision.code.detail())
    } else {
        let missing: Vec<&str> = decision
            .missing_features
            .iter()
            .map(FeatureCode::as_str)
            .collect();
        std::borrow::Cow::Owned(format!(
            "{}: {}",
            decision.code.detail(),
            missing.join(", ")
        ))
    };
    let answer = Answer {
        valid: decision.valid(),
        code: decision.code.as_str(),
        detail,
        license: LicenseInfo {
            id: e.license_id,
            status: status_at(e, now).as_str(),
            product_id: e.class.product_id,
            policy: PolicyInfo {
                id: e.class.policy_id,
                version: e.class.policy_version,
                model: e.model().as_str(),
            },
            features: Codes(&e.features),
            seats: e.seats(),
            activations: e.active_installations(now),
            expires_at: e.expires_at(),
            trial_days_remaining: e
                .trial_ends_at()
                .filter(|_| !e.subscribed())
                .map(|end| days_remaining(now, end)),
        },
        warnings: &decision.warnings,
    };
    serde_json::to_vec(&answer).unwrap_or_default()
}

async fn validate(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let app = app_id(&headers)?;
    let body: ValidateBody = parse_json(&body)?;
    let hash = key_hash(&state, &body.key);
    let now = state.ledger.now();
    let answer = state.validation.with_key(&hash, |entry| {
        let (found, same) = same_app(entry.map(|e| &e.class.app_id), &app);
        match entry {
            Some(e) if found && same => Ok(answer_json(e, &body, now)),
            Some(_) => Err(app_mismatch()),
            None => Err(not_found()),
        }
    })?;
    let mut response = answer.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

// ----- activations -----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivateBody {
    key: String,
    fingerprint: Fingerprint,
    #[serde(default)]
    hostname: Option<Label>,
    #[serde(default)]
    platform: Option<Label>,
    #[serde(default)]
    environment: Option<Environment>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    key: String,
}

fn client_context(request_id: String) -> commands::CommandContext {
    commands::CommandContext::new(Actor::Client, request_id)
}

fn installation_json(
    license_id: LicenseId,
    state: &LicenseState,
    installation_id: InstallationId,
) -> Option<Value> {
    let a = state.activations.get(&installation_id)?;
    Some(json!({
        "installation_id": installation_id,
        "license_id": license_id,
        "fingerprint": a.fingerprint.as_str(),
        "environment": a.environment.as_str(),
        "hostname": a.hostname.as_ref().map(Label::as_str),
        "platform": a.platform.as_ref().map(Label::as_str),
        "activated_at": a.activated_at,
        "lease_expires_at": a.lease_expires_at,
    }))
}

async fn activate(
    State(state): State<AppState>,
    ReqId(request_id): ReqId,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let app = app_id(&headers)?;
    let body: ActivateBody = parse_json(&body)?;
    let license_id = edge_license(&state, &app, &body.key).await?;
    let fingerprint = body.fingerprint.clone();
    let outcome = state
        .ledger
        .activate(
            &client_context(request_id),
            license_id,
            body.fingerprint,
            body.hostname,
            body.platform,
            body.environment.unwrap_or(Environment::Production),
        )
        .await?;
    state.observe(&outcome);
    let license = outcome
        .aggregate
        .state()
        .ok_or_else(|| ApiError::internal(&"activation left no license"))?;
    let now = state.ledger.now();
    let installation = license
        .installation_of(fingerprint.as_str(), now)
        .ok_or_else(|| ApiError::internal(&"activation left no installation"))?;
    let status = if outcome.appended.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let body = installation_json(license_id, license, installation)
        .ok_or_else(|| ApiError::internal(&"installation vanished"))?;
    Ok((status, Json(body)).into_response())
}

async fn deactivate(
    State(state): State<AppState>,
    ReqId(request_id): ReqId,
    Path(raw): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let app = app_id(&headers)?;
    let body: KeyBody = parse_json(&body)?;
    let installation_id: InstallationId = path_id(&raw, "INSTALLATION_NOT_FOUND", "installation")?;
    let license_id = edge_license(&state, &app, &body.key).await?;
    let before = state
        .ledger
        .store()
        .read::<License>(&license_id.to_string())
        .await?;
    let snapshot = before
        .aggregate
        .state()
        .and_then(|s| installation_json(license_id, s, installation_id));
    let outcome = state
        .ledger
        .deactivate(
            &client_context(request_id),
            license_id,
            installation_id,
            DeactivationReason::Client,
        )
        .await?;
    state.observe(&outcome);
    let mut body = snapshot
        .unwrap_or_else(|| json!({"installation_id": installation_id, "license_id": license_id}));
    body["deactivated_at"] = json!(outcome.updated_at);
    Ok(Json(body).into_response())
}

async fn heartbeat(
    State(state): State<AppState>,
    ReqId(request_id): ReqId,
    Path(raw): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let app = app_id(&headers)?;
    let body: KeyBody = parse_json(&body)?;
    let installation_id: InstallationId = path_id(&raw, "INSTALLATION_NOT_FOUND", "installation")?;
    let license_id = edge_license(&state, &app, &body.key).await?;
    let outcome = state
        .ledger
        .heartbeat(&client_context(request_id), license_id, installation_id)
        .await?;
    state.observe(&outcome);
    let lease = outcome
        .aggregate
        .state()
        .and_then(|s| s.activations.get(&installation_id))
        .and_then(|a| a.lease_expires_at);
    Ok(
        Json(json!({"installation_id": installation_id, "lease_expires_at": lease}))
            .into_response(),
    )
}

// ----- offline tokens -----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OfflineTokenBody {
    key: String,
    #[serde(default)]
    fingerprint: Option<Fingerprint>,
}

/// Records and signs an offline token of `kind` for `license_id`; returns `(token, expires_at,
/// kid)`.
///
/// # Errors
/// The aggregate's refusals and infrastructure errors.
pub async fn issue_token(
    state: &AppState,
    ctx: &commands::CommandContext,
    license_id: LicenseId,
    kind: OfflineTokenKind,
    fingerprint: Option<Fingerprint>,
) -> Result<(String, domain::Timestamp, String), ApiError> {
    let outcome = state
        .ledger
        .record_offline_token(ctx, license_id, kind, fingerprint)
        .await?;
    state.observe(&outcome);
    let license = outcome
        .aggregate
        .state()
        .ok_or_else(|| ApiError::internal(&"no license"))?;
    let Some(LicenseEvent::OfflineTokenIssued {
        jti,
        installation_id,
        fingerprint,
        issued_at,
        expires_at,
        ..
    }) = outcome
        .events
        .iter()
        .find(|e| matches!(e, LicenseEvent::OfflineTokenIssued { .. }))
    else {
        return Err(ApiError::internal(&"the offline token was not recorded"));
    };
    let mut claims = json!({
        "iss": &*state.issuer,
        "sub": license_id,
        "aud": license.app_id.as_uuid().hyphenated().to_string(),
        "iat": issued_at.timestamp(),
        "nbf": issued_at.timestamp(),
        "exp": expires_at.timestamp(),
        "jti": jti,
        "features": license.features.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
        "policy": {"id": license.policy_id, "version": license.policy_version, "model": license.terms.model.as_str()},
        "status": status_at(license, *issued_at).as_str(),
        "kind": kind.as_str(),
    });
    if let Some(fp) = fingerprint {
        claims["fingerprint"] = json!(fp.as_str());
    }
    if let Some(id) = installation_id {
        claims["installation_id"] = json!(id);
    }
    let key = state.signing.current();
    Ok((key.sign_jwt(&claims), *expires_at, key.kid.clone()))
}

async fn offline_token(
    State(state): State<AppState>,
    ReqId(request_id): ReqId,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let app = app_id(&headers)?;
    let body: OfflineTokenBody = parse_json(&body)?;
    let license_id = edge_license(&state, &app, &body.key).await?;
    let (token, expires_at, kid) = issue_token(
        &state,
        &client_context(request_id),
        license_id,
        OfflineTokenKind::Offline,
        body.fingerprint,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": token, "expires_at": expires_at, "kid": kid})),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_guids_compare_the_same_way_found_or_not() {
        let a = AppId::parse_str("6f1c1d3e-0b8a-4c53-9d2f-1a2b3c4d5e6f").unwrap();
        let b = AppId::parse_str("7f1c1d3e-0b8a-4c53-9d2f-1a2b3c4d5e6f").unwrap();
        assert_eq!(same_app(Some(&a), &a), (true, true));
        assert_eq!(same_app(Some(&a), &b), (true, false));
        assert_eq!(same_app(None, &a), (false, false));
    }
}
