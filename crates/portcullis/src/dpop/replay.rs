//! The `jti` replay cache (RFC 9449 §11.1) of one verifier: a [`MemoryReplayStore`] with the verifier's window.
//!
//! An entry is the [`ReplayKey`] of the proof (the SHA-256 of its target URI and `jti`), so the same `jti` at
//! another URI is another entry (RFC 9449 §4.3 asks for uniqueness per URI), and neither an attacker-chosen `jti`
//! nor a URI is stored. Entries live as long as a proof stays acceptable: the `iat` window into the past plus the
//! leeway into the future.

#[cfg(test)]
use crate::dpop::Htu;
use crate::store::{MemoryReplayStore, ReplayKey};
use std::time::Duration;

/// Remembers the proofs already seen by this process.
#[derive(Clone)]
pub(crate) struct ReplayCache {
    store: MemoryReplayStore,
    ttl: Duration,
}

impl std::fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayCache").field("entries", &self.store.len()).finish()
    }
}

impl ReplayCache {
    pub(crate) fn new(capacity: u64, ttl: Duration) -> Self {
        Self { store: MemoryReplayStore::new(capacity), ttl: ttl.max(Duration::from_secs(1)) }
    }

    /// A cache of `capacity` entries living `ttl` that knows every proof `running` holds: `running` itself (shared,
    /// so a proof recorded by either is a replay to both) when it is as large and keeps entries as long, else a
    /// new cache holding a copy of its entries (each then lives a whole new `ttl`, which only errs on the safe side).
    pub(crate) fn carried_over(running: &ReplayCache, capacity: u64, ttl: Duration) -> Self {
        let ttl = ttl.max(Duration::from_secs(1));
        if running.store.capacity() == capacity && running.ttl >= ttl {
            return running.clone();
        }
        let next = Self::new(capacity, ttl);
        running.store.copy_into(&next.store, ttl);
        next
    }

    /// Whether `key` was recorded before, without recording it.
    pub(crate) fn contains_key(&self, key: ReplayKey) -> bool {
        self.store.contains(key)
    }

    /// Records the proof; `false` when it was recorded before (a replay). Atomic: of concurrent requests with one
    /// proof, exactly one gets `true`.
    #[cfg(test)]
    pub(crate) fn first_use(&self, htu: &Htu, jti: &str) -> bool {
        self.record(ReplayKey::for_proof(htu.as_str(), jti))
    }

    /// Records `key`; `false` when it was recorded before.
    pub(crate) fn record(&self, key: ReplayKey) -> bool {
        self.store.record(key, self.ttl)
    }

    /// Entries held (approximate: expired entries leave lazily).
    pub(crate) fn len(&self) -> u64 {
        self.store.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_uri_and_once() {
        let cache = ReplayCache::new(100, Duration::from_secs(60));
        let a = Htu::parse("https://a.example/x").unwrap();
        let b = Htu::parse("https://a.example/y").unwrap();
        assert!(cache.first_use(&a, "j1"));
        assert!(!cache.first_use(&a, "j1"));
        assert!(cache.first_use(&b, "j1"));
        assert!(cache.first_use(&a, "j2"));
    }

    #[test]
    fn of_concurrent_first_uses_of_one_proof_exactly_one_wins() {
        let a = Htu::parse("https://a.example/x").unwrap();
        let cache = ReplayCache::new(100_000, Duration::from_secs(60));
        let threads = 16;
        for round in 0..300 {
            let jti = format!("j{round}");
            let barrier = std::sync::Barrier::new(threads);
            let fresh = std::sync::atomic::AtomicUsize::new(0);
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    scope.spawn(|| {
                        barrier.wait();
                        if cache.first_use(&a, &jti) {
                            fresh.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    });
                }
            });
            assert_eq!(fresh.into_inner(), 1, "round {round}");
        }
    }

    #[test]
    fn carried_over_keeps_every_entry() {
        let a = Htu::parse("https://a.example/x").unwrap();
        let running = ReplayCache::new(100, Duration::from_secs(60));
        assert!(running.first_use(&a, "j1"));
        let shared = ReplayCache::carried_over(&running, 100, Duration::from_secs(30));
        assert!(!shared.first_use(&a, "j1"));
        assert!(shared.first_use(&a, "j2"));
        assert!(!running.first_use(&a, "j2"), "the same cache: recorded by the new one, a replay to the old one");
        for (capacity, ttl) in [(200, 60), (100, 120), (50, 10)] {
            let copied = ReplayCache::carried_over(&running, capacity, Duration::from_secs(ttl));
            assert!(!copied.first_use(&a, "j1"), "{capacity} {ttl}");
            assert!(!copied.first_use(&a, "j2"), "{capacity} {ttl}");
            assert!(copied.first_use(&a, "j3"), "{capacity} {ttl}");
        }
    }
}
