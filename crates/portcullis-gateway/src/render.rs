//! Denials rendered for each edge: the reverse proxy (and Caddy and Traefik, which pass the answer on) get the
//! precise status; nginx `auth_request` turns anything but 401 and 403 into a 500, so towards nginx every
//! refusal is a 401 (credentials) or a 403 (everything else), logged and counted under its real reason.
//!
//! Every answer the gateway makes up itself has the body shape of the credential refusals
//! (`{"error","reason","message"}`, `application/json`, `no-store`): `error` is the class (the OAuth error code
//! for credentials, else the status's name such as `not_found` or `bad_gateway`), `reason` the stable code, and
//! `message` words that never echo the request or name an internal address.
//!
//! Nothing here logs: the observer has logged each refusal once, with its reason, before it is rendered.

use crate::config::FrontProxy;
use crate::decide::Denial;
use crate::gateway::Policy;
use crate::sender::Offer;
use axum::response::{IntoResponse, Response};
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use portcullis::error::Challenges;
use portcullis::{Error, Reason};

/// The answer to a refused request, for the reverse proxy or the named front proxy; a credential refusal
/// challenges with what `offer` says the route accepts.
pub(crate) fn refusal(policy: &Policy, denial: &Denial, front: Option<FrontProxy>, offer: Offer) -> Response {
    if front == Some(FrontProxy::Nginx) {
        return nginx_refusal(policy, denial, offer);
    }
    match denial {
        Denial::Token(error) => token_refusal(policy, error, offer),
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

/// The refusal as nginx's `auth_request` can pass it on: only 401 and 403, and every challenge on one
/// `WWW-Authenticate` line (RFC 9110 §11.6.1 allows a list), since nginx before 1.23 passes the first line alone.
fn nginx_refusal(policy: &Policy, denial: &Denial, offer: Offer) -> Response {
    let Denial::Token(error) = denial else {
        return plain(StatusCode::FORBIDDEN, denial);
    };
    let mut response = nginx_token_refusal(policy, error, offer);
    let headers = response.headers_mut();
    let lines: Vec<&str> = headers.get_all(WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok()).collect();
    if lines.len() > 1
        && let Ok(joined) = HeaderValue::from_str(&lines.join(", "))
    {
        headers.insert(WWW_AUTHENTICATE, joined);
    }
    response
}

fn nginx_token_refusal(policy: &Policy, error: &Error, offer: Offer) -> Response {
    match error.http_status() {
        401 | 403 => token_refusal(policy, error, offer),
        503 if error.reason() == Reason::StoreUnavailable => {
            let said = Error::new(
                Reason::TokenMalformed,
                "store unavailable: the DPoP proof cannot be checked against replays right now",
            );
            let mut response = token_refusal(policy, &said, offer);
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
        }
        503 => {
            let said = Error::new(Reason::TokenMalformed, "keys unavailable: tokens cannot be verified right now");
            let mut response = token_refusal(policy, &said, offer);
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
        }
        // Malformed credentials (400 invalid_request) become a 401 that keeps the invalid_request challenge.
        _ => {
            let mut response = token_refusal(policy, error, offer);
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
        }
    }
}

/// The gateway's own answer to a CORS preflight it allows: 204 with the CORS headers, never cached elsewhere for
/// another origin (`Vary`).
pub(crate) fn preflight(answer: crate::decide::PreflightAnswer) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    for (name, value) in answer.headers {
        response.headers_mut().insert(name, value);
    }
    response
}

/// A rendered answer as its parts — status, headers and body text — for an edge that does not send it as an HTTP
/// response itself (the gRPC ext_authz service puts them in a `DeniedHttpResponse`). Every answer rendered here
/// is a complete, small body; one that cannot be read (never the case) is sent empty.
pub(crate) async fn into_parts(response: Response) -> (StatusCode, http::HeaderMap, String) {
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    (parts.status, parts.headers, String::from_utf8_lossy(&body).into_owned())
}

/// The RFC 6750 answer to a token refusal, in the realm of `policy` (not logged again): each scheme the route
/// accepts gets its own `WWW-Authenticate` line (RFC 9449 §7.1), carrying `resource_metadata` when configured
/// (RFC 9728 §5.1), and a 401 carries a fresh `DPoP-Nonce` when nonces are on.
fn token_refusal(policy: &Policy, error: &Error, offer: Offer) -> Response {
    let realm = policy.answer.realm();
    let mut response = portcullis_axum::default_response(error, realm);
    let sender = &policy.sender;
    let params = Challenges {
        realm,
        bearer: offer.bearer,
        dpop_algs: if offer.dpop { sender.algorithms() } else { None },
        resource_metadata: sender.metadata_url.as_deref(),
        scheme_used: offer.scheme_used,
    };
    let headers = response.headers_mut();
    headers.remove(WWW_AUTHENTICATE);
    for challenge in error.challenges(&params) {
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            headers.append(WWW_AUTHENTICATE, value);
        }
    }
    if error.http_status() == 401
        && offer.dpop
        && let Some(nonce) = sender.nonce().and_then(|nonce| HeaderValue::from_str(&nonce).ok())
    {
        headers.insert(DPOP_NONCE, nonce);
    }
    response
}

/// The header carrying the server's DPoP nonce (RFC 9449 §8).
const DPOP_NONCE: &str = "dpop-nonce";

/// A refusal that is not about credentials: the status, and the JSON body with the reason code.
fn plain(status: StatusCode, denial: &Denial) -> Response {
    json_answer(status, denial.reason(), &denial.description())
}

/// Why the reverse proxy has no answer from the upstream to pass on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpstreamFailure {
    /// No connection, or the connection failed before a response head arrived.
    Unreachable,
    /// No response head within `upstream_timeout_secs`.
    Timeout,
    /// The upstream switched protocols although the client did not ask for WebSocket.
    UnaskedSwitch,
    /// The upstream's response framed its body two ways (`Transfer-Encoding` and `Content-Length`): a reader
    /// after the gateway could split it differently, so it is not passed on.
    AmbiguousFraming,
}

impl UpstreamFailure {
    /// The stable reason code (logs and response bodies).
    pub(crate) fn reason(self) -> &'static str {
        match self {
            UpstreamFailure::Unreachable => "upstream_unreachable",
            UpstreamFailure::Timeout => "upstream_timeout",
            UpstreamFailure::UnaskedSwitch => "upstream_protocol_switch",
            UpstreamFailure::AmbiguousFraming => "upstream_response_invalid",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            UpstreamFailure::Timeout => StatusCode::GATEWAY_TIMEOUT,
            UpstreamFailure::Unreachable | UpstreamFailure::UnaskedSwitch | UpstreamFailure::AmbiguousFraming => {
                StatusCode::BAD_GATEWAY
            }
        }
    }

    /// Words for the client: never the upstream's address nor the connection error.
    fn message(self) -> &'static str {
        match self {
            UpstreamFailure::Unreachable => "upstream unavailable",
            UpstreamFailure::Timeout => "upstream timed out",
            UpstreamFailure::UnaskedSwitch => "upstream answered with a protocol switch nobody asked for",
            UpstreamFailure::AmbiguousFraming => "upstream answered with a response framed two ways",
        }
    }
}

/// The answer when the upstream gave none (502 or 504), logged with its reason and the request id.
pub(crate) fn upstream_failure(failure: UpstreamFailure) -> Response {
    json_answer(failure.status(), failure.reason(), failure.message())
}

/// The answer when the client's request body broke off or was malformed (bad chunk framing) while it was being
/// forwarded: 400, and the connection is closed (the rest of the body cannot be found).
pub(crate) fn request_body_invalid() -> Response {
    let mut answer = json_answer(StatusCode::BAD_REQUEST, "body_invalid", "the request body could not be read");
    answer.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    answer
}

/// The HTTP listener's answer when the gateway has no upstream (it decides over gRPC ext_authz only): 404.
pub(crate) fn no_upstream() -> Response {
    json_answer(StatusCode::NOT_FOUND, "no_upstream", "this gateway only decides for Envoy over gRPC ext_authz")
}

/// The answer when the checked target cannot be written as the upstream request's target.
pub(crate) fn unforwardable_target() -> Response {
    json_answer(StatusCode::BAD_REQUEST, "target_invalid", "the request path cannot be forwarded")
}

/// The one body shape of the gateway's own answers: `{"error": class, "reason": code, "message": words}`.
fn json_answer(status: StatusCode, reason: &'static str, message: &str) -> Response {
    let body = serde_json::json!({ "error": class(status), "reason": reason, "message": message });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The class of an answer that is not about credentials: the status's name in snake case (`not_found`,
/// `method_not_allowed`, `bad_gateway`, `gateway_timeout`).
fn class(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("error").to_ascii_lowercase().replace([' ', '-'], "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_the_status_names() {
        let classes: Vec<String> = [400, 403, 404, 405, 502, 504]
            .into_iter()
            .map(|code| class(StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT)))
            .collect();
        let expected =
            ["bad_request", "forbidden", "not_found", "method_not_allowed", "bad_gateway", "gateway_timeout"];
        assert_eq!(classes, expected);
    }
}
