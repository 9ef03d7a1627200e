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

//!
//! # Layout
//!
//! - `config`: [`Config`].
//! - `results`: [`Validation`], [`OfflineToken`].
//! - `error`: [`ClientError`], [`OfflineError`].
//! - `wire`: request bodies and the reading of answers.
//! - `store`: the offline token on disk.
//! - this module: [`Client`] and its calls.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::decision::{Activation, Deactivation, Decision, Heartbeat};
use crate::jwks::Jwks;
use crate::values::{AppId, Environment, Fingerprint, Label, LicenseKey};
use crate::verify::{Claims, Verifier, VerifyError};

mod config;
mod error;
mod results;
mod store;
mod wire;

pub use config::Config;
pub use error::{ClientError, OfflineError};
pub use results::{OfflineToken, Validation};

use store::write_private;
use wire::{
    ActivateBody, KeyBody, OfflineTokenAnswer, OfflineTokenBody, ValidateBody, answer_error,
    is_loopback_http, read_answer, transport_error,
};

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

#[cfg(test)]
mod tests;
