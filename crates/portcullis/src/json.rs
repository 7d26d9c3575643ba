//! Strict JSON for JOSE headers and JWT claim sets.
//!
//! Stricter than plain `serde_json`: an object may not repeat a member name at any depth (parsers disagree on
//! which duplicate wins, which makes parser-differential attacks possible), nesting depth is bounded, and a
//! byte-order mark is refused. The top level must be an object.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;
use std::fmt;

/// Default maximum nesting depth of arrays and objects, the top-level object counting as 1.
pub const MAX_DEPTH: usize = 64;

/// The deepest nesting a limit may allow ([`MAX_DEPTH`] is the default); below the JSON parser's own recursion
/// limit, so the depth error is always ours.
pub const MAX_DEPTH_CEILING: usize = 100;

/// Parses `bytes` as a JSON object under the strict rules, nested at most [`MAX_DEPTH`] deep; the error text says
/// what was wrong.
///
/// ```
/// use portcullis::__internals::json::parse_object;
/// assert!(parse_object(br#"{"a":1,"b":{"c":[1,2]}}"#).is_ok());
/// assert!(parse_object(br#"{"a":1,"a":2}"#).unwrap_err().contains("duplicate"));
/// assert!(parse_object(b"[1]").is_err());
/// ```
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    parse_object_nested(bytes, MAX_DEPTH)
}

/// [`parse_object`] with another nesting limit (at most [`MAX_DEPTH_CEILING`]).
///
/// ```
/// use portcullis::__internals::json::parse_object_nested;
/// assert!(parse_object_nested(br#"{"a":{"b":[1]}}"#, 3).is_ok());
/// assert!(parse_object_nested(br#"{"a":{"b":[1]}}"#, 2).unwrap_err().contains("nesting deeper than 2 levels"));
/// ```
pub fn parse_object_nested(bytes: &[u8], max_depth: usize) -> Result<Map<String, Value>, String> {
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err("byte-order mark is not allowed".into());
    }
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let max = max_depth.min(MAX_DEPTH_CEILING);
    let value = StrictSeed { depth: 1, max }.deserialize(&mut deserializer).map_err(|e| e.to_string())?;
    deserializer.end().map_err(|e| e.to_string())?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err("not a JSON object".into()),
    }
}

struct StrictSeed {
    depth: usize,
    max: usize,
}

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor { depth: self.depth, max: self.max })
    }
}

struct StrictVisitor {
    depth: usize,
    max: usize,
}

impl StrictVisitor {
    /// Containers deeper than the limit are refused as soon as they open.
    fn enter<E: de::Error>(&self) -> Result<(), E> {
        check_depth(self.depth, self.max)
    }

    fn nested(&self) -> StrictSeed {
        StrictSeed { depth: self.depth + 1, max: self.max }
    }
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.nested())? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let value = access.next_value_seed(self.nested())?;
            if map.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate member name {}", crate::error::quoted(&key))));
            }
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

/// Walks any JSON value under the strict rules without building it: for validating documents whose values are
/// read elsewhere (the claim set).
pub(crate) struct Validate {
    pub depth: usize,
    pub max: usize,
}

impl<'de> DeserializeSeed<'de> for Validate {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Validate {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        if v.is_finite() { Ok(()) } else { Err(E::custom("number out of range")) }
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        validate_seq(seq, self.depth, self.max)
    }

    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<(), A::Error> {
        validate_map(access, self.depth, self.max)
    }
}

/// Validates the rest of an array at `depth`.
pub(crate) fn validate_seq<'de, A: SeqAccess<'de>>(mut seq: A, depth: usize, max: usize) -> Result<(), A::Error> {
    check_depth::<A::Error>(depth, max)?;
    while seq.next_element_seed(Validate { depth: depth + 1, max })?.is_some() {}
    Ok(())
}

/// Validates the rest of an object at `depth`: no member name twice, values strict.
pub(crate) fn validate_map<'de, A: MapAccess<'de>>(mut access: A, depth: usize, max: usize) -> Result<(), A::Error> {
    check_depth::<A::Error>(depth, max)?;
    let mut seen: Vec<Cow<'de, str>> = Vec::new();
    while let Some(key) = access.next_key_seed(KeySeed)? {
        access.next_value_seed(Validate { depth: depth + 1, max })?;
        remember_key(&mut seen, key)?;
    }
    Ok(())
}

/// Records a member name, failing on a duplicate.
pub(crate) fn remember_key<'de, E: de::Error>(seen: &mut Vec<Cow<'de, str>>, key: Cow<'de, str>) -> Result<(), E> {
    if seen.contains(&key) {
        return Err(E::custom(format_args!("duplicate member name {}", crate::error::quoted(&key))));
    }
    seen.push(key);
    Ok(())
}

/// Refuses a container opening at `depth` when that is deeper than `max`.
pub(crate) fn check_depth<E: de::Error>(depth: usize, max: usize) -> Result<(), E> {
    if depth > max {
        return Err(E::custom(format_args!("nesting deeper than {max} levels")));
    }
    Ok(())
}

/// A member name, borrowed from the input when it has no escapes.
pub(crate) struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(KeySeed)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_rejected_at_any_depth() {
        assert!(parse_object(br#"{"a":{"b":1,"b":1}}"#).is_err());
        assert!(parse_object(br#"{"a":[{"x":1},{"x":1,"x":2}]}"#).is_err());
        // Escaped spelling of the same name is still a duplicate.
        assert!(parse_object(br#"{"alg":"RS256","\u0061lg":"none"}"#).is_err());
    }

    #[test]
    fn depth_is_bounded() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
        assert!(parse_object(format!("{{\"a\":{ok}}}").as_bytes()).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        let err = parse_object(format!("{{\"a\":{deep}}}").as_bytes()).unwrap_err();
        assert!(err.contains("nesting deeper than 64 levels"), "{err}");
    }

    #[test]
    fn a_nesting_limit_is_exact_and_capped_at_the_ceiling() {
        let nested = |levels: usize| format!("{}{}", "[".repeat(levels - 1), "]".repeat(levels - 1));
        let object = |levels: usize| format!("{{\"a\":{}}}", nested(levels));
        assert!(parse_object_nested(object(5).as_bytes(), 5).is_ok());
        let err = parse_object_nested(object(6).as_bytes(), 5).unwrap_err();
        assert!(err.starts_with("nesting deeper than 5 levels"), "{err}");
        assert!(parse_object_nested(object(MAX_DEPTH_CEILING).as_bytes(), usize::MAX).is_ok());
        let err = parse_object_nested(object(MAX_DEPTH_CEILING + 1).as_bytes(), usize::MAX).unwrap_err();
        assert!(err.starts_with("nesting deeper than 100 levels"), "{err}");
    }

    #[test]
    fn rejects_bom_trailing_data_and_bad_utf8() {
        assert!(parse_object(b"\xEF\xBB\xBF{}").is_err());
        assert!(parse_object(b"{} {}").is_err());
        assert!(parse_object(b"{\"a\":\"\xff\"}").is_err());
        assert!(parse_object(br#"{"a":"\ud800"}"#).is_err());
        assert!(parse_object(br#"{"a":1e400}"#).is_err());
    }
}
