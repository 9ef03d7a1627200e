//! Test support shared by the unit tests and the integration tests (which include this file with
//! `#[path]`): real P-256 keys, their JWKS, and real ES256 tokens signed the way the server signs
//! them.
//!
//! It deliberately uses nothing from the crate itself, so the kid thumbprint and the token
//! encoding here are an independent implementation of the protocol that the SDK is checked
//! against.
#![allow(dead_code)] // each test binary uses a different part of it

use base64ct::{Base64UrlUnpadded, Encoding};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// An App GUID for tests.
pub const APP_ID: &str = "6f1c2a9e-8d4b-4c3a-9e2f-1a2b3c4d5e6f";
/// Another product's App GUID.
pub const OTHER_APP_ID: &str = "0b7e1c55-3f0a-4d6e-8a1b-2c3d4e5f6a7b";
/// The device fingerprint of the machine under test.
pub const FINGERPRINT: &str = "fp-0123456789abcdef";
/// A fixed "now" for token times: 2026-03-01T00:00:00Z.
pub const NOW: i64 = 1_772_323_200;

/// A signing key and the kid the server would publish it under.
pub struct TestKey {
    pub signing: SigningKey,
    pub kid: String,
}

impl TestKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        loop {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).expect("the OS has randomness");
            // A random 32-byte string is a valid scalar except with probability ~2^-32.
            if let Ok(signing) = SigningKey::from_slice(&secret) {
                let kid = thumbprint(&signing);
                return Self { signing, kid };
            }
        }
    }

    /// The SEC1 uncompressed encoding of the public key (`04 || x || y`).
    pub fn sec1(&self) -> Vec<u8> {
        self.signing.verifying_key().to_sec1_bytes().to_vec()
    }

    /// The public JWK as the server publishes it.
    pub fn public_jwk(&self) -> Value {
        let sec1 = self.sec1();
        json!({
            "kty": "EC", "crv": "P-256",
            "x": b64(&sec1[1..33]), "y": b64(&sec1[33..65]),
            "kid": self.kid, "use": "sig", "alg": "ES256",
        })
    }

    /// A JWKS holding only this key.
    pub fn jwks_json(&self) -> String {
        json!({ "keys": [self.public_jwk()] }).to_string()
    }

    /// A compact ES256 token over the given header and claims.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature: Signature = self.signing.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", b64(&signature.to_bytes()))
    }

    /// The header the server writes.
    pub fn header(&self) -> Value {
        json!({"alg": "ES256", "typ": "JWT", "kid": self.kid})
    }

    /// A valid token with `claims`.
    pub fn token(&self, claims: &Value) -> String {
        self.sign(&self.header(), claims)
    }
}

/// Claims of an offline token for [`APP_ID`] bound to [`FINGERPRINT`], issued at `now` and valid
/// for a day.
pub fn claims(now: i64) -> Value {
    json!({
        "iss": "license-ledger",
        "sub": "0e3b8f3c-5a5d-4b8e-9a51-6f3c2d1e0a9b",
        "aud": APP_ID,
        "iat": now, "nbf": now, "exp": now + 86_400,
        "jti": "7d0f4e2a-1c3b-4a5d-8e6f-9a0b1c2d3e4f",
        "features": ["pro", "export.pdf"],
        "fingerprint": FINGERPRINT,
        "policy": {"id": "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d", "version": 2, "model": "node_locked"},
        "status": "active",
        "kind": "offline",
    })
}

/// Unpadded base64url.
pub fn b64(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

/// RFC 7638 thumbprint of the key's public half.
fn thumbprint(signing: &SigningKey) -> String {
    let sec1 = signing.verifying_key().to_sec1_bytes();
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        b64(&sec1[1..33]),
        b64(&sec1[33..65])
    );
    b64(&Sha256::digest(canonical.as_bytes()))
}
