//! The read side of license-ledger: the projector engine and the read models it maintains.
//!
//! # Layout
//! - [`engine`]: exactly-once, commit-ordered catch-up projectors; one active instance per
//!   projector; lag; rebuild.
//! - [`notify`]: waking projectors on appends (in-process signal and coalesced `NOTIFY`).
//! - [`catalogue`], [`licenses`], [`users`], [`releases`]: the read models (`rm_*` tables).
//! - [`validation`]: the validation read model, in a table and in each process's memory.
//! - [`audit`]: one row per event, for auditors.
//! - [`checkpoints`]: what the next signed checkpoint of the log covers.
//! - [`copy`]: rows for binary `COPY`, the cheapest way to add many rows.
//! - [`queries`]: readers of the read models for the API's list endpoints.
//!
//! Architecture invariant: `projections` never depends on `commands`; it only reads `events` and
//! writes its own tables.

use std::sync::Arc;

pub mod audit;
pub mod catalogue;
pub mod checkpoints;
pub mod copy;
pub mod engine;
pub mod licenses;
pub mod notify;
pub mod queries;
pub mod releases;
pub mod tree;
pub mod users;
pub mod validation;

pub use engine::{Projection, ProjectionError, ProjectorRunner, ReplaySafe, RunnerConfig};

/// Every projection the server keeps current, in the order they are started. Today every one is
/// replay-safe, so this is [`replayable`] seen as plain projections: one list, so a projection
/// added for the server cannot be forgotten by `ledger-replay rebuild`. A projection with side
/// effects would be appended here only.
pub fn all() -> Vec<Arc<dyn Projection>> {
    replayable()
        .into_iter()
        .map(|p| -> Arc<dyn Projection> { p })
        .collect()
}

/// The projections that can be rebuilt by replaying the log (`ledger-replay rebuild`): every one
/// here is [`ReplaySafe`]. The element type is the guard: a projection with side effects does not
/// implement [`ReplaySafe`], so it cannot be registered here — the compiler refuses it:
///
/// ```compile_fail
/// use std::sync::Arc;
/// use projections::{Projection, ProjectionError, ReplaySafe};
///
/// /// Sends an e-mail per event: replaying it would send them all again.
/// struct Mailer;
///
/// #[async_trait::async_trait]
/// impl Projection for Mailer {
///     fn name(&self) -> &'static str { "mailer" }
///     fn tables(&self) -> &'static [&'static str] { &[] }
///     fn aggregate_types(&self) -> &'static [domain::AggregateType] { &[] }
///     async fn apply(
///         &self,
///         _conn: &mut sqlx::PgConnection,
///         _event: &domain::event::RecordedEvent,
///     ) -> Result<(), ProjectionError> {
///         Ok(())
///     }
/// }
///
/// let registry: Vec<Arc<dyn ReplaySafe>> = vec![Arc::new(Mailer)];
/// ```
pub fn replayable() -> Vec<Arc<dyn ReplaySafe>> {
    vec![
        Arc::new(catalogue::OrganizationsProjection),
        Arc::new(catalogue::ProductsProjection),
        Arc::new(catalogue::PoliciesProjection),
        Arc::new(licenses::LicensesProjection),
        Arc::new(validation::ValidationProjection),
        Arc::new(audit::AuditProjection),
        Arc::new(users::UsersProjection),
        Arc::new(releases::ReleasesProjection),
    ]
}
