//! Ids and instants as people type them: the parsers behind the command-line arguments of both
//! `ledger` and `ledger-replay` (clap takes them as `value_parser`s, or through `FromStr`), with
//! errors that say what was expected and show what was given.
//!
//! They live here, next to the types they build, so that both binaries answer a mistyped id or
//! instant with the same sentence without one binary's crate depending on the other's, and
//! without this crate knowing about clap: a `fn(&str) -> Result<T, E>` is all clap needs.
//! clap frames the message as `invalid value 'abc' for '--license <ID>': <message>`.

use crate::Timestamp;
use crate::values::InvalidValue;

/// The example of an id in messages: a UUID v7, as the ledger mints them.
pub const EXAMPLE_ID: &str = "0192e4a1-7b3c-7d2e-9f10-4a5b6c7d8e9f";

/// The example of an instant in messages.
pub const EXAMPLE_INSTANT: &str = "2026-01-31T12:00:00Z";

/// Whether `text` looks like a secret pasted where an id belongs: an administration token
/// (`llt_…`) or a license key. Such text is never shown back: error messages reach terminals,
/// shell histories and support tickets.
pub fn looks_secret(text: &str) -> bool {
    let text = text.trim();
    text.starts_with("llt_") || crate::keys::LicenseKey::parse(text).is_ok()
}

/// What was given, as shown back in an error: quoted, and cut short when long, so that a
/// pasted paragraph does not flood the one-line message; a secret is not shown at all.
fn shown(text: &str) -> String {
    const MAX: usize = 60;
    if looks_secret(text) {
        "a secret (not shown): an administration token or a license key, not an id".to_owned()
    } else if text.chars().count() <= MAX {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(MAX).collect();
        format!("{head:?}… ({} characters)", text.chars().count())
    }
}

/// The refusal of `text` where an id `what` ("a license id") was expected.
pub(crate) fn not_an_id(what: &str, text: &str) -> InvalidValue {
    InvalidValue::new(format!(
        "expected {what} (a UUID such as {EXAMPLE_ID}), got {}",
        shown(text)
    ))
}

/// An instant given as RFC 3339 (any offset; `--at`, `--from`, `--to`).
///
/// # Errors
/// When `text` is not RFC 3339, saying so with an example.
pub fn instant(text: &str) -> Result<Timestamp, InvalidValue> {
    crate::parse_instant(text).map_err(|_| {
        InvalidValue::new(format!(
            "expected an RFC 3339 instant such as {EXAMPLE_INSTANT}, got {}",
            shown(text)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ApiTokenId, LicenseId, OrganizationId};

    #[test]
    fn a_mistyped_id_says_which_id_was_expected_with_an_example_and_what_was_given() {
        let err = "abc".parse::<LicenseId>().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("expected a license id (a UUID such as {EXAMPLE_ID}), got \"abc\"")
        );
        let err = "".parse::<OrganizationId>().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("expected an organization id (a UUID such as {EXAMPLE_ID}), got \"\"")
        );
        let err = "llt_123".parse::<ApiTokenId>().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("expected an API token id (a UUID such as"),
            "{err}"
        );
    }

    #[test]
    fn the_example_id_is_an_id_and_every_uuid_form_parses() {
        let id: LicenseId = EXAMPLE_ID.parse().unwrap();
        assert_eq!(id.to_string(), EXAMPLE_ID);
        let braced: LicenseId = format!("{{{EXAMPLE_ID}}}").parse().unwrap();
        assert_eq!(braced, id);
    }

    #[test]
    fn a_mistyped_instant_says_rfc_3339_with_an_example() {
        let err = instant("yesterday").unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected an RFC 3339 instant such as 2026-01-31T12:00:00Z, got \"yesterday\""
        );
        // A date alone is not an instant: which second of that day would it be?
        assert!(instant("2026-01-31").is_err());
        let at = instant(EXAMPLE_INSTANT).unwrap();
        assert_eq!(at.to_rfc3339(), "2026-01-31T12:00:00+00:00");
        assert_eq!(
            instant("2026-01-31T13:00:00+01:00").unwrap(),
            at,
            "any offset, read as UTC"
        );
    }

    #[test]
    fn a_secret_given_for_an_id_is_never_shown_back() {
        let token =
            "llt_0192e4a17b3c7d2e9f104a5b6c7d8e9f_ABCDEFGHJKMNPQRSTVWXYZ0123456789ABCDEFGHJKMNPQ";
        let err = token.parse::<ApiTokenId>().unwrap_err().to_string();
        assert!(!err.contains("ABCDEFGHJK"), "{err}");
        assert!(err.contains("a secret (not shown)"), "{err}");
        let key = "ACME-7K3Q0000-00000000-00000000-00000000";
        let err = key.parse::<LicenseId>().unwrap_err().to_string();
        assert!(!err.contains("7K3Q"), "{err}");
        assert!(looks_secret(key) && looks_secret(token) && !looks_secret("abc"));
    }

    #[test]
    fn a_long_input_is_cut_short_in_the_message() {
        let long = "x".repeat(500);
        let message = instant(&long).unwrap_err().to_string();
        assert!(message.len() < 200, "{message}");
        assert!(message.ends_with("(500 characters)"), "{message}");
    }
}
