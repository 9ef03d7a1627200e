//! Key material: fresh license keys and API tokens from the operating system's CSPRNG, and the
//! keyed hash under which license keys are stored.
//!
//! The hash is HMAC-SHA256 keyed with the server's *key pepper* (32 random bytes in the data
//! directory, or `LEDGER_KEY_PEPPER`): a stolen database alone does not let anyone test guessed
//! keys offline. Keys carry 160 random bits, so a slow password hash would add nothing but latency
//! to every validation.

use domain::ids::ApiTokenId;
use domain::keys::{
    API_TOKEN_ENTROPY_BYTES, ApiTokenSecret, KeyHash, LICENSE_KEY_ENTROPY_BYTES, LicenseKey,
};
use domain::values::KeyPrefix;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The operating system could not provide random bytes; nothing secret can be made.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct EntropyError(String);

/// `N` bytes from the operating system's random source (key material, session secrets).
///
/// # Errors
/// When the OS cannot give them.
pub fn entropy<const N: usize>() -> Result<[u8; N], EntropyError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| EntropyError(e.to_string()))?;
    Ok(bytes)
}

/// A fresh license key for a product with `prefix`.
///
/// # Errors
/// When the OS CSPRNG fails.
pub fn generate_license_key(prefix: &KeyPrefix) -> Result<LicenseKey, EntropyError> {
    Ok(LicenseKey::from_entropy(
        prefix,
        &entropy::<LICENSE_KEY_ENTROPY_BYTES>()?,
    ))
}

/// A fresh administration token with id `id`.
///
/// # Errors
/// When the OS CSPRNG fails.
pub fn generate_api_token(id: ApiTokenId) -> Result<ApiTokenSecret, EntropyError> {
    Ok(ApiTokenSecret::from_entropy(
        id,
        &entropy::<API_TOKEN_ENTROPY_BYTES>()?,
    ))
}

/// 32 fresh random bytes (a new key pepper).
///
/// # Errors
/// When the OS CSPRNG fails.
pub fn generate_pepper() -> Result<[u8; 32], EntropyError> {
    entropy::<32>()
}

/// Computes the stored form of license keys.
#[derive(Clone)]
pub struct KeyHasher {
    /// HMAC already keyed with the pepper: each hash clones it instead of re-deriving the key
    /// schedule (every validation hashes a key).
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher(..)")
    }
}

impl KeyHasher {
    /// A hasher keyed with `pepper`.
    pub fn new(pepper: [u8; 32]) -> Self {
        Self {
            keyed: <Hmac<Sha256> as KeyInit>::new_from_slice(&pepper)
                .expect("HMAC takes any key length"),
        }
    }

    /// HMAC-SHA256(pepper, canonical key).
    pub fn hash(&self, key: &LicenseKey) -> KeyHash {
        let mut mac = self.keyed.clone();
        mac.update(key.expose().as_bytes());
        KeyHash::from_bytes(mac.finalize().into_bytes().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fresh_and_hash_under_the_pepper_only() {
        let prefix = KeyPrefix::parse("ACME").unwrap();
        let a = generate_license_key(&prefix).unwrap();
        let b = generate_license_key(&prefix).unwrap();
        assert_ne!(a, b);
        let hasher = KeyHasher::new([1; 32]);
        assert_eq!(hasher.hash(&a), hasher.hash(&a));
        assert_ne!(hasher.hash(&a), hasher.hash(&b));
        assert_ne!(hasher.hash(&a), KeyHasher::new([2; 32]).hash(&a));
    }

    #[test]
    fn a_typed_key_hashes_like_the_issued_one() {
        let key = generate_license_key(&KeyPrefix::parse("ACME").unwrap()).unwrap();
        let typed = LicenseKey::parse(&key.expose().to_lowercase()).unwrap();
        let hasher = KeyHasher::new([3; 32]);
        assert_eq!(hasher.hash(&typed), hasher.hash(&key));
    }
}
