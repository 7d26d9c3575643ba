//! Requests decided, by outcome and reason, for the status page.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Counts of decided requests: allowed ones on a lock-free counter (the hot path), refused ones by reason.
///
/// ```
/// let tally = portcullis_web::Tally::default();
/// tally.allowed();
/// tally.denied("audience_mismatch");
/// tally.denied("audience_mismatch");
/// let counts = tally.counts();
/// assert_eq!((counts[0].outcome, counts[0].reason, counts[0].count), ("allowed", "none", 1));
/// assert_eq!((counts[1].outcome, counts[1].reason, counts[1].count), ("denied", "audience_mismatch", 2));
/// ```
#[derive(Debug, Default)]
pub struct Tally {
    allowed: AtomicU64,
    denied: Mutex<BTreeMap<&'static str, u64>>,
}

/// One line of [`Tally::counts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Count {
    /// `allowed` or `denied`.
    pub outcome: &'static str,
    /// The refusal's reason code (`none` for allowed requests).
    pub reason: &'static str,
    /// How many.
    pub count: u64,
}

impl Tally {
    /// Counts an allowed request.
    pub fn allowed(&self) {
        self.allowed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused request with its reason code (e.g. [`portcullis::Reason::code`]).
    pub fn denied(&self, reason: &'static str) {
        *self.denied.lock().unwrap_or_else(PoisonError::into_inner).entry(reason).or_default() += 1;
    }

    /// Allowed requests first (when any), then refusals by reason in alphabetical order.
    pub fn counts(&self) -> Vec<Count> {
        let allowed = self.allowed.load(Ordering::Relaxed);
        let denied = self.denied.lock().unwrap_or_else(PoisonError::into_inner);
        (allowed > 0)
            .then_some(Count { outcome: "allowed", reason: "none", count: allowed })
            .into_iter()
            .chain(denied.iter().map(|(reason, count)| Count { outcome: "denied", reason, count: *count }))
            .collect()
    }
}
