//! The in-memory replay store of one process: bounded in memory and in time.

use super::{ReplayKey, ReplayStore, StoreError, StoreFuture};
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use std::fmt;
use std::time::{Duration, Instant};

/// The shortest time an entry is kept, whatever the `ttl` asked for.
const MIN_TTL: Duration = Duration::from_secs(1);

/// DPoP proofs seen by this process: a bounded cache of [`ReplayKey`]s, each kept for the `ttl` it was recorded
/// with. When full, the least recently inserted entries go first (LRU, no admission filter: a new entry is always
/// stored), and their proofs could be replayed within their window: size it for the proofs of one window.
///
/// It answers at once ([`first_use_now`](ReplayStore::first_use_now) is always `Some`), so a verifier using it
/// never waits. It is the default store of a [`DpopVerifier`](crate::dpop::DpopVerifier); one instance can also be
/// shared by several verifiers of one process (clones share the entries).
///
/// ```
/// use portcullis::store::{MemoryReplayStore, ReplayKey, ReplayStore};
/// use std::time::Duration;
///
/// let store = MemoryReplayStore::new(10_000);
/// let key = ReplayKey::for_proof("https://api.example.com/orders", "a1b2c3");
/// let ttl = Duration::from_secs(305);
/// assert_eq!(store.first_use_now(key, ttl), Some(Ok(true)), "first use");
/// assert_eq!(store.first_use_now(key, ttl), Some(Ok(false)), "a replay");
/// assert_eq!(store.contains_now(key), Some(true));
/// ```
#[derive(Clone)]
pub struct MemoryReplayStore {
    seen: Cache<[u8; 32], Duration>,
    capacity: u64,
}

impl fmt::Debug for MemoryReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryReplayStore")
            .field("capacity", &self.capacity)
            .field("entries", &self.seen.entry_count())
            .finish()
    }
}

/// Each entry lives the `ttl` it was recorded with.
struct OwnTtl;

impl moka::Expiry<[u8; 32], Duration> for OwnTtl {
    fn expire_after_create(&self, _: &[u8; 32], ttl: &Duration, _: Instant) -> Option<Duration> {
        Some(*ttl)
    }
}

impl MemoryReplayStore {
    /// An empty store holding at most `capacity` entries.
    pub fn new(capacity: u64) -> Self {
        let seen =
            Cache::builder().max_capacity(capacity).expire_after(OwnTtl).eviction_policy(EvictionPolicy::lru()).build();
        Self { seen, capacity }
    }

    /// The most entries it holds.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Records `key` for `ttl` (at least a second); `false` when it was recorded before (a replay). Atomic: of
    /// concurrent calls with one key, exactly one gets `true`. (moka's `or_insert` looks the key up and inserts in
    /// two steps, so several callers can each find it missing; `or_insert_with` coalesces them behind one
    /// initialisation.)
    pub fn record(&self, key: ReplayKey, ttl: Duration) -> bool {
        let ttl = ttl.max(MIN_TTL);
        self.seen.entry(*key.as_bytes()).or_insert_with(|| ttl).is_fresh()
    }

    /// Whether `key` was recorded and has not expired, without recording it.
    pub fn contains(&self, key: ReplayKey) -> bool {
        self.seen.contains_key(key.as_bytes())
    }

    /// Entries held (expired entries leave lazily; pending maintenance runs first).
    pub fn len(&self) -> u64 {
        self.seen.run_pending_tasks();
        self.seen.entry_count()
    }

    /// Whether it holds no entry (approximate, like [`len`](Self::len)).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies every entry of `self` into `into`, each for `ttl` (a whole new lifetime, which only errs on the safe
    /// side).
    pub(crate) fn copy_into(&self, into: &MemoryReplayStore, ttl: Duration) {
        for (key, _) in self.seen.iter() {
            into.seen.insert(*key, ttl.max(MIN_TTL));
        }
    }
}

impl ReplayStore for MemoryReplayStore {
    fn first_use(&self, key: ReplayKey, ttl: Duration) -> StoreFuture<'_, bool> {
        Box::pin(std::future::ready(Ok(self.record(key, ttl))))
    }

    fn first_use_now(&self, key: ReplayKey, ttl: Duration) -> Option<Result<bool, StoreError>> {
        Some(Ok(self.record(key, ttl)))
    }

    fn contains_now(&self, key: ReplayKey) -> Option<bool> {
        Some(self.contains(key))
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}
