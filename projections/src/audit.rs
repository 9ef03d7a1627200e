//! `rm_audit`: one row per event — who (actor), what (event type), on what (stream), when, and
//! which request (correlation) — for `GET /v1/audit`. Every aggregate type, in commit order.

use async_trait::async_trait;
use domain::event::RecordedEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::copy::{CopyRows, copy_all};
use crate::engine::{Projection, ProjectionError, ReplaySafe};

/// `rm_audit`.
#[derive(Clone, Copy, Debug, Default)]
pub struct AuditProjection;

fn text<'a>(metadata: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    metadata.get(key).and_then(|v| v.as_str())
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

    /// One binary `COPY` per batch: the table only ever gains rows.
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        copy_all(conn, COPY, 11, events, add_row).await
    }
}

/// The columns, in the order [`add_row`] writes them.
const COPY: &str = "COPY rm_audit (position, event_id, recorded_at, actor, action, subject_type, subject_id, \
     sequence, license_id, correlation_id, causation_id) FROM STDIN (FORMAT binary)";

/// The audit row of one event.
fn add_row(rows: &mut CopyRows, e: &RecordedEvent) -> Result<(), ProjectionError> {
    rows.row()
        .i64(e.global_position)
        .uuid(e.event_id)
        .timestamptz(e.recorded_at)?
        .text(text(&e.metadata, "actor").unwrap_or("unknown"))
        .text(&e.event_type)
        .text(&e.aggregate_type)
        .text(&e.aggregate_id)
        .i64(e.sequence)
        .opt_uuid(
            (e.aggregate_type == "License")
                .then(|| Uuid::parse_str(&e.aggregate_id).ok())
                .flatten(),
        )
        .opt_text(text(&e.metadata, "correlation_id"))
        .opt_text(text(&e.metadata, "causation_id"));
    Ok(())
}

/// Its rows depend on one event each and are only ever inserted: the rebuild applies it batch
/// by batch like the live projector (no `bulk` applier to keep).
impl ReplaySafe for AuditProjection {}
