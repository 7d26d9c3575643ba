//! Attacks through a real Envoy in front of `portcullis serve` (gRPC ext_authz, then Envoy's HTTP mode), with an
//! upstream that echoes the request line and headers it received. The bootstraps here keep Envoy's defaults for
//! what the client may send (header names with `_` allowed, no header removed before the filters): what reaches
//! the upstream then rests on portcullis's answers alone. Skipped without `envoy` (`PORTCULLIS_ENVOY` names
//! another binary); under CI a missing Envoy fails.
#![allow(clippy::unwrap_used)]

mod support;

use portcullis_testkit::process::{Running, free_port};
use portcullis_testkit::raw::{RawRequest, send};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

const ISSUER: &str = "https://issuer.test/";
const AUDIENCE: &str = "https://api.test";

fn envoy_program() -> String {
    std::env::var("PORTCULLIS_ENVOY").unwrap_or_else(|_| "envoy".to_owned())
}

fn envoy_present() -> bool {
    portcullis_testkit::probe::require("envoy", portcullis_testkit::probe::runs(&envoy_program(), &["--version"]))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Grpc,
    Http,
}

/// An upstream answering every request with its request line and header lines, as a JSON array of strings.
async fn echo_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 8192];
                let end = loop {
                    if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        break end;
                    }
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                };
                let lines: Vec<String> =
                    String::from_utf8_lossy(&head[..end]).split("\r\n").map(str::to_owned).collect();
                let body = serde_json::to_string(&lines).unwrap();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-echo: 1\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    address
}

/// `host:port` as an Envoy socket address.
fn socket(address: &str) -> String {
    let (host, port) = address.rsplit_once(':').unwrap();
    format!("{{ address: {host}, port_value: {port} }}")
}

/// A bootstrap with path normalization on and Envoy's defaults for header names, asking portcullis at
/// `authorizer` in `mode`, failing closed, in front of `upstream`.
fn bootstrap(mode: Mode, listen: u16, admin: u16, authorizer: &str, upstream: &str) -> String {
    let service = match mode {
        Mode::Grpc => "              grpc_service:\n                envoy_grpc: { cluster_name: portcullis }\n                timeout: 2s\n".to_owned(),
        Mode::Http => "              allowed_headers:\n                patterns: [{ exact: authorization }]\n              http_service:\n                server_uri: { uri: \"http://portcullis\", cluster: portcullis, timeout: 2s }\n                path_prefix: /ext-authz\n                authorization_response:\n                  allowed_upstream_headers:\n                    patterns: [{ exact: x-auth-subject }, { exact: x-auth-scope }]\n".to_owned(),
    };
    let http2 = if mode == Mode::Grpc {
        "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: { http2_protocol_options: {} }\n"
    } else {
        ""
    };
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: api
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {listen} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: api
          use_remote_address: true
          normalize_path: true
          merge_slashes: true
          path_with_escaped_slashes_action: REJECT_REQUEST
          route_config:
            virtual_hosts:
            - name: api
              domains: ["*"]
              routes: [{{ match: {{ prefix: "/" }}, route: {{ cluster: api }} }}]
          http_filters:
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: false
{service}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: api
    connect_timeout: 1s
    load_assignment:
      cluster_name: api
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {upstream} }} }} }}] }}]
  - name: portcullis
    connect_timeout: 1s
{http2}    load_assignment:
      cluster_name: portcullis
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {authorizer} }} }} }}] }}]
"#,
        upstream = socket(upstream),
        authorizer = socket(authorizer),
    )
}

/// Envoy in `mode` in front of a fresh portcullis and echo upstream; the token of a `read`-scoped client.
struct Rig {
    envoy: String,
    token: String,
    _portcullis: tokio::process::Child,
    _envoy: Running,
    _dir: tempfile::TempDir,
}

async fn rig(mode: Mode) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let key = portcullis_testkit::keys::key("k1");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, portcullis_testkit::keys::jwks(&[&key])).unwrap();
    let front = match mode {
        Mode::Grpc => "ext_authz_grpc = \"127.0.0.1:0\"\n",
        Mode::Http => "forward_auth = \"envoy\"\nenvoy_path_prefix = \"/ext-authz\"\n",
    };
    let config = format!(
        "listen = \"127.0.0.1:0\"\n{front}\n[[issuers]]\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\n\
         jwks_uri = \"file://{}\"\n[claim_headers]\nsub = \"X-Auth-Subject\"\nscope = \"X-Auth-Scope\"\n\
         [[routes]]\npath = \"/api/*\"\nrequire = {{ scope = \"read\" }}\n\
         [[routes]]\npath = \"/items/*\"\nmethods = [\"DELETE\"]\nrequire = {{ scope = \"admin\" }}\n\
         [[routes]]\npath = \"/items/*\"\n",
        jwks.display()
    );
    let config_path = dir.path().join("gateway.toml");
    std::fs::write(&config_path, config).unwrap();
    let (portcullis, mut out) = support::portcullis(&["serve", "--config", config_path.to_str().unwrap()]);
    let listening = support::line_with(&mut out, "portcullis gateway listening on").await;
    let authorizer = match mode {
        Mode::Grpc => {
            let line = support::line_with(&mut out, "ext_authz gRPC listening on").await;
            line.trim_start_matches("ext_authz gRPC listening on ").to_owned()
        }
        Mode::Http => support::url_in(&listening).trim_start_matches("http://").to_owned(),
    };
    support::drain(out);
    let upstream = echo_upstream().await;
    let (listen, admin) = (free_port(), free_port());
    let envoy_dir = tempfile::tempdir().unwrap();
    let path = envoy_dir.path().join("envoy.yaml");
    std::fs::write(&path, bootstrap(mode, listen, admin, &authorizer, &upstream)).unwrap();
    let mut command = Command::new(envoy_program());
    command.arg("-c").arg(&path).args(["--use-dynamic-base-id", "--log-level", "warn"]);
    let mut envoy = Running::spawn("envoy", command, envoy_dir);
    envoy.until_listening(listen).await;
    let now = portcullis_testkit::claims::now();
    let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "scope": "read", "iat": now, "exp": now + 600});
    let token = key.sign_token(&claims, None).unwrap();
    Rig { envoy: format!("127.0.0.1:{listen}"), token, _portcullis: portcullis, _envoy: envoy, _dir: dir }
}

#[tokio::test]
async fn a_lower_case_method_over_http2_does_not_pass_the_route_of_other_methods() {
    if !envoy_present() {
        return;
    }
    for mode in [Mode::Grpc, Mode::Http] {
        let rig = rig(mode).await;
        let client = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
        let send = |method: &str| {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            client.request(method, format!("http://{}/items/x", rig.envoy)).bearer_auth(&rig.token).send()
        };
        let get = send("GET").await.unwrap();
        assert_eq!((get.status().as_u16(), get.headers().contains_key("x-echo")), (200, true), "{mode:?}");
        assert_eq!(send("DELETE").await.unwrap().status(), 403, "{mode:?}");
        // Envoy passes `delete` on as it is; an upstream that upper-cases methods would serve a DELETE.
        for method in ["delete", "Delete"] {
            let response = send(method).await.unwrap();
            let reached = response.headers().contains_key("x-echo");
            assert_eq!((response.status().as_u16(), reached), (400, false), "{mode:?} {method}");
        }
    }
}

#[tokio::test]
async fn claim_and_override_headers_in_any_spelling_do_not_reach_the_upstream() {
    if !envoy_present() {
        return;
    }
    for mode in [Mode::Grpc, Mode::Http] {
        let rig = rig(mode).await;
        let request = RawRequest::new("GET", "/api/x")
            .header("Authorization", format!("Bearer {}", rig.token))
            .header("x_auth_subject", "admin")
            .header("X-Auth_Scope", "admin")
            .header("X-HTTP-Method-Override", "DELETE")
            .header("x_original_url", "/items/x");
        let response = send(&rig.envoy, &request, Duration::from_secs(10)).await.unwrap();
        assert_eq!(response.status, 200, "{mode:?}: {}", String::from_utf8_lossy(&response.body));
        let received: Vec<String> = serde_json::from_slice(&response.body).unwrap();
        let names: Vec<String> = received
            .iter()
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .map(|(n, _)| n.to_ascii_lowercase())
            .collect();
        assert!(received.iter().any(|line| line == "x-auth-subject: alice"), "{mode:?}: {received:?}");
        for spoof in ["x_auth_subject", "x-auth_scope", "x-http-method-override", "x_original_url", "authorization"] {
            assert!(!names.iter().any(|name| name == spoof), "{mode:?}: {spoof} reached the upstream: {received:?}");
        }
    }
}
