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
use portcullis::{Error, Reason};
use serde_json::json;
use std::fmt;
use std::sync::Arc;

/// The error behind a refusal, found in the response's extensions.
#[derive(Debug, Clone)]
pub struct Rejected(pub Error);

/// A custom answer for refusals: receives the error and the realm.
pub type Responder = Arc<dyn Fn(&Error, &str) -> Response + Send + Sync>;

/// How refusals are answered: the realm and the responder. The layer puts it into request extensions so that
/// per-route rules and extractors answer the same way.
#[derive(Clone)]
pub struct Answer {
    realm: Arc<str>,
    responder: Option<Responder>,
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer").field("realm", &self.realm).field("custom", &self.responder.is_some()).finish()
    }
}

impl Default for Answer {
    fn default() -> Self {
        Self { realm: Arc::from(DEFAULT_REALM), responder: None }
    }
}

/// The realm when none is configured.
pub const DEFAULT_REALM: &str = "api";

impl Answer {
    pub(crate) fn new(realm: Arc<str>, responder: Option<Responder>) -> Self {
        Self { realm, responder }
    }

    /// The default answer with this realm.
    pub fn with_realm(realm: &str) -> Self {
        Self { realm: Arc::from(if realm.is_empty() { DEFAULT_REALM } else { realm }), responder: None }
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
        let mut response = match &self.responder {
            Some(responder) => responder(&error, &self.realm),
            None => default_response(&error, &self.realm),
        };
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
    let status = StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let code = match error.reason().bearer_error() {
        Some(code) => code.as_str(),
        None if error.reason() == Reason::KeysUnavailable => "temporarily_unavailable",
        None => "unauthorized",
    };
    let body = json!({ "error": code, "reason": error.reason().code(), "message": error.description() });
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(challenge) = error.www_authenticate(realm).and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(WWW_AUTHENTICATE, challenge);
    }
    if let Some(seconds) = error.retry_after() {
        headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

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
