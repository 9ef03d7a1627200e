//! Rows for `COPY table (columns) FROM STDIN (FORMAT binary)`: the cheapest way to add many new
//! rows. No SQL text to parse, no parameter arrays to unpack: PostgreSQL reads each value in its
//! binary wire form, the same form a bound parameter has. Used by the audit projection for every
//! batch, for snapshots, and by the rebuild's bulk writers for rows that are new
//! ([`crate::engine::BulkApply`]). [`copy_all`] is the one way in.
//!
//! The caller names the columns in the statement and writes, for each row, exactly those values in
//! that order and of those types; PostgreSQL refuses a row that does not fit (a wrong column count
//! or a value of the wrong size), so a mistake fails loudly rather than storing something else.
//! Encodings follow sqlx's own for the same Rust types, so a row written here equals the row
//! sqlx would have inserted.

use domain::Timestamp;
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::engine::ProjectionError;

/// The binary COPY signature, flags and header extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// `oid` of `text`, for arrays of it.
const TEXT_OID: u32 = 25;

/// Rows being encoded for one binary `COPY`.
pub struct CopyRows {
    buf: Vec<u8>,
    columns: i16,
    rows: usize,
}

impl CopyRows {
    /// Rows of `columns` values each.
    fn new(columns: i16) -> Self {
        let mut buf = Vec::with_capacity(1 << 16);
        buf.extend_from_slice(HEADER);
        Self {
            buf,
            columns,
            rows: 0,
        }
    }

    /// Starts a row; its values follow.
    pub fn row(&mut self) -> &mut Self {
        self.buf.extend_from_slice(&self.columns.to_be_bytes());
        self.rows += 1;
        self
    }

    fn fixed(&mut self, bytes: &[u8]) -> &mut Self {
        let len = i32::try_from(bytes.len()).expect("a fixed-size value");
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
        self
    }

    /// A NULL.
    pub fn null(&mut self) -> &mut Self {
        self.buf.extend_from_slice(&(-1_i32).to_be_bytes());
        self
    }

    /// `bigint`.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.fixed(&v.to_be_bytes())
    }

    /// `integer`.
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.fixed(&v.to_be_bytes())
    }

    /// `smallint`.
    pub fn i16(&mut self, v: i16) -> &mut Self {
        self.fixed(&v.to_be_bytes())
    }

    /// `boolean`.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.fixed(&[u8::from(v)])
    }

    /// `uuid`.
    pub fn uuid(&mut self, v: Uuid) -> &mut Self {
        self.fixed(v.as_bytes())
    }

    /// `uuid` or NULL.
    pub fn opt_uuid(&mut self, v: Option<Uuid>) -> &mut Self {
        match v {
            Some(v) => self.uuid(v),
            None => self.null(),
        }
    }

    /// `timestamptz`: microseconds since 2000-01-01 UTC, computed as sqlx computes it.
    ///
    /// # Errors
    /// An instant PostgreSQL cannot hold.
    pub fn timestamptz(&mut self, v: Timestamp) -> Result<&mut Self, ProjectionError> {
        let epoch = chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("a valid date");
        let micros = (v.naive_utc() - epoch)
            .num_microseconds()
            .ok_or_else(|| ProjectionError::Inconsistent(format!("instant out of range: {v}")))?;
        Ok(self.i64(micros))
    }

    /// `timestamptz` or NULL.
    ///
    /// # Errors
    /// See [`CopyRows::timestamptz`].
    pub fn opt_timestamptz(&mut self, v: Option<Timestamp>) -> Result<&mut Self, ProjectionError> {
        match v {
            Some(v) => self.timestamptz(v),
            None => Ok(self.null()),
        }
    }

    /// A value whose length is known once written: reserves the length, writes, patches it.
    fn sized(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> &mut Self {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        write(&mut self.buf);
        let len = i32::try_from(self.buf.len() - at - 4).expect("a value under 2 GB");
        self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        self
    }

    /// `text`.
    pub fn text(&mut self, v: &str) -> &mut Self {
        self.sized(|buf| buf.extend_from_slice(v.as_bytes()))
    }

    /// `text` or NULL.
    pub fn opt_text(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    /// `bytea`.
    pub fn bytea(&mut self, v: &[u8]) -> &mut Self {
        self.sized(|buf| buf.extend_from_slice(v))
    }

    /// `jsonb`: format version 1, then the JSON text.
    ///
    /// # Errors
    /// A value that does not serialize.
    pub fn jsonb(&mut self, v: &impl Serialize) -> Result<&mut Self, ProjectionError> {
        self.serialized(Some(1), v)
    }

    /// `json`: the JSON text alone (PostgreSQL checks it and stores it as written).
    ///
    /// # Errors
    /// A value that does not serialize.
    pub fn json(&mut self, v: &impl Serialize) -> Result<&mut Self, ProjectionError> {
        self.serialized(None, v)
    }

    /// `v` serialized by serde_json, after the format's version byte if it has one.
    fn serialized(
        &mut self,
        version: Option<u8>,
        v: &impl Serialize,
    ) -> Result<&mut Self, ProjectionError> {
        let mut failed = None;
        self.sized(|buf| {
            buf.extend(version);
            if let Err(err) = serde_json::to_writer(&mut *buf, v) {
                failed = Some(err);
            }
        });
        match failed {
            None => Ok(self),
            Some(err) => Err(ProjectionError::Inconsistent(err.to_string())),
        }
    }

    /// `text[]`, one dimension from 1 (an empty one has none, as PostgreSQL writes `{}`).
    pub fn text_array(&mut self, items: &[&str]) -> &mut Self {
        let n = i32::try_from(items.len()).expect("fewer than 2^31 items");
        self.sized(|buf| {
            buf.extend_from_slice(&i32::from(n > 0).to_be_bytes()); // dimensions
            buf.extend_from_slice(&0_i32.to_be_bytes()); // no NULL elements
            buf.extend_from_slice(&TEXT_OID.to_be_bytes());
            if n > 0 {
                buf.extend_from_slice(&n.to_be_bytes());
                buf.extend_from_slice(&1_i32.to_be_bytes()); // lower bound
            }
            for item in items {
                let len = i32::try_from(item.len()).expect("an item under 2 GB");
                buf.extend_from_slice(&len.to_be_bytes());
                buf.extend_from_slice(item.as_bytes());
            }
        })
    }
}

/// Copies `items` in one binary `COPY` with `statement`, `columns` values per row written by
/// `add`, sending as it encodes: PostgreSQL stores the first rows while the next are encoded,
/// instead of waiting for the whole batch. Nothing is sent when there are no items.
///
/// # Errors
/// What `add` returns, database errors (among them a row that does not fit the columns).
pub async fn copy_all<T>(
    conn: &mut PgConnection,
    statement: &str,
    columns: i16,
    items: impl IntoIterator<Item = T>,
    mut add: impl FnMut(&mut CopyRows, T) -> Result<(), ProjectionError>,
) -> Result<(), ProjectionError> {
    /// Bytes encoded before they are sent.
    const CHUNK: usize = 1 << 20;
    let mut items = items.into_iter().peekable();
    if items.peek().is_none() {
        return Ok(());
    }
    let mut rows = CopyRows::new(columns);
    let mut copy = conn.copy_in_raw(statement).await?;
    let mut sent: Result<(), ProjectionError> = Ok(());
    for item in items {
        if let Err(err) = add(&mut rows, item) {
            sent = Err(err);
            break;
        }
        if rows.buf.len() >= CHUNK {
            let chunk = std::mem::replace(&mut rows.buf, Vec::with_capacity(CHUNK + (CHUNK >> 2)));
            if let Err(err) = copy.send(chunk).await {
                sent = Err(err.into());
                break;
            }
        }
    }
    if sent.is_ok() {
        rows.buf.extend_from_slice(&(-1_i16).to_be_bytes());
        sent = copy.send(rows.buf).await.map(|_| ()).map_err(Into::into);
    }
    let rows = rows.rows;
    // Everything sent: complete the COPY; else make the server give it up (it would otherwise
    // keep waiting for data).
    if let Err(err) = sent {
        let _ = copy
            .abort("license-ledger: encoding or sending rows failed")
            .await;
        return Err(err);
    }
    let copied = copy.finish().await?;
    if copied != rows as u64 {
        return Err(ProjectionError::Inconsistent(format!(
            "COPY stored {copied} rows of {rows}"
        )));
    }
    Ok(())
}
