//! Signing keys and token minting, for the development issuer and for tests.
//!
//! A verifier never needs this module; it exists so that portcullis can issue real tokens offline (the dev
//! issuer, the demo, test suites and benchmarks) with the same aws-lc-rs primitives that verify them.

use crate::algorithm::{Algorithm, Curve, KeyFamily};
use crate::base64url;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{Map, Value, json};
use std::fmt;

/// A private key that signs JWS tokens with one algorithm.
pub struct SigningKey {
    alg: Algorithm,
    kid: Option<String>,
    pair: Pair,
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// Key generation or import failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signing key error: {0}")]
pub struct SigningError(String);

impl SigningError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl SigningKey {
    /// Generates a fresh key for `alg` (RSA keys are 2048 bits).
    ///
    /// ```
    /// use portcullis::{Algorithm, signing::SigningKey};
    /// let key = SigningKey::generate(Algorithm::ES256, Some("k1".into())).unwrap();
    /// assert_eq!(key.public_jwk()["crv"], "P-256");
    /// ```
    pub fn generate(alg: Algorithm, kid: Option<String>) -> Result<Self, SigningError> {
        let err = |e: &dyn fmt::Display| SigningError(e.to_string());
        let pair = match alg.family() {
            KeyFamily::Rsa => Pair::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).map_err(|e| err(&e))?),
            KeyFamily::Ec(curve) => Pair::Ec(EcdsaKeyPair::generate(ecdsa_signing(curve)).map_err(|e| err(&e))?),
            KeyFamily::Ed25519 => Pair::Ed(Ed25519KeyPair::generate().map_err(|e| err(&e))?),
        };
        Ok(Self { alg, kid, pair })
    }

    /// Imports a PKCS#8 DER private key for `alg`.
    pub fn from_pkcs8(alg: Algorithm, kid: Option<String>, der: &[u8]) -> Result<Self, SigningError> {
        let err = |e: &dyn fmt::Display| SigningError(e.to_string());
        let pair = match alg.family() {
            KeyFamily::Rsa => Pair::Rsa(RsaKeyPair::from_pkcs8(der).map_err(|e| err(&e))?),
            KeyFamily::Ec(curve) => Pair::Ec(EcdsaKeyPair::from_pkcs8(ecdsa_signing(curve), der).map_err(|e| err(&e))?),
            KeyFamily::Ed25519 => Pair::Ed(Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|e| err(&e))?),
        };
        Ok(Self { alg, kid, pair })
    }

    /// Exports the private key as PKCS#8 DER.
    pub fn to_pkcs8(&self) -> Result<Vec<u8>, SigningError> {
        let err = |e: &dyn fmt::Display| SigningError(e.to_string());
        Ok(match &self.pair {
            Pair::Rsa(pair) => pair.as_der().map_err(|e| err(&e))?.as_ref().to_vec(),
            Pair::Ec(pair) => pair.to_pkcs8v1().map_err(|e| err(&e))?.as_ref().to_vec(),
            Pair::Ed(pair) => pair.to_pkcs8().map_err(|e| err(&e))?.as_ref().to_vec(),
        })
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The key ID.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The public half as a JWK with `kty`, `use: sig`, `alg`, `kid` and the key members.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = match &self.pair {
            Pair::Rsa(pair) => {
                let public = pair.public_key();
                json!({
                    "kty": "RSA",
                    "n": base64url::encode(public.modulus().big_endian_without_leading_zero()),
                    "e": base64url::encode(public.exponent().big_endian_without_leading_zero()),
                })
            }
            Pair::Ec(pair) => {
                let point = pair.public_key().as_ref();
                let len = (point.len() - 1) / 2;
                let curve = match self.alg.family() {
                    KeyFamily::Ec(curve) => curve,
                    _ => Curve::P256,
                };
                json!({
                    "kty": "EC",
                    "crv": curve.name(),
                    "x": base64url::encode(&point[1..=len]),
                    "y": base64url::encode(&point[1 + len..]),
                })
            }
            Pair::Ed(pair) => json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": base64url::encode(pair.public_key().as_ref()),
            }),
        };
        jwk["use"] = json!("sig");
        jwk["alg"] = json!(self.alg.name());
        if let Some(kid) = &self.kid {
            jwk["kid"] = json!(kid);
        }
        jwk
    }

    /// Signs raw bytes (a JWS signing input) and returns the JWS signature bytes.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SigningError> {
        let rng = SystemRandom::new();
        let err = |e: &dyn fmt::Display| SigningError(e.to_string());
        Ok(match &self.pair {
            Pair::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(rsa_encoding(self.alg), &rng, message, &mut signature).map_err(|e| err(&e))?;
                signature
            }
            Pair::Ec(pair) => pair.sign(&rng, message).map_err(|e| err(&e))?.as_ref().to_vec(),
            Pair::Ed(pair) => pair.sign(message).as_ref().to_vec(),
        })
    }

    /// Mints a compact JWS: header `{"alg","typ":"JWT","kid"}` merged with `extra_header`, over `claims`.
    ///
    /// ```
    /// use portcullis::{Algorithm, signing::SigningKey};
    /// let key = SigningKey::generate(Algorithm::EdDSA, Some("k".into())).unwrap();
    /// let token = key.sign_token(&serde_json::json!({"sub": "alice"}), None).unwrap();
    /// assert_eq!(token.split('.').count(), 3);
    /// ```
    pub fn sign_token(
        &self,
        claims: &Value,
        extra_header: Option<&Map<String, Value>>,
    ) -> Result<String, SigningError> {
        let mut header = Map::new();
        header.insert("alg".into(), json!(self.alg.name()));
        header.insert("typ".into(), json!("JWT"));
        if let Some(kid) = &self.kid {
            header.insert("kid".into(), json!(kid));
        }
        if let Some(extra) = extra_header {
            for (name, value) in extra {
                header.insert(name.clone(), value.clone());
            }
        }
        let header = serde_json::to_vec(&Value::Object(header)).map_err(|e| SigningError(e.to_string()))?;
        let payload = serde_json::to_vec(claims).map_err(|e| SigningError(e.to_string()))?;
        self.sign_parts(&header, &payload)
    }

    /// Mints a compact JWS from exact header and payload bytes (for tests that need unusual JSON).
    pub fn sign_parts(&self, header: &[u8], payload: &[u8]) -> Result<String, SigningError> {
        let signing_input = format!("{}.{}", base64url::encode(header), base64url::encode(payload));
        let signature = self.sign(signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{}", base64url::encode(signature)))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("alg", &self.alg).field("kid", &self.kid).finish_non_exhaustive()
    }
}

fn ecdsa_signing(curve: Curve) -> &'static signature::EcdsaSigningAlgorithm {
    match curve {
        Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        Curve::P521 => &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
    }
}

fn rsa_encoding(alg: Algorithm) -> &'static dyn signature::RsaEncoding {
    match alg {
        Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_SHA512,
        _ => &signature::RSA_PKCS1_SHA256,
    }
}
