//! State the gateway keeps for its whole life and hands to every policy it builds: the revocation list every
//! verifier checks, and, with `[store] redis_url`, the Redis store (the DPoP verifier's replay store and the
//! revocation store). `[store]` changes only on restart.

use crate::config::{Config, ConfigError, ConfigErrors, StoreConfig};
use portcullis::store::{ReplayFailure, ReplayStore, RevocationList, RevocationStore};
use portcullis_redis::RedisStore;
use std::sync::Arc;
use std::time::SystemTime;

/// The revocation list and the store of one gateway.
pub(crate) struct SharedState {
    revocations: RevocationList,
    redis: Option<RedisStore>,
    store: StoreConfig,
}

/// The store's state, for `/ready`, `/status` and `GET /revocations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoreStatus {
    /// `memory` or `redis`.
    pub name: &'static str,
    /// Always true in memory.
    pub connected: bool,
    /// When the revocation set was last read whole from the store (never in memory).
    pub last_sync: Option<SystemTime>,
    /// The last error, while disconnected.
    pub last_error: Option<String>,
    /// Whether the revocation set is current: read whole recently (always in memory).
    pub synchronized: bool,
}

impl SharedState {
    /// The state for `config`: an empty revocation list, and the Redis store when `redis_url` is set (started in
    /// the background: an unreachable Redis is retried, never refused here).
    pub(crate) fn start(config: &Config) -> Result<Self, ConfigErrors> {
        let revocations = RevocationList::new();
        let redis = match config.store.redis_settings() {
            Some(settings) => {
                if tokio::runtime::Handle::try_current().is_err() {
                    return Err(ConfigError::at(
                        "store.redis_url",
                        "the Redis store needs a running tokio runtime: build the gateway inside one",
                    )
                    .into());
                }
                let store = RedisStore::start(settings, revocations.clone())
                    .map_err(|e| ConfigError::at("store.redis_url", e.to_string()))?;
                Some(store)
            }
            None => None,
        };
        Ok(Self { revocations, redis, store: config.store.clone() })
    }

    /// The revocation list every verifier checks.
    pub(crate) fn revocations(&self) -> &RevocationList {
        &self.revocations
    }

    /// The shared replay store for the DPoP verifier, with what to do when it fails; `None` in memory.
    pub(crate) fn replay_store(&self) -> Option<(Arc<dyn ReplayStore>, ReplayFailure)> {
        let redis = self.redis.clone()?;
        Some((Arc::new(redis) as Arc<dyn ReplayStore>, self.store.replay_on_failure.failure()))
    }

    /// Where revocations are recorded: Redis, or the list itself.
    pub(crate) fn revocation_store(&self) -> &dyn RevocationStore {
        match &self.redis {
            Some(redis) => redis,
            None => &self.revocations,
        }
    }

    /// Whether DPoP checks refuse requests while the shared store is down (`replay_on_failure = "fail_closed"`).
    pub(crate) fn replay_fails_closed(&self) -> bool {
        self.store.replay_on_failure.failure() == ReplayFailure::FailClosed
    }

    /// `Err` naming the key when `config` changes `[store]` (only a restart can).
    pub(crate) fn check_reload(&self, config: &Config) -> Result<(), ConfigError> {
        if config.store == self.store {
            return Ok(());
        }
        let running = &self.store;
        let new = &config.store;
        let key = [
            ("store.redis_url", running.redis_url != new.redis_url),
            ("store.key_prefix", running.key_prefix != new.key_prefix),
            ("store.timeout_ms", running.timeout_ms != new.timeout_ms),
            ("store.connect_timeout_ms", running.connect_timeout_ms != new.connect_timeout_ms),
            ("store.resync_secs", running.resync_secs != new.resync_secs),
            ("store.replay_on_failure", running.replay_on_failure != new.replay_on_failure),
        ]
        .into_iter()
        .find_map(|(key, changed)| changed.then_some(key))
        .unwrap_or("store");
        Err(ConfigError::at(key, "changes only on restart; the running configuration is kept"))
    }

    /// The store's state now.
    pub(crate) fn status(&self) -> StoreStatus {
        match &self.redis {
            Some(redis) => {
                let health = redis.health();
                StoreStatus {
                    name: "redis",
                    connected: health.connected,
                    last_sync: health.last_sync,
                    last_error: health.last_error,
                    synchronized: health.synchronized,
                }
            }
            None => {
                StoreStatus { name: "memory", connected: true, last_sync: None, last_error: None, synchronized: true }
            }
        }
    }

    /// Sets the gauge `portcullis_revocations{kind}` to the entries in force, and with Redis
    /// `portcullis_store_connected` (the store may have set it before the metrics recorder was installed).
    pub(crate) fn publish_metrics(&self) {
        if let Some(redis) = &self.redis {
            metrics::gauge!("portcullis_store_connected").set(if redis.health().connected { 1.0 } else { 0.0 });
        }
        let counts = self.revocations.counts();
        for (kind, count) in [("jti", counts.jti), ("token_hash", counts.token_hashes), ("subject", counts.subjects)] {
            metrics::gauge!("portcullis_revocations", "kind" => kind).set(count as f64);
        }
    }
}
