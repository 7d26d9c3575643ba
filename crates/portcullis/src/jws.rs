//! Compact JWS (RFC 7515 §7.1) parsed strictly, then verified against a [`KeySet`].
//!
//! The order of work is cheapest and most hostile-input-safe first: size limits, segment count and strict
//! base64url before any JSON; the header's rules before key lookup; the algorithm from the key, never from the
//! token; the payload is only parsed as JSON by the caller, after the signature verified.

use crate::algorithm::{Algorithm, AlgorithmSet};
use crate::base64url;
use crate::error::{Error, Reason, quoted};
use crate::jwk::VerifyingKey;
use crate::keyset::KeySet;
use arc_swap::ArcSwap;
use serde_json::{Map, Value};
use std::sync::Arc;

/// Default maximum token length in bytes.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 16 * 1024;
/// Maximum decoded header length in bytes.
pub const MAX_HEADER_LEN: usize = 4 * 1024;

/// Which `alg` values a token may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgorithmPolicy {
    /// Only the algorithm the selected key itself declares in its JWK `alg`; keys without `alg` cannot be used.
    FromKeys,
    /// Any algorithm in this allowlist that the selected key can also use.
    Allow(AlgorithmSet),
}

/// Rules a compact JWS must meet before its payload is looked at.
#[derive(Debug, Clone)]
pub struct JwsPolicy {
    /// Allowed algorithms.
    pub algorithms: AlgorithmPolicy,
    /// When set, the header's `typ` must name this media type (compared case-insensitively, with or without
    /// the `application/` prefix), e.g. `at+jwt` for RFC 9068 access tokens.
    pub required_typ: Option<String>,
    /// Longest token accepted, in bytes.
    pub max_token_len: usize,
    /// How deep arrays and objects may nest in the header and the claims (see [`crate::json::parse_object_nested`]).
    pub max_json_depth: usize,
}

impl Default for JwsPolicy {
    fn default() -> Self {
        Self {
            algorithms: AlgorithmPolicy::FromKeys,
            required_typ: None,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
            max_json_depth: crate::json::MAX_DEPTH,
        }
    }
}

/// The JOSE header of a token that passed the header rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    alg: Algorithm,
    kid: Option<String>,
    typ: Option<String>,
    raw: Map<String, Value>,
}

impl Header {
    /// The token's algorithm (already checked to be supported).
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The key ID, when present.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The `typ` member, when present.
    pub fn typ(&self) -> Option<&str> {
        self.typ.as_deref()
    }

    /// Every header member as parsed.
    pub fn raw(&self) -> &Map<String, Value> {
        &self.raw
    }
}

/// Headers already seen in verified tokens, by their exact encoded segment.
///
/// Every token an issuer signs with one key carries the same header bytes, so a verifier that remembers the
/// parsed, rule-checked header skips its base64url and JSON work on the next token. Only headers of tokens whose
/// signature verified are remembered (an attacker cannot fill the cache), the cache holds at most
/// [`HeaderCache::CAPACITY`] entries (oldest out first), and lookups take no lock.
#[derive(Debug, Default)]
pub struct HeaderCache {
    entries: ArcSwap<Vec<(Box<str>, Arc<Header>)>>,
}

impl HeaderCache {
    /// The most headers remembered.
    pub const CAPACITY: usize = 32;

    /// The parsed header for an encoded header segment, if remembered.
    pub fn get(&self, segment: &str) -> Option<Arc<Header>> {
        self.entries.load().iter().find(|(seen, _)| seen.as_ref() == segment).map(|(_, header)| Arc::clone(header))
    }

    /// Remembers a header (call only after the token's signature verified).
    pub fn insert(&self, segment: &str, header: &Arc<Header>) {
        self.entries.rcu(|entries| {
            let mut next: Vec<_> = entries.iter().filter(|(seen, _)| seen.as_ref() != segment).cloned().collect();
            if next.len() >= Self::CAPACITY {
                next.remove(0);
            }
            next.push((segment.into(), Arc::clone(header)));
            next
        });
    }

    /// Number of remembered headers.
    pub fn len(&self) -> usize {
        self.entries.load().len()
    }

    /// Whether nothing is remembered.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A token split into its parts, with the header checked but nothing verified yet.
#[derive(Debug)]
pub struct UnverifiedJws<'a> {
    header: Arc<Header>,
    header_segment: &'a str,
    header_was_cached: bool,
    signing_input: &'a str,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl<'a> UnverifiedJws<'a> {
    /// Parses `token` under `policy`'s size and header rules.
    pub fn parse(token: &'a str, policy: &JwsPolicy) -> Result<Self, Error> {
        Self::parse_with_cache(token, policy, None)
    }

    /// Parses `token`, taking the header from `cache` when its segment was seen before.
    ///
    /// A cache must only ever be used with one `policy`: it remembers headers that passed that policy's rules.
    pub fn parse_with_cache(token: &'a str, policy: &JwsPolicy, cache: Option<&HeaderCache>) -> Result<Self, Error> {
        if token.len() > policy.max_token_len {
            return Err(malformed(format!("token is {} bytes, the limit is {}", token.len(), policy.max_token_len)));
        }
        let (signing_input, header_segment, payload_b64, signature_b64) = split(token)?;
        let cached = cache.and_then(|cache| cache.get(header_segment));
        let header_was_cached = cached.is_some();
        let header = match cached {
            Some(header) => header,
            None => Arc::new(parse_header(header_segment, policy)?),
        };
        let payload = base64url::decode(payload_b64).ok_or_else(|| not_base64("payload"))?;
        let signature = base64url::decode(signature_b64).ok_or_else(|| not_base64("signature"))?;
        Ok(Self { header, header_segment, header_was_cached, signing_input, payload, signature })
    }

    /// Remembers this token's header in `cache` if it was not there; call only after the signature verified.
    pub fn remember_header(&self, cache: &HeaderCache) {
        if !self.header_was_cached {
            cache.insert(self.header_segment, &self.header);
        }
    }

    /// The checked header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The decoded payload bytes (not yet authenticated).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    /// Finds the key for this token and checks that the token's algorithm is one the key and the policy allow.
    pub fn select_key<'k>(&self, keys: &'k KeySet, policy: &JwsPolicy) -> Result<&'k Arc<VerifyingKey>, Error> {
        let key = keys.select(self.header.kid())?;
        self.check_key(key, policy)?;
        Ok(key)
    }

    /// Checks that the token's algorithm is one that `key` and the policy allow; a refusal names the algorithms
    /// the key allows (and those allowed here, when an allowlist is configured).
    pub fn check_key(&self, key: &VerifyingKey, policy: &JwsPolicy) -> Result<(), Error> {
        let alg = self.header.alg;
        let refused = |description: String| {
            Err(Error::new(Reason::AlgorithmNotAllowed, description)
                .with_detail(crate::error::Detail::AlgorithmNotAllowed { alg: alg.name().to_owned() }))
        };
        match policy.algorithms {
            AlgorithmPolicy::FromKeys => match key.declared_algorithm() {
                Some(declared) if declared == alg => Ok(()),
                Some(declared) => refused(format!(
                    "token alg {alg} does not match {}, which allows only {declared} (its JWK alg)",
                    key_name(key)
                )),
                None => refused(format!(
                    "{} declares no alg and no algorithm allowlist is configured; it could verify {}: allow the \
                     algorithm explicitly",
                    key_name(key),
                    key.algorithms()
                )),
            },
            AlgorithmPolicy::Allow(set) if set.contains(alg) && key.algorithms().contains(alg) => Ok(()),
            AlgorithmPolicy::Allow(set) if !set.contains(alg) => refused(format!(
                "token alg {alg} is not allowed here (allowed: {set}); {} allows {}",
                key_name(key),
                key.algorithms()
            )),
            AlgorithmPolicy::Allow(set) => refused(format!(
                "token alg {alg} does not match {}, which allows {} (allowed here: {set})",
                key_name(key),
                key.algorithms()
            )),
        }
    }

    /// Verifies the signature with `key`, returning the authenticated parts.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    pub fn verify_with(self, key: &Arc<VerifyingKey>) -> Result<VerifiedJws, Error> {
        self.verify_signature(key)?;
        Ok(self.into_verified(key))
    }

    /// Verifies the signature with `key`, keeping the parts here.
    pub fn verify_signature(&self, key: &VerifyingKey) -> Result<(), Error> {
        key.verify_signature(self.header.alg, self.signing_input.as_bytes(), &self.signature)
    }

    /// Takes the authenticated parts; only meaningful after [`verify_signature`](Self::verify_signature) passed,
    /// so it is not visible outside the crate.
    pub(crate) fn into_verified(self, key: &Arc<VerifyingKey>) -> VerifiedJws {
        VerifiedJws { header: self.header, payload: self.payload, key: Arc::clone(key) }
    }
}

/// A JWS whose signature verified. Only this crate makes one, after checking the signature.
#[derive(Debug)]
pub struct VerifiedJws {
    /// The checked header.
    pub(crate) header: Arc<Header>,
    /// The authenticated payload bytes.
    pub(crate) payload: Vec<u8>,
    /// The key that verified the signature.
    pub(crate) key: Arc<VerifyingKey>,
}

#[cfg_attr(not(feature = "internals"), allow(dead_code))]
impl VerifiedJws {
    /// The checked header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The authenticated payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The key that verified the signature.
    pub fn key(&self) -> &Arc<VerifyingKey> {
        &self.key
    }
}

/// Parses and verifies a compact JWS at the JOSE level: header rules, key selection, algorithm binding and
/// signature. The payload is returned as bytes; no claim is looked at.
///
/// ```
/// use portcullis::__internals::{verify_compact, JwsPolicy};
/// use portcullis::KeySet;
/// // RFC 8037 A.4: an Ed25519 signature over "Example of Ed25519 signing".
/// let jwks = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","alg":"EdDSA"}]}"#;
/// let keys = KeySet::from_jwks_json(jwks).unwrap();
/// let token = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.\
///     hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
/// let verified = verify_compact(token, &keys, &JwsPolicy::default()).unwrap();
/// assert_eq!(verified.payload(), b"Example of Ed25519 signing");
/// ```
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub fn verify_compact(token: &str, keys: &KeySet, policy: &JwsPolicy) -> Result<VerifiedJws, Error> {
    let jws = UnverifiedJws::parse(token, policy)?;
    let key = jws.select_key(keys, policy)?;
    jws.verify_with(key)
}

/// How a refusal names `key`: by its kid when it has one.
fn key_name(key: &VerifyingKey) -> String {
    match key.kid() {
        Some(kid) => format!("key {}", crate::error::quoted(kid)),
        None => "the key".to_owned(),
    }
}

fn parse_header(segment: &str, policy: &JwsPolicy) -> Result<Header, Error> {
    if segment.len() > MAX_HEADER_LEN / 3 * 4 + 4 {
        return Err(malformed(format!("header is larger than {MAX_HEADER_LEN} bytes")));
    }
    let json = base64url::decode(segment).ok_or_else(|| not_base64("header"))?;
    let raw = crate::json::parse_object_nested(&json, policy.max_json_depth)
        .map_err(|e| malformed(format!("header is not a valid JSON object: {e}")))?;
    check_header(raw, policy)
}

fn malformed(description: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(Reason::TokenMalformed, description)
}

fn header_invalid(description: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(Reason::HeaderInvalid, description)
}

fn not_base64(part: &str) -> Error {
    malformed(format!("{part} is not strict base64url (RFC 7515: no padding, no whitespace, URL-safe alphabet)"))
}

/// Splits into (signing input, header, payload, signature).
fn split(token: &str) -> Result<(&str, &str, &str, &str), Error> {
    let mut dots = memchr::memchr_iter(b'.', token.as_bytes());
    let (Some(first), Some(second)) = (dots.next(), dots.next()) else {
        return Err(segment_count(token));
    };
    if dots.next().is_some() {
        return Err(segment_count(token));
    }
    Ok((&token[..second], &token[..first], &token[first + 1..second], &token[second + 1..]))
}

fn segment_count(token: &str) -> Error {
    let segments = token.bytes().filter(|&b| b == b'.').count() + 1;
    if segments == 5 {
        malformed("encrypted tokens (JWE, 5 segments) are not accepted")
    } else {
        malformed(format!("a compact JWS has 3 segments, this token has {segments}"))
    }
}

/// The header members whose meaning RFC 7515/7519 define; `crit` may not list them.
const REGISTERED: [&str; 13] =
    ["alg", "jku", "jwk", "kid", "x5u", "x5c", "x5t", "x5t#S256", "typ", "cty", "crit", "enc", "zip"];

fn check_header(raw: Map<String, Value>, policy: &JwsPolicy) -> Result<Header, Error> {
    let alg = match raw.get("alg") {
        None => return Err(malformed("header has no alg")),
        Some(Value::String(name)) => algorithm(name)?,
        Some(_) => return Err(malformed("header alg must be a string")),
    };
    if let Some(crit) = raw.get("crit") {
        check_crit(crit)?;
    }
    match raw.get("b64") {
        None | Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => {
            return Err(header_invalid("unencoded payloads (b64: false) are not accepted"));
        }
        Some(_) => return Err(header_invalid("header b64 must be a boolean")),
    }
    if raw.contains_key("enc") || raw.contains_key("zip") {
        return Err(header_invalid("enc and zip belong to encrypted tokens, which are not accepted"));
    }
    let kid = match raw.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(header_invalid("header kid must be a string")),
    };
    let typ = match raw.get("typ") {
        None => None,
        Some(Value::String(typ)) => Some(typ.clone()),
        Some(_) => return Err(header_invalid("header typ must be a string")),
    };
    check_typ(typ.as_deref(), policy.required_typ.as_deref())?;
    match raw.get("cty") {
        Some(Value::String(cty)) if media_type(cty) == "jwt" => {
            return Err(header_invalid("nested tokens (cty JWT) are not accepted"));
        }
        Some(Value::String(_)) | None => {}
        Some(_) => return Err(header_invalid("header cty must be a string")),
    }
    Ok(Header { alg, kid, typ, raw })
}

fn algorithm(name: &str) -> Result<Algorithm, Error> {
    if let Some(alg) = Algorithm::from_name(name) {
        return Ok(alg);
    }
    let description = if name.eq_ignore_ascii_case("none") {
        "unsecured tokens (alg none) are never accepted".to_owned()
    } else if name.starts_with("HS") {
        format!("alg {} is not accepted: HMAC cannot be verified with published keys", quoted(name))
    } else {
        format!("alg {} is not a supported signature algorithm", quoted(name))
    };
    Err(Error::new(Reason::AlgorithmNotAllowed, description)
        .with_detail(crate::error::Detail::AlgorithmNotAllowed { alg: name.to_owned() }))
}

fn check_crit(crit: &Value) -> Result<(), Error> {
    let Value::Array(names) = crit else {
        return Err(header_invalid("header crit must be an array"));
    };
    if names.is_empty() {
        return Err(header_invalid("header crit must not be empty"));
    }
    // No extension is understood, so any critical one is refused (RFC 7515 §4.1.11); the first decides.
    let Value::String(name) = &names[0] else {
        return Err(header_invalid("header crit must hold only strings"));
    };
    if REGISTERED.contains(&name.as_str()) {
        return Err(header_invalid(format!("crit lists the registered member {}", quoted(name))));
    }
    Err(header_invalid(format!("critical header extension {} is not supported", quoted(name))))
}

/// Lower-cases and removes an `application/` prefix (RFC 7515 §4.1.9).
pub(crate) fn media_type(value: &str) -> String {
    let lower = value.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_owned(),
        None => lower,
    }
}

pub(crate) fn check_typ(typ: Option<&str>, required: Option<&str>) -> Result<(), Error> {
    match (typ, required) {
        (Some(typ), Some(required)) if media_type(typ) != media_type(required) => {
            Err(header_invalid(format!("typ {} does not match the required {}", quoted(typ), quoted(required))))
        }
        (None, Some(required)) => Err(header_invalid(format!("typ is missing; {} is required", quoted(required)))),
        (Some(typ), None) if !matches!(media_type(typ).as_str(), "jwt" | "at+jwt") => {
            Err(header_invalid(format!("typ {} does not name a JWT", quoted(typ))))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64url::encode(s)
    }

    fn token(header: &str) -> String {
        format!("{}.{}.{}", b64(header), b64("{}"), b64("sig"))
    }

    fn parse(token: &str) -> Result<UnverifiedJws<'_>, Error> {
        UnverifiedJws::parse(token, &JwsPolicy::default())
    }

    #[test]
    fn segment_errors() {
        assert!(parse("a.b").unwrap_err().description().contains("has 2"));
        assert!(parse("a.b.c.d.e").unwrap_err().description().contains("encrypted"));
        assert!(parse("a.b.c.d").unwrap_err().description().contains("has 4"));
        assert!(parse("").unwrap_err().description().contains("has 1"));
    }

    #[test]
    fn typ_rules() {
        assert!(check_typ(Some("JWT"), None).is_ok());
        assert!(check_typ(Some("application/AT+JWT"), None).is_ok());
        assert!(check_typ(Some("JOSE"), None).is_err());
        assert!(check_typ(Some("at+jwt"), Some("application/at+jwt")).is_ok());
        assert!(check_typ(Some("JWT"), Some("at+jwt")).is_err());
        assert!(check_typ(None, Some("at+jwt")).is_err());
    }

    #[test]
    fn header_rules() {
        let reason = |h: &str| parse(&token(h)).unwrap_err().reason();
        assert_eq!(reason(r#"{"alg":"RS256","crit":["exp"]}"#), Reason::HeaderInvalid);
        assert_eq!(reason(r#"{"alg":"RS256","crit":[]}"#), Reason::HeaderInvalid);
        assert_eq!(reason(r#"{"alg":"RS256","crit":["alg"]}"#), Reason::HeaderInvalid);
        assert_eq!(reason(r#"{"alg":"RS256","b64":false,"crit":["b64"]}"#), Reason::HeaderInvalid);
        assert_eq!(reason(r#"{"alg":"RS256","kid":1}"#), Reason::HeaderInvalid);
        assert_eq!(reason(r#"{"alg":"RS256","cty":"JWT"}"#), Reason::HeaderInvalid);
        assert_eq!(reason(r#"{"alg":"RS256","zip":"DEF"}"#), Reason::HeaderInvalid);
        assert_eq!(reason(r#"{"alg":["RS256"]}"#), Reason::TokenMalformed);
        assert_eq!(reason(r#"{"typ":"JWT"}"#), Reason::TokenMalformed);
        assert_eq!(reason(r#"{"alg":"None"}"#), Reason::AlgorithmNotAllowed);
        assert!(parse(&token(r#"{"alg":"RS256","x-unknown":{"a":1}}"#)).is_ok());
    }

    #[test]
    fn size_limits_come_first() {
        let policy = JwsPolicy { max_token_len: 100, ..JwsPolicy::default() };
        let long = "a".repeat(101);
        let err = UnverifiedJws::parse(&long, &policy).unwrap_err();
        assert!(err.description().contains("101 bytes"), "{err}");
        let big_header = format!(r#"{{"alg":"RS256","pad":"{}"}}"#, "x".repeat(MAX_HEADER_LEN));
        assert!(parse(&token(&big_header)).unwrap_err().description().contains("header is larger"));
    }
}
