//! Strict JSON for JOSE headers and JWT claim sets.
//!
//! Stricter than plain `serde_json`: an object may not repeat a member name at any depth (parsers disagree on
//! which duplicate wins, which makes parser-differential attacks possible), nesting depth is bounded, and a
//! byte-order mark is refused. The top level must be an object.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Maximum nesting depth of arrays and objects, the top-level object counting as 1.
pub const MAX_DEPTH: usize = 64;

/// Parses `bytes` as a JSON object under the strict rules; the error text says what was wrong.
///
/// ```
/// use portcullis::json::parse_object;
/// assert!(parse_object(br#"{"a":1,"b":{"c":[1,2]}}"#).is_ok());
/// assert!(parse_object(br#"{"a":1,"a":2}"#).unwrap_err().contains("duplicate"));
/// assert!(parse_object(b"[1]").is_err());
/// ```
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err("byte-order mark is not allowed".into());
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = StrictSeed { depth: 1 }
        .deserialize(&mut deserializer)
        .map_err(|e| e.to_string())?;
    deserializer.end().map_err(|e| e.to_string())?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err("not a JSON object".into()),
    }
}

struct StrictSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor { depth: self.depth })
    }
}

struct StrictVisitor {
    depth: usize,
}

impl StrictVisitor {
    /// Containers deeper than the limit are refused as soon as they open.
    fn enter<E: de::Error>(&self) -> Result<(), E> {
        if self.depth > MAX_DEPTH {
            return Err(E::custom(format_args!(
                "nesting deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(())
    }

    fn nested(&self) -> StrictSeed {
        StrictSeed {
            depth: self.depth + 1,
        }
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
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
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
                return Err(de::Error::custom(format_args!(
                    "duplicate member name {}",
                    crate::error::quoted(&key)
                )));
            }
            map.insert(key, value);
        }
        Ok(Value::Object(map))
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
        assert!(err.contains("nesting"), "{err}");
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
