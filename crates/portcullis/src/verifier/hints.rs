//! Advice for the common causes of each failed check, shown by [`Verifier::explain`](super::Verifier::explain)
//! beside the check. Built only when a report asks for it.

use crate::claims::RegisteredClaims;
use crate::error::{Error, Reason, quoted};
use crate::jwk::VerifyingKey;
use crate::rules::{Check, ClaimRules};

/// Advice for a token that is not a compact JWS at all: what people paste by mistake.
pub(super) fn structure(token: &str) -> Option<String> {
    match token.split('.').count() {
        5 => Some(
            "this is an encrypted token (JWE), not a signed one: Auth0 issues such tokens (or opaque ones) when the \
             authorization request names no audience; ask for the token with audience=<your API identifier>"
                .into(),
        ),
        1 => Some(
            "this is not a JWT (no dots): an opaque access token, which only the issuer can read. Auth0 returns one \
             when the authorization request names no audience; ask with audience=<your API identifier>"
                .into(),
        ),
        _ => None,
    }
}

/// What a passed key check found.
pub(super) fn describe_key(key: &VerifyingKey) -> String {
    match key.kid() {
        Some(kid) => format!("kid {} ({} bits, {})", quoted(kid), key.bits(), key.algorithms()),
        None => format!("the only key ({} bits, {})", key.bits(), key.algorithms()),
    }
}

/// Advice for a failed key check.
pub(super) fn key(err: &Error, kid: Option<&str>) -> Option<String> {
    match (err.reason(), kid) {
        (Reason::KeyNotFound, Some(_)) => Some(
            "the token was signed by a key this key set does not hold: it may come from another tenant or \
             environment, or the issuer rotated keys and this JWKS copy is stale"
                .into(),
        ),
        (Reason::KeyNotFound, None) => Some("the token has no kid; only a single-key set can verify it".into()),
        (Reason::AlgorithmNotAllowed, _) => {
            Some("the algorithm comes from the key, never from the token: check --alg and the JWK's alg".into())
        }
        _ => None,
    }
}

/// Advice for a failed claim check; `payload` is the verified claim set.
pub(super) fn claim(rules: &ClaimRules, check: Check, claims: &RegisteredClaims, payload: &[u8]) -> Option<String> {
    match check {
        Check::Issuer => {
            let iss = claims.iss.as_deref()?;
            let near =
                rules.issuers.iter().find(|expected| expected.trim_end_matches('/') == iss.trim_end_matches('/'))?;
            Some(format!(
                "the issuers differ only in the trailing slash: the token says {}, you expect {}. Auth0 issuers \
                 end with '/': use exactly the token's value",
                quoted(iss),
                quoted(near)
            ))
        }
        Check::Audience if looks_like_id_token(payload) => Some(
            "this looks like an ID token (it carries a nonce and is meant for the client that logged in): \
             send the access token to APIs, not the ID token"
                .into(),
        ),
        Check::Audience => Some(format!(
            "request the token with audience={} (Auth0: the API Identifier), or add the token's audience to \
             this API's configuration",
            rules.audiences_for(claims).0.first().map(String::as_str).unwrap_or_default()
        )),
        Check::Expiry => Some("get a fresh token; if clocks disagree, check NTP or raise the leeway".into()),
        Check::NotBefore | Check::IssuedAt => {
            Some("the issuer's clock may be ahead of this machine's: check NTP, or raise the leeway".into())
        }
        _ => None,
    }
}

/// An ID token carries a `nonce`; access tokens do not.
fn looks_like_id_token(payload: &[u8]) -> bool {
    crate::json::parse_object_nested(payload, crate::json::MAX_DEPTH_CEILING)
        .is_ok_and(|claims| claims.contains_key("nonce"))
}
