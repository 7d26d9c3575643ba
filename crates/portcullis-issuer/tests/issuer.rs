//! The dev issuer over real sockets: every endpoint, its error paths, and the admin controls.
#![allow(clippy::unwrap_used)]

use axum::extract::connect_info::MockConnectInfo;
use portcullis::{KeySet, Reason, Verifier};
use portcullis_issuer::{DEMO_AUDIENCE, DevIssuer, Tenant, pkce, router};
use portcullis_testkit::claims::part as decode;
use portcullis_testkit::issuers;
use serde_json::{Value, json};
use std::net::SocketAddr;
use tower::ServiceExt;

struct Running {
    issuer: DevIssuer,
    base: String,
    http: reqwest::Client,
    no_redirect: reqwest::Client,
}

const CALLBACK: &str = "http://127.0.0.1:3000/callback";

async fn start() -> Running {
    start_with(Tenant::demo(CALLBACK)).await
}

async fn start_with(tenant: Tenant) -> Running {
    let issuer = issuers::serve(tenant).await;
    let base = issuer.issuer().to_owned();
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    Running { issuer, base, http: reqwest::Client::new(), no_redirect }
}

impl Running {
    async fn post_json(&self, path: &str, body: Value) -> (u16, Value, reqwest::header::HeaderMap) {
        let response = self.http.post(format!("{}{path}", self.base)).json(&body).send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), headers)
    }

    async fn token(&self, body: Value) -> (u16, Value) {
        let (status, body, _) = self.post_json("oauth/token", body).await;
        (status, body)
    }

    async fn jwks(&self) -> Value {
        self.http.get(format!("{}.well-known/jwks.json", self.base)).send().await.unwrap().json().await.unwrap()
    }

    async fn verifier(&self, audience: &str) -> Verifier {
        let keys = KeySet::from_jwks_json(self.jwks().await.to_string().as_bytes()).unwrap();
        Verifier::builder().issuer(&self.base).audience(audience).keys(keys).without_cache().build().unwrap()
    }

    /// Runs /authorize with login_hint and returns the redirect Location.
    async fn authorize(&self, params: &[(&str, &str)]) -> reqwest::Response {
        self.no_redirect.get(format!("{}authorize", self.base)).query(params).send().await.unwrap()
    }
}

fn machine_request() -> Value {
    json!({"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-secret", "audience": DEMO_AUDIENCE})
}

#[tokio::test]
async fn discovery_and_jwks_look_like_auth0() {
    let r = start().await;
    let doc: Value =
        r.http.get(format!("{}.well-known/openid-configuration", r.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["issuer"], r.base);
    assert_eq!(doc["jwks_uri"], format!("{}.well-known/jwks.json", r.base));
    assert_eq!(doc["token_endpoint"], format!("{}oauth/token", r.base));
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    let jwks = r.jwks().await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "current and next");
    for key in keys {
        for member in ["kty", "use", "n", "e", "kid", "alg"] {
            assert!(key.get(member).is_some(), "{member} in {key}");
        }
        assert_eq!(
            (key["kty"].as_str(), key["alg"].as_str(), key["use"].as_str()),
            (Some("RSA"), Some("RS256"), Some("sig"))
        );
    }
}

#[tokio::test]
async fn client_credentials_in_every_form_with_auth0_shapes() {
    let r = start().await;
    let (status, body, headers) = r.post_json("oauth/token", machine_request()).await;
    assert_eq!(status, 200);
    assert_eq!(headers["cache-control"], "no-store");
    let fields: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(fields, ["access_token", "expires_in", "scope", "token_type"]);
    assert_eq!(
        (body["token_type"].as_str(), body["expires_in"].as_u64(), body["scope"].as_str()),
        (Some("Bearer"), Some(86400), Some("read:messages"))
    );
    let token = body["access_token"].as_str().unwrap();
    let header = decode(token, 0);
    assert_eq!(header, json!({"alg": "RS256", "typ": "JWT", "kid": r.issuer.current_kid()}));
    let claims = decode(token, 1);
    let names: Vec<&String> = claims.as_object().unwrap().keys().collect();
    assert_eq!(names, ["aud", "azp", "exp", "gty", "iat", "iss", "permissions", "scope", "sub"]);
    assert_eq!(claims["iss"], r.base);
    assert_eq!(claims["sub"], "demo-client@clients");
    assert_eq!(claims["aud"], DEMO_AUDIENCE);
    assert_eq!(claims["azp"], "demo-client");
    assert_eq!(claims["gty"], "client-credentials");
    assert_eq!(claims["permissions"], json!(["read:messages"]));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 86400);
    assert!(r.verifier(DEMO_AUDIENCE).await.verify(token).is_ok());

    // Form body with HTTP Basic.
    let response = r
        .http
        .post(format!("{}oauth/token", r.base))
        .basic_auth("demo-client", Some("demo-secret"))
        .form(&[("grant_type", "client_credentials"), ("audience", DEMO_AUDIENCE), ("scope", "read:messages")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn token_endpoint_errors() {
    let r = start().await;
    let with = |name: &str, value: Value| {
        let mut body = machine_request();
        body[name] = value;
        body
    };
    let cases = [
        (with("client_secret", json!("wrong")), 401, "access_denied", Some("Unauthorized")),
        (with("client_id", json!("nobody")), 401, "access_denied", Some("Unauthorized")),
        (with("grant_type", json!("password")), 400, "unsupported_grant_type", None),
        (with("audience", json!("https://unknown.example")), 403, "access_denied", None),
        (with("scope", json!("write:messages")), 403, "access_denied", None),
        (with("grant_type", json!("authorization_code")), 403, "unauthorized_client", None),
    ];
    for (body, status, error, description) in cases {
        let (got, answer) = r.token(body.clone()).await;
        assert_eq!((got, answer["error"].as_str()), (status, Some(error)), "{body}");
        if let Some(description) = description {
            assert_eq!(answer["error_description"], description);
        }
    }
    let mut no_audience = machine_request();
    no_audience.as_object_mut().unwrap().remove("audience");
    assert_eq!(r.token(no_audience).await.1["error"], "invalid_request");

    // Bodies beyond the issuer's limit are refused before they are parsed.
    let oversized = with("scope", json!("x".repeat(portcullis_issuer::MAX_BODY_BYTES)));
    let response = r.http.post(format!("{}oauth/token", r.base)).json(&oversized).send().await.unwrap();
    assert_eq!(response.status(), 413);
}

async fn code_for(r: &Running, user: &str, verifier: &str, scope: &str) -> String {
    let response = r
        .authorize(&[
            ("response_type", "code"),
            ("client_id", "demo-spa"),
            ("redirect_uri", CALLBACK),
            ("scope", scope),
            ("audience", DEMO_AUDIENCE),
            ("state", "xyz"),
            ("code_challenge", &pkce::challenge_of(verifier)),
            ("code_challenge_method", "S256"),
            ("login_hint", user),
        ])
        .await;
    assert_eq!(response.status(), 303);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(CALLBACK));
    let pairs: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(pairs["state"], "xyz");
    pairs["code"].clone()
}

fn exchange(code: &str, verifier: &str, redirect: &str) -> Value {
    json!({"grant_type": "authorization_code", "client_id": "demo-spa", "code": code, "code_verifier": verifier, "redirect_uri": redirect})
}

const VERIFIER: &str = "a-code-verifier-that-is-long-enough-0123456789";

#[tokio::test]
async fn authorization_code_with_pkce_gives_auth0_user_tokens() {
    let r = start().await;
    let code = code_for(&r, "alice", VERIFIER, "openid profile read:messages offline_access").await;
    let (status, body) = r.token(exchange(&code, VERIFIER, CALLBACK)).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let claims = decode(token, 1);
    assert_eq!(claims["sub"], "auth0|alice");
    assert_eq!(claims["aud"], json!([DEMO_AUDIENCE, format!("{}userinfo", r.base)]));
    assert_eq!(claims["azp"], "demo-spa");
    assert_eq!(claims["scope"], "openid profile read:messages offline_access");
    assert_eq!(claims["permissions"], json!(["read:messages", "write:messages"]));
    assert_eq!(claims["https://example.com/roles"], json!(["admin"]));
    assert!(claims.get("gty").is_none());
    assert!(r.verifier(DEMO_AUDIENCE).await.verify(token).is_ok());

    // userinfo with the same token: the profile claims of `profile`, and no email without the `email` scope.
    let info: Value =
        r.http.get(format!("{}userinfo", r.base)).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    assert_eq!((info["sub"].as_str(), info["name"].as_str()), (Some("auth0|alice"), Some("Alice")));
    assert!(info.get("email").is_none(), "{info}");

    // Refresh token (offline_access).
    let refresh = body["refresh_token"].as_str().unwrap();
    let (status, refreshed) =
        r.token(json!({"grant_type": "refresh_token", "client_id": "demo-spa", "refresh_token": refresh})).await;
    assert_eq!(status, 200);
    assert_eq!(decode(refreshed["access_token"].as_str().unwrap(), 1)["sub"], "auth0|alice");
    let (status, bad) =
        r.token(json!({"grant_type": "refresh_token", "client_id": "demo-spa", "refresh_token": "nope"})).await;
    assert_eq!((status, bad["error"].as_str()), (403, Some("invalid_grant")));

    // bob asks for read:messages but holds no such permission: he does not get it.
    let code = code_for(&r, "bob", VERIFIER, "openid read:messages").await;
    let bob = r.token(exchange(&code, VERIFIER, CALLBACK)).await.1;
    let claims = decode(bob["access_token"].as_str().unwrap(), 1);
    assert_eq!((claims["scope"].as_str(), &claims["permissions"]), (Some("openid"), &json!([])));
}

#[tokio::test]
async fn pkce_and_redirect_rules_are_enforced() {
    let r = start().await;
    let code = code_for(&r, "alice", VERIFIER, "openid").await;
    let (status, body) = r.token(exchange(&code, "a-different-verifier-that-is-long-enough-000000", CALLBACK)).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("invalid_grant")));
    // Only a valid presentation uses the code up: the wrong verifier left it, the right one redeems it once.
    assert_eq!(r.token(exchange(&code, VERIFIER, CALLBACK)).await.0, 200);
    assert_eq!(r.token(exchange(&code, VERIFIER, CALLBACK)).await.1["error"], "invalid_grant");
    let code = code_for(&r, "alice", VERIFIER, "openid").await;
    assert_eq!(r.token(exchange(&code, VERIFIER, "http://127.0.0.1:3000/other")).await.1["error"], "invalid_grant");
    let code = code_for(&r, "alice", VERIFIER, "openid").await;
    assert_eq!(r.token(exchange(&code, VERIFIER, CALLBACK)).await.0, 200);
    assert_eq!(r.token(exchange(&code, VERIFIER, CALLBACK)).await.1["error"], "invalid_grant", "reused code");

    let base = [("response_type", "code"), ("client_id", "demo-spa"), ("scope", "openid")];
    // An unregistered callback is never redirected to.
    let evil = r
        .authorize(
            &[
                &base[..],
                &[
                    ("redirect_uri", "https://evil.example/cb"),
                    ("code_challenge", "x"),
                    ("code_challenge_method", "S256"),
                    ("login_hint", "alice"),
                ],
            ]
            .concat(),
        )
        .await;
    assert_eq!(evil.status(), 400);
    assert!(evil.headers().get("location").is_none());
    let page = evil.text().await.unwrap();
    assert!(page.contains("Callback URL mismatch: https://evil.example/cb is not an allowed callback URL"), "{page}");
    assert!(page.contains(&format!("(allowed: {CALLBACK})")), "says what is registered: {page}");
    // A public client must use PKCE, with S256.
    let plain = r.authorize(&[&base[..], &[("redirect_uri", CALLBACK), ("login_hint", "alice")]].concat()).await;
    assert_eq!(plain.status(), 400);
    assert!(plain.text().await.unwrap().contains("PKCE"));
    let method = r
        .authorize(
            &[&base[..], &[("redirect_uri", CALLBACK), ("code_challenge", "x"), ("code_challenge_method", "plain")]]
                .concat(),
        )
        .await;
    assert_eq!(method.status(), 400);
}

#[tokio::test]
async fn login_page_lists_users_and_posts_back() {
    let r = start().await;
    let challenge = pkce::challenge_of(VERIFIER);
    let params = [
        ("response_type", "code"),
        ("client_id", "demo-spa"),
        ("redirect_uri", CALLBACK),
        ("scope", "openid"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let page = r.authorize(&params).await.text().await.unwrap();
    assert!(page.contains("development and tests only"));
    assert!(page.contains("Log in as Alice") && page.contains("Log in as Bob"));
    let mut form: Vec<(&str, &str)> = params.to_vec();
    form.push(("user", "bob"));
    let response = r.no_redirect.post(format!("{}authorize", r.base)).form(&form).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert!(response.headers()["location"].to_str().unwrap().contains("code="));
}

#[tokio::test]
async fn rotation_keeps_old_tokens_valid_until_revoked() {
    let r = start().await;
    let old_kid = r.issuer.current_kid();
    let old = r.token(machine_request()).await.1["access_token"].as_str().unwrap().to_owned();
    let (status, rotated, _) = r.post_json("__admin/keys/rotate", json!({})).await;
    assert_eq!(status, 200);
    assert_ne!(rotated["current"], old_kid);
    assert_eq!(r.jwks().await["keys"].as_array().unwrap().len(), 3, "next, current, previous");
    let new = r.token(machine_request()).await.1["access_token"].as_str().unwrap().to_owned();
    assert_eq!(decode(&new, 0)["kid"], rotated["current"]);
    let verifier = r.verifier(DEMO_AUDIENCE).await;
    assert!(verifier.verify(&old).is_ok() && verifier.verify(&new).is_ok());
    let (status, _, _) = r.post_json("__admin/keys/revoke", json!({"kid": old_kid})).await;
    assert_eq!(status, 200);
    let verifier = r.verifier(DEMO_AUDIENCE).await;
    assert_eq!(verifier.verify(&old).unwrap_err().reason(), Reason::KeyNotFound);
    assert!(verifier.verify(&new).is_ok());
    assert_eq!(r.post_json("__admin/keys/revoke", json!({"kid": "no-such-kid"})).await.0, 404);
}

#[tokio::test]
async fn empty_huge_and_redirecting_key_sets_on_command() {
    let r = start().await;
    let url = format!("{}.well-known/jwks.json", r.base);
    for kind in ["empty_set", "huge", "redirect_to_other_host"] {
        let (status, _, _) = r.post_json("__admin/faults", json!({"kind": kind, "count": 1})).await;
        assert_eq!(status, 204, "{kind}");
    }
    let empty = r.http.get(&url).send().await.unwrap();
    assert_eq!((empty.status().as_u16(), empty.text().await.unwrap()), (200, r#"{"keys":[]}"#.to_owned()));
    let huge = r.http.get(&url).send().await.unwrap().bytes().await.unwrap();
    assert!(huge.len() > portcullis_issuer::HUGE_BODY_BYTES, "{}", huge.len());
    let moved = r.no_redirect.get(&url).send().await.unwrap();
    assert_eq!(moved.status().as_u16(), 302);
    let location = moved.headers()["location"].to_str().unwrap();
    assert_eq!(location, url.replace("127.0.0.1", "localhost"));
    assert!(r.http.get(&url).send().await.unwrap().text().await.unwrap().starts_with("{\"keys\""));
}

#[tokio::test]
async fn faults_and_clock_shift_show_in_the_journal() {
    let r = start().await;
    let (status, _, _) = r.post_json("__admin/faults", json!({"kind": "status", "status": 503, "count": 2})).await;
    assert_eq!(status, 204);
    r.post_json("__admin/faults", json!({"kind": "garbage", "count": 1})).await;
    let url = format!("{}.well-known/jwks.json", r.base);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = r.http.get(&url).send().await.unwrap();
        statuses.push((response.status().as_u16(), response.text().await.unwrap().starts_with("{\"keys\"")));
    }
    assert_eq!(statuses, [(503, false), (503, false), (200, false), (200, true)]);
    // A dropped connection is a transport error for the client.
    r.post_json("__admin/faults", json!({"kind": "drop", "count": 1})).await;
    let dropped = r.http.get(&url).send().await;
    assert!(dropped.is_err() || dropped.unwrap().text().await.is_err());

    let journal: Vec<Value> =
        r.http.get(format!("{}__admin/journal", r.base)).send().await.unwrap().json().await.unwrap();
    let jwks: Vec<u64> = journal
        .iter()
        .filter(|e| e["path"] == "/.well-known/jwks.json")
        .map(|e| e["status"].as_u64().unwrap())
        .collect();
    assert_eq!(&jwks[..4], [503, 503, 200, 200]);
    assert_eq!(r.issuer.requests_to("/.well-known/jwks.json"), 5);

    let before = r.issuer.now();
    let (_, clock, _) = r.post_json("__admin/clock", json!({"shift": 7200})).await;
    assert!(clock["now"].as_i64().unwrap() >= before + 7200);
    let token = r.token(machine_request()).await.1["access_token"].as_str().unwrap().to_owned();
    assert!(decode(&token, 1)["iat"].as_i64().unwrap() >= before + 7200);
    // A token from two hours in the future is refused by an honest verifier.
    assert_eq!(r.verifier(DEMO_AUDIENCE).await.verify(&token).unwrap_err().reason(), Reason::ClaimInvalid);
}

#[tokio::test]
async fn admin_mints_any_token_including_broken_ones() {
    let r = start().await;
    let verifier = r.verifier(DEMO_AUDIENCE).await;
    let r = &r;
    let mint = |body: Value| async move {
        r.post_json("__admin/tokens", body).await.1["access_token"].as_str().unwrap().to_owned()
    };
    let custom =
        mint(json!({"user": "alice", "scopes": ["openid", "read:messages"], "claims": {"org": "acme", "azp": null}}))
            .await;
    let claims = decode(&custom, 1);
    assert_eq!((claims["org"].as_str(), claims.get("azp")), (Some("acme"), None));
    assert!(verifier.verify(&custom).is_ok());
    let cases = [
        (json!({"lifetime": -3600}), Reason::TokenExpired),
        (json!({"broken": "bad_signature"}), Reason::SignatureInvalid),
        (json!({"broken": "alg_none"}), Reason::AlgorithmNotAllowed),
        (json!({"broken": "unknown_key"}), Reason::KeyNotFound),
        (json!({"audience": "https://billing.example.com"}), Reason::AudienceMismatch),
    ];
    for (body, reason) in cases {
        let token = mint(body.clone()).await;
        assert_eq!(verifier.verify(&token).unwrap_err().reason(), reason, "{body}");
    }
    let next = mint(json!({"key": "next"})).await;
    assert_ne!(decode(&next, 0)["kid"], r.issuer.current_kid());
    assert!(verifier.verify(&next).is_ok(), "the next key is already published");
}

#[tokio::test]
async fn admin_endpoints_refuse_non_loopback_clients() {
    let issuer = DevIssuer::new(Tenant::demo(CALLBACK), "http://127.0.0.1:4000/").unwrap();
    let request = |from: &str| {
        let app = router(issuer.clone()).layer(MockConnectInfo(from.parse::<SocketAddr>().unwrap()));
        let request = axum::http::Request::post("/__admin/keys/rotate")
            .header("host", "127.0.0.1:4000")
            .header("content-type", "application/json")
            .body(axum::body::Body::from("{}"))
            .unwrap();
        async move { app.oneshot(request).await.unwrap().status().as_u16() }
    };
    assert_eq!(request("192.0.2.10:5000").await, 403);
    assert_eq!(request("127.0.0.1:5000").await, 200);
}

#[tokio::test]
async fn rfc9068_profile_tokens() {
    let mut tenant = Tenant::demo(CALLBACK);
    tenant.rfc9068 = true;
    let issuer = DevIssuer::new(tenant, "http://127.0.0.1:4000/").unwrap();
    let token = issuer.client_credentials_token("demo-client", DEMO_AUDIENCE).unwrap();
    assert_eq!(decode(&token, 0)["typ"], "at+jwt");
    let claims = decode(&token, 1);
    assert_eq!(claims["client_id"], "demo-client");
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    let keys = KeySet::from_jwks_json(issuer.jwks().to_string().as_bytes()).unwrap();
    let verifier =
        Verifier::builder().issuer(issuer.issuer()).audience(DEMO_AUDIENCE).typ("at+jwt").keys(keys).build().unwrap();
    assert!(verifier.verify(&token).is_ok());
    // A plain JWT is refused where the RFC 9068 type is required.
    let plain = DevIssuer::new(Tenant::demo(CALLBACK), "http://127.0.0.1:4000/").unwrap();
    let plain_token = plain.client_credentials_token("demo-client", DEMO_AUDIENCE).unwrap();
    let plain_keys = KeySet::from_jwks_json(plain.jwks().to_string().as_bytes()).unwrap();
    let strict = Verifier::builder()
        .issuer(plain.issuer())
        .audience(DEMO_AUDIENCE)
        .typ("at+jwt")
        .keys(plain_keys)
        .build()
        .unwrap();
    assert_eq!(strict.verify(&plain_token).unwrap_err().reason(), Reason::HeaderInvalid);
}

#[tokio::test]
async fn browser_scripts_reach_the_token_endpoint_only_from_allowed_web_origins() {
    let r = start().await;
    // The demo SPA's origin (from its callback URL) may call /oauth/token from a browser; nothing else may.
    let preflight = |origin: &'static str| {
        r.http
            .request(reqwest::Method::OPTIONS, format!("{}oauth/token", r.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight("http://127.0.0.1:3000").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(allowed.headers()["access-control-allow-origin"], "http://127.0.0.1:3000");
    assert!(allowed.headers()["access-control-allow-methods"].to_str().unwrap().contains("POST"));
    for origin in ["http://localhost:3000", "https://evil.example", "null"] {
        let refused = preflight(origin).await.unwrap();
        assert!(refused.headers().get("access-control-allow-origin").is_none(), "{origin}");
    }
    // The SPA's page refreshes its own tokens and reads the answer.
    let token = refresh_token_for(&r).await;
    let exchange = |origin: &'static str, body: Value| {
        r.http.post(format!("{}oauth/token", r.base)).header("origin", origin).json(&body).send()
    };
    let answered = exchange("http://127.0.0.1:3000", refresh(&token)).await.unwrap();
    assert_eq!(answered.status(), 200);
    assert_eq!(answered.headers()["access-control-allow-origin"], "http://127.0.0.1:3000");
    let other = exchange("https://evil.example", machine_request()).await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    // A page of the SPA's origin may not use another client (the machine client lists no web origin).
    let machine = exchange("http://127.0.0.1:3000", machine_request()).await.unwrap();
    assert_eq!(machine.status(), 403);
    // The JWKS is a public document any page may read; the admin endpoints carry no CORS headers at all.
    let jwks = r.http.get(format!("{}.well-known/jwks.json", r.base)).header("origin", "https://evil.example").send();
    assert_eq!(jwks.await.unwrap().headers()["access-control-allow-origin"], "*");
    let journal = r.http.get(format!("{}__admin/journal", r.base)).header("origin", "http://127.0.0.1:3000").send();
    assert!(journal.await.unwrap().headers().get("access-control-allow-origin").is_none());
}

fn refresh(token: &str) -> Value {
    json!({"grant_type": "refresh_token", "client_id": "demo-spa", "refresh_token": token})
}

/// Logs alice in with `offline_access` and returns the refresh token of the exchange.
async fn refresh_token_for(r: &Running) -> String {
    let code = code_for(r, "alice", VERIFIER, "openid read:messages offline_access").await;
    let (status, body) = r.token(exchange(&code, VERIFIER, CALLBACK)).await;
    assert_eq!(status, 200, "{body}");
    body["refresh_token"].as_str().unwrap().to_owned()
}

/// Refreshes and returns the rotated refresh token, checking the access token that came with it.
async fn refreshed(r: &Running, token: &str) -> String {
    let (status, body) = r.token(refresh(token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(decode(body["access_token"].as_str().unwrap(), 1)["sub"], "auth0|alice");
    let next = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(next, token, "every refresh returns a new refresh token");
    next
}

async fn refused(r: &Running, token: &str) {
    let (status, body) = r.token(refresh(token)).await;
    assert_eq!(
        (status, body["error"].as_str(), body["error_description"].as_str()),
        (403, Some("invalid_grant"), Some("Unknown or invalid refresh token.")),
        "{token}"
    );
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_its_family() {
    let r = start().await;
    let first = refresh_token_for(&r).await;
    let unrelated = refresh_token_for(&r).await;
    let second = refreshed(&r, &first).await;
    refused(&r, &first).await;
    // The reuse revoked the family: the newest token, never used, is refused too, and so is a retry.
    refused(&r, &second).await;
    refused(&r, &first).await;
    // Another login's family is untouched.
    let next = refreshed(&r, &unrelated).await;
    let last = refreshed(&r, &next).await;
    refused(&r, &unrelated).await;
    refused(&r, &last).await;

    // A token is refused to another client and to a request without one, and neither revokes anything.
    let mine = refresh_token_for(&r).await;
    let (status, body) = r
        .token(json!({"grant_type": "refresh_token", "client_id": "demo-client", "client_secret": "demo-secret", "refresh_token": mine}))
        .await;
    assert_eq!((status, body["error"].as_str()), (403, Some("unauthorized_client")));
    let (status, body) = r.token(json!({"grant_type": "refresh_token", "client_id": "demo-spa"})).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")), "{body}");
    refreshed(&r, &mine).await;
}

#[tokio::test]
async fn refresh_tokens_expire_on_the_issuer_clock() {
    let mut tenant = Tenant::demo(CALLBACK);
    tenant.refresh_token_lifetime = 250;
    tenant.refresh_token_idle_lifetime = 100;
    let r = &start_with(tenant).await;
    let shift = |seconds: i64| async move {
        let (status, _, _) = r.post_json("__admin/clock", json!({ "shift": seconds })).await;
        assert_eq!(status, 200);
    };

    // Inactivity: unused for 100 s, a token is dead. (Steps that must succeed keep a margin of ten seconds for
    // the real clock, which moves on during the test; steps that must fail have none.)
    let idle = refresh_token_for(r).await;
    let kept = refresh_token_for(r).await;
    shift(90).await;
    let kept = refreshed(r, &kept).await;
    shift(10).await;
    refused(r, &idle).await;

    // Absolute: used every 60 to 90 s, the family still ends 250 s after the login that started it.
    let mut token = refresh_token_for(r).await;
    for seconds in [90, 90, 60] {
        shift(seconds).await;
        token = refreshed(r, &token).await;
    }
    shift(10).await;
    refused(r, &token).await;

    // Every token above is dead by now; sweeping leaves nothing behind.
    shift(100).await;
    refused(r, &kept).await;
    assert_eq!(r.issuer.stored_refresh_tokens(), 0);
}

#[tokio::test]
async fn expired_codes_and_refresh_tokens_are_purged() {
    let r = start().await;
    let stale: Vec<String> = [
        code_for(&r, "alice", VERIFIER, "openid").await,
        code_for(&r, "bob", VERIFIER, "openid").await,
        code_for(&r, "alice", VERIFIER, "openid").await,
    ]
    .into();
    let token = refresh_token_for(&r).await;
    assert_eq!(r.issuer.stored_codes(), 3, "the exchanged code is gone, the others wait");
    assert_eq!(r.issuer.stored_refresh_tokens(), 1);

    // Past the five-minute code lifetime, issuing the next code sweeps the expired ones.
    r.issuer.shift_clock(301);
    let fresh = code_for(&r, "bob", VERIFIER, "openid").await;
    assert_eq!(r.issuer.stored_codes(), 1);
    assert_eq!(r.token(exchange(&stale[0], VERIFIER, CALLBACK)).await.1["error"], "invalid_grant");
    assert_eq!(r.token(exchange(&fresh, VERIFIER, CALLBACK)).await.0, 200);
    assert_eq!(r.issuer.stored_codes(), 0);

    // A used refresh token is kept (to recognise reuse) while its family lives; a revoked family is removed
    // at once, and so is an expired one at the next refresh-token request.
    let next = refreshed(&r, &token).await;
    assert_eq!(r.issuer.stored_refresh_tokens(), 2);
    refused(&r, &token).await;
    assert_eq!(r.issuer.stored_refresh_tokens(), 0);
    refused(&r, &next).await;
    let old = refresh_token_for(&r).await;
    r.issuer.shift_clock(i64::try_from(Tenant::demo(CALLBACK).refresh_token_idle_lifetime).unwrap());
    let _ = refresh_token_for(&r).await;
    assert_eq!(r.issuer.stored_refresh_tokens(), 1, "only the new family is left");
    refused(&r, &old).await;
}

/// An admin request with extra headers; answers the status.
async fn admin(r: &Running, method: reqwest::Method, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> u16 {
    let mut request = r.http.request(method, format!("{}__admin/{path}", r.base));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body.to_owned());
    }
    request.send().await.unwrap().status().as_u16()
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test]
async fn admin_endpoints_refuse_cross_site_requests_and_non_json_bodies() {
    let r = start().await;
    let own_origin = r.base.trim_end_matches('/').to_owned();
    let kid = r.issuer.current_kid();
    let post = reqwest::Method::POST;
    let rotate =
        |headers: &'static [(&'static str, &'static str)]| admin(&r, post.clone(), "keys/rotate", headers, Some("{}"));
    for (headers, status) in [
        (&[JSON, ("origin", "https://evil.example")][..], 403),
        (&[JSON, ("origin", "null")], 403),
        (&[JSON, ("sec-fetch-site", "cross-site")], 403),
        (&[JSON, ("sec-fetch-site", "same-site")], 403),
        (&[("content-type", "application/x-www-form-urlencoded")], 415),
        (&[("content-type", "multipart/form-data; boundary=x")], 415),
        (&[("content-type", "text/plain")], 415),
        (&[], 415),
    ] {
        assert_eq!(rotate(headers).await, status, "{headers:?}");
    }
    assert_eq!(r.issuer.current_kid(), kid, "no refused request rotated the keys");
    let before = r.issuer.now();
    let form = [("content-type", "application/x-www-form-urlencoded")];
    assert_eq!(admin(&r, post.clone(), "clock", &form, Some("shift=86400")).await, 415);
    assert!(r.issuer.now() < before + 86400, "the clock did not move");
    let cross_site = [("sec-fetch-site", "cross-site")];
    assert_eq!(admin(&r, reqwest::Method::GET, "journal", &cross_site, None).await, 403);
    assert_eq!(admin(&r, reqwest::Method::DELETE, "faults", &[("origin", "https://evil.example")], None).await, 403);

    // Same origin, JSON: accepted, as are tools that send no browser headers at all.
    let same = [JSON, ("origin", own_origin.as_str()), ("sec-fetch-site", "same-origin")];
    assert_eq!(admin(&r, post.clone(), "keys/rotate", &same, Some("{}")).await, 200);
    assert_ne!(r.issuer.current_kid(), kid);
    assert_eq!(
        admin(&r, post.clone(), "clock", &[JSON, ("sec-fetch-site", "none")], Some(r#"{"shift":1}"#)).await,
        200
    );
    assert_eq!(admin(&r, reqwest::Method::GET, "journal", &[("origin", own_origin.as_str())], None).await, 200);
    assert_eq!(admin(&r, reqwest::Method::DELETE, "faults", &[], None).await, 204);

    // The token endpoint and the login page are not admin endpoints: other sites (the SPA's) still reach them.
    let token = refresh_token_for(&r).await;
    let response = r
        .http
        .post(format!("{}oauth/token", r.base))
        .header("origin", "http://127.0.0.1:3000")
        .header("sec-fetch-site", "same-site")
        .form(&[("grant_type", "refresh_token"), ("client_id", "demo-spa"), ("refresh_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page = r
        .http
        .get(format!("{}authorize", r.base))
        .header("sec-fetch-site", "cross-site")
        .query(&[
            ("response_type", "code"),
            ("client_id", "demo-spa"),
            ("redirect_uri", CALLBACK),
            ("code_challenge", "x"),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
}

#[tokio::test]
async fn admin_endpoints_refuse_foreign_host_headers() {
    let r = &start().await;
    let port = url::Url::parse(&r.base).unwrap().port().unwrap();
    let kid = r.issuer.current_kid();
    let rotate = |host: String| async move {
        admin(r, reqwest::Method::POST, "keys/rotate", &[JSON, ("host", host.as_str())], Some("{}")).await
    };
    // A DNS-rebinding page reaches 127.0.0.1 under its own name, which the Host header carries.
    for host in
        ["evil.example".to_owned(), format!("evil.example:{port}"), format!("127.0.0.1:{}", port.wrapping_add(1))]
    {
        assert_eq!(rotate(host.clone()).await, 421, "{host}");
    }
    let journal =
        |host: &'static str| async move { admin(r, reqwest::Method::GET, "journal", &[("host", host)], None).await };
    assert_eq!(journal("evil.example").await, 421);
    assert_eq!(r.issuer.current_kid(), kid);
    // The issuer's own authority, and localhost with its port (an issuer on a loopback address).
    assert_eq!(rotate(format!("127.0.0.1:{port}")).await, 200);
    assert_eq!(rotate(format!("localhost:{port}")).await, 200);
    // Other endpoints answer whatever the Host.
    let discovery = r.http.get(format!("{}.well-known/openid-configuration", r.base)).header("host", "evil.example");
    assert_eq!(discovery.send().await.unwrap().status(), 200);
}
