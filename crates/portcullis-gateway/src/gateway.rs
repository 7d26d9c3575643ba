//! The gateway: the policy in force, replaceable at run time ([`Gateway::reload`]), and the issuers' key sets,
//! kept across reloads. A [`Policy`] is one configuration compiled for deciding.

use crate::config::{Config, ConfigError, ConfigErrors, Mode, RouteConfig};
use crate::decide::{Decided, Decision, Denial};
use crate::headers::{ManagedHeaders, TrustedProxies};
use crate::local_keys::LocalKeys;
use crate::observe::{Observer, Outcome, RouteSeries};
use crate::options::RouteOptions;
use crate::policy::{Access, RouteTable};
use crate::request::CanonicalRequest;
use crate::shared_state::SharedState;
use crate::tls::ListenerTls;
use crate::upstream::Upstream;
use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderName};
use portcullis::remote::{KeyLocation, RemoteKeySet, RemoteOptions};
use portcullis::{Clock, KeySource, SystemClock, Verifier};
use portcullis_axum::Answer;
use portcullis_web::Tally;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

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
    /// The one clock of the gateway: its verifiers' claim checks, its key sets' refresh timing, its pages.
    clock: Arc<dyn Clock>,
    /// The listener's certificate and key, when it speaks HTTPS; each reload reads them anew.
    tls: Option<Arc<ListenerTls>>,
    /// The DPoP verifier (replay cache, nonce key), kept across reloads that leave its settings alone.
    dpop: Mutex<Option<crate::sender::Built>>,
    /// The revocation list and the shared store, for the gateway's whole life.
    state: SharedState,
}

/// One configuration, compiled: verifier, routes, header mappings, answers and the observer.
pub(crate) struct Policy {
    pub config: Arc<Config>,
    pub(crate) verifier: Verifier,
    pub(crate) answer: Answer,
    /// The global claim → header mapping.
    pub(crate) claim_headers: Vec<(String, HeaderName)>,
    /// Per route (by index): its own mapping, when it has one.
    pub(crate) route_claim_headers: Vec<Option<Vec<(String, HeaderName)>>>,
    /// Every header name any mapping sets: client copies are removed, and forward-auth refuses requests with one.
    pub(crate) managed: ManagedHeaders,
    pub(crate) routes: RouteTable,
    /// What a request no route matches needs when `unmatched = "authenticated"`.
    pub(crate) unmatched_access: Access,
    pub(crate) trusted_proxies: TrustedProxies,
    /// Per route (by index): its token options.
    pub(crate) route_options: Vec<RouteOptions>,
    /// Whether any route has a CORS table (responses then get its headers).
    pub(crate) any_cors: bool,
    /// Whether any route passes or answers CORS preflights (otherwise no request is looked at as one).
    pub(crate) any_preflight: bool,
    /// Issuers whose keys come from a local file, with those keys (status page).
    pub(crate) local_keys: Vec<(String, LocalKeys)>,
    /// The client forwarding allowed requests (proxy mode): built with the policy, so that a reload reads
    /// `upstream_ca` (or the system's roots) anew.
    pub(crate) upstream: Option<Upstream>,
    /// DPoP: modes, the proof verifier, what challenges offer.
    pub(crate) sender: crate::sender::Sender,
    /// The protected-resource metadata document, when configured.
    pub(crate) metadata: Option<crate::metadata::Published>,
    /// Who may revoke tokens through the admin listener (`[revocation]`), when configured.
    pub(crate) admin: Option<crate::revocations::Admin>,
    observer: Observer,
}

/// What a reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    pub fn new(config: Config) -> Result<Self, ConfigErrors> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// Builds the gateway on `clock`, which every verifier and key set of it uses (tests inject a
    /// [`ManualClock`](portcullis::clock::ManualClock)). With `[store] redis_url`, call it inside a tokio runtime:
    /// the Redis store starts connecting in the background.
    pub fn with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Self, ConfigErrors> {
        let tally = Arc::new(Tally::default());
        let tls = crate::tls::listener_config(&config)?.map(|tls| Arc::new(ListenerTls::new(tls)));
        let state = SharedState::start(&config)?;
        let (policy, key_sets, _, dpop) = Policy::build(config, &[], None, Arc::clone(&tally), &state, &clock)?;
        Ok(Self {
            shared: Arc::new(Shared {
                policy: ArcSwap::from_pointee(policy),
                tally,
                key_sets: Mutex::new(key_sets),
                refreshing: AtomicBool::new(false),
                clock,
                tls,
                dpop: Mutex::new(dpop),
                state,
            }),
        })
    }

    /// Replaces the policy in force with `config`. Requests already deciding finish under the old policy. Key
    /// sets of unchanged JWKS locations are kept (no refetch); new ones start loading at once. The listener's
    /// certificate and key (`tls_cert`, `tls_key`) and the upstream's trusted roots are read anew: new
    /// connections use them, open ones keep theirs.
    ///
    /// Fails, keeping the running policy and certificate, when `config` is invalid (its TLS files included) or
    /// changes what only a restart can change (`listen`, `admin_listen`, `ext_authz_grpc`, `admin_pages`, `forward_auth`,
    /// `log_format`, `workers`, `limits`, `[store]`, and turning the listener's TLS on or off). The revocation list
    /// stays: a token revoked before a reload stays refused after it.
    pub fn reload(&self, config: Config) -> Result<Reloaded, ConfigErrors> {
        let running = self.config();
        for (key, changed) in [
            ("listen", config.listen != running.listen),
            ("admin_listen", config.admin_listen != running.admin_listen),
            ("ext_authz_grpc", config.ext_authz_grpc != running.ext_authz_grpc),
            ("admin_pages", config.admin_pages != running.admin_pages),
            ("forward_auth", config.forward_auth != running.forward_auth),
            ("log_format", config.log_format != running.log_format),
            ("workers", config.workers != running.workers),
            ("limits", config.limits != running.limits),
            ("tls_cert", config.tls_cert.is_some() != running.tls_cert.is_some()),
        ] {
            if changed {
                return Err(ConfigError::at(key, "changes only on restart; the running configuration is kept").into());
            }
        }
        self.shared.state.check_reload(&config)?;
        let tls = crate::tls::listener_config(&config)?;
        let mut key_sets = self.shared.key_sets.lock().unwrap_or_else(PoisonError::into_inner);
        let mut dpop = self.shared.dpop.lock().unwrap_or_else(PoisonError::into_inner);
        let (policy, kept, created, built) = Policy::build(
            config,
            &key_sets,
            dpop.as_ref(),
            Arc::clone(&self.shared.tally),
            &self.shared.state,
            &self.shared.clock,
        )?;
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
        *dpop = built;
        if let (Some(running), Some(tls)) = (&self.shared.tls, tls) {
            running.replace(tls);
        }
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

    /// The admin listener's `/ready` answer: 503 until every issuer has keys; with a shared store that is down,
    /// 503 when DPoP proofs are refused without it (`replay_on_failure = "fail_closed"`), else 200 "degraded"
    /// with the time of the revocation set enforced; connected but with a revocation set not read whole lately,
    /// 200 "degraded" with the time of the last full read.
    pub(crate) fn readiness(&self) -> (http::StatusCode, String) {
        if !self.is_ready() {
            return (http::StatusCode::SERVICE_UNAVAILABLE, "keys not loaded yet".to_owned());
        }
        let state = &self.shared.state;
        let status = state.status();
        let as_of = match status.last_sync {
            Some(at) => humantime::format_rfc3339_seconds(at).to_string(),
            None => "start (never synchronized)".to_owned(),
        };
        if status.connected {
            if status.synchronized {
                return (http::StatusCode::OK, "ready".to_owned());
            }
            return (http::StatusCode::OK, format!("ready (degraded: revocations not synchronized since {as_of})"));
        }
        let policy = self.policy();
        let dpop_on =
            policy.sender.algorithms().is_some() && !crate::dpop_config::enabled_at(&policy.config).is_empty();
        if dpop_on && state.replay_fails_closed() {
            return (http::StatusCode::SERVICE_UNAVAILABLE, "not ready: replay store unavailable".to_owned());
        }
        (http::StatusCode::OK, format!("ready (degraded: store unavailable; revocations as of {as_of})"))
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

    /// Reports the keys of local key files to the metrics recorder (again: it may have been installed after they
    /// were loaded).
    pub(crate) fn report_key_files(&self) {
        for (_, keys) in &self.policy().local_keys {
            keys.report();
        }
    }

    /// The listener's TLS settings, when it speaks HTTPS.
    pub(crate) fn listener_tls(&self) -> Option<Arc<ListenerTls>> {
        self.shared.tls.clone()
    }

    /// Sets every series the gateway knows in advance to its current value: each key set's state (keys, fetches
    /// by outcome, age, readiness), the token cache's lookups and each route's request counters (0 until a
    /// request counts). The admin
    /// listener's `/metrics` calls it before rendering.
    pub(crate) fn publish_metrics(&self) {
        let key_sets: Vec<RemoteKeySet> = {
            let key_sets = self.shared.key_sets.lock().unwrap_or_else(PoisonError::into_inner);
            key_sets.iter().map(|(_, keys)| keys.clone()).collect()
        };
        for keys in key_sets {
            keys.publish_metrics();
        }
        self.shared.state.publish_metrics();
        let policy = self.policy();
        policy.verifier.publish_metrics();
        policy.observer.publish();
        for (_, keys) in &policy.local_keys {
            keys.report();
        }
    }

    /// The revocation list and the shared store.
    pub(crate) fn shared_state(&self) -> &SharedState {
        &self.shared.state
    }

    /// The gateway's clock.
    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared.clock
    }

    /// Requests decided since start.
    pub(crate) fn tally(&self) -> &Tally {
        &self.shared.tally
    }

    /// The policy in force, for one request.
    pub(crate) fn policy(&self) -> Arc<Policy> {
        self.shared.policy.load_full()
    }
}

impl Policy {
    /// Builds a policy from a checked `config`, reusing the key sets in `existing` whose location is unchanged,
    /// and the DPoP verifier `dpop` when its settings are. Returns the policy, the key sets it uses, those among
    /// them that are new, and the DPoP verifier it uses.
    #[allow(clippy::type_complexity)]
    fn build(
        config: Config,
        existing: &[(KeyLocation, RemoteKeySet)],
        dpop: Option<&crate::sender::Built>,
        tally: Arc<Tally>,
        state: &SharedState,
        clock: &Arc<dyn Clock>,
    ) -> Result<(Self, Vec<(KeyLocation, RemoteKeySet)>, Vec<RemoteKeySet>, Option<crate::sender::Built>), ConfigErrors>
    {
        config.check()?;
        let (sender, built) = crate::sender::Sender::build(&config, dpop, state.replay_store(), clock)?;
        let metadata = crate::metadata::document(&config, built.as_ref().map(crate::sender::Built::verifier))
            .map(|document| crate::metadata::Published::new(&document));
        let upstream = match config.mode() {
            Mode::Proxy => {
                let tls = crate::tls::upstream_config(&config)?;
                match config.upstream.as_deref() {
                    Some(url) => {
                        let timeout = std::time::Duration::from_secs(config.upstream_timeout_secs);
                        Some(Upstream::new(url, tls, timeout).map_err(|message| ConfigError::at("upstream", message))?)
                    }
                    // Decisions over gRPC ext_authz only: the HTTP listener forwards nothing.
                    None => None,
                }
            }
            Mode::ForwardAuth(_) => None,
        };
        let mut builder = Verifier::builder()
            .clock(Arc::clone(clock))
            .max_token_len(config.limits.max_token_bytes)
            .max_json_depth(config.limits.max_json_depth);
        let (mut used, mut created, mut local_keys) = (Vec::new(), Vec::new(), Vec::new());
        for (i, issuer) in config.issuers.iter().enumerate() {
            if let Some(rules) = crate::options::issuer_rules(issuer) {
                builder = builder.issuer_rules(&issuer.issuer, rules);
            }
            for audience in &issuer.audiences {
                builder = builder.audience_for(&issuer.issuer, audience);
            }
            let keys = key_source(
                &config,
                &issuer.issuer,
                issuer.jwks_uri.as_deref(),
                &format!("issuers[{i}]"),
                existing,
                &mut KeySets { used: &mut used, created: &mut created, local_keys: &mut local_keys, clock },
            )?;
            builder = builder.issuer_keys(&issuer.issuer, keys);
        }
        let verifier = builder
            .revocations(state.revocations().clone())
            .build()
            .map_err(|e| ConfigErrors::from(ConfigError::at("issuers", e.to_string())))?;
        let admin = match &config.revocation {
            Some(revocation) => {
                // Without a jwks_uri of its own, the issuer's keys come from where [[issuers]] takes them.
                let jwks_uri = revocation.jwks_uri.as_deref().or_else(|| {
                    config.issuers.iter().find(|i| i.issuer == revocation.issuer).and_then(|i| i.jwks_uri.as_deref())
                });
                let keys = key_source(
                    &config,
                    &revocation.issuer,
                    jwks_uri,
                    "revocation",
                    existing,
                    &mut KeySets { used: &mut used, created: &mut created, local_keys: &mut local_keys, clock },
                )?;
                Some(crate::revocations::Admin::build(revocation, keys, &config, state, clock)?)
            }
            None => None,
        };
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
        let managed = ManagedHeaders::new(
            claim_headers.iter().chain(route_claim_headers.iter().flatten().flatten()).map(|(_, header)| header),
        );
        let answer = Answer::with_realm(&config.realm);
        let routes = RouteTable::compile(&config.routes)
            .map_err(|(i, message)| ConfigErrors::from(ConfigError::at(format!("routes[{i}].path"), message)))?;
        let series = (0..config.routes.len())
            .map(|index| {
                let route = routes.get(index);
                let needs_token =
                    matches!(route.kind, crate::policy::RouteKind::Resource { access: Access::Token { .. }, .. });
                RouteSeries::new(route.name.clone(), needs_token)
            })
            .collect();
        let unmatched_needs_token = config.unmatched == crate::config::Unmatched::Authenticated;
        let observer = Observer::new(series, unmatched_needs_token, tally);
        let trusted_proxies = TrustedProxies::new(&config.trusted_proxies);
        let unmatched_access = Access::Token { rule: None, issuers: Vec::new(), audiences: Vec::new() };
        let route_options: Vec<RouteOptions> = config.routes.iter().map(RouteOptions::new).collect();
        let any_cors = route_options.iter().any(|options| options.cors.is_some());
        let any_preflight = route_options.iter().any(|options| options.preflight.is_some());
        let config = Arc::new(config);
        let policy = Self {
            config,
            verifier,
            answer,
            claim_headers,
            route_claim_headers,
            managed,
            routes,
            unmatched_access,
            trusted_proxies,
            route_options,
            any_cors,
            any_preflight,
            local_keys,
            upstream,
            sender,
            metadata,
            admin,
            observer,
        };
        Ok((policy, used, created, built))
    }

    /// Decides about `request` and reports the decision. `answers_preflights`: whether this edge can answer a
    /// CORS preflight itself (the reverse proxy can; a forward-auth answer of 2xx only lets the request through).
    pub(crate) async fn decide_and_report(
        &self,
        request: &CanonicalRequest,
        headers: &HeaderMap,
        answers_preflights: bool,
    ) -> Decision {
        let started = std::time::Instant::now();
        let Decided { decision, route, subject } = self.decide(request, headers, answers_preflights).await;
        let detail = match &decision {
            Decision::Deny(denial) => Some(denial.description()),
            Decision::Allow(_) | Decision::Preflight(_) => None,
        };
        self.observer.report(&Outcome {
            request_id: request_id(headers),
            method: request.method.as_str(),
            path: request.path.as_str(),
            route: route.map_or("unmatched", |index| self.routes.get(index).name.as_str()),
            route_index: route,
            denied: match &decision {
                Decision::Deny(denial) => Some(denial.reason()),
                Decision::Allow(_) | Decision::Preflight(_) => None,
            },
            subject: subject.as_deref(),
            detail: detail.as_deref(),
            elapsed: started.elapsed(),
        });
        decision
    }

    /// The CORS headers for a response to `request` on a route with a CORS table, when its `Origin` is allowed
    /// there (empty otherwise).
    pub(crate) fn cors_headers(
        &self,
        request: &CanonicalRequest,
        headers: &HeaderMap,
    ) -> Vec<(HeaderName, http::HeaderValue)> {
        if !self.any_cors || !headers.contains_key(http::header::ORIGIN) {
            return Vec::new();
        }
        match self.routes.resolve(&request.method, &request.path) {
            crate::policy::Resolution::Route(index) => match &self.route_options[index].cors {
                Some(cors) => cors.response_headers(headers),
                None => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// What the challenges of a refusal of `request` (when it could be read) offer: the schemes its route
    /// accepts, and the scheme it used.
    pub(crate) fn offer(&self, request: Option<&CanonicalRequest>, headers: &HeaderMap) -> crate::sender::Offer {
        let route = request.and_then(|request| match self.routes.resolve(&request.method, &request.path) {
            crate::policy::Resolution::Route(index) => Some(index),
            _ => None,
        });
        self.sender.offer(route, headers)
    }

    /// The front proxy whose forward-auth endpoint `request` is for (proxy mode), if it is for one.
    pub(crate) fn forward_auth_endpoint(&self, request: &CanonicalRequest) -> Option<crate::config::FrontProxy> {
        match self.routes.resolve(&request.method, &request.path) {
            crate::policy::Resolution::Route(index) => match self.routes.get(index).kind {
                crate::policy::RouteKind::ForwardAuthEndpoint(front) => Some(front),
                crate::policy::RouteKind::Resource { .. } => None,
            },
            _ => None,
        }
    }

    /// Reports a request refused before any route was looked up (its target or description unreadable).
    pub(crate) fn report_refusal(&self, method: &str, denial: &Denial, headers: &HeaderMap) {
        let detail = denial.description();
        self.observer.report(&Outcome {
            request_id: request_id(headers),
            method,
            path: "-",
            route: "-",
            route_index: None,
            denied: Some(denial.reason()),
            subject: None,
            detail: Some(&detail),
            elapsed: std::time::Duration::ZERO,
        });
    }
}

/// Where [`key_source`] records the key sets a policy uses.
struct KeySets<'a> {
    /// Remote key sets by location.
    used: &'a mut Vec<(KeyLocation, RemoteKeySet)>,
    /// Those among them that are new.
    created: &'a mut Vec<RemoteKeySet>,
    /// Local key files by issuer.
    local_keys: &'a mut Vec<(String, LocalKeys)>,
    /// The gateway's clock, for new key sets.
    clock: &'a Arc<dyn Clock>,
}

/// The keys of `issuer`: from the local file or the JWKS URL `jwks_uri`, or by discovery. A location the policy
/// uses already, or that `existing` holds, is reused; errors are reported at `key` (`issuers[2]`, `revocation`).
fn key_source(
    config: &Config,
    issuer: &str,
    jwks_uri: Option<&str>,
    key: &str,
    existing: &[(KeyLocation, RemoteKeySet)],
    sets: &mut KeySets<'_>,
) -> Result<Arc<dyn KeySource>, ConfigErrors> {
    let limits = &config.limits;
    if let Some((uri, path)) = jwks_uri.and_then(|uri| Some((uri, crate::local_keys::path_of(uri)?))) {
        let at = |message| ConfigError { key: format!("{key}.jwks_uri"), location: None, message };
        if let Some((_, keys)) = sets.local_keys.iter().find(|(known, keys)| known == issuer && keys.uri == uri) {
            return Ok(Arc::new(keys.clone()) as Arc<dyn KeySource>);
        }
        let path = path.map_err(at)?;
        let keys = LocalKeys::load(uri, &path, limits.max_jwks_bytes, limits.max_keys_per_set).map_err(at)?;
        keys.report();
        sets.local_keys.push((issuer.to_owned(), keys.clone()));
        return Ok(Arc::new(keys) as Arc<dyn KeySource>);
    }
    let location = match jwks_uri {
        Some(uri) => KeyLocation::Jwks(uri.to_owned()),
        None => KeyLocation::Discovery { issuer: issuer.to_owned() },
    };
    if let Some((_, keys)) = sets.used.iter().find(|(known, _)| *known == location) {
        return Ok(Arc::new(keys.clone()) as Arc<dyn KeySource>);
    }
    let keys = match existing.iter().find(|(known, _)| *known == location) {
        Some((_, keys)) => keys.clone(),
        None => {
            let mut options = RemoteOptions::default().with_max_keys(limits.max_keys_per_set);
            options.fetch.max_body = limits.max_jwks_bytes;
            let clock = Arc::clone(sets.clock);
            let keys = RemoteKeySet::new(location.clone(), options, clock)
                .map_err(|e| ConfigErrors::from(ConfigError::at(key, e.to_string())))?;
            sets.created.push(keys.clone());
            keys
        }
    };
    sets.used.push((location, keys.clone()));
    Ok(Arc::new(keys) as Arc<dyn KeySource>)
}

/// The request id the edge put in `X-Request-Id`.
fn request_id(headers: &HeaderMap) -> &str {
    headers.get(crate::request_id::HEADER).and_then(|v| v.to_str().ok()).unwrap_or("-")
}

/// The route configuration a debugger row stands for, with its restrictions checked against a verified token: its
/// issuers, audiences and rule, then its own `typ` and maximum age (with the issuer's leeway on `verifier`).
pub(crate) fn route_accepts(
    route: &RouteConfig,
    token: &portcullis::VerifiedToken,
    verifier: &Verifier,
) -> Result<(), portcullis::Error> {
    crate::decide::accepts(&route.path, &route.issuers, &route.audiences, route.require.as_ref(), token)?;
    RouteOptions::new(route).accepts(&route.path, token, verifier.now(), verifier.leeway(token.issuer()))
}
