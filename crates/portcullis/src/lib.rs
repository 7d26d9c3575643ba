//! # portcullis
//!
//! Strict, fast verification of JWT access tokens issued by Auth0 or any OpenID Connect provider.
//!
//! A [`Verifier`] takes a compact JWS from an `Authorization: Bearer` header and checks, cheapest and most
//! hostile-input-safe first: size limits, exactly three strict base64url segments, a duplicate-free JSON header
//! with understood `crit`/`b64`/`typ`, the key chosen by exact `kid` from a [`KeySet`], the algorithm bound to that
//! key (never taken on trust from the token), the signature through aws-lc-rs, and then the claims: `iss`, `aud`,
//! `exp`, `nbf`, `iat`, each either absent, valid or malformed — malformed is always an error.
//!
//! Every refusal is an [`Error`] with a stable [`Reason`] code and a description safe to send to clients, mapped to
//! the HTTP answer (status and RFC 6750 `WWW-Authenticate` error).
//!
//! ```
//! use portcullis::{Algorithm, KeySet, Reason, Verifier, signing::SigningKey};
//! use serde_json::json;
//!
//! // An issuer's key, published as a JWKS.
//! let signer = SigningKey::generate(Algorithm::ES256, Some("key-1".into())).unwrap();
//! let jwks = json!({ "keys": [signer.public_jwk()] }).to_string();
//!
//! let verifier = Verifier::builder()
//!     .issuer("https://tenant.example.com/")
//!     .audience("https://api.example.com")
//!     .keys(KeySet::from_jwks_json(jwks.as_bytes()).unwrap())
//!     .build()
//!     .unwrap();
//!
//! let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
//! let claims = json!({
//!     "iss": "https://tenant.example.com/", "sub": "auth0|alice", "aud": "https://api.example.com",
//!     "iat": now, "exp": now + 3600, "scope": "read:messages",
//! });
//! let token = signer.sign_token(&claims, None).unwrap();
//! let verified = verifier.verify(&token).unwrap();
//! assert_eq!(verified.subject(), Some("auth0|alice"));
//! assert_eq!(verified.scopes(), ["read:messages"]);
//!
//! // The same token for another API is refused, and says why.
//! let mut other = claims.clone();
//! other["aud"] = json!("https://other.example.com");
//! let err = verifier.verify(&signer.sign_token(&other, None).unwrap()).unwrap_err();
//! assert_eq!(err.reason(), Reason::AudienceMismatch);
//! assert_eq!(err.http_status(), 401);
//! ```
//!
//! (The example signs its token with `signing`, which needs the `sign` feature.)
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `remote` | on | key sets fetched over HTTPS, discovered and refreshed: `remote`, `discovery`, `fetch` (tokio, reqwest) |
//! | `cache` | on | the verified-token cache: `cache`, [`VerifierBuilder::cache`] (moka) |
//! | `dpop` | on | DPoP proofs (RFC 9449): `dpop`, with an in-memory replay cache (moka) |
//! | `sign` | off | token signing for development issuers, tests and benchmarks: `signing` |
//! | `internals` | off | hidden, unstable access for this workspace's tests and fuzz targets; not part of the API |
//!
//! Parsing, keys, claims, rules and verification need none of them: with `default-features = false` the crate does
//! no I/O and depends on no async runtime, HTTP client or cache; keys come from a [`KeySet`] or your own
//! [`KeySource`].
#![forbid(unsafe_code)]

pub mod algorithm;
pub mod authz;
mod base64url;
#[cfg(feature = "cache")]
pub mod cache;
#[cfg(not(feature = "cache"))]
#[path = "cache_off.rs"]
mod cache;
pub mod claims;
pub mod clock;
#[cfg(feature = "remote")]
pub mod discovery;
#[cfg(feature = "dpop")]
pub mod dpop;
pub mod error;
#[cfg(feature = "remote")]
pub mod fetch;
mod json;
mod jwk;
mod jws;
pub mod keyset;
pub mod metadata;
#[cfg(feature = "remote")]
pub mod remote;
mod roca;
pub mod rules;
#[cfg(feature = "sign")]
pub mod signing;
pub mod source;
pub mod store;
pub mod token;
pub mod verifier;

pub use algorithm::{Algorithm, AlgorithmSet};
pub use authz::Requirement;
pub use claims::RegisteredClaims;
pub use clock::{Clock, SystemClock};
pub use error::{BearerError, Challenges, Error, Reason, Scheme};
pub use json::{MAX_DEPTH as DEFAULT_MAX_JSON_DEPTH, MAX_DEPTH_CEILING as MAX_JSON_DEPTH_CEILING};
pub use jwk::{KeyRejected, MAX_RSA_BITS, MIN_RSA_BITS, VerifyingKey};
pub use jws::{DEFAULT_MAX_TOKEN_LEN, Header, MAX_HEADER_LEN};
pub use keyset::KeySet;
pub use source::{KeySource, StaticKeys};
pub use token::VerifiedToken;
pub use verifier::{ConfigError, MAX_LEEWAY, Report, Verifier, VerifierBuilder};

/// Internals for this workspace's tests, benchmarks and fuzz targets, behind the `internals` feature.
///
/// **Not part of the API**: hidden from the documentation, left out of the public API listing, and free to change
/// in any release. Nothing here can make a verified value without checking a signature.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod __internals {
    /// Strict base64url, as tokens use it.
    pub mod base64url {
        pub use crate::base64url::{decode, encode};
    }
    pub use crate::jws::{AlgorithmPolicy, HeaderCache, JwsPolicy, UnverifiedJws, VerifiedJws, verify_compact};
    /// The strict JSON reader used for headers, claims and key sets.
    pub mod json {
        pub use crate::json::{parse_object, parse_object_nested};
    }
}
