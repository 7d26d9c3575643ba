//! The forward-auth endpoint behind real nginx (`auth_request`) and real Caddy (`forward_auth`), from Debian's
//! packages, with configurations generated here (the ones docs/ shows). Without the binaries the tests print why
//! they skip; with `CI=true` they fail, and `.ci/run` installs them.
#![allow(clippy::unwrap_used)]

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::any;
use portcullis_gateway::{Config, Gateway};
use portcullis_issuer::{DEMO_AUDIENCE, DevIssuer, Tenant};
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Child, Command, Stdio};

fn available(program: &str) -> bool {
    let found = Command::new(program).arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
        || Command::new(program).arg("version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !found {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{program} is missing; .ci/run installs it");
        let _ = writeln!(std::io::stderr(), "SKIPPED: {program} is not installed (apt-get install {program})");
    }
    found
}

/// A port that was free a moment ago (nginx and Caddy cannot report the port they picked).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Stack {
    issuer: DevIssuer,
    gateway: String,
    upstream: String,
}

async fn stack() -> Stack {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer_url = format!("http://{}/", listener.local_addr().unwrap());
    let issuer = DevIssuer::new(Tenant::demo("http://127.0.0.1:3000/callback"), &issuer_url).unwrap();
    tokio::spawn(portcullis_issuer::serve(listener, issuer.clone()));

    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_address = upstream.local_addr().unwrap().to_string();
    let echo = Router::new().fallback(any(|headers: HeaderMap| async move {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        axum::Json(json!({
            "subject": get("x-auth-subject"),
            "permissions": get("x-auth-permissions"),
            "authorization": get("authorization"),
        }))
    }));
    tokio::spawn(async move { axum::serve(upstream, echo).await.unwrap() });

    let config = Config::from_toml(&format!(
        r#"
        mode = "forward_auth"
        [[issuers]]
        issuer = "{issuer_url}"
        audiences = ["{DEMO_AUDIENCE}"]
        [[routes]]
        path = "/api/public"
        public = true
        [[routes]]
        path = "/api/private-scoped"
        require = {{ permission = "read:messages" }}
        [[routes]]
        path = "/api/*"
        "#
    ))
    .unwrap();
    let gateway = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway_address = gateway.local_addr().unwrap().to_string();
    tokio::spawn(portcullis_gateway::serve(Gateway::new(config).unwrap(), gateway, None, std::future::pending()));
    Stack { issuer, gateway: gateway_address, upstream: upstream_address }
}

/// The nginx configuration the docs show, for a gateway and upstream at these addresses.
pub fn nginx_config(dir: &str, port: u16, gateway: &str, upstream: &str) -> String {
    format!(
        r#"master_process off;
daemon off;
error_log {dir}/error.log;
pid {dir}/nginx.pid;
events {{}}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            auth_request /_portcullis;
            auth_request_set $auth_subject $upstream_http_x_auth_subject;
            auth_request_set $auth_permissions $upstream_http_x_auth_permissions;
            auth_request_set $auth_challenge $upstream_http_www_authenticate;
            # The gateway's answer replaces whatever the client sent under these names.
            proxy_set_header X-Auth-Subject $auth_subject;
            proxy_set_header X-Auth-Permissions $auth_permissions;
            proxy_set_header Authorization "";
            error_page 401 = @unauthorized;
            error_page 403 = @forbidden;
            proxy_pass http://{upstream};
        }}
        location = /_portcullis {{
            internal;
            proxy_pass http://{gateway}/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
        }}
        location @unauthorized {{
            add_header WWW-Authenticate $auth_challenge always;
            return 401;
        }}
        location @forbidden {{
            add_header WWW-Authenticate $auth_challenge always;
            return 403;
        }}
    }}
}}
"#
    )
}

/// The Caddyfile the docs show.
pub fn caddyfile(port: u16, gateway: &str, upstream: &str) -> String {
    format!(
        r#"{{
    admin off
    auto_https off
}}
http://127.0.0.1:{port} {{
    # `route` keeps this order: drop client copies, ask portcullis, drop the token, proxy.
    route {{
        request_header -X-Auth-Subject
        request_header -X-Auth-Permissions
        forward_auth {gateway} {{
            uri /auth
            copy_headers X-Auth-Subject X-Auth-Permissions
        }}
        request_header -Authorization
        reverse_proxy {upstream}
    }}
}}
"#
    )
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the proxy answers (its start-up is not observable otherwise), bounded.
async fn until_listening(base: &str) {
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http.get(format!("{base}/api/public")).send().await.is_ok() {
            return;
        }
        tokio::task::yield_now().await;
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("{base} never answered");
}

async fn exercise(stack: &Stack, base: &str) {
    let http = reqwest::Client::new();
    let alice = stack.issuer.user_token("demo-spa", "alice", DEMO_AUDIENCE, &["openid", "read:messages"]).unwrap();
    let bob = stack.issuer.user_token("demo-spa", "bob", DEMO_AUDIENCE, &["openid"]).unwrap();
    let other = stack.issuer.client_credentials_token("demo-client", "https://billing.example.com").unwrap();

    // Valid token: the upstream sees the claim headers, not a spoofed copy, not the token.
    let seen: Value = http
        .get(format!("{base}/api/private"))
        .bearer_auth(&alice)
        .header("x-auth-subject", "auth0|mallory")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["subject"], "auth0|alice", "{base}");
    assert_eq!(seen["permissions"], "read:messages write:messages");
    assert_eq!(seen["authorization"], Value::Null);

    // A public route: the spoofed header is still removed.
    let seen: Value = http
        .get(format!("{base}/api/public"))
        .header("x-auth-subject", "auth0|mallory")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(matches!(seen["subject"].as_str(), None | Some("")), "{base}: spoofed header reached the upstream: {seen}");

    // Each failure class reaches the client with its status and challenge.
    let cases = [
        (None, "/api/private", 401, r#"Bearer realm="api""#),
        (Some(&other), "/api/private", 401, "error=\"invalid_token\""),
        (Some(&bob), "/api/private-scoped", 403, "scope=\"read:messages\""),
    ];
    for (token, path, status, challenge) in cases {
        let mut request = http.get(format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{base}{path}");
        let header =
            response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        assert!(header.contains(challenge), "{base}{path}: {header}");
    }
    assert_eq!(http.get(format!("{base}/api/private-scoped")).bearer_auth(&alice).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request() {
    if !available("nginx") {
        return;
    }
    let stack = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap().to_owned();
    let port = free_port();
    std::fs::write(dir.path().join("nginx.conf"), nginx_config(&path, port, &stack.gateway, &stack.upstream)).unwrap();
    let child = Command::new("nginx")
        .args(["-c", &format!("{path}/nginx.conf"), "-p", &path, "-e", &format!("{path}/error.log")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _nginx = Running(child);
    let base = format!("http://127.0.0.1:{port}");
    until_listening(&base).await;
    exercise(&stack, &base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth() {
    if !available("caddy") {
        return;
    }
    let stack = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let file = dir.path().join("Caddyfile");
    std::fs::write(&file, caddyfile(port, &stack.gateway, &stack.upstream)).unwrap();
    let child = Command::new("caddy")
        .args(["run", "--config", file.to_str().unwrap(), "--adapter", "caddyfile"])
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _caddy = Running(child);
    let base = format!("http://127.0.0.1:{port}");
    until_listening(&base).await;
    exercise(&stack, &base).await;
}

/// The deployment guides show exactly the configurations these tests run (with example addresses).
#[test]
fn docs_show_the_tested_configurations() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/deployment");
    let nginx = std::fs::read_to_string(root.join("nginx.md")).unwrap();
    let expected = nginx_config("/var/lib/portcullis-nginx", 8080, "127.0.0.1:9000", "127.0.0.1:3000");
    assert!(nginx.contains(&expected), "docs/deployment/nginx.md must contain:\n{expected}");
    let caddy = std::fs::read_to_string(root.join("caddy.md")).unwrap();
    let expected = caddyfile(8080, "127.0.0.1:9000", "127.0.0.1:3000");
    assert!(caddy.contains(&expected), "docs/deployment/caddy.md must contain:\n{expected}");
}
