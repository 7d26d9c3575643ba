//! Every limit of `[limits]` holds against a real client: oversized or too many headers, slow and idle clients,
//! connection floods, long tokens, and key sets that are too large or hold too many keys.
#![allow(clippy::unwrap_used)]

mod support;

use axum::Router;
use axum::routing::get;
use portcullis_gateway::{Config, Gateway};
use portcullis_issuer::{DEMO_AUDIENCE, DevIssuer, KeyChoice};
use serde_json::{Value, json};
use std::time::Duration;
use support::{gateway, issuer, listen, upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A proxy-mode configuration for `issuer` with `limits` (TOML lines of the `[limits]` table).
fn config(issuer: &DevIssuer, upstream: &str, limits: &str) -> String {
    format!(
        "upstream = \"{upstream}\"\n[[issuers]]\nissuer = \"{}\"\naudiences = [\"{DEMO_AUDIENCE}\"]\n\
         [[routes]]\npath = \"/api/*\"\n[limits]\n{limits}\n",
        issuer.issuer()
    )
}

/// Reads from `stream` until the server closes it (or 10 s pass, which fails the test); returns what was read.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut seen)).await;
    assert!(read.is_ok(), "the server kept the connection open; it sent {:?}", String::from_utf8_lossy(&seen));
    String::from_utf8_lossy(&seen).into_owned()
}

/// Sends one request on a new connection and returns the status line of the answer.
async fn status_line(address: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut stream).await;
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn oversized_header_blocks_and_too_many_headers_are_431() {
    let issuer = issuer().await;
    let upstream = upstream().await;
    let base = gateway(&config(&issuer, &upstream, "max_header_bytes = 8192\nmax_headers = 20")).await;
    let address = base.trim_start_matches("http://");
    let token = issuer.user_token("demo-spa", "alice", DEMO_AUDIENCE, &["openid"]).unwrap();

    let fits = format!("GET /api/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    assert_eq!(status_line(address, &fits).await, "HTTP/1.1 200 OK");

    let padding = "p".repeat(9000);
    let big = format!("GET /api/x HTTP/1.1\r\nHost: a\r\nX-Padding: {padding}\r\nConnection: close\r\n\r\n");
    assert_eq!(status_line(address, &big).await, "HTTP/1.1 431 Request Header Fields Too Large");

    let many: String = (0..30).map(|i| format!("X-Extra-{i}: {i}\r\n")).collect();
    let crowded = format!("GET /api/x HTTP/1.1\r\nHost: a\r\n{many}Connection: close\r\n\r\n");
    assert_eq!(status_line(address, &crowded).await, "HTTP/1.1 431 Request Header Fields Too Large");
}

#[tokio::test]
async fn slow_headers_and_idle_connections_are_closed() {
    let issuer = issuer().await;
    let upstream = upstream().await;
    let base = gateway(&config(&issuer, &upstream, "header_read_timeout_secs = 1")).await;
    let address = base.trim_start_matches("http://");

    // Slowloris: half a request head, then nothing. The server closes without answering.
    let mut slow = TcpStream::connect(address).await.unwrap();
    slow.write_all(b"GET /api/x HTTP/1.1\r\nHost: a\r\n").await.unwrap();
    let started = std::time::Instant::now();
    assert_eq!(read_until_closed(&mut slow).await, "");
    assert!(started.elapsed() >= Duration::from_millis(900), "closed after {:?}", started.elapsed());

    // An idle kept-alive connection: one answered request, then silence; closed by the same timeout.
    let mut idle = TcpStream::connect(address).await.unwrap();
    idle.write_all(b"GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let answer = read_until_closed(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 401 Unauthorized"), "{answer}");
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    let issuer = issuer().await;
    let upstream = upstream().await;
    let base = gateway(&config(&issuer, &upstream, "max_connections = 2")).await;
    let address = base.trim_start_matches("http://");

    let first = TcpStream::connect(address).await.unwrap();
    let mut second = TcpStream::connect(address).await.unwrap();
    second.write_all(b"GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let mut head = [0u8; 12];
    second.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 401", "the second connection is served");

    // The third is queued by the kernel but not served while two are open.
    let mut third = TcpStream::connect(address).await.unwrap();
    third.write_all(b"GET /api/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut byte)).await;
    assert!(early.is_err(), "a third connection was served beyond max_connections = 2");

    drop(first);
    let answer = read_until_closed(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "served once a slot was free: {answer}");
}

#[tokio::test]
async fn tokens_longer_than_the_limit_are_refused_before_parsing() {
    let issuer = issuer().await;
    let upstream = upstream().await;
    let base = gateway(&config(&issuer, &upstream, "max_token_bytes = 512")).await;
    let http = reqwest::Client::new();
    let token = issuer.user_token("demo-spa", "alice", DEMO_AUDIENCE, &["openid"]).unwrap();
    assert!(token.len() > 512, "the dev issuer's RS256 token is {} bytes", token.len());

    let response = http.get(format!("{base}/api/x")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(challenge.contains("the limit is 512"), "{challenge}");
}

#[tokio::test]
async fn tokens_nested_deeper_than_the_limit_are_refused() {
    let issuer = issuer().await;
    let upstream = upstream().await;
    let plain = issuer.user_token("demo-spa", "alice", DEMO_AUDIENCE, &["openid"]).unwrap();
    let payload = portcullis::__internals::base64url::decode(plain.split('.').nth(1).unwrap()).unwrap();
    let mut claims: serde_json::Map<String, Value> = serde_json::from_slice(&payload).unwrap();
    // ctx is level 2, org 3, teams 4, the inner array 5.
    claims.insert("ctx".into(), json!({ "org": { "teams": [["payments"]] } }));
    let deep = issuer.sign(&claims, &KeyChoice::Current, None).unwrap();
    let http = reqwest::Client::new();

    let strict = gateway(&config(&issuer, &upstream, "max_json_depth = 4")).await;
    let response = http.get(format!("{strict}/api/x")).bearer_auth(&deep).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(challenge.contains("nesting deeper than 4 levels"), "{challenge}");
    let response = http.get(format!("{strict}/api/x")).bearer_auth(&plain).send().await.unwrap();
    assert_eq!(response.status(), 200, "tokens within the limit pass");

    let default = gateway(&config(&issuer, &upstream, "")).await;
    let response = http.get(format!("{default}/api/x")).bearer_auth(&deep).send().await.unwrap();
    assert_eq!(response.status(), 200, "the default limit is 64 levels");
}

/// A JWKS endpoint serving `document`; its URL.
async fn jwks_endpoint(document: Value) -> String {
    let text = document.to_string();
    let app = Router::new().route("/jwks.json", get(move || std::future::ready(text.clone())));
    format!("{}/jwks.json", portcullis_testkit::net::serve(app).await)
}

/// Whether a gateway whose key set comes from `jwks_uri` under `limits` accepts a valid token of `issuer`.
async fn accepts(issuer: &DevIssuer, jwks_uri: &str, limits: &str) -> u16 {
    let toml = format!(
        "forward_auth = \"nginx\"\n[[issuers]]\nissuer = \"{}\"\naudiences = [\"{DEMO_AUDIENCE}\"]\n\
         jwks_uri = \"{jwks_uri}\"\n[[routes]]\npath = \"/api/*\"\n[limits]\n{limits}\n",
        issuer.issuer()
    );
    let gateway = Gateway::new(Config::from_toml(&toml).unwrap()).unwrap();
    let (listener, address) = listen().await;
    tokio::spawn(portcullis_gateway::serve(gateway, listener, None, std::future::pending()));
    let token = issuer.user_token("demo-spa", "alice", DEMO_AUDIENCE, &["openid"]).unwrap();
    let response = reqwest::Client::new()
        .get(format!("http://{address}/auth"))
        .bearer_auth(token)
        .header("x-original-uri", "/api/x")
        .header("x-original-method", "GET")
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

#[tokio::test]
async fn key_sets_that_are_too_large_or_hold_too_many_keys_are_refused() {
    let issuer = issuer().await;
    let mut document = issuer.jwks();
    let keys = document["keys"].as_array_mut().unwrap();
    let real = keys.len();
    // Padding entries: each counts against max_keys_per_set and adds to the document's size.
    keys.extend((0..3).map(|i| json!({ "kty": "oct", "kid": format!("padding-{i}"), "k": "x".repeat(400) })));
    let size = document.to_string().len();
    let uri = jwks_endpoint(document).await;

    assert_eq!(accepts(&issuer, &uri, "").await, 200, "within the default limits");
    // A keys outage in forward-auth mode is a 401 that says so (nginx passes only 401/403).
    assert_eq!(accepts(&issuer, &uri, &format!("max_keys_per_set = {}", real + 2)).await, 401);
    assert_eq!(accepts(&issuer, &uri, &format!("max_keys_per_set = {}", real + 3)).await, 200);
    assert_eq!(accepts(&issuer, &uri, &format!("max_jwks_bytes = {}", size - 1)).await, 401);
    assert_eq!(accepts(&issuer, &uri, &format!("max_jwks_bytes = {size}")).await, 200);
}

#[test]
fn limits_are_checked_at_load() {
    let base = "upstream = \"http://127.0.0.1:1\"\n[[issuers]]\nissuer = \"https://a.example/\"\naudiences = [\"x\"]\n";
    let error = |limits: &str| Config::from_toml(&format!("{base}[limits]\n{limits}\n")).unwrap_err().to_string();
    assert_eq!(
        error("max_header_bytes = 100"),
        "line 6, column 20: limits.max_header_bytes: must be at least 8192 bytes"
    );
    assert_eq!(error("max_connections = 0"), "line 6, column 19: limits.max_connections: must be at least 1");
    assert_eq!(error("max_json_depth = 1"), "line 6, column 18: limits.max_json_depth: must be at least 2 levels");
    assert_eq!(error("max_json_depth = 101"), "line 6, column 18: limits.max_json_depth: must be at most 100 levels");
    assert!(error("header_read_timeout = 3").contains("unknown field `header_read_timeout`"));
    let two_more = "[[issuers]]\nissuer = \"https://b.example/\"\naudiences = [\"x\"]\n\
                    [[issuers]]\nissuer = \"https://c.example/\"\naudiences = [\"x\"]\n";
    let crowded = Config::from_toml(&format!("{base}{two_more}[limits]\nmax_issuers = 2\n")).unwrap_err();
    let crowded = &crowded.errors()[0];
    assert_eq!(crowded.key, "issuers");
    assert!(crowded.message.contains("3 issuers configured, more than limits.max_issuers = 2"), "{crowded}");
}

#[tokio::test]
async fn connections_that_send_nothing_are_closed_and_free_their_slot() {
    let issuer = issuer().await;
    let upstream = upstream().await;
    let base = gateway(&config(&issuer, &upstream, "header_read_timeout_secs = 1\nmax_connections = 2")).await;
    let address = base.trim_start_matches("http://");
    // Two silent sockets take every slot; the gateway closes both once the header read timeout passes.
    let mut silent = [TcpStream::connect(address).await.unwrap(), TcpStream::connect(address).await.unwrap()];
    for stream in &mut silent {
        assert_eq!(read_until_closed(stream).await, "");
    }
    let token = issuer.user_token("demo-spa", "alice", DEMO_AUDIENCE, &["openid"]).unwrap();
    let request =
        format!("GET /api/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    assert_eq!(status_line(address, &request).await, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn http2_connections_that_stop_answering_are_closed() {
    let issuer = issuer().await;
    let upstream = upstream().await;
    let base = gateway(&config(&issuer, &upstream, "header_read_timeout_secs = 1")).await;
    let mut stream = TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    // The HTTP/2 preface and an empty SETTINGS frame, then silence: the gateway's pings go unanswered.
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    read_until_closed(&mut stream).await;
}

#[tokio::test]
async fn idle_http2_connections_that_answer_pings_are_closed_too() {
    let issuer = issuer().await;
    let upstream = upstream().await;
    let base = gateway(&config(&issuer, &upstream, "header_read_timeout_secs = 1\nmax_connections = 1")).await;
    let address = base.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&address).await.unwrap();
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    // A live but idle peer: acknowledge every SETTINGS and PING until the gateway ends the connection.
    let served = async {
        let mut head = [0u8; 9];
        while stream.read_exact(&mut head).await.is_ok() {
            let length = usize::from(head[1]) << 8 | usize::from(head[2]);
            let mut payload = vec![0u8; (usize::from(head[0]) << 16) | length];
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
    };
    assert!(tokio::time::timeout(Duration::from_secs(10), served).await.is_ok(), "the idle connection stayed open");
    // Its slot is free again.
    let token = issuer.user_token("demo-spa", "alice", DEMO_AUDIENCE, &["openid"]).unwrap();
    let request =
        format!("GET /api/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    assert_eq!(status_line(&address, &request).await, "HTTP/1.1 200 OK");
}
