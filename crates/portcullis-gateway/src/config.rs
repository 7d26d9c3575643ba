//! The gateway's configuration: TOML input checked into a [`Config`], with every error located (line, column and
//! key path) and explained.
//!
//! [`TEMPLATE`] is the documented default configuration: every key with its default and a comment. `portcullis
//! check-config FILE` validates a file with [`Config::from_toml`].

pub use crate::store_config::{ReplayOnFailure, RevocationConfig, StoreConfig};
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
    /// Envoy's ext_authz filter in HTTP mode: the check request carries the original method, and the original
    /// target after `envoy_path_prefix`. Refusals keep their status (Envoy passes any status on).
    Envoy,
}

impl FrontProxy {
    /// Every front proxy, in the order their names are listed.
    pub const ALL: [FrontProxy; 4] = [FrontProxy::Nginx, FrontProxy::Caddy, FrontProxy::Traefik, FrontProxy::Envoy];

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
            // Envoy sets X-Forwarded-Proto on every request, and X-Forwarded-For with use_remote_address; it
            // describes the original request in the check request's own method and target.
            FrontProxy::Envoy => &["x-forwarded-for", "x-forwarded-proto"],
        }
    }

    /// The name used by `--forward-auth`, `PORTCULLIS_FORWARD_AUTH` and the file.
    pub fn name(self) -> &'static str {
        match self {
            FrontProxy::Nginx => "nginx",
            FrontProxy::Caddy => "caddy",
            FrontProxy::Traefik => "traefik",
            FrontProxy::Envoy => "envoy",
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
    /// assert_eq!("".parse::<FrontProxy>().unwrap_err(), "name the proxy in front: nginx, caddy, traefik or envoy");
    /// ```
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        FrontProxy::ALL
            .into_iter()
            .find(|front| front.name() == name)
            .ok_or_else(|| "name the proxy in front: nginx, caddy, traefik or envoy".to_owned())
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
    /// DPoP for this issuer's tokens (`off`, `allowed`, `required`), instead of `[dpop].mode`; a route's own
    /// `dpop` beats it.
    #[serde(default)]
    pub dpop: Option<DpopSetting>,
    /// A token profile this issuer's tokens must follow: `rfc9068` (JWT access tokens: `typ` `at+jwt` and the
    /// claims `iss exp aud sub client_id iat jti`).
    #[serde(default)]
    pub profile: Option<Profile>,
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
            dpop: None,
            profile: None,
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
    /// DPoP on this route (`off`, `allowed`, `required`), instead of the token issuer's or `[dpop].mode`.
    #[serde(default)]
    pub dpop: Option<DpopSetting>,
}

/// Whether DPoP-bound tokens (RFC 9449) are accepted: the value of `[dpop].mode`, and of `dpop` per issuer and
/// per route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DpopSetting {
    /// Bearer tokens only; `Authorization: DPoP` is refused.
    #[default]
    Off,
    /// Bearer or DPoP; a DPoP-bound token (`cnf.jkt`) always needs its proof.
    Allowed,
    /// DPoP only: every token must be bound and come with its proof.
    Required,
}

impl DpopSetting {
    /// The name as written in the file: `off`, `allowed`, `required`.
    pub fn name(self) -> &'static str {
        match self {
            DpopSetting::Off => "off",
            DpopSetting::Allowed => "allowed",
            DpopSetting::Required => "required",
        }
    }
}

/// A token profile an issuer's tokens must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Profile {
    /// RFC 9068 JWT access tokens: `typ` `at+jwt` and the claims `iss exp aud sub client_id iat jti`.
    #[serde(rename = "rfc9068")]
    Rfc9068,
}

/// The `[dpop]` table: how DPoP proofs (RFC 9449) are checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct DpopConfig {
    /// The mode of routes and issuers that set none: `off` (default), `allowed` or `required`.
    pub mode: DpopSetting,
    /// Proof algorithms accepted (asymmetric only); every asymmetric algorithm portcullis verifies when empty.
    pub algorithms: Vec<String>,
    /// How old a proof may be (its `iat`), in seconds.
    pub max_age_secs: u64,
    /// How far in the future a proof's `iat` may be, in seconds (clock skew).
    pub leeway_secs: u64,
    /// Proof ids (`jti`) remembered against replay; the oldest are dropped beyond this.
    pub replay_capacity: u64,
    /// A file holding the secret (at least 32 bytes) server nonces are derived from; nonces are required when
    /// set. Replicas with the same secret accept each other's nonces.
    pub nonce_secret_file: Option<PathBuf>,
}

impl Default for DpopConfig {
    fn default() -> Self {
        Self {
            mode: DpopSetting::Off,
            algorithms: Vec::new(),
            max_age_secs: 300,
            leeway_secs: 5,
            replay_capacity: 100_000,
            nonce_secret_file: None,
        }
    }
}

/// The `[resource_metadata]` table: the OAuth protected-resource metadata (RFC 9728) the gateway publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ResourceMetadataConfig {
    /// The resource identifier: an https (or http) URL under `public_url`'s origin, the audience tokens carry.
    pub resource: String,
    /// The authorization servers (issuer URLs) that issue tokens for it.
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    /// The scopes it understands.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// A human-readable name.
    #[serde(default)]
    pub resource_name: Option<String>,
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
    /// With `forward_auth = "envoy"`: the `path_prefix` of Envoy's HTTP ext_authz service, taken off each check
    /// request's target to give the original target (none by default).
    #[serde(default)]
    pub envoy_path_prefix: Option<String>,
    /// Where Envoy's gRPC ext_authz service (`envoy.service.auth.v3.Authorization/Check`, plaintext HTTP/2)
    /// listens, next to the HTTP listener; none when absent.
    #[serde(default)]
    pub ext_authz_grpc: Option<SocketAddr>,
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
    /// The external base URL clients use (`https://api.example.com`): the origin of every DPoP `htu` and of the
    /// `resource_metadata` URL in challenges, never taken from `Host`. Required for DPoP and resource metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// DPoP proof checks (RFC 9449).
    #[serde(default)]
    pub dpop: DpopConfig,
    /// Where replicas share DPoP replay entries and revocations (`[store]`): Redis, or memory by default.
    #[serde(default)]
    pub store: StoreConfig,
    /// The revocation endpoint on the admin listener and whose tokens may call it (`[revocation]`); none when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<RevocationConfig>,
    /// Protected-resource metadata (RFC 9728), served at `/.well-known/oauth-protected-resource`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_metadata: Option<ResourceMetadataConfig>,
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

/// A configuration error (or warning): what is wrong, at which key, and where in the file.
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
    /// An error at the key path `key` (`routes[2].require`), not yet located in a file.
    pub fn at(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: key.into(), location: None, message: message.into() }
    }

    /// This error with the line and column of its key in the file `text` (when the key is in the file).
    pub fn located_in(self, text: &str) -> Self {
        match self.location {
            Some(_) => self,
            None => Self { location: locate(text, &self.key), ..self },
        }
    }

    /// The error as a compiler prints it: `FILE:LINE:COLUMN: key.path: message` (`FILE: key.path: message` when
    /// it has no location).
    ///
    /// ```
    /// let error = portcullis_gateway::ConfigError::at("routes[0].path", "must start with '/'");
    /// assert_eq!(error.render("gateway.toml"), "gateway.toml: routes[0].path: must start with '/'");
    /// ```
    pub fn render(&self, file: &str) -> String {
        let mut line = file.to_owned();
        if let Some((row, column)) = self.location {
            line.push_str(&format!(":{row}:{column}"));
        }
        line.push_str(": ");
        if !self.key.is_empty() {
            line.push_str(&self.key);
            line.push_str(": ");
        }
        line.push_str(&self.message);
        line
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

/// Every error of one configuration, in file order (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// `Ok` when `errors` is empty; otherwise the errors, sorted by their place in the file.
    pub fn check(mut errors: Vec<ConfigError>) -> Result<(), Self> {
        if errors.is_empty() {
            return Ok(());
        }
        errors.sort_by_key(|error| error.location.unwrap_or((usize::MAX, usize::MAX)));
        Err(Self(errors))
    }

    /// The errors, in file order.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// The errors, each with the line and column of its key in the file `text`, in file order.
    #[must_use]
    pub fn located_in(self, text: &str) -> Self {
        let mut errors: Vec<ConfigError> = self.0.into_iter().map(|error| error.located_in(text)).collect();
        errors.sort_by_key(|error| error.location.unwrap_or((usize::MAX, usize::MAX)));
        Self(errors)
    }

    /// One line per error, as a compiler prints them: `FILE:LINE:COLUMN: key.path: message`.
    pub fn render(&self, file: &str) -> String {
        self.0.iter().map(|error| error.render(file)).collect::<Vec<_>>().join("\n")
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self(vec![error])
    }
}

impl fmt::Display for ConfigErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

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
            envoy_path_prefix: None,
            ext_authz_grpc: None,
            upstream: None,
            upstream_timeout_secs: default_timeout(),
            upstream_ca: None,
            tls_cert: None,
            tls_key: None,
            realm: default_realm(),
            public_url: None,
            dpop: DpopConfig::default(),
            store: StoreConfig::default(),
            revocation: None,
            resource_metadata: None,
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

    /// Parses a TOML file's text without the checks of [`Config::check`] (flags may still complete it). Every
    /// unknown key (with the known key it resembles, and a note when TOML's scoping put a top-level key into a
    /// table) and every value of the wrong type is reported, each with its line, column and key path.
    ///
    /// ```
    /// let errors = portcullis_gateway::Config::parse_toml("listen = 8080\n[[issuers]]\nissuer = \"https://i/\"\naudience = [\"a\"]\n").unwrap_err();
    /// let lines: Vec<String> = errors.errors().iter().map(|e| e.render("f.toml")).collect();
    /// assert!(lines[0].starts_with("f.toml:1:10: listen: invalid type: integer `8080`"), "{lines:?}");
    /// assert!(lines[1].starts_with("f.toml:4:1: issuers[0]: unknown field `audience`"), "{lines:?}");
    /// assert!(lines[1].ends_with("did you mean `audiences`?"), "{lines:?}");
    /// ```
    pub fn parse_toml(text: &str) -> Result<Self, ConfigErrors> {
        let (config, errors, _) = crate::load::parse(text);
        ConfigErrors::check(errors)?;
        config.ok_or_else(|| ConfigError::at("", "the file cannot be read").into())
    }

    /// Parses and checks a TOML file's text; errors name the line, column and key.
    ///
    /// ```
    /// let err = portcullis_gateway::Config::from_toml("upstream = \"http://127.0.0.1:3000\"\n\
    ///     [[issuers]]\nissuer = \"https://tenant.example/\"\naudiences = [\"api\"]\n\
    ///     [[routes]]\npath = \"/a\"\nmethods = [\"G T\"]\n").unwrap_err();
    /// assert_eq!(err.to_string(), "line 7, column 12: routes[0].methods[0]: \"G T\" is not an HTTP method");
    /// ```
    pub fn from_toml(text: &str) -> Result<Self, ConfigErrors> {
        Self::from_toml_with(text, |_| {})
    }

    /// Parses a TOML file's text, lets `complete` fill in what the file leaves to the command line (flags and
    /// environment variables), and checks the result. Every error is reported at once: the file's unknown keys
    /// together with what [`Config::check`] finds. A value of the wrong type in a route or an issuer is reported and
    /// that element's own checks are left out; at the top level it stops before the checks.
    ///
    /// ```
    /// let text = "upstrem = \"http://127.0.0.1:3000\"\n[claim_headers]\nsub = \"Transfer-Encoding\"\n";
    /// let errors = portcullis_gateway::Config::from_toml_with(text, |config| {
    ///     config.issuers.push(portcullis_gateway::IssuerConfig::new("https://tenant.example/", ["api"]));
    /// })
    /// .unwrap_err();
    /// let keys: Vec<&str> = errors.errors().iter().map(|e| e.key.as_str()).collect();
    /// assert_eq!(keys, ["", "claim_headers.sub", "upstream"]);
    /// ```
    pub fn from_toml_with(text: &str, complete: impl FnOnce(&mut Config)) -> Result<Self, ConfigErrors> {
        let (config, mut errors, partial) = crate::load::parse(text);
        let Some(mut config) = config else {
            ConfigErrors::check(errors)?;
            return Err(ConfigError::at("", "the file cannot be read").into());
        };
        complete(&mut config);
        if let Err(found) = config.check() {
            // A route or issuer read with a value left out is already refused; what the checks say about it (or
            // about others in its light, such as a route it would shadow) could be wrong.
            let concerns_partial = |error: &ConfigError| {
                partial.iter().any(|element| {
                    error.message.contains(element.as_str())
                        || error
                            .key
                            .strip_prefix(element.as_str())
                            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
                })
            };
            errors.extend(found.located_in(text).0.into_iter().filter(|error| !concerns_partial(error)));
        }
        ConfigErrors::check(errors)?;
        Ok(config)
    }

    /// Checks everything the gateway would refuse to start with (short of reading files and binding addresses):
    /// issuers, audiences and key locations as the verifier and key sets take them, the upstream, limits,
    /// header names (claim headers that are framing, routing or hop-by-hop headers refused), methods, route paths
    /// and rules, routes an earlier route shadows, and per-route issuers and audiences that the gateway trusts.
    /// Every error is reported, not only the first.
    pub fn check(&self) -> Result<(), ConfigErrors> {
        let errors = crate::validate::check(self);
        ConfigErrors::check(errors)
    }

    /// What is valid but probably not meant, e.g. issuers without any route (every request then meets
    /// `unmatched`). `serve` logs these and `check-config` prints them; neither refuses the file.
    pub fn warnings(&self) -> Vec<ConfigError> {
        crate::validate::warnings(self)
    }
}

/// The 1-based line and column of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
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
