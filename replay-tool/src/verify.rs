//! Integrity verification of the log, shared by `ledger-replay verify` (reading the database) and
//! `verify-export` (reading an export file, no database).
//!
//! Three independent checks, none of which trusts anything stored in the database it checks:
//!
//! 1. **Checkpoints**: replaying every checkpoint's leaves, in order, through a fresh
//!    [`LogAccumulator`] must give each checkpoint's event count and root, and each statement must
//!    carry a valid ES256 signature by a key of the auditor's JWKS. A forged or edited checkpoint
//!    fails here.
//! 2. **Hash chains**: every event's hash is recomputed from its content and the hash of the event
//!    before it in its stream ([`chain_hash`]); sequences must run 1, 2, 3... without gaps. An edited
//!    byte, a moved or swapped event, or a removed middle event fails here.
//! 3. **Coverage**: walking the log in commit order, the n-th event must be the n-th leaf the
//!    checkpoints signed (same position, same hash) for as far as the checkpoints reach, so a
//!    stream rewritten with a consistently recomputed chain, or an event removed from the end of a
//!    stream, still fails. Events after the last checkpoint are covered by check 2 only; the
//!    server signs a checkpoint every N events or T seconds to keep that window short.
//!
//! The first failure is reported with the event it concerns (position, stream, sequence, id).

use std::collections::HashMap;
use std::fmt;

use client::jwks::Jwks;
use domain::Timestamp;
use domain::integrity::{
    CanonicalFields, CheckpointStatement, GENESIS_HASH, LogAccumulator, chain_hash,
};
use futures_util::TryStreamExt;
use p256::ecdsa::Signature;
use p256::ecdsa::signature::Verifier as _;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use projections::engine::COMMIT_ORDER;

use crate::progress::Progress;

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
    fn fields(&self) -> CanonicalFields<'_> {
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
    fn at_event(e: &EventRecord, problem: String) -> Self {
        Self {
            position: Some(e.position),
            event_id: Some(e.event_id),
            stream: Some(format!("{}/{}", e.aggregate_type, e.aggregate_id)),
            sequence: Some(e.sequence),
            checkpoint_id: None,
            problem,
        }
    }

    fn at_position(position: i64, checkpoint_id: i64, problem: String) -> Self {
        Self {
            position: Some(position),
            event_id: None,
            stream: None,
            sequence: None,
            checkpoint_id: Some(checkpoint_id),
            problem,
        }
    }

    fn at_checkpoint(checkpoint_id: i64, problem: String) -> Self {
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

/// Whether the source holds the whole log (the database, a full export) or a time window of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coverage {
    /// Every event, in commit order: completeness against the checkpoints is checked.
    Complete,
    /// A window (`export --from/--to`): each event present is checked against the chain and the
    /// signed leaves, but events outside the window cannot be, so nothing is said of completeness.
    Partial,
}

/// Checks events one by one, in commit order; see the module documentation.
pub struct Verifier {
    coverage: Coverage,
    /// Every signed leaf in commit order: `(position, event hash)`.
    leaves: Vec<(i64, [u8; 32])>,
    /// For each checkpoint, the leaf count it ends at and its id (to name it in failures).
    ends: Vec<(usize, i64)>,
    /// Partial coverage: `(position, hash, leaf index)` sorted by position, for lookups.
    by_position: Vec<(i64, [u8; 32], usize)>,
    /// Events checked against a signed leaf.
    signed_seen: u64,
    next_leaf: usize,
    /// `Type/id` -> (last sequence, last hash).
    streams: HashMap<String, (i64, [u8; 32])>,
    events: u64,
    checkpoints: u64,
    last_checkpoint_position: i64,
}

impl Verifier {
    /// Checks the checkpoints (check 1) and prepares for the events.
    ///
    /// # Errors
    /// The first checkpoint that is malformed, out of order, inconsistent with its predecessors'
    /// leaves, or not signed by a key of `keys`. `keys` may be `None` only when there is no
    /// checkpoint.
    pub fn new(
        keys: Option<&Jwks>,
        checkpoints: &[CheckpointRecord],
        coverage: Coverage,
    ) -> Result<Self, Failure> {
        let mut accumulator = LogAccumulator::default();
        let mut leaves = Vec::new();
        let mut ends = Vec::with_capacity(checkpoints.len());
        let mut sorted: Vec<&CheckpointRecord> = checkpoints.iter().collect();
        sorted.sort_by_key(|c| c.event_count);
        for c in sorted {
            let fail = |problem: String| Failure::at_checkpoint(c.checkpoint_id, problem);
            if c.leaves.len() % 40 != 0 || c.leaves.is_empty() {
                return Err(fail(format!(
                    "its leaves are {} bytes, not a positive multiple of 40",
                    c.leaves.len()
                )));
            }
            for leaf in c.leaves.chunks_exact(40) {
                let mut position = [0u8; 8];
                position.copy_from_slice(&leaf[..8]);
                let position = i64::from_be_bytes(position);
                let mut hash = [0u8; 32];
                hash.copy_from_slice(&leaf[8..]);
                accumulator.push(position, &hash);
                leaves.push((position, hash));
            }
            if i64::try_from(accumulator.count) != Ok(c.event_count) {
                return Err(fail(format!(
                    "it claims {} events but the checkpoints up to it hold {} leaves",
                    c.event_count, accumulator.count
                )));
            }
            if leaves.last().map(|(p, _)| *p) != Some(c.global_position) {
                return Err(fail(format!(
                    "its last leaf is not its boundary position {}",
                    c.global_position
                )));
            }
            let root = accumulator.root();
            if c.root.as_slice() != root.as_slice() {
                return Err(fail(format!(
                    "its root {} is not the root of its leaves {}",
                    hex::encode(&c.root),
                    hex::encode(root)
                )));
            }
            let Some(keys) = keys else {
                return Err(fail(
                    "checkpoint signatures need the public keys: pass --jwks FILE (the server's \
                     `ledger keys jwks --all`)"
                        .to_owned(),
                ));
            };
            let Some(key) = keys.key(&c.kid) else {
                return Err(fail(format!(
                    "it is signed by key {}, which is not in the JWKS given",
                    c.kid
                )));
            };
            let statement = CheckpointStatement {
                event_count: accumulator.count,
                tx_id: c.tx_id,
                global_position: c.global_position,
                root,
                signed_at: c.signed_at,
            };
            let valid = Signature::from_slice(&c.signature)
                .is_ok_and(|s| key.verify(&statement.signing_bytes(), &s).is_ok());
            if !valid {
                return Err(fail(format!(
                    "its signature by key {} does not verify",
                    c.kid
                )));
            }
            ends.push((leaves.len(), c.checkpoint_id));
        }
        let by_position = if coverage == Coverage::Partial {
            let mut sorted: Vec<_> = leaves
                .iter()
                .enumerate()
                .map(|(index, (position, hash))| (*position, *hash, index))
                .collect();
            sorted.sort_by_key(|(p, _, _)| *p);
            sorted
        } else {
            Vec::new()
        };
        Ok(Self {
            coverage,
            last_checkpoint_position: leaves.last().map_or(0, |(p, _)| *p),
            checkpoints: ends.len() as u64,
            leaves,
            ends,
            by_position,
            signed_seen: 0,
            next_leaf: 0,
            streams: HashMap::new(),
            events: 0,
        })
    }

    /// The checkpoint that signed leaf `index`.
    fn checkpoint_of(&self, index: usize) -> i64 {
        let at = self.ends.partition_point(|(end, _)| *end <= index);
        self.ends.get(at).map_or(0, |(_, id)| *id)
    }

    /// Checks the next event in commit order (checks 2 and 3).
    ///
    /// # Errors
    /// The first problem found, naming the event.
    pub fn event(&mut self, e: &EventRecord) -> Result<(), Failure> {
        self.events += 1;
        // Check 3 first for positions: when an event is missing, the event found in its place is
        // not the one to blame.
        let stored: [u8; 32] = e.hash.as_slice().try_into().map_err(|_| {
            Failure::at_event(
                e,
                format!("its stored hash is {} bytes, not 32", e.hash.len()),
            )
        })?;
        let signed = match self.coverage {
            Coverage::Complete => match self.leaves.get(self.next_leaf) {
                Some(&(position, hash)) => {
                    let checkpoint = self.checkpoint_of(self.next_leaf);
                    if position != e.position {
                        return Err(Failure::at_position(
                            position,
                            checkpoint,
                            format!(
                                "checkpoint {checkpoint} signed this event as number {} of the log, \
                                 but the log holds the event at position {} there: it was removed or moved",
                                self.next_leaf + 1,
                                e.position
                            ),
                        ));
                    }
                    self.next_leaf += 1;
                    Some((hash, checkpoint))
                }
                None => None,
            },
            Coverage::Partial => self
                .by_position
                .binary_search_by_key(&e.position, |(p, _, _)| *p)
                .ok()
                .map(|i| {
                    let (_, hash, index) = self.by_position[i];
                    (hash, self.checkpoint_of(index))
                }),
        };

        // Check 2: sequence and chain.
        let key = format!("{}/{}", e.aggregate_type, e.aggregate_id);
        let previous = match self.streams.get(&key) {
            Some(&(sequence, hash)) => {
                if e.sequence != sequence + 1 {
                    return Err(Failure::at_event(
                        e,
                        format!(
                            "its stream jumps from sequence {sequence} to {}: events are missing or reordered",
                            e.sequence
                        ),
                    ));
                }
                hash
            }
            None => match (self.coverage, e.previous_hash) {
                (Coverage::Partial, Some(previous)) if e.sequence > 1 => previous,
                _ if e.sequence == 1 => GENESIS_HASH,
                _ => {
                    return Err(Failure::at_event(
                        e,
                        format!(
                            "its stream starts at sequence {} instead of 1: earlier events are missing",
                            e.sequence
                        ),
                    ));
                }
            },
        };
        let computed = chain_hash(&previous, &e.fields());
        if computed != stored {
            return Err(Failure::at_event(
                e,
                "its content does not match its hash: it was altered after it was written \
                 (or an event before it in its stream was)"
                    .to_owned(),
            ));
        }
        if let Some((hash, checkpoint)) = signed
            && hash != stored
        {
            return Err(Failure::at_event(
                e,
                format!(
                    "it is not the event checkpoint {checkpoint} signed at this position: \
                     its stream was rewritten from here on"
                ),
            ));
        }
        if signed.is_some() {
            self.signed_seen += 1;
        }
        self.streams.insert(key, (e.sequence, stored));
        Ok(())
    }

    /// Ends the walk.
    ///
    /// # Errors
    /// With complete coverage, when signed events were never seen (removed from the end).
    pub fn finish(self) -> Result<Summary, Failure> {
        if self.coverage == Coverage::Complete
            && let Some(&(position, _)) = self.leaves.get(self.next_leaf)
        {
            let checkpoint = self.checkpoint_of(self.next_leaf);
            return Err(Failure::at_position(
                position,
                checkpoint,
                format!(
                    "checkpoint {checkpoint} signed this event as number {} of the log, but the log \
                     ends before it: it was removed",
                    self.next_leaf + 1
                ),
            ));
        }
        let under = self.signed_seen;
        Ok(Summary {
            events: self.events,
            streams: self.streams.len() as u64,
            checkpoints: self.checkpoints,
            events_under_checkpoints: under,
            events_after_last_checkpoint: self.events.saturating_sub(under),
            last_checkpoint_position: self.last_checkpoint_position,
        })
    }
}

/// The columns of `events` as an [`EventRecord`] reads them: payload and metadata as their exact
/// stored text, which is what the hash covers.
pub const EVENT_TEXT_COLUMNS: &str = "global_position, tx_id::text::bigint AS tx_id, event_id, \
     aggregate_type, aggregate_id, sequence, event_type, event_version, recorded_at, \
     payload::text AS payload, metadata::text AS metadata, hash";

/// Reads a row selected with [`EVENT_TEXT_COLUMNS`].
///
/// # Errors
/// When a column is missing or of another type.
pub fn event_record(row: &PgRow) -> Result<EventRecord, sqlx::Error> {
    Ok(EventRecord {
        position: row.try_get(0)?,
        tx_id: row.try_get(1)?,
        event_id: row.try_get(2)?,
        aggregate_type: row.try_get(3)?,
        aggregate_id: row.try_get(4)?,
        sequence: row.try_get(5)?,
        event_type: row.try_get(6)?,
        event_version: row.try_get(7)?,
        recorded_at: row.try_get(8)?,
        payload: row.try_get(9)?,
        metadata: row.try_get(10)?,
        hash: row.try_get(11)?,
        previous_hash: None,
    })
}

/// Every checkpoint, oldest first.
///
/// # Errors
/// Database errors.
pub async fn load_checkpoints(
    conn: &mut PgConnection,
) -> Result<Vec<CheckpointRecord>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT checkpoint_id, event_count, tx_id::text::bigint AS tx, global_position, root, leaves, \
                signed_at, kid, signature \
         FROM log_checkpoints ORDER BY event_count",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(CheckpointRecord {
                checkpoint_id: r.try_get("checkpoint_id")?,
                event_count: r.try_get("event_count")?,
                tx_id: r.try_get("tx")?,
                global_position: r.try_get("global_position")?,
                root: r.try_get("root")?,
                leaves: r.try_get("leaves")?,
                signed_at: r.try_get("signed_at")?,
                kid: r.try_get("kid")?,
                signature: r.try_get("signature")?,
            })
        })
        .collect()
}

/// The triggers that keep `events` and `log_checkpoints` append-only, and whether each is
/// present and enabled: a superuser can disable them, and an auditor should hear about it even
/// when the data still verifies.
///
/// # Errors
/// Database errors.
pub async fn append_only_guards(conn: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    let expected = [
        ("events", "events_refuse_update_delete"),
        ("events", "events_refuse_truncate"),
        ("events", "events_before_insert"),
        ("log_checkpoints", "log_checkpoints_refuse_update_delete"),
        ("log_checkpoints", "log_checkpoints_refuse_truncate"),
    ];
    let rows = sqlx::query(
        "SELECT c.relname::text AS tbl, t.tgname::text AS name, t.tgenabled::text AS enabled \
         FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
         WHERE c.relname IN ('events', 'log_checkpoints') AND NOT t.tgisinternal",
    )
    .fetch_all(conn)
    .await?;
    let mut problems = Vec::new();
    for (table, name) in expected {
        let found = rows.iter().find(|r| {
            r.try_get::<String, _>("tbl").is_ok_and(|t| t == table)
                && r.try_get::<String, _>("name").is_ok_and(|n| n == name)
        });
        match found {
            None => problems.push(format!("trigger {name} on {table} is missing")),
            Some(r) if r.try_get::<String, _>("enabled").is_ok_and(|e| e == "D") => {
                problems.push(format!("trigger {name} on {table} is disabled"));
            }
            Some(_) => {}
        }
    }
    Ok(problems)
}

/// Events per message between the reader and the checker.
const BATCH: usize = 2_048;

/// `ledger-replay verify`: every check of the module documentation over the whole database log,
/// in one repeatable-read snapshot (checkpoints and events consistent with each other). Reading
/// and checking overlap: rows stream from the server on this task while another thread hashes.
///
/// Returns the failure (if any) as the inner error; the outer error is operational (database
/// unreachable).
///
/// # Errors
/// Database errors.
pub async fn verify_database(
    pool: &PgPool,
    keys: Option<&Jwks>,
    progress: &Progress,
) -> anyhow::Result<Result<Summary, Failure>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let checkpoints = load_checkpoints(&mut tx).await?;
    let mut verifier = match Verifier::new(keys, &checkpoints, Coverage::Complete) {
        Ok(v) => v,
        Err(failure) => return Ok(Err(failure)),
    };
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<EventRecord>>(16);
    let checker = std::thread::spawn(move || -> Result<Summary, Failure> {
        while let Some(batch) = receiver.blocking_recv() {
            for event in &batch {
                verifier.event(event)?;
            }
        }
        verifier.finish()
    });
    let sql = format!("SELECT {EVENT_TEXT_COLUMNS} FROM events {COMMIT_ORDER}");
    let mut read_error = None;
    {
        let mut rows = sqlx::query(&sql).fetch(&mut *tx);
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            match rows.try_next().await {
                Ok(Some(row)) => match event_record(&row) {
                    Ok(e) => batch.push(e),
                    Err(e) => {
                        read_error = Some(anyhow::Error::from(e));
                        break;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    read_error = Some(e.into());
                    break;
                }
            }
            if batch.len() == BATCH {
                let n = batch.len() as u64;
                if sender
                    .send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                    .await
                    .is_err()
                {
                    break; // the checker stopped at a failure
                }
                progress.inc(n);
            }
        }
        if read_error.is_none() && !batch.is_empty() {
            let n = batch.len() as u64;
            if sender.send(batch).await.is_ok() {
                progress.inc(n);
            }
        }
    }
    drop(sender);
    let outcome = checker
        .join()
        .map_err(|_| anyhow::anyhow!("the verifying thread panicked"))?;
    if let Some(e) = read_error
        && outcome.is_ok()
    {
        return Err(e);
    }
    let guards = append_only_guards(&mut tx).await?;
    tx.rollback().await?;
    Ok(outcome.and_then(|summary| match guards.first() {
        Some(problem) => Err(Failure::source(format!(
            "the events verify, but the append-only guard is off: {problem}"
        ))),
        None => Ok(summary),
    }))
}
