//! Writing the history: the [`Writer`] encodes each event exactly as `commands::store` stores it
//! into per-lane [`Batch`]es, and each lane's insert task writes its batches one after the
//! other, each in one statement with the events' unique claims (see the module documentation of
//! [`super`] for why a stream keeps to one lane).

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, anyhow};
use domain::Timestamp;
use domain::event::{VersionedEvent, encode_payload};
use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::random::{Rng, v7};

/// Rows per `INSERT` statement at most. Small seeds use smaller statements (down to
/// `MIN_BATCH_ROWS`, about twenty per lane), so their log still interleaves streams the way
/// many commits do.
const BATCH_ROWS: usize = 5_000;
const MIN_BATCH_ROWS: usize = 500;

/// Concurrent insert tasks (each over its own streams). The insert trigger (a hash and an index
/// lookup per row) is the cost; more lanes than the database has cores buys nothing.
pub(super) const LANES: usize = 3;

/// Rows for one `INSERT`, column by column.
#[derive(Default)]
pub(super) struct Batch {
    event_id: Vec<Uuid>,
    aggregate_type: Vec<&'static str>,
    aggregate_id: Vec<String>,
    sequence: Vec<i64>,
    event_type: Vec<String>,
    event_version: Vec<String>,
    payload: Vec<String>,
    metadata: Vec<String>,
    claim_scope: Vec<&'static str>,
    claim_value: Vec<String>,
    claim_stream: Vec<String>,
}

impl Batch {
    fn len(&self) -> usize {
        self.event_id.len()
    }
}

/// A stream being written: its id, version and lane.
pub(super) struct Stream {
    id: String,
    version: i64,
    lane: usize,
}

/// Encodes events exactly as `commands` stores them and hands full batches to the lanes.
pub(super) struct Writer {
    /// Ids of events come from a generator of their own, so the history does not shift with them.
    ids: Rng,
    lanes: Vec<Batch>,
    senders: Vec<mpsc::Sender<Batch>>,
    batch_rows: usize,
    next_lane: usize,
    /// Events encoded so far.
    pub(super) events: u64,
}

impl Writer {
    /// A writer over one lane per sender, drawing event ids from `ids`, with statements sized
    /// for a seed of about `planned_events` events.
    pub(super) fn new(senders: Vec<mpsc::Sender<Batch>>, planned_events: u64, ids: Rng) -> Self {
        let lanes = senders.len();
        Self {
            ids,
            lanes: (0..lanes).map(|_| Batch::default()).collect(),
            senders,
            batch_rows: usize::try_from(planned_events / (lanes as u64 * 20))
                .unwrap_or(BATCH_ROWS)
                .clamp(MIN_BATCH_ROWS, BATCH_ROWS),
            next_lane: 0,
            events: 0,
        }
    }

    pub(super) fn stream(&mut self, id: impl Into<String>) -> Stream {
        let lane = self.next_lane;
        self.next_lane = (self.next_lane + 1) % self.lanes.len();
        Stream {
            id: id.into(),
            version: 0,
            lane,
        }
    }

    pub(super) fn emit<E: VersionedEvent>(
        &mut self,
        stream: &mut Stream,
        events: &[E],
        metadata: &str,
        at: Timestamp,
    ) -> anyhow::Result<()> {
        for event in events {
            stream.version += 1;
            let event_id = v7(&mut self.ids, at);
            let batch = &mut self.lanes[stream.lane];
            batch.event_id.push(event_id);
            batch.aggregate_type.push(E::AGGREGATE_TYPE);
            batch.aggregate_id.push(stream.id.clone());
            batch.sequence.push(stream.version);
            batch.event_type.push(event.event_type());
            batch.event_version.push(event.event_version());
            // As `commands::store`: the payload as a JSON value, stored as its compact text.
            batch
                .payload
                .push(serde_json::to_string(&encode_payload(event)?)?);
            batch.metadata.push(metadata.to_owned());
            for claim in event.unique_claims() {
                batch.claim_scope.push(claim.scope);
                batch.claim_value.push(claim.value);
                batch
                    .claim_stream
                    .push(format!("{}/{}", E::AGGREGATE_TYPE, stream.id));
            }
            self.events += 1;
            if batch.len() >= self.batch_rows {
                let full = std::mem::take(batch);
                self.send(stream.lane, full)?;
            }
        }
        Ok(())
    }

    fn send(&self, lane: usize, batch: Batch) -> anyhow::Result<()> {
        self.senders[lane]
            .blocking_send(batch)
            .map_err(|_| anyhow!("the insert tasks stopped"))
    }

    pub(super) fn flush(&mut self) -> anyhow::Result<()> {
        for lane in 0..self.lanes.len() {
            let batch = std::mem::take(&mut self.lanes[lane]);
            if batch.len() > 0 {
                self.send(lane, batch)?;
            }
        }
        Ok(())
    }
}

/// One insert task: its batches, in order, each in a statement of its own.
pub(super) async fn lane(
    pool: &PgPool,
    mut batches: mpsc::Receiver<Batch>,
    done: &AtomicU64,
    planned: u64,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> anyhow::Result<()> {
    while let Some(batch) = batches.recv().await {
        let n = batch.len() as u64;
        insert(pool, &batch).await?;
        let now = done.fetch_add(n, Ordering::Relaxed) + n;
        progress(now, planned.max(now));
    }
    Ok(())
}

/// The append of `commands::store` for many streams at once: claims and events in one statement,
/// rows in the order given so events of one stream chain in sequence.
const INSERT_SQL: &str = "
WITH claims AS (
    INSERT INTO unique_claims (scope, value, stream_id)
    SELECT c.scope, c.value, c.stream_id
    FROM UNNEST($9::text[], $10::text[], $11::text[]) AS c(scope, value, stream_id)
)
INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT e.event_id, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload::json, e.metadata::json
FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[])
    WITH ORDINALITY AS e(event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, n)
ORDER BY e.n";

async fn insert(pool: &PgPool, b: &Batch) -> anyhow::Result<()> {
    sqlx::query(INSERT_SQL)
        .bind(&b.event_id)
        .bind(&b.aggregate_type)
        .bind(&b.aggregate_id)
        .bind(&b.sequence)
        .bind(&b.event_type)
        .bind(&b.event_version)
        .bind(&b.payload)
        .bind(&b.metadata)
        .bind(&b.claim_scope)
        .bind(&b.claim_value)
        .bind(&b.claim_stream)
        .execute(pool)
        .await
        .with_context(|| format!("inserting a batch of {} events", b.len()))?;
    Ok(())
}
