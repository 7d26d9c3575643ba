//! Every refusal, answered in one place.
//!
//! The default answer follows RFC 6750: the status of the error's [`Reason`](portcullis::Reason), a
//! `WWW-Authenticate: Bearer` challenge (none on 503, which carries `Retry-After` instead), `Cache-Control: no-store`,
//! and a JSON body `{"error":"invalid_token","reason":"audience_mismatch","message":"…"}`. The error itself is kept
//! in the response extensions as [`Rejected`] for outer layers (logging, metrics). Every refusal is logged at the
//! `portcullis::rejection` tracing target, with its reason code and never the token.

use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use portcullis::dpop::DpopVerifier;
use portcullis::{AlgorithmSet, Challenges, Error, Reason, Scheme};
use serde_json::json;
use std::fmt;
use std::sync::Arc;

/// The error behind a refusal, found in the response's extensions.
#[derive(Debug, Clone)]
pub struct Rejected(pub Error);

/// A custom answer for refusals: receives the error and the realm.
pub type Responder = Arc<dyn Fn(&Error, &str) -> Response + Send + Sync>;

/// How refusals are answered: the realm, the challenges offered and the responder. The layer puts it into request
/// extensions (with the scheme the request used) so that per-route rules and extractors answer the same way.
#[derive(Clone)]
pub struct Answer {
    realm: Arc<str>,
    responder: Option<Responder>,
    offer: Arc<Offer>,
    scheme_used: Option<Scheme>,
}

/// The challenges a layer offers: which schemes, the metadata URL, and the nonce source.
#[derive(Clone, Default)]
pub(crate) struct Offer {
    /// `Bearer` is accepted (always, unless DPoP is required).
    pub no_bearer: bool,
    /// `DPoP` is accepted, with these algorithms.
    pub dpop_algs: Option<AlgorithmSet>,
    /// The RFC 9728 metadata URL for `resource_metadata`.
    pub resource_metadata: Option<String>,
    /// Where `DPoP-Nonce` values come from, when nonces are on.
    pub nonces: Option<DpopVerifier>,
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer")
            .field("realm", &self.realm)
            .field("custom", &self.responder.is_some())
            .field("bearer", &!self.offer.no_bearer)
            .field("dpop_algs", &self.offer.dpop_algs)
            .field("resource_metadata", &self.offer.resource_metadata)
            .field("scheme_used", &self.scheme_used)
            .finish()
    }
}

impl Default for Answer {
    fn default() -> Self {
        Self { realm: Arc::from(DEFAULT_REALM), responder: None, offer: Arc::default(), scheme_used: None }
    }
}

/// The realm when none is configured.
pub const DEFAULT_REALM: &str = "api";

impl Answer {
    pub(crate) fn new(realm: Arc<str>, responder: Option<Responder>) -> Self {
        Self { realm, responder, offer: Arc::default(), scheme_used: None }
    }

    pub(crate) fn with_offer(mut self, offer: Offer) -> Self {
        self.offer = Arc::new(offer);
        self
    }

    pub(crate) fn set_scheme_used(&mut self, scheme: Scheme) {
        self.scheme_used = Some(scheme);
    }

    /// The default answer with this realm.
    pub fn with_realm(realm: &str) -> Self {
        Self::new(Arc::from(if realm.is_empty() { DEFAULT_REALM } else { realm }), None)
    }

    /// The challenge parameters of this answer (see [`Error::challenges`]).
    pub fn challenges(&self) -> Challenges<'_> {
        Challenges {
            realm: &self.realm,
            bearer: !self.offer.no_bearer,
            dpop_algs: self.offer.dpop_algs,
            resource_metadata: self.offer.resource_metadata.as_deref(),
            scheme_used: self.scheme_used,
        }
    }

    /// The scheme of the request's credentials, once the layer read them.
    pub fn scheme_used(&self) -> Option<Scheme> {
        self.scheme_used
    }

    pub(crate) fn responder(&self) -> Option<Responder> {
        self.responder.clone()
    }

    /// The realm of the challenges.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Answers a refusal.
    pub fn respond(&self, error: Error) -> Response {
        tracing::info!(
            target: "portcullis::rejection",
            reason = error.reason().code(),
            status = error.http_status(),
            description = error.description(),
            "request refused"
        );
        let nonce = match &self.offer.nonces {
            Some(dpop) if error.http_status() == 401 => dpop.nonce(),
            _ => None,
        };
        let mut response = match &self.responder {
            Some(responder) => responder(&error, &self.realm),
            None => challenge_response(&error, &self.challenges(), None),
        };
        if let Some(nonce) = nonce.and_then(|nonce| HeaderValue::from_str(&nonce).ok()) {
            response.headers_mut().insert(DPOP_NONCE.clone(), nonce);
        }
        response.extensions_mut().insert(Rejected(error));
        response
    }
}

/// The RFC 6750 answer for `error`.
///
/// ```
/// use portcullis::{Error, Reason};
/// let response = portcullis_axum::default_response(&Error::new(Reason::TokenExpired, "token expired 5m ago"), "api");
/// assert_eq!(response.status(), 401);
/// assert_eq!(
///     response.headers()["www-authenticate"],
///     r#"Bearer realm="api", error="invalid_token", error_description="token expired 5m ago""#
/// );
/// ```
pub fn default_response(error: &Error, realm: &str) -> Response {
    let mut response = body_response(error);
    if let Some(challenge) = error.www_authenticate(realm).and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(WWW_AUTHENTICATE, challenge);
    }
    response
}

/// The answer for `error` with the challenges `params` describes: the status of its reason, one
/// `WWW-Authenticate` header line per challenge ([`Error::challenges`]), `DPoP-Nonce` when a nonce is given,
/// `Cache-Control: no-store` and the JSON body.
///
/// ```
/// use portcullis::{Algorithm, Challenges, Error, Reason, Scheme};
/// let error = Error::new(Reason::DpopNonceRequired, "DPoP proof has no nonce");
/// let params = Challenges {
///     realm: "api",
///     bearer: true,
///     dpop_algs: Some([Algorithm::ES256].into_iter().collect()),
///     resource_metadata: None,
///     scheme_used: Some(Scheme::Dpop),
/// };
/// let response = portcullis_axum::challenge_response(&error, &params, Some("n-1"));
/// assert_eq!(response.status(), 401);
/// let challenges: Vec<_> = response.headers().get_all("www-authenticate").iter().collect();
/// assert_eq!(challenges.len(), 2);
/// assert_eq!(
///     challenges[1],
///     r#"DPoP realm="api", error="use_dpop_nonce", error_description="DPoP proof has no nonce", algs="ES256""#
/// );
/// assert_eq!(response.headers()["dpop-nonce"], "n-1");
/// ```
pub fn challenge_response(error: &Error, params: &Challenges<'_>, dpop_nonce: Option<&str>) -> Response {
    let mut response = body_response(error);
    let headers = response.headers_mut();
    for challenge in error.challenges(params) {
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            headers.append(WWW_AUTHENTICATE, value);
        }
    }
    if let Some(nonce) = dpop_nonce.and_then(|nonce| HeaderValue::from_str(nonce).ok()) {
        headers.insert(DPOP_NONCE.clone(), nonce);
    }
    response
}

/// The status, JSON body and headers every refusal has, without challenges.
fn body_response(error: &Error) -> Response {
    let status = StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let code = match error.reason().bearer_error() {
        Some(code) => code.as_str(),
        None if matches!(error.reason(), Reason::KeysUnavailable | Reason::StoreUnavailable) => {
            "temporarily_unavailable"
        }
        None => "unauthorized",
    };
    let body = json!({ "error": code, "reason": error.reason().code(), "message": error.description() });
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(seconds) = error.retry_after() {
        headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The `DPoP-Nonce` response header (RFC 9449 §8.1).
pub(crate) static DPOP_NONCE: http::HeaderName = http::HeaderName::from_static("dpop-nonce");

/// The rejection of the [`Token`](crate::Token) and [`Claims`](crate::Claims) extractors.
#[derive(Debug)]
pub struct AuthRejection {
    pub(crate) error: Error,
    pub(crate) answer: Answer,
    /// The extractor ran without the layer: a server bug, answered 500.
    pub(crate) misconfigured: bool,
}

impl AuthRejection {
    /// The error.
    pub fn error(&self) -> &Error {
        &self.error
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        if self.misconfigured {
            return (StatusCode::INTERNAL_SERVER_ERROR, "authentication is not configured for this route")
                .into_response();
        }
        self.answer.respond(self.error)
    }
}
