//! The `ledger-replay` command line (`docs/api.md`, "Audit and time travel").
//!
//! Exit codes, which scripts rely on:
//! - `0`: done; for `verify` and `verify-export`, the log is intact;
//! - `1`: a verification failure (the first bad event or checkpoint is named on stderr), or
//!   `state` found nothing at that instant;
//! - `2`: an operational error (database unreachable, unreadable file, bad arguments), with a
//!   one-line reason.

use std::io::{BufReader, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use domain::Timestamp;
use domain::ids::{LicenseId, OrganizationId};

use crate::progress::Progress;
use crate::state::StateError;

#[derive(Debug, Parser)]
#[command(
    name = "ledger-replay",
    version,
    about = "Rebuild read models, travel in time, verify and export the license ledger's log."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Rebuild read models from the log into fresh tables and swap them in (the server keeps
    /// serving meanwhile). Its rate is the events read from the log (once, however many
    /// projections) per second of the whole rebuild.
    Rebuild(RebuildArgs),
    /// Show a license or an organization as it stood at an instant, and the events behind it.
    State(StateArgs),
    /// Walk the whole log: hash chains, contiguous sequences, signed checkpoints, append-only
    /// guards. Exit 0 if intact, else 1 naming the first bad event.
    Verify(VerifyArgs),
    /// Export the log (or a window of it) and its checkpoints as JSON Lines.
    Export(ExportArgs),
    /// Verify an export with the public keys alone; needs no database.
    VerifyExport(VerifyExportArgs),
    /// Write a realistic synthetic history into an empty database (for benchmarks).
    Seed(SeedArgs),
}

#[derive(Debug, Args)]
struct Db {
    /// PostgreSQL URL of the ledger (required; no default), e.g.
    /// postgres://postgres@127.0.0.1:5432/license_ledger; `rebuild` and `seed` need the schema
    /// owner (the migration user).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

impl Db {
    /// The database the user named, or an error saying how to name one (exit 2).
    fn url(&self) -> anyhow::Result<&str> {
        Ok(commands::db::required_url(self.database_url.as_deref())?)
    }
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["projection", "all"])))]
struct RebuildArgs {
    #[command(flatten)]
    db: Db,
    /// A projection to rebuild (repeatable): organizations, products, policies, licenses,
    /// validation, audit.
    #[arg(long)]
    projection: Vec<String>,
    /// Rebuild every projection.
    #[arg(long)]
    all: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("subject").required(true).args(["license", "organization"])))]
struct StateArgs {
    #[command(flatten)]
    db: Db,
    /// License id.
    // Ids and instants are parsed by `domain` (`FromStr` of the typed ids, `domain::text`), whose
    // errors say what was expected: the same sentence as `ledger`'s; a license key pasted here
    // instead of the id is not shown back (`application::args`).
    #[arg(long, value_name = "ID", value_parser = application::args::Id::<LicenseId>::new())]
    license: Option<LicenseId>,
    /// Organization id.
    #[arg(long, value_name = "ID", value_parser = application::args::Id::<OrganizationId>::new())]
    organization: Option<OrganizationId>,
    /// The instant, RFC 3339 (e.g. 2026-11-22T10:00:00Z); events recorded at or before it count.
    #[arg(long, value_name = "INSTANT", value_parser = domain::text::instant)]
    at: Timestamp,
    /// JSON on stdout instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    #[command(flatten)]
    db: Db,
    #[command(flatten)]
    keys: Keys,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct Keys {
    /// The public keys (JWKS) that signed the checkpoints, from a source you trust (e.g. the
    /// output of `ledger keys jwks --all`, kept apart from the server). Without it, the keys in
    /// the server's data directory are used.
    #[arg(long)]
    jwks: Option<PathBuf>,
    /// The server's data directory, used when no --jwks is given.
    #[arg(long, env = "LEDGER_DATA_DIR", default_value = "./ledger-data")]
    data_dir: PathBuf,
}

#[derive(Debug, Args)]
struct ExportArgs {
    #[command(flatten)]
    db: Db,
    /// The file to write (JSON Lines); `-` for stdout.
    #[arg(long)]
    out: PathBuf,
    /// Only events recorded at or after this instant (RFC 3339).
    #[arg(long, value_name = "INSTANT", value_parser = domain::text::instant)]
    from: Option<Timestamp>,
    /// Only events recorded at or before this instant (RFC 3339).
    #[arg(long, value_name = "INSTANT", value_parser = domain::text::instant)]
    to: Option<Timestamp>,
}

#[derive(Debug, Args)]
struct VerifyExportArgs {
    /// The export file (`-` for stdin).
    file: PathBuf,
    /// The public keys (JWKS) that signed the checkpoints.
    #[arg(long)]
    jwks: PathBuf,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct SeedArgs {
    #[command(flatten)]
    db: Db,
    #[arg(long, default_value_t = 100_000)]
    licenses: u64,
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Events of the one long license (for the as-of benchmark).
    #[arg(long, default_value_t = 10_000)]
    long_license_events: u64,
    #[arg(long, default_value_t = 1_000)]
    organizations: u64,
}

/// Prints a result line on stdout. A closed pipe (`ledger-replay state … | head`) ends the output
/// quietly instead of panicking; any other write error is reported.
macro_rules! out {
    ($($arg:tt)*) => {
        write_out(&format!($($arg)*))?
    };
}

fn write_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

/// How a subcommand ended.
enum Outcome {
    Ok,
    /// Verification failed or nothing was found: exit 1 (the message is already printed).
    Failed,
}

/// The entry point of `ledger-replay`.
pub fn main() -> ExitCode {
    // Before the first large allocation; a refusal only costs speed.
    let huge_pages = crate::without_huge_pages();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS // --help, --version
            };
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if let Err(err) = huge_pages {
        tracing::info!(%err, "transparent huge pages stay on");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {}", application::error::one_line(&e));
            ExitCode::from(2)
        }
    }
}

async fn run(command: Command) -> anyhow::Result<Outcome> {
    match command {
        Command::Rebuild(args) => rebuild(args).await,
        Command::State(args) => state(args).await,
        Command::Verify(args) => verify(args).await,
        Command::Export(args) => export(args).await,
        Command::VerifyExport(args) => verify_export(&args),
        Command::Seed(args) => seed(args).await,
    }
}

/// A pool as the server's application role; enough for reading.
async fn reader_pool(db: &Db) -> anyhow::Result<sqlx::PgPool> {
    Ok(commands::db::connect(db.url()?, 4).await?)
}

async fn rebuild(args: RebuildArgs) -> anyhow::Result<Outcome> {
    let names = if args.all {
        Vec::new()
    } else {
        args.projection
    };
    let selected = crate::rebuild::select(&names)?;
    let total = {
        let pool = crate::rebuild::owner_pool(args.db.url()?, 1).await?;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&pool)
            .await
            .context("counting events (is the database migrated?)")?;
        pool.close().await;
        u64::try_from(n).unwrap_or(0)
    };
    let progress = Progress::new("rebuild", total);
    let report = crate::rebuild::rebuild(args.db.url()?, selected, &progress).await?;
    // The bar ends with the figures the summary shows: one rate, from one clock.
    progress.finish_with(&report.figures());
    if args.json {
        out!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for p in &report.projections {
            out!(
                "{:<14} {:>10} events applied, at position {}",
                p.projection,
                p.events_applied,
                p.position
            );
        }
        out!("{}", report.summary());
    }
    Ok(Outcome::Ok)
}

async fn state(args: StateArgs) -> anyhow::Result<Outcome> {
    let pool = reader_pool(&args.db).await?;
    let rendered = match (args.license, args.organization) {
        (Some(id), _) => crate::state::license(&pool, id.into(), args.at)
            .await
            .map(|s| {
                if args.json {
                    serde_json::to_string_pretty(&s).map_err(anyhow::Error::from)
                } else {
                    Ok(crate::state::license_table(&s))
                }
            }),
        (None, Some(id)) => crate::state::organization(&pool, id.into(), args.at)
            .await
            .map(|s| {
                if args.json {
                    serde_json::to_string_pretty(&s).map_err(anyhow::Error::from)
                } else {
                    Ok(crate::state::organization_table(&s))
                }
            }),
        (None, None) => unreachable!("clap requires --license or --organization"),
    };
    match rendered {
        Ok(text) => {
            out!("{}", text?);
            Ok(Outcome::Ok)
        }
        Err(StateError::NotFound(message)) => {
            eprintln!("{message}");
            Ok(Outcome::Failed)
        }
        Err(StateError::Other(e)) => Err(e),
    }
}

fn keys(keys: &Keys) -> anyhow::Result<Option<client::jwks::Jwks>> {
    if let Some(path) = &keys.jwks {
        return crate::export::read_jwks(path).map(Some);
    }
    if !application::signing::keys_dir(&keys.data_dir).exists() {
        // No keys to check with: a log with signed checkpoints then fails, asking for --jwks.
        return Ok(None);
    }
    let jwks = application::signing::all_public_keys(&keys.data_dir).with_context(|| {
        format!(
            "cannot read the signing keys in {}",
            keys.data_dir.display()
        )
    })?;
    let jwks = client::jwks::Jwks::from_json(&jwks.to_string())
        .map_err(|e| anyhow::anyhow!("the data directory's public keys are not usable: {e}"))?;
    eprintln!(
        "note: checking signatures with the keys in {} (pass --jwks FILE to use keys kept apart \
         from the server)",
        keys.data_dir.display()
    );
    Ok(Some(jwks))
}

fn report_summary(
    outcome: Result<crate::verify::Summary, crate::verify::Failure>,
    json: bool,
) -> anyhow::Result<Outcome> {
    match outcome {
        Ok(summary) => {
            if json {
                out!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                out!("{summary}");
            }
            Ok(Outcome::Ok)
        }
        Err(failure) => {
            eprintln!("verification FAILED: {failure}");
            Ok(Outcome::Failed)
        }
    }
}

async fn verify(args: VerifyArgs) -> anyhow::Result<Outcome> {
    // The database first: without one there is nothing to check, and the keys' note would only
    // precede the error.
    let pool = reader_pool(&args.db).await?;
    let jwks = keys(&args.keys)?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .context("counting events (is the database migrated?)")?;
    let progress = Progress::new("verify", u64::try_from(total).unwrap_or(0));
    let outcome = crate::verify::verify_database(&pool, jwks.as_ref(), &progress).await?;
    progress.finish();
    report_summary(outcome, args.json)
}

async fn export(args: ExportArgs) -> anyhow::Result<Outcome> {
    let pool = reader_pool(&args.db).await?;
    let progress = Progress::new("export", 0);
    let report = if args.out.as_os_str() == "-" {
        let stdout = std::io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        crate::export::export(&pool, args.from, args.to, &mut out, &progress).await?
    } else {
        // Written to a temporary name and renamed: a failed export never leaves a file that looks
        // whole.
        let partial = args.out.with_extension("partial");
        let file = std::fs::File::create(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        let mut out = BufWriter::new(file);
        let report = crate::export::export(&pool, args.from, args.to, &mut out, &progress).await?;
        drop(out);
        std::fs::rename(&partial, &args.out)
            .with_context(|| format!("cannot write {}", args.out.display()))?;
        report
    };
    progress.finish();
    eprintln!(
        "exported {} events and {} checkpoints{}",
        report.events,
        report.checkpoints,
        if report.complete {
            ""
        } else {
            " (a window of the log)"
        }
    );
    Ok(Outcome::Ok)
}

fn verify_export(args: &VerifyExportArgs) -> anyhow::Result<Outcome> {
    let jwks = crate::export::read_jwks(&args.jwks)?;
    let progress = Progress::new("verify-export", 0);
    let outcome = if args.file.as_os_str() == "-" {
        crate::export::verify_export(std::io::stdin().lock(), Some(&jwks), &progress)?
    } else {
        let file = std::fs::File::open(&args.file)
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        crate::export::verify_export(BufReader::new(file), Some(&jwks), &progress)?
    };
    progress.finish();
    report_summary(outcome, args.json)
}

async fn seed(args: SeedArgs) -> anyhow::Result<Outcome> {
    let url = args.db.url()?;
    commands::db::create_database_if_missing(url).await?;
    commands::db::migrate(url).await?;
    let pool = commands::db::connect(url, 4).await?;
    let options = crate::seed::SeedOptions {
        licenses: args.licenses,
        events: args.events,
        long_license_events: args.long_license_events,
        organizations: args.organizations,
    };
    let progress = Progress::new("seed", args.events);
    let last = std::sync::atomic::AtomicU64::new(0);
    let report = crate::seed::seed(&pool, &options, &|done, _total| {
        let before = last.swap(done, std::sync::atomic::Ordering::Relaxed);
        progress.inc(done.saturating_sub(before));
    })
    .await?;
    progress.finish();
    out!("{}", serde_json::to_string_pretty(&report)?);
    Ok(Outcome::Ok)
}
