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

use application::AppError;
use application::licenses::ActivationRequest;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64ct::{Base64, Encoding};
use domain::ErrorCode;
use domain::ids::{AppId, LicenseId};
use domain::validation::ValidationCode;
use domain::values::{Environment, Fingerprint, Label};
use serde::Deserialize;

use crate::auth::Permission;
use crate::error::ApiError;
use crate::extract::{Allowed, AnswersRequestFiles, Body, ReqId};
use crate::openapi::Problem;
use crate::state::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The offline-activation route.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(offline_activation))
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
    /// Written by the SDK for the administrator's eyes; not needed here, but checked as the
    /// RFC 3339 instant `docs/client-protocol.md` says it is (any text, NUL included, was taken).
    #[allow(dead_code)]
    created_at: domain::Timestamp,
    /// Recorded as the events' causation, linking them to the file. A UUID, as the SDK writes
    /// it (`docs/client-protocol.md`): anything else would be stored forever in the log.
    nonce: uuid::Uuid,
}

fn malformed(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::MalformedRequestFile, detail, None)
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

/// Answers an air-gapped machine's request file (activation or deactivation).
#[utoipa::path(post, path = "/v1/offline-activations", tag = "offline", summary = "Answer a request file",
    request_body(content = String, content_type = "text/plain",
        description = "The request file as the SDK wrote it: `-----BEGIN LICENSE-LEDGER ACTIVATION REQUEST-----` (or `DEACTIVATION REQUEST`), base64 JSON, the END line"),
    responses(
        (status = 200, description = "The armored answer: an ACTIVATION RESPONSE (signed token) or a DEACTIVATION RECEIPT",
            content_type = "text/plain", body = String),
        (status = 400, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 409, response = Problem),
        (status = 413, response = Problem),
        (status = 422, response = Problem),
    ))]
async fn offline_activation(
    State(state): State<AppState>,
    Allowed(principal, _): Allowed<AnswersRequestFiles>,
    ReqId(request_id): ReqId,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    // The events' safety net under the stored answers (ADR 0016), scoped like the
    // administration routes' keys: by the token.
    let idempotency = match crate::idempotency::key_of(&headers)? {
        Some(key) => {
            let digest =
                crate::idempotency::request_digest(&axum::http::Method::POST, uri.path(), &body);
            Some(commands::Idempotency {
                key: crate::idempotency::event_key(&principal, key.to_owned()),
                request_hash: hex::encode(digest),
            })
        }
        None => None,
    };
    let answer = answer_request_file(&state, &principal, request_id, &body, idempotency).await?;
    Ok(text(StatusCode::OK, answer))
}

/// Answers a request file (its bytes) for `principal`: the armored ACTIVATION RESPONSE or
/// DEACTIVATION RECEIPT. Vendor support answers any; anyone else only for a license it may
/// manage installations of (a customer's administrator answers its own machines' files,
/// without mailing them to the vendor). The API and the web UI both answer through here.
///
/// # Errors
/// A malformed file (400), a key that opens no license or one out of reach (404), another
/// product's file (422), the use case's refusals.
pub async fn answer_request_file(
    state: &AppState,
    principal: &crate::auth::Principal,
    request_id: String,
    body: &[u8],
    idempotency: Option<commands::Idempotency>,
) -> Result<String, ApiError> {
    let text_body =
        std::str::from_utf8(body).map_err(|_| malformed("the request file is not UTF-8 text"))?;
    let (label, payload) = unarmor(text_body)?;
    let json = Base64::decode_vec(&payload)
        .map_err(|_| malformed("the request file's body is not base64"))?;
    // A field that does not parse is named (`field`): above all `nonce`, which must be the UUID
    // the SDK writes, since it is kept forever as the events' causation.
    let request: RequestFile = crate::extract::parse_json(&json).map_err(|e| {
        ApiError::bad_request(
            ErrorCode::MalformedRequestFile,
            format!("the request file's content is invalid: {}", e.detail()),
            e.field().map(str::to_owned),
        )
    })?;
    let activation = match label.as_str() {
        "ACTIVATION REQUEST" => true,
        "DEACTIVATION REQUEST" => false,
        other => {
            return Err(malformed(format!(
                "{other:?} is not a request this server answers"
            )));
        }
    };
    let expected_kind = if activation {
        "activation"
    } else {
        "deactivation"
    };
    if request.version != 1 || request.kind != expected_kind {
        return Err(malformed("unsupported request file version or type"));
    }
    let license_id = license_for(state, &request).await?;
    if !principal
        .access
        .may_everywhere(Permission::Support.action())
    {
        // Out of reach: as if the key opened nothing.
        state
            .app
            .licenses()
            .authorize_installations(&principal.access, license_id)
            .await
            .map_err(|e| match e {
                AppError::NotFound { .. } => ApiError::not_found(
                    ErrorCode::LicenseNotFound,
                    "no license has the key in this request file",
                ),
                other => other.into(),
            })?;
    }
    let mut ctx = commands::CommandContext::new(principal.actor(), request_id);
    ctx.impersonated_by = principal.access.impersonated_by().cloned();
    ctx.causation_id = Some(format!("offline-request:{}", request.nonce));
    ctx.idempotency = idempotency;
    let licenses = state.app.licenses();
    if activation {
        let signed = licenses
            .activate_offline(
                &ctx,
                license_id,
                ActivationRequest {
                    fingerprint: request.fingerprint,
                    hostname: request.hostname,
                    platform: request.platform,
                    environment: request.environment.unwrap_or(Environment::Production),
                },
            )
            .await?;
        Ok(armor("ACTIVATION RESPONSE", &signed.token))
    } else {
        let receipt = licenses
            .deactivate_offline(&ctx, license_id, &request.app_id, &request.fingerprint)
            .await?;
        Ok(armor("DEACTIVATION RECEIPT", &receipt.token))
    }
}

/// The license the request's key opens for the request's application: the client edge's own
/// check (`App::open_license`), answered as the administration API answers. The caller is an
/// authenticated administrator, so an unknown key is a 404 and another product's key an
/// unprocessable request (`docs/client-protocol.md`), not the client edge's 403s.
async fn license_for(state: &AppState, request: &RequestFile) -> Result<LicenseId, ApiError> {
    match state.app.open_license(&request.app_id, &request.key).await {
        Ok(id) => Ok(id),
        Err(AppError::Edge(ValidationCode::AppMismatch)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Validation(ValidationCode::AppMismatch),
            "the request file's App GUID is not the license's product",
        )),
        Err(AppError::Edge(_)) => Err(ApiError::not_found(
            ErrorCode::LicenseNotFound,
            "no license has the key in this request file",
        )),
        Err(other) => Err(other.into()),
    }
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
