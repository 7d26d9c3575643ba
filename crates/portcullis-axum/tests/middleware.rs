//! The middleware end to end: a real axum server on 127.0.0.1:0, a real identity provider serving the JWKS, and
//! HTTP requests from reqwest.
#![allow(clippy::unwrap_used)]

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use portcullis::clock::ManualClock;
use portcullis::remote::{KeyLocation, RemoteKeySet, RemoteOptions};
use portcullis::signing::SigningKey;
use portcullis::{Requirement, Verifier};
use portcullis_axum::{Claims, JwtLayer, Rejected, Token, require};
use portcullis_testkit::claims::{access, with};
use portcullis_testkit::idp::{Fault, Idp, UNTIL_CLEARED, key};
use portcullis_testkit::keys::{key_set, remote_verifier};
use portcullis_testkit::net::{listen, serve};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const AUDIENCE: &str = "https://api.example.com";
const NOW: u64 = 1_800_000_000;

#[derive(Deserialize)]
struct User {
    sub: String,
    #[serde(rename = "https://example.com/roles", default)]
    roles: Vec<String>,
}

struct App {
    idp: Idp,
    base: String,
    signer: SigningKey,
    verifier: Verifier,
    keys: RemoteKeySet,
    http: reqwest::Client,
    _server: tokio::task::JoinHandle<()>,
}

fn routes() -> Router {
    Router::new()
        .route(
            "/api/private",
            get(|Token(token): Token| async move { axum::Json(json!({ "sub": token.subject() })) })
                .options(|| async { StatusCode::NO_CONTENT }),
        )
        .route(
            "/api/private-scoped",
            get(|| async { "scoped ok" }).route_layer(require(Requirement::any([
                Requirement::scope("read:messages"),
                Requirement::permission("read:messages"),
            ]))),
        )
        .route(
            "/api/admin",
            get(|| async { "admin ok" }).route_layer(require(Requirement::all([
                Requirement::claim_includes("https://example.com/roles", "admin"),
                Requirement::not(Requirement::claim_equals("suspended", true)),
            ]))),
        )
        .route("/api/typed", get(|Claims(user): Claims<User>| async move { format!("{} {:?}", user.sub, user.roles) }))
}

async fn start_with(configure: impl FnOnce(JwtLayer) -> JwtLayer, idp_fault: Option<Fault>) -> App {
    let idp = Idp::start().await;
    let signer = key("k1");
    idp.publish(&[&signer]);
    if let Some(fault) = idp_fault {
        idp.inject_fault(fault);
    }
    idp.set_cache_control(Some("max-age=86400"));
    let clock = Arc::new(ManualClock::at_unix(NOW));
    let location = KeyLocation::Jwks(idp.jwks_url());
    let (keys, verifier) = remote_verifier(&idp, AUDIENCE, location, RemoteOptions::default(), clock, |b| b);
    let layer = configure(JwtLayer::new(verifier.clone()));
    let optional = JwtLayer::new(verifier.clone()).credentials_optional(true);
    let app = Router::new()
        .route("/api/public", get(|| async { "public ok" }))
        .merge(routes().layer(layer))
        .merge(
            Router::new()
                .route(
                    "/api/optional",
                    get(|token: Option<Token>| async move {
                        token.map_or("anonymous".to_owned(), |t| t.subject().unwrap_or_default().to_owned())
                    }),
                )
                .layer(optional),
        )
        .layer(axum::middleware::map_response(|response: axum::response::Response| async move {
            // An outer layer can read why a request was refused.
            let reason = response.extensions().get::<Rejected>().map(|r| r.0.reason().code());
            let mut response = response;
            if let Some(reason) = reason {
                response.headers_mut().insert("x-refusal", reason.parse().unwrap());
            }
            response
        }));
    let (listener, address) = listen().await;
    let base = format!("http://{address}");
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    App { idp, base, signer, verifier, keys, http: reqwest::Client::new(), _server: server }
}

async fn start() -> App {
    start_with(|layer| layer, None).await
}

fn claims(app: &App) -> Value {
    let audiences = json!([AUDIENCE, format!("{}userinfo", app.idp.issuer())]);
    let claims = access(&app.idp.issuer(), audiences, NOW - 10, NOW + 3600);
    let claims = with(claims, "scope", json!("openid read:messages"));
    with(claims, "https://example.com/roles", json!(["admin"]))
}

struct Answer {
    status: u16,
    challenge: Option<String>,
    retry_after: Option<String>,
    refusal: Option<String>,
    body: String,
}

impl App {
    fn token(&self, claims: &Value) -> String {
        self.signer.sign_token(claims, None).unwrap()
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        self.request(reqwest::Method::GET, path, map).await
    }

    async fn request(&self, method: reqwest::Method, path: &str, headers: HeaderMap) -> Answer {
        let response = self.http.request(method, format!("{}{path}", self.base)).headers(headers).send().await.unwrap();
        let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
        Answer {
            status: response.status().as_u16(),
            challenge: header("www-authenticate"),
            retry_after: header("retry-after"),
            refusal: header("x-refusal"),
            body: response.text().await.unwrap(),
        }
    }

    async fn bearer(&self, path: &str, token: &str) -> Answer {
        self.get(path, &[("authorization", &format!("Bearer {token}"))]).await
    }
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

#[tokio::test]
async fn valid_tokens_reach_handlers_with_their_claims() {
    let app = start().await;
    assert_eq!(app.get("/api/public", &[]).await.body, "public ok");
    let token = app.token(&claims(&app));
    let answer = app.bearer("/api/private", &token).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json(), json!({ "sub": "auth0|alice" }));
    assert_eq!(app.bearer("/api/typed", &token).await.body, "auth0|alice [\"admin\"]");
    assert_eq!(app.bearer("/api/private-scoped", &token).await.body, "scoped ok");
    assert_eq!(app.bearer("/api/admin", &token).await.body, "admin ok");
    // Scheme case-insensitive.
    assert_eq!(app.get("/api/private", &[("authorization", &format!("bEaReR {token}"))]).await.status, 200);
}

#[tokio::test]
async fn missing_credentials_are_a_bare_challenge() {
    let app = start().await;
    let answer = app.get("/api/private", &[]).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.challenge.as_deref(), Some(r#"Bearer realm="api""#));
    assert_eq!(
        answer.json(),
        json!({"error": "unauthorized", "reason": "token_missing", "message": "the request has no bearer token"})
    );
    assert_eq!(answer.refusal.as_deref(), Some("token_missing"));
}

#[tokio::test]
async fn malformed_requests_are_400_invalid_request() {
    let app = start().await;
    let token = app.token(&claims(&app));
    let bearer = format!("Bearer {token}");
    let cases: [&[(&str, &str)]; 4] = [
        &[("authorization", &bearer), ("authorization", &bearer)],
        &[("authorization", "Basic dXNlcjpwYXNz")],
        &[("authorization", "Bearer one two")],
        &[("authorization", "Bearer")],
    ];
    for headers in cases {
        let answer = app.get("/api/private", headers).await;
        assert_eq!(answer.status, 400, "{headers:?}");
        assert!(answer.challenge.as_deref().unwrap().starts_with(r#"Bearer realm="api", error="invalid_request""#));
        assert_eq!(answer.json()["reason"], "request_invalid");
    }
}

#[tokio::test]
async fn token_defects_are_401_with_exact_challenges() {
    let app = start().await;
    let base = claims(&app);
    let stranger = key("k2");
    let impostor = key("k1");
    let none = format!(
        "{}.{}.",
        portcullis::__internals::base64url::encode(r#"{"alg":"none"}"#),
        portcullis::__internals::base64url::encode(base.to_string())
    );
    let cases = [
        ("expired", app.token(&with(base.clone(), "exp", json!(NOW - 3600)))),
        ("audience", app.token(&with(base.clone(), "aud", json!("https://other.example.com")))),
        ("issuer", app.token(&with(base.clone(), "iss", json!(app.idp.issuer().trim_end_matches('/'))))),
        ("signature", impostor.sign_token(&base, None).unwrap()),
        ("malformed", "not-a-jwt".to_owned()),
        ("alg none", none),
        ("unknown kid", stranger.sign_token(&base, None).unwrap()),
    ];
    let mut table = String::new();
    for (name, token) in cases {
        let answer = app.bearer("/api/private", &token).await;
        assert_eq!(answer.status, 401, "{name}");
        assert_eq!(answer.json()["error"], "invalid_token");
        assert_eq!(answer.refusal.as_deref(), answer.json()["reason"].as_str());
        let challenge = answer.challenge.unwrap().replace(&app.idp.base, "http://IDP");
        table.push_str(&format!("{name}: {challenge}\n"));
    }
    insta::assert_snapshot!(table, @r#"
    expired: Bearer realm="api", error="invalid_token", error_description="token expired 1h 0m ago"
    audience: Bearer realm="api", error="invalid_token", error_description="audience mismatch: token is for 'https://other.example.com', this API is 'https://api.example.com'"
    issuer: Bearer realm="api", error="invalid_token", error_description="issuer mismatch: token is from 'http://IDP', expected 'http://IDP/'"
    signature: Bearer realm="api", error="invalid_token", error_description="signature verification failed"
    malformed: Bearer realm="api", error="invalid_token", error_description="a compact JWS has 3 segments, this token has 1"
    alg none: Bearer realm="api", error="invalid_token", error_description="unsecured tokens (alg none) are never accepted"
    unknown kid: Bearer realm="api", error="invalid_token", error_description="no key with kid 'k2' in the key set (kids: 'k1')"
    "#);
}

#[tokio::test]
async fn unmet_rules_are_403_insufficient_scope() {
    let app = start().await;
    let token = app.token(&with(claims(&app), "scope", json!("openid")));
    let answer = app.bearer("/api/private-scoped", &token).await;
    assert_eq!(answer.status, 403);
    assert_eq!(
        answer.challenge.as_deref(),
        Some(
            r#"Bearer realm="api", error="insufficient_scope", error_description="requires any of (scope 'read:messages', permission 'read:messages')", scope="read:messages""#
        )
    );
    assert_eq!(answer.json()["reason"], "insufficient_scope");
    // An Auth0 RBAC permission satisfies the same rule.
    let with_permission =
        app.token(&with(with(claims(&app), "scope", json!("openid")), "permissions", json!(["read:messages"])));
    assert_eq!(app.bearer("/api/private-scoped", &with_permission).await.status, 200);
    // all/not: a suspended admin is refused.
    let suspended = app.token(&with(claims(&app), "suspended", json!(true)));
    assert_eq!(app.bearer("/api/admin", &suspended).await.status, 403);
    let no_role = app.token(&with(claims(&app), "https://example.com/roles", json!(["editor"])));
    let answer = app.bearer("/api/admin", &no_role).await;
    assert_eq!(answer.status, 403);
    assert!(answer.challenge.unwrap().ends_with("\""), "no scope attribute for claim rules");
}

#[tokio::test]
async fn keys_unavailable_is_503_with_retry_after_and_no_challenge() {
    let app = start_with(|layer| layer, Some(Fault::Status { status: 503, count: UNTIL_CLEARED })).await;
    let token = app.token(&claims(&app));
    let answer = app.bearer("/api/private", &token).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.challenge, None);
    assert!(answer.retry_after.as_deref().unwrap().parse::<u32>().unwrap() >= 1);
    assert_eq!(answer.json()["error"], "temporarily_unavailable");
    assert_eq!(answer.json()["reason"], "keys_unavailable");
    assert!(!app.verifier.is_ready());
    // The IdP comes back: the next request fetches and succeeds.
    app.idp.clear_faults();
    assert_eq!(app.bearer("/api/private", &token).await.status, 200);
}

#[tokio::test]
async fn claims_that_do_not_fit_the_type_are_refused() {
    let app = start().await;
    let token = app.token(&with(claims(&app), "https://example.com/roles", json!("admin")));
    let answer = app.bearer("/api/typed", &token).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.json()["reason"], "claim_invalid");
}

#[tokio::test]
async fn optional_credentials_let_anonymous_requests_through_but_not_bad_tokens() {
    let app = start().await;
    assert_eq!(app.get("/api/optional", &[]).await.body, "anonymous");
    assert_eq!(app.bearer("/api/optional", &app.token(&claims(&app))).await.body, "auth0|alice");
    let bad = app.token(&with(claims(&app), "aud", json!("https://other.example.com")));
    assert_eq!(app.bearer("/api/optional", &bad).await.status, 401);
}

fn preflight() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("origin", "https://spa.example.com".parse().unwrap());
    headers.insert("access-control-request-method", "GET".parse().unwrap());
    headers.insert("access-control-request-headers", "authorization".parse().unwrap());
    headers
}

#[tokio::test]
async fn cors_preflights_need_a_token_unless_allowed() {
    let app = start().await;
    let refused = app.request(reqwest::Method::OPTIONS, "/api/private", preflight()).await;
    assert_eq!((refused.status, refused.refusal.as_deref()), (401, Some("token_missing")));
    let lax = start_with(|layer| layer.allow_preflight(true), None).await;
    assert_eq!(lax.request(reqwest::Method::OPTIONS, "/api/private", preflight()).await.status, 204);
    // A bare OPTIONS without the CORS headers is not a preflight.
    assert_eq!(lax.request(reqwest::Method::OPTIONS, "/api/private", HeaderMap::new()).await.status, 401);
}

/// A catch-all route and a fallback, each answering that it ran.
fn catch_alls() -> Router {
    Router::new()
        .route("/api/any", any(|| async { "any() ran" }))
        .fallback(|| async { (StatusCode::IM_A_TEAPOT, "fallback ran") })
}

/// A verifier over one static key, and that key.
fn static_verifier() -> (Verifier, SigningKey) {
    let signer = key("s1");
    let verifier = Verifier::builder()
        .issuer("https://tenant.example.com/")
        .audience(AUDIENCE)
        .keys(key_set(&[&signer]))
        .build()
        .unwrap();
    (verifier, signer)
}

#[tokio::test]
async fn preflights_reach_catch_all_handlers_only_when_allowed() {
    let (verifier, _) = static_verifier();
    let strict = serve(catch_alls().layer(JwtLayer::new(verifier.clone()))).await;
    let lax = serve(catch_alls().layer(JwtLayer::new(verifier).allow_preflight(true))).await;
    let http = reqwest::Client::new();
    let options = |base: &str, path: &str, headers: HeaderMap| {
        let request = http.request(reqwest::Method::OPTIONS, format!("{base}{path}")).headers(headers);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    for (path, status, ran) in [("/api/any", 200, "any() ran"), ("/elsewhere", 418, "fallback ran")] {
        let (code, body) = options(&strict, path, preflight()).await;
        assert_eq!(code, 401, "{path}");
        assert!(body.contains("token_missing") && !body.contains("ran"), "{path}: {body}");
        assert_eq!(options(&lax, path, preflight()).await, (status, ran.to_owned()), "{path}");
        assert_eq!(options(&lax, path, HeaderMap::new()).await.0, 401, "{path}: not a preflight");
    }
}

#[tokio::test]
async fn a_cors_layer_outside_answers_preflights_and_the_handlers_stay_guarded() {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let (verifier, signer) = static_verifier();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::exact("https://spa.example.com".parse().unwrap()))
        .allow_methods([http::Method::GET])
        .allow_headers([http::header::AUTHORIZATION]);
    let base = serve(catch_alls().layer(JwtLayer::new(verifier)).layer(cors)).await;
    let http = reqwest::Client::new();

    let answered = http.request(reqwest::Method::OPTIONS, format!("{base}/api/any")).headers(preflight());
    let answered = answered.send().await.unwrap();
    assert_eq!(answered.status().as_u16(), 200);
    assert_eq!(answered.headers()["access-control-allow-origin"], "https://spa.example.com");
    assert!(!answered.text().await.unwrap().contains("ran"), "the preflight never reached a handler");

    let anonymous = http.get(format!("{base}/api/any")).header("origin", "https://spa.example.com");
    assert_eq!(anonymous.send().await.unwrap().status().as_u16(), 401);
    let claims = json!({ "iss": "https://tenant.example.com/", "aud": AUDIENCE, "exp": 4_000_000_000u64 });
    let token = signer.sign_token(&claims, None).unwrap();
    let authorized = http.get(format!("{base}/api/any")).header("origin", "https://spa.example.com").bearer_auth(token);
    let authorized = authorized.send().await.unwrap();
    assert_eq!(authorized.headers()["access-control-allow-origin"], "https://spa.example.com");
    assert_eq!(authorized.text().await.unwrap(), "any() ran");
}

#[tokio::test]
async fn revocation_hook_refuses_revoked_tokens() {
    let checks = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&checks);
    let app = start_with(
        move |layer| {
            layer.revocation(move |token| {
                let counter = Arc::clone(&counter);
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    token.registered().jti.as_deref() == Some("revoked-1")
                }
            })
        },
        None,
    )
    .await;
    let fine = app.token(&with(claims(&app), "jti", json!("fine-1")));
    let revoked = app.token(&with(claims(&app), "jti", json!("revoked-1")));
    assert_eq!(app.bearer("/api/private", &fine).await.status, 200);
    let answer = app.bearer("/api/private", &revoked).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.json()["reason"], "token_revoked");
    // The hook runs on every request, cached verification or not.
    assert_eq!(app.bearer("/api/private", &revoked).await.status, 401);
    assert_eq!(checks.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn cache_hits_and_invalidation_on_key_removal() {
    let app = start().await;
    let token = app.token(&claims(&app));
    for _ in 0..5 {
        assert_eq!(app.bearer("/api/private", &token).await.status, 200);
    }
    assert_eq!(app.verifier.cached_tokens(), 1);
    assert_eq!(app.idp.jwks_requests(), 1);
    // The issuer revokes the key; after the key set refreshes, the cached verification no longer counts.
    let replacement = key("k9");
    app.idp.publish(&[&replacement]);
    app.keys.refresh().await.unwrap();
    let answer = app.bearer("/api/private", &token).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.json()["reason"], "key_not_found");
    assert_eq!(app.verifier.cached_tokens(), 0);
}

#[tokio::test]
async fn cookie_and_query_tokens_only_when_enabled() {
    let app = start().await;
    let token = app.token(&claims(&app));
    assert_eq!(app.get("/api/private", &[("cookie", &format!("at={token}"))]).await.status, 401);
    assert_eq!(app.get(&format!("/api/private?access_token={token}"), &[]).await.status, 401);
    let lax = start_with(|layer| layer.cookie("at").query_parameter("access_token"), None).await;
    let token = lax.token(&claims(&lax));
    assert_eq!(lax.get("/api/private", &[("cookie", &format!("theme=x; at={token}"))]).await.status, 200);
    assert_eq!(lax.get(&format!("/api/private?access_token={token}"), &[]).await.status, 200);
    let (cookie, bearer) = (format!("at={token}"), format!("Bearer {token}"));
    let both = lax.get("/api/private", &[("cookie", &cookie), ("authorization", &bearer)]).await;
    assert_eq!(both.status, 400);
}

#[tokio::test]
async fn custom_realm_and_responder() {
    let app = start_with(|layer| layer.realm("messages"), None).await;
    assert_eq!(app.get("/api/private", &[]).await.challenge.as_deref(), Some(r#"Bearer realm="messages""#));
    let custom = start_with(
        |layer| {
            layer.responder(|error, realm| {
                (StatusCode::IM_A_TEAPOT, format!("{realm}: {}", error.reason())).into_response()
            })
        },
        None,
    )
    .await;
    let answer = custom.get("/api/private", &[]).await;
    assert_eq!((answer.status, answer.body.as_str()), (418, "api: token_missing"));
    assert_eq!(answer.refusal.as_deref(), Some("token_missing"), "the error is still in the extensions");
    // Per-route rules answer through the same responder.
    let token = custom.token(&with(claims(&custom), "scope", json!("openid")));
    let answer = custom.bearer("/api/private-scoped", &token).await;
    assert_eq!((answer.status, answer.body.as_str()), (418, "api: insufficient_scope"));
}

#[tokio::test]
async fn rejections_never_echo_the_token() {
    let app = start().await;
    let token = app.token(&with(claims(&app), "aud", json!("https://other.example.com")));
    let answer = app.bearer("/api/private", &token).await;
    let signature = token.rsplit('.').next().unwrap();
    assert!(!answer.body.contains(signature) && !answer.challenge.unwrap().contains(signature));
}
