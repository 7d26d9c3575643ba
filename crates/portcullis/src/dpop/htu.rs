//! [`Htu`]: the target URI of a request as DPoP compares it (RFC 9449 §4.3 check 9).
//!
//! Both sides of the comparison — the proof's `htu` claim and the URI the server computes for the request — go
//! through the same normalization (RFC 3986 §6.2.2 syntax-based and §6.2.3 scheme-based), so spellings that name
//! the same resource compare equal and nothing else does. The query and the fragment are not part of `htu`.

use crate::error::{Error, Reason};
use std::fmt;

/// A normalized `http` or `https` URI without query or fragment: `scheme://host[:port]/path`.
///
/// ```
/// use portcullis::dpop::Htu;
/// let htu = Htu::parse("HTTPS://API.Example.com:443/a/./b/../%7euser?q=1#frag").unwrap();
/// assert_eq!(htu.as_str(), "https://api.example.com/a/~user");
/// assert_eq!(Htu::parse("http://example.com").unwrap().as_str(), "http://example.com/");
/// assert!(Htu::parse("https://user@example.com/").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Htu(String);

impl Htu {
    /// Parses and normalizes an absolute `http(s)` URI: scheme and host lower-cased, the default port dropped,
    /// `%XX` escapes upper-cased and unreserved characters decoded, dot-segments removed, an empty path made `/`,
    /// the query and fragment dropped. Userinfo, other schemes, a missing host and bad escapes are refused
    /// (`request_invalid`).
    pub fn parse(uri: &str) -> Result<Htu, Error> {
        let end = uri.find(['?', '#']).unwrap_or(uri.len());
        let uri = &uri[..end];
        let (scheme, rest) = uri.split_once("://").ok_or_else(|| invalid("the URI is not absolute (no scheme://)"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(invalid("the URI scheme must be http or https")),
        };
        let (authority, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, ""),
        };
        let authority = normalize_authority(authority, default_port)?;
        let mut out = String::with_capacity(scheme.len() + 3 + authority.len() + path.len() + 1);
        out.push_str(&scheme);
        out.push_str("://");
        out.push_str(&authority);
        out.push_str(&normalize_path(path)?);
        Ok(Htu(out))
    }

    /// The URI of a request received at `path` (the request target as received, `/` first; a query is dropped)
    /// by a service whose external base URL is `base`: the base's origin, the base's path as a prefix (without a
    /// trailing `/`), then `path`, all normalized; the dot-segments of `path` never reach above the prefix.
    ///
    /// ```
    /// use portcullis::dpop::Htu;
    /// let base = Htu::parse("https://api.example.com/v1/").unwrap();
    /// assert_eq!(Htu::join(&base, "/orders/%7e1?x=2").unwrap().as_str(), "https://api.example.com/v1/orders/~1");
    /// assert!(Htu::join(&base, "orders").is_err());
    /// ```
    pub fn join(base: &Htu, path: &str) -> Result<Htu, Error> {
        if !path.starts_with('/') {
            return Err(invalid("the request path must start with /"));
        }
        let prefix = base.0.strip_suffix('/').unwrap_or(&base.0);
        // The path is normalized on its own first, so that its dot-segments resolve below the base's path and
        // never climb out of it: `/../admin` under `https://api.example.com/v1` is `/v1/admin`, as the balancer
        // in front would map it, not the origin's `/admin`.
        let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
        Self::parse(&format!("{prefix}{}", normalize_path(path)?))
    }

    /// The normalized URI.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The origin: `scheme://host[:port]`.
    pub fn origin(&self) -> &str {
        let after_scheme = self.0.find("://").map_or(0, |i| i + 3);
        let path = self.0[after_scheme..].find('/').map_or(self.0.len(), |i| after_scheme + i);
        &self.0[..path]
    }

    /// The path, `/` first.
    pub fn path(&self) -> &str {
        &self.0[self.origin().len()..]
    }
}

impl fmt::Display for Htu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Htu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Htu({})", self.0)
    }
}

impl std::str::FromStr for Htu {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn invalid(description: &'static str) -> Error {
    Error::new(Reason::RequestInvalid, description)
}

/// `host[:port]`, lower-cased, without the scheme's default port.
fn normalize_authority(authority: &str, default_port: u16) -> Result<String, Error> {
    if authority.contains('@') {
        return Err(invalid("the URI must not carry userinfo"));
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let close = rest.find(']').ok_or_else(|| invalid("the URI has an unclosed IPv6 literal"))?;
        let literal = &rest[..close];
        if literal.is_empty() || !literal.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return Err(invalid("the URI has a malformed IPv6 literal"));
        }
        let after = &rest[close + 1..];
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| invalid("the URI has a malformed authority"))?),
        };
        (&authority[..close + 2], port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(invalid("the URI has no host"));
    }
    let host_ok =
        host.starts_with('[') || host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b));
    if !host_ok {
        return Err(invalid("the URI host has characters a host name cannot have"));
    }
    let mut out = host.to_ascii_lowercase();
    match port {
        None | Some("") => {}
        Some(digits) => {
            if !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid("the URI port is not a number"));
            }
            let number: u16 = digits.parse().map_err(|_| invalid("the URI port is out of range"))?;
            if number != default_port {
                out.push(':');
                out.push_str(&number.to_string());
            }
        }
    }
    Ok(out)
}

/// Percent-encoding normalized (unreserved decoded, other escapes upper-case, bytes a path cannot hold escaped),
/// then dot-segments removed; an empty path is `/`.
fn normalize_path(path: &str) -> Result<String, Error> {
    let bytes = path.as_bytes();
    let mut encoded = String::with_capacity(path.len() + 1);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) =
                (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex))
            else {
                return Err(invalid("the URI path has a malformed percent-escape"));
            };
            let decoded = hi << 4 | lo;
            if is_unreserved(decoded) {
                encoded.push(char::from(decoded));
            } else {
                push_escape(&mut encoded, decoded);
            }
            i += 3;
            continue;
        }
        if is_unreserved(b) || b"/!$&'()*+,;=:@".contains(&b) {
            encoded.push(char::from(b));
        } else {
            push_escape(&mut encoded, b);
        }
        i += 1;
    }
    let mut out = remove_dot_segments(&encoded);
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 15)]));
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 §5.2.4, on an absolute path (or an empty one).
fn remove_dot_segments(path: &str) -> String {
    let mut output: Vec<&str> = Vec::new();
    let mut input = path;
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../").or_else(|| input.strip_prefix("./")) {
            input = rest;
        } else if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") {
            input = &input[3..];
            output.pop();
        } else if input == "/.." {
            input = "/";
            output.pop();
        } else if input == "." || input == ".." {
            input = "";
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| start + i);
            output.push(&input[..end]);
            input = &input[end..];
        }
    }
    output.concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(uri: &str) -> String {
        Htu::parse(uri).map(|h| h.0).unwrap_or_else(|e| format!("error: {}", e.description()))
    }

    #[test]
    fn rfc3986_normalization() {
        assert_eq!(norm("HTTP://Example.COM:80/%7Efoo/%7e/a%2fb"), "http://example.com/~foo/~/a%2Fb");
        assert_eq!(norm("https://example.com:8443"), "https://example.com:8443/");
        assert_eq!(norm("https://example.com:/x"), "https://example.com/x");
        assert_eq!(norm("https://example.com:0443/x"), "https://example.com/x");
        assert_eq!(norm("https://example.com/a/b/c/./../../g"), "https://example.com/a/g");
        assert_eq!(norm("https://example.com/mid/content=5/../6"), "https://example.com/mid/6");
        assert_eq!(norm("https://example.com/../../x"), "https://example.com/x");
        assert_eq!(norm("https://example.com/a/%2E%2E/b"), "https://example.com/b");
        assert_eq!(norm("https://example.com/a b"), "https://example.com/a%20b");
        assert_eq!(norm("https://[::1]:443/"), "https://[::1]/");
        assert_eq!(norm("https://[::1]:8080/"), "https://[::1]:8080/");
        assert_eq!(norm("http://127.0.0.1:3000/a?b#c"), "http://127.0.0.1:3000/a");
    }

    #[test]
    fn refusals() {
        for bad in [
            "ftp://example.com/",
            "/relative",
            "https://u:p@example.com/",
            "https:///path",
            "https://example.com:99999/",
            "https://example.com:8x/",
            "https://example.com/%zz",
            "https://example.com/%4",
            "https://exa mple.com/",
            "https://[::1/",
        ] {
            assert!(Htu::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origin_and_path() {
        let htu = Htu::parse("https://a.example:8443/x/y").unwrap();
        assert_eq!(htu.origin(), "https://a.example:8443");
        assert_eq!(htu.path(), "/x/y");
    }
}
