//! Runs a command against an aggregate: load the stream, let the aggregate decide (cqrs-es
//! `Aggregate::handle`), append the events in one statement, and on a concurrency conflict reload
//! and decide again — a bounded number of times, then give up with [`CommandError::Conflict`].
//!
//! Two commands racing on one aggregate can therefore never both succeed on stale state: the
//! loser's append is refused by the database and its command is re-decided on the winner's state.
//! Re-deciding is safe because aggregates are deterministic and side-effect free.
//!
//! One round trip in the common case: the command is decided on the aggregate's cached state (or,
//! for a stream id just generated, on the empty state) and appended at that version. A stale cache
//! only costs a refused append and a reload of the stream's tail; a refusal or no-op decided on a
//! cached state is re-checked against the tail before it is answered.
//!
//! Idempotency: a command carrying a client's `Idempotency-Key` records the key on its first event
//! (unique per actor, enforced by an index). A repeat of the same request finds the key recorded —
//! its append collides with the index, or its decision is refused on the state the first request
//! left — and replays the recorded outcome; a different request with the same key is refused.

use std::time::Duration;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use domain::event::{
    Actor, EventCodecError, EventMetadata, RecordedEvent, VersionedEvent, encode_payload,
};
use domain::{DomainError, Stream, Timestamp};
use uuid::Uuid;

use crate::cache::Cached;
use crate::store::{AppendBatch, AppendError, AppendedEvent, EventStore, NewEvent};

/// How many times a command is decided before a conflict is reported to the caller.
pub const MAX_ATTEMPTS: u32 = 10;

/// Who is acting and why: stamped into every event's metadata.
#[derive(Clone, Debug)]
pub struct CommandContext {
    pub actor: Actor,
    /// The request id (`X-Request-Id`).
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub effective_at: Option<Timestamp>,
    pub idempotency: Option<Idempotency>,
    /// The staff member behind an impersonation token, recorded on every event as
    /// `impersonated_by`.
    pub impersonated_by: Option<Actor>,
}

impl CommandContext {
    /// A context for `actor` in request `correlation_id`.
    pub fn new(actor: Actor, correlation_id: impl Into<String>) -> Self {
        Self {
            actor,
            correlation_id: correlation_id.into(),
            causation_id: None,
            effective_at: None,
            idempotency: None,
            impersonated_by: None,
        }
    }

    fn metadata(&self, first: bool) -> EventMetadata {
        let mut meta = EventMetadata::new(self.actor.clone(), self.correlation_id.clone());
        meta.causation_id.clone_from(&self.causation_id);
        meta.effective_at = self.effective_at;
        meta.impersonated_by.clone_from(&self.impersonated_by);
        if first && let Some(idem) = &self.idempotency {
            meta.idempotency_key = Some(idem.key.clone());
            meta.request_hash = Some(idem.request_hash.clone());
        }
        meta
    }
}

/// A client's idempotency key and a digest of the request it came with.
#[derive(Clone, Debug)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: String,
}

/// The result of a command.
#[derive(Debug)]
pub struct Outcome<A: Stream> {
    /// The stream the command acted on (for a replayed creation: the one created the first time).
    pub id: A::Id,
    /// The aggregate after the command.
    pub aggregate: A,
    /// The stream's version after the command.
    pub version: i64,
    /// The events the command appended (or, replayed, had appended).
    pub appended: Vec<AppendedEvent>,
    /// Whether this is the replay of an earlier request with the same idempotency key.
    pub replayed: bool,
    /// When the stream's first event was recorded.
    pub created_at: Option<Timestamp>,
    /// When the stream's last event (as of this outcome) was recorded.
    pub updated_at: Option<Timestamp>,
    /// The events the command decided (or, replayed, had decided).
    pub events: Vec<A::Event>,
}

/// An aggregate read from its stream, with the events behind it.
#[derive(Debug)]
pub struct Loaded<A> {
    pub aggregate: A,
    pub version: i64,
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
    pub events: Vec<RecordedEvent>,
}

impl<A> Loaded<A> {
    /// Whether the stream has any event (the aggregate exists, or existed at the instant read).
    pub fn exists(&self) -> bool {
        !self.events.is_empty()
    }
}

/// Why a command did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The aggregate refused it.
    #[error(transparent)]
    Rejected(#[from] DomainError),
    /// Other writers kept winning the race for this stream.
    #[error("the {aggregate_type} changed concurrently {attempts} times; retry the request")]
    Conflict {
        aggregate_type: &'static str,
        attempts: u32,
    },
    /// A value the command would claim (an App GUID) belongs to another stream.
    #[error("{scope} {value} is already taken")]
    ClaimTaken { scope: String, value: String },
    /// The idempotency key was first used with a different request.
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    /// A stored event could not be read: corruption or a newer schema.
    #[error("stored event could not be read: {0}")]
    Corrupt(#[from] EventCodecError),
    /// A stored stream id is not an id of its aggregate type: corruption.
    #[error("stored stream {aggregate_type}/{aggregate_id} does not name a {aggregate_type}")]
    CorruptStreamId {
        aggregate_type: &'static str,
        aggregate_id: String,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<AppendError> for CommandError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::ClaimTaken { scope, value } => Self::ClaimTaken { scope, value },
            AppendError::Database(e) => Self::Database(e),
            // Handled by the retry loop; reaching here means it was not retried.
            AppendError::Conflict | AppendError::IdempotencyKeyTaken => Self::Conflict {
                aggregate_type: "stream",
                attempts: 1,
            },
        }
    }
}

fn loaded<A>(events: Vec<RecordedEvent>) -> Result<Loaded<A>, CommandError>
where
    A: Aggregate,
    A::Event: VersionedEvent,
{
    let (aggregate, version) = fold::<A>(&events)?;
    Ok(Loaded {
        aggregate,
        version,
        created_at: events.first().map(|e| e.recorded_at),
        updated_at: events.last().map(|e| e.recorded_at),
        events,
    })
}

/// Folds recorded events into an aggregate.
///
/// # Errors
/// When an event cannot be decoded.
pub fn fold<A>(events: &[RecordedEvent]) -> Result<(A, i64), EventCodecError>
where
    A: Aggregate,
    A::Event: VersionedEvent,
{
    let mut aggregate = A::default();
    let mut version = 0;
    for event in events {
        aggregate.apply(event.decode::<A::Event>()?);
        version = event.sequence;
    }
    Ok((aggregate, version))
}

impl EventStore {
    /// The current state of an aggregate with the events behind it.
    ///
    /// # Errors
    /// Database errors, or an event that cannot be decoded.
    pub async fn read<A>(&self, id: A::Id) -> Result<Loaded<A>, CommandError>
    where
        A: Stream,
        A::Event: VersionedEvent,
    {
        let events = self.load_stream(A::KIND, &id.to_string(), 0).await?;
        loaded(events)
    }

    /// The current state of an aggregate and its version (0 when the stream is empty).
    ///
    /// # Errors
    /// Database errors, or an event that cannot be decoded.
    pub async fn load<A>(&self, id: A::Id) -> Result<(A, i64), CommandError>
    where
        A: Stream,
        A::Event: VersionedEvent,
    {
        let events = self.load_stream(A::KIND, &id.to_string(), 0).await?;
        Ok(fold::<A>(&events)?)
    }

    /// Decides and records `command` on the existing stream `id`; see the module documentation.
    ///
    /// # Errors
    /// [`CommandError`]: refused by the aggregate, lost every race, duplicate claim, reused
    /// idempotency key, or infrastructure.
    pub async fn execute<A>(
        &self,
        id: A::Id,
        command: A::Command,
        ctx: &CommandContext,
    ) -> Result<Outcome<A>, CommandError>
    where
        A: Stream<Error = DomainError, Services = ()> + Clone + 'static,
        A::Event: VersionedEvent,
        A::Command: Clone,
    {
        let cached = self.cache().get::<A>(A::TYPE, &id.to_string());
        self.run(id, command, ctx, cached, false).await
    }

    /// Like [`EventStore::execute`], for a stream id the caller has just generated (a UUID v7):
    /// the stream is known to be empty, so nothing is loaded. Should it exist after all, the
    /// append is refused and the stream is loaded as usual.
    ///
    /// # Errors
    /// See [`EventStore::execute`].
    pub async fn execute_new<A>(
        &self,
        id: A::Id,
        command: A::Command,
        ctx: &CommandContext,
    ) -> Result<Outcome<A>, CommandError>
    where
        A: Stream<Error = DomainError, Services = ()> + Clone + 'static,
        A::Event: VersionedEvent,
        A::Command: Clone,
    {
        self.run(id, command, ctx, Some(Cached::empty()), true)
            .await
    }

    /// The command loop. `base` is the state to decide on (from the cache, or empty for a new
    /// stream); `verified` says whether it is known to be current.
    async fn run<A>(
        &self,
        id: A::Id,
        command: A::Command,
        ctx: &CommandContext,
        mut base: Option<Cached<A>>,
        mut verified: bool,
    ) -> Result<Outcome<A>, CommandError>
    where
        A: Stream<Error = DomainError, Services = ()> + Clone + 'static,
        A::Event: VersionedEvent,
        A::Command: Clone,
    {
        // The stream's text, once: the cache, the locks and the log are keyed by it.
        let aggregate_id = &*id.to_string();
        // Queue behind commands to the same aggregate in this process (see `locks`).
        let _queued = self.locks().lock(A::TYPE, aggregate_id).await;
        if !verified && base.is_none() {
            // While queued, another command may have refreshed the cache.
            base = self.cache().get::<A>(A::TYPE, aggregate_id);
        }
        for attempt in 0..MAX_ATTEMPTS {
            let current = match base.take() {
                Some(current) => current,
                None => {
                    verified = true;
                    self.catch_up(aggregate_id, Cached::empty()).await?
                }
            };
            let mut aggregate = current.aggregate.clone();
            let sink = EventSink::default();
            let decided = aggregate.handle(command.clone(), &(), &sink).await;
            let events = sink.collect().await;
            if decided.is_err() || events.is_empty() {
                if !verified {
                    // Refused or no-op on a cached state: the state may be stale; read the
                    // stream's tail and decide again rather than answer from old news.
                    base = Some(self.catch_up(aggregate_id, current).await?);
                    verified = true;
                    continue;
                }
                if let Some(replay) = self.replay_recorded::<A>(ctx).await? {
                    return Ok(replay);
                }
                decided?;
                return Ok(Outcome {
                    id,
                    aggregate,
                    version: current.version,
                    appended: Vec::new(),
                    replayed: false,
                    created_at: current.created_at,
                    updated_at: current.updated_at,
                    events: Vec::new(),
                });
            }
            let batch = AppendBatch {
                aggregate_type: A::KIND,
                aggregate_id: aggregate_id.to_owned(),
                expected_version: current.version,
                claims: events
                    .iter()
                    .flat_map(VersionedEvent::unique_claims)
                    .collect(),
                events: events
                    .iter()
                    .enumerate()
                    .map(|(i, event)| {
                        Ok(NewEvent {
                            event_id: Uuid::now_v7(),
                            event_type: event.event_type(),
                            event_version: event.event_version(),
                            payload: encode_payload(event)?,
                            metadata: serde_json::to_value(ctx.metadata(i == 0))
                                .expect("metadata serializes"),
                        })
                    })
                    .collect::<Result<_, EventCodecError>>()?,
            };
            match self.append(&batch).await {
                Ok(appended) => {
                    if ctx.idempotency.is_some() && !appended.is_empty() {
                        crate::replays::mark_recorded();
                    }
                    let version = appended.last().map_or(current.version, |e| e.sequence);
                    let created_at = current
                        .created_at
                        .or_else(|| appended.first().map(|e| e.recorded_at));
                    let updated_at = appended
                        .last()
                        .map(|e| e.recorded_at)
                        .or(current.updated_at);
                    self.cache().put(
                        A::TYPE,
                        aggregate_id,
                        Cached {
                            aggregate: aggregate.clone(),
                            version,
                            created_at,
                            updated_at,
                        },
                    );
                    return Ok(Outcome {
                        id,
                        aggregate,
                        version,
                        created_at,
                        updated_at,
                        appended,
                        replayed: false,
                        events,
                    });
                }
                Err(AppendError::Conflict) => {
                    tracing::debug!(
                        aggregate_type = A::TYPE,
                        aggregate_id,
                        attempt,
                        "concurrent append; deciding again on fresh state"
                    );
                    base = Some(self.catch_up(aggregate_id, current).await?);
                    verified = true;
                    backoff(attempt).await;
                }
                Err(AppendError::IdempotencyKeyTaken) => {
                    return match self.replay_recorded::<A>(ctx).await? {
                        Some(replay) => Ok(replay),
                        // The key's first use rolled back after all: decide again.
                        None => continue,
                    };
                }
                Err(AppendError::ClaimTaken { scope, value }) => {
                    // A retried creation claims its value again: that is a replay, not a clash.
                    if let Some(replay) = self.replay_recorded::<A>(ctx).await? {
                        return Ok(replay);
                    }
                    return Err(CommandError::ClaimTaken { scope, value });
                }
                Err(AppendError::Database(e)) => return Err(e.into()),
            }
        }
        Err(CommandError::Conflict {
            aggregate_type: A::TYPE,
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Brings `from` up to the stream's current end (one query for the tail) and caches it.
    async fn catch_up<A>(
        &self,
        aggregate_id: &str,
        from: Cached<A>,
    ) -> Result<Cached<A>, CommandError>
    where
        A: Stream + Clone + 'static,
        A::Event: VersionedEvent,
    {
        let tail = self
            .load_stream(A::KIND, aggregate_id, from.version)
            .await?;
        let mut current = from;
        for event in &tail {
            match event.decode::<A::Event>() {
                Ok(decoded) => current.aggregate.apply(decoded),
                Err(e) => {
                    self.cache().remove(A::TYPE, aggregate_id);
                    return Err(e.into());
                }
            }
            current.version = event.sequence;
            current.created_at = current.created_at.or(Some(event.recorded_at));
            current.updated_at = Some(event.recorded_at);
        }
        self.cache().put(A::TYPE, aggregate_id, current.clone());
        Ok(current)
    }

    /// The recorded outcome of this request's idempotency key, if it was recorded before.
    async fn replay_recorded<A>(
        &self,
        ctx: &CommandContext,
    ) -> Result<Option<Outcome<A>>, CommandError>
    where
        A: Stream,
        A::Event: VersionedEvent,
    {
        let Some(idem) = &ctx.idempotency else {
            return Ok(None);
        };
        match self
            .find_idempotent(&ctx.actor.to_string(), &idem.key)
            .await?
        {
            Some(first) => {
                // Told to the request's front end even when the key proves another request's:
                // it answers from what it stored for the key.
                crate::replays::mark_replayed();
                self.replay::<A>(&first, idem).await.map(Some)
            }
            None => Ok(None),
        }
    }

    /// Whether `key`, in the name of `ctx`'s actor, was recorded on an event by an earlier
    /// request: by this same request (`true`: it ran before), by none (`false`), or by another
    /// (`IdempotencyKeyReused`). For a request of several commands, which asks before one whose
    /// run would record nothing (the offline activation of a device already active).
    ///
    /// # Errors
    /// `IdempotencyKeyReused`; database errors.
    pub async fn recorded(&self, ctx: &CommandContext, key: &str) -> Result<bool, CommandError> {
        let Some(idem) = &ctx.idempotency else {
            return Ok(false);
        };
        match self.find_idempotent(&ctx.actor.to_string(), key).await? {
            Some(first) if same_request(&first, idem) => Ok(true),
            Some(_) => Err(CommandError::IdempotencyKeyReused),
            None => Ok(false),
        }
    }

    /// The outcome of the request that first recorded `first`'s idempotency key: the stream as it
    /// stood after that request's events.
    async fn replay<A>(
        &self,
        first: &RecordedEvent,
        idem: &Idempotency,
    ) -> Result<Outcome<A>, CommandError>
    where
        A: Stream,
        A::Event: VersionedEvent,
    {
        if first.aggregate_type != A::TYPE || !same_request(first, idem) {
            return Err(CommandError::IdempotencyKeyReused);
        }
        let correlation = first.metadata.get("correlation_id").cloned();
        let id: A::Id = first
            .aggregate_id
            .parse()
            .map_err(|_| CommandError::CorruptStreamId {
                aggregate_type: A::TYPE,
                aggregate_id: first.aggregate_id.clone(),
            })?;
        let stream = self.load_stream(A::KIND, &first.aggregate_id, 0).await?;
        // The request's events are `first` and those right after it from the same request.
        let end = stream
            .iter()
            .skip_while(|e| e.sequence < first.sequence)
            .take_while(|e| e.metadata.get("correlation_id") == correlation.as_ref())
            .map(|e| e.sequence)
            .last()
            .unwrap_or(first.sequence);
        let upto: Vec<RecordedEvent> = stream.into_iter().filter(|e| e.sequence <= end).collect();
        let (aggregate, version) = fold::<A>(&upto)?;
        let created_at = upto.first().map(|e| e.recorded_at);
        let updated_at = upto.last().map(|e| e.recorded_at);
        let events = upto
            .iter()
            .filter(|e| e.sequence >= first.sequence)
            .map(RecordedEvent::decode::<A::Event>)
            .collect::<Result<Vec<_>, _>>()?;
        let appended = upto
            .iter()
            .filter(|e| e.sequence >= first.sequence)
            .map(|e| AppendedEvent {
                event_id: e.event_id,
                global_position: e.global_position,
                sequence: e.sequence,
                recorded_at: e.recorded_at,
                hash: e.hash.clone(),
            })
            .collect();
        Ok(Outcome {
            id,
            aggregate,
            version,
            appended,
            replayed: true,
            created_at,
            updated_at,
            events,
        })
    }
}

/// Sleeps a random 0..2^attempt milliseconds (capped at 64): racing writers spread out instead of
/// colliding again in lockstep.
async fn backoff(attempt: u32) {
    let mut bytes = [0u8; 2];
    // If the OS cannot give randomness, retrying without a pause is still correct.
    let _ = getrandom::fill(&mut bytes);
    let ceiling = 1u64 << attempt.min(6);
    let millis = u64::from(u16::from_le_bytes(bytes)) % ceiling;
    tokio::time::sleep(Duration::from_millis(millis)).await;
}

/// Whether the event `first` was recorded by the request `idem` describes (the same digest).
fn same_request(first: &RecordedEvent, idem: &Idempotency) -> bool {
    first.metadata.get("request_hash").and_then(|v| v.as_str()) == Some(idem.request_hash.as_str())
}
