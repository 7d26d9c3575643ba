//! Idle upstream connections, one pool per worker thread.
//!
//! A request takes the most recently used idle connection of its own thread's pool and a finished exchange puts
//! its connection back into the pool of the thread it finished on. Each pool has its own lock, taken by its thread
//! and, every [`SWEEP_EVERY`], by the sweeper that closes connections idle for [`IDLE_TIMEOUT`] or closed by the
//! upstream, so no two workers ever wait on each other.

use super::{Link, Shared};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

/// How long a connection may stay idle before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How often idle connections are checked.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// The most idle connections one worker keeps; the oldest is closed beyond it.
const MAX_IDLE_PER_WORKER: usize = 1024;

struct Idle {
    link: Link,
    since: Instant,
}

#[derive(Default)]
struct WorkerPool {
    idle: Mutex<VecDeque<Idle>>,
}

impl WorkerPool {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Every worker's pool, for the sweeper.
static POOLS: Mutex<Vec<Weak<WorkerPool>>> = Mutex::new(Vec::new());

thread_local! {
    static LOCAL: Arc<WorkerPool> = {
        let pool = Arc::new(WorkerPool::default());
        let mut pools = POOLS.lock().unwrap_or_else(PoisonError::into_inner);
        pools.retain(|pool| pool.strong_count() > 0);
        pools.push(Arc::downgrade(&pool));
        pool
    };
}

/// An idle, open connection to upstream `id` from this thread's pool, the most recently used first.
pub(super) fn checkout(id: u64) -> Option<Link> {
    LOCAL.with(|pool| {
        let mut idle = pool.lock();
        let mut cx = Context::from_waker(Waker::noop());
        while let Some(position) = idle.iter().rposition(|entry| entry.link.upstream.id == id) {
            let Some(mut entry) = idle.remove(position) else { break };
            // One poll lets the connection notice a close or stray bytes from the upstream; then it is dropped.
            if entry.since.elapsed() < IDLE_TIMEOUT && entry.link.is_idle(&mut cx) {
                return Some(entry.link);
            }
        }
        None
    })
}

/// Puts `link`, idle, into this thread's pool, unless its upstream was retired (then it is closed).
pub(super) fn checkin(link: Link) {
    LOCAL.with(|pool| {
        let mut idle = pool.lock();
        // Read under the pool's lock: the sweeper retires the upstream before it takes the locks for its last
        // sweep, so a connection is either refused here or found by that sweep.
        if link.upstream.retired.load(Ordering::SeqCst) {
            return;
        }
        while idle.len() >= MAX_IDLE_PER_WORKER {
            idle.pop_front();
        }
        idle.push_back(Idle { link, since: Instant::now() });
    });
}

/// Starts `upstream`'s sweeper on the current runtime unless it runs already. It ends, closing the upstream's
/// idle connections, once `owner` is gone (the gateway dropped the upstream, as a reload does).
pub(super) fn start_sweeper(upstream: Arc<Shared>, owner: Weak<()>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    if upstream.sweeping.swap(true, Ordering::Relaxed) {
        return;
    }
    runtime.spawn(async move {
        let mut ticks = tokio::time::interval(SWEEP_EVERY);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let gone = owner.strong_count() == 0;
            if gone {
                upstream.retired.store(true, Ordering::SeqCst);
            }
            sweep(upstream.id, gone);
            if gone {
                return;
            }
        }
    });
}

/// Closes upstream `id`'s idle connections that timed out or were closed, or all of them when the upstream is
/// `gone` (replaced by a reload).
fn sweep(id: u64, gone: bool) {
    let pools: Vec<Arc<WorkerPool>> = {
        let mut pools = POOLS.lock().unwrap_or_else(PoisonError::into_inner);
        pools.retain(|pool| pool.strong_count() > 0);
        pools.iter().filter_map(Weak::upgrade).collect()
    };
    let mut cx = Context::from_waker(Waker::noop());
    for pool in pools {
        let mut idle = pool.lock();
        idle.retain_mut(|entry| {
            entry.link.upstream.id != id || (!gone && entry.since.elapsed() < IDLE_TIMEOUT && entry.link.drive(&mut cx))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Upstream;

    async fn upstream() -> (Upstream, tokio::net::TcpListener) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let toml =
            format!("upstream = \"{url}\"\n[[issuers]]\nissuer = \"https://issuer.test/\"\naudiences = [\"api\"]\n");
        let config = crate::Config::from_toml(&toml).unwrap();
        let tls = crate::tls::upstream_config(&config).unwrap();
        (Upstream::new(&url, tls, Duration::from_secs(5)).unwrap(), listener)
    }

    #[tokio::test]
    async fn a_connection_returns_to_the_pool_unless_its_upstream_was_retired() {
        let (current, _listener) = upstream().await;
        checkin(current.connect().await.unwrap());
        assert!(checkout(current.shared.id).is_some(), "an open, idle connection is taken again");
        assert!(checkout(current.shared.id).is_none(), "and only once");

        // A response that ends after a reload retired its upstream brings its connection back late: it is closed.
        let (retired, _listener) = upstream().await;
        let late = retired.connect().await.unwrap();
        retired.shared.retired.store(true, Ordering::SeqCst);
        checkin(late);
        assert!(checkout(retired.shared.id).is_none());
        assert!(LOCAL.with(|pool| pool.lock().iter().all(|entry| entry.link.upstream.id != retired.shared.id)));
    }
}
