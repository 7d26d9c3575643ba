//! Claim rules: issuer, audience, time, required claims, authorized clients.
//!
//! Each rule is a separate check so that [`Verifier::explain`](crate::Verifier::explain) can report every one,
//! while [`Verifier::verify`](crate::Verifier::verify) stops at the first failure.

use crate::algorithm::{Algorithm, AlgorithmSet};
use crate::claims::{RegisteredClaims, describe_list, lookup};
use crate::clock::{UnixTime, human_duration};
use crate::error::{Detail, Error, Reason, quoted};
use std::time::Duration;

/// One check of a token, in the order verification performs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Check {
    /// Size, segments, base64url, header JSON and header rules.
    Structure,
    /// Key lookup by `kid` and the algorithm bound to the key.
    Key,
    /// The signature.
    Signature,
    /// The payload is a JSON object whose registered claims are well-formed.
    Claims,
    /// `iss`.
    Issuer,
    /// `aud`.
    Audience,
    /// `exp`.
    Expiry,
    /// `nbf`.
    NotBefore,
    /// `iat`, and the maximum age when configured.
    IssuedAt,
    /// Claims the configuration requires.
    RequiredClaims,
    /// `azp`/`client_id` allowlist.
    Client,
}

impl Check {
    /// A short label for reports.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Structure => "structure",
            Self::Key => "key",
            Self::Signature => "signature",
            Self::Claims => "claims",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::Expiry => "expiry",
            Self::NotBefore => "not before",
            Self::IssuedAt => "issued at",
            Self::RequiredClaims => "required claims",
            Self::Client => "client",
        }
    }
}

/// Rules for the tokens of one issuer, overriding the verifier's own for that issuer only (see
/// [`VerifierBuilder::issuer_rules`](crate::VerifierBuilder::issuer_rules)). Each unset rule keeps the verifier's.
///
/// ```
/// use portcullis::{Algorithm, rules::IssuerRules};
/// use std::time::Duration;
/// let rules = IssuerRules::new()
///     .leeway(Duration::from_secs(5))
///     .max_age(Duration::from_secs(600))
///     .typ("at+jwt")
///     .algorithms([Algorithm::RS256]);
/// assert_eq!(rules.max_age, Some(Duration::from_secs(600)));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IssuerRules {
    /// Clock-skew allowance for `exp`, `nbf` and `iat` (at most [`MAX_LEEWAY`](crate::MAX_LEEWAY)).
    pub leeway: Option<Duration>,
    /// Refuse tokens issued longer ago than this (makes `iat` required).
    pub max_age: Option<Duration>,
    /// The header `typ` required, `jwt` or `at+jwt` (RFC 9068).
    pub typ: Option<String>,
    /// The algorithm allowlist for this issuer's tokens; each key still allows only its own algorithms.
    pub algorithms: Option<AlgorithmSet>,
    /// Claims this issuer's tokens must carry, on top of those the verifier requires.
    pub required_claims: Vec<String>,
}

impl IssuerRules {
    /// No rule of its own: the verifier's rules apply.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the clock-skew allowance.
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = Some(leeway);
        self
    }

    /// Sets the maximum token age (on `iat`).
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// Requires the header `typ`.
    #[must_use]
    pub fn typ(mut self, typ: impl Into<String>) -> Self {
        self.typ = Some(typ.into());
        self
    }

    /// Sets the algorithm allowlist.
    #[must_use]
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// Requires a claim in this issuer's tokens (dotted paths reach into objects).
    #[must_use]
    pub fn require_claim(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        if !self.required_claims.contains(&name) {
            self.required_claims.push(name);
        }
        self
    }

    /// The JWT profile for OAuth 2.0 access tokens (RFC 9068): `typ` `at+jwt` and the claims `iss`, `exp`, `aud`,
    /// `sub`, `client_id`, `iat` and `jti` (§2.2); a missing one is `claim_missing`, naming it.
    ///
    /// ```
    /// use portcullis::rules::IssuerRules;
    /// let rules = IssuerRules::new().rfc9068();
    /// assert_eq!(rules.typ.as_deref(), Some("at+jwt"));
    /// assert_eq!(rules.required_claims, ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"]);
    /// ```
    #[must_use]
    pub fn rfc9068(self) -> Self {
        RFC9068_CLAIMS.iter().fold(self.typ("at+jwt"), |rules, claim| rules.require_claim(*claim))
    }
}

/// The claims RFC 9068 §2.2 requires in an access token.
pub const RFC9068_CLAIMS: [&str; 7] = ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"];

/// The time rules of one issuer: leeway and maximum age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    pub leeway: Duration,
    pub max_age: Option<Duration>,
}

/// The configured claim rules.
#[derive(Debug, Clone)]
pub(crate) struct ClaimRules {
    pub issuers: Vec<String>,
    /// Audiences for issuers that have none of their own.
    pub audiences: Vec<String>,
    /// Issuers with audiences of their own: only these are accepted in their tokens.
    pub issuer_audiences: Vec<(String, Vec<String>)>,
    pub leeway: Duration,
    pub max_age: Option<Duration>,
    /// Issuers with time rules of their own.
    pub issuer_timing: Vec<(String, Timing)>,
    pub required: Vec<String>,
    /// Issuers with required claims of their own (added to `required`).
    pub issuer_required: Vec<(String, Vec<String>)>,
    pub clients: Vec<String>,
}

/// The claim checks in order.
pub(crate) const CLAIM_CHECKS: [Check; 7] = [
    Check::Issuer,
    Check::Audience,
    Check::Expiry,
    Check::NotBefore,
    Check::IssuedAt,
    Check::RequiredClaims,
    Check::Client,
];

impl ClaimRules {
    /// Runs one claim check. `payload` is the verified claim set, parsed into a map only when a rule needs claims
    /// beyond the registered ones.
    pub fn check(&self, check: Check, claims: &RegisteredClaims, payload: &[u8], now: UnixTime) -> Result<(), Error> {
        match check {
            Check::Issuer => self.issuer(claims),
            Check::Audience => self.audience(claims),
            Check::Expiry => self.expiry(claims, now),
            Check::NotBefore => self.not_before(claims, now),
            Check::IssuedAt => self.issued_at(claims, now),
            Check::RequiredClaims => self.required_claims(claims, payload),
            Check::Client => self.client(claims),
            _ => Ok(()),
        }
    }

    /// A short account of a check that passed, for reports.
    pub fn passed(&self, check: Check, claims: &RegisteredClaims, now: UnixTime) -> String {
        let now = now.as_secs_f64();
        let shown = |value: &Option<String>| value.as_deref().map(quoted).unwrap_or_default();
        match check {
            Check::Issuer => format!("iss {} is expected", shown(&claims.iss)),
            Check::Audience => match claims.aud.iter().find(|aud| self.audiences_for(claims).0.contains(aud)) {
                Some(hit) => format!("aud includes {}", quoted(hit)),
                None => String::new(),
            },
            Check::Expiry => match claims.exp {
                Some(exp) if now < exp => format!("expires in {}", human_duration(exp - now)),
                Some(exp) => format!("expired {} ago, within the leeway", human_duration(now - exp)),
                None => String::new(),
            },
            Check::NotBefore if claims.nbf.is_none() => "no nbf".into(),
            Check::NotBefore => "nbf has passed".into(),
            Check::IssuedAt => match claims.iat {
                Some(iat) => format!("issued {} ago", human_duration((now - iat).max(0.0))),
                None => "no iat".into(),
            },
            Check::RequiredClaims if self.required.is_empty() && self.issuer_required(claims).is_empty() => {
                "none configured".into()
            }
            Check::RequiredClaims => "all present".into(),
            Check::Client if self.clients.is_empty() => "any client".into(),
            Check::Client => format!("client {} is allowed", shown(&claims.azp.clone().or(claims.client_id.clone()))),
            _ => String::new(),
        }
    }

    fn issuer(&self, claims: &RegisteredClaims) -> Result<(), Error> {
        let Some(iss) = &claims.iss else {
            return Err(missing("iss", "iss is missing; the issuer is required"));
        };
        if self.issuers.iter().any(|expected| expected == iss) {
            return Ok(());
        }
        Err(Error::new(
            Reason::IssuerMismatch,
            format!("issuer mismatch: token is from {}, expected {}", quoted(iss), describe_list(&self.issuers)),
        )
        .with_detail(Detail::IssuerMismatch { found: iss.clone() }))
    }

    fn audience(&self, claims: &RegisteredClaims) -> Result<(), Error> {
        if claims.aud.is_empty() {
            return Err(missing("aud", "aud is missing; the audience is required"));
        }
        let (accepted, bound_to) = self.audiences_for(claims);
        if claims.aud.iter().any(|aud| accepted.contains(aud)) {
            return Ok(());
        }
        let description = match bound_to {
            Some(issuer) => format!(
                "audience mismatch: token is for {}, tokens from {} are accepted for {}",
                describe_list(&claims.aud),
                quoted(issuer),
                describe_list(accepted)
            ),
            None if accepted.is_empty() => {
                format!(
                    "audience mismatch: token is for {}; its issuer has no audiences here",
                    describe_list(&claims.aud)
                )
            }
            None => format!(
                "audience mismatch: token is for {}, this API is {}",
                describe_list(&claims.aud),
                describe_list(accepted)
            ),
        };
        Err(Error::new(Reason::AudienceMismatch, description)
            .with_detail(Detail::AudienceMismatch { found: claims.aud.clone() }))
    }

    /// The audiences accepted in a token with these claims: its issuer's own when it has some (with that
    /// issuer, a configured value), else the shared ones.
    pub fn audiences_for(&self, claims: &RegisteredClaims) -> (&[String], Option<&str>) {
        let own = claims.iss.as_deref().and_then(|iss| self.issuer_audiences.iter().find(|(issuer, _)| issuer == iss));
        match own {
            Some((issuer, audiences)) => (audiences, Some(issuer)),
            None => (&self.audiences, None),
        }
    }

    /// The time rules for tokens of `issuer`: its own, else the verifier's.
    pub fn timing(&self, issuer: Option<&str>) -> Timing {
        let own = issuer.and_then(|iss| self.issuer_timing.iter().find(|(known, _)| known == iss));
        match own {
            Some((_, timing)) => *timing,
            None => Timing { leeway: self.leeway, max_age: self.max_age },
        }
    }

    fn expiry(&self, claims: &RegisteredClaims, at: UnixTime) -> Result<(), Error> {
        let Some(exp) = claims.exp else {
            return Err(missing("exp", "exp is missing; tokens must expire"));
        };
        let now = at.as_secs_f64();
        let leeway = self.timing(claims.iss.as_deref()).leeway;
        if now >= exp + leeway.as_secs_f64() {
            return Err(Error::new(Reason::TokenExpired, format!("token expired {} ago", human_duration(now - exp)))
                .with_detail(Detail::Expired { exp, now: at, leeway }));
        }
        Ok(())
    }

    fn not_before(&self, claims: &RegisteredClaims, at: UnixTime) -> Result<(), Error> {
        let now = at.as_secs_f64();
        let leeway = self.timing(claims.iss.as_deref()).leeway;
        match claims.nbf {
            Some(nbf) if now + leeway.as_secs_f64() < nbf => Err(Error::new(
                Reason::TokenNotYetValid,
                format!("token is not valid for another {}", human_duration(nbf - now)),
            )
            .with_detail(Detail::NotYetValid { nbf, now: at, leeway })),
            _ => Ok(()),
        }
    }

    fn issued_at(&self, claims: &RegisteredClaims, at: UnixTime) -> Result<(), Error> {
        let Timing { leeway: leeway_duration, max_age } = self.timing(claims.iss.as_deref());
        let Some(iat) = claims.iat else {
            return match max_age {
                Some(_) => Err(missing("iat", "iat is missing; it is required with a maximum age")),
                None => Ok(()),
            };
        };
        let (now, leeway) = (at.as_secs_f64(), leeway_duration.as_secs_f64());
        if iat > now + leeway {
            return Err(Error::new(
                Reason::ClaimInvalid,
                format!("iat is {} in the future", human_duration(iat - now)),
            )
            .with_detail(Detail::IssuedInFuture { iat, now: at, leeway: leeway_duration }));
        }
        match max_age {
            Some(max_age) if now - iat > max_age.as_secs_f64() + leeway => Err(Error::new(
                Reason::TokenExpired,
                format!(
                    "token was issued {} ago, more than the maximum age of {}",
                    human_duration(now - iat),
                    human_duration(max_age.as_secs_f64())
                ),
            )
            .with_detail(Detail::TooOld { iat, now: at, max_age, leeway: leeway_duration })),
            _ => Ok(()),
        }
    }

    /// The required claims of `claims`' issuer beyond the verifier's own.
    fn issuer_required(&self, claims: &RegisteredClaims) -> &[String] {
        let own = claims.iss.as_deref().and_then(|iss| self.issuer_required.iter().find(|(known, _)| known == iss));
        own.map_or(&[], |(_, required)| required.as_slice())
    }

    fn required_claims(&self, claims: &RegisteredClaims, payload: &[u8]) -> Result<(), Error> {
        let own = self.issuer_required(claims);
        if self.required.is_empty() && own.is_empty() {
            return Ok(());
        }
        // Registered claims are read already; the payload is parsed only for others.
        let mut raw = None;
        for name in self.required.iter().chain(own) {
            let present = match registered_presence(claims, name) {
                Some(present) => present,
                None => {
                    if raw.is_none() {
                        // The payload passed the verifier's nesting limit already; the ceiling only bounds the
                        // parser.
                        raw = Some(
                            crate::json::parse_object_nested(payload, crate::json::MAX_DEPTH_CEILING)
                                .map_err(|e| Error::new(Reason::TokenMalformed, e))?,
                        );
                    }
                    raw.as_ref().and_then(|raw| lookup(raw, name)).is_some_and(|value| !value.is_null())
                }
            };
            if !present {
                return Err(missing(name, format!("required claim {} is missing", quoted(name))));
            }
        }
        Ok(())
    }

    fn client(&self, claims: &RegisteredClaims) -> Result<(), Error> {
        if self.clients.is_empty() {
            return Ok(());
        }
        let Some(client) = claims.azp.as_ref().or(claims.client_id.as_ref()) else {
            return Err(missing("azp", "azp/client_id is missing; the client is restricted"));
        };
        if self.clients.contains(client) {
            Ok(())
        } else {
            Err(Error::new(Reason::ClaimInvalid, format!("client {} is not allowed", quoted(client)))
                .with_detail(Detail::ClientNotAllowed { client: client.clone() }))
        }
    }
}

/// Whether a registered claim is present, from the typed claims; `None` for other claims.
fn registered_presence(claims: &RegisteredClaims, name: &str) -> Option<bool> {
    Some(match name {
        "iss" => claims.iss.is_some(),
        "sub" => claims.sub.is_some(),
        "aud" => !claims.aud.is_empty(),
        "exp" => claims.exp.is_some(),
        "nbf" => claims.nbf.is_some(),
        "iat" => claims.iat.is_some(),
        "jti" => claims.jti.is_some(),
        "azp" => claims.azp.is_some(),
        "client_id" => claims.client_id.is_some(),
        _ => return None,
    })
}

/// A required claim that is absent.
pub(crate) fn missing(claim: &str, description: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(Reason::ClaimMissing, description).with_detail(Detail::ClaimMissing { claim: claim.to_owned() })
}
