//! The validation read model: what `POST /v1/validate` needs about every license, compact enough
//! to hold a million licenses in memory in each server process.
//!
//! - [`ValidationEntry`]: one license's facts in about a hundred bytes. The parts many licenses
//!   share (App GUID, product, policy version, model; feature sets) are interned behind `Arc`s,
//!   instants are microseconds since the epoch, activations exist only where there are some. It
//!   implements [`LicenseFacts`], so the domain's own decision runs on it.
//! - [`ValidationProjection`]: keeps the table `rm_validation` (one row per license) current, with
//!   its checkpoint, like any projector.
//! - [`ValidationModel`]: the in-memory copy. At start-up it loads `rm_validation` and the
//!   projector's checkpoint from one snapshot, then follows the log itself from that checkpoint
//!   (commit order, below the horizon), woken by the process's own appends — a command answered
//!   by this process is visible to validation within milliseconds.
//!
//! One fold, [`ValidationEntry::apply`], serves both; a property test keeps it equal to the
//! License aggregate's own fold.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use cqrs_es::DomainEvent;
use domain::Timestamp;
use domain::event::RecordedEvent;
use domain::ids::{AppId, InstallationId, LicenseId, PolicyId, ProductId};
use domain::keys::KeyHash;
use domain::license::{LicenseEvent, LicenseIssued, LicenseState};
use domain::validation::LicenseFacts;
use domain::values::{FeatureSet, LicenseModel};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::types::Json;
use sqlx::{PgConnection, Row};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::copy::{CopyRows, copy_all};
use crate::engine::{
    self, BulkApply, Checkpoint, HeldFold, LicenseRecord, Projection, ProjectionError, ReplaySafe,
    RowFold, WRITE_CHUNK, apply_folded,
};

/// What licenses of one policy version share.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LicenseClass {
    pub app_id: AppId,
    pub product_id: ProductId,
    pub policy_id: PolicyId,
    pub policy_version: u32,
    pub model: LicenseModel,
    pub offline_allowed: bool,
}

/// An active installation, as validation sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactActivation {
    pub installation_id: InstallationId,
    pub fingerprint: Box<str>,
    /// Microseconds since the epoch; [`NONE`] for a node-locked installation.
    pub lease_expires_at: i64,
}

/// The absent instant.
pub const NONE: i64 = i64::MIN;

fn micros(t: Option<Timestamp>) -> i64 {
    t.map_or(NONE, |t| t.timestamp_micros())
}

fn instant(m: i64) -> Option<Timestamp> {
    (m != NONE)
        .then(|| chrono::DateTime::from_timestamp_micros(m))
        .flatten()
}

const SUSPENDED: u8 = 1;
const REVOKED: u8 = 2;
const PAUSED: u8 = 4;
const SUBSCRIBED: u8 = 8;
const CANCELED: u8 = 16;

/// Shares equal license classes and feature sets between entries.
#[derive(Debug, Default)]
pub struct Interner {
    classes: HashSet<Arc<LicenseClass>>,
    features: HashSet<Arc<FeatureSet>>,
}

impl Interner {
    fn class(&mut self, class: LicenseClass) -> Arc<LicenseClass> {
        if let Some(shared) = self.classes.get(&class) {
            return shared.clone();
        }
        let shared = Arc::new(class);
        self.classes.insert(shared.clone());
        shared
    }

    fn features(&mut self, features: &FeatureSet) -> Arc<FeatureSet> {
        if let Some(shared) = self.features.get(features) {
            return shared.clone();
        }
        let shared = Arc::new(features.clone());
        self.features.insert(shared.clone());
        shared
    }
}

/// One license, as validation needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidationEntry {
    pub license_id: LicenseId,
    pub key_hash: KeyHash,
    pub class: Arc<LicenseClass>,
    pub features: Arc<FeatureSet>,
    pub seats: u32,
    flags: u8,
    /// The license stream's version this entry reflects.
    pub version: i64,
    expires_at: i64,
    trial_ends_at: i64,
    grace_until: i64,
    cancel_at: i64,
    /// Sorted by installation id.
    pub activations: Option<Box<[CompactActivation]>>,
}

impl ValidationEntry {
    /// The entry of a just-issued license.
    pub fn issued(
        license_id: LicenseId,
        e: &LicenseIssued,
        version: i64,
        interner: &mut Interner,
    ) -> Self {
        Self {
            license_id,
            key_hash: e.key_hash,
            class: interner.class(LicenseClass {
                app_id: e.app_id,
                product_id: e.product_id,
                policy_id: e.policy_id,
                policy_version: e.policy_version,
                model: e.terms.model,
                offline_allowed: e.terms.offline_allowed,
            }),
            features: interner.features(&e.features),
            seats: e.seats.get(),
            flags: 0,
            version,
            expires_at: micros(e.expires_at),
            trial_ends_at: micros(e.trial_ends_at),
            grace_until: NONE,
            cancel_at: NONE,
            activations: None,
        }
    }

    /// The entry of a license in state `s` at `version` (what the fold must always equal).
    pub fn from_state(
        license_id: LicenseId,
        s: &LicenseState,
        version: i64,
        interner: &mut Interner,
    ) -> Self {
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        let activations: Vec<CompactActivation> = s
            .activations
            .iter()
            .map(|(id, a)| CompactActivation {
                installation_id: *id,
                fingerprint: a.fingerprint.as_str().into(),
                lease_expires_at: micros(a.lease_expires_at),
            })
            .collect();
        Self {
            license_id,
            key_hash: s.key_hash,
            class: interner.class(LicenseClass {
                app_id: s.app_id,
                product_id: s.product_id,
                policy_id: s.policy_id,
                policy_version: s.policy_version,
                model: s.terms.model,
                offline_allowed: s.terms.offline_allowed,
            }),
            features: interner.features(&s.features),
            seats: s.seats.get(),
            flags: flag(s.suspension.is_some(), SUSPENDED)
                | flag(s.revocation.is_some(), REVOKED)
                | flag(s.billing.paused, PAUSED)
                | flag(s.billing.subscription.is_some(), SUBSCRIBED)
                | flag(s.billing.canceled, CANCELED),
            version,
            expires_at: micros(s.expires_at),
            trial_ends_at: micros(s.trial_ends_at),
            grace_until: micros(s.billing.payment_grace_until),
            cancel_at: micros(s.billing.cancel_at),
            activations: (!activations.is_empty()).then(|| activations.into_boxed_slice()),
        }
    }

    fn set(&mut self, bit: u8, on: bool) {
        if on {
            self.flags |= bit;
        } else {
            self.flags &= !bit;
        }
    }

    fn edit_activations(&mut self, edit: impl FnOnce(&mut Vec<CompactActivation>)) {
        let mut list = self.activations.take().map(Vec::from).unwrap_or_default();
        edit(&mut list);
        list.sort_by_key(|a| a.installation_id);
        self.activations = (!list.is_empty()).then(|| list.into_boxed_slice());
    }

    /// Applies the next event of the license's stream (sequence `version`). Returns the key hash
    /// it replaced when the event rotated the key.
    pub fn apply(
        &mut self,
        event: &LicenseEvent,
        version: i64,
        interner: &mut Interner,
    ) -> Option<KeyHash> {
        self.version = version;
        let mut replaced = None;
        match event {
            LicenseEvent::Issued(e) => {
                let fresh = Self::issued(self.license_id, e, version, interner);
                *self = fresh;
            }
            LicenseEvent::Suspended { .. } => self.set(SUSPENDED, true),
            LicenseEvent::Reinstated {} => self.set(SUSPENDED, false),
            LicenseEvent::Revoked { .. } => self.set(REVOKED, true),
            LicenseEvent::Renewed { expires_at } => self.expires_at = expires_at.timestamp_micros(),
            LicenseEvent::EntitlementsChanged { features } => {
                self.features = interner.features(features)
            }
            LicenseEvent::SeatsChanged { seats } => self.seats = seats.get(),
            LicenseEvent::KeyRotated { key_hash, .. } => {
                replaced = Some(std::mem::replace(&mut self.key_hash, *key_hash));
            }
            LicenseEvent::InstallationActivated {
                installation_id,
                fingerprint,
                ..
            } => {
                let activation = CompactActivation {
                    installation_id: *installation_id,
                    fingerprint: fingerprint.as_str().into(),
                    lease_expires_at: NONE,
                };
                // Like the aggregate's map: an id activated again replaces its entry.
                self.edit_activations(|list| {
                    list.retain(|a| a.installation_id != *installation_id);
                    list.push(activation);
                });
            }
            LicenseEvent::FloatingLeaseGranted {
                installation_id,
                expires_at,
            } => {
                let end = expires_at.timestamp_micros();
                self.edit_activations(|list| {
                    for a in list
                        .iter_mut()
                        .filter(|a| a.installation_id == *installation_id)
                    {
                        a.lease_expires_at = end;
                    }
                });
            }
            LicenseEvent::InstallationDeactivated {
                installation_id, ..
            }
            | LicenseEvent::FloatingLeaseReleased { installation_id }
            | LicenseEvent::FloatingLeaseExpired { installation_id } => {
                self.edit_activations(|list| {
                    list.retain(|a| a.installation_id != *installation_id)
                });
            }
            LicenseEvent::SubscriptionLinked { .. } => self.set(SUBSCRIBED, true),
            LicenseEvent::PaymentFailed { grace_until } => {
                self.grace_until = grace_until.timestamp_micros()
            }
            LicenseEvent::PaymentRecovered {} => self.grace_until = NONE,
            LicenseEvent::SubscriptionPaused {} => self.set(PAUSED, true),
            LicenseEvent::SubscriptionResumed {} => self.set(PAUSED, false),
            LicenseEvent::CancellationScheduled { at } => self.cancel_at = at.timestamp_micros(),
            LicenseEvent::SubscriptionCanceled {} => self.set(CANCELED, true),
            // Facts validation does not read.
            LicenseEvent::Transferred { .. }
            | LicenseEvent::MaintenanceExtended { .. }
            | LicenseEvent::OfflineTokenIssued { .. } => {}
        }
        replaced
    }

    /// Whether some floating lease has lapsed at `now`.
    pub fn has_lapsed_lease(&self, now: Timestamp) -> bool {
        let now = now.timestamp_micros();
        self.activations
            .iter()
            .flat_map(|list| list.iter())
            .any(|a| a.lease_expires_at != NONE && now >= a.lease_expires_at)
    }

    /// The active installation of `fingerprint` at `now`.
    pub fn installation_of(&self, fingerprint: &str, now: Timestamp) -> Option<&CompactActivation> {
        let now = now.timestamp_micros();
        self.activations
            .iter()
            .flat_map(|list| list.iter())
            .find(|a| {
                &*a.fingerprint == fingerprint
                    && (a.lease_expires_at == NONE || now < a.lease_expires_at)
            })
    }
}

impl LicenseFacts for ValidationEntry {
    fn revoked(&self) -> bool {
        self.flags & REVOKED != 0
    }
    fn suspended(&self) -> bool {
        self.flags & SUSPENDED != 0
    }
    fn paused(&self) -> bool {
        self.flags & PAUSED != 0
    }
    fn payment_grace_until(&self) -> Option<Timestamp> {
        instant(self.grace_until)
    }
    fn canceled(&self) -> bool {
        self.flags & CANCELED != 0
    }
    fn cancel_at(&self) -> Option<Timestamp> {
        instant(self.cancel_at)
    }
    fn subscribed(&self) -> bool {
        self.flags & SUBSCRIBED != 0
    }
    fn trial_ends_at(&self) -> Option<Timestamp> {
        instant(self.trial_ends_at)
    }
    fn expires_at(&self) -> Option<Timestamp> {
        instant(self.expires_at)
    }
    fn seats(&self) -> u32 {
        self.seats
    }
    fn model(&self) -> LicenseModel {
        self.class.model
    }
    fn features(&self) -> &FeatureSet {
        &self.features
    }
    fn active_installations(&self, now: Timestamp) -> u32 {
        let now = now.timestamp_micros();
        let n = self
            .activations
            .iter()
            .flat_map(|list| list.iter())
            .filter(|a| a.lease_expires_at == NONE || now < a.lease_expires_at)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
    fn is_activated(&self, fingerprint: &str, now: Timestamp) -> bool {
        self.installation_of(fingerprint, now).is_some()
    }
}

// ----- the table -----

fn entry_from_row(
    row: &PgRow,
    interner: &mut Interner,
) -> Result<ValidationEntry, ProjectionError> {
    let bad = |what: &str| ProjectionError::Inconsistent(format!("rm_validation: bad {what}"));
    let key: Vec<u8> = row.try_get("key_hash")?;
    let key: [u8; 32] = key.try_into().map_err(|_| bad("key_hash"))?;
    let model: String = row.try_get("model")?;
    let features: Vec<String> = row.try_get("features")?;
    let features = FeatureSet::parse(&features).map_err(|_| bad("features"))?;
    let activations: Vec<CompactActivation> =
        serde_json::from_value(row.try_get("activations")?).map_err(|_| bad("activations"))?;
    let time = |col: &str| -> Result<i64, sqlx::Error> {
        Ok(micros(row.try_get::<Option<Timestamp>, _>(col)?))
    };
    Ok(ValidationEntry {
        license_id: LicenseId::from_uuid(row.try_get("license_id")?),
        key_hash: KeyHash::from_bytes(key),
        class: interner.class(LicenseClass {
            app_id: AppId::parse(row.try_get("app_id")?).map_err(|_| bad("app_id"))?,
            product_id: ProductId::from_uuid(row.try_get("product_id")?),
            policy_id: PolicyId::from_uuid(row.try_get("policy_id")?),
            policy_version: u32::try_from(row.try_get::<i32, _>("policy_version")?)
                .map_err(|_| bad("policy_version"))?,
            model: LicenseModel::parse(&model).map_err(|_| bad("model"))?,
            offline_allowed: row.try_get("offline_allowed")?,
        }),
        features: interner.features(&features),
        seats: u32::try_from(row.try_get::<i32, _>("seats")?).map_err(|_| bad("seats"))?,
        flags: u8::try_from(row.try_get::<i16, _>("flags")?).map_err(|_| bad("flags"))?,
        version: row.try_get("version")?,
        expires_at: time("expires_at")?,
        trial_ends_at: time("trial_ends_at")?,
        grace_until: time("grace_until")?,
        cancel_at: time("cancel_at")?,
        activations: (!activations.is_empty()).then(|| activations.into_boxed_slice()),
    })
}

/// Writes entries in one statement. (A feature list travels as one JSON array per row: arrays of
/// arrays do not unnest.)
async fn write_rows(
    conn: &mut PgConnection,
    entries: &[&ValidationEntry],
) -> Result<(), ProjectionError> {
    let inconsistent = |err: serde_json::Error| ProjectionError::Inconsistent(err.to_string());
    let (mut license_id, mut key_hash, mut app_id, mut product_id, mut policy_id) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut policy_version, mut model, mut offline_allowed, mut seats, mut flags) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut expires_at, mut trial_ends_at, mut grace_until, mut cancel_at) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut features, mut activations, mut version) = (Vec::new(), Vec::new(), Vec::new());
    for e in entries {
        license_id.push(Uuid::from(e.license_id));
        key_hash.push(e.key_hash.as_bytes().to_vec());
        app_id.push(Uuid::from(e.class.app_id));
        product_id.push(Uuid::from(e.class.product_id));
        policy_id.push(Uuid::from(e.class.policy_id));
        policy_version.push(i32::try_from(e.class.policy_version).unwrap_or(i32::MAX));
        model.push(e.class.model.as_str());
        offline_allowed.push(e.class.offline_allowed);
        seats.push(i32::try_from(e.seats).unwrap_or(i32::MAX));
        flags.push(i16::from(e.flags));
        expires_at.push(instant(e.expires_at));
        trial_ends_at.push(instant(e.trial_ends_at));
        grace_until.push(instant(e.grace_until));
        cancel_at.push(instant(e.cancel_at));
        let codes: Vec<&str> = e.features.iter().map(|f| f.as_str()).collect();
        features.push(serde_json::to_string(&codes).map_err(inconsistent)?);
        activations.push(Json(e.activations.as_deref().unwrap_or(&[])));
        version.push(e.version);
    }
    sqlx::query(
        "INSERT INTO rm_validation (license_id, key_hash, app_id, product_id, policy_id, policy_version, model, \
           offline_allowed, seats, flags, expires_at, trial_ends_at, grace_until, cancel_at, features, activations, version) \
         SELECT u.license_id, u.key_hash, u.app_id, u.product_id, u.policy_id, u.policy_version, u.model, u.offline_allowed, \
                u.seats, u.flags, u.expires_at, u.trial_ends_at, u.grace_until, u.cancel_at, \
                ARRAY(SELECT jsonb_array_elements_text(u.features::jsonb)), u.activations, u.version \
         FROM UNNEST($1::uuid[], $2::bytea[], $3::uuid[], $4::uuid[], $5::uuid[], $6::int[], $7::text[], $8::bool[], \
                     $9::int[], $10::int2[], $11::timestamptz[], $12::timestamptz[], $13::timestamptz[], $14::timestamptz[], \
                     $15::text[], $16::jsonb[], $17::bigint[]) \
           AS u(license_id, key_hash, app_id, product_id, policy_id, policy_version, model, offline_allowed, seats, flags, \
                expires_at, trial_ends_at, grace_until, cancel_at, features, activations, version) \
         ON CONFLICT (license_id) DO UPDATE SET key_hash = EXCLUDED.key_hash, app_id = EXCLUDED.app_id, \
           product_id = EXCLUDED.product_id, policy_id = EXCLUDED.policy_id, policy_version = EXCLUDED.policy_version, \
           model = EXCLUDED.model, offline_allowed = EXCLUDED.offline_allowed, seats = EXCLUDED.seats, flags = EXCLUDED.flags, \
           expires_at = EXCLUDED.expires_at, trial_ends_at = EXCLUDED.trial_ends_at, grace_until = EXCLUDED.grace_until, \
           cancel_at = EXCLUDED.cancel_at, features = EXCLUDED.features, activations = EXCLUDED.activations, \
           version = EXCLUDED.version",
    )
    .bind(&license_id)
    .bind(&key_hash)
    .bind(&app_id)
    .bind(&product_id)
    .bind(&policy_id)
    .bind(&policy_version)
    .bind(&model)
    .bind(&offline_allowed)
    .bind(&seats)
    .bind(&flags)
    .bind(&expires_at)
    .bind(&trial_ends_at)
    .bind(&grace_until)
    .bind(&cancel_at)
    .bind(&features)
    .bind(&activations)
    .bind(&version)
    .execute(conn)
    .await?;
    Ok(())
}

/// The columns [`copy_row`] writes, for licenses that have no row yet.
const COPY_ROWS: &str = "COPY rm_validation (license_id, key_hash, app_id, product_id, policy_id, policy_version, \
     model, offline_allowed, seats, flags, expires_at, trial_ends_at, grace_until, cancel_at, features, activations, \
     version) FROM STDIN (FORMAT binary)";

/// One entry as [`COPY_ROWS`] takes it: the same values as [`write_rows`] upserts.
fn copy_row(rows: &mut CopyRows, e: &ValidationEntry) -> Result<(), ProjectionError> {
    let features: Vec<&str> = e.features.iter().map(|f| f.as_str()).collect();
    rows.row()
        .uuid(e.license_id.into())
        .bytea(e.key_hash.as_bytes())
        .uuid(e.class.app_id.into())
        .uuid(e.class.product_id.into())
        .uuid(e.class.policy_id.into())
        .i32(i32::try_from(e.class.policy_version).unwrap_or(i32::MAX))
        .text(e.class.model.as_str())
        .bool(e.class.offline_allowed)
        .i32(i32::try_from(e.seats).unwrap_or(i32::MAX))
        .i16(i16::from(e.flags))
        .opt_timestamptz(instant(e.expires_at))?
        .opt_timestamptz(instant(e.trial_ends_at))?
        .opt_timestamptz(instant(e.grace_until))?
        .opt_timestamptz(instant(e.cancel_at))?
        .text_array(&features)
        .jsonb(&e.activations.as_deref().unwrap_or(&[]))?
        .i64(e.version);
    Ok(())
}

/// Keeps `rm_validation` current.
#[derive(Clone, Copy, Debug, Default)]
pub struct ValidationProjection;

#[async_trait]
impl Projection for ValidationProjection {
    fn name(&self) -> &'static str {
        "validation"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_validation"]
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        &["License"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        e: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(conn, std::slice::from_ref(e)).await
    }

    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        apply_folded::<Fold>(conn, events).await
    }
}

/// Entries folded in memory until they are written (a [`RowFold`]).
#[derive(Default)]
struct Fold {
    interner: Interner,
    /// Every entry held was loaded for, or created by, an event folded since the last write.
    entries: HashMap<LicenseId, ValidationEntry>,
}

#[async_trait]
impl RowFold for Fold {
    async fn load(
        &mut self,
        conn: &mut PgConnection,
        events: &[LicenseRecord<'_>],
    ) -> Result<(), ProjectionError> {
        let mut ids: Vec<Uuid> = Vec::new();
        for e in events {
            let id = e.license;
            if !self.entries.contains_key(&id) {
                ids.push(id.into());
            }
        }
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(());
        }
        for row in sqlx::query("SELECT * FROM rm_validation WHERE license_id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?
        {
            let entry = entry_from_row(&row, &mut self.interner)?;
            self.entries.insert(entry.license_id, entry);
        }
        Ok(())
    }

    fn fold(&mut self, events: &[LicenseRecord<'_>]) -> Result<(), ProjectionError> {
        for &LicenseRecord {
            record: e,
            license: id,
            event,
        } in events
        {
            if let LicenseEvent::Issued(issued) = event {
                self.entries.insert(
                    id,
                    ValidationEntry::issued(id, issued, e.sequence, &mut self.interner),
                );
                continue;
            }
            let entry = self.entries.get_mut(&id).ok_or_else(|| {
                ProjectionError::Inconsistent(format!(
                    "{} before LicenseIssued for {id}",
                    event.event_type()
                ))
            })?;
            entry.apply(event, e.sequence, &mut self.interner);
        }
        Ok(())
    }

    fn held(&self) -> usize {
        self.entries.len()
    }

    /// The interner stays: classes and feature sets recur.
    async fn write(&mut self, conn: &mut PgConnection, fresh: bool) -> Result<(), ProjectionError> {
        let entries: Vec<ValidationEntry> = self.entries.drain().map(|(_, e)| e).collect();
        if fresh {
            copy_all(conn, COPY_ROWS, 17, &entries, copy_row).await?;
            // A rebuild's whole fold: freed off this worker.
            engine::free_elsewhere(entries);
            return Ok(());
        }
        for chunk in entries.chunks(WRITE_CHUNK) {
            let rows: Vec<&ValidationEntry> = chunk.iter().collect();
            write_rows(conn, &rows).await?;
        }
        Ok(())
    }
}

impl ReplaySafe for ValidationProjection {
    fn bulk(&self, hold: usize) -> Option<Box<dyn BulkApply>> {
        Some(HeldFold::<Fold>::boxed(hold))
    }
}

// ----- the in-memory model -----

/// Hashes a key hash by its first eight bytes. Key hashes are HMAC outputs under the server's
/// pepper: uniformly distributed and not choosable by anyone without the pepper, so SipHash's
/// protection against crafted collisions buys nothing here and costs every validation.
#[derive(Clone, Copy, Default)]
struct KeyHashHasher(u64);

impl std::hash::Hasher for KeyHashHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its length (via write_usize) and then its bytes.
        if bytes.len() >= 8 {
            let mut first = [0u8; 8];
            first.copy_from_slice(&bytes[..8]);
            self.0 ^= u64::from_le_bytes(first);
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

type KeyMap = HashMap<[u8; 32], u32, std::hash::BuildHasherDefault<KeyHashHasher>>;

#[derive(Default)]
struct Inner {
    entries: Vec<ValidationEntry>,
    by_key: KeyMap,
    /// (license id, slot), sorted by id: ids are time-ordered, so new licenses append.
    by_id: Vec<(Uuid, u32)>,
    interner: Interner,
    checkpoint: Checkpoint,
}

impl Inner {
    fn slot_of(&self, id: &Uuid) -> Option<u32> {
        self.by_id
            .binary_search_by(|(k, _)| k.cmp(id))
            .ok()
            .map(|i| self.by_id[i].1)
    }

    fn insert(&mut self, entry: ValidationEntry) {
        let id = Uuid::from(entry.license_id);
        let key = *entry.key_hash.as_bytes();
        let slot = u32::try_from(self.entries.len()).expect("fewer than 4 billion licenses");
        self.entries.push(entry);
        self.by_key.insert(key, slot);
        match self.by_id.binary_search_by(|(k, _)| k.cmp(&id)) {
            Ok(_) => {}
            Err(at) => self.by_id.insert(at, (id, slot)),
        }
    }

    fn apply(&mut self, e: &RecordedEvent) -> Result<(), ProjectionError> {
        let (license_id, event) = engine::decode_license(e)?;
        let id = Uuid::from(license_id);
        match self.slot_of(&id) {
            None => {
                if let LicenseEvent::Issued(issued) = &event {
                    let entry =
                        ValidationEntry::issued(license_id, issued, e.sequence, &mut self.interner);
                    self.insert(entry);
                }
                // Anything else for an unknown license came before its issue: impossible in one
                // stream, so there is nothing to apply it to.
            }
            Some(slot) => {
                let Inner {
                    entries,
                    interner,
                    by_key,
                    ..
                } = self;
                let entry = &mut entries[slot as usize];
                if e.sequence <= entry.version {
                    return Ok(()); // already in the loaded snapshot
                }
                if let Some(old) = entry.apply(&event, e.sequence, interner) {
                    by_key.remove(old.as_bytes());
                    by_key.insert(*entry.key_hash.as_bytes(), slot);
                }
            }
        }
        Ok(())
    }
}

/// The validation model in memory.
pub struct ValidationModel {
    inner: RwLock<Inner>,
}

impl std::fmt::Debug for ValidationModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidationModel")
            .field("licenses", &self.len())
            .finish()
    }
}

impl ValidationModel {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Loads `rm_validation` and the `validation` projector's checkpoint from one snapshot.
    ///
    /// # Errors
    /// Database errors and rows this build cannot read.
    pub async fn load(pool: &PgPool) -> Result<Arc<Self>, ProjectionError> {
        engine::ensure_checkpoint(pool, ValidationProjection.name()).await?;
        let mut tx = pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let checkpoint = engine::checkpoint(&mut tx, ValidationProjection.name()).await?;
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_validation")
            .fetch_one(&mut *tx)
            .await?;
        let n = usize::try_from(count).unwrap_or(0);
        let mut inner = Inner {
            entries: Vec::with_capacity(n),
            by_key: KeyMap::with_capacity_and_hasher(n, Default::default()),
            by_id: Vec::with_capacity(n),
            interner: Interner::default(),
            checkpoint,
        };
        {
            let mut rows =
                sqlx::query("SELECT * FROM rm_validation ORDER BY license_id").fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                let entry = entry_from_row(&row, &mut inner.interner)?;
                inner.insert(entry);
            }
        }
        tx.commit().await?;
        tracing::info!(licenses = inner.entries.len(), "validation model loaded");
        Ok(Arc::new(Self {
            inner: RwLock::new(inner),
        }))
    }

    /// Refreshes until no committed License event waits behind an open transaction (bounded:
    /// gives up after about a second and leaves the rest to the next wake-up).
    async fn refresh_to_head(&self, pool: &PgPool) -> Result<usize, ProjectionError> {
        let mut total = 0;
        let mut held_back = Duration::ZERO;
        for _ in 0..500 {
            let after = self.read().checkpoint.clone();
            let mut conn = pool.acquire().await?;
            // Idle is this one query.
            if !engine::has_pending(&mut conn, &after, &["License"]).await? {
                break;
            }
            drop(conn);
            let applied = self.refresh(pool).await?;
            total += applied;
            if applied == 0 {
                // Committed events wait behind an open transaction: look again soon, backing off
                // while it stays open.
                held_back =
                    (held_back * 2).clamp(engine::HELD_BACK_RETRY, Duration::from_millis(250));
                tokio::time::sleep(held_back).await;
            } else {
                held_back = Duration::ZERO;
            }
        }
        Ok(total)
    }

    /// Applies the events appended since the last call; returns how many.
    ///
    /// # Errors
    /// Database errors and events that cannot be decoded.
    pub async fn refresh(&self, pool: &PgPool) -> Result<usize, ProjectionError> {
        let mut total = 0;
        loop {
            let after = self.read().checkpoint.clone();
            let mut conn = pool.acquire().await?;
            let events = engine::read_events(&mut conn, &after, &["License"], 1000).await?;
            drop(conn);
            if events.is_empty() {
                return Ok(total);
            }
            let mut inner = self.write();
            // Another refresh may have advanced meanwhile: apply only what lies beyond.
            if inner.checkpoint != after {
                continue;
            }
            for e in &events {
                inner.apply(e)?;
            }
            let last = events.last().expect("not empty");
            inner.checkpoint = Checkpoint {
                tx_id: last.tx_id,
                position: last.global_position,
            };
            total += events.len();
        }
    }

    /// Follows the log until cancelled: on every local append (`wake`), on `NOTIFY`, and every
    /// `poll` otherwise.
    pub async fn follow(
        self: Arc<Self>,
        pool: PgPool,
        mut wake: watch::Receiver<u64>,
        poll: Duration,
        shutdown: CancellationToken,
    ) {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(mut l) => match l.listen(crate::notify::CHANNEL).await {
                Ok(()) => Some(l),
                Err(_) => None,
            },
            Err(_) => None,
        };
        loop {
            if let Err(e) = self.refresh_to_head(&pool).await {
                tracing::error!(error = %e, "validation model could not follow the log; retrying");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = wake.changed() => if changed.is_err() { tokio::time::sleep(poll).await },
                _ = async {
                    match listener.as_mut() {
                        Some(l) => { let _ = l.try_recv().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Takes the state a command just left a license in (this process answered the command), so
    /// validation sees it at once rather than when the follower reads the event. Ignored when the
    /// model already holds that version or a later one; the follower skips what this covered.
    pub fn observe(&self, license_id: LicenseId, state: &LicenseState, version: i64) {
        let mut inner = self.write();
        let id = Uuid::from(license_id);
        match inner.slot_of(&id) {
            None => {
                let entry =
                    ValidationEntry::from_state(license_id, state, version, &mut inner.interner);
                inner.insert(entry);
            }
            Some(slot) => {
                let Inner {
                    entries,
                    interner,
                    by_key,
                    ..
                } = &mut *inner;
                let entry = &mut entries[slot as usize];
                if version <= entry.version {
                    return;
                }
                let fresh = ValidationEntry::from_state(license_id, state, version, interner);
                if fresh.key_hash != entry.key_hash {
                    by_key.remove(entry.key_hash.as_bytes());
                    by_key.insert(*fresh.key_hash.as_bytes(), slot);
                }
                *entry = fresh;
            }
        }
    }

    /// Runs `f` on the entry of the license whose key hashes to `key_hash`. The stored hash is
    /// compared with the presented one in constant time (a rotated-away key finds nothing).
    pub fn with_key<R>(
        &self,
        key_hash: &KeyHash,
        f: impl FnOnce(Option<&ValidationEntry>) -> R,
    ) -> R {
        let inner = self.read();
        let entry = inner
            .by_key
            .get(key_hash.as_bytes())
            .map(|slot| &inner.entries[*slot as usize])
            .filter(|e| e.key_hash.ct_eq(key_hash));
        f(entry)
    }

    /// Runs `f` on the entry of `license_id`.
    pub fn with_license<R>(
        &self,
        license_id: LicenseId,
        f: impl FnOnce(Option<&ValidationEntry>) -> R,
    ) -> R {
        let inner = self.read();
        let entry = inner
            .slot_of(license_id.as_uuid())
            .map(|slot| &inner.entries[slot as usize]);
        f(entry)
    }

    /// Licenses holding a floating lease that has lapsed at `now`.
    pub fn lapsed_leases(&self, now: Timestamp) -> Vec<LicenseId> {
        self.read()
            .entries
            .iter()
            .filter(|e| e.has_lapsed_lease(now))
            .map(|e| e.license_id)
            .collect()
    }

    /// Number of licenses held.
    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    /// Whether no license is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where in the log the model stands.
    pub fn position(&self) -> i64 {
        self.read().checkpoint.position
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::license::License;
    use domain::policy::{PolicyTerms, PolicyTermsInput};
    use domain::values::*;
    use proptest::prelude::*;

    fn t0() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn issued(model: LicenseModel) -> LicenseEvent {
        LicenseEvent::Issued(Box::new(LicenseIssued {
            product_id: ProductId::from_uuid(Uuid::from_u128(1)),
            app_id: AppId::parse(Uuid::from_u128(2)).unwrap(),
            policy_id: PolicyId::from_uuid(Uuid::from_u128(3)),
            policy_version: 1,
            organization_id: domain::ids::OrganizationId::from_uuid(Uuid::from_u128(4)),
            key_hash: KeyHash::from_bytes([1; 32]),
            key_prefix: "AB-CDEF".into(),
            seats: SeatCount::new(3).unwrap(),
            features: FeatureSet::parse(&["pro"]).unwrap(),
            starts_at: t0(),
            expires_at: Some(t0() + chrono::Duration::days(30)),
            trial_ends_at: None,
            maintenance_until: None,
            source: LicenseSource::Admin,
            terms: PolicyTerms::new(PolicyTermsInput {
                model,
                seats: SeatCount::new(3).unwrap(),
                duration_days: Some(30),
                trial_days: None,
                features: FeatureSet::parse(&["pro"]).unwrap(),
                offline_allowed: true,
                offline_grace_days: 3,
                payment_grace_days: 3,
                maintenance_months: None,
                lease_seconds: None,
            })
            .unwrap(),
        }))
    }

    fn any_event() -> impl Strategy<Value = LicenseEvent> {
        let inst = (0u128..4).prop_map(|n| InstallationId::from_uuid(Uuid::from_u128(100 + n)));
        let when = (0i64..100).prop_map(|h| t0() + chrono::Duration::hours(h));
        prop_oneof![
            Just(LicenseEvent::Suspended {
                reason: Reason::parse("x").unwrap()
            }),
            Just(LicenseEvent::Reinstated {}),
            Just(LicenseEvent::Revoked {
                reason: Reason::parse("x").unwrap(),
                category: RevocationCategory::Fraud,
            }),
            when.clone()
                .prop_map(|expires_at| LicenseEvent::Renewed { expires_at }),
            (1u32..9).prop_map(|s| LicenseEvent::SeatsChanged {
                seats: SeatCount::new(s).unwrap()
            }),
            prop::sample::select(vec!["a", "b", "pro"]).prop_map(|f| {
                LicenseEvent::EntitlementsChanged {
                    features: FeatureSet::parse(&[f]).unwrap(),
                }
            }),
            any::<u8>().prop_map(|b| LicenseEvent::KeyRotated {
                key_hash: KeyHash::from_bytes([b; 32]),
                key_prefix: "AB-X".into()
            }),
            (inst.clone(), 0u8..3).prop_map(|(installation_id, f)| {
                LicenseEvent::InstallationActivated {
                    installation_id,
                    fingerprint: Fingerprint::parse(&format!("fp{f}")).unwrap(),
                    hostname: None,
                    platform: None,
                    environment: Environment::Production,
                    activated_at: t0(),
                }
            }),
            (inst.clone(), when.clone()).prop_map(|(installation_id, expires_at)| {
                LicenseEvent::FloatingLeaseGranted {
                    installation_id,
                    expires_at,
                }
            }),
            inst.clone()
                .prop_map(|installation_id| LicenseEvent::InstallationDeactivated {
                    installation_id,
                    reason: DeactivationReason::Client
                }),
            inst.clone()
                .prop_map(|installation_id| LicenseEvent::FloatingLeaseExpired { installation_id }),
            inst.prop_map(|installation_id| LicenseEvent::FloatingLeaseReleased {
                installation_id
            }),
            when.clone()
                .prop_map(|grace_until| LicenseEvent::PaymentFailed { grace_until }),
            Just(LicenseEvent::PaymentRecovered {}),
            Just(LicenseEvent::SubscriptionPaused {}),
            Just(LicenseEvent::SubscriptionResumed {}),
            when.prop_map(|at| LicenseEvent::CancellationScheduled { at }),
            Just(LicenseEvent::SubscriptionCanceled {}),
            Just(LicenseEvent::SubscriptionLinked {
                gateway: "stripe".into(),
                subscription_id: "s".into(),
                customer_id: "c".into()
            }),
            Just(LicenseEvent::Transferred {
                organization_id: domain::ids::OrganizationId::from_uuid(Uuid::from_u128(9))
            }),
        ]
    }

    proptest! {
        /// The compact fold never drifts from the aggregate's own fold.
        #[test]
        fn the_compact_fold_equals_the_aggregate_fold(floating in any::<bool>(), events in prop::collection::vec(any_event(), 0..25)) {
            let model = if floating { LicenseModel::Floating } else { LicenseModel::NodeLocked };
            let id = LicenseId::from_uuid(Uuid::from_u128(7));
            let mut interner = Interner::default();
            let first = issued(model);
            let LicenseEvent::Issued(payload) = &first else { unreachable!() };
            let mut entry = ValidationEntry::issued(id, payload, 1, &mut interner);
            let mut license = License::default();
            license.fold(first.clone());
            for (i, e) in events.iter().enumerate() {
                entry.apply(e, i as i64 + 2, &mut interner);
                license.fold(e.clone());
            }
            let expected = ValidationEntry::from_state(id, license.state().unwrap(), events.len() as i64 + 1, &mut interner);
            prop_assert_eq!(&entry, &expected);
            // And the decision agrees on both, at a few instants.
            for h in [0i64, 50, 120] {
                let now = t0() + chrono::Duration::hours(h);
                let a = domain::validation::decide(&entry, now, Some("fp1"), &[]);
                let b = domain::validation::decide(license.state().unwrap(), now, Some("fp1"), &[]);
                prop_assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn equal_classes_and_feature_sets_are_shared() {
        let mut interner = Interner::default();
        let LicenseEvent::Issued(p) = issued(LicenseModel::NodeLocked) else {
            unreachable!()
        };
        let a = ValidationEntry::issued(
            LicenseId::from_uuid(Uuid::from_u128(1)),
            &p,
            1,
            &mut interner,
        );
        let b = ValidationEntry::issued(
            LicenseId::from_uuid(Uuid::from_u128(2)),
            &p,
            1,
            &mut interner,
        );
        assert!(Arc::ptr_eq(&a.class, &b.class));
        assert!(Arc::ptr_eq(&a.features, &b.features));
        assert!(
            std::mem::size_of::<ValidationEntry>() <= 136,
            "{}",
            std::mem::size_of::<ValidationEntry>()
        );
    }
}
