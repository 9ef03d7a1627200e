//! What every handler can reach.

use std::sync::Arc;
use std::time::Duration;

use commands::Ledger;
use projections::Projection;
use projections::validation::ValidationModel;

use crate::signing::SigningKeys;

/// Settings handlers need at run time.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// `/readyz` fails when a projector's oldest pending event is older than this.
    pub max_projector_lag: Duration,
}

impl AppState {
    /// Shows a License command's result to validation at once (see `ValidationModel::observe`).
    pub fn observe(&self, outcome: &commands::Outcome<domain::license::License>) {
        if let (Some(state), Ok(id)) = (outcome.aggregate.state(), outcome.aggregate_id.parse()) {
            self.validation.observe(id, state, outcome.version);
        }
    }
}

/// Shared state of the HTTP application: one `Arc`, because axum clones the state for every
/// request and a struct of many `Arc`s would bump every one of their counters, on cache lines
/// shared by all worker threads.
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl AppState {
    /// Wraps the parts.
    pub fn new(inner: AppStateInner) -> Self {
        Self(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;
    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct AppStateInner {
    pub ledger: Ledger,
    pub projections: Arc<Vec<Arc<dyn Projection>>>,
    pub config: Arc<RuntimeConfig>,
    /// Every license's validation facts, in memory, following the log.
    pub validation: Arc<ValidationModel>,
    /// Offline-token signing keys.
    pub signing: Arc<SigningKeys>,
    /// The `iss` of tokens this server signs.
    pub issuer: Arc<str>,
}
