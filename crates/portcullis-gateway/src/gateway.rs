//! The decision every request gets, shared by the reverse proxy and forward-auth: which route, which rule, and
//! which headers go upstream.

use crate::config::{Config, RouteConfig, Unmatched, path_matches};
use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use portcullis::remote::{KeyLocation, RemoteKeySet, RemoteOptions};
use portcullis::{Error, KeySource, Reason, SystemClock, VerifiedToken, Verifier};
use portcullis_axum::Answer;
use serde_json::Value;
use std::sync::Arc;

/// The gateway's state: verifier, routes, header mapping. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: Config,
    pub verifier: Verifier,
    pub answer: Answer,
    pub claim_headers: Vec<(String, HeaderName)>,
    pub key_sets: Vec<RemoteKeySet>,
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

impl Gateway {
    /// Builds the gateway: one remote key set per issuer (discovery unless a JWKS URL is given).
    pub fn new(config: Config) -> Result<Self, String> {
        config.check()?;
        let mut builder = Verifier::builder();
        let mut key_sets = Vec::new();
        for issuer in &config.issuers {
            let location = match &issuer.jwks_uri {
                Some(uri) => KeyLocation::Jwks(uri.clone()),
                None => KeyLocation::Discovery { issuer: issuer.issuer.clone() },
            };
            let keys = RemoteKeySet::new(location, RemoteOptions::default(), Arc::new(SystemClock))
                .map_err(|e| e.to_string())?;
            builder = builder.issuer_keys(&issuer.issuer, Arc::new(keys.clone()) as Arc<dyn KeySource>);
            for audience in &issuer.audiences {
                builder = builder.audience(audience);
            }
            key_sets.push(keys);
        }
        let verifier = builder.build().map_err(|e| e.to_string())?;
        let claim_headers = config
            .claim_headers
            .iter()
            .map(|(claim, header)| {
                HeaderName::from_bytes(header.as_bytes()).map(|h| (claim.clone(), h)).map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        let answer = Answer::with_realm(&config.realm);
        Ok(Self { inner: Arc::new(Inner { config, verifier, answer, claim_headers, key_sets }) })
    }

    /// Starts loading and refreshing every issuer's keys in the background.
    pub fn start_key_refresh(&self) {
        for keys in &self.inner.key_sets {
            keys.spawn_refresher();
        }
    }

    /// Whether every issuer has usable keys.
    pub fn is_ready(&self) -> bool {
        self.inner.verifier.is_ready()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    fn route(&self, method: &Method, path: &str) -> Option<&RouteConfig> {
        self.inner.config.routes.iter().find(|route| {
            path_matches(&route.path, path)
                && (route.methods.is_empty() || route.methods.iter().any(|m| m.eq_ignore_ascii_case(method.as_str())))
        })
    }

    fn deny(&self, error: Error) -> Decision {
        Decision::Deny(Box::new(self.inner.answer.respond(error)))
    }

    /// Decides about a request for `path` with `method`, carrying `headers`; counts the outcome by route and
    /// reason (`portcullis_gateway_requests_total`) and times it (`portcullis_gateway_decision_seconds`).
    pub async fn decide(&self, method: &Method, path: &str, headers: &HeaderMap) -> Decision {
        let started = std::time::Instant::now();
        let route = self.route(method, path);
        let (decision, reason) = self.decide_inner(route, headers).await;
        let route = route.map_or("unmatched", |r| r.path.as_str()).to_owned();
        let outcome = if matches!(decision, Decision::Allow { .. }) { "allowed" } else { "denied" };
        metrics::counter!("portcullis_gateway_requests_total", "route" => route, "outcome" => outcome, "reason" => reason)
            .increment(1);
        metrics::histogram!("portcullis_gateway_decision_seconds").record(started.elapsed().as_secs_f64());
        decision
    }

    async fn decide_inner(&self, route: Option<&RouteConfig>, headers: &HeaderMap) -> (Decision, &'static str) {
        let decision = self.decide_route(route, headers).await;
        let reason = match &decision {
            Decision::Allow { .. } => "none",
            Decision::Deny(response) => response
                .extensions()
                .get::<portcullis_axum::Rejected>()
                .map_or("no_route", |rejected| rejected.0.reason().code()),
        };
        (decision, reason)
    }

    async fn decide_route(&self, route: Option<&RouteConfig>, headers: &HeaderMap) -> Decision {
        let (public, rule, forward_authorization) = match route {
            Some(route) => (route.public, route.require.as_ref(), route.forward_authorization),
            None if self.inner.config.unmatched == Unmatched::Authenticated => (false, None, false),
            None => {
                let not_found =
                    axum::response::IntoResponse::into_response((http::StatusCode::NOT_FOUND, "no such route"));
                return Decision::Deny(Box::new(not_found));
            }
        };
        if public {
            return Decision::Allow { claim_headers: Vec::new(), forward_authorization };
        }
        let token = match bearer(headers) {
            Ok(token) => token,
            Err(error) => return self.deny(error),
        };
        let verified = match self.inner.verifier.verify_async(token).await {
            Ok(verified) => verified,
            Err(error) => return self.deny(error),
        };
        if let Some(rule) = rule {
            if let Err(error) = rule.check(&verified) {
                return self.deny(error);
            }
        }
        Decision::Allow { claim_headers: self.claim_headers(&verified), forward_authorization }
    }

    /// Headers from the token's claims, per the mapping.
    fn claim_headers(&self, token: &VerifiedToken) -> Vec<(HeaderName, HeaderValue)> {
        self.inner
            .claim_headers
            .iter()
            .filter_map(|(claim, header)| {
                let value = portcullis::claims::lookup(token.claims(), claim)?;
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Array(items) => items
                        .iter()
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                        .collect::<Vec<_>>()
                        .join(" "),
                    Value::Null => return None,
                    other => other.to_string(),
                };
                HeaderValue::from_str(&text).ok().map(|v| (header.clone(), v))
            })
            .collect()
    }

    /// The header names the gateway sets; client-sent copies are always removed.
    pub fn managed_headers(&self) -> impl Iterator<Item = &HeaderName> {
        self.inner.claim_headers.iter().map(|(_, header)| header)
    }
}

/// The single bearer token of a request (header only: a gateway never reads tokens from URLs or cookies).
fn bearer(headers: &HeaderMap) -> Result<&str, Error> {
    portcullis_axum::authorization_bearer(headers)?
        .ok_or_else(|| Error::new(Reason::TokenMissing, "the request has no bearer token"))
}
