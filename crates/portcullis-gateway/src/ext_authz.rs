//! Envoy's external authorization over gRPC: `envoy.service.auth.v3.Authorization/Check`. Envoy describes the
//! request in the check request (`attributes.request.http`); it is read once into a [`CanonicalRequest`] and an
//! [`http::HeaderMap`], decided by the same [`Policy::decide_and_report`] as the reverse proxy and forward-auth,
//! and the decision is rendered back as Envoy's messages:
//!
//! - allowed: `OkHttpResponse` with each claim header set (overwriting any copy), and `headers_to_remove` naming
//!   the managed headers the token has no claim for, every other `-`/`_` spelling of managed headers and of the
//!   path and method override headers (sent or not: `allowed_headers` may hide them from the check), every other
//!   spelling of a managed header the client sent, the override headers and underscore spellings of forwarding
//!   headers the client sent, and —
//!   unless the route forwards it — `authorization` and the route's token header. A token cookie is taken out of
//!   the `cookie` header, which is set again with the other cookies (or removed when none is left).
//! - refused: `DeniedHttpResponse` with the status, headers and JSON body the reverse proxy answers the same request
//!   with (`WWW-Authenticate` included), and the gRPC status `UNAUTHENTICATED` for a 401, else `PERMISSION_DENIED`.
//! - a CORS preflight the route answers (`preflight = "answer"`): a `DeniedHttpResponse` with 204 and the CORS
//!   headers, which is how Envoy answers directly.
//!
//! Envoy forwards the target it checked as it is, so only targets that are the canonical path or a respelling of
//! it every upstream reads the same are allowed (as for forward-auth). The Check handler's own time is recorded in
//! the `portcullis_ext_authz_check_seconds` histogram.

use crate::decide::{Allowed, Decision, Denial};
use crate::gateway::{Gateway, Policy};
use crate::request::CanonicalRequest;
use crate::token_source::TokenSource;
use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue as EnvoyHeader, HeaderValueOption};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use envoy_types::pb::envoy::service::auth::v3::authorization_server::{Authorization, AuthorizationServer};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use std::time::Instant;

/// google.rpc.Code `OK`.
const RPC_OK: i32 = 0;
/// google.rpc.Code `PERMISSION_DENIED`.
const RPC_PERMISSION_DENIED: i32 = 7;
/// google.rpc.Code `UNAUTHENTICATED`.
const RPC_UNAUTHENTICATED: i32 = 16;

/// The gRPC service: the gateway whose policy in force (after any reload) decides each check.
pub(crate) struct CheckService {
    gateway: Gateway,
    latency: metrics::Histogram,
}

impl CheckService {
    /// The service for `gateway`, recording its latency into the process-wide recorder (when installed).
    pub(crate) fn new(gateway: Gateway) -> Self {
        Self { gateway, latency: crate::observe::check_latency() }
    }

    /// The tonic service to mount.
    pub(crate) fn into_server(self) -> AuthorizationServer<Self> {
        AuthorizationServer::new(self)
    }
}

#[tonic::async_trait]
impl Authorization for CheckService {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let started = Instant::now();
        let policy = self.gateway.policy();
        let response = check(&policy, request.into_inner()).await;
        self.latency.record(started.elapsed().as_secs_f64());
        Ok(tonic::Response::new(response))
    }
}

/// The answer to one check request under `policy`.
async fn check(policy: &Policy, request: CheckRequest) -> CheckResponse {
    let Some(http) = request.attributes.and_then(|attributes| attributes.request).and_then(|request| request.http)
    else {
        let denial = Denial::FrontHeaders("the check request describes no HTTP request");
        let mut headers = HeaderMap::new();
        let request_id = crate::request_id::ensure(&mut headers);
        policy.report_refusal("-", &denial, &headers);
        return refused(policy, &denial, None, &headers, Vec::new(), request_id).await;
    };
    let (mut headers, unreadable) = match read_headers(&http) {
        Ok(headers) => (headers, None),
        Err(denial) => (HeaderMap::new(), Some(denial)),
    };
    if !headers.contains_key(crate::request_id::HEADER)
        && let Ok(id) = HeaderValue::from_str(&http.id)
    {
        headers.insert(crate::request_id::HEADER, id);
    }
    let request_id = crate::request_id::ensure(&mut headers);
    let described = match unreadable {
        Some(denial) => Err(denial),
        None => original_request(&http, &headers),
    };
    let request = match described {
        Ok(request) => request,
        Err(denial) => {
            let method = if http.method.is_empty() { "-" } else { http.method.as_str() };
            policy.report_refusal(method, &denial, &headers);
            return refused(policy, &denial, None, &headers, Vec::new(), request_id).await;
        }
    };
    match policy.decide_and_report(&request, &headers, true).await {
        Decision::Allow(allowed) => {
            let edits = upstream_edits(policy, allowed, &headers);
            CheckResponse {
                status: Some(RpcStatus { code: RPC_OK, ..Default::default() }),
                http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                    headers: edits.set.iter().map(|(name, value)| overwrite(name, value)).collect(),
                    headers_to_remove: edits.remove,
                    ..Default::default()
                })),
                ..Default::default()
            }
        }
        Decision::Deny(denial) => {
            let cors = policy.cors_headers(&request, &headers);
            refused(policy, &denial, Some(&request), &headers, cors, request_id).await
        }
        Decision::Preflight(answer) => {
            let response = crate::render::preflight(answer);
            let (status, headers, body) = crate::render::into_parts(response).await;
            denied(status, &headers, body, request_id)
        }
    }
}

/// The request's headers as one [`HeaderMap`]: from `header_map` when Envoy sends it (`encode_raw_headers`,
/// repeated headers kept apart), else from `headers` (repeated headers joined with commas, so a comma in
/// `authorization` is read as two values, refused as two `Authorization` headers are). Pseudo-headers (`:path`,
/// `:method`, `:authority`, …) are Envoy's description of the request line, not headers. A name or value that is
/// not valid HTTP is a refusal.
fn read_headers(http: &HttpRequest) -> Result<HeaderMap, Denial> {
    let unreadable = || Denial::FrontHeaders("Envoy sent a header name or value that is not valid HTTP");
    let mut headers = HeaderMap::new();
    let mut add = |name: &str, value: &[u8], split: bool| -> Result<(), Denial> {
        if name.starts_with(':') {
            return Ok(());
        }
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| unreadable())?;
        if split && name == AUTHORIZATION {
            for part in value.split(|&b| b == b',') {
                headers.append(name.clone(), HeaderValue::from_bytes(part.trim_ascii()).map_err(|_| unreadable())?);
            }
        } else {
            headers.append(name, HeaderValue::from_bytes(value).map_err(|_| unreadable())?);
        }
        Ok(())
    };
    match &http.header_map {
        Some(map) if !map.headers.is_empty() => {
            for header in &map.headers {
                let value = if header.raw_value.is_empty() { header.value.as_bytes() } else { &header.raw_value };
                add(&header.key, value, false)?;
            }
        }
        _ => {
            for (name, value) in &http.headers {
                add(name, value.as_bytes(), true)?;
            }
        }
    }
    Ok(headers)
}

/// The request Envoy checks: its method, and its target (`path` holds the query too), which must be the canonical
/// path or a respelling every upstream reads the same, since Envoy forwards it as it is; a method not in upper
/// case is refused as well. An upgrade to anything but WebSocket is refused (Envoy would tunnel it past every
/// later decision).
fn original_request(http: &HttpRequest, headers: &HeaderMap) -> Result<CanonicalRequest, Denial> {
    if !crate::proxy::upgrade_is_websocket_or_none(headers) {
        return Err(Denial::Upgrade);
    }
    let method = crate::forward_auth::upper_case_method(http.method.as_bytes())
        .ok_or(Denial::FrontHeaders("Envoy's method is not an upper-case HTTP method"))?;
    let mut request = CanonicalRequest::from_target(method, http.path.as_bytes()).map_err(Denial::Target)?;
    if !request.equivalent {
        return Err(Denial::NotCanonical);
    }
    request.has_body = envoy_saw_a_body(http, headers);
    Ok(request)
}

/// Whether Envoy's description shows a body. Envoy keeps `Content-Length` but drops `Transfer-Encoding`, and
/// describes an HTTP/2 or chunked body neither in `size` nor in a header: only the bytes it buffered
/// (`with_request_body`) show it, so those count too.
fn envoy_saw_a_body(http: &HttpRequest, headers: &HeaderMap) -> bool {
    http.size > 0 || !http.body.is_empty() || !http.raw_body.is_empty() || crate::decide::declares_body(headers)
}

/// What Envoy changes in an allowed request before it goes upstream.
#[derive(Debug, Default)]
pub(crate) struct Edits {
    /// Headers set, overwriting any copy.
    pub(crate) set: Vec<(HeaderName, HeaderValue)>,
    /// Header names removed (lower case, each once; never a name in `set`).
    pub(crate) remove: Vec<String>,
}

impl Edits {
    /// Names `name` for removal (lower-cased), unless it is set or already named.
    pub(crate) fn remove(&mut self, name: &str) {
        let name = name.to_ascii_lowercase();
        if !self.set.iter().any(|(set, _)| set.as_str() == name) && !self.remove.contains(&name) {
            self.remove.push(name);
        }
    }
}

/// The edits for an allowed request carrying `headers`: the claim headers set; removed are the managed headers the
/// token has no claim for, every other `-`/`_` spelling of managed headers and of the override headers (sent or
/// not: the check may not show them), other spellings of managed headers, override headers and underscore
/// spellings of forwarding headers the client sent, and (unless the route forwards them) `authorization` and the
/// route's token header. The token cookie is cut out of `cookie`, which is set again with the other cookies or
/// removed.
pub(crate) fn upstream_edits(policy: &Policy, allowed: Allowed, headers: &HeaderMap) -> Edits {
    let mut edits = Edits { set: allowed.claim_headers, remove: Vec::new() };
    for name in policy.managed.names() {
        edits.remove(name.as_str());
    }
    // Envoy shows only the headers it is told to include (`allowed_headers`; always so in HTTP mode), and allows
    // `_` in names by default: other spellings of claim headers and the override headers are named unseen.
    for name in policy.managed.names() {
        for spelling in crate::headers::other_spellings(name.as_str()) {
            edits.remove(&spelling);
        }
    }
    for name in crate::headers::override_spellings() {
        edits.remove(&name);
    }
    for name in headers.keys() {
        let name = name.as_str();
        let owned = policy.managed.is_managed(name)
            || crate::headers::is_override(name)
            || (name.contains('_') && crate::headers::is_front_owned(name));
        if owned {
            edits.remove(name);
        }
    }
    if !allowed.forward_authorization {
        edits.remove(AUTHORIZATION.as_str());
        match &allowed.token_source {
            Some(TokenSource::Header(name)) => {
                edits.remove(name.as_str());
                for sent in headers.keys() {
                    if crate::headers::same_name(sent.as_str().as_bytes(), name.as_str().as_bytes()) {
                        edits.remove(sent.as_str());
                    }
                }
            }
            Some(source @ TokenSource::Cookie(_)) if headers.contains_key(COOKIE) => {
                let mut cookies = HeaderMap::new();
                for value in headers.get_all(COOKIE) {
                    cookies.append(COOKIE, value.clone());
                }
                crate::token_source::remove(&mut cookies, source);
                match cookies.remove(COOKIE) {
                    Some(kept) => edits.set.push((COOKIE, kept)),
                    None => edits.remove(COOKIE.as_str()),
                }
            }
            Some(TokenSource::Cookie(_)) | None => {}
        }
    }
    edits
}

fn overwrite(name: &HeaderName, value: &HeaderValue) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(EnvoyHeader {
            key: name.as_str().to_owned(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ..Default::default()
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

/// The refusal of `denial` about `request` (when it could be read), as the reverse proxy renders it (with the
/// route's challenges, and its CORS headers for the origin).
async fn refused(
    policy: &Policy,
    denial: &Denial,
    request: Option<&CanonicalRequest>,
    headers: &HeaderMap,
    cors: Vec<(HeaderName, HeaderValue)>,
    request_id: HeaderValue,
) -> CheckResponse {
    let offer = policy.offer(request, headers);
    let response = crate::proxy::with_cors(crate::render::refusal(policy, denial, None, offer), cors);
    let (status, headers, body) = crate::render::into_parts(response).await;
    denied(status, &headers, body, request_id)
}

/// A direct answer through Envoy: `status`, `headers` and `body` reach the client as they are.
fn denied(status: StatusCode, headers: &HeaderMap, body: String, request_id: HeaderValue) -> CheckResponse {
    let code = if status == StatusCode::UNAUTHORIZED { RPC_UNAUTHENTICATED } else { RPC_PERMISSION_DENIED };
    let mut options: Vec<HeaderValueOption> = Vec::with_capacity(headers.len() + 1);
    for name in headers.keys() {
        // Envoy writes the length of the body it sends itself.
        if name == http::header::CONTENT_LENGTH {
            continue;
        }
        for (i, value) in headers.get_all(name).iter().enumerate() {
            let mut option = overwrite(name, value);
            if i > 0 {
                option.append_action = HeaderAppendAction::AppendIfExistsOrAdd as i32;
            }
            options.push(option);
        }
    }
    options.push(overwrite(&HeaderName::from_static(crate::request_id::HEADER), &request_id));
    CheckResponse {
        status: Some(RpcStatus { code, ..Default::default() }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: i32::from(status.as_u16()) }),
            headers: options,
            body,
        })),
        ..Default::default()
    }
}

/// Serves the gRPC service of `gateway` on `listener` until `shutdown` completes; checks in flight finish.
///
/// The service runs in the gateway's own accept loop, so it has the main listener's [`Limits`](crate::Limits)
/// (connections at once, header size and count, idle connections closed) and, with `tls_cert` and `tls_key`, its
/// TLS with the certificate of the latest reload (ALPN `h2` only; a plaintext client is disconnected). It serves
/// HTTP/2 only: an HTTP/1.1 request gets no answer. A call that has
/// not been answered within `header_read_timeout_secs` (its message never arrives, say) ends with
/// `DEADLINE_EXCEEDED`, which Envoy treats as a refusal, so a stalled stream cannot hold its connection slot.
pub(crate) async fn serve(
    gateway: Gateway,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::install_metrics();
    gateway.start_key_refresh();
    let limits = gateway.config().limits.clone();
    let tls = gateway.listener_tls();
    let deadline = std::time::Duration::from_secs(limits.header_read_timeout_secs);
    let app = tonic::service::Routes::new(CheckService::new(gateway).into_server()).prepare().into_axum_router().layer(
        axum::middleware::from_fn(move |request: axum::extract::Request, next: axum::middleware::Next| {
            within(deadline, request, next)
        }),
    );
    crate::listener::serve(listener, app, &limits, tls, crate::listener::Protocols::Http2Only, shutdown).await
}

/// Runs the call `request` through `next`, answering `DEADLINE_EXCEEDED` when it takes longer than `deadline`.
async fn within(
    deadline: std::time::Duration,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::debug!(target: "portcullis::gateway", "ext_authz call not complete in time; ended");
            tonic::Status::deadline_exceeded("the check was not complete in time").into_http::<axum::body::Body>()
        }
    }
}
