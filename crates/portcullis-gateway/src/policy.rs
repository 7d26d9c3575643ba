//! The route table compiled once per configuration: every route with its parsed methods, canonical pattern
//! segments and one [`RouteKind`], indexed by first path segment so a request only tries the routes that can
//! match it.
//!
//! Resolution rules, chosen so that a request can never escape a specific rule into a looser one:
//! - Paths are canonical ([`crate::canonical`]) before they are matched; patterns are checked to be canonical
//!   when the configuration is loaded.
//! - Routes match case-insensitively and ignore one trailing slash, unless a route asks for `strict_match`.
//!   When lenient and strict matching would pick different outcomes, the request is refused as ambiguous: a
//!   case-sensitive upstream could serve it under the stricter route.
//! - The first route whose pattern matches decides. `HEAD` counts as `GET`. A route that lists methods and not
//!   the request's hands it only to another route with the same pattern that accepts it; otherwise the answer is
//!   405 with `Allow`. A method never falls through to a broader pattern.

use crate::canonical::{CanonicalPath, canonicalize};
use crate::config::{FrontProxy, RouteConfig};
use http::Method;
use portcullis::Requirement;
use std::collections::HashMap;

/// One segment of a route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// A canonical literal segment.
    Literal(String),
    /// `{name}`: any one non-empty segment.
    Param,
}

/// A route's path pattern: `/exact`, `/prefix/*` (the prefix and everything below it), `{param}` segments.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    segments: Vec<Segment>,
    /// Ends in `/*`.
    prefix: bool,
    /// Written with a trailing slash (only significant under strict matching).
    trailing_slash: bool,
    /// Case-sensitive, trailing slash as written.
    strict: bool,
}

impl Pattern {
    /// Parses and checks a route pattern. Literal segments must already be canonical (no dot-segments, empty
    /// segments, encoded unreserved characters or refused bytes), since requests are matched in canonical form.
    pub(crate) fn parse(text: &str, strict: bool) -> Result<Self, String> {
        let rest = text.strip_prefix('/').ok_or("must start with '/'")?;
        let (rest, prefix) = match rest.strip_suffix("/*") {
            Some(rest) => (rest, true),
            None if rest == "*" => ("", true),
            None => (rest, false),
        };
        let (rest, trailing_slash) = match rest.strip_suffix('/') {
            Some(rest) if !prefix => (rest, true),
            _ => (rest, false),
        };
        let mut segments = Vec::new();
        if !rest.is_empty() {
            for segment in rest.split('/') {
                segments.push(parse_segment(segment)?);
            }
        }
        Ok(Self { segments, prefix, trailing_slash, strict })
    }

    /// Whether `path` matches, leniently (case-insensitive, one trailing slash ignored) or by the pattern's own
    /// rule.
    fn matches(&self, path: &SplitPath<'_>, lenient: bool) -> bool {
        let strict = self.strict && !lenient;
        let count = self.segments.len();
        let length_ok = if self.prefix { path.segments.len() >= count } else { path.segments.len() == count };
        if !length_ok {
            return false;
        }
        if strict && !self.prefix && path.trailing_slash != self.trailing_slash {
            return false;
        }
        self.segments.iter().zip(&path.segments).all(|(want, got)| match want {
            Segment::Param => true,
            Segment::Literal(literal) if strict => literal == got,
            Segment::Literal(literal) => literal.eq_ignore_ascii_case(got),
        })
    }

    /// The literal first segment every matching path starts with (lower case), or `None` when it can be anything.
    fn first_literal(&self) -> Option<String> {
        match self.segments.first() {
            Some(Segment::Literal(literal)) => Some(literal.to_ascii_lowercase()),
            _ => None,
        }
    }

    /// The pattern with case folded and strictness ignored: routes with equal keys cover the same paths.
    fn key(&self) -> String {
        let mut key = String::new();
        for segment in &self.segments {
            key.push('/');
            match segment {
                Segment::Literal(literal) => key.push_str(&literal.to_ascii_lowercase()),
                Segment::Param => key.push_str("{}"),
            }
        }
        if self.prefix {
            key.push_str("/*");
        }
        key
    }
}

impl Pattern {
    /// Whether every path `other` matches leniently, this pattern matches leniently too. Strictness is left out:
    /// a request lands on a route only when lenient matching picks it (otherwise it is refused as ambiguous).
    fn covers(&self, other: &Pattern) -> bool {
        let length_ok = if self.prefix {
            other.segments.len() >= self.segments.len()
        } else {
            !other.prefix && other.segments.len() == self.segments.len()
        };
        length_ok
            && self.segments.iter().zip(&other.segments).all(|(mine, theirs)| match (mine, theirs) {
                (Segment::Param, _) => true,
                (Segment::Literal(mine), Segment::Literal(theirs)) => mine.eq_ignore_ascii_case(theirs),
                (Segment::Literal(_), Segment::Param) => false,
            })
    }
}

/// Why no request can reach a route: an earlier one takes every request it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shadowed {
    /// The route that can never be reached.
    pub later: usize,
    /// The earlier route that takes its requests.
    pub earlier: usize,
    /// Whether the earlier route has another pattern (so the later route's methods are answered 405 there).
    pub broader: bool,
}

/// The routes of `routes` that an earlier route shadows, each named once with the first route that does. Routes
/// whose paths do not parse are skipped (their own error is reported).
///
/// A request lands on the first route whose pattern matches it; only routes with the very same pattern take the
/// methods that route does not list. So a later route is unreachable when an earlier route with another pattern
/// covers all its paths (before the first route with its own pattern), or when an earlier route with its pattern
/// takes all its methods.
pub(crate) fn shadowed(routes: &[RouteConfig]) -> Vec<Shadowed> {
    let parsed: Vec<Option<(Pattern, Methods, String)>> = routes
        .iter()
        .map(|route| {
            let pattern = Pattern::parse(&route.path, route.strict_match).ok()?;
            let key = pattern.key();
            Some((pattern, Methods::parse(&route.methods), key))
        })
        .collect();
    let mut found = Vec::new();
    for (later, entry) in parsed.iter().enumerate() {
        let Some((pattern, methods, key)) = entry else { continue };
        let first_same = (0..later).find(|&i| parsed[i].as_ref().is_some_and(|(_, _, k)| k == key)).unwrap_or(later);
        let broader = (0..first_same).find(|&i| parsed[i].as_ref().is_some_and(|(p, _, _)| p.covers(pattern)));
        if let Some(earlier) = broader {
            found.push(Shadowed { later, earlier, broader: true });
            continue;
        }
        let sibling =
            (first_same..later).find(|&i| parsed[i].as_ref().is_some_and(|(_, m, k)| k == key && m.includes(methods)));
        if let Some(earlier) = sibling {
            found.push(Shadowed { later, earlier, broader: false });
        }
    }
    found
}

fn parse_segment(segment: &str) -> Result<Segment, String> {
    if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        if name.is_empty() || name.contains(['{', '}']) {
            return Err("a {param} segment needs a name".into());
        }
        return Ok(Segment::Param);
    }
    if segment.is_empty() {
        return Err("empty segment ('//'): requests are matched with repeated slashes merged".into());
    }
    if segment.contains('*') {
        return Err("'*' is allowed only as the whole last segment ('/prefix/*')".into());
    }
    if segment == "." || segment == ".." {
        return Err("dot-segments are resolved in requests, so no request can match them".into());
    }
    let written = format!("/{segment}");
    match canonicalize(written.as_bytes()) {
        Ok(canonical) if canonical.was_canonical => Ok(Segment::Literal(segment.to_owned())),
        Ok(canonical) => {
            Err(format!("requests are matched in canonical form; write {:?} instead", canonical.path.as_str()))
        }
        Err(error) => Err(format!("{error}; such requests are refused before routing")),
    }
}

/// A canonical path cut into segments, with its trailing slash noted apart.
pub(crate) struct SplitPath<'a> {
    segments: Vec<&'a str>,
    trailing_slash: bool,
}

impl<'a> SplitPath<'a> {
    pub(crate) fn new(path: &'a CanonicalPath) -> Self {
        let text = path.as_str();
        let rest = text.strip_prefix('/').unwrap_or(text);
        let (rest, trailing_slash) = match rest.strip_suffix('/') {
            Some(rest) => (rest, true),
            None => (rest, false),
        };
        let segments = if rest.is_empty() { Vec::new() } else { rest.split('/').collect() };
        Self { segments, trailing_slash }
    }

    fn first(&self) -> &str {
        self.segments.first().copied().unwrap_or("")
    }
}

/// The methods a route matches.
#[derive(Debug, Clone)]
pub(crate) struct Methods(Option<Vec<Method>>);

impl Methods {
    /// From the configuration's list (already checked): all methods when empty; `GET` brings `HEAD`.
    fn parse(listed: &[String]) -> Self {
        if listed.is_empty() {
            return Self(None);
        }
        let mut methods: Vec<Method> =
            listed.iter().filter_map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok()).collect();
        if methods.contains(&Method::GET) && !methods.contains(&Method::HEAD) {
            methods.push(Method::HEAD);
        }
        Self(Some(methods))
    }

    /// Whether these methods include every one of `other`'s.
    fn includes(&self, other: &Methods) -> bool {
        match (&self.0, &other.0) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(mine), Some(theirs)) => theirs.iter().all(|method| mine.contains(method)),
        }
    }

    fn accepts(&self, method: &Method) -> bool {
        self.0.as_ref().is_none_or(|methods| methods.contains(method))
    }

    pub(crate) fn listed(&self) -> Option<&[Method]> {
        self.0.as_deref()
    }
}

/// Who may use a resource route.
#[derive(Debug, Clone)]
pub(crate) enum Access {
    /// Anyone, no token read.
    Public,
    /// A valid token from one of `issuers` (any trusted issuer when empty) carrying one of `audiences` (any of its
    /// issuer's when empty) and meeting `rule`.
    Token { rule: Option<Requirement>, issuers: Vec<String>, audiences: Vec<String> },
}

/// What a route is.
#[derive(Debug, Clone)]
pub(crate) enum RouteKind {
    /// A resource of the upstream, guarded by `access`.
    Resource {
        access: Access,
        /// Whether the `Authorization` header may go upstream.
        forward_authorization: bool,
    },
    /// In proxy mode: a forward-auth endpoint for this front proxy; never a resource itself.
    ForwardAuthEndpoint(FrontProxy),
}

/// One compiled route.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    /// The pattern as configured (logs, metrics, messages).
    pub name: String,
    pub methods: Methods,
    pub kind: RouteKind,
    pattern: Pattern,
}

impl Route {
    fn compile(config: &RouteConfig) -> Result<Self, String> {
        let pattern = Pattern::parse(&config.path, config.strict_match)?;
        let kind = match config.forward_auth {
            Some(front) => RouteKind::ForwardAuthEndpoint(front),
            None => RouteKind::Resource {
                access: if config.public {
                    Access::Public
                } else {
                    Access::Token {
                        rule: config.require.clone(),
                        issuers: config.issuers.clone(),
                        audiences: config.audiences.clone(),
                    }
                },
                forward_authorization: config.forward_authorization,
            },
        };
        Ok(Self { name: config.path.clone(), methods: Methods::parse(&config.methods), kind, pattern })
    }
}

/// Where a request lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// This route (by index).
    Route(usize),
    /// The path's route does not take this method; these do.
    MethodNotAllowed(Vec<Method>),
    /// No route's pattern matches.
    NoRoute,
    /// Lenient and strict matching disagree.
    Ambiguous,
}

/// The routes of one configuration, indexed by lower-cased first segment.
pub(crate) struct RouteTable {
    routes: Vec<Route>,
    by_first_segment: HashMap<String, Vec<usize>>,
    anywhere: Vec<usize>,
    /// Per route: the other routes with the same pattern, in configuration order.
    same_pattern: Vec<Vec<usize>>,
    any_strict: bool,
}

impl RouteTable {
    /// Compiles `routes` (checked by the configuration already; a failure names the route).
    pub(crate) fn compile(routes: &[RouteConfig]) -> Result<Self, (usize, String)> {
        let routes: Vec<Route> = routes
            .iter()
            .enumerate()
            .map(|(i, route)| Route::compile(route).map_err(|message| (i, message)))
            .collect::<Result<_, _>>()?;
        let mut by_first_segment: HashMap<String, Vec<usize>> = HashMap::new();
        let mut anywhere = Vec::new();
        for (index, route) in routes.iter().enumerate() {
            match route.pattern.first_literal() {
                Some(segment) => by_first_segment.entry(segment).or_default().push(index),
                None => anywhere.push(index),
            }
        }
        let keys: Vec<String> = routes.iter().map(|route| route.pattern.key()).collect();
        let same_pattern = keys
            .iter()
            .enumerate()
            .map(|(i, key)| (0..keys.len()).filter(|&j| j != i && keys[j] == *key).collect())
            .collect();
        let any_strict = routes.iter().any(|route| route.pattern.strict);
        Ok(Self { routes, by_first_segment, anywhere, same_pattern, any_strict })
    }

    /// The route at `index`.
    pub(crate) fn get(&self, index: usize) -> &Route {
        &self.routes[index]
    }

    /// Where a request for `path` with `method` lands.
    pub(crate) fn resolve(&self, method: &Method, path: &CanonicalPath) -> Resolution {
        let split = SplitPath::new(path);
        let lenient = self.resolve_with(method, &split, true);
        if self.any_strict && self.resolve_with(method, &split, false) != lenient {
            return Resolution::Ambiguous;
        }
        lenient
    }

    fn resolve_with(&self, method: &Method, path: &SplitPath<'_>, lenient: bool) -> Resolution {
        let Some(first) = self.candidates(path).find(|&i| self.routes[i].pattern.matches(path, lenient)) else {
            return Resolution::NoRoute;
        };
        if self.routes[first].methods.accepts(method) {
            return Resolution::Route(first);
        }
        let siblings = &self.same_pattern[first];
        let taker = siblings.iter().copied().find(|&i| {
            let route = &self.routes[i];
            route.methods.accepts(method) && route.pattern.matches(path, lenient)
        });
        if let Some(taker) = taker {
            return Resolution::Route(taker);
        }
        let mut allow: Vec<Method> = Vec::new();
        for &i in std::iter::once(&first).chain(siblings) {
            for method in self.routes[i].methods.listed().unwrap_or_default() {
                if !allow.contains(method) {
                    allow.push(method.clone());
                }
            }
        }
        Resolution::MethodNotAllowed(allow)
    }

    /// The routes that can match `path`, in configuration order: those of its first segment merged with those
    /// that start anywhere.
    fn candidates<'t>(&'t self, path: &SplitPath<'_>) -> impl Iterator<Item = usize> + 't {
        let first = path.first();
        let own = if first.bytes().any(|b| b.is_ascii_uppercase()) {
            self.by_first_segment.get(&first.to_ascii_lowercase())
        } else {
            self.by_first_segment.get(first)
        };
        let (mut a, mut b) = (own.map_or(&[][..], Vec::as_slice).iter().peekable(), self.anywhere.iter().peekable());
        std::iter::from_fn(move || match (a.peek(), b.peek()) {
            (Some(&&x), Some(&&y)) if x < y => a.next().copied(),
            (_, Some(_)) => b.next().copied(),
            (Some(_), None) => a.next().copied(),
            (None, None) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn route(path: &str, methods: &[&str], strict: bool) -> RouteConfig {
        RouteConfig {
            path: path.into(),
            methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            public: false,
            require: None,
            issuers: Vec::new(),
            audiences: Vec::new(),
            forward_authorization: false,
            claim_headers: None,
            forward_auth: None,
            strict_match: strict,
            auth: crate::config::AuthMode::Required,
            token_from: None,
            max_token_age_secs: None,
            typ: None,
            preflight: None,
            cors: None,
            dpop: None,
        }
    }

    fn table(routes: &[RouteConfig]) -> RouteTable {
        RouteTable::compile(routes).unwrap()
    }

    fn at(table: &RouteTable, method: Method, path: &str) -> Resolution {
        let path = canonicalize(path.as_bytes()).unwrap().path;
        table.resolve(&method, &path)
    }

    #[test]
    fn patterns_match_case_insensitively_and_ignore_one_trailing_slash() {
        let t = table(&[route("/api/private", &[], false), route("/users/{id}/orders", &[], false)]);
        for path in ["/api/private", "/API/Private", "/api/private/", "/api//private", "/x/../api/./private"] {
            assert_eq!(at(&t, Method::GET, path), Resolution::Route(0), "{path}");
        }
        assert_eq!(at(&t, Method::GET, "/Users/7/ORDERS/"), Resolution::Route(1));
        assert_eq!(at(&t, Method::GET, "/users//orders"), Resolution::NoRoute);
        assert_eq!(at(&t, Method::GET, "/api/privatex"), Resolution::NoRoute);
    }

    #[test]
    fn prefixes_cover_themselves_and_what_is_below() {
        let t = table(&[route("/api/*", &[], false), route("/*", &["GET"], false)]);
        assert_eq!(at(&t, Method::POST, "/api"), Resolution::Route(0));
        assert_eq!(at(&t, Method::POST, "/API/x/y/"), Resolution::Route(0));
        assert_eq!(at(&t, Method::GET, "/apix"), Resolution::Route(1));
        assert_eq!(at(&t, Method::GET, "/"), Resolution::Route(1));
    }

    #[test]
    fn head_is_get_and_methods_never_fall_through_to_a_broader_pattern() {
        let t = table(&[
            route("/docs/internal", &["GET"], false),
            route("/docs/internal", &["PUT"], false),
            route("/docs/*", &[], false),
        ]);
        assert_eq!(at(&t, Method::HEAD, "/docs/internal"), Resolution::Route(0));
        assert_eq!(at(&t, Method::PUT, "/docs/internal"), Resolution::Route(1));
        assert_eq!(
            at(&t, Method::POST, "/Docs/Internal/"),
            Resolution::MethodNotAllowed(vec![Method::GET, Method::HEAD, Method::PUT])
        );
        assert_eq!(at(&t, Method::POST, "/docs/other"), Resolution::Route(2));
    }

    #[test]
    fn strict_routes_that_lenient_matching_would_pass_by_are_ambiguous() {
        let t = table(&[route("/Admin", &[], true), route("/*", &[], false)]);
        assert_eq!(at(&t, Method::GET, "/Admin"), Resolution::Route(0));
        assert_eq!(at(&t, Method::GET, "/admin"), Resolution::Ambiguous);
        assert_eq!(at(&t, Method::GET, "/Admin/"), Resolution::Ambiguous);
        assert_eq!(at(&t, Method::GET, "/other"), Resolution::Route(1));
    }

    #[test]
    fn patterns_must_be_canonical() {
        for (pattern, message) in [
            ("/a//b", "empty segment"),
            ("/a/./b", "dot-segments"),
            ("/%61dmin", "write \"/admin\""),
            ("/a;b", "semicolon"),
            ("/a/*/b", "'*'"),
            ("/{}", "needs a name"),
            ("api", "must start"),
        ] {
            let error = Pattern::parse(pattern, false).unwrap_err();
            assert!(error.to_lowercase().contains(&message.to_lowercase()), "{pattern}: {error}");
        }
        assert!(Pattern::parse("/caf%C3%A9/{id}/*", false).is_ok());
    }

    #[test]
    fn routes_an_earlier_route_takes_every_request_of_are_shadowed() {
        let pairs = |routes: &[RouteConfig]| -> Vec<(usize, usize, bool)> {
            shadowed(routes).into_iter().map(|s| (s.later, s.earlier, s.broader)).collect()
        };
        // A prefix covers what is below it, and a method never falls through to the later route.
        assert_eq!(pairs(&[route("/api/*", &["GET"], false), route("/api/users", &["POST"], false)]), [(1, 0, true)]);
        // {param} covers literals, not the other way round; case and strictness do not save a route.
        assert_eq!(pairs(&[route("/users/{id}", &[], false), route("/Users/me", &[], true)]), [(1, 0, true)]);
        assert_eq!(pairs(&[route("/users/me", &[], false), route("/users/{id}", &[], false)]), []);
        assert_eq!(pairs(&[route("/Admin", &[], true), route("/admin", &[], false)]), [(1, 0, false)]);
        // Same pattern: shadowed only when the earlier route takes all its methods (GET brings HEAD).
        assert_eq!(pairs(&[route("/a", &["GET"], false), route("/a", &["PUT"], false)]), []);
        assert_eq!(
            pairs(&[route("/a", &["GET", "PUT"], false), route("/a", &["HEAD", "put"], false)]),
            [(1, 0, false)]
        );
        assert_eq!(pairs(&[route("/a", &["GET"], false), route("/a", &[], false)]), []);
        // A same-pattern route first in line keeps a later sibling reachable past a broader route between them.
        assert_eq!(pairs(&[route("/a", &["GET"], false), route("/*", &[], false), route("/a", &["POST"], false)]), []);
        // Everything behind a catch-all; exact routes do not cover prefixes.
        assert_eq!(pairs(&[route("/*", &[], false), route("/", &[], false)]), [(1, 0, true)]);
        assert_eq!(pairs(&[route("/api", &[], false), route("/api/*", &[], false)]), []);
        assert_eq!(pairs(&[route("/api/*", &[], false), route("/api/v1/*", &[], false)]), [(1, 0, true)]);
    }

    /// The index answers exactly what a scan of every route in order answers.
    #[test]
    fn the_index_changes_no_answer() {
        let routes = [
            route("/api/public", &["GET"], false),
            route("/{tenant}/health", &[], false),
            route("/api/*", &["POST"], false),
            route("/users/{id}", &[], false),
            route("/*", &["DELETE"], false),
            route("/API/*", &[], false),
            route("/", &[], false),
            route("/users/*", &[], false),
        ];
        let t = table(&routes);
        for path in ["/", "/api", "/Api/public", "/api/x", "/acme/health", "/api/health", "/users/7", "/users", "/o"] {
            let canonical = canonicalize(path.as_bytes()).unwrap().path;
            let split = SplitPath::new(&canonical);
            for method in [Method::GET, Method::POST, Method::DELETE] {
                let scanned = (0..routes.len()).find(|&i| t.routes[i].pattern.matches(&split, true));
                let indexed = t.candidates(&split).find(|&i| t.routes[i].pattern.matches(&split, true));
                assert_eq!(indexed, scanned, "{method} {path}");
            }
        }
    }
}
