//! `rm_licenses`: every license with the License aggregate's own state, folded with the domain's
//! own `License::fold` — the read model cannot drift from what the aggregate decides on — and
//! `rm_license_snapshots`, that state every [`SNAPSHOT_EVERY`] events, for as-of reads
//! ([`crate::history`]).
//!
//! A batch reads every license it touches in one query, folds in memory and writes back in one
//! statement per table, so a rebuild costs a few round trips per thousand events.

use std::collections::HashMap;

use async_trait::async_trait;
use domain::Timestamp;
use domain::event::RecordedEvent;
use domain::license::{License, LicenseEvent, LicenseState};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::engine::{Projection, ProjectionError, ReplaySafe};

/// A snapshot of a license's state is kept every this many events (see [`crate::history`]).
pub const SNAPSHOT_EVERY: i64 = 100;

/// `rm_licenses` and `rm_license_snapshots`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LicensesProjection;

/// A license as the batch folds it.
struct Row_ {
    license: License,
    version: i64,
    created_at: Option<Timestamp>,
    updated_at: Option<Timestamp>,
}

fn json(state: &LicenseState) -> Result<serde_json::Value, ProjectionError> {
    serde_json::to_value(state).map_err(|err| ProjectionError::Inconsistent(err.to_string()))
}

#[async_trait]
impl Projection for LicensesProjection {
    fn name(&self) -> &'static str {
        "licenses"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_licenses", "rm_license_snapshots"]
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
        let mut ids = Vec::new();
        let mut decoded = Vec::with_capacity(events.len());
        for e in events {
            let id = Uuid::parse_str(&e.aggregate_id).map_err(|_| {
                ProjectionError::Inconsistent(format!("license id {:?}", e.aggregate_id))
            })?;
            ids.push(id);
            decoded.push((id, e, e.decode::<LicenseEvent>()?));
        }
        ids.sort_unstable();
        ids.dedup();
        let mut rows: HashMap<Uuid, Row_> = HashMap::with_capacity(ids.len());
        for row in
            sqlx::query("SELECT id, state, version, created_at FROM rm_licenses WHERE id = ANY($1)")
                .bind(&ids)
                .fetch_all(&mut *conn)
                .await?
        {
            let id: Uuid = row.try_get("id")?;
            let state: LicenseState =
                serde_json::from_value(row.try_get("state")?).map_err(|err| {
                    ProjectionError::Inconsistent(format!("stored state of {id}: {err}"))
                })?;
            rows.insert(
                id,
                Row_ {
                    license: License::Issued(Box::new(state)),
                    version: row.try_get("version")?,
                    created_at: Some(row.try_get("created_at")?),
                    updated_at: None,
                },
            );
        }
        let mut snapshots: Vec<(Uuid, i64, Timestamp, serde_json::Value)> = Vec::new();
        for (id, e, event) in decoded {
            let row = rows.entry(id).or_insert(Row_ {
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
            row.license.fold(event);
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
                snapshots.push((id, e.sequence, e.recorded_at, json(state)?));
            }
        }
        let touched: Vec<(&Uuid, &Row_)> = rows
            .iter()
            .filter(|(_, r)| r.updated_at.is_some())
            .collect();
        let n = touched.len();
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
        for (id, row) in touched {
            let state = row.license.state().expect("checked while folding");
            id_col.push(*id);
            org.push(Uuid::from(state.organization_id));
            product.push(Uuid::from(state.product_id));
            app.push(Uuid::from(state.app_id));
            policy.push(Uuid::from(state.policy_id));
            key_hash.push(state.key_hash.as_bytes().to_vec());
            key_prefix.push(state.key_prefix.clone());
            state_col.push(json(state)?);
            created.push(row.created_at.expect("set while folding"));
            updated.push(row.updated_at.expect("touched"));
            version.push(row.version);
        }
        sqlx::query(
            "INSERT INTO rm_licenses (id, organization_id, product_id, app_id, policy_id, key_hash, key_prefix, state, created_at, updated_at, version) \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::bytea[], $7::text[], $8::jsonb[], \
                                  $9::timestamptz[], $10::timestamptz[], $11::bigint[]) \
             ON CONFLICT (id) DO UPDATE SET organization_id = EXCLUDED.organization_id, product_id = EXCLUDED.product_id, \
               app_id = EXCLUDED.app_id, policy_id = EXCLUDED.policy_id, key_hash = EXCLUDED.key_hash, \
               key_prefix = EXCLUDED.key_prefix, state = EXCLUDED.state, updated_at = EXCLUDED.updated_at, \
               version = EXCLUDED.version",
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
        .execute(&mut *conn)
        .await?;
        if !snapshots.is_empty() {
            let (mut ids, mut seqs, mut times, mut states) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (id, seq, at, state) in snapshots {
                ids.push(id);
                seqs.push(seq);
                times.push(at);
                states.push(state);
            }
            sqlx::query(
                "INSERT INTO rm_license_snapshots (license_id, sequence, recorded_at, state) \
                 SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::timestamptz[], $4::jsonb[])",
            )
            .bind(&ids)
            .bind(&seqs)
            .bind(&times)
            .bind(&states)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

impl ReplaySafe for LicensesProjection {}
