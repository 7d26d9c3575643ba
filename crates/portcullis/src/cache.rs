//! The verified-token cache: a repeated token skips the signature check.
//!
//! - **Key**: the full token string, compared in full (the hash only picks the bucket; it is never the identity).
//! - **Value**: the [`VerifiedToken`], which holds the verified claims and the key that verified it.
//! - **Bounded by weight** (token and claim bytes), default 32 MiB; least-recently/least-frequently used entries go
//!   first (moka's TinyLFU).
//! - **Lifetime**: until the earlier of the token's `exp` and a maximum (default 10 min).
//! - **Every hit is re-checked**: the time claims (`exp`, `nbf`, `iat`/maximum age) against the clock, and the key:
//!   if the key that verified the token is no longer in its issuer's current key set (rotated out, revoked), the
//!   entry is dropped and the token verified afresh.
//! - **Only successes are stored**: failures are cheap to repeat and must not fill memory.

use crate::clock::Clock;
use crate::token::VerifiedToken;
use moka::sync::Cache;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Limits of the verified-token cache.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheOptions {
    /// Memory budget in bytes, as estimated per entry: the token twice (the key and the verified copy), six times
    /// the claims' JSON (the raw payload, the typed claims and the claim map built when a handler reads claims),
    /// and a fixed overhead. Measured against the process's resident memory in bench/ (P6).
    pub max_bytes: u64,
    /// Longest time an entry is kept, whatever its `exp`.
    pub max_ttl: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self { max_bytes: 32 * 1024 * 1024, max_ttl: Duration::from_secs(600) }
    }
}

impl CacheOptions {
    /// Sets the memory budget in bytes ([`max_bytes`](Self::max_bytes)).
    #[must_use]
    pub fn with_max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Sets the longest time an entry is kept ([`max_ttl`](Self::max_ttl)).
    #[must_use]
    pub fn with_max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = ttl;
        self
    }
}

/// Overhead counted per entry besides the token and claim bytes.
const ENTRY_OVERHEAD: usize = 512;

/// The cache for `options`, or none.
pub(crate) fn build(options: Option<CacheOptions>, clock: Arc<dyn Clock>) -> Option<TokenCache> {
    options.map(|o| TokenCache::new(&o, clock))
}

/// A bounded cache of verified tokens. Cheap to clone (shared).
///
/// A token enters the cache the second time it is verified within the recent past: a doorkeeper of fingerprints,
/// sized like the cache, remembers tokens seen once. A client reusing its token is served from the cache from its
/// third request on, while a stream of one-time tokens (distinct tokens, floods of fresh valid tokens) costs one
/// fingerprint store each instead of a cache insertion and an eviction.
#[derive(Clone)]
pub(crate) struct TokenCache {
    entries: Cache<Arc<str>, VerifiedToken, foldhash::fast::RandomState>,
    doorkeeper: Arc<[AtomicU64]>,
    fingerprints: foldhash::fast::RandomState,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").field("entries", &self.entries.entry_count()).finish_non_exhaustive()
    }
}

struct ExpireAtExp {
    clock: Arc<dyn Clock>,
    max_ttl: Duration,
}

impl moka::Expiry<Arc<str>, VerifiedToken> for ExpireAtExp {
    fn expire_after_create(&self, _: &Arc<str>, token: &VerifiedToken, _: Instant) -> Option<Duration> {
        let remaining = token.registered().exp.map(|exp| exp - self.clock.now().as_secs_f64()).unwrap_or(0.0);
        Some(Duration::from_secs_f64(remaining.max(0.0)).min(self.max_ttl))
    }
}

impl TokenCache {
    /// Creates an empty cache.
    pub(crate) fn new(options: &CacheOptions, clock: Arc<dyn Clock>) -> Self {
        let entries = Cache::builder()
            .max_capacity(options.max_bytes)
            .weigher(|token: &Arc<str>, verified: &VerifiedToken| {
                let weight = 2 * token.len() + 6 * verified.payload().len() + ENTRY_OVERHEAD;
                u32::try_from(weight).unwrap_or(u32::MAX)
            })
            .expire_after(ExpireAtExp { clock, max_ttl: options.max_ttl })
            // A seeded fast hash: keys are whole tokens (hundreds of bytes), and only verified tokens get in.
            .build_with_hasher(foldhash::fast::RandomState::default());
        // One slot per KiB of cache weight: the doorkeeper remembers about as many tokens as the cache holds.
        let slots = usize::try_from(options.max_bytes / 1024).unwrap_or(usize::MAX).clamp(1024, 1 << 20);
        let doorkeeper = (0..slots).map(|_| AtomicU64::new(0)).collect();
        Self { entries, doorkeeper, fingerprints: foldhash::fast::RandomState::default() }
    }

    /// The entry for exactly this token, if any (the caller re-checks it).
    pub(crate) fn get(&self, token: &str) -> Option<VerifiedToken> {
        self.entries.get(token)
    }

    /// Offers a token that just passed every check: it is stored when it was offered before (see the type's
    /// documentation); returns whether it was stored.
    pub(crate) fn insert(&self, verified: &VerifiedToken) -> bool {
        let fingerprint = self.fingerprints.hash_one(verified.raw()) | 1;
        let slot = &self.doorkeeper[(fingerprint % self.doorkeeper.len() as u64) as usize];
        if slot.load(Ordering::Relaxed) != fingerprint {
            slot.store(fingerprint, Ordering::Relaxed);
            return false;
        }
        self.entries.insert(Arc::from(verified.raw()), verified.clone());
        true
    }

    /// Drops one token.
    pub(crate) fn remove(&self, token: &str) {
        self.entries.invalidate(token);
    }

    /// Drops every entry one of `revoked` names.
    pub(crate) fn drop_revoked(&self, revoked: &[crate::store::Revocation]) {
        if revoked.is_empty() {
            return;
        }
        let matcher = crate::store::Matcher::new(revoked);
        for (token, verified) in self.entries.iter() {
            if matcher.matches(&verified) {
                self.entries.invalidate(token.as_ref());
            }
        }
    }

    /// Entries currently held (approximate until pending maintenance runs).
    pub(crate) fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}
