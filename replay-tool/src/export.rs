//! `ledger-replay export` and `verify-export`: the log and its signed checkpoints as JSON Lines,
//! verifiable by an auditor with the public keys alone (no database, no trust in the exporter).
//!
//! # Format `ledger-export/1`
//! One JSON object per line, `kind` first:
//! - `header`: `format`, `exported_at`, `complete` (whole log or a `from`/`to` window of
//!   `recorded_at`), `from`, `to`;
//! - `checkpoint` (every checkpoint, oldest first): `checkpoint_id`, `event_count`, `tx_id`,
//!   `global_position`, `root` (hex), `leaves` (base64 of 40-byte `position || hash` records),
//!   `signed_at` (RFC 3339, microseconds), `kid`, `signature` (base64url, 64-byte r‖s);
//! - `event` (commit order): the stored columns, with `payload` and `metadata` as **strings
//!   holding the exact stored JSON text** (the hash covers those bytes; re-encoding JSON would
//!   change them), `recorded_at` with microseconds, `hash` (hex) and, in a window export,
//!   `previous_hash` (hex) of the event before it in its stream;
//! - `trailer`: the counts of events and checkpoints written, so a truncated file fails.
//!
//! Verification is [`crate::verify::Verifier`], the same code as `ledger-replay verify`.

use std::io::{BufRead, Write};

use anyhow::{Context, bail};
use base64ct::{Base64, Base64UrlUnpadded, Encoding};
use chrono::SecondsFormat;
use client::jwks::Jwks;
use domain::Timestamp;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use projections::engine::COMMIT_ORDER;

use crate::progress::Progress;
use crate::verify::{
    CheckpointRecord, Coverage, EVENT_TEXT_COLUMNS, EventRecord, Failure, Summary, Verifier,
    event_record, load_checkpoints,
};

/// The format name in the header.
pub const FORMAT: &str = "ledger-export/1";

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    Header {
        format: String,
        exported_at: String,
        complete: bool,
        from: Option<String>,
        to: Option<String>,
    },
    Checkpoint {
        checkpoint_id: i64,
        event_count: i64,
        tx_id: i64,
        global_position: i64,
        root: String,
        leaves: String,
        signed_at: String,
        kid: String,
        signature: String,
    },
    Event {
        position: i64,
        tx_id: i64,
        event_id: Uuid,
        aggregate_type: String,
        aggregate_id: String,
        sequence: i64,
        event_type: String,
        event_version: String,
        recorded_at: String,
        payload: String,
        metadata: String,
        hash: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous_hash: Option<String>,
    },
    Trailer {
        events: u64,
        checkpoints: u64,
    },
}

/// What an export wrote.
#[derive(Clone, Debug, Serialize)]
pub struct ExportReport {
    pub events: u64,
    pub checkpoints: u64,
    pub complete: bool,
}

fn time(t: Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn write_line(out: &mut impl Write, line: &Line) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Writes the log (or the events recorded in `[from, to]`) and every checkpoint to `out`, from
/// one consistent snapshot.
///
/// # Errors
/// Database and I/O errors.
pub async fn export(
    pool: &PgPool,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    out: &mut impl Write,
    progress: &Progress,
) -> anyhow::Result<ExportReport> {
    let complete = from.is_none() && to.is_none();
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let exported_at: Timestamp = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *tx)
        .await?;
    write_line(
        out,
        &Line::Header {
            format: FORMAT.to_owned(),
            exported_at: time(exported_at),
            complete,
            from: from.map(time),
            to: to.map(time),
        },
    )?;
    let checkpoints = load_checkpoints(&mut tx).await?;
    for c in &checkpoints {
        write_line(
            out,
            &Line::Checkpoint {
                checkpoint_id: c.checkpoint_id,
                event_count: c.event_count,
                tx_id: c.tx_id,
                global_position: c.global_position,
                root: hex::encode(&c.root),
                leaves: Base64::encode_string(&c.leaves),
                signed_at: time(c.signed_at),
                kid: c.kid.clone(),
                signature: Base64UrlUnpadded::encode_string(&c.signature),
            },
        )?;
    }
    // A window starts mid-stream: each event carries the hash before it, so the chain can be
    // checked from there (and, where a checkpoint signed the event, against the signature).
    let sql = if complete {
        format!(
            "SELECT {EVENT_TEXT_COLUMNS}, NULL::bytea AS previous_hash FROM events {COMMIT_ORDER}"
        )
    } else {
        format!(
            "SELECT {EVENT_TEXT_COLUMNS}, \
               (SELECT p.hash FROM events p WHERE p.aggregate_type = events.aggregate_type \
                  AND p.aggregate_id = events.aggregate_id AND p.sequence = events.sequence - 1) AS previous_hash \
             FROM events WHERE ($1::timestamptz IS NULL OR recorded_at >= $1) \
               AND ($2::timestamptz IS NULL OR recorded_at <= $2) \
             {COMMIT_ORDER}"
        )
    };
    let mut events = 0_u64;
    {
        let query = if complete {
            sqlx::query(&sql)
        } else {
            sqlx::query(&sql).bind(from).bind(to)
        };
        let mut rows = query.fetch(&mut *tx);
        while let Some(row) = rows.try_next().await? {
            let e = event_record(&row)?;
            let previous: Option<Vec<u8>> = row.try_get("previous_hash")?;
            write_line(
                out,
                &Line::Event {
                    position: e.position,
                    tx_id: e.tx_id,
                    event_id: e.event_id,
                    aggregate_type: e.aggregate_type,
                    aggregate_id: e.aggregate_id,
                    sequence: e.sequence,
                    event_type: e.event_type,
                    event_version: e.event_version,
                    recorded_at: time(e.recorded_at),
                    payload: e.payload,
                    metadata: e.metadata,
                    hash: hex::encode(&e.hash),
                    previous_hash: previous.map(hex::encode),
                },
            )?;
            events += 1;
            if events.is_multiple_of(1024) {
                progress.inc(1024);
            }
        }
    }
    progress.inc(events % 1024);
    write_line(
        out,
        &Line::Trailer {
            events,
            checkpoints: checkpoints.len() as u64,
        },
    )?;
    out.flush()?;
    tx.rollback().await?;
    Ok(ExportReport {
        events,
        checkpoints: checkpoints.len() as u64,
        complete,
    })
}

fn parse_time(text: &str, what: &str) -> Result<Timestamp, String> {
    domain::parse_instant(text)
        .map_err(|e| format!("{what} {text:?} is not an RFC 3339 instant: {e}"))
}

fn unhex(text: &str, what: &str) -> Result<Vec<u8>, String> {
    hex::decode(text).map_err(|e| format!("{what} is not hex: {e}"))
}

/// Verifies an export with the public keys alone; the outer error is operational (unreadable
/// file), the inner one names the first problem.
///
/// # Errors
/// I/O errors reading `input`.
pub fn verify_export(
    input: impl BufRead,
    keys: Option<&Jwks>,
    progress: &Progress,
) -> anyhow::Result<Result<Summary, Failure>> {
    let mut lines = input.lines().enumerate();
    let at_line = |n: usize, problem: String| Failure::source(format!("line {}: {problem}", n + 1));

    let Some((n, first)) = lines.next() else {
        return Ok(Err(Failure::source("the export is empty".to_owned())));
    };
    let first = first.context("reading the export")?;
    let coverage = match serde_json::from_str::<Line>(&first) {
        Ok(Line::Header {
            format, complete, ..
        }) if format == FORMAT => {
            if complete {
                Coverage::Complete
            } else {
                Coverage::Partial
            }
        }
        Ok(Line::Header { format, .. }) => {
            return Ok(Err(at_line(
                n,
                format!("unknown export format {format:?} (this tool reads {FORMAT})"),
            )));
        }
        _ => return Ok(Err(at_line(n, format!("not a {FORMAT} header")))),
    };

    let mut checkpoints = Vec::new();
    let mut verifier: Option<Verifier> = None;
    let mut events = 0_u64;
    let mut trailer = None;
    for (n, line) in lines {
        let line = line.context("reading the export")?;
        if trailer.is_some() {
            return Ok(Err(at_line(n, "content after the trailer".to_owned())));
        }
        let parsed = match serde_json::from_str::<Line>(&line) {
            Ok(parsed) => parsed,
            Err(e) => return Ok(Err(at_line(n, format!("not a valid export line: {e}")))),
        };
        match parsed {
            Line::Header { .. } => return Ok(Err(at_line(n, "a second header".to_owned()))),
            Line::Checkpoint {
                checkpoint_id,
                event_count,
                tx_id,
                global_position,
                root,
                leaves,
                signed_at,
                kid,
                signature,
            } => {
                if verifier.is_some() {
                    return Ok(Err(at_line(n, "a checkpoint after the events".to_owned())));
                }
                let record = (|| -> Result<CheckpointRecord, String> {
                    Ok(CheckpointRecord {
                        checkpoint_id,
                        event_count,
                        tx_id,
                        global_position,
                        root: unhex(&root, "root")?,
                        leaves: Base64::decode_vec(&leaves)
                            .map_err(|e| format!("leaves are not base64: {e}"))?,
                        signed_at: parse_time(&signed_at, "signed_at")?,
                        kid,
                        signature: Base64UrlUnpadded::decode_vec(&signature)
                            .map_err(|e| format!("signature is not base64url: {e}"))?,
                    })
                })();
                match record {
                    Ok(record) => checkpoints.push(record),
                    Err(problem) => return Ok(Err(at_line(n, problem))),
                }
            }
            Line::Event {
                position,
                tx_id,
                event_id,
                aggregate_type,
                aggregate_id,
                sequence,
                event_type,
                event_version,
                recorded_at,
                payload,
                metadata,
                hash,
                previous_hash,
            } => {
                if verifier.is_none() {
                    match Verifier::new(keys, &checkpoints, coverage) {
                        Ok(v) => verifier = Some(v),
                        Err(failure) => return Ok(Err(failure)),
                    }
                }
                let record = (|| -> Result<EventRecord, String> {
                    let previous_hash = match previous_hash {
                        Some(h) => Some(
                            <[u8; 32]>::try_from(unhex(&h, "previous_hash")?)
                                .map_err(|_| "previous_hash is not 32 bytes".to_owned())?,
                        ),
                        None => None,
                    };
                    Ok(EventRecord {
                        position,
                        tx_id,
                        event_id,
                        aggregate_type,
                        aggregate_id,
                        sequence,
                        event_type,
                        event_version,
                        recorded_at: parse_time(&recorded_at, "recorded_at")?,
                        payload,
                        metadata,
                        hash: unhex(&hash, "hash")?,
                        previous_hash,
                    })
                })();
                let record = match record {
                    Ok(record) => record,
                    Err(problem) => return Ok(Err(at_line(n, problem))),
                };
                if let Some(v) = verifier.as_mut()
                    && let Err(failure) = v.event(&record)
                {
                    return Ok(Err(failure));
                }
                events += 1;
                if events.is_multiple_of(1024) {
                    progress.inc(1024);
                }
            }
            Line::Trailer {
                events: e,
                checkpoints: c,
            } => trailer = Some((n, e, c)),
        }
    }
    progress.inc(events % 1024);
    let Some((n, trailer_events, trailer_checkpoints)) = trailer else {
        return Ok(Err(Failure::source(
            "the export has no trailer: it is truncated".to_owned(),
        )));
    };
    if trailer_events != events || trailer_checkpoints != checkpoints.len() as u64 {
        return Ok(Err(at_line(
            n,
            format!(
                "the trailer counts {trailer_events} events and {trailer_checkpoints} checkpoints, \
                 the file holds {events} and {}",
                checkpoints.len()
            ),
        )));
    }
    let verifier = match verifier {
        Some(v) => v,
        None => match Verifier::new(keys, &checkpoints, coverage) {
            Ok(v) => v,
            Err(failure) => return Ok(Err(failure)),
        },
    };
    Ok(verifier.finish())
}

/// Reads a JWKS file for verification.
///
/// # Errors
/// Unreadable file or an invalid JWKS (including one holding a private key).
pub fn read_jwks(path: &std::path::Path) -> anyhow::Result<Jwks> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read JWKS {}", path.display()))?;
    match Jwks::from_json(&text) {
        Ok(jwks) => Ok(jwks),
        Err(e) => bail!("{} is not a usable JWKS: {e}", path.display()),
    }
}
