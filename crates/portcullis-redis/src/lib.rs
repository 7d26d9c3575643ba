//! Shared state for portcullis replicas on Redis: the DPoP replay store ([`RedisStore`] as a
//! [`ReplayStore`](portcullis::store::ReplayStore): one `SET key NX PX ttl` per proof) and token revocations
//! (a [`RevocationStore`](portcullis::store::RevocationStore): entries kept in Redis, pushed to every replica by
//! pub/sub, and resynchronized after every reconnect into each replica's local
//! [`RevocationList`](portcullis::store::RevocationList)).
#![forbid(unsafe_code)]

use portcullis::clock::UnixTime;
use portcullis::store::{ReplayKey, ReplayStore, Revocation, RevocationList, RevocationStore, StoreError, StoreFuture};
use std::time::{Duration, SystemTime};

/// How to reach Redis and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisSettings {
    /// `redis://[user:password@]host[:port][/db]`.
    pub url: String,
    /// Prefix of every key and channel (default `portcullis:`), so that several deployments can share a Redis.
    pub key_prefix: String,
    /// The budget of one store call on the request path (default 50 ms): past it the call fails with
    /// [`StoreError::Timeout`].
    pub timeout: Duration,
    /// How long a connection attempt may take (default 1 s).
    pub connect_timeout: Duration,
    /// Reconnection backoff: the first delay, doubled up to `backoff_max` (defaults 100 ms and 5 s).
    pub backoff_min: Duration,
    /// The longest delay between reconnection attempts.
    pub backoff_max: Duration,
    /// How often the whole revocation set is read again even without a reconnect (default 60 s).
    pub resync_interval: Duration,
}

impl RedisSettings {
    /// The defaults, for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: "portcullis:".to_owned(),
            timeout: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(1),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            resync_interval: Duration::from_secs(60),
        }
    }
}

/// What a replica knows about its Redis connection, for `/ready`, `/status` and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreHealth {
    /// Whether commands and the revocation subscription are up right now.
    pub connected: bool,
    /// Since when the store has been in its current state (connected or not).
    pub since: SystemTime,
    /// When the revocation set was last read whole from Redis.
    pub last_sync: Option<SystemTime>,
    /// The last error, when not connected.
    pub last_error: Option<String>,
}

/// The Redis-backed store. Cheap to clone; clones share connections and background tasks.
#[derive(Clone, Debug)]
pub struct RedisStore {
    _private: (),
}

/// A `url` Redis cannot be reached by (not a connectivity failure: those are retried in the background).
#[derive(Debug, thiserror::Error)]
#[error("invalid Redis URL: {0}")]
pub struct InvalidUrl(pub String);

impl RedisStore {
    /// Starts the store: connects in the background (never fails for an unreachable Redis: it reports itself
    /// degraded and retries with backoff), subscribes to revocations and applies every change to `revocations`,
    /// resynchronizing the whole set after every (re)connect. Must be called inside a tokio runtime.
    pub fn start(settings: RedisSettings, revocations: RevocationList) -> Result<Self, InvalidUrl> {
        let _ = (settings, revocations);
        unimplemented!("portcullis-redis: start")
    }

    /// The connection's state.
    pub fn health(&self) -> StoreHealth {
        unimplemented!("portcullis-redis: health")
    }

    /// Waits until the store is connected and has synchronized the revocation set once, or `within` passed;
    /// `true` when it is.
    pub async fn until_synchronized(&self, within: Duration) -> bool {
        let _ = within;
        unimplemented!("portcullis-redis: until_synchronized")
    }
}

impl ReplayStore for RedisStore {
    fn first_use(&self, key: ReplayKey, ttl: Duration) -> StoreFuture<'_, bool> {
        let _ = (key, ttl);
        Box::pin(async { Err(StoreError::Unavailable("not built yet".into())) })
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}

impl RevocationStore for RedisStore {
    fn revoke(&self, revocation: Revocation, now: UnixTime) -> StoreFuture<'_, ()> {
        let _ = (revocation, now);
        Box::pin(async { Err(StoreError::Unavailable("not built yet".into())) })
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}
