//! Connecting to PostgreSQL and applying migrations.
//!
//! Migrations run on a connection of their own as the configured user (the schema owner). Every
//! pooled connection then switches to the role `ledger_app` (`SET ROLE`), which may insert into
//! `events` but never update or delete: even an application bug cannot rewrite history.
//!
//! A server opens two pools ([`connect_named`]): one for requests and one for its background
//! jobs, told apart in `pg_stat_activity` by their `application_name` (docs/adr: database
//! pools). A database that cannot be reached is one line, [`DbError::Unreachable`]: where
//! (`host:port/database`, never the password) and why, once.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor};

/// The SQL migrations in `migrations/`, compiled in.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// The role application connections act as.
pub const APP_ROLE: &str = "ledger_app";

/// The `application_name` of the connections of tools and of migrations.
pub const TOOL_APPLICATION_NAME: &str = "license-ledger";

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be made. Deliberately without a `source`: the reason is already in
    /// the message, and an error chain printed in full would repeat it once per layer (sqlx's
    /// error, then the I/O error inside it).
    #[error("cannot connect to PostgreSQL at {target}: {reason}")]
    Unreachable {
        /// `host:port/database`: no user, no password.
        target: String,
        /// The innermost cause, e.g. `connection refused`.
        reason: String,
    },
    #[error("the database URL is not valid: {0}")]
    BadUrl(String),
    /// A pool that could never run a query.
    #[error("{0}")]
    Config(String),
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

/// `host:port/database` of `url`, for messages: what a user needs to see which server was meant,
/// and nothing that is a secret.
pub fn describe_target(url: &str) -> String {
    match url.parse::<PgConnectOptions>() {
        Ok(options) => format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or(options.get_username())
        ),
        Err(_) => redact_url(url),
    }
}

/// The reason of a failed connection, once: the innermost cause in words, scrubbed of the URL's
/// password should a message ever quote it.
fn reason(url: &str, error: &sqlx::Error) -> String {
    use std::io::ErrorKind;
    let text = match error {
        sqlx::Error::Io(io) => match io.kind() {
            ErrorKind::ConnectionRefused => {
                "connection refused (is PostgreSQL running and listening there?)".to_owned()
            }
            ErrorKind::TimedOut => "timed out".to_owned(),
            ErrorKind::NotFound => format!("no such socket ({io})"),
            _ => io.to_string(),
        },
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::PoolTimedOut => "timed out waiting for a connection".to_owned(),
        other => {
            // The innermost error says what happened; the outer ones only repeat it.
            let mut inner: &dyn std::error::Error = other;
            while let Some(source) = inner.source() {
                inner = source;
            }
            inner.to_string()
        }
    };
    scrub(url, text)
}

/// `text` with the URL's password (as written and decoded) replaced.
fn scrub(url: &str, text: String) -> String {
    let Ok(parsed) = url::Url::parse(url) else {
        return text;
    };
    let Some(raw) = parsed.password().filter(|p| !p.is_empty()) else {
        return text;
    };
    let text = text.replace(raw, "***");
    text.replace(&percent_decoded(raw), "***")
}

/// `%XX` sequences decoded (the URL's userinfo form of a password).
fn percent_decoded(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One direct connection to `url` with `options`, closed again. Call it before building a pool:
/// a pool retries a refused or failing connection until its acquire timeout and then reports
/// only "timed out" (after 10 s), where a single attempt says at once what is wrong (refused,
/// unknown database, bad password).
///
/// # Errors
/// [`DbError::Unreachable`], with where and why, without the password.
pub async fn reachable(url: &str, options: &PgConnectOptions) -> Result<(), DbError> {
    PgConnection::connect_with(options)
        .await
        .map_err(unreachable(url))?
        .close()
        .await
        .map_err(unreachable(url))
}

impl DbError {
    /// [`DbError::Unreachable`] for a connection to `url` that failed with `error`: where, and
    /// the innermost reason, without the password.
    pub fn unreachable(url: &str, error: &sqlx::Error) -> Self {
        Self::Unreachable {
            target: describe_target(url),
            reason: reason(url, error),
        }
    }
}

fn unreachable(url: &str) -> impl Fn(sqlx::Error) -> DbError + '_ {
    move |error| DbError::unreachable(url, &error)
}

fn options(url: &str) -> Result<PgConnectOptions, DbError> {
    let options: PgConnectOptions = url
        .parse()
        .map_err(|e: sqlx::Error| DbError::BadUrl(scrub(url, e.to_string())))?;
    Ok(options.application_name(TOOL_APPLICATION_NAME))
}

/// Creates the database named in `url` when it does not exist yet (needs the CREATEDB privilege;
/// without it, create the database yourself).
///
/// # Errors
/// When the server is unreachable or the database cannot be created.
pub async fn create_database_if_missing(url: &str) -> Result<(), DbError> {
    use sqlx::migrate::MigrateDatabase;
    options(url)?;
    if !sqlx::Postgres::database_exists(url)
        .await
        .map_err(unreachable(url))?
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
    let mut conn = options(url)?.connect().await.map_err(unreachable(url))?;
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

/// A pool whose connections act as [`APP_ROLE`], named [`TOOL_APPLICATION_NAME`]. See
/// [`connect_named`].
///
/// # Errors
/// When the database is unreachable or the role cannot be assumed (run `ledger migrate`).
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, DbError> {
    connect_named(url, max_connections, TOOL_APPLICATION_NAME).await
}

/// A pool of at most `max_connections` (at least 1) whose connections act as [`APP_ROLE`] and
/// show as `application_name` in `pg_stat_activity`. A session that stays idle inside a
/// transaction is ended after 30 s, because an open writing transaction holds back every
/// projector.
///
/// # Errors
/// When the database is unreachable or the role cannot be assumed (run `ledger migrate`).
pub async fn connect_named(
    url: &str,
    max_connections: u32,
    application_name: &str,
) -> Result<PgPool, DbError> {
    if max_connections == 0 {
        return Err(DbError::Config(format!(
            "a pool of 0 connections ({application_name}) could never run a query: at least 1 \
             is needed"
        )));
    }
    let options = options(url)?.application_name(application_name);
    reachable(url, &options).await?;
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
        .connect_with(options)
        .await
        .map_err(unreachable(url))?;
    Ok(pool)
}

/// The most connections the database server accepts in all (`max_connections`): a server whose
/// pools need more cannot work under load, whatever else connects.
///
/// # Errors
/// Database errors.
pub async fn server_max_connections(pool: &PgPool) -> Result<u32, DbError> {
    let max: i32 = sqlx::query_scalar("SELECT current_setting('max_connections')::int")
        .fetch_one(pool)
        .await?;
    Ok(u32::try_from(max).unwrap_or(0))
}

/// Whether the database answers (for `/readyz`).
pub async fn ping(pool: &PgPool) -> bool {
    match pool.acquire().await {
        Ok(mut conn) => conn.ping().await.is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_names_host_port_and_database_and_no_credentials() {
        let url = "postgres://ledger:s3cret@db.example:5433/licenses";
        assert_eq!(describe_target(url), "db.example:5433/licenses");
        assert_eq!(
            describe_target("postgres://ledger@127.0.0.1/ledger"),
            "127.0.0.1:5432/ledger"
        );
    }

    #[test]
    fn a_reason_never_quotes_the_password_as_written_or_decoded() {
        let url = "postgres://ledger:p%40ss%2Fword@127.0.0.1:5432/ledger";
        assert_eq!(
            scrub(url, "auth p@ss/word and p%40ss%2Fword".to_owned()),
            "auth *** and ***"
        );
        assert_eq!(percent_decoded("a%2"), "a%2");
    }

    #[test]
    fn a_refused_connection_is_said_once_in_words() {
        let refused = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let error = unreachable("postgres://u:pw@127.0.0.1:5433/ledger")(refused);
        assert_eq!(
            error.to_string(),
            "cannot connect to PostgreSQL at 127.0.0.1:5433/ledger: connection refused (is \
             PostgreSQL running and listening there?)"
        );
        assert!(
            std::error::Error::source(&error).is_none(),
            "no cause to repeat"
        );
    }
}
