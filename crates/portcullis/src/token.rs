//! [`VerifiedToken`]: what a handler receives once a token passed every check.

use crate::claims::RegisteredClaims;
use crate::jwk::VerifyingKey;
use crate::jws::{Header, VerifiedJws};
use serde_json::{Map, Value};
use std::sync::{Arc, OnceLock};

/// A token that passed every check. Cloning is cheap (shared, immutable data).
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    inner: Arc<TokenData>,
}

#[derive(Debug)]
struct TokenData {
    header: Arc<Header>,
    payload: Box<[u8]>,
    claims: OnceLock<Map<String, Value>>,
    registered: RegisteredClaims,
    key: Arc<VerifyingKey>,
    token: Box<str>,
}

impl VerifiedToken {
    pub(crate) fn new(verified: VerifiedJws, registered: RegisteredClaims, token: &str) -> Self {
        Self {
            inner: Arc::new(TokenData {
                header: verified.header,
                payload: verified.payload.into_boxed_slice(),
                claims: OnceLock::new(),
                registered,
                key: verified.key,
                token: token.into(),
            }),
        }
    }

    /// The JOSE header.
    pub fn header(&self) -> &Header {
        &self.inner.header
    }

    /// Every claim, as JSON (built on first use; verification itself reads only the registered claims).
    pub fn claims(&self) -> &Map<String, Value> {
        // The payload already passed the same strict parser (within the verifier's nesting limit, which is at most
        // the ceiling) during verification, so this cannot fail.
        self.inner.claims.get_or_init(|| {
            crate::json::parse_object_nested(&self.inner.payload, crate::json::MAX_DEPTH_CEILING).unwrap_or_default()
        })
    }

    /// The claim set exactly as signed (JSON bytes).
    pub fn payload(&self) -> &[u8] {
        &self.inner.payload
    }

    /// The registered claims, typed.
    pub fn registered(&self) -> &RegisteredClaims {
        &self.inner.registered
    }

    /// `sub`, when present.
    pub fn subject(&self) -> Option<&str> {
        self.inner.registered.sub.as_deref()
    }

    /// `iss`.
    pub fn issuer(&self) -> Option<&str> {
        self.inner.registered.iss.as_deref()
    }

    /// Scopes from `scope` or `scp`.
    pub fn scopes(&self) -> &[String] {
        &self.inner.registered.scopes
    }

    /// The `cnf.jkt` claim (RFC 9449 §6.1): the thumbprint of the key a DPoP-bound token is bound to. A `cnf`
    /// that is not an object, or a `jkt` that is not a string, fails verification (`claim_invalid`).
    pub fn jkt(&self) -> Option<&str> {
        self.inner.registered.cnf_jkt.as_deref()
    }

    /// Auth0 `permissions`.
    pub fn permissions(&self) -> &[String] {
        &self.inner.registered.permissions
    }

    /// The key that verified the signature.
    pub fn key(&self) -> &Arc<VerifyingKey> {
        &self.inner.key
    }

    /// The token as received. Handle with care: it is a bearer credential; never log it.
    pub fn raw(&self) -> &str {
        &self.inner.token
    }

    /// Deserializes the claims into an application type (e.g. a struct with namespaced custom claims), straight
    /// from the signed bytes.
    pub fn deserialize_claims<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.inner.payload)
    }
}
