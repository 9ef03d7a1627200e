//! What a verified token says: the claims of license tokens and of deactivation receipts, and
//! the protocol's enumerations they hold (`kind`, `model`).
//!
//! These types are the one definition of the claims: the SDK reads them once a signature has
//! verified, and the server builds the claims of the tokens it signs from them, so what is
//! written and what is checked cannot drift apart. They are plain data with public fields (a
//! struct literal builds them; the SDK holds no issuing logic), and serializing one gives exactly
//! the JSON of `docs/client-protocol.md`:
//!
//! - `aud` is the lower-case hyphenated App GUID, `kind` and `model` the protocol's spellings;
//! - a member that is absent (`None`) is left out, never written as `null`: the protocol says
//!   when a member is present, and a token of the same shape either way keeps one spelling of
//!   "not bound to a device";
//! - [`TokenKind::Unknown`] and [`LicenseModel::Unknown`] only stand for what a newer server may
//!   send: serializing them is an error, so a token no verifier would accept is never signed.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::unix_time;
use crate::values::AppId;

/// What a token is for (`kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TokenKind {
    /// From `POST /v1/offline-tokens`.
    #[serde(rename = "offline")]
    Offline,
    /// The token of an air-gapped activation response file.
    #[serde(rename = "offline_activation")]
    OfflineActivation,
    /// The token of a deactivation receipt file: proof of a deactivation, not a license.
    #[serde(rename = "deactivation_receipt")]
    DeactivationReceipt,
    /// A kind this SDK does not know; never accepted, and never written (serializing it is an
    /// error).
    #[serde(other, skip_serializing)]
    Unknown,
}

impl TokenKind {
    /// The protocol's spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Offline => "offline",
            Self::OfflineActivation => "offline_activation",
            Self::DeactivationReceipt => "deactivation_receipt",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a license's seats are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LicenseModel {
    /// One seat per device.
    #[serde(rename = "node_locked")]
    NodeLocked,
    /// Seats leased by heartbeat.
    #[serde(rename = "floating")]
    Floating,
    /// One seat per named user.
    #[serde(rename = "named_user")]
    NamedUser,
    /// A model this SDK does not know (a newer server); never written (serializing it is an
    /// error).
    #[serde(other, skip_serializing)]
    Unknown,
}

/// The policy a license follows, as tokens and decisions name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRef {
    /// The policy id.
    pub id: Uuid,
    /// The policy version the license is on.
    pub version: u32,
    /// How seats are counted.
    pub model: LicenseModel,
}

/// The claims of a verified license token (`offline` or `offline_activation`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The issuer (`license-ledger` by default).
    pub iss: String,
    /// The license id.
    pub sub: Uuid,
    /// The App GUID the token is for.
    pub aud: AppId,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Not before, Unix seconds.
    pub nbf: i64,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// The token id recorded in the ledger.
    pub jti: Uuid,
    /// Entitlement codes.
    #[serde(default)]
    pub features: Vec<String>,
    /// The device the token is bound to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The activation the token is bound to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<Uuid>,
    /// The license's policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRef>,
    /// The license status at issue (`active`, `trialing`, `past_due`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// What the token is for.
    pub kind: TokenKind,
}

impl Claims {
    /// The license id (`sub`).
    pub const fn license_id(&self) -> Uuid {
        self.sub
    }

    /// `exp` as a time (saturating for absurd values).
    pub fn expires_at(&self) -> DateTime<Utc> {
        unix_time(self.exp)
    }

    /// Whether the token grants `feature`.
    pub fn has_feature(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }
}

/// The claims of a verified deactivation receipt.
///
/// A receipt records a past fact, so only the members it needs are required.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptClaims {
    /// The issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// The license id.
    pub sub: Uuid,
    /// The App GUID.
    pub aud: AppId,
    /// Issued at, Unix seconds: when the deactivation was recorded.
    pub iat: i64,
    /// Not before, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Expiry, Unix seconds (informational for a receipt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// The receipt id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<Uuid>,
    /// The installation that was deactivated.
    pub installation_id: Uuid,
    /// Its device fingerprint.
    pub fingerprint: String,
    /// Always [`TokenKind::DeactivationReceipt`] once verified.
    pub kind: TokenKind,
}

#[cfg(test)]
mod tests;
