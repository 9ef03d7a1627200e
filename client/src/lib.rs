//! The license-ledger client SDK: what a desktop application or a plugin embeds to check its
//! license.
//!
//! It speaks the public client protocol (`docs/client-protocol.md`) and nothing else: it depends
//! on no server crate, so it can ship inside applications.
//!
//! - **Offline verification** ([`verify`], [`jwks`]): ES256 tokens checked against a key set
//!   pinned by the application, with the App GUID, the device fingerprint and the times.
//! - **Air-gapped files** ([`files`]): activation and deactivation request files, activation
//!   response files and deactivation receipts.
//! - **Online client** ([`online`], feature `http`, on by default): validation with a short cache
//!   and a fallback to the stored offline token when the server cannot be reached, activations,
//!   heartbeats, offline tokens and key refresh.
//! - **`license-check`** (feature `cli`, on by default): the same from the command line.
//!
//! An application that only verifies tokens can depend on the crate with
//! `default-features = false` and gets no HTTP stack and no argument parser.
//!
//! # Example: verify an offline token
//!
//! ```no_run
//! use client::jwks::Jwks;
//! use client::values::AppId;
//! use client::verify::Verifier;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The key set ships with the application (`include_str!` it, or install it read-only); it is
//! // never taken from a token or a response file.
//! let jwks = Jwks::from_json(&std::fs::read_to_string("/usr/share/acme/jwks.json")?)?;
//! let app_id = AppId::parse("6f1c2a9e-8d4b-4c3a-9e2f-1a2b3c4d5e6f")?;
//! let token = std::fs::read_to_string("offline-token.jwt")?;
//!
//! let claims = Verifier::new(jwks).verify(token.trim(), app_id, Some("my-device"), chrono::Utc::now())?;
//! if claims.has_feature("pro") {
//!     // unlock the pro features until claims.expires_at()
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Example: validate online, with the offline token as a fallback
//!
//! ```no_run
//! # #[cfg(feature = "http")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use client::jwks::Jwks;
//! use client::online::{Client, Config};
//! use client::values::{AppId, Fingerprint, LicenseKey};
//!
//! let config = Config::new(
//!     "https://licenses.example.com",
//!     AppId::parse("6f1c2a9e-8d4b-4c3a-9e2f-1a2b3c4d5e6f")?,
//!     LicenseKey::parse("ACME-1234-5678")?,
//!     Jwks::from_json(&std::fs::read_to_string("/usr/share/acme/jwks.json")?)?,
//!     "/home/me/.config/acme/license",
//! )
//! .with_fingerprint(Fingerprint::from_machine_data(b"acme:machine-id-of-this-device"));
//! let client = Client::new(config)?;
//!
//! client.fetch_offline_token()?; // now and then, while online
//! let validation = client.validate(&["pro"])?;
//! if validation.is_valid() {
//!     // run; validation.is_offline() says the server was not reachable
//! }
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "http"))]
//! # fn main() {}
//! ```
//!
//! # Layout
//!
//! - [`values`]: `AppId`, `Fingerprint`, `LicenseKey` (redacted in `Debug`), `Label`,
//!   `Environment`: parsed once, valid everywhere after.
//! - [`jwks`]: the pinned key set; refuses private keys.
//! - [`verify`]: `Verifier`, `Claims`, `VerifyError`: the protocol's five verification steps.
//! - [`files`]: request, response and receipt files.
//! - [`artifact`]: `verify_artifact`: a downloaded file's SHA-256 and the server's signature.
//! - [`decision`]: the server's answers as types (`Decision`, `Activation`, `Problem`…).
//! - [`online`]: `Client` (feature `http`).
//! - `src/bin/license-check.rs`: the command-line tool (feature `cli`).

pub mod artifact;
mod b64;
pub mod decision;
pub mod files;
pub mod jwks;
#[cfg(feature = "http")]
pub mod online;
pub mod values;
pub mod verify;

#[cfg(test)]
mod testkit;
