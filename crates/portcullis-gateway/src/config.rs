//! The gateway's configuration: TOML input checked into a [`Config`], with every error located (line, column and
//! key path) and explained.
//!
//! [`TEMPLATE`] is the documented default configuration: every key with its default and a comment. `portcullis
//! check-config FILE` validates a file with [`Config::from_toml`].

use portcullis::Requirement;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The documented configuration template: every key, its default and what it does. It parses as a valid
/// configuration (with its example issuer and upstream).
///
/// ```
/// let config = portcullis_gateway::Config::from_toml(portcullis_gateway::config::TEMPLATE).unwrap();
/// assert_eq!(config.listen.port(), 8080);
/// ```
pub const TEMPLATE: &str = include_str!("template.toml");

/// The proxy in front of a forward-auth gateway. Each describes the original request in its own headers, and
/// passes the other proxies' headers through from the client untouched, so the gateway reads only the named
/// proxy's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FrontProxy {
    /// nginx `auth_request`: `X-Original-Method` and `X-Original-URI` (set by the documented configuration).
    /// nginx turns any answer but 2xx, 401 and 403 into a 500, so every refusal is answered 401 or 403.
    Nginx,
    /// Caddy `forward_auth`: `X-Forwarded-Method` and `X-Forwarded-Uri`.
    Caddy,
    /// Traefik ForwardAuth: `X-Forwarded-Method` and `X-Forwarded-Uri`.
    Traefik,
}

impl FrontProxy {
    /// Every front proxy, in the order their names are listed.
    pub const ALL: [FrontProxy; 3] = [FrontProxy::Nginx, FrontProxy::Caddy, FrontProxy::Traefik];

    /// The forwarding and override headers this proxy sets or clears itself on the way to the upstream (and to
    /// the gateway), lower case. A forward-auth request carrying another path or method override header
    /// (`X-Original-URL`, `X-HTTP-Method-Override`, …) is refused: the proxy would pass the client's copy on.
    ///
    /// ```
    /// use portcullis_gateway::FrontProxy;
    /// assert!(FrontProxy::Caddy.replaced_headers().contains(&"x-forwarded-uri"));
    /// assert!(!FrontProxy::Nginx.replaced_headers().contains(&"x-original-url"));
    /// ```
    pub fn replaced_headers(self) -> &'static [&'static str] {
        match self {
            // The documented nginx configuration sets or clears each of these for the upstream, and sets the
            // X-Original-* pair for the gateway.
            FrontProxy::Nginx => &[
                "forwarded",
                "x-forwarded-for",
                "x-forwarded-host",
                "x-forwarded-method",
                "x-forwarded-port",
                "x-forwarded-prefix",
                "x-forwarded-proto",
                "x-forwarded-server",
                "x-forwarded-uri",
                "x-original-method",
                "x-original-uri",
                "x-real-ip",
            ],
            // Caddy's reverse_proxy sets For, Proto and Host, and forward_auth Method and Uri.
            FrontProxy::Caddy => {
                &["x-forwarded-for", "x-forwarded-host", "x-forwarded-method", "x-forwarded-proto", "x-forwarded-uri"]
            }
            // Traefik (forwardedHeaders not trusted) sets these on every request it forwards; stripPrefix sets
            // X-Forwarded-Prefix.
            FrontProxy::Traefik => &[
                "x-forwarded-for",
                "x-forwarded-host",
                "x-forwarded-method",
                "x-forwarded-port",
                "x-forwarded-prefix",
                "x-forwarded-proto",
                "x-forwarded-server",
                "x-forwarded-uri",
                "x-real-ip",
            ],
        }
    }

    /// The name used by `--forward-auth`, `PORTCULLIS_FORWARD_AUTH` and the file.
    pub fn name(self) -> &'static str {
        match self {
            FrontProxy::Nginx => "nginx",
            FrontProxy::Caddy => "caddy",
            FrontProxy::Traefik => "traefik",
        }
    }
}

impl fmt::Display for FrontProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for FrontProxy {
    type Err = String;

    /// Parses a front proxy's name.
    ///
    /// ```
    /// use portcullis_gateway::FrontProxy;
    /// assert_eq!("caddy".parse::<FrontProxy>(), Ok(FrontProxy::Caddy));
    /// assert_eq!("".parse::<FrontProxy>().unwrap_err(), "name the proxy in front: nginx, caddy or traefik");
    /// ```
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        FrontProxy::ALL
            .into_iter()
            .find(|front| front.name() == name)
            .ok_or_else(|| "name the proxy in front: nginx, caddy or traefik".to_owned())
    }
}

/// What the gateway does with an allowed request: forward it, or answer the front proxy that asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Forward it to the upstream (reverse proxy).
    Proxy,
    /// Only decide, for this front proxy: 200 with claim headers, or the refusal.
    ForwardAuth(FrontProxy),
}

impl std::fmt::Display for Mode {
    /// How `check-config` and `serve` name the mode: `reverse proxy`, `forward-auth for nginx`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Proxy => f.write_str("reverse proxy"),
            Mode::ForwardAuth(front) => write!(f, "forward-auth for {front}"),
        }
    }
}

/// How request logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// An issuer the gateway trusts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct IssuerConfig {
    /// The issuer, exactly as in tokens (Auth0: with the trailing slash).
    pub issuer: String,
    /// Accepted audiences.
    pub audiences: Vec<String>,
    /// The JWKS URL, or a local JWKS file (`file:///path/jwks.json`, read at start and on reload); discovery
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Clock-skew allowance in seconds for `exp`, `nbf` and `iat` (default 60, at most a week).
    #[serde(default)]
    pub leeway_secs: Option<u64>,
    /// Refuse tokens issued longer ago than this many seconds (makes `iat` required).
    #[serde(default)]
    pub max_token_age_secs: Option<u64>,
    /// The header `typ` every token of this issuer must carry: `at+jwt` (RFC 9068) or `jwt`.
    #[serde(default)]
    pub typ: Option<String>,
    /// Algorithms accepted in this issuer's tokens (e.g. `["RS256"]`); each key still allows only its own. When
    /// empty, a token's `alg` must be the one its key declares.
    #[serde(default)]
    pub algorithms: Vec<String>,
}

impl IssuerConfig {
    /// An issuer accepting `audiences`, its keys found by discovery.
    pub fn new(issuer: impl Into<String>, audiences: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences: audiences.into_iter().map(Into::into).collect(),
            jwks_uri: None,
            leeway_secs: None,
            max_token_age_secs: None,
            typ: None,
            algorithms: Vec::new(),
        }
    }

    /// Takes the keys from this JWKS URL instead of discovery (`None`: discovery).
    #[must_use]
    pub fn with_jwks_uri(mut self, jwks_uri: Option<String>) -> Self {
        self.jwks_uri = jwks_uri;
        self
    }
}

/// One route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RouteConfig {
    /// `/exact`, `/prefix/*`, or a pattern with `{param}` segments.
    pub path: String,
    /// Methods (all when empty).
    #[serde(default)]
    pub methods: Vec<String>,
    /// No token needed.
    #[serde(default)]
    pub public: bool,
    /// The authorization rule for the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require: Option<Requirement>,
    /// Issuers whose tokens this route accepts (all configured issuers when empty).
    #[serde(default)]
    pub issuers: Vec<String>,
    /// Audiences this route accepts; the token must carry one of them (any configured audience when empty).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Pass the `Authorization` header upstream (default: stripped).
    #[serde(default)]
    pub forward_authorization: bool,
    /// Claim → header mapping for this route, instead of the global `claim_headers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_headers: Option<BTreeMap<String, String>>,
    /// In proxy mode, this route is a forward-auth endpoint for the named front proxy: it answers decisions about
    /// the original request, as that proxy describes it, instead of being proxied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_auth: Option<FrontProxy>,
    /// Match the path case-sensitively and with its trailing slash as written. By default routes match
    /// case-insensitively and ignore one trailing slash, as lenient upstreams (Express) route.
    #[serde(default)]
    pub strict_match: bool,
    /// Whether a token is needed: `required` (default), or `optional` — a request without any token passes
    /// without claim headers, while a token that is sent must be valid and meet the route's rules.
    #[serde(default)]
    pub auth: AuthMode,
    /// Where else the token may be sent: `{ cookie = "NAME" }` or `{ header = "NAME" }` (off by default).
    #[serde(default)]
    pub token_from: Option<TokenFrom>,
    /// Refuse tokens issued longer ago than this many seconds on this route (stricter than the issuer's).
    #[serde(default)]
    pub max_token_age_secs: Option<u64>,
    /// The header `typ` tokens must carry on this route (`at+jwt` or `jwt`).
    #[serde(default)]
    pub typ: Option<String>,
    /// CORS preflights (OPTIONS with `Origin` and `Access-Control-Request-Method`): `pass` forwards them to the
    /// upstream without a token, `answer` answers them at the gateway from `cors`. Absent: a preflight needs a
    /// token like any request.
    #[serde(default)]
    pub preflight: Option<Preflight>,
    /// The CORS policy the gateway answers preflights with (`preflight = "answer"`).
    #[serde(default)]
    pub cors: Option<CorsConfig>,
}

/// Whether a route needs a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuthMode {
    /// A valid token is needed.
    #[default]
    Required,
    /// A request without any token passes without claim headers; one with a token is verified as usual.
    Optional,
}

/// Where else than `Authorization: Bearer` a route takes the token from. Exactly one key is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TokenFrom {
    /// The cookie holding the bare token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// The header holding the bare token (e.g. `X-Access-Token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

/// What a route does with CORS preflights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Preflight {
    /// Forward them to the upstream without a token (claim headers removed).
    Pass,
    /// Answer them at the gateway from the route's `cors` table; the upstream never sees them.
    Answer,
}

/// The CORS policy of a route whose preflights the gateway answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CorsConfig {
    /// Origins allowed, compared exactly (`https://app.example.com`, scheme and port included).
    pub allowed_origins: Vec<String>,
    /// Methods allowed.
    pub allowed_methods: Vec<String>,
    /// Request headers allowed (`Authorization` is needed for bearer tokens), compared case-insensitively.
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    /// How long browsers may cache the answer, in seconds (`Access-Control-Max-Age`); not sent when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<u64>,
    /// Send `Access-Control-Allow-Credentials: true`, for pages that send cookies (`token_from = { cookie }`).
    #[serde(default)]
    pub allow_credentials: bool,
}

/// Bounds on what a client or an identity provider can make the gateway hold or wait for. Every default is safe
/// for a public listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Limits {
    /// Request line plus headers, in bytes; larger requests are answered 431 and the connection closed.
    pub max_header_bytes: usize,
    /// Request headers; more are answered 431.
    pub max_headers: usize,
    /// Seconds a client may take to send a request's headers, and to start the next request on a kept-alive
    /// connection; slower or idle connections are closed (slowloris).
    pub header_read_timeout_secs: u64,
    /// Connections served at once; further clients wait in the listen queue until one closes.
    pub max_connections: usize,
    /// Bearer token length in bytes; longer tokens are refused before any parsing.
    pub max_token_bytes: usize,
    /// How deep arrays and objects may nest in a token's header and claims (the claim set is level 1).
    pub max_json_depth: usize,
    /// JWKS (and discovery) response size in bytes; a larger response is refused and the last good set kept.
    pub max_jwks_bytes: usize,
    /// Keys in one JWKS; a set with more is refused and the last good set kept.
    pub max_keys_per_set: usize,
    /// Trusted issuers in one configuration.
    pub max_issuers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            header_read_timeout_secs: 30,
            max_connections: 10_000,
            max_token_bytes: portcullis::DEFAULT_MAX_TOKEN_LEN,
            max_json_depth: portcullis::DEFAULT_MAX_JSON_DEPTH,
            max_jwks_bytes: 1024 * 1024,
            max_keys_per_set: 128,
            max_issuers: 64,
        }
    }
}

/// The gateway's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Where the gateway listens.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Admin listener (`/healthz`, `/ready`, `/metrics`); none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<SocketAddr>,
    /// Serve the token debugger (`/debugger`) and the status page (`/status`) on the admin listener.
    #[serde(default = "yes")]
    pub admin_pages: bool,
    /// Forward-auth for this front proxy; a reverse proxy to `upstream` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_auth: Option<FrontProxy>,
    /// The upstream base URL (proxy mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Upstream timeout in seconds.
    #[serde(default = "default_timeout")]
    pub upstream_timeout_secs: u64,
    /// CA certificates (PEM) that `https://` upstreams are verified against; when set, only these (not the
    /// system's roots).
    #[serde(default)]
    pub upstream_ca: Option<PathBuf>,
    /// The listener's certificate chain (PEM, leaf first); with `tls_key`, the listener speaks HTTPS only.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Realm of the challenges.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Request log format.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Threads serving requests; 0 means one per CPU the process may run on. With one, the gateway runs on a
    /// single-threaded runtime, like one nginx worker.
    #[serde(default)]
    pub workers: usize,
    /// Trusted issuers.
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
    /// Claim → header sent upstream (default `iss` → `X-Auth-Issuer`, `sub` → `X-Auth-Subject`, `scope` →
    /// `X-Auth-Scope`, `permissions` → `X-Auth-Permissions`).
    #[serde(default = "default_claim_headers")]
    pub claim_headers: BTreeMap<String, String>,
    /// Routes, first match wins.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Addresses (CIDR blocks or single IPs) of proxies in front of the reverse proxy whose `X-Forwarded-For` is
    /// extended; from any other peer the chain starts anew with the peer's address.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Requests matching no route: refused (default) or treated as needing any valid token.
    #[serde(default)]
    pub unmatched: Unmatched,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
}

fn yes() -> bool {
    true
}

/// What happens to a request no route matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Unmatched {
    /// 404 without reaching the upstream.
    #[default]
    Deny,
    /// Any valid token lets it through.
    Authenticated,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_timeout() -> u64 {
    30
}

fn default_realm() -> String {
    "api".into()
}

fn default_claim_headers() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("iss".into(), "X-Auth-Issuer".into()),
        ("sub".into(), "X-Auth-Subject".into()),
        ("scope".into(), "X-Auth-Scope".into()),
        ("permissions".into(), "X-Auth-Permissions".into()),
    ])
}

/// A configuration error: what is wrong, at which key, and where in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigError {
    /// The key path, e.g. `routes[2].methods` (empty for the whole file).
    pub key: String,
    /// 1-based line and column in the file, when known.
    pub location: Option<(usize, usize)>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn at(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: key.into(), location: None, message: message.into() }
    }

    /// This error with the line and column of its key in the file `text` (when the key is in the file).
    pub fn located_in(self, text: &str) -> Self {
        match self.location {
            Some(_) => self,
            None => Self { location: locate(text, &self.key), ..self },
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((line, column)) = self.location {
            write!(f, "line {line}, column {column}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The number of threads [`Config::workers`] asks for: itself, or when 0 the CPUs this process may run on
    /// (its affinity and cgroup quota), at least 1.
    ///
    /// ```
    /// let mut config = portcullis_gateway::Config::defaults();
    /// config.workers = 3;
    /// assert_eq!(config.worker_threads(), 3);
    /// ```
    pub fn worker_threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }

    /// Reverse proxy, or forward-auth for the named front proxy.
    ///
    /// ```
    /// use portcullis_gateway::{Config, FrontProxy, Mode};
    /// let mut config = Config::defaults();
    /// config.forward_auth = Some(FrontProxy::Nginx);
    /// assert_eq!(config.mode(), Mode::ForwardAuth(FrontProxy::Nginx));
    /// ```
    pub fn mode(&self) -> Mode {
        match self.forward_auth {
            Some(front) => Mode::ForwardAuth(front),
            None => Mode::Proxy,
        }
    }

    /// Every field at its default, unchecked (no issuer yet): the base that command-line flags fill in.
    pub fn defaults() -> Self {
        Self {
            listen: default_listen(),
            admin_listen: None,
            admin_pages: true,
            forward_auth: None,
            upstream: None,
            upstream_timeout_secs: default_timeout(),
            upstream_ca: None,
            tls_cert: None,
            tls_key: None,
            realm: default_realm(),
            log_format: LogFormat::default(),
            workers: 0,
            issuers: Vec::new(),
            claim_headers: default_claim_headers(),
            routes: Vec::new(),
            trusted_proxies: Vec::new(),
            unmatched: Unmatched::default(),
            limits: Limits::default(),
        }
    }

    /// Parses a TOML file's text without the checks of [`Config::check`] (flags may still complete it).
    pub fn parse_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let location = e.span().map(|span| line_column(text, span.start));
            let mut message = e.message().trim_end().to_owned();
            if message.starts_with("unknown field `mode`") {
                message = "`mode` is gone: name the proxy in front with forward_auth = \"nginx\", \"caddy\" or \
                           \"traefik\", or leave it out for a reverse proxy"
                    .to_owned();
            }
            ConfigError { key: String::new(), location, message }
        })
    }

    /// Parses and checks a TOML file's text; errors name the line, column and key.
    ///
    /// ```
    /// let err = portcullis_gateway::Config::from_toml("upstream = \"http://127.0.0.1:3000\"\n\
    ///     [[issuers]]\nissuer = \"https://tenant.example/\"\naudiences = [\"api\"]\n\
    ///     [[routes]]\npath = \"/a\"\nmethods = [\"G T\"]\n").unwrap_err();
    /// assert_eq!(err.to_string(), "line 7, column 12: routes[0].methods[0]: \"G T\" is not an HTTP method");
    /// ```
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config = Self::parse_toml(text)?;
        config.check().map_err(|e| e.located_in(text))?;
        Ok(config)
    }

    /// Checks what types cannot: at least one issuer with an audience, an upstream in proxy mode, valid header
    /// names, methods and route paths, and per-route issuers and audiences that the gateway trusts.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.issuers.is_empty() {
            return Err(ConfigError::at(
                "issuers",
                "at least one [[issuers]] entry (or --issuer and --audience) is required",
            ));
        }
        for (i, issuer) in self.issuers.iter().enumerate() {
            if !issuer.issuer.starts_with("https://") && !issuer.issuer.starts_with("http://") {
                return Err(ConfigError::at(format!("issuers[{i}].issuer"), "the issuer must be an http(s) URL"));
            }
            if issuer.audiences.is_empty() {
                return Err(ConfigError::at(
                    format!("issuers[{i}].audiences"),
                    format!("{}: at least one audience is required", issuer.issuer),
                ));
            }
        }
        if self.forward_auth.is_none() {
            let upstream = self.upstream.as_deref().ok_or_else(|| {
                ConfigError::at("upstream", "proxy mode needs an upstream (--upstream or upstream = \"http://…\")")
            })?;
            let scheme = upstream.starts_with("http://") || upstream.starts_with("https://");
            if !scheme || upstream.parse::<http::Uri>().is_err() {
                return Err(ConfigError::at(
                    "upstream",
                    format!("must be an http:// or https:// URL, got {upstream:?}"),
                ));
            }
        }
        if self.upstream_timeout_secs == 0 {
            return Err(ConfigError::at("upstream_timeout_secs", "must be at least 1"));
        }
        crate::options::check(self)?;
        self.check_limits()?;
        for (i, entry) in self.trusted_proxies.iter().enumerate() {
            crate::headers::parse_trusted_proxy(entry)
                .map_err(|message| ConfigError::at(format!("trusted_proxies[{i}]"), format!("{entry:?}: {message}")))?;
        }
        check_claim_headers("claim_headers", &self.claim_headers)?;
        for (i, route) in self.routes.iter().enumerate() {
            self.check_route(i, route)?;
        }
        crate::tls::check(self)?;
        Ok(())
    }

    fn check_limits(&self) -> Result<(), ConfigError> {
        let limits = &self.limits;
        let at_least = |key: &str, value: u64, minimum: u64, unit: &str| {
            if value < minimum {
                Err(ConfigError::at(format!("limits.{key}"), format!("must be at least {minimum}{unit}")))
            } else {
                Ok(())
            }
        };
        // hyper needs room for one read buffer (8 KiB); a bearer token must fit in the header block.
        at_least("max_header_bytes", limits.max_header_bytes as u64, 8192, " bytes")?;
        at_least("max_headers", limits.max_headers as u64, 8, "")?;
        at_least("header_read_timeout_secs", limits.header_read_timeout_secs, 1, " second")?;
        at_least("max_connections", limits.max_connections as u64, 1, "")?;
        at_least("max_token_bytes", limits.max_token_bytes as u64, 256, " bytes")?;
        at_least("max_json_depth", limits.max_json_depth as u64, 2, " levels")?;
        if limits.max_json_depth > portcullis::MAX_JSON_DEPTH_CEILING {
            return Err(ConfigError::at(
                "limits.max_json_depth",
                format!("must be at most {} levels", portcullis::MAX_JSON_DEPTH_CEILING),
            ));
        }
        at_least("max_jwks_bytes", limits.max_jwks_bytes as u64, 1024, " bytes")?;
        at_least("max_keys_per_set", limits.max_keys_per_set as u64, 1, "")?;
        at_least("max_issuers", limits.max_issuers as u64, 1, "")?;
        if self.issuers.len() > limits.max_issuers {
            return Err(ConfigError::at(
                "issuers",
                format!(
                    "{} issuers configured, more than limits.max_issuers = {}",
                    self.issuers.len(),
                    limits.max_issuers
                ),
            ));
        }
        Ok(())
    }

    fn check_route(&self, i: usize, route: &RouteConfig) -> Result<(), ConfigError> {
        crate::policy::Pattern::parse(&route.path, route.strict_match).map_err(|message| {
            ConfigError::at(format!("routes[{i}].path"), format!("{message}, got {:?}", route.path))
        })?;
        if route.public && (route.require.is_some() || !route.issuers.is_empty() || !route.audiences.is_empty()) {
            return Err(ConfigError::at(
                format!("routes[{i}].public"),
                format!("{}: a public route cannot also have a rule, issuers or audiences", route.path),
            ));
        }
        if let Some(mapping) = &route.claim_headers {
            check_claim_headers(&format!("routes[{i}].claim_headers"), mapping)?;
        }
        if route.forward_auth.is_some() {
            if self.forward_auth.is_some() {
                return Err(ConfigError::at(
                    format!("routes[{i}].forward_auth"),
                    "only in proxy mode: with a top-level forward_auth every request is a decision already",
                ));
            }
            let conflicting = route.public
                || route.require.is_some()
                || !route.issuers.is_empty()
                || !route.audiences.is_empty()
                || route.forward_authorization
                || route.claim_headers.is_some();
            if conflicting {
                return Err(ConfigError::at(
                    format!("routes[{i}].forward_auth"),
                    format!(
                        "{}: a forward-auth endpoint takes no other settings; the routes matching the original \
                         request decide",
                        route.path
                    ),
                ));
            }
        }
        for (j, method) in route.methods.iter().enumerate() {
            if http::Method::from_bytes(method.as_bytes()).is_err() || method.contains(' ') {
                return Err(ConfigError::at(
                    format!("routes[{i}].methods[{j}]"),
                    format!("{method:?} is not an HTTP method"),
                ));
            }
        }
        for (j, issuer) in route.issuers.iter().enumerate() {
            if !self.issuers.iter().any(|known| &known.issuer == issuer) {
                return Err(ConfigError::at(
                    format!("routes[{i}].issuers[{j}]"),
                    format!("{issuer:?} is not one of the [[issuers]]"),
                ));
            }
        }
        for (j, audience) in route.audiences.iter().enumerate() {
            let trusted = self
                .issuers
                .iter()
                .filter(|known| route.issuers.is_empty() || route.issuers.contains(&known.issuer))
                .any(|known| known.audiences.contains(audience));
            if !trusted {
                return Err(ConfigError::at(
                    format!("routes[{i}].audiences[{j}]"),
                    format!("{audience:?} is not an audience of the route's issuers"),
                ));
            }
        }
        Ok(())
    }
}

fn check_claim_headers(key: &str, mapping: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    for (claim, header) in mapping {
        if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            return Err(ConfigError::at(format!("{key}.{claim}"), format!("{header:?} is not a valid header name")));
        }
    }
    Ok(())
}

/// The 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Where the value at `key` (`a.b[2].c`) starts in `text`, or its closest located parent.
fn locate(text: &str, key: &str) -> Option<(usize, usize)> {
    use toml::de::{DeTable, DeValue};
    let root = DeTable::parse(text).ok()?;
    let mut span = None;
    let mut table = Some(root.get_ref());
    for part in key.split('.').filter(|p| !p.is_empty()) {
        let (name, indexes) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        let (_, found) = table?.iter().find(|(k, _)| k.get_ref().as_ref() == name)?;
        span = Some(found.span());
        let mut value = Some(found.get_ref());
        for index in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            let DeValue::Array(items) = value? else { break };
            let item = items.get(index.parse::<usize>().ok()?)?;
            span = Some(item.span());
            value = Some(item.get_ref());
        }
        table = match value {
            Some(DeValue::Table(t)) => Some(t),
            _ => None,
        };
    }
    span.map(|span| line_column(text, span.start))
}
