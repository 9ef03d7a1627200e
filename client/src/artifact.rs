//! Checking a downloaded artifact (ADR 0023): its bytes hash to the SHA-256 the release lists,
//! and the server's ES256 signature verifies, with a key of the pinned key set, over the
//! artifact's statement: its product, version, file name, platform, architecture and digest
//! (`docs/client-protocol.md`, "Artifacts"). A signature thus vouches for this file of this
//! release only: a yanked build's signature does not verify as a newer release's.

use std::io::Read;
use std::path::Path;

use p256::ecdsa::Signature;
use p256::ecdsa::signature::Verifier as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::b64;
use crate::jwks::Jwks;

/// Why an artifact did not verify. Any of these: do not install it.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("the artifact's description is not the API's artifact object: {0}")]
    Malformed(String),
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

/// An artifact as the API shows it (`GET /v1/releases/{id}`, a download link's `artifact`, an
/// update's files): what a file is claimed to be, and the server's signature over that claim.
/// Other fields of the object are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ArtifactClaims {
    pub product_id: String,
    pub version: String,
    pub filename: String,
    pub platform: String,
    pub arch: String,
    pub sha256: String,
    pub signature: String,
    pub kid: String,
}

impl ArtifactClaims {
    /// Reads the API's artifact object.
    ///
    /// # Errors
    /// [`ArtifactError::Malformed`] when a field is missing or not a string.
    pub fn from_json(text: &str) -> Result<Self, ArtifactError> {
        serde_json::from_str(text).map_err(|e| ArtifactError::Malformed(e.to_string()))
    }

    /// The text the signature signs, rebuilt from the claims exactly as the server wrote it.
    fn statement(&self) -> Result<String, ArtifactError> {
        let fields = [
            &self.product_id,
            &self.version,
            &self.filename,
            &self.platform,
            &self.arch,
            &self.sha256,
        ];
        if fields.iter().any(|f| f.chars().any(char::is_control)) {
            return Err(ArtifactError::Malformed(
                "a field holds a control character".to_owned(),
            ));
        }
        Ok(format!(
            "license-ledger artifact v1\nproduct {}\nversion {}\nfile {}\nplatform {}\narch {}\nsha256 {}\n",
            self.product_id.to_ascii_lowercase(),
            self.version,
            self.filename,
            self.platform,
            self.arch,
            self.sha256.to_ascii_lowercase()
        ))
    }
}

/// Checks `bytes` against `artifact`: the digest, then the signature over the statement.
///
/// # Errors
/// The first check that fails, as [`ArtifactError`].
pub fn verify_artifact(
    bytes: &[u8],
    artifact: &ArtifactClaims,
    jwks: &Jwks,
) -> Result<(), ArtifactError> {
    verify_digest(Sha256::digest(bytes).into(), artifact, jwks)
}

/// [`verify_artifact`] for a file, read a block at a time (an installer of gigabytes is never
/// held in memory).
///
/// # Errors
/// As [`verify_artifact`], and when the file cannot be read.
pub fn verify_artifact_file(
    path: &Path,
    artifact: &ArtifactClaims,
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
    verify_digest(hasher.finalize().into(), artifact, jwks)
}

fn verify_digest(
    actual: [u8; 32],
    artifact: &ArtifactClaims,
    jwks: &Jwks,
) -> Result<(), ArtifactError> {
    let expected = decode_hex(&artifact.sha256).ok_or(ArtifactError::MalformedDigest)?;
    if expected != actual {
        return Err(ArtifactError::DigestMismatch {
            expected: artifact.sha256.to_ascii_lowercase(),
            actual: hex(&actual),
        });
    }
    let statement = artifact.statement()?;
    let raw = b64::decode(&artifact.signature).ok_or(ArtifactError::MalformedSignature)?;
    let signature = Signature::from_slice(&raw).map_err(|_| ArtifactError::MalformedSignature)?;
    let key = jwks
        .key(&artifact.kid)
        .ok_or_else(|| ArtifactError::UnknownKey(artifact.kid.clone()))?;
    key.verify(statement.as_bytes(), &signature)
        .map_err(|_| ArtifactError::BadSignature(artifact.kid.clone()))
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

    /// The claims of `bytes` as the server would sign them with `signing`.
    fn signed(signing: &SigningKey, bytes: &[u8], version: &str) -> ArtifactClaims {
        let mut claims = ArtifactClaims {
            product_id: "0193a1b2-0000-7000-8000-000000000014".to_owned(),
            version: version.to_owned(),
            filename: "studio-7.4.0.tar.gz".to_owned(),
            platform: "linux".to_owned(),
            arch: "x86_64".to_owned(),
            sha256: hex(&Sha256::digest(bytes)),
            signature: String::new(),
            kid: "k1".to_owned(),
        };
        let signature: Signature = signing.sign(claims.statement().unwrap().as_bytes());
        claims.signature = b64::encode(&signature.to_bytes());
        claims
    }

    #[test]
    fn an_artifact_verifies_by_its_digest_and_the_signature_over_its_statement() {
        let signing = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let jwks = key_set(&signing);
        let bytes = b"studio-7.4.0 installer bytes";
        let claims = signed(&signing, bytes, "7.4.0");
        verify_artifact(bytes, &claims, &jwks).unwrap();
        // Upper-case hex is the same digest.
        let mut upper = claims.clone();
        upper.sha256 = upper.sha256.to_uppercase();
        verify_artifact(bytes, &upper, &jwks).unwrap();
        // One byte changed: the digest tells.
        assert!(matches!(
            verify_artifact(b"studio-7.4.0 installer byteS", &claims, &jwks),
            Err(ArtifactError::DigestMismatch { .. })
        ));
        // The same file and signature claimed for another version, name or platform.
        for change in [
            |c: &mut ArtifactClaims| c.version = "7.6.0".to_owned(),
            |c: &mut ArtifactClaims| c.filename = "studio-7.6.0.tar.gz".to_owned(),
            |c: &mut ArtifactClaims| c.platform = "windows".to_owned(),
            |c: &mut ArtifactClaims| {
                c.product_id = "0193a1b2-0000-7000-8000-000000000015".to_owned()
            },
        ] {
            let mut passed_off = claims.clone();
            change(&mut passed_off);
            assert!(matches!(
                verify_artifact(bytes, &passed_off, &jwks),
                Err(ArtifactError::BadSignature(_))
            ));
        }
        // Signed by nobody we trust.
        let other = SigningKey::from_slice(&[9u8; 32]).unwrap();
        assert!(matches!(
            verify_artifact(bytes, &signed(&other, bytes, "7.4.0"), &jwks),
            Err(ArtifactError::BadSignature(_))
        ));
        let mut unknown = claims.clone();
        unknown.kid = "k2".to_owned();
        assert!(matches!(
            verify_artifact(bytes, &unknown, &jwks),
            Err(ArtifactError::UnknownKey(_))
        ));
        let mut bad = claims.clone();
        bad.sha256 = "abc".to_owned();
        assert!(matches!(
            verify_artifact(bytes, &bad, &jwks),
            Err(ArtifactError::MalformedDigest)
        ));
        let mut bad = claims.clone();
        bad.signature = "not base64!".to_owned();
        assert!(matches!(
            verify_artifact(bytes, &bad, &jwks),
            Err(ArtifactError::MalformedSignature)
        ));
        let mut bad = claims;
        bad.filename = "a\nsha256 0".to_owned();
        assert!(matches!(
            verify_artifact(bytes, &bad, &jwks),
            Err(ArtifactError::Malformed(_))
        ));
    }

    #[test]
    fn a_file_verifies_like_its_bytes_and_claims_read_from_the_api_object() {
        let signing = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let jwks = key_set(&signing);
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let path = std::env::temp_dir().join(format!("artifact-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, &bytes).unwrap();
        let claims = signed(&signing, &bytes, "7.4.0");
        let mut object = serde_json::to_value(serde_json::json!({
            "id": "0193a1b2-0000-7000-8000-000000000099", "size": bytes.len(),
            "release_id": "0193a1b2-0000-7000-8000-000000000098",
        }))
        .unwrap();
        for (k, v) in [
            ("product_id", &claims.product_id),
            ("version", &claims.version),
            ("filename", &claims.filename),
            ("platform", &claims.platform),
            ("arch", &claims.arch),
            ("sha256", &claims.sha256),
            ("signature", &claims.signature),
            ("kid", &claims.kid),
        ] {
            object[k] = serde_json::json!(v);
        }
        let read = ArtifactClaims::from_json(&object.to_string()).unwrap();
        assert_eq!(read, claims);
        let result = verify_artifact_file(&path, &read, &jwks);
        std::fs::remove_file(&path).unwrap();
        result.unwrap();
        assert!(matches!(
            ArtifactClaims::from_json("{}"),
            Err(ArtifactError::Malformed(_))
        ));
    }
}
