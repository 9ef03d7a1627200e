//! `rm_audit`: one row per event — who (actor), what (event type), on what (stream), when, and
//! which request (correlation) — for `GET /v1/audit`. Every aggregate type, in commit order.

use async_trait::async_trait;
use domain::event::RecordedEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::engine::{Projection, ProjectionError, ReplaySafe};

/// `rm_audit`.
#[derive(Clone, Copy, Debug, Default)]
pub struct AuditProjection;

fn text(metadata: &serde_json::Value, key: &str) -> Option<String> {
    metadata
        .get(key)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

#[async_trait]
impl Projection for AuditProjection {
    fn name(&self) -> &'static str {
        "audit"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_audit"]
    }
    fn aggregate_types(&self) -> &'static [&'static str] {
        &[]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        e: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(conn, std::slice::from_ref(e)).await
    }

    /// One multi-row insert per batch.
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let (mut position, mut event_id, mut recorded_at, mut actor, mut action) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (
            mut subject_type,
            mut subject_id,
            mut sequence,
            mut license_id,
            mut correlation,
            mut causation,
        ) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for e in events {
            position.push(e.global_position);
            event_id.push(e.event_id);
            recorded_at.push(e.recorded_at);
            actor.push(text(&e.metadata, "actor").unwrap_or_else(|| "unknown".to_owned()));
            action.push(e.event_type.as_str());
            subject_type.push(e.aggregate_type.as_str());
            subject_id.push(e.aggregate_id.as_str());
            sequence.push(e.sequence);
            license_id.push(
                (e.aggregate_type == "License")
                    .then(|| Uuid::parse_str(&e.aggregate_id).ok())
                    .flatten(),
            );
            correlation.push(text(&e.metadata, "correlation_id"));
            causation.push(text(&e.metadata, "causation_id"));
        }
        sqlx::query(
            "INSERT INTO rm_audit (position, event_id, recorded_at, actor, action, subject_type, subject_id, sequence, \
               license_id, correlation_id, causation_id) \
             SELECT * FROM UNNEST($1::bigint[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], \
                                  $7::text[], $8::bigint[], $9::uuid[], $10::text[], $11::text[])",
        )
        .bind(&position)
        .bind(&event_id)
        .bind(&recorded_at)
        .bind(&actor)
        .bind(&action)
        .bind(&subject_type)
        .bind(&subject_id)
        .bind(&sequence)
        .bind(&license_id)
        .bind(&correlation)
        .bind(&causation)
        .execute(conn)
        .await?;
        Ok(())
    }
}

impl ReplaySafe for AuditProjection {}
