//! Support for the integration tests: real keys and tokens, and a real HTTP server on loopback.
#![allow(dead_code)] // each test binary uses a different part of it

pub mod http;
#[path = "../../src/testkit.rs"]
pub mod testkit;

use std::path::PathBuf;

/// A fresh, empty directory under the system temp directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("license-ledger-{tag}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
