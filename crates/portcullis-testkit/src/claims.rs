//! Claim sets for test tokens, and reading a token's parts back.

use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

/// The subject of [`access`] claims.
pub const SUBJECT: &str = "auth0|alice";

/// The system clock in Unix seconds (for tokens checked by a process that reads the system clock itself).
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// An access token's claims for [`SUBJECT`]: `iss`, `aud` (a string or an array), `sub`, `iat` and `exp`.
pub fn access(issuer: &str, audience: impl Into<Value>, iat: u64, exp: u64) -> Value {
    json!({ "iss": issuer, "aud": audience.into(), "sub": SUBJECT, "iat": iat, "exp": exp })
}

/// `claims` with `name` set to `value` (added or replaced).
pub fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

/// The JSON of part `index` of a compact token (0: the header, 1: the claims).
pub fn part(token: &str, index: usize) -> Value {
    let encoded = token.split('.').nth(index).unwrap_or_else(|| panic!("no part {index}: {token}"));
    serde_json::from_slice(&portcullis::__internals::base64url::decode(encoded).unwrap()).unwrap()
}
