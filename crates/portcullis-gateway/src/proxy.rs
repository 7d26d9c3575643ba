//! Reverse proxy and forward-auth handlers.

use crate::gateway::{Decision, Gateway, Policy};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::header::{AUTHORIZATION, CONNECTION, HOST, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;

/// The upstream HTTP client.
pub(crate) type UpstreamClient = Client<HttpConnector, Body>;

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
    pub client: UpstreamClient,
}

/// The protocol a request asks to switch to (`Connection: upgrade` plus `Upgrade`), e.g. `websocket`.
fn requested_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if asks { headers.get(UPGRADE).cloned() } else { None }
}

pub(crate) async fn proxy(
    State(state): State<ProxyState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let mut request = request;
    let request_id = crate::request_id::ensure(request.headers_mut());
    let policy = state.gateway.policy();
    if policy.is_forward_auth_endpoint(request.method(), request.uri().path()) {
        let (method, path) = original(&request);
        return with_request_id(answer_forward_auth(&policy, &method, &path, request.headers()).await, request_id);
    }
    let (mut parts, body) = request.into_parts();
    let (claim_headers, forward_authorization) =
        match policy.decide(&parts.method, parts.uri.path(), &parts.headers).await {
            Decision::Allow { claim_headers, forward_authorization } => (claim_headers, forward_authorization),
            Decision::Deny(response) => return with_request_id(*response, request_id),
        };
    let upgrade = requested_upgrade(&parts.headers);
    let client_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let headers = &mut parts.headers;
    remove_hop_by_hop(headers);
    if let Some(protocol) = &upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, protocol.clone());
    }
    for name in policy.managed_headers() {
        headers.remove(name);
    }
    if !forward_authorization {
        headers.remove(AUTHORIZATION);
    }
    for (name, value) in claim_headers {
        headers.insert(name, value);
    }
    let original_host = headers.remove(HOST);
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", value);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    if let Some(host) = original_host {
        headers.insert("x-forwarded-host", host);
    }
    let upstream = policy.config.upstream.as_deref().unwrap_or_default().trim_end_matches('/');
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    parts.uri = match format!("{upstream}{path}").parse::<Uri>() {
        Ok(uri) => uri,
        Err(_) => return (StatusCode::BAD_REQUEST, "the request path cannot be forwarded").into_response(),
    };
    let timeout = Duration::from_secs(policy.config.upstream_timeout_secs);
    drop(policy);
    let response = match tokio::time::timeout(timeout, state.client.request(Request::from_parts(parts, body))).await {
        Err(_) => {
            tracing::warn!(target: "portcullis::gateway", request_id = ?request_id, "upstream timed out");
            (StatusCode::GATEWAY_TIMEOUT, "upstream timed out").into_response()
        }
        Ok(Err(error)) => {
            tracing::warn!(target: "portcullis::gateway", request_id = ?request_id, %error, "upstream unavailable");
            (StatusCode::BAD_GATEWAY, "upstream unavailable").into_response()
        }
        Ok(Ok(response)) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
            switch_protocols(response, upgrade, client_upgrade)
        }
        Ok(Ok(response)) => {
            let (mut parts, body) = response.into_parts();
            remove_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
    };
    with_request_id(response, request_id)
}

/// Completes a protocol switch (WebSocket) the client asked for and the upstream accepted: answers 101 and then
/// copies bytes both ways until either side closes.
fn switch_protocols(
    mut response: http::Response<hyper::body::Incoming>,
    requested: Option<HeaderValue>,
    client: Option<hyper::upgrade::OnUpgrade>,
) -> Response {
    let (Some(requested), Some(client)) = (requested, client) else {
        tracing::warn!(target: "portcullis::gateway", "upstream switched protocols unasked");
        return (StatusCode::BAD_GATEWAY, "upstream unavailable").into_response();
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

fn with_request_id(mut response: Response, id: HeaderValue) -> Response {
    response.headers_mut().insert(crate::request_id::HEADER, id);
    response
}

/// The method and path of the original request, as nginx (`X-Original-*`) or Traefik/Caddy (`X-Forwarded-*`)
/// describe it, else the request's own.
fn original(request: &Request) -> (Method, String) {
    let headers = request.headers();
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let method = text("x-original-method")
        .or_else(|| text("x-forwarded-method"))
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .unwrap_or_else(|| request.method().clone());
    let uri = text("x-original-uri").or_else(|| text("x-forwarded-uri")).unwrap_or_else(|| request.uri().path());
    let path = uri.split(['?', '#']).next().unwrap_or("/").to_owned();
    (method, path)
}

pub(crate) async fn forward_auth(State(gateway): State<Gateway>, mut request: Request) -> Response {
    let request_id = crate::request_id::ensure(request.headers_mut());
    let (method, path) = original(&request);
    let response = answer_forward_auth(&gateway.policy(), &method, &path, request.headers()).await;
    with_request_id(response, request_id)
}

/// The forward-auth answer about the original request (`method`, `path`, with `headers`).
async fn answer_forward_auth(policy: &Policy, method: &Method, path: &str, headers: &HeaderMap) -> Response {
    match policy.decide(method, path, headers).await {
        Decision::Allow { claim_headers, .. } => {
            let mut response = StatusCode::OK.into_response();
            // Every managed header is answered, empty when the token has no such claim (or the route is public):
            // proxies that copy them then overwrite any client-sent copy, and none copies a placeholder.
            for name in policy.managed_headers() {
                response.headers_mut().insert(name.clone(), HeaderValue::from_static(""));
            }
            for (name, value) in claim_headers {
                response.headers_mut().insert(name, value);
            }
            response
        }
        Decision::Deny(response) if response.status() == StatusCode::SERVICE_UNAVAILABLE => {
            // nginx turns any status but 401/403 into 500: an outage becomes a 401 that says so, logged apart.
            tracing::error!(target: "portcullis::gateway", "forward-auth: keys unavailable, answering 401");
            let error = portcullis::Error::new(
                portcullis::Reason::TokenMalformed,
                "keys unavailable: tokens cannot be verified right now",
            );
            let challenge = error.www_authenticate(&policy.config.realm).unwrap_or_default();
            (StatusCode::UNAUTHORIZED, [(http::header::WWW_AUTHENTICATE, challenge)], "keys unavailable")
                .into_response()
        }
        Decision::Deny(response) => *response,
    }
}
