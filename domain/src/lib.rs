//! The language of license-ledger: what the ledger records and how it decides.
//!
//! Everything here is deterministic. There is no I/O, no clock and no randomness: the current time,
//! new ids and freshly generated key material arrive inside commands, stamped by the write side
//! (`commands`). That is what lets the same code decide a command, rebuild a read model, and fold a
//! license "as of" any past instant with identical results.
//!
//! # Layout
//! - [`ids`]: typed UUID identifiers (`LicenseId`, `AppId`, ...).
//! - [`text`]: ids and instants as people type them (command-line arguments), with errors that
//!   say what was expected.
//! - [`values`]: validated value types (`Name`, `SeatCount`, `FeatureSet`, ...): parse, don't validate.
//! - [`keys`]: the license-key and API-token formats, and their hashes.
//! - [`event`]: the stored-event contract: encoding, decoding with upcasting, metadata, envelopes.
//! - [`integrity`]: the canonical bytes of an event and the per-stream hash chain.
//! - [`error`]: [`DomainError`], every refusal a command can meet, with its stable `code`;
//!   [`codes`]: [`ErrorCode`], every problem code the ledger answers, spelled once.
//! - [`stream`]: [`AggregateType`] (the stored `aggregate_type`), claim scopes, and [`Stream`],
//!   which gives each aggregate its typed id.
//! - Aggregates (cqrs-es `Aggregate`): [`organization`], [`product`], [`policy`], [`license`],
//!   [`api_token`], [`user`]; [`reach`] decides what a principal may do where; [`status`] derives a license's status from its state and the clock;
//!   [`validation`] is the validation decision every client check goes through; [`release`]
//!   decides which releases a license sees and the path from an installed version to the newest
//!   (and holds the Release aggregate); [`download`] is a download link and its transfers.

pub mod api_token;
pub mod billing;
pub mod codes;
pub mod download;
pub mod error;
pub mod event;
pub mod ids;
pub mod integrity;
pub mod keys;
pub mod license;
pub mod organization;
pub mod policy;
pub mod product;
pub mod reach;
pub mod release;
pub mod status;
pub mod stream;
pub mod text;
pub mod user;
pub mod validation;
pub mod values;

pub use codes::ErrorCode;
pub use error::DomainError;
pub use stream::{AggregateType, Stream, StreamId};

/// Instants are UTC everywhere in the ledger.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// Parses an RFC 3339 instant (any offset) into a [`Timestamp`]: the one spelling of an instant
/// the API (`?as_of=`, `from`, `to`), the replay tool (`--at`) and exports accept.
///
/// # Errors
/// When `text` is not RFC 3339.
pub fn parse_instant(text: &str) -> Result<Timestamp, chrono::ParseError> {
    chrono::DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&chrono::Utc))
}
