//! Command-line argument parsers that `ledger` and `ledger-replay` share, for what clap's own
//! parsers would get wrong.
//!
//! [`Id`] parses a typed id through its `FromStr` (whose error, in `domain::text`, says what was
//! expected) and frames the error as clap does (`invalid value 'abc' for '--license <ID>': …`),
//! except that it never shows back a secret pasted in place of an id: clap's own framing quotes
//! every rejected value, and an administration token or a license key in an error message ends up
//! in terminals, shell histories and support tickets.

use std::ffi::OsStr;
use std::marker::PhantomData;
use std::str::FromStr;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use domain::text::looks_secret;
use domain::values::InvalidValue;

/// The clap parser of an id of type `T`; see the module documentation.
#[derive(Clone, Copy, Debug)]
pub struct Id<T>(PhantomData<fn() -> T>);

impl<T> Id<T> {
    /// The parser.
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for Id<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> TypedValueParser for Id<T>
where
    T: FromStr<Err = InvalidValue> + Clone + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let name = arg.map_or_else(|| "...".to_owned(), ToString::to_string);
        let refuse = |message: String| {
            clap::Error::raw(ErrorKind::ValueValidation, format!("{message}\n")).with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| refuse(format!("invalid value for '{name}': not UTF-8 text")))?;
        text.parse::<T>().map_err(|e| {
            if looks_secret(text) {
                refuse(format!("invalid value for '{name}': {e}"))
            } else {
                refuse(format!("invalid value '{text}' for '{name}': {e}"))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use domain::ids::{ApiTokenId, LicenseId};

    use super::Id;

    #[derive(Debug, Parser)]
    struct Cli {
        #[arg(long, value_name = "ID", value_parser = Id::<LicenseId>::new())]
        license: Option<LicenseId>,
        #[arg(value_name = "TOKEN_ID", value_parser = Id::<ApiTokenId>::new())]
        token: Option<ApiTokenId>,
    }

    fn error(args: &[&str]) -> String {
        let mut argv = vec!["cli"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap_err().to_string()
    }

    #[test]
    fn a_mistyped_id_is_framed_as_clap_frames_it() {
        let message = error(&["--license", "abc"]);
        assert!(
            message.contains("invalid value 'abc' for '--license <ID>': expected a license id"),
            "{message}"
        );
        let id = domain::text::EXAMPLE_ID;
        let cli = Cli::try_parse_from(["cli", "--license", id]).unwrap();
        assert_eq!(cli.license.unwrap().to_string(), id);
    }

    #[test]
    fn a_secret_in_place_of_an_id_is_not_shown_back() {
        let token =
            "llt_0192e4a17b3c7d2e9f104a5b6c7d8e9f_ABCDEFGHJKMNPQRSTVWXYZ0123456789ABCDEFGHJKMNPQ";
        let message = error(&[token]);
        assert!(!message.contains("ABCDEFGHJK"), "{message}");
        assert!(message.contains("a secret (not shown)"), "{message}");
        let key = "ACME-7K3Q0000-00000000-00000000-00000000";
        let message = error(&["--license", key]);
        assert!(!message.contains("7K3Q"), "{message}");
    }
}
