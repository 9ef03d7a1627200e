//! The armor around every file (`-----BEGIN LICENSE-LEDGER <label>-----` … `-----END …-----`):
//! writing it exactly, and reading it tolerantly, as e-mail and copy-paste leave it.

use base64ct::{Base64, Encoding};
use serde::Serialize;

use super::FileError;

/// Width of the base64 lines in a request file.
const LINE_WIDTH: usize = 64;

/// Longest file accepted when reading, in bytes; real files are about 1 KiB.
pub(super) const MAX_FILE_LEN: usize = 64 * 1024;

// The labels of the armor lines, one per kind of file.
pub(super) const ACTIVATION_REQUEST: &str = "ACTIVATION REQUEST";
pub(super) const DEACTIVATION_REQUEST: &str = "DEACTIVATION REQUEST";
pub(super) const ACTIVATION_RESPONSE: &str = "ACTIVATION RESPONSE";
pub(super) const DEACTIVATION_RECEIPT: &str = "DEACTIVATION RECEIPT";

/// The first line of a `label` file.
fn begin_line(label: &str) -> String {
    format!("-----BEGIN LICENSE-LEDGER {label}-----")
}

/// The last line of a `label` file.
fn end_line(label: &str) -> String {
    format!("-----END LICENSE-LEDGER {label}-----")
}

/// `body` between the armor lines of `label`, each line ended by `\n`.
pub(super) fn armor(label: &str, body: &str) -> String {
    format!("{}\n{body}\n{}\n", begin_line(label), end_line(label))
}

/// `json` as standard padded base64 wrapped at [`LINE_WIDTH`], in the armor of `label`.
pub(super) fn armor_json<T: Serialize>(label: &str, json: &T) -> String {
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
pub(super) fn armored_lines<'t>(
    text: &'t str,
    label: &'static str,
) -> Result<Vec<&'t str>, FileError> {
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

/// The compact token in the `label` armor of `text`.
pub(super) fn token_in(text: &str, label: &'static str) -> Result<String, FileError> {
    // A long token may have been wrapped by a mail client; the parts carry no whitespace, so the
    // lines are simply joined.
    let token: String = armored_lines(text, label)?.concat();
    if !token.bytes().all(is_token_byte) {
        return Err(FileError::NotAToken);
    }
    Ok(token)
}

/// The bytes of a compact JWS: base64url and dots.
pub(super) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}
