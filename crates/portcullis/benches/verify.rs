//! One full verification of an Auth0-shaped access token next to the bare aws-lc-rs signature check on the
//! same bytes. The difference is what portcullis adds: strict parsing, key lookup and the claim rules.
//!
//! Run: `cargo bench -p portcullis --bench verify`, then `python3 bench/micro_ratios.py` for the ratios.
#![allow(clippy::unwrap_used, missing_docs)]

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::__internals::base64url;
use portcullis::signing::SigningKey;
use portcullis::{Algorithm, KeySet, Verifier};
use serde_json::{Value, json};
use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

const ISSUER: &str = "https://dev-portcullis.us.auth0.com/";
const AUDIENCE: &str = "https://api.example.com";

fn auth0_claims() -> Value {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    json!({
        "iss": ISSUER,
        "sub": "auth0|65a1f0c2e4b0a1b2c3d4e5f6",
        "aud": [AUDIENCE, format!("{ISSUER}userinfo")],
        "iat": now,
        "exp": now + 86_400,
        "scope": "openid profile email read:messages",
        "azp": "k3Xh9YpQ2mZ7vB1nC4dF6gH8jL0",
        "permissions": ["read:messages", "write:messages"],
    })
}

/// The bare check: a key parsed in advance, the signing input and signature bytes ready.
fn bare_key(signer: &SigningKey) -> ParsedPublicKey {
    let jwk = signer.public_jwk();
    let decode = |name: &str| base64url::decode(jwk[name].as_str().unwrap()).unwrap();
    match signer.algorithm() {
        Algorithm::RS256 => {
            let (n, e) = (decode("n"), decode("e"));
            RsaPublicKeyComponents { n: &n[..], e: &e[..] }
                .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
                .unwrap()
        }
        Algorithm::ES256 => {
            let mut point = vec![4u8];
            point.extend(decode("x"));
            point.extend(decode("y"));
            ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).unwrap()
        }
        other => panic!("not benchmarked: {other}"),
    }
}

fn bench_algorithm(c: &mut Criterion, alg: Algorithm) {
    let signer = SigningKey::generate(alg, Some("bench-key".into())).unwrap();
    let token = signer.sign_token(&auth0_claims(), None).unwrap();
    let verifier = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .without_cache()
        .keys(KeySet::from_jwks_json(json!({ "keys": [signer.public_jwk()] }).to_string().as_bytes()).unwrap())
        .build()
        .unwrap();
    assert!(verifier.verify(&token).is_ok());

    let (signing_input, signature_b64) = token.rsplit_once('.').unwrap();
    let signature = base64url::decode(signature_b64).unwrap();
    let key = bare_key(&signer);
    assert!(key.verify_sig(signing_input.as_bytes(), &signature).is_ok());

    let mut group = c.benchmark_group(alg.name());
    group.bench_function("bare_aws_lc_verify", |b| {
        b.iter(|| key.verify_sig(black_box(signing_input.as_bytes()), black_box(&signature)).unwrap())
    });
    group.bench_function("portcullis_verify", |b| b.iter(|| verifier.verify(black_box(&token)).unwrap()));
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_algorithm(c, Algorithm::RS256);
    bench_algorithm(c, Algorithm::ES256);
}

criterion_group!(verify, benches);
criterion_main!(verify);
