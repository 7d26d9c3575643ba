//! What the background tasks and the request path share: the command connection (when there is one), the state
//! reported by `health()`, and the one way every command is sent (bounded, classified, counted).

use crate::RedisSettings;
use crate::names::Names;
use portcullis::store::{RevocationList, StoreError};
use redis::aio::MultiplexedConnection;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::sync::{Notify, watch};

/// How often an idle connection and subscription are checked with `PING`, so that `health()` notices a Redis that
/// went away while nobody asked it anything.
pub(crate) const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// The connection state, as `health()` reports it.
#[derive(Debug, Clone)]
pub(crate) struct Status {
    /// The command connection is up.
    pub(crate) commands: bool,
    /// The revocation subscription is up.
    pub(crate) subscribed: bool,
    /// The revocation set was read whole since both came up.
    pub(crate) synced: bool,
    /// Since when `connected()` has had its current value.
    pub(crate) since: SystemTime,
    pub(crate) last_sync: Option<SystemTime>,
    pub(crate) last_error: Option<String>,
}

impl Status {
    pub(crate) fn connected(&self) -> bool {
        self.commands && self.subscribed
    }
}

pub(crate) struct Inner {
    pub(crate) settings: RedisSettings,
    pub(crate) client: redis::Client,
    pub(crate) names: Names,
    pub(crate) list: RevocationList,
    /// The URL without its password, for logs.
    pub(crate) shown_url: String,
    connection: Mutex<Option<(u64, MultiplexedConnection)>>,
    generations: AtomicU64,
    /// Wakes the connection task to check the connection at once (a command timed out or failed).
    pub(crate) check: Notify,
    pub(crate) status: watch::Sender<Status>,
}

impl Inner {
    pub(crate) fn new(settings: RedisSettings, client: redis::Client, list: RevocationList, shown_url: String) -> Self {
        let names = Names::new(&settings.key_prefix);
        let status = Status {
            commands: false,
            subscribed: false,
            synced: false,
            since: SystemTime::now(),
            last_sync: None,
            last_error: Some("not connected yet".to_owned()),
        };
        metrics::gauge!("portcullis_store_connected").set(0.0);
        Self {
            settings,
            client,
            names,
            list,
            shown_url,
            connection: Mutex::new(None),
            generations: AtomicU64::new(0),
            check: Notify::new(),
            status: watch::channel(status).0,
        }
    }

    /// The budget of calls off the request path (revocations, resynchronization, health checks): the request
    /// budget, but at least one second.
    pub(crate) fn background_budget(&self) -> Duration {
        self.settings.timeout.max(Duration::from_secs(1))
    }

    /// Changes the status; keeps `since`, the gauge and the logs in step with `connected()`.
    pub(crate) fn update(&self, change: impl FnOnce(&mut Status)) {
        self.status.send_if_modified(|status| {
            let was = status.connected();
            change(status);
            let now = status.connected();
            if now {
                status.last_error = None;
            } else {
                status.synced = false;
            }
            if was != now {
                status.since = SystemTime::now();
                metrics::gauge!("portcullis_store_connected").set(if now { 1.0 } else { 0.0 });
                if now {
                    tracing::info!(redis = %self.shown_url, "shared store connected");
                } else {
                    tracing::warn!(
                        redis = %self.shown_url,
                        error = status.last_error.as_deref().unwrap_or("unknown"),
                        "shared store disconnected; revocations as of the last synchronization stay enforced"
                    );
                }
            }
            true
        });
    }

    /// Installs a fresh command connection; returns its generation.
    pub(crate) fn install(&self, connection: MultiplexedConnection) -> u64 {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        *self.connection.lock().unwrap_or_else(PoisonError::into_inner) = Some((generation, connection));
        self.update(|status| status.commands = true);
        generation
    }

    /// Whether the connection of `generation` is still the one in use.
    pub(crate) fn is_current(&self, generation: u64) -> bool {
        matches!(&*self.connection.lock().unwrap_or_else(PoisonError::into_inner), Some((current, _)) if *current == generation)
    }

    /// Drops the connection of `generation` (unless it was replaced already) and has the connection task
    /// reconnect: from now on calls fail at once instead of waiting on a dead connection.
    pub(crate) fn lost(&self, generation: u64, error: String) {
        let dropped = {
            let mut connection = self.connection.lock().unwrap_or_else(PoisonError::into_inner);
            match &*connection {
                Some((current, _)) if *current == generation => connection.take().is_some(),
                _ => false,
            }
        };
        if dropped {
            self.update(|status| {
                status.commands = false;
                status.last_error = Some(error);
            });
        }
        self.check.notify_one();
    }

    /// Records why the command connection could not be made.
    pub(crate) fn unreachable(&self, error: String) {
        self.update(|status| {
            status.commands = false;
            status.last_error = Some(error);
        });
    }

    /// Sends one command (or transaction) on the command connection within `budget`. Fails at once with
    /// `Unavailable` while there is no connection; a timeout has the connection checked, a connection error has it
    /// dropped and re-established in the background.
    pub(crate) async fn call<T, F, Fut>(&self, op: &'static str, budget: Duration, send: F) -> Result<T, StoreError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let result = self.call_bounded(budget, send).await;
        if let Err(error) = &result {
            metrics::counter!("portcullis_store_errors_total", "op" => op, "kind" => error.kind()).increment(1);
        }
        result
    }

    async fn call_bounded<T, F, Fut>(&self, budget: Duration, send: F) -> Result<T, StoreError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let current = self.connection.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let Some((generation, connection)) = current else {
            let status = self.status.borrow();
            let why = status.last_error.as_deref().unwrap_or("not connected");
            return Err(StoreError::Unavailable(format!("not connected to Redis ({why})")));
        };
        match tokio::time::timeout(budget, send(connection)).await {
            Err(_) => {
                self.check.notify_one();
                Err(StoreError::Timeout(budget))
            }
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) if is_connection_error(&error) => {
                let text = error.to_string();
                self.lost(generation, text.clone());
                Err(StoreError::Unavailable(text))
            }
            Ok(Err(error)) => Err(StoreError::Protocol(error.to_string())),
        }
    }
}

/// Whether `error` means the connection is gone (rather than a command refused by a working server).
pub(crate) fn is_connection_error(error: &redis::RedisError) -> bool {
    error.is_io_error() || error.is_connection_dropped() || error.is_unrecoverable_error() || error.is_timeout()
}

/// `delay` doubled, at most `max`.
pub(crate) fn next_delay(delay: Duration, max: Duration) -> Duration {
    delay.saturating_mul(2).min(max)
}

/// `delay` plus up to a quarter of it, so that replicas that lost Redis together do not all come back at once.
pub(crate) fn jittered(delay: Duration) -> Duration {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let quarter = delay.as_nanos() / 4;
    if quarter == 0 {
        return delay;
    }
    delay + Duration::from_nanos((u128::from(nanos) % quarter) as u64)
}
