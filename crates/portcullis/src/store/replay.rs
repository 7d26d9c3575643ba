//! The DPoP replay store: one atomic check-and-insert per proof.

use super::{StoreError, StoreFuture};
use aws_lc_rs::digest;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What a replay entry is stored under: the SHA-256 of a proof's target URI and its `jti`, so that neither an
/// attacker-chosen `jti` nor a URI is ever stored, and the same `jti` at another URI is another entry (RFC 9449
/// §4.3 asks for uniqueness per URI).
///
/// ```
/// use portcullis::store::ReplayKey;
/// let key = ReplayKey::for_proof("https://api.example.com/orders", "j1");
/// assert_ne!(key, ReplayKey::for_proof("https://api.example.com/orders", "j2"));
/// assert_ne!(key, ReplayKey::for_proof("https://api.example.com/other", "j1"));
/// assert_eq!(key.to_string().len(), 64);
/// assert_eq!(key.to_string().parse::<ReplayKey>().unwrap(), key);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplayKey([u8; 32]);

impl ReplayKey {
    /// The key of a proof for the normalized target URI `htu` with `jti`.
    pub fn for_proof(htu: &str, jti: &str) -> Self {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(htu.as_bytes());
        // A normalized URI never holds a NUL byte, so the pair is encoded without ambiguity.
        ctx.update(b"\0");
        ctx.update(jti.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        Self(key)
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ReplayKey {
    /// Lowercase hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::revocation::write_hex(f, &self.0)
    }
}

impl fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplayKey({self})")
    }
}

impl FromStr for ReplayKey {
    type Err = &'static str;

    /// 64 hex digits.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        super::revocation::parse_hex(text).map(Self)
    }
}

/// Where DPoP proofs already seen are recorded.
///
/// Implementations: the in-memory store of one process (the default of a
/// [`DpopVerifier`](crate::dpop::DpopVerifier)), and Redis in `portcullis-redis` (`SET key NX PX ttl`), shared by
/// every replica. A store enforces its own time budget: a call never waits longer than the store was configured
/// to, it fails with [`StoreError::Timeout`] instead.
pub trait ReplayStore: Send + Sync + fmt::Debug {
    /// Records `key` for `ttl`. `Ok(true)`: its first use; `Ok(false)`: seen before (a replay). Atomic: of
    /// concurrent calls with one key, on every replica sharing the store, exactly one gets `Ok(true)`.
    fn first_use(&self, key: ReplayKey, ttl: Duration) -> StoreFuture<'_, bool>;

    /// The same answer without waiting, for stores that can give it at once (the in-memory one); `None` when the
    /// caller must await [`first_use`](Self::first_use).
    fn first_use_now(&self, key: ReplayKey, ttl: Duration) -> Option<Result<bool, StoreError>> {
        let _ = (key, ttl);
        None
    }

    /// Whether `key` was recorded, without recording it, when the store can tell at once (for reports that must
    /// not change state); `None` when it cannot.
    fn contains_now(&self, key: ReplayKey) -> Option<bool> {
        let _ = key;
        None
    }

    /// A short name for logs and metrics: `memory`, `redis`.
    fn name(&self) -> &'static str;
}

/// What a DPoP verifier does when its shared replay store fails (times out, is unreachable).
///
/// ```
/// use portcullis::store::ReplayFailure;
/// assert_eq!(ReplayFailure::default(), ReplayFailure::FailClosed);
/// assert_eq!("local_only".parse::<ReplayFailure>(), Ok(ReplayFailure::LocalOnly));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[non_exhaustive]
pub enum ReplayFailure {
    /// Refuse the request with `store_unavailable` (503): a proof is never accepted without the fleet-wide
    /// check. The default.
    #[default]
    FailClosed,
    /// Check the proof against this process's in-memory store instead (a replay to another replica then goes
    /// unnoticed for the outage); counted and logged.
    LocalOnly,
}

impl ReplayFailure {
    /// The configuration spelling: `fail_closed` or `local_only`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::FailClosed => "fail_closed",
            Self::LocalOnly => "local_only",
        }
    }
}

impl FromStr for ReplayFailure {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "fail_closed" => Ok(Self::FailClosed),
            "local_only" => Ok(Self::LocalOnly),
            other => Err(format!("unknown replay failure mode {other:?}: fail_closed or local_only")),
        }
    }
}
