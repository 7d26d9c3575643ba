//! JSON Web Keys (RFC 7517) turned into ready-to-use verifying keys.
//!
//! Parsing happens once per key set: each usable key becomes a [`VerifyingKey`] holding aws-lc-rs key objects,
//! one per algorithm the key may verify. A key that is unusable or too weak is refused here, at load time, with a
//! reason, and never reaches the request path. Key material never appears in `Debug` output.

use crate::algorithm::{Algorithm, AlgorithmSet, Curve, KeyFamily};
use crate::base64url;
use crate::error::{Error, Reason, quoted};
use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use serde_json::{Map, Value};
use std::fmt;

/// Smallest RSA modulus accepted, in bits (NIST SP 800-57, RFC 7518 §3.3).
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (bounds the cost of one verification).
pub const MAX_RSA_BITS: usize = 8192;

/// Members that only a private or secret key has. A published key set never contains them.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a JWK was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRejected(String);

impl KeyRejected {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    pub(crate) fn new_public(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// What was wrong with the key.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyRejected {}

/// A public key ready to verify JWS signatures, bound to the algorithms it may be used with.
///
/// The algorithms come from the key, never from a token: the JWK's `alg` when present, otherwise every algorithm
/// of the key's family (`kty`, and `crv` for elliptic curves).
pub struct VerifyingKey {
    kid: Option<String>,
    family: KeyFamily,
    declared_alg: Option<Algorithm>,
    algorithms: AlgorithmSet,
    bits: usize,
    thumbprint: String,
    verifiers: Vec<(Algorithm, ParsedPublicKey)>,
}

impl VerifyingKey {
    /// Parses one JWK given as JSON text.
    ///
    /// ```
    /// use portcullis::{Algorithm, VerifyingKey};
    /// let jwk = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"ed"}"#;
    /// let key = VerifyingKey::from_jwk_json(jwk.as_bytes()).unwrap();
    /// assert_eq!(key.kid(), Some("ed"));
    /// assert!(key.algorithms().contains(Algorithm::EdDSA));
    /// ```
    pub fn from_jwk_json(json: &[u8]) -> Result<Self, KeyRejected> {
        let map = crate::json::parse_object(json).map_err(|e| KeyRejected::new(format!("invalid JSON: {e}")))?;
        Self::from_jwk(&map)
    }

    /// Parses one JWK from a JSON object.
    pub fn from_jwk(jwk: &Map<String, Value>) -> Result<Self, KeyRejected> {
        let kty = string_member(jwk, "kty")?.ok_or_else(|| KeyRejected::new("missing kty"))?;
        if kty == "oct" {
            return Err(KeyRejected::new("symmetric (kty oct) keys are never accepted"));
        }
        if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
            return Err(KeyRejected::new(format!(
                "private key member '{member}' present: a published key set must hold public keys only"
            )));
        }
        let kid = string_member(jwk, "kid")?.map(str::to_owned);
        check_use(jwk)?;
        let declared_alg = match string_member(jwk, "alg")? {
            None => None,
            Some(name) => Some(Algorithm::from_name(name).ok_or_else(|| {
                KeyRejected::new(format!("alg {} is not a supported signature algorithm", quoted(name)))
            })?),
        };
        let material = match kty {
            "RSA" => KeyMaterial::rsa(jwk)?,
            "EC" => KeyMaterial::ec(jwk)?,
            "OKP" => KeyMaterial::okp(jwk)?,
            other => {
                return Err(KeyRejected::new(format!("unsupported kty {}", quoted(other))));
            }
        };
        let algorithms = match declared_alg {
            Some(alg) if alg.family() != material.family => {
                return Err(KeyRejected::new(format!(
                    "alg {alg} cannot be used with a {} key",
                    family_name(material.family)
                )));
            }
            Some(alg) => [alg].into_iter().collect(),
            None => AlgorithmSet::family(material.family),
        };
        let verifiers = algorithms
            .iter()
            .map(|alg| Ok((alg, material.parse_for(alg)?)))
            .collect::<Result<Vec<_>, KeyRejected>>()?;
        Ok(Self {
            kid,
            family: material.family,
            declared_alg,
            algorithms,
            bits: material.bits,
            thumbprint: material.thumbprint(),
            verifiers,
        })
    }

    /// The key's `kid`, if it has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The key family (`kty`/`crv`).
    pub fn family(&self) -> KeyFamily {
        self.family
    }

    /// The JWK's own `alg`, when it declared one.
    pub fn declared_algorithm(&self) -> Option<Algorithm> {
        self.declared_alg
    }

    /// The algorithms this key may verify.
    pub fn algorithms(&self) -> AlgorithmSet {
        self.algorithms
    }

    /// Key size in bits (RSA modulus, curve order size, 256 for Ed25519).
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url): the key's identity, whatever its `kid`.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// Verifies a raw signature over `message` with `alg`, which must be one of the key's algorithms.
    ///
    /// ECDSA signatures must be r‖s of exactly twice the coordinate size (RFC 7518 §3.4); DER is refused.
    pub fn verify_signature(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> Result<(), Error> {
        let Some((_, verifier)) = self.verifiers.iter().find(|(a, _)| *a == alg) else {
            return Err(Error::new(
                Reason::AlgorithmNotAllowed,
                format!(
                    "token alg {alg} does not match {}, which allows {}",
                    self.kid.as_deref().map_or_else(|| "the key".to_owned(), |k| format!("key {}", quoted(k))),
                    self.algorithms
                ),
            ));
        };
        if let KeyFamily::Ec(curve) = self.family {
            let expected = 2 * curve.coordinate_len();
            if signature.len() != expected {
                return Err(Error::new(
                    Reason::SignatureInvalid,
                    format!("{alg} signature must be {expected} bytes (r||s), got {}", signature.len()),
                ));
            }
        }
        verifier
            .verify_sig(message, signature)
            .map_err(|_| Error::new(Reason::SignatureInvalid, "signature verification failed"))
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("algorithms", &self.algorithms)
            .field("bits", &self.bits)
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

fn family_name(family: KeyFamily) -> &'static str {
    match family {
        KeyFamily::Rsa => "RSA",
        KeyFamily::Ec(curve) => curve.name(),
        KeyFamily::Ed25519 => "Ed25519",
    }
}

fn string_member<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, KeyRejected> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(KeyRejected::new(format!("member '{name}' must be a string"))),
    }
}

fn check_use(jwk: &Map<String, Value>) -> Result<(), KeyRejected> {
    match string_member(jwk, "use")? {
        None | Some("sig") => {}
        Some(other) => {
            return Err(KeyRejected::new(format!("use {} is not 'sig'", quoted(other))));
        }
    }
    match jwk.get("key_ops") {
        None => Ok(()),
        Some(Value::Array(ops)) => {
            if ops.iter().any(|op| !op.is_string()) {
                return Err(KeyRejected::new("key_ops must hold only strings"));
            }
            if ops.iter().any(|op| op == "verify") {
                Ok(())
            } else {
                Err(KeyRejected::new("key_ops does not include 'verify'"))
            }
        }
        Some(_) => Err(KeyRejected::new("key_ops must be an array")),
    }
}

fn decoded_member(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, KeyRejected> {
    let text = string_member(jwk, name)?.ok_or_else(|| KeyRejected::new(format!("missing '{name}'")))?;
    base64url::decode(text).ok_or_else(|| KeyRejected::new(format!("'{name}' is not strict base64url")))
}

/// Decoded public key material, validated, before binding to algorithms.
struct KeyMaterial {
    family: KeyFamily,
    bits: usize,
    /// RSA: (n, e) without leading zeros. EC: (x, y). Ed25519: (x, empty).
    first: Vec<u8>,
    second: Vec<u8>,
}

impl KeyMaterial {
    fn rsa(jwk: &Map<String, Value>) -> Result<Self, KeyRejected> {
        let n = strip_leading_zeros(decoded_member(jwk, "n")?);
        let e = strip_leading_zeros(decoded_member(jwk, "e")?);
        let bits = bit_length(&n);
        if bits < MIN_RSA_BITS {
            return Err(KeyRejected::new(format!("RSA key of {bits} bits is too weak (minimum {MIN_RSA_BITS})")));
        }
        if bits > MAX_RSA_BITS {
            return Err(KeyRejected::new(format!("RSA key of {bits} bits is too large (maximum {MAX_RSA_BITS})")));
        }
        if e.len() > 4 || e.is_empty() {
            return Err(KeyRejected::new("RSA public exponent out of range"));
        }
        let exponent = e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        if exponent < 3 || exponent % 2 == 0 {
            return Err(KeyRejected::new(format!(
                "RSA public exponent {exponent} is not allowed (must be odd and at least 3)"
            )));
        }
        if n.last().is_some_and(|b| b % 2 == 0) {
            return Err(KeyRejected::new("RSA modulus is even"));
        }
        if crate::roca::has_fingerprint(&n) {
            return Err(KeyRejected::new(
                "RSA modulus has the ROCA fingerprint (CVE-2017-15361): the private key is recoverable",
            ));
        }
        Ok(Self { family: KeyFamily::Rsa, bits, first: n, second: e })
    }

    fn ec(jwk: &Map<String, Value>) -> Result<Self, KeyRejected> {
        let crv = string_member(jwk, "crv")?.ok_or_else(|| KeyRejected::new("missing crv"))?;
        let curve = match crv {
            "P-256" => Curve::P256,
            "P-384" => Curve::P384,
            "P-521" => Curve::P521,
            other => {
                return Err(KeyRejected::new(format!("unsupported EC curve {}", quoted(other))));
            }
        };
        let x = decoded_member(jwk, "x")?;
        let y = decoded_member(jwk, "y")?;
        let len = curve.coordinate_len();
        if x.len() != len || y.len() != len {
            return Err(KeyRejected::new(format!(
                "{} coordinates must be {len} bytes each (RFC 7518 6.2.1.2)",
                curve.name()
            )));
        }
        let bits = match curve {
            Curve::P256 => 256,
            Curve::P384 => 384,
            Curve::P521 => 521,
        };
        Ok(Self { family: KeyFamily::Ec(curve), bits, first: x, second: y })
    }

    fn okp(jwk: &Map<String, Value>) -> Result<Self, KeyRejected> {
        match string_member(jwk, "crv")? {
            Some("Ed25519") => {}
            Some(other) => {
                return Err(KeyRejected::new(format!("unsupported OKP curve {}", quoted(other))));
            }
            None => return Err(KeyRejected::new("missing crv")),
        }
        let x = decoded_member(jwk, "x")?;
        if x.len() != 32 {
            return Err(KeyRejected::new("Ed25519 public key must be 32 bytes"));
        }
        Ok(Self { family: KeyFamily::Ed25519, bits: 256, first: x, second: Vec::new() })
    }

    fn parse_for(&self, alg: Algorithm) -> Result<ParsedPublicKey, KeyRejected> {
        let parsed = match self.family {
            KeyFamily::Rsa => {
                let components = RsaPublicKeyComponents { n: &self.first[..], e: &self.second[..] };
                components.to_parsed_public_key(rsa_parameters(alg))
            }
            KeyFamily::Ec(curve) => {
                let mut point = Vec::with_capacity(1 + 2 * curve.coordinate_len());
                point.push(0x04);
                point.extend_from_slice(&self.first);
                point.extend_from_slice(&self.second);
                let algorithm: &'static signature::EcdsaVerificationAlgorithm = match curve {
                    Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED,
                    Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED,
                    Curve::P521 => &signature::ECDSA_P521_SHA512_FIXED,
                };
                ParsedPublicKey::new(algorithm, point)
            }
            KeyFamily::Ed25519 => ParsedPublicKey::new(&signature::ED25519, &self.first),
        };
        parsed.map_err(|e| KeyRejected::new(format!("{} key rejected by aws-lc: {e}", family_name(self.family))))
    }

    /// RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace.
    fn thumbprint(&self) -> String {
        let b = base64url::encode;
        let canonical = match self.family {
            KeyFamily::Rsa => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b(&self.second), b(&self.first)),
            KeyFamily::Ec(curve) => {
                format!(r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#, curve.name(), b(&self.first), b(&self.second))
            }
            KeyFamily::Ed25519 => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b(&self.first)),
        };
        base64url::encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
    }
}

fn rsa_parameters(alg: Algorithm) -> &'static signature::RsaParameters {
    match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        _ => &signature::RSA_PSS_2048_8192_SHA512,
    }
}

fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}

fn bit_length(be: &[u8]) -> usize {
    match be.first() {
        None => 0,
        Some(first) => be.len() * 8 - first.leading_zeros() as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn jwk(json: &str) -> Result<VerifyingKey, KeyRejected> {
        VerifyingKey::from_jwk_json(json.as_bytes())
    }

    #[test]
    fn refuses_private_symmetric_and_encryption_keys() {
        assert!(jwk(r#"{"kty":"oct","k":"AAAA"}"#).unwrap_err().message().contains("symmetric"));
        let private = format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{ED_X}","d":"AAAA"}}"#);
        assert!(jwk(&private).unwrap_err().message().contains("private"));
        let enc = format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{ED_X}","use":"enc"}}"#);
        assert!(jwk(&enc).is_err());
        let ops = format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{ED_X}","key_ops":["sign"]}}"#);
        assert!(jwk(&ops).is_err());
        let ops = format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{ED_X}","key_ops":["verify"]}}"#);
        assert!(jwk(&ops).is_ok());
    }

    #[test]
    fn alg_must_fit_the_family() {
        let key = format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{ED_X}","alg":"RS256"}}"#);
        assert!(jwk(&key).unwrap_err().message().contains("cannot be used"));
        let key = format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{ED_X}","alg":"HS256"}}"#);
        assert!(jwk(&key).unwrap_err().message().contains("not a supported"));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let key = jwk(&format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{ED_X}"}}"#)).unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains(ED_X), "{shown}");
        assert!(shown.contains("thumbprint"));
    }

    #[test]
    fn rfc8037_thumbprint() {
        // RFC 8037 A.3.
        let key = jwk(&format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{ED_X}"}}"#)).unwrap();
        assert_eq!(key.thumbprint(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn bit_length_counts_from_the_top_bit() {
        assert_eq!(bit_length(&[0x01, 0x00]), 9);
        assert_eq!(bit_length(&[0x80]), 8);
        assert_eq!(strip_leading_zeros(vec![0, 0, 5]), vec![5]);
    }
}
