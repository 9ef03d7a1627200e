//! `rm_audit`: one row per event — who (actor), what (event type), on what (stream), when, and
//! which request (correlation) — for `GET /v1/audit`. Every aggregate type, in commit order.
//!
//! A row is written from a [`RecordedEvent`] by the live projector and from a [`ReplayEvent`]
//! (metadata still JSON text) by a rebuild; both go through [`write_row`], and [`Meta`] reads the
//! four metadata fields (`actor`, `correlation_id`, `causation_id`, `impersonated_by`) from either
//! as `serde_json::Value::as_str` would.

use domain::AggregateType;
use std::borrow::Cow;

use async_trait::async_trait;
use domain::event::RecordedEvent;
use serde::Deserialize;
use serde_json::value::RawValue;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::copy::{CopyRows, copy_all};
use crate::engine::{
    BulkApply, Projection, ProjectionError, RecordFields, ReplayBatch, ReplayEvent, ReplaySafe,
};

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
    fn aggregate_types(&self) -> &'static [AggregateType] {
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
        copy_all(conn, COPY, 12, events, add_row).await
    }
}

/// The columns, in the order [`add_row`] writes them.
const COPY: &str = "COPY rm_audit (position, event_id, recorded_at, actor, action, subject_type, subject_id, \
     sequence, license_id, correlation_id, causation_id, impersonated_by) FROM STDIN (FORMAT binary)";

/// The audit row of one event, as the live projector reads it.
fn add_row(rows: &mut CopyRows, e: &RecordedEvent) -> Result<(), ProjectionError> {
    write_row(rows, e.into(), &Meta::of_value(&e.metadata))
}

/// The audit row of one event, as a rebuild reads it.
fn add_replayed_row(rows: &mut CopyRows, e: &ReplayEvent) -> Result<(), ProjectionError> {
    let meta = Meta::read(&e.metadata).map_err(|err| {
        ProjectionError::Inconsistent(format!(
            "metadata of event {} at position {}: {err}",
            e.event_id, e.global_position
        ))
    })?;
    write_row(rows, e.into(), &meta)
}

/// The columns of [`COPY`], in order.
fn write_row(
    rows: &mut CopyRows,
    e: RecordFields<'_>,
    meta: &Meta<'_>,
) -> Result<(), ProjectionError> {
    rows.row()
        .i64(e.global_position)
        .uuid(e.event_id)
        .timestamptz(e.recorded_at)?
        .text(meta.actor.as_deref().unwrap_or("unknown"))
        .text(e.event_type)
        .text(e.aggregate_type)
        .text(e.aggregate_id)
        .i64(e.sequence)
        .opt_uuid(
            (e.aggregate_type == AggregateType::License.as_str())
                .then(|| Uuid::parse_str(e.aggregate_id).ok())
                .flatten(),
        )
        .opt_text(meta.correlation_id.as_deref())
        .opt_text(meta.causation_id.as_deref())
        .opt_text(meta.impersonated_by.as_deref());
    Ok(())
}

/// The metadata fields an audit row keeps: each the field's string, or `None` when the field is
/// absent or not a string, or the metadata not an object (what `Value::get(..)?.as_str()` gives).
#[derive(Debug, Default, PartialEq, Eq)]
struct Meta<'a> {
    actor: Option<Cow<'a, str>>,
    correlation_id: Option<Cow<'a, str>>,
    causation_id: Option<Cow<'a, str>>,
    impersonated_by: Option<Cow<'a, str>>,
}

/// The four fields as they stand in the JSON text, other fields skipped unread.
#[derive(Deserialize)]
struct RawMeta<'a> {
    #[serde(borrow, default)]
    actor: Option<&'a RawValue>,
    #[serde(borrow, default)]
    correlation_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    causation_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    impersonated_by: Option<&'a RawValue>,
}

impl<'a> Meta<'a> {
    /// The fields of metadata read as a `Value`: the live projector's reading, which
    /// [`Meta::read`] must equal.
    fn of_value(metadata: &'a serde_json::Value) -> Self {
        Self {
            actor: text(metadata, "actor").map(Cow::Borrowed),
            correlation_id: text(metadata, "correlation_id").map(Cow::Borrowed),
            causation_id: text(metadata, "causation_id").map(Cow::Borrowed),
            impersonated_by: text(metadata, "impersonated_by").map(Cow::Borrowed),
        }
    }

    /// The same fields, owning their strings.
    fn into_owned(self) -> Meta<'static> {
        let own = |field: Option<Cow<'_, str>>| field.map(|s| Cow::Owned(s.into_owned()));
        Meta {
            actor: own(self.actor),
            correlation_id: own(self.correlation_id),
            causation_id: own(self.causation_id),
            impersonated_by: own(self.impersonated_by),
        }
    }

    /// Reads the fields from metadata stored as JSON text, without building the object when it
    /// can. The store's `json` columns keep the text as written, so an object may name a field
    /// twice: the struct reading refuses that, and the text is then read as a `Value`, which
    /// keeps the last (as PostgreSQL's `->>` does). Either way the result is the live reading's.
    fn read(metadata: &'a RawValue) -> Result<Self, serde_json::Error> {
        let json = metadata.get();
        // Anything but an object has none of the fields (and a struct would also read an array).
        if !json.trim_start().starts_with('{') {
            return Ok(Self::default());
        }
        let direct = serde_json::from_str::<RawMeta<'a>>(json).and_then(|raw| {
            Ok(Self {
                actor: string(raw.actor)?,
                correlation_id: string(raw.correlation_id)?,
                causation_id: string(raw.causation_id)?,
                impersonated_by: string(raw.impersonated_by)?,
            })
        });
        direct.or_else(|_| {
            let value: serde_json::Value = serde_json::from_str(json)?;
            Ok(Meta::of_value(&value).into_owned())
        })
    }
}

/// The string a JSON value holds, borrowed when it has no escapes; `None` for any other value.
fn string(value: Option<&RawValue>) -> Result<Option<Cow<'_, str>>, serde_json::Error> {
    let Some(text) = value.map(RawValue::get) else {
        return Ok(None);
    };
    if !text.starts_with('"') {
        return Ok(None);
    }
    if text.contains('\\') {
        return serde_json::from_str::<String>(text).map(|s| Some(Cow::Owned(s)));
    }
    Ok(Some(Cow::Borrowed(&text[1..text.len() - 1])))
}

/// A rebuild's applier: each batch's rows copied in from the events as read, one `COPY` per
/// batch as the live projector does, without turning their metadata into `Value`s first.
struct ReplayRows;

#[async_trait]
impl BulkApply for ReplayRows {
    async fn feed(
        &mut self,
        conn: &mut PgConnection,
        batch: &ReplayBatch,
    ) -> Result<(), ProjectionError> {
        copy_all(conn, COPY, 12, batch.events(), add_replayed_row).await
    }

    async fn finish(&mut self, _: &mut PgConnection) -> Result<(), ProjectionError> {
        Ok(())
    }

    fn folds_licenses(&self) -> bool {
        false
    }
}

/// Its rows depend on one event each and are only ever inserted: a rebuild copies them in batch
/// by batch like the live projector, from the events as it reads them.
impl ReplaySafe for AuditProjection {
    fn bulk(&self, _hold: usize) -> Option<Box<dyn BulkApply>> {
        Some(Box::new(ReplayRows))
    }

    /// One `COPY` per batch, nothing else: `rm_audit` only gains rows.
    fn only_inserts(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// The rebuild's reading of the metadata text gives what the live projector's reading of the
    /// same metadata as a `Value` gives, for every shape metadata could take.
    #[test]
    fn metadata_text_reads_as_the_value_does() {
        let cases = [
            r#"{"actor": "api_token:0189", "correlation_id": "req_1", "causation_id": "ev_2"}"#,
            r#"{"actor": "client"}"#,
            r#"{"correlation_id": "c", "other": {"actor": "nested"}, "list": [1, "x"]}"#,
            r#"{"actor": 7, "correlation_id": null, "causation_id": ["a"]}"#,
            r#"{"actor": {"id": "x"}, "correlation_id": true, "causation_id": 1.5}"#,
            r#"{"actor": "quote \" and \\ and \u00e9 and \n", "correlation_id": "caf\u00e9"}"#,
            r#"{"actor": "plain é unicode"}"#,
            // `json` keeps a key given twice; the last one counts, as for `->>`.
            r#"{"actor": "first", "actor": "second", "correlation_id": "c"}"#,
            r#"{"actor": "first", "actor": 7}"#,
            r#"{"causation_id": 1, "causation_id": "later", "other": 1, "other": 2}"#,
            r#"{}"#,
            r#"  {"actor": "leading space"}"#,
            r#"["actor", "correlation_id", "causation_id"]"#,
            r#""actor""#,
            r#"null"#,
            r#"42"#,
        ];
        for case in cases {
            let value: Value = serde_json::from_str(case).unwrap();
            let expected = Meta::of_value(&value);
            let raw: Box<RawValue> = serde_json::from_str(case).unwrap();
            assert_eq!(Meta::read(&raw).unwrap(), expected, "metadata {case}");
        }
    }

    /// A string without escapes is borrowed from the text; one with escapes is unescaped.
    #[test]
    fn plain_strings_are_borrowed_and_escaped_ones_unescaped() {
        let raw: Box<RawValue> =
            serde_json::from_str(r#"{"actor": "client", "correlation_id": "a\/b"}"#).unwrap();
        let meta = Meta::read(&raw).unwrap();
        assert!(matches!(meta.actor, Some(Cow::Borrowed("client"))));
        assert_eq!(meta.correlation_id.as_deref(), Some("a/b"));
    }
}
