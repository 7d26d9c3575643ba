//! [`JwtLayer`]: configuration of the authentication middleware.

use crate::credentials::Sources;
use crate::rejection::{Answer, DEFAULT_REALM, Responder};
use crate::service::JwtService;
use axum::response::Response;
use portcullis::{Error, VerifiedToken, Verifier};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tower::Layer;

/// A revocation check: `true` means the token must be refused (`token_revoked`, 401).
pub type RevocationCheck = Arc<dyn Fn(VerifiedToken) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// Authenticates every request with a bearer token before the inner service runs.
///
/// On success the [`VerifiedToken`] is in the request extensions (extract it with [`Token`](crate::Token),
/// [`Claims`](crate::Claims) or `Extension<VerifiedToken>`). On failure the inner service is never called and the
/// request is answered per RFC 6750 (see [`default_response`](crate::default_response)).
///
/// ```
/// use axum::{Router, routing::get};
/// use portcullis::{KeySet, Verifier};
/// use portcullis_axum::{JwtLayer, Token};
///
/// let keys = KeySet::from_jwks_json(br#"{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"EdDSA",
///     "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#).unwrap();
/// let verifier = Verifier::builder()
///     .issuer("https://tenant.example.com/")
///     .audience("https://api.example.com")
///     .keys(keys)
///     .build()
///     .unwrap();
/// let app: Router = Router::new()
///     .route("/api/private", get(|Token(token): Token| async move { format!("hello {:?}", token.subject()) }))
///     .layer(JwtLayer::new(verifier).realm("example"));
/// ```
///
/// # Deployment caveats
///
/// - Cookie and query-parameter tokens are off by default: query strings end up in logs, and cookies need CSRF
///   protection. Turn them on only with those in hand.
/// - CORS preflights (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) are requests like any other: they
///   carry no token, so they are refused. Answer them with a CORS layer *outside* this one (e.g. tower-http's
///   `CorsLayer`, added after this layer so that it wraps it), which replies to preflights itself and never calls
///   the inner service. [`allow_preflight(true)`](Self::allow_preflight) hands them to the inner service
///   unauthenticated instead: any handler they reach (an `any()` route, a fallback) then runs for anyone.
#[derive(Clone)]
#[must_use]
pub struct JwtLayer {
    pub(crate) config: Arc<Config>,
}

pub(crate) struct Config {
    pub verifier: Verifier,
    pub answer: Answer,
    pub sources: Sources,
    pub optional: bool,
    pub allow_preflight: bool,
    pub revocation: Option<RevocationCheck>,
}

impl fmt::Debug for JwtLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        f.debug_struct("JwtLayer")
            .field("answer", &c.answer)
            .field("sources", &c.sources)
            .field("optional", &c.optional)
            .field("allow_preflight", &c.allow_preflight)
            .field("revocation", &c.revocation.is_some())
            .finish_non_exhaustive()
    }
}

impl JwtLayer {
    /// Authenticates with `verifier`: realm `api`, credentials required, header only, preflights authenticated.
    pub fn new(verifier: Verifier) -> Self {
        Self {
            config: Arc::new(Config {
                verifier,
                answer: Answer::default(),
                sources: Sources::default(),
                optional: false,
                allow_preflight: false,
                revocation: None,
            }),
        }
    }

    fn edit(mut self, change: impl FnOnce(&mut Config)) -> Self {
        match Arc::get_mut(&mut self.config) {
            Some(config) => change(config),
            None => {
                let old = &self.config;
                let mut config = Config {
                    verifier: old.verifier.clone(),
                    answer: old.answer.clone(),
                    sources: old.sources.clone(),
                    optional: old.optional,
                    allow_preflight: old.allow_preflight,
                    revocation: old.revocation.clone(),
                };
                change(&mut config);
                self.config = Arc::new(config);
            }
        }
        self
    }

    /// The `realm` of the `WWW-Authenticate` challenges (default `api`).
    pub fn realm(self, realm: &str) -> Self {
        let realm: Arc<str> = Arc::from(if realm.is_empty() { DEFAULT_REALM } else { realm });
        self.edit(|c| c.answer = Answer::new(realm, c.answer_responder()))
    }

    /// Lets requests without any credentials through (handlers see no token; use `Option<Token>`). Requests with
    /// an invalid token are still refused.
    pub fn credentials_optional(self, optional: bool) -> Self {
        self.edit(|c| c.optional = optional)
    }

    /// Whether CORS preflight requests (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) reach the inner
    /// service without credentials (default `false`: they need a token like any request). Prefer a CORS layer
    /// outside this one, which answers preflights itself; with `true`, every handler a preflight can reach (an
    /// `OPTIONS` route, `any()`, a fallback) runs unauthenticated and must not act on it.
    pub fn allow_preflight(self, allow: bool) -> Self {
        self.edit(|c| c.allow_preflight = allow)
    }

    /// Also accepts the token from this cookie.
    pub fn cookie(self, name: &str) -> Self {
        let name = name.to_owned();
        self.edit(|c| c.sources.cookie = Some(name))
    }

    /// Also accepts the token from this query parameter.
    pub fn query_parameter(self, name: &str) -> Self {
        let name = name.to_owned();
        self.edit(|c| c.sources.query = Some(name))
    }

    /// Asks `check` about every verified token; `true` refuses it as `token_revoked` (like express-jwt's
    /// `isRevoked`).
    pub fn revocation<F, Fut>(self, check: F) -> Self
    where
        F: Fn(VerifiedToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        let check: RevocationCheck = Arc::new(move |token| Box::pin(check(token)));
        self.edit(|c| c.revocation = Some(check))
    }

    /// Answers refusals with `responder` instead of the default JSON + `WWW-Authenticate` answer.
    pub fn responder<F>(self, responder: F) -> Self
    where
        F: Fn(&Error, &str) -> Response + Send + Sync + 'static,
    {
        let responder: Responder = Arc::new(responder);
        self.edit(|c| c.answer = Answer::new(Arc::from(c.answer.realm()), Some(responder)))
    }

    /// The verifier in use.
    pub fn verifier(&self) -> &Verifier {
        &self.config.verifier
    }
}

impl Config {
    fn answer_responder(&self) -> Option<Responder> {
        self.answer.responder()
    }
}

impl<S> Layer<S> for JwtLayer {
    type Service = JwtService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JwtService::new(inner, Arc::clone(&self.config))
    }
}
