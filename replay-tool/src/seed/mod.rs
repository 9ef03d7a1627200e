//! A realistic synthetic history for benchmarks and rehearsals (`ledger-replay seed`): an
//! administration token, organizations (a vendor, partners, customers in a tree, renames, moves,
//! partner delegations, a few closures), a catalogue (products with App GUIDs, versioned policies,
//! one retired) and licenses with mixed lifecycles, written into the `events` table of an empty,
//! migrated database.
//!
//! Every event is a real domain event *decided by the aggregate itself*: the generator builds the
//! command production would build (facts about organizations, products and policies included),
//! calls the aggregate's `decide`, folds what it returns, and stores it the way
//! `commands::store` does (`encode_payload`, compact JSON text of the payload and of
//! [`EventMetadata`], the events' unique claims in the same statement). So the history obeys the
//! state machines by construction, and every projector folds it. License keys are real keys
//! ([`LicenseKey`]) stored as the HMAC production stores, under a fixed seed pepper.
//!
//! Time is simulated: the history spans three fixed years, every command is decided at its own
//! instant (`effective_at` in the metadata), and events are generated in the order of those
//! instants, so the log interleaves streams like real traffic (the long license is spread over
//! the whole run). `recorded_at` is still set by the database, as for any writer.
//!
//! Everything is deterministic (a fixed splitmix64 seed; ids are UUID v7 of the simulated instant
//! with random bits from the same generator): two runs write the same events, ids and keys.
//!
//! Writing: the generator runs on a blocking thread and hands batches of up to `BATCH_ROWS` rows
//! to `LANES` insert tasks. A stream always belongs to one lane and a lane inserts its batches one
//! after the other, so each stream's events arrive in sequence order, in increasing transactions;
//! within a statement rows are inserted in the order given (`WITH ORDINALITY ... ORDER BY`), which
//! the insert trigger's hash chain relies on when one statement holds several events of a stream.
//!
//! # Layout
//! - `generator`: the plan (every organization's steps, every license's issue instant and event
//!   budget) and the run in the order of the simulated instants.
//! - `token`, `catalogue`, `organizations`, `licenses`, `lifecycle`: the commands of
//!   each aggregate, as the write side would build them.
//! - `random`: the deterministic random source and the ids drawn from it.
//! - `batches`: events encoded as `commands::store` stores them, in batches per lane, and the
//!   lanes that insert them.
//!
//! [`EventMetadata`]: domain::event::EventMetadata
//! [`LicenseKey`]: domain::keys::LicenseKey

mod batches;
mod catalogue;
mod generator;
mod licenses;
mod lifecycle;
mod organizations;
mod random;
mod token;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, anyhow, bail, ensure};
use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

use batches::{Batch, LANES, lane};
use generator::Generator;

pub use random::Rng;

/// How much to seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedOptions {
    /// Licenses issued (the long license included).
    pub licenses: u64,
    /// Events to write in all, approximately (see [`SeedReport::events`] for the exact count).
    /// Every license has at least its `LicenseIssued`, so fewer events than licenses plus the
    /// catalogue cannot be honoured.
    pub events: u64,
    /// Events of the one long license (0: none).
    pub long_license_events: u64,
    /// Organizations registered (the vendor included).
    pub organizations: u64,
}

impl Default for SeedOptions {
    fn default() -> Self {
        Self {
            licenses: 100_000,
            events: 1_000_000,
            long_license_events: 10_000,
            organizations: 1_000,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SeedReport {
    /// Events written, exactly.
    pub events: u64,
    pub licenses: u64,
    pub organizations: u64,
    /// The license with `long_license_events` events.
    pub long_license_id: Option<Uuid>,
    /// Wall-clock time of the whole seed.
    pub seconds: f64,
}

/// The generator's seed: fixed, so every run writes the same history.
const SEED: u64 = 0x5EED_1ED6_E2C0_FFEE;

/// The pepper seeded license keys are hashed under (production uses the server's secret pepper,
/// so seeded keys only validate on a server started with this one as `LEDGER_KEY_PEPPER`).
const KEY_PEPPER: [u8; 32] = *b"ledger-seed: not a secret pepper";

/// The simulated history runs between these instants.
const HISTORY_START: &str = "2023-07-01T00:00:00Z";
const HISTORY_END: &str = "2026-07-01T00:00:00Z";

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// Writes a synthetic history into the empty `events` table of a migrated database and reports
/// what it wrote. `progress(done_events, total_events)` is called after each inserted batch (and
/// once more at the end when fewer events than planned were written).
///
/// # Errors
/// When the log is not empty (seeded ids are deterministic and would collide), the options
/// cannot be honoured (licenses without organizations), or the database refuses a statement.
pub async fn seed(
    pool: &PgPool,
    options: &SeedOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> anyhow::Result<SeedReport> {
    let started = Instant::now();
    let occupied: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events)")
        .fetch_one(pool)
        .await
        .context("reading the event log")?;
    if occupied {
        bail!("the event log is not empty: seed writes a whole history into an empty database");
    }
    let mut senders = Vec::with_capacity(LANES);
    let mut receivers = Vec::with_capacity(LANES);
    for _ in 0..LANES {
        let (tx, rx) = mpsc::channel::<Batch>(2);
        senders.push(tx);
        receivers.push(rx);
    }
    let generator = Generator::plan(options, senders)?;
    let planned = generator.planned;
    let generating = tokio::task::spawn_blocking(move || generator.run());

    let done = AtomicU64::new(0);
    let [r0, r1, r2]: [mpsc::Receiver<Batch>; LANES] = receivers
        .try_into()
        .map_err(|_| anyhow!("one receiver per lane"))?;
    let inserting = async {
        tokio::try_join!(
            lane(pool, r0, &done, planned, progress),
            lane(pool, r1, &done, planned, progress),
            lane(pool, r2, &done, planned, progress),
        )
    };
    let (inserted, generated) = tokio::join!(inserting, generating);
    // An insert error is the cause when both failed: the generator only saw the lanes close.
    inserted?;
    let outcome = generated.context("the history generator panicked")??;
    let written = done.load(Ordering::Relaxed);
    ensure!(
        written == outcome.events,
        "generated {} events but inserted {written}",
        outcome.events
    );
    if written != planned {
        progress(written, written);
    }
    Ok(SeedReport {
        events: written,
        licenses: outcome.licenses,
        organizations: outcome.organizations,
        long_license_id: outcome.long_license_id,
        seconds: started.elapsed().as_secs_f64(),
    })
}
