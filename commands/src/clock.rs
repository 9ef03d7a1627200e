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
