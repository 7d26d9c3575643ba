//! Shared state for portcullis replicas on Redis: the DPoP replay store and token revocations.
//!
//! [`RedisStore`] is a [`ReplayStore`] (one atomic `SET key NX PX ttl` per proof, so that of all replicas
//! exactly one accepts a proof) and a [`RevocationStore`] (entries kept in Redis, pushed to every replica by
//! pub/sub, and read whole again after every reconnect into each replica's local [`RevocationList`], which
//! requests check without ever waiting on Redis).
//!
//! # What is stored where
//!
//! Every key and the channel start with [`RedisSettings::key_prefix`] (default `portcullis:`):
//!
//! | Name | Type | Content | Lifetime |
//! |------|------|---------|----------|
//! | `replay:<64 hex>` | string | `1`; the hex is the [`ReplayKey`] (SHA-256 of the proof's `htu`, NUL, `jti`) | the proof window plus leeway (`PX`) |
//! | `revocations` | sorted set | member: one entry's JSON ([`Revocation`]), score: its `expires_at` | members past their score are removed by the next revocation |
//! | `revocations` (channel) | pub/sub | one entry's JSON per message | none |
//!
//! A revocation applies to this replica's list first (it enforces it at once, whatever Redis does), then one
//! `MULTI`/`EXEC` removes expired members, adds the entry and publishes it. A replica subscribes, and only once
//! subscribed reads the whole set (so that nothing falls between the two); pub/sub delivers at most once, so
//! after every reconnect it subscribes and reads the set again, and it does every
//! [`resync_interval`](RedisSettings::resync_interval) anyway. The set is read in pages of 1000 members, each
//! within the background budget (`max(timeout, 1 s)`), and the batch of messages already received is applied at
//! once. On each of these reads, the entries the replica holds and Redis lacks (Redis restarted empty) are written
//! back, at most 1000 per `MULTI`/`EXEC`, and not published (the other replicas read them at their own
//! resynchronization). [`StoreHealth::synchronized`] turns false when the set was not read whole for twice the
//! resync interval plus the background budget, even with the connection up.
//!
//! # When Redis fails
//!
//! The store never makes a request wait longer than [`RedisSettings::timeout`]: a call past it fails with
//! [`StoreError::Timeout`], and while the store knows it is disconnected a call fails at once with
//! [`StoreError::Unavailable`], without a connection attempt. Connections are re-established in the background with
//! exponential backoff (`backoff_min` up to `backoff_max`, each attempt bounded by `connect_timeout`); the
//! connection and the subscription are checked with `PING` every second and whenever a call timed out, and a
//! connection that stops answering is replaced. Meanwhile the local revocation list keeps being enforced as of its
//! last synchronization, and [`RedisStore::health`] reports the store disconnected. What a DPoP verifier does with
//! a failed replay check is its own setting ([`ReplayFailure`](portcullis::store::ReplayFailure)).
//!
//! # Redis settings
//!
//! - Persistence is not needed for replay entries (they live for seconds; a Redis that restarts empty loses at most
//!   the proofs of that window). For revocations AOF (`appendonly yes`) is recommended but not required: every
//!   running replica writes its entries back into a Redis that restarted empty.
//! - `maxmemory-policy` must never evict the `revocations` set: use `noeviction` (a full Redis refuses new replay
//!   entries, and verifiers fail closed or fall back as configured) or `volatile-ttl` (only keys with a TTL, the
//!   replay entries, are evicted, soonest-expiring first — a proof whose entry was evicted could then be replayed
//!   within its window). Either way, size `maxmemory` so that it is not reached: replay entries take about 200
//!   bytes each (Redis 7.0), for requests per second × the proof window.
//! - One database, or one prefix per deployment when several share a Redis. Cluster mode is not supported.
//!
//! # Logs and metrics
//!
//! Logs never show a Redis URL's password, a `jti`, a subject or a token: an entry is named by its kind and the
//! first 12 hex digits of the SHA-256 of its JSON. Metrics (see [`describe_metrics`]):
//! `portcullis_store_seconds{op="replay"|"revoke"|"resync"}`, `portcullis_store_errors_total{op,kind}`,
//! `portcullis_store_connected`, `portcullis_revocation_resyncs_total{result}`,
//! `portcullis_revocation_messages_total{result="applied"|"known"|"invalid"}`.
#![forbid(unsafe_code)]

mod connector;
mod names;
mod state;
mod subscriber;

use portcullis::clock::UnixTime;
use portcullis::store::{ReplayKey, ReplayStore, Revocation, RevocationList, RevocationStore, StoreError, StoreFuture};
use state::Inner;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The most members one resynchronization command reads or one write-back transaction adds.
const MAX_PAGE: usize = 1000;

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
    /// How many members a resynchronization reads per command, and writes back per transaction (default and
    /// most 1000; at least 1).
    #[doc(hidden)]
    pub page: usize,
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
            page: MAX_PAGE,
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
    /// Whether the local revocation list is current: connected, and the revocation set was last read whole at
    /// most twice the [`resync_interval`](RedisSettings::resync_interval) plus the background budget
    /// (`max(timeout, 1 s)`) ago. False while resynchronizations keep failing even though the connection is up.
    pub synchronized: bool,
}

/// The Redis-backed store. Cheap to clone; clones share connections and background tasks, which stop when the
/// last clone is dropped.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
    _tasks: Arc<Tasks>,
}

/// The background tasks, aborted with the last clone of the store.
struct Tasks(Vec<tokio::task::AbortHandle>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.inner.shown_url)
            .field("key_prefix", &self.inner.settings.key_prefix)
            .field("connected", &self.inner.status.borrow().connected())
            .finish()
    }
}

/// A `url` Redis cannot be reached by (not a connectivity failure: those are retried in the background).
#[derive(Debug, thiserror::Error)]
#[error("invalid Redis URL: {0}")]
pub struct InvalidUrl(pub String);

impl RedisStore {
    /// Starts the store: connects in the background (never fails for an unreachable Redis: it reports itself
    /// degraded and retries with backoff), subscribes to revocations and applies every change to `revocations`,
    /// resynchronizing the whole set after every (re)connect. Must be called inside a tokio runtime.
    ///
    /// Settings that would make the background tasks spin are raised: `backoff_min` to 1 ms, `backoff_max` to
    /// `backoff_min`, `resync_interval` to 10 ms.
    pub fn start(mut settings: RedisSettings, revocations: RevocationList) -> Result<Self, InvalidUrl> {
        settings.backoff_min = settings.backoff_min.max(Duration::from_millis(1));
        settings.backoff_max = settings.backoff_max.max(settings.backoff_min);
        settings.resync_interval = settings.resync_interval.max(Duration::from_millis(10));
        settings.page = settings.page.clamp(1, MAX_PAGE);
        let shown_url = names::redact(&settings.url);
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|error| InvalidUrl(format!("{shown_url}: {}", error.detail().unwrap_or("unreadable"))))?;
        let inner = Arc::new(Inner::new(settings, client, revocations, shown_url));
        let tasks = vec![
            tokio::spawn(connector::run(Arc::clone(&inner))).abort_handle(),
            tokio::spawn(subscriber::run(Arc::clone(&inner))).abort_handle(),
        ];
        Ok(Self { inner, _tasks: Arc::new(Tasks(tasks)) })
    }

    /// The connection's state.
    pub fn health(&self) -> StoreHealth {
        let status = self.inner.status.borrow();
        let fresh_within = self.inner.settings.resync_interval.saturating_mul(2) + self.inner.background_budget();
        let fresh = status.last_sync.and_then(|at| SystemTime::now().duration_since(at).ok().or(Some(Duration::ZERO)));
        let synchronized = status.connected() && status.synced && fresh.is_some_and(|age| age <= fresh_within);
        StoreHealth {
            connected: status.connected(),
            since: status.since,
            last_sync: status.last_sync,
            last_error: if status.connected() { None } else { status.last_error.clone() },
            synchronized,
        }
    }

    /// Waits until the store is connected and has synchronized the revocation set since it (re)connected, or
    /// `within` passed; `true` when it is.
    pub async fn until_synchronized(&self, within: Duration) -> bool {
        let mut status = self.inner.status.subscribe();
        let synchronized = status.wait_for(|status| status.connected() && status.synced);
        matches!(tokio::time::timeout(within, synchronized).await, Ok(Ok(_)))
    }

    /// The settings the store was started with.
    pub fn settings(&self) -> &RedisSettings {
        &self.inner.settings
    }

    async fn record(&self, key: ReplayKey, ttl: Duration) -> Result<bool, StoreError> {
        let key = self.inner.names.replay(key);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let answer = self
            .inner
            .call("replay", self.inner.settings.timeout, move |mut connection| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async::<redis::Value>(&mut connection)
                    .await
            })
            .await?;
        match answer {
            redis::Value::Okay => Ok(true),
            redis::Value::SimpleString(text) if text == "OK" => Ok(true),
            redis::Value::Nil => Ok(false),
            other => {
                metrics::counter!("portcullis_store_errors_total", "op" => "replay", "kind" => "protocol").increment(1);
                Err(StoreError::Protocol(format!("SET NX answered {}", value_kind(&other))))
            }
        }
    }

    async fn store(&self, revocation: Revocation, now: UnixTime) -> Result<(), StoreError> {
        if let Err(reason) = revocation.validate() {
            return Err(StoreError::Protocol(format!("refused an invalid revocation: {reason}")));
        }
        let json = serde_json::to_string(&revocation).map_err(|error| StoreError::Protocol(error.to_string()))?;
        // This replica enforces it at once, whatever Redis does.
        self.inner.list.apply(std::slice::from_ref(&revocation), now);
        if revocation.expires_at() <= now {
            return Ok(());
        }
        let names = &self.inner.names;
        let mut transaction = redis::pipe();
        transaction
            .atomic()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&names.revocations)
            .arg("-inf")
            .arg(now.as_secs())
            .ignore()
            .cmd("ZADD")
            .arg(&names.revocations)
            .arg(revocation.expires_at().as_secs())
            .arg(&json)
            .ignore()
            .cmd("PUBLISH")
            .arg(&names.channel)
            .arg(&json)
            .ignore();
        let result = self
            .inner
            .call("revoke", self.inner.background_budget(), move |mut connection| async move {
                transaction.query_async::<()>(&mut connection).await
            })
            .await;
        let entry = names::fingerprint(&json);
        match &result {
            Ok(()) => tracing::info!(kind = revocation.kind(), %entry, "revocation stored and published"),
            Err(error) => tracing::warn!(
                kind = revocation.kind(),
                %entry,
                %error,
                "revocation enforced on this replica only: storing it in Redis failed"
            ),
        }
        result
    }
}

/// A Redis reply's type, for error messages.
fn value_kind(value: &redis::Value) -> &'static str {
    match value {
        redis::Value::Int(_) => "an integer",
        redis::Value::BulkString(_) => "a bulk string",
        redis::Value::Array(_) => "an array",
        _ => "an unexpected value",
    }
}

/// Describes the store's metrics to the installed recorder (call once, after installing it).
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        "portcullis_store_seconds",
        Unit::Seconds,
        "Time of one shared-store operation, by op (replay, revoke, resync)"
    );
    describe_counter!(
        "portcullis_store_errors_total",
        "Failed shared-store calls, by op and kind (timeout, unavailable, protocol)"
    );
    describe_gauge!("portcullis_store_connected", "1 while the shared store's connection and subscription are up");
    describe_counter!("portcullis_revocation_resyncs_total", "Full reads of the shared revocation set, by result");
    describe_counter!(
        "portcullis_revocation_messages_total",
        "Revocation messages received, by result (applied, known, invalid)"
    );
}

impl ReplayStore for RedisStore {
    fn first_use(&self, key: ReplayKey, ttl: Duration) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.record(key, ttl).await;
            metrics::histogram!("portcullis_store_seconds", "op" => "replay").record(started.elapsed().as_secs_f64());
            result
        })
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}

impl RevocationStore for RedisStore {
    fn revoke(&self, revocation: Revocation, now: UnixTime) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.store(revocation, now).await;
            metrics::histogram!("portcullis_store_seconds", "op" => "revoke").record(started.elapsed().as_secs_f64());
            result
        })
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}
