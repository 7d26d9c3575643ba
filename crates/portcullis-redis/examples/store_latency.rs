//! The latency of the Redis store's calls, as a replica sees it: `first_use` (one `SET NX PX`) and `revoke`
//! (one `MULTI`/`EXEC`), each measured around the whole call.
//!
//! ```text
//! cargo run --release -p portcullis-redis --example store_latency -- redis://127.0.0.1:6379 [--calls N] [--concurrency C]
//! ```
//!
//! Prints one machine-readable line per operation: `op=replay calls=… concurrency=… errors=… p50_us=… p90_us=…
//! p99_us=… max_us=…`. It writes `N` replay keys (expiring after a minute) and `N` revocations (expiring after a
//! minute) under the prefix `portcullis-latency:`; run it against a Redis holding nothing you need.

use portcullis::clock::UnixTime;
use portcullis::store::{ReplayKey, ReplayStore, Revocation, RevocationList, RevocationStore};
use portcullis_redis::{RedisSettings, RedisStore};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

struct Options {
    url: String,
    calls: usize,
    concurrency: usize,
}

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut options = Options { url: String::new(), calls: 2000, concurrency: 16 };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--calls" | "--concurrency" => {
                let value = args.next().ok_or_else(|| format!("{arg} needs a number"))?;
                let value: usize = value.parse().map_err(|_| format!("{arg}: {value:?} is not a number"))?;
                if value == 0 {
                    return Err(format!("{arg} must be at least 1"));
                }
                if arg == "--calls" { options.calls = value } else { options.concurrency = value }
            }
            url if options.url.is_empty() && !url.starts_with("--") => options.url = url.to_owned(),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if options.url.is_empty() {
        return Err("usage: store_latency redis://HOST:PORT [--calls N] [--concurrency C]".to_owned());
    }
    Ok(options)
}

/// Runs `calls` calls of `op` from `concurrency` tasks; the latency of each successful call, and the error count.
async fn measure<F, Fut>(calls: usize, concurrency: usize, op: F) -> (Vec<Duration>, usize)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let op = Arc::clone(&op);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            for call in (worker..calls).step_by(concurrency) {
                let started = Instant::now();
                if op(call).await {
                    latencies.push(started.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::with_capacity(calls);
    let mut errors = 0;
    for task in tasks {
        let (latencies, failed) = task.await.expect("a measuring task panicked");
        all.extend(latencies);
        errors += failed;
    }
    all.sort_unstable();
    (all, errors)
}

fn report(op: &str, options: &Options, latencies: &[Duration], errors: usize) {
    let at = |q: f64| {
        if latencies.is_empty() {
            return 0;
        }
        let index = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index].as_micros()
    };
    println!(
        "op={op} calls={} concurrency={} errors={errors} p50_us={} p90_us={} p99_us={} max_us={}",
        options.calls,
        options.concurrency,
        at(0.50),
        at(0.90),
        at(0.99),
        latencies.last().map_or(0, Duration::as_micros)
    );
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let mut settings = RedisSettings::new(options.url.as_str());
    settings.key_prefix = "portcullis-latency:".to_owned();
    let store = match RedisStore::start(settings, RevocationList::new()) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    if !store.until_synchronized(Duration::from_secs(5)).await {
        eprintln!("Redis not reachable within 5 s: {:?}", store.health().last_error);
        return ExitCode::FAILURE;
    }
    let run = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());

    let replay = store.clone();
    let (latencies, errors) = measure(options.calls, options.concurrency, move |call| {
        let store = replay.clone();
        async move {
            let key = ReplayKey::for_proof("https://latency.example/", &format!("{run}-{call}"));
            store.first_use(key, Duration::from_secs(60)).await.is_ok_and(|first| first)
        }
    })
    .await;
    report("replay", &options, &latencies, errors);

    let revoke = store.clone();
    let (latencies, errors) = measure(options.calls, options.concurrency, move |call| {
        let store = revoke.clone();
        async move {
            let now = UnixTime::from_system_time(SystemTime::now());
            let entry = Revocation::jti(format!("latency-{run}-{call}"), UnixTime::from_secs(now.as_secs() + 60));
            store.revoke(entry, now).await.is_ok()
        }
    })
    .await;
    report("revoke", &options, &latencies, errors);
    ExitCode::SUCCESS
}
