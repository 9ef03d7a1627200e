//! Verification of the server's ES256 tokens: offline tokens, offline activations and
//! deactivation receipts.
//!
//! The steps follow `docs/client-protocol.md`, in its order, and each failure has its own
//! [`VerifyError`] variant so an application can tell a tampered token from an expired one:
//!
//! 1. three base64url parts; the header's `alg` must be exactly `ES256` and its `kid` trusted.
//!    The algorithm is pinned here, never taken from the token: `none` and `HS256` (with the
//!    public key as the HMAC secret) are the classic ways to forge a JWT, and both fail at this
//!    step because no other algorithm is implemented at all.
//! 2. the signature is 64 bytes `r ‖ s` with `r` and `s` in `[1, n-1]`, and verifies over the
//!    ASCII bytes `header.claims`.
//! 3. `aud` is the application's own App GUID (compared as UUIDs).
//! 4. `nbf <= now + 60` and `now - 60 < exp`.
//! 5. a token bound to a fingerprint is only good on that device; a caller that does not say
//!    which device it is on gets a refusal, not a pass.
//!
//! The claims are parsed only after the signature has verified, so nothing an attacker writes
//! is interpreted beyond the header.

//!
//! # Layout
//!
//! - `claims`: [`Claims`], [`ReceiptClaims`] and what they hold ([`TokenKind`],
//!   [`PolicyRef`], [`LicenseModel`]); the one definition the server signs and the SDK reads.
//! - `error`: [`VerifyError`] and [`Part`].
//! - this module: [`Verifier`] and the steps themselves.

use chrono::{DateTime, Utc};
use p256::ecdsa::Signature;
use p256::ecdsa::signature::Verifier as _;
use serde::Deserialize;

use crate::b64;
use crate::jwks::Jwks;
use crate::values::AppId;

mod claims;
mod error;

pub use claims::{Claims, LicenseModel, PolicyRef, ReceiptClaims, TokenKind};
pub use error::{Part, VerifyError};

/// Clock skew tolerated on `nbf` and `exp`, in seconds.
pub const LEEWAY_SECONDS: i64 = 60;

/// Longest token accepted, in bytes. Real tokens are well under 2 KiB; the cap keeps a hostile
/// input from costing more than a bounded amount of decoding.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Verifies tokens against a pinned key set.
#[derive(Clone, Debug)]
pub struct Verifier {
    jwks: Jwks,
}

/// The header members the verifier reads. Unknown members (`typ`, `cty`…) are ignored.
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// Just the kind of a token, read before the rest of its claims.
#[derive(Deserialize)]
struct Kinded {
    kind: TokenKind,
}

impl Verifier {
    /// A verifier trusting exactly the keys of `jwks`.
    pub const fn new(jwks: Jwks) -> Self {
        Self { jwks }
    }

    /// The trusted keys.
    pub const fn jwks(&self) -> &Jwks {
        &self.jwks
    }

    /// The trusted keys, to [`Jwks::merge`] more into.
    pub const fn jwks_mut(&mut self) -> &mut Jwks {
        &mut self.jwks
    }

    /// Verifies a license token (`kind` `offline` or `offline_activation`) for the application
    /// `expected_app_id` on the device `own_fingerprint` at time `now`.
    ///
    /// # Errors
    /// The first rule the token breaks, as a [`VerifyError`]; see the module documentation for
    /// the order.
    pub fn verify(
        &self,
        token: &str,
        expected_app_id: AppId,
        own_fingerprint: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Claims, VerifyError> {
        // A receipt proves a seat was given up; it must never unlock the application.
        let claims: Claims =
            self.authenticated_claims(token, "offline or offline_activation", |k| {
                matches!(k, TokenKind::Offline | TokenKind::OfflineActivation)
            })?;
        check_audience(claims.aud, expected_app_id)?;
        let now = now.timestamp();
        if claims.nbf > now.saturating_add(LEEWAY_SECONDS) {
            return Err(VerifyError::NotYetValid {
                nbf: claims.nbf,
                now,
            });
        }
        if claims.exp <= now.saturating_sub(LEEWAY_SECONDS) {
            return Err(VerifyError::Expired {
                exp: claims.exp,
                now,
            });
        }
        if let Some(bound) = &claims.fingerprint {
            match own_fingerprint {
                None => return Err(VerifyError::FingerprintRequired),
                Some(own) if own != bound => return Err(VerifyError::FingerprintMismatch),
                Some(_) => {}
            }
        }
        Ok(claims)
    }

    /// Verifies a deactivation receipt for `expected_app_id`.
    ///
    /// A receipt records a past deactivation, so its `exp` is not checked (a receipt stays proof
    /// of what happened); its `nbf`, when present, must not be in the future. When
    /// `own_fingerprint` is given the receipt must be for that device; without it (an
    /// administrator checking a receipt for someone else) the device is in the claims.
    ///
    /// # Errors
    /// As [`Verifier::verify`] for the header, signature and audience; [`VerifyError::Kind`]
    /// for anything but a receipt.
    pub fn verify_receipt(
        &self,
        token: &str,
        expected_app_id: AppId,
        own_fingerprint: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ReceiptClaims, VerifyError> {
        let claims: ReceiptClaims =
            self.authenticated_claims(token, "deactivation_receipt", |k| {
                k == TokenKind::DeactivationReceipt
            })?;
        check_audience(claims.aud, expected_app_id)?;
        let now = now.timestamp();
        if let Some(nbf) = claims.nbf
            && nbf > now.saturating_add(LEEWAY_SECONDS)
        {
            return Err(VerifyError::NotYetValid { nbf, now });
        }
        if own_fingerprint.is_some_and(|own| own != claims.fingerprint) {
            return Err(VerifyError::FingerprintMismatch);
        }
        Ok(claims)
    }

    /// Steps 1 and 2, then the kind: the token's claims, parsed only once the signature has
    /// verified. The kind is read first so a token of the wrong kind is reported as such rather
    /// than as claims missing a member its own kind does not have.
    fn authenticated_claims<C: for<'de> Deserialize<'de>>(
        &self,
        token: &str,
        expected: &'static str,
        accepted: impl FnOnce(TokenKind) -> bool,
    ) -> Result<C, VerifyError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::TooLong);
        }
        let parts: Vec<&str> = token.split('.').collect();
        let [header_b64, claims_b64, signature_b64] = parts[..] else {
            return Err(VerifyError::PartCount(parts.len()));
        };

        let header_bytes = b64::decode(header_b64).ok_or(VerifyError::Base64(Part::Header))?;
        let header: Header = serde_json::from_slice(&header_bytes)
            .map_err(|e| VerifyError::Header(e.to_string()))?;
        if header.alg != "ES256" {
            return Err(VerifyError::Algorithm(header.alg));
        }
        if header.crit.is_some() {
            return Err(VerifyError::CriticalHeader);
        }
        let kid = header.kid.ok_or(VerifyError::MissingKid)?;
        let key = self
            .jwks
            .key(&kid)
            .ok_or_else(|| VerifyError::UnknownKid(kid.clone()))?;

        let signature_bytes =
            b64::decode(signature_b64).ok_or(VerifyError::Base64(Part::Signature))?;
        if signature_bytes.len() != 64 {
            return Err(VerifyError::SignatureLength(signature_bytes.len()));
        }
        // `from_slice` checks that r and s are in [1, n-1]; zero or out-of-range scalars are an
        // error here, never a panic further down.
        let signature =
            Signature::from_slice(&signature_bytes).map_err(|_| VerifyError::SignatureRange)?;
        // The signing input is the token's own ASCII text, not a re-encoding of the decoded
        // parts, exactly as RFC 7515 defines it.
        let signing_input_len = header_b64.len() + 1 + claims_b64.len();
        key.verify(&token.as_bytes()[..signing_input_len], &signature)
            .map_err(|_| VerifyError::BadSignature)?;

        let claims_bytes = b64::decode(claims_b64).ok_or(VerifyError::Base64(Part::Claims))?;
        let malformed = |e: serde_json::Error| VerifyError::Claims(e.to_string());
        let Kinded { kind } = serde_json::from_slice(&claims_bytes).map_err(malformed)?;
        if !accepted(kind) {
            return Err(VerifyError::Kind {
                expected,
                found: kind,
            });
        }
        serde_json::from_slice(&claims_bytes).map_err(malformed)
    }
}

fn check_audience(found: AppId, expected: AppId) -> Result<(), VerifyError> {
    if found == expected {
        Ok(())
    } else {
        Err(VerifyError::Audience { expected, found })
    }
}

/// A Unix time as a date, clamped to chrono's range so a hostile `exp` cannot panic a message.
pub(crate) fn unix_time(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap_or(if seconds < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

#[cfg(test)]
mod tests;
