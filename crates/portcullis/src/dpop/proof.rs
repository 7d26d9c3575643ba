//! One DPoP proof checked (RFC 9449 §4.3, §7.1): each check in [`DpopCheck`] order, the replay entry last.

use super::{DpopCheck, DpopVerifier, Htu, Proof, ProofExpectations, thumbprint};
use crate::base64url;
use crate::clock::human_duration;
use crate::error::{Error, Reason};
use crate::jwk::VerifyingKey;
use crate::jws::{AlgorithmPolicy, JwsPolicy, UnverifiedJws};
use crate::store::ReplayKey;
use aws_lc_rs::digest;
use serde_json::{Map, Value};

/// The longest proof accepted, in bytes (an RSA-8192 `jwk` and signature fit with room to spare).
pub(crate) const MAX_PROOF_LEN: usize = 8 * 1024;
/// The longest `jti` accepted, in bytes.
pub(crate) const MAX_JTI_LEN: usize = 256;
/// How deep the proof's header and claims may nest.
const MAX_DEPTH: usize = 8;
/// NumericDate values at or above 2^53 are refused.
const MAX_NUMERIC_DATE: f64 = 9_007_199_254_740_992.0;

/// A failed check: which one, and the error.
pub(crate) type Failed = (DpopCheck, Error);

fn proof_invalid(description: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(Reason::DpopProofInvalid, description)
}

/// Runs every check but the replay check, which the caller makes with the returned key (recording it, or only
/// looking for it in reports).
pub(crate) fn check(
    verifier: &DpopVerifier,
    proof: &str,
    expected: &ProofExpectations<'_>,
) -> Result<(Proof, ReplayKey), Failed> {
    let inner = &verifier.inner;
    let fail = |check: DpopCheck, err: Error| Err((check, err));

    // Structure: size, segments, strict base64url, duplicate-free JSON header, typ.
    if proof.len() > MAX_PROOF_LEN {
        return fail(DpopCheck::Structure, proof_invalid(format!("DPoP proof is longer than {MAX_PROOF_LEN} bytes")));
    }
    let policy = JwsPolicy {
        algorithms: AlgorithmPolicy::Allow(inner.algorithms),
        required_typ: Some("dpop+jwt".to_owned()),
        max_token_len: MAX_PROOF_LEN,
        max_json_depth: MAX_DEPTH,
    };
    let jws = match UnverifiedJws::parse(proof, &policy) {
        Ok(jws) => jws,
        Err(err) => return Err(structure_error(proof, &err, inner.algorithms)),
    };
    let header = jws.header();

    // Algorithm: asymmetric (only those parse at all) and allowed here.
    let alg = header.alg();
    if !inner.algorithms.contains(alg) {
        return fail(
            DpopCheck::Algorithm,
            proof_invalid(format!("DPoP proof alg {alg} is not allowed here (allowed: {})", inner.algorithms)),
        );
    }

    // Key: the header's jwk, public members only; nothing else in the header selects a key.
    let jwk = match header.raw().get("jwk") {
        Some(Value::Object(jwk)) => jwk,
        Some(_) => return fail(DpopCheck::Key, proof_invalid("DPoP proof header jwk must be a JSON object")),
        None => return fail(DpopCheck::Key, proof_invalid("DPoP proof header has no jwk")),
    };
    let key = match VerifyingKey::from_jwk(jwk) {
        Ok(key) => std::sync::Arc::new(key),
        Err(rejected) => return fail(DpopCheck::Key, key_error(rejected.message())),
    };
    if jws.check_key(&key, &policy).is_err() {
        return fail(
            DpopCheck::Key,
            proof_invalid(format!(
                "DPoP proof alg {alg} cannot be used with its jwk, which allows {}",
                key.algorithms()
            )),
        );
    }
    let jkt = match thumbprint(jwk) {
        Ok(jkt) => jkt,
        Err(err) => return fail(DpopCheck::Key, err),
    };

    // Signature, by that key.
    if jws.verify_signature(&key).is_err() {
        return fail(DpopCheck::Signature, proof_invalid("DPoP proof signature does not verify with its jwk"));
    }

    // Claims: a strict JSON object with the required members well-typed.
    let claims = match crate::json::parse_object_nested(jws.payload(), MAX_DEPTH) {
        Ok(claims) => claims,
        Err(_) => return fail(DpopCheck::Claims, proof_invalid("DPoP proof claims are not a valid JSON object")),
    };
    let parsed = match Claims::read(&claims, expected.access_token.is_some()) {
        Ok(parsed) => parsed,
        Err(err) => return fail(DpopCheck::Claims, err),
    };

    // htm: the request method, exactly.
    if parsed.htm != expected.method {
        return fail(DpopCheck::Method, proof_invalid("DPoP proof htm does not match the request method"));
    }

    // htu: the request URI, both normalized, without query and fragment.
    let htu = match Htu::parse(parsed.htu) {
        Ok(htu) => htu,
        Err(_) => return fail(DpopCheck::Uri, proof_invalid("DPoP proof htu is not an absolute http(s) URI")),
    };
    if &htu != expected.htu {
        return fail(
            DpopCheck::Uri,
            proof_invalid(format!(
                "DPoP proof htu does not match the URI of this request (this resource is served at {})",
                expected.htu.origin()
            )),
        );
    }

    // Nonce, when this server asks for one.
    let now = inner.clock.now();
    if let Some(nonces) = &inner.nonces {
        let description = match claims.get("nonce") {
            None => Some("DPoP proof has no nonce; this server requires one: retry with the DPoP-Nonce it sent"),
            Some(Value::String(nonce)) if nonces.accepts(nonce, now) => None,
            Some(Value::String(_)) => Some("DPoP proof nonce is stale or unknown: retry with the DPoP-Nonce it sent"),
            Some(_) => Some("DPoP proof nonce must be a string: retry with the DPoP-Nonce it sent"),
        };
        if let Some(description) = description {
            return fail(DpopCheck::Nonce, Error::new(Reason::DpopNonceRequired, description));
        }
    }

    // iat: within max_age into the past and leeway into the future.
    let now_secs = now.as_secs_f64();
    if parsed.iat > now_secs + inner.leeway.as_secs_f64() {
        return fail(
            DpopCheck::IssuedAt,
            proof_invalid(format!(
                "DPoP proof iat is {} in the future (leeway {}s)",
                human_duration(parsed.iat - now_secs),
                inner.leeway.as_secs()
            )),
        );
    }
    if now_secs - parsed.iat > inner.max_age.as_secs_f64() {
        return fail(
            DpopCheck::IssuedAt,
            proof_invalid(format!(
                "DPoP proof was issued {} ago, more than the {}s a proof is accepted",
                human_duration(now_secs - parsed.iat),
                inner.max_age.as_secs()
            )),
        );
    }

    // ath: the hash of the access token the proof goes with.
    if let Some(token) = expected.access_token {
        let ath = base64url::encode(digest::digest(&digest::SHA256, token.as_bytes()));
        if parsed.ath != Some(ath.as_str()) {
            return fail(DpopCheck::AccessToken, proof_invalid("DPoP proof ath does not match the access token"));
        }
    }

    // Binding: the token's cnf.jkt names the proof's key.
    if let Some(bound) = expected.jkt
        && bound != jkt
    {
        return fail(
            DpopCheck::Binding,
            Error::new(
                Reason::TokenBindingInvalid,
                "the token is bound to another key: its cnf.jkt is not the thumbprint of the DPoP proof's jwk",
            ),
        );
    }

    // Replay, last, by the caller: only a proof that passed every other check takes a place in the store.
    let key = ReplayKey::for_proof(htu.as_str(), parsed.jti);
    Ok((Proof { thumbprint: jkt, jti: parsed.jti.to_owned(), iat: parsed.iat as u64, alg }, key))
}

/// The claims a proof must carry, typed.
struct Claims<'c> {
    jti: &'c str,
    htm: &'c str,
    htu: &'c str,
    iat: f64,
    ath: Option<&'c str>,
}

impl<'c> Claims<'c> {
    fn read(claims: &'c Map<String, Value>, ath_required: bool) -> Result<Self, Error> {
        let string = |name: &'static str| -> Result<&'c str, Error> {
            match claims.get(name) {
                Some(Value::String(value)) => Ok(value),
                Some(_) => Err(proof_invalid(format!("DPoP proof {name} must be a string"))),
                None => Err(proof_invalid(format!("DPoP proof has no {name}"))),
            }
        };
        let jti = string("jti")?;
        if jti.is_empty() || jti.len() > MAX_JTI_LEN {
            return Err(proof_invalid(format!("DPoP proof jti must be 1 to {MAX_JTI_LEN} bytes")));
        }
        let htm = string("htm")?;
        let htu = string("htu")?;
        let iat = match claims.get("iat") {
            Some(Value::Number(n)) => match n.as_f64() {
                Some(secs) if (0.0..MAX_NUMERIC_DATE).contains(&secs) => secs,
                _ => return Err(proof_invalid("DPoP proof iat is out of range for a NumericDate")),
            },
            Some(_) => return Err(proof_invalid("DPoP proof iat must be a NumericDate (a JSON number of seconds)")),
            None => return Err(proof_invalid("DPoP proof has no iat")),
        };
        let ath = if ath_required {
            match claims.get("ath") {
                Some(Value::String(value)) => Some(value.as_str()),
                Some(_) => return Err(proof_invalid("DPoP proof ath must be a string")),
                None => return Err(proof_invalid("DPoP proof has no ath; it is required with an access token")),
            }
        } else {
            None
        };
        Ok(Self { jti, htm, htu, iat, ath })
    }
}

/// A structure error of the proof, said without repeating what the proof holds.
fn structure_error(proof: &str, err: &Error, allowed: crate::AlgorithmSet) -> Failed {
    match err.reason() {
        Reason::AlgorithmNotAllowed => (
            DpopCheck::Algorithm,
            proof_invalid(format!(
                "DPoP proof alg must be an asymmetric signature algorithm allowed here ({allowed}); none and HMAC \
                 never are"
            )),
        ),
        Reason::HeaderInvalid => {
            let typ = unverified_header(proof).and_then(|h| h.get("typ").cloned());
            let description = match typ {
                Some(Value::String(typ)) if typ.eq_ignore_ascii_case("dpop+jwt") => {
                    "DPoP proof header breaks a JOSE rule (crit, b64, enc, zip or a nested cty)"
                }
                Some(_) => "DPoP proof typ must be dpop+jwt",
                None => "DPoP proof has no typ; it must be dpop+jwt",
            };
            (DpopCheck::Structure, proof_invalid(description))
        }
        _ => (
            DpopCheck::Structure,
            proof_invalid("DPoP proof is not a compact JWS with strict base64url parts and a JSON header"),
        ),
    }
}

fn unverified_header(proof: &str) -> Option<Map<String, Value>> {
    let segment = proof.split('.').next()?;
    crate::json::parse_object_nested(&base64url::decode(segment)?, MAX_DEPTH).ok()
}

/// A refused `jwk`, said without repeating it.
fn key_error(message: &str) -> Error {
    if message.contains("private key member") {
        proof_invalid("DPoP proof jwk holds private key members: only the public key may be sent")
    } else if message.contains("symmetric") {
        proof_invalid("DPoP proof jwk is a symmetric key; proofs are signed with asymmetric keys")
    } else {
        proof_invalid("DPoP proof jwk is not a usable public key (RSA of 2048 to 8192 bits, P-256/384/521, Ed25519)")
    }
}
