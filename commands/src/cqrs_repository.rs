//! Our store as a cqrs-es `PersistedEventRepository`, so cqrs-es's own `PersistedEventStore` and
//! `CqrsFramework` can run on it and get its guarantees (commit order, hash chain, append-only).
//!
//! The ledger's own write path is [`crate::executor`], which also returns the new state and the
//! assigned positions and applies unique claims; cqrs-es's framework returns nothing and knows no
//! claims, so events written through this adapter claim nothing (docs/adr/0002). Snapshots are not
//! supported: `get_snapshot` is always `None` and snapshot updates are refused, because cqrs-es
//! 0.5 commits events before checking a snapshot row (ARCHITECTURE.md).

use cqrs_es::Aggregate;
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use domain::event::RecordedEvent;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::store::{AppendBatch, AppendError, EVENT_COLUMNS, EventStore, NewEvent};

fn connection(e: sqlx::Error) -> PersistenceError {
    PersistenceError::ConnectionError(Box::new(e))
}

/// cqrs-es keeps payloads externally tagged (`{"Type": {..}}`); we store the inner object.
fn to_serialized(event: RecordedEvent) -> SerializedEvent {
    let mut tagged = Map::with_capacity(1);
    tagged.insert(event.event_type.clone(), event.payload);
    SerializedEvent {
        aggregate_id: event.aggregate_id,
        sequence: usize::try_from(event.sequence).unwrap_or(usize::MAX),
        aggregate_type: event.aggregate_type,
        event_type: event.event_type,
        event_version: event.event_version,
        payload: Value::Object(tagged),
        metadata: event.metadata,
    }
}

fn untag(event: &SerializedEvent) -> Result<Value, PersistenceError> {
    match &event.payload {
        Value::Object(map) if map.len() == 1 && map.contains_key(&event.event_type) => {
            Ok(map[&event.event_type].clone())
        }
        _ => Err(PersistenceError::UnknownError(
            format!(
                "{} payload is not tagged with its event type",
                event.event_type
            )
            .into(),
        )),
    }
}

impl EventStore {
    async fn feed(
        &self,
        sql: String,
        binds: Vec<String>,
    ) -> Result<ReplayStream, PersistenceError> {
        let mut query = sqlx::query(&sql);
        for b in &binds {
            query = query.bind(b);
        }
        let rows = query.fetch_all(self.pool()).await.map_err(connection)?;
        let (mut feed, stream) = ReplayStream::new(rows.len().max(1));
        for row in &rows {
            let event = crate::store::recorded_event_from_row(row).map_err(connection)?;
            feed.push(Ok(to_serialized(event))).await?;
        }
        Ok(stream)
    }
}

impl PersistedEventRepository for EventStore {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.get_last_events::<A>(aggregate_id, 0).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let after = i64::try_from(last_sequence).unwrap_or(i64::MAX);
        let events = self
            .load_stream(A::TYPE, aggregate_id, after)
            .await
            .map_err(connection)?;
        Ok(events.into_iter().map(to_serialized).collect())
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        _aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        Ok(None)
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        if snapshot_update.is_some() {
            return Err(PersistenceError::UnknownError(
                "snapshots are not supported by the ledger's event store".into(),
            ));
        }
        let Some(first) = events.first() else {
            return Ok(());
        };
        let batch = AppendBatch {
            aggregate_type: A::TYPE.to_owned(),
            aggregate_id: first.aggregate_id.clone(),
            expected_version: i64::try_from(first.sequence).unwrap_or(i64::MAX) - 1,
            claims: Vec::new(),
            events: events
                .iter()
                .map(|e| {
                    Ok(NewEvent {
                        event_id: Uuid::now_v7(),
                        event_type: e.event_type.clone(),
                        event_version: e.event_version.clone(),
                        payload: untag(e)?,
                        metadata: e.metadata.clone(),
                    })
                })
                .collect::<Result<_, PersistenceError>>()?,
        };
        match self.append(&batch).await {
            Ok(_) => Ok(()),
            Err(AppendError::Conflict | AppendError::IdempotencyKeyTaken) => {
                Err(PersistenceError::OptimisticLockError)
            }
            Err(AppendError::ClaimTaken { scope, value }) => Err(PersistenceError::UnknownError(
                format!("{scope} {value} is already taken").into(),
            )),
            Err(AppendError::Database(e)) => Err(connection(e)),
        }
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence"
        );
        self.feed(sql, vec![A::TYPE.to_owned(), aggregate_id.to_owned()])
            .await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        // Commit order, not sequence order: see ARCHITECTURE.md.
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_type = $1 \
             AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY events.tx_id, events.global_position"
        );
        self.feed(sql, vec![A::TYPE.to_owned()]).await
    }
}
