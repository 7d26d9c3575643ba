//! The [`Verifier`]: a compact JWS checked end to end into a [`VerifiedToken`].

use crate::algorithm::{Algorithm, AlgorithmSet};
use crate::cache::{CacheOptions, TokenCache};
use crate::claims::RegisteredClaims;
use crate::clock::{Clock, SystemClock, UnixTime};
use crate::error::{Detail, Error, Reason, quoted};
use crate::jwk::VerifyingKey;
use crate::jws::{AlgorithmPolicy, HeaderCache, JwsPolicy, UnverifiedJws};
use crate::keyset::KeySet;
use crate::rules::{CLAIM_CHECKS, Check, ClaimRules, IssuerRules, Timing, missing};
use crate::source::{KeySource, StaticKeys, keys_unavailable};
use crate::store::RevocationList;
use crate::token::VerifiedToken;
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

mod hints;
mod pipeline;

use pipeline::{Observer, Recorder, Silent};

/// Default clock-skew allowance for `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// The longest clock-skew allowance a verifier accepts: a week, far beyond any real skew (the default is 60 s). It
/// exists so that a mistaken value (`Duration::MAX`, milliseconds read as seconds) cannot switch expiry off.
pub const MAX_LEEWAY: Duration = Duration::from_secs(7 * 86_400);

/// A verifier configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No expected issuer was given.
    #[error("an expected issuer is required")]
    MissingIssuer,
    /// No expected audience was given.
    #[error("an expected audience is required")]
    MissingAudience,
    /// No key set was given.
    #[error("a key set is required")]
    MissingKeys,
    /// An empty algorithm allowlist was given.
    #[error("the algorithm allowlist is empty")]
    NoAlgorithms,
    /// The leeway is longer than [`MAX_LEEWAY`]: it would let expired tokens through for that long.
    #[error("the leeway must be at most {} s, not {} s", MAX_LEEWAY.as_secs(), .0.as_secs())]
    Leeway(Duration),
    /// An empty string was given where a value is needed.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// A JSON nesting limit outside 2 ..= [`MAX_JSON_DEPTH_CEILING`](crate::MAX_JSON_DEPTH_CEILING).
    #[error("the JSON nesting limit must be between 2 and {ceiling} levels, not {0}", ceiling = crate::json::MAX_DEPTH_CEILING)]
    JsonDepth(usize),
    /// An issuer has neither audiences of its own nor shared ones.
    #[error("issuer {0} has no audience: give it its own or add shared ones")]
    IssuerWithoutAudience(String),
    /// Audiences were bound to an issuer that is not configured.
    #[error("audiences are given for {0}, which is not a configured issuer")]
    AudienceForUnknownIssuer(String),
    /// Rules were given for an issuer that is not configured, or twice for one issuer.
    #[error("rules are given for {0}, which is not a configured issuer or has rules already")]
    RulesForUnknownIssuer(String),
    /// A DPoP setting is out of range (see [`DpopVerifierBuilder`](crate::dpop::DpopVerifierBuilder)).
    #[error("{0}")]
    Dpop(&'static str),
    /// An issuer's required `typ` can never be met: it names no JWT, or differs from the verifier's own.
    #[error("issuer {issuer} requires typ {typ:?}, which {why}")]
    IssuerTyp {
        /// The issuer.
        issuer: String,
        /// The `typ` it was given.
        typ: String,
        /// Why no token could carry it.
        why: &'static str,
    },
}

/// Verifies access tokens: strict JWS, key from the key set, then the claim rules.
///
/// There is no insecure default: the issuer, the audience and the keys must be named. Without an algorithm
/// allowlist, a token's `alg` must equal the `alg` its key declares.
///
/// ```
/// use portcullis::{KeySet, Verifier, Reason};
/// let keys = KeySet::from_jwks_json(br#"{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","kid":"k1",
///     "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#).unwrap();
/// let verifier = Verifier::builder()
///     .issuer("https://tenant.example.com/")
///     .audience("https://api.example.com")
///     .keys(keys)
///     .build()
///     .unwrap();
/// let err = verifier.verify("not-a-token").unwrap_err();
/// assert_eq!(err.reason(), Reason::TokenMalformed);
/// assert_eq!(err.http_status(), 401);
/// ```
#[derive(Clone)]
pub struct Verifier {
    sources: Sources,
    cache: Option<Arc<TokenCache>>,
    revocations: Option<RevocationList>,
    jws: JwsPolicy,
    headers: Arc<HeaderCache>,
    rules: ClaimRules,
    /// Issuers whose tokens meet header rules of their own (`typ`, algorithms): their policy.
    issuer_jws: Arc<[(String, JwsPolicy)]>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("sources", &self.sources)
            .field("jws", &self.jws)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

/// Why verification with the current keys did not succeed.
enum Failure {
    /// The answer is final.
    Final(Error),
    /// Fetching keys might change the answer.
    NeedsKeys(Error),
}

impl Failure {
    fn into_error(self) -> Error {
        match self {
            Self::Final(err) | Self::NeedsKeys(err) => err,
        }
    }
}

/// Where the verifier finds keys.
#[derive(Clone, Debug)]
enum Sources {
    /// One source for every issuer.
    Shared(Arc<dyn KeySource>),
    /// Each issuer its own source, chosen by the token's `iss`.
    PerIssuer(Arc<[(String, Arc<dyn KeySource>)]>),
}

/// Builds a [`Verifier`].
#[derive(Debug, Default)]
#[must_use]
pub struct VerifierBuilder {
    issuers: Vec<String>,
    audiences: Vec<String>,
    issuer_audiences: Vec<(String, String)>,
    algorithms: Option<AlgorithmSet>,
    shared: Option<Arc<dyn KeySource>>,
    per_issuer: Vec<(String, Arc<dyn KeySource>)>,
    leeway: Option<Duration>,
    max_age: Option<Duration>,
    typ: Option<String>,
    required: Vec<String>,
    clients: Vec<String>,
    max_token_len: Option<usize>,
    max_json_depth: Option<usize>,
    clock: Option<Arc<dyn Clock>>,
    cache: Option<Option<CacheOptions>>,
    issuer_rules: Vec<(String, IssuerRules)>,
    revocations: Option<RevocationList>,
}

impl VerifierBuilder {
    /// Adds an accepted issuer (`iss`, compared exactly: Auth0 issuers end with `/`).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Adds an accepted audience, shared by every issuer that has no audiences of its own (see
    /// [`audience_for`](Self::audience_for)); a token is accepted when any of its `aud` values is accepted.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Adds an audience accepted only in tokens whose `iss` is `issuer`. An issuer with audiences of its own
    /// accepts only those, never the shared ones of [`audience`](Self::audience), so with several issuers a token
    /// from one cannot use an audience meant for another (`audience_mismatch`). `issuer` must be configured with
    /// [`issuer`](Self::issuer) or [`issuer_keys`](Self::issuer_keys), else [`build`](Self::build) fails with
    /// [`ConfigError::AudienceForUnknownIssuer`]; an issuer left with no audience at all fails with
    /// [`ConfigError::IssuerWithoutAudience`].
    ///
    /// ```
    /// use portcullis::{Algorithm, KeySet, Reason, Verifier, signing::SigningKey};
    /// let key = SigningKey::generate(Algorithm::ES256, Some("k1".into())).unwrap();
    /// let jwks = serde_json::json!({ "keys": [key.public_jwk()] }).to_string();
    /// let verifier = Verifier::builder()
    ///     .issuer("https://a.example/")
    ///     .audience_for("https://a.example/", "https://orders.example")
    ///     .issuer("https://b.example/")
    ///     .audience_for("https://b.example/", "https://reports.example")
    ///     .keys(KeySet::from_jwks_json(jwks.as_bytes()).unwrap())
    ///     .build()
    ///     .unwrap();
    /// let token = |iss: &str, aud: &str| {
    ///     key.sign_token(&serde_json::json!({"iss": iss, "aud": aud, "exp": 4_000_000_000u64}), None).unwrap()
    /// };
    /// assert!(verifier.verify(&token("https://a.example/", "https://orders.example")).is_ok());
    /// assert!(verifier.verify(&token("https://b.example/", "https://reports.example")).is_ok());
    /// let err = verifier.verify(&token("https://b.example/", "https://orders.example")).unwrap_err();
    /// assert_eq!(err.reason(), Reason::AudienceMismatch);
    /// assert_eq!(
    ///     err.description(),
    ///     "audience mismatch: token is for 'https://orders.example', tokens from 'https://b.example/' are \
    ///      accepted for 'https://reports.example'"
    /// );
    /// ```
    pub fn audience_for(mut self, issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        self.issuer_audiences.push((issuer.into(), audience.into()));
        self
    }

    /// Sets the algorithm allowlist (otherwise each key's declared `alg` is the only one it accepts).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// Uses a fixed key set for every configured issuer.
    pub fn keys(self, keys: impl Into<Arc<KeySet>>) -> Self {
        self.key_source(Arc::new(StaticKeys(keys.into())))
    }

    /// Uses one key source (e.g. a [`RemoteKeySet`](crate::remote::RemoteKeySet)) for every configured issuer that
    /// has no source of its own.
    pub fn key_source(mut self, source: Arc<dyn KeySource>) -> Self {
        self.shared = Some(source);
        self
    }

    /// Accepts `issuer` with its own key source. With several issuers, the token's `iss` picks the key source
    /// before anything else in the token is trusted, so one issuer's keys never verify another's tokens.
    pub fn issuer_keys(mut self, issuer: impl Into<String>, source: Arc<dyn KeySource>) -> Self {
        let issuer = issuer.into();
        self.issuers.push(issuer.clone());
        self.per_issuer.push((issuer, source));
        self
    }

    /// Sets the clock-skew allowance (default 60 s, at most [`MAX_LEEWAY`]).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = Some(leeway);
        self
    }

    /// Refuses tokens issued longer ago than `max_age` (makes `iat` required).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// Requires the header `typ`, e.g. `at+jwt` for RFC 9068 access tokens.
    pub fn typ(mut self, typ: impl Into<String>) -> Self {
        self.typ = Some(typ.into());
        self
    }

    /// Gives the tokens of `issuer` rules of their own: leeway, maximum age, required `typ`, algorithm
    /// allowlist. Each rule set replaces the verifier's for that issuer; unset ones keep the verifier's. The
    /// token's `iss` picks the rules before the key is chosen, and the algorithm is still bound to the key: an
    /// allowlist only narrows what the key itself allows. `issuer` must be configured, once, else
    /// [`build`](Self::build) fails with [`ConfigError::RulesForUnknownIssuer`].
    ///
    /// ```
    /// use portcullis::{Algorithm, KeySet, Reason, Verifier, rules::IssuerRules, signing::SigningKey};
    /// let key = SigningKey::generate(Algorithm::ES256, Some("k1".into())).unwrap();
    /// let jwks = serde_json::json!({ "keys": [key.public_jwk()] }).to_string();
    /// let verifier = Verifier::builder()
    ///     .issuer("https://a.example/")
    ///     .issuer("https://b.example/")
    ///     .audience("https://api.example")
    ///     .issuer_rules("https://b.example/", IssuerRules::new().typ("at+jwt"))
    ///     .keys(KeySet::from_jwks_json(jwks.as_bytes()).unwrap())
    ///     .build()
    ///     .unwrap();
    /// let token = |iss: &str| {
    ///     let claims = serde_json::json!({"iss": iss, "aud": "https://api.example", "exp": 4_000_000_000u64});
    ///     key.sign_token(&claims, None).unwrap()
    /// };
    /// assert!(verifier.verify(&token("https://a.example/")).is_ok());
    /// let err = verifier.verify(&token("https://b.example/")).unwrap_err();
    /// assert_eq!(err.reason(), Reason::HeaderInvalid);
    /// ```
    pub fn issuer_rules(mut self, issuer: impl Into<String>, rules: IssuerRules) -> Self {
        self.issuer_rules.push((issuer.into(), rules));
        self
    }

    /// Requires a claim to be present (dotted paths reach into objects).
    pub fn require_claim(mut self, name: impl Into<String>) -> Self {
        self.required.push(name.into());
        self
    }

    /// Accepts only tokens whose `azp` (or `client_id`) is one of the allowed clients.
    pub fn allowed_client(mut self, client: impl Into<String>) -> Self {
        self.clients.push(client.into());
        self
    }

    /// Sets the longest token accepted (default 16 KiB).
    pub fn max_token_len(mut self, bytes: usize) -> Self {
        self.max_token_len = Some(bytes);
        self
    }

    /// Sets how deep arrays and objects may nest in a token's header and claims, the claim set itself counting
    /// as level 1 (default [`DEFAULT_MAX_JSON_DEPTH`](crate::DEFAULT_MAX_JSON_DEPTH) = 64; 2 to
    /// [`MAX_JSON_DEPTH_CEILING`](crate::MAX_JSON_DEPTH_CEILING) = 100, else [`build`](Self::build) fails with
    /// [`ConfigError::JsonDepth`]). Deeper tokens are `token_malformed`.
    ///
    /// ```
    /// use portcullis::{Algorithm, KeySet, Reason, Verifier, signing::SigningKey};
    /// let key = SigningKey::generate(Algorithm::ES256, Some("k1".into())).unwrap();
    /// let jwks = serde_json::json!({ "keys": [key.public_jwk()] }).to_string();
    /// let verifier = Verifier::builder()
    ///     .issuer("https://tenant.example.com/")
    ///     .audience("https://api.example.com")
    ///     .keys(KeySet::from_jwks_json(jwks.as_bytes()).unwrap())
    ///     .max_json_depth(3)
    ///     .build()
    ///     .unwrap();
    /// let claims = |ctx: serde_json::Value| {
    ///     serde_json::json!({"iss": "https://tenant.example.com/", "aud": "https://api.example.com",
    ///                        "exp": 4_000_000_000u64, "ctx": ctx})
    /// };
    /// assert!(verifier.verify(&key.sign_token(&claims(serde_json::json!({"a": [1]})), None).unwrap()).is_ok());
    /// let deep = key.sign_token(&claims(serde_json::json!({"a": {"b": [1]}})), None).unwrap();
    /// assert_eq!(verifier.verify(&deep).unwrap_err().reason(), Reason::TokenMalformed);
    /// ```
    pub fn max_json_depth(mut self, levels: usize) -> Self {
        self.max_json_depth = Some(levels);
        self
    }

    /// Sets the verified-token cache's limits (the cache is on by default with [`CacheOptions::default`]).
    #[cfg(feature = "cache")]
    pub fn cache(mut self, options: CacheOptions) -> Self {
        self.cache = Some(Some(options));
        self
    }

    /// Turns the verified-token cache off: every token pays a full verification. Without the `cache` feature
    /// there is no cache and this changes nothing.
    pub fn without_cache(mut self) -> Self {
        self.cache = Some(None);
        self
    }

    /// Refuses every verified token that `revocations` names (`token_revoked`, 401), checked after verification
    /// on every request, cached token or not; the verified-token cache drops the tokens a new entry names.
    pub fn revocations(mut self, revocations: RevocationList) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// Injects the clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Checks the configuration and builds the verifier.
    pub fn build(self) -> Result<Verifier, ConfigError> {
        if let Some(leeway) = self.leeway.filter(|leeway| *leeway > MAX_LEEWAY) {
            return Err(ConfigError::Leeway(leeway));
        }
        if self.issuers.is_empty() {
            return Err(ConfigError::MissingIssuer);
        }
        if self.audiences.is_empty() && self.issuer_audiences.is_empty() {
            return Err(ConfigError::MissingAudience);
        }
        if self.issuers.iter().any(String::is_empty) {
            return Err(ConfigError::Empty("issuer"));
        }
        if self.audiences.iter().chain(self.issuer_audiences.iter().map(|(_, aud)| aud)).any(String::is_empty) {
            return Err(ConfigError::Empty("audience"));
        }
        let mut issuer_audiences: Vec<(String, Vec<String>)> = Vec::new();
        for (issuer, audience) in self.issuer_audiences {
            if !self.issuers.contains(&issuer) {
                return Err(ConfigError::AudienceForUnknownIssuer(issuer));
            }
            match issuer_audiences.iter_mut().find(|(known, _)| *known == issuer) {
                Some((_, audiences)) => audiences.push(audience),
                None => issuer_audiences.push((issuer, vec![audience])),
            }
        }
        if self.audiences.is_empty()
            && let Some(bare) = self.issuers.iter().find(|iss| !issuer_audiences.iter().any(|(known, _)| known == *iss))
        {
            return Err(ConfigError::IssuerWithoutAudience(bare.clone()));
        }
        let max_json_depth = self.max_json_depth.unwrap_or(crate::json::MAX_DEPTH);
        if !(2..=crate::json::MAX_DEPTH_CEILING).contains(&max_json_depth) {
            return Err(ConfigError::JsonDepth(max_json_depth));
        }
        let sources = if self.per_issuer.is_empty() {
            Sources::Shared(self.shared.ok_or(ConfigError::MissingKeys)?)
        } else {
            let mut list = self.per_issuer;
            for issuer in &self.issuers {
                if !list.iter().any(|(known, _)| known == issuer) {
                    let shared = self.shared.clone().ok_or(ConfigError::MissingKeys)?;
                    list.push((issuer.clone(), shared));
                }
            }
            Sources::PerIssuer(list.into())
        };
        let algorithms = match self.algorithms {
            None => AlgorithmPolicy::FromKeys,
            Some(set) if set.is_empty() => return Err(ConfigError::NoAlgorithms),
            Some(set) => AlgorithmPolicy::Allow(set),
        };
        let jws = JwsPolicy {
            algorithms,
            required_typ: self.typ,
            max_token_len: self.max_token_len.unwrap_or(crate::jws::DEFAULT_MAX_TOKEN_LEN),
            max_json_depth,
        };
        let leeway = self.leeway.unwrap_or(DEFAULT_LEEWAY);
        let issuer_required: Vec<(String, Vec<String>)> = self
            .issuer_rules
            .iter()
            .filter(|(_, rules)| !rules.required_claims.is_empty())
            .map(|(issuer, rules)| (issuer.clone(), rules.required_claims.clone()))
            .collect();
        let (issuer_jws, issuer_timing) =
            issuer_policies(&self.issuers, self.issuer_rules, &jws, leeway, self.max_age)?;
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let cache =
            crate::cache::build(self.cache.unwrap_or_else(|| Some(CacheOptions::default())), Arc::clone(&clock))
                .map(Arc::new);
        if let (Some(list), Some(cache)) = (&self.revocations, &cache) {
            // The list holds only a weak reference: once every clone of this verifier is gone, the listener
            // answers false and the list forgets it.
            let cache = Arc::downgrade(cache);
            list.on_change(move |entries| match cache.upgrade() {
                Some(cache) => {
                    cache.drop_revoked(entries);
                    true
                }
                None => false,
            });
        }
        Ok(Verifier {
            sources,
            cache,
            revocations: self.revocations,
            headers: Arc::default(),
            jws,
            rules: ClaimRules {
                issuers: self.issuers,
                audiences: self.audiences,
                issuer_audiences,
                leeway,
                max_age: self.max_age,
                issuer_timing,
                required: self.required,
                issuer_required,
                clients: self.clients,
            },
            issuer_jws: issuer_jws.into(),
            clock,
        })
    }
}

/// The header policies and time rules of the issuers with rules of their own, checked.
#[allow(clippy::type_complexity)]
fn issuer_policies(
    issuers: &[String],
    rules: Vec<(String, IssuerRules)>,
    jws: &JwsPolicy,
    leeway: Duration,
    max_age: Option<Duration>,
) -> Result<(Vec<(String, JwsPolicy)>, Vec<(String, Timing)>), ConfigError> {
    let (mut policies, mut timing) = (Vec::new(), Vec::<(String, Timing)>::new());
    for (issuer, rules) in rules {
        if !issuers.contains(&issuer) || timing.iter().any(|(known, _)| *known == issuer) {
            return Err(ConfigError::RulesForUnknownIssuer(issuer));
        }
        if let Some(own) = rules.leeway.filter(|own| *own > MAX_LEEWAY) {
            return Err(ConfigError::Leeway(own));
        }
        if rules.algorithms.is_some_and(|set| set.is_empty()) {
            return Err(ConfigError::NoAlgorithms);
        }
        if let Some(typ) = &rules.typ {
            let wanted = crate::jws::media_type(typ);
            let why = match &jws.required_typ {
                Some(global) if crate::jws::media_type(global) != wanted => {
                    Some("differs from the typ every token must carry")
                }
                None if !matches!(wanted.as_str(), "jwt" | "at+jwt") => Some("is neither jwt nor at+jwt"),
                _ => None,
            };
            if let Some(why) = why {
                return Err(ConfigError::IssuerTyp { issuer, typ: typ.clone(), why });
            }
        }
        if rules.typ.is_some() || rules.algorithms.is_some() {
            let mut policy = jws.clone();
            if let Some(set) = rules.algorithms {
                policy.algorithms = AlgorithmPolicy::Allow(set);
            }
            policy.required_typ = rules.typ.clone().or(policy.required_typ);
            policies.push((issuer.clone(), policy));
        }
        let own = Timing { leeway: rules.leeway.unwrap_or(leeway), max_age: rules.max_age.or(max_age) };
        timing.push((issuer, own));
    }
    Ok((policies, timing))
}

impl Verifier {
    /// Starts a builder.
    pub fn builder() -> VerifierBuilder {
        VerifierBuilder::default()
    }

    /// Whether every key source has a usable key set (for a readiness endpoint).
    pub fn is_ready(&self) -> bool {
        self.readiness().iter().all(|(_, ready)| *ready)
    }

    /// Readiness per issuer (`"*"` for a key source shared by all issuers).
    pub fn readiness(&self) -> Vec<(String, bool)> {
        match &self.sources {
            Sources::Shared(source) => vec![("*".to_owned(), source.is_ready())],
            Sources::PerIssuer(list) => {
                list.iter().map(|(issuer, source)| (issuer.clone(), source.is_ready())).collect()
            }
        }
    }

    /// How many distinct token headers this verifier remembers (at most 32; the oldest is dropped first).
    pub fn cached_headers(&self) -> usize {
        self.headers.len()
    }

    /// The verifier's clock: what its claim checks and token cache take as now. Share it with everything that
    /// shows or compares times for this verifier (key sets, status pages), so that they all agree.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The clock-skew allowance for tokens of `issuer` (its own, else the verifier's), for checks a caller adds
    /// on a verified token, such as a stricter maximum age.
    pub fn leeway(&self, issuer: Option<&str>) -> Duration {
        self.rules.timing(issuer).leeway
    }

    /// Now, on the verifier's clock.
    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// Verifies a token with the keys at hand, without waiting: a key source with no usable set answers
    /// `keys_unavailable`, an unknown `kid` is `key_not_found`. Servers use [`verify_async`](Self::verify_async),
    /// which may fetch.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, Error> {
        self.verify_current(token).map_err(Failure::into_error)
    }

    /// Verifies a token if the keys at hand decide it; `None` when the outcome depends on fetching keys (no usable
    /// set yet, or an unknown `kid`), which [`verify_async`](Self::verify_async) does. Lets a server answer most
    /// requests without allocating a future.
    pub fn verify_now(&self, token: &str) -> Option<Result<VerifiedToken, Error>> {
        match self.verify_current(token) {
            Ok(verified) => Some(Ok(verified)),
            Err(Failure::Final(err)) => Some(Err(err)),
            Err(Failure::NeedsKeys(_)) => None,
        }
    }

    /// Verifies a token; when the current key set cannot answer (none yet, or an unknown `kid` after a key
    /// rotation), the key source may fetch a fresh set within its rate limits.
    pub async fn verify_async(&self, token: &str) -> Result<VerifiedToken, Error> {
        match self.verify_current(token) {
            Ok(verified) => return Ok(verified),
            Err(Failure::Final(err)) => return Err(err),
            Err(Failure::NeedsKeys(_)) => {}
        }
        let prepared = self.prepare(token, &mut Silent)?;
        let key = prepared.source.resolve(prepared.jws.header().kid()).await?;
        let verified = self.finish(prepared, &key, token, &mut Silent)?;
        self.check_revoked(&verified)?;
        Ok(self.remember(verified))
    }

    /// Verifies a token and reports every check with its outcome, for people debugging a rejection.
    ///
    /// The checks are the very steps of [`verify`](Self::verify), watched: structure, key and signature are
    /// checked in order and stop at the first failure; once the signature holds, every claim check runs so that
    /// all problems show at once. The verdict is the same as [`verify`](Self::verify)'s. Neither the token cache
    /// nor the header cache is read or written.
    pub fn explain(&self, token: &str) -> Report {
        let mut recorder = Recorder::new(token);
        let verdict = self
            .run_current(token, &mut recorder)
            .map_err(Failure::into_error)
            .and_then(|verified| self.check_revoked(&verified).map(|()| verified));
        recorder.finish(verdict)
    }

    /// Verification with the current keys, from the token cache when possible.
    fn verify_current(&self, token: &str) -> Result<VerifiedToken, Failure> {
        if let Some(hit) = self.cache_hit(token) {
            if let Err(err) = self.check_revoked(&hit) {
                if let Some(cache) = &self.cache {
                    cache.remove(token);
                }
                return Err(Failure::Final(err));
            }
            return Ok(hit);
        }
        let verified = self.run_current(token, &mut Silent)?;
        self.check_revoked(&verified).map_err(Failure::Final)?;
        Ok(self.remember(verified))
    }

    /// `token_revoked` when the revocation list names `verified` (a token that passed every check).
    fn check_revoked(&self, verified: &VerifiedToken) -> Result<(), Error> {
        match &self.revocations {
            Some(list) => list.check(verified, self.clock.now()),
            None => Ok(()),
        }
    }

    /// The revocations this verifier enforces, if any.
    pub fn revocations(&self) -> Option<&RevocationList> {
        self.revocations.as_ref()
    }

    /// The whole pipeline with the current keys, watched by `observer`.
    fn run_current<O: Observer>(&self, token: &str, observer: &mut O) -> Result<VerifiedToken, Failure> {
        let prepared = self.prepare(token, observer).map_err(Failure::Final)?;
        let kid = prepared.jws.header().kid();
        let Some(keys) = prepared.source.current() else {
            let err = keys_unavailable("the issuer", 5);
            observer.failed(Check::Key, &err, || hints::key(&err, kid));
            return Err(Failure::NeedsKeys(err));
        };
        let key = match keys.select(kid) {
            Ok(key) => key,
            Err(err) => {
                observer.failed(Check::Key, &err, || hints::key(&err, kid));
                return Err(if kid.is_some() && err.reason() == Reason::KeyNotFound {
                    Failure::NeedsKeys(err)
                } else {
                    Failure::Final(err)
                });
            }
        };
        self.finish(prepared, key, token, observer).map_err(Failure::Final)
    }

    /// Step 1: the token's structure and header, then the key source of its issuer.
    fn prepare<'t, O: Observer>(&self, token: &'t str, observer: &mut O) -> Result<Prepared<'t, '_>, Error> {
        let cache = if O::USES_CACHES { Some(self.headers.as_ref()) } else { None };
        let jws = match UnverifiedJws::parse_with_cache(token, &self.jws, cache) {
            Ok(jws) => jws,
            Err(err) => {
                observer.failed(Check::Structure, &err, || hints::structure(token));
                return Err(err);
            }
        };
        observer.header(jws.header());
        let (source, mut claims) = match self.source_for(&jws) {
            Ok(found) => found,
            Err(err) => {
                observer.passed(Check::Structure, || format!("alg {}", jws.header().alg()));
                observer.failed(Check::Key, &err, || hints::key(&err, jws.header().kid()));
                return Err(err);
            }
        };
        let mut policy = &self.jws;
        if !self.issuer_jws.is_empty() {
            if claims.is_none() {
                match RegisteredClaims::parse_nested(jws.payload(), self.jws.max_json_depth) {
                    Ok(parsed) => claims = Some(parsed),
                    Err(err) => {
                        observer.passed(Check::Structure, || format!("alg {}", jws.header().alg()));
                        observer.failed(Check::Claims, &err, || None);
                        return Err(err);
                    }
                }
            }
            let iss = claims.as_ref().and_then(|claims| claims.iss.as_deref());
            if let Some((_, own)) = self.issuer_jws.iter().find(|(issuer, _)| Some(issuer.as_str()) == iss) {
                policy = own;
                if let Err(err) = crate::jws::check_typ(jws.header().typ(), own.required_typ.as_deref()) {
                    observer.failed(Check::Structure, &err, || None);
                    return Err(err);
                }
            }
        }
        observer.passed(Check::Structure, || format!("alg {}", jws.header().alg()));
        Ok(Prepared { jws, source, claims, policy })
    }

    /// Steps 2 to 4, with the key chosen: the algorithm bound to the key, the signature, the claims.
    fn finish<O: Observer>(
        &self,
        prepared: Prepared<'_, '_>,
        key: &Arc<VerifyingKey>,
        token: &str,
        observer: &mut O,
    ) -> Result<VerifiedToken, Error> {
        let Prepared { jws, claims, policy, .. } = prepared;
        if let Err(err) = jws.check_key(key, policy) {
            observer.failed(Check::Key, &err, || hints::key(&err, jws.header().kid()));
            return Err(err);
        }
        observer.passed(Check::Key, || hints::describe_key(key));
        if let Err(err) = jws.verify_signature(key) {
            observer.failed(Check::Signature, &err, || None);
            return Err(err);
        }
        observer.passed(Check::Signature, || "valid".into());
        if O::USES_CACHES {
            jws.remember_header(&self.headers);
        }
        let verified = jws.into_verified(key);
        let registered = match claims {
            Some(claims) => claims,
            None => match RegisteredClaims::parse_nested(&verified.payload, self.jws.max_json_depth) {
                Ok(registered) => registered,
                Err(err) => {
                    observer.failed(Check::Claims, &err, || None);
                    return Err(err);
                }
            },
        };
        observer.passed(Check::Claims, || "well-formed".into());
        let now = self.clock.now();
        let mut first_error = None;
        for check in CLAIM_CHECKS {
            match self.rules.check(check, &registered, &verified.payload, now) {
                Ok(()) => observer.passed(check, || self.rules.passed(check, &registered, now)),
                Err(err) => {
                    observer.failed(check, &err, || hints::claim(&self.rules, check, &registered, &verified.payload));
                    if !O::EVERY_CLAIM {
                        return Err(err);
                    }
                    first_error.get_or_insert(err);
                }
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(VerifiedToken::new(verified, registered, token)),
        }
    }

    /// Puts a fresh verification into the token cache.
    fn remember(&self, verified: VerifiedToken) -> VerifiedToken {
        if let Some(cache) = &self.cache {
            cache.insert(&verified);
        }
        verified
    }

    /// A cached verification of exactly this token that still holds: time claims re-checked now, and the key that
    /// verified it still in its issuer's current key set.
    fn cache_hit(&self, token: &str) -> Option<VerifiedToken> {
        let cache = self.cache.as_ref()?;
        let Some(hit) = cache.get(token) else {
            metrics::counter!("portcullis_token_cache_lookups_total", "result" => "miss").increment(1);
            return None;
        };
        metrics::counter!("portcullis_token_cache_lookups_total", "result" => "hit").increment(1);
        let source = match &self.sources {
            Sources::Shared(source) => source,
            Sources::PerIssuer(list) => &list.iter().find(|(issuer, _)| Some(issuer.as_str()) == hit.issuer())?.1,
        };
        let key_still_published = source
            .current()
            .is_some_and(|keys| keys.select(hit.header().kid()).is_ok_and(|key| Arc::ptr_eq(key, hit.key())));
        let now = self.clock.now();
        let still_valid = key_still_published
            && [Check::Expiry, Check::NotBefore, Check::IssuedAt]
                .into_iter()
                .all(|check| self.rules.check(check, hit.registered(), hit.payload(), now).is_ok());
        if still_valid {
            Some(hit)
        } else {
            cache.remove(token);
            None
        }
    }

    /// Registers the verifier's metric series at their current value, so that they exist before the first
    /// token: `portcullis_token_cache_lookups_total{result}` (`hit`, `miss`) while the token cache is on. A
    /// metrics endpoint calls it before rendering; without a `metrics` recorder it does nothing.
    pub fn publish_metrics(&self) {
        if self.cache.is_some() {
            for result in ["hit", "miss"] {
                metrics::counter!("portcullis_token_cache_lookups_total", "result" => result).increment(0);
            }
        }
    }

    /// Entries in the verified-token cache (0 when it is off).
    pub fn cached_tokens(&self) -> u64 {
        self.cache.as_ref().map_or(0, |cache| cache.len())
    }

    /// The key source for this token: the shared one, or the one of the token's issuer (read before the
    /// signature is checked, and returned so the claims are not parsed twice).
    fn source_for(&self, jws: &UnverifiedJws<'_>) -> Result<(&Arc<dyn KeySource>, Option<RegisteredClaims>), Error> {
        match &self.sources {
            Sources::Shared(source) => Ok((source, None)),
            Sources::PerIssuer(list) => {
                let claims = RegisteredClaims::parse_nested(jws.payload(), self.jws.max_json_depth)?;
                let Some(iss) = claims.iss.as_deref() else {
                    return Err(missing("iss", "iss is missing; the issuer is required"));
                };
                match list.iter().find(|(issuer, _)| issuer == iss) {
                    Some((_, source)) => Ok((source, Some(claims))),
                    None => Err(Error::new(
                        Reason::IssuerMismatch,
                        format!("issuer mismatch: token is from {}, which this API does not trust", quoted(iss)),
                    )
                    .with_detail(Detail::IssuerMismatch { found: iss.to_owned() })),
                }
            }
        }
    }
}

/// A token past step 1: its parsed structure, and the key source of its issuer.
struct Prepared<'t, 'v> {
    jws: UnverifiedJws<'t>,
    source: &'v Arc<dyn KeySource>,
    /// The registered claims, when choosing the source or the rules needed them.
    claims: Option<RegisteredClaims>,
    /// The header rules for the token's issuer.
    policy: &'v JwsPolicy,
}

/// One check in a [`Report`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Step {
    /// Which check.
    pub check: Check,
    /// What passed, or why it failed.
    pub outcome: Result<String, Error>,
    /// Advice for a failure, when there is a common cause.
    pub hint: Option<String>,
}

/// The result of [`Verifier::explain`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Report {
    /// The decoded header (shown even when the token is invalid).
    pub header: Option<Map<String, Value>>,
    /// The decoded, possibly unverified, claims.
    pub claims: Option<Map<String, Value>>,
    /// Checks in the order they ran.
    pub steps: Vec<Step>,
    /// The same verdict [`Verifier::verify`] gives.
    pub verdict: Result<VerifiedToken, Error>,
}

impl Default for Report {
    fn default() -> Self {
        Self {
            header: None,
            claims: None,
            steps: Vec::new(),
            verdict: Err(Error::new(Reason::TokenMalformed, "not checked")),
        }
    }
}
