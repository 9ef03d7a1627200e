//! The table `rm_validation` (one row per license) and [`ValidationProjection`], the projector
//! that keeps it current: rows read into entries, entries upserted or copied in, and the fold
//! ([`RowFold`]) shared by the live projector and a rebuild.

use domain::AggregateType;
use std::collections::HashMap;

use async_trait::async_trait;
use cqrs_es::DomainEvent;
use domain::Timestamp;
use domain::event::RecordedEvent;
use domain::ids::{AppId, LicenseId, PolicyId, ProductId};
use domain::keys::KeyHash;
use domain::license::LicenseEvent;
use domain::values::{FeatureSet, LicenseModel};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::entry::{CompactActivation, Interner, LicenseClass, ValidationEntry, instant, micros};
use crate::copy::{CopyRows, copy_all};
use crate::engine::{
    self, BulkApply, HeldFold, LicenseRecord, Projection, ProjectionError, ReplaySafe, RowFold,
    WRITE_CHUNK, apply_folded,
};

/// Reads a row of `rm_validation` into an entry: the fold's loads, and the model's at start-up.
pub(super) fn entry_from_row(
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
    fn aggregate_types(&self) -> &'static [AggregateType] {
        &[AggregateType::License]
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
