//! The seed's only source of randomness: a fixed-seed splitmix64 generator, and the ids and
//! instants drawn from it. Everything the history holds comes from here, in the order the
//! generator asks, so two runs write the same events, ids and keys.

use chrono::DateTime;
use domain::Timestamp;
use uuid::Uuid;

/// splitmix64: tiny, fast, and good enough for synthetic data; the same seed gives the same
/// history on every platform. Public for the benchmarks that sample the seeded history.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`), without modulo bias worth mentioning (Lemire's multiply).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
    pub(super) fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }
    /// Uniform in `[0, 1)`.
    pub(super) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    pub(super) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }
    pub(super) fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        out
    }
}

/// A UUID v7 of instant `at` (ids the ledger mints are v7; here of the simulated instant).
pub(super) fn v7(rng: &mut Rng, at: Timestamp) -> Uuid {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &rng.bytes::<10>()).into_uuid()
}

/// A UUID v4 (App GUIDs the ledger generates are v4).
pub(super) fn v4(rng: &mut Rng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.bytes::<16>()).into_uuid()
}

/// The simulated instant `micros` microseconds after the epoch.
pub(super) fn instant(micros: i64) -> Timestamp {
    DateTime::from_timestamp_micros(micros).expect("simulated instants are in range")
}

/// Microseconds since the epoch of an RFC 3339 instant.
pub(super) fn parse_instant(text: &str) -> anyhow::Result<i64> {
    Ok(text.parse::<Timestamp>()?.timestamp_micros())
}
