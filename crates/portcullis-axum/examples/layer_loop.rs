//! Sends requests through an in-process axum router, with or without `JwtLayer`, so that callgrind can count
//! what the layer adds per request (repeatable on a noisy machine):
//!
//! ```sh
//! cargo build --release -p portcullis-axum --example layer_loop
//! valgrind --tool=callgrind --toggle-collect='*measured_loop*' target/release/examples/layer_loop plain
//! valgrind --tool=callgrind --toggle-collect='*measured_loop*' target/release/examples/layer_loop layer
//! ```
#![allow(clippy::unwrap_used, missing_docs)]
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use portcullis::signing::SigningKey;
use portcullis::{Algorithm, KeySet, Verifier};
use portcullis_axum::JwtLayer;
use serde_json::json;
use tower::ServiceExt;

#[inline(never)]
fn measured_loop(rt: &tokio::runtime::Runtime, app: &Router, token: &str, n: u32) {
    for _ in 0..n {
        let req = Request::get("/api/private")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let r = rt.block_on(app.clone().oneshot(req)).unwrap();
        assert_eq!(r.status(), 200);
    }
}

fn main() {
    let layered = std::env::args().nth(1).as_deref() == Some("layer");
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let signer = SigningKey::generate(Algorithm::ES256, Some("k".into())).unwrap();
    let token =
        signer.sign_token(&json!({"iss":"https://i/","aud":"a","exp":4_000_000_000u64,"scope":"a b c"}), None).unwrap();
    let keys = KeySet::from_jwks_json(json!({"keys":[signer.public_jwk()]}).to_string().as_bytes()).unwrap();
    let verifier = Verifier::builder().issuer("https://i/").audience("a").keys(keys).build().unwrap();
    let mut app = Router::new().route("/api/private", get(|| async { "ok" }));
    if layered {
        app = app.layer(JwtLayer::new(verifier));
    }
    measured_loop(&rt, &app, &token, 100);
    measured_loop(&rt, &app, &token, 1000);
}
