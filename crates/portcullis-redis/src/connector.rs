//! The command connection's task: connects (each attempt bounded by `connect_timeout`, retried with exponential
//! backoff), checks the connection with `PING` every second and whenever a call timed out or failed, and replaces
//! a connection that stopped answering.

use crate::state::{HEALTH_INTERVAL, Inner, jittered, next_delay};
use redis::aio::MultiplexedConnection;
use std::sync::Arc;

pub(crate) async fn run(inner: Arc<Inner>) {
    let mut delay = inner.settings.backoff_min;
    loop {
        match connect(&inner).await {
            Ok(connection) => {
                delay = inner.settings.backoff_min;
                let generation = inner.install(connection);
                watch(&inner, generation).await;
            }
            Err(error) => {
                tracing::debug!(redis = %inner.shown_url, %error, retry_in_ms = delay.as_millis() as u64, "connecting to Redis failed");
                inner.unreachable(error);
                tokio::time::sleep(jittered(delay)).await;
                delay = next_delay(delay, inner.settings.backoff_max);
            }
        }
    }
}

/// One connection attempt: connect and see it answer `PING`, within `connect_timeout`.
async fn connect(inner: &Inner) -> Result<MultiplexedConnection, String> {
    let budget = inner.settings.connect_timeout;
    let config = redis::AsyncConnectionConfig::new().set_connection_timeout(Some(budget)).set_response_timeout(None);
    let attempt = async {
        let mut connection = inner.client.get_multiplexed_async_connection_with_config(&config).await?;
        redis::cmd("PING").query_async::<()>(&mut connection).await?;
        Ok::<_, redis::RedisError>(connection)
    };
    match tokio::time::timeout(budget, attempt).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no connection within {} ms", budget.as_millis())),
    }
}

/// Checks the connection of `generation` until it is lost (dropped by a failed call, or not answering `PING`).
async fn watch(inner: &Inner, generation: u64) {
    loop {
        tokio::select! {
            () = inner.check.notified() => {}
            () = tokio::time::sleep(HEALTH_INTERVAL) => {}
        }
        if !inner.is_current(generation) {
            return;
        }
        let ping = inner
            .call("ping", inner.background_budget(), |mut connection| async move {
                redis::cmd("PING").query_async::<()>(&mut connection).await
            })
            .await;
        if let Err(error) = ping {
            inner.lost(generation, error.to_string());
            return;
        }
    }
}
