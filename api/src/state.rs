//! What every handler can reach: the application ([`application::App`]) and the HTTP settings.

use std::sync::Arc;
use std::time::Duration;

use application::App;

/// Settings handlers need at run time.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// `/readyz` fails when a projector's oldest pending event is older than this.
    pub max_projector_lag: Duration,
}

/// Shared state of the HTTP application: one `Arc`, because axum clones the state for every
/// request and a struct of many `Arc`s would bump every one of their counters, on cache lines
/// shared by all worker threads.
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl AppState {
    /// Wraps the parts.
    pub fn new(app: App, config: RuntimeConfig) -> Self {
        Self(Arc::new(AppStateInner { app, config }))
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
    /// The ledger's use cases.
    pub app: App,
    pub config: RuntimeConfig,
}
