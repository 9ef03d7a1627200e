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

use std::fmt;

use chrono::{DateTime, Utc};
use p256::ecdsa::Signature;
use p256::ecdsa::signature::Verifier as _;
use serde::Deserialize;
use uuid::Uuid;

use crate::b64;
use crate::jwks::Jwks;
use crate::values::AppId;

/// Clock skew tolerated on `nbf` and `exp`, in seconds.
pub const LEEWAY_SECONDS: i64 = 60;

/// Longest token accepted, in bytes. Real tokens are well under 2 KiB; the cap keeps a hostile
/// input from costing more than a bounded amount of decoding.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// What a token is for (`kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
pub enum TokenKind {
    /// From `POST /v1/offline-tokens`.
    #[serde(rename = "offline")]
    Offline,
    /// The token of an air-gapped activation response file.
    #[serde(rename = "offline_activation")]
    OfflineActivation,
    /// The token of a deactivation receipt file: proof of a deactivation, not a license.
    #[serde(rename = "deactivation_receipt")]
    DeactivationReceipt,
    /// A kind this SDK does not know; never accepted.
    #[serde(other)]
    Unknown,
}

impl TokenKind {
    /// The protocol's spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Offline => "offline",
            Self::OfflineActivation => "offline_activation",
            Self::DeactivationReceipt => "deactivation_receipt",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a license's seats are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
pub enum LicenseModel {
    /// One seat per device.
    #[serde(rename = "node_locked")]
    NodeLocked,
    /// Seats leased by heartbeat.
    #[serde(rename = "floating")]
    Floating,
    /// One seat per named user.
    #[serde(rename = "named_user")]
    NamedUser,
    /// A model this SDK does not know (a newer server).
    #[serde(other)]
    Unknown,
}

/// The policy a license follows, as tokens and decisions name it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct PolicyRef {
    /// The policy id.
    pub id: Uuid,
    /// The policy version the license is on.
    pub version: u32,
    /// How seats are counted.
    pub model: LicenseModel,
}

/// The claims of a verified license token (`offline` or `offline_activation`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Claims {
    /// The issuer (`license-ledger` by default).
    pub iss: String,
    /// The license id.
    pub sub: Uuid,
    /// The App GUID the token is for.
    pub aud: AppId,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Not before, Unix seconds.
    pub nbf: i64,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// The token id recorded in the ledger.
    pub jti: Uuid,
    /// Entitlement codes.
    #[serde(default)]
    pub features: Vec<String>,
    /// The device the token is bound to, if any.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// The activation the token is bound to, if any.
    #[serde(default)]
    pub installation_id: Option<Uuid>,
    /// The license's policy.
    #[serde(default)]
    pub policy: Option<PolicyRef>,
    /// The license status at issue (`active`, `trialing`, `past_due`).
    #[serde(default)]
    pub status: Option<String>,
    /// What the token is for.
    pub kind: TokenKind,
}

impl Claims {
    /// The license id (`sub`).
    pub const fn license_id(&self) -> Uuid {
        self.sub
    }

    /// `exp` as a time (saturating for absurd values).
    pub fn expires_at(&self) -> DateTime<Utc> {
        unix_time(self.exp)
    }

    /// Whether the token grants `feature`.
    pub fn has_feature(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }
}

/// The claims of a verified deactivation receipt.
///
/// A receipt records a past fact, so only the members it needs are required.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ReceiptClaims {
    /// The issuer.
    #[serde(default)]
    pub iss: Option<String>,
    /// The license id.
    pub sub: Uuid,
    /// The App GUID.
    pub aud: AppId,
    /// Issued at, Unix seconds: when the deactivation was recorded.
    pub iat: i64,
    /// Not before, Unix seconds.
    #[serde(default)]
    pub nbf: Option<i64>,
    /// Expiry, Unix seconds (informational for a receipt).
    #[serde(default)]
    pub exp: Option<i64>,
    /// The receipt id.
    #[serde(default)]
    pub jti: Option<Uuid>,
    /// The installation that was deactivated.
    pub installation_id: Uuid,
    /// Its device fingerprint.
    pub fingerprint: String,
    /// Always [`TokenKind::DeactivationReceipt`] once verified.
    pub kind: TokenKind,
}

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
mod tests {
    use hmac::{KeyInit, Mac};
    use serde_json::{Value, json};

    use super::*;
    use crate::testkit::{self, APP_ID, FINGERPRINT, NOW, OTHER_APP_ID, TestKey, b64};

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    fn app() -> AppId {
        AppId::parse(APP_ID).unwrap()
    }

    fn setup() -> (TestKey, Verifier) {
        let key = TestKey::generate();
        let verifier = Verifier::new(Jwks::from_json(&key.jwks_json()).unwrap());
        (key, verifier)
    }

    fn verify(verifier: &Verifier, token: &str) -> Result<Claims, VerifyError> {
        verifier.verify(token, app(), Some(FINGERPRINT), at(NOW))
    }

    /// A token with the server's header and the given claims, signed over arbitrary header JSON.
    fn with_claims(key: &TestKey, edit: impl FnOnce(&mut Value)) -> String {
        let mut claims = testkit::claims(NOW);
        edit(&mut claims);
        key.token(&claims)
    }

    #[test]
    fn a_valid_token_verifies() {
        let (key, verifier) = setup();
        let claims = verify(&verifier, &key.token(&testkit::claims(NOW))).unwrap();
        assert_eq!(claims.aud, app());
        assert_eq!(claims.kind, TokenKind::Offline);
        assert!(claims.has_feature("pro"));
        assert_eq!(claims.fingerprint.as_deref(), Some(FINGERPRINT));
        assert_eq!(claims.expires_at(), at(NOW + 86_400));
        assert_eq!(
            claims.policy.map(|p| p.model),
            Some(LicenseModel::NodeLocked)
        );
    }

    #[test]
    fn a_token_with_one_byte_changed_anywhere_is_refused() {
        let (key, verifier) = setup();
        let token = key.token(&testkit::claims(NOW));
        assert!(verify(&verifier, &token).is_ok());
        let bytes = token.as_bytes();
        for position in 0..bytes.len() {
            // Two changes per position: the lowest bit (a neighbouring base64url character, which
            // in the last signature character only touches padding bits), and another character.
            let other = if bytes[position] == b'A' { b'B' } else { b'A' };
            for replacement in [bytes[position] ^ 1, other] {
                let mut tampered = bytes.to_vec();
                tampered[position] = replacement;
                let tampered = String::from_utf8(tampered).unwrap();
                assert!(
                    verify(&verifier, &tampered).is_err(),
                    "changing byte {position} to {:?} was not noticed",
                    char::from(replacement)
                );
            }
        }
    }

    #[test]
    fn alg_none_is_refused() {
        let (key, verifier) = setup();
        let header = json!({"alg": "none", "typ": "JWT", "kid": key.kid});
        let token = format!(
            "{}.{}.",
            b64(header.to_string().as_bytes()),
            b64(testkit::claims(NOW).to_string().as_bytes())
        );
        assert_eq!(
            verify(&verifier, &token),
            Err(VerifyError::Algorithm("none".to_owned()))
        );
        // Without the kid too, and with the alg spelled differently.
        for alg in ["None", "NONE", "es256", "ES256 "] {
            let header = json!({"alg": alg, "kid": key.kid});
            let token = format!(
                "{}.{}.",
                b64(header.to_string().as_bytes()),
                b64(testkit::claims(NOW).to_string().as_bytes())
            );
            assert_eq!(
                verify(&verifier, &token),
                Err(VerifyError::Algorithm(alg.to_owned()))
            );
        }
    }

    #[test]
    fn hs256_signed_with_the_public_key_is_refused() {
        let (key, verifier) = setup();
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": key.kid});
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(testkit::claims(NOW).to_string().as_bytes())
        );
        let secrets = [
            key.public_jwk().to_string().into_bytes(),
            key.jwks_json().into_bytes(),
            key.sec1(),
        ];
        for secret in secrets {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret).unwrap();
            mac.update(signing_input.as_bytes());
            let tag = mac.finalize().into_bytes();
            let token = format!("{signing_input}.{}", b64(&tag));
            assert_eq!(
                verify(&verifier, &token),
                Err(VerifyError::Algorithm("HS256".to_owned()))
            );
        }
    }

    fn with_signature(token: &str, signature: &[u8]) -> String {
        let signing_input = token.rsplit_once('.').unwrap().0;
        format!("{signing_input}.{}", b64(signature))
    }

    #[test]
    fn an_all_zero_signature_is_refused() {
        let (key, verifier) = setup();
        let token = with_signature(&key.token(&testkit::claims(NOW)), &[0u8; 64]);
        assert_eq!(verify(&verifier, &token), Err(VerifyError::SignatureRange));
    }

    #[test]
    fn out_of_range_signatures_are_refused() {
        let (key, verifier) = setup();
        let token = key.token(&testkit::claims(NOW));
        let good = b64::decode(token.rsplit_once('.').unwrap().1).unwrap();
        let (r, s) = good.split_at(32);
        // The order n of the P-256 group.
        let n: [u8; 32] = [
            0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2,
            0xfc, 0x63, 0x25, 0x51,
        ];
        let ones = [0xffu8; 32];
        let zero = [0u8; 32];
        for (bad_r, bad_s) in [
            (&n[..], s),
            (r, &n[..]),
            (&ones[..], s),
            (r, &ones[..]),
            (&zero[..], s),
            (r, &zero[..]),
        ] {
            let signature = [bad_r, bad_s].concat();
            assert_eq!(
                verify(&verifier, &with_signature(&token, &signature)),
                Err(VerifyError::SignatureRange)
            );
        }
        // n - 1 is in range but is not the signature.
        let mut n_minus_1 = n;
        n_minus_1[31] -= 1;
        let signature = [r, &n_minus_1[..]].concat();
        assert_eq!(
            verify(&verifier, &with_signature(&token, &signature)),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn signatures_of_the_wrong_length_are_refused() {
        let (key, verifier) = setup();
        let token = key.token(&testkit::claims(NOW));
        let good = b64::decode(token.rsplit_once('.').unwrap().1).unwrap();
        for len in [0, 32, 63, 65, 72] {
            let mut signature = good.clone();
            signature.resize(len, 1);
            assert_eq!(
                verify(&verifier, &with_signature(&token, &signature)),
                Err(VerifyError::SignatureLength(len))
            );
        }
        // A DER-encoded signature is not the JWS encoding either.
        let der = p256::ecdsa::Signature::from_slice(&good).unwrap().to_der();
        assert!(verify(&verifier, &with_signature(&token, der.as_bytes())).is_err());
    }

    #[test]
    fn an_unknown_kid_is_refused() {
        let (key, verifier) = setup();
        let other = TestKey::generate();
        // Signed by a key the client does not trust, under its own kid.
        let token = other.token(&testkit::claims(NOW));
        assert_eq!(
            verify(&verifier, &token),
            Err(VerifyError::UnknownKid(other.kid.clone()))
        );
        // Signed by an untrusted key but claiming the trusted kid.
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": key.kid});
        let token = other.sign(&header, &testkit::claims(NOW));
        assert_eq!(verify(&verifier, &token), Err(VerifyError::BadSignature));
        // No kid at all.
        let token = key.sign(&json!({"alg": "ES256"}), &testkit::claims(NOW));
        assert_eq!(verify(&verifier, &token), Err(VerifyError::MissingKid));
    }

    #[test]
    fn another_app_guid_in_aud_is_refused() {
        let (key, verifier) = setup();
        let token = with_claims(&key, |c| c["aud"] = json!(OTHER_APP_ID));
        assert_eq!(
            verify(&verifier, &token),
            Err(VerifyError::Audience {
                expected: app(),
                found: AppId::parse(OTHER_APP_ID).unwrap()
            })
        );
        // An array audience is not the protocol's.
        let token = with_claims(&key, |c| c["aud"] = json!([APP_ID]));
        assert!(matches!(
            verify(&verifier, &token),
            Err(VerifyError::Claims(_))
        ));
    }

    #[test]
    fn aud_is_compared_as_a_uuid() {
        let (key, verifier) = setup();
        let token = with_claims(&key, |c| c["aud"] = json!(APP_ID.to_uppercase()));
        assert!(verify(&verifier, &token).is_ok());
    }

    #[test]
    fn another_fingerprint_is_refused() {
        let (key, verifier) = setup();
        let token = key.token(&testkit::claims(NOW));
        assert_eq!(
            verifier.verify(&token, app(), Some("another-device"), at(NOW)),
            Err(VerifyError::FingerprintMismatch)
        );
        assert_eq!(
            verifier.verify(&token, app(), None, at(NOW)),
            Err(VerifyError::FingerprintRequired)
        );
        // An unbound token is good on any device, and without one.
        let unbound = with_claims(&key, |c| {
            c.as_object_mut().unwrap().remove("fingerprint");
        });
        assert!(verifier.verify(&unbound, app(), None, at(NOW)).is_ok());
        assert!(
            verifier
                .verify(&unbound, app(), Some("another-device"), at(NOW))
                .is_ok()
        );
    }

    #[test]
    fn expiry_is_enforced_beyond_the_leeway_only() {
        let (key, verifier) = setup();
        let token = key.token(&testkit::claims(NOW));
        let exp = NOW + 86_400;
        let check = |now| verifier.verify(&token, app(), Some(FINGERPRINT), at(now));
        assert!(check(exp - 1).is_ok());
        assert!(check(exp).is_ok(), "within leeway");
        assert!(check(exp + 59).is_ok(), "within leeway");
        assert_eq!(
            check(exp + 60),
            Err(VerifyError::Expired { exp, now: exp + 60 })
        );
        assert!(check(exp + 3600).is_err());
    }

    #[test]
    fn a_future_nbf_is_refused_beyond_the_leeway() {
        let (key, verifier) = setup();
        let token = key.token(&testkit::claims(NOW));
        let check = |now| verifier.verify(&token, app(), Some(FINGERPRINT), at(now));
        assert!(check(NOW - 60).is_ok(), "within leeway");
        assert_eq!(
            check(NOW - 61),
            Err(VerifyError::NotYetValid {
                nbf: NOW,
                now: NOW - 61
            })
        );
        assert!(check(NOW - 86_400).is_err());
    }

    #[test]
    fn absurd_times_do_not_panic() {
        let (key, verifier) = setup();
        let token = with_claims(&key, |c| {
            c["nbf"] = json!(i64::MIN);
            c["exp"] = json!(i64::MAX);
        });
        assert!(
            verifier
                .verify(&token, app(), Some(FINGERPRINT), at(NOW))
                .is_ok()
        );
        let token = with_claims(&key, |c| c["exp"] = json!(i64::MIN));
        let err = verify(&verifier, &token).unwrap_err();
        assert!(matches!(err, VerifyError::Expired { .. }));
        assert!(!err.to_string().is_empty());
        let token = with_claims(&key, |c| c["exp"] = json!(1.5e9));
        assert!(matches!(
            verify(&verifier, &token),
            Err(VerifyError::Claims(_))
        ));
    }

    #[test]
    fn a_deactivation_receipt_is_not_a_license() {
        let (key, verifier) = setup();
        let receipt = with_claims(&key, |c| {
            c["kind"] = json!("deactivation_receipt");
            c["installation_id"] = json!("1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7a8b");
        });
        assert_eq!(
            verify(&verifier, &receipt),
            Err(VerifyError::Kind {
                expected: "offline or offline_activation",
                found: TokenKind::DeactivationReceipt
            })
        );
        let claims = verifier
            .verify_receipt(&receipt, app(), Some(FINGERPRINT), at(NOW + 400 * 86_400))
            .unwrap();
        assert_eq!(claims.fingerprint, FINGERPRINT);
        assert!(
            verifier
                .verify_receipt(&receipt, app(), Some("another-device"), at(NOW))
                .is_err()
        );

        let unknown = with_claims(&key, |c| c["kind"] = json!("session"));
        assert!(matches!(
            verify(&verifier, &unknown),
            Err(VerifyError::Kind {
                found: TokenKind::Unknown,
                ..
            })
        ));
        // And a license is not a receipt.
        let license = key.token(&testkit::claims(NOW));
        assert!(matches!(
            verifier.verify_receipt(&license, app(), None, at(NOW)),
            Err(VerifyError::Kind { .. })
        ));
    }

    #[test]
    fn an_offline_activation_token_verifies() {
        let (key, verifier) = setup();
        let token = with_claims(&key, |c| {
            c["kind"] = json!("offline_activation");
            c["installation_id"] = json!("1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7a8b");
        });
        let claims = verify(&verifier, &token).unwrap();
        assert_eq!(claims.kind, TokenKind::OfflineActivation);
        assert!(claims.installation_id.is_some());
    }

    #[test]
    fn malformed_tokens_are_errors_not_panics() {
        let (key, verifier) = setup();
        let good = key.token(&testkit::claims(NOW));
        let (h, rest) = good.split_once('.').unwrap();
        let (c, s) = rest.split_once('.').unwrap();
        let cases: Vec<(String, VerifyError)> = vec![
            (String::new(), VerifyError::PartCount(1)),
            ("a.b".to_owned(), VerifyError::PartCount(2)),
            (format!("{good}.x"), VerifyError::PartCount(4)),
            (format!("{h}=.{c}.{s}"), VerifyError::Base64(Part::Header)),
            (
                format!("{h}.{c}.{s}="),
                VerifyError::Base64(Part::Signature),
            ),
            (format!("{h}.{c}!.{s}"), VerifyError::BadSignature),
            ("x".repeat(MAX_TOKEN_LEN + 1), VerifyError::TooLong),
        ];
        for (token, expected) in cases {
            assert_eq!(verify(&verifier, &token), Err(expected), "{token:?}");
        }
        assert!(matches!(
            verify(&verifier, ".."),
            Err(VerifyError::Header(_))
        ));
        // A header that is JSON but not an object, or an alg that is not a string.
        for header in [
            "[]",
            "\"ES256\"",
            r#"{"alg": null}"#,
            r#"{"kid": "x"}"#,
            "{",
        ] {
            let token = format!("{}.{c}.{s}", b64(header.as_bytes()));
            assert!(
                matches!(verify(&verifier, &token), Err(VerifyError::Header(_))),
                "{header}"
            );
        }
        // Claims that are signed but not JSON, or not the protocol's.
        for claims in ["not json", "{}", "[]", r#"{"aud": 1}"#] {
            let header = key.header().to_string();
            let token = key.sign(&serde_json::from_str(&header).unwrap(), &json!(null));
            assert!(verify(&verifier, &token).is_err());
            let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
            let signature: Signature =
                p256::ecdsa::signature::Signer::sign(&key.signing, input.as_bytes());
            let token = format!("{input}.{}", b64(&signature.to_bytes()));
            assert!(
                matches!(verify(&verifier, &token), Err(VerifyError::Claims(_))),
                "{claims}"
            );
        }
        // A critical header extension is refused even when signed.
        let token = key.sign(
            &json!({"alg": "ES256", "kid": key.kid, "crit": ["exp"]}),
            &testkit::claims(NOW),
        );
        assert_eq!(verify(&verifier, &token), Err(VerifyError::CriticalHeader));
    }
}
