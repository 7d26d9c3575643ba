//! The JWT claim set (RFC 7519 §4), parsed once after the signature verified.
//!
//! Every registered claim is in one of three states: absent, valid, or present-but-malformed. A malformed claim is
//! an error wherever it appears; it is never treated as absent (a string `exp` does not make a token immortal).

use crate::error::{Detail, Error, Reason, quoted};
use crate::json::{KeySeed, Validate, check_depth, remember_key};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;

/// NumericDate values at or above 2^53 are refused (beyond exact integers in JSON numbers).
const MAX_NUMERIC_DATE: f64 = 9_007_199_254_740_992.0;

/// The registered claims, typed; plus `scope`/`scp` and Auth0's `permissions`, parsed once.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
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
    /// `cnf.jkt` (RFC 9449 §6.1): the thumbprint of the key a DPoP-bound token is bound to.
    pub cnf_jkt: Option<String>,
}

impl RegisteredClaims {
    /// Parses a claim set in one strict pass and reads the registered claims.
    ///
    /// The payload must be a JSON object with no duplicate member names at any depth and bounded nesting
    /// ([`Reason::TokenMalformed`] otherwise); a registered claim of the wrong type or range is
    /// [`Reason::ClaimInvalid`]. Other claims are validated but not built, so this costs little more than a scan.
    ///
    /// ```
    /// use portcullis::{Reason, RegisteredClaims};
    /// let claims = RegisteredClaims::parse(br#"{"sub":"auth0|1","aud":["a","b"],"exp":1.5e9}"#).unwrap();
    /// assert_eq!(claims.aud, ["a", "b"]);
    /// let err = RegisteredClaims::parse(br#"{"exp":"soon"}"#).unwrap_err();
    /// assert_eq!(err.reason(), Reason::ClaimInvalid);
    /// ```
    pub fn parse(payload: &[u8]) -> Result<Self, Error> {
        Self::parse_nested(payload, crate::json::MAX_DEPTH)
    }

    /// [`parse`](Self::parse) with another nesting limit for the payload (the claim set itself is level 1; at
    /// most [`MAX_JSON_DEPTH_CEILING`](crate::MAX_JSON_DEPTH_CEILING)).
    ///
    /// ```
    /// use portcullis::{Reason, RegisteredClaims};
    /// let payload = br#"{"sub":"alice","ctx":{"org":{"team":"a"}}}"#;
    /// assert!(RegisteredClaims::parse_nested(payload, 3).is_ok());
    /// assert_eq!(RegisteredClaims::parse_nested(payload, 2).unwrap_err().reason(), Reason::TokenMalformed);
    /// ```
    pub fn parse_nested(payload: &[u8], max_depth: usize) -> Result<Self, Error> {
        if payload.starts_with(&[0xEF, 0xBB, 0xBF]) {
            return Err(malformed("byte-order mark is not allowed"));
        }
        // One UTF-8 check for the whole payload lets the parser skip it per string.
        let text = std::str::from_utf8(payload).map_err(|_| malformed("payload is not UTF-8"))?;
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let max = max_depth.min(crate::json::MAX_DEPTH_CEILING);
        serde::Deserializer::deserialize_any(&mut deserializer, ClaimSetVisitor { max })
            .and_then(|outcome| deserializer.end().map(|()| outcome))
            .map_err(|e| malformed(format!("payload is not a valid JSON claim set: {e}")).with_source(e))?
    }
}

fn malformed(description: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(Reason::TokenMalformed, description)
}

fn invalid(claim: &str, description: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(Reason::ClaimInvalid, description).with_detail(Detail::ClaimInvalid { claim: claim.to_owned() })
}

/// A registered claim's value as found, before its type is judged.
enum Raw<'de> {
    Str(Cow<'de, str>),
    Num(f64),
    Strings(Vec<String>),
    /// An object, with its `jkt` member when it has one (read for `cnf`).
    Object(Option<Box<Raw<'de>>>),
    Other(&'static str),
}

impl Raw<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Raw::Str(_) => "a string",
            Raw::Num(_) => "a number",
            Raw::Strings(_) => "an array",
            Raw::Object(_) => "an object",
            Raw::Other(kind) => kind,
        }
    }
}

struct ClaimSetVisitor {
    max: usize,
}

impl<'de> Visitor<'de> for ClaimSetVisitor {
    type Value = Result<RegisteredClaims, Error>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut claims = RegisteredClaims::default();
        let mut scp = None;
        let mut first_error = None;
        // Registered names are tracked in a bit set, others in a list that stays unallocated for typical tokens.
        let mut registered_seen = 0u16;
        let mut others = Vec::new();
        while let Some(key) = access.next_key_seed(KeySeed)? {
            let Some(index) = REGISTERED.iter().position(|name| *name == key) else {
                access.next_value_seed(Validate { depth: 2, max: self.max })?;
                remember_key(&mut others, key)?;
                continue;
            };
            if registered_seen & (1 << index) != 0 {
                return Err(de::Error::custom(format_args!("duplicate member name '{key}'")));
            }
            registered_seen |= 1 << index;
            let raw = access.next_value_seed(RawSeed { depth: 2, max: self.max })?;
            if let Err(err) = claims.assign(REGISTERED[index], raw, &mut scp) {
                first_error.get_or_insert(err);
            }
        }
        if registered_seen & (1 << SCOPE_INDEX) == 0 {
            claims.scopes = scp.unwrap_or_default();
        }
        Ok(match first_error {
            Some(err) => Err(err),
            None => Ok(claims),
        })
    }
}

/// The claims read into [`RegisteredClaims`].
const REGISTERED: [&str; 13] =
    ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "azp", "client_id", "scope", "scp", "permissions", "cnf"];
const SCOPE_INDEX: usize = 9;

impl RegisteredClaims {
    /// Stores one registered claim's value, judging its type. `scope` wins over `scp` when both are present.
    fn assign(&mut self, name: &'static str, raw: Raw<'_>, scp: &mut Option<Vec<String>>) -> Result<(), Error> {
        match name {
            "iss" => self.iss = Some(string(raw, name)?),
            "sub" => self.sub = Some(string(raw, name)?),
            "jti" => self.jti = Some(string(raw, name)?),
            "azp" => self.azp = Some(string(raw, name)?),
            "client_id" => self.client_id = Some(string(raw, name)?),
            "exp" => self.exp = Some(numeric_date(raw, name)?),
            "nbf" => self.nbf = Some(numeric_date(raw, name)?),
            "iat" => self.iat = Some(numeric_date(raw, name)?),
            "aud" => self.aud = audience(raw)?,
            "cnf" => match raw {
                Raw::Object(None) => {}
                Raw::Object(Some(jkt)) => match *jkt {
                    Raw::Str(jkt) => self.cnf_jkt = Some(jkt.into_owned()),
                    other => return Err(invalid("cnf", format!("cnf.jkt must be a string, got {}", other.kind()))),
                },
                other => return Err(invalid(name, format!("cnf must be an object, got {}", other.kind()))),
            },
            "scope" => match raw {
                Raw::Str(s) => self.scopes = split_spaces(&s),
                other => {
                    return Err(invalid(name, format!("scope must be a space-separated string, got {}", other.kind())));
                }
            },
            "scp" => match raw {
                Raw::Str(s) => *scp = Some(split_spaces(&s)),
                Raw::Strings(list) => *scp = Some(list),
                other => return Err(invalid(name, format!("scp must be an array of strings, got {}", other.kind()))),
            },
            _ => match raw {
                Raw::Strings(list) => self.permissions = list,
                other => {
                    return Err(invalid(
                        name,
                        format!("permissions must be an array of strings, got {}", other.kind()),
                    ));
                }
            },
        }
        Ok(())
    }
}

/// Reads a registered claim's value, validating anything nested.
struct RawSeed {
    depth: usize,
    max: usize,
}

impl<'de> DeserializeSeed<'de> for RawSeed {
    type Value = Raw<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RawSeed {
    type Value = Raw<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Raw::Other("a boolean"))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Raw::Num(v as f64))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Raw::Num(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        if v.is_finite() { Ok(Raw::Num(v)) } else { Err(E::custom("number out of range")) }
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Raw::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Raw::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Raw::Other("null"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        check_depth::<A::Error>(self.depth, self.max)?;
        let mut strings = Vec::new();
        let mut only_strings = true;
        while let Some(item) = seq.next_element_seed(RawSeed { depth: self.depth + 1, max: self.max })? {
            match item {
                Raw::Str(s) if only_strings => strings.push(s.into_owned()),
                _ => only_strings = false,
            }
        }
        Ok(if only_strings { Raw::Strings(strings) } else { Raw::Other("an array with non-string members") })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        check_depth::<A::Error>(self.depth, self.max)?;
        let mut seen = Vec::new();
        let mut jkt = None;
        while let Some(key) = access.next_key_seed(KeySeed)? {
            if key == "jkt" {
                jkt = Some(Box::new(access.next_value_seed(RawSeed { depth: self.depth + 1, max: self.max })?));
            } else {
                access.next_value_seed(Validate { depth: self.depth + 1, max: self.max })?;
            }
            remember_key(&mut seen, key)?;
        }
        Ok(Raw::Object(jkt))
    }
}

fn split_spaces(s: &str) -> Vec<String> {
    s.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn string(raw: Raw<'_>, name: &'static str) -> Result<String, Error> {
    match raw {
        Raw::Str(s) => Ok(s.into_owned()),
        other => Err(invalid(name, format!("{name} must be a string, got {}", other.kind()))),
    }
}

fn audience(raw: Raw<'_>) -> Result<Vec<String>, Error> {
    match raw {
        Raw::Str(s) => Ok(vec![s.into_owned()]),
        Raw::Strings(list) => Ok(list),
        Raw::Other("an array with non-string members") => Err(invalid("aud", "aud array must hold only strings")),
        other => Err(invalid("aud", format!("aud must be a string or an array of strings, got {}", other.kind()))),
    }
}

/// A NumericDate (RFC 7519 §2): a JSON number, non-negative, below 2^53.
fn numeric_date(raw: Raw<'_>, name: &'static str) -> Result<f64, Error> {
    match raw {
        Raw::Num(secs) if (0.0..MAX_NUMERIC_DATE).contains(&secs) => Ok(secs),
        Raw::Num(_) => Err(invalid(name, format!("{name} is out of range for a NumericDate"))),
        other => {
            Err(invalid(name, format!("{name} must be a NumericDate (a JSON number of seconds), got {}", other.kind())))
        }
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
        RegisteredClaims::parse(value.to_string().as_bytes())
    }

    #[test]
    fn json_level_defects_are_malformed() {
        for payload in
            [&br#"{"a":1,"a":2}"#[..], br#"{"x":{"b":[{"c":1,"c":1}]}}"#, br#"{"aud":[{"k":1,"k":2}]}"#, b"[]", b"{} x"]
        {
            let err = RegisteredClaims::parse(payload).unwrap_err();
            assert_eq!(err.reason(), Reason::TokenMalformed, "{}", String::from_utf8_lossy(payload));
        }
        for claim in ["x", "aud", "exp"] {
            let deep = format!(r#"{{"{claim}":{}{}}}"#, "[".repeat(100), "]".repeat(100));
            let err = RegisteredClaims::parse(deep.as_bytes()).unwrap_err();
            assert_eq!(err.reason(), Reason::TokenMalformed, "{claim}");
            assert!(err.description().contains("nesting deeper than 64"), "{err}");
        }
        let escaped_duplicate = br#"{"sub":"a","\u0073ub":"b"}"#;
        assert_eq!(RegisteredClaims::parse(escaped_duplicate).unwrap_err().reason(), Reason::TokenMalformed);
    }

    #[test]
    fn malformed_dates_are_errors_not_absent() {
        for exp in [json!("1700000000"), json!(-1), json!(1e300), json!(9007199254740993u64), json!(null), json!([1])] {
            let err = parse(json!({ "exp": exp })).unwrap_err();
            assert_eq!(err.reason(), Reason::ClaimInvalid, "{exp}");
        }
        assert_eq!(parse(json!({"exp": 1.5})).unwrap().exp, Some(1.5));
    }

    #[test]
    fn audience_shapes() {
        assert_eq!(parse(json!({"aud": "a"})).unwrap().aud, vec!["a"]);
        assert_eq!(parse(json!({"aud": ["a", "b"]})).unwrap().aud, vec!["a", "b"]);
        assert!(parse(json!({"aud": ["a", 1]})).is_err());
        assert!(parse(json!({"aud": {"a": 1}})).is_err());
    }

    #[test]
    fn scopes_and_permissions() {
        let c = parse(json!({"scope": "read:a  write:b", "permissions": ["p"]})).unwrap();
        assert_eq!(c.scopes, vec!["read:a", "write:b"]);
        assert_eq!(c.permissions, vec!["p"]);
        assert_eq!(parse(json!({"scp": ["x", "y"]})).unwrap().scopes, vec!["x", "y"]);
        assert!(parse(json!({"scope": ["x"]})).is_err());
        assert!(parse(json!({"permissions": "p"})).is_err());
    }
}
