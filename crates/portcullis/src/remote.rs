//! Remote key sets: an issuer's JWKS fetched over HTTPS, cached whole, refreshed ahead of expiry, refetched on
//! rotation, rate-limited against floods, and kept through outages.
//!
//! # Lifecycle and defaults
//!
//! | behaviour | default | why |
//! |---|---|---|
//! | cache the whole set, swapped atomically | — | the request path reads a snapshot and never takes a lock |
//! | lifetime from `Cache-Control: max-age` | 10 min when absent | the issuer knows its rotation schedule best |
//! | lifetime clamped to | 1 min … 24 h | a `max-age=0` must not turn every request into a fetch; a year-long one must not pin a revoked key |
//! | refresh ahead | at 80 % of the lifetime, in the background | requests never wait for a routine refresh |
//! | unknown `kid` | one refetch, then at most one per 30 s cooldown | a genuinely rotated key works on first use; a flood of invented kids cannot drive fetches |
//! | token bucket on all fetches | 10, refilled at 10 per minute | a hard ceiling on what any traffic can make us send to the issuer |
//! | negative cache | kids still unknown after a fetch, for the cooldown | repeated bogus kids are refused without touching the limiter |
//! | stale-if-error | keep the last good set 24 h past its expiry | an IdP outage must not become an API outage |
//! | no usable set | `keys_unavailable` (HTTP 503 with `Retry-After`) | the fault is ours or the IdP's, never the client's (not 401) |
//! | fetch hygiene | 5 s timeout, 1 MiB body, same-host redirects, HTTPS except loopback | see [`fetch`](crate::fetch) |
//! | discovered `jwks_uri` | read again after `max_ttl` (24 h), and after a failed fetch from it | an issuer that moves its key set is followed without a restart; if discovery then fails, the known location keeps serving |
//!
//! A response that is not a JWK Set, or whose keys are all unusable, never replaces a good cached set; unusable
//! keys inside a good set are skipped with a warning.
//!
//! Lifecycle time comes from the injected [`Clock`], so tests move time without sleeping.
//!
//! # Example
//!
//! ```no_run
//! use portcullis::remote::{KeyLocation, RemoteKeySet, RemoteOptions};
//! use portcullis::{SystemClock, Verifier};
//! use std::sync::Arc;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let issuer = "https://your-tenant.auth0.com/";
//! let keys = RemoteKeySet::new(
//!     KeyLocation::Discovery { issuer: issuer.into() },
//!     RemoteOptions::default(),
//!     Arc::new(SystemClock),
//! )?;
//! keys.spawn_refresher(); // load now and keep fresh even without traffic
//! let verifier = Verifier::builder()
//!     .issuer(issuer)
//!     .audience("https://api.example.com")
//!     .key_source(Arc::new(keys))
//!     .build()?;
//! let verified = verifier.verify_async("eyJ...").await?;
//! # Ok(()) }
//! ```
//!
//! An identity provider that cannot be reached before any key was loaded gives `keys_unavailable`, which servers
//! answer with 503 and `Retry-After` — never 401, since the client did nothing wrong:
//!
//! ```
//! use portcullis::remote::{KeyLocation, RemoteKeySet, RemoteOptions};
//! use portcullis::{Algorithm, Reason, SystemClock, Verifier, signing::SigningKey};
//! use std::sync::Arc;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Nothing listens on port 9 of the loopback address: every fetch fails at once.
//! let keys = RemoteKeySet::new(
//!     KeyLocation::Jwks("http://127.0.0.1:9/.well-known/jwks.json".into()),
//!     RemoteOptions::default(),
//!     Arc::new(SystemClock),
//! )
//! .unwrap();
//! let verifier = Verifier::builder()
//!     .issuer("https://tenant.example.com/")
//!     .audience("https://api.example.com")
//!     .key_source(Arc::new(keys.clone()))
//!     .build()
//!     .unwrap();
//! let signer = SigningKey::generate(Algorithm::ES256, Some("k1".into())).unwrap();
//! let token = signer.sign_token(&serde_json::json!({"iss": "https://tenant.example.com/"}), None).unwrap();
//!
//! let err = verifier.verify_async(&token).await.unwrap_err();
//! assert_eq!(err.reason(), Reason::KeysUnavailable);
//! assert_eq!(err.http_status(), 503);
//! assert!(err.retry_after().is_some());
//! assert!(!verifier.is_ready());
//! assert_eq!(keys.status().failures, 1);
//! # }
//! ```

use crate::clock::Clock;
use crate::discovery::DiscoveryError;
use crate::error::{Error, Reason, quoted};
use crate::fetch::{FetchError, FetchPolicy, Fetcher};
use crate::jwk::VerifyingKey;
use crate::keyset::{KeySet, KeySetError};
use crate::source::{KeyFuture, KeySource, keys_unavailable};
use arc_swap::ArcSwapOption;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Held while a key set writes its metric series, and while [`without_publication`] runs.
static PUBLICATION: Mutex<()> = Mutex::new(());

/// Runs `render` while no key set writes its metric series, so that a metrics endpoint rendering inside it shows
/// each key set's counters and gauges from one publication (never, say, a new key count next to the fetch counter
/// of the moment before). Key sets that finish a fetch meanwhile publish right after.
///
/// ```
/// let text = portcullis::remote::without_publication(|| String::from("# rendered metrics"));
/// assert_eq!(text, "# rendered metrics");
/// ```
pub fn without_publication<R>(render: impl FnOnce() -> R) -> R {
    let _quiet = PUBLICATION.lock().unwrap_or_else(PoisonError::into_inner);
    render()
}

/// Where the key set lives.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyLocation {
    /// A JWKS URL.
    Jwks(String),
    /// An issuer whose discovery document names the JWKS URL (`jwks_uri`).
    Discovery {
        /// The issuer, exactly as it appears in tokens.
        issuer: String,
    },
}

impl KeyLocation {
    /// Checks the location against `policy` without fetching anything: a JWKS URL must be `https` (plain `http`
    /// only to a loopback host, unless the policy allows it) and carry no credentials, as
    /// [`RemoteKeySet::new`] requires; for discovery, the issuer's well-known URL is held to the same rules, since
    /// every discovery fetch would be refused otherwise.
    ///
    /// ```
    /// use portcullis::fetch::FetchPolicy;
    /// use portcullis::remote::KeyLocation;
    /// let policy = FetchPolicy::default();
    /// assert!(KeyLocation::Jwks("https://tenant.example/.well-known/jwks.json".into()).check(&policy).is_ok());
    /// assert!(KeyLocation::Jwks("http://127.0.0.1:4000/jwks.json".into()).check(&policy).is_ok());
    /// let refused = KeyLocation::Jwks("http://idp.example/jwks.json".into()).check(&policy).unwrap_err();
    /// assert!(refused.to_string().contains("plain HTTP is only allowed for loopback addresses"), "{refused}");
    /// let issuer = KeyLocation::Discovery { issuer: "http://idp.example/".into() };
    /// assert!(issuer.check(&policy).is_err());
    /// ```
    pub fn check(&self, policy: &FetchPolicy) -> Result<(), FetchError> {
        match self {
            KeyLocation::Jwks(url) => crate::fetch::check_url(url, policy).map(drop),
            KeyLocation::Discovery { issuer } => {
                for url in crate::discovery::well_known_urls(issuer) {
                    crate::fetch::check_url(&url, policy)?;
                }
                Ok(())
            }
        }
    }
}

/// Tunables of a [`RemoteKeySet`]; the defaults are explained in the module docs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RemoteOptions {
    /// Lifetime when the response has no usable `Cache-Control: max-age`.
    pub default_ttl: Duration,
    /// Lower bound on the lifetime.
    pub min_ttl: Duration,
    /// Upper bound on the lifetime.
    pub max_ttl: Duration,
    /// Fraction of the lifetime after which a background refresh starts (0.8 = at 80 %).
    pub refresh_at: f64,
    /// Minimum time between refetches caused by unknown kids, and the negative-cache lifetime.
    pub cooldown: Duration,
    /// Token bucket size: fetches allowed in a burst.
    pub bucket_capacity: u32,
    /// Token bucket refill: fetches allowed per minute, sustained.
    pub fetches_per_minute: u32,
    /// How long past its expiry the last good set keeps serving when refreshes fail.
    pub max_staleness: Duration,
    /// Wait after a failed fetch before a background refresh retries.
    pub retry_interval: Duration,
    /// HTTP rules for each fetch.
    pub fetch: FetchPolicy,
    /// Keys one set may hold; a larger set is refused (the last good one stays).
    pub max_keys: usize,
}

impl RemoteOptions {
    /// Sets [`default_ttl`](Self::default_ttl): lifetime when the response has no usable `Cache-Control: max-age`.
    #[must_use]
    pub fn with_default_ttl(mut self, default_ttl: Duration) -> Self {
        self.default_ttl = default_ttl;
        self
    }

    /// Sets [`min_ttl`](Self::min_ttl): lower bound on the lifetime.
    #[must_use]
    pub fn with_min_ttl(mut self, min_ttl: Duration) -> Self {
        self.min_ttl = min_ttl;
        self
    }

    /// Sets [`max_ttl`](Self::max_ttl): upper bound on the lifetime.
    #[must_use]
    pub fn with_max_ttl(mut self, max_ttl: Duration) -> Self {
        self.max_ttl = max_ttl;
        self
    }

    /// Sets [`refresh_at`](Self::refresh_at): fraction of the lifetime after which a background refresh starts (0.8 = at 80 %).
    #[must_use]
    pub fn with_refresh_at(mut self, refresh_at: f64) -> Self {
        self.refresh_at = refresh_at;
        self
    }

    /// Sets [`cooldown`](Self::cooldown): minimum time between refetches caused by unknown kids, and the negative-cache lifetime.
    #[must_use]
    pub fn with_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// Sets [`bucket_capacity`](Self::bucket_capacity): token bucket size: fetches allowed in a burst.
    #[must_use]
    pub fn with_bucket_capacity(mut self, bucket_capacity: u32) -> Self {
        self.bucket_capacity = bucket_capacity;
        self
    }

    /// Sets [`fetches_per_minute`](Self::fetches_per_minute): token bucket refill: fetches allowed per minute, sustained.
    #[must_use]
    pub fn with_fetches_per_minute(mut self, fetches_per_minute: u32) -> Self {
        self.fetches_per_minute = fetches_per_minute;
        self
    }

    /// Sets [`max_staleness`](Self::max_staleness): how long past its expiry the last good set keeps serving when refreshes fail.
    #[must_use]
    pub fn with_max_staleness(mut self, max_staleness: Duration) -> Self {
        self.max_staleness = max_staleness;
        self
    }

    /// Sets [`retry_interval`](Self::retry_interval): wait after a failed fetch before a background refresh retries.
    #[must_use]
    pub fn with_retry_interval(mut self, retry_interval: Duration) -> Self {
        self.retry_interval = retry_interval;
        self
    }

    /// Sets [`fetch`](Self::fetch): HTTP rules for each fetch.
    #[must_use]
    pub fn with_fetch(mut self, fetch: FetchPolicy) -> Self {
        self.fetch = fetch;
        self
    }

    /// Sets [`max_keys`](Self::max_keys): keys one set may hold.
    #[must_use]
    pub fn with_max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(600),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(24 * 3600),
            refresh_at: 0.8,
            cooldown: Duration::from_secs(30),
            bucket_capacity: 10,
            fetches_per_minute: 10,
            max_staleness: Duration::from_secs(24 * 3600),
            retry_interval: Duration::from_secs(10),
            fetch: FetchPolicy::default(),
            max_keys: 128,
        }
    }
}

/// Why [`RemoteKeySet::new`] refused its options.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The fetch policy or the key set URL is not acceptable.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// `refresh_at` is not a fraction in (0, 1].
    #[error("refresh_at must be a fraction above 0 and at most 1, not {0}")]
    RefreshAt(f64),
    /// `min_ttl` is longer than `max_ttl`.
    #[error("min_ttl ({min:?}) is longer than max_ttl ({max:?})")]
    TtlBounds {
        /// The configured minimum.
        min: Duration,
        /// The configured maximum.
        max: Duration,
    },
}

/// Why a fetch stored no new key set ([`RemoteKeySet::refresh`]). The message is the one the key set's
/// [`Status::last_error`] and logs show; [`source`](std::error::Error::source) gives the underlying error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    /// The key set could not be fetched.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// Discovery found no usable key set location.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// The response is not a usable JWK Set.
    #[error("{url}: {source}")]
    #[non_exhaustive]
    KeySet {
        /// Where the key set was fetched from.
        url: String,
        /// What is wrong with it.
        source: KeySetError,
    },
    /// The response is a JWK Set, but none of its keys can be used; the previous set is kept.
    #[error("{url}: the key set has no usable keys; keeping the previous one")]
    #[non_exhaustive]
    NoUsableKeys {
        /// Where the key set was fetched from.
        url: String,
    },
    /// The fetch was refused by the rate limit.
    #[error("fetch refused by the rate limit")]
    RateLimited,
    /// The task running the fetch failed.
    #[error("fetch task failed: {0}")]
    Task(String),
}

/// What a remote key set has been doing, for readiness, metrics and tests.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Status {
    /// Whether a usable set is held.
    pub ready: bool,
    /// Usable keys in the held set.
    pub keys: usize,
    /// When the held set was fetched (clock seconds).
    pub fetched_at: Option<f64>,
    /// When the held set expires (clock seconds); it keeps serving until `max_staleness` after this.
    pub expires_at: Option<f64>,
    /// When the next refresh ahead of expiry is due (clock seconds), once a set is held.
    pub next_refresh_at: Option<f64>,
    /// Completed fetch attempts.
    pub fetches: u64,
    /// Failed fetch attempts.
    pub failures: u64,
    /// Unknown-kid refetches refused by the cooldown.
    pub cooldown_rejections: u64,
    /// Fetches refused by the token bucket.
    pub bucket_rejections: u64,
    /// Requests answered from the negative cache.
    pub negative_hits: u64,
    /// The last fetch error, if the last attempt failed.
    pub last_error: Option<String>,
}

/// An issuer's key set, fetched and kept fresh. Cheap to clone (shared state).
#[derive(Clone)]
pub struct RemoteKeySet {
    inner: Arc<Inner>,
}

impl fmt::Debug for RemoteKeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteKeySet").field("location", &self.inner.location).finish_non_exhaustive()
    }
}

struct Snapshot {
    keys: Arc<KeySet>,
    fetched_at: f64,
    expires_at: f64,
}

struct Inner {
    label: String,
    location: KeyLocation,
    jwks_uri: Mutex<Option<Discovered>>,
    fetcher: Fetcher,
    options: RemoteOptions,
    clock: Arc<dyn Clock>,
    snapshot: ArcSwapOption<Snapshot>,
    /// Refresh-ahead due time (f64 seconds as bits), read on every request without locking.
    refresh_due: AtomicU64,
    refresh_running: AtomicBool,
    fetch_lock: Arc<tokio::sync::Mutex<()>>,
    state: Mutex<State>,
    events: watch::Sender<u64>,
}

/// A key set location found by discovery.
#[derive(Clone)]
struct Discovered {
    jwks_uri: String,
    /// When discovery last confirmed it (clock seconds); `None` once a fetch from it failed.
    confirmed_at: Option<f64>,
}

struct State {
    attempts: u64,
    failures: u64,
    last_attempt_at: Option<f64>,
    last_error: Option<RefreshError>,
    bucket: TokenBucket,
    negative: HashMap<String, f64>,
    cooldown_rejections: u64,
    bucket_rejections: u64,
    negative_hits: u64,
}

/// Why a fetch is wanted; the limits differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// No usable set: the bucket applies.
    Missing,
    /// A kid the set does not hold: cooldown and bucket apply.
    UnknownKid,
    /// Background refresh ahead of expiry: the bucket applies.
    Refresh,
}

enum Outcome {
    /// This call fetched; the result is in the snapshot or the error.
    Fetched(Result<(), RefreshError>),
    /// Another caller's fetch completed while this one waited.
    Joined,
    /// Refused by the cooldown (true) or the bucket (false), with seconds until allowed.
    Limited { cooldown: bool, wait: f64 },
}

/// Most kids remembered as unknown; beyond it the negative cache starts over.
const NEGATIVE_CAPACITY: usize = 4096;

impl RemoteKeySet {
    /// Creates a key set for `location`; nothing is fetched until first use or [`spawn_refresher`](Self::spawn_refresher).
    ///
    /// Options that could not work are refused here rather than failing every fetch later.
    ///
    /// ```
    /// use portcullis::remote::{KeyLocation, RemoteKeySet, RemoteOptions, SetupError};
    /// use portcullis::SystemClock;
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// let location = KeyLocation::Jwks("http://127.0.0.1:9/jwks.json".into());
    /// let nan = RemoteOptions::default().with_refresh_at(f64::NAN);
    /// let refused = RemoteKeySet::new(location.clone(), nan, Arc::new(SystemClock)).unwrap_err();
    /// assert!(matches!(refused, SetupError::RefreshAt(_)));
    /// let inverted = RemoteOptions::default().with_min_ttl(Duration::from_secs(7200)).with_max_ttl(Duration::from_secs(60));
    /// let refused = RemoteKeySet::new(location, inverted, Arc::new(SystemClock)).unwrap_err();
    /// assert!(matches!(refused, SetupError::TtlBounds { .. }));
    /// ```
    pub fn new(location: KeyLocation, options: RemoteOptions, clock: Arc<dyn Clock>) -> Result<Self, SetupError> {
        if !(options.refresh_at > 0.0 && options.refresh_at <= 1.0) {
            return Err(SetupError::RefreshAt(options.refresh_at));
        }
        if options.min_ttl > options.max_ttl {
            return Err(SetupError::TtlBounds { min: options.min_ttl, max: options.max_ttl });
        }
        let fetcher = Fetcher::new(options.fetch.clone())?;
        let label = match &location {
            KeyLocation::Jwks(url) => url.clone(),
            KeyLocation::Discovery { issuer } => issuer.clone(),
        };
        if let KeyLocation::Jwks(_) = &location {
            location.check(&options.fetch)?;
        }
        let bucket = TokenBucket::new(options.bucket_capacity, options.fetches_per_minute);
        let keys = Self {
            inner: Arc::new(Inner {
                label,
                location,
                jwks_uri: Mutex::new(None),
                fetcher,
                clock,
                snapshot: ArcSwapOption::empty(),
                refresh_due: AtomicU64::new(0f64.to_bits()),
                refresh_running: AtomicBool::new(false),
                fetch_lock: Arc::new(tokio::sync::Mutex::new(())),
                state: Mutex::new(State {
                    attempts: 0,
                    failures: 0,
                    last_attempt_at: None,
                    last_error: None,
                    bucket,
                    negative: HashMap::new(),
                    cooldown_rejections: 0,
                    bucket_rejections: 0,
                    negative_hits: 0,
                }),
                events: watch::Sender::new(0),
                options,
            }),
        };
        keys.inner.publish_metrics();
        Ok(keys)
    }

    /// What this set is called in logs and metrics (the issuer or the JWKS URL).
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// The JWKS URL keys are fetched from: the configured one, or the one discovery found (`None` until then).
    pub fn jwks_url(&self) -> Option<String> {
        match &self.inner.location {
            KeyLocation::Jwks(url) => Some(url.clone()),
            KeyLocation::Discovery { .. } => {
                self.inner.jwks_uri.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(|d| d.jwks_uri.clone())
            }
        }
    }

    /// Fetches now (subject to the token bucket); `Err` carries the reason when no new set was stored.
    pub async fn refresh(&self) -> Result<(), RefreshError> {
        match Inner::fetch(&self.inner, Cause::Missing).await {
            Outcome::Fetched(result) => result,
            Outcome::Joined => self.inner.lock_state().last_error.clone().map_or(Ok(()), Err),
            Outcome::Limited { .. } => Err(RefreshError::RateLimited),
        }
    }

    /// Starts a background task that loads the set now and refreshes it ahead of expiry, even without traffic.
    /// It stops by itself when the last handle to this key set is dropped.
    pub fn spawn_refresher(&self) -> JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let wait = {
                    let Some(inner) = weak.upgrade() else { return };
                    if inner.clock.now().as_secs_f64() >= inner.refresh_due() {
                        Inner::fetch(&inner, Cause::Refresh).await;
                    }
                    (inner.refresh_due() - inner.clock.now().as_secs_f64()).clamp(1.0, 60.0)
                };
                tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            }
        })
    }

    /// Sets every metric series of this key set to its current state, the same numbers [`status`](Self::status)
    /// gives: `portcullis_jwks_fetches_total{source,outcome}` (`success`, `failure`),
    /// `portcullis_jwks_refetch_limited_total{source,limit}` (`cooldown`, `bucket`), and the gauges
    /// `portcullis_jwks_keys`, `portcullis_jwks_ready` (1 while a usable set is held),
    /// `portcullis_jwks_last_success_timestamp_seconds` (0 before the first success) and
    /// `portcullis_jwks_key_set_age_seconds` (NaN while no set was ever fetched), each labelled `source` with
    /// [`label`](Self::label).
    ///
    /// The key set publishes on creation and after every fetch attempt or refused fetch; a metrics endpoint calls
    /// this before rendering, so that every series exists from the first scrape and the age is current. Without a
    /// `metrics` recorder installed it does nothing.
    pub fn publish_metrics(&self) {
        self.inner.publish_metrics();
    }

    /// A receiver that changes after every completed fetch attempt (for observers and tests).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.events.subscribe()
    }

    /// Current state and counters.
    pub fn status(&self) -> Status {
        let now = self.inner.clock.now().as_secs_f64();
        // Under the lock, the held set and the counters are of the same fetches.
        let state = self.inner.lock_state();
        let snapshot = self.inner.snapshot.load_full();
        Status {
            ready: self.inner.usable(now).is_some(),
            keys: snapshot.as_ref().map_or(0, |s| s.keys.len()),
            fetched_at: snapshot.as_ref().map(|s| s.fetched_at),
            expires_at: snapshot.as_ref().map(|s| s.expires_at),
            next_refresh_at: snapshot.as_ref().map(|_| self.inner.refresh_due()),
            fetches: state.attempts,
            failures: state.failures,
            cooldown_rejections: state.cooldown_rejections,
            bucket_rejections: state.bucket_rejections,
            negative_hits: state.negative_hits,
            last_error: state.last_error.as_ref().map(ToString::to_string),
        }
    }
}

impl KeySource for RemoteKeySet {
    fn current(&self) -> Option<Arc<KeySet>> {
        let now = self.inner.clock.now().as_secs_f64();
        let snapshot = self.inner.usable(now)?;
        if now >= self.inner.refresh_due() {
            Inner::refresh_in_background(&self.inner);
        }
        Some(Arc::clone(&snapshot.keys))
    }

    fn resolve<'a>(&'a self, kid: Option<&'a str>) -> KeyFuture<'a> {
        Box::pin(Inner::resolve(&self.inner, kid))
    }
}

impl Inner {
    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn refresh_due(&self) -> f64 {
        f64::from_bits(self.refresh_due.load(Ordering::Acquire))
    }

    fn set_refresh_due(&self, at: f64) {
        self.refresh_due.store(at.to_bits(), Ordering::Release);
    }

    /// The held set if it is still usable (not past its expiry plus the maximum staleness).
    fn usable(&self, now: f64) -> Option<Arc<Snapshot>> {
        let snapshot = self.snapshot.load_full()?;
        (now < snapshot.expires_at + self.options.max_staleness.as_secs_f64()).then_some(snapshot)
    }

    fn refresh_in_background(this: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if this.refresh_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = Arc::clone(this);
        runtime.spawn(async move {
            Self::fetch(&inner, Cause::Refresh).await;
            inner.refresh_running.store(false, Ordering::Release);
        });
    }

    async fn resolve(this: &Arc<Self>, kid: Option<&str>) -> Result<Arc<VerifyingKey>, Error> {
        let now = this.clock.now().as_secs_f64();
        let Some(snapshot) = this.usable(now) else {
            // No usable set: fetch (bucket permitting), or answer 503.
            return match Self::fetch(this, Cause::Missing).await {
                Outcome::Limited { wait, .. } => Err(this.unavailable(wait)),
                Outcome::Fetched(_) | Outcome::Joined => match this.usable(this.clock.now().as_secs_f64()) {
                    Some(snapshot) => snapshot.keys.select(kid).cloned(),
                    None => Err(this.unavailable(this.options.retry_interval.as_secs_f64())),
                },
            };
        };
        let miss = match snapshot.keys.select(kid) {
            Ok(key) => return Ok(Arc::clone(key)),
            Err(miss) => miss,
        };
        // Only an unknown kid can be cured by refetching; a kid-less token against a multi-key set cannot.
        let Some(kid) = kid.filter(|kid| !snapshot.keys.keys().iter().any(|k| k.kid() == Some(*kid))) else {
            return Err(miss);
        };
        if this.negative_hit(kid, now) {
            return Err(Error::new(
                Reason::KeyNotFound,
                format!("no key with kid {} in the key set (still unknown after a recent refetch)", quoted(kid)),
            ));
        }
        let limited = match Self::fetch(this, Cause::UnknownKid).await {
            Outcome::Limited { cooldown, .. } => Some(cooldown),
            Outcome::Fetched(_) | Outcome::Joined => None,
        };
        let refreshed = this.usable(this.clock.now().as_secs_f64()).unwrap_or(snapshot);
        match refreshed.keys.select(Some(kid)) {
            Ok(key) => Ok(Arc::clone(key)),
            Err(err) => {
                if limited.is_none() {
                    this.remember_unknown(kid);
                }
                Err(err)
            }
        }
    }

    fn unavailable(&self, wait: f64) -> Error {
        keys_unavailable(&quoted(&self.label), wait.ceil().clamp(1.0, 3600.0) as u32)
    }

    fn negative_hit(&self, kid: &str, now: f64) -> bool {
        let mut state = self.lock_state();
        match state.negative.get(kid) {
            Some(&until) if now < until => {
                state.negative_hits += 1;
                true
            }
            _ => false,
        }
    }

    fn remember_unknown(&self, kid: &str) {
        let until = self.clock.now().as_secs_f64() + self.options.cooldown.as_secs_f64();
        let mut state = self.lock_state();
        if state.negative.len() >= NEGATIVE_CAPACITY {
            state.negative.clear();
        }
        state.negative.insert(kid.to_owned(), until);
    }

    /// Single-flight fetch: concurrent callers share one request. The request runs in its own task, so a caller
    /// that goes away does not abort it.
    async fn fetch(this: &Arc<Self>, cause: Cause) -> Outcome {
        let seen = *this.events.borrow();
        let guard = Arc::clone(&this.fetch_lock).lock_owned().await;
        if *this.events.borrow() != seen {
            return Outcome::Joined;
        }
        let now = this.clock.now().as_secs_f64();
        let mut limited = None;
        {
            let mut state = this.lock_state();
            if cause == Cause::UnknownKid
                && let Some(last) = state.last_attempt_at
            {
                let cooldown = this.options.cooldown.as_secs_f64();
                if now - last < cooldown {
                    state.cooldown_rejections += 1;
                    limited = Some((true, cooldown - (now - last)));
                }
            }
            if limited.is_none() {
                match state.bucket.take(now) {
                    Ok(()) => state.last_attempt_at = Some(now),
                    Err(wait) => {
                        state.bucket_rejections += 1;
                        limited = Some((false, wait));
                    }
                }
            }
        }
        // Refused by the cooldown (true) or the bucket (false), with seconds until allowed.
        if let Some((cooldown, wait)) = limited {
            if cooldown {
                tracing::debug!(source = %this.label, "unknown kid: refetch refused by the cooldown");
            } else {
                tracing::warn!(source = %this.label, ?cause, "key set fetch refused by the token bucket");
            }
            this.publish_metrics();
            return Outcome::Limited { cooldown, wait };
        }
        let inner = Arc::clone(this);
        let task = tokio::spawn(async move {
            let result = inner.fetch_and_store(cause).await;
            drop(guard);
            result
        });
        Outcome::Fetched(task.await.unwrap_or_else(|e| Err(RefreshError::Task(e.to_string()))))
    }

    async fn fetch_and_store(&self, cause: Cause) -> Result<(), RefreshError> {
        let result = self.fetch_once().await;
        let now = self.clock.now().as_secs_f64();
        // The new set and the count of attempts change under the state lock together, and the metrics read them
        // under it: a scrape never sees the keys of a fetch that its counters do not count yet.
        let mut state = self.lock_state();
        let outcome = match result {
            Ok((keys, ttl)) => {
                let count = keys.len();
                self.snapshot.store(Some(Arc::new(Snapshot {
                    keys: Arc::new(keys),
                    fetched_at: now,
                    expires_at: now + ttl,
                })));
                self.set_refresh_due(now + ttl * self.options.refresh_at.clamp(0.1, 1.0));
                tracing::info!(source = %self.label, keys = count, ttl_seconds = ttl, ?cause, "key set fetched");
                Ok(())
            }
            Err(why) => {
                self.set_refresh_due(now + self.options.retry_interval.as_secs_f64());
                let kept = self.usable(now).is_some();
                tracing::warn!(source = %self.label, error = %why, keeping_cached_set = kept, ?cause, "key set fetch failed");
                Err(why)
            }
        };
        state.attempts += 1;
        match &outcome {
            Ok(()) => state.last_error = None,
            Err(why) => {
                state.failures += 1;
                state.last_error = Some(why.clone());
            }
        }
        drop(state);
        self.publish_metrics();
        self.events.send_modify(|generation| *generation += 1);
        outcome
    }

    /// Sets every metric series of this key set to its current state (see [`RemoteKeySet::publish_metrics`]).
    /// Counters are set with `absolute`, which never lowers them: the state's counts only grow. Publications
    /// follow one another (each reads the state it writes while holding [`PUBLICATION`]), so the last one written
    /// is of the newest state, and [`without_publication`] renders none of them half-written.
    fn publish_metrics(&self) {
        let _publishing = PUBLICATION.lock().unwrap_or_else(PoisonError::into_inner);
        let now = self.clock.now().as_secs_f64();
        let (snapshot, attempts, failures, cooldown, bucket) = {
            let state = self.lock_state();
            let snapshot = self.snapshot.load_full();
            (snapshot, state.attempts, state.failures, state.cooldown_rejections, state.bucket_rejections)
        };
        let source = || self.label.clone();
        let fetches = |outcome: &'static str| metrics::counter!("portcullis_jwks_fetches_total", "source" => source(), "outcome" => outcome);
        fetches("success").absolute(attempts.saturating_sub(failures));
        fetches("failure").absolute(failures);
        let limited = |limit: &'static str| metrics::counter!("portcullis_jwks_refetch_limited_total", "source" => source(), "limit" => limit);
        limited("cooldown").absolute(cooldown);
        limited("bucket").absolute(bucket);
        let keys = snapshot.as_ref().map_or(0, |held| held.keys.len());
        metrics::gauge!("portcullis_jwks_keys", "source" => source()).set(keys as f64);
        let ready = if self.usable(now).is_some() { 1.0 } else { 0.0 };
        metrics::gauge!("portcullis_jwks_ready", "source" => source()).set(ready);
        let fetched_at = snapshot.as_ref().map(|held| held.fetched_at);
        metrics::gauge!("portcullis_jwks_last_success_timestamp_seconds", "source" => source())
            .set(fetched_at.unwrap_or(0.0));
        metrics::gauge!("portcullis_jwks_key_set_age_seconds", "source" => source())
            .set(fetched_at.map_or(f64::NAN, |at| (now - at).max(0.0)));
    }

    async fn fetch_once(&self) -> Result<(KeySet, f64), RefreshError> {
        let url = self.jwks_uri().await?;
        let result = self.fetch_keys(&url).await;
        if result.is_err() {
            self.doubt_discovered(&url);
        }
        result
    }

    async fn fetch_keys(&self, url: &str) -> Result<(KeySet, f64), RefreshError> {
        let fetched = self.fetcher.get(url).await?;
        let keys = KeySet::from_jwks_json_bounded(&fetched.body, self.options.max_keys)
            .map_err(|source| RefreshError::KeySet { url: url.to_owned(), source })?;
        for skipped in keys.skipped() {
            tracing::warn!(source = %self.label, "skipping {skipped}");
        }
        if keys.is_empty() {
            return Err(RefreshError::NoUsableKeys { url: url.to_owned() });
        }
        Ok((keys, ttl_from(fetched.cache_control.as_deref(), &self.options)))
    }

    /// The URL to fetch keys from. A discovered one is confirmed by discovery again once it is older than
    /// `max_ttl` or a fetch from it failed; if that discovery fails, the known location is used all the same.
    async fn jwks_uri(&self) -> Result<String, RefreshError> {
        let issuer = match &self.location {
            KeyLocation::Jwks(url) => return Ok(url.clone()),
            KeyLocation::Discovery { issuer } => issuer,
        };
        let now = self.clock.now().as_secs_f64();
        let known = self.jwks_uri.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(Discovered { jwks_uri, confirmed_at: Some(at) }) = &known
            && now - at < self.options.max_ttl.as_secs_f64()
        {
            return Ok(jwks_uri.clone());
        }
        match crate::discovery::discover(issuer, &self.fetcher).await {
            Ok(metadata) => {
                if known.as_ref().is_none_or(|d| d.jwks_uri != metadata.jwks_uri) {
                    tracing::info!(issuer = %issuer, jwks_uri = %metadata.jwks_uri, "discovered key set location");
                }
                *self.jwks_uri.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(Discovered { jwks_uri: metadata.jwks_uri.clone(), confirmed_at: Some(now) });
                Ok(metadata.jwks_uri)
            }
            Err(why) => match known {
                Some(known) => {
                    tracing::warn!(issuer = %issuer, error = %why, jwks_uri = %known.jwks_uri,
                        "discovery failed; using the key set location found before");
                    Ok(known.jwks_uri)
                }
                None => Err(why.into()),
            },
        }
    }

    /// After a failed fetch from a discovered location, the next attempt asks discovery first: the issuer may have
    /// moved its key set.
    fn doubt_discovered(&self, url: &str) {
        let mut known = self.jwks_uri.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(discovered) = known.as_mut().filter(|d| d.jwks_uri == url) {
            discovered.confirmed_at = None;
        }
    }
}

/// The lifetime a response grants, in seconds: `max-age` from `Cache-Control`, clamped; `no-store`/`no-cache`
/// count as the minimum.
pub(crate) fn ttl_from(cache_control: Option<&str>, options: &RemoteOptions) -> f64 {
    let (min, max) = (options.min_ttl.as_secs_f64(), options.max_ttl.as_secs_f64());
    let Some(header) = cache_control else { return options.default_ttl.as_secs_f64().clamp(min, max) };
    let mut ttl = None;
    for directive in header.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return min;
        }
        if let Some(value) = lower.strip_prefix("max-age=") {
            ttl = value.trim_matches('"').parse::<u64>().ok().map(|secs| secs as f64);
        }
    }
    ttl.unwrap_or(options.default_ttl.as_secs_f64()).clamp(min, max)
}

/// A token bucket on the injected clock.
#[derive(Debug)]
struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    updated_at: Option<f64>,
}

impl TokenBucket {
    fn new(capacity: u32, per_minute: u32) -> Self {
        let capacity = f64::from(capacity.max(1));
        Self { capacity, per_second: f64::from(per_minute) / 60.0, tokens: capacity, updated_at: None }
    }

    /// Takes a token, or says how many seconds until one is available.
    fn take(&mut self, now: f64) -> Result<(), f64> {
        if let Some(then) = self.updated_at {
            self.tokens = (self.tokens + (now - then).max(0.0) * self.per_second).min(self.capacity);
        }
        self.updated_at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else if self.per_second > 0.0 {
            Err((1.0 - self.tokens) / self.per_second)
        } else {
            Err(f64::INFINITY)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let mut bucket = TokenBucket::new(3, 60);
        for _ in 0..3 {
            assert!(bucket.take(100.0).is_ok());
        }
        let wait = bucket.take(100.0).unwrap_err();
        assert!((wait - 1.0).abs() < 1e-9, "{wait}");
        assert!(bucket.take(100.5).is_err());
        assert!(bucket.take(101.0).is_ok());
        // Refill never exceeds the capacity.
        for _ in 0..3 {
            assert!(bucket.take(1000.0).is_ok());
        }
        assert!(bucket.take(1000.0).is_err());
    }

    #[test]
    fn cache_control_variants() {
        let o = RemoteOptions::default();
        assert_eq!(ttl_from(Some("MAX-AGE=120"), &o), 120.0);
        assert_eq!(ttl_from(Some("max-age=abc"), &o), 600.0);
        assert_eq!(ttl_from(Some("private"), &o), 600.0);
        assert_eq!(ttl_from(Some("max-age=\"300\""), &o), 300.0);
    }

    #[test]
    fn lifetime_from_cache_control() {
        let o = RemoteOptions::default();
        assert_eq!(ttl_from(Some("public, max-age=3600"), &o), 3600.0);
        assert_eq!(ttl_from(Some("max-age=5"), &o), 60.0);
        assert_eq!(ttl_from(Some("max-age=9999999"), &o), 86400.0);
        assert_eq!(ttl_from(Some("no-store"), &o), 60.0);
        assert_eq!(ttl_from(None, &o), 600.0);
    }
}
