//! A JWK Set (RFC 7517 §5) of verifying keys, indexed by `kid`.
//!
//! Unusable keys in a set are skipped and reported, never fatal: an issuer that publishes an encryption key
//! next to its signing keys still works. Key selection follows the rules in the crate docs: by exact `kid`; without
//! a `kid` only when the set holds exactly one key; never by trying every key.

use crate::error::{Error, Reason, quoted};
use crate::jwk::{KeyRejected, VerifyingKey};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// A key that a set contained but that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SkippedKey {
    /// Position in the set's `keys` array.
    pub index: usize,
    /// The key's `kid`, when it had a string one.
    pub kid: Option<String>,
    /// Why it was skipped.
    pub reason: String,
}

impl fmt::Display for SkippedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kid {
            Some(kid) => write!(f, "key #{} (kid {}): {}", self.index, quoted(kid), self.reason),
            None => write!(f, "key #{}: {}", self.index, self.reason),
        }
    }
}

/// The document is not a JWK Set at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySetError(String);

impl fmt::Display for KeySetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid JWK Set: {}", self.0)
    }
}

impl std::error::Error for KeySetError {}

/// Verifying keys, ready for the request path.
///
/// ```
/// use portcullis::KeySet;
/// let jwks = br#"{"keys":[
///   {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"a"},
///   {"kty":"oct","k":"c2VjcmV0","kid":"b"}]}"#;
/// let set = KeySet::from_jwks_json(jwks).unwrap();
/// assert_eq!(set.len(), 1);
/// assert_eq!(set.skipped()[0].kid.as_deref(), Some("b"));
/// assert!(set.select(Some("a")).is_ok());
/// assert_eq!(set.select(Some("b")).unwrap_err().reason(), portcullis::Reason::KeyNotFound);
/// ```
#[derive(Debug, Default, Clone)]
pub struct KeySet {
    keys: Vec<Arc<VerifyingKey>>,
    by_kid: HashMap<String, usize>,
    ambiguous: HashMap<String, usize>,
    skipped: Vec<SkippedKey>,
}

impl KeySet {
    /// Parses a JWK Set document. Fails only when the document itself is not a JWK Set; unusable keys are
    /// skipped and listed in [`skipped`](Self::skipped).
    pub fn from_jwks_json(json: &[u8]) -> Result<Self, KeySetError> {
        Self::from_jwks_json_bounded(json, usize::MAX)
    }

    /// [`from_jwks_json`](Self::from_jwks_json) for a document from the network: a set of more than `max_keys`
    /// entries is refused before any key is parsed.
    ///
    /// ```
    /// let three = br#"{"keys":[{},{},{}]}"#;
    /// let err = portcullis::keyset::KeySet::from_jwks_json_bounded(three, 2).unwrap_err();
    /// assert_eq!(err.to_string(), "invalid JWK Set: 3 keys, more than the limit of 2");
    /// ```
    pub fn from_jwks_json_bounded(json: &[u8], max_keys: usize) -> Result<Self, KeySetError> {
        let doc = crate::json::parse_object(json).map_err(KeySetError)?;
        let Some(Value::Array(entries)) = doc.get("keys") else {
            return Err(KeySetError("no \"keys\" array".into()));
        };
        if entries.len() > max_keys {
            return Err(KeySetError(format!("{} keys, more than the limit of {max_keys}", entries.len())));
        }
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let parsed = match entry {
                Value::Object(jwk) => VerifyingKey::from_jwk(jwk),
                _ => Err(KeyRejected::new_public("not a JSON object")),
            };
            match parsed {
                Ok(key) => keys.push(key),
                Err(rejected) => skipped.push(SkippedKey {
                    index,
                    kid: entry.get("kid").and_then(Value::as_str).map(str::to_owned),
                    reason: rejected.message().to_owned(),
                }),
            }
        }
        let mut set = Self::from_keys(keys);
        set.skipped = skipped;
        Ok(set)
    }

    /// Builds a set from keys already parsed.
    pub fn from_keys(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        let keys: Vec<Arc<VerifyingKey>> = keys.into_iter().map(Arc::new).collect();
        let mut by_kid = HashMap::new();
        let mut ambiguous = HashMap::new();
        for (i, key) in keys.iter().enumerate() {
            if let Some(kid) = key.kid() {
                if let Some(count) = ambiguous.get_mut(kid) {
                    *count += 1;
                } else if by_kid.insert(kid.to_owned(), i).is_some() {
                    by_kid.remove(kid);
                    ambiguous.insert(kid.to_owned(), 2);
                }
            }
        }
        Self { keys, by_kid, ambiguous, skipped: Vec::new() }
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The usable keys.
    pub fn keys(&self) -> &[Arc<VerifyingKey>] {
        &self.keys
    }

    /// Keys that were in the document but cannot be used.
    pub fn skipped(&self) -> &[SkippedKey] {
        &self.skipped
    }

    /// Finds the key for a token's `kid` (exact, byte-for-byte). Without a `kid`, only a set of exactly one key
    /// answers.
    pub fn select(&self, kid: Option<&str>) -> Result<&Arc<VerifyingKey>, Error> {
        let not_found = |description: String| {
            let kid = kid.map(str::to_owned);
            Error::new(Reason::KeyNotFound, description).with_detail(crate::error::Detail::KeyNotFound { kid })
        };
        match kid {
            Some(kid) => {
                if let Some(&i) = self.by_kid.get(kid) {
                    return Ok(&self.keys[i]);
                }
                if let Some(count) = self.ambiguous.get(kid) {
                    return Err(not_found(format!(
                        "kid {} names {count} keys in the key set; refusing to guess",
                        quoted(kid)
                    )));
                }
                Err(not_found(format!("no key with kid {} in the key set ({})", quoted(kid), self.describe_kids())))
            }
            None => match self.keys.as_slice() {
                [only] => Ok(only),
                keys => Err(not_found(format!("token has no kid and the key set has {} keys", keys.len()))),
            },
        }
    }

    fn describe_kids(&self) -> String {
        const SHOWN: usize = 5;
        if self.keys.is_empty() {
            return "the set is empty".into();
        }
        let kids: Vec<String> = self.keys.iter().filter_map(|k| k.kid()).take(SHOWN).map(quoted).collect();
        let more = self.keys.len().saturating_sub(SHOWN);
        match (kids.is_empty(), more) {
            (true, _) => format!("{} keys without kid", self.keys.len()),
            (false, 0) => format!("kids: {}", kids.join(", ")),
            (false, more) => format!("kids: {} and {more} more", kids.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ed_key(kid: &str) -> String {
        format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"{kid}"}}"#)
    }

    #[test]
    fn duplicate_kids_are_ambiguous() {
        let doc = format!(r#"{{"keys":[{},{},{}]}}"#, ed_key("a"), ed_key("a"), ed_key("b"));
        let set = KeySet::from_jwks_json(doc.as_bytes()).unwrap();
        let err = set.select(Some("a")).unwrap_err();
        assert!(err.description().contains("names 2 keys"), "{err}");
        assert!(set.select(Some("b")).is_ok());
    }

    #[test]
    fn kid_is_compared_exactly() {
        let doc = format!(r#"{{"keys":[{}]}}"#, ed_key("key-1"));
        let set = KeySet::from_jwks_json(doc.as_bytes()).unwrap();
        for near in ["key-", "key-1\u{0}", "KEY-1", "key-1 ", ""] {
            assert_eq!(set.select(Some(near)).unwrap_err().reason(), Reason::KeyNotFound, "{near:?}");
        }
    }

    #[test]
    fn no_kid_needs_a_single_key() {
        let one = KeySet::from_jwks_json(format!(r#"{{"keys":[{}]}}"#, ed_key("a")).as_bytes()).unwrap();
        assert!(one.select(None).is_ok());
        let two =
            KeySet::from_jwks_json(format!(r#"{{"keys":[{},{}]}}"#, ed_key("a"), ed_key("b")).as_bytes()).unwrap();
        let err = two.select(None).unwrap_err();
        assert_eq!(err.description(), "token has no kid and the key set has 2 keys");
    }

    #[test]
    fn not_a_jwks() {
        assert!(KeySet::from_jwks_json(b"{}").is_err());
        assert!(KeySet::from_jwks_json(br#"{"keys":{}}"#).is_err());
        assert!(KeySet::from_jwks_json(b"[]").is_err());
    }
}
