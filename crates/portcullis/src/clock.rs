//! Time, injected: verification asks a [`Clock`] for "now", so tests control time without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time as seconds since the Unix epoch.
    fn now_unix(&self) -> f64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> f64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs_f64()
    }
}

/// A clock that stands still until moved: for tests.
///
/// ```
/// use portcullis::clock::{Clock, ManualClock};
/// use std::time::Duration;
/// let clock = ManualClock::at_unix(1_700_000_000);
/// clock.advance(Duration::from_secs(90));
/// assert_eq!(clock.now_unix(), 1_700_000_090.0);
/// ```
#[derive(Debug, Default)]
pub struct ManualClock {
    millis: AtomicU64,
}

impl ManualClock {
    /// A clock showing `secs` seconds after the epoch.
    pub fn at_unix(secs: u64) -> Self {
        Self { millis: AtomicU64::new(secs.saturating_mul(1000)) }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.millis.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }

    /// Sets the clock to `secs` seconds after the epoch.
    pub fn set_unix(&self, secs: u64) {
        self.millis.store(secs.saturating_mul(1000), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix(&self) -> f64 {
        self.millis.load(Ordering::SeqCst) as f64 / 1000.0
    }
}

/// Renders a span of seconds the way people say it: `3h 2m`, `45s`, `2d 1h`.
///
/// ```
/// assert_eq!(portcullis::clock::human_duration(10_925.0), "3h 2m");
/// assert_eq!(portcullis::clock::human_duration(45.4), "45s");
/// assert_eq!(portcullis::clock::human_duration(176_400.0), "2d 1h");
/// ```
pub fn human_duration(seconds: f64) -> String {
    let total = seconds.abs().round() as u64;
    let (d, h, m, s) = (total / 86_400, total / 3600 % 24, total / 60 % 60, total % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}
