//! The cost of a DPoP-bound request against a Bearer one: the verified-token cache answers the token in both
//! cases, and a DPoP request adds one proof check (strict JWS, the header `jwk` parsed into a key, an ES256
//! signature, the claims, `ath`, the binding and the replay-cache insert). Proofs are made fresh for every
//! iteration outside the measured time (each `jti` is accepted once).
//!
//! The `shared_state` group measures what issue 21 adds to the request path: `RevocationList::check` on a verified
//! token with an empty list (one atomic load) and with 10 000 entries of each kind, and the DPoP check through a
//! `MemoryReplayStore` set as the shared store, awaited by `check_request_async`.
//!
//! Run: `cargo bench -p portcullis --bench dpop`.
#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use portcullis::clock::UnixTime;
use portcullis::dpop::{DpopMode, DpopVerifier, Htu, RequestTarget, Scheme, access_token_hash, thumbprint};
use portcullis::signing::SigningKey;
use portcullis::store::{MemoryReplayStore, ReplayFailure, Revocation, RevocationList, TokenHash};
use portcullis::{Algorithm, KeySet, Verifier, VerifyingKey};
use serde_json::{Map, Value, json};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const ISSUER: &str = "https://dev-portcullis.us.auth0.com/";
const AUDIENCE: &str = "https://api.example.com";
const URI: &str = "https://api.example.com/api/orders";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn public_jwk(key: &SigningKey) -> Map<String, Value> {
    let mut jwk = key.public_jwk().as_object().unwrap().clone();
    for optional in ["use", "alg", "kid"] {
        jwk.remove(optional);
    }
    jwk
}

fn benches(c: &mut Criterion) {
    let issuer = SigningKey::generate(Algorithm::RS256, Some("bench-key".into())).unwrap();
    let client = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let jkt = thumbprint(&public_jwk(&client)).unwrap();
    let claims = |bound: bool| {
        let mut claims = json!({
            "iss": ISSUER, "sub": "auth0|65a1f0c2e4b0a1b2c3d4e5f6", "aud": [AUDIENCE, format!("{ISSUER}userinfo")],
            "iat": now(), "exp": now() + 86_400, "scope": "openid profile read:messages",
            "azp": "k3Xh9YpQ2mZ7vB1nC4dF6gH8jL0", "permissions": ["read:messages"],
        });
        if bound {
            claims["cnf"] = json!({ "jkt": jkt });
        }
        claims
    };
    let bearer = issuer.sign_token(&claims(false), None).unwrap();
    let bound = issuer.sign_token(&claims(true), None).unwrap();
    let verifier = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .keys(KeySet::from_jwks_json(json!({ "keys": [issuer.public_jwk()] }).to_string().as_bytes()).unwrap())
        .build()
        .unwrap();
    // The cache admits a token on its second sight.
    for token in [&bearer, &bound, &bearer, &bound] {
        verifier.verify(token).unwrap();
    }
    assert_eq!(verifier.cached_tokens(), 2);
    let dpop = DpopVerifier::builder().algorithms([Algorithm::ES256]).build().unwrap();
    let htu = Htu::parse(URI).unwrap();
    let target = RequestTarget { method: "GET", htu: &htu };

    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": public_jwk(&client)}).to_string();
    let ath = access_token_hash(&bound);
    let next = AtomicU64::new(0);
    let fresh_proof = || {
        let jti = format!("bench-{}", next.fetch_add(1, Ordering::Relaxed));
        let claims = json!({"jti": jti, "htm": "GET", "htu": URI, "iat": now(), "ath": ath}).to_string();
        client.sign_parts(header.as_bytes(), claims.as_bytes()).unwrap()
    };
    {
        let token = verifier.verify(&bound).unwrap();
        let proof = fresh_proof();
        assert!(dpop.check_request(DpopMode::Allowed, Scheme::Dpop, &[&proof], &token, &target).unwrap().is_some());
    }

    let mut group = c.benchmark_group("request");
    group.bench_function("bearer_cached_token", |b| {
        b.iter(|| {
            let token = verifier.verify(black_box(&bearer)).unwrap();
            dpop.check_request(DpopMode::Allowed, Scheme::Bearer, &[], &token, &target).unwrap()
        })
    });
    group.bench_function("dpop_cached_token_es256_proof", |b| {
        b.iter_batched(
            fresh_proof,
            |proof| {
                let token = verifier.verify(black_box(&bound)).unwrap();
                dpop.check_request(DpopMode::Allowed, Scheme::Dpop, &[&proof], &token, &target).unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    let token = verifier.verify(&bound).unwrap();
    group.bench_function("check_request_es256_proof_only", |b| {
        b.iter_batched(
            fresh_proof,
            |proof| dpop.check_request(DpopMode::Allowed, Scheme::Dpop, &[&proof], &token, &target).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    // Where the proof's time goes: turning its jwk into a key, and the bare ES256 signature check.
    let mut parts = c.benchmark_group("proof_parts");
    let jwk = public_jwk(&client);
    parts.bench_function("jwk_to_key", |b| b.iter(|| VerifyingKey::from_jwk(black_box(&jwk)).unwrap()));
    let key = VerifyingKey::from_jwk(&jwk).unwrap();
    let proof = fresh_proof();
    let (signing_input, signature) = proof.rsplit_once('.').unwrap();
    let signature = portcullis::__internals::base64url::decode(signature).unwrap();
    parts.bench_function("es256_signature", |b| {
        b.iter(|| key.verify_signature(Algorithm::ES256, black_box(signing_input.as_bytes()), &signature).unwrap())
    });
    parts.finish();

    let mut shared = c.benchmark_group("shared_state");
    let empty = RevocationList::new();
    let plain = verifier.verify(&bearer).unwrap();
    let at = UnixTime::from_secs(now());
    shared.bench_function("revocation_check_empty", |b| b.iter(|| empty.check(black_box(&plain), at)));
    let full = RevocationList::new();
    let until = UnixTime::from_secs(now() + 86_400);
    let entries: Vec<Revocation> = (0..10_000)
        .flat_map(|i| {
            [
                Revocation::jti(format!("jti-{i}"), until),
                Revocation::token_hash(TokenHash::of_token(&format!("token-{i}")), until),
                Revocation::subject(format!("auth0|{i}"), UnixTime::from_secs(now()), until),
            ]
        })
        .collect();
    full.apply(&entries, UnixTime::from_secs(now()));
    assert_eq!(full.len(), 30_000);
    shared.bench_function("revocation_check_30000_entries", |b| b.iter(|| full.check(black_box(&plain), at)));
    let store = Arc::new(MemoryReplayStore::new(1_000_000));
    let through_store = DpopVerifier::builder()
        .algorithms([Algorithm::ES256])
        .replay_store(store, ReplayFailure::FailClosed)
        .build()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    shared.bench_function("check_request_async_memory_store_es256_proof", |b| {
        b.iter_batched(
            fresh_proof,
            |proof| {
                runtime
                    .block_on(through_store.check_request_async(
                        DpopMode::Allowed,
                        Scheme::Dpop,
                        &[&proof],
                        &token,
                        &target,
                    ))
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    shared.finish();
}

criterion_group!(dpop, benches);
criterion_main!(dpop);
