//! The revocation subscription's task: subscribes on its own connection, and only once subscribed reads the whole
//! set (so that no entry falls between the two); then applies every message, resynchronizes every
//! `resync_interval` and whenever the command connection comes back, and starts over (with backoff) when the
//! subscription fails.

use crate::names::fingerprint;
use crate::state::{HEALTH_INTERVAL, Inner, jittered, next_delay};
use futures_core::Stream;
use portcullis::clock::UnixTime;
use portcullis::store::{Revocation, StoreError};
use redis::aio::{PubSubSink, PubSubStream};
use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Instant, SystemTime};
use tokio::time::sleep_until;

pub(crate) async fn run(inner: Arc<Inner>) {
    let mut delay = inner.settings.backoff_min;
    loop {
        let error = match subscribe(&inner).await {
            Ok((sink, stream)) => {
                inner.update(|status| status.subscribed = true);
                let (error, synced) = listen(&inner, sink, stream).await;
                if synced {
                    delay = inner.settings.backoff_min;
                }
                error
            }
            Err(error) => error,
        };
        tracing::debug!(redis = %inner.shown_url, %error, retry_in_ms = delay.as_millis() as u64, "revocation subscription down");
        inner.update(|status| {
            status.subscribed = false;
            status.last_error = Some(error);
        });
        tokio::time::sleep(jittered(delay)).await;
        delay = next_delay(delay, inner.settings.backoff_max);
    }
}

async fn subscribe(inner: &Inner) -> Result<(PubSubSink, PubSubStream), String> {
    let budget = inner.settings.connect_timeout;
    let attempt = async {
        let mut pubsub = inner.client.get_async_pubsub().await?;
        pubsub.subscribe(&inner.names.channel).await?;
        Ok::<_, redis::RedisError>(pubsub.split())
    };
    match tokio::time::timeout(budget, attempt).await {
        Ok(Ok(split)) => Ok(split),
        Ok(Err(error)) => Err(format!("subscribing failed: {error}")),
        Err(_) => Err(format!("subscribing took longer than {} ms", budget.as_millis())),
    }
}

/// Serves one subscription until it fails; returns why, and whether the set was synchronized meanwhile.
async fn listen(inner: &Inner, mut sink: PubSubSink, mut stream: PubSubStream) -> (String, bool) {
    let mut status = inner.status.subscribe();
    let mut commands = status.borrow_and_update().commands;
    let mut resync_at = tokio::time::Instant::now();
    let mut retry = inner.settings.backoff_min;
    let mut ping_at = tokio::time::Instant::now() + HEALTH_INTERVAL;
    let mut synced = false;
    loop {
        tokio::select! {
            message = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)) => match message {
                Some(message) => {
                    // Every message already received is applied with this one, as one batch.
                    let (batch, open) = drain(&mut stream, message).await;
                    on_messages(inner, &batch);
                    if !open {
                        return ("the revocation subscription was closed".to_owned(), synced);
                    }
                }
                None => return ("the revocation subscription was closed".to_owned(), synced),
            },
            // Without the command connection there is nothing to read with; its return triggers the resync.
            () = sleep_until(resync_at), if commands => match resync(inner).await {
                Ok(()) => {
                    synced = true;
                    retry = inner.settings.backoff_min;
                    resync_at = tokio::time::Instant::now() + inner.settings.resync_interval;
                }
                Err(error) => {
                    tracing::debug!(%error, retry_in_ms = retry.as_millis() as u64, "resynchronizing revocations failed");
                    resync_at = tokio::time::Instant::now() + jittered(retry);
                    retry = next_delay(retry, inner.settings.backoff_max);
                }
            },
            () = sleep_until(ping_at) => {
                match tokio::time::timeout(inner.background_budget(), sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => ping_at = tokio::time::Instant::now() + HEALTH_INTERVAL,
                    Ok(Err(error)) => return (format!("the revocation subscription failed: {error}"), synced),
                    Err(_) => return ("the revocation subscription stopped answering".to_owned(), synced),
                }
            },
            changed = status.changed() => {
                if changed.is_err() {
                    return ("the store was shut down".to_owned(), synced);
                }
                let now_up = status.borrow_and_update().commands;
                if now_up && !commands {
                    // Redis may have restarted empty while the subscription was down: compare and write back.
                    resync_at = tokio::time::Instant::now();
                }
                commands = now_up;
            },
        }
    }
}

/// The most messages applied as one batch.
const MAX_BATCH: usize = 10_000;

/// `first` and every message already received after it (up to [`MAX_BATCH`]), without waiting for more; and
/// whether the subscription is still open.
async fn drain(stream: &mut PubSubStream, first: redis::Msg) -> (Vec<redis::Msg>, bool) {
    let mut batch = vec![first];
    let mut open = true;
    while batch.len() < MAX_BATCH {
        let next = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *stream).poll_next(cx))).await;
        match next {
            Poll::Ready(Some(message)) => batch.push(message),
            Poll::Ready(None) => {
                open = false;
                break;
            }
            Poll::Pending => break,
        }
    }
    (batch, open)
}

/// Applies a batch of messages, each an entry's JSON, with one `apply`. Anything else is counted and logged, never
/// applied.
fn on_messages(inner: &Inner, messages: &[redis::Msg]) {
    let now = UnixTime::from_system_time(SystemTime::now());
    let mut entries = Vec::with_capacity(messages.len());
    for message in messages {
        let payload = message.get_payload_bytes();
        match parse(payload) {
            Ok(entry) => entries.push(entry),
            Err(reason) => {
                metrics::counter!("portcullis_revocation_messages_total", "result" => "invalid").increment(1);
                tracing::warn!(bytes = payload.len(), reason, "ignored a malformed revocation message");
            }
        }
    }
    if entries.is_empty() {
        return;
    }
    let applied = inner.list.apply(&entries, now);
    let known = entries.len().saturating_sub(applied);
    metrics::counter!("portcullis_revocation_messages_total", "result" => "applied").increment(applied as u64);
    metrics::counter!("portcullis_revocation_messages_total", "result" => "known").increment(known as u64);
    if applied > 0 {
        if let [entry] = entries.as_slice() {
            let json = serde_json::to_string(entry).unwrap_or_default();
            tracing::info!(kind = entry.kind(), entry = %fingerprint(&json), "revocation received");
        } else {
            tracing::info!(applied, known, "revocations received");
        }
    }
}

/// An entry from its JSON, validated.
pub(crate) fn parse(payload: &[u8]) -> Result<Revocation, &'static str> {
    let entry: Revocation = serde_json::from_slice(payload).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => "not a revocation entry",
        _ => "not JSON",
    })?;
    entry.validate()?;
    Ok(entry)
}

/// Reads the whole set (page by page), applies it, and writes back the local entries Redis lacks, so that
/// revocations survive a Redis that restarted empty as long as one replica runs. Written-back entries are not
/// published: the other replicas pick them up at their own resynchronization.
pub(crate) async fn resync(inner: &Inner) -> Result<(), StoreError> {
    let started = Instant::now();
    let result = resync_once(inner).await;
    metrics::histogram!("portcullis_store_seconds", "op" => "resync").record(started.elapsed().as_secs_f64());
    let label = if result.is_ok() { "ok" } else { "error" };
    metrics::counter!("portcullis_revocation_resyncs_total", "result" => label).increment(1);
    result
}

/// Every member of the set in force after `now`, read in pages of `inner.settings.page` members, each page within
/// the background budget. The pages follow the score (then the member): a page starts at the last score seen,
/// past the members of that score already read, so that members removed meanwhile (expired ones) shift nothing.
async fn read_set(inner: &Inner, now: UnixTime) -> Result<Vec<Vec<u8>>, StoreError> {
    let page = inner.settings.page;
    let budget = inner.background_budget();
    let mut members = Vec::new();
    // The score the next page starts at (exclusive of `now` for the first), and how many members of that score
    // were read already.
    let mut from = format!("({}", now.as_secs());
    let mut seen_at_score = 0usize;
    loop {
        let key = inner.names.revocations.clone();
        let start = from.clone();
        let skip = seen_at_score;
        let flat: Vec<Vec<u8>> = inner
            .call("resync", budget, move |mut connection| async move {
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&key)
                    .arg(&start)
                    .arg("+inf")
                    .arg("WITHSCORES")
                    .arg("LIMIT")
                    .arg(skip)
                    .arg(page)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        if !flat.len().is_multiple_of(2) {
            return Err(StoreError::Protocol("ZRANGEBYSCORE WITHSCORES answered an odd count".to_owned()));
        }
        let full = flat.len() / 2 >= page;
        let mut rows = flat.into_iter();
        while let (Some(member), Some(score)) = (rows.next(), rows.next()) {
            let score =
                std::str::from_utf8(&score).ok().and_then(|score| score.parse::<f64>().ok()).ok_or_else(|| {
                    StoreError::Protocol("ZRANGEBYSCORE answered a score that is not a number".to_owned())
                })? as u64;
            if from == score.to_string() {
                seen_at_score += 1;
            } else {
                from = score.to_string();
                seen_at_score = 1;
            }
            members.push(member);
        }
        if !full {
            return Ok(members);
        }
    }
}

async fn resync_once(inner: &Inner) -> Result<(), StoreError> {
    let now = UnixTime::from_system_time(SystemTime::now());
    let members = read_set(inner, now).await?;
    let mut held = HashSet::with_capacity(members.len());
    let mut invalid = 0usize;
    for member in &members {
        match parse(member) {
            Ok(entry) => {
                held.insert(entry);
            }
            Err(_) => invalid += 1,
        }
    }
    if invalid > 0 {
        tracing::warn!(invalid, "the revocation set holds malformed members; they are ignored");
    }
    let entries: Vec<Revocation> = held.iter().cloned().collect();
    let applied = inner.list.apply(&entries, now);
    let missing: Vec<Revocation> =
        inner.list.entries().into_iter().filter(|entry| entry.expires_at() > now && !held.contains(entry)).collect();
    if !missing.is_empty() {
        write_back(inner, &missing, now).await?;
    }
    if applied > 0 || !missing.is_empty() {
        tracing::info!(held = held.len(), applied, written_back = missing.len(), "revocations resynchronized");
    }
    let synced_at = SystemTime::now();
    inner.update(|status| {
        status.last_sync = Some(synced_at);
        status.synced = status.connected();
    });
    Ok(())
}

/// Adds `missing` to the set in transactions of at most `inner.settings.page` members, each within the background
/// budget; the first also drops the expired members. Nothing is published.
async fn write_back(inner: &Inner, missing: &[Revocation], now: UnixTime) -> Result<(), StoreError> {
    for (index, chunk) in missing.chunks(inner.settings.page).enumerate() {
        let mut transaction = redis::pipe();
        transaction.atomic();
        if index == 0 {
            transaction.cmd("ZREMRANGEBYSCORE").arg(&inner.names.revocations).arg("-inf").arg(now.as_secs()).ignore();
        }
        for entry in chunk {
            let json = serde_json::to_string(entry).map_err(|error| StoreError::Protocol(error.to_string()))?;
            transaction.cmd("ZADD").arg(&inner.names.revocations).arg(entry.expires_at().as_secs()).arg(&json).ignore();
        }
        inner
            .call("resync", inner.background_budget(), move |mut connection| async move {
                transaction.query_async::<()>(&mut connection).await
            })
            .await?;
    }
    Ok(())
}
