//! The proxy's upstream connections: kept alive and reused while whole, replaced when the upstream closed them,
//! never reused when a response was left half-read. The upstreams count the connections they accept.
#![allow(clippy::unwrap_used)]

mod support;

use axum::Router;
use axum::body::Body;
use axum::routing::{any, get};
use http::StatusCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use support::{gateway, issuer, public_proxy_config, read_head};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Serves `app` over HTTP/1.1 on a loopback port; its URL and the number of connections accepted so far.
async fn counting(app: Router) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let app = app.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    app.clone().oneshot(request.map(Body::new))
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    (format!("http://{address}"), accepted)
}

fn app() -> Router {
    Router::new()
        .route("/empty", any(|| async { StatusCode::NO_CONTENT }))
        .route("/big", get(|| async { "x".repeat(4 << 20) }))
        .fallback(any(|uri: http::Uri, body: axum::body::Bytes| async move { format!("{uri} {}", body.len()) }))
}

#[tokio::test]
async fn one_client_after_another_share_one_upstream_connection() {
    let issuer = issuer().await;
    let (upstream, accepted) = counting(app()).await;
    let base = gateway(&public_proxy_config(&issuer, &upstream)).await;
    // A new client connection for every request: the upstream connection outlives each of them.
    for round in 0..5 {
        let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
        let answer = http.get(format!("{base}/a/{round}?q=1")).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.text().await.unwrap(), format!("/a/{round}?q=1 0"));
        let answer = http.post(format!("{base}/upload")).body(vec![7u8; 100_000]).send().await.unwrap();
        assert_eq!(answer.text().await.unwrap(), "/upload 100000");
        // Responses without a body to stream free the connection at once.
        let answer = http.head(format!("{base}/head")).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        let answer = http.delete(format!("{base}/empty")).send().await.unwrap();
        assert_eq!(answer.status(), 204);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "every exchange reused the first connection");
}

#[tokio::test]
async fn concurrent_requests_open_no_more_connections_than_are_in_flight() {
    let issuer = issuer().await;
    let (upstream, accepted) = counting(app()).await;
    let base = gateway(&public_proxy_config(&issuer, &upstream)).await;
    let http = reqwest::Client::new();
    for round in 0..4 {
        let requests = (0..8).map(|n| {
            let (http, base) = (http.clone(), base.clone());
            async move { http.get(format!("{base}/r{round}/{n}")).send().await.unwrap().text().await.unwrap() }
        });
        let answers = futures_util::future::join_all(requests).await;
        for (n, answer) in answers.iter().enumerate() {
            assert_eq!(answer, &format!("/r{round}/{n} 0"));
        }
    }
    let opened = accepted.load(Ordering::SeqCst);
    assert!((1..=8).contains(&opened), "{opened} upstream connections for at most 8 requests in flight");
}

#[tokio::test]
async fn a_response_the_client_abandons_is_never_continued_for_the_next_request() {
    let issuer = issuer().await;
    let (upstream, accepted) = counting(app()).await;
    let base = gateway(&public_proxy_config(&issuer, &upstream)).await;
    let http = reqwest::Client::new();
    // The client reads the head of a 4 MiB answer and goes away.
    let answer = http.get(format!("{base}/big")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.content_length(), Some(4 << 20));
    drop(answer);
    // The unread rest never reaches another request: the next answers are whole and their own.
    for n in 0..3 {
        let answer = http.get(format!("{base}/after/{n}")).send().await.unwrap();
        assert_eq!(answer.text().await.unwrap(), format!("/after/{n} 0"));
    }
    let big = http.get(format!("{base}/big")).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(big.len(), 4 << 20);
    assert!(big.iter().all(|&byte| byte == b'x'));
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "the abandoned connection was closed and replaced once");
}

/// An upstream that answers one request per connection, as if keeping it alive, then closes it; it reports each
/// close (the gateway's end of a loopback socket sees the close as soon as it is made).
async fn closing_upstream() -> (String, tokio::sync::mpsc::UnboundedReceiver<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (closed, closes) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut count = 0;
        while let Ok((mut stream, _)) = listener.accept().await {
            count += 1;
            read_head(&mut stream).await;
            let body = format!("connection {count}");
            let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
            stream.write_all(answer.as_bytes()).await.unwrap();
            stream.shutdown().await.unwrap();
            drop(stream);
            let _ = closed.send(count);
        }
    });
    (format!("http://{address}"), closes)
}

#[tokio::test]
async fn an_idle_connection_the_upstream_closed_is_replaced_without_an_error() {
    let issuer = issuer().await;
    let (upstream, mut closes) = closing_upstream().await;
    let base = gateway(&public_proxy_config(&issuer, &upstream)).await;
    let http = reqwest::Client::new();
    for n in 1..=3 {
        let answer = http.get(format!("{base}/n")).send().await.unwrap();
        assert_eq!(answer.status(), 200, "request {n}");
        assert_eq!(answer.text().await.unwrap(), format!("connection {n}"));
        assert_eq!(closes.recv().await, Some(n));
    }
}

/// An upstream that answers as soon as it has a request's head, then reads the whole body (RFC 9110 allows an
/// answer before the request is complete) and reports how many body bytes it read.
async fn early_answering_upstream() -> (String, tokio::sync::mpsc::UnboundedReceiver<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (read, reads) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let read = read.clone();
            tokio::spawn(async move {
                let head = read_head(&mut stream).await;
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .map_or(0, |value| value.trim().parse().unwrap());
                stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nearly").await.unwrap();
                let mut body = vec![0u8; length];
                let got = match stream.read_exact(&mut body).await {
                    Ok(_) => length,
                    Err(_) => 0,
                };
                let _ = read.send(got);
            });
        }
    });
    (format!("http://{address}"), reads)
}

#[tokio::test]
async fn an_answer_before_the_whole_upload_does_not_cut_the_upload_off() {
    let issuer = issuer().await;
    let (upstream, mut reads) = early_answering_upstream().await;
    let base = gateway(&public_proxy_config(&issuer, &upstream)).await;
    let mut client = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    let total = 300_000;
    client
        .write_all(format!("POST /upload HTTP/1.1\r\nHost: api\r\nContent-Length: {total}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    client.write_all(&vec![b'a'; 1000]).await.unwrap();
    // The answer arrives while most of the body is still to come.
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.ends_with(b"early") {
        let n = client.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before the answer: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&chunk[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200 "), "{}", String::from_utf8_lossy(&answer));
    client.write_all(&vec![b'b'; total - 1000]).await.unwrap();
    assert_eq!(reads.recv().await, Some(total), "the upstream read the whole body");
}
