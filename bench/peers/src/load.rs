//! Load tools: fixed-rate latency (`rate`), the invalid-token flood (`flood`) and the distinct-token feed (`feed`).

use crate::tokens::{claims, keys};
use crate::{AUDIENCE, ISSUER};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

fn client(connections: usize) -> HttpClient {
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(connections).build_http()
}

fn read_tokens(path: &PathBuf) -> Result<Arc<Vec<String>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let tokens: Vec<String> = text.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect();
    if tokens.is_empty() {
        return Err(format!("{}: no tokens", path.display()));
    }
    Ok(Arc::new(tokens))
}

/// Extra headers, from `Name: value` arguments.
pub type Headers = Arc<Vec<(String, String)>>;

pub fn parse_headers(args: &[String]) -> Result<Headers, String> {
    args.iter()
        .map(|arg| {
            let (name, value) = arg.split_once(':').ok_or(format!("header {arg:?} is not `Name: value`"))?;
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect::<Result<Vec<_>, String>>()
        .map(Arc::new)
}

/// Sends one GET with the token and the extra headers; returns the status (0 when the request failed).
async fn send(client: &HttpClient, url: &str, headers: &Headers, token: &str) -> u16 {
    let mut request = hyper::Request::get(url).header("authorization", format!("Bearer {token}"));
    for (name, value) in headers.iter() {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = match request.body(Empty::new()) {
        Ok(request) => request,
        Err(_) => return 0,
    };
    match client.request(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            // Read the body so the connection is reused.
            let _ = response.into_body().collect().await;
            status
        }
        Err(_) => 0,
    }
}

/// A small xorshift generator: load patterns need variety, not unpredictability.
struct Xorshift(u64);

impl Xorshift {
    fn seeded() -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos());
        Self((nanos as u64) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    /// Answers that contradict the token (with `--expect-mixed`).
    wrong: AtomicU64,
}

impl Counts {
    fn record(&self, status: u16) {
        let counter = match status {
            200..=299 => &self.ok,
            0 => &self.failed,
            _ => &self.rejected,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// How `rate` sends: requests per second, for how long, over how many connections, and whether the answers are
/// checked against the mixed token set's pattern.
pub struct Pace {
    pub rps: u64,
    pub seconds: u64,
    pub connections: usize,
    pub expect_mixed: bool,
}

/// The status the mixed set's token number `i` must get: valid ones (every other) 200, the others 401.
fn mixed_expectation(i: usize) -> u16 {
    if i.is_multiple_of(2) { 200 } else { 401 }
}

/// Open-loop load at `rps` for `seconds`; each latency counts from the request's scheduled start, so a stalled
/// server cannot hide its queue (no coordinated omission).
pub async fn rate(url: String, headers: Headers, tokens: PathBuf, pace: Pace) -> Result<(), String> {
    let Pace { rps, seconds, connections, expect_mixed } = pace;
    let tokens = read_tokens(&tokens)?;
    let client = client(connections);
    let total = rps * seconds;
    let next = Arc::new(AtomicU64::new(0));
    let counts = Arc::new(Counts::default());
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, url, headers, tokens, next, counts) =
            (client.clone(), url.clone(), headers.clone(), tokens.clone(), next.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return histogram;
                }
                let due = start + Duration::from_nanos(i * 1_000_000_000 / rps);
                // The timer wheel ticks in milliseconds: sleep most of the way, then yield until the exact moment.
                if due.saturating_duration_since(tokio::time::Instant::now()) > Duration::from_millis(2) {
                    tokio::time::sleep_until(due - Duration::from_millis(1)).await;
                }
                while tokio::time::Instant::now() < due {
                    tokio::task::yield_now().await;
                }
                let index = (i as usize) % tokens.len();
                let status = send(&client, &url, &headers, &tokens[index]).await;
                counts.record(status);
                if expect_mixed && status != mixed_expectation(index) {
                    counts.wrong.fetch_add(1, Ordering::Relaxed);
                }
                let micros = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
                let _ = histogram.record(micros.max(1));
            }
        }));
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    for task in tasks {
        all.add(task.await.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    println!(
        "rate: target_rps={rps} seconds={seconds} sent={} ok={} rejected={} failed={} wrong={} p50_us={} p90_us={} p99_us={} p999_us={} max_us={}",
        all.len(),
        counts.ok.load(Ordering::Relaxed),
        counts.rejected.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        counts.wrong.load(Ordering::Relaxed),
        all.value_at_quantile(0.50),
        all.value_at_quantile(0.90),
        all.value_at_quantile(0.99),
        all.value_at_quantile(0.999),
        all.max()
    );
    Ok(())
}

/// A token that can never verify: a random `kid` (80 %) or garbage (20 %).
fn hostile(random: &mut Xorshift) -> String {
    let b64 = |bytes: &[u8]| base64_simd::URL_SAFE_NO_PAD.encode_to_string(bytes);
    if random.next().is_multiple_of(5) {
        let junk: Vec<u8> = (0..64).map(|_| (random.next() % 256) as u8).collect();
        return format!("{}.{}", b64(&junk), b64(&junk[..16]));
    }
    let header = format!(r#"{{"alg":"RS256","typ":"JWT","kid":"flood-{:016x}"}}"#, random.next());
    let payload = claims(random.next() % 1_000_000, AUDIENCE, ISSUER).to_string();
    let signature: Vec<u8> = (0..256).map(|_| (random.next() % 256) as u8).collect();
    format!("{}.{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()), b64(&signature))
}

/// `connections` clients send hostile tokens as fast as they can while two clients send valid tokens.
pub async fn flood(
    url: String,
    headers: Headers,
    valid: PathBuf,
    seconds: u64,
    connections: usize,
) -> Result<(), String> {
    let valid = read_tokens(&valid)?;
    let client = client(connections + 2);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (hostile_counts, valid_counts) = (Arc::new(Counts::default()), Arc::new(Counts::default()));
    let mut tasks = Vec::new();
    for n in 0..connections + 2 {
        let (client, url, headers, valid) = (client.clone(), url.clone(), headers.clone(), valid.clone());
        let counts = if n < 2 { valid_counts.clone() } else { hostile_counts.clone() };
        tasks.push(tokio::spawn(async move {
            let mut random = Xorshift::seeded();
            let mut i = n;
            while Instant::now() < deadline {
                let token = if n < 2 { valid[i % valid.len()].clone() } else { hostile(&mut random) };
                counts.record(send(&client, &url, &headers, &token).await);
                i += 2;
            }
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())?;
    }
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "flood: seconds={seconds} hostile_sent={} hostile_rejected={} hostile_ok={} hostile_failed={} valid_sent={} valid_ok={} valid_rejected={} valid_failed={}",
        load(&hostile_counts.ok) + load(&hostile_counts.rejected) + load(&hostile_counts.failed),
        load(&hostile_counts.rejected),
        load(&hostile_counts.ok),
        load(&hostile_counts.failed),
        load(&valid_counts.ok) + load(&valid_counts.rejected) + load(&valid_counts.failed),
        load(&valid_counts.ok),
        load(&valid_counts.rejected),
        load(&valid_counts.failed),
    );
    Ok(())
}

/// Sends `count` distinct valid ES256 tokens, signed on the fly, each `repeat` times in a row.
pub async fn feed(
    url: String,
    headers: Headers,
    dir: PathBuf,
    count: u64,
    repeat: u32,
    connections: usize,
) -> Result<(), String> {
    let (_, ec) = keys(&dir)?;
    let ec = Arc::new(ec);
    let client = client(connections);
    let next = Arc::new(AtomicU64::new(0));
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, url, headers, ec, next, counts) =
            (client.clone(), url.clone(), headers.clone(), ec.clone(), next.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                match ec.sign_token(&claims(i, AUDIENCE, ISSUER), None) {
                    Ok(token) => {
                        for _ in 0..repeat {
                            counts.record(send(&client, &url, &headers, &token).await);
                        }
                    }
                    Err(_) => counts.record(0),
                }
            }
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())?;
    }
    println!(
        "feed: tokens={count} repeat={repeat} sent={} ok={} rejected={} failed={} seconds={:.1}",
        count * u64::from(repeat),
        counts.ok.load(Ordering::Relaxed),
        counts.rejected.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Slowloris: `connections` connections each send the start of a request and then one header byte every 5 s;
/// whenever the server closes one, a new one takes its place. Reports how many were opened and closed by the
/// server.
pub async fn slow(address: std::net::SocketAddr, connections: usize, seconds: u64) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let (opened, closed, refused) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for n in 0..connections {
        let (opened, closed, refused) = (opened.clone(), closed.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            // Spread the openings over the first two seconds.
            tokio::time::sleep(Duration::from_micros((n as u64 * 2_000_000) / connections.max(1) as u64)).await;
            while tokio::time::Instant::now() < deadline {
                let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
                    refused.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                opened.fetch_add(1, Ordering::Relaxed);
                if stream.write_all(b"GET /auth HTTP/1.1\r\nHost: slow\r\nX-Slow: ").await.is_err() {
                    closed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let mut byte = [0u8; 1];
                loop {
                    let pause = tokio::time::sleep(Duration::from_secs(5));
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => return,
                        read = stream.read(&mut byte) => {
                            // The server answered or closed: this connection is over.
                            let _ = read;
                            closed.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        () = pause => {
                            if stream.write_all(b"a").await.is_err() {
                                closed.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())?;
    }
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "slow: connections={connections} seconds={seconds} opened={} closed_by_server={} connect_failures={}",
        load(&opened),
        load(&closed),
        load(&refused)
    );
    Ok(())
}
