//! A DPoP client (RFC 9449) for tests that talk to a running gateway: one ES256 key, its thumbprint for `cnf.jkt`,
//! and fresh proofs for a method, a URL and an access token, signed in Rust.

use portcullis::dpop::{access_token_hash, thumbprint};
use portcullis::signing::SigningKey;
use serde_json::{Map, Value, json};
use std::sync::atomic::{AtomicU64, Ordering};

/// A client's proof key.
pub struct DpopClient {
    key: SigningKey,
}

impl Default for DpopClient {
    fn default() -> Self {
        Self::new()
    }
}

impl DpopClient {
    /// A client with a fresh ES256 key.
    pub fn new() -> Self {
        Self { key: crate::keys::generate(portcullis::Algorithm::ES256, "dpop-client") }
    }

    /// The public key as it goes into a proof's header: without `kid`, `use` and `alg`.
    pub fn jwk(&self) -> Map<String, Value> {
        let mut jwk = self.key.public_jwk().as_object().unwrap().clone();
        for optional in ["use", "alg", "kid"] {
            jwk.remove(optional);
        }
        jwk
    }

    /// The key's RFC 7638 thumbprint: the `cnf.jkt` of tokens bound to it.
    pub fn jkt(&self) -> String {
        thumbprint(&self.jwk()).unwrap()
    }

    /// A proof for `method` on `htu` (the absolute URL the server expects), issued now with a `jti` never used
    /// before, bound to `access_token` (`ath`) when given.
    pub fn proof(&self, method: &str, htu: &str, access_token: Option<&str>) -> String {
        self.proof_at(method, htu, access_token, crate::claims::now())
    }

    /// [`proof`](Self::proof) with `iat` set to `iat`.
    pub fn proof_at(&self, method: &str, htu: &str, access_token: Option<&str>, iat: u64) -> String {
        let mut claims = json!({ "jti": unique_jti(), "htm": method, "htu": htu, "iat": iat });
        if let Some(token) = access_token {
            claims["ath"] = json!(access_token_hash(token));
        }
        let header = json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk() });
        self.key.sign_parts(&serde_json::to_vec(&header).unwrap(), &serde_json::to_vec(&claims).unwrap()).unwrap()
    }
}

/// A `jti` unique within this process and, by the process id and start time in it, across processes.
pub fn unique_jti() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let start = START.get_or_init(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
    });
    format!("{}-{start}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}
