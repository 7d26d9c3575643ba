//! Claim rules: issuer, audience, time, required claims, authorized clients.
//!
//! Each rule is a separate check so that [`Verifier::explain`](crate::Verifier::explain) can report every one,
//! while [`Verifier::verify`](crate::Verifier::verify) stops at the first failure.

use crate::claims::{RegisteredClaims, describe_list, lookup};
use crate::clock::human_duration;
use crate::error::{Error, Reason, quoted};
use serde_json::{Map, Value};

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

/// The configured claim rules.
#[derive(Debug, Clone)]
pub(crate) struct ClaimRules {
    pub issuers: Vec<String>,
    pub audiences: Vec<String>,
    pub leeway: f64,
    pub max_age: Option<f64>,
    pub required: Vec<String>,
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
    /// Runs one claim check; `Ok` carries a short account of what passed.
    pub fn check(
        &self,
        check: Check,
        claims: &RegisteredClaims,
        raw: &Map<String, Value>,
        now: f64,
    ) -> Result<String, Error> {
        match check {
            Check::Issuer => self.issuer(claims),
            Check::Audience => self.audience(claims),
            Check::Expiry => self.expiry(claims, now),
            Check::NotBefore => self.not_before(claims, now),
            Check::IssuedAt => self.issued_at(claims, now),
            Check::RequiredClaims => self.required_claims(raw),
            Check::Client => self.client(claims),
            _ => Ok(String::new()),
        }
    }

    /// Runs every claim check, stopping at the first failure.
    pub fn check_all(
        &self,
        claims: &RegisteredClaims,
        raw: &Map<String, Value>,
        now: f64,
    ) -> Result<(), Error> {
        for check in CLAIM_CHECKS {
            self.check(check, claims, raw, now)?;
        }
        Ok(())
    }

    fn issuer(&self, claims: &RegisteredClaims) -> Result<String, Error> {
        let Some(iss) = &claims.iss else {
            return Err(Error::new(
                Reason::ClaimMissing,
                "iss is missing; the issuer is required",
            ));
        };
        if self.issuers.iter().any(|expected| expected == iss) {
            return Ok(format!("iss {} is expected", quoted(iss)));
        }
        Err(Error::new(
            Reason::IssuerMismatch,
            format!(
                "issuer mismatch: token is from {}, expected {}",
                quoted(iss),
                describe_list(&self.issuers)
            ),
        ))
    }

    fn audience(&self, claims: &RegisteredClaims) -> Result<String, Error> {
        if claims.aud.is_empty() {
            return Err(Error::new(
                Reason::ClaimMissing,
                "aud is missing; the audience is required",
            ));
        }
        if let Some(hit) = claims.aud.iter().find(|aud| self.audiences.contains(aud)) {
            return Ok(format!("aud includes {}", quoted(hit)));
        }
        Err(Error::new(
            Reason::AudienceMismatch,
            format!(
                "audience mismatch: token is for {}, this API is {}",
                describe_list(&claims.aud),
                describe_list(&self.audiences)
            ),
        ))
    }

    fn expiry(&self, claims: &RegisteredClaims, now: f64) -> Result<String, Error> {
        let Some(exp) = claims.exp else {
            return Err(Error::new(
                Reason::ClaimMissing,
                "exp is missing; tokens must expire",
            ));
        };
        if now >= exp + self.leeway {
            return Err(Error::new(
                Reason::TokenExpired,
                format!("token expired {} ago", human_duration(now - exp)),
            ));
        }
        Ok(if now < exp {
            format!("expires in {}", human_duration(exp - now))
        } else {
            format!(
                "expired {} ago, within the leeway",
                human_duration(now - exp)
            )
        })
    }

    fn not_before(&self, claims: &RegisteredClaims, now: f64) -> Result<String, Error> {
        match claims.nbf {
            None => Ok("no nbf".into()),
            Some(nbf) if now + self.leeway < nbf => Err(Error::new(
                Reason::TokenNotYetValid,
                format!(
                    "token is not valid for another {}",
                    human_duration(nbf - now)
                ),
            )),
            Some(_) => Ok("nbf has passed".into()),
        }
    }

    fn issued_at(&self, claims: &RegisteredClaims, now: f64) -> Result<String, Error> {
        let Some(iat) = claims.iat else {
            return match self.max_age {
                Some(_) => Err(Error::new(
                    Reason::ClaimMissing,
                    "iat is missing; it is required with a maximum age",
                )),
                None => Ok("no iat".into()),
            };
        };
        if iat > now + self.leeway {
            return Err(Error::new(
                Reason::ClaimInvalid,
                format!("iat is {} in the future", human_duration(iat - now)),
            ));
        }
        if let Some(max_age) = self.max_age {
            if now - iat > max_age + self.leeway {
                return Err(Error::new(
                    Reason::TokenExpired,
                    format!(
                        "token was issued {} ago, more than the maximum age of {}",
                        human_duration(now - iat),
                        human_duration(max_age)
                    ),
                ));
            }
        }
        Ok(format!(
            "issued {} ago",
            human_duration((now - iat).max(0.0))
        ))
    }

    fn required_claims(&self, raw: &Map<String, Value>) -> Result<String, Error> {
        for name in &self.required {
            if lookup(raw, name).is_none_or(Value::is_null) {
                return Err(Error::new(
                    Reason::ClaimMissing,
                    format!("required claim {} is missing", quoted(name)),
                ));
            }
        }
        Ok(if self.required.is_empty() {
            "none configured".into()
        } else {
            "all present".into()
        })
    }

    fn client(&self, claims: &RegisteredClaims) -> Result<String, Error> {
        if self.clients.is_empty() {
            return Ok("any client".into());
        }
        let Some(client) = claims.azp.as_ref().or(claims.client_id.as_ref()) else {
            return Err(Error::new(
                Reason::ClaimMissing,
                "azp/client_id is missing; the client is restricted",
            ));
        };
        if self.clients.contains(client) {
            Ok(format!("client {} is allowed", quoted(client)))
        } else {
            Err(Error::new(
                Reason::ClaimInvalid,
                format!("client {} is not allowed", quoted(client)),
            ))
        }
    }
}
