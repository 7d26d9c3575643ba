//! What an MCP server behind the gateway needs: the protected-resource metadata (RFC 9728) answered by the gateway
//! itself at both well-known paths, the challenges that name it (with the route's scope on 403), the MCP preset,
//! and Server-Sent Events streamed from a real upstream without buffering.
#![allow(clippy::unwrap_used)]

#[allow(unused_imports)]
mod support;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::get;
use portcullis::signing::SigningKey;
use portcullis_gateway::{Config, Gateway};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{listen, upstream};

const ISSUER: &str = "https://issuer.test/";
const PUBLIC: &str = "https://api.example.test";
const RESOURCE: &str = "https://api.example.test/mcp";
const METADATA_URL: &str = "https://api.example.test/.well-known/oauth-protected-resource/mcp";

/// A signing key published in a local JWKS file (its directory kept alive), and the issuer table trusting it.
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
        format!("[[issuers]]\nissuer = \"{ISSUER}\"\naudiences = [\"{RESOURCE}\"]\njwks_uri = \"{jwks}\"\n")
    }

    fn token(&self, audience: &str, scope: &str) -> String {
        let now = portcullis_testkit::claims::now();
        let claims =
            json!({"iss": ISSUER, "aud": audience, "sub": "alice", "scope": scope, "iat": now, "exp": now + 600});
        self.key.sign_token(&claims, None).unwrap()
    }
}

/// The top of every configuration here: the public URL, DPoP allowed, the metadata table.
fn head(keys: &Keys) -> String {
    format!(
        r#"public_url = "{PUBLIC}"
[dpop]
mode = "allowed"
algorithms = ["ES256", "EdDSA"]
[resource_metadata]
resource = "{RESOURCE}"
authorization_servers = ["{ISSUER}"]
scopes_supported = ["tools:call", "admin"]
resource_name = "Test MCP server"
{}"#,
        keys.issuer()
    )
}

const ROUTES: &str = r#"
[[routes]]
path = "/mcp"
require = { scope = "tools:call" }
[[routes]]
path = "/admin/*"
require = { scope = "admin" }
[[routes]]
path = "/events"
public = true
[[routes]]
path = "/*"
"#;

async fn serve(config: String) -> String {
    let gateway = Gateway::new(Config::from_toml(&config).unwrap()).unwrap();
    let (listener, address) = listen().await;
    tokio::spawn(portcullis_gateway::serve(gateway, listener, None, std::future::pending()));
    format!("http://{address}")
}

fn expected_document() -> Value {
    json!({
        "resource": RESOURCE,
        "authorization_servers": [ISSUER],
        "scopes_supported": ["tools:call", "admin"],
        "bearer_methods_supported": ["header"],
        "dpop_signing_alg_values_supported": ["ES256", "EdDSA"],
        "resource_name": "Test MCP server",
    })
}

/// The `WWW-Authenticate` lines of `response`.
fn challenges(response: &reqwest::Response) -> Vec<String> {
    response.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_metadata_is_served_at_both_well_known_paths_without_a_token_and_never_forwarded() {
    let keys = Keys::new();
    let upstream = upstream().await;
    let base = serve(format!("upstream = \"{upstream}\"\n{}{ROUTES}", head(&keys))).await;
    let http = reqwest::Client::new();
    for path in ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"] {
        let response = http.get(format!("{base}{path}")).header("origin", "https://app.test").send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], "application/json", "{path}");
        assert_eq!(response.headers()["access-control-allow-origin"], "*", "{path}");
        let document: Value = response.json().await.unwrap();
        // The echoing upstream would have answered with the request it saw.
        assert!(document.get("method").is_none(), "{path} reached the upstream: {document}");
        let mut expected = expected_document();
        expected["dpop_bound_access_tokens_required"] = json!(false);
        let document = without_false_required(document);
        assert_eq!(document, without_false_required(expected), "{path}");
    }
    let head = http.head(format!("{base}/.well-known/oauth-protected-resource/mcp")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let post = http.post(format!("{base}/.well-known/oauth-protected-resource")).send().await.unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD, OPTIONS");
    // A neighbouring path is an ordinary request: the catch-all route wants a token.
    let other = http.get(format!("{base}/.well-known/oauth-protected-resource/other")).send().await.unwrap();
    assert_eq!(other.status(), 401);
}

#[tokio::test]
async fn every_spelling_of_the_well_known_paths_that_routes_would_match_gets_the_document_not_the_upstream() {
    // Routes match case-insensitively and ignore one trailing slash, as Express does: so must the metadata, or a
    // public catch-all hands these spellings to the upstream, which may serve a document of its own.
    let keys = Keys::new();
    let upstream = upstream().await;
    let routes = "[[routes]]\npath = \"/mcp\"\n[[routes]]\npath = \"/*\"\npublic = true\n";
    let base = serve(format!("upstream = \"{upstream}\"\n{}{routes}", head(&keys))).await;
    let http = reqwest::Client::new();
    for path in [
        "/.well-known/oauth-protected-resource/",
        "/.well-known/oauth-protected-resource/mcp/",
        "/.WELL-KNOWN/OAUTH-PROTECTED-RESOURCE",
        "/.well-known/Oauth-Protected-Resource/mcp",
        "/.well-known/oauth-protected-resource/MCP",
        "/.well-known/oauth-protected-resource/MCP/?q=1",
        "/.well-known/%4fauth-protected-resource/mcp",
    ] {
        for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
            let response = http.request(method.clone(), format!("{base}{path}")).send().await.unwrap();
            assert_eq!(response.status(), 200, "{method} {path}");
            assert_eq!(response.headers()["content-type"], "application/json", "{method} {path}");
            assert_eq!(response.headers()["cache-control"], "max-age=3600", "{method} {path}");
            if method == reqwest::Method::GET {
                let document: Value = response.json().await.unwrap();
                assert!(document.get("method").is_none(), "{path} reached the upstream: {document}");
                assert_eq!(document["resource"], RESOURCE, "{path}");
            }
        }
    }
    // Other paths below the well-known root are ordinary requests (here: the public catch-all).
    let other: Value = http
        .get(format!("{base}/.well-known/oauth-protected-resource/other"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other["method"], "GET", "{other}");
}

/// The document without `dpop_bound_access_tokens_required` when it is false (it may be left out then).
fn without_false_required(mut document: Value) -> Value {
    if document.get("dpop_bound_access_tokens_required") == Some(&json!(false)) {
        document.as_object_mut().unwrap().remove("dpop_bound_access_tokens_required");
    }
    document
}

#[tokio::test]
async fn dpop_required_everywhere_is_announced() {
    let keys = Keys::new();
    let config = format!("upstream = \"http://127.0.0.1:9\"\n{}{ROUTES}", head(&keys))
        .replace("mode = \"allowed\"", "mode = \"required\"");
    let base = serve(config).await;
    let document: Value =
        reqwest::get(format!("{base}/.well-known/oauth-protected-resource/mcp")).await.unwrap().json().await.unwrap();
    assert_eq!(document["dpop_bound_access_tokens_required"], true, "{document}");
}

#[tokio::test]
async fn every_401_and_403_challenge_names_the_metadata_and_a_403_the_scope() {
    let keys = Keys::new();
    let upstream = upstream().await;
    let base = serve(format!("upstream = \"{upstream}\"\n{}{ROUTES}", head(&keys))).await;
    let http = reqwest::Client::new();
    let metadata = format!("resource_metadata=\"{METADATA_URL}\"");

    // No token: both schemes offered, each with the metadata URL and no error.
    let response = http.post(format!("{base}/mcp")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let lines = challenges(&response);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("Bearer realm=\"api\""), "{lines:?}");
    assert!(lines[1].starts_with("DPoP realm=\"api\""), "{lines:?}");
    assert!(lines[1].contains("algs=\"ES256 EdDSA\""), "{lines:?}");
    assert!(lines.iter().all(|line| line.contains(&metadata) && !line.contains("error=")), "{lines:?}");

    // A token for another resource: 401 invalid_token, still naming the metadata.
    let other = keys.token("https://other.example/mcp", "tools:call");
    let response = http.post(format!("{base}/mcp")).bearer_auth(&other).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let lines = challenges(&response);
    assert!(lines[0].contains("error=\"invalid_token\"") && lines[0].contains(&metadata), "{lines:?}");

    // The right resource, a missing scope: 403 with the scope the route asks for, and the metadata.
    let token = keys.token(RESOURCE, "profile");
    let response = http.get(format!("{base}/admin/x")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 403);
    let lines = challenges(&response);
    let bearer = lines.iter().find(|line| line.starts_with("Bearer ")).unwrap();
    assert!(bearer.contains("error=\"insufficient_scope\""), "{lines:?}");
    assert!(bearer.contains("scope=\"admin\""), "{lines:?}");
    assert!(bearer.contains(&metadata), "{lines:?}");

    // And the token passes where its scope is enough.
    let token = keys.token(RESOURCE, "tools:call");
    let response = http.post(format!("{base}/mcp")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn the_listener_without_upstream_and_a_forward_auth_listener_serve_it_but_a_check_is_a_check() {
    let keys = Keys::new();
    let http = reqwest::Client::new();
    let grpc_only = serve(format!("ext_authz_grpc = \"127.0.0.1:0\"\n{}{ROUTES}", head(&keys))).await;
    let response = http.get(format!("{grpc_only}/.well-known/oauth-protected-resource/mcp")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["resource"], RESOURCE);
    assert_eq!(http.get(format!("{grpc_only}/mcp")).send().await.unwrap().status(), 404);

    let nginx = serve(format!("forward_auth = \"nginx\"\n{}{ROUTES}", head(&keys))).await;
    let response = http.get(format!("{nginx}/.well-known/oauth-protected-resource")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["resource"], RESOURCE);
    // A check about the original request to /mcp, asked at the well-known path, is still a check.
    let response = http
        .get(format!("{nginx}/.well-known/oauth-protected-resource"))
        .header("x-original-method", "POST")
        .header("x-original-uri", "/mcp")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(challenges(&response)[0].contains(&format!("resource_metadata=\"{METADATA_URL}\"")));
}

#[test]
fn the_mcp_preset_is_a_valid_configuration_with_what_mcp_needs() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/mcp/portcullis.toml")).unwrap();
    let config = Config::from_toml(&text).unwrap();
    let metadata = config.resource_metadata.as_ref().unwrap();
    let route = config.routes.iter().find(|route| route.path == "/mcp").unwrap();
    assert_eq!(
        route.audiences,
        std::slice::from_ref(&metadata.resource),
        "the /mcp route takes tokens for the resource only"
    );
    assert!(!route.forward_authorization && !route.public);
    assert_eq!(config.dpop.mode, portcullis_gateway::DpopSetting::Allowed);
    assert!(metadata.resource.starts_with(config.public_url.as_deref().unwrap()));
    assert!(config.issuers.iter().all(|issuer| issuer.audiences == std::slice::from_ref(&metadata.resource)));
    assert!(!metadata.authorization_servers.is_empty());
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
}

/// An upstream whose `/events` answers an event stream: the first event at once, the second only when the test
/// says so, holding the response open until then.
async fn event_upstream() -> (String, tokio::sync::oneshot::Sender<()>) {
    let (send, second) = tokio::sync::oneshot::channel::<()>();
    let second = Arc::new(Mutex::new(Some(second)));
    let app = Router::new().route(
        "/events",
        get(move || {
            let second = second.lock().unwrap().take();
            async move {
                let first = futures_util::stream::once(async { Ok::<_, std::io::Error>("data: one\n\n") });
                let then = futures_util::stream::once(async move {
                    if let Some(second) = second {
                        let _ = second.await;
                    }
                    Ok::<_, std::io::Error>("data: two\n\n")
                });
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .header("cache-control", "no-cache")
                    .body(Body::from_stream(futures_util::StreamExt::chain(first, then)))
                    .unwrap()
            }
        }),
    );
    (portcullis_testkit::net::serve(app).await, send)
}

/// Reads `response`'s body until it holds `wanted`, within a deadline.
async fn read_until(response: &mut reqwest::Response, seen: &mut String, wanted: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(wanted) {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("{wanted:?} did not arrive; got {seen:?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the stream ended before {wanted:?}; got {seen:?}"));
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test]
async fn server_sent_events_reach_the_client_while_the_upstream_holds_the_response_open() {
    let keys = Keys::new();
    let (upstream, second) = event_upstream().await;
    let base = serve(format!("upstream = \"{upstream}\"\n{}{ROUTES}", head(&keys))).await;
    // A gateway that buffered the body would not even send the response head before the upstream finished.
    let request = reqwest::Client::new().get(format!("{base}/events")).header("accept", "text/event-stream").send();
    let mut response = tokio::time::timeout(Duration::from_secs(10), request)
        .await
        .expect("no response head while the upstream holds the stream open: the response is buffered")
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    // The upstream has not finished its response: the first event can only be here if it was not buffered.
    read_until(&mut response, &mut seen, "data: one\n\n").await;
    assert!(!seen.contains("two"), "{seen:?}");
    second.send(()).unwrap();
    read_until(&mut response, &mut seen, "data: two\n\n").await;
    assert_eq!(seen, "data: one\n\ndata: two\n\n");
    assert!(response.chunk().await.unwrap().is_none(), "the stream ends with the upstream's");
}
