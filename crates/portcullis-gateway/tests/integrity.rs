//! The gateway authorizes exactly what the upstream will serve: one named case per class of confusion (paths,
//! methods, front-proxy headers, managed and forwarding headers, upgrades, HTTP/2). Requests that an HTTP
//! library would normalize are sent as raw bytes.
#![allow(clippy::unwrap_used)]

mod support;

use portcullis_issuer::{DEMO_AUDIENCE, DevIssuer};
use serde_json::Value;
use support::{gateway, issuer, upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A response read off the wire: status, head (lower-cased) and body.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

/// Sends `request` as it is to the server at `base` and reads the answer until the server closes.
async fn raw(base: &str, request: &[u8]) -> Raw {
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Raw { status, head: head.to_ascii_lowercase(), body: body.to_owned() }
}

/// A GET of `target` with `extra` header lines, closing the connection after the answer.
fn get(target: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n{extra}\r\n").into_bytes()
}

/// The headers in which `front` describes the original request: method, then target.
fn description_headers(front: &str) -> (&'static str, &'static str) {
    match front {
        "nginx" => ("X-Original-Method", "X-Original-URI"),
        _ => ("X-Forwarded-Method", "X-Forwarded-Uri"),
    }
}

const ROUTES: &str = r#"
[[routes]]
path = "/docs/internal"
methods = ["GET"]
require = { permission = "admin:all" }
[[routes]]
path = "/docs/*"
public = true
[[routes]]
path = "/api/private-scoped"
require = { permission = "read:messages" }
[[routes]]
path = "/api/*"
[[routes]]
path = "/public/*"
public = true
"#;

async fn proxy(issuer: &DevIssuer, extra: &str) -> (String, String) {
    let upstream = upstream().await;
    let base = gateway(&format!(
        "upstream = \"{upstream}\"\n{extra}\n[[issuers]]\nissuer = \"{}\"\naudiences = [\"{DEMO_AUDIENCE}\"]\n{ROUTES}",
        issuer.issuer()
    ))
    .await;
    (base, upstream)
}

async fn forward_auth(issuer: &DevIssuer, front: &str) -> String {
    gateway(&format!(
        "forward_auth = \"{front}\"\n[[issuers]]\nissuer = \"{}\"\naudiences = [\"{DEMO_AUDIENCE}\"]\n{ROUTES}",
        issuer.issuer()
    ))
    .await
}

/// Alice holds read:messages (and write:messages), not admin:all.
fn alice(issuer: &DevIssuer) -> String {
    issuer.user_token("demo-spa", "alice", DEMO_AUDIENCE, &["openid"]).unwrap()
}

fn json(raw: &Raw) -> Value {
    serde_json::from_str(&raw.body).unwrap_or(Value::Null)
}

#[tokio::test]
async fn head_of_a_get_only_route_never_falls_through_to_a_looser_route() {
    let issuer = issuer().await;
    let (base, _) = proxy(&issuer, "").await;
    let http = reqwest::Client::new();
    // HEAD is GET: the admin-only rule applies, not the public /docs/* behind it.
    assert_eq!(http.head(format!("{base}/docs/internal")).send().await.unwrap().status(), 401);
    let token = alice(&issuer);
    assert_eq!(http.head(format!("{base}/docs/internal")).bearer_auth(&token).send().await.unwrap().status(), 403);
    // Another method gets 405 with Allow, not the public route.
    let post = http.post(format!("{base}/Docs/Internal/")).send().await.unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
    assert_eq!(http.post(format!("{base}/docs/other")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn the_reverse_proxy_checks_and_forwards_the_canonical_path() {
    let issuer = issuer().await;
    let (base, _) = proxy(&issuer, "").await;
    let token = alice(&issuer);
    // Dot-segments, plain or encoded, cannot climb out of a public prefix into a guarded route.
    for target in ["/public/../api/private-scoped", "/public/%2e%2E/api/private-scoped", "/public/..%2Fapi/x"] {
        let answer = raw(&base, &get(target, "")).await;
        assert!(matches!(answer.status, 400 | 401), "{target}: {}", answer.status);
    }
    // Case, a trailing slash, repeated slashes and encoded letters land on the route a lenient upstream serves,
    // and exactly the checked canonical path is forwarded.
    let answer = raw(&base, &get("/API//./%50rivate-Scoped/", &format!("Authorization: Bearer {token}\r\n"))).await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(json(&answer)["uri"], "/API/Private-Scoped/");
    let answer = raw(&base, &get("/api/private-scoped?page=2", "")).await;
    assert_eq!(answer.status, 401);
    // What upstreams read differently is refused before any route is looked up.
    for target in
        ["/public/a%2Fb", "/public/a;jsessionid=1", "/public/a%5Cb", "/public/%00", "/public/%252e", "/public/%C3"]
    {
        let answer = raw(&base, &get(target, "")).await;
        assert_eq!(answer.status, 400, "{target}");
        assert!(answer.body.contains("target_invalid"), "{target}: {}", answer.body);
    }
}

#[tokio::test]
async fn client_copies_of_managed_and_forwarding_headers_never_reach_the_upstream() {
    let issuer = issuer().await;
    let (base, _) = proxy(&issuer, "").await;
    // HTTP/1.0 without Host, every spelling a CGI-style server would fold into the same variable.
    let request = b"GET /public/x HTTP/1.0\r\nX_Auth_Subject: spoofed\r\nx-auth-scope: spoofed\r\n\
        X-AUTH-PERMISSIONS: spoofed\r\nForwarded: for=spoofed;host=spoofed\r\nX-Forwarded-Host: spoofed\r\n\
        X_Forwarded_For: spoofed\r\nX-Real-IP: spoofed\r\nX-Forwarded-Prefix: spoofed\r\n\r\n";
    let answer = raw(&base, request).await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert!(!answer.body.contains("spoofed"), "{}", answer.body);
    let seen = json(&answer);
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http");
}

#[tokio::test]
async fn x_forwarded_for_grows_only_from_trusted_proxies() {
    let issuer = issuer().await;
    let chain = |base: String| async move {
        let answer = raw(&base, &get("/public/x", "X-Forwarded-For: 203.0.113.9\r\n")).await;
        json(&answer)["headers"]["x-forwarded-for"].as_str().unwrap().to_owned()
    };
    let (trusting, _) = proxy(&issuer, "trusted_proxies = [\"127.0.0.0/8\"]").await;
    assert_eq!(chain(trusting).await, "203.0.113.9, 127.0.0.1");
    let (plain, _) = proxy(&issuer, "").await;
    assert_eq!(chain(plain).await, "127.0.0.1");
}

#[tokio::test]
async fn only_websocket_upgrades_are_tunnelled() {
    let issuer = issuer().await;
    let (base, _) = proxy(&issuer, "").await;
    let answer = raw(
        &base,
        &get(
            "/public/x",
            "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n",
        ),
    )
    .await;
    assert_eq!(answer.status, 200, "h2c is declined, the request served over HTTP/1.1: {}", answer.head);
    let seen = json(&answer);
    assert!(seen["headers"].get("upgrade").is_none(), "{seen}");
    assert!(seen["headers"].get("http2-settings").is_none(), "{seen}");
}

#[tokio::test]
async fn http2_clients_are_served() {
    let issuer = issuer().await;
    let (base, _) = proxy(&issuer, "").await;
    let http = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response = http.get(format!("{base}/public/x")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["uri"], "/public/x");
    assert!(seen["headers"]["x-forwarded-host"].as_str().unwrap().starts_with("127.0.0.1:"), "{seen}");
    let response = http.get(format!("{base}/api/x")).send().await.unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn forward_auth_reads_only_the_named_proxys_headers_and_never_falls_back() {
    let issuer = issuer().await;
    let nginx = forward_auth(&issuer, "nginx").await;
    // A non-ASCII byte makes nginx's X-Original-URI unreadable as text: refused, never the client's header.
    let mut request = b"GET /auth HTTP/1.1\r\nHost: g\r\nConnection: close\r\nX-Original-Method: GET\r\n\
        X-Original-URI: /api/private-scoped/\xc3\r\nX-Forwarded-Uri: /public/x\r\nX-Forwarded-Method: GET\r\n\r\n"
        .to_vec();
    assert_eq!(raw(&nginx, &request).await.status, 403);
    // Missing or repeated: refused.
    request = get("/auth", "X-Forwarded-Uri: /public/x\r\nX-Forwarded-Method: GET\r\nX-Original-Method: GET\r\n");
    assert_eq!(raw(&nginx, &request).await.status, 403);
    request = get("/auth", "X-Original-Method: GET\r\nX-Original-URI: /public/x\r\nX-Original-URI: /api/x\r\n");
    assert_eq!(raw(&nginx, &request).await.status, 403);
    request = get("/auth", "X-Original-Method: GET\r\nX-Original-URI: /public/x\r\n");
    assert_eq!(raw(&nginx, &request).await.status, 200);

    // Caddy describes the request in X-Forwarded-*; a client's X-Original-URI is never read there (and, since
    // Caddy would pass it on to the upstream, it is refused).
    let caddy = forward_auth(&issuer, "caddy").await;
    request = get("/auth", "X-Forwarded-Method: GET\r\nX-Forwarded-Uri: /api/private-scoped\r\n");
    assert_eq!(raw(&caddy, &request).await.status, 401);
    request = get(
        "/auth",
        "X-Forwarded-Method: GET\r\nX-Forwarded-Uri: /api/private-scoped\r\nX-Original-URI: /public/x\r\n",
    );
    assert_eq!(raw(&caddy, &request).await.status, 400);
    let answer = raw(&caddy, &get("/auth", "")).await;
    assert_eq!(answer.status, 400);
    assert!(answer.body.contains("front_headers_invalid"), "{}", answer.body);
}

#[tokio::test]
async fn forward_auth_refuses_targets_the_upstream_could_read_differently() {
    let issuer = issuer().await;
    for (front, status) in [("nginx", 403), ("caddy", 400), ("traefik", 400)] {
        let base = forward_auth(&issuer, front).await;
        let (method, uri) = description_headers(front);
        for target in ["/public/../api/x", "/public//x", "/public/%78", "/public/a%2Fb", "/public/a;b", "/docs/x#f"] {
            let answer = raw(&base, &get("/auth", &format!("{method}: GET\r\n{uri}: {target}\r\n"))).await;
            assert_eq!(answer.status, status, "{front} {target}");
        }
        let answer = raw(&base, &get("/auth", &format!("{method}: HEAD\r\n{uri}: /docs/internal\r\n"))).await;
        assert_eq!(answer.status, 401, "{front}: HEAD is GET");
        let answer = raw(&base, &get("/auth", &format!("{method}: GET\r\n{uri}: /public/x?a=%2F\r\n"))).await;
        assert_eq!(answer.status, 200, "{front}");
    }
}

#[tokio::test]
async fn forward_auth_refuses_requests_carrying_a_managed_header() {
    let issuer = issuer().await;
    let token = alice(&issuer);
    for (front, status) in [("nginx", 403), ("caddy", 400)] {
        let base = forward_auth(&issuer, front).await;
        let (method, uri) = description_headers(front);
        let describe = format!("{method}: GET\r\n{uri}: /api/x\r\nAuthorization: Bearer {token}\r\n");
        assert_eq!(raw(&base, &get("/auth", &describe)).await.status, 200, "{front}");
        for spelling in ["X-Auth-Subject", "x_auth_scope", "X_AUTH_PERMISSIONS"] {
            let answer = raw(&base, &get("/auth", &format!("{describe}{spelling}: spoofed\r\n"))).await;
            assert_eq!(answer.status, status, "{front} {spelling}");
            assert!(answer.body.contains("managed_header_sent"), "{front} {spelling}: {}", answer.body);
        }
    }
}

#[tokio::test]
async fn towards_nginx_every_refusal_is_401_or_403() {
    let issuer = issuer().await;
    let base = forward_auth(&issuer, "nginx").await;
    let describe = |target: &str, method: &str| format!("X-Original-Method: {method}\r\nX-Original-URI: {target}\r\n");
    // Malformed credentials: 401 invalid_request (a 400 would become nginx's 500).
    let answer =
        raw(&base, &get("/auth", &format!("{}Authorization: Bearer a b\r\n", describe("/api/x", "GET")))).await;
    assert_eq!(answer.status, 401);
    assert!(answer.head.contains("error=\"invalid_request\""), "{}", answer.head);
    // No route, a method the route does not take, an ambiguous target: 403, each under its own reason.
    for (target, method, reason) in [
        ("/nowhere", "GET", "no_route"),
        ("/docs/internal", "POST", "method_not_allowed"),
        ("/public/%2e", "GET", "target_not_canonical"),
    ] {
        let answer = raw(&base, &get("/auth", &describe(target, method))).await;
        assert_eq!(answer.status, 403, "{target}");
        assert!(answer.body.contains(reason), "{target}: {}", answer.body);
    }
}

#[tokio::test]
async fn path_and_method_overrides_never_reach_the_upstream() {
    let issuer = issuer().await;
    // The reverse proxy removes them.
    let (base, _) = proxy(&issuer, "").await;
    let answer = raw(
        &base,
        &get(
            "/public/x",
            "X-Original-URL: /api/x\r\nX-Rewrite-URL: /api/x\r\nX-Original-URI: /api/x\r\nX-Forwarded-Ssl: on\r\n",
        ),
    )
    .await;
    assert_eq!(answer.status, 200);
    for name in [
        "x-original-url",
        "x-rewrite-url",
        "x-original-uri",
        "x-forwarded-ssl",
        "x-http-method-override",
        "x-method-override",
        "x-http-method",
    ] {
        assert!(json(&answer)["headers"].get(name).is_none(), "{name}: {}", answer.body);
    }
    // Forward-auth refuses override headers the named proxy would pass on, and underscore spellings; forwarding
    // headers a load balancer adds in their usual spelling are the front proxy's to pass or replace.
    for (front, describe, status) in [
        ("nginx", "X-Original-Method: GET\r\nX-Original-URI: /public/x\r\n", 403),
        ("caddy", "X-Forwarded-Method: GET\r\nX-Forwarded-Uri: /public/x\r\n", 400),
    ] {
        let base = forward_auth(&issuer, front).await;
        let balancer = "X-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\n\
                        X-Forwarded-Ssl: on\r\nX-Amzn-Trace-Id: Root=1-0\r\n";
        assert_eq!(raw(&base, &get("/auth", &format!("{describe}{balancer}"))).await.status, 200, "{front}");
        for extra in [
            "X-Original-URL: /api/x",
            "X-Rewrite-URL: /api/x",
            "X-HTTP-Method-Override: DELETE",
            "X-Method-Override: DELETE",
            "X-HTTP-Method: DELETE",
            "X_Forwarded_Host: e",
            "X_Real_IP: 203.0.113.9",
        ] {
            let answer = raw(&base, &get("/auth", &format!("{describe}{extra}\r\n"))).await;
            assert_eq!(answer.status, status, "{front} {extra}");
            assert!(answer.body.contains("forwarding_header_sent"), "{front} {extra}: {}", answer.body);
        }
        let answer = raw(&base, &get("/auth", &format!("{describe}Connection: upgrade\r\nUpgrade: h2c\r\n"))).await;
        assert_eq!(answer.status, status, "{front} h2c");
        assert!(answer.body.contains("upgrade_refused"), "{front}: {}", answer.body);
    }
}

#[tokio::test]
async fn hosts_that_are_not_host_names_are_refused() {
    let issuer = issuer().await;
    let (base, _) = proxy(&issuer, "").await;
    for host in ["a, b", "a b", "user@a", ""] {
        let request = format!("GET /public/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let answer = raw(&base, request.as_bytes()).await;
        assert_eq!(answer.status, 400, "{host:?}");
    }
    let request = b"GET http://app.example/public/x HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n";
    assert_eq!(raw(&base, request).await.status, 400);
    let request = b"GET http://u@app.example/public/x HTTP/1.1\r\nHost: u@app.example\r\nConnection: close\r\n\r\n";
    assert_eq!(raw(&base, request).await.status, 400);
    let request = b"GET http://app.example/public/x HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n";
    let answer = raw(&base, request).await;
    assert_eq!(answer.status, 200);
    assert_eq!(json(&answer)["headers"]["x-forwarded-host"], "app.example");
}

#[tokio::test]
async fn http2_cookies_reach_an_http1_upstream_as_one_field() {
    let issuer = issuer().await;
    let (base, _) = proxy(&issuer, "").await;
    let http = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.append("cookie", "a=1".parse().unwrap());
    headers.append("cookie", "b=2".parse().unwrap());
    let seen: Value = http.get(format!("{base}/public/x")).headers(headers).send().await.unwrap().json().await.unwrap();
    assert_eq!(seen["headers"]["cookie"], "a=1; b=2");
}

#[tokio::test]
async fn claim_values_an_upstream_could_misread_are_refused() {
    let issuer = issuer().await;
    let upstream = upstream().await;
    let base = gateway(&format!(
        "upstream = \"{upstream}\"\n[[issuers]]\nissuer = \"{}\"\naudiences = [\"{DEMO_AUDIENCE}\"]\n\
         [claim_headers]\nsub = \"X-Auth-Subject\"\nroles = \"X-Auth-Roles\"\nemail = \"X-Auth-Email\"\n\
         org = \"X-Auth-Org\"\n[[routes]]\npath = \"/*\"\n",
        issuer.issuer()
    ))
    .await;
    let token = |claims: Value| {
        let mut all = serde_json::json!({"iss": issuer.issuer(), "aud": DEMO_AUDIENCE, "exp": issuer.now() + 600});
        all.as_object_mut().unwrap().extend(claims.as_object().unwrap().clone());
        issuer.sign(all.as_object().unwrap(), &portcullis_issuer::KeyChoice::Current, None).unwrap()
    };
    let http = reqwest::Client::new();
    let good = token(serde_json::json!({
        "sub": "auth0|alice", "roles": ["user", "editor"], "email": "a@x.example", "org": {"id": 7, "tier": "gold"}
    }));
    let seen: Value = http.get(format!("{base}/x")).bearer_auth(good).send().await.unwrap().json().await.unwrap();
    assert_eq!(seen["headers"]["x-auth-subject"], "auth0|alice");
    assert_eq!(seen["headers"]["x-auth-roles"], "user editor");
    assert_eq!(seen["headers"]["x-auth-org"], r#"{"id":7,"tier":"gold"}"#);
    for claims in [
        serde_json::json!({"sub": " admin"}),
        serde_json::json!({"sub": "admin\t"}),
        serde_json::json!({"sub": "auth0|x", "roles": ["user", "x admin"]}),
        serde_json::json!({"sub": "auth0|x", "email": "a@x, admin@x"}),
        serde_json::json!({"sub": "auth0|x", "roles": ["user", ""]}),
        serde_json::json!({"sub": "auth0|\u{85}x"}),
    ] {
        let response = http.get(format!("{base}/x")).bearer_auth(token(claims.clone())).send().await.unwrap();
        assert_eq!(response.status(), 401, "{claims}");
        assert!(response.text().await.unwrap().contains("claim_invalid"), "{claims}");
    }
}

#[tokio::test]
async fn forward_auth_allows_respellings_of_the_canonical_path_and_nothing_else() {
    let issuer = issuer().await;
    for (front, status) in [("nginx", 403), ("caddy", 400)] {
        let base = forward_auth(&issuer, front).await;
        let (method, uri) = description_headers(front);
        let ask = |target: &str| get("/auth", &format!("{method}: GET\r\n{uri}: {target}\r\n"));
        // What encodeURIComponent and browsers send: every upstream reads it as the canonical path.
        for target in ["/public/a%40b.com", "/public/r%2c1", "/public/a|b", "/public/%c3%a9"] {
            let answer = raw(&base, &ask(target)).await;
            assert_eq!(answer.status, 200, "{front} {target}: {}", answer.body);
        }
        // A decoded letter, a dot-segment, merged slashes: upstreams that route on the raw path disagree.
        for target in ["/public/%61", "/public/a/../b", "/public//x"] {
            let answer = raw(&base, &ask(target)).await;
            assert_eq!(answer.status, status, "{front} {target}");
            assert!(answer.body.contains("target_not_canonical"), "{front} {target}: {}", answer.body);
        }
    }
}

#[tokio::test]
async fn the_reverse_proxy_forwards_raw_browser_bytes_percent_encoded() {
    let issuer = issuer().await;
    let (base, _) = proxy(&issuer, "").await;
    let answer = raw(&base, &get("/public/a|b", "")).await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(json(&answer)["uri"], "/public/a%7Cb");
}
