//! [`App`]: the ledger opened for serving — the database migrated and connected, the secrets of
//! the data directory read, the write side, the in-memory validation model and the signing keys —
//! and the handle every use case hangs off.
//!
//! A front end opens one ([`App::open`]), starts its background jobs once ([`crate::jobs`]) and
//! calls its use cases ([`App::licenses`], [`App::catalogue`], [`App::edge`], ...). The HTTP API
//! is one such front end; nothing here knows HTTP.

use std::path::PathBuf;
use std::sync::Arc;

use commands::clock::{Clock, SystemClock};
use commands::keys::KeyHasher;
use commands::{EventStore, Ledger};
use domain::Timestamp;
use projections::Projection;
use projections::notify::ChangeSignal;
use projections::validation::ValidationModel;
use sqlx::PgPool;

use crate::datadir::DataDir;
use crate::signing::SigningKeys;

/// What opening the ledger needs.
#[derive(Clone, Debug)]
pub struct AppConfig {
    pub database_url: String,
    /// The directory of the server's secrets (key pepper, signing keys).
    pub data_dir: PathBuf,
    /// `LEDGER_KEY_PEPPER`, when set.
    pub key_pepper: Option<String>,
    /// Connections in the pool.
    pub db_max_connections: u32,
    /// The `iss` of the tokens this server signs.
    pub issuer: String,
    /// The clock stamped into commands (the system clock; tests move time with an offset clock).
    pub clock: Arc<dyn Clock>,
}

impl AppConfig {
    /// The defaults of `ledger serve` for `database_url` and `data_dir`.
    pub fn new(database_url: String, data_dir: PathBuf) -> Self {
        Self {
            database_url,
            data_dir,
            key_pepper: None,
            db_max_connections: 16,
            issuer: "license-ledger".to_owned(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// The opened ledger. Cloning is cheap (one `Arc`): axum clones its state for every request, and
/// one counter on one cache line is what that should cost.
#[derive(Clone)]
pub struct App(Arc<Inner>);

struct Inner {
    ledger: Ledger,
    validation: Arc<ValidationModel>,
    signing: Arc<SigningKeys>,
    issuer: Arc<str>,
    projections: Arc<Vec<Arc<dyn Projection>>>,
    signal: ChangeSignal,
    data_dir: PathBuf,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("data_dir", &self.0.data_dir)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Creates the database when missing, applies migrations, connects, reads (or creates) the
    /// data directory's secrets and signing keys, and loads the validation model.
    ///
    /// # Errors
    /// When the database is unreachable, a migration fails, or the data directory is unusable.
    pub async fn open(config: &AppConfig) -> anyhow::Result<Self> {
        commands::db::create_database_if_missing(&config.database_url).await?;
        commands::db::migrate(&config.database_url).await?;
        let pool = commands::db::connect(&config.database_url, config.db_max_connections).await?;
        let data_dir = DataDir::open(&config.data_dir)?;
        let pepper = data_dir.key_pepper(config.key_pepper.as_deref())?;
        let signal = ChangeSignal::new();
        let store = EventStore::new(pool.clone()).with_append_hook(signal.hook());
        let ledger = Ledger::new(store, KeyHasher::new(pepper), config.clock.clone());
        let signing = Arc::new(SigningKeys::open(&config.data_dir)?);
        let validation = ValidationModel::load(&pool).await?;
        Ok(Self(Arc::new(Inner {
            ledger,
            validation,
            signing,
            issuer: config.issuer.clone().into(),
            projections: Arc::new(projections::all()),
            signal,
            data_dir: config.data_dir.clone(),
        })))
    }

    /// The write side, for the use cases of this crate only: License commands must go through
    /// [`App::licenses`], which keeps validation current.
    pub(crate) fn ledger(&self) -> &Ledger {
        &self.0.ledger
    }

    /// The pool of the ledger's database.
    pub fn pool(&self) -> &PgPool {
        self.0.ledger.store().pool()
    }

    /// The clock's now.
    pub fn now(&self) -> Timestamp {
        self.0.ledger.now()
    }

    /// Every license's validation facts, in memory, following the log.
    pub fn validation(&self) -> &Arc<ValidationModel> {
        &self.0.validation
    }

    /// The signing keys of offline tokens and checkpoints.
    pub fn signing(&self) -> &Arc<SigningKeys> {
        &self.0.signing
    }

    /// The `iss` of the tokens this server signs.
    pub fn issuer(&self) -> &str {
        &self.0.issuer
    }

    /// The projections this server keeps current.
    pub fn projections(&self) -> &[Arc<dyn Projection>] {
        &self.0.projections
    }

    /// The in-process signal of appends (wakes projectors and the validation follower).
    pub(crate) fn signal(&self) -> &ChangeSignal {
        &self.0.signal
    }
}
