//! Authorization rules: what a verified token must grant to reach a resource.
//!
//! Rules are data — composable with `all`, `any` and `not`, and (de)serializable, so the same rule reads the same
//! in Rust code and in the gateway's configuration. A rule that is not met is an `insufficient_scope` error
//! (HTTP 403) whose RFC 6750 `scope` attribute names the scopes or permissions the rule asks for.
//!
//! ```
//! use portcullis::authz::Requirement;
//! // Auth0's quickstart: the scope, or the RBAC permission of the same name.
//! let rule = Requirement::any([Requirement::scope("read:messages"), Requirement::permission("read:messages")]);
//! let toml_form: Requirement = toml::from_str(r#"any = [{ scope = "read:messages" }, { permission = "read:messages" }]"#).unwrap();
//! assert_eq!(rule, toml_form);
//! assert_eq!(rule.to_string(), "any of (scope 'read:messages', permission 'read:messages')");
//! ```

use crate::claims::lookup;
use crate::error::{Error, Reason, quoted};
use crate::token::VerifiedToken;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// A condition on a verified token.
///
/// Deserialization refuses an empty `any` (never met: it would refuse every token) and an empty `all` (always met:
/// it would let every token through), at any depth.
///
/// ```
/// use portcullis::Requirement;
/// let refused = toml::from_str::<Requirement>("all = []").unwrap_err();
/// assert!(refused.to_string().contains("an empty `all` is always met"), "{refused}");
/// let nested = toml::from_str::<Requirement>("not = { any = [] }").unwrap_err();
/// assert!(nested.to_string().contains("an empty `any` is never met"), "{nested}");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Requirement {
    /// The scope is granted (`scope` space-separated string, or `scp`).
    Scope(String),
    /// The Auth0 RBAC permission is granted (`permissions` array).
    Permission(String),
    /// The claim at this dotted path (or full namespaced name) exists and is not null.
    ClaimExists(String),
    /// The claim equals the value exactly (JSON equality).
    ClaimEquals {
        /// Dotted path or full claim name.
        claim: String,
        /// The expected value.
        value: Value,
    },
    /// The claim is an array holding the value, or a space-separated string with it as one word.
    ClaimIncludes {
        /// Dotted path or full claim name.
        claim: String,
        /// The value to find.
        value: String,
    },
    /// The token was issued by this issuer.
    Issuer(String),
    /// Every rule holds (true when empty).
    All(Vec<Requirement>),
    /// At least one rule holds (false when empty).
    Any(Vec<Requirement>),
    /// The rule does not hold.
    Not(Box<Requirement>),
}

/// [`Requirement`] as written, before the checks of its `Deserialize`.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum RawRequirement {
    Scope(String),
    Permission(String),
    ClaimExists(String),
    ClaimEquals { claim: String, value: Value },
    ClaimIncludes { claim: String, value: String },
    Issuer(String),
    All(Vec<Requirement>),
    Any(Vec<Requirement>),
    Not(Box<Requirement>),
}

impl<'de> Deserialize<'de> for Requirement {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Requirement::checked(RawRequirement::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

impl Requirement {
    /// The rule as written, unless it holds an empty `all` or `any` (its parts are checked already).
    fn checked(raw: RawRequirement) -> Result<Self, &'static str> {
        Ok(match raw {
            RawRequirement::All(rules) if rules.is_empty() => {
                return Err("an empty `all` is always met and would let every token through; list at least one rule");
            }
            RawRequirement::Any(rules) if rules.is_empty() => {
                return Err("an empty `any` is never met and would refuse every token; list at least one rule");
            }
            RawRequirement::Scope(scope) => Self::Scope(scope),
            RawRequirement::Permission(permission) => Self::Permission(permission),
            RawRequirement::ClaimExists(claim) => Self::ClaimExists(claim),
            RawRequirement::ClaimEquals { claim, value } => Self::ClaimEquals { claim, value },
            RawRequirement::ClaimIncludes { claim, value } => Self::ClaimIncludes { claim, value },
            RawRequirement::Issuer(issuer) => Self::Issuer(issuer),
            RawRequirement::All(rules) => Self::All(rules),
            RawRequirement::Any(rules) => Self::Any(rules),
            RawRequirement::Not(rule) => Self::Not(rule),
        })
    }
}

impl Requirement {
    /// The scope is granted.
    pub fn scope(scope: impl Into<String>) -> Self {
        Self::Scope(scope.into())
    }

    /// Every one of these scopes is granted.
    pub fn scopes<S: Into<String>>(scopes: impl IntoIterator<Item = S>) -> Self {
        Self::All(scopes.into_iter().map(|s| Self::Scope(s.into())).collect())
    }

    /// The permission is granted.
    pub fn permission(permission: impl Into<String>) -> Self {
        Self::Permission(permission.into())
    }

    /// The claim exists.
    pub fn claim_exists(claim: impl Into<String>) -> Self {
        Self::ClaimExists(claim.into())
    }

    /// The claim equals `value`.
    pub fn claim_equals(claim: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::ClaimEquals { claim: claim.into(), value: value.into() }
    }

    /// The claim includes `value`.
    pub fn claim_includes(claim: impl Into<String>, value: impl Into<String>) -> Self {
        Self::ClaimIncludes { claim: claim.into(), value: value.into() }
    }

    /// All of the rules.
    pub fn all(rules: impl IntoIterator<Item = Requirement>) -> Self {
        Self::All(rules.into_iter().collect())
    }

    /// Any of the rules.
    pub fn any(rules: impl IntoIterator<Item = Requirement>) -> Self {
        Self::Any(rules.into_iter().collect())
    }

    /// Not the rule.
    #[allow(clippy::should_implement_trait)]
    pub fn not(rule: Requirement) -> Self {
        Self::Not(Box::new(rule))
    }

    /// Whether the token meets the rule.
    pub fn is_met(&self, token: &VerifiedToken) -> bool {
        match self {
            Self::Scope(scope) => token.scopes().iter().any(|granted| granted == scope),
            Self::Permission(permission) => token.permissions().iter().any(|granted| granted == permission),
            Self::ClaimExists(claim) => lookup(token.claims(), claim).is_some_and(|v| !v.is_null()),
            Self::ClaimEquals { claim, value } => lookup(token.claims(), claim) == Some(value),
            Self::ClaimIncludes { claim, value } => match lookup(token.claims(), claim) {
                Some(Value::Array(items)) => items.iter().any(|item| item.as_str() == Some(value)),
                Some(Value::String(words)) => words.split(' ').any(|word| word == value),
                _ => false,
            },
            Self::Issuer(issuer) => token.issuer() == Some(issuer.as_str()),
            Self::All(rules) => rules.iter().all(|rule| rule.is_met(token)),
            Self::Any(rules) => rules.iter().any(|rule| rule.is_met(token)),
            Self::Not(rule) => !rule.is_met(token),
        }
    }

    /// `Ok` when met; otherwise an [`Reason::InsufficientScope`] error naming the rule, with the scopes and
    /// permissions it mentions as the RFC 6750 `scope` attribute.
    pub fn check(&self, token: &VerifiedToken) -> Result<(), Error> {
        if self.is_met(token) {
            return Ok(());
        }
        let mut needed = Vec::new();
        self.collect_scopes(&mut needed);
        let error = Error::new(Reason::InsufficientScope, format!("requires {self}"));
        Err(if needed.is_empty() { error } else { error.with_scope(&needed.join(" ")) })
    }

    fn collect_scopes<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Self::Scope(name) | Self::Permission(name) if !out.contains(&name.as_str()) => out.push(name),
            Self::All(rules) | Self::Any(rules) => rules.iter().for_each(|rule| rule.collect_scopes(out)),
            _ => {}
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, word: &str, rules: &[Requirement]| {
            write!(f, "{word} (")?;
            for (i, rule) in rules.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{rule}")?;
            }
            f.write_str(")")
        };
        match self {
            Self::Scope(scope) => write!(f, "scope {}", quoted(scope)),
            Self::Permission(permission) => write!(f, "permission {}", quoted(permission)),
            Self::ClaimExists(claim) => write!(f, "claim {}", quoted(claim)),
            Self::ClaimEquals { claim, value } => write!(f, "claim {} = {}", quoted(claim), quoted(&value.to_string())),
            Self::ClaimIncludes { claim, value } => write!(f, "claim {} including {}", quoted(claim), quoted(value)),
            Self::Issuer(issuer) => write!(f, "issuer {}", quoted(issuer)),
            Self::All(rules) => list(f, "all of", rules),
            Self::Any(rules) => list(f, "any of", rules),
            Self::Not(rule) => write!(f, "not {rule}"),
        }
    }
}
