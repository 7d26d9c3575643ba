//! The checks a parsed [`Config`] must pass before the gateway starts: everything [`Gateway::new`] and the policy
//! it compiles would refuse, so that `check-config` and `serve` give the same verdict. Each check reports every
//! error it finds, with its key path; [`Config::check`] locates them in the file.
//!
//! [`Gateway::new`]: crate::Gateway::new

use crate::config::{Config, ConfigError, RouteConfig, Unmatched};
use portcullis::Requirement;
use portcullis::remote::{KeyLocation, RemoteOptions};
use std::collections::BTreeMap;

/// Every error of `config`.
pub(crate) fn check(config: &Config) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    check_issuers(config, &mut errors);
    check_upstream(config, &mut errors);
    check_envoy(config, &mut errors);
    check_limits(config, &mut errors);
    for (i, entry) in config.trusted_proxies.iter().enumerate() {
        if let Err(message) = crate::headers::parse_trusted_proxy(entry) {
            errors.push(ConfigError::at(format!("trusted_proxies[{i}]"), format!("{entry:?}: {message}")));
        }
    }
    check_claim_headers("claim_headers", &config.claim_headers, &mut errors);
    for (i, route) in config.routes.iter().enumerate() {
        check_route(config, i, route, &mut errors);
    }
    errors.extend(crate::options::check(config));
    errors.extend(crate::store_config::check(config));
    errors.extend(crate::dpop_config::check(config));
    errors.extend(crate::tls::check(config));
    for shadow in crate::policy::shadowed(&config.routes) {
        let (later, earlier) = (&config.routes[shadow.later], &config.routes[shadow.earlier]);
        let why = if shadow.broader {
            "matches every path it does (a method never falls through to a later route)"
        } else {
            "has the same path and takes every method it does"
        };
        errors.push(ConfigError::at(
            format!("routes[{}].path", shadow.later),
            format!(
                "{:?} can never be reached: routes[{}] ({:?}) comes first and {why}; remove it or move it above",
                later.path, shadow.earlier, earlier.path
            ),
        ));
    }
    errors
}

/// What is valid but probably a mistake.
pub(crate) fn warnings(config: &Config) -> Vec<ConfigError> {
    let mut warnings = Vec::new();
    if !config.issuers.is_empty() && config.routes.is_empty() {
        let what = match config.unmatched {
            Unmatched::Deny => "every request is answered 404 (unmatched = \"deny\")",
            _ => "every request with a valid token from a trusted issuer passes (unmatched = \"authenticated\")",
        };
        warnings.push(ConfigError::at(
            "routes",
            format!("no [[routes]]: {what}; add routes, or set unmatched to say what you mean"),
        ));
    }
    warnings
}

fn check_issuers(config: &Config, errors: &mut Vec<ConfigError>) {
    if config.issuers.is_empty() {
        errors.push(ConfigError::at(
            "issuers",
            "at least one [[issuers]] entry (or --issuer and --audience) is required",
        ));
    }
    // The gateway's key sets use the default fetch rules; their URLs are held to them here, as the key sets would.
    let fetch = RemoteOptions::default().fetch;
    for (i, issuer) in config.issuers.iter().enumerate() {
        let http_url = issuer.issuer.starts_with("https://") || issuer.issuer.starts_with("http://");
        if !http_url {
            errors.push(ConfigError::at(format!("issuers[{i}].issuer"), "the issuer must be an http(s) URL"));
        }
        if config.issuers[..i].iter().any(|earlier| earlier.issuer == issuer.issuer) {
            errors.push(ConfigError::at(
                format!("issuers[{i}].issuer"),
                format!("{:?} is already listed above; list each issuer once, with all its audiences", issuer.issuer),
            ));
        }
        if issuer.audiences.is_empty() {
            errors.push(ConfigError::at(
                format!("issuers[{i}].audiences"),
                format!("{}: at least one audience is required", issuer.issuer),
            ));
        }
        for (j, audience) in issuer.audiences.iter().enumerate() {
            if audience.is_empty() {
                errors.push(ConfigError::at(format!("issuers[{i}].audiences[{j}]"), "an audience cannot be empty"));
            }
        }
        let (key, location) = match &issuer.jwks_uri {
            // A local key file is read and checked with the other options (crate::options).
            Some(uri) if crate::local_keys::path_of(uri).is_some() => continue,
            Some(uri) => (format!("issuers[{i}].jwks_uri"), KeyLocation::Jwks(uri.clone())),
            None if http_url => {
                (format!("issuers[{i}].issuer"), KeyLocation::Discovery { issuer: issuer.issuer.clone() })
            }
            None => continue,
        };
        if let Err(refused) = location.check(&fetch) {
            let hint = match &issuer.jwks_uri {
                Some(_) => "",
                None => " (the keys are found by discovery at the issuer; give jwks_uri to fetch them elsewhere)",
            };
            errors.push(ConfigError::at(key, format!("{refused}{hint}")));
        }
    }
}

fn check_upstream(config: &Config, errors: &mut Vec<ConfigError>) {
    if config.forward_auth.is_none() {
        match config.upstream.as_deref() {
            // Only the gRPC ext_authz service decides; the HTTP listener answers 404.
            None if config.ext_authz_grpc.is_some() => {}
            None => errors.push(ConfigError::at(
                "upstream",
                "proxy mode needs an upstream (--upstream or upstream = \"http://…\")",
            )),
            Some(upstream)
                if !(upstream.starts_with("http://") || upstream.starts_with("https://"))
                    || upstream.parse::<http::Uri>().is_err() =>
            {
                errors
                    .push(ConfigError::at("upstream", format!("must be an http:// or https:// URL, got {upstream:?}")));
            }
            Some(_) => {}
        }
    }
    if config.upstream_timeout_secs == 0 {
        errors.push(ConfigError::at("upstream_timeout_secs", "must be at least 1"));
    }
}

/// The Envoy keys: `envoy_path_prefix` only for Envoy's HTTP mode, as a canonical path without a trailing slash;
/// `ext_authz_grpc` on an address of its own.
fn check_envoy(config: &Config, errors: &mut Vec<ConfigError>) {
    if let Some(prefix) = &config.envoy_path_prefix {
        if config.forward_auth != Some(crate::config::FrontProxy::Envoy) {
            errors.push(ConfigError::at(
                "envoy_path_prefix",
                "is used only with forward_auth = \"envoy\" (Envoy's HTTP ext_authz service)",
            ));
        }
        let canonical = crate::canonical::canonicalize(prefix.as_bytes()).is_ok_and(|c| c.was_canonical);
        if !canonical || prefix == "/" || prefix.ends_with('/') {
            errors.push(ConfigError::at(
                "envoy_path_prefix",
                format!(
                    "must be a path such as \"/ext-authz\" (starting with '/', in canonical form, without a trailing \
                     slash), got {prefix:?}"
                ),
            ));
        }
    }
    if let Some(grpc) = config.ext_authz_grpc {
        for (key, taken) in [("listen", Some(config.listen)), ("admin_listen", config.admin_listen)] {
            if taken == Some(grpc) && grpc.port() != 0 {
                errors.push(ConfigError::at("ext_authz_grpc", format!("{grpc} is already the {key} address")));
            }
        }
    }
    for (i, route) in config.routes.iter().enumerate() {
        if route.forward_auth == Some(crate::config::FrontProxy::Envoy) {
            errors.push(ConfigError::at(
                format!("routes[{i}].forward_auth"),
                "Envoy's HTTP ext_authz service is the whole listener: set forward_auth = \"envoy\" at the top \
                 level, or use ext_authz_grpc",
            ));
        }
    }
}

fn check_limits(config: &Config, errors: &mut Vec<ConfigError>) {
    let limits = &config.limits;
    let mut at_least = |key: &str, value: u64, minimum: u64, unit: &str| {
        if value < minimum {
            errors.push(ConfigError::at(format!("limits.{key}"), format!("must be at least {minimum}{unit}")));
        }
    };
    // hyper needs room for one read buffer (8 KiB); a bearer token must fit in the header block.
    at_least("max_header_bytes", limits.max_header_bytes as u64, 8192, " bytes");
    at_least("max_headers", limits.max_headers as u64, 8, "");
    at_least("header_read_timeout_secs", limits.header_read_timeout_secs, 1, " second");
    at_least("max_connections", limits.max_connections as u64, 1, "");
    at_least("max_token_bytes", limits.max_token_bytes as u64, 256, " bytes");
    at_least("max_json_depth", limits.max_json_depth as u64, 2, " levels");
    at_least("max_jwks_bytes", limits.max_jwks_bytes as u64, 1024, " bytes");
    at_least("max_keys_per_set", limits.max_keys_per_set as u64, 1, "");
    at_least("max_issuers", limits.max_issuers as u64, 1, "");
    if limits.max_json_depth > portcullis::MAX_JSON_DEPTH_CEILING {
        errors.push(ConfigError::at(
            "limits.max_json_depth",
            format!("must be at most {} levels", portcullis::MAX_JSON_DEPTH_CEILING),
        ));
    }
    if config.issuers.len() > limits.max_issuers {
        errors.push(ConfigError::at(
            "issuers",
            format!(
                "{} issuers configured, more than limits.max_issuers = {}",
                config.issuers.len(),
                limits.max_issuers
            ),
        ));
    }
}

fn check_route(config: &Config, i: usize, route: &RouteConfig, errors: &mut Vec<ConfigError>) {
    let mut error = |key: &str, message: String| errors.push(ConfigError::at(format!("routes[{i}]{key}"), message));
    if let Err(message) = crate::policy::Pattern::parse(&route.path, route.strict_match) {
        error(".path", format!("{message}, got {:?}", route.path));
    }
    if route.public && (route.require.is_some() || !route.issuers.is_empty() || !route.audiences.is_empty()) {
        error(".public", format!("{}: a public route cannot also have a rule, issuers or audiences", route.path));
    }
    if let Some(rule) = &route.require
        && let Some(empty) = empty_list(rule)
    {
        error(".require", format!("an empty `{empty}` rule: list at least one rule"));
    }
    if route.forward_auth.is_some() {
        if config.forward_auth.is_some() {
            error(
                ".forward_auth",
                "only in proxy mode: with a top-level forward_auth every request is a decision already".into(),
            );
        } else if route.public
            || route.require.is_some()
            || !route.issuers.is_empty()
            || !route.audiences.is_empty()
            || route.forward_authorization
            || route.claim_headers.is_some()
        {
            error(
                ".forward_auth",
                format!(
                    "{}: a forward-auth endpoint takes no other settings; the routes matching the original request \
                     decide",
                    route.path
                ),
            );
        }
    }
    for (j, method) in route.methods.iter().enumerate() {
        if http::Method::from_bytes(method.as_bytes()).is_err() || method.contains(' ') {
            error(&format!(".methods[{j}]"), format!("{method:?} is not an HTTP method"));
        }
    }
    for (j, issuer) in route.issuers.iter().enumerate() {
        if !config.issuers.iter().any(|known| &known.issuer == issuer) {
            error(&format!(".issuers[{j}]"), format!("{issuer:?} is not one of the [[issuers]]"));
        }
    }
    for (j, audience) in route.audiences.iter().enumerate() {
        let trusted = config
            .issuers
            .iter()
            .filter(|known| route.issuers.is_empty() || route.issuers.contains(&known.issuer))
            .any(|known| known.audiences.contains(audience));
        if !trusted {
            error(&format!(".audiences[{j}]"), format!("{audience:?} is not an audience of the route's issuers"));
        }
    }
    if let Some(mapping) = &route.claim_headers {
        check_claim_headers(&format!("routes[{i}].claim_headers"), mapping, errors);
    }
}

/// `all` or `any` when `rule` holds an empty one at any depth (rules built in code can; files cannot).
fn empty_list(rule: &Requirement) -> Option<&'static str> {
    match rule {
        Requirement::All(rules) if rules.is_empty() => Some("all"),
        Requirement::Any(rules) if rules.is_empty() => Some("any"),
        Requirement::All(rules) | Requirement::Any(rules) => rules.iter().find_map(empty_list),
        Requirement::Not(rule) => empty_list(rule),
        _ => None,
    }
}

fn check_claim_headers(key: &str, mapping: &BTreeMap<String, String>, errors: &mut Vec<ConfigError>) {
    for (claim, header) in mapping {
        let at = format!("{key}.{claim}");
        if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            let mut message = format!("{header:?} is not a valid header name");
            if crate::load::is_top_level_key(claim) {
                message.push_str(&crate::load::scoping_note(claim, "[claim_headers]"));
            }
            errors.push(ConfigError::at(at, message));
        } else if let Some(why) = crate::headers::claim_header_refusal(header) {
            errors.push(ConfigError::at(
                at,
                format!("{header:?} {why}: a claim cannot be sent in it; choose another name, e.g. X-Auth-…"),
            ));
        }
    }
}
