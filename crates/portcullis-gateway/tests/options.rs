//! The token options of issuers and routes, through the gateway with a real upstream: leeway, maximum age, `typ`
//! and algorithms per issuer (and the stricter route checks), optional authentication, the token from a cookie or
//! another header, CORS preflights, and keys from a local JWKS file.
#![allow(clippy::unwrap_used)]

#[allow(unused_imports)]
mod support;

use portcullis::Algorithm;
use portcullis::signing::SigningKey;
use portcullis_gateway::{Config, Gateway};
use serde_json::{Map, Value, json};
use std::time::{SystemTime, UNIX_EPOCH};
use support::{listen, upstream};

const ISSUER: &str = "https://issuer.example/";
const OTHER: &str = "https://other.example/";
const AUDIENCE: &str = "https://api.example";

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A signing key and the local JWKS file publishing it.
struct Keys {
    key: SigningKey,
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Self {
        let keys = Self {
            key: SigningKey::generate(Algorithm::ES256, Some("k1".into())).unwrap(),
            dir: tempfile::tempdir().unwrap(),
        };
        keys.publish(&keys.key);
        keys
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("jwks.json")
    }

    fn uri(&self) -> String {
        format!("file://{}", self.path().display())
    }

    fn publish(&self, key: &SigningKey) {
        std::fs::write(self.path(), json!({ "keys": [key.public_jwk()] }).to_string()).unwrap();
    }

    /// A token from `iss` for the API, issued `age` seconds ago, valid for an hour from now, `typ` in the header.
    fn token(&self, iss: &str, age: i64, typ: &str) -> String {
        sign(&self.key, iss, age, 3600, typ)
    }
}

fn sign(key: &SigningKey, iss: &str, age: i64, exp_in: i64, typ: &str) -> String {
    let claims = json!({"iss": iss, "aud": AUDIENCE, "sub": "alice", "scope": "read", "iat": now() - age, "exp": now() + exp_in});
    let mut header = Map::new();
    header.insert("typ".into(), Value::from(typ));
    key.sign_token(&claims, Some(&header)).unwrap()
}

/// Issuers (both on the local key file), then `rest` (routes).
fn config(keys: &Keys, upstream: &str, issuer_extra: &str, rest: &str) -> String {
    format!(
        r#"
        upstream = "{upstream}"
        [[issuers]]
        issuer = "{ISSUER}"
        audiences = ["{AUDIENCE}"]
        jwks_uri = "{uri}"
        {issuer_extra}
        [[issuers]]
        issuer = "{OTHER}"
        audiences = ["{AUDIENCE}"]
        jwks_uri = "{uri}"
        {rest}
        "#,
        uri = keys.uri()
    )
}

async fn start(toml: &str) -> (Gateway, String) {
    let gateway = Gateway::new(Config::from_toml(toml).unwrap()).unwrap();
    let (listener, address) = listen().await;
    tokio::spawn(portcullis_gateway::serve(gateway.clone(), listener, None, std::future::pending()));
    (gateway, format!("http://{address}"))
}

/// Status, reason (from a JSON body) and the upstream's view of the request (when it got there).
async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn issuer_rules_from_the_file_apply_to_that_issuers_tokens() {
    let keys = Keys::new();
    let upstream = upstream().await;
    let rules = r#"leeway_secs = 0
        max_token_age_secs = 600
        typ = "at+jwt"
        algorithms = ["ES256"]"#;
    let (_, base) = start(&config(&keys, &upstream, rules, "[[routes]]\npath = \"/api/*\"")).await;
    let http = reqwest::Client::new();
    let get = |token: String| http.get(format!("{base}/api/x")).bearer_auth(token);

    assert_eq!(send(get(keys.token(ISSUER, 10, "at+jwt"))).await.0, 200);
    // Too old for this issuer, fine for the other.
    let (status, body) = send(get(keys.token(ISSUER, 700, "at+jwt"))).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("token_expired")));
    assert_eq!(send(get(keys.token(OTHER, 700, "JWT"))).await.0, 200);
    // typ: this issuer's tokens must be access tokens.
    let (status, body) = send(get(keys.token(ISSUER, 10, "JWT"))).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("header_invalid")));
    // No leeway: expired five seconds ago is expired; the other issuer keeps the default minute.
    let (status, body) = send(get(sign(&keys.key, ISSUER, 10, -5, "at+jwt"))).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("token_expired")));
    assert_eq!(send(get(sign(&keys.key, OTHER, 10, -5, "JWT"))).await.0, 200);

    // Algorithms: an issuer allowing only RS256 refuses the ES256 key's tokens.
    let rsa_only = config(&keys, &upstream, r#"algorithms = ["RS256"]"#, "[[routes]]\npath = \"/api/*\"");
    let (_, base) = start(&rsa_only).await;
    let (status, body) = send(http.get(format!("{base}/api/x")).bearer_auth(keys.token(ISSUER, 10, "JWT"))).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("algorithm_not_allowed")));
    assert_eq!(send(http.get(format!("{base}/api/x")).bearer_auth(keys.token(OTHER, 10, "JWT"))).await.0, 200);
}

#[tokio::test]
async fn a_route_may_be_stricter_on_age_and_typ() {
    let keys = Keys::new();
    let upstream = upstream().await;
    let routes = r#"
        [[routes]]
        path = "/fresh/*"
        max_token_age_secs = 60
        [[routes]]
        path = "/typed/*"
        typ = "at+jwt"
        [[routes]]
        path = "/*"
    "#;
    let (_, base) = start(&config(&keys, &upstream, "", routes)).await;
    let http = reqwest::Client::new();
    let get = |path: &str, token: String| http.get(format!("{base}{path}")).bearer_auth(token);
    let old = keys.token(ISSUER, 600, "JWT");
    assert_eq!(send(get("/other", old.clone())).await.0, 200);
    let (status, body) = send(get("/fresh/x", old)).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("token_expired")));
    assert_eq!(send(get("/fresh/x", keys.token(ISSUER, 5, "JWT"))).await.0, 200);
    let (status, body) = send(get("/typed/x", keys.token(ISSUER, 5, "JWT"))).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("header_invalid")));
    assert_eq!(send(get("/typed/x", keys.token(ISSUER, 5, "at+jwt"))).await.0, 200);
}

#[tokio::test]
async fn optional_authentication_passes_anonymous_requests_without_claims() {
    let keys = Keys::new();
    let upstream = upstream().await;
    let routes = r#"
        [[routes]]
        path = "/feed/*"
        auth = "optional"
        require = { scope = "read" }
        [[routes]]
        path = "/*"
    "#;
    let (_, base) = start(&config(&keys, &upstream, "", routes)).await;
    let http = reqwest::Client::new();

    // No token: through, with no claim headers, and a client's copy of one removed.
    let (status, seen) = send(http.get(format!("{base}/feed/a")).header("x-auth-subject", "auth0|mallory")).await;
    assert_eq!(status, 200);
    assert!(seen["headers"].get("x-auth-subject").is_none(), "{seen}");
    // A good token: claim headers.
    let (status, seen) = send(http.get(format!("{base}/feed/a")).bearer_auth(keys.token(ISSUER, 5, "JWT"))).await;
    assert_eq!((status, seen["headers"]["x-auth-subject"].as_str()), (200, Some("alice")));
    // A bad one is refused, not ignored.
    let stranger = SigningKey::generate(Algorithm::ES256, Some("k1".into())).unwrap();
    let forged = sign(&stranger, ISSUER, 5, 3600, "JWT");
    let (status, body) = send(http.get(format!("{base}/feed/a")).bearer_auth(forged)).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("signature_invalid")));
    let (status, _) = send(http.get(format!("{base}/feed/a")).header("authorization", "Basic YTpi")).await;
    assert_eq!(status, 400);
    // A sent token must meet the route's rule.
    let unscoped =
        keys.key.sign_token(&json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "bob", "exp": now() + 600}), None);
    let (status, body) = send(http.get(format!("{base}/feed/a")).bearer_auth(unscoped.unwrap())).await;
    assert_eq!((status, body["reason"].as_str()), (403, Some("insufficient_scope")));
    // Elsewhere a token is still required.
    assert_eq!(send(http.get(format!("{base}/other"))).await.0, 401);
}

#[tokio::test]
async fn forward_auth_answers_optional_routes_the_same_way() {
    let keys = Keys::new();
    let upstream = upstream().await;
    let routes = "[[routes]]\npath = \"/feed/*\"\nauth = \"optional\"\n[[routes]]\npath = \"/cors/*\"\n\
                  preflight = \"pass\"\n[[routes]]\npath = \"/*\"";
    let toml = format!("forward_auth = \"caddy\"\n{}", config(&keys, &upstream, "", routes));
    let (_, base) = start(&toml.replace(&format!("upstream = \"{upstream}\""), "")).await;
    let http = reqwest::Client::new();
    let ask = |uri: &str| http.get(&base).header("x-forwarded-method", "GET").header("x-forwarded-uri", uri);

    let response = ask("/feed/a").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-auth-subject"], "", "managed headers answered empty, to overwrite copies");
    let response = ask("/feed/a").bearer_auth(keys.token(ISSUER, 5, "JWT")).send().await.unwrap();
    assert_eq!((response.status().as_u16(), response.headers()["x-auth-subject"].to_str().unwrap()), (200, "alice"));
    let tampered = format!("{}x", keys.token(ISSUER, 5, "JWT"));
    assert_eq!(ask("/feed/a").bearer_auth(tampered).send().await.unwrap().status(), 401);
    assert_eq!(ask("/other").send().await.unwrap().status(), 401);

    // A preflight on a route that passes them: 200 without claims, so the front proxy forwards it.
    let preflight = |uri: &str| {
        http.get(&base)
            .header("x-forwarded-method", "OPTIONS")
            .header("x-forwarded-uri", uri)
            .header("origin", "https://app.example")
    };
    let response = preflight("/cors/a").header("access-control-request-method", "POST").send().await.unwrap();
    assert_eq!((response.status().as_u16(), response.headers()["x-auth-subject"].to_str().unwrap()), (200, ""));
    assert_eq!(preflight("/cors/a").send().await.unwrap().status(), 401, "not a preflight: a token is needed");
    let credentials = preflight("/cors/a").header("access-control-request-method", "POST").bearer_auth("a.b.c");
    assert_eq!(credentials.send().await.unwrap().status(), 401, "a preflight never carries credentials");
    let elsewhere = preflight("/other").header("access-control-request-method", "POST").send().await.unwrap();
    assert_eq!(elsewhere.status(), 401);
}

#[tokio::test]
async fn the_token_from_a_cookie_or_a_header_once_and_removed_before_the_upstream() {
    let keys = Keys::new();
    let upstream = upstream().await;
    let routes = r#"
        [[routes]]
        path = "/cookie/*"
        token_from = { cookie = "access_token" }
        [[routes]]
        path = "/kept/*"
        token_from = { cookie = "access_token" }
        forward_authorization = true
        [[routes]]
        path = "/header/*"
        token_from = { header = "X-Access-Token" }
        [[routes]]
        path = "/*"
    "#;
    let (_, base) = start(&config(&keys, &upstream, "", routes)).await;
    let http = reqwest::Client::new();
    let token = keys.token(ISSUER, 5, "JWT");
    let get = |path: &str| http.get(format!("{base}{path}"));

    let (status, seen) = send(get("/cookie/a").header("cookie", format!("theme=dark; access_token={token}"))).await;
    assert_eq!((status, seen["headers"]["x-auth-subject"].as_str()), (200, Some("alice")));
    assert_eq!(seen["headers"]["cookie"], "theme=dark", "the token cookie is removed, the others kept");
    let (_, seen) = send(get("/kept/a").header("cookie", format!("access_token={token}"))).await;
    assert_eq!(seen["headers"]["cookie"], format!("access_token={token}"));
    let (status, seen) = send(get("/header/a").header("x-access-token", &token)).await;
    assert_eq!((status, seen["headers"].get("x-access-token")), (200, None));
    // Authorization still works on those routes.
    assert_eq!(send(get("/cookie/a").bearer_auth(&token)).await.0, 200);

    // Two places, two cookies, a repeated header: 400 invalid_request.
    let cookie = format!("access_token={token}");
    for request in [
        get("/cookie/a").bearer_auth(&token).header("cookie", &cookie),
        get("/cookie/a").header("cookie", format!("{cookie}; access_token={token}")),
        get("/cookie/a").header("cookie", &cookie).header("cookie", &cookie),
        get("/header/a").header("x-access-token", &token).header("x-access-token", &token),
        get("/header/a").header("x-access-token", &token).bearer_auth(&token),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 400);
        let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_request\""), "{challenge}");
    }
    // A bad token in the cookie: 401 invalid_token, as in the header.
    let response = get("/cookie/a").header("cookie", format!("access_token={token}x")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers()["www-authenticate"].to_str().unwrap().contains("error=\"invalid_token\""));
    // No token at all: the plain challenge, without an error code.
    let response = get("/cookie/a").header("cookie", "theme=dark").send().await.unwrap();
    assert_eq!(
        (response.status().as_u16(), response.headers()["www-authenticate"].to_str().unwrap()),
        (401, "Bearer realm=\"api\"")
    );
    // Routes without token_from never read the cookie.
    assert_eq!(send(get("/other").header("cookie", &cookie)).await.0, 401);
}

#[tokio::test]
async fn preflights_pass_or_are_answered_only_where_configured() {
    let keys = Keys::new();
    let upstream = upstream().await;
    let routes = r#"
        [[routes]]
        path = "/passed/*"
        methods = ["POST"]
        preflight = "pass"
        [[routes]]
        path = "/answered/*"
        methods = ["GET", "POST", "DELETE"]
        preflight = "answer"
        cors = { allowed_origins = ["https://app.example"], allowed_methods = ["GET", "POST"], allowed_headers = ["Authorization", "Content-Type"], max_age_secs = 600 }
        [[routes]]
        path = "/*"
    "#;
    let (_, base) = start(&config(&keys, &upstream, "", routes)).await;
    let http = reqwest::Client::new();
    let preflight = |path: &str, origin: &str, method: &str| {
        http.request(reqwest::Method::OPTIONS, format!("{base}{path}"))
            .header("origin", origin)
            .header("access-control-request-method", method)
    };

    // pass: the upstream sees the preflight, without a token and without claim headers.
    let (status, seen) =
        send(preflight("/passed/a", "https://app.example", "POST").header("x-auth-subject", "x")).await;
    assert_eq!((status, seen["method"].as_str()), (200, Some("OPTIONS")));
    assert!(seen["headers"].get("x-auth-subject").is_none());
    // answer: the gateway answers 204 with the table's headers; the upstream (which answers JSON) never sees it.
    let response = preflight("/answered/a", "https://app.example", "POST")
        .header("access-control-request-headers", "authorization,content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header("access-control-allow-origin").as_deref(), Some("https://app.example"));
    assert_eq!(header("access-control-allow-methods").as_deref(), Some("GET, POST"));
    assert_eq!(header("access-control-max-age").as_deref(), Some("600"));
    assert!(header("vary").unwrap().contains("Origin"));
    // Not allowed: 403, no CORS headers.
    for (origin, method) in [("https://evil.example", "POST"), ("https://app.example", "DELETE")] {
        let response = preflight("/answered/a", origin, method).send().await.unwrap();
        assert_eq!(response.status(), 403, "{origin} {method}");
        assert!(response.headers().get("access-control-allow-origin").is_none());
    }
    // Not a preflight (no Access-Control-Request-Method), or a route without the option: a token is needed.
    let bare =
        http.request(reqwest::Method::OPTIONS, format!("{base}/answered/a")).header("origin", "https://app.example");
    assert_eq!(send(bare).await.0, 405, "OPTIONS is not one of the route's methods");
    assert_eq!(send(preflight("/elsewhere", "https://app.example", "GET")).await.0, 401);

    // Ordinary responses on the CORS route carry the allowed origin, refusals included (the page can read them).
    let response = http.get(format!("{base}/answered/a")).header("origin", "https://app.example").send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["access-control-allow-origin"], "https://app.example");
    let response = http
        .get(format!("{base}/answered/a"))
        .header("origin", "https://app.example")
        .bearer_auth(keys.token(ISSUER, 5, "JWT"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], "https://app.example");
    let response =
        http.get(format!("{base}/answered/a")).header("origin", "https://evil.example").send().await.unwrap();
    assert!(response.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn a_local_key_file_is_read_at_start_and_on_reload() {
    let keys = Keys::new();
    let upstream = upstream().await;
    let toml = config(&keys, &upstream, "", "[[routes]]\npath = \"/*\"");
    let (gateway, base) = start(&toml).await;
    assert!(gateway.is_ready(), "ready as soon as the file is loaded");
    let http = reqwest::Client::new();
    let first = keys.token(ISSUER, 5, "JWT");
    assert_eq!(send(http.get(format!("{base}/a")).bearer_auth(&first)).await.0, 200);

    // A new key in the file counts only after a reload.
    let next = SigningKey::generate(Algorithm::ES256, Some("k2".into())).unwrap();
    keys.publish(&next);
    let second = sign(&next, ISSUER, 5, 3600, "JWT");
    assert_eq!(send(http.get(format!("{base}/a")).bearer_auth(&second)).await.0, 401);
    gateway.reload(Config::from_toml(&toml).unwrap()).unwrap();
    assert_eq!(send(http.get(format!("{base}/a")).bearer_auth(&second)).await.0, 200);
    assert_eq!(send(http.get(format!("{base}/a")).bearer_auth(&first)).await.0, 401);

    // A broken file fails the reload, and the keys in force stay.
    std::fs::write(keys.path(), "{ not json").unwrap();
    let refused = each_issuer(Config::from_toml(&toml).unwrap_err());
    assert_eq!(refused.key, "issuers[0].jwks_uri");
    assert!(refused.message.contains("not a usable JWK Set"), "{}", refused.message);
    assert_eq!(send(http.get(format!("{base}/a")).bearer_auth(&second)).await.0, 200);
}

#[test]
fn a_missing_or_unusable_key_file_is_a_configuration_error() {
    let keys = Keys::new();
    let with_uri = |uri: &str| config(&keys, "http://127.0.0.1:9", "", "").replace(&keys.uri(), uri);
    let missing = keys.dir.path().join("absent.json");
    let cases = [
        (format!("file://{}", missing.display()), "cannot read the key file"),
        ("file://jwks.json".to_owned(), "absolute path"),
        (format!("file://{}", keys.dir.path().display()), "not a regular file"),
        // A device would be read without end.
        ("file:///dev/zero".to_owned(), "not a regular file"),
    ];
    for (uri, expected) in cases {
        let err = each_issuer(Config::from_toml(&with_uri(&uri)).unwrap_err());
        assert_eq!(err.key, "issuers[0].jwks_uri", "{uri}");
        assert!(err.message.contains(expected), "{uri}: {}", err.message);
        assert!(err.location.is_some(), "located in the file");
    }
    std::fs::write(keys.path(), r#"{"keys":[]}"#).unwrap();
    let err = each_issuer(Config::from_toml(&with_uri(&keys.uri())).unwrap_err());
    assert!(err.message.contains("no usable key"), "{}", err.message);
}

#[test]
fn options_that_cannot_work_are_refused_with_their_key() {
    let keys = Keys::new();
    let base = |issuer_extra: &str, routes: &str| config(&keys, "http://127.0.0.1:9", issuer_extra, routes);
    let cases: &[(&str, &str, &str)] = &[
        ("leeway_secs = 700000", "", "issuers[0].leeway_secs"),
        ("max_token_age_secs = 0", "", "issuers[0].max_token_age_secs"),
        ("typ = \"JOSE\"", "", "issuers[0].typ"),
        ("algorithms = [\"none\"]", "", "issuers[0].algorithms[0]"),
        ("algorithms = [\"HS256\"]", "", "issuers[0].algorithms[0]"),
        ("", "[[routes]]\npath = \"/a\"\npublic = true\nauth = \"optional\"", "routes[0].auth"),
        ("", "[[routes]]\npath = \"/a\"\ntoken_from = {}", "routes[0].token_from"),
        ("", "[[routes]]\npath = \"/a\"\ntoken_from = { cookie = \"a\", header = \"b\" }", "routes[0].token_from"),
        ("", "[[routes]]\npath = \"/a\"\ntoken_from = { cookie = \"a b\" }", "routes[0].token_from.cookie"),
        ("", "[[routes]]\npath = \"/a\"\ntoken_from = { header = \"Cookie\" }", "routes[0].token_from.header"),
        ("", "[[routes]]\npath = \"/a\"\ntoken_from = { header = \"X-Auth-Subject\" }", "routes[0].token_from.header"),
        (
            "",
            "[[routes]]\npath = \"/a\"\ntoken_from = { header = \"X-Forwarded-User\" }",
            "routes[0].token_from.header",
        ),
        ("", "[[routes]]\npath = \"/a\"\nmax_token_age_secs = 0", "routes[0].max_token_age_secs"),
        ("", "[[routes]]\npath = \"/a\"\ntyp = \"jose\"", "routes[0].typ"),
        ("", "[[routes]]\npath = \"/a\"\npreflight = \"answer\"", "routes[0].preflight"),
        (
            "",
            "[[routes]]\npath = \"/a\"\ncors = { allowed_origins = [\"https://a.example\"], allowed_methods = [\"GET\"] }",
            "routes[0].cors",
        ),
        (
            "",
            "[[routes]]\npath = \"/a\"\npreflight = \"answer\"\ncors = { allowed_origins = [\"*\"], allowed_methods = [\"GET\"] }",
            "routes[0].cors.allowed_origins[0]",
        ),
        (
            "",
            "[[routes]]\npath = \"/a\"\npreflight = \"answer\"\ncors = { allowed_origins = [\"https://a.example/\"], allowed_methods = [\"GET\"] }",
            "routes[0].cors.allowed_origins[0]",
        ),
        (
            "",
            "[[routes]]\npath = \"/a\"\npreflight = \"answer\"\ncors = { allowed_origins = [\"https://a.example\"], allowed_methods = [] }",
            "routes[0].cors.allowed_methods",
        ),
        (
            "",
            "[[routes]]\npath = \"/a\"\npreflight = \"answer\"\ncors = { allowed_origins = [\"https://a.example\"], allowed_methods = [\"GET\"], max_age_secs = 100000 }",
            "routes[0].cors.max_age_secs",
        ),
        ("", "[[routes]]\npath = \"/a\"\npreflight = \"maybe\"", "routes[0].preflight"),
    ];
    for (issuer_extra, routes, key) in cases {
        let err = only(Config::from_toml(&base(issuer_extra, routes)).unwrap_err());
        assert_eq!(err.key, *key, "{issuer_extra} {routes}: {err}");
    }
    // Answering preflights needs the reverse proxy: a proxy in front passes any 2xx on.
    let routes = "[[routes]]\npath = \"/a\"\npreflight = \"answer\"\ncors = { allowed_origins = [\"https://a.example\"], allowed_methods = [\"GET\"] }";
    let err = only(Config::from_toml(&format!("forward_auth = \"caddy\"\n{}", base("", routes))).unwrap_err());
    assert_eq!(err.key, "routes[0].preflight");
    // Envoy lets a request through on 200 only and hands the 204 to the client: answering works there.
    let envoy = format!("forward_auth = \"envoy\"\n{}", base("", routes));
    assert!(Config::from_toml(&envoy).is_ok(), "{envoy}");
    // And the valid forms pass.
    let good = "[[routes]]\npath = \"/a\"\nauth = \"optional\"\ntoken_from = { cookie = \"access_token\" }\ntyp = \"at+jwt\"\nmax_token_age_secs = 300\npreflight = \"answer\"\ncors = { allowed_origins = [\"https://a.example\", \"http://localhost:5173\"], allowed_methods = [\"GET\"], allowed_headers = [\"Authorization\"], max_age_secs = 600, allow_credentials = true }";
    Config::from_toml(&base(
        "leeway_secs = 5\nmax_token_age_secs = 3600\ntyp = \"application/at+jwt\"\nalgorithms = [\"RS256\", \"ES256\"]",
        good,
    ))
    .unwrap();
}

/// The first error of a file whose two issuers share one broken key file: each issuer's `jwks_uri` is refused
/// once, with the same message, and nothing else is.
fn each_issuer(errors: portcullis_gateway::ConfigErrors) -> portcullis_gateway::ConfigError {
    let keys: Vec<&str> = errors.errors().iter().map(|error| error.key.as_str()).collect();
    assert_eq!(keys, ["issuers[0].jwks_uri", "issuers[1].jwks_uri"], "{errors}");
    assert_eq!(errors.errors()[0].message, errors.errors()[1].message);
    errors.errors()[0].clone()
}

/// The one error of a refused file (each case here has exactly one thing wrong).
fn only(errors: portcullis_gateway::ConfigErrors) -> portcullis_gateway::ConfigError {
    assert_eq!(errors.errors().len(), 1, "exactly one error: {errors}");
    errors.errors()[0].clone()
}

#[tokio::test]
async fn a_preflight_with_credentials_or_a_body_is_an_ordinary_request() {
    let keys = Keys::new();
    let upstream = upstream().await;
    let routes = r#"
        [[routes]]
        path = "/passed/*"
        methods = ["POST"]
        preflight = "pass"
        forward_authorization = true
        token_from = { cookie = "access_token" }
        [[routes]]
        path = "/*"
    "#;
    let (_, base) = start(&config(&keys, &upstream, "", routes)).await;
    let http = reqwest::Client::new();
    let preflight = || {
        http.request(reqwest::Method::OPTIONS, format!("{base}/passed/a"))
            .header("origin", "https://app.example")
            .header("access-control-request-method", "POST")
    };
    // Browsers send a preflight without credentials and without a body: one that carries either is verified as
    // any other request, so an unchecked token never reaches the upstream beside a passed preflight.
    let forged = format!("{}x", keys.token(ISSUER, 5, "JWT"));
    for request in [
        preflight().bearer_auth(&forged),
        preflight().header("authorization", "Basic YWRtaW46YWRtaW4="),
        preflight().header("cookie", format!("access_token={forged}")),
        preflight().body("{\"delete\": \"everything\"}"),
    ] {
        let (status, seen) = send(request).await;
        // The route takes POST only: as an ordinary request, OPTIONS is refused before any token is read.
        assert_eq!(status, 405, "{seen}");
        assert!(seen.get("method").is_none(), "the upstream saw it: {seen}");
    }
    // A real preflight still passes.
    let (status, seen) = send(preflight().header("cookie", "theme=dark")).await;
    assert_eq!((status, seen["method"].as_str()), (200, Some("OPTIONS")));
}

#[tokio::test]
async fn the_token_header_is_read_and_removed_in_every_spelling() {
    let keys = Keys::new();
    let upstream = upstream().await;
    let routes = r#"
        [[routes]]
        path = "/optional/*"
        auth = "optional"
        token_from = { header = "X-Access-Token" }
        [[routes]]
        path = "/header/*"
        token_from = { header = "X-Access-Token" }
        [[routes]]
        path = "/*"
    "#;
    let (_, base) = start(&config(&keys, &upstream, "", routes)).await;
    let http = reqwest::Client::new();
    let token = keys.token(ISSUER, 5, "JWT");
    let forged = format!("{token}x");
    // CGI-style upstreams read `X_Access_Token` as `X-Access-Token`: the gateway reads that spelling too, so a
    // forged token in it is refused rather than passed on unchecked.
    let (status, seen) = send(http.get(format!("{base}/optional/a")).header("x_access_token", &forged)).await;
    assert_eq!(status, 401, "{seen}");
    let (status, seen) =
        send(http.get(format!("{base}/header/a")).bearer_auth(&token).header("X_access-token", &forged)).await;
    assert_eq!(status, 400, "{seen}");
    let (status, seen) =
        send(http.get(format!("{base}/header/a")).header("x-access-token", &token).header("x_access_token", &token))
            .await;
    assert_eq!(status, 400, "{seen}");
    // A valid token in another spelling is verified, and removed in that spelling before the upstream.
    let (status, seen) = send(http.get(format!("{base}/header/a")).header("x_access_token", &token)).await;
    assert_eq!((status, seen["headers"]["x-auth-subject"].as_str()), (200, Some("alice")), "{seen}");
    assert!(seen["headers"].get("x_access_token").is_none(), "{seen}");
}

#[tokio::test]
async fn the_token_cookie_is_read_in_every_spelling_an_upstream_reads() {
    let keys = Keys::new();
    let upstream = upstream().await;
    let routes = r#"
        [[routes]]
        path = "/optional/*"
        auth = "optional"
        token_from = { cookie = "access_token" }
        forward_authorization = true
        [[routes]]
        path = "/*"
    "#;
    let (_, base) = start(&config(&keys, &upstream, "", routes)).await;
    let http = reqwest::Client::new();
    let token = keys.token(ISSUER, 5, "JWT");
    let get = || http.get(format!("{base}/optional/a"));
    // ASP.NET Core reads cookie names ignoring case, PHP reads `access.token` and `access%5Ftoken` as
    // `access_token`: a forged token under such a name is verified and refused, never passed on as anonymous.
    for spelling in ["Access_Token", "access.token", "access%5Ftoken"] {
        let (status, seen) = send(get().header("cookie", format!("{spelling}={token}x"))).await;
        assert_eq!(status, 401, "{spelling}: {seen}");
        let (status, seen) = send(get().header("cookie", format!("access_token={token}; {spelling}={token}x"))).await;
        assert_eq!(status, 400, "{spelling}: {seen}");
    }
    let (status, seen) = send(get().header("cookie", format!("Access_Token={token}"))).await;
    assert_eq!((status, seen["headers"]["x-auth-subject"].as_str()), (200, Some("alice")), "{seen}");
}

#[tokio::test]
async fn a_preflight_with_an_http2_body_without_content_length_is_an_ordinary_request() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let keys = Keys::new();
    let upstream = upstream().await;
    let routes =
        "[[routes]]\npath = \"/passed/*\"\nmethods = [\"POST\"]\npreflight = \"pass\"\n[[routes]]\npath = \"/*\"";
    let (_, base) = start(&config(&keys, &upstream, "", routes)).await;
    let address = base.trim_start_matches("http://").to_owned();
    // HTTP/2 frames a body by its DATA frames: no Content-Length is needed, and none is sent for a streamed body.
    let send_h2 = |body: axum::body::Body| {
        let address = address.clone();
        async move {
            let io = TokioIo::new(tokio::net::TcpStream::connect(&address).await.unwrap());
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.unwrap();
            tokio::spawn(connection);
            let request = http::Request::builder()
                .method("OPTIONS")
                .uri(format!("http://{address}/passed/a"))
                .header("origin", "https://app.example")
                .header("access-control-request-method", "POST")
                .body(body)
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            let status = response.status().as_u16();
            let bytes = axum::body::to_bytes(axum::body::Body::new(response.into_body()), usize::MAX).await.unwrap();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null))
        }
    };
    let chunks: Vec<Result<&'static str, std::io::Error>> = vec![Ok("{\"delete\": "), Ok("\"everything\"}")];
    let (status, seen) = send_h2(axum::body::Body::from_stream(futures_util::stream::iter(chunks))).await;
    assert_eq!(status, 405, "decided as an ordinary OPTIONS request, which the route does not take: {seen}");
    assert!(seen.get("method").is_none(), "the upstream saw it: {seen}");
    // Without a body, the preflight passes.
    let (status, seen) = send_h2(axum::body::Body::empty()).await;
    assert_eq!((status, seen["method"].as_str(), seen["body_len"].as_u64()), (200, Some("OPTIONS"), Some(0)));
}
