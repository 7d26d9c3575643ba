//! [`JwtLayer`]: configuration of the authentication middleware.

use crate::credentials::Sources;
use crate::rejection::{Answer, DEFAULT_REALM, Offer, Responder};
use crate::service::JwtService;
use axum::response::Response;
use portcullis::dpop::{DpopMode, DpopVerifier, Htu};
use portcullis::metadata::ResourceMetadata;
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
    pub dpop: Option<Dpop>,
    pub metadata: Option<Metadata>,
}

/// DPoP settings of a layer.
#[derive(Clone)]
pub(crate) struct Dpop {
    pub verifier: DpopVerifier,
    pub mode: DpopMode,
    /// The external base URL: the origin (and path prefix) of every `htu`.
    pub base: Htu,
}

/// The protected-resource metadata a layer serves.
#[derive(Clone)]
pub(crate) struct Metadata {
    pub document: ResourceMetadata,
    pub path: String,
    pub url: String,
}

impl Config {
    /// The challenges this configuration offers.
    fn offer(&self) -> Offer {
        Offer {
            no_bearer: self.dpop.as_ref().is_some_and(|dpop| !dpop.mode.accepts_bearer()),
            dpop_algs: self
                .dpop
                .as_ref()
                .filter(|dpop| dpop.mode.accepts_dpop())
                .map(|dpop| dpop.verifier.algorithms()),
            resource_metadata: self.metadata.as_ref().map(|metadata| metadata.url.clone()),
            nonces: self.dpop.as_ref().filter(|dpop| dpop.mode.accepts_dpop()).map(|dpop| dpop.verifier.clone()),
        }
    }

    /// The metadata document as served: what was configured, with the methods and DPoP facts filled in.
    pub(crate) fn metadata_json(&self) -> Option<String> {
        let metadata = self.metadata.as_ref()?;
        let mut document = metadata.document.clone();
        if document.bearer_methods_supported.is_empty() {
            document.bearer_methods_supported = vec!["header".to_owned()];
        }
        if let Some(dpop) = self.dpop.as_ref().filter(|dpop| dpop.mode.accepts_dpop()) {
            if document.dpop_signing_alg_values_supported.is_empty() {
                document.dpop_signing_alg_values_supported =
                    dpop.verifier.algorithms().iter().map(|alg| alg.name().to_owned()).collect();
            }
            document.dpop_bound_access_tokens_required |= dpop.mode == DpopMode::Required;
        }
        Some(document.to_json())
    }
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
            .field("dpop", &c.dpop.as_ref().map(|dpop| (dpop.mode, dpop.base.as_str())))
            .field("resource_metadata", &c.metadata.as_ref().map(|metadata| metadata.url.as_str()))
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
                dpop: None,
                metadata: None,
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
                    dpop: old.dpop.clone(),
                    metadata: old.metadata.clone(),
                };
                change(&mut config);
                self.config = Arc::new(config);
            }
        }
        self
    }

    /// Accepts DPoP-bound tokens (RFC 9449) per `mode`, with proofs checked by `verifier`. The `htu` of a request
    /// is `public_url` (the external base URL, e.g. `https://api.example.com`; its path, if any, is a prefix)
    /// joined with the path the client requested (inside `Router::nest`, the path with the nesting prefix) — never
    /// taken from the `Host` header. A token bound by `cnf.jkt` is refused
    /// when sent as `Bearer`, with or without this setting. Refusals carry a `DPoP` challenge with `algs` (and a
    /// `Bearer` one unless DPoP is required), and `DPoP-Nonce` when the verifier has nonces on.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use portcullis::dpop::{DpopMode, DpopVerifier};
    /// use portcullis::metadata::ResourceMetadata;
    /// use portcullis::{Algorithm, KeySet, Verifier};
    /// use portcullis_axum::JwtLayer;
    ///
    /// let keys = KeySet::from_jwks_json(br#"{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"EdDSA",
    ///     "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#).unwrap();
    /// let verifier = Verifier::builder()
    ///     .issuer("https://tenant.example.com/")
    ///     .audience("https://api.example.com")
    ///     .keys(keys)
    ///     .build()
    ///     .unwrap();
    /// let dpop = DpopVerifier::builder().algorithms([Algorithm::ES256, Algorithm::EdDSA]).build().unwrap();
    /// let metadata = ResourceMetadata {
    ///     authorization_servers: vec!["https://tenant.example.com/".into()],
    ///     ..ResourceMetadata::new("https://api.example.com")
    /// };
    /// let app: Router = Router::new()
    ///     .route("/api/orders", get(|| async { "orders" }))
    ///     .layer(
    ///         JwtLayer::new(verifier)
    ///             .dpop(dpop, DpopMode::Allowed, "https://api.example.com")
    ///             .resource_metadata(metadata),
    ///     );
    /// ```
    ///
    /// # Panics
    ///
    /// When `public_url` is not an absolute `http(s)` URL without userinfo: a configuration error, found at
    /// start-up. [`try_dpop`](Self::try_dpop) returns it instead.
    pub fn dpop(self, verifier: DpopVerifier, mode: DpopMode, public_url: &str) -> Self {
        match self.try_dpop(verifier, mode, public_url) {
            Ok(layer) => layer,
            Err(err) => panic!("JwtLayer::dpop: the public URL is not usable: {}", err.description()),
        }
    }

    /// [`dpop`](Self::dpop), with an unusable `public_url` returned as an error.
    pub fn try_dpop(self, verifier: DpopVerifier, mode: DpopMode, public_url: &str) -> Result<Self, Error> {
        let base = Htu::parse(public_url)?;
        Ok(self.edit(|c| {
            c.dpop = Some(Dpop { verifier, mode, base });
            c.answer = c.answer.clone().with_offer(c.offer());
        }))
    }

    /// Publishes RFC 9728 protected-resource metadata: the layer answers `GET` of
    /// [`well_known_path`](ResourceMetadata::well_known_path) itself, without a token, and every challenge carries
    /// `resource_metadata="<metadata_url>"`. Empty `bearer_methods_supported` becomes `["header"]`; with DPoP on,
    /// empty `dpop_signing_alg_values_supported` lists the verifier's algorithms and
    /// `dpop_bound_access_tokens_required` follows the mode.
    pub fn resource_metadata(self, metadata: ResourceMetadata) -> Self {
        self.edit(|c| {
            let (path, url) = (metadata.well_known_path(), metadata.metadata_url());
            c.metadata = Some(Metadata { document: metadata, path, url });
            c.answer = c.answer.clone().with_offer(c.offer());
        })
    }

    /// The `realm` of the `WWW-Authenticate` challenges (default `api`).
    pub fn realm(self, realm: &str) -> Self {
        let realm: Arc<str> = Arc::from(if realm.is_empty() { DEFAULT_REALM } else { realm });
        self.edit(|c| c.answer = Answer::new(realm, c.answer_responder()).with_offer(c.offer()))
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
        self.edit(|c| c.answer = Answer::new(Arc::from(c.answer.realm()), Some(responder)).with_offer(c.offer()))
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
