//! One error taxonomy for every way a request can fail verification.
//!
//! Each [`Error`] carries a stable machine-readable [`Reason`] (its code never changes between releases), a short
//! human description that is safe to put in an HTTP header, and a mapping to the HTTP answer that the middleware
//! and the gateway give (status code and RFC 6750 `error` attribute).
//!
//! Behind the reason, [`Error::detail`] gives the facts a program can act on without parsing the description
//! (the token's `exp` and the clock's now for an expired token, the `iss` found for an issuer mismatch, …), and
//! [`std::error::Error::source`] gives the lower-level error when one caused the refusal.

use crate::clock::UnixTime;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Why a token (or a request carrying one) was refused.
///
/// The [`code`](Reason::code) is stable and documented; clients and dashboards may match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The request carried no credentials at all.
    TokenMissing,
    /// The request itself is malformed: two credentials, a scheme other than `Bearer`, an empty token.
    RequestInvalid,
    /// The token is not a well-formed compact JWS: size, segments, base64url, JSON.
    TokenMalformed,
    /// The JOSE header is well-formed JSON but breaks a rule: `crit`, `b64`, `typ`, `kid` type, nested tokens.
    HeaderInvalid,
    /// The token's `alg` is not allowed here, or does not match the key.
    AlgorithmNotAllowed,
    /// No usable key in the key set matches the token.
    KeyNotFound,
    /// The signature does not verify.
    SignatureInvalid,
    /// `exp` has passed (beyond the leeway), or the token is older than the configured maximum age.
    TokenExpired,
    /// `nbf` is still in the future (beyond the leeway).
    TokenNotYetValid,
    /// `iss` is not one of the expected issuers.
    IssuerMismatch,
    /// No `aud` value is one of the expected audiences.
    AudienceMismatch,
    /// A required claim is absent.
    ClaimMissing,
    /// A claim is present but malformed or out of range, or fails a configured rule.
    ClaimInvalid,
    /// The token was revoked by the application's revocation check.
    TokenRevoked,
    /// The token is valid but the authorization rule for this resource is not met.
    InsufficientScope,
    /// The keys needed to verify the token cannot be obtained right now.
    KeysUnavailable,
    /// A shared store the decision needs (the DPoP replay store) cannot answer right now, and the configuration
    /// says to refuse rather than decide without it.
    StoreUnavailable,
    /// The DPoP proof is missing, malformed or fails a check (RFC 9449 §4.3), or was replayed.
    DpopProofInvalid,
    /// The server requires a DPoP nonce and the proof has none, or a stale one (RFC 9449 §9).
    DpopNonceRequired,
    /// The token's binding does not hold: a DPoP-bound token sent as `Bearer`, a token bound to another key than
    /// the proof's, an unbound token with the `DPoP` scheme, or `Bearer` where DPoP is required.
    TokenBindingInvalid,
}

/// The `error` attribute of an RFC 6750 `WWW-Authenticate: Bearer` challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BearerError {
    /// `invalid_request` (RFC 6750 §3.1): HTTP 400.
    InvalidRequest,
    /// `invalid_token`: HTTP 401.
    InvalidToken,
    /// `insufficient_scope`: HTTP 403.
    InsufficientScope,
    /// `invalid_dpop_proof` (RFC 9449 §7.1): HTTP 401.
    InvalidDpopProof,
    /// `use_dpop_nonce` (RFC 9449 §9): HTTP 401.
    UseDpopNonce,
}

impl BearerError {
    /// The wire spelling of the error code.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
        }
    }
}

impl Reason {
    /// Every reason, in documentation order.
    pub const ALL: [Reason; 20] = [
        Reason::TokenMissing,
        Reason::RequestInvalid,
        Reason::TokenMalformed,
        Reason::HeaderInvalid,
        Reason::AlgorithmNotAllowed,
        Reason::KeyNotFound,
        Reason::SignatureInvalid,
        Reason::TokenExpired,
        Reason::TokenNotYetValid,
        Reason::IssuerMismatch,
        Reason::AudienceMismatch,
        Reason::ClaimMissing,
        Reason::ClaimInvalid,
        Reason::TokenRevoked,
        Reason::InsufficientScope,
        Reason::KeysUnavailable,
        Reason::StoreUnavailable,
        Reason::DpopProofInvalid,
        Reason::DpopNonceRequired,
        Reason::TokenBindingInvalid,
    ];

    /// The stable machine-readable code, e.g. `audience_mismatch`.
    pub const fn code(self) -> &'static str {
        match self {
            Self::TokenMissing => "token_missing",
            Self::RequestInvalid => "request_invalid",
            Self::TokenMalformed => "token_malformed",
            Self::HeaderInvalid => "header_invalid",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::KeyNotFound => "key_not_found",
            Self::SignatureInvalid => "signature_invalid",
            Self::TokenExpired => "token_expired",
            Self::TokenNotYetValid => "token_not_yet_valid",
            Self::IssuerMismatch => "issuer_mismatch",
            Self::AudienceMismatch => "audience_mismatch",
            Self::ClaimMissing => "claim_missing",
            Self::ClaimInvalid => "claim_invalid",
            Self::TokenRevoked => "token_revoked",
            Self::InsufficientScope => "insufficient_scope",
            Self::KeysUnavailable => "keys_unavailable",
            Self::StoreUnavailable => "store_unavailable",
            Self::DpopProofInvalid => "dpop_proof_invalid",
            Self::DpopNonceRequired => "dpop_nonce_required",
            Self::TokenBindingInvalid => "token_binding_invalid",
        }
    }

    /// The HTTP status code a server answers with.
    ///
    /// ```
    /// use portcullis::Reason;
    /// assert_eq!(Reason::TokenMissing.http_status(), 401);
    /// assert_eq!(Reason::RequestInvalid.http_status(), 400);
    /// assert_eq!(Reason::InsufficientScope.http_status(), 403);
    /// assert_eq!(Reason::KeysUnavailable.http_status(), 503);
    /// ```
    pub const fn http_status(self) -> u16 {
        match self {
            Self::RequestInvalid => 400,
            Self::InsufficientScope => 403,
            Self::KeysUnavailable | Self::StoreUnavailable => 503,
            _ => 401,
        }
    }

    /// The RFC 6750 error code for the `WWW-Authenticate` challenge.
    ///
    /// `None` means the challenge carries no error attribute (no credentials, RFC 6750 §3.1) or no challenge is
    /// sent at all (503: the fault is the server's, not the client's).
    pub const fn bearer_error(self) -> Option<BearerError> {
        match self {
            Self::TokenMissing | Self::KeysUnavailable | Self::StoreUnavailable => None,
            Self::RequestInvalid => Some(BearerError::InvalidRequest),
            Self::InsufficientScope => Some(BearerError::InsufficientScope),
            Self::DpopProofInvalid => Some(BearerError::InvalidDpopProof),
            Self::DpopNonceRequired => Some(BearerError::UseDpopNonce),
            _ => Some(BearerError::InvalidToken),
        }
    }

    /// Whether the answer carries a `WWW-Authenticate: Bearer` challenge at all.
    pub const fn has_challenge(self) -> bool {
        !matches!(self, Self::KeysUnavailable | Self::StoreUnavailable)
    }

    /// Whether the reason concerns the DPoP proof itself, so its challenge is always the `DPoP` one.
    pub const fn is_dpop_specific(self) -> bool {
        matches!(self, Self::DpopProofInvalid | Self::DpopNonceRequired)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The `Authorization` scheme a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `Bearer` (RFC 6750).
    Bearer,
    /// `DPoP` (RFC 9449 §7.1).
    Dpop,
}

impl Scheme {
    /// The scheme name as challenges spell it: `Bearer` or `DPoP`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "Bearer",
            Self::Dpop => "DPoP",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the `WWW-Authenticate` challenges of a refusal offer (see [`Error::challenges`]).
#[derive(Debug, Clone, Copy)]
pub struct Challenges<'a> {
    /// The `realm` of every challenge.
    pub realm: &'a str,
    /// Whether a `Bearer` challenge is sent (the `Bearer` scheme is accepted).
    pub bearer: bool,
    /// The algorithms of the `DPoP` challenge's `algs`; `None` sends no `DPoP` challenge.
    pub dpop_algs: Option<crate::AlgorithmSet>,
    /// The absolute URL of the RFC 9728 protected-resource metadata, sent as `resource_metadata`.
    pub resource_metadata: Option<&'a str>,
    /// The scheme the request used, when it carried credentials: its challenge carries the error.
    pub scheme_used: Option<Scheme>,
}

/// The structured facts behind an [`Error`], for programs (logs, metrics, debuggers) that need more than the
/// [`Reason`] and less than parsing the description.
///
/// Values taken from the token (`found`, `kid`, `alg`, claim names) are as the token carried them, not sanitised:
/// never put them into an HTTP header (the [`description`](Error::description) is the safe text for that).
///
/// ```
/// use portcullis::error::{Detail, Error, Reason};
/// let err = Error::new(Reason::TokenMalformed, "token is not a compact JWS");
/// assert_eq!(err.detail(), &Detail::Other);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Detail {
    /// No facts beyond the reason and the description.
    Other,
    /// `exp` has passed, beyond the leeway ([`Reason::TokenExpired`]).
    #[non_exhaustive]
    Expired {
        /// The token's `exp` (a NumericDate: seconds since the epoch, possibly fractional).
        exp: f64,
        /// The verifier's clock.
        now: UnixTime,
        /// The configured clock-skew allowance.
        leeway: Duration,
    },
    /// The token was issued longer ago than the configured maximum age ([`Reason::TokenExpired`]).
    #[non_exhaustive]
    TooOld {
        /// The token's `iat`.
        iat: f64,
        /// The verifier's clock.
        now: UnixTime,
        /// The configured maximum age.
        max_age: Duration,
        /// The configured clock-skew allowance.
        leeway: Duration,
    },
    /// `nbf` is still in the future, beyond the leeway ([`Reason::TokenNotYetValid`]).
    #[non_exhaustive]
    NotYetValid {
        /// The token's `nbf`.
        nbf: f64,
        /// The verifier's clock.
        now: UnixTime,
        /// The configured clock-skew allowance.
        leeway: Duration,
    },
    /// `iat` is in the future, beyond the leeway ([`Reason::ClaimInvalid`]).
    #[non_exhaustive]
    IssuedInFuture {
        /// The token's `iat`.
        iat: f64,
        /// The verifier's clock.
        now: UnixTime,
        /// The configured clock-skew allowance.
        leeway: Duration,
    },
    /// The token's `iss` is not trusted ([`Reason::IssuerMismatch`]).
    #[non_exhaustive]
    IssuerMismatch {
        /// The token's `iss`.
        found: String,
    },
    /// None of the token's `aud` values is accepted ([`Reason::AudienceMismatch`]).
    #[non_exhaustive]
    AudienceMismatch {
        /// The token's `aud` values.
        found: Vec<String>,
    },
    /// A claim that must be present is not ([`Reason::ClaimMissing`]).
    #[non_exhaustive]
    ClaimMissing {
        /// The claim's name (for the client restriction: `azp`, which `client_id` may stand in for).
        claim: String,
    },
    /// A registered claim has the wrong type or is out of range ([`Reason::ClaimInvalid`]).
    #[non_exhaustive]
    ClaimInvalid {
        /// The claim's name.
        claim: String,
    },
    /// The token's `azp`/`client_id` is not an allowed client ([`Reason::ClaimInvalid`]).
    #[non_exhaustive]
    ClientNotAllowed {
        /// The token's client.
        client: String,
    },
    /// The token's `alg` is not accepted, or not with the chosen key ([`Reason::AlgorithmNotAllowed`]).
    #[non_exhaustive]
    AlgorithmNotAllowed {
        /// The `alg` of the token's header.
        alg: String,
    },
    /// No single usable key matches the token ([`Reason::KeyNotFound`]).
    #[non_exhaustive]
    KeyNotFound {
        /// The `kid` of the token's header, when it has one.
        kid: Option<String>,
    },
}

// NumericDate payloads are always finite (claim parsing refuses anything else) and variants with payloads are
// built only inside this crate, so equality is an equivalence relation.
impl Eq for Detail {}

/// The detail of errors that carry none.
static OTHER: Detail = Detail::Other;

/// What an error carries beyond its reason and description: kept out of line so that `Result<_, Error>` stays
/// small on the verification path.
#[derive(Clone)]
struct Extra {
    detail: Detail,
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

/// A refusal: a [`Reason`] and a description a human can act on.
///
/// The description never contains key material or the token, and only characters allowed in an RFC 6750
/// `error_description` (printable ASCII without `"` and `\`).
///
/// ```
/// use portcullis::{Error, Reason};
/// let err = Error::new(Reason::IssuerMismatch, "issuer mismatch: \"evil\\\" value\u{7f}");
/// assert_eq!(err.reason(), Reason::IssuerMismatch);
/// assert_eq!(err.description(), "issuer mismatch: 'evil/' value?");
/// ```
#[derive(Clone)]
pub struct Error {
    reason: Reason,
    description: Cow<'static, str>,
    retry_after: Option<u32>,
    scope: Option<Box<str>>,
    extra: Option<Box<Extra>>,
}

/// Errors are equal when their reason, description, retry hint, scope and detail are; the source is not compared.
impl PartialEq for Error {
    fn eq(&self, other: &Self) -> bool {
        self.reason == other.reason
            && self.description == other.description
            && self.retry_after == other.retry_after
            && self.scope == other.scope
            && self.detail() == other.detail()
    }
}

impl Eq for Error {}

impl Error {
    /// Builds an error; characters not allowed in an RFC 6750 description are replaced.
    pub fn new(reason: Reason, description: impl Into<Cow<'static, str>>) -> Self {
        let description = description.into();
        let description = if description.bytes().all(is_description_byte) {
            description
        } else {
            Cow::Owned(description.chars().map(safe_char).collect())
        };
        Self { reason, description, retry_after: None, scope: None, extra: None }
    }

    /// Attaches the structured [`Detail`] behind the reason.
    #[must_use]
    pub fn with_detail(mut self, detail: Detail) -> Self {
        match &mut self.extra {
            Some(extra) => extra.detail = detail,
            None => self.extra = Some(Box::new(Extra { detail, source: None })),
        }
        self
    }

    /// Attaches the lower-level error that caused this one (returned by [`std::error::Error::source`]).
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        let source: Arc<dyn std::error::Error + Send + Sync> = Arc::new(source);
        match &mut self.extra {
            Some(extra) => extra.source = Some(source),
            None => self.extra = Some(Box::new(Extra { detail: Detail::Other, source: Some(source) })),
        }
        self
    }

    /// The structured facts behind the reason ([`Detail::Other`] when there are none).
    ///
    /// ```
    /// use portcullis::error::{Detail, Error, Reason};
    /// let err = Error::new(Reason::KeyNotFound, "no key").with_detail(Detail::Other);
    /// assert!(matches!(err.detail(), Detail::Other));
    /// ```
    pub fn detail(&self) -> &Detail {
        self.extra.as_ref().map_or(&OTHER, |extra| &extra.detail)
    }

    /// Adds a hint, in seconds, for when a retry may succeed (sent as `Retry-After` with 503 answers).
    #[must_use]
    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Adds the space-separated scopes a resource needs (the RFC 6750 `scope` attribute of a 403). Characters not
    /// allowed there (RFC 6749 §3.3: printable ASCII except `"` and `\\`) are dropped.
    #[must_use]
    pub fn with_scope(mut self, scope: &str) -> Self {
        let clean: String = scope.chars().filter(|c| matches!(*c, ' ' | '!' | '#'..='[' | ']'..='~')).collect();
        self.scope = Some(clean.into());
        self
    }

    /// The scopes a resource needs, for `insufficient_scope` answers.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The `WWW-Authenticate` challenge for this error (RFC 6750 §3), or `None` when no challenge is sent (503).
    ///
    /// ```
    /// use portcullis::{Error, Reason};
    /// let err = Error::new(Reason::AudienceMismatch, "audience mismatch");
    /// assert_eq!(
    ///     err.www_authenticate("api").as_deref(),
    ///     Some(r#"Bearer realm="api", error="invalid_token", error_description="audience mismatch""#)
    /// );
    /// let missing = Error::new(Reason::TokenMissing, "no token");
    /// assert_eq!(missing.www_authenticate("api").as_deref(), Some(r#"Bearer realm="api""#));
    /// let forbidden = Error::new(Reason::InsufficientScope, "requires scope").with_scope("read:messages");
    /// assert!(forbidden.www_authenticate("api").unwrap().ends_with(r#", scope="read:messages""#));
    /// ```
    pub fn www_authenticate(&self, realm: &str) -> Option<String> {
        if !self.reason.has_challenge() {
            return None;
        }
        let realm: String = realm.chars().filter(|c| c.is_ascii() && is_description_byte(*c as u8)).collect();
        let mut challenge = format!("Bearer realm=\"{realm}\"");
        if let Some(code) = self.reason.bearer_error() {
            challenge.push_str(&format!(", error=\"{}\", error_description=\"{}\"", code.as_str(), self.description));
        }
        if let Some(scope) = &self.scope {
            challenge.push_str(&format!(", scope=\"{scope}\""));
        }
        Some(challenge)
    }

    /// The `WWW-Authenticate` challenges for this error, one string per header line: `Bearer` first (when
    /// `params.bearer`), then `DPoP` (when `params.dpop_algs` is set, with `algs="…"` last). The error attributes go
    /// on the challenge of the scheme the request used (always `DPoP` for [`Reason::is_dpop_specific`] reasons);
    /// a request without credentials gets none. `scope` and `resource_metadata` go on every challenge. Empty for
    /// errors answered without a challenge (503).
    ///
    /// ```
    /// use portcullis::error::{Challenges, Error, Reason, Scheme};
    /// use portcullis::Algorithm;
    /// let params = Challenges {
    ///     realm: "api",
    ///     bearer: true,
    ///     dpop_algs: Some([Algorithm::ES256, Algorithm::PS256].into_iter().collect()),
    ///     resource_metadata: Some("https://api.example.com/.well-known/oauth-protected-resource"),
    ///     scheme_used: Some(Scheme::Dpop),
    /// };
    /// let err = Error::new(Reason::DpopProofInvalid, "DPoP proof htm does not match the request method");
    /// assert_eq!(
    ///     err.challenges(&params),
    ///     [
    ///         r#"Bearer realm="api", resource_metadata="https://api.example.com/.well-known/oauth-protected-resource""#,
    ///         r#"DPoP realm="api", error="invalid_dpop_proof", error_description="DPoP proof htm does not match the request method", resource_metadata="https://api.example.com/.well-known/oauth-protected-resource", algs="PS256 ES256""#,
    ///     ]
    /// );
    /// ```
    pub fn challenges(&self, params: &Challenges<'_>) -> Vec<String> {
        if !self.reason.has_challenge() {
            return Vec::new();
        }
        let realm = safe_value(params.realm);
        let bearer = params.bearer || params.dpop_algs.is_none();
        let errored = if self.reason.bearer_error().is_none() {
            None
        } else if self.reason.is_dpop_specific() && params.dpop_algs.is_some() {
            Some(Scheme::Dpop)
        } else {
            match params.scheme_used {
                Some(Scheme::Dpop) if params.dpop_algs.is_some() => Some(Scheme::Dpop),
                Some(Scheme::Bearer) if bearer => Some(Scheme::Bearer),
                _ if bearer => Some(Scheme::Bearer),
                _ => Some(Scheme::Dpop),
            }
        };
        let metadata = params.resource_metadata.map(safe_value);
        let challenge = |scheme: Scheme| {
            let mut out = format!("{} realm=\"{realm}\"", scheme.as_str());
            if errored == Some(scheme)
                && let Some(code) = self.reason.bearer_error()
            {
                out.push_str(&format!(", error=\"{}\", error_description=\"{}\"", code.as_str(), self.description));
            }
            if let Some(scope) = &self.scope {
                out.push_str(&format!(", scope=\"{scope}\""));
            }
            if let Some(metadata) = &metadata {
                out.push_str(&format!(", resource_metadata=\"{metadata}\""));
            }
            out
        };
        let mut all = Vec::with_capacity(2);
        if bearer {
            all.push(challenge(Scheme::Bearer));
        }
        if let Some(algs) = params.dpop_algs {
            let names: Vec<&str> = algs.iter().map(crate::Algorithm::name).collect();
            let mut dpop = challenge(Scheme::Dpop);
            dpop.push_str(&format!(", algs=\"{}\"", names.join(" ")));
            all.push(dpop);
        }
        all
    }

    /// Seconds after which a retry may succeed, when known.
    pub fn retry_after(&self) -> Option<u32> {
        self.retry_after
    }

    /// The machine-readable reason.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The human-readable description (safe for `error_description`).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Shorthand for `self.reason().http_status()`.
    pub fn http_status(&self) -> u16 {
        self.reason.http_status()
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({}: {})", self.reason.code(), self.description)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.code(), self.description)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let source = self.extra.as_ref()?.source.as_ref()?;
        Some(source.as_ref() as &(dyn std::error::Error + 'static))
    }
}

/// A value made safe for a quoted challenge parameter.
fn safe_value(value: &str) -> String {
    value.chars().filter(|c| c.is_ascii() && is_description_byte(*c as u8)).collect()
}

/// RFC 6750 §3: `error-description = *( %x20-21 / %x23-5B / %x5D-7E )`.
fn is_description_byte(b: u8) -> bool {
    matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)
}

fn safe_char(c: char) -> char {
    match c {
        '"' => '\'',
        '\\' => '/',
        c if c.is_ascii() && is_description_byte(c as u8) => c,
        _ => '?',
    }
}

/// Quotes a value taken from a token for use inside a description: at most 80 characters, safe charset.
pub(crate) fn quoted(value: &str) -> String {
    const MAX: usize = 80;
    let mut out = String::with_capacity(value.len().min(MAX) + 5);
    out.push('\'');
    for (i, c) in value.chars().enumerate() {
        if i == MAX {
            out.push_str("...");
            break;
        }
        out.push(safe_char(c));
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for reason in Reason::ALL {
            assert!(seen.insert(reason.code()), "duplicate code {}", reason.code());
            assert!(reason.code().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }

    #[test]
    fn token_defects_are_401_invalid_token() {
        for reason in [Reason::TokenMalformed, Reason::SignatureInvalid, Reason::AudienceMismatch] {
            assert_eq!(reason.http_status(), 401);
            assert_eq!(reason.bearer_error(), Some(BearerError::InvalidToken));
        }
        assert_eq!(Reason::TokenMissing.bearer_error(), None);
        assert!(!Reason::KeysUnavailable.has_challenge());
    }

    #[test]
    fn details_and_sources_travel_with_the_error() {
        let plain = Error::new(Reason::IssuerMismatch, "issuer mismatch");
        assert_eq!(plain.detail(), &Detail::Other);
        assert!(std::error::Error::source(&plain).is_none());
        let detailed = plain.clone().with_detail(Detail::IssuerMismatch { found: "evil".into() });
        assert_eq!(detailed.detail(), &Detail::IssuerMismatch { found: "evil".into() });
        assert_ne!(plain, detailed);
        let io = std::io::Error::other("lower level");
        let chained = detailed.clone().with_source(io);
        assert_eq!(chained.detail(), detailed.detail(), "a source keeps the detail");
        assert_eq!(std::error::Error::source(&chained).map(ToString::to_string).as_deref(), Some("lower level"));
        assert_eq!(chained, detailed, "sources are not compared");
        assert_eq!(chained.to_string(), "issuer_mismatch: issuer mismatch", "the text is unchanged");
    }

    #[test]
    fn challenge_parameters_cannot_break_out_of_their_quotes() {
        let params = Challenges {
            realm: "a\"b",
            bearer: true,
            dpop_algs: None,
            resource_metadata: Some("https://x.example/\", error=\"none"),
            scheme_used: None,
        };
        let challenges = Error::new(Reason::TokenMissing, "none").challenges(&params);
        assert_eq!(challenges, [r#"Bearer realm="ab", resource_metadata="https://x.example/, error=none""#]);
    }

    #[test]
    fn quoted_truncates_and_sanitises() {
        let long = "a".repeat(200);
        let q = quoted(&long);
        assert_eq!(q.len(), 80 + 5);
        assert_eq!(quoted("x\"y\u{e9}"), "'x'y?'");
    }
}
