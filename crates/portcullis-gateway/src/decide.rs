//! The decision about one canonical request, as a value: allowed with the headers for the upstream, or denied
//! with the reason. Nothing here renders a response; each edge renders the [`Decision`] its own way.

use crate::canonical::PathError;
use crate::config::Preflight;
use crate::gateway::Policy;
use crate::policy::{Access, Resolution, RouteKind};
use crate::request::CanonicalRequest;
use crate::token_source::TokenSource;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use portcullis::dpop::Scheme;
use portcullis::{Error, Reason, VerifiedToken};
use serde_json::Value;

/// What the gateway decided about a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum Decision {
    /// Let it through.
    Allow(Allowed),
    /// Refuse it.
    Deny(Denial),
    /// Answer a CORS preflight at the gateway (`preflight = "answer"`); the upstream never sees it.
    Preflight(PreflightAnswer),
}

/// The gateway's answer to a CORS preflight it allows: `204` with these headers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PreflightAnswer {
    /// `Access-Control-Allow-*`, `Access-Control-Max-Age` and `Vary`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// An allowed request: what goes upstream with it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Allowed {
    /// Headers from the token's claims (empty on public routes).
    pub claim_headers: Vec<(HeaderName, HeaderValue)>,
    /// Whether the `Authorization` header (and the route's token cookie or header) may go upstream.
    pub forward_authorization: bool,
    /// The route's other token location, removed before forwarding unless `forward_authorization`.
    pub(crate) token_source: Option<TokenSource>,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Denial {
    /// The credentials are missing, malformed or invalid, do not meet the route's rule, or keys are unavailable.
    Token(Error),
    /// The request target cannot be read unambiguously.
    Target(PathError),
    /// Forward-auth: the target is not in canonical form, and the front proxy forwards it as it is, so the
    /// upstream could read it differently from the path that was checked.
    NotCanonical,
    /// Lenient and strict route matching disagree about this path.
    Ambiguous,
    /// The path's route does not take this method; these methods it does.
    MethodNotAllowed(Vec<Method>),
    /// No route matches and unmatched requests are refused.
    NoRoute,
    /// Forward-auth: the front proxy's description of the request is missing, repeated or unreadable.
    FrontHeaders(&'static str),
    /// Forward-auth: the request carries a header the gateway manages (a client copy the front proxy passed on).
    ManagedHeader,
    /// Forward-auth: the request carries a forwarding or path-override header the front proxy does not replace
    /// itself, so the client's copy would reach the upstream.
    ForwardingHeader,
    /// Forward-auth: the request asks to switch to a protocol other than WebSocket (`h2c`), which the front
    /// proxy would tunnel past every later decision.
    Upgrade,
    /// The request names its host ambiguously (several `Host` headers, or one that disagrees with the target).
    Host(&'static str),
    /// A CORS preflight the route's `cors` table does not allow (origin, method or headers).
    Preflight(&'static str),
}

impl Denial {
    /// The stable reason code (logs, metrics, response bodies).
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::Token(error) => error.reason().code(),
            Denial::Target(_) => "target_invalid",
            Denial::NotCanonical => "target_not_canonical",
            Denial::Ambiguous => "route_ambiguous",
            Denial::MethodNotAllowed(_) => "method_not_allowed",
            Denial::NoRoute => "no_route",
            Denial::FrontHeaders(_) => "front_headers_invalid",
            Denial::ManagedHeader => "managed_header_sent",
            Denial::Upgrade => "upgrade_refused",
            Denial::ForwardingHeader => "forwarding_header_sent",
            Denial::Host(_) => "host_invalid",
            Denial::Preflight(_) => "preflight_refused",
        }
    }

    /// The status a client gets from the reverse proxy (and through Caddy and Traefik).
    pub fn status(&self) -> StatusCode {
        match self {
            Denial::Token(error) => StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::UNAUTHORIZED),
            Denial::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Denial::NoRoute => StatusCode::NOT_FOUND,
            Denial::Preflight(_) => StatusCode::FORBIDDEN,
            Denial::Target(_)
            | Denial::NotCanonical
            | Denial::Ambiguous
            | Denial::FrontHeaders(_)
            | Denial::ManagedHeader
            | Denial::Upgrade
            | Denial::ForwardingHeader
            | Denial::Host(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// What failed, in words safe for logs and `error_description` (never echoes the request).
    pub fn description(&self) -> String {
        match self {
            Denial::Token(error) => error.description().to_owned(),
            Denial::Target(error) => error.to_string(),
            Denial::NotCanonical => "the target is not in canonical form (dot-segments, repeated slashes or \
                                     needlessly encoded characters); send it normalized"
                .to_owned(),
            Denial::Ambiguous => "the path matches a case- or slash-sensitive route only loosely".to_owned(),
            Denial::MethodNotAllowed(allow) => {
                format!("this route takes {}", allow.iter().map(Method::as_str).collect::<Vec<_>>().join(", "))
            }
            Denial::NoRoute => "no such route".to_owned(),
            Denial::FrontHeaders(what) => (*what).to_owned(),
            Denial::ManagedHeader => "the request carries a header the gateway sets".to_owned(),
            Denial::ForwardingHeader => {
                "the request carries a forwarding or path-override header the proxy in front passes on".to_owned()
            }
            Denial::Upgrade => "only WebSocket upgrades are allowed".to_owned(),
            Denial::Host(what) | Denial::Preflight(what) => (*what).to_owned(),
        }
    }
}

/// A decision with what the observer reports about it.
pub(crate) struct Decided {
    pub decision: Decision,
    /// The route that decided (by index), when one did.
    pub route: Option<usize>,
    pub subject: Option<String>,
}

impl Policy {
    /// Decides about `request`, carrying `headers`, under this policy. `answers_preflights`: whether the edge can
    /// answer a CORS preflight itself.
    pub(crate) async fn decide(
        &self,
        request: &CanonicalRequest,
        headers: &HeaderMap,
        answers_preflights: bool,
    ) -> Decided {
        if let Some(decided) = self.preflight(request, headers, answers_preflights) {
            return decided;
        }
        let (index, access, forward_authorization) = match self.routes.resolve(&request.method, &request.path) {
            Resolution::Route(index) => match &self.routes.get(index).kind {
                RouteKind::Resource { access, forward_authorization } => (Some(index), access, *forward_authorization),
                // A forward-auth endpoint is never the resource a decision is about.
                RouteKind::ForwardAuthEndpoint(_) => return self.refused(Denial::NoRoute, Some(index)),
            },
            Resolution::NoRoute if self.config.unmatched == crate::Unmatched::Authenticated => {
                (None, &self.unmatched_access, false)
            }
            Resolution::NoRoute => return self.refused(Denial::NoRoute, None),
            Resolution::MethodNotAllowed(allow) => return self.refused(Denial::MethodNotAllowed(allow), None),
            Resolution::Ambiguous => return self.refused(Denial::Ambiguous, None),
        };
        let route = index;
        let (rule, issuers, audiences) = match access {
            Access::Public => {
                let allowed = Allowed { claim_headers: Vec::new(), forward_authorization, token_source: None };
                return Decided { decision: Decision::Allow(allowed), route, subject: None };
            }
            Access::Token { rule, issuers, audiences } => (rule.as_ref(), issuers, audiences),
        };
        let options = index.map(|i| &self.route_options[i]);
        let token_source = options.and_then(|options| options.token_from.clone());
        let (scheme, verified) = match crate::token_source::token(headers, token_source.as_ref()) {
            // The scheme is checked against the route's DPoP mode before any work on the token, when the mode
            // does not depend on the token's issuer.
            Ok(Some((scheme, token))) => match self.sender.known_mode(route).map_or(Ok(()), |m| m.admits(scheme)) {
                Ok(()) => (scheme, self.verifier.verify_async(token).await),
                Err(error) => (scheme, Err(error)),
            },
            // Optional authentication: no token at all passes, without claim headers.
            Ok(None) if options.is_some_and(|options| options.optional) => {
                let allowed = Allowed { claim_headers: Vec::new(), forward_authorization, token_source };
                return Decided { decision: Decision::Allow(allowed), route, subject: None };
            }
            Ok(None) => (Scheme::Bearer, Err(Error::new(Reason::TokenMissing, "the request has no bearer token"))),
            Err(error) => (Scheme::Bearer, Err(error)),
        };
        let verified = match verified {
            Ok(verified) => verified,
            Err(error) => return Decided { decision: Decision::Deny(Denial::Token(error)), route, subject: None },
        };
        let subject = verified.subject().map(str::to_owned);
        // The proof is checked on every request, whether or not the token came from the token cache.
        let mode = self.sender.mode(route, verified.issuer());
        let proven = match portcullis_axum::dpop_proofs(headers) {
            Ok(proofs) => {
                let method = request.method.as_str();
                self.sender.check(mode, scheme, &proofs, &verified, method, &request.received_path).await
            }
            Err(error) => Err(error),
        };
        if let Err(error) = proven {
            return Decided { decision: Decision::Deny(Denial::Token(error)), route, subject };
        }
        let name = route.map_or("unmatched requests", |i| self.routes.get(i).name.as_str());
        let own_checks = || match options {
            Some(options) => {
                options.accepts(name, &verified, self.verifier.now(), self.verifier.leeway(verified.issuer()))
            }
            None => Ok(()),
        };
        if let Err(error) = accepts(name, issuers, audiences, rule, &verified).and_then(|()| own_checks()) {
            return Decided { decision: Decision::Deny(Denial::Token(error)), route, subject };
        }
        let mapping = index.and_then(|i| self.route_claim_headers[i].as_deref()).unwrap_or(&self.claim_headers);
        match claim_headers(mapping, &verified) {
            Ok(claim_headers) => {
                let allowed = Allowed { claim_headers, forward_authorization, token_source };
                Decided { decision: Decision::Allow(allowed), route, subject }
            }
            Err(error) => Decided { decision: Decision::Deny(Denial::Token(error)), route, subject },
        }
    }

    /// A CORS preflight is decided by the route of the method it asks about, when that route handles preflights:
    /// passed upstream without a token, or answered here from its `cors` table. `None`: not a preflight such a
    /// route takes, so an ordinary request (a token is needed as usual).
    fn preflight(&self, request: &CanonicalRequest, headers: &HeaderMap, answers_preflights: bool) -> Option<Decided> {
        if !self.any_preflight {
            return None;
        }
        let asked = crate::cors::preflight_method(&request.method, headers)?;
        let Resolution::Route(index) = self.routes.resolve(&asked, &request.path) else { return None };
        let RouteKind::Resource { forward_authorization, .. } = &self.routes.get(index).kind else { return None };
        let options = &self.route_options[index];
        // Browsers send a preflight without credentials and without a body: a request carrying either is an
        // ordinary request, so nothing unverified reaches the upstream beside a passed preflight.
        if request.has_body || carries_credentials_or_body(headers, options.token_from.as_ref()) {
            return None;
        }
        let decision = match (options.preflight?, &options.cors) {
            (Preflight::Pass, _) => Decision::Allow(Allowed {
                claim_headers: Vec::new(),
                forward_authorization: *forward_authorization,
                token_source: options.token_from.clone(),
            }),
            (Preflight::Answer, Some(cors)) if answers_preflights => match cors.answer(&asked, headers) {
                Ok(headers) => Decision::Preflight(PreflightAnswer { headers }),
                Err(refused) => Decision::Deny(Denial::Preflight(refused.description())),
            },
            _ => return None,
        };
        Some(Decided { decision, route: Some(index), subject: None })
    }

    fn refused(&self, denial: Denial, route: Option<usize>) -> Decided {
        Decided { decision: Decision::Deny(denial), route, subject: None }
    }
}

/// Whether a request carries anything a CORS preflight never does: an `Authorization` header, the route's other
/// token location (in any spelling), or a body.
fn carries_credentials_or_body(headers: &HeaderMap, token_from: Option<&TokenSource>) -> bool {
    declares_body(headers)
        || headers.contains_key(http::header::AUTHORIZATION)
        || token_from.is_some_and(|source| crate::token_source::carried(headers, source))
}

/// Whether `headers` declare a body: `Transfer-Encoding`, or a `Content-Length` other than 0.
pub(crate) fn declares_body(headers: &HeaderMap) -> bool {
    headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers.get_all(http::header::CONTENT_LENGTH).iter().any(|length| length.as_bytes() != b"0")
}

/// A route's own restrictions on a verified token: issuer, audience, then its rule.
pub(crate) fn accepts(
    route: &str,
    issuers: &[String],
    audiences: &[String],
    rule: Option<&portcullis::Requirement>,
    token: &VerifiedToken,
) -> Result<(), Error> {
    if !issuers.is_empty() && !token.issuer().is_some_and(|iss| issuers.iter().any(|r| r == iss)) {
        return Err(Error::new(Reason::IssuerMismatch, format!("{route} does not accept tokens from this issuer")));
    }
    if !audiences.is_empty() && !token.registered().aud.iter().any(|aud| audiences.contains(aud)) {
        return Err(Error::new(
            Reason::AudienceMismatch,
            format!("{route} accepts tokens for {}", audiences.join(" or ")),
        ));
    }
    match rule {
        Some(rule) => rule.check(token),
        None => Ok(()),
    }
}

/// Headers from the token's claims, per `mapping`. `sub`, `scope` (or `scp`) and `permissions` come from the
/// claims parsed during verification; only other claims build the token's full claim map. A value the upstream
/// could read as something else is refused rather than sent: whitespace at either end (HTTP parsers trim it), a
/// comma (header lists), a control character, or a list element holding a space (lists are joined with spaces).
fn claim_headers(
    mapping: &[(String, HeaderName)],
    token: &VerifiedToken,
) -> Result<Vec<(HeaderName, HeaderValue)>, Error> {
    let mut headers = Vec::with_capacity(mapping.len());
    for (claim, header) in mapping {
        let text = match claim.as_str() {
            "sub" => token.subject().map(|subject| single(claim, subject)).transpose()?,
            "scope" | "scp" if !token.scopes().is_empty() => Some(joined(claim, token.scopes())?),
            "permissions" if !token.permissions().is_empty() => Some(joined(claim, token.permissions())?),
            "scope" | "scp" | "permissions" => None,
            _ => match portcullis::claims::lookup(token.claims(), claim) {
                Some(value) => claim_text(claim, value)?,
                None => None,
            },
        };
        if let Some(value) = text.and_then(|text| HeaderValue::from_str(&text).ok()) {
            headers.push((header.clone(), value));
        }
    }
    Ok(headers)
}

/// Whether `text` reads the same to every HTTP parser as one header value.
fn unambiguous(text: &str) -> bool {
    text.trim() == text && !text.chars().any(|c| c == ',' || c.is_control())
}

fn refused(claim: &str) -> Error {
    Error::new(
        Reason::ClaimInvalid,
        format!(
            "claim {claim} cannot be passed on as a header: it holds a comma, a control character, whitespace at \
             an end, or a list element with a space"
        ),
    )
}

fn single(claim: &str, text: &str) -> Result<String, Error> {
    if unambiguous(text) { Ok(text.to_owned()) } else { Err(refused(claim)) }
}

fn joined<S: AsRef<str>>(claim: &str, items: &[S]) -> Result<String, Error> {
    let mut text = String::new();
    for item in items {
        let item = item.as_ref();
        if item.is_empty() || item.contains(char::is_whitespace) || !unambiguous(item) {
            return Err(refused(claim));
        }
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(item);
    }
    Ok(text)
}

/// A claim's value as header text: strings as they are, arrays joined with spaces, other JSON as compact JSON.
fn claim_text(claim: &str, value: &Value) -> Result<Option<String>, Error> {
    Ok(Some(match value {
        Value::String(s) => single(claim, s)?,
        Value::Array(items) => {
            let texts: Vec<String> =
                items.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect();
            joined(claim, &texts)?
        }
        Value::Null => return Ok(None),
        // Numbers, booleans and objects as compact JSON (which holds no control character or outer space).
        other => other.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::claim_text;
    use portcullis::Reason;
    use serde_json::json;

    #[test]
    fn claim_values_become_header_text_only_when_every_parser_reads_one_value() {
        let text = |value| claim_text("c", &value).map_err(|err| err.reason());
        assert_eq!(text(json!("alice")), Ok(Some("alice".into())));
        assert_eq!(text(json!(["a", "b"])), Ok(Some("a b".into())));
        assert_eq!(text(json!(42)), Ok(Some("42".into())));
        assert_eq!(text(json!(true)), Ok(Some("true".into())));
        // An object is one JSON value: its commas sit inside braces.
        assert_eq!(text(json!({"id": 7, "tier": "gold"})), Ok(Some(r#"{"id":7,"tier":"gold"}"#.into())));
        assert_eq!(text(json!(null)), Ok(None));
        for ambiguous in [json!("a,b"), json!(["a", "b,c"]), json!([{"a": 1, "b": 2}])] {
            assert_eq!(text(ambiguous), Err(Reason::ClaimInvalid));
        }
    }
}
