//! The files an offline machine receives: an activation response and a deactivation receipt,
//! each a signed token in armor, trusted only once it verifies against the pinned keys.

use chrono::{DateTime, Utc};

use super::FileError;
use super::armor::{ACTIVATION_RESPONSE, DEACTIVATION_RECEIPT, armor, token_in};
use crate::values::AppId;
use crate::verify::{Claims, ReceiptClaims, Verifier, VerifyError};

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
