//! Envoy's ext_authz: the gRPC `Authorization/Check` service on a loopback port, called with a tonic client as
//! Envoy calls it, and the HTTP mode (`forward_auth = "envoy"`) called with requests shaped as Envoy sends them.
//! Every decision path: allowed with claim headers and the headers to remove, each refusal with the status,
//! `WWW-Authenticate` and JSON body the reverse proxy answers, targets an upstream could read differently, joined
//! and repeated `Authorization` headers, client copies of claim headers, preflights and the metrics. The gRPC
//! listener itself: its limits, HTTP/2 only, malformed and stalled calls.
#![allow(clippy::unwrap_used)]

use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{HeaderMap as EnvoyHeaderMap, HeaderValue as EnvoyHeader};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse, OkHttpResponse};
use portcullis::signing::SigningKey;
use portcullis_gateway::{Config, Gateway};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tonic::transport::Channel;

const ISSUER: &str = "https://issuer.test/";
const AUDIENCE: &str = "https://api.test";

/// The routes every test gateway has.
const ROUTES: &str = r#"
[[routes]]
path = "/public/*"
public = true
[[routes]]
path = "/api/*"
require = { scope = "read" }
[[routes]]
path = "/admin/*"
require = { scope = "admin" }
[[routes]]
path = "/write/*"
methods = ["POST"]
[[routes]]
path = "/cookie/*"
token_from = { cookie = "at" }
[[routes]]
path = "/header/*"
token_from = { header = "x-access-token" }
[[routes]]
path = "/forwarded/*"
forward_authorization = true
[[routes]]
path = "/cors/*"
preflight = "answer"
cors = { allowed_origins = ["https://app.test"], allowed_methods = ["GET"], allowed_headers = ["authorization"] }
[[routes]]
path = "/metered/*"
[[routes]]
path = "/passed/*"
preflight = "pass"
[[routes]]
path = "/items/*"
methods = ["DELETE"]
require = { scope = "admin" }
[[routes]]
path = "/items/*"
"#;

/// A key and the configuration trusting it (from a local JWKS file), the file's directory kept alive.
struct Keys {
    key: SigningKey,
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Self {
        let key = portcullis_testkit::keys::key("k1");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("jwks.json"), portcullis_testkit::keys::jwks(&[&key])).unwrap();
        Self { key, dir }
    }

    fn issuer(&self) -> String {
        let jwks = format!("file://{}", self.dir.path().join("jwks.json").display());
        format!("[[issuers]]\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\njwks_uri = \"{jwks}\"\n")
    }

    fn token(&self, subject: &str, scope: &str) -> String {
        let now = portcullis_testkit::claims::now();
        let claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": subject, "scope": scope, "iat": now, "exp": now + 600,
        });
        self.key.sign_token(&claims, None).unwrap()
    }
}

/// A gRPC client of the ext_authz service of a gateway with `config`, served on a loopback port; the server stops
/// when the returned sender is dropped or sent to.
async fn grpc(config: &str) -> (AuthorizationClient<Channel>, tokio::sync::oneshot::Sender<()>) {
    let gateway = Gateway::new(Config::from_toml(config).unwrap()).unwrap();
    let (listener, address) = portcullis_testkit::net::listen().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(portcullis_gateway::serve_ext_authz(gateway, listener, async move {
        let _ = stopped.await;
    }));
    let client = AuthorizationClient::connect(format!("http://{address}")).await.unwrap();
    (client, stop)
}

/// The configuration of the gRPC tests: no upstream, only the gRPC service.
fn grpc_config(keys: &Keys) -> String {
    format!("ext_authz_grpc = \"127.0.0.1:0\"\n{}{ROUTES}", keys.issuer())
}

/// A check request as Envoy sends it by default: headers in the `headers` map (lower case, repeated ones joined
/// with commas), pseudo-headers included.
fn check(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let mut map: std::collections::HashMap<String, String> =
        headers.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
    map.insert(":method".into(), method.into());
    map.insert(":path".into(), path.into());
    map.insert(":authority".into(), "api.test".into());
    request(HttpRequest {
        id: "envoy-request-1".into(),
        method: method.into(),
        path: path.into(),
        host: "api.test".into(),
        scheme: "http".into(),
        headers: map,
        size: -1,
        protocol: "HTTP/1.1".into(),
        ..Default::default()
    })
}

/// A check request with `encode_raw_headers: true`: every header its own entry, the value in `raw_value`.
fn check_raw(method: &str, path: &str, headers: &[(&str, &[u8])]) -> CheckRequest {
    let entries = headers
        .iter()
        .map(|(key, value)| EnvoyHeader { key: (*key).to_owned(), raw_value: value.to_vec(), ..Default::default() })
        .collect();
    request(HttpRequest {
        method: method.into(),
        path: path.into(),
        host: "api.test".into(),
        header_map: Some(EnvoyHeaderMap { headers: entries }),
        size: -1,
        ..Default::default()
    })
}

fn request(http: HttpRequest) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request { http: Some(http), ..Default::default() }),
            ..Default::default()
        }),
    }
}

async fn call(client: &mut AuthorizationClient<Channel>, request: CheckRequest) -> CheckResponse {
    client.check(request).await.unwrap().into_inner()
}

/// The OK answer's headers to set (name → value, each with overwrite semantics) and its headers to remove.
fn allowed(response: &CheckResponse) -> (BTreeMap<String, String>, Vec<String>) {
    assert_eq!(response.status.as_ref().map(|s| s.code), Some(0), "{response:?}");
    let Some(HttpResponse::OkResponse(OkHttpResponse { headers, headers_to_remove, .. })) = &response.http_response
    else {
        panic!("not an OK response: {response:?}");
    };
    let set = headers
        .iter()
        .map(|option| {
            assert_eq!(option.append_action, HeaderAppendAction::OverwriteIfExistsOrAdd as i32, "{option:?}");
            let header = option.header.as_ref().unwrap();
            (header.key.clone(), header.value.clone())
        })
        .collect();
    (set, headers_to_remove.clone())
}

/// A refusal: the gRPC code, the HTTP status, the headers (lower-case names) and the body as JSON.
struct Refused {
    code: i32,
    status: i32,
    headers: BTreeMap<String, String>,
    body: Value,
}

fn refused(response: &CheckResponse) -> Refused {
    let Some(HttpResponse::DeniedResponse(denied)) = &response.http_response else {
        panic!("not a denied response: {response:?}");
    };
    let headers = denied
        .headers
        .iter()
        .filter_map(|option| option.header.as_ref())
        .map(|header| (header.key.to_ascii_lowercase(), header.value.clone()))
        .collect();
    Refused {
        code: response.status.as_ref().map_or(-1, |s| s.code),
        status: denied.status.map_or(0, |s| s.code),
        headers,
        body: serde_json::from_str(&denied.body).unwrap_or(Value::Null),
    }
}

#[tokio::test]
async fn an_allowed_check_sets_the_claim_headers_and_removes_the_rest() {
    let keys = Keys::new();
    let (mut client, _stop) = grpc(&grpc_config(&keys)).await;
    let token = keys.token("alice", "read");
    let bearer = format!("Bearer {token}");
    let response = call(&mut client, check("GET", "/api/x", &[("authorization", &bearer)])).await;
    let (set, removed) = allowed(&response);
    assert_eq!(set.get("x-auth-subject").map(String::as_str), Some("alice"));
    assert_eq!(set.get("x-auth-scope").map(String::as_str), Some("read"));
    assert_eq!(set.get("x-auth-issuer").map(String::as_str), Some(ISSUER));
    assert!(removed.contains(&"authorization".to_owned()), "{removed:?}");
    // The token has no permissions claim: the managed header is removed, so no client copy remains.
    assert!(removed.contains(&"x-auth-permissions".to_owned()), "{removed:?}");
    for name in set.keys() {
        assert!(!removed.contains(name), "{name} is both set and removed");
    }
    // A public route: no token read, every managed header removed, nothing set.
    let response = call(&mut client, check("GET", "/public/page", &[])).await;
    let (set, removed) = allowed(&response);
    assert!(set.is_empty(), "{set:?}");
    for name in ["x-auth-subject", "x-auth-scope", "x-auth-issuer", "x-auth-permissions", "authorization"] {
        assert!(removed.contains(&name.to_owned()), "{name} not removed: {removed:?}");
    }
}

#[tokio::test]
async fn the_query_is_split_off_the_path_before_routing() {
    let keys = Keys::new();
    let (mut client, _stop) = grpc(&grpc_config(&keys)).await;
    let bearer = format!("Bearer {}", keys.token("alice", "read"));
    let response = call(&mut client, check("GET", "/api/x?q=1&r=/admin", &[("authorization", &bearer)])).await;
    let (set, _) = allowed(&response);
    assert_eq!(set.get("x-auth-subject").map(String::as_str), Some("alice"));
    // The query does not make /public/… anything else, and /admin in a query is no admin path.
    let response = call(&mut client, check("GET", "/public/x?/api/x", &[])).await;
    allowed(&response);
    let response = call(&mut client, check("GET", "/admin/x?scope=read", &[("authorization", &bearer)])).await;
    assert_eq!(refused(&response).status, 403);
}

#[tokio::test]
async fn refusals_carry_the_status_challenge_and_body_the_proxy_answers() {
    let keys = Keys::new();
    let (mut client, _stop) = grpc(&grpc_config(&keys)).await;

    let missing = refused(&call(&mut client, check("GET", "/api/x", &[])).await);
    assert_eq!((missing.code, missing.status), (16, 401));
    assert_eq!(missing.headers.get("www-authenticate").map(String::as_str), Some("Bearer realm=\"api\""));
    assert_eq!(missing.headers.get("content-type").map(String::as_str), Some("application/json"));
    assert_eq!(missing.headers.get("x-request-id").map(String::as_str), Some("envoy-request-1"));
    assert_eq!(missing.body["reason"], "token_missing", "{}", missing.body);

    let bad = refused(&call(&mut client, check("GET", "/api/x", &[("authorization", "Bearer a.b.c")])).await);
    assert_eq!((bad.code, bad.status), (16, 401));
    assert!(bad.headers["www-authenticate"].contains("error=\"invalid_token\""), "{:?}", bad.headers);

    let other_key = portcullis_testkit::keys::key("k1");
    let now = portcullis_testkit::claims::now();
    let forged = other_key
        .sign_token(&json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "eve", "scope": "admin", "exp": now + 60}), None)
        .unwrap();
    let bearer = format!("Bearer {forged}");
    let forged = refused(&call(&mut client, check("GET", "/admin/x", &[("authorization", &bearer)])).await);
    assert_eq!((forged.code, forged.status), (16, 401), "{}", forged.body);

    let bearer = format!("Bearer {}", keys.token("alice", "read"));
    let scope = refused(&call(&mut client, check("GET", "/admin/x", &[("authorization", &bearer)])).await);
    assert_eq!((scope.code, scope.status), (7, 403));
    assert!(scope.headers["www-authenticate"].contains("error=\"insufficient_scope\""), "{:?}", scope.headers);
    assert_eq!(scope.body["error"], "insufficient_scope");

    let no_route = refused(&call(&mut client, check("GET", "/nowhere", &[("authorization", &bearer)])).await);
    assert_eq!((no_route.code, no_route.status), (7, 404));
    assert_eq!(no_route.body["reason"], "no_route");

    let method = refused(&call(&mut client, check("GET", "/write/x", &[("authorization", &bearer)])).await);
    assert_eq!(method.status, 405);
    assert_eq!(method.headers.get("allow").map(String::as_str), Some("POST"));
}

#[tokio::test]
async fn keys_that_cannot_be_fetched_are_a_503() {
    let port = portcullis_testkit::net::free_port();
    let config = format!(
        "ext_authz_grpc = \"127.0.0.1:0\"\n[[issuers]]\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\n\
         jwks_uri = \"http://127.0.0.1:{port}/jwks.json\"\n{ROUTES}"
    );
    let (mut client, _stop) = grpc(&config).await;
    let bearer = format!("Bearer {}", Keys::new().token("alice", "read"));
    let unavailable = refused(&call(&mut client, check("GET", "/api/x", &[("authorization", &bearer)])).await);
    assert_eq!((unavailable.code, unavailable.status), (7, 503), "{}", unavailable.body);
    assert_eq!(unavailable.body["reason"], "keys_unavailable");
}

#[tokio::test]
async fn targets_an_upstream_could_read_differently_are_refused() {
    let keys = Keys::new();
    let (mut client, _stop) = grpc(&grpc_config(&keys)).await;
    for target in [
        "/public/..%2Fapi/x",
        "/public/%2e%2e/admin/x",
        "/public/../admin/x",
        "//public/x",
        "/public//x",
        "/public/x%00",
        "/public/x;a=b",
        "/public/%61dmin",
        "/public/x\\y",
        "public/x",
        "/public/x#frag",
    ] {
        let response = refused(&call(&mut client, check("GET", target, &[])).await);
        assert_eq!(response.status, 400, "{target}: {}", response.body);
        assert_eq!(response.code, 7, "{target}");
        let reason = response.body["reason"].as_str().unwrap_or_default().to_owned();
        assert!(reason == "target_invalid" || reason == "target_not_canonical", "{target}: {reason}");
    }
    // A respelling every upstream reads the same passes.
    allowed(&call(&mut client, check("GET", "/public/%40me", &[])).await);
    // A method that is not one, and a check request without the HTTP request.
    assert_eq!(refused(&call(&mut client, check("G T", "/public/x", &[])).await).status, 400);
    let empty = refused(&call(&mut client, CheckRequest::default()).await);
    assert_eq!((empty.status, empty.body["reason"].as_str()), (400, Some("front_headers_invalid")));
}

#[tokio::test]
async fn two_authorization_values_are_refused_in_either_header_form() {
    let keys = Keys::new();
    let (mut client, _stop) = grpc(&grpc_config(&keys)).await;
    let token = keys.token("alice", "read");
    // Envoy joins repeated headers with a comma in the `headers` map.
    let joined = format!("Bearer {token},Bearer {token}");
    let response = refused(&call(&mut client, check("GET", "/api/x", &[("authorization", &joined)])).await);
    assert_eq!(response.status, 400, "{}", response.body);
    assert_eq!(response.body["reason"], "request_invalid");
    // Kept apart in `header_map` (encode_raw_headers).
    let bearer = format!("Bearer {token}");
    let twice: [(&str, &[u8]); 2] = [("authorization", bearer.as_bytes()), ("authorization", bearer.as_bytes())];
    let response = refused(&call(&mut client, check_raw("GET", "/api/x", &twice)).await);
    assert_eq!(response.status, 400, "{}", response.body);
    // Once in `header_map`: allowed, and `header_map` wins over `headers`.
    let mut once = check_raw(
        "GET",
        "/api/x",
        &[(":authority", b"api.test"), (":path", b"/api/x"), ("authorization", bearer.as_bytes())],
    );
    if let Some(http) = once.attributes.as_mut().and_then(|a| a.request.as_mut()).and_then(|r| r.http.as_mut()) {
        http.headers.insert("authorization".into(), joined.clone());
    }
    let (set, _) = allowed(&call(&mut client, once).await);
    assert_eq!(set.get("x-auth-subject").map(String::as_str), Some("alice"));
    // A value that is not valid HTTP is a refusal, not a panic.
    let broken: [(&str, &[u8]); 1] = [("x-note", b"a\r\nb")];
    let response = refused(&call(&mut client, check_raw("GET", "/public/x", &broken)).await);
    assert_eq!((response.status, response.body["reason"].as_str()), (400, Some("front_headers_invalid")));
    let response = refused(&call(&mut client, check("GET", "/public/x", &[("bad name", "x")])).await);
    assert_eq!(response.status, 400);
}

#[tokio::test]
async fn client_copies_of_managed_and_override_headers_are_removed() {
    let keys = Keys::new();
    let (mut client, _stop) = grpc(&grpc_config(&keys)).await;
    let bearer = format!("Bearer {}", keys.token("alice", "read"));
    let spoof = [
        ("authorization", bearer.as_str()),
        ("x-auth-subject", "admin"),
        ("x_auth_subject", "admin"),
        ("x-auth_scope", "admin"),
        ("x-original-url", "/admin/x"),
        ("x-http-method-override", "DELETE"),
        ("x_forwarded_for", "10.0.0.1"),
        ("x-forwarded-proto", "https"),
    ];
    let (set, removed) = allowed(&call(&mut client, check("GET", "/api/x", &spoof)).await);
    // The exact managed name is overwritten with the token's value; every other spelling is removed.
    assert_eq!(set.get("x-auth-subject").map(String::as_str), Some("alice"));
    assert_eq!(set.get("x-auth-scope").map(String::as_str), Some("read"));
    for name in ["x_auth_subject", "x-auth_scope", "x-original-url", "x-http-method-override", "x_forwarded_for"] {
        assert!(removed.contains(&name.to_owned()), "{name} not removed: {removed:?}");
    }
    // Envoy's own forwarding header in its usual spelling is left to Envoy.
    assert!(!removed.contains(&"x-forwarded-proto".to_owned()), "{removed:?}");
    // An upgrade other than WebSocket is refused.
    let h2c = refused(&call(&mut client, check("GET", "/public/x", &[("upgrade", "h2c")])).await);
    assert_eq!((h2c.status, h2c.body["reason"].as_str()), (400, Some("upgrade_refused")));
}

#[tokio::test]
async fn token_cookies_and_headers_do_not_reach_the_upstream_unless_forwarded() {
    let keys = Keys::new();
    let (mut client, _stop) = grpc(&grpc_config(&keys)).await;
    let token = keys.token("alice", "read");
    let cookies = format!("theme=dark; at={token}; lang=en");
    let (set, removed) = allowed(&call(&mut client, check("GET", "/cookie/x", &[("cookie", &cookies)])).await);
    assert_eq!(set.get("cookie").map(String::as_str), Some("theme=dark; lang=en"));
    assert_eq!(set.get("x-auth-subject").map(String::as_str), Some("alice"));
    assert!(!removed.contains(&"cookie".to_owned()));
    // The token cookie alone: the header goes.
    let only = format!("at={token}");
    let (set, removed) = allowed(&call(&mut client, check("GET", "/cookie/x", &[("cookie", &only)])).await);
    assert!(!set.contains_key("cookie"));
    assert!(removed.contains(&"cookie".to_owned()), "{removed:?}");
    // A token header, in any spelling sent.
    let (_, removed) = allowed(&call(&mut client, check("GET", "/header/x", &[("x_access_token", &token)])).await);
    assert!(removed.contains(&"x_access_token".to_owned()), "{removed:?}");
    assert!(removed.contains(&"x-access-token".to_owned()), "{removed:?}");
    // forward_authorization keeps the Authorization header.
    let bearer = format!("Bearer {token}");
    let (set, removed) = allowed(&call(&mut client, check("GET", "/forwarded/x", &[("authorization", &bearer)])).await);
    assert!(!removed.contains(&"authorization".to_owned()), "{removed:?}");
    assert_eq!(set.get("x-auth-subject").map(String::as_str), Some("alice"));
}

/// With `encode_raw_headers`, every `cookie` header (HTTP/2 sends each cookie as its own crumb) is its own entry:
/// cutting the token cookie out keeps every other cookie, joined with `; ` into one header.
#[tokio::test]
async fn cutting_the_token_cookie_out_of_separate_cookie_headers_keeps_every_other_cookie() {
    let keys = Keys::new();
    let (mut client, _stop) = grpc(&grpc_config(&keys)).await;
    let token = keys.token("alice", "read");
    let token_cookie = format!("at={token}");
    let crumbs: [(&str, &[u8]); 4] = [
        ("cookie", b"theme=dark"),
        ("cookie", token_cookie.as_bytes()),
        ("cookie", b"lang=en"),
        ("cookie", b"a=1; b=2"),
    ];
    let response = call(&mut client, check_raw("GET", "/cookie/x", &crumbs)).await;
    let (set, removed) = allowed(&response);
    assert_eq!(set.get("x-auth-subject").map(String::as_str), Some("alice"));
    assert_eq!(set.get("cookie").map(String::as_str), Some("theme=dark; lang=en; a=1; b=2"), "{removed:?}");
    let Some(HttpResponse::OkResponse(ok)) = &response.http_response else { unreachable!() };
    let cookies = ok.headers.iter().filter(|o| o.header.as_ref().is_some_and(|h| h.key == "cookie")).count();
    assert_eq!(cookies, 1, "{ok:?}");
}

#[tokio::test]
async fn a_token_cookie_behind_a_comma_is_read_and_never_passed_on() {
    // Rack 2 and Tomcat's legacy parser split cookies at `,` as well as `;`: `theme=1,at=forged` is an `at` cookie
    // to them, which must neither sit beside the checked one nor reach the upstream.
    let keys = Keys::new();
    let (mut client, _stop) = grpc(&grpc_config(&keys)).await;
    let token = keys.token("alice", "read");
    let beside = format!("theme=1,at=forged; at={token}");
    let refusal = refused(&call(&mut client, check("GET", "/cookie/x", &[("cookie", &beside)])).await);
    assert_eq!((refusal.status, refusal.body["reason"].as_str()), (400, Some("request_invalid")));
    let hidden = format!("theme=dark,at={token}; lang=en");
    let (set, removed) = allowed(&call(&mut client, check("GET", "/cookie/x", &[("cookie", &hidden)])).await);
    assert_eq!(set.get("x-auth-subject").map(String::as_str), Some("alice"));
    assert_eq!(set.get("cookie").map(String::as_str), Some("lang=en"), "{removed:?}");
}

#[tokio::test]
async fn headers_the_check_does_not_show_are_removed_in_every_spelling() {
    // Istio's `includeRequestHeadersInCheck` (Envoy's `allowed_headers`) limits what the check shows: a client's
    // `x_auth_subject` or `X-HTTP-Method-Override` is then never seen, and must be named for removal anyway.
    let keys = Keys::new();
    let (mut client, _stop) = grpc(&grpc_config(&keys)).await;
    let bearer = format!("Bearer {}", keys.token("alice", "read"));
    let (set, removed) = allowed(&call(&mut client, check("GET", "/api/x", &[("authorization", &bearer)])).await);
    assert_eq!(set.get("x-auth-subject").map(String::as_str), Some("alice"));
    for name in ["x_auth_subject", "x-auth_subject", "x_auth_scope", "x-http-method-override", "x_original_url"] {
        assert!(removed.contains(&name.to_owned()), "{name}: {removed:?}");
    }
    assert!(!removed.contains(&"x-auth-subject".to_owned()), "{removed:?}");
}

#[tokio::test]
async fn odd_check_requests_are_refusals_or_errors_never_allowances() {
    let keys = Keys::new();
    let (mut client, _stop) = grpc(&grpc_config(&keys)).await;
    let token = keys.token("alice", "admin");
    let bearer = format!("Bearer {token}");
    // The decision follows `path`, the target Envoy forwards, not a `:path` in `header_map` that says otherwise.
    let mut disagreeing =
        check_raw("GET", "/admin/x", &[(":path", b"/public/x"), ("authorization", b"Bearer not.a.token")]);
    let refusal = refused(&call(&mut client, disagreeing.clone()).await);
    assert_eq!(refusal.status, 401);
    if let Some(http) = disagreeing.attributes.as_mut().and_then(|a| a.request.as_mut()).and_then(|r| r.http.as_mut()) {
        http.path = "/public/x".into();
        http.header_map = None;
    }
    let (set, _) = allowed(&call(&mut client, disagreeing).await);
    assert!(!set.contains_key("x-auth-subject"), "a public route: {set:?}");
    // Bytes that are not UTF-8 after the token: an unreadable Authorization header.
    let mut obs_text = bearer.clone().into_bytes();
    obs_text.extend_from_slice(b"\xff\xfe");
    let refusal = refused(&call(&mut client, check_raw("GET", "/admin/x", &[("authorization", &obs_text)])).await);
    assert_eq!((refusal.status, refusal.body["reason"].as_str()), (400, Some("request_invalid")), "{}", refusal.body);
    // No HTTP request described: 400, not an allowance.
    let empty = CheckRequest { attributes: Some(AttributeContext::default()) };
    let refusal = refused(&call(&mut client, empty).await);
    assert_eq!((refusal.status, refusal.body["reason"].as_str()), (400, Some("front_headers_invalid")));
    // A check larger than the service reads (Envoy with a large `with_request_body`): a gRPC error, which Envoy
    // with `failure_mode_allow: false` turns into a refusal.
    let mut huge = check("GET", "/admin/x", &[("authorization", &bearer)]);
    if let Some(http) = huge.attributes.as_mut().and_then(|a| a.request.as_mut()).and_then(|r| r.http.as_mut()) {
        http.raw_body = vec![b'a'; 5 << 20];
    }
    assert!(client.check(huge).await.is_err());
}

#[tokio::test]
async fn preflights_are_answered_by_envoy_directly() {
    let keys = Keys::new();
    let (mut client, _stop) = grpc(&grpc_config(&keys)).await;
    let preflight = [("origin", "https://app.test"), ("access-control-request-method", "GET")];
    let answer = refused(&call(&mut client, check("OPTIONS", "/cors/x", &preflight)).await);
    assert_eq!((answer.code, answer.status), (7, 204));
    assert_eq!(answer.headers.get("access-control-allow-origin").map(String::as_str), Some("https://app.test"));
    let other = [("origin", "https://evil.test"), ("access-control-request-method", "GET")];
    let refusal = refused(&call(&mut client, check("OPTIONS", "/cors/x", &other)).await);
    assert_eq!((refusal.status, refusal.body["reason"].as_str()), (403, Some("preflight_refused")));
    // With a body, it is an ordinary request: a token is needed.
    let mut with_body = check("OPTIONS", "/cors/x", &preflight);
    if let Some(http) = with_body.attributes.as_mut().and_then(|a| a.request.as_mut()).and_then(|r| r.http.as_mut()) {
        http.size = 12;
    }
    assert_eq!(refused(&call(&mut client, with_body).await).status, 401);
    // A refusal on a CORS route carries the CORS headers for an allowed origin, as the proxy's does.
    let cors = refused(&call(&mut client, check("GET", "/cors/x", &[("origin", "https://app.test")])).await);
    assert_eq!(cors.status, 401);
    assert_eq!(cors.headers.get("access-control-allow-origin").map(String::as_str), Some("https://app.test"));
}

#[tokio::test]
async fn a_passed_preflight_whose_body_envoy_buffered_needs_a_token() {
    // Envoy describes a chunked or HTTP/2 body neither in `size` nor in a header: only the bytes it buffered
    // (`with_request_body`) show it. A preflight never has a body, so such a request is an ordinary one.
    let keys = Keys::new();
    let (mut client, _stop) = grpc(&grpc_config(&keys)).await;
    let preflight = [("origin", "https://app.test"), ("access-control-request-method", "DELETE")];
    let passed = call(&mut client, check("OPTIONS", "/passed/x", &preflight)).await;
    let (set, _) = allowed(&passed);
    assert!(!set.contains_key("x-auth-subject"), "{passed:?}");
    for buffered in [
        HttpRequest { raw_body: b"smuggled".to_vec(), size: 0, ..Default::default() },
        HttpRequest { body: "smuggled".into(), size: 0, ..Default::default() },
    ] {
        let mut with_body = check("OPTIONS", "/passed/x", &preflight);
        let http =
            with_body.attributes.as_mut().and_then(|a| a.request.as_mut()).and_then(|r| r.http.as_mut()).unwrap();
        http.size = buffered.size;
        http.body = buffered.body;
        http.raw_body = buffered.raw_body;
        let refusal = refused(&call(&mut client, with_body).await);
        assert_eq!((refusal.status, refusal.body["reason"].as_str()), (401, Some("token_missing")));
    }
}

#[tokio::test]
async fn methods_not_in_upper_case_are_refused_in_both_modes() {
    // Envoy passes an HTTP/2 `:method` of `delete` on as it is, and some upstreams upper-case the method before
    // routing: `delete` must not slip past the DELETE route to the route for every other method.
    let keys = Keys::new();
    let (mut client, _stop) = grpc(&grpc_config(&keys)).await;
    let bearer = format!("Bearer {}", keys.token("alice", "read"));
    let upper = refused(&call(&mut client, check("DELETE", "/items/x", &[("authorization", &bearer)])).await);
    assert_eq!(upper.status, 403);
    for method in ["delete", "Delete", "dELETE"] {
        let lower = call(&mut client, check(method, "/items/x", &[("authorization", &bearer)])).await;
        let refusal = refused(&lower);
        assert_eq!((refusal.status, refusal.body["reason"].as_str()), (400, Some("front_headers_invalid")), "{method}");
    }
    let base = envoy_http(&keys).await;
    let http = reqwest::Client::new();
    for method in ["delete", "Delete"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response =
            http.request(method.clone(), format!("{base}/ext-authz/items/x")).header("authorization", &bearer);
        let response = response.send().await.unwrap();
        assert_eq!(response.status(), 400, "{method}");
    }
    let upper = http.delete(format!("{base}/ext-authz/items/x")).header("authorization", &bearer);
    assert_eq!(upper.send().await.unwrap().status(), 403);
}

#[tokio::test]
async fn envoy_http_mode_removes_the_underscore_spellings_of_claim_headers_it_cannot_see() {
    // Envoy's HTTP service sends only the headers it is told to include, so the gateway never sees a client's
    // `x_auth_subject`; with Envoy's default `headers_with_underscores_action` (ALLOW) it reaches the upstream,
    // where CGI-style frameworks read it as X-Auth-Subject. Every spelling is named for removal.
    let keys = Keys::new();
    let base = envoy_http(&keys).await;
    let token = keys.token("alice", "read");
    let ok = reqwest::Client::new().get(format!("{base}/ext-authz/api/x")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-auth-subject"], "alice");
    let removed = ok.headers()["x-envoy-auth-headers-to-remove"].to_str().unwrap().to_owned();
    let removed: Vec<&str> = removed.split(',').collect();
    for spelling in ["x_auth_subject", "x-auth_subject", "x_auth-subject", "x_auth_permissions", "x-auth_permissions"] {
        assert!(removed.contains(&spelling), "{spelling}: {removed:?}");
    }
    assert!(!removed.contains(&"x-auth-subject"), "{removed:?}");
    // So are the path and method override headers, which the check does not show either.
    for name in
        ["x-http-method-override", "x_http_method_override", "x-original-url", "x-original_uri", "x-rewrite-url"]
    {
        assert!(removed.contains(&name), "{name}: {removed:?}");
    }
}

/// The value of the sample `name` (with its labels, as rendered) in the Prometheus text `text`, 0 when absent.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn checks_are_counted_with_the_proxys_metrics_and_timed() {
    let handle = portcullis_gateway::install_metrics().unwrap();
    let keys = Keys::new();
    let (mut client, _stop) = grpc(&grpc_config(&keys)).await;
    let before = handle.render();
    let checks_before = sample(&before, "portcullis_ext_authz_check_seconds_count");
    let bearer = format!("Bearer {}", keys.token("alice", "read"));
    for _ in 0..3 {
        allowed(&call(&mut client, check("GET", "/metered/x", &[("authorization", &bearer)])).await);
    }
    refused(&call(&mut client, check("GET", "/metered/x", &[])).await);
    let after = handle.render();
    let allowed_series = r#"portcullis_gateway_requests_total{route="/metered/*",outcome="allowed",reason="none"}"#;
    let denied_series =
        r#"portcullis_gateway_requests_total{route="/metered/*",outcome="denied",reason="token_missing"}"#;
    assert_eq!(sample(&after, allowed_series), 3.0, "{after}");
    assert_eq!(sample(&after, denied_series), 1.0, "{after}");
    assert!(sample(&after, "portcullis_ext_authz_check_seconds_count") >= checks_before + 4.0, "{after}");
    // Fine buckets: 5 µs and 50 µs are bucket bounds.
    assert!(after.contains(r#"portcullis_ext_authz_check_seconds_bucket{le="0.000005"}"#), "{after}");
    assert!(after.contains(r#"portcullis_ext_authz_check_seconds_bucket{le="0.00005"}"#), "{after}");
    assert!(after.contains("# HELP portcullis_ext_authz_check_seconds"), "{after}");
}

#[tokio::test]
async fn a_reload_applies_to_the_next_check_and_the_service_stops_with_its_signal() {
    let keys = Keys::new();
    let config = grpc_config(&keys);
    let gateway = Gateway::new(Config::from_toml(&config).unwrap()).unwrap();
    let (listener, address) = portcullis_testkit::net::listen().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(portcullis_gateway::serve_ext_authz(gateway.clone(), listener, async move {
        let _ = stopped.await;
    }));
    let mut client = AuthorizationClient::connect(format!("http://{address}")).await.unwrap();
    assert_eq!(refused(&call(&mut client, check("GET", "/later/x", &[])).await).status, 404);
    let reloaded = format!("{config}[[routes]]\npath = \"/later/*\"\npublic = true\n");
    gateway.reload(Config::from_toml(&reloaded).unwrap()).unwrap();
    allowed(&call(&mut client, check("GET", "/later/x", &[])).await);
    // The gRPC address changes only on restart.
    let moved = reloaded.replace("ext_authz_grpc = \"127.0.0.1:0\"", "ext_authz_grpc = \"127.0.0.1:9\"");
    let refused_reload = gateway.reload(Config::from_toml(&moved).unwrap()).unwrap_err();
    assert_eq!(refused_reload.errors()[0].key, "ext_authz_grpc");
    allowed(&call(&mut client, check("GET", "/later/x", &[])).await);
    stop.send(()).unwrap();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), served).await;
    assert!(matches!(ended, Ok(Ok(Ok(())))), "{ended:?}");
    let refused_now = tokio::net::TcpStream::connect(&address).await;
    assert!(refused_now.is_err(), "the listener is closed");
}

/// A gateway in Envoy's HTTP mode with `envoy_path_prefix = "/ext-authz"`; its base URL.
async fn envoy_http(keys: &Keys) -> String {
    let config = format!("forward_auth = \"envoy\"\nenvoy_path_prefix = \"/ext-authz\"\n{}{ROUTES}", keys.issuer());
    let gateway = Gateway::new(Config::from_toml(&config).unwrap()).unwrap();
    let (listener, address) = portcullis_testkit::net::listen().await;
    tokio::spawn(portcullis_gateway::serve(gateway, listener, None, std::future::pending()));
    format!("http://{address}")
}

/// Envoy's HTTP mode lets a request through on 200 only: a preflight the route answers gets its 204 with the CORS
/// headers, which Envoy hands to the client. A check carrying a body (the byte `with_request_body` buffered) is no
/// preflight, so a `preflight = "pass"` route wants a token for it.
#[tokio::test]
async fn envoy_http_mode_answers_preflights_and_counts_the_checks_body() {
    let keys = Keys::new();
    let base = envoy_http(&keys).await;
    let client = reqwest::Client::new();
    let options = |path: &str, method: &str| {
        client
            .request(reqwest::Method::OPTIONS, format!("{base}/ext-authz{path}"))
            .header("origin", "https://app.test")
            .header("access-control-request-method", method)
    };
    let answered = options("/cors/x", "GET").send().await.unwrap();
    assert_eq!(answered.status(), 204);
    assert_eq!(answered.headers()["access-control-allow-origin"], "https://app.test");
    assert!(answered.headers().contains_key("vary"), "{:?}", answered.headers());
    let other = options("/cors/x", "DELETE").send().await.unwrap();
    assert_eq!(other.status(), 403);
    let passed = options("/passed/x", "DELETE").send().await.unwrap();
    assert_eq!(passed.status(), 200);
    let bodied = options("/passed/x", "DELETE").body("h").send().await.unwrap();
    assert_eq!(bodied.status(), 401);
}

#[tokio::test]
async fn envoy_http_mode_reads_the_checked_request_itself() {
    let keys = Keys::new();
    let base = envoy_http(&keys).await;
    let client = reqwest::Client::new();
    let token = keys.token("alice", "read");
    // Envoy appends the original path and query to path_prefix and keeps the method.
    let ok = client.get(format!("{base}/ext-authz/api/x?q=1")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-auth-subject"], "alice");
    let removed = ok.headers()["x-envoy-auth-headers-to-remove"].to_str().unwrap().to_owned();
    let removed: Vec<&str> = removed.split(',').collect();
    assert!(removed.contains(&"authorization"), "{removed:?}");
    assert!(removed.contains(&"x-auth-permissions"), "{removed:?}");
    assert!(!removed.contains(&"x-auth-subject"), "{removed:?}");
    // The method is the original one: a POST-only route.
    let post = client.post(format!("{base}/ext-authz/write/x")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(post.status(), 200);
    let get = client.get(format!("{base}/ext-authz/write/x")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(get.status(), 405);
    // Refusals keep their status, challenge and body.
    let missing = client.get(format!("{base}/ext-authz/api/x")).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer realm=\"api\"");
    let scope = client.get(format!("{base}/ext-authz/admin/x")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(scope.status(), 403);
    let body: Value = scope.json().await.unwrap();
    assert_eq!(body["error"], "insufficient_scope");
    let nowhere = client.get(format!("{base}/ext-authz/nowhere")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(nowhere.status(), 404);
    // Without the prefix, or with it as a mere prefix of a segment: refused.
    for target in ["/api/x", "/ext-authzapi/x", "/ext-authz"] {
        let response = client.get(format!("{base}{target}")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), 400, "{target}");
    }
    // A target the upstream could read differently, and a client copy of a claim header: refused.
    let encoded = client.get(format!("{base}/ext-authz/public/..%2Fapi")).send().await.unwrap();
    assert_eq!(encoded.status(), 400);
    let doubled = client.get(format!("{base}/ext-authz//public/x")).send().await.unwrap();
    assert_eq!(doubled.status(), 400);
    let spoof =
        client.get(format!("{base}/ext-authz/public/x")).header("x_auth_subject", "admin").send().await.unwrap();
    assert_eq!(spoof.status(), 400);
    let body: Value = spoof.json().await.unwrap();
    assert_eq!(body["reason"], "managed_header_sent");
    // A token cookie: the other cookies go back in `cookie`.
    let cookie = client
        .get(format!("{base}/ext-authz/cookie/x"))
        .header("cookie", format!("theme=dark; at={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(cookie.status(), 200);
    assert_eq!(cookie.headers()["cookie"], "theme=dark");
}

#[test]
fn envoy_path_prefix_is_checked() {
    let keys = Keys::new();
    let errors = |extra: &str| match Config::from_toml(&format!("{extra}\n{}", keys.issuer())) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.errors().iter().map(|e| format!("{}: {}", e.key, e.message)).collect(),
    };
    assert_eq!(errors("forward_auth = \"envoy\"\nenvoy_path_prefix = \"/ext-authz\""), Vec::<String>::new());
    for bad in ["ext-authz", "/ext-authz/", "/", "/a/../b", "/a?b"] {
        let found = errors(&format!("forward_auth = \"envoy\"\nenvoy_path_prefix = \"{bad}\""));
        assert!(found.iter().any(|e| e.starts_with("envoy_path_prefix: must be a path")), "{bad}: {found:?}");
    }
    let found = errors("forward_auth = \"nginx\"\nenvoy_path_prefix = \"/ext-authz\"");
    assert!(found.iter().any(|e| e.contains("is used only with forward_auth = \"envoy\"")), "{found:?}");
    // Without upstream or forward_auth, only the gRPC service makes a complete gateway.
    assert!(errors("").iter().any(|e| e.starts_with("upstream: proxy mode needs an upstream")));
    assert_eq!(errors("ext_authz_grpc = \"127.0.0.1:9001\""), Vec::<String>::new());
    let route = errors("ext_authz_grpc = \"127.0.0.1:9001\"\n[[routes]]\npath = \"/auth\"\nforward_auth = \"envoy\"");
    assert!(route.iter().any(|e| e.starts_with("routes[0].forward_auth: Envoy's HTTP ext_authz")), "{route:?}");
    let same = errors("ext_authz_grpc = \"127.0.0.1:9001\"\nlisten = \"127.0.0.1:9001\"");
    assert!(same.iter().any(|e| e.starts_with("ext_authz_grpc: 127.0.0.1:9001 is already the listen address")));
}

/// The gRPC service of a gateway with `config` on a loopback port: its address, and a sender that stops it.
async fn grpc_listener(config: &str) -> (String, tokio::sync::oneshot::Sender<()>) {
    let gateway = Gateway::new(Config::from_toml(config).unwrap()).unwrap();
    let (listener, address) = portcullis_testkit::net::listen().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(portcullis_gateway::serve_ext_authz(gateway, listener, async move {
        let _ = stopped.await;
    }));
    (address.to_string(), stop)
}

/// A task that connects a new gRPC client to `address` and sends one check of a public path.
fn check_on_new_connection(address: &str) -> tokio::task::JoinHandle<CheckResponse> {
    let url = format!("http://{address}");
    tokio::spawn(async move {
        let mut client = AuthorizationClient::connect(url).await.unwrap();
        call(&mut client, check("GET", "/public/x", &[])).await
    })
}

/// The gRPC listener has the gateway's connection limit: with `max_connections = 1`, a second client is not
/// served while the first holds its connection open, and is served once the first closes it.
#[tokio::test]
async fn the_grpc_listener_serves_no_more_than_max_connections() {
    let keys = Keys::new();
    let (address, _stop) = grpc_listener(&format!("{}[limits]\nmax_connections = 1\n", grpc_config(&keys))).await;
    let mut first = AuthorizationClient::connect(format!("http://{address}")).await.unwrap();
    allowed(&call(&mut first, check("GET", "/public/x", &[])).await);

    let mut second = check_on_new_connection(&address);
    let early = tokio::time::timeout(std::time::Duration::from_millis(300), &mut second).await;
    assert!(early.is_err(), "a second connection was served beyond max_connections = 1: {early:?}");

    drop(first);
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), second)
        .await
        .expect("the second connection was not served once the first closed")
        .unwrap();
    allowed(&answer);
}

/// An idle gRPC connection is closed after `header_read_timeout_secs` (a client such as Envoy reconnects), so
/// an idle peer cannot hold a connection slot: with one slot, a second client is served while the first stays
/// connected but idle.
#[tokio::test]
async fn idle_grpc_connections_are_closed_and_free_their_slot() {
    let keys = Keys::new();
    let limits = "[limits]\nmax_connections = 1\nheader_read_timeout_secs = 1\n";
    let (address, _stop) = grpc_listener(&format!("{}{limits}", grpc_config(&keys))).await;
    let mut first = AuthorizationClient::connect(format!("http://{address}")).await.unwrap();
    allowed(&call(&mut first, check("GET", "/public/x", &[])).await);

    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), check_on_new_connection(&address))
        .await
        .expect("the idle connection kept the only slot")
        .unwrap();
    allowed(&answer);
    // The first client is still usable: its channel connects again.
    allowed(&call(&mut first, check("GET", "/public/x", &[])).await);
}

/// A raw HTTP/2 connection to `address` that opens one `Check` stream (its headers, never its message) and then
/// acknowledges every SETTINGS and PING the server sends; returns once the server has closed the connection.
async fn open_check_stream_and_stall(address: &str) {
    open_stream_and_stall(address, "/envoy.service.auth.v3.Authorization/Check").await;
}

/// A raw HTTP/2 connection to `address` that opens one POST stream to `path` (its headers, never its body) and
/// then acknowledges every SETTINGS and PING the server sends; returns once the server has closed the connection.
async fn open_stream_and_stall(address: &str, path: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    // HPACK, no Huffman: :method POST, :scheme http (static entries), :path, :authority and content-type as
    // literals with indexed names, te as a literal with a new name.
    let path = path.as_bytes();
    let mut block = vec![0x83, 0x86, 0x04, u8::try_from(path.len()).unwrap()];
    block.extend_from_slice(path);
    block.extend_from_slice(b"\x01\x01a\x0f\x10\x10application/grpc\x00\x02te\x08trailers");
    // A HEADERS frame on stream 1 with END_HEADERS but not END_STREAM: the request's message is still to come.
    let mut frame = vec![0, 0, u8::try_from(block.len()).unwrap(), 0x01, 0x04, 0, 0, 0, 1];
    frame.extend_from_slice(&block);
    stream.write_all(&frame).await.unwrap();
    let mut head = [0u8; 9];
    while stream.read_exact(&mut head).await.is_ok() {
        let length = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let mut payload = vec![0u8; length];
        if stream.read_exact(&mut payload).await.is_err() {
            break;
        }
        let (kind, ack) = (head[3], head[4] & 1 == 1);
        if kind == 4 && !ack {
            let _ = stream.write_all(b"\x00\x00\x00\x04\x01\x00\x00\x00\x00").await;
        }
        if kind == 6 && !ack {
            let mut pong = b"\x00\x00\x08\x06\x01\x00\x00\x00\x00".to_vec();
            pong.extend_from_slice(&payload);
            let _ = stream.write_all(&pong).await;
        }
    }
}

/// A client that opens a `Check` stream and never sends its message (answering every ping, so it looks alive)
/// cannot hold a connection slot: the call fails after `header_read_timeout_secs`, the connection is then idle
/// and closed, and with one slot the next client is served.
#[tokio::test]
async fn a_check_whose_message_never_arrives_does_not_hold_a_connection_slot() {
    let keys = Keys::new();
    let limits = "[limits]\nmax_connections = 1\nheader_read_timeout_secs = 1\n";
    let (address, _stop) = grpc_listener(&format!("{}{limits}", grpc_config(&keys))).await;
    let stalled = tokio::time::timeout(std::time::Duration::from_secs(10), open_check_stream_and_stall(&address));
    assert!(stalled.await.is_ok(), "a stalled Check stream kept its connection open");
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), check_on_new_connection(&address))
        .await
        .expect("the stalled connection kept the only slot")
        .unwrap();
    allowed(&answer);
}

/// The gRPC listener speaks HTTP/2 only: an HTTP/1.1 request (a health probe or a client pointed at the wrong
/// port) gets no HTTP/1.1 answer, so nothing reads a `200 OK` from it, and the connection is closed.
#[tokio::test]
async fn the_grpc_listener_gives_http1_requests_no_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let keys = Keys::new();
    let (address, _stop) = grpc_listener(&grpc_config(&keys)).await;
    for request in [
        "GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_owned(),
        "POST /envoy.service.auth.v3.Authorization/Check HTTP/1.1\r\nHost: a\r\ncontent-type: application/grpc\r\n\
         te: trailers\r\ncontent-length: 5\r\nConnection: close\r\n\r\n\0\0\0\0\0"
            .to_owned(),
    ] {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut seen)).await;
        assert!(read.is_ok(), "the connection stayed open");
        assert!(!seen.starts_with(b"HTTP/1"), "{request:?} was answered: {}", String::from_utf8_lossy(&seen));
    }
}

/// Sends `message` (gRPC length-prefixed frames, as bytes) as the body of one `Check` call over HTTP/2 to
/// `address`; returns the HTTP status, the `grpc-status` (from the headers or the trailers) and the body's length.
async fn raw_check(address: &str, message: &'static [u8]) -> (u16, Option<String>, usize) {
    use hyper::body::Body as _;
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = http::Request::post(format!("http://{address}/envoy.service.auth.v3.Authorization/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(axum::body::Body::from(message))
        .unwrap();
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("no answer in 10 s")
        .unwrap();
    let status = response.status().as_u16();
    let mut grpc_status = response.headers().get("grpc-status").map(|v| v.to_str().unwrap().to_owned());
    let mut body = response.into_body();
    let mut length = 0;
    while let Some(frame) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.unwrap();
        if let Some(data) = frame.data_ref() {
            length += data.len();
        }
        if let Some(trailers) = frame.trailers_ref() {
            grpc_status = grpc_status.or_else(|| trailers.get("grpc-status").map(|v| v.to_str().unwrap().to_owned()));
        }
    }
    (status, grpc_status, length)
}

/// Malformed calls get a gRPC error status and no message, which Envoy (`failure_mode_allow: false`) turns into a
/// refusal: a compressed message (no compression is offered), a length prefix beyond the message size limit, a
/// message cut short, bytes that are no `CheckRequest`, and no message at all.
#[tokio::test]
async fn malformed_grpc_calls_get_an_error_status_and_no_message() {
    let keys = Keys::new();
    let (address, _stop) = grpc_listener(&grpc_config(&keys)).await;
    let cases: [(&str, &'static [u8]); 5] = [
        ("compressed", b"\x01\x00\x00\x00\x02\x0a\x00"),
        ("oversized", b"\x00\x7f\xff\xff\xff"),
        ("truncated", b"\x00\x00\x00\x00\x0a\x0a\x03"),
        ("not protobuf", b"\x00\x00\x00\x00\x03\xff\xff\xff"),
        ("empty", b""),
    ];
    for (what, message) in cases {
        let (status, grpc_status, length) = raw_check(&address, message).await;
        assert_eq!(status, 200, "{what}");
        let code = grpc_status.unwrap_or_else(|| panic!("{what}: no grpc-status"));
        assert_ne!(code, "0", "{what}: the call succeeded");
        assert_eq!(length, 0, "{what}: a message came back");
    }
    // The same call with a well-formed (empty) CheckRequest is answered: a message and status 0 (a refusal inside).
    let (status, grpc_status, length) = raw_check(&address, b"\x00\x00\x00\x00\x00").await;
    assert_eq!((status, grpc_status.as_deref()), (200, Some("0")));
    assert!(length > 5, "{length}");
}

/// One connection cannot open unbounded streams: the gRPC listener's first SETTINGS frame limits concurrent
/// streams (each of which, stalled, ends after `header_read_timeout_secs`).
#[tokio::test]
async fn the_grpc_listener_bounds_concurrent_streams_per_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let keys = Keys::new();
    let (address, _stop) = grpc_listener(&grpc_config(&keys)).await;
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    let mut head = [0u8; 9];
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_exact(&mut head)).await.unwrap().unwrap();
    assert_eq!((head[3], head[4] & 1), (4, 0), "the server's first frame is not its SETTINGS: {head:?}");
    let length = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).await.unwrap();
    let limit = payload
        .chunks_exact(6)
        .find(|setting| setting[..2] == [0, 3])
        .map(|setting| u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]));
    let limit = limit.expect("no SETTINGS_MAX_CONCURRENT_STREAMS: streams are unbounded");
    assert!((1..=1000).contains(&limit), "{limit} concurrent streams per connection");
}

/// In Envoy's HTTP mode the check is answered without waiting for its body, so a check stream whose body never
/// arrives holds no connection slot either: the connection goes idle and is closed, and the next client is served.
#[tokio::test]
async fn envoy_http_mode_answers_a_check_whose_body_never_arrives() {
    let keys = Keys::new();
    let config = format!(
        "forward_auth = \"envoy\"\nenvoy_path_prefix = \"/ext-authz\"\n{}{ROUTES}\
         [limits]\nmax_connections = 1\nheader_read_timeout_secs = 1\n",
        keys.issuer()
    );
    let gateway = Gateway::new(Config::from_toml(&config).unwrap()).unwrap();
    let (listener, address) = portcullis_testkit::net::listen().await;
    tokio::spawn(portcullis_gateway::serve(gateway, listener, None, std::future::pending()));
    let address = address.to_string();
    let stalled =
        tokio::time::timeout(std::time::Duration::from_secs(10), open_stream_and_stall(&address, "/ext-authz/api/x"));
    assert!(stalled.await.is_ok(), "a stalled check stream kept its connection open");
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        reqwest::get(format!("http://{address}/ext-authz/public/x")),
    )
    .await
    .expect("the stalled connection kept the only slot")
    .unwrap();
    assert_eq!(response.status(), 200);
}
