//! The `jti` replay cache (RFC 9449 §11.1): bounded in memory and in time.
//!
//! An entry is the SHA-256 of the proof's target URI and `jti`, so the same `jti` at another URI is another entry
//! (RFC 9449 §4.3 asks for uniqueness per URI), and neither an attacker-chosen `jti` nor a URI is stored. Entries
//! live as long as a proof stays acceptable: the `iat` window into the past plus the leeway into the future. When
//! the cache is full, the least recently inserted entries go first (LRU, no admission filter: a new entry is always
//! stored).

use crate::dpop::Htu;
use aws_lc_rs::digest;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use std::time::Duration;

/// Remembers the proofs already seen.
#[derive(Clone)]
pub(crate) struct ReplayCache {
    seen: Cache<[u8; 32], ()>,
    capacity: u64,
    ttl: Duration,
}

impl std::fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayCache").field("entries", &self.seen.entry_count()).finish()
    }
}

impl ReplayCache {
    pub(crate) fn new(capacity: u64, ttl: Duration) -> Self {
        let ttl = ttl.max(Duration::from_secs(1));
        let seen =
            Cache::builder().max_capacity(capacity).time_to_live(ttl).eviction_policy(EvictionPolicy::lru()).build();
        Self { seen, capacity, ttl }
    }

    /// A cache of `capacity` entries living `ttl` that knows every proof `running` holds: `running` itself (shared,
    /// so a proof recorded by either is a replay to both) when it is as large and keeps entries as long, else a
    /// new cache holding a copy of its entries (each then lives a whole new `ttl`, which only errs on the safe side).
    pub(crate) fn carried_over(running: &ReplayCache, capacity: u64, ttl: Duration) -> Self {
        let ttl = ttl.max(Duration::from_secs(1));
        if running.capacity == capacity && running.ttl >= ttl {
            return running.clone();
        }
        let next = Self::new(capacity, ttl);
        for (key, ()) in running.seen.iter() {
            next.seen.insert(*key, ());
        }
        next
    }

    /// Whether the proof was recorded before, without recording it.
    pub(crate) fn contains(&self, htu: &Htu, jti: &str) -> bool {
        self.seen.contains_key(&key(htu, jti))
    }

    /// Records the proof; `false` when it was recorded before (a replay). Atomic: of concurrent requests with one
    /// proof, exactly one gets `true`. (moka's `or_insert` looks the key up and inserts in two steps, so several
    /// callers can each find it missing; `or_insert_with` coalesces them behind one initialisation.)
    pub(crate) fn first_use(&self, htu: &Htu, jti: &str) -> bool {
        self.seen.entry(key(htu, jti)).or_insert_with(|| ()).is_fresh()
    }

    /// Entries held (approximate: expired entries leave lazily).
    pub(crate) fn len(&self) -> u64 {
        self.seen.entry_count()
    }
}

/// SHA-256 over the URI and the `jti`.
fn key(htu: &Htu, jti: &str) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(htu.as_str().as_bytes());
    // A normalized URI never holds a NUL byte, so the pair is encoded without ambiguity.
    ctx.update(b"\0");
    ctx.update(jti.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
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
