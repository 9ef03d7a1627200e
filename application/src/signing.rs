//! Signing keys for offline tokens (ES256) and the JWKS that publishes their public halves.
//!
//! Keys live in `<data-dir>/signing-keys/`: one file per private key, `<kid>.key`, holding the
//! P-256 scalar in hex (mode 0600), and `keys.json` saying which key signs now (`current`) and
//! which are retired. Every key not retired is published in the JWKS, so tokens signed before a
//! rotation keep verifying until their key is retired. `ledger keys rotate|retire` edit the files;
//! a running server notices the change (it re-reads `keys.json` when its content changes) without a
//! restart. Private keys never leave the directory: the JWKS and the logs carry public keys and
//! key ids only.
//!
//! `kid` is the RFC 7638 thumbprint of the public key.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{Context, bail};
use base64ct::{Base64UrlUnpadded, Encoding};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// One signing key with its public JWK.
pub struct KeyPair {
    pub kid: String,
    signing: SigningKey,
    /// `(x, y)` in base64url.
    xy: (String, String),
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    fn from_scalar(bytes: &[u8]) -> anyhow::Result<Self> {
        let signing = SigningKey::from_slice(bytes).context("not a valid P-256 private key")?;
        let point = signing.verifying_key().to_sec1_point(false);
        let raw = point.as_bytes();
        // Uncompressed SEC1: 0x04 || x (32) || y (32).
        if raw.len() != 65 || raw[0] != 4 {
            bail!("unexpected public key encoding");
        }
        let x = Base64UrlUnpadded::encode_string(&raw[1..33]);
        let y = Base64UrlUnpadded::encode_string(&raw[33..65]);
        let thumbprint_input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = Base64UrlUnpadded::encode_string(&Sha256::digest(thumbprint_input.as_bytes()));
        Ok(Self {
            kid,
            signing,
            xy: (x, y),
        })
    }

    /// A fresh key pair from the OS CSPRNG.
    pub fn generate() -> anyhow::Result<Self> {
        // Not every 32 random bytes are a valid scalar (zero, or at least the group order).
        loop {
            let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
            getrandom::fill(bytes.as_mut())
                .map_err(|e| anyhow::anyhow!("OS random generator failed: {e}"))?;
            if let Ok(pair) = Self::from_scalar(bytes.as_ref()) {
                return Ok(pair);
            }
        }
    }

    /// The public JWK.
    pub fn jwk(&self) -> Value {
        json!({"kty": "EC", "crv": "P-256", "x": self.xy.0, "y": self.xy.1,
               "kid": self.kid, "use": "sig", "alg": "ES256"})
    }

    /// An ES256 signature (`r || s`) of `bytes` (checkpoint statements).
    pub fn sign_bytes(&self, bytes: &[u8]) -> [u8; 64] {
        let signature: Signature = self.signing.sign(bytes);
        signature.to_bytes().into()
    }

    /// A compact ES256 JWS of `claims`, with this key's `kid`.
    ///
    /// # Errors
    /// When `claims` does not serialize (a claims type holding a value meant only to be read,
    /// such as the SDK's `TokenKind::Unknown`).
    pub fn sign_jwt<T: Serialize + ?Sized>(&self, claims: &T) -> Result<String, serde_json::Error> {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            Base64UrlUnpadded::encode_string(header.to_string().as_bytes()),
            Base64UrlUnpadded::encode_string(&serde_json::to_vec(claims)?)
        );
        // RFC 6979 deterministic nonce, SHA-256; r || s.
        let signature: Signature = self.signing.sign(signing_input.as_bytes());
        Ok(format!(
            "{signing_input}.{}",
            Base64UrlUnpadded::encode_string(&signature.to_bytes())
        ))
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeyList {
    current: Option<String>,
    keys: Vec<KeyRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
struct KeyRecord {
    kid: String,
    created_at: chrono::DateTime<chrono::Utc>,
    retired_at: Option<chrono::DateTime<chrono::Utc>>,
}

struct Loaded {
    current: Arc<KeyPair>,
    published: Vec<Arc<KeyPair>>,
    /// Digest of `keys.json` as loaded (modification times are too coarse: two edits within one
    /// filesystem tick would look like none).
    digest: [u8; 32],
}

fn list_digest(dir: &Path) -> [u8; 32] {
    fs::read(list_path(dir))
        .map(|bytes| Sha256::digest(&bytes).into())
        .unwrap_or([0; 32])
}

/// The server's signing keys.
pub struct SigningKeys {
    dir: PathBuf,
    loaded: RwLock<Loaded>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Where the signing keys live inside a data directory.
pub fn keys_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("signing-keys")
}

fn list_path(dir: &Path) -> PathBuf {
    dir.join("keys.json")
}

fn read_list(dir: &Path) -> anyhow::Result<KeyList> {
    let path = list_path(dir);
    if !path.exists() {
        return Ok(KeyList::default());
    }
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a key list", path.display()))
}

/// Writes the list atomically (a reader never sees half a file).
fn write_list(dir: &Path, list: &KeyList) -> anyhow::Result<()> {
    let tmp = dir.join(format!("keys.json.{}", uuid::Uuid::now_v7()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(serde_json::to_string_pretty(list)?.as_bytes())?;
    file.sync_all()?;
    fs::rename(&tmp, list_path(dir))?;
    Ok(())
}

fn read_key(dir: &Path, kid: &str) -> anyhow::Result<KeyPair> {
    if !kid
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        bail!("invalid key id {kid:?}");
    }
    let path = dir.join(format!("{kid}.key"));
    let mode = fs::metadata(&path)
        .with_context(|| format!("signing key {kid} is missing ({})", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} is accessible to other users; run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    let text = zeroize::Zeroizing::new(fs::read_to_string(&path)?);
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), bytes.as_mut())
        .with_context(|| format!("{} is not a key", path.display()))?;
    let pair = KeyPair::from_scalar(bytes.as_ref())?;
    if pair.kid != kid {
        bail!("{} holds key {} , not {kid}", path.display(), pair.kid);
    }
    Ok(pair)
}

fn write_key(dir: &Path, pair: &KeyPair) -> anyhow::Result<()> {
    let path = dir.join(format!("{}.key", pair.kid));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    let secret = zeroize::Zeroizing::new(hex::encode(pair.signing.to_bytes()));
    file.write_all(secret.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(())
}

/// Makes a new key current; earlier keys stay published. Returns its kid.
///
/// # Errors
/// When the directory cannot be written.
pub fn rotate(data_dir: &Path) -> anyhow::Result<String> {
    let dir = keys_dir(data_dir);
    ensure_dir(&dir)?;
    let mut list = read_list(&dir)?;
    let pair = KeyPair::generate()?;
    write_key(&dir, &pair)?;
    list.keys.push(KeyRecord {
        kid: pair.kid.clone(),
        created_at: chrono::Utc::now(),
        retired_at: None,
    });
    list.current = Some(pair.kid.clone());
    write_list(&dir, &list)?;
    Ok(pair.kid)
}

/// Stops publishing key `kid` (tokens it signed stop verifying). The current key cannot be retired.
///
/// # Errors
/// When the key is unknown, already retired or current.
pub fn retire(data_dir: &Path, kid: &str) -> anyhow::Result<()> {
    let dir = keys_dir(data_dir);
    let mut list = read_list(&dir)?;
    if list.current.as_deref() == Some(kid) {
        bail!("{kid} is the current signing key; rotate first, then retire it");
    }
    let record = list
        .keys
        .iter_mut()
        .find(|k| k.kid == kid)
        .with_context(|| format!("no signing key {kid}"))?;
    if record.retired_at.is_some() {
        bail!("{kid} is already retired");
    }
    record.retired_at = Some(chrono::Utc::now());
    write_list(&dir, &list)
}

/// Every public key, published and retired, as a JWKS: what an auditor needs to verify old
/// checkpoints (the served JWKS leaves retired keys out, so their tokens stop verifying).
///
/// # Errors
/// When the keys cannot be read.
pub fn all_public_keys(data_dir: &Path) -> anyhow::Result<Value> {
    public_keys(data_dir, true)
}

/// The published public keys as a JWKS: what `/.well-known/jwks.json` serves.
///
/// # Errors
/// When the keys cannot be read.
pub fn published_public_keys(data_dir: &Path) -> anyhow::Result<Value> {
    public_keys(data_dir, false)
}

fn public_keys(data_dir: &Path, include_retired: bool) -> anyhow::Result<Value> {
    let dir = keys_dir(data_dir);
    let list = read_list(&dir)?;
    let keys = list
        .keys
        .iter()
        .filter(|k| include_retired || k.retired_at.is_none())
        .map(|k| read_key(&dir, &k.kid).map(|pair| pair.jwk()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(json!({ "keys": keys }))
}

/// The keys with their state, for `ledger keys list`.
///
/// # Errors
/// When the list cannot be read.
pub fn list(data_dir: &Path) -> anyhow::Result<Vec<(String, &'static str)>> {
    let list = read_list(&keys_dir(data_dir))?;
    Ok(list
        .keys
        .iter()
        .map(|k| {
            let state = if list.current.as_deref() == Some(k.kid.as_str()) {
                "current"
            } else if k.retired_at.is_some() {
                "retired"
            } else {
                "published"
            };
            (k.kid.clone(), state)
        })
        .collect())
}

fn load(dir: &Path) -> anyhow::Result<Loaded> {
    let digest = list_digest(dir);
    let list = read_list(dir)?;
    let current_kid = list.current.clone().context("no current signing key")?;
    let mut published = Vec::new();
    let mut current = None;
    for record in list.keys.iter().filter(|k| k.retired_at.is_none()) {
        let pair = Arc::new(read_key(dir, &record.kid)?);
        if record.kid == current_kid {
            current = Some(pair.clone());
        }
        published.push(pair);
    }
    Ok(Loaded {
        current: current.context("the current signing key is retired or missing")?,
        published,
        digest,
    })
}

impl SigningKeys {
    /// Opens the keys in `data_dir`, creating the first one on first start.
    ///
    /// # Errors
    /// When the keys cannot be read or created.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let dir = keys_dir(data_dir);
        if read_list(&dir)?.current.is_none() {
            let kid = rotate(data_dir)?;
            tracing::info!(%kid, "created the first signing key");
        }
        Ok(Self {
            loaded: RwLock::new(load(&dir)?),
            dir,
        })
    }

    /// Re-reads the keys when `keys.json` changed (after `ledger keys rotate|retire`).
    pub fn reload_if_changed(&self) {
        let digest = list_digest(&self.dir);
        let stale = self
            .loaded
            .read()
            .map(|l| l.digest != digest)
            .unwrap_or(true);
        if !stale {
            return;
        }
        match load(&self.dir) {
            Ok(fresh) => {
                tracing::info!(current = %fresh.current.kid, published = fresh.published.len(), "signing keys reloaded");
                if let Ok(mut l) = self.loaded.write() {
                    *l = fresh;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot reload the signing keys; keeping the previous ones")
            }
        }
    }

    /// The key that signs now.
    pub fn current(&self) -> Arc<KeyPair> {
        self.loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .current
            .clone()
    }

    /// The JWKS of every published key.
    pub fn jwks(&self) -> Value {
        let loaded = self
            .loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        json!({ "keys": loaded.published.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::VerifyingKey;
    use p256::ecdsa::signature::Verifier;

    fn temp() -> PathBuf {
        std::env::temp_dir().join(format!("ledger-keys-{}", uuid::Uuid::now_v7()))
    }

    #[test]
    fn tokens_verify_with_the_published_key_and_rotation_keeps_old_keys_published() {
        let dir = temp();
        let keys = SigningKeys::open(&dir).unwrap();
        let first = keys.current();
        let token = first.sign_jwt(&json!({"sub": "x"})).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        // Verify with the public key from the JWKS alone.
        let jwk = &keys.jwks()["keys"][0];
        let mut sec1 = vec![4u8];
        sec1.extend(Base64UrlUnpadded::decode_vec(jwk["x"].as_str().unwrap()).unwrap());
        sec1.extend(Base64UrlUnpadded::decode_vec(jwk["y"].as_str().unwrap()).unwrap());
        let vk = VerifyingKey::from_sec1_bytes(&sec1).unwrap();
        let sig = Signature::from_slice(&Base64UrlUnpadded::decode_vec(parts[2]).unwrap()).unwrap();
        vk.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .unwrap();
        assert!(jwk.get("d").is_none(), "no private part in the JWKS");

        let second = rotate(&dir).unwrap();
        keys.reload_if_changed();
        assert_eq!(keys.current().kid, second);
        let kids: Vec<String> = keys.jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(kids, vec![first.kid.clone(), second.clone()]);
        assert!(
            retire(&dir, &second).is_err(),
            "the current key cannot be retired"
        );
        retire(&dir, &first.kid).unwrap();
        keys.reload_if_changed();
        assert_eq!(keys.jwks()["keys"].as_array().unwrap().len(), 1);
        let mode = fs::metadata(keys_dir(&dir).join(format!("{second}.key")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_kid_is_the_rfc7638_thumbprint() {
        // RFC 7638 section 3.1 style check on a fixed key: recompute from the JWK members.
        let pair = KeyPair::from_scalar(&[7u8; 32]).unwrap();
        let jwk = pair.jwk();
        let input = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        assert_eq!(
            pair.kid,
            Base64UrlUnpadded::encode_string(&Sha256::digest(input.as_bytes()))
        );
        // Deterministic signatures (RFC 6979): same input, same token.
        assert_eq!(
            pair.sign_jwt(&json!({"a": 1})).unwrap(),
            pair.sign_jwt(&json!({"a": 1})).unwrap()
        );
    }
}
