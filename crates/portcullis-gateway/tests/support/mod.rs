//! Servers the gateway tests start on loopback ports: an echoing upstream, the dev issuer, and the gateway.
#![allow(dead_code)]

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::{any, get};
use portcullis_gateway::{Config, Gateway};
use portcullis_issuer::{DevIssuer, Tenant};
use serde_json::{Value, json};
use std::time::Duration;

/// A listener on a free loopback port, and its address.
pub async fn listen() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    (listener, address)
}

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
    let (listener, address) = listen().await;
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

/// The dev issuer, serving on a free port.
pub async fn issuer() -> DevIssuer {
    let (listener, address) = listen().await;
    let issuer = DevIssuer::new(Tenant::demo("http://127.0.0.1:3000/callback"), &format!("http://{address}/")).unwrap();
    tokio::spawn(portcullis_issuer::serve(listener, issuer.clone()));
    issuer
}

/// A gateway with the configuration `toml`, serving on a free port; its base URL.
pub async fn gateway(toml: &str) -> String {
    let gateway = Gateway::new(Config::from_toml(toml).unwrap()).unwrap();
    let (listener, address) = listen().await;
    tokio::spawn(portcullis_gateway::serve(gateway, listener, None, std::future::pending()));
    format!("http://{address}")
}
