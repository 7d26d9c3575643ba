//! Finding the bearer token in a request (RFC 6750 §2).
//!
//! The `Authorization: Bearer <token>` header (scheme case-insensitive), and, only when configured, a cookie or a
//! query parameter. A request that carries credentials in more than one place, more than one `Authorization`
//! header, another scheme, or more than one token is malformed: `request_invalid` (HTTP 400).

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};
use portcullis::{Error, Reason, Scheme};

/// The `DPoP` request header (RFC 9449 §4.1).
pub(crate) static DPOP: http::HeaderName = http::HeaderName::from_static("dpop");

/// Where else a token may be sent (both off by default: headers are the only safe default place).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Sources {
    pub cookie: Option<String>,
    pub query: Option<String>,
}

fn invalid(description: &'static str) -> Error {
    Error::new(Reason::RequestInvalid, description)
}

/// The token, `None` when the request carries no credentials at all.
#[cfg(test)]
pub(crate) fn bearer_token<'r>(
    headers: &'r HeaderMap,
    query: Option<&'r str>,
    sources: &Sources,
) -> Result<Option<&'r str>, Error> {
    credentials(headers, query, sources, false).map(|found| found.map(|(_, token)| token))
}

/// The scheme and token, `None` when the request carries no credentials at all. The `DPoP` scheme is accepted only
/// with `dpop`; cookies and query parameters carry `Bearer` tokens.
pub(crate) fn credentials<'r>(
    headers: &'r HeaderMap,
    query: Option<&'r str>,
    sources: &Sources,
    dpop: bool,
) -> Result<Option<(Scheme, &'r str)>, Error> {
    let mut found =
        if dpop { authorization(headers)? } else { from_authorization(headers)?.map(|token| (Scheme::Bearer, token)) };
    if let Some(name) = &sources.cookie
        && let Some(token) = from_cookie(headers, name)?
        && found.replace((Scheme::Bearer, token)).is_some()
    {
        return Err(invalid("credentials were sent in more than one place"));
    }
    if let Some(name) = &sources.query
        && let Some(token) = from_query(query, name)?
        && found.replace((Scheme::Bearer, token)).is_some()
    {
        return Err(invalid("credentials were sent in more than one place"));
    }
    Ok(found)
}

/// The bearer token of the request's `Authorization` header (scheme case-insensitive, exactly one header and one
/// token), `None` when there is no such header; anything malformed is `request_invalid`.
///
/// ```
/// use http::HeaderMap;
/// let mut headers = HeaderMap::new();
/// headers.insert("authorization", "bearer abc.def.ghi".parse().unwrap());
/// assert_eq!(portcullis_axum::authorization_bearer(&headers).unwrap(), Some("abc.def.ghi"));
/// headers.insert("authorization", "Basic dXNlcjpwdw==".parse().unwrap());
/// assert!(portcullis_axum::authorization_bearer(&headers).is_err());
/// ```
pub fn authorization_bearer(headers: &HeaderMap) -> Result<Option<&str>, Error> {
    from_authorization(headers)
}

/// The scheme and token of the request's `Authorization` header: `Bearer` (RFC 6750) or `DPoP` (RFC 9449 §7.1),
/// the scheme case-insensitive, exactly one header and one token; `None` when there is no such header. Anything
/// malformed, or another scheme, is `request_invalid`.
///
/// ```
/// use http::HeaderMap;
/// use portcullis::dpop::Scheme;
/// let mut headers = HeaderMap::new();
/// headers.insert("authorization", "dpop abc.def.ghi".parse().unwrap());
/// assert_eq!(portcullis_axum::authorization(&headers).unwrap(), Some((Scheme::Dpop, "abc.def.ghi")));
/// headers.insert("authorization", "Bearer abc.def.ghi".parse().unwrap());
/// assert_eq!(portcullis_axum::authorization(&headers).unwrap(), Some((Scheme::Bearer, "abc.def.ghi")));
/// headers.insert("authorization", "Basic dXNlcjpwdw==".parse().unwrap());
/// assert!(portcullis_axum::authorization(&headers).is_err());
/// ```
pub fn authorization(headers: &HeaderMap) -> Result<Option<(Scheme, &str)>, Error> {
    let Some(value) = single_authorization(headers)? else { return Ok(None) };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Err(invalid("the Authorization scheme must be Bearer or DPoP"));
    };
    match rest.trim_start_matches(' ') {
        "" => Err(invalid("the Authorization credentials are empty")),
        token => Ok(single_token(token)?.map(|token| (scheme, token))),
    }
}

/// Every `DPoP` header value of the request, as proofs. A proof is one compact JWS, so a value holding a comma or
/// whitespace holds several (two at least, as far as counting goes): a request has exactly one proof only when
/// this returns one value. A value that is not visible ASCII is `request_invalid`.
///
/// ```
/// use http::HeaderMap;
/// let mut headers = HeaderMap::new();
/// assert!(portcullis_axum::dpop_proofs(&headers).unwrap().is_empty());
/// headers.append("dpop", "a.b.c".parse().unwrap());
/// assert_eq!(portcullis_axum::dpop_proofs(&headers).unwrap(), ["a.b.c"]);
/// headers.insert("dpop", "a.b.c, d.e.f".parse().unwrap());
/// assert_eq!(portcullis_axum::dpop_proofs(&headers).unwrap().len(), 2);
/// ```
pub fn dpop_proofs(headers: &HeaderMap) -> Result<Vec<&str>, Error> {
    let mut proofs = Vec::new();
    for value in headers.get_all(&DPOP) {
        let value = value.to_str().map_err(|_| invalid("a DPoP header is not visible ASCII"))?;
        let separated = |c: char| c == ',' || c.is_ascii_whitespace();
        if value.contains(separated) {
            let before = proofs.len();
            proofs.extend(value.split(separated).filter(|part| !part.is_empty()));
            if proofs.len() - before < 2 {
                proofs.push("");
            }
        } else {
            proofs.push(value);
        }
    }
    Ok(proofs)
}

fn single_authorization(headers: &HeaderMap) -> Result<Option<&str>, Error> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(invalid("more than one Authorization header"));
    }
    value.to_str().map(Some).map_err(|_| invalid("the Authorization header is not visible ASCII"))
}

fn from_authorization(headers: &HeaderMap) -> Result<Option<&str>, Error> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(invalid("more than one Authorization header"));
    }
    let value = value.to_str().map_err(|_| invalid("the Authorization header is not visible ASCII"))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(invalid("the Authorization scheme must be Bearer"));
    }
    single_token(rest.trim_start_matches(' '))
}

fn single_token(token: &str) -> Result<Option<&str>, Error> {
    if token.is_empty() {
        return Err(invalid("the Bearer credentials are empty"));
    }
    // Header values are visible ASCII (checked by `to_str`), so the only whitespace left is space and tab.
    if memchr::memchr2(b' ', b'\t', token.as_bytes()).is_some() {
        return Err(invalid("more than one token in the credentials"));
    }
    Ok(Some(token))
}

fn from_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, Error> {
    let mut found = None;
    for header in headers.get_all(COOKIE) {
        let Ok(header) = header.to_str() else { continue };
        for pair in header.split(';') {
            if let Some((key, value)) = pair.trim().split_once('=')
                && key == name
                && found.replace(value.trim_matches('"')).is_some()
            {
                return Err(invalid("more than one token cookie"));
            }
        }
    }
    found.map_or(Ok(None), single_token)
}

fn from_query<'q>(query: Option<&'q str>, name: &str) -> Result<Option<&'q str>, Error> {
    let mut found = None;
    for pair in query.unwrap_or_default().split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == name && found.replace(value).is_some() {
            return Err(invalid("more than one token query parameter"));
        }
    }
    // Tokens are base64url and dots: nothing to percent-decode; anything else is not a token.
    found.map_or(Ok(None), single_token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[(&http::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in values {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn header_only(values: &[(&http::HeaderName, &str)]) -> Result<Option<String>, Reason> {
        bearer_token(&headers(values), None, &Sources::default()).map(|t| t.map(str::to_owned)).map_err(|e| e.reason())
    }

    #[test]
    fn authorization_header_forms() {
        assert_eq!(header_only(&[]), Ok(None));
        assert_eq!(header_only(&[(&AUTHORIZATION, "Bearer abc.def.ghi")]), Ok(Some("abc.def.ghi".into())));
        assert_eq!(header_only(&[(&AUTHORIZATION, "bearer abc")]), Ok(Some("abc".into())));
        assert_eq!(header_only(&[(&AUTHORIZATION, "BEARER  abc")]), Ok(Some("abc".into())));
        for bad in ["Basic dXNlcjpwdw==", "Bearer", "Bearer ", "Bearer a b", "Bearerabc", "Token abc"] {
            assert_eq!(header_only(&[(&AUTHORIZATION, bad)]), Err(Reason::RequestInvalid), "{bad}");
        }
        assert_eq!(
            header_only(&[(&AUTHORIZATION, "Bearer a"), (&AUTHORIZATION, "Bearer b")]),
            Err(Reason::RequestInvalid)
        );
    }

    #[test]
    fn cookie_and_query_only_when_configured() {
        let sources = Sources { cookie: Some("at".into()), query: Some("access_token".into()) };
        let cookie = headers(&[(&COOKIE, "theme=dark; at=abc.def")]);
        assert_eq!(bearer_token(&cookie, None, &Sources::default()).unwrap(), None);
        assert_eq!(bearer_token(&cookie, None, &sources).unwrap(), Some("abc.def"));
        assert_eq!(bearer_token(&HeaderMap::new(), Some("x=1&access_token=t.u.v"), &sources).unwrap(), Some("t.u.v"));
        let both = headers(&[(&COOKIE, "at=abc"), (&AUTHORIZATION, "Bearer abc")]);
        assert_eq!(bearer_token(&both, None, &sources).unwrap_err().reason(), Reason::RequestInvalid);
        let empty = HeaderMap::new();
        let twice = bearer_token(&empty, Some("access_token=a&access_token=b"), &sources);
        assert_eq!(twice.unwrap_err().reason(), Reason::RequestInvalid);
    }
}
