//! The records the checks read (an event, a signed checkpoint, as either source stores them) and
//! what they report ([`Failure`], [`Summary`]).

use std::fmt;

use domain::Timestamp;
use domain::integrity::CanonicalFields;
use uuid::Uuid;

/// One event as stored: the fields its hash covers, with payload and metadata as exact text.
#[derive(Clone, Debug)]
pub struct EventRecord {
    pub position: i64,
    pub tx_id: i64,
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub recorded_at: Timestamp,
    pub payload: String,
    pub metadata: String,
    pub hash: Vec<u8>,
    /// The stream's previous hash as the source states it: used only for the first event of a
    /// stream seen in a partial export (which starts mid-stream).
    pub previous_hash: Option<[u8; 32]>,
}

impl EventRecord {
    pub(super) fn fields(&self) -> CanonicalFields<'_> {
        CanonicalFields {
            event_id: self.event_id,
            global_position: self.position,
            aggregate_type: &self.aggregate_type,
            aggregate_id: &self.aggregate_id,
            sequence: self.sequence,
            event_type: &self.event_type,
            event_version: &self.event_version,
            recorded_at: self.recorded_at,
            payload_text: &self.payload,
            metadata_text: &self.metadata,
        }
    }
}

/// One signed checkpoint as stored.
#[derive(Clone, Debug)]
pub struct CheckpointRecord {
    pub checkpoint_id: i64,
    pub event_count: i64,
    pub tx_id: i64,
    pub global_position: i64,
    pub root: Vec<u8>,
    /// The leaves it added: 40 bytes each, position big-endian then event hash.
    pub leaves: Vec<u8>,
    pub signed_at: Timestamp,
    pub kid: String,
    pub signature: Vec<u8>,
}

/// What is wrong, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The event concerned, when the failure is about one.
    pub position: Option<i64>,
    pub event_id: Option<Uuid>,
    /// `Type/id` of its stream, and its sequence there.
    pub stream: Option<String>,
    pub sequence: Option<i64>,
    /// The checkpoint concerned, when the failure is about one.
    pub checkpoint_id: Option<i64>,
    pub problem: String,
}

impl Failure {
    pub(super) fn at_event(e: &EventRecord, problem: String) -> Self {
        Self {
            position: Some(e.position),
            event_id: Some(e.event_id),
            stream: Some(format!("{}/{}", e.aggregate_type, e.aggregate_id)),
            sequence: Some(e.sequence),
            checkpoint_id: None,
            problem,
        }
    }

    pub(super) fn at_position(position: i64, checkpoint_id: i64, problem: String) -> Self {
        Self {
            position: Some(position),
            event_id: None,
            stream: None,
            sequence: None,
            checkpoint_id: Some(checkpoint_id),
            problem,
        }
    }

    pub(super) fn at_checkpoint(checkpoint_id: i64, problem: String) -> Self {
        Self {
            position: None,
            event_id: None,
            stream: None,
            sequence: None,
            checkpoint_id: Some(checkpoint_id),
            problem,
        }
    }

    /// A failure of the source itself (unreadable row or line).
    pub fn source(problem: String) -> Self {
        Self {
            position: None,
            event_id: None,
            stream: None,
            sequence: None,
            checkpoint_id: None,
            problem,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.position, &self.stream) {
            (Some(position), Some(stream)) => {
                write!(f, "event at position {position} ({stream}")?;
                if let Some(sequence) = self.sequence {
                    write!(f, " #{sequence}")?;
                }
                if let Some(id) = self.event_id {
                    write!(f, ", event_id {id}")?;
                }
                write!(f, "): {}", self.problem)
            }
            (Some(position), None) => write!(f, "event at position {position}: {}", self.problem),
            (None, _) => match self.checkpoint_id {
                Some(id) => write!(f, "checkpoint {id}: {}", self.problem),
                None => write!(f, "{}", self.problem),
            },
        }
    }
}

/// What a successful verification covered.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub events: u64,
    pub streams: u64,
    pub checkpoints: u64,
    /// Events the checkpoints signed (all verified against their leaves).
    pub events_under_checkpoints: u64,
    /// Events after the last checkpoint: chain-checked only.
    pub events_after_last_checkpoint: u64,
    /// The last checkpoint's boundary position (0 when there is none).
    pub last_checkpoint_position: i64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} events in {} streams; {} checkpoints signed the first {} (through position {}); {} after the last checkpoint are chain-checked only",
            self.events,
            self.streams,
            self.checkpoints,
            self.events_under_checkpoints,
            self.last_checkpoint_position,
            self.events_after_last_checkpoint
        )
    }
}
