//! The write side's clock. Aggregates never read a clock; the command services stamp
//! `Clock::now()` into each command, so tests can pin time and decisions stay reproducible.

use domain::Timestamp;

/// A source of the current instant.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in UTC.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock, truncated to microseconds: PostgreSQL keeps microseconds, so an
/// instant stamped here reads back exactly as it was decided on.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        use chrono::SubsecRound;
        chrono::Utc::now().trunc_subsecs(6)
    }
}

/// The system clock shifted by an adjustable offset: lets tests (and drills) move the server's
/// time forward — past a lease, a trial, an expiry — without waiting.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset_micros: std::sync::atomic::AtomicI64,
}

impl OffsetClock {
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        let micros = by.num_microseconds().unwrap_or(i64::MAX);
        self.offset_micros
            .fetch_add(micros, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        let offset = self.offset_micros.load(std::sync::atomic::Ordering::SeqCst);
        SystemClock.now() + chrono::Duration::microseconds(offset)
    }
}
