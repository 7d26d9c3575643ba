//! The gateway's configuration: raw TOML input, checked into a [`Config`] with located, explained errors.

use portcullis::Requirement;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// What the gateway does with an allowed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Forward it to the upstream (reverse proxy).
    #[default]
    Proxy,
    /// Only decide: 200 with claim headers, or the refusal (nginx `auth_request`, Traefik, Caddy).
    ForwardAuth,
}

/// An issuer the gateway trusts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The issuer, exactly as in tokens (Auth0: with the trailing slash).
    pub issuer: String,
    /// Accepted audiences.
    pub audiences: Vec<String>,
    /// The JWKS URL; discovery when absent.
    #[serde(default)]
    pub jwks_uri: Option<String>,
}

/// One route.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
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
    #[serde(default)]
    pub require: Option<Requirement>,
    /// Pass the `Authorization` header upstream (default: stripped).
    #[serde(default)]
    pub forward_authorization: bool,
}

/// The raw configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the gateway listens.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Admin listener (`/healthz`, `/ready`); none when absent.
    #[serde(default)]
    pub admin_listen: Option<SocketAddr>,
    /// Proxy or forward-auth.
    #[serde(default)]
    pub mode: Mode,
    /// The upstream base URL (proxy mode).
    #[serde(default)]
    pub upstream: Option<String>,
    /// Upstream timeout in seconds.
    #[serde(default = "default_timeout")]
    pub upstream_timeout_secs: u64,
    /// Realm of the challenges.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Trusted issuers.
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
    /// Claim → header sent upstream (default `sub` → `X-Auth-Subject`, `scope` → `X-Auth-Scope`,
    /// `permissions` → `X-Auth-Permissions`).
    #[serde(default = "default_claim_headers")]
    pub claim_headers: BTreeMap<String, String>,
    /// Routes, first match wins.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Requests matching no route: refused (default) or treated as needing any valid token.
    #[serde(default)]
    pub unmatched: Unmatched,
}

/// What happens to a request no route matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
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
        ("sub".into(), "X-Auth-Subject".into()),
        ("scope".into(), "X-Auth-Scope".into()),
        ("permissions".into(), "X-Auth-Permissions".into()),
    ])
}

impl Config {
    /// Every field at its default, unchecked (no issuer yet): the base that command-line flags fill in.
    pub fn defaults() -> Self {
        Self {
            listen: default_listen(),
            admin_listen: None,
            mode: Mode::default(),
            upstream: None,
            upstream_timeout_secs: default_timeout(),
            realm: default_realm(),
            issuers: Vec::new(),
            claim_headers: default_claim_headers(),
            routes: Vec::new(),
            unmatched: Unmatched::default(),
        }
    }

    /// Parses a TOML file's text; errors name the line and column.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        config.check()?;
        Ok(config)
    }

    /// Checks what types cannot: at least one issuer with an audience, an upstream in proxy mode, valid header
    /// names and route paths.
    pub fn check(&self) -> Result<(), String> {
        if self.issuers.is_empty() {
            return Err("at least one [[issuers]] entry (or --issuer and --audience) is required".into());
        }
        for (i, issuer) in self.issuers.iter().enumerate() {
            if issuer.audiences.is_empty() {
                return Err(format!("issuers[{i}] ({}): at least one audience is required", issuer.issuer));
            }
        }
        if self.mode == Mode::Proxy {
            let upstream = self
                .upstream
                .as_deref()
                .ok_or("proxy mode needs an upstream (--upstream or upstream = \"http://…\")")?;
            if !upstream.starts_with("http://") {
                return Err(format!("upstream must be an http:// URL, got {upstream}"));
            }
        }
        for (claim, header) in &self.claim_headers {
            if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return Err(format!("claim_headers.{claim}: {header:?} is not a valid header name"));
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            if !route.path.starts_with('/') {
                return Err(format!("routes[{i}]: path must start with '/', got {:?}", route.path));
            }
            if route.public && route.require.is_some() {
                return Err(format!("routes[{i}] ({}): a public route cannot have a rule", route.path));
            }
            for method in &route.methods {
                if http::Method::from_bytes(method.as_bytes()).is_err() {
                    return Err(format!("routes[{i}] ({}): {method:?} is not an HTTP method", route.path));
                }
            }
        }
        Ok(())
    }
}

/// Whether `path` matches `pattern`: exact, `/prefix/*` (the prefix itself and anything below), or `{param}`
/// segments matching one non-empty segment.
///
/// ```
/// use portcullis_gateway::config::path_matches;
/// assert!(path_matches("/api/public", "/api/public"));
/// assert!(path_matches("/api/*", "/api/x/y"));
/// assert!(path_matches("/api/*", "/api"));
/// assert!(!path_matches("/api/*", "/apix"));
/// assert!(path_matches("/users/{id}/orders", "/users/42/orders"));
/// assert!(!path_matches("/users/{id}/orders", "/users//orders"));
/// ```
pub fn path_matches(pattern: &str, path: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix("/*") {
        return path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'));
    }
    if !pattern.contains('{') {
        return pattern == path;
    }
    let (mut want, mut got) = (pattern.split('/'), path.split('/'));
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') && !g.is_empty() => {}
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}
