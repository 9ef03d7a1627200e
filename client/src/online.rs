//! The online client: validation with a short cache and an offline fallback, activations,
//! heartbeats, offline tokens and key refresh, over blocking HTTP (`ureq`).
//!
//! Two rules shape it:
//!
//! - **A refusal is never papered over.** The stored offline token stands in only when the server
//!   could not give an answer (connection error, timeout, a `5xx`, or an answer that is not the
//!   protocol's, such as a captive portal's page). When the server answers with a problem
//!   (`403 NOT_FOUND`, `403 APP_MISMATCH`, `400`…), that answer is the result. Falling back on a
//!   `5xx` gives an attacker nothing they do not already have: they can always cut the network.
//! - **Nothing the server sends is trusted without the pinned keys.** An offline token is
//!   verified (keys, `aud`, fingerprint, times) before it is stored and again every time it is
//!   used. Keys fetched with [`Client::refresh_jwks`] are added for this process only, never
//!   written to disk, never replace a pinned key, and are only fetched over HTTPS (or from a
//!   loopback address, for development).
//!
//! The license key goes only into request bodies; it never appears in an error, a URL or a
//! `Debug` output.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::decision::{Activation, Deactivation, Decision, DecisionCode, Heartbeat, Problem};
use crate::jwks::{Jwks, JwksError};
use crate::values::{AppId, Environment, Fingerprint, Label, LicenseKey};
use crate::verify::{Claims, Verifier, VerifyError};

/// Largest answer body read, in bytes; real answers are a few KiB.
const MAX_BODY: u64 = 1024 * 1024;

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

/// The result of [`Client::validate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Validation {
    /// The server decided, just now or within the cache time.
    Online {
        /// The server's decision.
        decision: Decision,
        /// Whether it came from the cache rather than a request.
        cached: bool,
    },
    /// The server could not be asked; the stored offline token, verified, stands in.
    Offline {
        /// The verified token's claims.
        claims: Claims,
        /// Requested features the token does not grant.
        missing_features: Vec<String>,
        /// Why the server was not used (for logs; holds no secret).
        server_error: String,
    },
}

impl Validation {
    /// Whether the application may run (with the requested features).
    pub fn is_valid(&self) -> bool {
        match self {
            Self::Online { decision, .. } => decision.valid,
            Self::Offline {
                missing_features, ..
            } => missing_features.is_empty(),
        }
    }

    /// Whether the result came from the stored offline token.
    pub const fn is_offline(&self) -> bool {
        matches!(self, Self::Offline { .. })
    }

    /// The decision code; for an offline result, `VALID` or `FEATURES_MISSING`.
    pub fn code(&self) -> DecisionCode {
        match self {
            Self::Online { decision, .. } => decision.code.clone(),
            Self::Offline {
                missing_features, ..
            } if missing_features.is_empty() => DecisionCode::Valid,
            Self::Offline { .. } => DecisionCode::FeaturesMissing,
        }
    }
}

/// A verified offline token, as stored by [`Client::fetch_offline_token`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfflineToken {
    /// The compact token.
    pub token: String,
    /// Its verified claims.
    pub claims: Claims,
    /// Where it was stored.
    pub path: PathBuf,
}

/// Why the stored offline token could not stand in for the server.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// None was fetched yet.
    #[error("no offline token is stored")]
    Missing,
    /// The file exists but could not be read.
    #[error("the stored offline token could not be read: {0}")]
    Unreadable(#[source] io::Error),
    /// The token does not verify (expired, another device, another key…).
    #[error("the stored offline token is not valid: {0}")]
    Invalid(#[source] VerifyError),
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The configuration cannot work.
    #[error("invalid client configuration: {0}")]
    Config(&'static str),
    /// The server could not be reached (connection refused, DNS, TLS, timeout).
    #[error("the license server could not be reached: {0}")]
    Unreachable(String),
    /// The server refused the request with a problem (`4xx`).
    #[error("the license server refused the request: {0}")]
    Refused(Problem),
    /// The server failed (`5xx`).
    #[error("the license server failed: {0}")]
    ServerFailed(Problem),
    /// The answer is not the protocol's (wrong status, not the expected JSON).
    #[error("unexpected answer from the license server (HTTP {status}): {reason}")]
    UnexpectedResponse {
        /// The HTTP status.
        status: u16,
        /// What was wrong.
        reason: String,
    },
    /// The server could not answer and the stored offline token could not stand in.
    #[error("{online}; and {offline}")]
    Unavailable {
        /// Why the server gave no answer.
        online: Box<ClientError>,
        /// Why the offline token did not help.
        offline: OfflineError,
    },
    /// A token from the server does not verify against the pinned keys.
    #[error("the token from the license server does not verify: {0}")]
    InvalidToken(#[source] VerifyError),
    /// The call needs [`Config::fingerprint`].
    #[error("this call needs a device fingerprint in the client configuration")]
    FingerprintRequired,
    /// The offline token could not be stored.
    #[error("could not store the offline token in {path}: {source}")]
    Store {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The fetched key set was refused.
    #[error("the server's key set was refused: {0}")]
    Jwks(#[source] JwksError),
    /// Keys are only fetched over HTTPS (or from loopback).
    #[error("keys are only fetched over https (or from a loopback address)")]
    InsecureKeySource,
}

impl ClientError {
    /// The problem code of a refusal (`NOT_FOUND`, `APP_MISMATCH`, `TOO_MANY_ACTIVATIONS`…).
    pub fn problem_code(&self) -> Option<&str> {
        match self {
            Self::Refused(problem) | Self::ServerFailed(problem) => problem.code.as_deref(),
            _ => None,
        }
    }

    /// Whether the server gave no answer of its own, so the offline token may stand in.
    const fn server_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(_) | Self::ServerFailed(_) | Self::UnexpectedResponse { .. }
        )
    }
}

/// A license-ledger client for one application and license.
///
/// It is `Send + Sync`: share one behind an `Arc` and call it from any thread.
#[derive(Debug)]
pub struct Client {
    agent: ureq::Agent,
    base_url: String,
    app_id: AppId,
    key: LicenseKey,
    fingerprint: Option<Fingerprint>,
    store_dir: PathBuf,
    cache_ttl: Duration,
    verifier: RwLock<Verifier>,
    /// Valid decisions by requested feature set (sorted, deduplicated).
    cache: Mutex<HashMap<Vec<String>, (Instant, Decision)>>,
}

#[derive(Serialize)]
struct ValidateBody<'a> {
    key: &'a LicenseKey,
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<&'a Fingerprint>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    features: &'a [String],
}

#[derive(Serialize)]
struct ActivateBody<'a> {
    key: &'a LicenseKey,
    fingerprint: &'a Fingerprint,
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<&'a Label>,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<&'a Label>,
    environment: Environment,
}

#[derive(Serialize)]
struct KeyBody<'a> {
    key: &'a LicenseKey,
}

#[derive(Serialize)]
struct OfflineTokenBody<'a> {
    key: &'a LicenseKey,
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<&'a Fingerprint>,
}

#[derive(serde::Deserialize)]
struct OfflineTokenAnswer {
    token: String,
}

impl Client {
    /// A client for `config`.
    ///
    /// # Errors
    /// [`ClientError::Config`] when the base URL is not `http://` or `https://`.
    pub fn new(config: Config) -> Result<Self, ClientError> {
        let base_url = config.base_url.trim().trim_end_matches('/').to_owned();
        let rest = base_url
            .strip_prefix("https://")
            .or_else(|| base_url.strip_prefix("http://"))
            .ok_or(ClientError::Config(
                "the base URL must start with https:// or http://",
            ))?;
        if rest.is_empty() || rest.contains(['?', '#']) {
            return Err(ClientError::Config(
                "the base URL must name a host, without query or fragment",
            ));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            // 4xx and 5xx answers carry problems to read, not errors to bubble up.
            .http_status_as_error(false)
            // A redirect would resend the license key to wherever it points.
            .max_redirects(0)
            .user_agent(concat!("license-ledger-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Self {
            agent,
            base_url,
            app_id: config.app_id,
            key: config.license_key,
            fingerprint: config.fingerprint,
            store_dir: config.store_dir,
            cache_ttl: config.cache_ttl,
            verifier: RwLock::new(Verifier::new(config.trusted_jwks)),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Asks the server whether the license is valid for `features`.
    ///
    /// A valid decision is reused for [`Config::cache_ttl`] for the same feature set. When the
    /// server cannot answer (see the module documentation), the stored offline token is verified
    /// and stands in: the result is then [`Validation::Offline`].
    ///
    /// # Errors
    /// [`ClientError::Refused`] when the server refuses (`403 NOT_FOUND`, `APP_MISMATCH`, `400`);
    /// [`ClientError::Unavailable`] when the server cannot answer and no valid offline token is
    /// stored.
    pub fn validate(&self, features: &[&str]) -> Result<Validation, ClientError> {
        let mut wanted: Vec<String> = features.iter().map(|f| (*f).to_owned()).collect();
        wanted.sort_unstable();
        wanted.dedup();

        if let Some(decision) = self.cached(&wanted) {
            return Ok(Validation::Online {
                decision,
                cached: true,
            });
        }
        let body = ValidateBody {
            key: &self.key,
            fingerprint: self.fingerprint.as_ref(),
            features: &wanted,
        };
        match self.post_json::<Decision>("/v1/validate", &body, &[200]) {
            Ok(decision) => {
                if decision.valid {
                    self.lock_cache()
                        .insert(wanted, (Instant::now(), decision.clone()));
                }
                Ok(Validation::Online {
                    decision,
                    cached: false,
                })
            }
            Err(online) if online.server_unavailable() => match self.stored_offline_token() {
                Ok(claims) => {
                    let missing_features = wanted
                        .into_iter()
                        .filter(|f| !claims.has_feature(f))
                        .collect();
                    Ok(Validation::Offline {
                        claims,
                        missing_features,
                        server_error: online.to_string(),
                    })
                }
                Err(offline) => Err(ClientError::Unavailable {
                    online: Box::new(online),
                    offline,
                }),
            },
            Err(refused) => Err(refused),
        }
    }

    /// Takes a seat for this device (`POST /v1/activations`). Asking again for an active device
    /// returns the same activation.
    ///
    /// # Errors
    /// [`ClientError::FingerprintRequired`] without a configured fingerprint;
    /// [`ClientError::Refused`] with `TOO_MANY_ACTIVATIONS` or the validation code.
    pub fn activate(
        &self,
        hostname: Option<&Label>,
        platform: Option<&Label>,
        environment: Environment,
    ) -> Result<Activation, ClientError> {
        let fingerprint = self
            .fingerprint
            .as_ref()
            .ok_or(ClientError::FingerprintRequired)?;
        let body = ActivateBody {
            key: &self.key,
            fingerprint,
            hostname,
            platform,
            environment,
        };
        let activation = self.post_json("/v1/activations", &body, &[200, 201])?;
        // The seats changed: a decision cached before may no longer hold.
        self.lock_cache().clear();
        Ok(activation)
    }

    /// Gives the seat of `installation_id` back.
    ///
    /// # Errors
    /// [`ClientError::Refused`] when the server refuses; transport errors as usual.
    pub fn deactivate(&self, installation_id: Uuid) -> Result<Deactivation, ClientError> {
        let path = format!("/v1/activations/{installation_id}/deactivate");
        let activation = self.post_json(&path, &KeyBody { key: &self.key }, &[200])?;
        self.lock_cache().clear();
        Ok(activation)
    }

    /// Extends the lease of a floating seat.
    ///
    /// # Errors
    /// [`ClientError::Refused`] when the lease is gone (activate again); transport errors.
    pub fn heartbeat(&self, installation_id: Uuid) -> Result<Heartbeat, ClientError> {
        let path = format!("/v1/activations/{installation_id}/heartbeat");
        let heartbeat = self.post_json(&path, &KeyBody { key: &self.key }, &[200])?;
        Ok(heartbeat)
    }

    /// Fetches an offline token (`POST /v1/offline-tokens`), verifies it against the pinned keys,
    /// this App GUID and this device, and stores it in [`Config::store_dir`] (owner-only
    /// permissions on Unix), replacing the previous one.
    ///
    /// # Errors
    /// [`ClientError::Refused`] with `OFFLINE_NOT_ALLOWED` or the validation code;
    /// [`ClientError::InvalidToken`] when the token does not verify (nothing is stored);
    /// [`ClientError::Store`] when it cannot be written.
    pub fn fetch_offline_token(&self) -> Result<OfflineToken, ClientError> {
        let body = OfflineTokenBody {
            key: &self.key,
            fingerprint: self.fingerprint.as_ref(),
        };
        let answer =
            self.post_json::<OfflineTokenAnswer>("/v1/offline-tokens", &body, &[200, 201])?;
        let claims = self
            .verify_now(&answer.token)
            .map_err(ClientError::InvalidToken)?;
        let path = self.token_path();
        write_private(&self.store_dir, &path, answer.token.as_bytes()).map_err(|source| {
            ClientError::Store {
                path: path.clone(),
                source,
            }
        })?;
        Ok(OfflineToken {
            token: answer.token,
            claims,
            path,
        })
    }

    /// Verifies the stored offline token now, without the network.
    ///
    /// # Errors
    /// An [`OfflineError`] when there is none, it cannot be read, or it does not verify.
    pub fn stored_offline_token(&self) -> Result<Claims, OfflineError> {
        let token = match fs::read_to_string(self.token_path()) {
            Ok(token) => token,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(OfflineError::Missing),
            Err(e) => return Err(OfflineError::Unreadable(e)),
        };
        self.verify_now(token.trim()).map_err(OfflineError::Invalid)
    }

    /// Fetches the server's JWKS and adds its keys to the trusted set of this client, in memory
    /// only. Returns how many keys were added.
    ///
    /// # Errors
    /// [`ClientError::InsecureKeySource`] unless the base URL is HTTPS or loopback;
    /// [`ClientError::Jwks`] when the set holds a private key, is malformed, or would replace a
    /// pinned key.
    pub fn refresh_jwks(&self) -> Result<usize, ClientError> {
        if !self.base_url.starts_with("https://") && !is_loopback_http(&self.base_url) {
            return Err(ClientError::InsecureKeySource);
        }
        let url = format!("{}/.well-known/jwks.json", self.base_url);
        let response = self.agent.get(&url).call().map_err(transport_error)?;
        let (status, text) = read_answer(response)?;
        if status != 200 {
            return Err(answer_error(status, &text));
        }
        let fetched = Jwks::from_json(&text).map_err(ClientError::Jwks)?;
        self.verifier
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .jwks_mut()
            .merge(fetched)
            .map_err(ClientError::Jwks)
    }

    /// The kids of the keys this client trusts now.
    pub fn trusted_kids(&self) -> Vec<String> {
        self.verifier
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .jwks()
            .kids()
            .map(str::to_owned)
            .collect()
    }

    /// Where the offline token of this App GUID is stored.
    pub fn token_path(&self) -> PathBuf {
        self.store_dir
            .join(format!("offline-token-{}.jwt", self.app_id))
    }

    fn verify_now(&self, token: &str) -> Result<Claims, VerifyError> {
        self.verifier
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .verify(
                token,
                self.app_id,
                self.fingerprint.as_ref().map(Fingerprint::as_str),
                Utc::now(),
            )
    }

    fn cached(&self, features: &[String]) -> Option<Decision> {
        let mut cache = self.lock_cache();
        match cache.get(features) {
            Some((at, decision)) if at.elapsed() < self.cache_ttl => Some(decision.clone()),
            Some(_) => {
                cache.remove(features);
                None
            }
            None => None,
        }
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<String>, (Instant, Decision)>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// POSTs `body` as JSON with `X-App-Id` and reads a `T` from an answer with one of `ok`.
    fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
        ok: &[u16],
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base_url);
        let response = self
            .agent
            .post(&url)
            .header("X-App-Id", self.app_id.to_string())
            .header("Accept", "application/json")
            .send_json(body)
            .map_err(transport_error)?;
        let (status, text) = read_answer(response)?;
        if !ok.contains(&status) {
            return Err(answer_error(status, &text));
        }
        serde_json::from_str(&text).map_err(|e| ClientError::UnexpectedResponse {
            status,
            reason: e.to_string(),
        })
    }
}

fn read_answer(
    mut response: ureq::http::Response<ureq::Body>,
) -> Result<(u16, String), ClientError> {
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()
        .map_err(transport_error)?;
    Ok((status, text))
}

/// The error for an answer with an unexpected status: a problem when the server sent one.
fn answer_error(status: u16, text: &str) -> ClientError {
    let problem = serde_json::from_str::<Problem>(text)
        .ok()
        .filter(|p| p.code.is_some() || p.title.is_some());
    match (status, problem) {
        (500..=599, problem) => ClientError::ServerFailed(problem.unwrap_or(Problem {
            status,
            ..Problem::default()
        })),
        (400..=499, Some(mut problem)) => {
            problem.status = status;
            ClientError::Refused(problem)
        }
        // A 4xx without a problem, or a 1xx/2xx/3xx we did not expect, is not the server
        // speaking the protocol (a proxy, a captive portal, a rate limiter's plain page).
        _ => ClientError::UnexpectedResponse {
            status,
            reason: "not an answer of the license-ledger protocol".to_owned(),
        },
    }
}

fn transport_error(error: ureq::Error) -> ClientError {
    // ureq's messages name the host and the failure, never the request body.
    ClientError::Unreachable(error.to_string())
}

/// Whether an `http://` base URL points at this machine, where plain HTTP cannot be tampered
/// with by the network.
fn is_loopback_http(base_url: &str) -> bool {
    let Some(rest) = base_url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Writes `bytes` to `path` atomically (temporary file, then rename) with owner-only
/// permissions, creating `dir` (owner-only) when missing.
fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;

    let temporary = dir.join(format!(".offline-token-{}.tmp", Uuid::new_v4()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = (|| {
        let mut file = options.open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if result.is_err() {
        // Best effort: a leftover temporary file holds nothing secret, but is clutter.
        let _ = fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Client>();
    }

    #[test]
    fn loopback_detection() {
        for url in [
            "http://127.0.0.1:8080",
            "http://localhost",
            "http://LOCALHOST:1/x",
            "http://[::1]:80",
            "http://127.9.9.9",
        ] {
            assert!(is_loopback_http(url), "{url}");
        }
        for url in [
            "http://example.com",
            "http://127.0.0.1.example.com",
            "http://10.0.0.1",
            "https://127.0.0.1",
            "http://localhost.evil.com",
        ] {
            assert!(!is_loopback_http(url), "{url}");
        }
    }

    #[test]
    fn answers_without_a_problem_are_not_refusals() {
        assert!(matches!(
            answer_error(
                403,
                r#"{"status": 403, "code": "NOT_FOUND", "title": "Forbidden"}"#
            ),
            ClientError::Refused(Problem { status: 403, .. })
        ));
        assert!(answer_error(429, "slow down").server_unavailable());
        assert!(answer_error(302, "").server_unavailable());
        assert!(answer_error(503, "").server_unavailable());
        assert!(!answer_error(400, r#"{"code": "BAD_REQUEST"}"#).server_unavailable());
    }

    #[test]
    fn a_bad_base_url_is_refused() {
        let key = crate::testkit::TestKey::generate();
        let config = |url: &str| {
            Config::new(
                url,
                AppId::parse(crate::testkit::APP_ID).unwrap(),
                LicenseKey::parse("K-1").unwrap(),
                Jwks::from_json(&key.jwks_json()).unwrap(),
                std::env::temp_dir(),
            )
        };
        assert!(Client::new(config("ftp://x")).is_err());
        assert!(Client::new(config("https://")).is_err());
        assert!(Client::new(config("https://x/?a=b")).is_err());
        assert!(Client::new(config("https://licenses.example.com/")).is_ok());
        let debug = format!("{:?}", config("https://x"));
        assert!(!debug.contains("K-1"), "{debug}");
    }
}
