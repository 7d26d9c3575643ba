//! Time, injected: verification asks a [`Clock`] for "now", so tests control time without sleeping.
//!
//! Time is whole seconds since the Unix epoch ([`UnixTime`]), the resolution of the JWT NumericDate claims that
//! verification compares it with. One clock serves a whole server: the verifier's claim checks, its token cache,
//! the remote key sets' refresh timing, and the pages that show ages and "seconds from now".

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time: whole seconds since the Unix epoch (1970-01-01T00:00:00Z).
///
/// ```
/// use portcullis::clock::UnixTime;
/// let t = UnixTime::from_secs(1_700_000_000);
/// assert_eq!(t.as_secs(), 1_700_000_000);
/// assert_eq!(t.as_secs_f64(), 1_700_000_000.0);
/// assert_eq!(t.to_string(), "1700000000");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixTime(u64);

impl UnixTime {
    /// The time `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs)
    }

    /// The time a [`SystemTime`] shows, rounded down to the second (the epoch for times before it).
    pub fn from_system_time(time: SystemTime) -> Self {
        Self(time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
    }

    /// Seconds since the epoch.
    pub const fn as_secs(self) -> u64 {
        self.0
    }

    /// Seconds since the epoch as a float, for comparing with NumericDate claims (exact below 2^53 seconds).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64
    }

    /// The same instant as a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.0)
    }
}

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time, in whole seconds since the Unix epoch.
    fn now(&self) -> UnixTime;
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> UnixTime {
        (**self).now()
    }
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        UnixTime::from_system_time(SystemTime::now())
    }
}

/// A clock that stands still until moved: for tests.
///
/// It keeps milliseconds, so sub-second advances add up, and shows whole seconds.
///
/// ```
/// use portcullis::clock::{Clock, ManualClock, UnixTime};
/// use std::time::Duration;
/// let clock = ManualClock::at_unix(1_700_000_000);
/// clock.advance(Duration::from_secs(90));
/// assert_eq!(clock.now(), UnixTime::from_secs(1_700_000_090));
/// clock.advance(Duration::from_millis(600));
/// clock.advance(Duration::from_millis(600));
/// assert_eq!(clock.now().as_secs(), 1_700_000_091);
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
    fn now(&self) -> UnixTime {
        UnixTime(self.millis.load(Ordering::SeqCst) / 1000)
    }
}

/// Renders a span of seconds the way people say it: `3h 2m`, `45s`, `2d 1h`.
pub(crate) fn human_duration(seconds: f64) -> String {
    let total = seconds.abs().round() as u64;
    let (d, h, m, s) = (total / 86_400, total / 3600 % 24, total / 60 % 60, total % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn durations_read_the_way_people_say_them() {
        assert_eq!(human_duration(10_925.0), "3h 2m");
        assert_eq!(human_duration(45.4), "45s");
        assert_eq!(human_duration(176_400.0), "2d 1h");
    }
}
