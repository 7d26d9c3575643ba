//! The decision every request gets, shared by the reverse proxy and forward-auth: which route, which rule, and
//! which headers go upstream. The policy in force can be replaced at run time ([`Gateway::reload`]).

use crate::config::{Config, ConfigError, RouteConfig, Unmatched};
use crate::routes::RouteTable;
use arc_swap::ArcSwap;
use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use portcullis::remote::{KeyLocation, RemoteKeySet, RemoteOptions};
use portcullis::{Error, KeySource, Reason, SystemClock, VerifiedToken, Verifier};
use portcullis_axum::Answer;
use portcullis_web::Tally;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// The gateway: the policy in force and the issuers' key sets. Cheap to clone; clones share reloads.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

struct Shared {
    policy: ArcSwap<Policy>,
    /// Requests decided since start, across reloads (the status page's counts).
    tally: Arc<Tally>,
    /// Key sets by location, reused across reloads so a reload does not refetch keys.
    key_sets: Mutex<Vec<(KeyLocation, RemoteKeySet)>>,
    refreshing: AtomicBool,
}

/// One configuration, built: verifier, answers and header mapping.
pub(crate) struct Policy {
    pub config: Arc<Config>,
    pub(crate) verifier: Verifier,
    answer: Answer,
    /// The global claim → header mapping.
    claim_headers: Vec<(String, HeaderName)>,
    /// Per route (by index): its own mapping, when it has one.
    route_claim_headers: Vec<Option<Vec<(String, HeaderName)>>>,
    /// Every header name any mapping sets: client-sent copies of all of them are removed.
    managed: Vec<HeaderName>,
    routes: RouteTable,
    metrics: DecisionMetrics,
    tally: Arc<Tally>,
}

/// Metric handles, created on first use (after the recorder is installed) and kept: a request does not look
/// its counters up by name.
struct DecisionMetrics {
    /// Allowed requests per route index; the last slot is for unmatched requests.
    allowed: Vec<OnceLock<metrics::Counter>>,
    denied: Mutex<HashMap<(usize, &'static str), metrics::Counter>>,
    latency: OnceLock<metrics::Histogram>,
}

impl DecisionMetrics {
    fn new(routes: usize) -> Self {
        Self {
            allowed: (0..=routes).map(|_| OnceLock::new()).collect(),
            denied: Mutex::new(HashMap::new()),
            latency: OnceLock::new(),
        }
    }

    fn counter(route: &str, outcome: &'static str, reason: &'static str) -> metrics::Counter {
        metrics::counter!(
            "portcullis_gateway_requests_total",
            "route" => route.to_owned(), "outcome" => outcome, "reason" => reason
        )
    }

    fn record(&self, index: usize, route: &str, reason: Option<&'static str>, seconds: f64) {
        match reason {
            None => self.allowed[index].get_or_init(|| Self::counter(route, "allowed", "none")).increment(1),
            Some(reason) => {
                let mut denied = self.denied.lock().unwrap_or_else(PoisonError::into_inner);
                denied.entry((index, reason)).or_insert_with(|| Self::counter(route, "denied", reason)).increment(1);
            }
        }
        self.latency.get_or_init(|| metrics::histogram!("portcullis_gateway_decision_seconds")).record(seconds);
    }
}

/// The outcome of [`Gateway::decide`].
pub enum Decision {
    /// Let it through, with these headers for the upstream.
    Allow {
        /// Headers derived from the token's claims.
        claim_headers: Vec<(HeaderName, HeaderValue)>,
        /// Whether the `Authorization` header may go upstream.
        forward_authorization: bool,
    },
    /// Refuse with this answer.
    Deny(Box<Response>),
}

/// What a reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Routes now in force.
    pub routes: usize,
    /// Issuers now trusted.
    pub issuers: usize,
    /// Key sets created by this reload (new JWKS locations); the others were kept with their keys.
    pub new_key_sets: usize,
}

impl Gateway {
    /// Builds the gateway: one remote key set per issuer (discovery unless a JWKS URL is given).
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        let tally = Arc::new(Tally::default());
        let (policy, key_sets, _) = Policy::build(config, &[], Arc::clone(&tally))?;
        Ok(Self {
            shared: Arc::new(Shared {
                policy: ArcSwap::from_pointee(policy),
                tally,
                key_sets: Mutex::new(key_sets),
                refreshing: AtomicBool::new(false),
            }),
        })
    }

    /// Replaces the policy in force with `config`. Requests already deciding finish under the old policy. Key
    /// sets of unchanged JWKS locations are kept (no refetch); new ones start loading at once.
    ///
    /// Fails, keeping the running policy, when `config` is invalid or changes what only a restart can change
    /// (`listen`, `admin_listen`, `admin_pages`, `mode`, `log_format`, `workers`, `limits`).
    pub fn reload(&self, config: Config) -> Result<Reloaded, ConfigError> {
        let running = self.config();
        for (key, changed) in [
            ("listen", config.listen != running.listen),
            ("admin_listen", config.admin_listen != running.admin_listen),
            ("admin_pages", config.admin_pages != running.admin_pages),
            ("mode", config.mode != running.mode),
            ("log_format", config.log_format != running.log_format),
            ("workers", config.workers != running.workers),
            ("limits", config.limits != running.limits),
        ] {
            if changed {
                return Err(ConfigError {
                    key: key.into(),
                    location: None,
                    message: "changes only on restart; the running configuration is kept".into(),
                });
            }
        }
        let mut key_sets = self.shared.key_sets.lock().unwrap_or_else(PoisonError::into_inner);
        let (policy, kept, created) = Policy::build(config, &key_sets, Arc::clone(&self.shared.tally))?;
        if self.shared.refreshing.load(Ordering::Acquire) {
            for keys in &created {
                keys.spawn_refresher();
            }
        }
        let reloaded = Reloaded {
            routes: policy.config.routes.len(),
            issuers: policy.config.issuers.len(),
            new_key_sets: created.len(),
        };
        self.shared.policy.store(Arc::new(policy));
        *key_sets = kept;
        Ok(reloaded)
    }

    /// Starts loading and refreshing every issuer's keys in the background (also for issuers added by reloads).
    pub fn start_key_refresh(&self) {
        let key_sets = self.shared.key_sets.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.shared.refreshing.swap(true, Ordering::AcqRel) {
            for (_, keys) in key_sets.iter() {
                keys.spawn_refresher();
            }
        }
    }

    /// Whether every issuer has usable keys.
    pub fn is_ready(&self) -> bool {
        self.shared.policy.load().verifier.is_ready()
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.shared.policy.load().config.clone()
    }

    /// The key set serving `location`, if the policy in force uses it.
    pub(crate) fn key_set(&self, location: &KeyLocation) -> Option<RemoteKeySet> {
        let key_sets = self.shared.key_sets.lock().unwrap_or_else(PoisonError::into_inner);
        key_sets.iter().find(|(known, _)| known == location).map(|(_, keys)| keys.clone())
    }

    /// Requests decided since start.
    pub(crate) fn tally(&self) -> &Tally {
        &self.shared.tally
    }

    /// The policy in force, for one request.
    pub(crate) fn policy(&self) -> Arc<Policy> {
        self.shared.policy.load_full()
    }

    /// Decides about a request for `path` with `method`, carrying `headers`, under the policy in force. Counts
    /// the outcome by route and reason (`portcullis_gateway_requests_total`), times it
    /// (`portcullis_gateway_decision_seconds`), and logs it with the request id (`X-Request-Id`), route, outcome,
    /// reason and subject — never the token.
    pub async fn decide(&self, method: &Method, path: &str, headers: &HeaderMap) -> Decision {
        self.policy().decide(method, path, headers).await
    }
}

impl Policy {
    /// Builds a policy from a checked `config`, reusing the key sets in `existing` whose location is unchanged.
    /// Returns the policy, the key sets it uses, and those among them that are new.
    #[allow(clippy::type_complexity)]
    fn build(
        config: Config,
        existing: &[(KeyLocation, RemoteKeySet)],
        tally: Arc<Tally>,
    ) -> Result<(Self, Vec<(KeyLocation, RemoteKeySet)>, Vec<RemoteKeySet>), ConfigError> {
        config.check()?;
        let mut builder = Verifier::builder()
            .max_token_len(config.limits.max_token_bytes)
            .max_json_depth(config.limits.max_json_depth);
        let (mut used, mut created) = (Vec::new(), Vec::new());
        for (i, issuer) in config.issuers.iter().enumerate() {
            let location = match &issuer.jwks_uri {
                Some(uri) => KeyLocation::Jwks(uri.clone()),
                None => KeyLocation::Discovery { issuer: issuer.issuer.clone() },
            };
            let keys = match existing.iter().find(|(known, _)| *known == location) {
                Some((_, keys)) => keys.clone(),
                None => {
                    let mut options = RemoteOptions { max_keys: config.limits.max_keys_per_set, ..Default::default() };
                    options.fetch.max_body = config.limits.max_jwks_bytes;
                    let keys = RemoteKeySet::new(location.clone(), options, Arc::new(SystemClock)).map_err(|e| {
                        ConfigError { key: format!("issuers[{i}]"), location: None, message: e.to_string() }
                    })?;
                    created.push(keys.clone());
                    keys
                }
            };
            builder = builder.issuer_keys(&issuer.issuer, Arc::new(keys.clone()) as Arc<dyn KeySource>);
            for audience in &issuer.audiences {
                builder = builder.audience_for(&issuer.issuer, audience);
            }
            used.push((location, keys));
        }
        let verifier = builder.build().map_err(|e| ConfigError {
            key: "issuers".into(),
            location: None,
            message: e.to_string(),
        })?;
        let compile = |mapping: &std::collections::BTreeMap<String, String>| -> Vec<(String, HeaderName)> {
            mapping
                .iter()
                .filter_map(|(claim, header)| {
                    HeaderName::from_bytes(header.as_bytes()).ok().map(|h| (claim.clone(), h))
                })
                .collect()
        };
        let claim_headers = compile(&config.claim_headers);
        let route_claim_headers: Vec<_> =
            config.routes.iter().map(|route| route.claim_headers.as_ref().map(compile)).collect();
        let mut managed: Vec<HeaderName> = Vec::new();
        for (_, header) in claim_headers.iter().chain(route_claim_headers.iter().flatten().flatten()) {
            if !managed.contains(header) {
                managed.push(header.clone());
            }
        }
        let answer = Answer::with_realm(&config.realm);
        let routes = RouteTable::new(config.routes.clone());
        let metrics = DecisionMetrics::new(config.routes.len());
        let config = Arc::new(config);
        let policy =
            Self { config, verifier, answer, claim_headers, route_claim_headers, managed, routes, metrics, tally };
        Ok((policy, used, created))
    }

    /// The first route matching the request, with its index.
    fn route(&self, method: &Method, path: &str) -> Option<(usize, &RouteConfig)> {
        self.routes.find(method, path)
    }

    /// Whether the request itself is for a forward-auth endpoint route (proxy mode).
    pub(crate) fn is_forward_auth_endpoint(&self, method: &Method, path: &str) -> bool {
        self.route(method, path).is_some_and(|(_, route)| route.forward_auth)
    }

    fn deny(&self, error: Error) -> Decision {
        Decision::Deny(Box::new(self.answer.respond(error)))
    }

    /// Decides about a request for `path` with `method`, carrying `headers`. Counts the outcome by route and
    /// reason (`portcullis_gateway_requests_total`), times it (`portcullis_gateway_decision_seconds`), and logs
    /// it with the request id from `X-Request-Id`, the route, outcome, reason and subject (never the token).
    pub async fn decide(&self, method: &Method, path: &str, headers: &HeaderMap) -> Decision {
        let started = std::time::Instant::now();
        let route = self.route(method, path);
        let (decision, subject) = self.decide_route(route, headers).await;
        let index = route.map_or(self.config.routes.len(), |(index, _)| index);
        let route = route.map(|(_, route)| route);
        let (outcome, reason, detail) = match &decision {
            Decision::Allow { .. } => ("allowed", "none", None),
            Decision::Deny(response) => match response.extensions().get::<portcullis_axum::Rejected>() {
                Some(rejected) => ("denied", rejected.0.reason().code(), Some(rejected.0.description().to_owned())),
                None => ("denied", "no_route", None),
            },
        };
        let route = route.map_or("unmatched", |r| r.path.as_str());
        let elapsed = started.elapsed();
        tracing::info!(
            target: "portcullis::gateway::request",
            request_id = headers.get(crate::request_id::HEADER).and_then(|v| v.to_str().ok()).unwrap_or("-"),
            method = method.as_str(),
            path,
            route,
            outcome,
            reason,
            subject = subject.as_deref().unwrap_or("-"),
            detail = detail.as_deref().unwrap_or("-"),
            micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            "request {outcome}"
        );
        let denied = (outcome == "denied").then_some(reason);
        self.metrics.record(index, route, denied, elapsed.as_secs_f64());
        match denied {
            None => self.tally.allowed(),
            Some(reason) => self.tally.denied(reason),
        }
        decision
    }

    async fn decide_route(
        &self,
        route: Option<(usize, &RouteConfig)>,
        headers: &HeaderMap,
    ) -> (Decision, Option<String>) {
        let (public, forward_authorization) = match route {
            // A forward-auth endpoint is never the resource a decision is about.
            Some((_, route)) if !route.forward_auth => (route.public, route.forward_authorization),
            None if self.config.unmatched == Unmatched::Authenticated => (false, false),
            _ => {
                let not_found =
                    axum::response::IntoResponse::into_response((http::StatusCode::NOT_FOUND, "no such route"));
                return (Decision::Deny(Box::new(not_found)), None);
            }
        };
        if public {
            return (Decision::Allow { claim_headers: Vec::new(), forward_authorization }, None);
        }
        let token = match bearer(headers) {
            Ok(token) => token,
            Err(error) => return (self.deny(error), None),
        };
        let verified = match self.verifier.verify_async(token).await {
            Ok(verified) => verified,
            Err(error) => return (self.deny(error), None),
        };
        let subject = verified.subject().map(str::to_owned);
        if let Some((_, route)) = route {
            if let Err(error) = route_accepts(route, &verified) {
                return (self.deny(error), subject);
            }
        }
        let mapping = route.and_then(|(index, _)| self.route_claim_headers[index].as_deref());
        let claim_headers = claim_headers(mapping.unwrap_or(&self.claim_headers), &verified);
        (Decision::Allow { claim_headers, forward_authorization }, subject)
    }

    /// The header names the gateway sets (every mapping's); client-sent copies are always removed.
    pub fn managed_headers(&self) -> impl Iterator<Item = &HeaderName> {
        self.managed.iter()
    }
}

/// Headers from the token's claims, per `mapping`. `sub`, `scope` (or `scp`) and `permissions` come from the
/// claims parsed during verification; only other claims build the token's full claim map.
fn claim_headers(mapping: &[(String, HeaderName)], token: &VerifiedToken) -> Vec<(HeaderName, HeaderValue)> {
    mapping
        .iter()
        .filter_map(|(claim, header)| {
            let text = match claim.as_str() {
                "sub" => token.subject()?.to_owned(),
                "scope" | "scp" if !token.scopes().is_empty() => token.scopes().join(" "),
                "permissions" if !token.permissions().is_empty() => token.permissions().join(" "),
                "scope" | "scp" | "permissions" => return None,
                _ => claim_text(portcullis::claims::lookup(token.claims(), claim)?)?,
            };
            HeaderValue::from_str(&text).ok().map(|v| (header.clone(), v))
        })
        .collect()
}

/// A claim's value as header text: strings as they are, arrays joined with spaces, other JSON as JSON.
fn claim_text(value: &Value) -> Option<String> {
    Some(match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            items.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect::<Vec<_>>().join(" ")
        }
        Value::Null => return None,
        other => other.to_string(),
    })
}

/// The route's own restrictions on a verified token: issuer, audience, then its rule.
pub(crate) fn route_accepts(route: &RouteConfig, token: &VerifiedToken) -> Result<(), Error> {
    if !route.issuers.is_empty() && !token.issuer().is_some_and(|iss| route.issuers.iter().any(|r| r == iss)) {
        return Err(Error::new(
            Reason::IssuerMismatch,
            format!("{} does not accept tokens from this issuer", route.path),
        ));
    }
    if !route.audiences.is_empty() && !token.registered().aud.iter().any(|aud| route.audiences.contains(aud)) {
        return Err(Error::new(
            Reason::AudienceMismatch,
            format!("{} accepts tokens for {}", route.path, route.audiences.join(" or ")),
        ));
    }
    match &route.require {
        Some(rule) => rule.check(token),
        None => Ok(()),
    }
}

/// The single bearer token of a request (header only: a gateway never reads tokens from URLs or cookies).
fn bearer(headers: &HeaderMap) -> Result<&str, Error> {
    portcullis_axum::authorization_bearer(headers)?
        .ok_or_else(|| Error::new(Reason::TokenMissing, "the request has no bearer token"))
}
