//! What every handler can reach.

use std::sync::Arc;
use std::time::Duration;

use commands::Ledger;
use projections::Projection;

/// Settings handlers need at run time.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// `/readyz` fails when a projector's oldest pending event is older than this.
    pub max_projector_lag: Duration,
}

/// Shared state of the HTTP application.
#[derive(Clone)]
pub struct AppState {
    pub ledger: Ledger,
    pub projections: Arc<Vec<Arc<dyn Projection>>>,
    pub config: Arc<RuntimeConfig>,
}
