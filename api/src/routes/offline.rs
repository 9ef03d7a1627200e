//! Air-gapped machines: an administrator posts the text of a request file written by the SDK on
//! the offline machine (`POST /v1/offline-activations`) and carries the answer back.
//!
//! - An activation request activates the fingerprint (or finds it active) and answers with a
//!   signed token of kind `offline_activation`, bound to the App GUID, the fingerprint and the
//!   installation, valid until the license ends.
//! - A deactivation request frees the fingerprint's seat (`InstallationDeactivated` with reason
//!   `offline_request`) and answers with a signed receipt.
//!
//! Formats: `docs/client-protocol.md`.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64ct::{Base64, Encoding};
use domain::ids::{AppId, LicenseId};
use domain::keys::LicenseKey;
use domain::license::License;
use domain::values::{DeactivationReason, Environment, Fingerprint, Label, OfflineTokenKind};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Permission, Principal};
use crate::error::ApiError;
use crate::extract::{Body, ReqId};
use crate::routes::client::issue_token;
use crate::state::AppState;

/// The offline-activation route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/offline-activations", post(offline_activation))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestFile {
    version: u32,
    #[serde(rename = "type")]
    kind: String,
    app_id: AppId,
    key: String,
    fingerprint: Fingerprint,
    #[serde(default)]
    hostname: Option<Label>,
    #[serde(default)]
    platform: Option<Label>,
    #[serde(default)]
    environment: Option<Environment>,
    #[allow(dead_code)] // written by the SDK for the administrator's eyes; not needed here
    created_at: String,
    /// Recorded as the events' causation, linking them to the file.
    nonce: String,
}

fn malformed(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request("MALFORMED_REQUEST_FILE", detail, None)
}

/// The armored payload between `-----BEGIN LICENSE-LEDGER <label>-----` and its END line.
fn unarmor(text: &str) -> Result<(String, String), ApiError> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let begin = lines
        .next()
        .ok_or_else(|| malformed("the request file is empty"))?;
    let label = begin
        .strip_prefix("-----BEGIN LICENSE-LEDGER ")
        .and_then(|l| l.strip_suffix("-----"))
        .ok_or_else(|| {
            malformed("the request file does not start with a LICENSE-LEDGER BEGIN line")
        })?
        .to_owned();
    let end = format!("-----END LICENSE-LEDGER {label}-----");
    let mut body = String::new();
    for line in lines {
        if line == end {
            return Ok((label, body));
        }
        body.push_str(line);
    }
    Err(malformed("the request file has no matching END line"))
}

fn armor(label: &str, body: &str) -> String {
    format!(
        "-----BEGIN LICENSE-LEDGER {label}-----\n{body}\n-----END LICENSE-LEDGER {label}-----\n"
    )
}

fn text(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn offline_activation(
    State(state): State<AppState>,
    principal: Principal,
    ReqId(request_id): ReqId,
    Body(body): Body,
) -> Result<Response, ApiError> {
    principal.require(Permission::Support)?;
    let text_body =
        std::str::from_utf8(&body).map_err(|_| malformed("the request file is not UTF-8 text"))?;
    let (label, payload) = unarmor(text_body)?;
    let json = Base64::decode_vec(&payload)
        .map_err(|_| malformed("the request file's body is not base64"))?;
    let request: RequestFile = crate::extract::parse_json(&json).map_err(|e| {
        malformed(format!(
            "the request file's content is invalid: {}",
            e.detail()
        ))
    })?;
    let expected_kind = match label.as_str() {
        "ACTIVATION REQUEST" => "activation",
        "DEACTIVATION REQUEST" => "deactivation",
        other => {
            return Err(malformed(format!(
                "{other:?} is not a request this server answers"
            )));
        }
    };
    if request.version != 1 || request.kind != expected_kind {
        return Err(malformed("unsupported request file version or type"));
    }
    let license_id = license_for(&state, &request).await?;
    let mut ctx = commands::CommandContext::new(
        domain::event::Actor::ApiToken(principal.token_id),
        request_id,
    );
    ctx.causation_id = Some(format!("offline-request:{}", request.nonce));
    match expected_kind {
        "activation" => {
            let activated = state
                .ledger
                .activate(
                    &ctx,
                    license_id,
                    request.fingerprint.clone(),
                    request.hostname.clone(),
                    request.platform.clone(),
                    request.environment.unwrap_or(Environment::Production),
                )
                .await?;
            state.observe(&activated);
            let (token, _, _) = issue_token(
                &state,
                &ctx,
                license_id,
                OfflineTokenKind::OfflineActivation,
                Some(request.fingerprint.clone()),
            )
            .await?;
            Ok(text(StatusCode::OK, armor("ACTIVATION RESPONSE", &token)))
        }
        _ => {
            let now = state.ledger.now();
            let loaded = state
                .ledger
                .store()
                .read::<License>(&license_id.to_string())
                .await?;
            let installation_id = loaded
                .aggregate
                .state()
                .and_then(|s| s.installation_of(request.fingerprint.as_str(), now))
                .ok_or_else(|| {
                    ApiError::not_found(
                        "INSTALLATION_NOT_FOUND",
                        "this fingerprint is not activated on the license",
                    )
                })?;
            let outcome = state
                .ledger
                .deactivate(
                    &ctx,
                    license_id,
                    installation_id,
                    DeactivationReason::OfflineRequest,
                )
                .await?;
            state.observe(&outcome);
            let at = outcome.updated_at.unwrap_or(now);
            let receipt = json!({
                "iss": &*state.issuer,
                "sub": license_id,
                "aud": request.app_id.as_uuid().hyphenated().to_string(),
                "iat": at.timestamp(),
                "nbf": at.timestamp(),
                "exp": (at + chrono::Duration::days(3650)).timestamp(),
                "jti": uuid::Uuid::now_v7(),
                "kind": "deactivation_receipt",
                "installation_id": installation_id,
                "fingerprint": request.fingerprint.as_str(),
            });
            let token = state.signing.current().sign_jwt(&receipt);
            Ok(text(StatusCode::OK, armor("DEACTIVATION RECEIPT", &token)))
        }
    }
}

/// The license the request's key opens, for the request's application.
async fn license_for(state: &AppState, request: &RequestFile) -> Result<LicenseId, ApiError> {
    let unknown = || {
        ApiError::not_found(
            "LICENSE_NOT_FOUND",
            "no license has the key in this request file",
        )
    };
    let key = LicenseKey::parse(&request.key).map_err(|_| unknown())?;
    let hash = state.ledger.hasher().hash(&key);
    let id = state
        .ledger
        .license_by_key_hash(&hash)
        .await?
        .ok_or_else(unknown)?;
    let loaded = state
        .ledger
        .store()
        .read::<License>(&id.to_string())
        .await?;
    let license = loaded.aggregate.state().ok_or_else(unknown)?;
    if !license.key_hash.ct_eq(&hash) {
        return Err(unknown());
    }
    if license.app_id != request.app_id {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "APP_MISMATCH",
            "the request file's App GUID is not the license's product",
        ));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn armor_round_trips_and_refuses_broken_files() {
        let text = armor("ACTIVATION REQUEST", "YWJj\nZGVm");
        assert_eq!(
            unarmor(&text).unwrap(),
            ("ACTIVATION REQUEST".into(), "YWJjZGVm".into())
        );
        assert!(unarmor("").is_err());
        assert!(unarmor("-----BEGIN LICENSE-LEDGER ACTIVATION REQUEST-----\nYWJj\n").is_err());
        assert!(unarmor("hello").is_err());
    }
}
