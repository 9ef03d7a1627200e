//! The trusted key set: a JWKS of ES256 public keys, pinned by the application.
//!
//! Loading is where a forged or mistaken key set is stopped. A set that carries private key
//! material is refused outright: a server never publishes one, so it can only come from a mistake
//! (a key file pasted into the wrong place) or an attacker, and in both cases the application
//! must not start trusting it.
//!
//! Keys that are not EC P-256 signing keys are *skipped*, not refused: keys rotate and a future
//! server may publish other key types beside the ES256 key, and an older client should keep
//! working with the keys it understands. A key that claims to be EC P-256 but is malformed is
//! refused, since it is meant for us and something is wrong with it. A set with no usable key at
//! all is refused too, because it could verify nothing.

use std::collections::BTreeMap;
use std::fmt;

use p256::ecdsa::VerifyingKey;
use serde_json::{Map, Value};

use crate::b64;

/// JWK members that only a private (or symmetric) key has. `d` is the EC and RSA private
/// exponent, `k` a symmetric secret, the rest RSA private parts.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "k", "p", "q", "dp", "dq", "qi", "oth"];

/// Why a JWKS was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// The text is not JSON of the shape `{"keys": [{...}, ...]}`.
    #[error("the JWKS is not of the form {{\"keys\": [...]}}: {0}")]
    Shape(String),
    /// A key carries private key material.
    #[error(
        "key #{index} in the JWKS holds private key material (`{member}`); a JWKS must only publish public keys"
    )]
    PrivateKey {
        /// Position of the key in `keys`.
        index: usize,
        /// The private member found.
        member: &'static str,
    },
    /// An EC P-256 key has no (or an empty) `kid`.
    #[error("key #{index} in the JWKS has no kid")]
    MissingKid {
        /// Position of the key in `keys`.
        index: usize,
    },
    /// A member of an EC P-256 key is missing or malformed.
    #[error("key {kid}: {problem}")]
    BadKey {
        /// The key's kid.
        kid: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// Two keys share a kid, so a token's kid would not say which key signed it.
    #[error("two keys in the JWKS share kid {kid}")]
    DuplicateKid {
        /// The repeated kid.
        kid: String,
    },
    /// Merging would replace a trusted key with a different key under the same kid.
    #[error("kid {kid} is already trusted with a different key")]
    Conflict {
        /// The kid.
        kid: String,
    },
    /// No key in the set is an EC P-256 signing key.
    #[error("the JWKS has no EC P-256 (ES256) signing key")]
    NoUsableKey,
}

/// A set of trusted ES256 public keys, by kid.
///
/// Build it with [`Jwks::from_json`] from the JWKS the application ships with (or fetched over TLS
/// and kept in protected storage).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Jwks {
    keys: BTreeMap<String, VerifyingKey>,
}

impl Jwks {
    /// Parses a JWKS document (`{"keys": [...]}`).
    ///
    /// Every key is checked for private members first, whatever its type. Keys whose `kty` is
    /// not `EC`, whose `crv` is not `P-256`, whose `use` (when present) is not `sig` or whose
    /// `alg` (when present) is not `ES256` are skipped.
    ///
    /// # Errors
    /// [`JwksError::PrivateKey`] when any key has a private member (`d` and the like);
    /// [`JwksError::MissingKid`], [`JwksError::BadKey`] or [`JwksError::DuplicateKid`] for a
    /// malformed EC P-256 key; [`JwksError::NoUsableKey`] when nothing is left;
    /// [`JwksError::Shape`] when the text is not a JWKS at all.
    pub fn from_json(text: &str) -> Result<Self, JwksError> {
        let doc: Value = serde_json::from_str(text).map_err(|e| JwksError::Shape(e.to_string()))?;
        let entries = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| JwksError::Shape("no `keys` array".to_owned()))?;

        // Private material anywhere refuses the whole document, before anything else is looked
        // at: such a set is wrong as a whole, not just the one key.
        for (index, entry) in entries.iter().enumerate() {
            let member = entry
                .as_object()
                .ok_or_else(|| JwksError::Shape(format!("key #{index} is not an object")))?;
            if let Some(found) = PRIVATE_MEMBERS.iter().find(|m| member.contains_key(**m)) {
                return Err(JwksError::PrivateKey {
                    index,
                    member: found,
                });
            }
        }

        let mut keys = BTreeMap::new();
        for (index, entry) in entries.iter().enumerate() {
            let Some(member) = entry.as_object() else {
                continue; // refused above
            };
            if !is_es256_signing_key(member, index)? {
                continue;
            }
            let kid = match member.get("kid") {
                Some(Value::String(kid)) if !kid.is_empty() => kid.clone(),
                _ => return Err(JwksError::MissingKid { index }),
            };
            let key = ec_point(member, &kid)?;
            if keys.insert(kid.clone(), key).is_some() {
                return Err(JwksError::DuplicateKid { kid });
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(Self { keys })
    }

    /// Whether `kid` is trusted.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The trusted kids, in order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// How many keys are trusted.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is trusted (only for [`Jwks::default`]: a parsed set is never empty).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds the keys of `other` that are not trusted yet and returns how many were added.
    ///
    /// A kid already trusted must come with the same key: a different key under a pinned kid is
    /// refused and nothing is merged, so a fetched set can add keys but never replace one.
    ///
    /// # Errors
    /// [`JwksError::Conflict`] as above.
    pub fn merge(&mut self, other: Self) -> Result<usize, JwksError> {
        for (kid, key) in &other.keys {
            if self.keys.get(kid).is_some_and(|known| known != key) {
                return Err(JwksError::Conflict { kid: kid.clone() });
            }
        }
        let before = self.keys.len();
        self.keys.extend(other.keys);
        Ok(self.keys.len() - before)
    }

    /// The public key trusted under `kid` (also what `ledger-replay verify-export` checks
    /// checkpoint signatures with).
    pub fn key(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.get(kid)
    }
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwks")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Whether a JWK is meant for ES256 signatures; a member of the wrong JSON type is an error.
fn is_es256_signing_key(member: &Map<String, Value>, index: usize) -> Result<bool, JwksError> {
    let text = |name: &str| -> Result<Option<&str>, JwksError> {
        match member.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(JwksError::Shape(format!(
                "key #{index}: `{name}` is not a string"
            ))),
        }
    };
    Ok(text("kty")? == Some("EC")
        && text("crv")? == Some("P-256")
        && text("use")?.is_none_or(|u| u == "sig")
        && text("alg")?.is_none_or(|a| a == "ES256"))
}

/// The public key of an EC P-256 JWK; the point must be on the curve.
fn ec_point(member: &Map<String, Value>, kid: &str) -> Result<VerifyingKey, JwksError> {
    let bad = |problem| JwksError::BadKey {
        kid: kid.to_owned(),
        problem,
    };
    let coordinate = |name: &str| {
        member
            .get(name)
            .and_then(Value::as_str)
            .and_then(b64::decode)
            .filter(|bytes| bytes.len() == 32)
    };
    let x = coordinate("x").ok_or_else(|| bad("`x` is not the base64url of 32 bytes"))?;
    let y = coordinate("y").ok_or_else(|| bad("`y` is not the base64url of 32 bytes"))?;
    let mut sec1 = Vec::with_capacity(65);
    sec1.push(0x04); // SEC1 tag of an uncompressed point
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| bad("(x, y) is not a point on P-256"))
}

/// The RFC 7638 thumbprint of an EC P-256 public key, which the server uses as its kid.
#[cfg(test)]
pub(crate) fn thumbprint(key: &VerifyingKey) -> String {
    use sha2::{Digest, Sha256};

    let sec1 = key.to_sec1_bytes();
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        b64::encode(&sec1[1..33]),
        b64::encode(&sec1[33..65])
    );
    b64::encode(&Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::TestKey;

    #[test]
    fn a_published_key_set_loads_under_its_thumbprint_kid() {
        let key = TestKey::generate();
        let jwks = Jwks::from_json(&key.jwks_json()).unwrap();
        assert_eq!(jwks.kids().collect::<Vec<_>>(), [key.kid.as_str()]);
        assert_eq!(key.kid, thumbprint(key.signing.verifying_key()));
    }

    #[test]
    fn a_jwks_with_a_private_key_is_refused_at_load() {
        let key = TestKey::generate();
        let mut jwk = key.public_jwk();
        jwk["d"] = Value::String(b64::encode(&key.signing.to_bytes()));
        let text = serde_json::json!({ "keys": [jwk] }).to_string();
        assert_eq!(
            Jwks::from_json(&text),
            Err(JwksError::PrivateKey {
                index: 0,
                member: "d"
            })
        );
    }

    #[test]
    fn a_private_member_refuses_the_set_even_beside_a_good_key() {
        let key = TestKey::generate();
        let secret = serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"});
        let text = serde_json::json!({ "keys": [key.public_jwk(), secret] }).to_string();
        assert!(matches!(
            Jwks::from_json(&text),
            Err(JwksError::PrivateKey {
                index: 1,
                member: "k"
            })
        ));
    }

    #[test]
    fn other_key_types_are_skipped_but_an_empty_result_is_refused() {
        let key = TestKey::generate();
        let rsa = serde_json::json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa"});
        let p384 =
            serde_json::json!({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA", "kid": "p384"});
        let mut enc = key.public_jwk();
        enc["use"] = Value::String("enc".to_owned());
        enc["kid"] = Value::String("enc".to_owned());
        let text = serde_json::json!({ "keys": [rsa, key.public_jwk(), p384, enc] }).to_string();
        let jwks = Jwks::from_json(&text).unwrap();
        assert_eq!(jwks.kids().collect::<Vec<_>>(), [key.kid.as_str()]);

        let only_rsa = r#"{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa"}]}"#;
        assert_eq!(Jwks::from_json(only_rsa), Err(JwksError::NoUsableKey));
        assert_eq!(
            Jwks::from_json(r#"{"keys": []}"#),
            Err(JwksError::NoUsableKey)
        );
    }

    #[test]
    fn malformed_ec_keys_are_refused() {
        let key = TestKey::generate();
        let mut no_kid = key.public_jwk();
        no_kid.as_object_mut().unwrap().remove("kid");
        let text = serde_json::json!({ "keys": [no_kid] }).to_string();
        assert_eq!(
            Jwks::from_json(&text),
            Err(JwksError::MissingKid { index: 0 })
        );

        let mut short = key.public_jwk();
        short["x"] = Value::String(b64::encode(&[1u8; 31]));
        let text = serde_json::json!({ "keys": [short] }).to_string();
        assert!(matches!(
            Jwks::from_json(&text),
            Err(JwksError::BadKey { .. })
        ));

        let mut off_curve = key.public_jwk();
        off_curve["y"] = Value::String(b64::encode(&[1u8; 32]));
        let text = serde_json::json!({ "keys": [off_curve] }).to_string();
        assert!(matches!(
            Jwks::from_json(&text),
            Err(JwksError::BadKey { .. })
        ));

        let text = serde_json::json!({ "keys": [key.public_jwk(), key.public_jwk()] }).to_string();
        assert!(matches!(
            Jwks::from_json(&text),
            Err(JwksError::DuplicateKid { .. })
        ));

        for garbage in [
            "",
            "[]",
            "{}",
            r#"{"keys": {}}"#,
            r#"{"keys": [1]}"#,
            "{\"keys\": [",
        ] {
            assert!(
                matches!(Jwks::from_json(garbage), Err(JwksError::Shape(_))),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn merging_adds_keys_but_never_replaces_a_trusted_one() {
        let first = TestKey::generate();
        let second = TestKey::generate();
        let mut trusted = Jwks::from_json(&first.jwks_json()).unwrap();
        let both = serde_json::json!({ "keys": [first.public_jwk(), second.public_jwk()] });
        let added = trusted
            .merge(Jwks::from_json(&both.to_string()).unwrap())
            .unwrap();
        assert_eq!(added, 1);
        assert_eq!(trusted.len(), 2);

        // The second key published under the first key's kid.
        let mut impostor = second.public_jwk();
        impostor["kid"] = Value::String(first.kid.clone());
        let text = serde_json::json!({ "keys": [impostor] }).to_string();
        let mut pinned = Jwks::from_json(&first.jwks_json()).unwrap();
        assert!(matches!(
            pinned.merge(Jwks::from_json(&text).unwrap()),
            Err(JwksError::Conflict { .. })
        ));
        assert_eq!(pinned, Jwks::from_json(&first.jwks_json()).unwrap());
    }
}
