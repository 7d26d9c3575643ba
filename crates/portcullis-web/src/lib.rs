//! # portcullis-web
//!
//! portcullis in the browser, served by the server that holds the configuration:
//!
//! - a **token debugger** (`/debugger`): paste a token, see its decoded header and claims and every check this
//!   server would run on it — issuer, audience, key, signature, times with their differences in seconds, and a
//!   chosen route's rule — each with pass or fail and a hint for the common mistakes; for a DPoP-bound token, the
//!   key thumbprint it is bound to and, given a proof with its method and URL, every proof check;
//! - a **status page** (`/status`, and `/status.json` for scripts): the trusted issuers, their key sets (kid,
//!   algorithm, when fetched, next refresh, stale or not) and the requests decided so far by outcome and reason;
//! - the **demo single-page app** ([`spa`]): log in at an OpenID Connect issuer with the authorization code flow
//!   and PKCE, keep the access token in memory only, and call the API with it.
//!
//! The pages are rendered on the server and need no script (the single-page app aside). Every answer carries a
//! Content-Security-Policy that allows no origin but the page's own — a pasted token can only ever go back to the
//! server it came from — and `Cache-Control: no-store`.
//!
//! A server shows itself through [`Inspect`]; the gateway implements it for its admin listener, and
//! `portcullis demo` for the demo API.
//!
//! ```
//! use portcullis_web::{Inspect, IssuerView, RouteRule, Tally};
//! use portcullis::{Report, Verifier, VerifiedToken, Error};
//! use portcullis::clock::UnixTime;
//! use std::sync::Arc;
//!
//! struct Api { verifier: Verifier, tally: Tally }
//!
//! impl Inspect for Api {
//!     fn explain(&self, token: &str) -> Report { self.verifier.explain(token) }
//!     fn routes(&self) -> Vec<RouteRule> { vec![RouteRule::token("GET /api/private")] }
//!     fn check_route(&self, _route: usize, _token: &VerifiedToken) -> Result<(), Error> { Ok(()) }
//!     fn issuers(&self) -> Vec<IssuerView> { Vec::new() }
//!     fn tally(&self) -> &Tally { &self.tally }
//!     fn now(&self) -> UnixTime { self.verifier.now() }
//! }
//!
//! # fn verifier() -> Verifier {
//! #     let keys = portcullis::KeySet::from_keys([]);
//! #     Verifier::builder().issuer("https://issuer.example/").audience("https://api.example").keys(keys).build().unwrap()
//! # }
//! let pages: axum::Router = portcullis_web::pages(Arc::new(Api { verifier: verifier(), tally: Tally::default() }));
//! ```
#![forbid(unsafe_code)]

mod debugger;
mod html;
pub mod spa;
mod status;
mod tally;

pub use tally::{Count, Tally};

use axum::Router;
use axum::routing::get;
use portcullis::clock::UnixTime;
use portcullis::remote::{RemoteKeySet, Status};
use portcullis::{Error, KeySet, KeySource, Report, Requirement, VerifiedToken};
use std::sync::Arc;

/// What the pages show about one server. Implemented by the gateway and by `portcullis demo`.
pub trait Inspect: Send + Sync + 'static {
    /// Verifies `token` exactly as this server does and reports every check ([`portcullis::Verifier::explain`]).
    fn explain(&self, token: &str) -> Report;
    /// The routes a token can be checked against, in the order the server matches them.
    fn routes(&self) -> Vec<RouteRule>;
    /// Whether a verified token meets the rule of route `route` (an index into [`routes`](Self::routes)); the
    /// error is the one the server answers with.
    fn check_route(&self, route: usize, token: &VerifiedToken) -> Result<(), Error>;
    /// The issuers this server trusts, with their key sets.
    fn issuers(&self) -> Vec<IssuerView>;
    /// The requests decided so far.
    fn tally(&self) -> &Tally;
    /// Now, on the clock this server verifies tokens with ([`portcullis::Verifier::now`]): the debugger's
    /// "seconds from now" and the status page's times are measured from it, so they agree with the verdicts.
    fn now(&self) -> UnixTime;
    /// The path of a browser app this server also serves, linked from every page's navigation.
    fn app_path(&self) -> Option<&str> {
        None
    }
    /// The DPoP proof checker of this server, when it accepts DPoP-bound tokens: the debugger then checks a
    /// pasted proof with it, against the method and URL given with it (recording nothing).
    fn dpop(&self) -> Option<&portcullis::dpop::DpopVerifier> {
        None
    }
    /// Where this server keeps DPoP replay entries and revocations, when it says (the status page shows it).
    fn store(&self) -> Option<StoreView> {
        None
    }
}

/// The shared store as the status page shows it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StoreView {
    /// `memory` or `redis`.
    pub name: String,
    /// Whether the store is reachable now (always in memory).
    pub connected: bool,
    /// When the revocation set was last read whole from the store (Unix seconds), if ever.
    pub last_sync: Option<f64>,
    /// The last error, while not connected.
    pub last_error: Option<String>,
    /// Revocations in force on this server.
    pub revocations: usize,
    /// Whether the revocation set was read whole recently (always in memory); false while connected but stale.
    pub synchronized: bool,
}

impl StoreView {
    /// A store called `name`, connected or not, holding `revocations` entries.
    pub fn new(name: impl Into<String>, connected: bool, revocations: usize) -> Self {
        Self { name: name.into(), connected, last_sync: None, last_error: None, revocations, synchronized: connected }
    }

    /// Whether the revocation set is current (a connected store may still fail to read it).
    #[must_use]
    pub fn with_synchronized(mut self, synchronized: bool) -> Self {
        self.synchronized = synchronized;
        self
    }

    /// With the time of the last full read and the last error.
    #[must_use]
    pub fn with_sync(mut self, last_sync: Option<f64>, last_error: Option<String>) -> Self {
        self.last_sync = last_sync;
        self.last_error = last_error;
        self
    }
}

/// One route as the debugger offers it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RouteRule {
    /// How the route is shown, e.g. `GET /api/private-scoped`.
    pub label: String,
    /// What a request on it needs.
    pub access: Access,
}

/// What a request on a route needs.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Access {
    /// Nothing: the route is public.
    Public,
    /// A valid token.
    Token,
    /// A valid token that meets this rule (and any per-route issuer or audience restriction, described in text).
    Rule(String),
}

impl RouteRule {
    /// A route shown as `label` that needs `access`.
    pub fn new(label: impl Into<String>, access: Access) -> Self {
        Self { label: label.into(), access }
    }

    /// A public route.
    pub fn public(label: impl Into<String>) -> Self {
        Self { label: label.into(), access: Access::Public }
    }

    /// A route that needs any valid token.
    pub fn token(label: impl Into<String>) -> Self {
        Self { label: label.into(), access: Access::Token }
    }

    /// A route that needs a valid token meeting `rule`.
    pub fn requiring(label: impl Into<String>, rule: &Requirement) -> Self {
        Self { label: label.into(), access: Access::Rule(rule.to_string()) }
    }
}

/// A trusted issuer as the status page shows it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IssuerView {
    /// The issuer (`iss`).
    pub issuer: String,
    /// The audiences accepted for it.
    pub audiences: Vec<String>,
    /// Its key set.
    pub key_set: KeySetView,
}

impl IssuerView {
    /// An issuer with its accepted audiences and key set.
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>, key_set: KeySetView) -> Self {
        Self { issuer: issuer.into(), audiences, key_set }
    }
}

/// A key set as the status page shows it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct KeySetView {
    /// Where the keys come from: the JWKS URL (as configured or as discovery found it), or the issuer while
    /// discovery has not run yet.
    pub location: String,
    /// The keys in use, if any.
    pub keys: Option<Arc<KeySet>>,
    /// Fetch state of a remote set; `None` for fixed keys.
    pub status: Option<Status>,
}

impl KeySetView {
    /// The view of a remote key set: its keys and fetch state right now.
    pub fn remote(keys: &RemoteKeySet) -> Self {
        let location = keys.jwks_url().unwrap_or_else(|| keys.label().to_owned());
        Self { location, keys: keys.current(), status: Some(keys.status()) }
    }

    /// The view of a fixed key set.
    pub fn fixed(location: impl Into<String>, keys: Arc<KeySet>) -> Self {
        Self { location: location.into(), keys: Some(keys), status: None }
    }

    /// The view of a key set that is not there yet: no keys, no fetch state.
    pub fn pending(location: impl Into<String>) -> Self {
        Self { location: location.into(), keys: None, status: None }
    }
}

/// The pages of `inspect`'s server: `/debugger` (GET and POST), `/status`, `/status.json` and
/// `/portcullis.css`.
pub fn pages(inspect: Arc<dyn Inspect>) -> Router {
    Router::new()
        .route("/debugger", get(debugger::form).post(debugger::check))
        .route("/status", get(status::page))
        .route("/status.json", get(status::json))
        .route("/portcullis.css", get(html::stylesheet))
        .layer(axum::extract::DefaultBodyLimit::max(debugger::MAX_FORM_BYTES))
        .with_state(inspect)
}
