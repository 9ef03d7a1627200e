//! `rm_licenses`: every license with the License aggregate's own state, folded with the domain's
//! own `License::fold` — the read model cannot drift from what the aggregate decides on — and
//! `rm_license_snapshots`, that state every [`SNAPSHOT_EVERY`] events, for as-of reads
//! (`application::asof`, which reads them back with [`snapshot_at`]).
//!
//! A batch reads every license it touches in one query, folds in memory and writes back in one
//! statement per table. A rebuild keeps the fold across batches ([`ReplaySafe::bulk`]) and so
//! writes each license once, not once per batch that touches it.

use domain::AggregateType;
use std::collections::HashMap;

use async_trait::async_trait;
use domain::Timestamp;
use domain::event::RecordedEvent;
use domain::license::{License, LicenseState};
use sqlx::types::Json;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::copy::{CopyRows, copy_all};
use crate::engine::{
    BulkApply, HeldFold, LicenseRecord, Projection, ProjectionError, ReplaySafe, RowFold,
    WRITE_CHUNK, apply_folded, free_elsewhere,
};

/// A snapshot of a license's state is kept every this many events (see [`snapshot_at`]).
pub const SNAPSHOT_EVERY: i64 = 100;

/// `rm_licenses` and `rm_license_snapshots`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LicensesProjection;

/// The latest snapshot of license `id` recorded at or before `at`: its sequence and state.
/// `None` when there is none, or when this build cannot read it (it is a shortcut, never a source:
/// the caller then folds the whole stream).
///
/// # Errors
/// Database errors.
pub async fn snapshot_at(
    pool: &sqlx::PgPool,
    id: domain::ids::LicenseId,
    at: Timestamp,
) -> Result<Option<(i64, LicenseState)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT sequence, state FROM rm_license_snapshots \
         WHERE license_id = $1 AND recorded_at <= $2 ORDER BY sequence DESC LIMIT 1",
    )
    .bind(Uuid::from(id))
    .bind(at)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    match row.try_get::<Json<LicenseState>, _>("state") {
        Ok(Json(state)) => Ok(Some((row.try_get("sequence")?, state))),
        Err(e) => {
            tracing::warn!(license = %id, error = %e, "unreadable snapshot; folding the whole stream");
            Ok(None)
        }
    }
}

/// The columns of `rm_licenses` that lists filter on, derived from the state the fold holds
/// (migration 0008, ADR 0017): what SQL needs to tell a license's status at any instant, as
/// [`domain::status::status_at`] does, without looking inside the state. Written by the live
/// projector and a rebuild alike, from the same state, so a rebuild writes the same columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListColumns {
    /// The status the state has whatever the clock says (`revoked`, `canceled`, `suspended`,
    /// `paused`, `past_due`), else `trial` (trialing until `trial_ends_at`, then expired) or
    /// `term` (active until `expires_at`, if any, then expired).
    pub lifecycle: &'static str,
    /// For a license canceled at a future end only: canceled from then on.
    pub cancel_at: Option<Timestamp>,
    pub trial_ends_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
}

impl ListColumns {
    /// The columns of `state`, in `status_at`'s order of precedence.
    pub fn of(state: &LicenseState) -> Self {
        use domain::validation::LicenseFacts;
        let canceled_for_good = state.canceled() && state.cancel_at().is_none();
        let lifecycle = if state.revoked() {
            "revoked"
        } else if canceled_for_good {
            "canceled"
        } else if state.suspended() {
            "suspended"
        } else if state.paused() {
            "paused"
        } else if state.payment_grace_until().is_some() {
            "past_due"
        } else if state.trial_ends_at().is_some() && !state.subscribed() {
            "trial"
        } else {
            "term"
        };
        Self {
            lifecycle,
            cancel_at: state
                .cancel_at()
                .filter(|_| state.canceled() && !state.revoked()),
            trial_ends_at: state.trial_ends_at,
            expires_at: state.expires_at,
        }
    }
}

/// A license as the fold holds it.
struct Row_ {
    license: License,
    version: i64,
    created_at: Option<Timestamp>,
    updated_at: Option<Timestamp>,
}

/// Licenses folded in memory and the snapshots taken on the way, until they are written (a
/// [`RowFold`]).
#[derive(Default)]
struct Fold {
    rows: HashMap<Uuid, Row_>,
    snapshots: Vec<(Uuid, i64, Timestamp, LicenseState)>,
}

#[async_trait]
impl RowFold for Fold {
    async fn load(
        &mut self,
        conn: &mut PgConnection,
        events: &[LicenseRecord<'_>],
    ) -> Result<(), ProjectionError> {
        let mut ids = Vec::new();
        for e in events {
            let id = Uuid::from(e.license);
            if !self.rows.contains_key(&id) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(());
        }
        for row in
            sqlx::query("SELECT id, state, version, created_at FROM rm_licenses WHERE id = ANY($1)")
                .bind(&ids)
                .fetch_all(&mut *conn)
                .await?
        {
            let id: Uuid = row.try_get("id")?;
            // Straight from the stored text into the state, not through a `serde_json::Value`.
            let Json(state): Json<LicenseState> = row.try_get("state").map_err(|err| {
                ProjectionError::Inconsistent(format!("stored state of {id}: {err}"))
            })?;
            self.rows.insert(
                id,
                Row_ {
                    license: License::Issued(Box::new(state)),
                    version: row.try_get("version")?,
                    created_at: Some(row.try_get("created_at")?),
                    updated_at: None,
                },
            );
        }
        Ok(())
    }

    /// An absent license starts not issued.
    fn fold(&mut self, events: &[LicenseRecord<'_>]) -> Result<(), ProjectionError> {
        for &LicenseRecord {
            record: e,
            license,
            event,
        } in events
        {
            let id = Uuid::from(license);
            let row = self.rows.entry(id).or_insert(Row_ {
                license: License::NotIssued,
                version: 0,
                created_at: None,
                updated_at: None,
            });
            if row.version + 1 != e.sequence {
                return Err(ProjectionError::Inconsistent(format!(
                    "license {id} is at version {} but event {} has sequence {}",
                    row.version, e.event_id, e.sequence
                )));
            }
            // The batch's decoded event is shared with the validation fold; the state takes
            // its own copy.
            row.license.fold(event.clone());
            row.version = e.sequence;
            row.created_at = row.created_at.or(Some(e.recorded_at));
            row.updated_at = Some(e.recorded_at);
            let Some(state) = row.license.state() else {
                return Err(ProjectionError::Inconsistent(format!(
                    "{} at position {} precedes LicenseIssued",
                    e.event_type, e.global_position
                )));
            };
            if e.sequence % SNAPSHOT_EVERY == 0 {
                self.snapshots
                    .push((id, e.sequence, e.recorded_at, state.clone()));
            }
        }
        Ok(())
    }

    fn held(&self) -> usize {
        self.rows.len()
    }

    /// Every license folded since it was loaded, and every snapshot taken.
    async fn write(&mut self, conn: &mut PgConnection, fresh: bool) -> Result<(), ProjectionError> {
        let touched: Vec<(Uuid, Row_)> = self
            .rows
            .drain()
            .filter(|(_, r)| r.updated_at.is_some())
            .collect();
        if fresh {
            copy_all(conn, COPY_LICENSES, 15, &touched, |rows, (id, row)| {
                copy_license(rows, *id, row)
            })
            .await?;
            // A rebuild's whole fold: freed off this worker.
            free_elsewhere(touched);
        } else {
            for chunk in touched.chunks(WRITE_CHUNK) {
                write_licenses(conn, chunk).await?;
            }
        }
        self.write_snapshots(conn).await
    }

    /// Snapshots are only ever inserted: a few long streams can take many while the licenses
    /// held stay few.
    async fn write_inserts(
        &mut self,
        conn: &mut PgConnection,
        hold: usize,
    ) -> Result<(), ProjectionError> {
        if self.snapshots.len() >= hold {
            self.write_snapshots(conn).await?;
        }
        Ok(())
    }
}

impl Fold {
    /// Copies the snapshots taken so far and forgets them (the table only gains rows, so this
    /// may happen at any time).
    async fn write_snapshots(&mut self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        let snapshots = std::mem::take(&mut self.snapshots);
        copy_all(
            conn,
            "COPY rm_license_snapshots (license_id, sequence, recorded_at, state) FROM STDIN (FORMAT binary)",
            4,
            &snapshots,
            |rows, (id, sequence, at, state)| {
                rows.row()
                    .uuid(*id)
                    .i64(*sequence)
                    .timestamptz(*at)?
                    .json(state)?;
                Ok(())
            },
        )
        .await
    }
}

/// Upserts `rows` into `rm_licenses` in one statement.
async fn write_licenses(
    conn: &mut PgConnection,
    rows: &[(Uuid, Row_)],
) -> Result<(), ProjectionError> {
    let n = rows.len();
    let (mut id_col, mut org, mut product, mut app, mut policy) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut key_hash, mut key_prefix, mut state_col, mut created, mut updated, mut version) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut lifecycle, mut cancel_at, mut trial_ends_at, mut expires_at) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (id, row) in rows {
        let state = row.license.state().expect("checked while folding");
        id_col.push(*id);
        org.push(Uuid::from(state.organization_id));
        product.push(Uuid::from(state.product_id));
        app.push(Uuid::from(state.app_id));
        policy.push(Uuid::from(state.policy_id));
        key_hash.push(state.key_hash.as_bytes().to_vec());
        key_prefix.push(state.key_prefix.clone());
        // Serialized straight to text, not through a `serde_json::Value`; bound as `text[]`
        // (sqlx would declare `Json` as jsonb, which the server would parse for nothing).
        state_col.push(
            serde_json::to_string(state)
                .map_err(|err| ProjectionError::Inconsistent(format!("state of {id}: {err}")))?,
        );
        created.push(row.created_at.expect("set while folding"));
        updated.push(row.updated_at.expect("touched"));
        version.push(row.version);
        let listed = ListColumns::of(state);
        lifecycle.push(listed.lifecycle);
        cancel_at.push(listed.cancel_at);
        trial_ends_at.push(listed.trial_ends_at);
        expires_at.push(listed.expires_at);
    }
    sqlx::query(
        "INSERT INTO rm_licenses (id, organization_id, product_id, app_id, policy_id, key_hash, key_prefix, state, created_at, updated_at, version, \
                                  lifecycle, cancel_at, trial_ends_at, expires_at) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::bytea[], $7::text[], $8::text[]::json[], \
                              $9::timestamptz[], $10::timestamptz[], $11::bigint[], \
                              $12::text[], $13::timestamptz[], $14::timestamptz[], $15::timestamptz[]) \
         ON CONFLICT (id) DO UPDATE SET organization_id = EXCLUDED.organization_id, product_id = EXCLUDED.product_id, \
           app_id = EXCLUDED.app_id, policy_id = EXCLUDED.policy_id, key_hash = EXCLUDED.key_hash, \
           key_prefix = EXCLUDED.key_prefix, state = EXCLUDED.state, updated_at = EXCLUDED.updated_at, \
           version = EXCLUDED.version, lifecycle = EXCLUDED.lifecycle, cancel_at = EXCLUDED.cancel_at, \
           trial_ends_at = EXCLUDED.trial_ends_at, expires_at = EXCLUDED.expires_at",
    )
    .bind(&id_col)
    .bind(&org)
    .bind(&product)
    .bind(&app)
    .bind(&policy)
    .bind(&key_hash)
    .bind(&key_prefix)
    .bind(&state_col)
    .bind(&created)
    .bind(&updated)
    .bind(&version)
    .bind(&lifecycle)
    .bind(&cancel_at)
    .bind(&trial_ends_at)
    .bind(&expires_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The columns [`copy_license`] writes, for licenses that have no row yet.
const COPY_LICENSES: &str = "COPY rm_licenses (id, organization_id, product_id, app_id, policy_id, key_hash, \
     key_prefix, state, created_at, updated_at, version, lifecycle, cancel_at, trial_ends_at, expires_at) \
     FROM STDIN (FORMAT binary)";

/// One license as [`COPY_LICENSES`] takes it: the same values as [`write_licenses`] upserts.
fn copy_license(rows: &mut CopyRows, id: Uuid, row: &Row_) -> Result<(), ProjectionError> {
    let state = row.license.state().expect("checked while folding");
    rows.row()
        .uuid(id)
        .uuid(state.organization_id.into())
        .uuid(state.product_id.into())
        .uuid(state.app_id.into())
        .uuid(state.policy_id.into())
        .bytea(state.key_hash.as_bytes())
        .text(&state.key_prefix)
        .json(state)?
        .timestamptz(row.created_at.expect("set while folding"))?
        .timestamptz(row.updated_at.expect("touched"))?
        .i64(row.version);
    let listed = ListColumns::of(state);
    rows.text(listed.lifecycle)
        .opt_timestamptz(listed.cancel_at)?
        .opt_timestamptz(listed.trial_ends_at)?
        .opt_timestamptz(listed.expires_at)?;
    Ok(())
}

#[async_trait]
impl Projection for LicensesProjection {
    fn name(&self) -> &'static str {
        "licenses"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_licenses", "rm_license_snapshots"]
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

impl ReplaySafe for LicensesProjection {
    fn bulk(&self, hold: usize) -> Option<Box<dyn BulkApply>> {
        Some(HeldFold::<Fold>::boxed(hold))
    }
}
