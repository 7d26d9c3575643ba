//! The reference servers: the JWKS endpoint, the HTTP ceiling (also the upstream of the proxies), the
//! verification floor, and jwt-authorizer. Each answers `GET /api/protected` with the quickstart's JSON shape.

use crate::tokens::{RSA_KID, claims};
use crate::{AUDIENCE, ISSUER};
use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const MESSAGE: &str = "You made it to the protected endpoint!";

async fn listen(address: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(address).await.map_err(|e| format!("cannot listen on {address}: {e}"))
}

/// Serves `jwks.json` (any path ending in it), `jwks-100.json`, and `GET /count` (fetches so far).
pub async fn jwks(address: SocketAddr, dir: PathBuf) -> Result<(), String> {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).map_err(|e| format!("{name}: {e}"));
    let (base, many) = (Arc::new(read("jwks.json")?), Arc::new(read("jwks-100.json")?));
    let fetches = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let (base, many, fetches) = (base.clone(), many.clone(), fetches.clone());
        async move {
            let path = uri.path();
            let body = if path == "/count" {
                return fetches.load(Ordering::SeqCst).to_string().into_response();
            } else if path.ends_with("jwks-100.json") {
                many.as_str().to_owned()
            } else if path.ends_with("jwks.json") {
                base.as_str().to_owned()
            } else {
                return StatusCode::NOT_FOUND.into_response();
            };
            fetches.fetch_add(1, Ordering::SeqCst);
            ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "max-age=600")], body).into_response()
        }
    });
    axum::serve(listen(address).await?, app).await.map_err(|e| e.to_string())
}

/// No authentication: the message and a constant claims object of the benchmark tokens' shape.
pub async fn ceiling(address: SocketAddr) -> Result<(), String> {
    let user = Arc::new(claims(0, AUDIENCE, ISSUER));
    let app = axum::Router::new().fallback(move || {
        let user = user.clone();
        async move { axum::Json(json!({ "message": MESSAGE, "user": (*user).clone() })) }
    });
    axum::serve(listen(address).await?, app).await.map_err(|e| e.to_string())
}

fn decode(text: &str) -> Option<Vec<u8>> {
    base64_simd::URL_SAFE_NO_PAD.decode_to_vec(text).ok()
}

/// One raw RS256 verification with a pre-parsed key and one payload parse: no claim checks, no cache.
pub async fn floor(address: SocketAddr, dir: PathBuf) -> Result<(), String> {
    let jwks: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("jwks.json")).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let jwk = jwks["keys"].as_array().and_then(|keys| keys.iter().find(|k| k["kid"] == RSA_KID)).ok_or("no RSA key")?;
    let part = |name: &str| jwk[name].as_str().and_then(decode).ok_or(format!("bad {name}"));
    let (n, e) = (part("n")?, part("e")?);
    let key: Arc<ParsedPublicKey> = Arc::new(
        RsaPublicKeyComponents { n: &n[..], e: &e[..] }
            .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
            .map_err(|e| e.to_string())?,
    );
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let key = key.clone();
        async move {
            let verified = (|| {
                let token = headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")?;
                let (input, signature) = token.rsplit_once('.')?;
                key.verify_sig(input.as_bytes(), &decode(signature)?).ok()?;
                let payload = decode(input.split_once('.')?.1)?;
                serde_json::from_slice::<Value>(&payload).ok()
            })();
            match verified {
                Some(user) => axum::Json(json!({ "message": MESSAGE, "user": user })).into_response(),
                None => StatusCode::UNAUTHORIZED.into_response(),
            }
        }
    });
    axum::serve(listen(address).await?, app).await.map_err(|e| e.to_string())
}

/// jwt-authorizer 0.15 (axum 0.7) with the JWKS URL, issuer and audience.
pub async fn jwt_authorizer(address: SocketAddr, jwks_url: String) -> Result<(), String> {
    use jwt_authorizer::{IntoLayer, JwtAuthorizer, JwtClaims, Validation};
    let validation = Validation::new().iss(&[ISSUER]).aud(&[AUDIENCE]);
    let authorizer = JwtAuthorizer::<Value>::from_jwks_url(&jwks_url)
        .validation(validation)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let app = axum07::Router::new()
        .route(
            "/api/protected",
            axum07::routing::get(|JwtClaims(user): JwtClaims<Value>| async move {
                axum07::Json(json!({ "message": MESSAGE, "user": user }))
            }),
        )
        .layer(authorizer.into_layer());
    axum07::serve(listen(address).await?, app).await.map_err(|e| e.to_string())
}
