//! The JWT claim set (RFC 7519 §4), parsed once after the signature verified.
//!
//! Every registered claim is in one of three states: absent, valid, or present-but-malformed. A malformed claim is
//! an error wherever it appears; it is never treated as absent (a string `exp` does not make a token immortal).

use crate::error::{Error, Reason, quoted};
use serde_json::{Map, Value};

/// NumericDate values at or above 2^53 are refused (beyond exact integers in JSON numbers).
const MAX_NUMERIC_DATE: f64 = 9_007_199_254_740_992.0;

/// The registered claims, typed; plus `scope`/`scp` and Auth0's `permissions`, parsed once.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RegisteredClaims {
    /// `iss`.
    pub iss: Option<String>,
    /// `sub`.
    pub sub: Option<String>,
    /// `aud`, as a list whether the token carried a string or an array.
    pub aud: Vec<String>,
    /// `exp`, seconds since the epoch.
    pub exp: Option<f64>,
    /// `nbf`, seconds since the epoch.
    pub nbf: Option<f64>,
    /// `iat`, seconds since the epoch.
    pub iat: Option<f64>,
    /// `jti`.
    pub jti: Option<String>,
    /// `azp` (OpenID Connect authorized party; Auth0 puts the client ID here).
    pub azp: Option<String>,
    /// `client_id` (RFC 9068).
    pub client_id: Option<String>,
    /// Scopes from `scope` (space-separated string) or `scp` (array or string).
    pub scopes: Vec<String>,
    /// Auth0 RBAC `permissions`.
    pub permissions: Vec<String>,
}

impl RegisteredClaims {
    /// Reads the registered claims of a claim set; any present-but-malformed one is a
    /// [`Reason::ClaimInvalid`] error.
    pub fn from_claims(claims: &Map<String, Value>) -> Result<Self, Error> {
        let aud = match claims.get("aud") {
            None => Vec::new(),
            Some(Value::String(aud)) => vec![aud.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| invalid("aud array must hold only strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(invalid("aud must be a string or an array of strings")),
        };
        let scopes = match (claims.get("scope"), claims.get("scp")) {
            (Some(Value::String(scope)), _) => scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            (Some(_), _) => return Err(invalid("scope must be a space-separated string")),
            (None, Some(scp)) => string_list(scp, "scp", true)?,
            (None, None) => Vec::new(),
        };
        let permissions = match claims.get("permissions") {
            None => Vec::new(),
            Some(list) => string_list(list, "permissions", false)?,
        };
        Ok(Self {
            iss: string(claims, "iss")?,
            sub: string(claims, "sub")?,
            aud,
            exp: numeric_date(claims, "exp")?,
            nbf: numeric_date(claims, "nbf")?,
            iat: numeric_date(claims, "iat")?,
            jti: string(claims, "jti")?,
            azp: string(claims, "azp")?,
            client_id: string(claims, "client_id")?,
            scopes,
            permissions,
        })
    }
}

fn invalid(description: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(Reason::ClaimInvalid, description)
}

fn string(claims: &Map<String, Value>, name: &'static str) -> Result<Option<String>, Error> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid(format!(
            "{name} must be a string, got {}",
            kind(other)
        ))),
    }
}

fn string_list(
    value: &Value,
    name: &'static str,
    space_separated_ok: bool,
) -> Result<Vec<String>, Error> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid(format!("{name} must hold only strings")))
            })
            .collect(),
        Value::String(s) if space_separated_ok => Ok(s
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()),
        other => Err(invalid(format!(
            "{name} must be an array of strings, got {}",
            kind(other)
        ))),
    }
}

/// A NumericDate (RFC 7519 §2): a JSON number, non-negative, below 2^53.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, Error> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(secs) if secs.is_finite() && (0.0..MAX_NUMERIC_DATE).contains(&secs) => {
                Ok(Some(secs))
            }
            _ => Err(invalid(format!("{name} is out of range for a NumericDate"))),
        },
        Some(other) => Err(invalid(format!(
            "{name} must be a NumericDate (a JSON number of seconds), got {}",
            kind(other)
        ))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Looks up a claim by dotted path (`a.b.c`); a claim whose own name contains dots (Auth0 namespaced claims such
/// as `https://example.com/roles`) is found by its full name first.
///
/// ```
/// use serde_json::json;
/// let claims = json!({"https://example.com/roles": ["admin"], "org": {"id": "o1"}});
/// let claims = claims.as_object().unwrap();
/// assert_eq!(portcullis::claims::lookup(claims, "org.id"), Some(&json!("o1")));
/// assert_eq!(portcullis::claims::lookup(claims, "https://example.com/roles"), Some(&json!(["admin"])));
/// assert_eq!(portcullis::claims::lookup(claims, "org.missing"), None);
/// ```
pub fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    let mut parts = path.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

pub(crate) fn describe_list(values: &[String]) -> String {
    match values {
        [] => "nothing".to_owned(),
        [one] => quoted(one),
        many => {
            let shown: Vec<String> = many.iter().take(4).map(|v| quoted(v)).collect();
            let more = many.len().saturating_sub(4);
            if more > 0 {
                format!("[{}, and {more} more]", shown.join(", "))
            } else {
                format!("[{}]", shown.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<RegisteredClaims, Error> {
        RegisteredClaims::from_claims(value.as_object().unwrap())
    }

    #[test]
    fn malformed_dates_are_errors_not_absent() {
        for exp in [
            json!("1700000000"),
            json!(-1),
            json!(1e300),
            json!(9007199254740993u64),
            json!(null),
            json!([1]),
        ] {
            let err = parse(json!({ "exp": exp })).unwrap_err();
            assert_eq!(err.reason(), Reason::ClaimInvalid, "{exp}");
        }
        assert_eq!(parse(json!({"exp": 1.5})).unwrap().exp, Some(1.5));
    }

    #[test]
    fn audience_shapes() {
        assert_eq!(parse(json!({"aud": "a"})).unwrap().aud, vec!["a"]);
        assert_eq!(
            parse(json!({"aud": ["a", "b"]})).unwrap().aud,
            vec!["a", "b"]
        );
        assert!(parse(json!({"aud": ["a", 1]})).is_err());
        assert!(parse(json!({"aud": {"a": 1}})).is_err());
    }

    #[test]
    fn scopes_and_permissions() {
        let c = parse(json!({"scope": "read:a  write:b", "permissions": ["p"]})).unwrap();
        assert_eq!(c.scopes, vec!["read:a", "write:b"]);
        assert_eq!(c.permissions, vec!["p"]);
        assert_eq!(
            parse(json!({"scp": ["x", "y"]})).unwrap().scopes,
            vec!["x", "y"]
        );
        assert!(parse(json!({"scope": ["x"]})).is_err());
        assert!(parse(json!({"permissions": "p"})).is_err());
    }
}
