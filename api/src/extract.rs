//! Request extractors that fail with problem+json naming what is wrong.
//!
//! [`Command`] is what every state-changing route takes: the authenticated principal, the request
//! id, an optional `Idempotency-Key`, and the JSON body parsed into domain types (so a bad value is
//! refused with its field's name before any handler runs).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use commands::{CommandContext, Idempotency};
use domain::ErrorCode;
use domain::reach::Action;
use serde::de::DeserializeOwned;

use crate::auth::{Permission, Principal};
use crate::error::ApiError;
use crate::request_id::RequestId;
use crate::state::AppState;

/// Parses a JSON body into `T`, naming the offending field on failure.
///
/// # Errors
/// 400 `MALFORMED_JSON` for syntax errors, 400 `INVALID_FIELD` (with `field`) for a missing,
/// unknown or invalid field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // The common case costs plain serde; the path-tracking parser only runs to explain a failure.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    if parsed.is_ok() {
        de.end().map_err(|e| {
            ApiError::bad_request(
                ErrorCode::MalformedJson,
                format!("the body is not valid JSON: {e}"),
                None,
            )
        })?;
    }
    parsed.map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                ApiError::bad_request(
                    ErrorCode::MalformedJson,
                    format!("the body is not valid JSON: {message}"),
                    None,
                )
            }
            serde_json::error::Category::Data | serde_json::error::Category::Io => {
                // A missing field is reported at its parent's path, named in backticks; an
                // unknown field's path already ends with its name.
                let field = match message.split('`').nth(1) {
                    Some(name) if message.starts_with("missing field") => {
                        if path == "." {
                            name.to_owned()
                        } else {
                            format!("{path}.{name}")
                        }
                    }
                    _ => path.clone(),
                };
                let reason = message
                    .rsplit_once(" at line ")
                    .map_or(message.as_str(), |(head, _)| head);
                ApiError::bad_request(
                    ErrorCode::InvalidField,
                    format!("{field}: {reason}"),
                    Some(field),
                )
            }
        }
    })
}

/// A raw request body, refused as problem+json when too large or unreadable.
#[derive(Debug)]
pub struct Body(pub Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(Self)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        ErrorCode::PayloadTooLarge,
                        format!(
                            "the body is larger than {} bytes",
                            state.config.max_body_bytes
                        ),
                    )
                } else {
                    ApiError::bad_request(ErrorCode::MalformedBody, rejection.body_text(), None)
                }
            })
    }
}

/// A body that must be absent or an empty JSON object (`reinstate`, `rotate-key`). Not derived:
/// serde's derive reads a struct from a sequence too, so `[]` passed for "nothing".
#[derive(Debug, Default, utoipa::ToSchema)]
#[schema(as = EmptyBody)]
pub struct NoBody {}

impl<'de> serde::Deserialize<'de> for NoBody {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Empty;
        impl<'de> serde::de::Visitor<'de> for Empty {
            type Value = NoBody;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an empty JSON object, or no body")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<NoBody, A::Error> {
                match map.next_key::<String>()? {
                    None => Ok(NoBody {}),
                    Some(field) => Err(serde::de::Error::unknown_field(&field, &[])),
                }
            }
        }
        d.deserialize_map(Empty)
    }
}

/// What a write route asks of its caller before it reads the body: a caller that may not do
/// it is refused 403 without learning what its body got wrong (issue #15). The precise check
/// (at which organization) follows in the use case.
pub trait Needs: Send + Sync + 'static {
    /// # Errors
    /// 403 when the principal may not.
    fn check(principal: &Principal) -> Result<(), ApiError>;
}

/// Any authenticated caller; the use case decides by reach.
#[derive(Debug)]
pub struct Anyone;
impl Needs for Anyone {
    fn check(_: &Principal) -> Result<(), ApiError> {
        Ok(())
    }
}

/// Vendor administration (`Permission::Admin` everywhere).
#[derive(Debug)]
pub struct Admin;
impl Needs for Admin {
    fn check(principal: &Principal) -> Result<(), ApiError> {
        principal.require(Permission::Admin)
    }
}

/// Vendor support: suspend and reinstate (`Permission::Support` everywhere).
#[derive(Debug)]
pub struct Support;
impl Needs for Support {
    fn check(principal: &Principal) -> Result<(), ApiError> {
        principal.require(Permission::Support)
    }
}

/// Answering offline request files: vendor support everywhere, or managing installations
/// somewhere (the license's organization is checked by `routes::offline`).
#[derive(Debug)]
pub struct AnswersRequestFiles;
impl Needs for AnswersRequestFiles {
    fn check(principal: &Principal) -> Result<(), ApiError> {
        if principal.access.may_everywhere(Action::Support) {
            return Ok(());
        }
        principal.require_somewhere(Action::ManageInstallations)
    }
}

/// Downloading somewhere (the license's organization is checked by the use case).
#[derive(Debug)]
pub struct Downloads;
impl Needs for Downloads {
    fn check(principal: &Principal) -> Result<(), ApiError> {
        principal.require_somewhere(Action::Download)
    }
}

/// Managing users somewhere (the organization is checked by the use case).
#[derive(Debug)]
pub struct ManagesUsers;
impl Needs for ManagesUsers {
    fn check(principal: &Principal) -> Result<(), ApiError> {
        principal.require_somewhere(Action::ManageUsers)
    }
}

/// Managing organizations somewhere (the organization is checked by the use case).
#[derive(Debug)]
pub struct ManagesOrganizations;
impl Needs for ManagesOrganizations {
    fn check(principal: &Principal) -> Result<(), ApiError> {
        principal.require_somewhere(Action::ManageOrganizations)
    }
}

/// Assigning licenses to named users somewhere (the license's organization is checked by the
/// use case).
#[derive(Debug)]
pub struct AssignsLicenses;
impl Needs for AssignsLicenses {
    fn check(principal: &Principal) -> Result<(), ApiError> {
        principal.require_somewhere(Action::AssignLicenses)
    }
}

/// Deactivating installations somewhere (the license's organization is checked by the use
/// case).
#[derive(Debug)]
pub struct ManagesInstallations;
impl Needs for ManagesInstallations {
    fn check(principal: &Principal) -> Result<(), ApiError> {
        principal.require_somewhere(Action::ManageInstallations)
    }
}

/// Impersonating users (vendor support or administration).
#[derive(Debug)]
pub struct Impersonates;
impl Needs for Impersonates {
    fn check(principal: &Principal) -> Result<(), ApiError> {
        principal.require_somewhere(Action::Impersonate)
    }
}

/// Revoking tokens: vendor administrators (any token), staff who impersonate (the
/// impersonations they started) and an impersonation itself (ending it); the token is checked by
/// the use case.
#[derive(Debug)]
pub struct RevokesTokens;
impl Needs for RevokesTokens {
    fn check(principal: &Principal) -> Result<(), ApiError> {
        if principal.access.impersonation.is_some() {
            return Ok(());
        }
        principal
            .require(Permission::Admin)
            .or_else(|_| principal.require_somewhere(Action::Impersonate))
    }
}

/// Managing partner delegations somewhere (the organization is checked by the use case).
#[derive(Debug)]
pub struct ManagesDelegations;
impl Needs for ManagesDelegations {
    fn check(principal: &Principal) -> Result<(), ApiError> {
        principal.require_somewhere(Action::ManageDelegations)
    }
}

/// The caller, checked for `N` before anything else of the request is read: for routes whose
/// body is not a [`Command`]'s (the air-gapped request files).
#[derive(Debug)]
pub struct Allowed<N>(pub Principal, pub std::marker::PhantomData<fn() -> N>);

impl<N: Needs> FromRequestParts<AppState> for Allowed<N> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        N::check(&principal)?;
        Ok(Self(principal, std::marker::PhantomData))
    }
}

/// A state-changing request: who, which request, idempotency, and the parsed body; `N` is what
/// the caller must be allowed before the body is read.
#[derive(Debug)]
pub struct Command<T, N = Anyone> {
    pub principal: Principal,
    pub context: CommandContext,
    pub body: T,
    needs: std::marker::PhantomData<fn() -> N>,
}

impl<T: DeserializeOwned + Send, N: Needs> FromRequest<AppState> for Command<T, N> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let principal = Principal::from_request_parts(&mut parts, state).await?;
        N::check(&principal)?;
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map_or_else(|| "unknown".to_owned(), |r| r.0.clone());
        let idempotency_key = crate::idempotency::key_of(&parts.headers)?.map(str::to_owned);
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        let method = parts.method.clone();
        let path = parts.uri.path().to_owned();
        let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        ErrorCode::PayloadTooLarge,
                        format!(
                            "the body is larger than {} bytes",
                            state.config.max_body_bytes
                        ),
                    )
                } else {
                    ApiError::bad_request(ErrorCode::MalformedBody, rejection.body_text(), None)
                }
            })?;
        let empty = bytes.iter().all(u8::is_ascii_whitespace);
        if !empty
            && let Some(ct) = &content_type
            && !(ct.starts_with("application/json") || ct.contains("+json"))
        {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let body: T = parse_json(if empty { b"{}" } else { &bytes })?;
        let mut context = CommandContext::new(principal.actor(), request_id);
        context.impersonated_by = principal.access.impersonated_by().cloned();
        if let Some(key) = idempotency_key {
            let digest = crate::idempotency::request_digest(&method, &path, &bytes);
            context.idempotency = Some(Idempotency {
                key: crate::idempotency::event_key(&principal, key),
                request_hash: hex::encode(digest),
            });
        }
        Ok(Self {
            principal,
            context,
            body,
            needs: std::marker::PhantomData,
        })
    }
}

/// Parses a path id; a malformed id names no resource, so it is 404 like an unknown one.
///
/// # Errors
/// 404 with `code`.
pub fn path_id<T: std::str::FromStr>(
    raw: &str,
    code: ErrorCode,
    what: &str,
) -> Result<T, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found(code, format!("{what} {raw:?} does not exist")))
}

/// A route's one path parameter (an id), as text. A value that is not UTF-8 once
/// percent-decoded is kept as sent, still encoded (`%FF`): it then names no resource, and the handler
/// answers 404 problem+json as for any id that is not one (axum's `Path<String>` answered a
/// plain-text 400 naming the decoding error, on every `{id}` route).
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // axum decodes path parameters while routing and refuses the ones that are not UTF-8;
        // those are read back from the URI, at the parameter's place in the route's template.
        if let Ok(decoded) = axum::extract::RawPathParams::from_request_parts(parts, state).await
            && let Some((_, value)) = decoded.iter().next()
        {
            return Ok(Self(value.to_owned()));
        }
        let place = parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .and_then(|template| {
                template
                    .as_str()
                    .split('/')
                    .position(|s| s.starts_with('{'))
            });
        let raw = place
            .and_then(|i| parts.uri.path().split('/').nth(i))
            .unwrap_or_default();
        Ok(Self(raw.to_owned()))
    }
}

/// Request parts: the request id.
pub struct ReqId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ReqId {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<RequestId>()
                .map_or_else(|| "unknown".to_owned(), |r| r.0.clone()),
        ))
    }
}

/// An optional RFC 3339 instant from the query string; 400 `INVALID_QUERY` naming `field`.
///
/// # Errors
/// When present and not RFC 3339.
pub fn query_instant(
    field: &str,
    value: Option<&str>,
) -> Result<Option<domain::Timestamp>, ApiError> {
    value
        .map(|t| {
            domain::parse_instant(t).map_err(|_| {
                ApiError::bad_request(
                    ErrorCode::InvalidQuery,
                    format!("{field} must be an RFC 3339 instant, e.g. 2026-03-01T10:00:00Z"),
                    Some(field.to_owned()),
                )
            })
        })
        .transpose()
}

/// A page size from the query string, within `1..=MAX_PAGE`; 400 `INVALID_QUERY` naming `limit`.
///
/// # Errors
/// When present and out of range.
pub fn page_limit(limit: Option<i64>) -> Result<Option<i64>, ApiError> {
    let max = projections::queries::MAX_PAGE;
    match limit {
        Some(n) if !(1..=max).contains(&n) => Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            format!("limit must be between 1 and {max}"),
            Some("limit".into()),
        )),
        _ => Ok(limit),
    }
}

/// The two ids of a route with two path parameters (`/v1/organizations/{id}/delegations/{partner_id}`,
/// `/v1/licenses/{id}/assignments/{user_id}`), as text: [`PathParam`] reads a route's one
/// parameter. As there, a value that is not UTF-8 once percent-decoded is kept as sent, so that
/// it answers 404 problem+json like any id that is not one (not axum's plain-text 400).
pub struct TwoPathParams(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for TwoPathParams {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Ok(decoded) = axum::extract::RawPathParams::from_request_parts(parts, state).await {
            let mut values = decoded.iter().map(|(_, value)| value.to_owned());
            if let (Some(first), Some(second)) = (values.next(), values.next()) {
                return Ok(Self(first, second));
            }
        }
        // Read back from the URI, at the parameters' places in the route's template.
        let template = parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default();
        let segments: Vec<&str> = parts.uri.path().split('/').collect();
        let mut raw = template
            .split('/')
            .enumerate()
            .filter(|(_, s)| s.starts_with('{'))
            .map(|(i, _)| segments.get(i).copied().unwrap_or_default().to_owned());
        let first = raw.next().unwrap_or_default();
        let second = raw.next().unwrap_or_default();
        Ok(Self(first, second))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: domain::values::Name,
        seats: domain::values::SeatCount,
        features: Option<domain::values::FeatureSet>,
    }

    fn field_of(json: &str) -> (StatusCode, &'static str, Option<String>) {
        let err = parse_json::<Body>(json.as_bytes()).unwrap_err();
        (err.status(), err.code(), err.field().map(str::to_owned))
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field_of(r#"{"seats": 1}"#).2.as_deref(), Some("name"));
        assert_eq!(
            field_of(r#"{"name": "", "seats": 1}"#).2.as_deref(),
            Some("name")
        );
        assert_eq!(
            field_of(r#"{"name": "a", "seats": 0}"#).2.as_deref(),
            Some("seats")
        );
        assert_eq!(
            field_of(r#"{"name": "a", "seats": 1, "features": ["ok", "not ok"]}"#)
                .2
                .as_deref(),
            Some("features[1]")
        );
        assert_eq!(
            field_of(r#"{"name": "a", "seats": 1, "sets": 2}"#)
                .2
                .as_deref(),
            Some("sets")
        );
        let (status, code, _) = field_of(r#"{"name": "#);
        assert_eq!((status, code), (StatusCode::BAD_REQUEST, "MALFORMED_JSON"));
        let (_, code, _) = field_of(r#"{"name": "a", "seats": 1} trailing"#);
        assert_eq!(code, "MALFORMED_JSON");
    }
}
