//! Every error the API answers, as RFC 9457 `application/problem+json`:
//! `{type, title, status, detail, code[, field]}` with a stable UPPER_SNAKE `code`.
//!
//! The status mapping is exhaustive and lives here only. 5xx bodies are opaque ("internal
//! error"); their cause is logged once, with the request's id, and never sent to the caller.

use application::AppError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commands::CommandError;
use domain::ErrorCode;
use domain::error::RejectionKind;
use domain::stream::ClaimScope;
use serde::Serialize;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    detail: String,
    field: Option<String>,
    retry_after_seconds: Option<u64>,
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            field: None,
            retry_after_seconds: None,
        }
    }

    /// 400 for a malformed request, naming the field when known.
    pub fn bad_request(code: ErrorCode, detail: impl Into<String>, field: Option<String>) -> Self {
        Self {
            field,
            ..Self::new(StatusCode::BAD_REQUEST, code, detail)
        }
    }

    /// 404 for a resource that does not exist.
    pub fn not_found(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }

    /// 401: no or no valid credentials.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, detail)
    }

    /// 403: authenticated but not allowed.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, detail)
    }

    /// 429 with `Retry-After`.
    pub fn too_many_requests(retry_after_seconds: u64) -> Self {
        Self {
            retry_after_seconds: Some(retry_after_seconds.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                "too many requests; slow down and retry after the indicated delay",
            )
        }
    }

    /// 500: logs `cause` and answers opaquely.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error",
        )
    }

    /// 503: a dependency (the database) is unavailable; logs `cause`.
    pub fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "service unavailable");
        Self {
            retry_after_seconds: Some(5),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                "the service is temporarily unavailable; retry shortly",
            )
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code.as_str()
    }

    /// The human-readable detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The field a 400 names, when it names one.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let problem = Problem {
            kind: format!(
                "https://license-ledger.dev/problems/{}",
                self.code.as_str().to_ascii_lowercase().replace('_', "-")
            ),
            title,
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code.as_str(),
            field: self.field.as_deref(),
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after_seconds {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"license-ledger\""),
            );
        }
        response
    }
}

fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => true,
        // The server refusing a new session: out of connection slots or resources (class 53,
        // `too_many_connections`), starting up or shutting down (57P01-57P03). A connection
        // opened outside the pool (a `DatabaseLock`'s) meets these first; the request may be
        // retried, the ledger is not at fault.
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("53") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            Self::unavailable(&e)
        } else {
            Self::internal(&e)
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Rejected(rejection) => {
                let status = match rejection.kind() {
                    RejectionKind::NotFound => StatusCode::NOT_FOUND,
                    RejectionKind::Conflict => StatusCode::CONFLICT,
                    RejectionKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
                    RejectionKind::Invalid => StatusCode::BAD_REQUEST,
                };
                let mut error = Self::new(status, rejection.code(), rejection.to_string());
                error.field = rejection.field().map(str::to_owned);
                error
            }
            CommandError::Conflict { .. } => {
                Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, e.to_string())
            }
            CommandError::ClaimTaken { ref scope, .. } => {
                let code = if scope == ClaimScope::AppId.as_str() {
                    ErrorCode::AppIdTaken
                } else if scope == ClaimScope::UserEmail.as_str() {
                    ErrorCode::EmailTaken
                } else if scope == ClaimScope::UserIdentity.as_str() {
                    ErrorCode::IdentityTaken
                } else if scope == ClaimScope::ReleaseVersion.as_str() {
                    ErrorCode::ReleaseVersionExists
                } else {
                    ErrorCode::AlreadyExists
                };
                Self::new(StatusCode::CONFLICT, code, e.to_string())
            }
            CommandError::IdempotencyKeyReused => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::IdempotencyKeyReused,
                e.to_string(),
            ),
            CommandError::Corrupt(ref cause) => Self::internal(cause),
            CommandError::CorruptStreamId { .. } => Self::internal(&e),
            CommandError::Database(db) => db.into(),
        }
    }
}

impl From<projections::ProjectionError> for ApiError {
    fn from(e: projections::ProjectionError) -> Self {
        match e {
            projections::ProjectionError::Database(db) => db.into(),
            other => Self::internal(&other),
        }
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Command(c) => c.into(),
            AppError::Entropy(cause) => Self::internal(&cause),
            AppError::Projection(p) => p.into(),
            AppError::NotFound { code, detail } => Self::not_found(code, detail),
            // The client edge: an unknown key and another application's key answer alike.
            AppError::Edge(code) => Self::new(StatusCode::FORBIDDEN, code.into(), code.detail()),
            AppError::InvalidCursor => Self::bad_request(
                ErrorCode::InvalidCursor,
                e.to_string(),
                Some("cursor".to_owned()),
            ),
            AppError::InvalidParameter { field, detail } => {
                Self::bad_request(ErrorCode::InvalidQuery, detail, Some(field.to_owned()))
            }
            AppError::Forbidden(detail) => Self::forbidden(detail),
            AppError::InvalidField { field, detail } => {
                Self::bad_request(ErrorCode::InvalidField, detail, Some(field.to_owned()))
            }
            AppError::InvalidSignature(detail) => {
                Self::bad_request(ErrorCode::InvalidSignature, detail, None)
            }
            AppError::DownloadLinkInvalid(detail) => Self::new(
                StatusCode::FORBIDDEN,
                ErrorCode::DownloadLinkInvalid,
                detail,
            ),
            AppError::Upload(upload) => {
                use application::artifacts::UploadError;
                match upload {
                    UploadError::TooLarge { .. } => Self::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        ErrorCode::PayloadTooLarge,
                        upload.to_string(),
                    ),
                    UploadError::Empty | UploadError::Body(_) => {
                        Self::bad_request(ErrorCode::MalformedBody, upload.to_string(), None)
                    }
                    UploadError::Stalled => Self::new(
                        StatusCode::REQUEST_TIMEOUT,
                        ErrorCode::Timeout,
                        upload.to_string(),
                    ),
                    UploadError::Io(cause) => Self::internal(&cause),
                    UploadError::Unavailable(cause) => Self::unavailable(&cause),
                }
            }
            AppError::Invariant(what) => Self::internal(&what),
        }
    }
}

#[cfg(test)]
mod tests {
    use domain::validation::ValidationCode;

    use super::*;

    async fn body_of(e: ApiError) -> Vec<u8> {
        let response = e.into_response();
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec()
    }

    /// An unknown key and another application's key must cost the same to answer; their bodies
    /// differ in code and detail, so they must at least be equally long.
    #[tokio::test]
    async fn the_two_edge_refusals_answer_bodies_of_one_length() {
        let not_found = body_of(AppError::Edge(ValidationCode::NotFound).into()).await;
        let mismatch = body_of(AppError::Edge(ValidationCode::AppMismatch).into()).await;
        assert_ne!(not_found, mismatch);
        assert_eq!(
            not_found.len(),
            mismatch.len(),
            "{}\n{}",
            String::from_utf8_lossy(&not_found),
            String::from_utf8_lossy(&mismatch)
        );
    }
}
