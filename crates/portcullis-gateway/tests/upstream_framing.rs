//! Messages whose framing could be read two ways, on either side of the proxy: an upstream response framed by both
//! `Transfer-Encoding` and `Content-Length` is not passed on, and a client body whose chunk framing breaks is the
//! client's error (400), not the upstream's.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use support::{gateway, issuer, public_proxy_config, read_head, upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An upstream that answers every request with `answer`, as raw bytes.
async fn raw_upstream(answer: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                read_head(&mut stream).await;
                let _ = stream.write_all(answer).await;
                // Keeps the connection open until the gateway closes it.
                let _ = stream.read(&mut [0u8; 1]).await;
            });
        }
    });
    format!("http://{address}")
}

#[tokio::test]
async fn a_response_framed_by_both_transfer_encoding_and_content_length_is_not_passed_on() {
    let issuer = issuer().await;
    let smuggling: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n\
        5\r\nhello\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let base = gateway(&public_proxy_config(&issuer, &raw_upstream(smuggling).await)).await;
    let answer = reqwest::get(format!("{base}/any")).await.unwrap();
    assert_eq!(answer.status(), 502);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["reason"], "upstream_response_invalid", "{body}");
    assert!(!body.to_string().contains("hello"), "{body}");
}

#[tokio::test]
async fn a_client_body_whose_chunk_framing_breaks_is_a_400_and_the_connection_closes() {
    let issuer = issuer().await;
    let base = gateway(&public_proxy_config(&issuer, &upstream().await)).await;
    let address = base.trim_start_matches("http://");
    let mut client = TcpStream::connect(address).await.unwrap();
    client
        .write_all(b"POST /upload HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("body_invalid"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
}
