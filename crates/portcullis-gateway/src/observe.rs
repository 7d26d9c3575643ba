//! What the gateway tells about each decision: one log line (never the token), the Prometheus counters and
//! latency histogram, and the status page's tally. Every edge reports through the one [`Observer`].
//!
//! Every series the gateway knows in advance exists from the first scrape: [`Observer::publish`] registers each
//! route's request counters at 0 and the latency histogram, and the key sets publish their own state
//! ([`portcullis::remote::RemoteKeySet::publish_metrics`]), so an alert has data before the first request.

use portcullis::Reason;
use portcullis_web::Tally;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// The request counter's family.
const REQUESTS: &str = "portcullis_gateway_requests_total";
/// The decision latency histogram's family.
const DECISION_SECONDS: &str = "portcullis_gateway_decision_seconds";
/// The histogram of the ext_authz Check handler's own time (gRPC).
pub(crate) const CHECK_SECONDS: &str = "portcullis_ext_authz_check_seconds";
/// Its buckets, in seconds: 1 µs to 10 ms, fine enough to read a p99 between 5 and 50 µs.
pub(crate) const CHECK_BUCKETS: [f64; 22] = [
    1e-6, 2e-6, 3e-6, 4e-6, 5e-6, 6e-6, 8e-6, 10e-6, 12e-6, 15e-6, 20e-6, 25e-6, 30e-6, 40e-6, 50e-6, 75e-6, 100e-6,
    250e-6, 500e-6, 1e-3, 2.5e-3, 10e-3,
];

/// The ext_authz Check latency histogram of the recorder installed now (registered, so it is scraped from the start).
pub(crate) fn check_latency() -> metrics::Histogram {
    metrics::histogram!(CHECK_SECONDS)
}

/// The route label of requests no route matched.
const UNMATCHED: &str = "unmatched";
/// The route label of requests refused before routing (target or description unreadable).
const BEFORE_ROUTING: &str = "-";

/// One decision, as reported.
pub(crate) struct Outcome<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    /// The path as decided (canonical), or `-` when it could not be read.
    pub path: &'a str,
    /// The route's pattern, `unmatched`, or `-` before routing.
    pub route: &'a str,
    /// The route's index; `None` when no route decided.
    pub route_index: Option<usize>,
    /// `None` when allowed, else the stable reason code.
    pub denied: Option<&'static str>,
    pub subject: Option<&'a str>,
    pub detail: Option<&'a str>,
    pub elapsed: Duration,
}

/// A route as the metrics name it.
pub(crate) struct RouteSeries {
    /// The route label: the pattern as configured, or `unmatched`.
    pub name: String,
    /// Whether requests on it need a token (then every token refusal reason is a series from the start).
    pub needs_token: bool,
}

impl RouteSeries {
    /// The series of the route labelled `name`.
    pub(crate) fn new(name: impl Into<String>, needs_token: bool) -> Self {
        Self { name: name.into(), needs_token }
    }
}

/// Logs, metrics and the tally for one policy.
pub(crate) struct Observer {
    /// The configured routes by index, then the `unmatched` slot, then the slot of refusals before routing.
    routes: Vec<RouteSeries>,
    /// Allowed requests per slot of `routes`.
    allowed: Vec<OnceLock<metrics::Counter>>,
    /// Refused requests by slot of `routes` and reason.
    denied: Mutex<HashMap<(usize, &'static str), metrics::Counter>>,
    latency: OnceLock<metrics::Histogram>,
    tally: Arc<Tally>,
}

impl Observer {
    /// For a policy with `routes` (in configuration order) whose unmatched requests need a token when
    /// `unmatched_needs_token`, counting into `tally` (shared across reloads).
    pub(crate) fn new(routes: Vec<RouteSeries>, unmatched_needs_token: bool, tally: Arc<Tally>) -> Self {
        let mut routes = routes;
        routes.push(RouteSeries::new(UNMATCHED, unmatched_needs_token));
        routes.push(RouteSeries::new(BEFORE_ROUTING, false));
        Self {
            allowed: routes.iter().map(|_| OnceLock::new()).collect(),
            routes,
            denied: Mutex::new(HashMap::new()),
            latency: OnceLock::new(),
            tally,
        }
    }

    fn counter(route: &str, outcome: &'static str, reason: &'static str) -> metrics::Counter {
        metrics::counter!(REQUESTS, "route" => route.to_owned(), "outcome" => outcome, "reason" => reason)
    }

    fn latency(&self) -> &metrics::Histogram {
        self.latency.get_or_init(|| metrics::histogram!(DECISION_SECONDS))
    }

    fn allowed_counter(&self, slot: usize) -> &metrics::Counter {
        self.allowed[slot].get_or_init(|| Self::counter(&self.routes[slot].name, "allowed", "none"))
    }

    fn count_denied(&self, slot: usize, reason: &'static str, requests: u64) {
        let mut denied = self.denied.lock().unwrap_or_else(PoisonError::into_inner);
        denied
            .entry((slot, reason))
            .or_insert_with(|| Self::counter(&self.routes[slot].name, "denied", reason))
            .increment(requests);
    }

    /// Registers every series known in advance, at its current value: each route's allowed requests, every token
    /// refusal reason on the routes that need a token, and the latency histogram. Called before each scrape, so
    /// that series exist even when the recorder was installed after this policy was built.
    pub(crate) fn publish(&self) {
        let before_routing = self.routes.len() - 1;
        for (slot, route) in self.routes.iter().enumerate().take(before_routing) {
            self.allowed_counter(slot).increment(0);
            if route.needs_token {
                for reason in Reason::ALL {
                    self.count_denied(slot, reason.code(), 0);
                }
            }
        }
        // An empty histogram renders with a count of 0.
        let _ = self.latency();
    }

    /// Reports one decision: one log line (at `warn` when the fault is the gateway's, as when keys are
    /// unavailable; else at `info`), the counters, the latency and the tally.
    pub(crate) fn report(&self, outcome: &Outcome<'_>) {
        let verdict = if outcome.denied.is_some() { "denied" } else { "allowed" };
        macro_rules! log {
            ($level:ident) => {
                tracing::$level!(
                    target: "portcullis::gateway::request",
                    request_id = outcome.request_id,
                    method = outcome.method,
                    path = outcome.path,
                    route = outcome.route,
                    outcome = verdict,
                    reason = outcome.denied.unwrap_or("none"),
                    subject = outcome.subject.unwrap_or("-"),
                    detail = outcome.detail.unwrap_or("-"),
                    micros = u64::try_from(outcome.elapsed.as_micros()).unwrap_or(u64::MAX),
                    "request {verdict}"
                )
            };
        }
        if outcome.denied == Some(Reason::KeysUnavailable.code())
            || outcome.denied == Some(Reason::StoreUnavailable.code())
        {
            log!(warn);
        } else {
            log!(info);
        }
        let (before_routing, unmatched) = (self.routes.len() - 1, self.routes.len() - 2);
        let slot = match outcome.route_index {
            Some(index) => index.min(unmatched),
            None if outcome.route == BEFORE_ROUTING => before_routing,
            None => unmatched,
        };
        match outcome.denied {
            None => {
                self.allowed_counter(slot).increment(1);
                self.tally.allowed();
            }
            Some(reason) => {
                self.count_denied(slot, reason, 1);
                self.tally.denied(reason);
            }
        }
        self.latency().record(outcome.elapsed.as_secs_f64());
    }
}
