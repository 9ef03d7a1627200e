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

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, anyhow, bail, ensure};
use chrono::{DateTime, Duration, Months};
use commands::keys::KeyHasher;
use cqrs_es::Aggregate as _;
use domain::Timestamp;
use domain::api_token::{ApiToken, ApiTokenAction, ApiTokenCommand};
use domain::event::{Actor, EventMetadata, VersionedEvent, encode_payload};
use domain::ids::{
    ApiTokenId, AppId, InstallationId, LicenseId, OrganizationId, PolicyId, ProductId,
};
use domain::keys::{ApiTokenSecret, LicenseKey};
use domain::license::{IssueLicense, License, LicenseAction, LicenseCommand, LicenseState};
use domain::organization::{
    Organization, OrganizationAction, OrganizationCommand, OrganizationEvent, OrganizationFacts,
    OrganizationRef,
};
use domain::policy::{
    Policy, PolicyAction, PolicyCommand, PolicyEvent, PolicyRef, PolicyState, PolicyTerms,
    PolicyTermsInput,
};
use domain::product::{Product, ProductAction, ProductCommand, ProductFacts, ProductRef};
use domain::validation::LicenseFacts;
use domain::values::{
    DeactivationReason, Environment, FeatureSet, Fingerprint, KeyPrefix, Label, LicenseModel,
    LicenseSource, Name, OfflineTokenKind, OrganizationKind, ProductKind, Reason,
    RevocationCategory, Role, SeatCount,
};
use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

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

/// Rows per `INSERT` statement at most. Small seeds use smaller statements (down to
/// `MIN_BATCH_ROWS`, about twenty per lane), so their log still interleaves streams the way
/// many commits do.
const BATCH_ROWS: usize = 5_000;
const MIN_BATCH_ROWS: usize = 500;

/// Concurrent insert tasks (each over its own streams). The insert trigger (a hash and an index
/// lookup per row) is the cost; more lanes than the database has cores buys nothing.
const LANES: usize = 3;

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

/// One insert task: its batches, in order, each in a statement of its own.
async fn lane(
    pool: &PgPool,
    mut batches: mpsc::Receiver<Batch>,
    done: &AtomicU64,
    planned: u64,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> anyhow::Result<()> {
    while let Some(batch) = batches.recv().await {
        let n = batch.len() as u64;
        insert(pool, &batch).await?;
        let now = done.fetch_add(n, Ordering::Relaxed) + n;
        progress(now, planned.max(now));
    }
    Ok(())
}

/// The append of `commands::store` for many streams at once: claims and events in one statement,
/// rows in the order given so events of one stream chain in sequence.
const INSERT_SQL: &str = "
WITH claims AS (
    INSERT INTO unique_claims (scope, value, stream_id)
    SELECT c.scope, c.value, c.stream_id
    FROM UNNEST($9::text[], $10::text[], $11::text[]) AS c(scope, value, stream_id)
)
INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT e.event_id, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload::json, e.metadata::json
FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[])
    WITH ORDINALITY AS e(event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, n)
ORDER BY e.n";

async fn insert(pool: &PgPool, b: &Batch) -> anyhow::Result<()> {
    sqlx::query(INSERT_SQL)
        .bind(&b.event_id)
        .bind(&b.aggregate_type)
        .bind(&b.aggregate_id)
        .bind(&b.sequence)
        .bind(&b.event_type)
        .bind(&b.event_version)
        .bind(&b.payload)
        .bind(&b.metadata)
        .bind(&b.claim_scope)
        .bind(&b.claim_value)
        .bind(&b.claim_stream)
        .execute(pool)
        .await
        .with_context(|| format!("inserting a batch of {} events", b.len()))?;
    Ok(())
}

// ----- randomness and ids -----

/// splitmix64: tiny, fast, and good enough for synthetic data; the same seed gives the same
/// history on every platform. Public for the benchmarks that sample the seeded history.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`), without modulo bias worth mentioning (Lemire's multiply).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
    fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }
    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        out
    }
}

/// A UUID v7 of instant `at` (ids the ledger mints are v7; here of the simulated instant).
fn v7(rng: &mut Rng, at: Timestamp) -> Uuid {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &rng.bytes::<10>()).into_uuid()
}

/// A UUID v4 (App GUIDs the ledger generates are v4).
fn v4(rng: &mut Rng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.bytes::<16>()).into_uuid()
}

fn instant(micros: i64) -> Timestamp {
    DateTime::from_timestamp_micros(micros).expect("simulated instants are in range")
}

fn parse_instant(text: &str) -> anyhow::Result<i64> {
    Ok(text.parse::<Timestamp>()?.timestamp_micros())
}

// ----- the catalogue -----

struct ProductSpec {
    name: &'static str,
    kind: ProductKind,
    prefix: &'static str,
    parent: Option<usize>,
    /// The entitlements licenses of this product draw from.
    features: &'static [&'static str],
}

const PRODUCTS: &[ProductSpec] = &[
    ProductSpec {
        name: "Acme Studio",
        kind: ProductKind::Application,
        prefix: "STUDIO",
        parent: None,
        features: &[
            "pro",
            "export.pdf",
            "export.svg",
            "collab",
            "scripting",
            "gpu.render",
        ],
    },
    ProductSpec {
        name: "Acme Studio Color Pack",
        kind: ProductKind::Plugin,
        prefix: "STCOLOR",
        parent: Some(0),
        features: &["color.grading", "color.luts", "color.hdr"],
    },
    ProductSpec {
        name: "Acme Analyzer",
        kind: ProductKind::Application,
        prefix: "ANLZ",
        parent: None,
        features: &["analyze", "report", "report.scheduled", "api", "export.csv"],
    },
    ProductSpec {
        name: "Acme Render Cloud",
        kind: ProductKind::CloudService,
        prefix: "RENDER",
        parent: None,
        features: &["render.hd", "render.4k", "render.8k", "render.priority"],
    },
    ProductSpec {
        name: "Render Priority Queue",
        kind: ProductKind::Feature,
        prefix: "RPQ",
        parent: Some(3),
        features: &["render.priority", "render.burst"],
    },
    ProductSpec {
        name: "Acme Sync",
        kind: ProductKind::CloudService,
        prefix: "SYNC",
        parent: None,
        features: &["sync", "sync.versioning", "sso", "audit.log"],
    },
];

/// A later version of a policy, recorded at `at` (fraction of the history).
struct Revision {
    at: f64,
    name: &'static str,
    seats: u32,
    features: &'static [&'static str],
}

struct PolicySpec {
    product: usize,
    name: &'static str,
    model: LicenseModel,
    seats: u32,
    duration_days: Option<u32>,
    trial_days: u32,
    features: &'static [&'static str],
    /// 0: online only.
    offline_grace_days: u32,
    maintenance_months: Option<u32>,
    lease_seconds: Option<u32>,
    /// Relative share of the licenses issued under it (0: none).
    weight: u32,
    revision: Option<Revision>,
    /// Retired a day after it was defined (a legacy plan nobody buys any more).
    retired: bool,
}

const POLICIES: &[PolicySpec] = &[
    PolicySpec {
        product: 0,
        name: "Studio Standard",
        model: LicenseModel::NodeLocked,
        seats: 3,
        duration_days: Some(365),
        trial_days: 0,
        features: &["pro", "export.pdf"],
        offline_grace_days: 14,
        maintenance_months: Some(12),
        lease_seconds: None,
        weight: 28,
        revision: Some(Revision {
            at: 0.45,
            name: "Studio Standard 2025",
            seats: 3,
            features: &["pro", "export.pdf", "export.svg"],
        }),
        retired: false,
    },
    PolicySpec {
        product: 0,
        name: "Studio Floating",
        model: LicenseModel::Floating,
        seats: 10,
        duration_days: Some(365),
        trial_days: 0,
        features: &["pro", "export.pdf", "collab"],
        offline_grace_days: 0,
        maintenance_months: Some(12),
        lease_seconds: Some(900),
        weight: 8,
        revision: None,
        retired: false,
    },
    PolicySpec {
        product: 0,
        name: "Studio Perpetual",
        model: LicenseModel::NodeLocked,
        seats: 1,
        duration_days: None,
        trial_days: 0,
        features: &["pro"],
        offline_grace_days: 30,
        maintenance_months: Some(12),
        lease_seconds: None,
        weight: 9,
        revision: None,
        retired: false,
    },
    PolicySpec {
        product: 0,
        name: "Studio Trial",
        model: LicenseModel::NodeLocked,
        seats: 1,
        duration_days: Some(30),
        trial_days: 14,
        features: &["pro"],
        offline_grace_days: 0,
        maintenance_months: None,
        lease_seconds: None,
        weight: 6,
        revision: None,
        retired: false,
    },
    PolicySpec {
        product: 0,
        name: "Studio Legacy 2022",
        model: LicenseModel::NodeLocked,
        seats: 2,
        duration_days: Some(365),
        trial_days: 0,
        features: &["pro"],
        offline_grace_days: 14,
        maintenance_months: None,
        lease_seconds: None,
        weight: 0,
        revision: None,
        retired: true,
    },
    PolicySpec {
        product: 1,
        name: "Color Pack",
        model: LicenseModel::NodeLocked,
        seats: 1,
        duration_days: Some(365),
        trial_days: 0,
        features: &["color.grading", "color.luts"],
        offline_grace_days: 14,
        maintenance_months: Some(12),
        lease_seconds: None,
        weight: 7,
        revision: None,
        retired: false,
    },
    PolicySpec {
        product: 2,
        name: "Analyzer Site",
        model: LicenseModel::Floating,
        seats: 25,
        duration_days: Some(365),
        trial_days: 0,
        features: &["analyze", "report", "api"],
        offline_grace_days: 0,
        maintenance_months: Some(12),
        lease_seconds: Some(3600),
        weight: 5,
        revision: None,
        retired: false,
    },
    PolicySpec {
        product: 2,
        name: "Analyzer Named",
        model: LicenseModel::NamedUser,
        seats: 5,
        duration_days: Some(365),
        trial_days: 0,
        features: &["analyze", "report"],
        offline_grace_days: 7,
        maintenance_months: Some(12),
        lease_seconds: None,
        weight: 10,
        revision: None,
        retired: false,
    },
    PolicySpec {
        product: 3,
        name: "Render Team Monthly",
        model: LicenseModel::NamedUser,
        seats: 10,
        duration_days: Some(30),
        trial_days: 0,
        features: &["render.hd", "render.4k"],
        offline_grace_days: 0,
        maintenance_months: None,
        lease_seconds: None,
        weight: 10,
        revision: Some(Revision {
            at: 0.6,
            name: "Render Team Monthly",
            seats: 15,
            features: &["render.hd", "render.4k", "render.8k"],
        }),
        retired: false,
    },
    PolicySpec {
        product: 4,
        name: "Render Priority",
        model: LicenseModel::NamedUser,
        seats: 10,
        duration_days: Some(30),
        trial_days: 0,
        features: &["render.priority"],
        offline_grace_days: 0,
        maintenance_months: None,
        lease_seconds: None,
        weight: 3,
        revision: None,
        retired: false,
    },
    PolicySpec {
        product: 5,
        name: "Sync Business",
        model: LicenseModel::NamedUser,
        seats: 20,
        duration_days: Some(365),
        trial_days: 0,
        features: &["sync", "sync.versioning", "sso"],
        offline_grace_days: 0,
        maintenance_months: None,
        lease_seconds: None,
        weight: 10,
        revision: None,
        retired: false,
    },
];

/// The policy of the long license: floating, so its history holds leases and heartbeats too.
const LONG_LICENSE_POLICY: usize = 1;

fn terms(spec: &PolicySpec, seats: u32, features: &[&str]) -> anyhow::Result<PolicyTerms> {
    Ok(PolicyTerms::new(PolicyTermsInput {
        model: spec.model,
        seats: SeatCount::new(seats)?,
        duration_days: spec.duration_days,
        trial_days: Some(spec.trial_days),
        features: FeatureSet::parse(features)?,
        offline_allowed: spec.offline_grace_days > 0,
        offline_grace_days: spec.offline_grace_days,
        payment_grace_days: 7,
        maintenance_months: spec.maintenance_months,
        lease_seconds: spec.lease_seconds,
    })?)
}

const COMPANY: &[&str] = &[
    "Northwind",
    "Blue Harbor",
    "Contoso",
    "Fabrikam",
    "Globex",
    "Initech",
    "Tyrell",
    "Hooli",
    "Vandelay",
    "Aperture",
    "Black Mesa",
    "Massive Dynamic",
    "Nakatomi",
    "Sterling",
    "Prestige",
    "Monarch",
    "Pied Piper",
    "Wonka",
    "Soylent",
    "Virtucon",
    "Oceanic",
    "Gringotts",
    "Cobalt",
    "Silverline",
    "Redwood",
    "Granite Peak",
    "Lakeside",
    "Fjord",
    "Kestrel",
    "Meridian",
];
const TRADE: &[&str] = &[
    "Analytics",
    "Design",
    "Engineering",
    "Media",
    "Labs",
    "Studios",
    "Systems",
    "Consulting",
    "Robotics",
    "Logistics",
    "Health",
    "Energy",
    "Architects",
    "Games",
    "Pictures",
    "Research",
];
const LEGAL: &[&str] = &[
    "Ltd", "GmbH", "Inc.", "SA", "BV", "AB", "Oy", "KK", "LLC", "plc", "SAS", "Pty Ltd",
];
const CITIES: &[&str] = &[
    "Berlin",
    "Lyon",
    "Osaka",
    "Austin",
    "Leeds",
    "Porto",
    "Gdansk",
    "Toronto",
    "Melbourne",
    "Seoul",
    "Zurich",
    "Denver",
];
const HOSTS: &[&str] = &["ws", "laptop", "build", "render", "design", "dev", "lab"];
const PLATFORMS: &[&str] = &[
    "windows-x86_64",
    "macos-aarch64",
    "macos-x86_64",
    "linux-x86_64",
    "linux-aarch64",
];
const SUSPENSIONS: &[&str] = &[
    "payment overdue",
    "license audit in progress",
    "suspected key sharing",
    "customer request",
];
const REVOCATIONS: &[(&str, RevocationCategory)] = &[
    ("chargeback", RevocationCategory::Fraud),
    ("key published on a forum", RevocationCategory::Fraud),
    ("refund granted", RevocationCategory::Refund),
    ("contract ended", RevocationCategory::ContractEnded),
    ("duplicate license", RevocationCategory::Unspecified),
];

// ----- the generator -----

/// Rows for one `INSERT`, column by column.
#[derive(Default)]
struct Batch {
    event_id: Vec<Uuid>,
    aggregate_type: Vec<&'static str>,
    aggregate_id: Vec<String>,
    sequence: Vec<i64>,
    event_type: Vec<String>,
    event_version: Vec<String>,
    payload: Vec<String>,
    metadata: Vec<String>,
    claim_scope: Vec<&'static str>,
    claim_value: Vec<String>,
    claim_stream: Vec<String>,
}

impl Batch {
    fn len(&self) -> usize {
        self.event_id.len()
    }
}

/// A stream being written: its id, version and lane.
struct Stream {
    id: String,
    version: i64,
    lane: usize,
}

/// Encodes events exactly as `commands` stores them and hands full batches to the lanes.
struct Writer {
    /// Ids of events come from a generator of their own, so the history does not shift with them.
    ids: Rng,
    lanes: Vec<Batch>,
    senders: Vec<mpsc::Sender<Batch>>,
    batch_rows: usize,
    next_lane: usize,
    events: u64,
}

impl Writer {
    fn stream(&mut self, id: impl Into<String>) -> Stream {
        let lane = self.next_lane;
        self.next_lane = (self.next_lane + 1) % self.lanes.len();
        Stream {
            id: id.into(),
            version: 0,
            lane,
        }
    }

    fn emit<E: VersionedEvent>(
        &mut self,
        stream: &mut Stream,
        events: &[E],
        metadata: &str,
        at: Timestamp,
    ) -> anyhow::Result<()> {
        for event in events {
            stream.version += 1;
            let event_id = v7(&mut self.ids, at);
            let batch = &mut self.lanes[stream.lane];
            batch.event_id.push(event_id);
            batch.aggregate_type.push(E::AGGREGATE_TYPE);
            batch.aggregate_id.push(stream.id.clone());
            batch.sequence.push(stream.version);
            batch.event_type.push(event.event_type());
            batch.event_version.push(event.event_version());
            // As `commands::store`: the payload as a JSON value, stored as its compact text.
            batch
                .payload
                .push(serde_json::to_string(&encode_payload(event)?)?);
            batch.metadata.push(metadata.to_owned());
            for claim in event.unique_claims() {
                batch.claim_scope.push(claim.scope);
                batch.claim_value.push(claim.value);
                batch
                    .claim_stream
                    .push(format!("{}/{}", E::AGGREGATE_TYPE, stream.id));
            }
            self.events += 1;
            if batch.len() >= self.batch_rows {
                let full = std::mem::take(batch);
                self.send(stream.lane, full)?;
            }
        }
        Ok(())
    }

    fn send(&self, lane: usize, batch: Batch) -> anyhow::Result<()> {
        self.senders[lane]
            .blocking_send(batch)
            .map_err(|_| anyhow!("the insert tasks stopped"))
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        for lane in 0..self.lanes.len() {
            let batch = std::mem::take(&mut self.lanes[lane]);
            if batch.len() > 0 {
                self.send(lane, batch)?;
            }
        }
        Ok(())
    }
}

/// Something that happens at a simulated instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Task {
    Token,
    Product(usize),
    Policy(usize),
    Revise(usize),
    Retire(usize),
    Org(usize, OrgStep),
    /// The next command to license `i` (its issue first).
    License(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum OrgStep {
    Register,
    Rename,
    Move,
    Delegate,
    Undelegate,
    Close,
}

struct ProductSim {
    id: ProductId,
    facts: Option<ProductFacts>,
}

struct PolicySim {
    id: PolicyId,
    stream: Stream,
    state: Policy,
}

struct OrgSim {
    id: OrganizationId,
    stream: Stream,
    kind: OrganizationKind,
    state: Organization,
}

struct LicenseSim {
    id: LicenseId,
    stream: Stream,
    license: License,
    /// Events still to write.
    remaining: u64,
    /// When its last command is due: commands spread over the time left until then.
    until: i64,
    long: bool,
    /// Commands that found nothing to do in a row.
    idle: u32,
}

/// What the generator wrote.
struct Outcome {
    events: u64,
    licenses: u64,
    organizations: u64,
    long_license_id: Option<Uuid>,
}

/// What a license command can be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Activate,
    Deactivate,
    Heartbeat,
    ExpireLeases,
    OfflineToken,
    Renew,
    Suspend,
    Reinstate,
    Seats,
    Entitlements,
    Transfer,
    RotateKey,
    Maintenance,
    Revoke,
}

struct Generator {
    rng: Rng,
    out: Writer,
    hasher: KeyHasher,
    heap: BinaryHeap<Reverse<(i64, u64, Task)>>,
    ticket: u64,
    planned: u64,
    token: Option<ApiTokenId>,
    products: Vec<ProductSim>,
    policies: Vec<PolicySim>,
    orgs: Vec<OrgSim>,
    org_index: HashMap<OrganizationId, usize>,
    /// Registered customers (and, until one exists, partners): who licenses go to.
    customers: Vec<usize>,
    partners: Vec<usize>,
    licenses: Vec<Option<LicenseSim>>,
    issued: u64,
    long_license_id: Option<Uuid>,
}

impl Generator {
    /// Plans the history: the catalogue, every organization's steps and every license's issue
    /// instant and event budget, so the total is known before anything is written.
    fn plan(options: &SeedOptions, senders: Vec<mpsc::Sender<Batch>>) -> anyhow::Result<Self> {
        if options.licenses > 0 && options.organizations == 0 {
            bail!("licenses need an organization to belong to: seed at least one");
        }
        let start = parse_instant(HISTORY_START)?;
        let end = parse_instant(HISTORY_END)?;
        let span = end - start;
        let lanes = senders.len();
        let mut g = Self {
            rng: Rng(SEED),
            out: Writer {
                ids: Rng(SEED ^ 0x1D5_1D5_1D5),
                lanes: (0..lanes).map(|_| Batch::default()).collect(),
                senders,
                batch_rows: usize::try_from(options.events / (lanes as u64 * 20))
                    .unwrap_or(BATCH_ROWS)
                    .clamp(MIN_BATCH_ROWS, BATCH_ROWS),
                next_lane: 0,
                events: 0,
            },
            hasher: KeyHasher::new(KEY_PEPPER),
            heap: BinaryHeap::new(),
            ticket: 0,
            planned: 0,
            token: None,
            products: Vec::new(),
            policies: Vec::new(),
            orgs: Vec::new(),
            org_index: HashMap::new(),
            customers: Vec::new(),
            partners: Vec::new(),
            licenses: Vec::new(),
            issued: 0,
            long_license_id: None,
        };
        let minute = 60 * MICROS_PER_SECOND;

        // The catalogue, in the first hour: token, products, policies.
        g.schedule(start, Task::Token);
        for p in 0..PRODUCTS.len() {
            g.schedule(start + (p as i64 + 1) * minute, Task::Product(p));
        }
        for (p, spec) in POLICIES.iter().enumerate() {
            g.schedule(start + (p as i64 + 10) * minute, Task::Policy(p));
            if let Some(revision) = &spec.revision {
                g.schedule(start + (span as f64 * revision.at) as i64, Task::Revise(p));
            }
            if spec.retired {
                g.schedule(start + MICROS_PER_DAY, Task::Retire(p));
            }
        }

        // Organizations: the vendor first, partners early, customers over most of the history
        // (more of them early), each with a few later steps.
        let partners = if options.organizations >= 3 {
            (options.organizations / 25).max(1)
        } else {
            0
        };
        for k in 0..options.organizations {
            let (kind, registered) = if k == 0 {
                (OrganizationKind::Vendor, start + 30 * minute)
            } else if k <= partners {
                let at = start + 40 * minute + (g.rng.unit() * 0.1 * span as f64) as i64;
                (OrganizationKind::Partner, at)
            } else if k <= partners + 5 {
                // A few customers before the first license, so it has somewhere to go.
                (OrganizationKind::Customer, start + (60 + k as i64) * minute)
            } else {
                let at = start
                    + 2 * MICROS_PER_DAY
                    + (g.rng.unit().powf(1.5) * 0.85 * span as f64) as i64;
                (OrganizationKind::Customer, at)
            };
            let id = OrganizationId::from_uuid(v7(&mut g.rng, instant(registered)));
            let stream = g.out.stream(id.to_string());
            let k = g.orgs.len();
            g.orgs.push(OrgSim {
                id,
                stream,
                kind,
                state: Organization::Unregistered,
            });
            g.org_index.insert(id, k);
            g.schedule(registered, Task::Org(k, OrgStep::Register));
            if kind == OrganizationKind::Vendor {
                continue;
            }
            let customer = kind == OrganizationKind::Customer;
            let later = |g: &mut Self, step: OrgStep, after: i64| {
                let at = after + 1 + (g.rng.unit() * (end - after) as f64 * 0.9) as i64;
                g.schedule(at, Task::Org(k, step));
                at
            };
            let mut last = registered;
            if g.rng.chance(0.06) {
                last = last.max(later(&mut g, OrgStep::Rename, registered));
            }
            if customer && g.rng.chance(0.04) {
                last = last.max(later(&mut g, OrgStep::Move, registered));
            }
            if customer && partners > 0 && g.rng.chance(0.12) {
                let granted = later(&mut g, OrgStep::Delegate, registered);
                last = last.max(granted);
                if g.rng.chance(0.35) {
                    last = last.max(later(&mut g, OrgStep::Undelegate, granted));
                }
            }
            if customer && g.rng.chance(0.015) {
                // Closing is an organization's last step: nothing changes a closed one.
                later(&mut g, OrgStep::Close, last);
            }
        }
        let fixed = g.heap.len() as u64;

        // Licenses: issue instants over the history after the first customers, and an event
        // budget each, skewed (most licenses see a few events, some many) and summing exactly to
        // what is left of the requested total.
        let long = if options.licenses > 0 && options.long_license_events > 0 {
            options.long_license_events
        } else {
            0
        };
        let normal = options.licenses - u64::from(long > 0);
        let budget_total = options.events.saturating_sub(fixed + long).max(normal);
        let mut budgets = Vec::with_capacity(usize::try_from(normal)?);
        if normal > 0 {
            let mean = budget_total as f64 / normal as f64;
            let mut sum = 0u64;
            for _ in 0..normal {
                let tail = (-(1.0 - g.rng.unit()).ln()).min(8.0);
                let n = 1 + ((mean - 1.0).max(0.0) * tail) as u64;
                sum += n;
                budgets.push(n);
            }
            let mut diff = i128::from(budget_total) - i128::from(sum);
            while diff != 0 {
                let i = g.rng.index(budgets.len());
                if diff > 0 {
                    budgets[i] += 1;
                    diff -= 1;
                } else if budgets[i] > 1 {
                    budgets[i] -= 1;
                    diff += 1;
                }
            }
        }
        let first_license = start + 2 * minute * 60;
        if long > 0 {
            // The long license runs through the whole history.
            g.add_license(first_license, long, end, true);
        }
        for budget in budgets {
            // A license is used for a while (a tenth of the history to all of it), issued so that
            // its life fits in the history: traffic stays even over time instead of piling up
            // where late licenses would squeeze their events.
            let life = ((0.1 + 0.9 * g.rng.unit()) * (end - first_license) as f64) as i64;
            let issued =
                first_license + (g.rng.unit() * (end - first_license - life) as f64) as i64;
            g.add_license(issued, budget, issued + life, false);
        }
        g.planned = fixed + long + g.licenses_budget();
        Ok(g)
    }

    fn licenses_budget(&self) -> u64 {
        self.licenses
            .iter()
            .flatten()
            .filter(|l| !l.long)
            .map(|l| l.remaining)
            .sum()
    }

    fn add_license(&mut self, issued: i64, budget: u64, until: i64, long: bool) {
        let id = LicenseId::from_uuid(v7(&mut self.rng, instant(issued)));
        let stream = self.out.stream(id.to_string());
        let i = self.licenses.len();
        self.licenses.push(Some(LicenseSim {
            id,
            stream,
            license: License::NotIssued,
            remaining: budget,
            until,
            long,
            idle: 0,
        }));
        self.schedule(issued, Task::License(i));
    }

    fn schedule(&mut self, at: i64, task: Task) {
        self.ticket += 1;
        self.heap.push(Reverse((at, self.ticket, task)));
    }

    /// Runs the history in the order of its instants.
    fn run(mut self) -> anyhow::Result<Outcome> {
        while let Some(Reverse((micros, _, task))) = self.heap.pop() {
            let at = instant(micros);
            match task {
                Task::Token => self.token(at)?,
                Task::Product(p) => self.product(p, at)?,
                Task::Policy(p) => self.policy(p, at)?,
                Task::Revise(p) => self.revise(p, at)?,
                Task::Retire(p) => self.retire(p, at)?,
                Task::Org(k, step) => self.org(k, step, at)?,
                Task::License(i) => self.license(i, micros)?,
            }
        }
        self.out.flush()?;
        Ok(Outcome {
            events: self.out.events,
            licenses: self.issued,
            organizations: self.orgs.len() as u64,
            long_license_id: self.long_license_id,
        })
    }

    /// The metadata of one command: who, which (synthetic) request, and when it took effect.
    fn metadata(&mut self, actor: Actor, at: Timestamp) -> anyhow::Result<String> {
        let mut meta = EventMetadata::new(actor, format!("seed-{}", v7(&mut self.rng, at)));
        meta.effective_at = Some(at);
        Ok(serde_json::to_string(&serde_json::to_value(&meta)?)?)
    }

    /// The administration token the seeded administrators act with.
    fn admin(&self) -> Actor {
        self.token
            .as_ref()
            .map_or(Actor::Operator, |id| Actor::ApiToken(*id))
    }

    // ----- catalogue -----

    fn token(&mut self, at: Timestamp) -> anyhow::Result<()> {
        let id = ApiTokenId::from_uuid(v7(&mut self.rng, at));
        // A real token whose secret nobody keeps: its stream exists so the actor of the seeded
        // administration resolves, but it authenticates no one.
        let secret = ApiTokenSecret::from_entropy(id, &self.rng.bytes::<30>());
        let events = ApiToken::NotIssued.decide(&ApiTokenCommand {
            token_id: id,
            at,
            action: ApiTokenAction::Issue {
                role: Role::VendorAdmin,
                label: Some(Name::parse("Seed administration")?),
                token_hash: secret.hash(),
                expires_at: None,
            },
        })?;
        let mut stream = self.out.stream(id.to_string());
        // `ledger token` is run by an operator at the server's command line.
        let meta = self.metadata(Actor::Operator, at)?;
        self.out.emit(&mut stream, &events, &meta, at)?;
        self.token = Some(id);
        Ok(())
    }

    fn product(&mut self, p: usize, at: Timestamp) -> anyhow::Result<()> {
        let spec = &PRODUCTS[p];
        let id = ProductId::from_uuid(v7(&mut self.rng, at));
        let parent = spec.parent.map(|q| ProductRef {
            id: self.products[q].id,
            facts: self.products[q].facts.clone(),
        });
        let name = Name::parse(spec.name)?;
        let key_prefix = KeyPrefix::parse(spec.prefix)?;
        let app_id = AppId::parse(v4(&mut self.rng))?;
        let events = Product::Undefined.decide(&ProductCommand {
            product_id: id,
            at,
            action: ProductAction::Define {
                name: name.clone(),
                kind: spec.kind,
                app_id,
                parent,
                key_prefix: key_prefix.clone(),
            },
        })?;
        let mut stream = self.out.stream(id.to_string());
        let meta = self.metadata(self.admin(), at)?;
        self.out.emit(&mut stream, &events, &meta, at)?;
        self.products.push(ProductSim {
            id,
            facts: Some(ProductFacts {
                name,
                kind: spec.kind,
                app_id,
                key_prefix,
            }),
        });
        Ok(())
    }

    fn product_ref(&self, p: usize) -> ProductRef {
        ProductRef {
            id: self.products[p].id,
            facts: self.products[p].facts.clone(),
        }
    }

    fn policy(&mut self, p: usize, at: Timestamp) -> anyhow::Result<()> {
        let spec = &POLICIES[p];
        let id = PolicyId::from_uuid(v7(&mut self.rng, at));
        let events = Policy::Undefined.decide(&PolicyCommand {
            policy_id: id,
            at,
            action: PolicyAction::Define {
                product: self.product_ref(spec.product),
                name: Name::parse(spec.name)?,
                terms: terms(spec, spec.seats, spec.features)?,
            },
        })?;
        let stream = self.out.stream(id.to_string());
        self.policies.push(PolicySim {
            id,
            stream,
            state: Policy::Undefined,
        });
        self.policy_events(p, events, at)
    }

    fn revise(&mut self, p: usize, at: Timestamp) -> anyhow::Result<()> {
        let spec = &POLICIES[p];
        let revision = spec.revision.as_ref().context("a revision is planned")?;
        let sim = &self.policies[p];
        let events = sim.state.decide(&PolicyCommand {
            policy_id: sim.id,
            at,
            action: PolicyAction::Revise {
                name: Name::parse(revision.name)?,
                terms: terms(spec, revision.seats, revision.features)?,
            },
        })?;
        self.policy_events(p, events, at)
    }

    fn retire(&mut self, p: usize, at: Timestamp) -> anyhow::Result<()> {
        let sim = &self.policies[p];
        let events = sim.state.decide(&PolicyCommand {
            policy_id: sim.id,
            at,
            action: PolicyAction::Retire,
        })?;
        self.policy_events(p, events, at)
    }

    /// Writes a policy's events and folds them into its state with `Policy`'s own `apply`.
    fn policy_events(
        &mut self,
        p: usize,
        events: Vec<PolicyEvent>,
        at: Timestamp,
    ) -> anyhow::Result<()> {
        let meta = self.metadata(self.admin(), at)?;
        let sim = &mut self.policies[p];
        self.out.emit(&mut sim.stream, &events, &meta, at)?;
        for event in events {
            sim.state.apply(event);
        }
        Ok(())
    }

    // ----- organizations -----

    fn org_ref(&self, k: usize) -> OrganizationRef {
        let org = &self.orgs[k];
        let facts = org.state.state().map(|state| {
            let mut lineage = vec![org.id];
            let mut parent = state.parent_id;
            while let Some(id) = parent {
                lineage.push(id);
                parent = self
                    .org_index
                    .get(&id)
                    .and_then(|&q| self.orgs[q].state.state())
                    .and_then(|s| s.parent_id);
                if lineage.len() > self.orgs.len() {
                    break; // cannot happen (moves are refused on cycles), but never loop
                }
            }
            OrganizationFacts {
                kind: org.kind,
                closed: state.closed,
                lineage,
            }
        });
        OrganizationRef { id: org.id, facts }
    }

    fn is_open(&self, k: usize) -> bool {
        self.orgs[k].state.state().is_some_and(|s| !s.closed)
    }

    fn company_name(&mut self) -> String {
        let company = *self.rng.pick(COMPANY);
        let trade = *self.rng.pick(TRADE);
        let legal = *self.rng.pick(LEGAL);
        format!("{company} {trade} {legal}")
    }

    fn org(&mut self, k: usize, step: OrgStep, at: Timestamp) -> anyhow::Result<()> {
        if step == OrgStep::Register {
            return self.register(k, at);
        }
        let action = match step {
            OrgStep::Register => unreachable!("handled above"),
            OrgStep::Rename => None,
            OrgStep::Move => {
                let has_parent = self.orgs[k]
                    .state
                    .state()
                    .is_some_and(|s| s.parent_id.is_some());
                if has_parent && self.rng.chance(0.5) {
                    Some(OrganizationAction::Move { new_parent: None })
                } else if self.customers.is_empty() {
                    None
                } else {
                    let q = *self.rng.pick(&self.customers);
                    Some(OrganizationAction::Move {
                        new_parent: Some(self.org_ref(q)),
                    })
                }
            }
            OrgStep::Delegate if !self.partners.is_empty() => {
                let q = *self.rng.pick(&self.partners);
                Some(OrganizationAction::GrantPartnerDelegation {
                    partner: self.org_ref(q),
                })
            }
            OrgStep::Delegate => None,
            OrgStep::Undelegate => self.orgs[k]
                .state
                .state()
                .and_then(|s| s.delegated_partners.iter().next().copied())
                .map(|partner_id| OrganizationAction::RevokePartnerDelegation { partner_id }),
            OrgStep::Close => Some(OrganizationAction::Close),
        };
        let decided = action.map(|action| {
            let org = &self.orgs[k];
            org.state.decide(&OrganizationCommand {
                organization_id: org.id,
                at,
                action,
            })
        });
        let events = match decided {
            Some(Ok(events)) if !events.is_empty() => events,
            // Refused (a move that would make a cycle, a partner already delegated) or nothing
            // to do: the administrator renames the organization instead, so the planned count
            // holds.
            _ => {
                let mut name = self.company_name();
                let org = &self.orgs[k];
                if org.state.state().is_some_and(|s| s.name.as_str() == name) {
                    name.push_str(" Group");
                }
                org.state.decide(&OrganizationCommand {
                    organization_id: org.id,
                    at,
                    action: OrganizationAction::Rename {
                        name: Name::parse(&name)?,
                    },
                })?
            }
        };
        self.org_events(k, events, at)
    }

    fn register(&mut self, k: usize, at: Timestamp) -> anyhow::Result<()> {
        let kind = self.orgs[k].kind;
        let (name, parent) = match kind {
            OrganizationKind::Vendor => ("Acme Software GmbH".to_owned(), None),
            OrganizationKind::Partner => {
                let company = *self.rng.pick(COMPANY);
                (format!("{company} Software Partners"), None)
            }
            OrganizationKind::Customer => {
                // A quarter of the customers are subsidiaries or locations (three levels at
                // most) of an open customer.
                let parent = if !self.customers.is_empty() && self.rng.chance(0.25) {
                    let q = *self.rng.pick(&self.customers);
                    let parent = self.org_ref(q);
                    parent
                        .facts
                        .as_ref()
                        .is_some_and(|f| !f.closed && f.lineage.len() < 3)
                        .then_some((q, parent))
                } else {
                    None
                };
                match parent {
                    Some((q, parent)) => {
                        let base = self.orgs[q]
                            .state
                            .state()
                            .map(|s| s.name.as_str().to_owned())
                            .unwrap_or_default();
                        (format!("{base} {}", self.rng.pick(CITIES)), Some(parent))
                    }
                    None => (self.company_name(), None),
                }
            }
        };
        let org = &self.orgs[k];
        let events = org.state.decide(&OrganizationCommand {
            organization_id: org.id,
            at,
            action: OrganizationAction::Register {
                name: Name::parse(&name)?,
                kind,
                parent,
            },
        })?;
        match kind {
            OrganizationKind::Customer => self.customers.push(k),
            OrganizationKind::Partner => self.partners.push(k),
            OrganizationKind::Vendor => {}
        }
        self.org_events(k, events, at)
    }

    /// Writes an organization's events and folds them into its state with `Organization`'s own
    /// `apply`.
    fn org_events(
        &mut self,
        k: usize,
        events: Vec<OrganizationEvent>,
        at: Timestamp,
    ) -> anyhow::Result<()> {
        let meta = self.metadata(self.admin(), at)?;
        let org = &mut self.orgs[k];
        self.out.emit(&mut org.stream, &events, &meta, at)?;
        for event in events {
            org.state.apply(event);
        }
        Ok(())
    }
}

// ----- licenses -----

impl Generator {
    /// The next command to license `i`, at `micros`; schedules the one after while its budget
    /// lasts.
    fn license(&mut self, i: usize, micros: i64) -> anyhow::Result<()> {
        let mut sim = self.licenses[i]
            .take()
            .context("a license has one pending command at a time")?;
        let at = instant(micros);
        let wrote = if sim.license.state().is_none() {
            self.issue(&mut sim, at)?;
            true
        } else {
            self.change(&mut sim, at)?
        };
        sim.idle = if wrote { 0 } else { sim.idle + 1 };
        // A license that finds nothing to do five times running stops short of its budget
        // (cannot happen while key rotation is always possible, but never loop forever).
        if sim.remaining > 0 && sim.idle < 5 {
            let next = micros + self.gap(&sim, micros);
            self.schedule(next, Task::License(i));
            self.licenses[i] = Some(sim);
        }
        Ok(())
    }

    /// Time to a license's next command: mostly around the time left divided by the events left
    /// (so a license ends near its due instant whatever happened before), sometimes a burst of
    /// client traffic minutes later, and for a floating license with leases often within the
    /// second half of a lease (when a heartbeat renews it). The long license keeps to the steady
    /// pace, so its events spread over the whole history.
    fn gap(&mut self, sim: &LicenseSim, now: i64) -> i64 {
        let mean = (sim.until - now) as f64 / sim.remaining.max(1) as f64;
        // The last command anywhere in the time left, so none falls after the due instant.
        let pace = if sim.remaining > 1 {
            0.2 + 1.6 * self.rng.unit()
        } else {
            self.rng.unit()
        };
        let steady = ((mean * pace) as i64).max(MICROS_PER_SECOND);
        if sim.long {
            return steady;
        }
        let lease = sim.license.state().and_then(|s| {
            s.terms
                .lease_seconds
                .filter(|_| s.activations.values().any(|a| a.lease_expires_at.is_some()))
        });
        if let Some(lease) = lease
            && self.rng.chance(0.5)
        {
            return (f64::from(lease) * (0.55 + 0.4 * self.rng.unit()) * 1e6) as i64;
        }
        if self.rng.chance(0.15) {
            return (5 + self.rng.below(10)) as i64 * 60 * MICROS_PER_SECOND;
        }
        steady
    }

    fn pick_policy(&mut self) -> usize {
        let total: u64 = POLICIES
            .iter()
            .filter(|p| !p.retired)
            .map(|p| u64::from(p.weight))
            .sum();
        let mut r = self.rng.below(total.max(1));
        for (p, spec) in POLICIES.iter().enumerate() {
            if spec.retired {
                continue;
            }
            let w = u64::from(spec.weight);
            if r < w {
                return p;
            }
            r -= w;
        }
        0
    }

    /// An open organization for a license (customers; partners until a customer exists; the
    /// vendor as a last resort for a new license), other than `except`.
    fn pick_org(&mut self, except: Option<OrganizationId>) -> Option<usize> {
        let pool = if self.customers.is_empty() {
            &self.partners
        } else {
            &self.customers
        };
        for _ in 0..20 {
            if pool.is_empty() {
                break;
            }
            let k = pool[self.rng.index(pool.len())];
            if self.is_open(k) && Some(self.orgs[k].id) != except {
                return Some(k);
            }
        }
        (except.is_none() && !self.orgs.is_empty() && self.is_open(0)).then_some(0)
    }

    /// A non-empty random subset of a product's entitlements.
    fn features(&mut self, product: usize) -> anyhow::Result<FeatureSet> {
        let all = PRODUCTS[product].features;
        let mut chosen: Vec<&str> = all
            .iter()
            .copied()
            .filter(|_| self.rng.chance(0.5))
            .collect();
        if chosen.is_empty() {
            chosen.push(all[0]);
        }
        Ok(FeatureSet::parse(&chosen)?)
    }

    fn product_of(&self, state: &LicenseState) -> anyhow::Result<usize> {
        self.products
            .iter()
            .position(|p| p.id == state.product_id)
            .context("a license's product is in the catalogue")
    }

    /// A fresh key for product `p`: its hash and support prefix, as `commands` stores them.
    fn key(&mut self, p: usize) -> anyhow::Result<(domain::keys::KeyHash, String)> {
        let prefix = self.products[p]
            .facts
            .as_ref()
            .map(|f| f.key_prefix.clone())
            .context("the product is defined")?;
        let key = LicenseKey::from_entropy(&prefix, &self.rng.bytes::<20>());
        Ok((self.hasher.hash(&key), key.support_prefix()))
    }

    fn issue(&mut self, sim: &mut LicenseSim, at: Timestamp) -> anyhow::Result<()> {
        let p = if sim.long {
            LONG_LICENSE_POLICY
        } else {
            self.pick_policy()
        };
        let spec = &POLICIES[p];
        let policy = PolicyRef {
            id: self.policies[p].id,
            facts: self.policies[p].state.state().map(PolicyState::facts),
        };
        let product = self.product_ref(spec.product);
        let k = self
            .pick_org(None)
            .context("no open organization to issue a license to")?;
        let (key_hash, key_prefix) = self.key(spec.product)?;
        // Most licenses take the policy's terms; some are negotiated.
        let seats = if self.rng.chance(0.15) {
            Some(SeatCount::new(spec.seats * *self.rng.pick(&[2, 5, 10]))?)
        } else {
            None
        };
        let features = if self.rng.chance(0.1) {
            Some(self.features(spec.product)?)
        } else {
            None
        };
        let expires_at = (spec.duration_days.is_some() && self.rng.chance(0.05))
            .then(|| at + Duration::days(730));
        let source = if self.rng.chance(0.15) {
            LicenseSource::Import
        } else {
            LicenseSource::Admin
        };
        let command = LicenseCommand {
            license_id: sim.id,
            at,
            action: LicenseAction::Issue(Box::new(IssueLicense {
                policy,
                product,
                organization: self.org_ref(k),
                key_hash,
                key_prefix,
                seats,
                features,
                expires_at,
                source,
            })),
        };
        let events = sim
            .license
            .decide(&command)
            .with_context(|| format!("issuing license {}", sim.id))?;
        self.write_license(sim, events, self.admin(), at)?;
        self.issued += 1;
        if sim.long {
            self.long_license_id = Some(Uuid::from(sim.id));
        }
        Ok(())
    }

    fn write_license(
        &mut self,
        sim: &mut LicenseSim,
        events: Vec<domain::license::LicenseEvent>,
        actor: Actor,
        at: Timestamp,
    ) -> anyhow::Result<()> {
        let meta = self.metadata(actor, at)?;
        self.out.emit(&mut sim.stream, &events, &meta, at)?;
        sim.remaining = sim.remaining.saturating_sub(events.len() as u64);
        for event in events {
            sim.license.fold(event);
        }
        Ok(())
    }

    /// One lifecycle or client command: candidates are drawn by weight and decided by the
    /// aggregate until one records something within the license's remaining budget. Returns
    /// whether an event was written.
    fn change(&mut self, sim: &mut LicenseSim, at: Timestamp) -> anyhow::Result<bool> {
        let Some((events, actor)) = self.decide_change(sim, at)? else {
            return Ok(false);
        };
        self.write_license(sim, events, actor, at)?;
        Ok(true)
    }

    fn decide_change(
        &mut self,
        sim: &LicenseSim,
        at: Timestamp,
    ) -> anyhow::Result<Option<(Vec<domain::license::LicenseEvent>, Actor)>> {
        let state = sim.license.state().context("the license is issued")?;
        let floating = state.terms.lease_seconds.is_some();
        let devices = !state.activations.is_empty();
        let monthly = state.terms.duration_days.is_some_and(|d| d <= 31);
        let mut candidates: Vec<(u64, Change)> = Vec::with_capacity(14);
        // Revocation is final, so it can only be a license's last event.
        if sim.remaining == 1 && !sim.long && self.rng.chance(0.06) {
            candidates.push((1_000, Change::Revoke));
        }
        candidates.push((28, Change::Activate));
        if devices {
            candidates.push((10, Change::Deactivate));
        }
        if floating && devices {
            candidates.push((8, Change::Heartbeat));
            candidates.push((3, Change::ExpireLeases));
        }
        if state.terms.offline_allowed {
            candidates.push((6, Change::OfflineToken));
        }
        if state.expires_at.is_some() {
            candidates.push((if monthly { 30 } else { 9 }, Change::Renew));
        }
        if state.suspension.is_some() {
            candidates.push((40, Change::Reinstate));
        } else {
            candidates.push((if sim.long { 10 } else { 3 }, Change::Suspend));
        }
        candidates.push((4, Change::Seats));
        candidates.push((3, Change::Entitlements));
        candidates.push((2, Change::Transfer));
        candidates.push((2, Change::RotateKey));
        if state.maintenance_until.is_some() {
            candidates.push((3, Change::Maintenance));
        }
        while !candidates.is_empty() {
            let total: u64 = candidates.iter().map(|(w, _)| w).sum();
            let mut r = self.rng.below(total);
            let mut chosen = 0;
            for (i, (w, _)) in candidates.iter().enumerate() {
                if r < *w {
                    chosen = i;
                    break;
                }
                r -= w;
            }
            let (_, change) = candidates.swap_remove(chosen);
            let Some((action, actor)) = self.change_action(change, state, at)? else {
                continue;
            };
            let command = LicenseCommand {
                license_id: sim.id,
                at,
                action,
            };
            // A refusal (not valid now, no free seat, lease lapsed) is real traffic that records
            // nothing: try the next candidate.
            if let Ok(events) = sim.license.decide(&command)
                && !events.is_empty()
                && events.len() as u64 <= sim.remaining
            {
                return Ok(Some((events, actor)));
            }
        }
        Ok(None)
    }

    /// The command for `change` on `state` as the write side would build it (fresh ids, keys
    /// and facts), and who issues it; `None` when it does not apply.
    fn change_action(
        &mut self,
        change: Change,
        state: &LicenseState,
        at: Timestamp,
    ) -> anyhow::Result<Option<(LicenseAction, Actor)>> {
        let admin = self.admin();
        let pick_installation = |rng: &mut Rng, leased_only: bool| {
            let ids: Vec<InstallationId> = state
                .activations
                .iter()
                .filter(|(_, a)| !leased_only || a.lease_expires_at.is_some())
                .map(|(id, _)| *id)
                .collect();
            (!ids.is_empty()).then(|| ids[rng.index(ids.len())])
        };
        let action = match change {
            Change::Activate => {
                let fingerprint = Fingerprint::parse(&hex::encode(self.rng.bytes::<16>()))?;
                let hostname = if self.rng.chance(0.8) {
                    let host = *self.rng.pick(HOSTS);
                    Some(Label::parse(&format!(
                        "{host}-{:04}",
                        self.rng.below(10_000)
                    ))?)
                } else {
                    None
                };
                let platform = *self.rng.pick(PLATFORMS);
                let platform = Some(Label::parse(platform)?);
                let environment = if self.rng.chance(0.1) {
                    Environment::Test
                } else {
                    Environment::Production
                };
                (
                    LicenseAction::Activate {
                        installation_id: InstallationId::from_uuid(v7(&mut self.rng, at)),
                        fingerprint,
                        hostname,
                        platform,
                        environment,
                    },
                    Actor::Client,
                )
            }
            Change::Deactivate => {
                let Some(installation_id) = pick_installation(&mut self.rng, false) else {
                    return Ok(None);
                };
                let r = self.rng.unit();
                let (reason, actor) = if r < 0.6 {
                    (DeactivationReason::Client, Actor::Client)
                } else if r < 0.9 {
                    (DeactivationReason::Admin, admin)
                } else {
                    (DeactivationReason::OfflineRequest, Actor::Client)
                };
                (
                    LicenseAction::Deactivate {
                        installation_id,
                        reason,
                    },
                    actor,
                )
            }
            Change::Heartbeat => {
                let Some(installation_id) = pick_installation(&mut self.rng, true) else {
                    return Ok(None);
                };
                (LicenseAction::Heartbeat { installation_id }, Actor::Client)
            }
            Change::ExpireLeases => (LicenseAction::ExpireLeases, Actor::System),
            Change::OfflineToken => {
                let active: Vec<&Fingerprint> = state
                    .activations
                    .values()
                    .filter(|a| a.active_at(at))
                    .map(|a| &a.fingerprint)
                    .collect();
                let device = (!active.is_empty() && self.rng.chance(0.6))
                    .then(|| active[self.rng.index(active.len())].clone());
                let kind = if device.is_some() && self.rng.chance(0.5) {
                    OfflineTokenKind::OfflineActivation
                } else {
                    OfflineTokenKind::Offline
                };
                (
                    LicenseAction::IssueOfflineToken {
                        jti: v7(&mut self.rng, at),
                        kind,
                        fingerprint: device,
                    },
                    Actor::Client,
                )
            }
            Change::Renew => {
                let Some(current) = state.expires_at else {
                    return Ok(None);
                };
                let days = state.terms.duration_days.unwrap_or(365);
                (
                    LicenseAction::Renew {
                        expires_at: current.max(at) + Duration::days(i64::from(days)),
                    },
                    admin,
                )
            }
            Change::Suspend => {
                let reason = *self.rng.pick(SUSPENSIONS);
                (
                    LicenseAction::Suspend {
                        reason: Reason::parse(reason)?,
                    },
                    admin,
                )
            }
            Change::Reinstate => (LicenseAction::Reinstate, admin),
            Change::Seats => {
                let active = state.active_installations(at).max(1);
                let current = state.seats.get();
                let high = (current * 2 + 2).max(active + 1);
                let mut seats =
                    active + u32::try_from(self.rng.below(u64::from(high - active) + 1))?;
                if seats == current {
                    seats += 1;
                }
                (
                    LicenseAction::ChangeSeats {
                        seats: SeatCount::new(seats)?,
                    },
                    admin,
                )
            }
            Change::Entitlements => {
                let product = self.product_of(state)?;
                (
                    LicenseAction::ChangeEntitlements {
                        features: self.features(product)?,
                    },
                    admin,
                )
            }
            Change::Transfer => {
                let Some(k) = self.pick_org(Some(state.organization_id)) else {
                    return Ok(None);
                };
                (
                    LicenseAction::Transfer {
                        organization: self.org_ref(k),
                    },
                    admin,
                )
            }
            Change::RotateKey => {
                let (key_hash, key_prefix) = self.key(self.product_of(state)?)?;
                (
                    LicenseAction::RotateKey {
                        key_hash,
                        key_prefix,
                    },
                    admin,
                )
            }
            Change::Maintenance => {
                let Some(current) = state.maintenance_until else {
                    return Ok(None);
                };
                let Some(until) = current.max(at).checked_add_months(Months::new(12)) else {
                    return Ok(None);
                };
                (LicenseAction::ExtendMaintenance { until }, admin)
            }
            Change::Revoke => {
                let (reason, category) = *self.rng.pick(REVOCATIONS);
                (
                    LicenseAction::Revoke {
                        reason: Reason::parse(reason)?,
                        category,
                    },
                    admin,
                )
            }
        };
        Ok(Some(action))
    }
}
