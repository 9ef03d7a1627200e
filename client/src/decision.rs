//! The server's answers to the online endpoints, as typed values: a validation decision, an
//! activation, a heartbeat, an offline token and an error problem.
//!
//! They mirror the JSON of `docs/client-protocol.md`. Reading is lenient where the protocol may
//! grow (unknown members are ignored, an unknown decision code or warning is kept as
//! [`DecisionCode::Other`] / [`Warning::Other`]) so that an older application keeps working
//! against a newer server; the `valid` flag, not the code, is what says yes or no.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::values::Environment;
use crate::verify::PolicyRef;

/// Why a license is (not) valid; the first failure wins, in this order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(from = "String")]
pub enum DecisionCode {
    /// `REVOKED`
    Revoked,
    /// `SUSPENDED`
    Suspended,
    /// `PAUSED`
    Paused,
    /// `OVERDUE`
    Overdue,
    /// `TRIAL_EXPIRED`
    TrialExpired,
    /// `EXPIRED`
    Expired,
    /// `NOT_ACTIVATED`
    NotActivated,
    /// `TOO_MANY_ACTIVATIONS`
    TooManyActivations,
    /// `FEATURES_MISSING`
    FeaturesMissing,
    /// `VALID`
    Valid,
    /// A code this SDK does not know (a newer server).
    Other(String),
}

impl DecisionCode {
    /// The protocol's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Revoked => "REVOKED",
            Self::Suspended => "SUSPENDED",
            Self::Paused => "PAUSED",
            Self::Overdue => "OVERDUE",
            Self::TrialExpired => "TRIAL_EXPIRED",
            Self::Expired => "EXPIRED",
            Self::NotActivated => "NOT_ACTIVATED",
            Self::TooManyActivations => "TOO_MANY_ACTIVATIONS",
            Self::FeaturesMissing => "FEATURES_MISSING",
            Self::Valid => "VALID",
            Self::Other(code) => code,
        }
    }
}

impl From<String> for DecisionCode {
    fn from(code: String) -> Self {
        match code.as_str() {
            "REVOKED" => Self::Revoked,
            "SUSPENDED" => Self::Suspended,
            "PAUSED" => Self::Paused,
            "OVERDUE" => Self::Overdue,
            "TRIAL_EXPIRED" => Self::TrialExpired,
            "EXPIRED" => Self::Expired,
            "NOT_ACTIVATED" => Self::NotActivated,
            "TOO_MANY_ACTIVATIONS" => Self::TooManyActivations,
            "FEATURES_MISSING" => Self::FeaturesMissing,
            "VALID" => Self::Valid,
            _ => Self::Other(code),
        }
    }
}

impl fmt::Display for DecisionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A warning that comes with a valid decision.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "code")]
pub enum Warning {
    /// Payment failed; the license stays valid until `until`.
    #[serde(rename = "PAYMENT_GRACE")]
    PaymentGrace {
        /// End of the grace period.
        until: DateTime<Utc>,
    },
    /// The trial ends in `days` days (3 or fewer).
    #[serde(rename = "TRIAL_ENDING")]
    TrialEnding {
        /// Days left.
        days: i64,
    },
    /// The license expires in `days` days (14 or fewer).
    #[serde(rename = "EXPIRING")]
    Expiring {
        /// Days left.
        days: i64,
    },
    /// A warning this SDK does not know.
    #[serde(other)]
    Other,
}

/// The license a decision is about.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct LicenseInfo {
    /// The license id.
    pub id: Uuid,
    /// Its status (`active`, `trialing`, `past_due`, `suspended`…).
    pub status: String,
    /// The product.
    pub product_id: Uuid,
    /// The policy.
    pub policy: PolicyRef,
    /// Entitlement codes.
    #[serde(default)]
    pub features: Vec<String>,
    /// Seats, when limited.
    #[serde(default)]
    pub seats: Option<u32>,
    /// Active installations.
    #[serde(default)]
    pub activations: u32,
    /// Expiry, when the license expires.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Days left in the trial, when trialing.
    #[serde(default)]
    pub trial_days_remaining: Option<i64>,
}

/// The `200` answer of `POST /v1/validate`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Decision {
    /// Whether the application may run.
    pub valid: bool,
    /// Why.
    pub code: DecisionCode,
    /// A sentence for people.
    #[serde(default)]
    pub detail: String,
    /// The license, when the key was found.
    #[serde(default)]
    pub license: Option<LicenseInfo>,
    /// Warnings (only when valid).
    #[serde(default)]
    pub warnings: Vec<Warning>,
}

/// An installation's seat (`POST /v1/activations`, `…/deactivate`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Activation {
    /// The installation id, for heartbeats and deactivation.
    pub installation_id: Uuid,
    /// The license.
    pub license_id: Uuid,
    /// The device.
    pub fingerprint: String,
    /// Production or test.
    pub environment: Environment,
    /// The hostname given at activation.
    #[serde(default)]
    pub hostname: Option<String>,
    /// The platform given at activation.
    #[serde(default)]
    pub platform: Option<String>,
    /// When the seat was taken.
    pub activated_at: DateTime<Utc>,
    /// For floating licenses: send a heartbeat before this, or the seat is released.
    #[serde(default)]
    pub lease_expires_at: Option<DateTime<Utc>>,
}

/// The answer to `POST /v1/activations/{installation_id}/deactivate`: the activation with
/// `deactivated_at`.
///
/// Only the members that identify the seat are required: once the seat is gone the server may
/// no longer have the rest of the activation to show.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Deactivation {
    /// The installation that gave its seat back.
    pub installation_id: Uuid,
    /// The license.
    pub license_id: Uuid,
    /// When the seat was given back.
    #[serde(default)]
    pub deactivated_at: Option<DateTime<Utc>>,
    /// The device, when the server still had it.
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// The answer to a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Heartbeat {
    /// The installation.
    pub installation_id: Uuid,
    /// The new end of the lease (floating licenses).
    #[serde(default)]
    pub lease_expires_at: Option<DateTime<Utc>>,
}

/// An `application/problem+json` error answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Problem {
    /// The HTTP status.
    #[serde(default)]
    pub status: u16,
    /// The machine-readable code (`NOT_FOUND`, `APP_MISMATCH`, `TOO_MANY_ACTIVATIONS`,
    /// `OFFLINE_NOT_ALLOWED`, or a validation code).
    #[serde(default)]
    pub code: Option<String>,
    /// A short summary.
    #[serde(default)]
    pub title: Option<String>,
    /// A sentence about this occurrence.
    #[serde(default)]
    pub detail: Option<String>,
    /// A URI naming the problem type.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        if let Some(text) = self.detail.as_ref().or(self.title.as_ref()) {
            write!(f, ": {text}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_example_decision_parses() {
        let text = r#"{"valid": true, "code": "VALID", "detail": "the license is valid",
            "license": {"id": "0e3b8f3c-5a5d-4b8e-9a51-6f3c2d1e0a9b", "status": "active",
                        "product_id": "1e3b8f3c-5a5d-4b8e-9a51-6f3c2d1e0a9b",
                        "policy": {"id": "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d", "version": 1, "model": "node_locked"},
                        "features": ["pro"], "seats": 3, "activations": 1,
                        "expires_at": "2027-01-01T00:00:00Z", "trial_days_remaining": null},
            "warnings": [{"code": "EXPIRING", "days": 12}, {"code": "PAYMENT_GRACE", "until": "2026-04-01T00:00:00Z"},
                         {"code": "SOMETHING_NEW", "x": 1}]}"#;
        let decision: Decision = serde_json::from_str(text).unwrap();
        assert!(decision.valid);
        assert_eq!(decision.code, DecisionCode::Valid);
        let license = decision.license.unwrap();
        assert_eq!(license.seats, Some(3));
        assert_eq!(license.features, ["pro"]);
        assert_eq!(decision.warnings.len(), 3);
        assert_eq!(decision.warnings[0], Warning::Expiring { days: 12 });
        assert_eq!(decision.warnings[2], Warning::Other);
    }

    #[test]
    fn unknown_codes_are_kept() {
        let decision: Decision =
            serde_json::from_str(r#"{"valid": false, "code": "QUARANTINED"}"#).unwrap();
        assert_eq!(decision.code, DecisionCode::Other("QUARANTINED".to_owned()));
        assert_eq!(decision.code.to_string(), "QUARANTINED");
        let decision: Decision =
            serde_json::from_str(r#"{"valid": false, "code": "NOT_ACTIVATED"}"#).unwrap();
        assert_eq!(decision.code, DecisionCode::NotActivated);
    }

    #[test]
    fn a_problem_reads_as_one_line() {
        let problem: Problem = serde_json::from_str(
            r#"{"type": "about:blank", "title": "Forbidden", "status": 403, "detail": "no such license", "code": "NOT_FOUND"}"#,
        )
        .unwrap();
        assert_eq!(problem.to_string(), "HTTP 403 NOT_FOUND: no such license");
    }
}
