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
//!
//! # Layout
//!
//! - `request`: [`ActivationRequest`], [`DeactivationRequest`].
//! - `response`: [`ActivationResponse`], [`DeactivationReceipt`].
//! - `armor`: the armor lines, written exactly and read tolerantly.
//! - this module: [`FileError`] and [`token_from_text`].

mod armor;
mod request;
mod response;

pub use request::{ActivationRequest, DeactivationRequest};
pub use response::{ActivationResponse, DeactivationReceipt};

use armor::{ACTIVATION_RESPONSE, MAX_FILE_LEN, is_token_byte, token_in};

/// The only request format version this SDK writes and reads.
pub const REQUEST_VERSION: u32 = 1;

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

#[cfg(test)]
mod tests;
