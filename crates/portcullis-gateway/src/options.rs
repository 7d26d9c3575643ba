//! The per-issuer and per-route token options: clock leeway, maximum age, required `typ`, algorithms, optional
//! authentication, the token from a cookie or another header, CORS preflights, local key files. Checked here
//! ([`check`]) and compiled for deciding ([`RouteOptions`], [`issuer_rules`]).
//!
//! Leeway and algorithms are per issuer only: they describe the issuer's clock and keys. A route may be stricter
//! than its issuers with a shorter maximum age or a required `typ`, both checked on the verified token.

use crate::config::{AuthMode, Config, ConfigError, CorsConfig, IssuerConfig, Preflight, RouteConfig};
use crate::cors::Cors;
use crate::token_source::TokenSource;
use http::HeaderName;
use portcullis::rules::IssuerRules;
use portcullis::{Algorithm, Error, Reason, VerifiedToken};
use std::time::Duration;

fn error(key: String, message: impl Into<String>) -> ConfigError {
    ConfigError { key, location: None, message: message.into() }
}

/// The `typ` values a token can be required to carry (media types, `application/` optional).
fn typ_ok(typ: &str) -> bool {
    let lower = typ.to_ascii_lowercase();
    matches!(lower.strip_prefix("application/").unwrap_or(&lower), "jwt" | "at+jwt")
}

/// Headers a token may not be read from: the gateway's own, framing, routing and hop-by-hop headers.
fn reserved_header(name: &str) -> bool {
    const RESERVED: [&str; 14] = [
        "authorization",
        "cookie",
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-authorization",
        "x-request-id",
        "origin",
    ];
    RESERVED.contains(&name) || crate::headers::is_forwarding(name) || crate::headers::is_override(name)
}

/// Checks the options of every issuer and route; a local key file is read to be checked.
pub(crate) fn check(config: &Config) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for (i, issuer) in config.issuers.iter().enumerate() {
        check_issuer(config, i, issuer, &mut errors);
    }
    // Claim headers, folded as the gateway folds them (case, `_` for `-`).
    let fold = |name: &str| name.to_ascii_lowercase().replace('_', "-");
    let managed: Vec<String> = std::iter::once(&config.claim_headers)
        .chain(config.routes.iter().filter_map(|route| route.claim_headers.as_ref()))
        .flat_map(|mapping| mapping.values().map(|header| fold(header)))
        .collect();
    for (i, route) in config.routes.iter().enumerate() {
        check_route(config, &managed, i, route, &mut errors);
    }
    errors
}

fn check_issuer(config: &Config, i: usize, issuer: &IssuerConfig, errors: &mut Vec<ConfigError>) {
    let at = |key: &str| format!("issuers[{i}].{key}");
    if let Some(leeway) = issuer.leeway_secs.filter(|secs| *secs > portcullis::MAX_LEEWAY.as_secs()) {
        errors.push(error(
            at("leeway_secs"),
            format!(
                "{leeway} s is more than a week ({} s): expiry would hardly be checked",
                portcullis::MAX_LEEWAY.as_secs()
            ),
        ));
    }
    if issuer.max_token_age_secs == Some(0) {
        errors.push(error(at("max_token_age_secs"), "must be at least 1"));
    }
    if let Some(typ) = issuer.typ.as_deref().filter(|typ| !typ_ok(typ)) {
        errors.push(error(at("typ"), format!("{typ:?}: an access token's typ is \"at+jwt\" (RFC 9068) or \"jwt\"")));
    }
    for (j, name) in issuer.algorithms.iter().enumerate() {
        if Algorithm::from_name(name).is_none() {
            errors.push(error(
                format!("issuers[{i}].algorithms[{j}]"),
                format!("{name:?} is not an algorithm portcullis verifies (RS256, PS256, ES256, EdDSA, …)"),
            ));
        }
    }
    if let Some(uri) = &issuer.jwks_uri {
        let loaded = crate::local_keys::path_of(uri).map(|path| {
            crate::local_keys::LocalKeys::load(
                uri,
                &path?,
                config.limits.max_jwks_bytes,
                config.limits.max_keys_per_set,
            )
        });
        if let Some(Err(message)) = loaded {
            errors.push(error(at("jwks_uri"), message));
        }
    }
}

fn check_route(config: &Config, managed: &[String], i: usize, route: &RouteConfig, errors: &mut Vec<ConfigError>) {
    let at = |key: &str| format!("routes[{i}].{key}");
    let token_options = [
        ("auth", route.auth != AuthMode::Required),
        ("token_from", route.token_from.is_some()),
        ("max_token_age_secs", route.max_token_age_secs.is_some()),
        ("typ", route.typ.is_some()),
        ("dpop", route.dpop.is_some()),
    ];
    for (key, set) in token_options {
        if set && route.public {
            errors.push(error(at(key), format!("{}: a public route reads no token", route.path)));
        }
        if set && route.forward_auth.is_some() {
            errors.push(error(at(key), format!("{}: a forward-auth endpoint takes no other settings", route.path)));
        }
    }
    if route.max_token_age_secs == Some(0) {
        errors.push(error(at("max_token_age_secs"), "must be at least 1"));
    }
    if let Some(typ) = route.typ.as_deref().filter(|typ| !typ_ok(typ)) {
        errors.push(error(at("typ"), format!("{typ:?}: an access token's typ is \"at+jwt\" (RFC 9068) or \"jwt\"")));
    }
    if let Some(from) = &route.token_from {
        match (&from.cookie, &from.header) {
            (Some(cookie), None) => {
                let token_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
                if cookie.is_empty() || !cookie.bytes().all(token_char) {
                    errors.push(error(at("token_from.cookie"), format!("{cookie:?} is not a cookie name")));
                }
            }
            (None, Some(header)) => match HeaderName::from_bytes(header.as_bytes()) {
                Err(_) => {
                    errors.push(error(at("token_from.header"), format!("{header:?} is not a valid header name")));
                }
                Ok(name) if reserved_header(name.as_str()) || managed.contains(&name.as_str().replace('_', "-")) => {
                    errors.push(error(
                        at("token_from.header"),
                        format!("{header:?} is a header the gateway or the HTTP framing owns; name another"),
                    ));
                }
                Ok(_) => {}
            },
            _ => errors.push(error(at("token_from"), "give exactly one of cookie = \"NAME\" or header = \"NAME\"")),
        }
    }
    match (route.preflight, &route.cors) {
        (Some(Preflight::Answer), None) => {
            errors.push(error(at("preflight"), "\"answer\" needs the route's cors table to answer from"));
        }
        // Envoy lets a request through on 200 only and hands any other answer, a 204 too, to the client.
        (Some(Preflight::Answer), Some(_))
            if config.forward_auth.is_some_and(|front| front != crate::config::FrontProxy::Envoy) =>
        {
            errors.push(error(
                at("preflight"),
                "a proxy in front passes every 2xx answer on to the upstream: use \"pass\", or answer preflights \
                 in that proxy (Envoy's ext_authz can answer them)",
            ));
        }
        (Some(_), _) if route.forward_auth.is_some() => {
            errors.push(error(
                at("preflight"),
                format!("{}: a forward-auth endpoint takes no other settings", route.path),
            ));
        }
        (_, Some(_)) if route.preflight != Some(Preflight::Answer) => {
            errors.push(error(at("cors"), "is used only with preflight = \"answer\""));
        }
        (_, Some(cors)) => check_cors(&at("cors"), cors, errors),
        _ => {}
    }
}

fn check_cors(key: &str, cors: &CorsConfig, errors: &mut Vec<ConfigError>) {
    if cors.allowed_origins.is_empty() {
        errors.push(error(format!("{key}.allowed_origins"), "list the origins allowed, as https://app.example.com"));
    }
    for (j, origin) in cors.allowed_origins.iter().enumerate() {
        let parsed = origin.parse::<http::Uri>().ok();
        let is_origin = parsed.as_ref().is_some_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.authority().is_some_and(|a| !a.as_str().contains('@'))
                && uri.path_and_query().is_none_or(|p| p.as_str().is_empty() || p.as_str() == "/")
        }) && !origin.ends_with('/')
            && origin.to_ascii_lowercase() == *origin;
        if !is_origin {
            errors.push(error(
                format!("{key}.allowed_origins[{j}]"),
                format!(
                    "{origin:?} is not an origin: scheme://host[:port] in lower case, no path (compared exactly; \"*\" is not allowed)"
                ),
            ));
        }
    }
    if cors.allowed_methods.is_empty() {
        errors.push(error(format!("{key}.allowed_methods"), "list the methods allowed, as [\"GET\", \"POST\"]"));
    }
    for (j, method) in cors.allowed_methods.iter().enumerate() {
        if http::Method::from_bytes(method.as_bytes()).is_err() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            errors.push(error(format!("{key}.allowed_methods[{j}]"), format!("{method:?} is not an HTTP method")));
        }
    }
    for (j, header) in cors.allowed_headers.iter().enumerate() {
        if HeaderName::from_bytes(header.as_bytes()).is_err() {
            errors.push(error(format!("{key}.allowed_headers[{j}]"), format!("{header:?} is not a valid header name")));
        }
    }
    if cors.max_age_secs.is_some_and(|secs| secs > 86_400) {
        errors.push(error(format!("{key}.max_age_secs"), "at most 86400 (browsers cap it lower still)"));
    }
}

/// The rules of `issuer` for the verifier, when it has any of its own.
pub(crate) fn issuer_rules(issuer: &IssuerConfig) -> Option<IssuerRules> {
    let mut rules = IssuerRules::new();
    let mut any = false;
    if let Some(secs) = issuer.leeway_secs {
        rules = rules.leeway(Duration::from_secs(secs));
        any = true;
    }
    if let Some(secs) = issuer.max_token_age_secs {
        rules = rules.max_age(Duration::from_secs(secs));
        any = true;
    }
    if let Some(typ) = &issuer.typ {
        rules = rules.typ(typ.clone());
        any = true;
    }
    if !issuer.algorithms.is_empty() {
        rules = rules.algorithms(issuer.algorithms.iter().filter_map(|name| Algorithm::from_name(name)));
        any = true;
    }
    if issuer.profile == Some(crate::config::Profile::Rfc9068) {
        rules = rules.rfc9068();
        any = true;
    }
    any.then_some(rules)
}

/// One route's token options, compiled.
#[derive(Debug, Clone, Default)]
pub(crate) struct RouteOptions {
    pub optional: bool,
    pub token_from: Option<TokenSource>,
    pub max_age: Option<Duration>,
    pub typ: Option<String>,
    pub preflight: Option<Preflight>,
    pub cors: Option<Cors>,
}

impl RouteOptions {
    /// Compiles a checked route's options.
    pub(crate) fn new(route: &RouteConfig) -> Self {
        let token_from = route.token_from.as_ref().and_then(|from| match (&from.cookie, &from.header) {
            (Some(cookie), _) => Some(TokenSource::Cookie(cookie.clone())),
            (None, Some(header)) => HeaderName::from_bytes(header.as_bytes()).ok().map(TokenSource::Header),
            (None, None) => None,
        });
        Self {
            optional: route.auth == AuthMode::Optional,
            token_from,
            max_age: route.max_token_age_secs.map(Duration::from_secs),
            typ: route.typ.clone(),
            preflight: route.preflight,
            cors: route.cors.as_ref().map(Cors::new),
        }
    }

    /// The route's own checks on a verified token: its `typ`, and its maximum age (with the issuer's leeway).
    pub(crate) fn accepts(
        &self,
        route: &str,
        token: &VerifiedToken,
        now: portcullis::clock::UnixTime,
        leeway: Duration,
    ) -> Result<(), Error> {
        if let Some(required) = &self.typ {
            let media = |typ: &str| {
                let lower = typ.to_ascii_lowercase();
                lower.strip_prefix("application/").map_or(lower.clone(), str::to_owned)
            };
            if token.header().typ().map(media) != Some(media(required)) {
                return Err(Error::new(
                    Reason::HeaderInvalid,
                    format!("{route} accepts only tokens of typ {required}"),
                ));
            }
        }
        if let Some(max_age) = self.max_age {
            let Some(iat) = token.registered().iat else {
                return Err(Error::new(Reason::ClaimMissing, format!("{route} needs iat: it limits the token's age")));
            };
            let age = now.as_secs_f64() - iat;
            if age > max_age.as_secs_f64() + leeway.as_secs_f64() {
                return Err(Error::new(
                    Reason::TokenExpired,
                    format!("{route} accepts tokens issued at most {} s ago", max_age.as_secs()),
                ));
            }
        }
        Ok(())
    }
}
