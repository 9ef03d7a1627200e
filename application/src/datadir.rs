//! The data directory (`--data-dir`, default `./ledger-data`): the server's secrets.
//!
//! - `key-pepper`: 32 random bytes (hex) keying the hash of license keys. Created on first start.
//!   Every node of one ledger needs the same pepper; losing it makes every issued key unusable,
//!   so back it up with the database. `LEDGER_KEY_PEPPER` (64 hex characters) overrides the file.
//!
//! The directory is created `0700` and secret files `0600`; the server refuses to start when a
//! secret file is readable by others, rather than run with a leaked secret.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The opened data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Opens (creating when missing) the data directory.
    ///
    /// # Errors
    /// When it cannot be created or is not a directory.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        if !root.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root)
                .with_context(|| format!("cannot create the data directory {}", root.display()))?;
        }
        if !root.is_dir() {
            bail!("{} is not a directory", root.display());
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reads a secret file, or creates it with `make()` (mode 0600) when missing.
    ///
    /// # Errors
    /// When the file cannot be read or written, or is accessible to group or others.
    pub fn secret(
        &self,
        name: &str,
        make: impl FnOnce() -> anyhow::Result<String>,
    ) -> anyhow::Result<String> {
        let path = self.root.join(name);
        if !path.exists() {
            let content = make()?;
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            file.write_all(content.as_bytes())?;
            file.sync_all()?;
            tracing::info!(path = %path.display(), "created secret file");
        }
        let mode = fs::metadata(&path)?.permissions().mode();
        if mode & 0o077 != 0 {
            bail!(
                "{} is accessible to other users (mode {:o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
        Ok(fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .trim()
            .to_owned())
    }

    /// The key pepper: `LEDGER_KEY_PEPPER` if set, else the `key-pepper` file (created on first use).
    ///
    /// # Errors
    /// When the pepper is malformed or cannot be stored.
    pub fn key_pepper(&self, from_env: Option<&str>) -> anyhow::Result<[u8; 32]> {
        let text = match from_env {
            Some(hex_text) => hex_text.trim().to_owned(),
            None => self.secret("key-pepper", || {
                Ok(hex::encode(commands::keys::generate_pepper()?))
            })?,
        };
        let mut pepper = [0u8; 32];
        hex::decode_to_slice(&text, &mut pepper)
            .context("the key pepper must be 64 hexadecimal characters")?;
        Ok(pepper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pepper_is_created_once_private_and_stable() {
        let dir = std::env::temp_dir().join(format!("ledger-datadir-{}", uuid::Uuid::now_v7()));
        let data = DataDir::open(&dir).unwrap();
        let first = data.key_pepper(None).unwrap();
        let second = data.key_pepper(None).unwrap();
        assert_eq!(first, second);
        let mode = fs::metadata(dir.join("key-pepper"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        fs::set_permissions(dir.join("key-pepper"), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            data.key_pepper(None).is_err(),
            "a world-readable secret is refused"
        );
        assert_eq!(data.key_pepper(Some(&"ab".repeat(32))).unwrap(), [0xab; 32]);
        assert!(data.key_pepper(Some("zz")).is_err());
        fs::remove_dir_all(dir).unwrap();
    }
}
