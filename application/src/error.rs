//! [`AppError`]: why a use case did not answer. Front ends map it to what they speak (the HTTP
//! API to a status and problem+json, in `api::error`, its one status mapping); the codes are
//! [`ErrorCode`]s, spelled once in `domain`.

use commands::{CommandError, LedgerError};
use domain::validation::ValidationCode;
use domain::{DomainError, ErrorCode};
use projections::ProjectionError;

/// Why a use case failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A command was refused or could not be recorded.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The OS could not give key material.
    #[error(transparent)]
    Entropy(#[from] commands::keys::EntropyError),
    /// A read model or the log could not be read.
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    /// What was asked for does not exist (or did not at the instant asked about).
    #[error("{detail}")]
    NotFound { code: ErrorCode, detail: String },
    /// A client application's key does not open a license for its application: `NOT_FOUND` or
    /// `APP_MISMATCH`, refused alike at every client route.
    #[error("{}", .0.detail())]
    Edge(ValidationCode),
    /// A list's `cursor` was not issued for this list, order and filters, or was altered.
    #[error(
        "the cursor is not one this list issued for these filters and order; start again from the first page"
    )]
    InvalidCursor,
    /// A list's parameter holds a value the list cannot take (checked where the knowledge
    /// lives, such as a key prefix's shape): the parameter and why.
    #[error("{detail}")]
    InvalidParameter { field: &'static str, detail: String },
    /// A field of a request's body holds a value the use case cannot take (checked where the
    /// knowledge lives, such as which identity providers are configured): the field and why.
    #[error("{detail}")]
    InvalidField { field: &'static str, detail: String },
    /// The principal reaches the resource but may not do this there (403 `FORBIDDEN`). What it
    /// does not reach at all is [`AppError::NotFound`], exactly as an unknown id.
    #[error("{0}")]
    Forbidden(String),
    /// A webhook's signature does not verify (400 `INVALID_SIGNATURE`; nothing was stored).
    #[error("{0}")]
    InvalidSignature(String),
    /// A download link that does not open (403 `DOWNLOAD_LINK_INVALID`): expired, altered,
    /// for a yanked release or a license that no longer sees it.
    #[error("{0}")]
    DownloadLinkInvalid(String),
    /// An upload was not stored: too large, empty, stalled, broken off, or the store failed
    /// (nothing was left behind).
    #[error(transparent)]
    Upload(crate::artifacts::UploadError),
    /// An invariant of the ledger does not hold (a command left no state behind): a bug.
    #[error("{0}")]
    Invariant(&'static str),
}

impl AppError {
    /// A read that found nothing.
    pub fn not_found(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::NotFound {
            code,
            detail: detail.into(),
        }
    }
}

impl From<LedgerError> for AppError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Command(c) => Self::Command(c),
            LedgerError::Entropy(e) => Self::Entropy(e),
        }
    }
}

impl From<DomainError> for AppError {
    fn from(e: DomainError) -> Self {
        Self::Command(CommandError::Rejected(e))
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        Self::Command(CommandError::Database(e))
    }
}

/// An operator-facing error and its causes on one line, each cause once (what `ledger` and
/// `ledger-replay` print before they exit): an error whose message already quotes
/// its cause (sqlx's I/O error quotes the OS error, ours quote sqlx's) would otherwise print the
/// same words once per layer.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}
