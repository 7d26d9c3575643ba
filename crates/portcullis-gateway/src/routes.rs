//! The route table: first match wins, in configuration order, without scanning every route. Routes are grouped
//! by their first path segment when it is a literal; a request only tries the routes of its own first segment and
//! those whose first segment can match anything (`/{param}/…`, `/*`), merged in configuration order.

use crate::config::{RouteConfig, path_matches};
use http::Method;
use std::collections::HashMap;

/// Routes indexed by first path segment.
pub(crate) struct RouteTable {
    routes: Vec<RouteConfig>,
    by_first_segment: HashMap<String, Vec<usize>>,
    anywhere: Vec<usize>,
}

/// The first segment of `path` (`/api/x` → `api`, `/` → ``).
fn first_segment(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    rest.split('/').next().unwrap_or("")
}

/// The literal first segment every path a pattern matches starts with, or `None` when it can be anything.
fn literal_first_segment(pattern: &str) -> Option<&str> {
    let segment = match pattern.strip_suffix("/*") {
        // `/*` matches every path; `/api/*` starts with `api`.
        Some("") => return None,
        Some(prefix) => first_segment(prefix),
        None => first_segment(pattern),
    };
    if segment.starts_with('{') && segment.ends_with('}') { None } else { Some(segment) }
}

impl RouteTable {
    pub(crate) fn new(routes: Vec<RouteConfig>) -> Self {
        let mut by_first_segment: HashMap<String, Vec<usize>> = HashMap::new();
        let mut anywhere = Vec::new();
        for (index, route) in routes.iter().enumerate() {
            match literal_first_segment(&route.path) {
                Some(segment) => by_first_segment.entry(segment.to_owned()).or_default().push(index),
                None => anywhere.push(index),
            }
        }
        Self { routes, by_first_segment, anywhere }
    }

    /// The first route, in configuration order, matching `method` and `path`.
    pub(crate) fn find(&self, method: &Method, path: &str) -> Option<(usize, &RouteConfig)> {
        let own = self.by_first_segment.get(first_segment(path)).map_or(&[][..], Vec::as_slice);
        let (mut a, mut b) = (own.iter().peekable(), self.anywhere.iter().peekable());
        loop {
            let index = match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) if x < y => a.next(),
                (Some(_), Some(_)) | (None, Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, None) => return None,
            }?;
            let route = &self.routes[*index];
            let method_ok =
                route.methods.is_empty() || route.methods.iter().any(|m| m.eq_ignore_ascii_case(method.as_str()));
            if method_ok && path_matches(&route.path, path) {
                return Some((*index, route));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, methods: &[&str]) -> RouteConfig {
        RouteConfig {
            path: path.into(),
            methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            public: false,
            require: None,
            issuers: Vec::new(),
            audiences: Vec::new(),
            forward_authorization: false,
            claim_headers: None,
            forward_auth: false,
        }
    }

    /// The table answers exactly what a scan of every route in order answers.
    #[test]
    fn same_answers_as_a_first_match_scan() {
        let routes = vec![
            route("/api/public", &["GET"]),
            route("/{tenant}/health", &[]),
            route("/api/*", &["POST"]),
            route("/users/{id}", &[]),
            route("/*", &["DELETE"]),
            route("/api/*", &[]),
            route("/", &[]),
            route("/users/*", &[]),
        ];
        let table = RouteTable::new(routes.clone());
        let paths = [
            "/",
            "/api",
            "/api/public",
            "/api/x",
            "/acme/health",
            "/api/health",
            "/users/7",
            "/users/7/x",
            "/users",
            "/other",
            "//",
            "/api//x",
            "",
        ];
        for path in paths {
            for method in [Method::GET, Method::POST, Method::DELETE] {
                let scanned = routes.iter().enumerate().find(|(_, r)| {
                    (r.methods.is_empty() || r.methods.iter().any(|m| m == method.as_str()))
                        && path_matches(&r.path, path)
                });
                assert_eq!(table.find(&method, path).map(|(i, _)| i), scanned.map(|(i, _)| i), "{method} {path:?}");
            }
        }
    }
}
