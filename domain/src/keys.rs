//! License keys and administration tokens: their formats, and the hashes the ledger stores instead.
//!
//! A license key is `PREFIX-XXXXXXXX-XXXXXXXX-XXXXXXXX-XXXXXXXX`: the product's [`KeyPrefix`] and
//! 160 random bits in Crockford base32 (no `I L O U`, so it can be read aloud and typed; `O`, `I`
//! and `L` typed by mistake are read as `0`, `1`, `1`). The random bits come from the operating
//! system's CSPRNG in `commands`; this module only formats and parses them.
//!
//! The ledger never stores a key: it stores a keyed hash (HMAC-SHA256 with the server's key pepper,
//! computed in `commands::keys`) and a short support prefix (`PREFIX-XXXX`, 20 of the 160 bits).
//! Secrets in this module redact themselves in `Debug` so they cannot reach a log by accident.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ids::ApiTokenId;
use crate::values::{InvalidValue, KeyPrefix};

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Number of random bytes in a license key (160 bits).
pub const LICENSE_KEY_ENTROPY_BYTES: usize = 20;
/// Number of random bytes in an administration token (240 bits).
pub const API_TOKEN_ENTROPY_BYTES: usize = 30;

/// Encodes bytes whose bit length is a multiple of 5 as Crockford base32.
fn crockford_encode(bytes: &[u8]) -> String {
    debug_assert_eq!(bytes.len() * 8 % 5, 0);
    let mut out = String::with_capacity(bytes.len() * 8 / 5);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(CROCKFORD[((buffer >> bits) & 0x1f) as usize] as char);
        }
    }
    out
}

/// Each byte of a typed key mapped to its canonical character of the random part: upper-cased,
/// with the look-alikes Crockford base32 folds (`O` -> `0`, `I`/`L` -> `1`); 0 for a byte that is
/// no key character (non-ASCII bytes included). A table rather than a search of [`CROCKFORD`]:
/// this runs for every character of every validated key, and the search was a twentieth of the
/// validation server's CPU (BENCHMARKS.md, "Validation").
const NORMALIZED: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < CROCKFORD.len() {
        let c = CROCKFORD[i];
        table[c as usize] = c;
        table[c.to_ascii_lowercase() as usize] = c;
        i += 1;
    }
    table[b'O' as usize] = b'0';
    table[b'o' as usize] = b'0';
    table[b'I' as usize] = b'1';
    table[b'i' as usize] = b'1';
    table[b'L' as usize] = b'1';
    table[b'l' as usize] = b'1';
    table
};

/// A license key in its canonical form. Shown once, when issued or rotated; never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct LicenseKey(String);

impl LicenseKey {
    /// Formats fresh random bytes as a key for a product.
    pub fn from_entropy(prefix: &KeyPrefix, entropy: &[u8; LICENSE_KEY_ENTROPY_BYTES]) -> Self {
        let body = crockford_encode(entropy);
        let groups: Vec<&str> = (0..4).map(|i| &body[i * 8..i * 8 + 8]).collect();
        Self(format!("{}-{}", prefix.as_str(), groups.join("-")))
    }

    /// Parses a key as a user may type it: any case, with or without the hyphens between groups,
    /// surrounding whitespace ignored, Crockford look-alikes folded.
    ///
    /// # Errors
    /// When the text is not a well-formed key. The message never echoes the key.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let malformed = || InvalidValue::new("the license key is malformed");
        let raw = raw.trim();
        if raw.len() > 128 {
            return Err(malformed());
        }
        let (prefix, rest) = raw.split_once('-').ok_or_else(malformed)?;
        if !(2..=8).contains(&prefix.len()) || !prefix.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(malformed());
        }
        // One allocation: the canonical text is built in place (this runs on every validation).
        let mut text = String::with_capacity(prefix.len() + 36);
        text.extend(prefix.chars().map(|c| c.to_ascii_uppercase()));
        let mut count = 0;
        for b in rest.bytes() {
            if b == b'-' {
                continue;
            }
            if count == 32 {
                return Err(malformed());
            }
            if count % 8 == 0 {
                text.push('-');
            }
            match NORMALIZED[usize::from(b)] {
                0 => return Err(malformed()),
                c => text.push(char::from(c)),
            }
            count += 1;
        }
        if count != 32 {
            return Err(malformed());
        }
        Ok(Self(text))
    }

    /// The canonical text, to show to the customer once. Handle with care: this is the secret.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The part support staff may see and search by: the product prefix and the first four
    /// characters of the random part (`ACME-7K3Q`).
    pub fn support_prefix(&self) -> String {
        let (prefix, rest) = self.0.split_once('-').unwrap_or((&self.0, ""));
        format!("{prefix}-{}", &rest[..4.min(rest.len())])
    }
}

impl fmt::Debug for LicenseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LicenseKey({}-…)", self.support_prefix())
    }
}

/// What support types to find a license by the start of its key (`GET /v1/licenses?key_prefix=`):
/// the product prefix, the hyphen, and 2 to 4 characters of the random part — at most the
/// support prefix the ledger keeps (`ACME-7K3Q`, [`LicenseKey::support_prefix`]). Read as a key
/// is: any case, surrounding whitespace ignored, Crockford look-alikes folded (`o` -> `0`).
///
/// Two characters at least, so one search reaches about a thousandth of a product's licenses at
/// most (10 of the 20 bits); never more than four, so nobody pastes a whole key (the secret) into
/// a URL, where proxies and browser histories keep it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupportPrefixSearch(String);

impl SupportPrefixSearch {
    /// # Errors
    /// When the text is not a product prefix, a hyphen and 2 to 4 key characters.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let invalid = || {
            InvalidValue::new(
                "key_prefix must be the product's key prefix, a hyphen and the next 2 to 4 \
                 characters of the key, e.g. ACME-7K3Q (the ledger keeps only these)",
            )
        };
        let (prefix, rest) = raw.trim().split_once('-').ok_or_else(invalid)?;
        if !(2..=8).contains(&prefix.len()) || !prefix.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(invalid());
        }
        if !(2..=4).contains(&rest.len()) {
            return Err(invalid());
        }
        let mut text = prefix.to_ascii_uppercase();
        text.push('-');
        for b in rest.bytes() {
            match NORMALIZED[usize::from(b)] {
                0 => return Err(invalid()),
                c => text.push(char::from(c)),
            }
        }
        Ok(Self(text))
    }

    /// The canonical text searched for.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The support prefixes that start with it, as a byte-wise range: from the text (included)
    /// to the text with its last character's successor (excluded). Every character is ASCII
    /// alphanumeric, so the successor is one byte and no other text falls between.
    pub fn range(&self) -> (String, String) {
        let mut upper = self.0.clone().into_bytes();
        if let Some(last) = upper.last_mut() {
            *last += 1;
        }
        (
            self.0.clone(),
            String::from_utf8(upper).unwrap_or_else(|_| self.0.clone()),
        )
    }
}

/// A 32-byte digest of a secret (license key or API token), stored and compared instead of it.
/// Serialized as lower-case hex.
#[derive(Clone, Copy, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct KeyHash([u8; 32]);

/// Lower-case hex, as `String::from` gives, encoded on the stack: every license state and
/// validation entry carries one, and `#[serde(into = "String")]` allocated a string per value.
impl Serialize for KeyHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut hex = [0_u8; 64];
        hex::encode_to_slice(self.0, &mut hex).map_err(serde::ser::Error::custom)?;
        let hex = std::str::from_utf8(&hex).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(hex)
    }
}

// Equality is the constant-time comparison below; hashing the same bytes keeps Hash consistent.
impl std::hash::Hash for KeyHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl KeyHash {
    /// Wraps a digest.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    /// The digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// Compares in constant time: the comparison takes as long whichever byte differs.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl PartialEq for KeyHash {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other)
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({}…)", &self.to_hex()[..8])
    }
}

impl TryFrom<String> for KeyHash {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&raw, &mut bytes)
            .map_err(|_| InvalidValue::new("a key hash is 64 hexadecimal characters"))?;
        Ok(Self(bytes))
    }
}

impl From<KeyHash> for String {
    fn from(v: KeyHash) -> String {
        v.to_hex()
    }
}

/// An administration bearer token: `llt_<token id>_<48 base32 characters>`.
///
/// The id in the token lets the server load the token's own stream and compare the hash, without
/// any table of secrets to scan.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiTokenSecret {
    id: ApiTokenId,
    text: String,
}

impl ApiTokenSecret {
    /// Formats fresh random bytes as the token with id `id`.
    pub fn from_entropy(id: ApiTokenId, entropy: &[u8; API_TOKEN_ENTROPY_BYTES]) -> Self {
        let text = format!(
            "llt_{}_{}",
            id.as_uuid().simple(),
            crockford_encode(entropy)
        );
        Self { id, text }
    }

    /// Parses a bearer token.
    ///
    /// # Errors
    /// When the text does not have the token format. The message never echoes the token.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let malformed = || InvalidValue::new("the bearer token is malformed");
        let rest = raw.strip_prefix("llt_").ok_or_else(malformed)?;
        let (id, secret) = rest.split_once('_').ok_or_else(malformed)?;
        if id.len() != 32 || secret.len() != 48 || !secret.bytes().all(|b| CROCKFORD.contains(&b)) {
            return Err(malformed());
        }
        let id = uuid::Uuid::try_parse(id).map_err(|_| malformed())?;
        Ok(Self {
            id: ApiTokenId::from_uuid(id),
            text: raw.to_owned(),
        })
    }

    /// The token's id (not secret).
    pub const fn id(&self) -> ApiTokenId {
        self.id
    }

    /// SHA-256 of the whole token: tokens carry 240 random bits, so an unkeyed hash cannot be
    /// reversed by guessing.
    pub fn hash(&self) -> KeyHash {
        KeyHash(Sha256::digest(self.text.as_bytes()).into())
    }

    /// The token text, to print once. Handle with care: this is the secret.
    pub fn expose(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for ApiTokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiTokenSecret({}, …)", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn prefix() -> KeyPrefix {
        KeyPrefix::parse("ACME").unwrap()
    }

    /// The stack-encoded hex is what `String::from` (and so `#[serde(into = "String")]`) gives.
    #[test]
    fn a_key_hash_serializes_as_its_lower_case_hex() {
        for bytes in [[0_u8; 32], [0xAB; 32], std::array::from_fn(|i| i as u8 * 8)] {
            let hash = KeyHash::from_bytes(bytes);
            assert_eq!(
                serde_json::to_string(&hash).unwrap(),
                serde_json::to_string(&String::from(hash)).unwrap()
            );
            let back: KeyHash =
                serde_json::from_str(&serde_json::to_string(&hash).unwrap()).unwrap();
            assert_eq!(back, hash);
        }
    }

    #[test]
    fn a_key_has_the_product_prefix_and_four_groups_of_eight() {
        let key = LicenseKey::from_entropy(&prefix(), &[0xAB; 20]);
        let text = key.expose();
        assert!(text.starts_with("ACME-"));
        let groups: Vec<&str> = text.split('-').collect();
        assert_eq!(groups.len(), 5);
        assert!(groups[1..].iter().all(|g| g.len() == 8));
        assert_eq!(key.support_prefix(), format!("ACME-{}", &groups[1][..4]));
    }

    #[test]
    fn keys_parse_as_users_type_them() {
        let key = LicenseKey::from_entropy(&prefix(), &[7; 20]);
        let sloppy = format!("  {}  ", key.expose().to_ascii_lowercase().replace('-', ""));
        // Without any hyphen the prefix cannot be told apart: one hyphen after it is required.
        assert!(LicenseKey::parse(&sloppy).is_err());
        let typed = format!(
            "acme-{}",
            &key.expose()[5..].to_ascii_lowercase().replace('-', "")
        );
        assert_eq!(LicenseKey::parse(&typed).unwrap(), key);
        let with_lookalikes = key.expose().replace('0', "O").replace('1', "l");
        assert_eq!(LicenseKey::parse(&with_lookalikes).unwrap(), key);
    }

    #[test]
    fn the_normalizing_table_folds_exactly_the_crockford_alphabet() {
        for byte in 0..=255u8 {
            let upper = byte.to_ascii_uppercase();
            let folded = match upper {
                b'O' => b'0',
                b'I' | b'L' => b'1',
                other => other,
            };
            let expected = if CROCKFORD.contains(&folded) {
                folded
            } else {
                0
            };
            assert_eq!(NORMALIZED[usize::from(byte)], expected, "byte {byte:#04x}");
        }
        // A non-ASCII character (its bytes are all >= 0x80) is no key character.
        assert!(LicenseKey::parse("ACME-0000000Ö-00000000-00000000-0000000").is_err());
    }

    #[test]
    fn malformed_keys_are_refused_without_echoing_them() {
        for bad in [
            "",
            "ACME",
            "ACME-SHORT",
            "acme-UUUUUUUU-UUUUUUUU-UUUUUUUU-UUUUUUUU",
        ] {
            let err = LicenseKey::parse(bad).unwrap_err();
            assert_eq!(err.message(), "the license key is malformed");
        }
    }

    #[test]
    fn secrets_do_not_print_in_debug() {
        let key = LicenseKey::from_entropy(&prefix(), &[9; 20]);
        let printed = format!("{key:?}");
        assert!(!printed.contains(&key.expose()[10..]));
        let token =
            ApiTokenSecret::from_entropy(ApiTokenId::from_uuid(uuid::Uuid::nil()), &[3; 30]);
        assert!(!format!("{token:?}").contains(&token.expose()[40..]));
    }

    #[test]
    fn tokens_round_trip_and_hash_stably() {
        let id = ApiTokenId::from_uuid(uuid::Uuid::now_v7());
        let token = ApiTokenSecret::from_entropy(id, &[42; 30]);
        let parsed = ApiTokenSecret::parse(token.expose()).unwrap();
        assert_eq!(parsed.id(), id);
        assert_eq!(parsed.hash(), token.hash());
        assert!(ApiTokenSecret::parse("llt_nothex_x").is_err());
        assert!(ApiTokenSecret::parse(&token.expose().replace("llt_", "xxx_")).is_err());
    }

    #[test]
    fn key_hashes_compare_by_every_byte() {
        let a = KeyHash::from_bytes([1; 32]);
        let mut other = [1; 32];
        other[31] = 2;
        assert!(a.ct_eq(&a));
        assert!(!a.ct_eq(&KeyHash::from_bytes(other)));
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<KeyHash>(&json).unwrap(), a);
    }

    proptest! {
        #[test]
        fn every_key_from_any_entropy_parses_back_to_itself(entropy in proptest::array::uniform20(any::<u8>())) {
            let key = LicenseKey::from_entropy(&prefix(), &entropy);
            prop_assert_eq!(LicenseKey::parse(key.expose()).unwrap(), key);
        }

        #[test]
        fn distinct_entropy_gives_distinct_keys(a in proptest::array::uniform20(any::<u8>()), b in proptest::array::uniform20(any::<u8>())) {
            prop_assume!(a != b);
            prop_assert_ne!(LicenseKey::from_entropy(&prefix(), &a), LicenseKey::from_entropy(&prefix(), &b));
        }
    }
}

#[cfg(test)]
mod support_prefix_tests {
    use super::*;

    #[test]
    fn a_support_prefix_is_searched_as_typed_and_as_a_byte_range() {
        let key = LicenseKey::from_entropy(&KeyPrefix::parse("ACME").unwrap(), &[0x5a; 20]);
        let shown = key.support_prefix();
        let typed = shown.to_ascii_lowercase();
        let search = SupportPrefixSearch::parse(&format!("  {typed} ")).unwrap();
        assert_eq!(search.as_str(), shown);
        let (from, to) = search.range();
        assert!(from.as_str() <= shown.as_str() && shown.as_str() < to.as_str());
        let short = SupportPrefixSearch::parse("acme-o1").unwrap();
        assert_eq!(short.range(), ("ACME-01".into(), "ACME-02".into()));
        for bad in [
            "",
            "ACME",
            "ACME-",
            "ACME-7",
            "ACME-7K3Q7",
            "ACME-7K3Q-ABCD",
            "A-7K",
            "ACME-7%",
            "ACME-7_",
            "ACME-\0\0",
            "AC%E-7K",
            "ACME-7U",
        ] {
            assert!(SupportPrefixSearch::parse(bad).is_err(), "{bad:?}");
        }
    }
}
