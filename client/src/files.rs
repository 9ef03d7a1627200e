//! Request and response files for air-gapped machines.
//!
//! An offline machine writes an activation (or deactivation) request file; someone carries it to
//! an administrator, who posts it to `POST /v1/offline-activations` and carries back a response
//! file (or a deactivation receipt). The formats are those of `docs/client-protocol.md`:
//!
//! ```text
//! -----BEGIN LICENSE-LEDGER ACTIVATION REQUEST-----
//! <standard padded base64 of the request JSON, wrapped at 64 characters>
//! -----END LICENSE-LEDGER ACTIVATION REQUEST-----
//! ```
//!
//! Writing follows the format exactly; reading is tolerant of what e-mail and copy-paste do to
//! text (CRLF line ends, indentation, text before and after the armor, rewrapped lines), because
//! the content is checked anyway: a request by the server, a response by its signature.
//!
//! A response file never carries keys. Its token is verified against the application's pinned
//! JWKS like any offline token, so a forged file cannot bring its own trust along.

use base64ct::{Base64, Encoding};
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::{AppId, Environment, Fingerprint, Label, LicenseKey};
use crate::verify::{Claims, ReceiptClaims, Verifier, VerifyError};

/// The only request format version this SDK writes and reads.
pub const REQUEST_VERSION: u32 = 1;

/// Width of the base64 lines in a request file.
const LINE_WIDTH: usize = 64;

/// Longest file accepted when reading, in bytes; real files are about 1 KiB.
const MAX_FILE_LEN: usize = 64 * 1024;

const ACTIVATION_REQUEST: &str = "ACTIVATION REQUEST";
const DEACTIVATION_REQUEST: &str = "DEACTIVATION REQUEST";
const ACTIVATION_RESPONSE: &str = "ACTIVATION RESPONSE";
const DEACTIVATION_RECEIPT: &str = "DEACTIVATION RECEIPT";

/// Why a file could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// Larger than any real file.
    #[error("the file is larger than {MAX_FILE_LEN} bytes")]
    TooLarge,
    /// The BEGIN or END line of the expected armor is missing.
    #[error("no -----BEGIN/END LICENSE-LEDGER {0}----- block")]
    MissingArmor(&'static str),
    /// Nothing between the armor lines.
    #[error("the LICENSE-LEDGER {0} block is empty")]
    Empty(&'static str),
    /// The request body is not standard padded base64.
    #[error("the request body is not base64")]
    Base64,
    /// The request JSON is malformed or has invalid values.
    #[error("the request is malformed: {0}")]
    Json(String),
    /// A request version this SDK does not know.
    #[error("request version {0} is not supported (expected {REQUEST_VERSION})")]
    Version(u32),
    /// An activation request where a deactivation was expected, or the reverse.
    #[error("a {found:?} request is not a {expected:?} request")]
    WrongType {
        /// The type expected.
        expected: &'static str,
        /// The type found.
        found: String,
    },
    /// The token between the armor lines has characters no compact JWS has.
    #[error("the block does not hold a compact token")]
    NotAToken,
}

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

/// The answer to an activation request: an `offline_activation` token, not yet verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivationResponse {
    token: String,
}

impl ActivationResponse {
    /// Wraps a token (the server's side of the exchange, and tests).
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
        }
    }

    /// Extracts the token from a response file. Nothing is trusted yet: call
    /// [`ActivationResponse::verify`].
    ///
    /// # Errors
    /// A [`FileError`] when there is no `ACTIVATION RESPONSE` block with a token in it.
    pub fn parse_file_text(text: &str) -> Result<Self, FileError> {
        token_in(text, ACTIVATION_RESPONSE).map(|token| Self { token })
    }

    /// The text of the response file.
    pub fn to_file_text(&self) -> String {
        armor(ACTIVATION_RESPONSE, &self.token)
    }

    /// The compact token, unverified.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Verifies the token like any offline token: pinned keys, `aud`, fingerprint, times.
    ///
    /// # Errors
    /// The [`VerifyError`] of [`Verifier::verify`].
    pub fn verify(
        &self,
        verifier: &Verifier,
        app_id: AppId,
        own_fingerprint: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Claims, VerifyError> {
        verifier.verify(&self.token, app_id, own_fingerprint, now)
    }
}

/// The answer to a deactivation request: a `deactivation_receipt` token, not yet verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeactivationReceipt {
    token: String,
}

impl DeactivationReceipt {
    /// Wraps a token (the server's side of the exchange, and tests).
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
        }
    }

    /// Extracts the token from a receipt file.
    ///
    /// # Errors
    /// A [`FileError`] when there is no `DEACTIVATION RECEIPT` block with a token in it.
    pub fn parse_file_text(text: &str) -> Result<Self, FileError> {
        token_in(text, DEACTIVATION_RECEIPT).map(|token| Self { token })
    }

    /// The text of the receipt file.
    pub fn to_file_text(&self) -> String {
        armor(DEACTIVATION_RECEIPT, &self.token)
    }

    /// The compact token, unverified.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Verifies the receipt: pinned keys, `aud`, and the fingerprint when given.
    ///
    /// # Errors
    /// The [`VerifyError`] of [`Verifier::verify_receipt`].
    pub fn verify(
        &self,
        verifier: &Verifier,
        app_id: AppId,
        own_fingerprint: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ReceiptClaims, VerifyError> {
        verifier.verify_receipt(&self.token, app_id, own_fingerprint, now)
    }
}

/// The token of a text that is either a bare compact token or an activation response file (what
/// a user may hand to a tool).
///
/// # Errors
/// A [`FileError`] when the text has a response block without a token, or is neither.
pub fn token_from_text(text: &str) -> Result<String, FileError> {
    if text.contains("-----BEGIN LICENSE-LEDGER") {
        return token_in(text, ACTIVATION_RESPONSE);
    }
    let token = text.trim();
    if token.is_empty() || !token.bytes().all(is_token_byte) {
        return Err(FileError::NotAToken);
    }
    Ok(token.to_owned())
}

fn begin_line(label: &str) -> String {
    format!("-----BEGIN LICENSE-LEDGER {label}-----")
}

fn end_line(label: &str) -> String {
    format!("-----END LICENSE-LEDGER {label}-----")
}

fn armor(label: &str, body: &str) -> String {
    format!("{}\n{body}\n{}\n", begin_line(label), end_line(label))
}

fn armor_json<T: Serialize>(label: &str, json: &T) -> String {
    // Serializing these plain structs cannot fail: every member is a string, a number or null.
    let bytes = serde_json::to_vec(json).unwrap_or_default();
    let encoded = Base64::encode_string(&bytes);
    // Base64 is ASCII, so splitting on byte positions never cuts a character.
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(LINE_WIDTH)
        .map(|chunk| std::str::from_utf8(chunk).unwrap_or_default())
        .collect();
    armor(label, &lines.join("\n"))
}

/// The lines strictly between the armor lines of `label`, trimmed, blank ones dropped.
fn armored_lines<'t>(text: &'t str, label: &'static str) -> Result<Vec<&'t str>, FileError> {
    if text.len() > MAX_FILE_LEN {
        return Err(FileError::TooLarge);
    }
    let (begin, end) = (begin_line(label), end_line(label));
    let mut lines = text.lines().map(str::trim);
    if !lines.any(|line| line == begin) {
        return Err(FileError::MissingArmor(label));
    }
    let mut body = Vec::new();
    for line in lines {
        if line == end {
            if body.is_empty() {
                return Err(FileError::Empty(label));
            }
            return Ok(body);
        }
        if !line.is_empty() {
            body.push(line);
        }
    }
    Err(FileError::MissingArmor(label))
}

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

fn token_in(text: &str, label: &'static str) -> Result<String, FileError> {
    // A long token may have been wrapped by a mail client; the parts carry no whitespace, so the
    // lines are simply joined.
    let token: String = armored_lines(text, label)?.concat();
    if !token.bytes().all(is_token_byte) {
        return Err(FileError::NotAToken);
    }
    Ok(token)
}

/// The bytes of a compact JWS: base64url and dots.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::jwks::Jwks;
    use crate::testkit::{self, APP_ID, FINGERPRINT, NOW, TestKey};

    fn app() -> AppId {
        AppId::parse(APP_ID).unwrap()
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(NOW, 123_456_789).unwrap()
    }

    fn activation() -> ActivationRequest {
        let mut request = ActivationRequest::new(
            app(),
            LicenseKey::parse("ACME-1234-5678").unwrap(),
            Fingerprint::parse(FINGERPRINT).unwrap(),
            now(),
        );
        request.hostname = Some(Label::parse("build-07").unwrap());
        request
    }

    /// The JSON inside a request file, decoded independently of the parser under test.
    fn decoded_json(text: &str) -> Value {
        let lines: Vec<&str> = text.lines().collect();
        let body: String = lines[1..lines.len() - 1].concat();
        serde_json::from_slice(&Base64::decode_vec(&body).unwrap()).unwrap()
    }

    #[test]
    fn an_activation_request_file_follows_the_protocol() {
        let request = activation();
        let text = request.to_file_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.first(),
            Some(&"-----BEGIN LICENSE-LEDGER ACTIVATION REQUEST-----")
        );
        assert_eq!(
            lines.last(),
            Some(&"-----END LICENSE-LEDGER ACTIVATION REQUEST-----")
        );
        assert!(text.ends_with("-----\n"));
        let body = &lines[1..lines.len() - 1];
        assert!(body.len() > 1, "long enough to wrap");
        for line in &body[..body.len() - 1] {
            assert_eq!(line.len(), 64);
        }
        assert!(body[body.len() - 1].len() <= 64);

        let json = decoded_json(&text);
        assert_eq!(
            json,
            json!({
                "version": 1, "type": "activation", "app_id": APP_ID, "key": "ACME-1234-5678",
                "fingerprint": FINGERPRINT, "hostname": "build-07", "platform": null,
                "environment": "production", "created_at": "2026-03-01T00:00:00Z",
                "nonce": request.nonce.to_string(),
            })
        );
        // The members are written in the protocol's order.
        let raw = String::from_utf8(Base64::decode_vec(&body.concat()).unwrap()).unwrap();
        let positions: Vec<usize> = [
            "version",
            "type",
            "app_id",
            "key",
            "fingerprint",
            "hostname",
            "platform",
            "environment",
            "created_at",
            "nonce",
        ]
        .iter()
        .map(|k| raw.find(&format!("\"{k}\":")).unwrap())
        .collect();
        assert!(positions.is_sorted(), "{raw}");
        assert!(raw.starts_with(r#"{"version":1,"type":"activation","app_id""#));
    }

    #[test]
    fn request_files_round_trip() {
        let request = activation();
        assert_eq!(
            ActivationRequest::parse_file_text(&request.to_file_text()),
            Ok(request.clone())
        );

        let deactivation = DeactivationRequest::new(
            app(),
            LicenseKey::parse("ACME-1234-5678").unwrap(),
            Fingerprint::parse(FINGERPRINT).unwrap(),
            now(),
        );
        let text = deactivation.to_file_text();
        assert!(text.starts_with("-----BEGIN LICENSE-LEDGER DEACTIVATION REQUEST-----\n"));
        assert!(text.ends_with("-----END LICENSE-LEDGER DEACTIVATION REQUEST-----\n"));
        assert_eq!(
            decoded_json(&text),
            json!({
                "version": 1, "type": "deactivation", "app_id": APP_ID, "key": "ACME-1234-5678",
                "fingerprint": FINGERPRINT, "created_at": "2026-03-01T00:00:00Z",
                "nonce": deactivation.nonce.to_string(),
            })
        );
        assert_eq!(
            DeactivationRequest::parse_file_text(&text),
            Ok(deactivation)
        );
    }

    #[test]
    fn reading_tolerates_mail_damage() {
        let request = activation();
        let text = request.to_file_text();
        let mangled = format!(
            "Hello admin, here is the file:\r\n\r\n{}\r\n-- \r\nsent from a phone\r\n",
            text.lines()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\r\n")
        );
        assert_eq!(ActivationRequest::parse_file_text(&mangled), Ok(request));
    }

    #[test]
    fn wrong_or_damaged_request_files_are_refused() {
        let request = activation();
        let text = request.to_file_text();
        assert_eq!(
            DeactivationRequest::parse_file_text(&text),
            Err(FileError::MissingArmor("DEACTIVATION REQUEST"))
        );
        // The right armor around the wrong type.
        let swapped = text.replace("ACTIVATION REQUEST", "DEACTIVATION REQUEST");
        assert!(matches!(
            DeactivationRequest::parse_file_text(&swapped),
            Err(FileError::WrongType { .. })
        ));
        let truncated: String = text.lines().take(2).collect::<Vec<_>>().join("\n");
        assert_eq!(
            ActivationRequest::parse_file_text(&truncated),
            Err(FileError::MissingArmor("ACTIVATION REQUEST"))
        );
        let empty = "-----BEGIN LICENSE-LEDGER ACTIVATION REQUEST-----\n-----END LICENSE-LEDGER ACTIVATION REQUEST-----\n";
        assert_eq!(
            ActivationRequest::parse_file_text(empty),
            Err(FileError::Empty("ACTIVATION REQUEST"))
        );
        let not_base64 = empty.replace("-----\n-----END", "-----\n!!!!\n-----END");
        assert_eq!(
            ActivationRequest::parse_file_text(&not_base64),
            Err(FileError::Base64)
        );

        let rewrite = |edit: &dyn Fn(&mut Value)| {
            let mut json = decoded_json(&text);
            edit(&mut json);
            let body = Base64::encode_string(json.to_string().as_bytes());
            format!(
                "-----BEGIN LICENSE-LEDGER ACTIVATION REQUEST-----\n{body}\n-----END LICENSE-LEDGER ACTIVATION REQUEST-----\n"
            )
        };
        assert_eq!(
            ActivationRequest::parse_file_text(&rewrite(&|j| j["version"] = json!(2))),
            Err(FileError::Version(2))
        );
        for edit in [
            &(|j: &mut Value| j["fingerprint"] = json!("has space")) as &dyn Fn(&mut Value),
            &|j| j["app_id"] = json!("nope"),
            &|j| j["environment"] = json!("staging"),
            &|j| j["nonce"] = json!(1),
        ] {
            assert!(matches!(
                ActivationRequest::parse_file_text(&rewrite(edit)),
                Err(FileError::Json(_))
            ));
        }
    }

    #[test]
    fn an_activation_response_is_verified_like_any_offline_token() {
        let key = TestKey::generate();
        let verifier = Verifier::new(Jwks::from_json(&key.jwks_json()).unwrap());
        let mut claims = testkit::claims(NOW);
        claims["kind"] = json!("offline_activation");
        claims["installation_id"] = json!("1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7a8b");
        let token = key.token(&claims);
        let text = format!(
            "-----BEGIN LICENSE-LEDGER ACTIVATION RESPONSE-----\n{token}\n-----END LICENSE-LEDGER ACTIVATION RESPONSE-----\n"
        );
        assert_eq!(ActivationResponse::new(token.clone()).to_file_text(), text);

        let response = ActivationResponse::parse_file_text(&text).unwrap();
        assert_eq!(response.token(), token);
        let at = DateTime::from_timestamp(NOW, 0).unwrap();
        let verified = response
            .verify(&verifier, app(), Some(FINGERPRINT), at)
            .unwrap();
        assert_eq!(
            verified.installation_id.map(|i| i.to_string()).as_deref(),
            Some("1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7a8b")
        );
        assert_eq!(
            response.verify(&verifier, app(), Some("another-device"), at),
            Err(VerifyError::FingerprintMismatch)
        );

        // A wrapped token (mail) still reads; a forged one does not verify.
        let (head, tail) = token.split_at(40);
        let wrapped = text.replace(&token, &format!("{head}\n{tail}"));
        assert_eq!(
            ActivationResponse::parse_file_text(&wrapped).unwrap(),
            response
        );
        let forged = TestKey::generate().token(&claims);
        let forged = ActivationResponse::parse_file_text(&text.replace(&token, &forged)).unwrap();
        assert!(
            forged
                .verify(&verifier, app(), Some(FINGERPRINT), at)
                .is_err()
        );

        assert_eq!(token_from_text(&text).unwrap(), token);
        assert_eq!(token_from_text(&format!("  {token}\n")).unwrap(), token);
        assert_eq!(token_from_text("not a token"), Err(FileError::NotAToken));
        assert_eq!(
            ActivationResponse::parse_file_text(&text.replace(&token, "a b")),
            Err(FileError::NotAToken)
        );
    }

    #[test]
    fn a_deactivation_receipt_reads_and_verifies() {
        let key = TestKey::generate();
        let verifier = Verifier::new(Jwks::from_json(&key.jwks_json()).unwrap());
        let mut claims = testkit::claims(NOW);
        claims["kind"] = json!("deactivation_receipt");
        claims["installation_id"] = json!("1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7a8b");
        let token = key.token(&claims);
        let text = DeactivationReceipt::new(token.clone()).to_file_text();
        assert!(text.starts_with("-----BEGIN LICENSE-LEDGER DEACTIVATION RECEIPT-----\n"));
        let receipt = DeactivationReceipt::parse_file_text(&text).unwrap();
        let at = DateTime::from_timestamp(NOW, 0).unwrap();
        let verified = receipt
            .verify(&verifier, app(), Some(FINGERPRINT), at)
            .unwrap();
        assert_eq!(verified.fingerprint, FINGERPRINT);
        // A receipt file is not an activation response.
        assert_eq!(
            ActivationResponse::parse_file_text(&text),
            Err(FileError::MissingArmor("ACTIVATION RESPONSE"))
        );
    }
}
