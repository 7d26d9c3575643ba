//! `portcullis-pingora`: a **prototype**, not part of portcullis. It puts the reverse proxy's own decision
//! (`portcullis_gateway::__internals::decide`) in front of Pingora's HTTP/1.1 proxy core, so that speed and
//! strictness can be compared with `portcullis serve` on the same configuration (see `README.md` and `CORPUS.md`
//! beside this crate).
//!
//! What it does, per request: the head is checked against the configured limits, the `Content-Length` must be one
//! number, the target is made canonical (refused with 400 when it cannot be), the `Host` is checked as the gateway
//! checks it, the request is decided, and a refusal is answered here. An allowed request
//! goes to the configured `http://` upstream over Pingora's pooled keep-alive connections with exactly the
//! canonical target that was decided, the client's copies of managed, forwarding and hop-by-hop headers removed,
//! `Authorization` removed unless the route forwards it, the claim headers and `X-Forwarded-For/-Proto/-Host` set,
//! and `Host` set to the upstream's authority.
//!
//! What it leaves out (the product's proxy has them): TLS on either side, CORS headers and answered preflights
//! (a preflight the policy would answer gets 403), the protected-resource metadata document, forward-auth
//! endpoints in proxy mode, removing a route's `token_from` cookie or header, the admin listener, metrics, reloads
//! the header read timeout (Pingora reads a first request head with its own 60 s per-read timeout), and reading a
//! refused request's body to keep the connection (it is closed instead).
#![forbid(unsafe_code)]

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONNECTION, HOST, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use pingora_core::server::Server;
use pingora_core::server::configuration::ServerConf;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::authority::{RawTargetAuthority, raw_target_authority};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use portcullis_gateway::__internals::{decide, parse_trusted_proxy, split_target, strip_managed};
use portcullis_gateway::{Allowed, CanonicalRequest, Config, Decision, Denial, Gateway, Mode};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Hop-by-hop headers (RFC 9110 §7.6.1) removed on both sides. `Transfer-Encoding` and `Content-Length` are left
/// to Pingora, which frames each message itself.
const HOP_BY_HOP: [&str; 7] =
    ["connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer"];

const REQUEST_ID: &str = "x-request-id";

struct Args {
    config: String,
    listen: String,
    threads: usize,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut config, mut listen, mut threads) = (None, None, 1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--config" => config = Some(value()?),
            "--listen" => listen = Some(value()?),
            "--threads" => threads = value()?.parse().map_err(|_| "--threads takes a number".to_owned())?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let usage = "usage: portcullis-pingora --config FILE --listen 127.0.0.1:PORT [--threads N]";
    match (config, listen) {
        (Some(config), Some(listen)) if threads > 0 => Ok(Args { config, listen, threads }),
        _ => Err(usage.to_owned()),
    }
}

/// Where allowed requests go: an `http://` upstream, resolved once at start.
struct Upstream {
    address: SocketAddr,
    /// The `Host` the upstream gets.
    authority: HeaderValue,
    /// The upstream URL's path, without a trailing `/`, put before every forwarded target.
    base: String,
}

impl Upstream {
    fn new(url: &str) -> std::result::Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("upstream {url:?}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("upstream {url:?}: the prototype speaks plain http:// only"));
        }
        let authority = uri.authority().ok_or_else(|| format!("upstream {url:?} has no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let address = (authority.host().trim_matches(['[', ']']), port)
            .to_socket_addrs()
            .map_err(|e| format!("upstream {url:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("upstream {url:?} resolves to no address"))?;
        let authority = HeaderValue::from_str(authority.as_str()).map_err(|e| format!("upstream {url:?}: {e}"))?;
        Ok(Self { address, authority, base: uri.path().trim_end_matches('/').to_owned() })
    }
}

struct Proxy {
    gateway: Gateway,
    upstream: Upstream,
    realm: String,
    trusted_proxies: Vec<ipnet::IpNet>,
    max_headers: usize,
    max_header_bytes: usize,
    timeout: Duration,
}

/// What `request_filter` decided, for the later phases of the same request.
#[derive(Default)]
struct Ctx {
    request_id: Option<HeaderValue>,
    forward: Option<Forward>,
}

struct Forward {
    /// The upstream base and the canonical target that was decided.
    target: Uri,
    allowed: Allowed,
    forwarded_for: Option<HeaderValue>,
    forwarded_host: Option<HeaderValue>,
    websocket: bool,
}

/// A refusal: status, the stable reason, words safe to show, and a challenge for credential refusals.
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    message: String,
    challenge: Option<String>,
    allow: Option<String>,
}

impl Refusal {
    fn plain(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self { status, reason, message: message.into(), challenge: None, allow: None }
    }

    fn of(denial: &Denial, realm: &str) -> Self {
        let mut refusal = Self::plain(denial.status(), denial.reason(), denial.description());
        match denial {
            Denial::Token(error) => refusal.challenge = error.www_authenticate(realm),
            Denial::MethodNotAllowed(allow) => {
                refusal.allow = Some(allow.iter().map(http::Method::as_str).collect::<Vec<_>>().join(", "));
            }
            _ => {}
        }
        refusal
    }
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let request_id = request_id(&session.req_header().headers);
        ctx.request_id = Some(request_id.clone());
        let checked = self.check(session).await;
        let refusal = match checked {
            Ok(forward) => {
                ctx.forward = Some(forward);
                return Ok(false);
            }
            Err(refusal) => refusal,
        };
        let body = serde_json::json!({
            "error": refusal.status.canonical_reason().unwrap_or("error").to_ascii_lowercase().replace(' ', "_"),
            "reason": refusal.reason,
            "message": refusal.message,
        })
        .to_string();
        let mut response = ResponseHeader::build(refusal.status, Some(6))?;
        response.insert_header(http::header::CONTENT_TYPE, "application/json")?;
        response.insert_header(http::header::CACHE_CONTROL, "no-store")?;
        response.insert_header(http::header::CONTENT_LENGTH, body.len())?;
        response.insert_header(REQUEST_ID, request_id)?;
        if let Some(challenge) = refusal.challenge {
            response.insert_header(http::header::WWW_AUTHENTICATE, challenge)?;
        }
        if let Some(allow) = refusal.allow {
            response.insert_header(http::header::ALLOW, allow)?;
        }
        // A refused body is never read: the connection closes after the answer instead, so no byte of that body
        // can be taken for the next request.
        if !session.is_body_empty() {
            session.set_keepalive(None);
        }
        session.write_response_header(Box::new(response), false).await?;
        session.write_response_body(Some(Bytes::from(body)), true).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream.address, false, String::new());
        peer.options.connection_timeout = Some(self.timeout);
        peer.options.read_timeout = Some(self.timeout);
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let Some(forward) = ctx.forward.take() else {
            return Error::e_explain(ErrorType::InternalError, "a request reached the upstream phase undecided");
        };
        request.set_uri(forward.target);
        remove_hop_by_hop(request, forward.websocket);
        if forward.websocket {
            request.insert_header(CONNECTION, "upgrade")?;
            request.insert_header(UPGRADE, "websocket")?;
        }
        // The gateway strips managed and forwarding headers on a `HeaderMap`; Pingora's header keeps the names'
        // case alongside, so the names it strips are removed through Pingora.
        let mut stripped = request.headers.clone();
        strip_managed(&self.gateway, &mut stripped);
        let gone: Vec<HeaderName> = request.headers.keys().filter(|n| !stripped.contains_key(*n)).cloned().collect();
        for name in gone {
            request.remove_header(&name);
        }
        if !forward.allowed.forward_authorization {
            request.remove_header(&AUTHORIZATION);
        }
        for (name, value) in forward.allowed.claim_headers {
            request.insert_header(name, value)?;
        }
        request.insert_header(HOST, self.upstream.authority.clone())?;
        if let Some(chain) = forward.forwarded_for {
            request.insert_header("x-forwarded-for", chain)?;
        }
        request.insert_header("x-forwarded-proto", "http")?;
        if let Some(host) = forward.forwarded_host {
            request.insert_header("x-forwarded-host", host)?;
        }
        if let Some(id) = &ctx.request_id {
            request.insert_header(REQUEST_ID, id.clone())?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        for name in connection_listed(&response.headers) {
            response.remove_header(&name);
        }
        for name in HOP_BY_HOP {
            response.remove_header(name);
        }
        if response.status != StatusCode::SWITCHING_PROTOCOLS {
            response.remove_header(&UPGRADE);
        }
        if let Some(id) = &ctx.request_id {
            response.insert_header(REQUEST_ID, id.clone())?;
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, error: &Error, _ctx: &mut Ctx) -> FailToProxy {
        let code = match (error.esource(), error.etype()) {
            (_, ErrorType::HTTPStatus(code)) => *code,
            (ErrorSource::Upstream, ErrorType::ConnectTimedout | ErrorType::ReadTimedout) => 504,
            (ErrorSource::Upstream, _) => 502,
            (ErrorSource::Downstream, ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed) => 0,
            (ErrorSource::Downstream, _) => 400,
            _ => 500,
        };
        if code > 0 {
            let _ = session.respond_error(code).await;
        }
        FailToProxy { error_code: code, can_reuse_downstream: false }
    }
}

impl Proxy {
    /// The checks and the decision: what to forward, or the refusal.
    async fn check(&self, session: &mut Session) -> std::result::Result<Forward, Refusal> {
        let request = session.req_header();
        if request.headers.len() > self.max_headers || session.as_downstream().to_h1_raw().len() > self.max_header_bytes
        {
            let message = "the request head is over the configured limits";
            return Err(Refusal::plain(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large", message));
        }
        // Pingora accepts a Content-Length listed more than once with one value (`5, 5`, or two equal fields)
        // and forwards it as sent; hyper, under `portcullis serve`, refuses it. Refused here too, so that the
        // upstream never reads a length the proxy did not.
        let mut lengths = request.headers.get_all(http::header::CONTENT_LENGTH).iter();
        if let (Some(length), second) = (lengths.next(), lengths.next())
            && (second.is_some() || length.is_empty() || !length.as_bytes().iter().all(u8::is_ascii_digit))
        {
            let message = "the Content-Length is not one number";
            return Err(Refusal::plain(StatusCode::BAD_REQUEST, "content_length_invalid", message));
        }
        // The target as received: origin-form, or absolute-form split where Pingora's own authority check splits
        // it. Anything else (`*`, authority-form, other schemes) has no path to decide about.
        let raw = request.raw_path();
        let (target, authority) = match raw_target_authority(raw) {
            RawTargetAuthority::None => (raw, None),
            RawTargetAuthority::Absolute { scheme, authority, path_and_query }
                if scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https") =>
            {
                (if path_and_query.is_empty() { b"/".as_slice() } else { path_and_query }, Some(authority))
            }
            _ => (raw, None),
        };
        let canonical = split_target(target)
            .and_then(|(path, query)| CanonicalRequest::from_parts(request.method.clone(), path, query));
        let mut canonical = canonical.map_err(|e| Refusal::of(&Denial::Target(e), &self.realm))?;
        let forwarded_host =
            requested_host(&request.headers, authority).map_err(|denial| Refusal::of(&denial, &self.realm))?;
        let websocket = wants_websocket(&request.headers);
        let forwarded_for = self.forwarded_for(&request.headers, session.client_addr().and_then(|a| a.as_inet()));
        canonical.has_body = !session.is_body_empty();
        let request = session.req_header();
        let allowed = match decide(&self.gateway, &canonical, &request.headers).await {
            Decision::Allow(allowed) => allowed,
            Decision::Deny(denial) => return Err(Refusal::of(&denial, &self.realm)),
            Decision::Preflight(_) => {
                let message = "preflights are not answered by this prototype";
                return Err(Refusal::plain(StatusCode::FORBIDDEN, "preflight_refused", message));
            }
            _ => return Err(Refusal::plain(StatusCode::FORBIDDEN, "unknown_decision", "undecided")),
        };
        let target = format!("{}{}", self.upstream.base, canonical.target()).parse::<Uri>().map_err(|_| {
            Refusal::plain(StatusCode::BAD_REQUEST, "target_invalid", "the request path cannot be forwarded")
        })?;
        Ok(Forward { target, allowed, forwarded_for, forwarded_host, websocket })
    }

    /// The `X-Forwarded-For` chain: a trusted proxy's chain extended by the peer, or the peer alone.
    fn forwarded_for(&self, headers: &HeaderMap, peer: Option<&SocketAddr>) -> Option<HeaderValue> {
        let peer = peer?.ip();
        let canonical_peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let mut chain = String::new();
        if self.trusted_proxies.iter().any(|net| net.contains(&canonical_peer)) {
            for text in headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()) {
                for hop in text.split(',').map(str::trim).filter(|hop| hop.parse::<IpAddr>().is_ok()) {
                    chain.push_str(hop);
                    chain.push_str(", ");
                }
            }
        }
        chain.push_str(&peer.to_string());
        HeaderValue::from_str(&chain).ok()
    }
}

/// The host the client asked for, refused as the gateway refuses it: several `Host` headers, one that is not a
/// host and port, user information, or a target authority that names another host than `Host`.
fn requested_host(headers: &HeaderMap, authority: Option<&[u8]>) -> std::result::Result<Option<HeaderValue>, Denial> {
    let mut hosts = headers.get_all(HOST).iter();
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
    let authority = match authority.map(http::uri::Authority::try_from) {
        None => None,
        Some(Ok(authority)) if !authority.as_str().contains('@') => Some(authority),
        Some(_) => return Err(Denial::Host("the target's authority is not a host name and port")),
    };
    match (authority, header) {
        (Some(authority), Some(header)) if !authority.as_str().eq_ignore_ascii_case(header.to_str().unwrap_or("")) => {
            Err(Denial::Host("the Host header and the target name different hosts"))
        }
        (Some(authority), _) => Ok(HeaderValue::from_str(authority.as_str()).ok()),
        (None, header) => Ok(header),
    }
}

/// `Connection: upgrade` with exactly one `Upgrade: websocket`; any other upgrade is declined (not forwarded).
fn wants_websocket(headers: &HeaderMap) -> bool {
    let connection_upgrade = connection_tokens(headers).any(|token| token.eq_ignore_ascii_case("upgrade"));
    let mut upgrades = headers.get_all(UPGRADE).iter();
    let websocket = match (upgrades.next(), upgrades.next()) {
        (Some(value), None) => value.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket"),
        _ => false,
    };
    connection_upgrade && websocket
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers.get_all(CONNECTION).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim)
}

/// The header names a `Connection` header lists (they are hop-by-hop too).
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    connection_tokens(headers).filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok()).collect()
}

fn remove_hop_by_hop(request: &mut RequestHeader, websocket: bool) {
    for name in connection_listed(&request.headers) {
        request.remove_header(&name);
    }
    for name in HOP_BY_HOP {
        request.remove_header(name);
    }
    if !websocket {
        request.remove_header(&UPGRADE);
    }
}

/// The client's `X-Request-Id` when there is exactly one and it is sane, else a fresh one (a per-process prefix
/// and a counter), as the gateway does.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let mut sent = headers.get_all(REQUEST_ID).iter();
    if let (Some(value), None) = (sent.next(), sent.next()) {
        let id = value.as_bytes();
        let sane = |b: &u8| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(b);
        if !id.is_empty() && id.len() <= 128 && id.iter().all(sane) {
            return value.clone();
        }
    }
    let prefix = *PREFIX.get_or_init(|| {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        (nanos as u64) ^ (u64::from(std::process::id()) << 40)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    HeaderValue::from_str(&format!("{prefix:016x}{n:016x}")).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("portcullis-pingora: {error}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> std::result::Result<(), String> {
    let args = parse_args()?;
    let text = std::fs::read_to_string(&args.config).map_err(|e| format!("{}: {e}", args.config))?;
    let config = Config::from_toml(&text).map_err(|e| format!("{}: {e}", args.config))?;
    if !matches!(config.mode(), Mode::Proxy) {
        return Err("the configuration must be in proxy mode (no forward_auth)".to_owned());
    }
    let upstream = Upstream::new(config.upstream.as_deref().ok_or("the configuration names no upstream")?)?;
    let trusted_proxies = config.trusted_proxies.iter().filter_map(|entry| parse_trusted_proxy(entry).ok()).collect();
    let (realm, limits, timeout) =
        (config.realm.clone(), config.limits.clone(), Duration::from_secs(config.upstream_timeout_secs));

    // The gateway's key sets fetch and refresh on tokio tasks. They live on a small runtime of their own, kept for
    // the life of the process; Pingora's runtimes only run the decisions.
    let keys = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("portcullis-keys")
        .enable_all()
        .build()
        .map_err(|e| format!("key runtime: {e}"))?;
    let gateway = keys.block_on(async { Gateway::new(config) }).map_err(|e| format!("{}: {e}", args.config))?;
    {
        let _entered = keys.enter();
        gateway.start_key_refresh();
    }

    let conf = ServerConf {
        threads: args.threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let proxy = Proxy {
        gateway,
        upstream,
        realm,
        trusted_proxies,
        max_headers: limits.max_headers,
        // hyper answers 431 when a head does not fit its read buffer, which is never under 8 KiB.
        max_header_bytes: limits.max_header_bytes.max(8192),
        timeout,
    };
    let mut service = pingora_proxy::http_proxy_service(&server.configuration, proxy);
    service.add_tcp(&args.listen);
    server.add_service(service);
    println!("portcullis-pingora listening on http://{} ({} thread(s))", args.listen, args.threads);
    // Never returns: the key runtime lives as long as the process.
    server.run_forever()
}
