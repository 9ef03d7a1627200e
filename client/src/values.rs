//! Value types the SDK exchanges with the server: an App GUID, a device fingerprint, a license key
//! and an installation environment.
//!
//! They are parsed once at the edge (configuration, command line, request files), so the rest of
//! the crate never handles an unchecked value. The rules mirror the server's (`docs/client-protocol.md`)
//! so that a value the SDK accepts is one the server accepts too.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A value did not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(&'static str);

/// A product's App GUID: the UUID a client application sends in `X-App-Id` and that offline
/// tokens carry in `aud`.
///
/// Parsing accepts any case; [`fmt::Display`] writes the lower-case hyphenated form the protocol
/// uses, and comparison is on the UUID value, so `"ABC…"` and `"abc…"` are the same App GUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AppId(Uuid);

impl AppId {
    /// # Errors
    /// When `raw` is not a UUID.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        Uuid::parse_str(raw.trim())
            .map(Self)
            .map_err(|_| InvalidValue("an App GUID must be a UUID"))
    }

    /// The UUID.
    pub const fn uuid(self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for AppId {
    fn from(v: Uuid) -> Self {
        Self(v)
    }
}

impl FromStr for AppId {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for AppId {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<AppId> for String {
    fn from(v: AppId) -> String {
        v.to_string()
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Lower-case hyphenated, as the protocol writes `aud` and `X-App-Id`.
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

/// A device, VM, container or tenant identifier chosen by the application: 1 to 256 ASCII
/// letters, digits and `- _ . : + / =`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Fingerprint(String);

impl Fingerprint {
    /// # Errors
    /// When the text is empty, longer than 256 characters, or uses other characters.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let ok = !raw.is_empty()
            && raw.len() <= 256
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=".contains(&b));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidValue(
                "a fingerprint is 1-256 ASCII letters, digits or - _ . : + / =",
            ))
        }
    }

    /// A fingerprint derived from machine data (a machine id, a MAC address, a volume serial…):
    /// the lower-case hex SHA-256 of `data`.
    ///
    /// Hashing keeps the raw identifiers off the server while giving the same fingerprint on
    /// every run on the same machine; add an application-specific prefix to `data` so two
    /// vendors cannot correlate their customers' machines.
    pub fn from_machine_data(data: &[u8]) -> Self {
        use sha2::{Digest, Sha256};
        use std::fmt::Write;

        let digest = Sha256::digest(data);
        let mut hex = String::with_capacity(64);
        for byte in digest.iter() {
            // Writing to a String cannot fail.
            let _ = write!(hex, "{byte:02x}");
        }
        Self(hex)
    }

    /// The fingerprint.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Fingerprint {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Fingerprint {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<Fingerprint> for String {
    fn from(v: Fingerprint) -> String {
        v.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A license key as the customer received it.
///
/// The key is a secret: [`fmt::Debug`] prints `LicenseKey(<redacted>)` and there is no
/// [`fmt::Display`], so a key cannot end up in a log line or an error message by accident. Read it
/// with [`LicenseKey::expose`] where it must go on the wire.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LicenseKey(String);

impl LicenseKey {
    /// Surrounding whitespace is dropped (keys are often pasted).
    ///
    /// # Errors
    /// When the trimmed key is empty, longer than 256 characters, or holds whitespace or control
    /// characters.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let key = raw.trim();
        if key.is_empty() || key.len() > 256 {
            return Err(InvalidValue("a license key is 1-256 characters"));
        }
        if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidValue(
                "a license key must not contain spaces or control characters",
            ));
        }
        Ok(Self(key.to_owned()))
    }

    /// The key itself, for the request body. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LicenseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LicenseKey(<redacted>)")
    }
}

impl FromStr for LicenseKey {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for LicenseKey {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<LicenseKey> for String {
    fn from(v: LicenseKey) -> String {
        v.0
    }
}

/// A short free text about an installation (hostname, platform): 1 to 255 characters after
/// trimming, no control characters, as the server accepts.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Label(String);

impl Label {
    /// # Errors
    /// When the trimmed text is empty, longer than 255 characters or holds control characters.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let text = raw.trim();
        if text.is_empty() || text.chars().count() > 255 {
            return Err(InvalidValue("a hostname or platform is 1-255 characters"));
        }
        if text.chars().any(char::is_control) {
            return Err(InvalidValue(
                "a hostname or platform must not contain control characters",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Label {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Label {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<Label> for String {
    fn from(v: Label) -> String {
        v.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an installation runs; some licenses allow extra test instances.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Environment {
    /// A production installation (the default).
    #[default]
    #[serde(rename = "production")]
    Production,
    /// A test or staging installation.
    #[serde(rename = "test")]
    Test,
}

impl Environment {
    /// The protocol's spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Test => "test",
        }
    }
}

impl FromStr for Environment {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "production" => Ok(Self::Production),
            "test" => Ok(Self::Test),
            _ => Err(InvalidValue("an environment is \"production\" or \"test\"")),
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_ids_compare_as_uuids_whatever_the_case() {
        let lower = AppId::parse("6f1c2a9e-8d4b-4c3a-9e2f-1a2b3c4d5e6f").unwrap();
        let upper = AppId::parse("6F1C2A9E-8D4B-4C3A-9E2F-1A2B3C4D5E6F").unwrap();
        assert_eq!(lower, upper);
        assert_eq!(upper.to_string(), "6f1c2a9e-8d4b-4c3a-9e2f-1a2b3c4d5e6f");
        assert!(AppId::parse("not-a-uuid").is_err());
    }

    #[test]
    fn an_app_id_serializes_as_the_lower_case_hyphenated_guid() {
        // Tokens' `aud` is written from an `AppId`, whatever case it was parsed from.
        let upper = AppId::parse("6F1C2A9E-8D4B-4C3A-9E2F-1A2B3C4D5E6F").unwrap();
        assert_eq!(
            serde_json::to_string(&upper).unwrap(),
            r#""6f1c2a9e-8d4b-4c3a-9e2f-1a2b3c4d5e6f""#
        );
        assert_eq!(
            serde_json::from_str::<AppId>(r#""6F1C2A9E-8D4B-4C3A-9E2F-1A2B3C4D5E6F""#).unwrap(),
            upper
        );
    }

    #[test]
    fn fingerprints_follow_the_protocol_alphabet() {
        assert!(Fingerprint::parse("a1b2:c3/d4+e5==").is_ok());
        assert!(Fingerprint::parse(&"f".repeat(256)).is_ok());
        assert!(Fingerprint::parse("").is_err());
        assert!(Fingerprint::parse("has space").is_err());
        assert!(Fingerprint::parse("é").is_err());
        assert!(Fingerprint::parse(&"f".repeat(257)).is_err());
    }

    #[test]
    fn a_machine_fingerprint_is_the_hex_sha256_of_the_data() {
        let fp = Fingerprint::from_machine_data(b"abc");
        assert_eq!(
            fp.as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Fingerprint::parse(fp.as_str()), Ok(fp));
    }

    #[test]
    fn a_license_key_never_shows_in_debug_output() {
        let key = LicenseKey::parse("  ACME-SECRET-1234  ").unwrap();
        assert_eq!(key.expose(), "ACME-SECRET-1234");
        assert!(!format!("{key:?}").contains("SECRET"));
        assert!(LicenseKey::parse("   ").is_err());
        assert!(LicenseKey::parse("two words").is_err());
    }

    #[test]
    fn environments_use_the_protocol_spelling() {
        assert_eq!("test".parse::<Environment>().unwrap(), Environment::Test);
        assert_eq!(Environment::default().to_string(), "production");
        assert!("staging".parse::<Environment>().is_err());
    }
}
