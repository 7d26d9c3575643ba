//! The gateway as the token debugger and the status page see it.

use crate::config::{IssuerConfig, RouteConfig};
use crate::gateway::{Gateway, route_accepts};
use portcullis::clock::{Clock, UnixTime};
use portcullis::remote::KeyLocation;
use portcullis::{Error, Report, VerifiedToken};
use portcullis_web::{Access, Inspect, IssuerView, KeySetView, RouteRule, Tally};
use std::sync::Arc;

/// The routes a decision can be about (forward-auth endpoints decide about other requests), with their indices.
fn decided_routes(routes: &[RouteConfig]) -> impl Iterator<Item = &RouteConfig> {
    routes.iter().filter(|route| route.forward_auth.is_none())
}

fn label(route: &RouteConfig) -> String {
    let methods = if route.methods.is_empty() { "ANY".to_owned() } else { route.methods.join(",") };
    format!("{methods} {}", route.path)
}

fn access(route: &RouteConfig) -> Access {
    if route.public {
        return Access::Public;
    }
    let mut needs = Vec::new();
    if !route.issuers.is_empty() {
        needs.push(format!("issuer one of {}", route.issuers.join(", ")));
    }
    if !route.audiences.is_empty() {
        needs.push(format!("audience one of {}", route.audiences.join(", ")));
    }
    if let Some(rule) = &route.require {
        needs.push(rule.to_string());
    }
    if route.auth == crate::config::AuthMode::Optional {
        needs.push("a token only when one is sent".to_owned());
    }
    if let Some(typ) = &route.typ {
        needs.push(format!("typ {typ}"));
    }
    if let Some(secs) = route.max_token_age_secs {
        needs.push(format!("issued at most {secs} s ago"));
    }
    if needs.is_empty() { Access::Token } else { Access::Rule(needs.join("; ")) }
}

fn location(issuer: &IssuerConfig) -> KeyLocation {
    match &issuer.jwks_uri {
        Some(uri) => KeyLocation::Jwks(uri.clone()),
        None => KeyLocation::Discovery { issuer: issuer.issuer.clone() },
    }
}

impl Inspect for Gateway {
    fn explain(&self, token: &str) -> Report {
        self.policy().verifier.explain(token)
    }

    fn routes(&self) -> Vec<RouteRule> {
        let config = self.config();
        decided_routes(&config.routes).map(|route| RouteRule::new(label(route), access(route))).collect()
    }

    fn check_route(&self, route: usize, token: &VerifiedToken) -> Result<(), Error> {
        let config = self.config();
        match decided_routes(&config.routes).nth(route) {
            Some(route) => route_accepts(route, token, &self.policy().verifier),
            None => Ok(()),
        }
    }

    fn issuers(&self) -> Vec<IssuerView> {
        let policy = self.policy();
        policy
            .config
            .issuers
            .iter()
            .map(|issuer| {
                let location = location(issuer);
                let local = policy.local_keys.iter().find(|(known, _)| *known == issuer.issuer);
                let key_set = match (local, self.key_set(&location)) {
                    (Some((_, local)), _) => KeySetView::fixed(local.uri.clone(), Arc::clone(&local.keys)),
                    (None, Some(keys)) => KeySetView::remote(&keys),
                    (None, None) => KeySetView::pending(format!("{location:?}")),
                };
                IssuerView::new(issuer.issuer.clone(), issuer.audiences.clone(), key_set)
            })
            .collect()
    }

    fn tally(&self) -> &Tally {
        Gateway::tally(self)
    }

    fn now(&self) -> UnixTime {
        self.clock().now()
    }

    fn store(&self) -> Option<portcullis_web::StoreView> {
        let state = self.shared_state();
        let status = state.status();
        let last_sync = status.last_sync.map(|at| UnixTime::from_system_time(at).as_secs_f64());
        Some(
            portcullis_web::StoreView::new(status.name, status.connected, state.revocations().len())
                .with_sync(last_sync, status.last_error)
                .with_synchronized(status.synchronized),
        )
    }
}
