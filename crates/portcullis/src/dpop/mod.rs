//! DPoP: sender-constrained access tokens (RFC 9449).
//!
//! A DPoP-bound access token carries `cnf.jkt`, the RFC 7638 thumbprint of a key the client holds; with every
//! request the client sends a fresh proof, a JWT signed by that key over the request's method and URI (and the
//! token's hash). A stolen token is useless without the key. A [`DpopVerifier`] checks proofs:
//!
//! - [`check_proof`](DpopVerifier::check_proof): one proof, every check of RFC 9449 §4.3 — `typ` `dpop+jwt`, an
//!   allowed asymmetric `alg`, the signature by the header's `jwk` (public members only), `htm`, `htu` (both sides
//!   normalized by [`Htu`]), `iat` within the window, `jti` never seen before for that URI, `ath` (§7.1) and, with
//!   a bound token, `cnf.jkt` equal to the proof key's thumbprint; and the server nonce when nonces are on.
//! - [`check_request`](DpopVerifier::check_request): a whole resource request (§7) — the `Authorization` scheme
//!   against the [`DpopMode`], exactly one proof, the binding, and no downgrade of a bound token to `Bearer`.
//!
//! ```
//! use portcullis::dpop::{DpopMode, DpopVerifier, Htu, ProofExpectations, Scheme};
//! use portcullis::Reason;
//!
//! let dpop = DpopVerifier::builder().build().unwrap();
//! let htu = Htu::parse("https://api.example.com/orders").unwrap();
//! let expected = ProofExpectations { method: "GET", htu: &htu, access_token: None, jkt: None };
//! let err = dpop.check_proof("not-a-proof", &expected).unwrap_err();
//! assert_eq!(err.reason(), Reason::DpopProofInvalid);
//! assert_eq!(err.http_status(), 401);
//! // A bound token may not be downgraded, and a resource that requires DPoP refuses Bearer before any work.
//! assert_eq!(DpopMode::Required.admits(Scheme::Bearer).unwrap_err().reason(), Reason::TokenBindingInvalid);
//! assert_eq!(DpopMode::Off.admits(Scheme::Dpop).unwrap_err().reason(), Reason::RequestInvalid);
//! ```
//!
//! # Deployment caveats
//!
//! - The replay cache lives in the process unless a shared store is set
//!   ([`replay_store`](DpopVerifierBuilder::replay_store), Redis in `portcullis-redis`): behind several replicas
//!   without one, a proof can be replayed once per replica within its `iat` window. Share the store, or keep the
//!   window short and turn nonces on (a proof must then carry a nonce of the last one or two nonce lifetimes).
//! - The cache holds at most `replay_capacity` entries; beyond that the oldest go first, and their proofs could
//!   be replayed within their window. Size it for the proofs of one window.
//! - `htu` is computed from a configured external base URL, never from the `Host` header.

mod htu;
mod nonce;
mod proof;
mod replay;

pub use crate::error::Scheme;
pub use htu::Htu;

use crate::algorithm::{Algorithm, AlgorithmSet};
use crate::base64url;
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Reason};
use crate::store::{ReplayFailure, ReplayKey, ReplayStore, StoreError};
use crate::token::VerifiedToken;
use crate::verifier::{ConfigError, MAX_LEEWAY};
use aws_lc_rs::digest;
use nonce::Nonces;
use replay::ReplayCache;
use serde_json::{Map, Value};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Whether a resource takes DPoP-bound tokens. In configuration files (serde) and on command lines (`FromStr`)
/// it is spelled `off`, `allowed` or `required`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DpopMode {
    /// Only `Bearer`; the `DPoP` scheme is a malformed request, and a DPoP-bound token sent as `Bearer` is refused.
    #[default]
    Off,
    /// `Bearer` for unbound tokens and `DPoP` with a proof for bound ones.
    Allowed,
    /// Only `DPoP` with a proof and a bound token.
    Required,
}

impl DpopMode {
    /// The configuration spelling: `off`, `allowed` or `required`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Allowed => "allowed",
            Self::Required => "required",
        }
    }

    /// Whether a request with this `Authorization` scheme can succeed at all, decided before the token is
    /// verified: `DPoP` where DPoP is off is `request_invalid`, `Bearer` where it is required is
    /// `token_binding_invalid`.
    pub fn admits(self, scheme: Scheme) -> Result<(), Error> {
        match (self, scheme) {
            (Self::Off, Scheme::Dpop) => {
                Err(Error::new(Reason::RequestInvalid, "the DPoP authorization scheme is not accepted here"))
            }
            (Self::Required, Scheme::Bearer) => Err(Error::new(
                Reason::TokenBindingInvalid,
                "this resource requires DPoP-bound tokens sent with the DPoP scheme and a proof",
            )),
            _ => Ok(()),
        }
    }

    /// Whether the `DPoP` scheme is accepted.
    pub const fn accepts_dpop(self) -> bool {
        !matches!(self, Self::Off)
    }

    /// Whether the `Bearer` scheme is accepted.
    pub const fn accepts_bearer(self) -> bool {
        !matches!(self, Self::Required)
    }
}

impl fmt::Display for DpopMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`DpopMode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownDpopMode(String);

impl fmt::Display for UnknownDpopMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown DPoP mode {} (expected off, allowed or required)", crate::error::quoted(&self.0))
    }
}

impl std::error::Error for UnknownDpopMode {}

impl FromStr for DpopMode {
    type Err = UnknownDpopMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(Self::Off),
            "allowed" => Ok(Self::Allowed),
            "required" => Ok(Self::Required),
            other => Err(UnknownDpopMode(other.to_owned())),
        }
    }
}

/// The checks of one proof, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DpopCheck {
    /// Size, segments, strict base64url, the JSON header, `typ` `dpop+jwt`.
    Structure,
    /// `alg`: asymmetric and allowed here.
    Algorithm,
    /// The header `jwk`: an object, a usable public key, fit for `alg`.
    Key,
    /// The signature, by that key.
    Signature,
    /// The claims: a JSON object with `jti`, `htm`, `htu`, `iat` (and `ath` with a token) well-typed.
    Claims,
    /// `htm` equals the request method.
    Method,
    /// `htu` equals the request URI, both normalized.
    Uri,
    /// The server nonce, when nonces are on.
    Nonce,
    /// `iat` within the window.
    IssuedAt,
    /// `ath` is the hash of the access token.
    AccessToken,
    /// The token's `cnf.jkt` is the proof key's thumbprint.
    Binding,
    /// The `jti` was not used before for this URI.
    Replay,
}

impl DpopCheck {
    /// Every check, in order.
    pub const ALL: [DpopCheck; 12] = [
        Self::Structure,
        Self::Algorithm,
        Self::Key,
        Self::Signature,
        Self::Claims,
        Self::Method,
        Self::Uri,
        Self::Nonce,
        Self::IssuedAt,
        Self::AccessToken,
        Self::Binding,
        Self::Replay,
    ];

    /// A short label for reports.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Structure => "proof structure",
            Self::Algorithm => "proof alg",
            Self::Key => "proof key",
            Self::Signature => "proof signature",
            Self::Claims => "proof claims",
            Self::Method => "htm",
            Self::Uri => "htu",
            Self::Nonce => "nonce",
            Self::IssuedAt => "proof iat",
            Self::AccessToken => "ath",
            Self::Binding => "cnf.jkt binding",
            Self::Replay => "jti replay",
        }
    }
}

/// What a proof must match.
#[derive(Debug, Clone, Copy)]
pub struct ProofExpectations<'a> {
    /// The request method, e.g. `GET` (compared exactly with `htm`).
    pub method: &'a str,
    /// The request URI (compared with the normalized `htu`).
    pub htu: &'a Htu,
    /// The access token sent with the proof: `ath` must be its hash.
    pub access_token: Option<&'a str>,
    /// The token's `cnf.jkt`: the proof key's thumbprint must equal it.
    pub jkt: Option<&'a str>,
}

/// The request a token and proof came with.
#[derive(Debug, Clone, Copy)]
pub struct RequestTarget<'a> {
    /// The request method.
    pub method: &'a str,
    /// The request URI.
    pub htu: &'a Htu,
}

/// A proof that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    thumbprint: String,
    jti: String,
    iat: u64,
    alg: Algorithm,
}

impl Proof {
    /// The RFC 7638 thumbprint of the proof's `jwk`.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The proof's `jti`.
    pub fn jti(&self) -> &str {
        &self.jti
    }

    /// The proof's `iat`, whole seconds since the epoch.
    pub fn iat(&self) -> u64 {
        self.iat
    }

    /// The proof's `alg`.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// One step of a [`ProofReport`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProofStep {
    /// Which check.
    pub check: DpopCheck,
    /// Whether it passed, and why not.
    pub outcome: Result<(), Error>,
}

/// The result of [`DpopVerifier::explain_proof`]: the checks in order up to the first failure.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProofReport {
    /// The checks that ran.
    pub steps: Vec<ProofStep>,
    /// The verdict [`DpopVerifier::check_proof`] would give (without recording the `jti`).
    pub verdict: Result<Proof, Error>,
}

/// The RFC 7638 thumbprint of a JWK: SHA-256 over its required public members (`e`, `kty`, `n` for RSA; `crv`,
/// `kty`, `x`, `y` for EC; `crv`, `kty`, `x` for OKP) in lexicographic order without whitespace, base64url.
///
/// ```
/// use portcullis::dpop::thumbprint;
/// // RFC 8037 A.3.
/// let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
/// assert_eq!(thumbprint(jwk.as_object().unwrap()).unwrap(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
/// ```
pub fn thumbprint(jwk: &Map<String, Value>) -> Result<String, Error> {
    let members: &[&str] = match jwk.get("kty") {
        Some(Value::String(kty)) if kty == "RSA" => &["e", "kty", "n"],
        Some(Value::String(kty)) if kty == "EC" => &["crv", "kty", "x", "y"],
        Some(Value::String(kty)) if kty == "OKP" => &["crv", "kty", "x"],
        Some(Value::String(_)) => {
            return Err(Error::new(Reason::DpopProofInvalid, "jwk kty must be RSA, EC or OKP for a thumbprint"));
        }
        _ => return Err(Error::new(Reason::DpopProofInvalid, "jwk has no string kty")),
    };
    let mut canonical = String::from("{");
    for (i, name) in members.iter().enumerate() {
        let Some(Value::String(value)) = jwk.get(*name) else {
            return Err(Error::new(Reason::DpopProofInvalid, format!("jwk member {name} must be a string")));
        };
        if i > 0 {
            canonical.push(',');
        }
        canonical.push_str(&format!("\"{name}\":{}", Value::String(value.clone())));
    }
    canonical.push('}');
    Ok(base64url::encode(digest::digest(&digest::SHA256, canonical.as_bytes())))
}

/// The `ath` value for an access token: base64url SHA-256 of its ASCII bytes (RFC 9449 §4.2).
///
/// ```
/// // RFC 9449 §7.1.
/// assert_eq!(
///     portcullis::dpop::access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
///     "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
/// );
/// ```
pub fn access_token_hash(token: &str) -> String {
    base64url::encode(digest::digest(&digest::SHA256, token.as_bytes()))
}

/// Checks DPoP proofs. Cloning is cheap and clones share the replay cache.
#[derive(Clone)]
pub struct DpopVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    algorithms: AlgorithmSet,
    max_age: Duration,
    leeway: Duration,
    /// This process's replay cache: the store itself without a shared one, the fallback with `LocalOnly`.
    replay: ReplayCache,
    shared: Option<SharedReplay>,
    nonces: Option<Nonces>,
    clock: Arc<dyn Clock>,
}

/// A replay store shared between replicas, and what to do when it fails.
struct SharedReplay {
    store: Arc<dyn ReplayStore>,
    on_failure: ReplayFailure,
    /// The second of the last fallback warning (at most one line per second).
    last_warning: AtomicU64,
}

impl fmt::Debug for DpopVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopVerifier")
            .field("algorithms", &self.inner.algorithms)
            .field("max_age", &self.inner.max_age)
            .field("leeway", &self.inner.leeway)
            .field("replay", &self.inner.replay)
            .field("shared_replay", &self.inner.shared.as_ref().map(|shared| (shared.store.name(), shared.on_failure)))
            .field("nonces", &self.inner.nonces.is_some())
            .finish_non_exhaustive()
    }
}

/// Default window of `iat` into the past.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// Default allowance for `iat` in the future.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(5);
/// Default number of proofs the replay cache holds.
pub const DEFAULT_REPLAY_CAPACITY: u64 = 100_000;
/// Default nonce lifetime.
pub const DEFAULT_NONCE_LIFETIME: Duration = Duration::from_secs(300);
/// The shortest nonce secret accepted, in bytes.
pub const MIN_NONCE_SECRET_LEN: usize = nonce::MIN_SECRET_LEN;

/// Builds a [`DpopVerifier`].
#[must_use]
pub struct DpopVerifierBuilder {
    algorithms: AlgorithmSet,
    max_age: Duration,
    leeway: Duration,
    replay_capacity: u64,
    nonce_secret: Option<Vec<u8>>,
    nonce_lifetime: Duration,
    clock: Option<Arc<dyn Clock>>,
    carried: Option<ReplayCache>,
    carried_shared: Option<(Arc<dyn ReplayStore>, ReplayFailure)>,
    shared: Option<(Arc<dyn ReplayStore>, ReplayFailure)>,
}

impl fmt::Debug for DpopVerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopVerifierBuilder")
            .field("algorithms", &self.algorithms)
            .field("max_age", &self.max_age)
            .field("leeway", &self.leeway)
            .field("replay_capacity", &self.replay_capacity)
            .field("nonces", &self.nonce_secret.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for DpopVerifierBuilder {
    fn default() -> Self {
        Self {
            algorithms: Algorithm::ALL.into_iter().collect(),
            max_age: DEFAULT_MAX_AGE,
            leeway: DEFAULT_LEEWAY,
            replay_capacity: DEFAULT_REPLAY_CAPACITY,
            nonce_secret: None,
            nonce_lifetime: DEFAULT_NONCE_LIFETIME,
            clock: None,
            carried: None,
            carried_shared: None,
            shared: None,
        }
    }
}

impl DpopVerifierBuilder {
    /// The algorithms a proof may be signed with (default: every supported one, all asymmetric).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// How old a proof's `iat` may be (default 300 s).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// How far in the future a proof's `iat` may be (default 5 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// How many proofs the replay cache holds (default 100 000).
    pub fn replay_capacity(mut self, capacity: u64) -> Self {
        self.replay_capacity = capacity;
        self
    }

    /// Turns server nonces on, derived from `secret` (at least 32 bytes): every replica with the same secret
    /// issues and accepts the same nonces.
    pub fn nonce_secret(mut self, secret: &[u8]) -> Self {
        self.nonce_secret = Some(secret.to_vec());
        self
    }

    /// How long one nonce window lasts (default 300 s); a nonce is accepted in its window and the next.
    pub fn nonce_lifetime(mut self, lifetime: Duration) -> Self {
        self.nonce_lifetime = lifetime;
        self
    }

    /// Takes over the replay cache of `running`, the verifier this one replaces (a configuration reload): every
    /// proof `running` accepted stays a replay, whatever settings change. The cache is shared when its capacity
    /// is the same and it keeps entries at least as long as the new `iat` window needs, else its entries are copied
    /// into the new one. The shared replay store of `running` (see [`replay_store`](Self::replay_store)) is kept
    /// too, unless this builder is given one of its own.
    pub fn replay_cache_of(mut self, running: &DpopVerifier) -> Self {
        self.carried = Some(running.inner.replay.clone());
        self.carried_shared =
            running.inner.shared.as_ref().map(|shared| (Arc::clone(&shared.store), shared.on_failure));
        self
    }

    /// Records proofs in `store` (shared by every replica, such as Redis) instead of this process's memory, each
    /// for the `iat` window plus the leeway; `on_failure` says what happens when the store fails.
    ///
    /// Proofs are then checked with [`check_request_async`](DpopVerifier::check_request_async) or
    /// [`check_proof_async`](DpopVerifier::check_proof_async), which await the store. The synchronous checks work
    /// only with a store that answers at once (a [`MemoryReplayStore`](crate::store::MemoryReplayStore)); with any
    /// other they refuse every proof with `store_unavailable` (fail closed).
    pub fn replay_store(mut self, store: Arc<dyn ReplayStore>, on_failure: ReplayFailure) -> Self {
        self.shared = Some((store, on_failure));
        self
    }

    /// Injects the clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Checks the settings and builds the verifier.
    pub fn build(self) -> Result<DpopVerifier, ConfigError> {
        if self.algorithms.is_empty() {
            return Err(ConfigError::NoAlgorithms);
        }
        if self.leeway > MAX_LEEWAY {
            return Err(ConfigError::Leeway(self.leeway));
        }
        if self.max_age.is_zero() || self.max_age > MAX_LEEWAY {
            return Err(ConfigError::Dpop("the DPoP proof max_age must be between 1 s and a week"));
        }
        if self.replay_capacity == 0 {
            return Err(ConfigError::Dpop("the DPoP replay cache capacity must be at least 1"));
        }
        let nonces = match &self.nonce_secret {
            Some(secret) if secret.len() < nonce::MIN_SECRET_LEN => {
                return Err(ConfigError::Dpop("the DPoP nonce secret must be at least 32 bytes"));
            }
            Some(_) if self.nonce_lifetime.as_secs() == 0 => {
                return Err(ConfigError::Dpop("the DPoP nonce lifetime must be at least 1 s"));
            }
            Some(secret) => Some(Nonces::new(secret, self.nonce_lifetime)),
            None => None,
        };
        Ok(DpopVerifier {
            inner: Arc::new(Inner {
                algorithms: self.algorithms,
                max_age: self.max_age,
                leeway: self.leeway,
                replay: match &self.carried {
                    Some(running) => {
                        ReplayCache::carried_over(running, self.replay_capacity, self.max_age + self.leeway)
                    }
                    None => ReplayCache::new(self.replay_capacity, self.max_age + self.leeway),
                },
                shared: self.shared.or(self.carried_shared).map(|(store, on_failure)| SharedReplay {
                    store,
                    on_failure,
                    last_warning: AtomicU64::new(0),
                }),
                nonces,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            }),
        })
    }
}

impl DpopVerifier {
    /// Starts a builder.
    pub fn builder() -> DpopVerifierBuilder {
        DpopVerifierBuilder::default()
    }

    /// The algorithms a proof may use (for `algs="…"` challenges and `dpop_signing_alg_values_supported`).
    pub fn algorithms(&self) -> AlgorithmSet {
        self.inner.algorithms
    }

    /// The window of `iat` into the past.
    pub fn max_age(&self) -> Duration {
        self.inner.max_age
    }

    /// The allowance for `iat` in the future.
    pub fn leeway(&self) -> Duration {
        self.inner.leeway
    }

    /// The current `DPoP-Nonce` value, when nonces are on.
    pub fn nonce(&self) -> Option<String> {
        self.inner.nonces.as_ref().map(|nonces| nonces.current(self.inner.clock.now()))
    }

    /// Proofs in this process's replay cache (approximate: expired entries leave lazily). With a shared store,
    /// only those recorded locally (with `local_only`, as a fallback).
    pub fn replay_entries(&self) -> u64 {
        self.inner.replay.len()
    }

    /// The name of the store proofs are recorded in: `memory` (this process) or the shared store's name (`redis`).
    pub fn replay_store_name(&self) -> &'static str {
        self.inner.shared.as_ref().map_or("memory", |shared| shared.store.name())
    }

    /// Whether proofs are recorded in a store set with
    /// [`replay_store`](DpopVerifierBuilder::replay_store) (shared between verifiers or replicas): callers then
    /// use the `_async` checks.
    pub fn replay_is_shared(&self) -> bool {
        self.inner.shared.is_some()
    }

    /// What a proof's replay entry is kept for: the `iat` window plus the leeway.
    fn replay_ttl(&self) -> Duration {
        self.inner.max_age + self.inner.leeway
    }

    /// The replay check without waiting: the local cache, or a shared store that answers at once.
    fn record_now(&self, key: ReplayKey) -> Result<(), Error> {
        let Some(shared) = &self.inner.shared else {
            return self.record_locally(key);
        };
        match shared.store.first_use_now(key, self.replay_ttl()) {
            Some(answer) => self.decide(shared, key, answer),
            None => Err(Error::new(
                Reason::StoreUnavailable,
                "this verifier records proofs in a shared store; use check_request_async",
            )
            .with_retry_after(STORE_RETRY_AFTER)),
        }
    }

    /// The replay check, awaiting the shared store when there is one.
    async fn record(&self, key: ReplayKey) -> Result<(), Error> {
        let Some(shared) = &self.inner.shared else {
            return self.record_locally(key);
        };
        let answer = match shared.store.first_use_now(key, self.replay_ttl()) {
            Some(answer) => answer,
            None => shared.store.first_use(key, self.replay_ttl()).await,
        };
        self.decide(shared, key, answer)
    }

    /// The verdict from the shared store's answer.
    fn decide(&self, shared: &SharedReplay, key: ReplayKey, answer: Result<bool, StoreError>) -> Result<(), Error> {
        match answer {
            // With `local_only` the proof is recorded here too: one accepted during an outage, when only this
            // process knew it, stays a replay here once the store is back.
            Ok(true) if shared.on_failure == ReplayFailure::LocalOnly => self.record_locally(key),
            Ok(true) => Ok(()),
            Ok(false) => Err(replayed()),
            Err(err) => match shared.on_failure {
                ReplayFailure::LocalOnly => {
                    metrics::counter!("portcullis_replay_fallbacks_total").increment(1);
                    let second = self.inner.clock.now().as_secs();
                    let last = shared.last_warning.load(Ordering::Relaxed);
                    if last != second
                        && shared
                            .last_warning
                            .compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed)
                            .is_ok()
                    {
                        tracing::warn!(
                            store = shared.store.name(),
                            kind = err.kind(),
                            error = %err,
                            "DPoP replay store failed; checking proofs against this process's memory only"
                        );
                    }
                    self.record_locally(key)
                }
                _ => Err(Error::new(Reason::StoreUnavailable, format!("the DPoP replay store is unavailable: {err}"))
                    .with_retry_after(STORE_RETRY_AFTER)),
            },
        }
    }

    /// The replay check against this process's cache.
    fn record_locally(&self, key: ReplayKey) -> Result<(), Error> {
        if self.inner.replay.record(key) { Ok(()) } else { Err(replayed()) }
    }

    /// Whether `key` was recorded, without recording it (for reports): the shared store when it can tell at once,
    /// and this process's cache.
    fn seen(&self, key: ReplayKey) -> bool {
        let shared = self.inner.shared.as_ref().and_then(|shared| shared.store.contains_now(key));
        shared == Some(true) || self.inner.replay.contains_key(key)
    }

    /// Counts a checked proof in `portcullis_dpop_proofs_total{result}`.
    fn count(outcome: &Result<Proof, Error>) {
        let result = match outcome {
            Ok(_) => "valid",
            Err(err) => err.reason().code(),
        };
        metrics::counter!("portcullis_dpop_proofs_total", "result" => result).increment(1);
    }

    /// Checks one proof (RFC 9449 §4.3, with §7.1 `ath` when `expected.access_token` is set and the `cnf.jkt`
    /// binding when `expected.jkt` is). The `jti` is recorded last, only when every other check passed; the same
    /// proof a second time is `dpop_proof_invalid`. A missing or stale nonce (with nonces on) is
    /// `dpop_nonce_required`, a binding to another key `token_binding_invalid`, any other defect
    /// `dpop_proof_invalid`.
    ///
    /// With a shared replay store that cannot answer at once, every proof is refused with `store_unavailable`:
    /// use [`check_proof_async`](Self::check_proof_async).
    pub fn check_proof(&self, proof: &str, expected: &ProofExpectations<'_>) -> Result<Proof, Error> {
        let outcome = proof::check(self, proof, expected)
            .map_err(|(_, err)| err)
            .and_then(|(proof, key)| self.record_now(key).map(|()| proof));
        Self::count(&outcome);
        outcome
    }

    /// [`check_proof`](Self::check_proof), awaiting the shared replay store when there is one. Every other check
    /// runs first; only a proof that passed them all is recorded. The store's answer decides: a replay is
    /// `dpop_proof_invalid`; a failure of the store is `store_unavailable` (503) with
    /// [`ReplayFailure::FailClosed`], or the decision of this process's memory with [`ReplayFailure::LocalOnly`]
    /// (counted in `portcullis_replay_fallbacks_total`, and logged at most once a second).
    pub async fn check_proof_async(&self, proof: &str, expected: &ProofExpectations<'_>) -> Result<Proof, Error> {
        let outcome = match proof::check(self, proof, expected) {
            Ok((proof, key)) => self.record(key).await.map(|()| proof),
            Err((_, err)) => Err(err),
        };
        Self::count(&outcome);
        outcome
    }

    /// Runs the checks of [`check_proof`](Self::check_proof) and reports each, for people debugging a refusal.
    /// Nothing is recorded: the replay check only looks whether the `jti` was used before.
    pub fn explain_proof(&self, proof: &str, expected: &ProofExpectations<'_>) -> ProofReport {
        let outcome = proof::check(self, proof, expected)
            .and_then(|(proof, key)| if self.seen(key) { Err((DpopCheck::Replay, replayed())) } else { Ok(proof) });
        let failed_at = outcome.as_ref().err().map(|(check, _)| *check);
        let mut steps = Vec::new();
        for check in DpopCheck::ALL {
            if Some(check) == failed_at {
                let err = outcome.as_ref().err().map(|(_, err)| err.clone());
                steps.push(ProofStep {
                    check,
                    outcome: Err(err.unwrap_or_else(|| Error::new(Reason::DpopProofInvalid, "failed"))),
                });
                break;
            }
            if check == DpopCheck::Nonce && self.inner.nonces.is_none() {
                continue;
            }
            if check == DpopCheck::AccessToken && expected.access_token.is_none() {
                continue;
            }
            if check == DpopCheck::Binding && expected.jkt.is_none() {
                continue;
            }
            steps.push(ProofStep { check, outcome: Ok(()) });
        }
        ProofReport { steps, verdict: outcome.map_err(|(_, err)| err) }
    }

    /// [`check_request`](Self::check_request), awaiting the shared replay store when there is one (see
    /// [`check_proof_async`](Self::check_proof_async)).
    pub async fn check_request_async(
        &self,
        mode: DpopMode,
        scheme: Scheme,
        proofs: &[&str],
        token: &VerifiedToken,
        request: &RequestTarget<'_>,
    ) -> Result<Option<Proof>, Error> {
        match request_proof(mode, scheme, proofs, token, request)? {
            None => Ok(None),
            Some((proof, expected)) => self.check_proof_async(proof, &expected).await.map(Some),
        }
    }

    /// Checks a whole resource request (RFC 9449 §7) whose token verified: the `Authorization` scheme against
    /// `mode`, the `DPoP` header values (`proofs`), the proof, and the token's binding. `Ok(None)` for an accepted
    /// `Bearer` request, `Ok(Some(proof))` for an accepted `DPoP` one.
    ///
    /// | request | answer |
    /// |---|---|
    /// | `Bearer` with a `DPoP` header | `request_invalid` |
    /// | `Bearer` with a token bound by `cnf.jkt` (a downgrade) | `token_binding_invalid` |
    /// | `Bearer` where DPoP is required | `token_binding_invalid` |
    /// | `DPoP` where DPoP is off | `request_invalid` |
    /// | `DPoP` with no proof, or several | `dpop_proof_invalid` |
    /// | `DPoP` with an unbound token, or bound to another key | `token_binding_invalid` |
    /// | a defective proof | `dpop_proof_invalid` (`dpop_nonce_required` for the nonce) |
    pub fn check_request(
        &self,
        mode: DpopMode,
        scheme: Scheme,
        proofs: &[&str],
        token: &VerifiedToken,
        request: &RequestTarget<'_>,
    ) -> Result<Option<Proof>, Error> {
        match request_proof(mode, scheme, proofs, token, request)? {
            None => Ok(None),
            Some((proof, expected)) => self.check_proof(proof, &expected).map(Some),
        }
    }
}

/// What `check_request` needs of a request besides the proof's checks: `None` for an accepted `Bearer` request,
/// else the one proof and what it must match.
fn request_proof<'a>(
    mode: DpopMode,
    scheme: Scheme,
    proofs: &[&'a str],
    token: &'a VerifiedToken,
    request: &RequestTarget<'a>,
) -> Result<Option<(&'a str, ProofExpectations<'a>)>, Error> {
    match scheme {
        Scheme::Bearer => {
            if !proofs.is_empty() {
                return Err(Error::new(
                    Reason::RequestInvalid,
                    "a DPoP proof was sent with a Bearer token: use the DPoP scheme",
                ));
            }
            if token.jkt().is_some() {
                return Err(Error::new(
                    Reason::TokenBindingInvalid,
                    "the token is DPoP-bound (cnf.jkt): send it with the DPoP scheme and a proof, not as Bearer",
                ));
            }
            mode.admits(scheme)?;
            Ok(None)
        }
        Scheme::Dpop => {
            mode.admits(scheme)?;
            let proof = match proofs {
                [one] => *one,
                [] => {
                    return Err(Error::new(
                        Reason::DpopProofInvalid,
                        "the DPoP scheme needs exactly one DPoP proof header; the request has none",
                    ));
                }
                many => {
                    return Err(Error::new(
                        Reason::DpopProofInvalid,
                        format!("the DPoP scheme needs exactly one DPoP proof; the request has {}", many.len()),
                    ));
                }
            };
            let Some(jkt) = token.jkt() else {
                return Err(Error::new(
                    Reason::TokenBindingInvalid,
                    "the token is not DPoP-bound (no cnf.jkt): send it with the Bearer scheme",
                ));
            };
            let expected = ProofExpectations {
                method: request.method,
                htu: request.htu,
                access_token: Some(token.raw()),
                jkt: Some(jkt),
            };
            Ok(Some((proof, expected)))
        }
    }
}

/// How long a client is told to wait after `store_unavailable`, in seconds.
const STORE_RETRY_AFTER: u32 = 1;

/// The error of a replayed proof.
fn replayed() -> Error {
    Error::new(Reason::DpopProofInvalid, "DPoP proof replayed: its jti was already used for this URI")
}
