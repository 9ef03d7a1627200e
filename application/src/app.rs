//! [`App`]: the ledger opened for serving — the database migrated and connected, the secrets of
//! the data directory read, the write side, the in-memory validation model and the signing keys —
//! and the handle every use case hangs off.
//!
//! A front end opens one ([`App::open`]), starts its background jobs once ([`crate::jobs`]) and
//! calls its use cases ([`App::licenses`], [`App::catalogue`], [`App::edge`], ...). The HTTP API
//! is one such front end; nothing here knows HTTP.
//!
//! Two pools (docs/adr: database pools): [`App::pool`] serves the use cases, that is requests,
//! and nothing else; [`App::jobs_pool`] serves the background jobs, sized for them
//! ([`background_connections`]): a job that holds a connection for long (a projector's session,
//! the one `LISTEN`) can never take one a request is waiting for.

use std::path::PathBuf;
use std::sync::Arc;

use commands::clock::{Clock, SystemClock};
use commands::keys::KeyHasher;
use commands::{EventStore, Ledger};
use domain::Timestamp;
use projections::Projection;
use projections::notify::ChangeSignal;
use projections::tree::TreeModel;
use projections::validation::ValidationModel;
use sqlx::PgPool;

use crate::AppError;
use crate::datadir::DataDir;
use crate::idempotency::IdempotencyStore;
use crate::oidc::Oidc;
use crate::signing::SigningKeys;

/// What opening the ledger needs.
#[derive(Clone, Debug)]
pub struct AppConfig {
    pub database_url: String,
    /// The directory of the server's secrets (key pepper, signing keys).
    pub data_dir: PathBuf,
    /// `LEDGER_KEY_PEPPER`, when set.
    pub key_pepper: Option<String>,
    /// Connections in the request pool (the background jobs have a pool of their own, of
    /// [`background_connections`]).
    pub db_max_connections: u32,
    /// The `iss` of the tokens this server signs.
    pub issuer: String,
    /// The clock stamped into commands (the system clock; tests move time with an offset clock).
    pub clock: Arc<dyn Clock>,
    /// How long the answers of writes sent with an `Idempotency-Key` are kept (24 h).
    pub idempotency_retention: std::time::Duration,
    /// The OpenID Connect issuers whose access tokens authenticate users (none: only
    /// administration tokens do).
    pub oidc: crate::oidc::OidcConfig,
    /// The Stripe webhook endpoint secrets (`--stripe-webhook-secret`; none: every webhook is
    /// refused).
    pub stripe_webhook_secrets: crate::billing::WebhookSecrets,
    /// Which Stripe mode's events change licenses (`--stripe-mode`).
    pub stripe_mode: crate::billing::StripeMode,
    /// The largest artifact an upload may store (`--max-artifact-bytes`).
    pub max_artifact_bytes: u64,
    /// Where artifacts' bytes live (`--artifact-store`): `None` is `<data_dir>/artifacts`,
    /// `s3://bucket[/prefix]` an S3-compatible object store.
    pub artifact_store: Option<String>,
    /// How old an object store's leftovers (staging and unreferenced objects) must be before
    /// a start-up clears them (`--artifact-stale-secs`).
    pub artifact_stale_after: std::time::Duration,
    /// The URL clients reach this server at, for the links it hands out (`--public-url`;
    /// `None`: `http://<the address it listens on>`, filled in by the server once bound).
    pub public_url: Option<String>,
    /// The web UI's login client and session limits (`--ui-oidc-client-id`; `None`: the UI
    /// serves its pages but nobody can log in).
    pub ui: Option<crate::sessions::UiConfig>,
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
            idempotency_retention: crate::idempotency::DEFAULT_RETENTION,
            oidc: crate::oidc::OidcConfig {
                issuers: Vec::new(),
                audience: crate::oidc::OidcConfig::DEFAULT_AUDIENCE.to_owned(),
            },
            stripe_webhook_secrets: crate::billing::WebhookSecrets::default(),
            stripe_mode: crate::billing::StripeMode::Any,
            max_artifact_bytes: crate::artifacts::DEFAULT_MAX_ARTIFACT_BYTES,
            artifact_store: None,
            artifact_stale_after: crate::artifacts::object::STALE_AFTER,
            public_url: None,
            ui: None,
        }
    }

    /// Database connections a server with this configuration may hold at once: the request pool
    /// and the jobs pool.
    pub fn database_connections(&self) -> u32 {
        self.db_max_connections
            .saturating_add(background_connections())
    }
}

/// The `application_name` of the request pool's connections in `pg_stat_activity`.
pub const REQUESTS_APPLICATION_NAME: &str = "license-ledger requests";

/// The `application_name` of the background jobs' connections in `pg_stat_activity`.
pub const JOBS_APPLICATION_NAME: &str = "license-ledger jobs";

/// Connections of the jobs pool that no job holds for long: the validation follower's reads, the
/// `NOTIFY` forwarder, the checkpoint signer and lease expiry take one for a moment each.
const SHARED_JOB_CONNECTIONS: u32 = 3;

/// The size of the jobs pool: one session per projector (a projector's advisory lock lives as
/// long as its connection, so an active projector keeps one), the one `LISTEN` connection,
/// [`SHARED_JOB_CONNECTIONS`], and one per lane of the billing consumer
/// ([`crate::billing::BILLING_CONCURRENCY`], each applying a Stripe event's commands).
pub fn background_connections() -> u32 {
    u32::try_from(projections::all().len()).unwrap_or(u32::MAX)
        + 1
        + SHARED_JOB_CONNECTIONS
        + u32::try_from(crate::billing::BILLING_CONCURRENCY).unwrap_or(u32::MAX)
}

/// The opened ledger. Cloning is cheap (one `Arc`): axum clones its state for every request, and
/// one counter on one cache line is what that should cost.
#[derive(Clone)]
pub struct App(Arc<Inner>);

struct Inner {
    /// The write side over the request pool: what requests use.
    ledger: Ledger,
    /// The same write side (one cache, one set of per-aggregate locks, one append hook) over the
    /// jobs pool: what background jobs (lease expiry) use.
    jobs_ledger: Ledger,
    validation: Arc<ValidationModel>,
    signing: Arc<SigningKeys>,
    issuer: Arc<str>,
    projections: Arc<Vec<Arc<dyn Projection>>>,
    signal: ChangeSignal,
    data_dir: PathBuf,
    /// Issues and checks the cursors of lists (keyed from the pepper).
    cursors: crate::lists::Cursors,
    idempotency: IdempotencyStore,
    /// The organization tree reach is asked about, following the log.
    tree: Arc<TreeModel>,
    oidc: Oidc,
    webhook_secrets: crate::billing::WebhookSecrets,
    stripe_mode: crate::billing::StripeMode,
    /// Wakes this process's billing consumer when a webhook stored an event.
    billing_wake: tokio::sync::Notify,
    /// The webhook intake's writers (group commit), started by the first webhook.
    intake: std::sync::OnceLock<crate::intake::Intake>,
    /// Which user an identity (`<iss>#<sub>`) belongs to. An identity's claim is never released
    /// nor moved to another user, so an entry never goes stale; the user's own stream, which
    /// says whether it is deactivated, is still read on every request.
    identities: std::sync::Mutex<std::collections::HashMap<String, domain::ids::UserId>>,
    /// Where artifacts' bytes live (`<data-dir>/artifacts` or `--artifact-store`).
    artifacts: crate::artifacts::ArtifactStore,
    max_artifact_bytes: u64,
    /// Signs and opens download links.
    links: crate::downloads::LinkSigner,
    /// The base of the links handed out, without a trailing slash.
    public_url: String,
    ui: Option<crate::sessions::UiConfig>,
    /// Validation answers by code since the last flush (`usage`).
    tally: crate::usage::ValidationTally,
    /// Seals the web UI's logins in flight into their cookies.
    login_sealer: crate::sessions::LoginSealer,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("data_dir", &self.0.data_dir)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Creates the database when missing, applies migrations, connects its two pools, reads (or
    /// creates) the data directory's secrets and signing keys, and loads the validation model.
    ///
    /// # Errors
    /// When the request pool could not work (0 connections, or more than the database server
    /// accepts), the database is unreachable, a migration fails, or the data directory is
    /// unusable.
    pub async fn open(config: &AppConfig) -> anyhow::Result<Self> {
        if config.db_max_connections == 0 {
            anyhow::bail!(
                "a request pool of 0 database connections cannot answer any request: at least 1 \
                 is needed (the background jobs have connections of their own)"
            );
        }
        commands::db::create_database_if_missing(&config.database_url).await?;
        commands::db::migrate(&config.database_url).await?;
        let projections = projections::all();
        let background = background_connections();
        let jobs_pool =
            commands::db::connect_named(&config.database_url, background, JOBS_APPLICATION_NAME)
                .await?;
        let accepted = commands::db::server_max_connections(&jobs_pool).await?;
        let needed = config.database_connections();
        if needed > accepted {
            anyhow::bail!(
                "a request pool of {} database connections cannot work: with the {background} of \
                 the background jobs this server needs {needed}, and PostgreSQL at {} accepts \
                 {accepted} in all (max_connections); lower --db-max-connections or raise \
                 max_connections",
                config.db_max_connections,
                commands::db::describe_target(&config.database_url),
            );
        }
        let pool = commands::db::connect_named(
            &config.database_url,
            config.db_max_connections,
            REQUESTS_APPLICATION_NAME,
        )
        .await?;
        let data_dir = DataDir::open(&config.data_dir)?;
        let pepper = data_dir.key_pepper(config.key_pepper.as_deref())?;
        let cursors = crate::lists::Cursors::new(&pepper);
        let signal = ChangeSignal::new();
        let idempotency =
            IdempotencyStore::new(pool.clone(), &pepper, config.idempotency_retention);
        let store = EventStore::new(pool).with_append_hook(signal.hook());
        let ledger = Ledger::new(store, KeyHasher::new(pepper), config.clock.clone());
        let jobs_ledger = ledger.on_pool(jobs_pool.clone());
        let signing = Arc::new(SigningKeys::open(&config.data_dir)?);
        let validation = ValidationModel::load(&jobs_pool).await?;
        let tree = TreeModel::load(&jobs_pool).await?;
        let oidc = Oidc::new(&config.oidc)?;
        let artifacts = crate::artifacts::ArtifactStore::configured(
            &config.data_dir,
            config.artifact_store.as_deref(),
            config.artifact_stale_after,
            config.max_artifact_bytes,
        )?;
        Ok(Self(Arc::new(Inner {
            ledger,
            jobs_ledger,
            validation,
            signing,
            issuer: config.issuer.clone().into(),
            projections: Arc::new(projections),
            signal,
            data_dir: config.data_dir.clone(),
            cursors,
            idempotency,
            tree,
            oidc,
            webhook_secrets: config.stripe_webhook_secrets.clone(),
            stripe_mode: config.stripe_mode,
            billing_wake: tokio::sync::Notify::new(),
            intake: std::sync::OnceLock::new(),
            identities: std::sync::Mutex::new(std::collections::HashMap::new()),
            artifacts,
            max_artifact_bytes: config.max_artifact_bytes,
            links: crate::downloads::LinkSigner::new(&pepper),
            public_url: config
                .public_url
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned())
                .trim_end_matches('/')
                .to_owned(),
            ui: config.ui.clone(),
            tally: crate::usage::ValidationTally::default(),
            login_sealer: crate::sessions::LoginSealer::new(&pepper),
        })))
    }

    /// The write side, for the use cases of this crate only: License commands must go through
    /// [`App::licenses`], which keeps validation current.
    pub(crate) fn ledger(&self) -> &Ledger {
        &self.0.ledger
    }

    /// The write side over the jobs pool, for background jobs.
    pub(crate) fn jobs_ledger(&self) -> &Ledger {
        &self.0.jobs_ledger
    }

    /// The request pool: what use cases, that is requests, query through. No background job
    /// uses it.
    pub fn pool(&self) -> &PgPool {
        self.0.ledger.store().pool()
    }

    /// The jobs pool: every background job's connections, none of a request's.
    pub fn jobs_pool(&self) -> &PgPool {
        self.0.jobs_ledger.store().pool()
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

    /// The cursors of lists.
    pub fn cursors(&self) -> &crate::lists::Cursors {
        &self.0.cursors
    }

    /// The answers of writes sent with an `Idempotency-Key` (on the request pool).
    pub fn idempotency(&self) -> &IdempotencyStore {
        &self.0.idempotency
    }

    /// The in-process signal of appends (wakes projectors and the validation follower).
    pub(crate) fn signal(&self) -> &ChangeSignal {
        &self.0.signal
    }

    /// The organization tree as the log holds it now: brought up to date first when anything
    /// was appended since it last looked.
    ///
    /// # Errors
    /// The log could not be read.
    pub(crate) async fn tree(
        &self,
    ) -> Result<std::sync::RwLockReadGuard<'_, projections::tree::TreeState>, AppError> {
        Ok(self
            .0
            .tree
            .current(self.pool(), self.0.signal.appends())
            .await?)
    }

    /// What wakes the billing consumer ([`crate::jobs::Job::BillingConsumer`]).
    pub(crate) fn billing_wake(&self) -> &tokio::sync::Notify {
        &self.0.billing_wake
    }

    /// The webhook intake's writers, started on first use (on the runtime that serves).
    pub fn intake(&self) -> &crate::intake::Intake {
        self.0
            .intake
            .get_or_init(|| crate::intake::Intake::start(self.pool().clone()))
    }

    /// The Stripe webhook endpoint secrets.
    pub fn webhook_secrets(&self) -> &crate::billing::WebhookSecrets {
        &self.0.webhook_secrets
    }

    /// Which Stripe mode's events the billing consumer acts on.
    pub fn stripe_mode(&self) -> crate::billing::StripeMode {
        self.0.stripe_mode
    }

    /// The verifier of OIDC access tokens.
    pub fn oidc(&self) -> &Oidc {
        &self.0.oidc
    }

    /// The users of identities already looked up (see the field's comment).
    pub(crate) fn identities(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, domain::ids::UserId>> {
        self.0
            .identities
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where artifacts' bytes live.
    pub fn artifacts(&self) -> &crate::artifacts::ArtifactStore {
        &self.0.artifacts
    }

    /// The largest artifact an upload may store (`--max-artifact-bytes`).
    pub fn max_artifact_bytes(&self) -> u64 {
        self.0.max_artifact_bytes
    }

    /// Signs and opens download links.
    pub fn link_signer(&self) -> &crate::downloads::LinkSigner {
        &self.0.links
    }

    /// The base URL of the links this server hands out (no trailing slash).
    pub fn public_url(&self) -> &str {
        &self.0.public_url
    }

    /// Seals the web UI's logins in flight.
    pub(crate) fn login_sealer(&self) -> &crate::sessions::LoginSealer {
        &self.0.login_sealer
    }

    /// The validation answers counted since the last flush.
    pub fn tally(&self) -> &crate::usage::ValidationTally {
        &self.0.tally
    }

    /// The web UI's login client and session limits, when configured.
    pub fn ui(&self) -> Option<&crate::sessions::UiConfig> {
        self.0.ui.as_ref()
    }
}
