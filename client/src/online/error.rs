//! Why a client call failed: [`ClientError`], and [`OfflineError`] for why the stored offline
//! token could not stand in for the server.
//!
//! The split between the server refusing (`Refused`) and the server not answering
//! (`Unreachable`, `ServerFailed`, `UnexpectedResponse`) is the one the offline fallback turns
//! on, so it lives with the errors ([`ClientError::server_unavailable`]).

use std::io;
use std::path::PathBuf;

use crate::decision::Problem;
use crate::jwks::JwksError;
use crate::verify::VerifyError;

/// Why the stored offline token could not stand in for the server.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// None was fetched yet.
    #[error("no offline token is stored")]
    Missing,
    /// The file exists but could not be read.
    #[error("the stored offline token could not be read: {0}")]
    Unreadable(#[source] io::Error),
    /// The token does not verify (expired, another device, another key…).
    #[error("the stored offline token is not valid: {0}")]
    Invalid(#[source] VerifyError),
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The configuration cannot work.
    #[error("invalid client configuration: {0}")]
    Config(&'static str),
    /// The server could not be reached (connection refused, DNS, TLS, timeout).
    #[error("the license server could not be reached: {0}")]
    Unreachable(String),
    /// The server refused the request with a problem (`4xx`).
    #[error("the license server refused the request: {0}")]
    Refused(Problem),
    /// The server failed (`5xx`).
    #[error("the license server failed: {0}")]
    ServerFailed(Problem),
    /// The answer is not the protocol's (wrong status, not the expected JSON).
    #[error("unexpected answer from the license server (HTTP {status}): {reason}")]
    UnexpectedResponse {
        /// The HTTP status.
        status: u16,
        /// What was wrong.
        reason: String,
    },
    /// The server could not answer and the stored offline token could not stand in.
    #[error("{online}; and {offline}")]
    Unavailable {
        /// Why the server gave no answer.
        online: Box<ClientError>,
        /// Why the offline token did not help.
        offline: OfflineError,
    },
    /// A token from the server does not verify against the pinned keys.
    #[error("the token from the license server does not verify: {0}")]
    InvalidToken(#[source] VerifyError),
    /// The call needs [`Config::fingerprint`](super::Config::fingerprint).
    #[error("this call needs a device fingerprint in the client configuration")]
    FingerprintRequired,
    /// The offline token could not be stored.
    #[error("could not store the offline token in {path}: {source}")]
    Store {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The fetched key set was refused.
    #[error("the server's key set was refused: {0}")]
    Jwks(#[source] JwksError),
    /// Keys are only fetched over HTTPS (or from loopback).
    #[error("keys are only fetched over https (or from a loopback address)")]
    InsecureKeySource,
}

impl ClientError {
    /// The problem code of a refusal (`NOT_FOUND`, `APP_MISMATCH`, `TOO_MANY_ACTIVATIONS`…).
    pub fn problem_code(&self) -> Option<&str> {
        match self {
            Self::Refused(problem) | Self::ServerFailed(problem) => problem.code.as_deref(),
            _ => None,
        }
    }

    /// Whether the server gave no answer of its own, so the offline token may stand in.
    pub(super) const fn server_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(_) | Self::ServerFailed(_) | Self::UnexpectedResponse { .. }
        )
    }
}
