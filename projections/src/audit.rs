//! `rm_audit`: one row per event — who (actor), what (event type), on what (stream), when, and
//! which request (correlation) — for `GET /v1/audit`. Every aggregate type, in commit order.

use async_trait::async_trait;
use domain::event::RecordedEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::copy::CopyRows;
use crate::engine::{BulkApply, Projection, ProjectionError, ReplaySafe, WRITE_CHUNK};

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
        let mut rows = CopyRows::new(11);
        for e in events {
            add_row(&mut rows, e)?;
        }
        rows.send(conn, COPY).await
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

/// The rebuild's applier: the same rows in `COPY`s of `send_at` rows or more (at most
/// [`WRITE_CHUNK`]), with no transaction per batch.
struct Bulk {
    rows: CopyRows,
    send_at: usize,
}

#[async_trait]
impl BulkApply for Bulk {
    async fn feed(
        &mut self,
        conn: &mut PgConnection,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        for e in events {
            add_row(&mut self.rows, e)?;
        }
        if self.rows.len() >= self.send_at {
            std::mem::replace(&mut self.rows, CopyRows::new(11))
                .send(conn, COPY)
                .await?;
        }
        Ok(())
    }

    async fn finish(&mut self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        std::mem::replace(&mut self.rows, CopyRows::new(11))
            .send(conn, COPY)
            .await
    }
}

impl ReplaySafe for AuditProjection {
    fn bulk(&self, hold: usize) -> Option<Box<dyn BulkApply>> {
        Some(Box::new(Bulk {
            rows: CopyRows::new(11),
            send_at: hold.clamp(1, WRITE_CHUNK),
        }))
    }
}
