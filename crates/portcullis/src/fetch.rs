//! Fetching key sets and discovery documents over HTTP, with the hygiene a security component needs.
//!
//! Every fetch has a timeout (default 5 s), a body cap (default 1 MiB, enforced while streaming), follows at most
//! three redirects and only within the origin of the first URL (same scheme, host and port; an explicit default
//! port is the same port), asks for `application/jwk-set+json, application/json`, and requires HTTPS except for
//! loopback addresses unless plain HTTP is explicitly allowed.

use reqwest::{Url, redirect};
use std::net::IpAddr;
use std::time::Duration;

/// Rules for one fetch.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FetchPolicy {
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Largest body accepted, in bytes.
    pub max_body: usize,
    /// Allow `http://` to non-loopback hosts (never needed with a real identity provider).
    pub allow_insecure_http: bool,
}

impl FetchPolicy {
    /// Sets [`timeout`](Self::timeout): whole-request timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`max_body`](Self::max_body): largest body accepted, in bytes.
    #[must_use]
    pub fn with_max_body(mut self, max_body: usize) -> Self {
        self.max_body = max_body;
        self
    }

    /// Sets [`allow_insecure_http`](Self::allow_insecure_http): allow `http://` to non-loopback hosts.
    #[must_use]
    pub fn with_allow_insecure_http(mut self, allow_insecure_http: bool) -> Self {
        self.allow_insecure_http = allow_insecure_http;
        self
    }
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(5), max_body: 1024 * 1024, allow_insecure_http: false }
    }
}

/// Why a fetch failed. The message never contains the response body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL is not acceptable (scheme, syntax).
    #[error("refusing {url}: {why}")]
    #[non_exhaustive]
    Refused {
        /// The URL.
        url: String,
        /// Why.
        why: String,
    },
    /// Connection, TLS, timeout or redirect failure.
    #[error("fetching {url} failed: {why}")]
    #[non_exhaustive]
    Transport {
        /// The URL.
        url: String,
        /// What went wrong.
        why: String,
    },
    /// The server answered with a non-success status.
    #[error("{url} answered HTTP {status}")]
    #[non_exhaustive]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The body exceeded the cap.
    #[error("{url} sent more than {limit} bytes")]
    #[non_exhaustive]
    TooLarge {
        /// The URL.
        url: String,
        /// The cap.
        limit: usize,
    },
}

/// A fetched body with the response's `Cache-Control` header, if any.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Fetched {
    /// The body bytes.
    pub body: Vec<u8>,
    /// The raw `Cache-Control` header value.
    pub cache_control: Option<String>,
}

/// Whether `url`'s host is a loopback address (`127.0.0.0/8`, `::1`, or `localhost`).
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Checks a URL against the policy without fetching it.
pub(crate) fn check_url(url: &str, policy: &FetchPolicy) -> Result<Url, FetchError> {
    let refused = |why: &str| FetchError::Refused { url: url.to_owned(), why: why.to_owned() };
    let parsed = Url::parse(url).map_err(|e| refused(&e.to_string()))?;
    match parsed.scheme() {
        "https" => {}
        "http" if policy.allow_insecure_http || is_loopback(&parsed) => {}
        "http" => {
            return Err(refused("plain HTTP is only allowed for loopback addresses; use https"));
        }
        _ => return Err(refused("only https URLs are supported")),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(refused("credentials in the URL are not allowed"));
    }
    Ok(parsed)
}

/// Whether a fetch of `from` may follow a redirect to `to`: only within the same origin, so the same scheme (no
/// downgrade from `https` to `http`), host and port (an explicit default port is the same port). `Err` says why
/// not.
pub(crate) fn check_redirect(from: &Url, to: &Url) -> Result<(), &'static str> {
    if from.scheme() != to.scheme() {
        return Err(match (from.scheme(), to.scheme()) {
            ("https", "http") => "redirect from https to http refused",
            _ => "redirect to another scheme refused",
        });
    }
    if from.host() != to.host() {
        return Err("redirect to another host refused");
    }
    if from.port_or_known_default() != to.port_or_known_default() {
        return Err("redirect to another port refused");
    }
    Ok(())
}

/// An HTTP client for key material: reuse one per process.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    policy: FetchPolicy,
}

impl Fetcher {
    /// Builds a client under `policy`.
    pub fn new(policy: FetchPolicy) -> Result<Self, FetchError> {
        let same_origin = redirect::Policy::custom(|attempt| {
            let checked = match attempt.previous().first() {
                _ if attempt.previous().len() > 3 => Err("too many redirects"),
                Some(first) => check_redirect(first, attempt.url()),
                None => Err("redirect without an origin refused"),
            };
            match checked {
                Ok(()) => attempt.follow(),
                Err(why) => attempt.error(why),
            }
        });
        let client = reqwest::Client::builder()
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout)
            .redirect(same_origin)
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Transport { url: String::new(), why: e.to_string() })?;
        Ok(Self { client, policy })
    }

    /// The policy in force.
    pub fn policy(&self) -> &FetchPolicy {
        &self.policy
    }

    /// GETs `url`, accepting a JSON body.
    pub async fn get(&self, url: &str) -> Result<Fetched, FetchError> {
        let parsed = check_url(url, &self.policy)?;
        let transport = |e: reqwest::Error| FetchError::Transport { url: url.to_owned(), why: describe(e) };
        let mut response = self
            .client
            .get(parsed)
            .header(reqwest::header::ACCEPT, "application/jwk-set+json, application/json")
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status { url: url.to_owned(), status: status.as_u16() });
        }
        let too_large = || FetchError::TooLarge { url: url.to_owned(), limit: self.policy.max_body };
        if response.content_length().is_some_and(|len| len > self.policy.max_body as u64) {
            return Err(too_large());
        }
        let cache_control =
            response.headers().get(reqwest::header::CACHE_CONTROL).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > self.policy.max_body {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched { body, cache_control })
    }
}

/// A reqwest error with its sources, without the URL repeated.
fn describe(error: reqwest::Error) -> String {
    let timed_out = error.is_timeout();
    let error = error.without_url();
    let mut text = if timed_out { "timed out".to_owned() } else { error.to_string() };
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_rules() {
        let policy = FetchPolicy::default();
        assert!(check_url("https://tenant.auth0.com/.well-known/jwks.json", &policy).is_ok());
        assert!(check_url("http://127.0.0.1:9/jwks", &policy).is_ok());
        assert!(check_url("http://tenant.auth0.com/jwks", &policy).is_err());
        assert!(check_url("file:///etc/passwd", &policy).is_err());
        assert!(check_url("https://user:pw@host/", &policy).is_err());
        let lax = FetchPolicy { allow_insecure_http: true, ..FetchPolicy::default() };
        assert!(check_url("http://idp.internal/jwks", &lax).is_ok());
    }

    fn url(s: &str) -> Url {
        s.parse().unwrap()
    }

    #[test]
    fn redirects_stay_within_the_origin() {
        let from = url("https://idp.example/.well-known/jwks.json");
        for same in ["https://idp.example/keys", "https://IDP.example:443/keys?v=2", "https://idp.example/"] {
            assert_eq!(check_redirect(&from, &url(same)), Ok(()), "{same}");
        }
        let loopback = url("http://127.0.0.1:8080/jwks");
        assert_eq!(check_redirect(&loopback, &url("http://127.0.0.1:8080/moved")), Ok(()));
        for (to, why) in [
            ("https://evil.example/keys", "redirect to another host refused"),
            ("https://sub.idp.example/keys", "redirect to another host refused"),
            ("https://93.184.216.34/keys", "redirect to another host refused"),
            ("http://idp.example/keys", "redirect from https to http refused"),
            ("http://idp.example:443/keys", "redirect from https to http refused"),
            ("ftp://idp.example/keys", "redirect to another scheme refused"),
            ("https://idp.example:8443/keys", "redirect to another port refused"),
        ] {
            assert_eq!(check_redirect(&from, &url(to)), Err(why), "{to}");
        }
        assert_eq!(
            check_redirect(&loopback, &url("http://127.0.0.1:8081/jwks")),
            Err("redirect to another port refused")
        );
        assert_eq!(
            check_redirect(&loopback, &url("http://localhost:8080/jwks")),
            Err("redirect to another host refused")
        );
        assert_eq!(
            check_redirect(&loopback, &url("https://127.0.0.1:8080/jwks")),
            Err("redirect to another scheme refused")
        );
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback(&"http://127.0.0.1:4000/".parse().unwrap()));
        assert!(is_loopback(&"http://[::1]/".parse().unwrap()));
        assert!(is_loopback(&"http://localhost/".parse().unwrap()));
        assert!(!is_loopback(&"http://example.com/".parse().unwrap()));
    }

    #[test]
    fn redirects_stay_in_the_origin() {
        let url = |s: &str| s.parse().unwrap();
        let from = url("https://idp.example/.well-known/jwks.json");
        assert!(check_redirect(&from, &url("https://idp.example:443/keys")).is_ok());
        assert_eq!(check_redirect(&from, &url("http://idp.example/keys")), Err("redirect from https to http refused"));
    }
}
