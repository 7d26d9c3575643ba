//! Servers the gateway tests start on loopback ports: an echoing upstream and the gateway; the dev issuer and
//! loopback listeners come from `portcullis_testkit`.
#![allow(dead_code)]

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::{any, get};
use portcullis_gateway::{Config, Gateway};
pub use portcullis_testkit::net::listen;
use portcullis_testkit::net::serve;
use serde_json::{Value, json};
use std::time::Duration;

/// An upstream that answers with what it received.
pub async fn upstream() -> String {
    let echo = |headers: HeaderMap, method: axum::http::Method, uri: axum::http::Uri, body: Bytes| async move {
        let headers: serde_json::Map<String, Value> =
            headers.iter().map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or("?")))).collect();
        axum::Json(
            json!({"method": method.as_str(), "uri": uri.to_string(), "headers": headers, "body_len": body.len()}),
        )
    };
    let app = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .fallback(any(echo))
        .layer(axum::extract::DefaultBodyLimit::disable());
    serve(app).await
}

/// The dev issuer of the demo tenant, serving on a free port.
pub use portcullis_testkit::issuers::demo as issuer;

/// A gateway with the configuration `toml`, serving on a free port; its base URL.
pub async fn gateway(toml: &str) -> String {
    let gateway = Gateway::new(Config::from_toml(toml).unwrap()).unwrap();
    let (listener, address) = listen().await;
    tokio::spawn(portcullis_gateway::serve(gateway, listener, None, std::future::pending()));
    format!("http://{address}")
}

/// A gateway configuration that proxies every path of `upstream` as public, with the demo issuer configured: for
/// tests of the forwarding itself.
pub fn public_proxy_config(issuer: &portcullis_issuer::DevIssuer, upstream: &str) -> String {
    format!(
        r#"
        upstream = "{upstream}"
        upstream_timeout_secs = 5
        [[issuers]]
        issuer = "{}"
        audiences = ["{}"]
        [[routes]]
        path = "/*"
        public = true
        "#,
        issuer.issuer(),
        portcullis_issuer::DEMO_AUDIENCE
    )
}

/// Reads a request head from `stream` byte by byte, up to and including its empty line (less if the stream ends).
pub async fn read_head(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    head
}
