//! What the middleware costs per request, in process (no sockets): the same router with and without
//! `JwtLayer`, one token repeated (the verified-token cache answers) and distinct tokens (every request pays a
//! full RS256 verification), next to the bare aws-lc-rs signature check.
//!
//! Run: `cargo bench -p portcullis-axum --bench layer`.
#![allow(clippy::unwrap_used, missing_docs)]

use aws_lc_rs::signature::{self, RsaPublicKeyComponents};
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use portcullis::__internals::base64url;
use portcullis::signing::SigningKey;
use portcullis::{Algorithm, KeySet, Verifier};
use portcullis_axum::JwtLayer;
use serde_json::json;
use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};
use tower::ServiceExt;

const ISSUER: &str = "https://dev-portcullis.us.auth0.com/";
const AUDIENCE: &str = "https://api.example.com";

fn router() -> Router {
    Router::new().route("/api/private", get(|| async { "ok" }))
}

fn request(token: &str) -> Request<Body> {
    Request::get("/api/private").header("authorization", format!("Bearer {token}")).body(Body::empty()).unwrap()
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let signer = SigningKey::generate(Algorithm::RS256, Some("bench".into())).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let token_for = |i: u64| {
        let claims = json!({
            "iss": ISSUER, "sub": format!("auth0|user-{i}"), "aud": [AUDIENCE, format!("{ISSUER}userinfo")],
            "iat": now, "exp": now + 86_400, "scope": "openid profile read:messages", "azp": "client",
        });
        signer.sign_token(&claims, None).unwrap()
    };
    let distinct: Vec<String> = (0..2000).map(token_for).collect();
    let repeated = token_for(999_999);
    let keys = KeySet::from_jwks_json(json!({ "keys": [signer.public_jwk()] }).to_string().as_bytes()).unwrap();
    let verifier = |cache: bool| {
        let builder = Verifier::builder().issuer(ISSUER).audience(AUDIENCE).keys(keys.clone());
        (if cache { builder } else { builder.without_cache() }).build().unwrap()
    };

    let plain = router();
    let cached = router().layer(JwtLayer::new(verifier(true)));
    let uncached = router().layer(JwtLayer::new(verifier(false)));
    let call = |app: &Router, token: &str| {
        let response = runtime.block_on(app.clone().oneshot(request(token))).unwrap();
        assert_eq!(response.status(), 200);
    };

    let mut group = c.benchmark_group("layer");
    group.bench_function("router_without_layer", |b| b.iter(|| call(&plain, black_box(&repeated))));
    group.bench_function("layer_repeated_token", |b| b.iter(|| call(&cached, black_box(&repeated))));
    let mut i = 0;
    group.bench_function("layer_distinct_tokens_uncached", |b| {
        b.iter(|| {
            i = (i + 1) % distinct.len();
            call(&uncached, black_box(&distinct[i]))
        })
    });
    let cached_verifier = verifier(true);
    group.bench_function("verifier_repeated_token", |b| {
        b.iter(|| cached_verifier.verify(black_box(&repeated)).unwrap())
    });
    let uncached_verifier = verifier(false);
    group.bench_function("verifier_same_token_uncached", |b| {
        b.iter(|| uncached_verifier.verify(black_box(&repeated)).unwrap())
    });
    let mut j = 0;
    group.bench_function("verifier_distinct_tokens_uncached", |b| {
        b.iter(|| {
            j = (j + 1) % distinct.len();
            uncached_verifier.verify(black_box(&distinct[j])).unwrap()
        })
    });
    let jwk = signer.public_jwk();
    let (n, e) = (
        base64url::decode(jwk["n"].as_str().unwrap()).unwrap(),
        base64url::decode(jwk["e"].as_str().unwrap()).unwrap(),
    );
    let key = RsaPublicKeyComponents { n: &n[..], e: &e[..] }
        .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
        .unwrap();
    let (input, sig) = repeated.rsplit_once('.').unwrap();
    let sig = base64url::decode(sig).unwrap();
    group.bench_function("bare_aws_lc_verify", |b| {
        b.iter(|| key.verify_sig(black_box(input.as_bytes()), black_box(&sig)).unwrap())
    });
    group.finish();
}

criterion_group!(layer, benches);
criterion_main!(layer);
