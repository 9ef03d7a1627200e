//! Assembling and running the server: the router with its layers ([`app_router`]) and the process around
//! it ([`start`]): the ledger opened by the application layer (`application::App::open`), its
//! background jobs started in their one place (`application::jobs::Jobs::start`), the listener
//! (`listener::serve`: connection timeouts and limits).
//! `ledger serve` runs exactly this, and the tests start the very same server on `127.0.0.1:0`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use application::jobs::{Jobs, JobsConfig, Periodic};
use application::{App, AppConfig};
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware;
use domain::ErrorCode;
use tokio_util::sync::CancellationToken;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;
use crate::idempotency::{self, Idempotency};
use crate::limits::{self, AddressLimit, PrincipalLimiter, PrincipalLimits, Rate, RoleRate};
use crate::listener::{self, ConnectionLimits};
use crate::metrics;
use crate::request_id::{self, RequestId};
use crate::state::{AppState, RuntimeConfig};
use crate::{openapi, routes};

/// Everything `ledger serve` is configured with.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// What opening the ledger needs: database, data directory, pepper, pool, issuer, clock.
    pub app: AppConfig,
    /// How often the background jobs run (projectors, leases, keys, checkpoints).
    pub jobs: JobsConfig,
    pub max_body_bytes: usize,
    /// Administration requests per second per client IP without a token that authenticates;
    /// 0 disables the limit.
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    /// Administration requests per token, by the token's role (the others:
    /// [`limits::DEFAULT_TOKEN_RATE`]).
    pub token_rate_limits: Vec<RoleRate>,
    /// A second address serving `/metrics` without authentication.
    pub metrics_listen: Option<SocketAddr>,
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
            token_rate_limits: Vec::new(),
            metrics_listen: None,
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

/// Every route of the server, in the groups that get different layers. This is the one
/// registration table: each module registers its handlers with utoipa-axum's `routes!`, so the
/// router ([`app_router`]) and the OpenAPI document ([`openapi::document`]) are built from the
/// same annotations. A route added with a plain `.route(...)` is caught by
/// `tests/tests/openapi.rs` (ADR 0015).
pub struct RouteTable {
    /// No authentication, no rate limit: health and the document.
    pub public: OpenApiRouter<AppState>,
    /// No authentication, limited per address like the client routes, no deadline: the JWKS,
    /// and downloads through signed links (a 2 GiB transfer takes minutes).
    pub keys: OpenApiRouter<AppState>,
    /// The administration API (bearer tokens), `/metrics` included.
    pub admin: OpenApiRouter<AppState>,
    /// The client applications' API (`X-App-Id`).
    pub client: OpenApiRouter<AppState>,
    /// Payment gateways' webhooks: no bearer (a signature over the body instead), a body limit
    /// and the deadline, no rate limit (the gateway retries; nothing is stored unsigned).
    pub webhooks: OpenApiRouter<AppState>,
    /// Streamed bodies (artifact uploads): bearer tokens limited per principal like the
    /// administration API, but no body limit (the artifact store's `--max-artifact-bytes`), no
    /// deadline (a 2 GiB upload takes minutes; the store's stall timeout cuts a silent one) and
    /// no idempotency store (which would buffer the body; retries are by content, ADR 0023).
    pub transfers: OpenApiRouter<AppState>,
}

/// The registration table (see [`RouteTable`]).
pub fn route_table() -> RouteTable {
    RouteTable {
        public: routes::health::routes().merge(openapi::routes()),
        keys: routes::client::jwks_routes().merge(routes::downloads::download_routes()),
        admin: routes::organizations::routes()
            .merge(routes::products::routes())
            .merge(routes::releases::routes())
            .merge(routes::downloads::routes())
            .merge(routes::policies::routes())
            .merge(routes::licenses::routes())
            .merge(routes::tokens::routes())
            .merge(routes::users::routes())
            .merge(routes::billing::routes())
            .merge(routes::offline::routes())
            .merge(routes::operations::routes())
            .merge(metrics::routes()),
        client: routes::client::routes(),
        webhooks: routes::webhooks::routes(),
        transfers: routes::releases::transfer_routes(),
    }
}

/// The HTTP application with all its layers, and the API reference page. Administration routes
/// are limited per token (per address without one that authenticates), client routes and the
/// JWKS per address (ADR 0018); client requests are logged at DEBUG (thousands of validations a
/// second would drown the log), everything else at INFO. Every request is counted and timed by
/// route (`metrics::observe`).
pub fn app_router(
    state: AppState,
    admin_limits: Arc<PrincipalLimits>,
    client_rate_limit: Option<AddressLimit>,
    request_timeout: Duration,
) -> Router {
    let max_body = state.config.max_body_bytes;
    let mut table = route_table();
    // Before the groups become plain routers: which of their operations take no query.
    let mut operations = table.admin.to_openapi();
    operations.merge(table.client.to_openapi());
    let query_free = routes::QueryFree::of(&operations);
    // Innermost, inside the deadline: a keyed request the deadline answers runs on in its own
    // task, its key held (ADR 0019); outside it the per-token limit, so a refused request claims
    // no key.
    let idempotency = Idempotency::new(state.clone());
    let api = Router::from(table.admin)
        .layer(middleware::from_fn_with_state(
            idempotency.clone(),
            idempotency::admin,
        ))
        .layer(middleware::from_fn_with_state(
            routes::QueryCheck {
                free: query_free.clone(),
                authenticate: Some(state.clone()),
            },
            routes::refuse_unknown_query,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        // Inside the deadline: the limit authenticates, and that lookup is bounded too.
        .layer(middleware::from_fn_with_state(
            PrincipalLimiter {
                state: state.clone(),
                limits: admin_limits.clone(),
            },
            limits::per_principal,
        ))
        .layer(middleware::from_fn_with_state(
            request_timeout,
            limits::deadline,
        ));
    let mut client = Router::from(table.client)
        .layer(middleware::from_fn_with_state(
            idempotency,
            idempotency::client,
        ))
        .layer(middleware::from_fn_with_state(
            routes::QueryCheck {
                free: query_free,
                authenticate: None,
            },
            routes::refuse_unknown_query,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            request_timeout,
            limits::deadline,
        ));
    // Stripe's events carry whole objects (an invoice with its lines): at least 1 MiB, whatever
    // the administration limit, so a large event is not refused on every redelivery.
    let webhooks = Router::from(table.webhooks)
        .layer(DefaultBodyLimit::max(
            crate::routes::webhooks::webhook_body_limit(max_body),
        ))
        .layer(middleware::from_fn_with_state(
            request_timeout,
            limits::deadline,
        ));
    // The upload's query is checked by its handler (it takes `platform` and `arch`); the body is
    // unlimited here and limited by the store, and no deadline cuts a long transfer.
    let transfers = Router::from(table.transfers)
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            PrincipalLimiter {
                state: state.clone(),
                limits: admin_limits,
            },
            limits::per_principal,
        ));
    let mut jwks = Router::from(table.keys);
    // The web UI (ADR 0025): HTML pages, not API operations, so not in the document; its own
    // form limit and CSRF check; the deadline; limited per address like the client routes
    // (every page reads its session; a login's start is a sealed cookie, no row).
    let mut ui_transfers = crate::ui::transfer_routes(&state);
    let mut ui = crate::ui::routes(&state).layer(middleware::from_fn_with_state(
        request_timeout,
        limits::deadline,
    ));
    if let Some(limit) = client_rate_limit {
        client = client.layer(middleware::from_fn_with_state(
            limit.clone(),
            limits::per_address,
        ));
        ui = ui.layer(middleware::from_fn_with_state(
            limit.clone(),
            limits::per_address,
        ));
        ui_transfers = ui_transfers.layer(middleware::from_fn_with_state(
            limit.clone(),
            limits::per_address,
        ));
        jwks = jwks.layer(middleware::from_fn_with_state(limit, limits::per_address));
    }
    Router::from(table.public)
        .layer(trace_layer(Level::DEBUG))
        .merge(openapi::reference_page())
        .merge(jwks.layer(trace_layer(Level::DEBUG)))
        .merge(api.layer(trace_layer(Level::INFO)))
        .merge(client.layer(trace_layer(Level::DEBUG)))
        .merge(webhooks.layer(trace_layer(Level::INFO)))
        .merge(transfers.layer(trace_layer(Level::INFO)))
        .merge(ui.layer(trace_layer(Level::INFO)))
        .merge(ui_transfers.layer(trace_layer(Level::INFO)))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(request_id::assign))
        .layer(middleware::from_fn(metrics::observe))
        .with_state(state)
}

type SpanMaker = fn(&Request) -> tracing::Span;

fn http_span(req: &Request, level: Level) -> tracing::Span {
    let id = req
        .extensions()
        .get::<RequestId>()
        .map_or("", |r| r.0.as_str());
    // The route template only (`/v1/licenses/{id}`), never the path: a path can hold anything,
    // a license key pasted where an id belongs included. Query strings, headers (Authorization)
    // and bodies (keys) never reach the logs either. The router matched before these layers run.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    macro_rules! span {
        ($lvl:expr) => {
            tracing::span!(
                $lvl,
                "http",
                method = %req.method(),
                route = %route,
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
        drain_answers(&self.state).await;
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
        drain_answers(&self.state).await;
    }
}

/// How long a stopping server waits for the idempotent answers of its last requests to be
/// written (they are written just after each response; the database may be gone).
const ANSWERS_DRAIN: Duration = Duration::from_secs(10);

/// Writes the idempotent answers still pending once the last request has ended: a retry sent to
/// the next server then replays them (secrets included) instead of re-deriving them.
async fn drain_answers(state: &AppState) {
    if tokio::time::timeout(ANSWERS_DRAIN, state.app.idempotency().drain())
        .await
        .is_err()
    {
        tracing::warn!(
            "idempotent answers were left unwritten at shutdown; their retries run again"
        );
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
    // The metrics address likewise, before anything opens.
    let metrics_listener = match config.metrics_listen {
        Some(at) => Some(
            tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("cannot listen on {at} (--metrics-listen)"))?,
        ),
        None => None,
    };
    // Links the server hands out (downloads) name it by the address it is reached at: the
    // one given, or the one it listens on (its real port when asked for port 0).
    let mut app_config = config.app.clone();
    if app_config.public_url.is_none() {
        if addr.ip().is_unspecified() {
            tracing::warn!(
                %addr,
                "--public-url is not set and the server listens on every interface: download links will name {addr}, which clients cannot reach; set --public-url (LEDGER_PUBLIC_URL)"
            );
        }
        app_config.public_url = Some(format!("http://{addr}"));
    }
    let app = App::open(&app_config).await?;
    tracing::info!(store = %app.artifacts().location(), "artifact store");
    // Before the server serves, so none of its uploads runs: what interrupted uploads left is
    // cleared, unless other servers use the directory (ADR 0023).
    match app
        .artifacts()
        .claim(app.jobs_pool())
        .await
        .context("cannot open the artifact store")?
    {
        Some(swept) if swept.staged > 0 || swept.unreferenced > 0 => tracing::warn!(
            store = %app.artifacts().location(),
            staging_files_removed = swept.staged,
            unreferenced_files_moved = swept.unreferenced,
            "cleared what interrupted uploads left in the artifact store (unreferenced files are in its unreferenced/)"
        ),
        Some(_) => {}
        None => tracing::info!(
            "other servers use the artifact store; the first to start alone clears what interrupted uploads left"
        ),
    }
    let state = AppState::new(
        app.clone(),
        RuntimeConfig {
            max_body_bytes: config.max_body_bytes,
            max_projector_lag: config.max_projector_lag,
        },
    );
    metrics::handle();
    let admin_limits = Arc::new(PrincipalLimits::new(
        &config.token_rate_limits,
        Rate::new(config.rate_limit_per_second, config.rate_limit_burst),
    ));
    let client_rate_limit = AddressLimit::new(Rate::new(
        config.client_rate_limit_per_second,
        config.client_rate_limit_burst,
    ));
    // Idle buckets are forgotten every minute, lest every address and token ever seen stay in
    // memory.
    let pruned = admin_limits.clone();
    let mut chores = vec![
        Periodic {
            name: "rate-limit pruner",
            every: Duration::from_secs(60),
            run: Box::new(move || pruned.prune()),
        },
        Periodic {
            name: "metrics upkeep",
            every: Duration::from_secs(5),
            run: Box::new(metrics::upkeep),
        },
    ];
    if let Some(limit) = client_rate_limit.clone() {
        chores.push(Periodic {
            name: "rate-limit pruner",
            every: Duration::from_secs(60),
            run: Box::new(move || limit.prune()),
        });
    }
    let mut jobs = Jobs::start(&app, &config.jobs, chores);
    let router = app_router(
        state.clone(),
        admin_limits,
        client_rate_limit,
        config.request_timeout,
    );
    let token = jobs.shutdown_token();
    let limits = ConnectionLimits {
        max_connections: Some(max_connections),
        ..config.connections
    };
    if let Some(metrics_listener) = metrics_listener {
        let metrics_addr = metrics_listener.local_addr()?;
        let router = metrics::listener_router(state.clone());
        jobs.spawn(listener::serve(
            metrics_listener,
            router,
            limits,
            token.clone(),
        ));
        tracing::info!(%metrics_addr, "metrics listening");
    }
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
