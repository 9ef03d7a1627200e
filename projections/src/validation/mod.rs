//! The validation read model: what `POST /v1/validate` needs about every license, compact enough
//! to hold a million licenses in memory in each server process.
//!
//! - [`ValidationEntry`]: one license's facts in about a hundred bytes. The parts many licenses
//!   share (App GUID, product, policy version, model; feature sets) are interned behind `Arc`s,
//!   instants are microseconds since the epoch, activations exist only where there are some. It
//!   implements [`LicenseFacts`](domain::validation::LicenseFacts), so the domain's own decision
//!   runs on it.
//! - [`ValidationProjection`]: keeps the table `rm_validation` (one row per license) current, with
//!   its checkpoint, like any projector.
//! - [`ValidationModel`]: the in-memory copy. At start-up it loads `rm_validation` and the
//!   projector's checkpoint from one snapshot, then follows the log itself from that checkpoint
//!   (commit order, below the horizon), woken by the process's own appends — a command answered
//!   by this process is visible to validation within milliseconds.
//!
//! One fold, [`ValidationEntry::apply`], serves both; a property test keeps it equal to the
//! License aggregate's own fold.
//!
//! # Layout
//! - `entry`: [`ValidationEntry`], [`LicenseClass`], [`CompactActivation`], [`Interner`].
//! - `table`: `rm_validation` and [`ValidationProjection`].
//! - `model`: [`ValidationModel`].
//! - `tests`: the fold against the aggregate's, and what entries share.

mod entry;
mod model;
mod table;
#[cfg(test)]
mod tests;

pub use entry::{CompactActivation, Interner, LicenseClass, NONE, ValidationEntry};
pub use model::ValidationModel;
pub use table::ValidationProjection;
