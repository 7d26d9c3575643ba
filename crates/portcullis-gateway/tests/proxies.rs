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

async fn stack(front: &str) -> Stack {
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
            "scope": get("x-auth-scope"),
            "permissions": get("x-auth-permissions"),
            "authorization": get("authorization"),
            "forwarded": get("forwarded"),
            "forwarded_host": get("x-forwarded-host"),
            "forwarded_for": get("x-forwarded-for"),
            "real_ip": get("x-real-ip"),
        }))
    }));
    tokio::spawn(async move { axum::serve(upstream, echo).await.unwrap() });

    let config = Config::from_toml(&format!(
        r#"
        forward_auth = "{front}"
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

/// The headers the documented configurations manage: the gateway's default claim headers.
fn managed() -> Vec<String> {
    portcullis_gateway::headers::managed_header_names(&Config::defaults())
}

/// nginx's variable for a response header of the auth subrequest (`X-Auth-Subject` → `$upstream_http_x_auth_subject`).
fn nginx_variable(header: &str) -> String {
    header.to_ascii_lowercase().replace('-', "_")
}

/// The nginx configuration the docs show, for a gateway and upstream at these addresses.
pub fn nginx_config(dir: &str, port: u16, gateway: &str, upstream: &str, managed: &[String]) -> String {
    let mut copy = String::new();
    for header in managed {
        let variable = nginx_variable(header);
        copy.push_str(&format!("            auth_request_set ${variable} $upstream_http_{variable};\n"));
    }
    copy.push_str("            # The gateway's answer replaces whatever the client sent under these names.\n");
    for header in managed {
        copy.push_str(&format!("            proxy_set_header {header} ${};\n", nginx_variable(header)));
    }
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
    # Headers with underscores (X_Auth_Subject) are dropped, never passed on (nginx's default, stated).
    underscores_in_headers off;
    ignore_invalid_headers on;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            auth_request /_portcullis;
            auth_request_set $auth_challenge $upstream_http_www_authenticate;
{copy}            proxy_set_header Authorization "";
            # The hop to the upstream is nginx's to describe: client copies are replaced or cleared.
            proxy_set_header Forwarded "";
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Port "";
            proxy_set_header X-Forwarded-Prefix "";
            proxy_set_header X-Forwarded-Server "";
            proxy_set_header X-Forwarded-Method "";
            proxy_set_header X-Forwarded-Uri "";
            proxy_set_header X-Real-IP $remote_addr;
            error_page 401 = @unauthorized;
            error_page 403 = @forbidden;
            # No URI part: the upstream gets the target exactly as the gateway was asked about it.
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
pub fn caddyfile(port: u16, gateway: &str, upstream: &str, managed: &[String]) -> String {
    let mut drop = String::new();
    for header in managed {
        drop.push_str(&format!("        request_header -{header}\n"));
    }
    let copied = managed.join(" ");
    format!(
        r#"{{
    admin off
    auto_https off
}}
http://127.0.0.1:{port} {{
    # `route` keeps this order: drop client copies, ask portcullis, drop the token, proxy.
    route {{
        # Client copies of the headers portcullis sets (a spelling this misses is refused by portcullis).
{drop}        request_header -Forwarded
        request_header -X-Real-IP
        forward_auth {gateway} {{
            uri /auth
            copy_headers {copied}
        }}
        request_header -Authorization
        # reverse_proxy sets X-Forwarded-For, -Host and -Proto itself (client copies are replaced).
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

    // Valid token: the upstream sees the claim headers and the proxy's own forwarding headers, not the token.
    let seen: Value = http
        .get(format!("{base}/api/private"))
        .bearer_auth(&alice)
        .header("forwarded", "for=evil.example;host=evil.example")
        .header("x-real-ip", "203.0.113.66")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["subject"], "auth0|alice", "{base}");
    assert_eq!(seen["permissions"], "read:messages write:messages");
    assert_eq!(seen["authorization"], Value::Null);
    assert!(matches!(seen["forwarded"].as_str(), None | Some("")), "{base}: {seen}");
    assert_ne!(seen["real_ip"], "203.0.113.66", "{base}: {seen}");

    // A client copy of any header the gateway sets, in any spelling, is refused whatever the token.
    for spelling in ["X-Auth-Subject", "x-auth-scope", "X-AUTH-PERMISSIONS", "X_Auth_Subject"] {
        let response =
            http.get(format!("{base}/api/private")).bearer_auth(&alice).header(spelling, "auth0|mallory").send().await;
        let response = response.unwrap();
        if response.status() == 200 {
            // The proxy removed the copy (Caddy's request_header, nginx's underscore rule) before asking.
            let seen: Value = response.json().await.unwrap();
            assert_eq!(seen["subject"], "auth0|alice", "{base} {spelling}: {seen}");
            assert!(!seen.to_string().contains("mallory"), "{base} {spelling}: {seen}");
        } else {
            assert!(matches!(response.status().as_u16(), 400 | 403), "{base} {spelling}: {}", response.status());
        }
    }

    // A public route: a spoofed header never reaches the upstream (removed by the proxy, or refused).
    let response =
        http.get(format!("{base}/api/public")).header("x-auth-subject", "auth0|mallory").send().await.unwrap();
    if response.status() == 200 {
        let seen: Value = response.json().await.unwrap();
        assert!(
            matches!(seen["subject"].as_str(), None | Some("")),
            "{base}: spoofed header reached the upstream: {seen}"
        );
    } else {
        assert_eq!(response.status(), 403, "{base}");
    }

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
    let stack = stack("nginx").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap().to_owned();
    let port = free_port();
    let config = nginx_config(&path, port, &stack.gateway, &stack.upstream, &managed());
    std::fs::write(dir.path().join("nginx.conf"), config).unwrap();
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
    let stack = stack("caddy").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let file = dir.path().join("Caddyfile");
    std::fs::write(&file, caddyfile(port, &stack.gateway, &stack.upstream, &managed())).unwrap();
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
    let expected = nginx_config("/var/lib/portcullis-nginx", 8080, "127.0.0.1:9000", "127.0.0.1:3000", &managed());
    assert!(nginx.contains(&expected), "docs/deployment/nginx.md must contain:\n{expected}");
    let caddy = std::fs::read_to_string(root.join("caddy.md")).unwrap();
    let expected = caddyfile(8080, "127.0.0.1:9000", "127.0.0.1:3000", &managed());
    assert!(caddy.contains(&expected), "docs/deployment/caddy.md must contain:\n{expected}");
    let traefik = std::fs::read_to_string(root.join("traefik.md")).unwrap();
    let quoted: Vec<String> = managed().iter().map(|name| format!("{name:?}")).collect();
    let expected = format!("authResponseHeaders: [{}]", quoted.join(", "));
    assert!(traefik.contains(&expected), "docs/deployment/traefik.md must contain:\n{expected}");
}
