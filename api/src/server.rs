//! Assembling and running the server: the router with its layers ([`app`]) and the process around
//! it — migrations, the pool, projector runners, the NOTIFY forwarder ([`start`]).
//! Tests start the very same server on `127.0.0.1:0`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware;
use commands::clock::SystemClock;
use commands::keys::KeyHasher;
use commands::{EventStore, Ledger};
use projections::notify::ChangeSignal;
use projections::{ProjectorRunner, RunnerConfig};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::datadir::DataDir;
use crate::error::ApiError;
use crate::limits::{self, RateLimit};
use crate::request_id::{self, RequestId};
use crate::routes;
use crate::signing::SigningKeys;
use crate::state::{AppState, AppStateInner, RuntimeConfig};
use projections::validation::ValidationModel;

/// Everything `ledger serve` is configured with.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub database_url: String,
    pub data_dir: PathBuf,
    /// `LEDGER_KEY_PEPPER`, when set.
    pub key_pepper: Option<String>,
    pub max_body_bytes: usize,
    /// Requests per second per client IP; 0 disables the limit.
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    pub request_timeout: Duration,
    pub db_max_connections: u32,
    pub max_projector_lag: Duration,
    /// How often projectors look for events when no notification arrives.
    pub projector_poll_interval: Duration,
    /// Client endpoints' requests per second per client IP; 0 disables the limit.
    pub client_rate_limit_per_second: u32,
    pub client_rate_limit_burst: u32,
    /// The `iss` of the tokens this server signs.
    pub issuer: String,
    /// How often lapsed floating leases are looked for.
    pub lease_check_interval: Duration,
    /// Sign a checkpoint of the log every this many events…
    pub checkpoint_every_events: usize,
    /// …or this often, when any event is pending.
    pub checkpoint_every: Duration,
    /// The clock stamped into commands (the system clock; tests move time with an offset clock).
    pub clock: Arc<dyn commands::clock::Clock>,
}

impl ServeConfig {
    /// The defaults of `ledger serve`, for `database_url` and `data_dir`.
    pub fn new(database_url: String, data_dir: PathBuf) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url,
            data_dir,
            key_pepper: None,
            max_body_bytes: 64 * 1024,
            rate_limit_per_second: 50,
            rate_limit_burst: 100,
            request_timeout: Duration::from_secs(30),
            db_max_connections: 16,
            max_projector_lag: Duration::from_secs(30),
            projector_poll_interval: Duration::from_secs(1),
            client_rate_limit_per_second: 500,
            client_rate_limit_burst: 1000,
            issuer: "license-ledger".to_owned(),
            lease_check_interval: Duration::from_secs(5),
            clock: Arc::new(SystemClock),
            checkpoint_every_events: 1000,
            checkpoint_every: Duration::from_secs(60),
        }
    }
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(
        "ROUTE_NOT_FOUND",
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// The HTTP application with all its layers. Administration and client routes have rate limits
/// of their own (client applications behind one NAT share an address); client requests are logged
/// at DEBUG (thousands of validations a second would drown the log), everything else at INFO.
pub fn app(
    state: AppState,
    rate_limit: Option<RateLimit>,
    client_rate_limit: Option<RateLimit>,
    request_timeout: Duration,
) -> Router {
    let max_body = state.config.max_body_bytes;
    let mut api = routes::admin::routes()
        .merge(routes::offline::routes())
        .merge(routes::audit::routes())
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            request_timeout,
            limits::deadline,
        ));
    if let Some(limit) = rate_limit {
        api = api.layer(middleware::from_fn_with_state(limit, limits::rate_limit));
    }
    let mut client = routes::client::routes()
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            request_timeout,
            limits::deadline,
        ));
    if let Some(limit) = client_rate_limit {
        client = client.layer(middleware::from_fn_with_state(limit, limits::rate_limit));
    }
    Router::new()
        .merge(routes::health::routes())
        .merge(routes::client::jwks_routes())
        .merge(api.layer(trace_layer(Level::INFO)))
        .merge(client.layer(trace_layer(Level::DEBUG)))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(request_id::assign))
        .with_state(state)
}

type SpanMaker = fn(&Request) -> tracing::Span;

fn http_span(req: &Request, level: Level) -> tracing::Span {
    let id = req
        .extensions()
        .get::<RequestId>()
        .map_or("", |r| r.0.as_str());
    // Path only: query strings, headers (Authorization) and bodies (keys) never reach the logs.
    macro_rules! span {
        ($lvl:expr) => {
            tracing::span!(
                $lvl,
                "http",
                method = %req.method(),
                path = %req.uri().path(),
                request_id = %id,
                actor = tracing::field::Empty,
            )
        };
    }
    if level == Level::DEBUG {
        span!(Level::DEBUG)
    } else {
        span!(Level::INFO)
    }
}

fn trace_layer(
    level: Level,
) -> TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    SpanMaker,
    tower_http::trace::DefaultOnRequest,
    DefaultOnResponse,
> {
    fn info(req: &Request) -> tracing::Span {
        http_span(req, Level::INFO)
    }
    fn debug(req: &Request) -> tracing::Span {
        http_span(req, Level::DEBUG)
    }
    // Client requests get their span at DEBUG too: at the default INFO level nothing per
    // validation is formatted at all.
    let make: SpanMaker = if level == Level::DEBUG { debug } else { info };
    TraceLayer::new_for_http()
        .make_span_with(make)
        .on_response(DefaultOnResponse::new().level(level))
}

/// A started server.
pub struct RunningServer {
    /// The address it listens on (useful with port 0).
    pub addr: SocketAddr,
    /// The state it serves (tests reach the ledger through it).
    pub state: AppState,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl RunningServer {
    /// Stops accepting connections, lets in-flight requests finish, stops the projectors.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    /// A token cancelled when the server begins shutting down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until every task has ended (after `shutdown_token()` was cancelled).
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Migrates, connects, starts projectors and the HTTP listener.
///
/// # Errors
/// When the database is unreachable, migrations fail, the data directory is unusable or the
/// address cannot be bound.
pub async fn start(config: ServeConfig) -> anyhow::Result<RunningServer> {
    commands::db::create_database_if_missing(&config.database_url).await?;
    commands::db::migrate(&config.database_url).await?;
    let pool = commands::db::connect(&config.database_url, config.db_max_connections).await?;
    let data_dir = DataDir::open(&config.data_dir)?;
    let pepper = data_dir.key_pepper(config.key_pepper.as_deref())?;

    let signal = ChangeSignal::new();
    let store = EventStore::new(pool.clone()).with_append_hook(signal.hook());
    let ledger = Ledger::new(store, KeyHasher::new(pepper), config.clock.clone());
    let projections = Arc::new(projections::all());
    let signing = Arc::new(SigningKeys::open(&config.data_dir)?);
    let validation = ValidationModel::load(&pool).await?;
    let state = AppState::new(AppStateInner {
        ledger,
        projections: projections.clone(),
        config: Arc::new(RuntimeConfig {
            max_body_bytes: config.max_body_bytes,
            max_projector_lag: config.max_projector_lag,
        }),
        validation: validation.clone(),
        signing: signing.clone(),
        issuer: config.issuer.clone().into(),
    });

    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    for projection in projections.iter() {
        let runner = ProjectorRunner::new(
            pool.clone(),
            projection.clone(),
            signal.subscribe(),
            RunnerConfig {
                poll_interval: config.projector_poll_interval,
                ..RunnerConfig::default()
            },
        );
        tasks.spawn(runner.run(shutdown.clone()));
    }
    tasks.spawn(signal.clone().forward_to_postgres(
        pool.clone(),
        Duration::from_millis(5),
        shutdown.clone(),
    ));
    tasks.spawn(validation.clone().follow(
        pool.clone(),
        signal.subscribe(),
        config.projector_poll_interval,
        shutdown.clone(),
    ));
    tasks.spawn(expire_leases(
        state.clone(),
        config.lease_check_interval,
        shutdown.clone(),
    ));
    {
        let (signing, token) = (signing.clone(), shutdown.clone());
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(5)) => signing.reload_if_changed(),
                }
            }
        });
    }
    let rate_limit = RateLimit::new(config.rate_limit_per_second, config.rate_limit_burst);
    let client_rate_limit = RateLimit::new(
        config.client_rate_limit_per_second,
        config.client_rate_limit_burst,
    );
    for limit in [rate_limit.clone(), client_rate_limit.clone()]
        .into_iter()
        .flatten()
    {
        let token = shutdown.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(60)) => limit.prune(),
                }
            }
        });
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let router = app(
        state.clone(),
        rate_limit,
        client_rate_limit,
        config.request_timeout,
    );
    let token = shutdown.clone();
    tasks.spawn(async move {
        let served = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(token.cancelled_owned())
        .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "license-ledger listening");
    Ok(RunningServer {
        addr,
        state,
        shutdown,
        tasks,
    })
}

/// Records lapsed floating leases every `interval`. Safe on several nodes at once: a lease one
/// node expired is no longer lapsed for the others, whose commands then record nothing.
async fn expire_leases(state: AppState, interval: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let now = state.ledger.now();
        for license_id in state.validation.lapsed_leases(now) {
            let ctx = commands::CommandContext::new(
                domain::event::Actor::System,
                format!("lease-expiry-{}", uuid::Uuid::now_v7()),
            );
            match state.ledger.expire_leases(&ctx, license_id).await {
                Ok(outcome) => state.observe(&outcome),
                Err(e) => {
                    tracing::warn!(%license_id, error = %e, "could not record lapsed leases; will retry")
                }
            }
        }
    }
}

/// Runs until SIGTERM or Ctrl-C, then shuts down gracefully.
///
/// # Errors
/// See [`start`].
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let server = start(config).await?;
    let token = server.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        token.cancel();
    });
    server.wait().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
