//! Assembling and running the server: the router with its layers ([`app_router`]) and the process around
//! it ([`start`]): the ledger opened by the application layer (`application::App::open`), its
//! background jobs started in their one place (`application::jobs::Jobs::start`), the listener
//! (`listener::serve`: connection timeouts and limits).
//! `ledger serve` runs exactly this, and the tests start the very same server on `127.0.0.1:0`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use application::jobs::{Jobs, JobsConfig, Periodic};
use application::{App, AppConfig};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware;
use domain::ErrorCode;
use tokio_util::sync::CancellationToken;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::error::ApiError;
use crate::idempotency::{self, Idempotency};
use crate::limits::{self, RateLimit};
use crate::listener::{self, ConnectionLimits};
use crate::request_id::{self, RequestId};
use crate::routes;
use crate::state::{AppState, RuntimeConfig};

/// Everything `ledger serve` is configured with.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// What opening the ledger needs: database, data directory, pepper, pool, issuer, clock.
    pub app: AppConfig,
    /// How often the background jobs run (projectors, leases, keys, checkpoints).
    pub jobs: JobsConfig,
    pub max_body_bytes: usize,
    /// Requests per second per client IP; 0 disables the limit.
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    pub request_timeout: Duration,
    pub max_projector_lag: Duration,
    /// Client endpoints' requests per second per client IP; 0 disables the limit.
    pub client_rate_limit_per_second: u32,
    pub client_rate_limit_burst: u32,
    /// Header-read and idle timeouts, connections per client address.
    pub connections: ConnectionLimits,
}

impl ServeConfig {
    /// The defaults of `ledger serve`, for `database_url` and `data_dir`.
    pub fn new(database_url: String, data_dir: PathBuf) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            app: AppConfig::new(database_url, data_dir),
            jobs: JobsConfig::default(),
            max_body_bytes: 64 * 1024,
            rate_limit_per_second: 50,
            rate_limit_burst: 100,
            request_timeout: Duration::from_secs(30),
            max_projector_lag: Duration::from_secs(30),
            client_rate_limit_per_second: 500,
            client_rate_limit_burst: 1000,
            connections: ConnectionLimits::default(),
        }
    }
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(
        ErrorCode::RouteNotFound,
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// The HTTP application with all its layers. Administration and client routes have rate limits
/// of their own (client applications behind one NAT share an address); client requests are logged
/// at DEBUG (thousands of validations a second would drown the log), everything else at INFO.
pub fn app_router(
    state: AppState,
    rate_limit: Option<RateLimit>,
    client_rate_limit: Option<RateLimit>,
    request_timeout: Duration,
) -> Router {
    let max_body = state.config.max_body_bytes;
    // Inside the deadline: a request it abandons releases its idempotency key (ADR 0016).
    let idempotency = Idempotency::new(state.clone(), request_timeout);
    let mut api = routes::organizations::routes()
        .merge(routes::products::routes())
        .merge(routes::policies::routes())
        .merge(routes::licenses::routes())
        .merge(routes::tokens::routes())
        .merge(routes::offline::routes())
        .merge(routes::operations::routes())
        .layer(middleware::from_fn_with_state(
            idempotency.clone(),
            idempotency::admin,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            request_timeout,
            limits::deadline,
        ));
    if let Some(limit) = rate_limit {
        api = api.layer(middleware::from_fn_with_state(limit, limits::rate_limit));
    }
    let mut client = routes::client::routes()
        .layer(middleware::from_fn_with_state(
            idempotency,
            idempotency::client,
        ))
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
    /// The state it serves (tests reach the application through it).
    pub state: AppState,
    jobs: Jobs,
}

impl RunningServer {
    /// Stops accepting connections, lets in-flight requests finish, stops every background job.
    pub async fn shutdown(self) {
        self.jobs.stop().await;
    }

    /// A token cancelled when the server begins shutting down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.jobs.shutdown_token()
    }

    /// The background jobs it started.
    pub fn jobs(&self) -> &[application::jobs::Job] {
        self.jobs.started()
    }

    /// Waits until every task has ended (after `shutdown_token()` was cancelled).
    pub async fn wait(self) {
        self.jobs.wait().await;
    }
}

/// Opens the ledger, starts every background job and the HTTP listener.
///
/// # Errors
/// When the database is unreachable, migrations fail, the data directory is unusable or the
/// address cannot be bound.
pub async fn start(config: ServeConfig) -> anyhow::Result<RunningServer> {
    // Checked before anything is opened: a cap the open-file limit cannot hold is refused.
    let max_connections = listener::connection_cap(
        config.connections.max_connections,
        reserved_descriptors(&config),
    )?;
    // Bound before the database is opened and any job starts: a server that cannot listen (the
    // port taken, say) says so at once and opens nothing. Connections made while the
    // application opens wait in the listen backlog.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let app = App::open(&config.app).await?;
    let state = AppState::new(
        app.clone(),
        RuntimeConfig {
            max_body_bytes: config.max_body_bytes,
            max_projector_lag: config.max_projector_lag,
        },
    );
    let rate_limit = RateLimit::new(config.rate_limit_per_second, config.rate_limit_burst);
    let client_rate_limit = RateLimit::new(
        config.client_rate_limit_per_second,
        config.client_rate_limit_burst,
    );
    // Idle buckets are forgotten every minute, lest every address ever seen stay in memory.
    let chores = [rate_limit.clone(), client_rate_limit.clone()]
        .into_iter()
        .flatten()
        .map(|limit| Periodic {
            name: "rate-limit pruner",
            every: Duration::from_secs(60),
            run: Box::new(move || limit.prune()),
        })
        .collect();
    let mut jobs = Jobs::start(&app, &config.jobs, chores);
    let router = app_router(
        state.clone(),
        rate_limit,
        client_rate_limit,
        config.request_timeout,
    );
    let token = jobs.shutdown_token();
    let limits = ConnectionLimits {
        max_connections: Some(max_connections),
        ..config.connections
    };
    jobs.spawn(listener::serve(listener, router, limits, token));
    tracing::info!(
        %addr,
        data_dir = %config.app.data_dir.display(),
        max_connections,
        "license-ledger listening"
    );
    Ok(RunningServer { addr, state, jobs })
}

/// Descriptors the server keeps from client connections: both database pools at their maximum
/// and [`listener::RESERVED_DESCRIPTORS`] for everything else it opens.
fn reserved_descriptors(config: &ServeConfig) -> u64 {
    listener::RESERVED_DESCRIPTORS + u64::from(config.app.database_connections())
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
