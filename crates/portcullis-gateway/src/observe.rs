//! What the gateway tells about each decision: one log line (never the token), the Prometheus counters and
//! latency histogram, and the status page's tally. Every edge reports through the one [`Observer`].

use portcullis_web::Tally;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

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

/// Logs, metrics and the tally for one policy.
pub(crate) struct Observer {
    /// Allowed requests per route index; the last slot is for requests no route decided.
    allowed: Vec<OnceLock<metrics::Counter>>,
    denied: Mutex<HashMap<(usize, &'static str), metrics::Counter>>,
    latency: OnceLock<metrics::Histogram>,
    tally: Arc<Tally>,
}

impl Observer {
    /// For a policy of `routes` routes, counting into `tally` (shared across reloads).
    pub(crate) fn new(routes: usize, tally: Arc<Tally>) -> Self {
        Self {
            allowed: (0..=routes).map(|_| OnceLock::new()).collect(),
            denied: Mutex::new(HashMap::new()),
            latency: OnceLock::new(),
            tally,
        }
    }

    fn counter(route: &str, outcome: &'static str, reason: &'static str) -> metrics::Counter {
        metrics::counter!(
            "portcullis_gateway_requests_total",
            "route" => route.to_owned(), "outcome" => outcome, "reason" => reason
        )
    }

    /// Reports one decision.
    pub(crate) fn report(&self, outcome: &Outcome<'_>) {
        let verdict = if outcome.denied.is_some() { "denied" } else { "allowed" };
        tracing::info!(
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
        );
        let index = outcome.route_index.unwrap_or(self.allowed.len() - 1).min(self.allowed.len() - 1);
        match outcome.denied {
            None => {
                self.allowed[index].get_or_init(|| Self::counter(outcome.route, "allowed", "none")).increment(1);
                self.tally.allowed();
            }
            Some(reason) => {
                let mut denied = self.denied.lock().unwrap_or_else(PoisonError::into_inner);
                denied
                    .entry((index, reason))
                    .or_insert_with(|| Self::counter(outcome.route, "denied", reason))
                    .increment(1);
                self.tally.denied(reason);
            }
        }
        self.latency
            .get_or_init(|| metrics::histogram!("portcullis_gateway_decision_seconds"))
            .record(outcome.elapsed.as_secs_f64());
    }
}
