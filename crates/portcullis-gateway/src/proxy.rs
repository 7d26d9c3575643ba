//! The reverse proxy: each request is made canonical, decided, and — when allowed — forwarded with exactly the
//! canonical path that was checked, the client's copies of managed and forwarding headers removed and the
//! gateway's own set. Only WebSocket upgrades are tunnelled.

use crate::decide::{Decision, Denial};
use crate::gateway::Gateway;
use crate::render::UpstreamFailure;
use crate::request::CanonicalRequest;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use http::header::{AUTHORIZATION, CONNECTION, CONTENT_LENGTH, COOKIE, HOST, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// An error and its causes, `outer: inner: …` (the client's own message alone says only "client error").
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Shared state of the proxy handler.
#[derive(Clone)]
pub(crate) struct ProxyState {
    pub gateway: Gateway,
}

/// Whether the client asks to switch to WebSocket (`Connection: upgrade` and exactly `Upgrade: websocket`). Any
/// other protocol (`h2c` among them) is declined: the request is served over HTTP/1.1 without the upgrade.
fn wants_websocket(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let mut upgrades = headers.get_all(UPGRADE).iter();
    let websocket = match (upgrades.next(), upgrades.next()) {
        (Some(value), None) => value.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket"),
        _ => false,
    };
    connection_upgrade && websocket
}

/// HTTP/2 clients may split `Cookie` into one field per cookie; HTTP/1.1 allows one field, so they are joined with
/// `; ` (RFC 9113 §8.2.3) before the request goes upstream.
fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(COOKIE).iter();
    let (Some(first), Some(_)) = (values.next(), values.next()) else { return };
    let mut joined = first.as_bytes().to_vec();
    for value in headers.get_all(COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(value.as_bytes());
    }
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, value);
    }
}

/// Whether the request asks for no upgrade, or only for WebSocket.
pub(crate) fn upgrade_is_websocket_or_none(headers: &HeaderMap) -> bool {
    headers.get_all(UPGRADE).iter().all(|value| value.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket"))
}

/// The host the client asked for: the target's authority (absolute-form, HTTP/2) or the single `Host` header;
/// refused when several are sent or they disagree.
fn requested_host(parts: &http::request::Parts) -> Result<Option<HeaderValue>, Denial> {
    let mut hosts = parts.headers.get_all(HOST).iter();
    let header = match (hosts.next(), hosts.next()) {
        (_, Some(_)) => return Err(Denial::Host("more than one Host header")),
        (header, None) => header.cloned(),
    };
    if let Some(header) = &header {
        let readable = header.to_str().ok().and_then(|text| text.parse::<http::uri::Authority>().ok());
        if readable.is_none_or(|authority| authority.as_str().contains('@')) {
            return Err(Denial::Host("the Host header is not a host name and port"));
        }
    }
    if parts.uri.authority().is_some_and(|authority| authority.as_str().contains('@')) {
        return Err(Denial::Host("the target's authority carries user information"));
    }
    match (parts.uri.authority(), header) {
        (Some(authority), Some(header)) if !authority.as_str().eq_ignore_ascii_case(header.to_str().unwrap_or("")) => {
            Err(Denial::Host("the Host header and the target name different hosts"))
        }
        (Some(authority), _) => Ok(HeaderValue::from_str(authority.as_str()).ok()),
        (None, header) => Ok(header),
    }
}

/// The most of a refused request's body that is read (and dropped) before the refusal is sent.
const REFUSED_BODY_LIMIT: usize = 64 * 1024;
/// How long reading it may take.
const REFUSED_BODY_TIME: Duration = Duration::from_secs(2);

/// `refusal`, sent once the refused request's body is read and dropped, so that the connection can stay open:
/// hyper closes a connection whose request body was left unread, and a client that already took the idle
/// connection for its next request (an MCP client fetches the metadata named in a 401 at once) loses that request.
/// A body over [`REFUSED_BODY_LIMIT`] or slower than [`REFUSED_BODY_TIME`] gets `Connection: close` instead, so the
/// client knows not to reuse the connection (RFC 9112 §9.6), and so does a client waiting for `100 Continue`: it is
/// not asked for a body that would be dropped. Every answer the gateway gives itself, without the upstream (the
/// metadata document, preflights, forward-auth answers), goes through here too.
pub(crate) async fn after_body(body: Body, headers: &HeaderMap, mut refusal: Response) -> Response {
    if axum::body::HttpBody::is_end_stream(&body) {
        return refusal;
    }
    // hyper sends `100 Continue` when the last `Expect` asks for it; any of them asking is enough to stay silent.
    let waiting = headers
        .get_all(http::header::EXPECT)
        .iter()
        .any(|value| value.as_bytes().trim_ascii().eq_ignore_ascii_case(b"100-continue"));
    let read = if waiting {
        None
    } else {
        tokio::time::timeout(REFUSED_BODY_TIME, axum::body::to_bytes(body, REFUSED_BODY_LIMIT)).await.ok()
    };
    if !matches!(read, Some(Ok(_))) {
        refusal.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
    refusal
}

pub(crate) async fn proxy(
    State(state): State<ProxyState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let mut request = request;
    let request_id = crate::request_id::ensure(request.headers_mut());
    let policy = state.gateway.policy();
    let (mut parts, body) = request.into_parts();
    let canonical = CanonicalRequest::from_parts(
        parts.method.clone(),
        parts.uri.path().as_bytes(),
        parts.uri.query().map(str::as_bytes),
    )
    .map_err(Denial::Target);
    let canonical = canonical.map(|mut canonical| {
        canonical.has_body = !axum::body::HttpBody::is_end_stream(&body);
        canonical
    });
    let host = requested_host(&parts);
    let (canonical, host) = match (canonical, host) {
        (Ok(canonical), Ok(host)) => (canonical, host),
        (Err(denial), _) | (_, Err(denial)) => {
            policy.report_refusal(parts.method.as_str(), &denial, &parts.headers);
            let offer = policy.offer(None, &parts.headers);
            let refusal = crate::render::refusal(&policy, &denial, None, offer);
            drop(policy);
            return with_request_id(after_body(body, &parts.headers, refusal).await, request_id);
        }
    };
    // The protected-resource metadata is the gateway's own document: answered before any route, never forwarded.
    if let Some(answer) = crate::metadata::answer(&policy, &canonical) {
        drop(policy);
        return with_request_id(after_body(body, &parts.headers, answer).await, request_id);
    }
    if let Some(front) = policy.forward_auth_endpoint(&canonical) {
        let answer = crate::forward_auth::answer(&policy, front, &parts.headers).await;
        drop(policy);
        return with_request_id(after_body(body, &parts.headers, answer).await, request_id);
    }
    let decision = policy.decide_and_report(&canonical, &parts.headers, true).await;
    let cors = policy.cors_headers(&canonical, &parts.headers);
    let allowed = match decision {
        Decision::Allow(allowed) => allowed,
        Decision::Deny(denial) => {
            let offer = policy.offer(Some(&canonical), &parts.headers);
            let refusal = with_cors(crate::render::refusal(&policy, &denial, None, offer), cors);
            drop(policy);
            return with_request_id(after_body(body, &parts.headers, refusal).await, request_id);
        }
        Decision::Preflight(answer) => {
            drop(policy);
            let answer = crate::render::preflight(answer);
            return with_request_id(after_body(body, &parts.headers, answer).await, request_id);
        }
    };
    let websocket = wants_websocket(&parts.headers);
    let client_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let forwarded_for = crate::headers::forwarded_for(&parts.headers, peer.ip(), &policy.trusted_proxies);
    let headers = &mut parts.headers;
    remove_hop_by_hop(headers);
    if websocket {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    }
    crate::headers::strip_client_copies(headers, &policy.managed);
    if !allowed.forward_authorization {
        headers.remove(AUTHORIZATION);
        if let Some(source) = &allowed.token_source {
            crate::token_source::remove(headers, source);
        }
    }
    for (name, value) in allowed.claim_headers {
        headers.insert(name, value);
    }
    headers.remove(HOST);
    join_cookies(headers);
    if let Some(chain) = forwarded_for {
        headers.insert(X_FORWARDED_FOR, chain);
    }
    let scheme = if policy.config.tls_cert.is_some() { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST, host);
    }
    let Some(upstream) = policy.upstream.clone() else {
        return with_request_id(crate::render::upstream_failure(UpstreamFailure::Unreachable), request_id);
    };
    parts.uri = match upstream.target(canonical.target()) {
        Some(uri) => uri,
        None => {
            drop(policy);
            let answer = crate::render::unforwardable_target();
            return with_request_id(after_body(body, &parts.headers, answer).await, request_id);
        }
    };
    // The upstream is spoken to over HTTP/1.1 whatever the client used (HTTP/2 included).
    parts.version = http::Version::HTTP_11;
    let timeout = Duration::from_secs(policy.config.upstream_timeout_secs);
    drop(policy);
    let upgrade = websocket.then(|| HeaderValue::from_static("websocket"));
    let response = match tokio::time::timeout(timeout, upstream.send(Request::from_parts(parts, body))).await {
        Err(_) => {
            let failure = UpstreamFailure::Timeout;
            tracing::warn!(target: "portcullis::gateway", request_id = ?request_id, reason = failure.reason(), "upstream timed out");
            crate::render::upstream_failure(failure)
        }
        Ok(Err(crate::upstream::UpstreamError::Exchange(error))) if error.is_user() => {
            // The client's body failed while it was forwarded: the client's fault, not the upstream's.
            let error = causes(&error);
            tracing::info!(target: "portcullis::gateway", request_id = ?request_id, reason = "body_invalid", %error, "request body unreadable");
            crate::render::request_body_invalid()
        }
        Ok(Err(error)) => {
            // The causes say why: refused, reset, or the upstream's certificate (untrusted, wrong name, expired).
            let error = causes(&error);
            let failure = UpstreamFailure::Unreachable;
            tracing::warn!(target: "portcullis::gateway", request_id = ?request_id, reason = failure.reason(), %error, "upstream unavailable");
            crate::render::upstream_failure(failure)
        }
        Ok(Ok(response)) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
            switch_protocols(response, upgrade, client_upgrade)
        }
        Ok(Ok(response))
            if response.headers().contains_key(TRANSFER_ENCODING)
                && response.headers().contains_key(CONTENT_LENGTH) =>
        {
            // RFC 9112 §6.3: such a message may be an attempt at smuggling; the connection is dropped with it.
            let failure = UpstreamFailure::AmbiguousFraming;
            tracing::warn!(target: "portcullis::gateway", request_id = ?request_id, reason = failure.reason(), "upstream response framed by both Transfer-Encoding and Content-Length");
            crate::render::upstream_failure(failure)
        }
        Ok(Ok(response)) => {
            let (mut parts, body) = response.into_parts();
            remove_hop_by_hop(&mut parts.headers);
            let upstream_cors = parts.headers.contains_key(http::header::ACCESS_CONTROL_ALLOW_ORIGIN);
            let response = Response::from_parts(parts, Body::new(body));
            if upstream_cors { response } else { with_cors(response, cors) }
        }
    };
    with_request_id(response, request_id)
}

/// `response` with the route's CORS headers for the request's origin (none when it has no CORS table or the
/// origin is not allowed there).
pub(crate) fn with_cors(mut response: Response, cors: Vec<(HeaderName, HeaderValue)>) -> Response {
    if !cors.is_empty() {
        response.headers_mut().append(http::header::VARY, HeaderValue::from_static("Origin"));
    }
    for (name, value) in cors {
        response.headers_mut().insert(name, value);
    }
    response
}

/// Completes a protocol switch (WebSocket) the client asked for and the upstream accepted: answers 101 and then
/// copies bytes both ways until either side closes.
fn switch_protocols(
    mut response: http::Response<crate::upstream::UpstreamBody>,
    requested: Option<HeaderValue>,
    client: Option<hyper::upgrade::OnUpgrade>,
) -> Response {
    let (Some(requested), Some(client)) = (requested, client) else {
        let failure = UpstreamFailure::UnaskedSwitch;
        tracing::warn!(target: "portcullis::gateway", reason = failure.reason(), "upstream switched protocols unasked");
        return crate::render::upstream_failure(failure);
    };
    let upstream = hyper::upgrade::on(&mut response);
    tokio::spawn(async move {
        match tokio::try_join!(client, upstream) {
            Ok((client, upstream)) => {
                let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
            Err(error) => tracing::debug!(target: "portcullis::gateway", %error, "protocol switch abandoned"),
        }
    });
    let (mut parts, _) = response.into_parts();
    let protocol = parts.headers.get(UPGRADE).cloned().unwrap_or(requested);
    remove_hop_by_hop(&mut parts.headers);
    parts.headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    parts.headers.insert(UPGRADE, protocol);
    Response::from_parts(parts, Body::empty())
}

/// The HTTP listener of a gateway without an upstream (decisions over gRPC ext_authz only): the protected-resource
/// metadata when configured, 404 for everything else.
pub(crate) async fn no_upstream(State(state): State<ProxyState>, request: Request) -> Response {
    let policy = state.gateway.policy();
    let (parts, body) = request.into_parts();
    let uri = &parts.uri;
    let canonical =
        CanonicalRequest::from_parts(parts.method.clone(), uri.path().as_bytes(), uri.query().map(str::as_bytes));
    let answer = match canonical.ok().and_then(|canonical| crate::metadata::answer(&policy, &canonical)) {
        Some(answer) => answer,
        None => crate::render::no_upstream(),
    };
    drop(policy);
    after_body(body, &parts.headers, answer).await
}

pub(crate) fn with_request_id(mut response: Response, id: HeaderValue) -> Response {
    response.headers_mut().insert(crate::request_id::HEADER_NAME, id);
    response
}
