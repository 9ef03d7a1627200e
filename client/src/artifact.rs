//! Checking a downloaded artifact (ADR 0023): its bytes hash to the SHA-256 the release lists,
//! and the server's ES256 signature over that digest verifies with a key of the pinned key set.
//! The signed message is the digest's 32 raw bytes (ECDSA P-256 hashes them again with SHA-256,
//! as JOSE's ES256 does); the signature is `r || s`, base64url without padding.

use std::io::Read;
use std::path::Path;

use p256::ecdsa::Signature;
use p256::ecdsa::signature::Verifier as _;
use sha2::{Digest, Sha256};

use crate::b64;
use crate::jwks::Jwks;

/// Why an artifact did not verify. Any of these: do not install it.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("the expected SHA-256 is not 64 hex digits")]
    MalformedDigest,
    #[error("the bytes hash to {actual}, not to the expected {expected}")]
    DigestMismatch { expected: String, actual: String },
    #[error("the signature is not base64url of 64 bytes (r || s)")]
    MalformedSignature,
    #[error("the key set holds no key {0:?}")]
    UnknownKey(String),
    #[error("the signature does not verify with key {0:?}")]
    BadSignature(String),
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
}

/// Checks `bytes` against the `sha256` (hex) and `signature` (by key `kid`) the release lists.
///
/// # Errors
/// The first check that fails, as [`ArtifactError`].
pub fn verify_artifact(
    bytes: &[u8],
    sha256: &str,
    signature: &str,
    kid: &str,
    jwks: &Jwks,
) -> Result<(), ArtifactError> {
    verify_digest(Sha256::digest(bytes).into(), sha256, signature, kid, jwks)
}

/// [`verify_artifact`] for a file, read a block at a time (an installer of gigabytes is never
/// held in memory).
///
/// # Errors
/// As [`verify_artifact`], and when the file cannot be read.
pub fn verify_artifact_file(
    path: &Path,
    sha256: &str,
    signature: &str,
    kid: &str,
    jwks: &Jwks,
) -> Result<(), ArtifactError> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            break;
        }
        hasher.update(&block[..n]);
    }
    verify_digest(hasher.finalize().into(), sha256, signature, kid, jwks)
}

fn verify_digest(
    actual: [u8; 32],
    sha256: &str,
    signature: &str,
    kid: &str,
    jwks: &Jwks,
) -> Result<(), ArtifactError> {
    let expected = decode_hex(sha256).ok_or(ArtifactError::MalformedDigest)?;
    if expected != actual {
        return Err(ArtifactError::DigestMismatch {
            expected: sha256.to_ascii_lowercase(),
            actual: hex(&actual),
        });
    }
    let raw = b64::decode(signature).ok_or(ArtifactError::MalformedSignature)?;
    let signature = Signature::from_slice(&raw).map_err(|_| ArtifactError::MalformedSignature)?;
    let key = jwks
        .key(kid)
        .ok_or_else(|| ArtifactError::UnknownKey(kid.to_owned()))?;
    key.verify(&actual, &signature)
        .map_err(|_| ArtifactError::BadSignature(kid.to_owned()))
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;

    use super::*;

    fn key_set(signing: &SigningKey) -> Jwks {
        // Uncompressed SEC1: 0x04 || x (32) || y (32).
        let point = signing.verifying_key().to_sec1_point(false);
        let raw = point.as_bytes();
        let jwk = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
            "x": b64::encode(&raw[1..33]), "y": b64::encode(&raw[33..65]),
        }]});
        Jwks::from_json(&jwk.to_string()).unwrap()
    }

    #[test]
    fn an_artifact_verifies_by_its_digest_and_the_signature_over_it() {
        let signing = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let jwks = key_set(&signing);
        let bytes = b"studio-7.4.0 installer bytes";
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let signature: Signature = signing.sign(&digest);
        let sig = b64::encode(&signature.to_bytes());
        let hex_digest = hex(&digest);
        verify_artifact(bytes, &hex_digest, &sig, "k1", &jwks).unwrap();
        // Upper-case hex is the same digest.
        verify_artifact(bytes, &hex_digest.to_uppercase(), &sig, "k1", &jwks).unwrap();
        // One byte changed: the digest tells.
        assert!(matches!(
            verify_artifact(
                b"studio-7.4.0 installer byteS",
                &hex_digest,
                &sig,
                "k1",
                &jwks
            ),
            Err(ArtifactError::DigestMismatch { .. })
        ));
        // A digest and bytes that agree, signed by nobody we trust.
        let other = SigningKey::from_slice(&[9u8; 32]).unwrap();
        let forged: Signature = other.sign(&digest);
        assert!(matches!(
            verify_artifact(
                bytes,
                &hex_digest,
                &b64::encode(&forged.to_bytes()),
                "k1",
                &jwks
            ),
            Err(ArtifactError::BadSignature(_))
        ));
        assert!(matches!(
            verify_artifact(bytes, &hex_digest, &sig, "k2", &jwks),
            Err(ArtifactError::UnknownKey(_))
        ));
        assert!(matches!(
            verify_artifact(bytes, "abc", &sig, "k1", &jwks),
            Err(ArtifactError::MalformedDigest)
        ));
        assert!(matches!(
            verify_artifact(bytes, &hex_digest, "not base64!", "k1", &jwks),
            Err(ArtifactError::MalformedSignature)
        ));
    }

    #[test]
    fn a_file_verifies_like_its_bytes() {
        let signing = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let jwks = key_set(&signing);
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let path = std::env::temp_dir().join(format!("artifact-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, &bytes).unwrap();
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let signature: Signature = signing.sign(&digest);
        let result = verify_artifact_file(
            &path,
            &hex(&digest),
            &b64::encode(&signature.to_bytes()),
            "k1",
            &jwks,
        );
        std::fs::remove_file(&path).unwrap();
        result.unwrap();
    }
}
