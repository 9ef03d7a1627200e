//! `bench`: license-ledger measured against named baselines, side by side in one run, because
//! absolute figures on shared machines mean little. Each subcommand creates (and afterwards drops)
//! a database of its own on the server of `DATABASE_URL`. Results are Markdown tables for
//! BENCHMARKS.md; progress goes to stderr.
//!
//! - `bench commands`: the command path vs raw INSERT vs cqrs-es + postgres-es (issue #2).
//! - `bench activations`: activations vs raw INSERT (issue #3).
//! - `bench tokens`: offline-token minting vs raw p256 signing (issue #3).
//! - `bench validation`: `POST /v1/validate` vs a minimal HashMap server, with wrk (issue #3);
//!   the server is the `validation-baseline` binary of `bench-baseline`, found next to `bench`.
//! - `bench lists`: a filtered page of the license list at 1M licenses (issue #14).
//! - `bench replay`: rebuild, as-of reads and verify vs plain reads of the log (issue #4); on a
//!   database of its own name (`bench_replay`), recreated at the start.
//! - `bench reach`: `domain::reach` per request over a 10,000-organization tree vs a lookup in
//!   a materialized table (issue #15; no database).
//! - `bench auth`: `GET /v1/me` and `GET /v1/organizations/{id}` of `ledger serve` with an OIDC
//!   access token of the tests' identity provider vs an administration token, with wrk (issue
//!   #15).
//! - `bench billing`: Stripe webhook intake through `ledger serve` vs a raw single-row INSERT
//!   at 16 senders, then the billing consumer's lag at 200 events/s (issue #16).
//! - `bench artifacts`: downloading and uploading a large artifact through `ledger serve` vs
//!   plain file transfers over the same crates, and the server's memory under concurrent
//!   downloads (issue #17).

// Every binary of the workspace allocates with mimalloc: the ledger folds and serves JSON through
// many short-lived allocations on several threads, where glibc's allocator spent a third of a
// rebuild's client time in malloc/free (perf, 2026-11-23; BENCHMARKS.md, issue #4).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod activations;
mod artifacts;
mod auth_http;
mod billing;
mod command_path;
mod harness;
mod http1;
mod idempotency_http;
mod idp;
mod lists;
mod reach;
mod replay;
mod tokens;
mod validation;

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "license-ledger benchmarks against named baselines"
)]
struct Cli {
    /// Server to benchmark on; a fresh database is created on it and dropped afterwards (its own
    /// database only says where to connect to create it). Default
    /// postgres://postgres@127.0.0.1:5432/postgres. `seed` writes into this database itself, so
    /// it needs one named explicitly.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    which: Which,
}

#[derive(Debug, Subcommand)]
enum Which {
    /// Command path vs raw INSERT vs cqrs-es + postgres-es.
    Commands {
        #[arg(long, default_value_t = 2000)]
        slice_ms: u64,
        #[arg(long, default_value_t = 10)]
        cycles: usize,
        #[arg(long, value_delimiter = ',', default_value = "1,16")]
        writers: Vec<usize>,
        /// Compare the command path with and without an Idempotency-Key instead (issue #14).
        #[arg(long)]
        idempotency: bool,
        /// With `--idempotency`: through `ledger serve` and `wrk` (`POST /v1/organizations`),
        /// `--writers` connections, slices of `--slice-ms` rounded to seconds.
        #[arg(long, requires = "idempotency")]
        http: bool,
    },
    /// Activations vs raw INSERT.
    Activations {
        #[arg(long, default_value_t = 2000)]
        slice_ms: u64,
        #[arg(long, default_value_t = 10)]
        cycles: usize,
        #[arg(long, value_delimiter = ',', default_value = "1,16")]
        clients: Vec<usize>,
    },
    /// Offline-token minting vs raw p256 signing (no database).
    Tokens {
        #[arg(long, default_value_t = 1000)]
        slice_ms: u64,
        #[arg(long, default_value_t = 10)]
        cycles: usize,
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        threads: Vec<usize>,
    },
    /// POST /v1/validate of `ledger serve` vs a minimal HashMap server, with wrk -t2 -c64
    /// (both binaries next to this one: `cargo build --release -p api -p bench -p bench-baseline`).
    Validation {
        /// License counts to measure, each on a fresh database.
        #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
        licenses: Vec<u64>,
        /// Seconds per wrk run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Alternating run pairs.
        #[arg(long, default_value_t = 3)]
        cycles: usize,
    },
    /// A filtered page of the license list, per filter and order, at N licenses.
    Lists {
        #[arg(long, default_value_t = 1_000_000)]
        licenses: usize,
        /// Requests per filter and order (half of them warm up).
        #[arg(long, default_value_t = 400)]
        requests: usize,
    },
    /// Rebuild, as-of reads and verify on one seeded log, each next to a plain read.
    Replay(replay::Options),
    /// `Reach::compute` + `at` per request over a generated 10,000-organization tree vs a
    /// HashMap lookup of a materialized (principal, organization) table (no database).
    Reach(reach::Options),
    /// `GET /v1/me` and `GET /v1/organizations/{id}` with an OIDC access token vs an
    /// administration token, through `ledger serve` and wrk, with the tests' identity provider
    /// (`tests/idp`, Node.js); then the authentication's steps in process.
    Auth(auth_http::Options),
    /// `POST /v1/webhooks/stripe` of `ledger serve` vs a raw INSERT into a copy of the inbox, at
    /// N senders; then the consumer's lag (received → processed) at a steady event rate.
    Billing(billing::Options),
    /// `GET /v1/downloads/{token}` and `PUT /v1/releases/{id}/artifacts/{name}` of `ledger serve`
    /// vs plain file transfers by an axum server in this process; then the server's RSS under
    /// concurrent downloads.
    Artifacts(artifacts::Options),
    /// (internal) Seeds DATABASE_URL itself (migrated, not dropped) with licenses and writes the
    /// wrk script, for profiling a server by hand.
    #[command(hide = true)]
    Seed {
        #[arg(long)]
        licenses: u64,
        #[arg(long)]
        script: std::path::PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))
}

/// Creates a fresh database, runs `f` on it, drops it.
async fn with_database<F, Fut>(server_url: &str, f: F) -> anyhow::Result<()>
where
    F: FnOnce(sqlx::PgPool, String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let name = format!("ledger_bench_{}", chrono::Utc::now().timestamp_millis());
    let (base, _) = server_url
        .rsplit_once('/')
        .context("DATABASE_URL has no database")?;
    let url = format!("{base}/{name}");
    let mut admin = PgConnection::connect(server_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    let result = async {
        commands::db::migrate(&url).await?;
        let pool = PgPoolOptions::new()
            .max_connections(24)
            .connect(&url)
            .await?;
        println!(
            "# PostgreSQL {}",
            sqlx::query_scalar::<_, String>("SHOW server_version")
                .fetch_one(&pool)
                .await?
        );
        let r = f(pool.clone(), url.clone()).await;
        pool.close().await;
        r
    }
    .await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    result
}

/// The server the subcommands that create their own database use when none is given.
const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

async fn run(cli: Cli) -> anyhow::Result<()> {
    let url = match cli.database_url.as_deref() {
        Some(given) => commands::db::required_url(Some(given))?.to_owned(),
        None => DEFAULT_SERVER_URL.to_owned(),
    };
    match cli.which {
        Which::Commands {
            slice_ms,
            cycles,
            writers,
            idempotency,
            http,
        } => {
            with_database(&url, |pool, db_url| async move {
                let slice = Duration::from_millis(slice_ms);
                if http {
                    let seconds = slice.as_secs().max(1);
                    idempotency_http::run(&db_url, seconds, cycles, &writers).await
                } else if idempotency {
                    command_path::run_idempotency(pool, slice, cycles, &writers).await
                } else {
                    command_path::run(pool, slice, cycles, &writers).await
                }
            })
            .await
        }
        Which::Activations {
            slice_ms,
            cycles,
            clients,
        } => {
            with_database(&url, |pool, _| {
                activations::run(pool, Duration::from_millis(slice_ms), cycles, &clients)
            })
            .await
        }
        Which::Tokens {
            slice_ms,
            cycles,
            threads,
        } => tokens::run(Duration::from_millis(slice_ms), cycles, &threads),
        Which::Validation {
            licenses,
            seconds,
            cycles,
        } => {
            validation::header();
            for n in licenses {
                with_database(&url, |pool, db_url| async move {
                    validation::run(pool, &db_url, n, seconds, cycles).await
                })
                .await?;
            }
            Ok(())
        }
        Which::Lists { licenses, requests } => {
            with_database(&url, |pool, db_url| async move {
                lists::run(pool, &db_url, licenses, requests).await
            })
            .await
        }
        Which::Replay(options) => replay::run(&url, &options).await,
        Which::Reach(options) => reach::run(&options),
        Which::Auth(options) => {
            with_database(&url, |pool, db_url| async move {
                auth_http::run(pool, &db_url, &options).await
            })
            .await
        }
        Which::Billing(options) => {
            with_database(&url, |pool, db_url| async move {
                billing::run(pool, &db_url, &options).await
            })
            .await
        }
        Which::Artifacts(options) => {
            with_database(&url, |_, db_url| async move {
                artifacts::run(&db_url, &options).await
            })
            .await
        }
        Which::Seed { licenses, script } => {
            // Writes into the named database itself: never into the default server's `postgres`.
            let url = commands::db::required_url(cli.database_url.as_deref())?;
            commands::db::create_database_if_missing(url).await?;
            commands::db::migrate(url).await?;
            let pool = PgPoolOptions::new().max_connections(8).connect(url).await?;
            validation::seed_with_script(&pool, licenses, &script).await
        }
    }
}
