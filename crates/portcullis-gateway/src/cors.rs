//! CORS preflights: recognizing one, and answering it from a route's `cors` table. Origins are compared exactly;
//! nothing is reflected that the table does not list.

use crate::config::CorsConfig;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD,
    ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// A route's CORS policy, compiled.
#[derive(Debug, Clone)]
pub(crate) struct Cors {
    origins: Vec<String>,
    methods: Vec<Method>,
    /// Lower case.
    headers: Vec<String>,
    max_age: Option<u64>,
    credentials: bool,
}

/// Why a preflight is refused (never a reflection of what was asked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Origin,
    Method,
    Headers,
}

impl Refused {
    /// In words for logs and the response body.
    pub(crate) fn description(self) -> &'static str {
        match self {
            Refused::Origin => "the preflight's Origin is not allowed on this route",
            Refused::Method => "the preflight asks for a method this route does not allow",
            Refused::Headers => "the preflight asks for a header this route does not allow",
        }
    }
}

/// The method a CORS preflight asks about: the request is `OPTIONS` with one `Origin` and one readable
/// `Access-Control-Request-Method`. Anything else is an ordinary request.
pub(crate) fn preflight_method(method: &Method, headers: &HeaderMap) -> Option<Method> {
    if method != Method::OPTIONS {
        return None;
    }
    let one = |name: HeaderName| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => Some(value.clone()),
            _ => None,
        }
    };
    one(ORIGIN)?;
    let asked = one(ACCESS_CONTROL_REQUEST_METHOD)?;
    Method::from_bytes(asked.as_bytes()).ok().filter(|m| m.as_str().bytes().all(|b| b.is_ascii_alphabetic()))
}

impl Cors {
    /// Compiles a checked `cors` table.
    pub(crate) fn new(config: &CorsConfig) -> Self {
        Self {
            origins: config.allowed_origins.clone(),
            methods: config.allowed_methods.iter().filter_map(|m| Method::from_bytes(m.as_bytes()).ok()).collect(),
            headers: config.allowed_headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
            max_age: config.max_age_secs,
            credentials: config.allow_credentials,
        }
    }

    /// The request's `Origin` when it is one this route allows.
    pub(crate) fn allowed_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let mut values = headers.get_all(ORIGIN).iter();
        let origin = match (values.next(), values.next()) {
            (Some(origin), None) => origin,
            _ => return None,
        };
        self.origins.iter().any(|allowed| allowed.as_bytes() == origin.as_bytes()).then(|| origin.clone())
    }

    /// The headers answering a preflight for `method`, or why it is refused.
    pub(crate) fn answer(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, Refused> {
        let origin = self.allowed_origin(headers).ok_or(Refused::Origin)?;
        if !self.methods.contains(method) {
            return Err(Refused::Method);
        }
        for value in headers.get_all(ACCESS_CONTROL_REQUEST_HEADERS) {
            let text = value.to_str().map_err(|_| Refused::Headers)?;
            let allowed = text
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .all(|name| self.headers.iter().any(|h| h.eq_ignore_ascii_case(name)));
            if !allowed {
                return Err(Refused::Headers);
            }
        }
        let list = |items: Vec<&str>| HeaderValue::from_str(&items.join(", ")).ok();
        let mut answer = vec![(ACCESS_CONTROL_ALLOW_ORIGIN, origin)];
        if let Some(methods) = list(self.methods.iter().map(Method::as_str).collect()) {
            answer.push((ACCESS_CONTROL_ALLOW_METHODS, methods));
        }
        if !self.headers.is_empty()
            && let Some(names) = list(self.headers.iter().map(String::as_str).collect())
        {
            answer.push((ACCESS_CONTROL_ALLOW_HEADERS, names));
        }
        if let Some(max_age) = self.max_age {
            answer.push((ACCESS_CONTROL_MAX_AGE, HeaderValue::from(max_age)));
        }
        answer.extend(self.credentials.then(|| (ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"))));
        answer.push((
            VARY,
            HeaderValue::from_static("Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
        ));
        Ok(answer)
    }

    /// The CORS headers of an ordinary response on this route (the upstream's or a refusal), for an allowed
    /// `Origin`: without them a browser hides the answer, a 401 included, from the page.
    pub(crate) fn response_headers(&self, headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
        let Some(origin) = self.allowed_origin(headers) else { return Vec::new() };
        let mut answer = vec![(ACCESS_CONTROL_ALLOW_ORIGIN, origin)];
        answer.extend(self.credentials.then(|| (ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"))));
        answer
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

    #[test]
    fn only_options_with_origin_and_a_requested_method_is_a_preflight() {
        let preflight = headers(&[("origin", "https://app.example"), ("access-control-request-method", "POST")]);
        assert_eq!(preflight_method(&Method::OPTIONS, &preflight), Some(Method::POST));
        assert_eq!(preflight_method(&Method::GET, &preflight), None);
        assert_eq!(preflight_method(&Method::OPTIONS, &headers(&[("origin", "https://app.example")])), None);
        let no_origin = headers(&[("access-control-request-method", "POST")]);
        assert_eq!(preflight_method(&Method::OPTIONS, &no_origin), None);
    }

    #[test]
    fn answers_only_what_the_table_allows() {
        let cors = Cors::new(&CorsConfig {
            allowed_origins: vec!["https://app.example".into()],
            allowed_methods: vec!["GET".into(), "POST".into()],
            allowed_headers: vec!["Authorization".into(), "Content-Type".into()],
            max_age_secs: Some(600),
            allow_credentials: false,
        });
        let asked = |origin: &str, extra: &[(&str, &str)]| {
            let mut list = vec![("origin", origin)];
            list.extend_from_slice(extra);
            headers(&list)
        };
        let answer = cors
            .answer(
                &Method::POST,
                &asked("https://app.example", &[("access-control-request-headers", "authorization, content-type")]),
            )
            .unwrap();
        let find =
            |name: HeaderName| answer.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_str().unwrap().to_owned());
        assert_eq!(find(ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(), Some("https://app.example"));
        assert_eq!(find(ACCESS_CONTROL_ALLOW_METHODS).as_deref(), Some("GET, POST"));
        assert_eq!(find(ACCESS_CONTROL_MAX_AGE).as_deref(), Some("600"));
        assert_eq!(find(ACCESS_CONTROL_ALLOW_CREDENTIALS), None);
        for origin in ["https://app.example.evil", "https://APP.example", "null", "http://app.example"] {
            assert_eq!(cors.answer(&Method::POST, &asked(origin, &[])), Err(Refused::Origin), "{origin}");
        }
        assert_eq!(cors.answer(&Method::DELETE, &asked("https://app.example", &[])), Err(Refused::Method));
        let header = [("access-control-request-headers", "x-admin")];
        assert_eq!(cors.answer(&Method::GET, &asked("https://app.example", &header)), Err(Refused::Headers));
        assert!(cors.response_headers(&asked("https://other.example", &[])).is_empty());
    }
}
