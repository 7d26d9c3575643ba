//! A refused request keeps its connection usable: the gateway reads (and drops) a refused request's body before it
//! answers, so HTTP/1.1 keep-alive goes on. An MCP client sends its first `POST` without a token and fetches the
//! metadata the 401 names on the same connection at once; were the connection closed under it, that request would
//! be lost. A body too large to read, or one the client waits for `100 Continue` to send, gets `Connection: close`.
#![allow(clippy::unwrap_used)]

#[allow(unused_imports)]
mod support;

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(10);

async fn gateway() -> String {
    gateway_with("").await
}

/// A gateway with `extra` top-level settings (before any table), a route `/mcp` and an echoing upstream.
async fn gateway_with(extra: &str) -> String {
    let key = portcullis_testkit::keys::key("k1");
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, portcullis_testkit::keys::jwks(&[&key])).unwrap();
    let upstream = support::upstream().await;
    let config = format!(
        "upstream = \"{upstream}\"\n{extra}\n[[issuers]]\nissuer = \"https://issuer.test/\"\naudiences = [\"https://api.test\"]\n\
         jwks_uri = \"file://{}\"\n[[routes]]\npath = \"/mcp\"\n",
        jwks.display()
    );
    let base = support::gateway(&config).await;
    // The key file is read when the gateway starts; the directory may go.
    drop(dir);
    base.trim_start_matches("http://").to_owned()
}

/// One response read from `stream`: its head (status line and headers, lower-cased) and body, using
/// `Content-Length`; `None` when the connection ends first.
async fn response(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .map_or(0, |value| value.trim().parse().unwrap());
                if seen.len() >= end + 4 + length {
                    let body = seen[end + 4..end + 4 + length].to_vec();
                    seen.drain(..end + 4 + length);
                    return Some((head, body));
                }
            }
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => seen.extend_from_slice(&buffer[..n]),
            }
        }
    };
    tokio::time::timeout(TIMEOUT, read).await.expect("no answer in time")
}

fn post_head(address: &str, length: usize, extra: &str) -> String {
    format!(
        "POST /mcp HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nAccept: application/json, \
         text/event-stream\r\nContent-Length: {length}\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn the_connection_of_a_refused_post_stays_open_for_the_next_request() {
    let address = gateway().await;
    let body = format!(r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"pad":"{}"}}}}"#, "x".repeat(2000));
    let mut stream = TcpStream::connect(&address).await.unwrap();
    stream.set_nodelay(true).unwrap();
    // The head and the body in two writes, as HTTP clients send them: the refusal is decided on the head alone.
    stream.write_all(post_head(&address, body.len(), "").as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let (head, answer) = response(&mut stream).await.expect("the refusal");
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    assert!(String::from_utf8_lossy(&answer).contains("token_missing"));

    // The client's next request on the same connection, as an MCP client's metadata request comes.
    let again = format!("GET /mcp HTTP/1.1\r\nHost: {address}\r\n\r\n");
    stream.write_all(again.as_bytes()).await.unwrap();
    let (head, _) = response(&mut stream).await.expect("an answer on the kept connection");
    assert!(head.starts_with("http/1.1 401"), "{head}");
}

#[tokio::test]
async fn a_refused_body_too_large_to_read_or_not_sent_yet_gets_connection_close() {
    let address = gateway().await;

    let length = 1024 * 1024;
    let mut stream = TcpStream::connect(&address).await.unwrap();
    stream.write_all(post_head(&address, length, "").as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // The gateway stops reading after its limit; the rest of the body may never be taken.
    let sending = tokio::spawn(async move {
        let chunk = vec![b' '; 16 * 1024];
        for _ in 0..length / chunk.len() {
            if writer.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    let head = tokio::time::timeout(TIMEOUT, async {
        loop {
            if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                return String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
            }
            let n = reader.read(&mut buffer).await.unwrap();
            assert_ne!(n, 0, "the connection ended before the refusal");
            seen.extend_from_slice(&buffer[..n]);
        }
    })
    .await
    .expect("no answer in time");
    assert!(head.starts_with("http/1.1 401") && head.contains("connection: close"), "{head}");
    sending.abort();

    // A client waiting for `100 Continue` is not asked for its body: the refusal comes at once, and closes.
    let mut stream = TcpStream::connect(&address).await.unwrap();
    stream.write_all(post_head(&address, 10, "Expect: 100-continue\r\n").as_bytes()).await.unwrap();
    let (head, _) = response(&mut stream).await.expect("the refusal");
    assert!(head.starts_with("http/1.1 401") && head.contains("connection: close"), "{head}");
}

/// A gateway that publishes protected-resource metadata.
async fn gateway_with_metadata() -> String {
    gateway_with(
        "public_url = \"https://api.example.com\"\n[resource_metadata]\nresource = \"https://api.example.com\"\n\
         authorization_servers = [\"https://issuer.test/\"]",
    )
    .await
}

/// Every answer the gateway gives before routing (the metadata document, its `OPTIONS` and `405` answers) reads a
/// request body as a refusal does: an answer sent while the body is still unread would have hyper close the
/// connection under a client that was not told so, and that client's next request on it would be lost.
#[tokio::test]
async fn answers_before_any_route_read_the_body_or_say_connection_close() {
    let address = gateway_with_metadata().await;
    let well_known = "/.well-known/oauth-protected-resource";
    for method in ["OPTIONS", "POST", "GET"] {
        // The body follows the head at once: it is read, and the connection serves the next request.
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let head = format!("{method} {well_known} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 5\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.flush().await.unwrap();
        stream.write_all(b"hello").await.unwrap();
        let (head, _) = response(&mut stream).await.expect("the answer");
        assert!(!head.contains("connection: close"), "{method}: {head}");
        let again = format!("GET {well_known} HTTP/1.1\r\nHost: {address}\r\n\r\n");
        stream.write_all(again.as_bytes()).await.unwrap();
        let (head, document) = response(&mut stream).await.expect("an answer on the kept connection");
        assert!(head.starts_with("http/1.1 200"), "{method}: {head}");
        assert!(String::from_utf8_lossy(&document).contains("authorization_servers"));

        // A body that does not come: the answer says the connection closes.
        let mut stream = TcpStream::connect(&address).await.unwrap();
        let head = format!("{method} {well_known} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 5\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let (head, _) = response(&mut stream).await.expect("the answer");
        assert!(head.contains("connection: close"), "{method}: {head}");
    }
}

/// hyper answers `100 Continue` when any `Expect` header asks for it (the last one counts), so the gateway does
/// not read a refused body when any of them does: the client is never asked for a body that would be dropped.
#[tokio::test]
async fn a_refused_request_with_100_continue_in_any_expect_header_is_not_asked_for_its_body() {
    let address = gateway().await;
    for expect in ["Expect: foo\r\nExpect: 100-continue\r\n", "Expect: 100-CONTINUE\r\n"] {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream.write_all(post_head(&address, 10, expect).as_bytes()).await.unwrap();
        let (head, _) = response(&mut stream).await.expect("the refusal");
        assert!(head.starts_with("http/1.1 401") && head.contains("connection: close"), "{expect}: {head}");
    }
}
