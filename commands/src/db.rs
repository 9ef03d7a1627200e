//! Connecting to PostgreSQL and applying migrations.
//!
//! Migrations run on a connection of their own as the configured user (the schema owner). Every
//! pooled connection then switches to the role `ledger_app` (`SET ROLE`), which may insert into
//! `events` but never update or delete: even an application bug cannot rewrite history.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor};

/// The SQL migrations in `migrations/`, compiled in.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// The role application connections act as.
pub const APP_ROLE: &str = "ledger_app";

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot reach PostgreSQL at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("applying migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "the database lacks migration(s) {missing:?} that this build needs: run `ledger migrate` \
         (or start the server, which migrates) with the same binary version first"
    )]
    NotMigrated { missing: Vec<i64> },
    #[error("{0}")]
    OtherSchema(String),
    #[error("{0}")]
    Other(#[from] sqlx::Error),
    #[error("DATABASE_URL is not set; pass --database-url or set DATABASE_URL, e.g. {EXAMPLE_URL}")]
    NoUrl,
    #[error(
        "the database URL is empty; pass --database-url or set DATABASE_URL, e.g. {EXAMPLE_URL}"
    )]
    EmptyUrl,
}

/// The database URL the binaries' messages give as an example: the README's.
pub const EXAMPLE_URL: &str = "postgres://postgres@127.0.0.1:5432/license_ledger";

/// The database the user named (`--database-url` or `DATABASE_URL`), for the binaries that read
/// or write a ledger. There is deliberately no default: a default database (the server's
/// `postgres`, say) would let `ledger token` mint into a database no server reads, and
/// `ledger-replay` report on the wrong ledger. Without one, the error says what to pass.
///
/// # Errors
/// [`DbError::NoUrl`] when none was given, [`DbError::EmptyUrl`] when it is blank.
pub fn required_url(given: Option<&str>) -> Result<&str, DbError> {
    match given {
        None => Err(DbError::NoUrl),
        Some(url) if url.trim().is_empty() => Err(DbError::EmptyUrl),
        Some(url) => Ok(url),
    }
}

/// The URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparsable database URL>".to_owned(),
    }
}

fn options(url: &str) -> Result<PgConnectOptions, DbError> {
    let options: PgConnectOptions = url.parse().map_err(|source| DbError::Unreachable {
        url: redact_url(url),
        source,
    })?;
    Ok(options.application_name("license-ledger"))
}

/// Creates the database named in `url` when it does not exist yet (needs the CREATEDB privilege;
/// without it, create the database yourself).
///
/// # Errors
/// When the server is unreachable or the database cannot be created.
pub async fn create_database_if_missing(url: &str) -> Result<(), DbError> {
    use sqlx::migrate::MigrateDatabase;
    let unreachable = |source| DbError::Unreachable {
        url: redact_url(url),
        source,
    };
    if !sqlx::Postgres::database_exists(url)
        .await
        .map_err(unreachable)?
    {
        sqlx::Postgres::create_database(url).await?;
        tracing::info!(url = %redact_url(url), "created database");
    }
    Ok(())
}

/// Applies all pending migrations as the configured user.
///
/// # Errors
/// When the database is unreachable or a migration fails.
pub async fn migrate(url: &str) -> Result<(), DbError> {
    let mut conn = options(url)?
        .connect()
        .await
        .map_err(|source| DbError::Unreachable {
            url: redact_url(url),
            source,
        })?;
    MIGRATOR.run(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

/// Fails unless the database's schema is exactly this build's: every migration of this build
/// applied ([`DbError::NotMigrated`]), none this build does not know and none changed since it
/// was applied ([`DbError::OtherSchema`]). A tool that writes tables directly
/// (`ledger-replay rebuild`, whose copies are made `LIKE` the live tables) must not run against
/// an older schema, where it would fail midway, nor against a newer one, where it would fill new
/// columns with their defaults and swap wrong read models in. The same checks as sqlx's
/// `Migrator::run`, without applying anything.
///
/// # Errors
/// Database errors, [`DbError::NotMigrated`] and [`DbError::OtherSchema`].
pub async fn ensure_migrated(pool: &PgPool) -> Result<(), DbError> {
    use sqlx::migrate::{Migrate, MigrateError};
    let mut conn = pool.acquire().await?;
    // sqlx's own readers of its migration table (the checks `Migrator::run` makes), so that this
    // follows the table wherever sqlx keeps it. No table at all: nothing applied.
    let no_table = |err: &MigrateError| {
        matches!(err, MigrateError::Execute(sqlx::Error::Database(db))
            if db.code().as_deref() == Some("42P01"))
    };
    let (applied, failed) = match conn.list_applied_migrations().await {
        Ok(applied) => (applied, conn.dirty_version().await?),
        Err(err) if no_table(&err) => (Vec::new(), None),
        Err(err) => return Err(err.into()),
    };
    let ours: Vec<_> = MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .collect();
    let unknown: Vec<i64> = applied
        .iter()
        .map(|a| a.version)
        .filter(|v| !ours.iter().any(|m| m.version == *v))
        .collect();
    if !unknown.is_empty() {
        return Err(DbError::OtherSchema(format!(
            "the database has migration(s) {unknown:?} that this build does not know: it was \
             migrated by a newer version of the ledger; use that version's tools"
        )));
    }
    let changed: Vec<i64> = ours
        .iter()
        .filter(|m| {
            applied
                .iter()
                .any(|a| a.version == m.version && a.checksum != m.checksum)
        })
        .map(|m| m.version)
        .collect();
    if !changed.is_empty() {
        return Err(DbError::OtherSchema(format!(
            "migration(s) {changed:?} applied to the database differ from this build's: the \
             schema is not the one this build was made for"
        )));
    }
    // A migration that failed half-way counts as not applied: `ledger migrate` says why.
    let missing: Vec<i64> = ours
        .iter()
        .map(|m| m.version)
        .filter(|v| Some(*v) == failed || !applied.iter().any(|a| a.version == *v))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(DbError::NotMigrated { missing })
    }
}

/// A pool whose connections act as [`APP_ROLE`]. A session that stays idle inside a transaction
/// is ended after 30 s, because an open writing transaction holds back every projector.
///
/// # Errors
/// When the database is unreachable or the role cannot be assumed (run `ledger migrate`).
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, DbError> {
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute(
                    "SET idle_in_transaction_session_timeout = '30s'; SET ROLE ledger_app",
                )
                .await?;
                Ok(())
            })
        })
        .connect_with(options(url)?)
        .await
        .map_err(|source| DbError::Unreachable {
            url: redact_url(url),
            source,
        })?;
    Ok(pool)
}

/// Whether the database answers (for `/readyz`).
pub async fn ping(pool: &PgPool) -> bool {
    match pool.acquire().await {
        Ok(mut conn) => conn.ping().await.is_ok(),
        Err(_) => false,
    }
}
