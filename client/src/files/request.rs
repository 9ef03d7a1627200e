//! The files an offline machine writes: activation and deactivation requests, as the protocol's
//! JSON inside armored base64.

use base64ct::{Base64, Encoding};
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::armor::{ACTIVATION_REQUEST, DEACTIVATION_REQUEST, armor_json, armored_lines};
use super::{FileError, REQUEST_VERSION};
use crate::values::{AppId, Environment, Fingerprint, Label, LicenseKey};

/// What an offline machine asks for: a seat for this device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivationRequest {
    /// The product's App GUID.
    pub app_id: AppId,
    /// The license key (redacted in `Debug`).
    pub key: LicenseKey,
    /// This device.
    pub fingerprint: Fingerprint,
    /// The machine's hostname, if the application wants to share it.
    pub hostname: Option<Label>,
    /// The platform (`windows-x86_64`…), if the application wants to share it.
    pub platform: Option<Label>,
    /// Production or test.
    pub environment: Environment,
    /// When the request was written.
    pub created_at: DateTime<Utc>,
    /// A fresh UUID, so the server can tell a replayed file from a new request.
    pub nonce: Uuid,
}

/// What an offline machine gives back: its seat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeactivationRequest {
    /// The product's App GUID.
    pub app_id: AppId,
    /// The license key (redacted in `Debug`).
    pub key: LicenseKey,
    /// This device.
    pub fingerprint: Fingerprint,
    /// When the request was written.
    pub created_at: DateTime<Utc>,
    /// A fresh UUID.
    pub nonce: Uuid,
}

/// The JSON of an activation request, members in the protocol's order. `hostname` and
/// `platform` are written as `null` when absent, as the protocol shows them.
#[derive(Serialize, Deserialize)]
struct ActivationJson {
    version: u32,
    #[serde(rename = "type")]
    kind: String,
    app_id: AppId,
    key: LicenseKey,
    fingerprint: Fingerprint,
    hostname: Option<Label>,
    platform: Option<Label>,
    environment: Environment,
    created_at: DateTime<Utc>,
    nonce: Uuid,
}

/// The JSON of a deactivation request.
#[derive(Serialize, Deserialize)]
struct DeactivationJson {
    version: u32,
    #[serde(rename = "type")]
    kind: String,
    app_id: AppId,
    key: LicenseKey,
    fingerprint: Fingerprint,
    created_at: DateTime<Utc>,
    nonce: Uuid,
}

/// Just the members that say what a request is, read before the rest.
#[derive(Deserialize)]
struct Envelope {
    version: u32,
    #[serde(rename = "type")]
    kind: String,
}

impl ActivationRequest {
    /// A production activation request written at `now` (to the second) with a fresh nonce.
    pub fn new(
        app_id: AppId,
        key: LicenseKey,
        fingerprint: Fingerprint,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            app_id,
            key,
            fingerprint,
            hostname: None,
            platform: None,
            environment: Environment::Production,
            created_at: now.trunc_subsecs(0),
            nonce: Uuid::new_v4(),
        }
    }

    /// The text of the request file.
    pub fn to_file_text(&self) -> String {
        let json = ActivationJson {
            version: REQUEST_VERSION,
            kind: "activation".to_owned(),
            app_id: self.app_id,
            key: self.key.clone(),
            fingerprint: self.fingerprint.clone(),
            hostname: self.hostname.clone(),
            platform: self.platform.clone(),
            environment: self.environment,
            created_at: self.created_at,
            nonce: self.nonce,
        };
        armor_json(ACTIVATION_REQUEST, &json)
    }

    /// Reads a request file back (the server does this; the SDK does it in tests and tools).
    ///
    /// # Errors
    /// A [`FileError`] when the armor, the base64, the JSON, the version or the type is wrong.
    pub fn parse_file_text(text: &str) -> Result<Self, FileError> {
        let json: ActivationJson = read_request(text, ACTIVATION_REQUEST, "activation")?;
        Ok(Self {
            app_id: json.app_id,
            key: json.key,
            fingerprint: json.fingerprint,
            hostname: json.hostname,
            platform: json.platform,
            environment: json.environment,
            created_at: json.created_at,
            nonce: json.nonce,
        })
    }
}

impl DeactivationRequest {
    /// A deactivation request written at `now` (to the second) with a fresh nonce.
    pub fn new(
        app_id: AppId,
        key: LicenseKey,
        fingerprint: Fingerprint,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            app_id,
            key,
            fingerprint,
            created_at: now.trunc_subsecs(0),
            nonce: Uuid::new_v4(),
        }
    }

    /// The text of the request file.
    pub fn to_file_text(&self) -> String {
        let json = DeactivationJson {
            version: REQUEST_VERSION,
            kind: "deactivation".to_owned(),
            app_id: self.app_id,
            key: self.key.clone(),
            fingerprint: self.fingerprint.clone(),
            created_at: self.created_at,
            nonce: self.nonce,
        };
        armor_json(DEACTIVATION_REQUEST, &json)
    }

    /// Reads a request file back.
    ///
    /// # Errors
    /// A [`FileError`] when the armor, the base64, the JSON, the version or the type is wrong.
    pub fn parse_file_text(text: &str) -> Result<Self, FileError> {
        let json: DeactivationJson = read_request(text, DEACTIVATION_REQUEST, "deactivation")?;
        Ok(Self {
            app_id: json.app_id,
            key: json.key,
            fingerprint: json.fingerprint,
            created_at: json.created_at,
            nonce: json.nonce,
        })
    }
}

/// The request of type `kind` in the `label` armor of `text`: the envelope (version and type)
/// is checked before the members are read.
fn read_request<T: for<'de> Deserialize<'de>>(
    text: &str,
    label: &'static str,
    kind: &'static str,
) -> Result<T, FileError> {
    let encoded: String = armored_lines(text, label)?.concat();
    let bytes = Base64::decode_vec(&encoded).map_err(|_| FileError::Base64)?;
    let envelope: Envelope =
        serde_json::from_slice(&bytes).map_err(|e| FileError::Json(e.to_string()))?;
    if envelope.version != REQUEST_VERSION {
        return Err(FileError::Version(envelope.version));
    }
    if envelope.kind != kind {
        return Err(FileError::WrongType {
            expected: kind,
            found: envelope.kind,
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| FileError::Json(e.to_string()))
}
