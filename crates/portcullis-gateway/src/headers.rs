//! The headers the gateway owns: the claim headers it sets (managed headers) and the forwarding headers that
//! describe the hop to the upstream (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`).
//!
//! Names are compared case-insensitively and with `_` equal to `-`: CGI-style servers (WSGI, PHP, Rack) turn
//! `X_Auth_Subject` into the same `HTTP_X_AUTH_SUBJECT` variable as `X-Auth-Subject`, so every spelling of a
//! managed name is the managed header.

use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use std::net::IpAddr;

/// Whether two header names are the same once case is folded and `_` read as `-`.
pub(crate) fn same_name(a: &[u8], b: &[u8]) -> bool {
    let fold = |b: &u8| if *b == b'_' { b'-' } else { b.to_ascii_lowercase() };
    a.len() == b.len() && a.iter().map(fold).eq(b.iter().map(fold))
}

/// The lower-case spellings of `name` other than itself that differ only in `-` against `_` (`x_auth_subject`,
/// `x-auth_subject`, … for `x-auth-subject`), for a front proxy that removes headers by exact name without having
/// shown them. A name with more than [`MAX_SPELLED_SEPARATORS`] separators gets the all-`-` and all-`_` ones only.
pub(crate) fn other_spellings(name: &str) -> Vec<String> {
    let lower = name.to_ascii_lowercase();
    let positions: Vec<usize> =
        lower.bytes().enumerate().filter(|(_, b)| *b == b'-' || *b == b'_').map(|(i, _)| i).collect();
    let spell = |mask: u32| {
        let mut bytes = lower.clone().into_bytes();
        for (bit, &at) in positions.iter().enumerate() {
            bytes[at] = if mask & (1 << bit) == 0 { b'-' } else { b'_' };
        }
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let masks: Vec<u32> = if positions.len() <= MAX_SPELLED_SEPARATORS {
        (0..1u32 << positions.len()).collect()
    } else {
        vec![0, u32::MAX]
    };
    let mut spellings: Vec<String> = Vec::with_capacity(masks.len());
    for spelling in masks.into_iter().map(spell) {
        if spelling != lower && !spellings.contains(&spelling) {
            spellings.push(spelling);
        }
    }
    spellings
}

/// Up to this many separators in a name, [`other_spellings`] gives every combination (64 at most).
const MAX_SPELLED_SEPARATORS: usize = 6;

/// Whether `name` is a forwarding header in any spelling: `Forwarded`, `X-Real-IP` or any `X-Forwarded-*`.
pub(crate) fn is_forwarding(name: &str) -> bool {
    let bytes = name.as_bytes();
    let prefix = b"x-forwarded-";
    same_name(bytes, b"forwarded")
        || same_name(bytes, b"x-real-ip")
        || (bytes.len() > prefix.len() && same_name(&bytes[..prefix.len()], prefix))
}

/// Whether `name` tells an upstream to serve another path or method than the request line names: the
/// path-override headers some frameworks route on (`X-Original-URL`, any `X-Original-*`, `X-Rewrite-URL`,
/// `X-Forwarded-Prefix`, `X-Forwarded-Uri`) and the method overrides (`X-HTTP-Method-Override`, `X-HTTP-Method`,
/// `X-Method-Override`, `X-Forwarded-Method`).
pub(crate) fn is_override(name: &str) -> bool {
    let bytes = name.as_bytes();
    let original = b"x-original-";
    OVERRIDES.iter().any(|known| same_name(bytes, known.as_bytes()))
        || (bytes.len() > original.len() && same_name(&bytes[..original.len()], original))
}

/// The override headers named one by one ([`is_override`] also takes every other `X-Original-*`).
const OVERRIDES: [&str; 7] = [
    "x-rewrite-url",
    "x-forwarded-prefix",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The override headers a front proxy can remove by name without having shown them: those of [`OVERRIDES`] and
/// the `X-Original-*` ones frameworks read (`-URL`, `-URI`, `-Method`), in every `-`/`_` spelling.
pub(crate) fn override_spellings() -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in OVERRIDES.iter().chain(&["x-original-url", "x-original-uri", "x-original-method"]) {
        names.push((*name).to_owned());
        names.extend(other_spellings(name));
    }
    names
}

/// Whether `name` belongs to the family the proxies own: forwarding and override headers.
pub(crate) fn is_front_owned(name: &str) -> bool {
    is_forwarding(name) || is_override(name)
}

/// Why `name` (in any spelling) cannot carry a claim, or `None` when it can: headers that frame the message, route
/// it, are consumed hop by hop, carry credentials or state, or that the gateway or the proxy in front set
/// themselves. A claim in `Transfer-Encoding` or `Content-Length` would change how the upstream reads the body.
pub(crate) fn claim_header_refusal(name: &str) -> Option<&'static str> {
    let bytes = name.as_bytes();
    let is = |known: &[&str]| known.iter().any(|known| same_name(bytes, known.as_bytes()));
    if is(&[
        "transfer-encoding",
        "content-length",
        "content-type",
        "content-encoding",
        "content-range",
        "range",
        "trailer",
        "te",
        "expect",
    ]) {
        Some("frames the message body")
    } else if is(&["connection", "keep-alive", "proxy-connection", "upgrade", "via", "max-forwards"]) {
        Some("is a hop-by-hop header")
    } else if is(&["host"]) || is_front_owned(name) {
        Some("routes the request")
    } else if is(&[
        "cookie",
        "set-cookie",
        "authorization",
        "proxy-authorization",
        "www-authenticate",
        "proxy-authenticate",
    ]) {
        Some("carries credentials or state")
    } else if is(&[crate::request_id::HEADER]) {
        Some("is the gateway's request id")
    } else {
        None
    }
}

/// The claim headers the gateway sets, by every mapping of the configuration.
#[derive(Debug, Clone, Default)]
pub(crate) struct ManagedHeaders {
    names: Vec<HeaderName>,
}

impl ManagedHeaders {
    /// Collects `names`, without repeats.
    pub(crate) fn new<'a>(names: impl IntoIterator<Item = &'a HeaderName>) -> Self {
        let mut collected: Vec<HeaderName> = Vec::new();
        for name in names {
            if !collected.iter().any(|known| same_name(known.as_str().as_bytes(), name.as_str().as_bytes())) {
                collected.push(name.clone());
            }
        }
        Self { names: collected }
    }

    /// Whether `name`, in any spelling, is a managed header.
    pub(crate) fn is_managed(&self, name: &str) -> bool {
        self.names.iter().any(|known| same_name(known.as_str().as_bytes(), name.as_bytes()))
    }

    /// The managed names as configured.
    pub(crate) fn names(&self) -> &[HeaderName] {
        &self.names
    }

    /// The first header of `headers` that is a managed header in some spelling.
    pub(crate) fn carried_by<'h>(&self, headers: &'h HeaderMap) -> Option<&'h HeaderName> {
        headers.keys().find(|name| self.is_managed(name.as_str()))
    }
}

/// Removes every client copy of a managed, forwarding or path-override header, in every spelling.
pub(crate) fn strip_client_copies(headers: &mut HeaderMap, managed: &ManagedHeaders) {
    let owned: Vec<HeaderName> = headers
        .keys()
        .filter(|name| managed.is_managed(name.as_str()) || is_front_owned(name.as_str()))
        .cloned()
        .collect();
    for name in owned {
        headers.remove(name);
    }
}

/// The proxies whose `X-Forwarded-For` the reverse proxy extends.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// From the configuration's `trusted_proxies` (checked already; entries that do not parse are skipped).
    pub(crate) fn new(entries: &[String]) -> Self {
        Self(entries.iter().filter_map(|entry| parse_trusted_proxy(entry).ok()).collect())
    }

    /// Whether `peer` is one of them.
    pub(crate) fn contains(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&peer))
    }
}

/// Parses a `trusted_proxies` entry: a CIDR block (`10.0.0.0/8`) or one address.
///
/// ```
/// assert!(portcullis_gateway::__internals::parse_trusted_proxy("10.0.0.0/8").is_ok());
/// assert!(portcullis_gateway::__internals::parse_trusted_proxy("::1").is_ok());
/// assert!(portcullis_gateway::__internals::parse_trusted_proxy("proxy.local").is_err());
/// ```
pub fn parse_trusted_proxy(entry: &str) -> Result<IpNet, String> {
    entry
        .parse::<IpNet>()
        .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| "not an IP address or CIDR block".to_owned())
}

/// The `X-Forwarded-For` chain to send: the one a trusted proxy in front sent, extended by `peer`; from anyone
/// else just `peer`. Read before the client copies are stripped.
pub(crate) fn forwarded_for(headers: &HeaderMap, peer: IpAddr, trusted: &TrustedProxies) -> Option<HeaderValue> {
    let mut chain = String::new();
    if trusted.contains(peer) {
        for value in headers.get_all("x-forwarded-for") {
            let Ok(text) = value.to_str() else { continue };
            for hop in text.split(',').map(str::trim).filter(|hop| !hop.is_empty()) {
                if hop.parse::<IpAddr>().is_ok() {
                    chain.push_str(hop);
                    chain.push_str(", ");
                }
            }
        }
    }
    chain.push_str(&peer.to_string());
    HeaderValue::from_str(&chain).ok()
}

/// The claim header names of `config`, as the documented proxy configurations must clear and copy them
/// (global mapping first, then each route's own, without repeats).
///
/// ```
/// let config = portcullis_gateway::Config::defaults();
/// assert_eq!(
///     portcullis_gateway::__internals::managed_header_names(&config),
///     ["X-Auth-Issuer", "X-Auth-Permissions", "X-Auth-Scope", "X-Auth-Subject"]
/// );
/// ```
#[cfg(any(test, feature = "internals"))]
pub fn managed_header_names(config: &crate::config::Config) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mappings =
        std::iter::once(&config.claim_headers).chain(config.routes.iter().filter_map(|r| r.claim_headers.as_ref()));
    for mapping in mappings {
        for header in mapping.values() {
            if !names.iter().any(|known| same_name(known.as_bytes(), header.as_bytes())) {
                names.push(header.clone());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_fold_case_and_underscores() {
        let subject = HeaderName::from_static("x-auth-subject");
        let managed = ManagedHeaders::new([&subject]);
        for spelling in ["x-auth-subject", "X-AUTH-SUBJECT", "x_auth_subject", "X_Auth-Subject"] {
            assert!(managed.is_managed(spelling), "{spelling}");
        }
        assert!(!managed.is_managed("x-auth-subjects"));
        assert!(!managed.is_managed("x-auth"));
        for forwarding in ["Forwarded", "x_forwarded_host", "X-Forwarded-For", "x-real_ip", "x-forwarded-prefix"] {
            assert!(is_forwarding(forwarding), "{forwarding}");
        }
        assert!(!is_forwarding("x-forwarded"));
        for owned in ["x-original-url", "X_Original_URI", "x-rewrite-url", "X-Forwarded-Ssl", "x_real_ip"] {
            assert!(is_front_owned(owned), "{owned}");
        }
        for method in ["X-HTTP-Method-Override", "x_http_method", "X-Method-Override", "x-forwarded-method"] {
            assert!(is_override(method), "{method}");
        }
        assert!(!is_override("x-forwarded-for"));
        assert!(!is_front_owned("x-original"));
        assert!(!is_front_owned("x-request-id"));
        assert!(!is_forwarding("forwarded-for"));
    }

    #[test]
    fn the_chain_grows_only_from_trusted_proxies() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.7, not-an-ip"));
        let trusted = TrustedProxies::new(&["10.0.0.0/8".to_owned()]);
        let lb: IpAddr = "10.1.2.3".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let other: IpAddr = "192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert_eq!(forwarded_for(&headers, lb, &trusted), Some(HeaderValue::from_static("203.0.113.7, 10.1.2.3")));
        assert_eq!(forwarded_for(&headers, other, &trusted), Some(HeaderValue::from_static("192.0.2.1")));
    }
}
