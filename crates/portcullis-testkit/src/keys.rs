//! Signing keys and the key sets and verifiers built on them: static key sets, and remote ones fetched from the test
//! identity provider on an injected clock.

use crate::idp::Idp;
use portcullis::clock::ManualClock;
use portcullis::remote::{KeyLocation, RemoteKeySet, RemoteOptions};
use portcullis::signing::SigningKey;
use portcullis::{Algorithm, KeySet, Verifier, VerifierBuilder};
use serde_json::json;
use std::sync::Arc;

/// A fresh ES256 signing key with a kid.
pub fn key(kid: &str) -> SigningKey {
    generate(Algorithm::ES256, kid)
}

/// A fresh signing key for `algorithm` with a kid.
pub fn generate(algorithm: Algorithm, kid: &str) -> SigningKey {
    SigningKey::generate(algorithm, Some(kid.into())).unwrap()
}

/// The JWK Set document (JSON text) publishing the public halves of `keys`.
pub fn jwks(keys: &[&SigningKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>() }).to_string()
}

/// The key set holding the public halves of `keys`, loaded from their JWK Set.
pub fn key_set(keys: &[&SigningKey]) -> KeySet {
    KeySet::from_jwks_json(jwks(keys).as_bytes()).unwrap()
}

/// A verifier for `issuer` and `audience` over the static `keys`, its clock stopped at `now` (Unix seconds).
pub fn verifier_at(issuer: &str, audience: &str, keys: KeySet, now: u64) -> Verifier {
    Verifier::builder()
        .issuer(issuer)
        .audience(audience)
        .keys(keys)
        .clock(Arc::new(ManualClock::at_unix(now)))
        .build()
        .unwrap()
}

/// A key set fetched from `location` on `clock`, and a verifier for `idp`'s issuer and `audience` using it;
/// `configure` adds to the verifier's builder (a token cache, …).
pub fn remote_verifier(
    idp: &Idp,
    audience: &str,
    location: KeyLocation,
    options: RemoteOptions,
    clock: Arc<ManualClock>,
    configure: impl FnOnce(VerifierBuilder) -> VerifierBuilder,
) -> (RemoteKeySet, Verifier) {
    let keys = RemoteKeySet::new(location, options, clock.clone()).unwrap();
    let builder = Verifier::builder().issuer(idp.issuer()).audience(audience).key_source(Arc::new(keys.clone()));
    let verifier = configure(builder.clock(clock)).build().unwrap();
    (keys, verifier)
}

/// The bytes written as hex digits in `text` (test vectors).
pub fn hex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}
