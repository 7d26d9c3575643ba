//! Where a request's token is read: the `Authorization: Bearer` header, and — only on routes that name one — a
//! cookie or another header holding the bare token. Strict: a token sent in two places, a second cookie of that
//! name or a repeated header is `invalid_request` (400), so that the gateway and the upstream can never read two
//! different tokens from one request.

use http::header::COOKIE;
use http::{HeaderMap, HeaderName, HeaderValue};
use portcullis::dpop::Scheme;
use portcullis::{Error, Reason};

/// The other place a route takes its token from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenSource {
    /// The cookie of this name.
    Cookie(String),
    /// The header of this name.
    Header(HeaderName),
}

fn invalid(description: &'static str) -> Error {
    Error::new(Reason::RequestInvalid, description)
}

/// The request's token and the scheme it came with, `None` when it carries none; read from `Authorization`
/// (`Bearer` or `DPoP`) and from `source` when the route names one (a bare token there is a Bearer token).
pub(crate) fn token<'h>(
    headers: &'h HeaderMap,
    source: Option<&TokenSource>,
) -> Result<Option<(Scheme, &'h str)>, Error> {
    let from_authorization = portcullis_axum::authorization(headers)?;
    let from_source = match source {
        None => None,
        Some(TokenSource::Cookie(name)) => cookie(headers, name)?,
        Some(TokenSource::Header(name)) => header(headers, name)?,
    };
    match (from_authorization, from_source) {
        (Some(_), Some(_)) => Err(invalid("credentials were sent in more than one place")),
        (found, None) => Ok(found),
        (None, Some(token)) => Ok(Some((Scheme::Bearer, token))),
    }
}

/// A bare token: not empty, no whitespace (header values are visible ASCII once read as text).
fn bare<'t>(token: &'t str, empty: &'static str) -> Result<&'t str, Error> {
    if token.is_empty() {
        return Err(invalid(empty));
    }
    if token.contains([' ', '\t']) {
        return Err(invalid("more than one token in the credentials"));
    }
    Ok(token)
}

/// The names in `headers` that are `name` in some spelling (case, `_` for `-`): CGI-style upstreams read
/// `X_Access_Token` as `X-Access-Token`, so every spelling is read, and removed.
fn spellings<'h>(headers: &'h HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'h HeaderName> {
    headers.keys().filter(|key| crate::headers::same_name(key.as_str().as_bytes(), name.as_str().as_bytes()))
}

fn header<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, Error> {
    let mut values = spellings(headers, name).flat_map(|key| headers.get_all(key).iter());
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(invalid("the token header is repeated"));
    }
    let text = value.to_str().map_err(|_| invalid("the token header is not visible ASCII"))?;
    bare(text.trim_matches(' '), "the token header is empty").map(Some)
}

/// Whether `byte` separates cookies to some upstream: `;` to all, `,` to those that still follow RFC 2109 (Rack 2,
/// Tomcat's legacy parser), for which `theme=1,at=x` holds an `at` cookie.
fn cookie_separator(byte: &u8) -> bool {
    *byte == b';' || *byte == b','
}

/// The pairs of a `Cookie` header: `name=value` separated by `;` or `,`, as bytes (browsers may send UTF-8 in other
/// cookies, which must not hide or spoil this one).
fn pairs(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    header.split(cookie_separator).filter_map(|pair| {
        let pair = pair.trim_ascii();
        let at = pair.iter().position(|&b| b == b'=')?;
        Some((pair[..at].trim_ascii(), pair[at + 1..].trim_ascii()))
    })
}

/// Whether cookie name `key` (as sent) is `name` to some upstream: ASP.NET Core reads cookie names ignoring case,
/// PHP decodes `%XX` in them and reads `.` and space as `_`. The gateway reads, and removes, every such spelling.
fn same_cookie(key: &[u8], name: &str) -> bool {
    let mut decoded = Vec::with_capacity(key.len());
    let mut i = 0;
    while i < key.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (key[i], key.get(i + 1).copied().and_then(hex), key.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    let fold = |b: &u8| match b {
        b'.' | b' ' => b'_',
        other => other.to_ascii_lowercase(),
    };
    decoded.iter().map(fold).eq(name.as_bytes().iter().map(fold))
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, Error> {
    let mut found = None;
    for header in headers.get_all(COOKIE) {
        for (key, value) in pairs(header.as_bytes()) {
            if same_cookie(key, name) && found.replace(value).is_some() {
                return Err(invalid("more than one token cookie"));
            }
        }
    }
    let Some(value) = found else { return Ok(None) };
    let value = std::str::from_utf8(value)
        .ok()
        .filter(|v| v.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| invalid("the token cookie is not visible ASCII"))?;
    // A cookie value may be quoted (RFC 6265 §4.1.1).
    let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
    bare(value, "the token cookie is empty").map(Some)
}

/// Removes the token from `headers` before they go upstream: the header, or the cookie (other cookies stay, in
/// one `Cookie` header).
pub(crate) fn remove(headers: &mut HeaderMap, source: &TokenSource) {
    match source {
        TokenSource::Header(name) => {
            let names: Vec<HeaderName> = spellings(headers, name).cloned().collect();
            for name in names {
                headers.remove(name);
            }
        }
        TokenSource::Cookie(name) => {
            let mut kept: Vec<u8> = Vec::new();
            for header in headers.get_all(COOKIE) {
                for pair in header.as_bytes().split(|&b| b == b';').map(<[u8]>::trim_ascii) {
                    // A pair holding the token cookie behind a `,` goes whole: some upstreams read it there.
                    let holds_token = pair.split(cookie_separator).map(<[u8]>::trim_ascii).any(|piece| {
                        let key = piece.iter().position(|&b| b == b'=').map_or(piece, |at| piece[..at].trim_ascii());
                        same_cookie(key, name)
                    });
                    if pair.is_empty() || holds_token {
                        continue;
                    }
                    if !kept.is_empty() {
                        kept.extend_from_slice(b"; ");
                    }
                    kept.extend_from_slice(pair);
                }
            }
            headers.remove(COOKIE);
            if let Ok(value) = HeaderValue::from_bytes(&kept)
                && !kept.is_empty()
            {
                headers.insert(COOKIE, value);
            }
        }
    }
}

/// Whether `headers` carry the route's other token location at all (the header in any spelling).
pub(crate) fn carried(headers: &HeaderMap, source: &TokenSource) -> bool {
    match source {
        TokenSource::Header(name) => spellings(headers, name).next().is_some(),
        TokenSource::Cookie(name) => {
            headers.get_all(COOKIE).iter().any(|v| pairs(v.as_bytes()).any(|(key, _)| same_cookie(key, name)))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(list: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in list {
            map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn reason(result: Result<Option<(Scheme, &str)>, Error>) -> Reason {
        result.unwrap_err().reason()
    }

    fn bare_token(result: Result<Option<(Scheme, &str)>, Error>) -> Option<&str> {
        result.unwrap().map(|(_, token)| token)
    }

    #[test]
    fn a_cookie_carries_the_token_only_once_and_only_alone() {
        let source = TokenSource::Cookie("access_token".into());
        let h = headers(&[("cookie", "theme=dark; access_token=a.b.c")]);
        assert_eq!(bare_token(token(&h, Some(&source))), Some("a.b.c"));
        assert_eq!(bare_token(token(&h, None)), None, "the cookie is read only where configured");
        let h = headers(&[("cookie", "access_token=\"a.b.c\"")]);
        assert_eq!(bare_token(token(&h, Some(&source))), Some("a.b.c"));
        for twice in [
            headers(&[("cookie", "access_token=a.b.c; access_token=d.e.f")]),
            headers(&[("cookie", "access_token=a.b.c"), ("cookie", "access_token=a.b.c")]),
            headers(&[("cookie", "access_token=a.b.c"), ("authorization", "Bearer a.b.c")]),
            headers(&[("cookie", "access_token=")]),
        ] {
            assert_eq!(reason(token(&twice, Some(&source))), Reason::RequestInvalid, "{twice:?}");
        }
    }

    #[test]
    fn a_header_carries_the_token_once() {
        let source = TokenSource::Header(HeaderName::from_static("x-access-token"));
        assert_eq!(bare_token(token(&headers(&[("x-access-token", "a.b.c")]), Some(&source))), Some("a.b.c"));
        assert_eq!(bare_token(token(&headers(&[("authorization", "Bearer a.b.c")]), Some(&source))), Some("a.b.c"));
        for bad in [
            headers(&[("x-access-token", "a.b.c"), ("x-access-token", "a.b.c")]),
            headers(&[("x-access-token", "a.b.c"), ("authorization", "Bearer a.b.c")]),
            headers(&[("x-access-token", "a.b.c d.e.f")]),
            headers(&[("x-access-token", "")]),
        ] {
            assert_eq!(reason(token(&bad, Some(&source))), Reason::RequestInvalid, "{bad:?}");
        }
    }

    #[test]
    fn every_spelling_an_upstream_reads_as_the_token_cookie_counts() {
        let source = TokenSource::Cookie("access_token".into());
        for spelling in ["Access_Token", "ACCESS_TOKEN", "access.token", "access%5Ftoken", "access%5ftoken"] {
            let h = headers(&[("cookie", &format!("theme=dark; {spelling}=a.b.c"))]);
            assert_eq!(bare_token(token(&h, Some(&source))), Some("a.b.c"), "{spelling}");
            let twice = headers(&[("cookie", &format!("access_token=a.b.c; {spelling}=d.e.f"))]);
            assert_eq!(reason(token(&twice, Some(&source))), Reason::RequestInvalid, "{spelling}");
            let mut h = headers(&[("cookie", &format!("theme=dark; {spelling}=a.b.c"))]);
            remove(&mut h, &source);
            assert_eq!(h.get_all(COOKIE).iter().collect::<Vec<_>>(), ["theme=dark"], "{spelling}");
        }
        for other in ["access-token", "access_token2", "xaccess_token", "access%"] {
            let h = headers(&[("cookie", &format!("{other}=a.b.c"))]);
            assert_eq!(bare_token(token(&h, Some(&source))), None, "{other}");
        }
    }

    #[test]
    fn removal_keeps_the_other_cookies() {
        let source = TokenSource::Cookie("access_token".into());
        let mut h = headers(&[("cookie", "theme=dark; access_token=a.b.c"), ("cookie", "lang=en")]);
        remove(&mut h, &source);
        assert_eq!(h.get_all(COOKIE).iter().collect::<Vec<_>>(), ["theme=dark; lang=en"]);
        assert!(!carried(&h, &source));
        let mut h = headers(&[("cookie", "access_token=a.b.c")]);
        remove(&mut h, &source);
        assert!(h.get(COOKIE).is_none());
        let header = TokenSource::Header(HeaderName::from_static("x-access-token"));
        let mut h = headers(&[("x-access-token", "a.b.c"), ("x-other", "1")]);
        remove(&mut h, &header);
        assert!(!carried(&h, &header) && h.contains_key("x-other"));
    }
}
