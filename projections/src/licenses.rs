//! `rm_licenses`: every license with the License aggregate's own state, folded with the domain's
//! own `License::fold` — the read model cannot drift from what the aggregate decides on, and the
//! validation model (kept in memory by the API) loads from this table.

use async_trait::async_trait;
use domain::event::RecordedEvent;
use domain::license::{License, LicenseEvent, LicenseState};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::engine::{Projection, ProjectionError, ReplaySafe};

/// `rm_licenses`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LicensesProjection;

#[async_trait]
impl Projection for LicensesProjection {
    fn name(&self) -> &'static str {
        "licenses"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_licenses"]
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        &["License"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        e: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let id = Uuid::parse_str(&e.aggregate_id).map_err(|_| {
            ProjectionError::Inconsistent(format!("license id {:?}", e.aggregate_id))
        })?;
        let event = e.decode::<LicenseEvent>()?;
        let current = sqlx::query("SELECT state, version FROM rm_licenses WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        let mut license = match &current {
            None => License::NotIssued,
            Some(row) => {
                let version: i64 = row.try_get("version")?;
                if version + 1 != e.sequence {
                    return Err(ProjectionError::Inconsistent(format!(
                        "license {id} is at version {version} but event {} has sequence {}",
                        e.event_id, e.sequence
                    )));
                }
                let state: LicenseState =
                    serde_json::from_value(row.try_get("state")?).map_err(|err| {
                        ProjectionError::Inconsistent(format!("stored state of {id}: {err}"))
                    })?;
                License::Issued(Box::new(state))
            }
        };
        license.fold(event);
        let Some(state) = license.state() else {
            return Err(ProjectionError::Inconsistent(format!(
                "{} at position {} precedes LicenseIssued",
                e.event_type, e.global_position
            )));
        };
        let state_json = serde_json::to_value(state)
            .map_err(|err| ProjectionError::Inconsistent(err.to_string()))?;
        sqlx::query(
            "INSERT INTO rm_licenses (id, organization_id, product_id, app_id, policy_id, key_hash, key_prefix, state, created_at, updated_at, version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10) \
             ON CONFLICT (id) DO UPDATE SET organization_id = $2, product_id = $3, app_id = $4, policy_id = $5, \
               key_hash = $6, key_prefix = $7, state = $8, updated_at = $9, version = $10",
        )
        .bind(id)
        .bind(Uuid::from(state.organization_id))
        .bind(Uuid::from(state.product_id))
        .bind(Uuid::from(state.app_id))
        .bind(Uuid::from(state.policy_id))
        .bind(&state.key_hash.as_bytes()[..])
        .bind(&state.key_prefix)
        .bind(state_json)
        .bind(e.recorded_at)
        .bind(e.sequence)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

impl ReplaySafe for LicensesProjection {}
