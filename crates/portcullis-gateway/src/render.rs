//! Denials rendered for each edge: the reverse proxy (and Caddy and Traefik, which pass the answer on) get the
//! precise status; nginx `auth_request` turns anything but 401 and 403 into a 500, so towards nginx every
//! refusal is a 401 (credentials) or a 403 (everything else), logged and counted under its real reason.
//!
//! Nothing here logs: the observer has logged each refusal once, with its reason, before it is rendered.

use crate::config::FrontProxy;
use crate::decide::Denial;
use crate::gateway::Policy;
use axum::response::{IntoResponse, Response};
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use portcullis::{Error, Reason};

/// The answer to a refused request, for the reverse proxy or the named front proxy.
pub(crate) fn refusal(policy: &Policy, denial: &Denial, front: Option<FrontProxy>) -> Response {
    if front == Some(FrontProxy::Nginx) {
        return nginx_refusal(policy, denial);
    }
    match denial {
        Denial::Token(error) => token_refusal(policy, error),
        Denial::MethodNotAllowed(allow) => {
            let mut response = plain(denial.status(), denial);
            let listed = allow.iter().map(http::Method::as_str).collect::<Vec<_>>().join(", ");
            if let Ok(value) = HeaderValue::from_str(&listed) {
                response.headers_mut().insert(ALLOW, value);
            }
            response
        }
        other => plain(other.status(), other),
    }
}

fn nginx_refusal(policy: &Policy, denial: &Denial) -> Response {
    let Denial::Token(error) = denial else {
        return plain(StatusCode::FORBIDDEN, denial);
    };
    match error.http_status() {
        401 | 403 => token_refusal(policy, error),
        503 => {
            let said = Error::new(Reason::TokenMalformed, "keys unavailable: tokens cannot be verified right now");
            let mut response = token_refusal(policy, &said);
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
        }
        // Malformed credentials (400 invalid_request) become a 401 that keeps the invalid_request challenge.
        _ => {
            let mut response = token_refusal(policy, error);
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
        }
    }
}

/// The RFC 6750 answer to a token refusal, in the realm of `policy` (not logged again).
fn token_refusal(policy: &Policy, error: &Error) -> Response {
    portcullis_axum::default_response(error, policy.answer.realm())
}

/// A refusal that is not about credentials: the status, and a JSON body with the reason code.
fn plain(status: StatusCode, denial: &Denial) -> Response {
    let body = serde_json::json!({ "error": denial.reason(), "message": denial.description() });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
