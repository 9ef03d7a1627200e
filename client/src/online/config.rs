//! How a [`Client`](super::Client) is set up: the server, the application, the license, the
//! pinned keys, where the offline token is kept, and the cache and time limits.

use std::path::PathBuf;
use std::time::Duration;

use crate::jwks::Jwks;
use crate::values::{AppId, Fingerprint, LicenseKey};

/// How the client is set up.
#[derive(Clone, Debug)]
pub struct Config {
    /// The server, e.g. `https://licenses.example.com` (a trailing `/` is ignored).
    pub base_url: String,
    /// The product's App GUID, sent as `X-App-Id` and expected in tokens' `aud`.
    pub app_id: AppId,
    /// The license key (redacted in `Debug`).
    pub license_key: LicenseKey,
    /// This device, for node-locked licenses and bound offline tokens.
    pub fingerprint: Option<Fingerprint>,
    /// The pinned keys tokens must be signed with.
    pub trusted_jwks: Jwks,
    /// Where the offline token is kept (created with owner-only permissions when missing).
    pub store_dir: PathBuf,
    /// How long a valid decision is reused without asking the server.
    pub cache_ttl: Duration,
    /// The whole-request time limit.
    pub timeout: Duration,
}

impl Config {
    /// The default [`Config::cache_ttl`].
    pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
    /// The default [`Config::timeout`].
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// A configuration without a fingerprint and with the default cache and timeout.
    pub fn new(
        base_url: impl Into<String>,
        app_id: AppId,
        license_key: LicenseKey,
        trusted_jwks: Jwks,
        store_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            base_url: base_url.into(),
            app_id,
            license_key,
            fingerprint: None,
            trusted_jwks,
            store_dir: store_dir.into(),
            cache_ttl: Self::DEFAULT_CACHE_TTL,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// The same configuration for the device `fingerprint`.
    #[must_use]
    pub fn with_fingerprint(mut self, fingerprint: Fingerprint) -> Self {
        self.fingerprint = Some(fingerprint);
        self
    }
}
