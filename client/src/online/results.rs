//! What the client's calls return when they succeed: a [`Validation`] (online or from the
//! offline token) and the [`OfflineToken`] it stored.

use std::path::PathBuf;

use crate::decision::{Decision, DecisionCode};
use crate::verify::Claims;

/// The result of [`Client::validate`](super::Client::validate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Validation {
    /// The server decided, just now or within the cache time.
    Online {
        /// The server's decision.
        decision: Decision,
        /// Whether it came from the cache rather than a request.
        cached: bool,
    },
    /// The server could not be asked; the stored offline token, verified, stands in.
    Offline {
        /// The verified token's claims.
        claims: Claims,
        /// Requested features the token does not grant.
        missing_features: Vec<String>,
        /// Why the server was not used (for logs; holds no secret).
        server_error: String,
    },
}

impl Validation {
    /// Whether the application may run (with the requested features).
    pub fn is_valid(&self) -> bool {
        match self {
            Self::Online { decision, .. } => decision.valid,
            Self::Offline {
                missing_features, ..
            } => missing_features.is_empty(),
        }
    }

    /// Whether the result came from the stored offline token.
    pub const fn is_offline(&self) -> bool {
        matches!(self, Self::Offline { .. })
    }

    /// The decision code; for an offline result, `VALID` or `FEATURES_MISSING`.
    pub fn code(&self) -> DecisionCode {
        match self {
            Self::Online { decision, .. } => decision.code.clone(),
            Self::Offline {
                missing_features, ..
            } if missing_features.is_empty() => DecisionCode::Valid,
            Self::Offline { .. } => DecisionCode::FeaturesMissing,
        }
    }
}

/// A verified offline token, as stored by [`Client::fetch_offline_token`](super::Client::fetch_offline_token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfflineToken {
    /// The compact token.
    pub token: String,
    /// Its verified claims.
    pub claims: Claims,
    /// Where it was stored.
    pub path: PathBuf,
}
