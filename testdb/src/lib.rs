//! Test-only: a fresh, uniquely named PostgreSQL database per test, dropped when the test ends.
//!
//! Every test suite of the workspace gets its databases here, so that tests
//! - see only what they created: a `ledger serve` on the same PostgreSQL, or another developer's
//!   tests, lives in other databases, and a test that counts sessions or locks counts those of
//!   `current_database()` only;
//! - leave nothing behind: [`TestDb`] drops its database (`WITH (FORCE)`) when it goes out of
//!   scope, also while a failed assertion unwinds. A process that dies without unwinding (killed,
//!   aborted) cannot; the first test database a process creates sweeps those leftovers
//!   ([`sweep_leftovers`]): databases this crate named whose creating process is gone, or that
//!   are older than a day. Nobody else's database is ever dropped.
//!
//! The server the databases are created on is `DATABASE_URL` when it is set, else
//! [`DEFAULT_SERVER_URL`]; only its user, host, port and options count (its database is where
//! the `CREATE DATABASE` statements run). Nothing comes from Cargo's configuration.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

/// The server tests use when `DATABASE_URL` is not set: PostgreSQL on loopback as the
/// `postgres` user (trust authentication on development machines).
pub const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The start of every database name this crate makes, and of no other (CI checks that none is
/// left after a run).
pub const PREFIX: &str = "ledger_test_";

/// A test database older than this is a leftover whatever made it: no test runs for a day.
const STALE_AFTER_SECS: u64 = 24 * 3600;

/// How long dropping a database may take before the guard gives up (and leaves it to the next
/// run's sweep) rather than hang the test process.
const DROP_TIMEOUT: Duration = Duration::from_secs(60);

/// The schema production uses: the same migration files `commands::db` embeds.
static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Whether this process has looked for leftovers of crashed runs yet.
static SWEPT: AtomicBool = AtomicBool::new(false);

/// The server's URL: `DATABASE_URL` when set and not empty, else [`DEFAULT_SERVER_URL`].
pub fn server_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => DEFAULT_SERVER_URL.to_owned(),
    }
}

/// `server` with its database replaced by `name`; user, host, port and options stay.
///
/// # Panics
/// When `server` is not a URL.
pub fn url_of(server: &str, name: &str) -> String {
    let mut url = url::Url::parse(server).unwrap_or_else(|e| {
        panic!(
            "DATABASE_URL={} is not a PostgreSQL URL ({e}); expected e.g. {DEFAULT_SERVER_URL}",
            redacted(server)
        )
    });
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// A database of its own for one test. Dropped with its sessions when this value is dropped
/// (end of scope, or unwinding from a panic), or earlier with [`TestDb::drop_db`].
#[derive(Debug)]
pub struct TestDb {
    /// The database's name (starts with [`PREFIX`]).
    pub name: String,
    /// A URL of the database, as the server's user.
    pub url: String,
    server: String,
    /// Whether dropping this value still has to drop the database.
    armed: bool,
}

impl TestDb {
    /// The guard of database `name`, just created on `server`: dropped when the guard drops.
    fn created(server: String, name: String) -> Self {
        Self {
            url: url_of(&server, &name),
            name,
            server,
            armed: true,
        }
    }

    /// Creates an empty database.
    ///
    /// # Panics
    /// With instructions, when the server is unreachable or refuses to create a database: tests
    /// fail, they never skip.
    pub async fn create() -> Self {
        let server = server_url();
        let mut admin = admin(&server).await;
        if !SWEPT.swap(true, Ordering::SeqCst) {
            sweep(&mut admin).await;
        }
        let name = new_name();
        sqlx::query(&format!("CREATE DATABASE {}", quoted(&name)))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot create the test database {name} on {}: {e} (the user needs the \
                     CREATEDB privilege)",
                    redacted(&server)
                )
            });
        let _ = admin.close().await;
        Self::created(server, name)
    }

    /// Creates a database with every migration applied, as the server's user (the schema
    /// owner), exactly as `ledger migrate` applies them.
    ///
    /// # Panics
    /// As [`TestDb::create`], and when a migration fails (the database is dropped then too).
    pub async fn migrated() -> Self {
        let db = Self::create().await;
        let mut conn = db.connect().await;
        MIGRATOR
            .run(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("migrating the test database {}: {e}", db.name));
        let _ = conn.close().await;
        db
    }

    /// A new database made from `template` (`CREATE DATABASE … TEMPLATE`): a copy to change
    /// without touching the original. Sessions still connected to the template (a stopped
    /// server's idle pool, say) are ended first, because PostgreSQL copies only an unused
    /// database; they are sessions of the template alone, which this test owns.
    ///
    /// # Panics
    /// As [`TestDb::create`].
    pub async fn copy_of(template: &TestDb) -> Self {
        let server = server_url();
        let mut admin = admin(&server).await;
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&template.name)
        .execute(&mut admin)
        .await
        .expect("end the template's sessions");
        let name = new_name();
        sqlx::query(&format!(
            "CREATE DATABASE {} TEMPLATE {}",
            quoted(&name),
            quoted(&template.name)
        ))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("copying {} into {name}: {e}", template.name));
        let _ = admin.close().await;
        Self::created(server, name)
    }

    /// A pool on this database as the server's user (a superuser on development machines), for
    /// setting up and inspecting. At most 5 connections, as `#[sqlx::test]`, which these tests
    /// used before, gave them.
    ///
    /// # Panics
    /// When the database is unreachable.
    pub async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(5)
            .connect_with(self.options())
            .await
            .unwrap_or_else(|e| panic!("connecting to the test database {}: {e}", self.name))
    }

    /// One connection to this database as the server's user.
    ///
    /// # Panics
    /// When the database is unreachable.
    pub async fn connect(&self) -> PgConnection {
        self.options()
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connecting to the test database {}: {e}", self.name))
    }

    fn options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&self.url)
            .expect("a URL made from DATABASE_URL")
            .application_name("ledger-testdb")
    }

    /// Drops the database now, ending its sessions. Dropping the value does the same; this is
    /// for tests that want it gone before they end (or to await it instead of blocking).
    pub async fn drop_db(mut self) {
        match drop_database(&self.server, &self.name).await {
            Ok(()) => self.armed = false,
            // Left armed: `Drop` tries once more.
            Err(e) => eprintln!("testdb: dropping {}: {e}", self.name),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (server, name) = (self.server.clone(), self.name.clone());
        // `Drop` cannot await, and blocking on a runtime from inside one panics (the test's
        // runtime may be running this very thread, or already be gone while unwinding): a runtime
        // of its own, on a thread of its own.
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(drop_database(&server, &name))
                .map_err(|e| e.to_string())
        })
        .join();
        // Never panic here: while unwinding, a second panic aborts the whole test binary.
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!(
                "testdb: could not drop {}: {e}; the next test run drops it",
                self.name
            ),
            Err(_) => eprintln!(
                "testdb: dropping {} panicked; the next test run drops it",
                self.name
            ),
        }
    }
}

/// A connection to the server for creating and dropping databases.
async fn admin(server: &str) -> PgConnection {
    let options = PgConnectOptions::from_str(server).unwrap_or_else(|e| {
        panic!(
            "DATABASE_URL={} is not a PostgreSQL URL ({e}); expected e.g. {DEFAULT_SERVER_URL}",
            redacted(server)
        )
    });
    options
        .application_name("ledger-testdb")
        .connect()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {} (DATABASE_URL, default {DEFAULT_SERVER_URL}): \
                 {e}\nStart it (on these machines: `pg_ctlcluster --skip-systemctl-redirect \
                 $(ls /etc/postgresql) main start`) or point DATABASE_URL at a server where this \
                 user may create databases.",
                redacted(server)
            )
        })
}

async fn drop_database(server: &str, name: &str) -> Result<(), String> {
    let work = async {
        let mut admin = PgConnectOptions::from_str(server)?
            .application_name("ledger-testdb")
            .connect()
            .await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quoted(name)
        ))
        .execute(&mut admin)
        .await?;
        admin.close().await
    };
    match tokio::time::timeout(DROP_TIMEOUT, work).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {DROP_TIMEOUT:?}")),
    }
}

/// Drops the leftovers of test runs that died without unwinding: databases this crate named on
/// this machine whose creating process is gone, and any it named more than a day ago. The first
/// [`TestDb::create`] of each process does this by itself.
///
/// # Panics
/// When the server is unreachable.
pub async fn sweep_leftovers() {
    let mut admin = admin(&server_url()).await;
    sweep(&mut admin).await;
    let _ = admin.close().await;
}

/// A name as this crate makes them, as if made by process `pid` of this machine now: for testing
/// the sweep.
#[doc(hidden)]
pub fn name_made_by(pid: u32) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{PREFIX}{}_{pid}_{}_{}",
        Maker::this_process().tag,
        unix_secs(),
        &random[..6]
    )
}

/// [`sweep_leftovers`] on an open connection. Failures only cost disk space, so they are
/// reported, not fatal.
async fn sweep(admin: &mut PgConnection) {
    let names: Vec<String> = match sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE starts_with(datname::text, $1)",
    )
    .bind(PREFIX)
    .fetch_all(&mut *admin)
    .await
    {
        Ok(names) => names,
        Err(e) => {
            eprintln!("testdb: cannot list leftover test databases: {e}");
            return;
        }
    };
    let me = Maker::this_process();
    let now = unix_secs();
    for name in names
        .iter()
        .filter(|n| is_leftover(n, &me, now, process_alive))
    {
        let dropped = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quoted(name)
        ))
        .execute(&mut *admin)
        .await;
        match dropped {
            Ok(_) => eprintln!("testdb: dropped {name}, left by a test run that crashed"),
            // Most likely another process sweeping the same leftover at the same moment.
            Err(e) => eprintln!("testdb: could not drop the leftover {name}: {e}"),
        }
    }
}

/// Who makes a database: a tag of the machine and PID namespace (where a process id means
/// something) and the process id.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Maker {
    /// Eight hex digits of a hash of the host name and the PID namespace.
    tag: String,
    pid: u32,
}

impl Maker {
    /// This process.
    fn this_process() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_default();
        let namespace = std::fs::read_link("/proc/self/ns/pid")
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        Self {
            tag: format!(
                "{:08x}",
                fnv1a(format!("{}\n{namespace}", host.trim()).as_bytes())
            ),
            pid: std::process::id(),
        }
    }
}

/// FNV-1a, 32 bits: stable across processes and builds (the tag must match between the run that
/// made a database and the run that sweeps it), which `std`'s hasher does not promise.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, b| {
        (hash ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// `ledger_test_<tag>_<pid>_<unix seconds>_<random>`: 46 characters, within PostgreSQL's 63, and
/// a plain lower-case identifier.
fn new_name() -> String {
    name_made_by(std::process::id())
}

/// The maker and creation time in a name this crate made; `None` for any other name.
fn parse_name(name: &str) -> Option<(Maker, u64)> {
    let mut parts = name.strip_prefix(PREFIX)?.split('_');
    let tag = parts.next()?;
    let pid = parts.next()?.parse().ok()?;
    let secs = parts.next()?.parse().ok()?;
    let random = parts.next()?;
    let well_formed = tag.len() == 8
        && tag.bytes().all(|b| b.is_ascii_hexdigit())
        && !random.is_empty()
        && parts.next().is_none();
    well_formed.then(|| {
        (
            Maker {
                tag: tag.to_owned(),
                pid,
            },
            secs,
        )
    })
}

/// Whether `name` is a leftover of a test run that is over: a name this crate made, either older
/// than a day, or made on this machine (same tag) by another process that no longer exists
/// (`alive` answers `None` where it cannot tell). Another live process's databases, and every
/// database this crate did not name, are never leftovers.
fn is_leftover(name: &str, me: &Maker, now_secs: u64, alive: fn(u32) -> Option<bool>) -> bool {
    let Some((maker, made_at)) = parse_name(name) else {
        return false;
    };
    if now_secs.saturating_sub(made_at) > STALE_AFTER_SECS {
        return true;
    }
    maker.tag == me.tag && maker.pid != me.pid && alive(maker.pid) == Some(false)
}

/// Whether process `pid` exists, where `/proc` can tell.
fn process_alive(pid: u32) -> Option<bool> {
    std::path::Path::new("/proc/self")
        .exists()
        .then(|| std::path::Path::new(&format!("/proc/{pid}")).exists())
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A quoted identifier (the names here are plain already; quoting keeps it so).
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The URL without its password, for messages.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Maker {
        Maker {
            tag: "0badcafe".into(),
            pid: 100,
        }
    }

    const NOW: u64 = 2_000_000_000;

    fn dead(_: u32) -> Option<bool> {
        Some(false)
    }
    fn alive(_: u32) -> Option<bool> {
        Some(true)
    }
    fn unknown(_: u32) -> Option<bool> {
        None
    }

    #[test]
    fn names_are_plain_identifiers_that_parse_back_to_their_maker() {
        let name = new_name();
        assert!(name.len() <= 63, "{name}");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{name}"
        );
        let (maker, secs) = parse_name(&name).expect("our own name parses");
        assert_eq!(maker, Maker::this_process());
        assert!(unix_secs().abs_diff(secs) < 3600);
        assert_ne!(new_name(), name, "two databases of one process differ");
    }

    #[test]
    fn only_this_crates_names_of_gone_processes_or_from_yesterday_are_leftovers() {
        let ours = |pid: u32, secs: u64| format!("ledger_test_0badcafe_{pid}_{secs}_abc123");
        // A process of this machine that is gone: its databases are leftovers.
        assert!(is_leftover(&ours(7, NOW - 10), &me(), NOW, dead));
        // Still running (another test binary, another developer's run), or cannot tell: kept.
        assert!(!is_leftover(&ours(7, NOW - 10), &me(), NOW, alive));
        assert!(!is_leftover(&ours(7, NOW - 10), &me(), NOW, unknown));
        // This process's own are never swept by itself.
        assert!(!is_leftover(&ours(100, NOW - 10), &me(), NOW, dead));
        // Another machine's (or PID namespace's): its process ids mean nothing here; kept for a
        // day, then swept.
        let foreign = format!("ledger_test_12345678_7_{}_abc123", NOW - 10);
        assert!(!is_leftover(&foreign, &me(), NOW, dead));
        let foreign_old = format!("ledger_test_12345678_7_{}_abc123", NOW - 25 * 3600);
        assert!(is_leftover(&foreign_old, &me(), NOW, alive));
        // Nobody else's database, whatever it looks like.
        for other in [
            "postgres",
            "license_ledger",
            "ledger_ci_serve",
            "_sqlx_test_12",
            "ledger_e2e_1700000000000_abcdef12",
            "ledger_test",
            "ledger_test_0badcafe_7",
            "ledger_test_0badcafe_7_1_abc_extra",
            "ledger_test_not_hex_7_1_abc",
            "ledger_testing_0badcafe_7_1_abc",
        ] {
            assert!(!is_leftover(other, &me(), NOW, dead), "{other}");
        }
    }

    #[test]
    fn the_url_keeps_user_host_port_and_options_and_names_the_database() {
        assert_eq!(
            url_of(DEFAULT_SERVER_URL, "ledger_test_x"),
            "postgres://postgres@127.0.0.1:5432/ledger_test_x"
        );
        assert_eq!(
            url_of("postgres://u:p@db:6543/ledger?sslmode=disable", "t"),
            "postgres://u:p@db:6543/t?sslmode=disable"
        );
        assert_eq!(url_of("postgres://u@db", "t"), "postgres://u@db/t");
    }
}
