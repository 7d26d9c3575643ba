//! Attacks through a real Envoy in front of `portcullis serve` (gRPC ext_authz, then Envoy's HTTP mode), with an
//! upstream that echoes the request line and headers it received. The bootstraps here are the documented ones
//! without their header hardening, so they keep Envoy's defaults for what the client may send (header names with
//! `_` allowed, no header removed before the filters): what reaches the upstream then rests on portcullis's
//! answers alone. Also: `Expect: 100-continue`, trailers, hop-by-hop `Connection` and `Upgrade: h2c` headers, and
//! an Envoy whose cluster for portcullis lacks HTTP/2. Skipped without `envoy` (`PORTCULLIS_ENVOY` names
//! another binary); under CI a missing Envoy fails.
#![allow(clippy::unwrap_used)]

mod support;

use portcullis_testkit::envoy::{self, Envoy};
use portcullis_testkit::fronts::{EnvoyMode, envoy_bootstrap};
use portcullis_testkit::raw::{RawRequest, send};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ISSUER: &str = "https://issuer.test/";
const AUDIENCE: &str = "https://api.test";

fn envoy_present() -> bool {
    portcullis_testkit::probe::require("envoy", envoy::installed())
}

/// The claim headers the gateway below sets.
const CLAIM_HEADERS: [&str; 2] = ["X-Auth-Subject", "X-Auth-Scope"];

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

/// The documented bootstrap for `mode` (fail closed, path normalization on) without its header hardening: header
/// names with `_` keep Envoy's default (allowed), and no header is removed before the filters run.
fn bootstrap(mode: EnvoyMode, authorizer: &str, upstream: &str) -> String {
    let hardened = envoy_bootstrap(mode, "127.0.0.1:0", "127.0.0.1:0", authorizer, upstream, &CLAIM_HEADERS);
    let start = hardened.find("          common_http_protocol_options:\n").expect("the underscore setting");
    let end = hardened.find("          route_config:\n").expect("the route configuration");
    let cut = &hardened[start..end];
    assert!(cut.contains("headers_with_underscores_action") && cut.contains("early_header_mutation_extensions"));
    format!("{}{}", &hardened[..start], &hardened[end..])
}

/// Envoy in `mode` in front of a fresh portcullis and echo upstream; the token of a `read`-scoped client.
struct Rig {
    envoy: String,
    /// portcullis's address for Envoy: the gRPC listener, or the HTTP listener in HTTP mode.
    authorizer: String,
    token: String,
    _portcullis: tokio::process::Child,
    _envoy: Envoy,
    _dir: tempfile::TempDir,
}

async fn rig(mode: EnvoyMode) -> Rig {
    rig_with(mode, echo_upstream().await).await
}

/// Envoy in `mode` in front of a fresh portcullis and the upstream at `upstream`.
async fn rig_with(mode: EnvoyMode, upstream: String) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let key = portcullis_testkit::keys::key("k1");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, portcullis_testkit::keys::jwks(&[&key])).unwrap();
    let front = match mode {
        EnvoyMode::Grpc => "ext_authz_grpc = \"127.0.0.1:0\"\n",
        EnvoyMode::Http => "forward_auth = \"envoy\"\nenvoy_path_prefix = \"/ext-authz\"\n",
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
        EnvoyMode::Grpc => {
            let line = support::line_with(&mut out, "ext_authz gRPC listening on").await;
            line.trim_start_matches("ext_authz gRPC listening on ").to_owned()
        }
        EnvoyMode::Http => support::url_in(&listening).trim_start_matches("http://").to_owned(),
    };
    support::drain(out);
    let envoy = Envoy::start(&format!("envoy ({})", mode.name()), &bootstrap(mode, &authorizer, &upstream)).await;
    let now = portcullis_testkit::claims::now();
    let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "scope": "read", "iat": now, "exp": now + 600});
    let token = key.sign_token(&claims, None).unwrap();
    Rig { envoy: envoy.address.clone(), authorizer, token, _portcullis: portcullis, _envoy: envoy, _dir: dir }
}

#[tokio::test]
async fn a_lower_case_method_over_http2_does_not_pass_the_route_of_other_methods() {
    if !envoy_present() {
        return;
    }
    for mode in EnvoyMode::ALL {
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
    for mode in EnvoyMode::ALL {
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

/// Reads from `stream` until the server closes it, writing `sent_body` once a `100 Continue` has come; returns the
/// status of every response head (interim ones included) and all that was read. Fails the test when nothing
/// arrives for 10 s.
async fn heads(stream: &mut tokio::net::TcpStream, sent_body: &[u8]) -> (Vec<u16>, String) {
    let mut seen = Vec::new();
    let mut body_sent = false;
    let mut buffer = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        let statuses: Vec<u16> = text
            .split("\r\n\r\n")
            .filter_map(|part| part.strip_prefix("HTTP/1.1 "))
            .filter_map(|rest| rest.get(..3)?.parse().ok())
            .collect();
        if statuses.contains(&100) && !body_sent {
            stream.write_all(sent_body).await.unwrap();
            body_sent = true;
        }
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await;
        match read.expect("no answer in 10 s") {
            Ok(0) | Err(_) => return (statuses, text),
            Ok(n) => seen.extend_from_slice(&buffer[..n]),
        }
    }
}

/// `Expect: 100-continue` through Envoy in both modes: Envoy answers `100 Continue` itself and checks once the
/// body's first byte has come, so the client is never stuck waiting; a request without a token is refused
/// without reaching the upstream, and one with a token reaches it with its claim headers and its length.
#[tokio::test]
async fn expect_100_continue_is_checked_like_any_request() {
    if !envoy_present() {
        return;
    }
    for mode in EnvoyMode::ALL {
        let rig = rig(mode).await;
        for (authorization, expected) in
            [(format!("Authorization: Bearer {}\r\n", rig.token), 200), (String::new(), 401)]
        {
            let mut stream = tokio::net::TcpStream::connect(&rig.envoy).await.unwrap();
            let head = format!(
                "POST /api/x HTTP/1.1\r\nHost: a\r\n{authorization}Content-Length: 5\r\nExpect: 100-continue\r\n\
                 Connection: close\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            let (statuses, text) = heads(&mut stream, b"hello").await;
            assert_eq!(statuses, [100, expected], "{mode:?}: {text}");
            assert_eq!(text.contains("x-echo: 1"), expected == 200, "{mode:?}: {text}");
            if expected == 200 {
                assert!(text.contains("\"x-auth-subject: alice\"") && text.contains("\"content-length: 5\""), "{text}");
            }
        }
    }
}

/// Reads one request from `reader` (head, then a sized or chunked body with its trailers) and returns it as text.
async fn read_request<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> Option<String> {
    use tokio::io::AsyncBufReadExt;
    let mut received = String::new();
    let (mut chunked, mut length) = (false, 0usize);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let lower = line.to_ascii_lowercase();
        chunked |= lower.starts_with("transfer-encoding:") && lower.contains("chunked");
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().ok()?;
        }
        received.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    if !chunked {
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).await.ok()?;
        received.push_str(&String::from_utf8_lossy(&body));
        return Some(received);
    }
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).await.ok()?;
        received.push_str(&size);
        let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
        if size == 0 {
            // The trailer section, up to its empty line.
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).await.ok()? == 0 || line == "\r\n" {
                    return Some(received);
                }
                received.push_str(&line);
            }
        }
        let mut chunk = vec![0u8; size + 2];
        reader.read_exact(&mut chunk).await.ok()?;
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// An upstream answering every request with all it received of it (head, body and trailers) as the body.
async fn whole_request_echo() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut reader = tokio::io::BufReader::new(read);
                let Some(received) = read_request(&mut reader).await else { return };
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-echo: 1\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{received}",
                    received.len()
                );
                let _ = write.write_all(response.as_bytes()).await;
            });
        }
    });
    address
}

/// Trailers cannot carry a claim or token header past the check in either mode: a chunked HTTP/1.1 body and an
/// HTTP/2 body with trailers naming `X-Auth-Subject` and `Authorization` reach the upstream whole, without those
/// trailers.
#[tokio::test]
async fn trailers_carry_no_claim_header_to_the_upstream() {
    if !envoy_present() {
        return;
    }
    for mode in EnvoyMode::ALL {
        let rig = rig_with(mode, whole_request_echo().await).await;
        let request = format!(
            "POST /api/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {}\r\nTransfer-Encoding: chunked\r\n\
             TE: trailers\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\
             X-Auth-Subject: mallory\r\nAuthorization: Bearer forged\r\n\r\n",
            rig.token
        );
        let mut stream = tokio::net::TcpStream::connect(&rig.envoy).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
        let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        assert!(answer.starts_with("http/1.1 200") && answer.contains("x-echo: 1"), "{mode:?}: {answer}");
        assert!(answer.contains("x-auth-subject: alice") && answer.contains("hello"), "{mode:?}: {answer}");
        assert!(!answer.contains("mallory") && !answer.contains("forged"), "{mode:?} HTTP/1.1: {answer}");

        let tcp = tokio::net::TcpStream::connect(&rig.envoy).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(connection);
        let mut client = client.ready().await.unwrap();
        let request = axum::http::Request::builder()
            .method("POST")
            .uri(format!("http://{}/api/x", rig.envoy))
            .header("authorization", format!("Bearer {}", rig.token))
            .body(())
            .unwrap();
        let (response, mut body) = client.send_request(request, false).unwrap();
        body.send_data(axum::body::Bytes::from_static(b"hello world"), false).unwrap();
        let mut trailers = axum::http::HeaderMap::new();
        trailers.insert("x-auth-subject", "mallory".parse().unwrap());
        trailers.insert("authorization", "Bearer forged".parse().unwrap());
        body.send_trailers(trailers).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), response).await.unwrap().unwrap();
        assert_eq!(response.status(), 200, "{mode:?} HTTP/2");
        let mut received = response.into_body();
        let mut text = Vec::new();
        while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), received.data()).await.unwrap() {
            let chunk = chunk.unwrap();
            let _ = received.flow_control().release_capacity(chunk.len());
            text.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&text).to_ascii_lowercase();
        assert!(text.contains("x-auth-subject: alice") && text.contains("hello world"), "{mode:?} HTTP/2: {text}");
        assert!(!text.contains("mallory") && !text.contains("forged"), "{mode:?} HTTP/2: {text}");
    }
}

/// Hop-by-hop tricks through Envoy in both modes: a `Connection` header naming the claim headers does not take
/// them off the checked request, and an `Upgrade: h2c` (a tunnel past every later check, were the API to accept
/// it) does not reach the upstream.
#[tokio::test]
async fn connection_and_upgrade_headers_do_not_strip_claims_or_open_a_tunnel() {
    if !envoy_present() {
        return;
    }
    for mode in EnvoyMode::ALL {
        let rig = rig(mode).await;
        let request = RawRequest::new("GET", "/api/x")
            .header("Authorization", format!("Bearer {}", rig.token))
            .header("Connection", "keep-alive, X-Auth-Subject, x-auth-scope, Upgrade, HTTP2-Settings")
            .header("Upgrade", "h2c")
            .header("HTTP2-Settings", "AAMAAABkAAQAAP__");
        let response = send(&rig.envoy, &request, Duration::from_secs(10)).await.unwrap();
        assert_eq!(response.status, 200, "{mode:?}: {}", String::from_utf8_lossy(&response.body));
        let received: Vec<String> = serde_json::from_slice(&response.body).unwrap();
        for claim in ["x-auth-subject: alice", "x-auth-scope: read"] {
            assert!(received.iter().any(|line| line == claim), "{mode:?}: {claim} is missing: {received:?}");
        }
        for name in ["upgrade:", "http2-settings:", "connection:"] {
            assert!(!received.iter().any(|line| line.starts_with(name)), "{mode:?}: {name} {received:?}");
        }
    }
}

/// An Envoy whose cluster for portcullis lacks the HTTP/2 setting (so it speaks HTTP/1.1 to the gRPC listener)
/// gets no decision and refuses every request, the one with a valid token included: a misconfiguration fails
/// closed.
#[tokio::test]
async fn an_envoy_cluster_without_http2_fails_closed() {
    if !envoy_present() {
        return;
    }
    let rig = rig(EnvoyMode::Grpc).await;
    // The same portcullis behind a second Envoy whose portcullis cluster has no protocol options.
    let upstream = echo_upstream().await;
    let http1 = bootstrap(EnvoyMode::Grpc, &rig.authorizer, &upstream);
    let start = http1.find("    # gRPC needs HTTP/2").expect("the cluster's protocol options");
    let end =
        start + http1[start..].find("http2_protocol_options: {}\n").unwrap() + "http2_protocol_options: {}\n".len();
    let http1 = format!("{}{}", &http1[..start], &http1[end..]);
    let envoy = Envoy::start("envoy (gRPC over HTTP/1.1)", &http1).await;
    let request = RawRequest::new("GET", "/api/x").header("Authorization", format!("Bearer {}", rig.token));
    let response = send(&envoy.address, &request, Duration::from_secs(10)).await.unwrap();
    assert_eq!(response.status, 503, "{}", String::from_utf8_lossy(&response.body));
    assert!(!String::from_utf8_lossy(&response.body).contains("GET /api/x"), "the upstream was reached");
    // The first Envoy, with HTTP/2, allows the same request.
    let response = send(&rig.envoy, &request, Duration::from_secs(10)).await.unwrap();
    assert_eq!(response.status, 200);
}
