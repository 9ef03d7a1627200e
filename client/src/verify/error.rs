//! Why a token was refused: one [`VerifyError`] variant per rule, so an application can tell a
//! tampered token from an expired one.

use std::fmt;

use super::{MAX_TOKEN_LEN, TokenKind, unix_time};
use crate::values::AppId;

/// A part of a compact token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The first part.
    Header,
    /// The second part.
    Claims,
    /// The third part.
    Signature,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Header => "header",
            Self::Claims => "claims",
            Self::Signature => "signature",
        })
    }
}

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("the token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    /// Not three dot-separated parts.
    #[error("a token has 3 dot-separated parts, this one has {0}")]
    PartCount(usize),
    /// A part is not canonical unpadded base64url.
    #[error("the {0} part is not unpadded base64url")]
    Base64(Part),
    /// The header is not a JSON object with a string `alg`.
    #[error("the header is malformed: {0}")]
    Header(String),
    /// `alg` is not `ES256`.
    #[error("algorithm {0:?} is refused: tokens must be ES256")]
    Algorithm(String),
    /// The header has `crit` extensions, which this client does not implement.
    #[error("the header has critical extensions (crit) this client does not understand")]
    CriticalHeader,
    /// The header has no `kid`.
    #[error("the header has no kid")]
    MissingKid,
    /// `kid` is not in the trusted JWKS.
    #[error("kid {0:?} is not a trusted key")]
    UnknownKid(String),
    /// The signature is not 64 bytes.
    #[error("the signature is {0} bytes, not 64 (r || s)")]
    SignatureLength(usize),
    /// `r` or `s` is zero or not below the group order.
    #[error("the signature's r or s is outside [1, n-1]")]
    SignatureRange,
    /// The signature does not verify with the trusted key.
    #[error("the signature does not verify")]
    BadSignature,
    /// The claims are not the protocol's (after a good signature: a server bug, or a token of
    /// another system signed with the same key).
    #[error("the claims are malformed: {0}")]
    Claims(String),
    /// The token is of another kind than the one asked for.
    #[error("a {found} token is not accepted here (expected {expected})")]
    Kind {
        /// What the caller accepts.
        expected: &'static str,
        /// What the token is.
        found: TokenKind,
    },
    /// `aud` is another application's App GUID.
    #[error("the token is for App GUID {found}, not {expected}")]
    Audience {
        /// The caller's App GUID.
        expected: AppId,
        /// The token's `aud`.
        found: AppId,
    },
    /// `nbf` is more than the leeway in the future.
    #[error("the token is not valid before {}", unix_time(*nbf).to_rfc3339())]
    NotYetValid {
        /// The token's `nbf`.
        nbf: i64,
        /// The caller's clock.
        now: i64,
    },
    /// `exp` is more than the leeway in the past.
    #[error("the token expired at {}", unix_time(*exp).to_rfc3339())]
    Expired {
        /// The token's `exp`.
        exp: i64,
        /// The caller's clock.
        now: i64,
    },
    /// The token is bound to another device.
    #[error("the token is bound to another device fingerprint")]
    FingerprintMismatch,
    /// The token is bound to a device but the caller gave no fingerprint to compare with.
    #[error("the token is bound to a device fingerprint, but no fingerprint was given")]
    FingerprintRequired,
}
