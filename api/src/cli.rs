//! The `ledger` command line: `serve`, `migrate`, `token`, `keys`, `billing`, and `releases
//! publish` (a release pipeline's client of a running server: [`crate::publish`]).
//!
//! Every command exits 0 on success and otherwise prints one line, `error: <reason>`, on stderr
//! and exits 1. Logs go to stderr; stdout carries only a command's result (the token of
//! `ledger token`), so scripts can capture it.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use commands::clock::SystemClock;
use commands::keys::KeyHasher;
use commands::{CommandContext, EventStore, Ledger};
use domain::event::Actor;
use domain::ids::ApiTokenId;
use domain::values::{Name, Role};

use crate::limits::RoleRate;
use crate::listener::ConnectionLimits;
use crate::server::{self, ServeConfig};

/// license-ledger: an event-sourced software-license ledger.
#[derive(Debug, Parser)]
#[command(name = "ledger", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, env = "LEDGER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (applies migrations first).
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit.
    Migrate(DbArgs),
    /// Mint an administration bearer token and print it alone on stdout, or revoke one.
    Token(TokenArgs),
    /// Manage the offline-token signing keys in the data directory.
    Keys(KeysArgs),
    /// The billing inbox: list the Stripe events received by outcome, retry them, import a
    /// back-fill.
    Billing(BillingArgs),
    /// Releases, from a vendor's release pipeline: `ledger releases publish` drafts, uploads and
    /// publishes over HTTP against a running server.
    Releases(crate::publish::ReleasesArgs),
}

#[derive(Debug, Args)]
struct BillingArgs {
    /// PostgreSQL URL of the ledger's database (required; no default), before or after the
    /// action.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    action: BillingAction,
}

#[derive(Debug, Subcommand)]
enum BillingAction {
    /// Print the events received, oldest first, one per line: id, type, outcome, attempts,
    /// reason.
    List {
        /// Only `pending`, `processed`, `ignored` or `failed` events.
        #[arg(long)]
        outcome: Option<String>,
        /// At most this many (1-1000).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
    },
    /// Make events due again (a running server's consumer takes them within a second): one by
    /// its id, or every failed one with --failed.
    Retry {
        /// The Stripe event id (`evt_…`).
        id: Option<String>,
        #[arg(long, conflicts_with = "id")]
        failed: bool,
    },
    /// Store the Stripe events of a JSON Lines file (one event per line: a support export, or
    /// `stripe events list` output turned into lines with `jq -c '.data[]'`) in the inbox, each
    /// once by its id, for the server's consumer to process like delivered ones: back-fills and
    /// disaster recovery. The file is trusted as the operator's: no signature is checked.
    Import { file: PathBuf },
}

#[derive(Debug, Args)]
struct KeysArgs {
    /// Directory of the server's secrets.
    #[arg(
        long,
        env = "LEDGER_DATA_DIR",
        default_value = "./ledger-data",
        global = true
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    action: KeysAction,
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Make a new key current; earlier keys stay in the JWKS, so their tokens keep verifying.
    /// Prints the new key id.
    Rotate,
    /// Remove a key from the JWKS: tokens it signed stop verifying. Not the current key.
    Retire { kid: String },
    /// List the keys and their state (current, published, retired).
    List,
    /// Print a JWKS of the public keys, for auditors (`ledger-replay verify-export --jwks`) and
    /// clients. `--all` includes retired keys: checkpoints they signed stay verifiable.
    Jwks {
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Args)]
struct DbArgs {
    /// PostgreSQL URL of the ledger's database (required; no default), e.g.
    /// postgres://user@127.0.0.1:5432/license_ledger
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

impl DbArgs {
    /// The database the user named, or an error saying how to name one.
    fn url(&self) -> anyhow::Result<&str> {
        Ok(commands::db::required_url(self.database_url.as_deref())?)
    }
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on, IP:PORT.
    #[arg(long, env = "LEDGER_LISTEN", default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    listen: SocketAddr,
    #[command(flatten)]
    db: DbArgs,
    /// Directory of the server's secrets (key pepper, signing keys); created 0700 on first start.
    #[arg(long, env = "LEDGER_DATA_DIR", default_value = "./ledger-data")]
    data_dir: PathBuf,
    /// Largest accepted request body, in bytes (at least 1).
    #[arg(long, env = "LEDGER_MAX_BODY_BYTES", default_value_t = 64 * 1024,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_body_bytes: usize,
    /// Largest artifact an upload may store, in bytes (at least 1; default 2 GiB). Uploads are
    /// streamed to `<data-dir>/artifacts`, so this bounds disk, not memory.
    #[arg(long, env = "LEDGER_MAX_ARTIFACT_BYTES",
          default_value_t = application::artifacts::DEFAULT_MAX_ARTIFACT_BYTES,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_artifact_bytes: u64,
    /// Where artifacts' bytes live: `<data-dir>/artifacts` when unset, or an S3-compatible
    /// store as `s3://bucket[/prefix]`, with credentials, region and endpoint from the standard
    /// AWS variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`).
    #[arg(long, env = "LEDGER_ARTIFACT_STORE")]
    artifact_store: Option<String>,
    /// With an S3 artifact store: how old, in seconds, a staging object or a content object no
    /// release names must be before a starting server clears it (servers sharing a bucket
    /// must not clear each other's uploads in flight; default one hour).
    #[arg(long, env = "LEDGER_ARTIFACT_STALE_SECS", default_value_t = 3600)]
    artifact_stale_secs: u64,
    /// The URL clients reach this server at (behind a proxy: its public https address), for
    /// the links it hands out; default `http://<listen address>`.
    #[arg(long, env = "LEDGER_PUBLIC_URL", value_parser = parse_public_url)]
    public_url: Option<String>,
    /// Administration requests per second per client IP without a bearer token that
    /// authenticates (none, or an invalid, expired or revoked one); 0: no limit. Requests with a
    /// valid token are limited per token instead (--token-rate-limit).
    #[arg(long, env = "LEDGER_RATE_LIMIT_RPS", default_value_t = 50)]
    rate_limit_rps: u32,
    /// Burst allowance per client IP without a valid token.
    #[arg(long, env = "LEDGER_RATE_LIMIT_BURST", default_value_t = 100)]
    rate_limit_burst: u32,
    /// Administration requests per token of a role: ROLE=RPS[/BURST] (burst defaults to twice
    /// the rate; a rate of 0: that role's tokens are not limited). Repeatable, or comma-separated
    /// in the environment. Roles not named: 5000/10000 per token.
    #[arg(
        long = "token-rate-limit",
        env = "LEDGER_TOKEN_RATE_LIMITS",
        value_name = "ROLE=RPS[/BURST]",
        value_delimiter = ','
    )]
    token_rate_limits: Vec<RoleRate>,
    /// Also serve GET /metrics without authentication on this address, IP:PORT (e.g.
    /// 127.0.0.1:9464 for a local Prometheus). On the main listener /metrics always needs a
    /// bearer token that may read.
    #[arg(long, env = "LEDGER_METRICS_LISTEN", value_parser = parse_listen)]
    metrics_listen: Option<SocketAddr>,
    /// Seconds a request may run before it is answered 503 (1 to 3600).
    #[arg(long, env = "LEDGER_REQUEST_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    request_timeout_secs: u64,
    /// Database connections for requests (at least 1). Background jobs have a small pool of
    /// their own besides (one per projector, one LISTEN, three shared).
    #[arg(long, env = "LEDGER_DB_MAX_CONNECTIONS", default_value_t = 16,
          value_parser = parse_db_max_connections)]
    db_max_connections: u32,
    /// `/readyz` fails when a projector lags by more than this many seconds.
    #[arg(long, env = "LEDGER_MAX_PROJECTOR_LAG_SECS", default_value_t = 30)]
    max_projector_lag_secs: u64,
    /// Requests per second per client IP on the client endpoints (validate, activations,
    /// offline tokens); 0: no limit.
    #[arg(long, env = "LEDGER_CLIENT_RATE_LIMIT_RPS", default_value_t = 500)]
    client_rate_limit_rps: u32,
    /// Burst allowance per client IP on the client endpoints.
    #[arg(long, env = "LEDGER_CLIENT_RATE_LIMIT_BURST", default_value_t = 1000)]
    client_rate_limit_burst: u32,
    /// The `iss` claim of the offline tokens this server signs.
    #[arg(long, env = "LEDGER_ISSUER", default_value = "license-ledger")]
    issuer: String,
    /// Sign a checkpoint of the log as soon as this many events are pending…
    #[arg(long, env = "LEDGER_CHECKPOINT_EVERY_EVENTS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    checkpoint_every_events: u32,
    /// …or this many seconds after the last one, when any event is pending.
    #[arg(long, env = "LEDGER_CHECKPOINT_EVERY_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    checkpoint_every_secs: u64,
    /// Seconds the answer of a write sent with an Idempotency-Key is kept for its retries
    /// (1 s to 7 days; docs/api.md promises 24 h); older answers are pruned every minute, or sooner.
    #[arg(long, env = "LEDGER_IDEMPOTENCY_RETENTION_SECS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(1..=604_800))]
    idempotency_retention_secs: u64,
    /// An OpenID Connect issuer whose access tokens authenticate users (its
    /// `/.well-known/openid-configuration` names its keys). Repeatable, or comma-separated in the
    /// environment. https, or http for a provider on the same host or network.
    #[arg(long = "oidc-issuer", env = "LEDGER_OIDC_ISSUERS", value_name = "URL",
          value_delimiter = ',', value_parser = parse_issuer)]
    oidc_issuers: Vec<domain::values::Issuer>,
    /// The `aud` an OIDC access token must carry.
    #[arg(long, env = "LEDGER_OIDC_AUDIENCE", default_value = "license-ledger")]
    oidc_audience: String,
    /// The web UI's client id at the first --oidc-issuer: people log in to the UI at
    /// `/auth/login` through that provider, which must accept the redirect URI
    /// `{public-url}/auth/callback`. Without it the UI's pages say how to configure it.
    #[arg(long, env = "LEDGER_UI_OIDC_CLIENT_ID", value_name = "CLIENT_ID")]
    ui_oidc_client_id: Option<String>,
    /// The web UI client's secret, for a confidential client (sent with HTTP Basic
    /// authentication); without it the UI is a public client and relies on PKCE. Prefer the
    /// environment variable: a command line is visible to every user of the machine.
    #[arg(
        long,
        env = "LEDGER_UI_OIDC_CLIENT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    ui_oidc_client_secret: Option<String>,
    /// Seconds a web UI session may stay unused before it ends (60 to 86400).
    #[arg(long, env = "LEDGER_UI_SESSION_IDLE_SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(60..=86_400))]
    ui_session_idle_secs: u64,
    /// Seconds after its login a web UI session ends, however used (300 to 604800).
    #[arg(long, env = "LEDGER_UI_SESSION_MAX_SECS", default_value_t = 43_200,
          value_parser = clap::value_parser!(u64).range(300..=604_800))]
    ui_session_max_secs: u64,
    /// A Stripe webhook endpoint secret (`whsec_…`) that signs the events `POST
    /// /v1/webhooks/stripe` accepts. Repeatable, or comma-separated in the environment: every one
    /// is tried, so a secret is rotated by configuring the new one next to the old for a while.
    #[arg(
        long = "stripe-webhook-secret",
        env = "LEDGER_STRIPE_WEBHOOK_SECRETS",
        value_name = "SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    stripe_webhook_secrets: Vec<String>,
    /// Which Stripe mode's events change licenses: `live`, `test`, or `any` (both). Events of the
    /// other mode are stored and `ignored`, with the reason.
    #[arg(long, env = "LEDGER_STRIPE_MODE", default_value = "any",
          value_parser = application::billing::StripeMode::parse)]
    stripe_mode: application::billing::StripeMode,
    /// Seconds a connection has to send a complete request head, from connecting or from the
    /// first byte of a later request; slower connections are closed.
    #[arg(long, env = "LEDGER_HEADER_READ_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_read_timeout_secs: u64,
    /// Seconds a keep-alive connection may wait for its next request before it is closed.
    #[arg(long, env = "LEDGER_IDLE_TIMEOUT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    idle_timeout_secs: u64,
    /// Concurrent connections per client address (IPv6: per /64); more are closed at once.
    /// Raise it behind a reverse proxy or load balancer, whose address all clients share.
    #[arg(long, env = "LEDGER_MAX_CONNECTIONS_PER_IP", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_ip: u32,
    /// Concurrent client connections in all; at the cap the server stops accepting until one
    /// closes. Default: what `ulimit -n` leaves after the database pools and 64 for the server's
    /// own files; a larger value is refused.
    #[arg(long, env = "LEDGER_MAX_CONNECTIONS",
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,
}

/// `--listen`: an IP address and a port; a port alone or a host name gets a hint. (clap prefixes
/// the message with the flag and the value it got.)
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| match s.parse::<u16>() {
        Ok(port) => format!(
            "expected IP:PORT, not a port alone: 127.0.0.1:{port} (this machine only) or \
             0.0.0.0:{port} (every interface)"
        ),
        Err(_) => "expected IP:PORT such as 127.0.0.1:8080 or [::1]:8080 (an IP address, not a \
                   host name)"
            .to_owned(),
    })
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct TokenArgs {
    #[command(subcommand)]
    action: Option<TokenAction>,
    /// Role of the new token: vendor_admin, vendor_support or vendor_auditor.
    #[arg(long, value_parser = parse_role)]
    role: Option<Role>,
    /// Lifetime: e.g. 30m, 24h, 7d (at most 365d).
    #[arg(long, default_value = "24h", value_parser = parse_ttl)]
    ttl: chrono::Duration,
    /// A label to recognise the token by.
    #[arg(long)]
    label: Option<String>,
    /// PostgreSQL URL of the ledger's database (required; no default).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Revoke a token by id; it stops working immediately.
    Revoke {
        /// The token's id, as `ledger token` printed it when minting (not the secret).
        // Parsed by `ApiTokenId`'s `FromStr`, whose error says a UUID was expected (`domain::text`);
        // a token pasted here instead of its id is not shown back (`application::args`).
        #[arg(value_name = "ID", value_parser = application::args::Id::<ApiTokenId>::new())]
        id: ApiTokenId,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// A request pool's size: a whole number, at least 1 (0 would answer every request 503 after
/// waiting for a connection that can never come).
fn parse_db_max_connections(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(0) => Err(
            "0 connections cannot answer any request: at least 1 is needed (the \
                      background jobs have connections of their own)"
                .into(),
        ),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "{s:?} is not a number of connections (a whole number, at least 1)"
        )),
    }
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).map_err(|e| e.to_string())
}

/// Parses `90s`, `30m`, `24h`, `7d` (1 second to 365 days).
fn parse_ttl(s: &str) -> Result<chrono::Duration, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30m, 24h or 7d"))?;
    let ttl = match unit {
        "s" => chrono::Duration::seconds(n),
        "m" => chrono::Duration::minutes(n),
        "h" | "" => chrono::Duration::hours(n),
        "d" => chrono::Duration::days(n),
        _ => return Err(format!("{s:?}: unit must be s, m, h or d")),
    };
    if ttl < chrono::Duration::seconds(1) || ttl > chrono::Duration::days(365) {
        return Err("the lifetime must be between 1s and 365d".into());
    }
    Ok(ttl)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The entry point of the `ledger` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", application::error::one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// Writes one line to stdout; a closed pipe (`ledger keys list | head -1`) is an error like any
/// other, reported on stderr with exit 1, where `println!` panicked.
pub(crate) fn out(line: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    Ok(())
}

fn parse_issuer(raw: &str) -> Result<domain::values::Issuer, String> {
    domain::values::Issuer::parse(raw).map_err(|e| e.to_string())
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => {
            let mut config = ServeConfig::new(args.db.url()?.to_owned(), args.data_dir);
            config.listen = args.listen;
            config.app.key_pepper = std::env::var("LEDGER_KEY_PEPPER").ok();
            config.app.db_max_connections = args.db_max_connections;
            config.app.issuer = args.issuer;
            config.app.ui = match (args.ui_oidc_client_id, args.ui_oidc_client_secret) {
                (Some(client_id), client_secret) => {
                    if args.oidc_issuers.is_empty() {
                        anyhow::bail!(
                            "--ui-oidc-client-id needs --oidc-issuer: the web UI logs in through the first issuer"
                        );
                    }
                    if client_id.trim().is_empty() {
                        anyhow::bail!("--ui-oidc-client-id is empty");
                    }
                    // The UI's ID tokens carry its client id as `aud`: were it the API's
                    // audience too, an ID token would look like an access token for the API.
                    if client_id == args.oidc_audience {
                        anyhow::bail!(
                            "--ui-oidc-client-id is the same as --oidc-audience ({client_id:?}): the web UI's client must be another one than the API's audience, or its ID tokens would be taken for API access tokens"
                        );
                    }
                    Some(application::sessions::UiConfig {
                        client: application::oidc::UiClient {
                            client_id,
                            client_secret: client_secret.filter(|s| !s.is_empty()),
                        },
                        idle: Duration::from_secs(args.ui_session_idle_secs),
                        lifetime: Duration::from_secs(args.ui_session_max_secs),
                    })
                }
                (None, Some(_)) => {
                    anyhow::bail!("--ui-oidc-client-secret is set without --ui-oidc-client-id")
                }
                (None, None) => None,
            };
            config.app.oidc = application::oidc::OidcConfig {
                issuers: args.oidc_issuers,
                audience: args.oidc_audience,
            };
            config.app.stripe_webhook_secrets =
                application::billing::WebhookSecrets::new(args.stripe_webhook_secrets);
            config.app.stripe_mode = args.stripe_mode;
            config.jobs.checkpoint_every_events = args.checkpoint_every_events as usize;
            config.jobs.checkpoint_every = Duration::from_secs(args.checkpoint_every_secs);
            let retention = Duration::from_secs(args.idempotency_retention_secs);
            config.app.idempotency_retention = retention;
            config.jobs.idempotency_prune_every = retention.min(Duration::from_secs(60));
            config.max_body_bytes = args.max_body_bytes;
            config.app.max_artifact_bytes = args.max_artifact_bytes;
            config.app.artifact_store = args.artifact_store;
            config.app.artifact_stale_after = Duration::from_secs(args.artifact_stale_secs);
            config.app.public_url = args.public_url;
            config.rate_limit_per_second = args.rate_limit_rps;
            config.rate_limit_burst = args.rate_limit_burst;
            config.token_rate_limits = args.token_rate_limits;
            config.metrics_listen = args.metrics_listen;
            config.request_timeout = Duration::from_secs(args.request_timeout_secs);
            config.max_projector_lag = Duration::from_secs(args.max_projector_lag_secs);
            config.client_rate_limit_per_second = args.client_rate_limit_rps;
            config.client_rate_limit_burst = args.client_rate_limit_burst;
            config.connections = ConnectionLimits {
                header_read_timeout: Duration::from_secs(args.header_read_timeout_secs),
                idle_timeout: Duration::from_secs(args.idle_timeout_secs),
                max_per_ip: NonZeroU32::new(args.max_connections_per_ip)
                    .context("--max-connections-per-ip must be at least 1")?,
                max_connections: args.max_connections.and_then(NonZeroU32::new),
            };
            server::serve(config).await
        }
        Command::Migrate(db) => {
            let url = db.url()?;
            commands::db::create_database_if_missing(url).await?;
            commands::db::migrate(url).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Token(args) => token(args).await,
        Command::Keys(args) => keys(args),
        Command::Billing(args) => billing(args).await,
        Command::Releases(args) => crate::publish::run(args).await,
    }
}

async fn billing(args: BillingArgs) -> anyhow::Result<()> {
    let url = commands::db::required_url(args.database_url.as_deref())?;
    commands::db::create_database_if_missing(url).await?;
    commands::db::migrate(url).await?;
    let pool = commands::db::connect(url, 2).await?;
    match args.action {
        BillingAction::List { outcome, limit } => {
            let outcome = outcome
                .map(|o| {
                    application::billing::OUTCOMES
                        .into_iter()
                        .find(|known| *known == o)
                        .ok_or_else(|| {
                            anyhow::anyhow!("--outcome {o}: pending, processed, ignored or failed")
                        })
                })
                .transpose()?;
            let window =
                projections::queries::Window::first(projections::queries::Order::Asc, limit);
            for e in projections::queries::billing_inbox(&pool, outcome, None, &window).await? {
                out(format_args!(
                    "{}\t{}\t{}\t{}\t{}",
                    e.event_id,
                    e.event_type,
                    e.outcome,
                    e.attempts,
                    e.reason.unwrap_or_default().replace(['\t', '\n'], " ")
                ))?;
            }
        }
        BillingAction::Retry { id, failed } => {
            let now = chrono::Utc::now();
            let ids: Vec<String> =
                match (id, failed) {
                    (Some(id), false) => vec![id],
                    (None, true) => sqlx::query_scalar(
                        "SELECT event_id FROM billing_inbox WHERE outcome = 'failed' ORDER BY seq",
                    )
                    .fetch_all(&pool)
                    .await?,
                    _ => bail!("name an event id, or --failed"),
                };
            let mut retried = 0;
            for id in &ids {
                if projections::queries::retry_billing_event(&pool, id, now)
                    .await?
                    .is_none()
                {
                    bail!("no Stripe event {id:?} was received");
                }
                retried += 1;
            }
            eprintln!("{retried} event(s) due again");
        }
        BillingAction::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let (mut stored, mut duplicates) = (0, 0);
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                match application::billing::store_event(&pool, line.as_bytes(), chrono::Utc::now())
                    .await
                {
                    Ok(r) if r.duplicate => duplicates += 1,
                    Ok(_) => stored += 1,
                    Err(e) => bail!("{}:{}: {e}", file.display(), n + 1),
                }
            }
            eprintln!("{stored} event(s) stored, {duplicates} received already");
        }
    }
    Ok(())
}

fn keys(args: KeysArgs) -> anyhow::Result<()> {
    match args.action {
        KeysAction::Rotate => {
            let kid = application::signing::rotate(&args.data_dir)?;
            eprintln!("new current signing key {kid}; running servers pick it up within seconds");
            out(format_args!("{kid}"))?;
        }
        KeysAction::Retire { kid } => {
            application::signing::retire(&args.data_dir, &kid)?;
            eprintln!("key {kid} retired: tokens it signed no longer verify");
        }
        KeysAction::Jwks { all } => {
            let jwks = if all {
                application::signing::all_public_keys(&args.data_dir)?
            } else {
                application::signing::published_public_keys(&args.data_dir)?
            };
            out(format_args!("{}", serde_json::to_string_pretty(&jwks)?))?;
        }
        KeysAction::List => {
            for (kid, state) in application::signing::list(&args.data_dir)? {
                out(format_args!("{kid}\t{state}"))?;
            }
        }
    }
    Ok(())
}

/// A ledger for operator commands; they never touch license keys, so no pepper is needed.
async fn operator_ledger(database_url: &str) -> anyhow::Result<Ledger> {
    commands::db::create_database_if_missing(database_url).await?;
    commands::db::migrate(database_url).await?;
    let pool = commands::db::connect(database_url, 2).await?;
    Ok(Ledger::new(
        EventStore::new(pool),
        KeyHasher::new([0; 32]),
        std::sync::Arc::new(SystemClock),
    ))
}

fn operator_context() -> CommandContext {
    CommandContext::new(Actor::Operator, format!("cli-{}", uuid::Uuid::now_v7()))
}

async fn token(args: TokenArgs) -> anyhow::Result<()> {
    match args.action {
        Some(TokenAction::Revoke { id, db }) => {
            let ledger = operator_ledger(db.url()?).await?;
            ledger
                .revoke_api_token(&operator_context(), id)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("token {id} revoked");
            Ok(())
        }
        None => {
            let Some(role) = args.role else {
                bail!("--role is required (vendor_admin, vendor_support or vendor_auditor)");
            };
            if !role.is_vendor() {
                bail!(
                    "--role {role}: administration tokens hold a vendor role (vendor_admin, \
                     vendor_support or vendor_auditor); customers sign in with their identity provider"
                );
            }
            let database_url = commands::db::required_url(args.database_url.as_deref())?;
            let label = args
                .label
                .as_deref()
                .map(Name::parse)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--label: {e}"))?;
            let ledger = operator_ledger(database_url).await?;
            let (outcome, secret) = ledger
                .issue_api_token(&operator_context(), role, None, label, Some(args.ttl))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let id = outcome.id;
            // An operator's context carries no idempotency key, so this is never a replay.
            let secret = secret.context("the new token's secret is missing")?;
            eprintln!(
                "minted token {id} with role {} valid for {}",
                role.as_str(),
                humanize(args.ttl)
            );
            out(format_args!("{}", secret.expose()))?;
            Ok(())
        }
    }
}

fn humanize(d: chrono::Duration) -> String {
    if d.num_seconds() % 86_400 == 0 {
        format!("{}d", d.num_days())
    } else if d.num_seconds() % 3600 == 0 {
        format!("{}h", d.num_hours())
    } else {
        format!("{}s", d.num_seconds())
    }
}

/// `--public-url`: an absolute http(s) URL without query or fragment; a trailing slash is
/// dropped.
fn parse_public_url(raw: &str) -> Result<String, String> {
    let rest = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
        .ok_or_else(|| format!("expected an http:// or https:// URL, got {raw:?}"))?;
    if rest.is_empty()
        || rest.starts_with('/')
        || rest.contains(['?', '#'])
        || rest.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "expected a URL such as https://licenses.example.com, got {raw:?}"
        ));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse_with_units_and_bounds() {
        assert_eq!(parse_ttl("24h").unwrap(), chrono::Duration::hours(24));
        assert_eq!(parse_ttl("7d").unwrap(), chrono::Duration::days(7));
        assert_eq!(parse_ttl("90s").unwrap(), chrono::Duration::seconds(90));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("400d").is_err());
        assert!(parse_ttl("soon").is_err());
        assert!(parse_ttl("5y").is_err());
    }

    #[test]
    fn an_error_chain_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let error = anyhow::Error::new(io)
            .context("error communicating with database: connection refused")
            .context("cannot start");
        assert_eq!(
            application::error::one_line(&error),
            "cannot start: error communicating with database: connection refused"
        );
    }

    #[test]
    fn listen_takes_ip_and_port_and_explains_what_else_it_got() {
        assert_eq!(
            parse_listen("0.0.0.0:8081").unwrap(),
            SocketAddr::from(([0, 0, 0, 0], 8081))
        );
        assert!(parse_listen("[::1]:8081").is_ok());
        assert_eq!(
            parse_listen("8081").unwrap_err(),
            "expected IP:PORT, not a port alone: 127.0.0.1:8081 (this machine only) or \
             0.0.0.0:8081 (every interface)"
        );
        assert!(
            parse_listen("localhost:8080")
                .unwrap_err()
                .contains("an IP address, not a host name")
        );
    }

    #[test]
    fn a_request_pool_of_no_connection_is_refused_with_the_reason() {
        let zero = parse_db_max_connections("0").unwrap_err();
        assert!(zero.contains("at least 1"), "{zero}");
        assert!(parse_db_max_connections("-1").is_err());
        assert_eq!(parse_db_max_connections("1"), Ok(1));
    }

    #[test]
    fn token_rate_limits_repeat_and_the_metrics_address_is_an_ip_and_port() {
        let cli = Cli::try_parse_from([
            "ledger",
            "serve",
            "--token-rate-limit",
            "vendor_admin=10/20",
            "--token-rate-limit",
            "vendor_auditor=0",
            "--metrics-listen",
            "127.0.0.1:9464",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("serve");
        };
        assert_eq!(
            args.token_rate_limits,
            [
                RoleRate {
                    role: Role::VendorAdmin,
                    rate: crate::limits::Rate::new(10, 20)
                },
                RoleRate {
                    role: Role::VendorAuditor,
                    rate: crate::limits::Rate::new(0, 0)
                },
            ]
        );
        assert_eq!(
            args.metrics_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
        );
        let wrong = Cli::try_parse_from(["ledger", "serve", "--token-rate-limit", "root=5"]);
        assert!(wrong.unwrap_err().to_string().contains("root"));
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
