//! Time as the engine sees it: Unix microseconds from a [`Clock`].
//!
//! Every timestamp the engine writes (`run_at`, leases, history) comes from the
//! clock in Rust, never from the database's `now()`, so tests can drive retries and
//! lease expiry with a [`ManualClock`] instead of sleeping. Microseconds, not
//! milliseconds, because enqueue-to-start latency is measured in single
//! milliseconds. Stored as a plain 64-bit integer on both backends so one set of
//! row types decodes both.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix time in microseconds.
pub type Micros = i64;

/// A source of "now".
pub trait Clock: Send + Sync + 'static {
    /// The current time in Unix microseconds.
    fn now(&self) -> Micros;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Micros {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
    }
}

/// A clock that only moves when told to; clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Micros) -> Self {
        Self(Arc::new(AtomicI64::new(start)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_micros() as i64, Ordering::SeqCst);
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: Micros) {
        self.0.store(at, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Micros {
        self.0.load(Ordering::SeqCst)
    }
}

/// Converts a duration to microseconds, saturating.
pub fn micros(d: Duration) -> Micros {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
