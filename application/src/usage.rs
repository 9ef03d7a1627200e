//! Validations per UTC day by code, for the dashboard's plot (issue #18). Validations are
//! reads, not events, so the log cannot count them: each answer adds one to an atomic counter
//! of its code ([`ValidationTally::record`], one relaxed add on the hot path), and the
//! [`crate::jobs::Job::UsageFlusher`] adds the counters to `validation_days` every
//! [`FLUSH_EVERY`] and when the server stops.
//!
//! A flush files what it takes under the day of the flush: an answer in the last seconds
//! before midnight (UTC) may count for the next day. A server killed with `kill -9` loses at
//! most [`FLUSH_EVERY`] of counts: a statistic, not a fact of the ledger.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use domain::validation::ValidationCode;
use sqlx::PgPool;
use strum::IntoEnumIterator;

/// How often the counts are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);

/// The answers given since the last flush, by code.
#[derive(Debug, Default)]
pub struct ValidationTally {
    counts: [AtomicU64; 12],
}

/// The code's counter: its place in the enum's declaration, which `iter()` follows too.
fn index(code: ValidationCode) -> usize {
    code as usize
}

impl ValidationTally {
    /// Counts one answer with `code`.
    pub fn record(&self, code: ValidationCode) {
        if let Some(counter) = self.counts.get(index(code)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds the counts taken since the last flush to `day`'s rows; on a failure they are put
    /// back, to be written by the next flush.
    ///
    /// # Errors
    /// Database errors.
    pub async fn flush(&self, pool: &PgPool, day: chrono::NaiveDate) -> Result<(), sqlx::Error> {
        let taken: Vec<(ValidationCode, u64)> = ValidationCode::iter()
            .zip(&self.counts)
            .map(|(code, counter)| (code, counter.swap(0, Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        if taken.is_empty() {
            return Ok(());
        }
        let codes: Vec<&str> = taken.iter().map(|(c, _)| c.as_str()).collect();
        let counts: Vec<i64> = taken
            .iter()
            .map(|(_, n)| i64::try_from(*n).unwrap_or(i64::MAX))
            .collect();
        let written = sqlx::query(
            "INSERT INTO validation_days (day, code, count) \
             SELECT $1, code, n FROM unnest($2::text[], $3::int8[]) AS u(code, n) \
             ON CONFLICT (day, code) DO UPDATE SET count = validation_days.count + EXCLUDED.count",
        )
        .bind(day)
        .bind(&codes)
        .bind(&counts)
        .execute(pool)
        .await;
        if let Err(e) = written {
            for (code, n) in taken {
                if let Some(counter) = self.counts.get(index(code)) {
                    counter.fetch_add(n, Ordering::Relaxed);
                }
            }
            return Err(e);
        }
        Ok(())
    }
}

/// Validations per day since `since` (inclusive), by code: `(day, code, count)`.
///
/// # Errors
/// Database errors.
pub async fn per_day(
    pool: &PgPool,
    since: chrono::NaiveDate,
) -> Result<Vec<(chrono::NaiveDate, String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT day, code, count FROM validation_days WHERE day >= $1 ORDER BY day, code",
    )
    .bind(since)
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_counter() {
        assert_eq!(
            ValidationCode::iter().count(),
            ValidationTally::default().counts.len()
        );
    }
}
