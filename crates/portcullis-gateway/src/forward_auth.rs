//! Forward-auth: decisions about a request that a named front proxy describes in its own headers. Only that
//! proxy's headers are read — each front proxy passes the others' through from the client — and each must be
//! present exactly once and readable; nothing falls back to another header or to the request's own target.
//!
//! A front proxy forwards the target as the client sent it, and the gateway cannot rewrite it, so only targets
//! that are the canonical path or a respelling of it every upstream reads the same (`%40` for `@`, lower-case
//! hex, a raw `|`) are allowed: the path checked is then the path the upstream reads. A request that
//! carries a header the gateway manages, in any spelling, is refused: the proxy configuration should have
//! removed it, and the upstream would otherwise see the client's copy; so is a path or method override header
//! the named proxy does not set or clear itself ([`FrontProxy::replaced_headers`]), an underscore spelling of a
//! forwarding header, and an upgrade to anything but WebSocket (the front proxy would tunnel it).
//!
//! Envoy's HTTP ext_authz service describes the original request in the check request itself: its method, and its
//! target after `envoy_path_prefix`. Allowed answers name what Envoy must remove in
//! `x-envoy-auth-headers-to-remove` (the same edits as the gRPC service's, which name every `-`/`_` spelling of
//! each claim header and override header, since the check carries only the headers Envoy is told to include), and
//! refusals keep their status.

use crate::config::FrontProxy;
use crate::decide::{Decision, Denial};
use crate::gateway::{Gateway, Policy};
use crate::request::CanonicalRequest;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

/// The headers in which `front` describes the original request: method, then target (`None` for Envoy, whose
/// check request carries the original method and target itself).
fn description_headers(front: FrontProxy) -> Option<(&'static str, &'static str)> {
    match front {
        FrontProxy::Nginx => Some(("x-original-method", "x-original-uri")),
        FrontProxy::Caddy | FrontProxy::Traefik => Some(("x-forwarded-method", "x-forwarded-uri")),
        FrontProxy::Envoy => None,
    }
}

/// Whether `headers` carry any of `front`'s description of an original request (Envoy's check requests carry
/// theirs in the request line, so every request to an Envoy-facing listener is a check).
fn describes_a_request(front: FrontProxy, headers: &HeaderMap) -> bool {
    match description_headers(front) {
        Some((method, target)) => headers.contains_key(method) || headers.contains_key(target),
        None => true,
    }
}

/// The one value of `name`, or why there is not exactly one.
fn single<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h [u8], Denial> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => Ok(value.as_bytes()),
        (None, _) => Err(Denial::FrontHeaders(match name {
            "x-original-method" => "the front proxy sent no X-Original-Method",
            "x-original-uri" => "the front proxy sent no X-Original-URI",
            "x-forwarded-method" => "the front proxy sent no X-Forwarded-Method",
            _ => "the front proxy sent no X-Forwarded-Uri",
        })),
        (Some(_), Some(_)) => Err(Denial::FrontHeaders("the front proxy's description of the request is repeated")),
    }
}

/// The original request as `front` describes it in `headers`.
pub(crate) fn original_request(front: FrontProxy, headers: &HeaderMap) -> Result<CanonicalRequest, Denial> {
    let (method_header, target_header) = description_headers(front)
        .ok_or(Denial::FrontHeaders("Envoy describes the request in the check request's own method and target"))?;
    let method = single(headers, method_header)?;
    let target = single(headers, target_header)?;
    described(method, target)
}

/// The original request Envoy's HTTP ext_authz service describes in the check request itself: its method, and its
/// target after `prefix` (Envoy's `path_prefix`), which the target must start with.
pub(crate) fn envoy_request(method: &Method, target: &[u8], prefix: Option<&str>) -> Result<CanonicalRequest, Denial> {
    let target = match prefix {
        Some(prefix) => target
            .strip_prefix(prefix.as_bytes())
            .filter(|rest| rest.starts_with(b"/"))
            .ok_or(Denial::FrontHeaders("the check request's target does not start with envoy_path_prefix"))?,
        None => target,
    };
    described(method.as_str().as_bytes(), target)
}

/// `method` when it is upper-case letters and `-`. Routes match methods exactly, but some upstreams upper-case
/// the method before routing (and Envoy passes an HTTP/2 `:method` of `delete` on as it is), so a method in any
/// other case could pass a route meant for another and be served as that route's method.
pub(crate) fn upper_case_method(method: &[u8]) -> Option<Method> {
    if method.is_empty() || !method.iter().all(|&b| b.is_ascii_uppercase() || b == b'-') {
        return None;
    }
    Method::from_bytes(method).ok()
}

/// The method and target a front proxy describes, read as a request whose target the upstream reads the same.
fn described(method: &[u8], target: &[u8]) -> Result<CanonicalRequest, Denial> {
    let method = upper_case_method(method)
        .ok_or(Denial::FrontHeaders("the front proxy's method is not an upper-case HTTP method"))?;
    let request = CanonicalRequest::from_target(method, target).map_err(Denial::Target)?;
    // The front proxy forwards the target as it is: only a respelling of the canonical path, which every upstream
    // reads as that path, may pass.
    if !request.equivalent {
        return Err(Denial::NotCanonical);
    }
    Ok(request)
}

/// Why `headers` cannot be decided on as they are: a managed header in any spelling; an underscore spelling of
/// a forwarding or override header (no proxy or load balancer sends one, and CGI-style upstreams read it as the
/// real thing); or an override header (`X-Original-URL`, `X-HTTP-Method-Override`, …) that `front` does not set
/// or clear itself, so the client's copy would reach the upstream. Forwarding headers in their usual spelling
/// (`X-Forwarded-For`, `-Proto`, `-Port` from a load balancer) are the front proxy's to pass or replace.
fn owned_header(policy: &Policy, front: FrontProxy, headers: &HeaderMap) -> Option<Denial> {
    if policy.managed.carried_by(headers).is_some() {
        return Some(Denial::ManagedHeader);
    }
    let passed_on = headers.keys().any(|name| {
        let name = name.as_str();
        (name.contains('_') && crate::headers::is_front_owned(name))
            || (crate::headers::is_override(name) && !front.replaced_headers().contains(&name))
    });
    passed_on.then_some(Denial::ForwardingHeader)
}

/// The handler of the main listener with a top-level `forward_auth`.
pub(crate) async fn handler(State(gateway): State<Gateway>, mut request: Request) -> Response {
    let request_id = crate::request_id::ensure(request.headers_mut());
    let policy = gateway.policy();
    let response = match gateway.config().forward_auth {
        Some(FrontProxy::Envoy) => {
            let target = request.uri().path_and_query().map_or("/", http::uri::PathAndQuery::as_str);
            let prefix = policy.config.envoy_path_prefix.as_deref();
            let described = envoy_request(request.method(), target.as_bytes(), prefix);
            envoy_answer(&policy, request.method(), described, request.headers()).await
        }
        // A request that is not a check (the front proxy describes none) may fetch the protected-resource
        // metadata, which the front proxy routes here; a check is never answered with it.
        Some(front) if !describes_a_request(front, request.headers()) => {
            let uri = request.uri();
            let path = uri.path().as_bytes();
            let canonical =
                CanonicalRequest::from_parts(request.method().clone(), path, uri.query().map(str::as_bytes));
            match canonical.ok().and_then(|canonical| crate::metadata::answer(&policy, &canonical)) {
                Some(document) => document,
                None => answer(&policy, front, request.headers()).await,
            }
        }
        Some(front) => answer(&policy, front, request.headers()).await,
        None => StatusCode::NOT_FOUND.into_response(),
    };
    drop(policy);
    let (parts, body) = request.into_parts();
    let response = crate::proxy::after_body(body, &parts.headers, response).await;
    crate::proxy::with_request_id(response, request_id)
}

/// The forward-auth answer for `front` about the request its `headers` describe: 200 with every managed header
/// (empty when the token has no such claim, so a proxy that copies them overwrites any client copy), or the
/// refusal as `front` can pass it on.
pub(crate) async fn answer(policy: &Policy, front: FrontProxy, headers: &HeaderMap) -> Response {
    let request = if let Some(denial) = owned_header(policy, front, headers) {
        Err(denial)
    } else if !crate::proxy::upgrade_is_websocket_or_none(headers) {
        Err(Denial::Upgrade)
    } else {
        original_request(front, headers)
    };
    let request = match request {
        Ok(request) => request,
        Err(denial) => {
            let method = description_headers(front)
                .and_then(|(method_header, _)| headers.get(method_header))
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            policy.report_refusal(method, &denial, headers);
            return crate::render::refusal(policy, &denial, Some(front), policy.offer(None, headers));
        }
    };
    // A 2xx answer only lets the request through to the upstream: preflights are passed (`preflight = "pass"`)
    // or decided as ordinary requests, never answered here.
    match policy.decide_and_report(&request, headers, false).await {
        Decision::Allow(allowed) => {
            let mut response = StatusCode::OK.into_response();
            for name in policy.managed.names() {
                response.headers_mut().insert(name.clone(), HeaderValue::from_static(""));
            }
            for (name, value) in allowed.claim_headers {
                response.headers_mut().insert(name, value);
            }
            response
        }
        Decision::Deny(denial) => {
            crate::render::refusal(policy, &denial, Some(front), policy.offer(Some(&request), headers))
        }
        Decision::Preflight(answer) => crate::render::preflight(answer),
    }
}

/// The answer to Envoy's HTTP ext_authz check about `described`: 200 with the claim headers (Envoy copies those
/// named in `allowed_upstream_headers`) and `x-envoy-auth-headers-to-remove` naming what must not reach the
/// upstream, or the refusal with its real status, `WWW-Authenticate` and JSON body, which Envoy passes on.
pub(crate) async fn envoy_answer(
    policy: &Policy,
    method: &Method,
    described: Result<CanonicalRequest, Denial>,
    headers: &HeaderMap,
) -> Response {
    let front = FrontProxy::Envoy;
    let request = if let Some(denial) = owned_header(policy, front, headers) {
        Err(denial)
    } else if !crate::proxy::upgrade_is_websocket_or_none(headers) {
        Err(Denial::Upgrade)
    } else {
        described
    };
    let request = match request {
        Ok(request) => request,
        Err(denial) => {
            policy.report_refusal(method.as_str(), &denial, headers);
            return crate::render::refusal(policy, &denial, Some(front), policy.offer(None, headers));
        }
    };
    // Envoy lets a request through on 200 only: an answered preflight's 204 goes to the client, as refusals do.
    match policy.decide_and_report(&request, headers, true).await {
        Decision::Allow(allowed) => {
            let edits = crate::ext_authz::upstream_edits(policy, allowed, headers);
            let mut response = StatusCode::OK.into_response();
            for (name, value) in edits.set {
                response.headers_mut().insert(name, value);
            }
            if !edits.remove.is_empty()
                && let Ok(removed) = HeaderValue::from_str(&edits.remove.join(","))
            {
                response.headers_mut().insert(ENVOY_HEADERS_TO_REMOVE, removed);
            }
            response
        }
        Decision::Deny(denial) => {
            crate::render::refusal(policy, &denial, Some(front), policy.offer(Some(&request), headers))
        }
        Decision::Preflight(answer) => crate::render::preflight(answer),
    }
}

/// The header in which Envoy's HTTP ext_authz service names the request headers to remove before forwarding.
const ENVOY_HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";
