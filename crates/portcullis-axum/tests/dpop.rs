//! DPoP through the layer, over a real socket on 127.0.0.1:0: a proof on every request (a cached token verdict
//! never stands in for it), no Bearer downgrade, exactly one proof, nonces, challenges with `algs` and
//! `resource_metadata`, and the RFC 9728 document served by the layer.
#![allow(clippy::unwrap_used)]

use axum::routing::get;
use axum::{Extension, Router};
use portcullis::clock::ManualClock;
use portcullis::dpop::{DpopMode, DpopVerifier, Proof, access_token_hash, thumbprint};
use portcullis::metadata::ResourceMetadata;
use portcullis::signing::SigningKey;
use portcullis::{Algorithm, Verifier};
use portcullis_axum::{JwtLayer, Token};
use portcullis_testkit::keys::{key, key_set};
use portcullis_testkit::net::listen;
use reqwest::header::HeaderMap;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const ISSUER: &str = "https://tenant.example.com/";
const AUDIENCE: &str = "https://api.example.com";
/// The external base URL the layer is configured with; the test server itself listens on 127.0.0.1.
const PUBLIC: &str = "https://api.example.com";
const NOW: u64 = 1_800_000_000;
const METADATA_URL: &str = "https://api.example.com/.well-known/oauth-protected-resource";

struct Server {
    base: String,
    issuer: SigningKey,
    client: SigningKey,
    verifier: Verifier,
    http: reqwest::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Answer {
    status: u16,
    challenges: Vec<String>,
    nonce: Option<String>,
    body: String,
}

impl Answer {
    fn reason(&self) -> String {
        serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|v| v["reason"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

async fn start(
    mode: DpopMode,
    configure: impl FnOnce(portcullis::dpop::DpopVerifierBuilder) -> portcullis::dpop::DpopVerifierBuilder,
) -> Server {
    start_layer(
        |verifier, dpop| {
            JwtLayer::new(verifier).dpop(dpop, mode, PUBLIC).resource_metadata(ResourceMetadata {
                authorization_servers: vec![ISSUER.into()],
                scopes_supported: vec!["read:orders".into()],
                ..ResourceMetadata::new(AUDIENCE)
            })
        },
        configure,
    )
    .await
}

async fn start_layer(
    layer: impl FnOnce(Verifier, DpopVerifier) -> JwtLayer,
    configure: impl FnOnce(portcullis::dpop::DpopVerifierBuilder) -> portcullis::dpop::DpopVerifierBuilder,
) -> Server {
    let clock = Arc::new(ManualClock::at_unix(NOW));
    let issuer = key("issuer-key");
    let verifier = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .keys(key_set(&[&issuer]))
        .clock(clock.clone())
        .build()
        .unwrap();
    let dpop = configure(DpopVerifier::builder().clock(clock)).build().unwrap();
    let app = Router::new()
        .route(
            "/api/orders",
            get(|Token(token): Token, proof: Option<Extension<Proof>>| async move {
                axum::Json(json!({
                    "sub": token.subject(),
                    "jkt": proof.map(|Extension(proof)| proof.thumbprint().to_owned()),
                }))
            }),
        )
        .layer(layer(verifier.clone(), dpop));
    let (listener, address) = listen().await;
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        base: format!("http://{address}"),
        issuer,
        client: SigningKey::generate(Algorithm::ES256, None).unwrap(),
        verifier,
        http: reqwest::Client::new(),
        task,
    }
}

fn public_jwk(key: &SigningKey) -> Map<String, Value> {
    let mut jwk = key.public_jwk().as_object().unwrap().clone();
    for optional in ["use", "alg", "kid"] {
        jwk.remove(optional);
    }
    jwk
}

fn jti() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("axum-{}", NEXT.fetch_add(1, Ordering::SeqCst))
}

impl Server {
    fn jkt(&self) -> String {
        thumbprint(&public_jwk(&self.client)).unwrap()
    }

    fn token(&self, bound: bool) -> String {
        let mut claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "auth0|alice", "iat": NOW, "exp": NOW + 600});
        if bound {
            claims["cnf"] = json!({ "jkt": self.jkt() });
        }
        self.issuer.sign_token(&claims, None).unwrap()
    }

    /// A proof by the client key for `GET <htu>` with `token`, plus `extra` claims.
    fn proof_for(&self, htu: &str, token: &str, extra: Value) -> String {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": public_jwk(&self.client)});
        let mut claims = json!({"jti": jti(), "htm": "GET", "htu": htu, "iat": NOW, "ath": access_token_hash(token)});
        claims.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
        self.client.sign_parts(header.to_string().as_bytes(), claims.to_string().as_bytes()).unwrap()
    }

    fn proof(&self, token: &str) -> String {
        self.proof_for(&format!("{PUBLIC}/api/orders"), token, json!({}))
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.get_at(&self.base, path, headers).await
    }

    /// `get` from the server at `base` (another layer on the same keys).
    async fn get_at(&self, base: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        let response = self.http.get(format!("{base}{path}")).headers(map).send().await.unwrap();
        let challenges =
            response.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        let nonce = response.headers().get("dpop-nonce").map(|v| v.to_str().unwrap().to_owned());
        Answer { status: response.status().as_u16(), challenges, nonce, body: response.text().await.unwrap() }
    }

    async fn dpop(&self, token: &str, proof: &str) -> Answer {
        self.dpop_at(&self.base, token, proof).await
    }

    async fn dpop_at(&self, base: &str, token: &str, proof: &str) -> Answer {
        self.get_at(base, "/api/orders", &[("authorization", &format!("DPoP {token}")), ("dpop", proof)]).await
    }
}

#[tokio::test]
async fn every_request_needs_its_own_proof_even_with_the_token_cached() {
    let server = start(DpopMode::Allowed, |b| b).await;
    let token = server.token(true);

    let first = server.dpop(&token, &server.proof(&token)).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let body: Value = serde_json::from_str(&first.body).unwrap();
    assert_eq!(body, json!({"sub": "auth0|alice", "jkt": server.jkt()}));

    // The same token again with a fresh proof: accepted (the cache admits a token on its second sight).
    assert_eq!(server.dpop(&token, &server.proof(&token)).await.status, 200);
    assert_eq!(server.verifier.cached_tokens(), 1, "the token's verdict is cached");
    // With a replayed proof: refused, although the token verdict is cached.
    let proof = server.proof(&token);
    assert_eq!(server.dpop(&token, &proof).await.status, 200);
    let replayed = server.dpop(&token, &proof).await;
    assert_eq!((replayed.status, replayed.reason().as_str()), (401, "dpop_proof_invalid"));
    assert!(replayed.body.contains("replayed"), "{}", replayed.body);
    assert_eq!(
        replayed.challenges,
        [
            format!(r#"Bearer realm="api", resource_metadata="{METADATA_URL}""#),
            format!(
                r#"DPoP realm="api", error="invalid_dpop_proof", error_description="DPoP proof replayed: its jti was already used for this URI", resource_metadata="{METADATA_URL}", algs="RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA""#
            ),
        ]
    );
    assert_eq!(server.verifier.cached_tokens(), 1, "the cached verdict stayed");
    // With no proof: refused.
    let missing = server.get("/api/orders", &[("authorization", &format!("DPoP {token}"))]).await;
    assert_eq!((missing.status, missing.reason().as_str()), (401, "dpop_proof_invalid"));
    assert!(missing.body.contains("has none"), "{}", missing.body);
}

#[tokio::test]
async fn a_bound_token_is_not_accepted_as_bearer() {
    let server = start(DpopMode::Allowed, |b| b).await;
    let bound = server.token(true);
    let answer = server.get("/api/orders", &[("authorization", &format!("Bearer {bound}"))]).await;
    assert_eq!((answer.status, answer.reason().as_str()), (401, "token_binding_invalid"));
    assert!(
        answer.challenges[0].starts_with(r#"Bearer realm="api", error="invalid_token""#),
        "{:?}",
        answer.challenges
    );
    assert!(!answer.challenges[1].contains("error="), "{:?}", answer.challenges);
    // Even with a good proof alongside.
    let with_proof = server
        .get("/api/orders", &[("authorization", &format!("Bearer {bound}")), ("dpop", &server.proof(&bound))])
        .await;
    assert_eq!(with_proof.status, 400);
    // An unbound token is fine as Bearer in mode allowed, and not with the DPoP scheme.
    let plain = server.token(false);
    let bearer = server.get("/api/orders", &[("authorization", &format!("Bearer {plain}"))]).await;
    assert_eq!(bearer.status, 200);
    assert_eq!(serde_json::from_str::<Value>(&bearer.body).unwrap()["jkt"], Value::Null);
    let answer = server.dpop(&plain, &server.proof(&plain)).await;
    assert_eq!((answer.status, answer.reason().as_str()), (401, "token_binding_invalid"));
}

#[tokio::test]
async fn exactly_one_proof_header_with_one_proof() {
    let server = start(DpopMode::Allowed, |b| b).await;
    let token = server.token(true);
    let authorization = format!("DPoP {token}");
    // Two DPoP headers.
    let (one, two) = (server.proof(&token), server.proof(&token));
    let answer = server.get("/api/orders", &[("authorization", &authorization), ("dpop", &one), ("dpop", &two)]).await;
    assert_eq!((answer.status, answer.reason().as_str()), (401, "dpop_proof_invalid"));
    assert!(answer.body.contains("has 2"), "{}", answer.body);
    // Two proofs joined by a comma in one header.
    let joined = format!("{}, {}", server.proof(&token), server.proof(&token));
    let answer = server.get("/api/orders", &[("authorization", &authorization), ("dpop", &joined)]).await;
    assert_eq!((answer.status, answer.reason().as_str()), (401, "dpop_proof_invalid"));
    // A trailing comma still makes the value more than one proof.
    let trailing = format!("{},", server.proof(&token));
    let answer = server.get("/api/orders", &[("authorization", &authorization), ("dpop", &trailing)]).await;
    assert_eq!((answer.status, answer.reason().as_str()), (401, "dpop_proof_invalid"));
    // The proofs that were refused were never recorded: one of them still works alone.
    assert_eq!(server.dpop(&token, &one).await.status, 200);
    // The DPoP scheme, case-insensitive.
    let answer = server
        .get("/api/orders", &[("authorization", &format!("dPoP {token}")), ("dpop", &server.proof(&token))])
        .await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn the_htu_comes_from_the_public_url_never_the_host_header() {
    let server = start(DpopMode::Allowed, |b| b).await;
    let token = server.token(true);
    // A proof for the address the client connected to is not a proof for the public URL.
    let local = server.proof_for(&format!("{}/api/orders", server.base), &token, json!({}));
    let answer = server.dpop(&token, &local).await;
    assert_eq!((answer.status, answer.reason().as_str()), (401, "dpop_proof_invalid"));
    assert!(answer.body.contains("htu does not match"), "{}", answer.body);
    // A Host header naming the public host changes nothing either way.
    let public = server.proof(&token);
    let answer = server
        .get("/api/orders", &[("authorization", &format!("DPoP {token}")), ("dpop", &public), ("host", "evil.example")])
        .await;
    assert_eq!(answer.status, 200);
    // The query is not part of the htu; the path spelled with %7E, dot-segments, or the default port is.
    let spelled = server.proof_for("HTTPS://API.EXAMPLE.COM:443/api/./orders?x=1", &token, json!({}));
    assert_eq!(server.dpop(&token, &spelled).await.status, 200);
    let other_path = server.proof_for(&format!("{PUBLIC}/api/invoices"), &token, json!({}));
    assert_eq!(server.dpop(&token, &other_path).await.status, 401);
    let post = server.proof_for(&format!("{PUBLIC}/api/orders"), &token, json!({"htm": "POST"}));
    assert_eq!(server.dpop(&token, &post).await.status, 401);
}

#[tokio::test]
async fn missing_credentials_get_both_challenges_and_the_metadata_url() {
    let server = start(DpopMode::Allowed, |b| b).await;
    let answer = server.get("/api/orders", &[]).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.challenges.len(), 2);
    assert_eq!(answer.challenges[0], format!(r#"Bearer realm="api", resource_metadata="{METADATA_URL}""#));
    assert!(
        answer.challenges[1].starts_with(&format!(r#"DPoP realm="api", resource_metadata="{METADATA_URL}", algs=""#))
    );
    assert_eq!(answer.nonce, None, "no nonces configured");
}

#[tokio::test]
async fn the_layer_serves_its_protected_resource_metadata() {
    let server = start(DpopMode::Required, |b| b.algorithms([Algorithm::ES256, Algorithm::EdDSA])).await;
    let response =
        server.http.get(format!("{}/.well-known/oauth-protected-resource", server.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["cache-control"], "max-age=3600");
    let document: Value = response.json().await.unwrap();
    assert_eq!(
        document,
        json!({
            "resource": AUDIENCE,
            "authorization_servers": [ISSUER],
            "scopes_supported": ["read:orders"],
            "bearer_methods_supported": ["header"],
            "dpop_signing_alg_values_supported": ["ES256", "EdDSA"],
            "dpop_bound_access_tokens_required": true,
        })
    );
    // Only GET and HEAD; other paths under .well-known still need a token.
    let post = server.http.post(format!("{}/.well-known/oauth-protected-resource", server.base)).send().await.unwrap();
    assert_eq!(post.status(), 401);
    assert_eq!(server.get("/.well-known/oauth-protected-resource/other", &[]).await.status, 401);
}

#[tokio::test]
async fn required_mode_refuses_bearer_and_offers_only_dpop() {
    let server = start(DpopMode::Required, |b| b).await;
    let plain = server.token(false);
    let answer = server.get("/api/orders", &[("authorization", &format!("Bearer {plain}"))]).await;
    assert_eq!((answer.status, answer.reason().as_str()), (401, "token_binding_invalid"));
    assert_eq!(answer.challenges.len(), 1);
    assert!(answer.challenges[0].starts_with(r#"DPoP realm="api", error="invalid_token""#), "{:?}", answer.challenges);
    let bound = server.token(true);
    assert_eq!(server.dpop(&bound, &server.proof(&bound)).await.status, 200);
}

#[tokio::test]
async fn nonces_are_asked_for_and_then_accepted() {
    let server = start(DpopMode::Allowed, |b| b.nonce_secret(&[9u8; 32])).await;
    let token = server.token(true);
    let first = server.dpop(&token, &server.proof(&token)).await;
    assert_eq!((first.status, first.reason().as_str()), (401, "dpop_nonce_required"));
    assert!(first.challenges[1].contains(r#"error="use_dpop_nonce""#), "{:?}", first.challenges);
    let nonce = first.nonce.expect("a DPoP-Nonce header");
    let retry = server.proof_for(&format!("{PUBLIC}/api/orders"), &token, json!({ "nonce": nonce }));
    assert_eq!(server.dpop(&token, &retry).await.status, 200);
    // Any 401 carries a nonce while nonces are on.
    let missing = server.get("/api/orders", &[]).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.nonce.as_deref(), Some(nonce.as_str()));
}

#[tokio::test]
async fn without_dpop_a_bound_token_is_refused_and_the_scheme_is_invalid() {
    let server = start_layer(|verifier, _| JwtLayer::new(verifier), |b| b).await;
    let bound = server.token(true);
    let answer = server.get("/api/orders", &[("authorization", &format!("Bearer {bound}"))]).await;
    assert_eq!((answer.status, answer.reason().as_str()), (401, "token_binding_invalid"));
    assert_eq!(answer.challenges.len(), 1);
    let answer = server.dpop(&bound, &server.proof(&bound)).await;
    assert_eq!((answer.status, answer.reason().as_str()), (400, "request_invalid"));
    let plain = server.token(false);
    assert_eq!(server.get("/api/orders", &[("authorization", &format!("Bearer {plain}"))]).await.status, 200);
    // Mode off: the DPoP scheme is a malformed request too, and there is no DPoP challenge.
    let off = start(DpopMode::Off, |b| b).await;
    let bound = off.token(true);
    let answer = off.dpop(&bound, &off.proof(&bound)).await;
    assert_eq!((answer.status, answer.reason().as_str()), (400, "request_invalid"));
    let missing = off.get("/api/orders", &[]).await;
    assert_eq!(missing.challenges, [format!(r#"Bearer realm="api", resource_metadata="{METADATA_URL}""#)]);
}

#[test]
fn an_unusable_public_url_is_a_configuration_error() {
    let keys = key_set(&[&key("k")]);
    let verifier = Verifier::builder().issuer(ISSUER).audience(AUDIENCE).keys(keys).build().unwrap();
    let dpop = DpopVerifier::builder().build().unwrap();
    for bad in ["api.example.com", "ftp://api.example.com", "https://user@api.example.com"] {
        assert!(JwtLayer::new(verifier.clone()).try_dpop(dpop.clone(), DpopMode::Allowed, bad).is_err(), "{bad}");
    }
    assert!(JwtLayer::new(verifier).try_dpop(dpop, DpopMode::Allowed, "https://api.example.com/v1/").is_ok());
}

#[tokio::test]
async fn inside_a_nested_router_the_htu_is_the_path_the_client_requested() {
    // `Router::nest` hands the inner router the path without its prefix; the proof names the whole path.
    let clock = Arc::new(ManualClock::at_unix(NOW));
    let issuer = key("issuer-key");
    let verifier = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .keys(key_set(&[&issuer]))
        .clock(clock.clone())
        .build()
        .unwrap();
    let dpop = DpopVerifier::builder().clock(clock).build().unwrap();
    let inner = Router::new()
        .route("/orders", get(|Token(token): Token| async move { token.subject().unwrap_or_default().to_owned() }))
        .layer(JwtLayer::new(verifier.clone()).dpop(dpop, DpopMode::Allowed, PUBLIC));
    let app = Router::new().nest("/v1", inner);
    let (listener, address) = listen().await;
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let server = Server {
        base: format!("http://{address}"),
        issuer,
        client: SigningKey::generate(Algorithm::ES256, None).unwrap(),
        verifier,
        http: reqwest::Client::new(),
        task,
    };
    let token = server.token(true);
    let auth = format!("DPoP {token}");
    let whole = server.proof_for(&format!("{PUBLIC}/v1/orders"), &token, json!({}));
    let answer = server.get("/v1/orders", &[("authorization", &auth), ("dpop", &whole)]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // A proof for the path without the prefix names another resource of the origin.
    let stripped = server.proof_for(&format!("{PUBLIC}/orders"), &token, json!({}));
    let answer = server.get("/v1/orders", &[("authorization", &auth), ("dpop", &stripped)]).await;
    assert_eq!((answer.status, answer.reason().as_str()), (401, "dpop_proof_invalid"), "{}", answer.body);
}

#[tokio::test]
async fn a_403_goes_on_the_dpop_challenge_with_the_scope() {
    use portcullis::Requirement;
    use portcullis_axum::require;
    let server =
        start_layer(|verifier, dpop| JwtLayer::new(verifier).dpop(dpop, DpopMode::Allowed, PUBLIC), |b| b).await;
    // A second app on the same keys, with a scope rule on the route.
    let app = Router::new()
        .route("/api/orders", get(|| async { "orders" }).route_layer(require(Requirement::scope("write:orders"))))
        .layer(JwtLayer::new(server.verifier.clone()).dpop(
            DpopVerifier::builder().clock(Arc::new(ManualClock::at_unix(NOW))).build().unwrap(),
            DpopMode::Allowed,
            PUBLIC,
        ));
    let (listener, address) = listen().await;
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut scoped = server;
    scoped.base = format!("http://{address}");
    let token = scoped.token(true);
    let answer = scoped.dpop(&token, &scoped.proof(&token)).await;
    task.abort();
    assert_eq!((answer.status, answer.reason().as_str()), (403, "insufficient_scope"));
    assert!(!answer.challenges[0].contains("error="), "{:?}", answer.challenges);
    assert!(
        answer.challenges[1].starts_with(r#"DPoP realm="api", error="insufficient_scope""#)
            && answer.challenges[1].contains(r#"scope="write:orders""#),
        "{:?}",
        answer.challenges
    );
}

#[tokio::test]
async fn metadata_for_a_resource_with_a_path_is_served_at_the_path_inserted_form() {
    let server = start_layer(
        |verifier, dpop| {
            JwtLayer::new(verifier)
                .dpop(dpop, DpopMode::Allowed, PUBLIC)
                .resource_metadata(ResourceMetadata::new("https://api.example.com/api/orders"))
        },
        |b| b,
    )
    .await;
    let document = server.get("/.well-known/oauth-protected-resource/api/orders", &[]).await;
    assert_eq!(document.status, 200);
    let json: Value = serde_json::from_str(&document.body).unwrap();
    assert_eq!(json["resource"], "https://api.example.com/api/orders");
    assert_eq!(json["dpop_bound_access_tokens_required"], false);
    let refused = server.get("/api/orders", &[]).await;
    assert!(
        refused.challenges[0]
            .contains(r#"resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/api/orders""#),
        "{:?}",
        refused.challenges
    );
}

#[tokio::test]
async fn the_proof_is_checked_when_keys_had_to_be_fetched_first() {
    use portcullis::remote::{KeyLocation, RemoteOptions};
    use portcullis_testkit::idp::Idp;
    use portcullis_testkit::keys::remote_verifier;
    let idp = Idp::start().await;
    let issuer = key("remote-key");
    idp.publish(&[&issuer]);
    let clock = Arc::new(ManualClock::at_unix(NOW));
    let location = KeyLocation::Jwks(idp.jwks_url());
    let (_keys, verifier) = remote_verifier(&idp, AUDIENCE, location, RemoteOptions::default(), clock.clone(), |b| b);
    let dpop = DpopVerifier::builder().clock(clock).build().unwrap();
    let app = Router::new().route("/api/orders", get(|| async { "orders" })).layer(JwtLayer::new(verifier).dpop(
        dpop,
        DpopMode::Allowed,
        PUBLIC,
    ));
    let (listener, address) = listen().await;
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let jkt = thumbprint(&public_jwk(&client)).unwrap();
    let claims = json!({"iss": idp.issuer(), "aud": AUDIENCE, "sub": "bob", "exp": NOW + 600, "cnf": {"jkt": jkt}});
    let token = issuer.sign_token(&claims, None).unwrap();
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": public_jwk(&client)}).to_string();
    let proof = |ath: &str| {
        let claims = json!({"jti": jti(), "htm": "GET", "htu": format!("{PUBLIC}/api/orders"), "iat": NOW, "ath": ath});
        client.sign_parts(header.as_bytes(), claims.to_string().as_bytes()).unwrap()
    };
    let http = reqwest::Client::new();
    let send = |proof: String| {
        http.get(format!("http://{address}/api/orders"))
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof)
            .send()
    };
    // The first request waits for the key set: a proof for another token is still refused.
    let wrong = send(proof(&access_token_hash("another token"))).await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(idp.jwks_requests(), 1, "the key set was fetched for it");
    let good = proof(&access_token_hash(&token));
    assert_eq!(send(good.clone()).await.unwrap().status(), 200);
    assert_eq!(send(good).await.unwrap().status(), 401, "replayed");
    task.abort();
}

/// A replay store across the network, as the layer sees it: it never answers at once, so the layer must await
/// it. Backed by memory, optionally failing every call.
#[derive(Debug)]
struct RemoteStore {
    memory: portcullis::store::MemoryReplayStore,
    failing: std::sync::atomic::AtomicBool,
    calls: AtomicU64,
}

impl RemoteStore {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            memory: portcullis::store::MemoryReplayStore::new(1000),
            failing: std::sync::atomic::AtomicBool::new(false),
            calls: AtomicU64::new(0),
        })
    }
}

impl portcullis::store::ReplayStore for RemoteStore {
    fn first_use(
        &self,
        key: portcullis::store::ReplayKey,
        ttl: std::time::Duration,
    ) -> portcullis::store::StoreFuture<'_, bool> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let failing = self.failing.load(Ordering::SeqCst);
        Box::pin(async move {
            tokio::task::yield_now().await;
            if failing {
                return Err(portcullis::store::StoreError::Timeout(std::time::Duration::from_millis(50)));
            }
            Ok(self.memory.record(key, ttl))
        })
    }

    fn name(&self) -> &'static str {
        "remote"
    }
}

/// Serves `/api/orders` behind `layer` on 127.0.0.1:0; its base URL and task.
async fn serve(layer: JwtLayer) -> (String, tokio::task::JoinHandle<()>) {
    let app = Router::new()
        .route("/api/orders", get(|Token(token): Token| async move { token.subject().unwrap_or("").to_owned() }))
        .layer(layer);
    let (listener, address) = listen().await;
    (format!("http://{address}"), tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }))
}

#[tokio::test]
async fn two_layers_sharing_a_store_refuse_a_proof_replayed_from_one_to_the_other() {
    let store = RemoteStore::new();
    let shared = |b: portcullis::dpop::DpopVerifierBuilder| {
        b.replay_store(store.clone(), portcullis::store::ReplayFailure::FailClosed)
    };
    let server = start(DpopMode::Allowed, shared).await;
    let clock = Arc::clone(server.verifier.clock());
    let other = shared(DpopVerifier::builder().clock(clock)).build().unwrap();
    let (other_base, other_task) =
        serve(JwtLayer::new(server.verifier.clone()).dpop(other, DpopMode::Allowed, PUBLIC)).await;
    let token = server.token(true);

    // Each layer awaits the store (a synchronous check would refuse with store_unavailable).
    let proof = server.proof(&token);
    let first = server.dpop(&token, &proof).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(store.calls.load(Ordering::SeqCst), 1);
    let replayed = server.dpop_at(&other_base, &token, &proof).await;
    assert_eq!((replayed.status, replayed.reason().as_str()), (401, "dpop_proof_invalid"), "{}", replayed.body);
    assert!(replayed.body.contains("replayed"), "{}", replayed.body);
    assert_eq!(store.calls.load(Ordering::SeqCst), 2);
    // A fresh proof is accepted by the other layer, then a replay to the first.
    let fresh = server.proof(&token);
    assert_eq!(server.dpop_at(&other_base, &token, &fresh).await.status, 200);
    assert_eq!(server.dpop(&token, &fresh).await.reason(), "dpop_proof_invalid");
    // Bearer requests never ask the store.
    let plain = server.token(false);
    let bearer = server.get("/api/orders", &[("authorization", &format!("Bearer {plain}"))]).await;
    assert_eq!(bearer.status, 200, "{}", bearer.body);
    assert_eq!(store.calls.load(Ordering::SeqCst), 4);
    other_task.abort();
}

#[tokio::test]
async fn a_failing_shared_store_answers_503_with_retry_after_and_no_challenge() {
    let store = RemoteStore::new();
    store.failing.store(true, Ordering::SeqCst);
    let server =
        start(DpopMode::Allowed, |b| b.replay_store(store.clone(), portcullis::store::ReplayFailure::FailClosed)).await;
    let token = server.token(true);
    let proof = server.proof(&token);
    let mut map = HeaderMap::new();
    map.insert("authorization", format!("DPoP {token}").parse().unwrap());
    map.insert("dpop", proof.parse().unwrap());
    let response = server.http.get(format!("{}/api/orders", server.base)).headers(map).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().get("retry-after").is_some());
    assert!(response.headers().get("www-authenticate").is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(body["reason"], "store_unavailable");
    assert!(body["message"].as_str().unwrap().starts_with("the DPoP replay store is unavailable"), "{body}");
    // A bad proof is refused for itself, before the store is asked.
    let calls = store.calls.load(Ordering::SeqCst);
    let bad = server.proof_for("https://api.example.com/elsewhere", &token, json!({}));
    assert_eq!(server.dpop(&token, &bad).await.reason(), "dpop_proof_invalid");
    assert_eq!(store.calls.load(Ordering::SeqCst), calls);
    // The store back: the proof, never recorded, is accepted.
    store.failing.store(false, Ordering::SeqCst);
    assert_eq!(server.dpop(&token, &proof).await.status, 200);
}
