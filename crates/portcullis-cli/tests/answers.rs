//! The gateway's own answers as a client of `portcullis serve --config FILE` sees them: an unmatched route (404),
//! an upstream that refuses connections (502) and one that never answers (504) carry the JSON body of the
//! credential refusals (`error`, `reason`, `message`), `Content-Type: application/json`, and nothing about the
//! upstream's address or the connection error.
#![allow(clippy::unwrap_used)]

mod support;

use portcullis_testkit::fronts::GatewayProcess;
use serde_json::{Value, json};
use std::path::Path;
use support::{machine_token, portcullis, url_after};

const AUDIENCE: &str = "https://api.example.com";

/// A gateway file: listeners on free loopback ports, one issuer, one protected route, 1 s upstream timeout.
fn config(issuer: &str, upstream: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
upstream = "{upstream}"
upstream_timeout_secs = 1
[[issuers]]
issuer = "{issuer}"
audiences = ["{AUDIENCE}"]
[[routes]]
path = "/api/*"
"#
    )
}

/// Status, content type and JSON body of `GET base+path`, with `token` when given.
async fn get(base: &str, path: &str, token: Option<&str>) -> (u16, String, Value) {
    let mut request = reqwest::Client::new().get(format!("http://{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text:?}"));
    (status, content_type.unwrap_or_default(), body)
}

/// The body says nothing about where the upstream is or how the connection failed.
fn assert_no_details(body: &Value, upstream: &str) {
    let text = body.to_string().to_ascii_lowercase();
    let port = upstream.rsplit(':').next().unwrap();
    for leak in ["127.0.0.1", port, "refused", "connect", "hyper", "tcp", "os error"] {
        assert!(!text.contains(leak), "the body leaks {leak:?}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_bad_gateway_and_gateway_timeout_have_the_refusal_body() {
    let binary = Path::new(env!("CARGO_BIN_EXE_portcullis"));
    let (_issuer, mut issuer_out) = portcullis(&["issuer", "--listen", "127.0.0.1:0"]);
    let issuer = url_after(&mut issuer_out, "portcullis dev issuer at").await;
    let token = machine_token(&issuer, AUDIENCE).await;

    // An address nothing listens on: bound once for a free port, then closed.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let down =
        GatewayProcess::start(binary, "gateway, upstream down", &config(&issuer, &format!("http://{closed}"))).await;

    // The credential refusal whose shape the others follow.
    let (status, content_type, refused) = get(&down.address, "/api/x", None).await;
    assert_eq!((status, content_type.as_str()), (401, "application/json"));
    let mut keys: Vec<&String> = refused.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["error", "message", "reason"], "{refused}");

    // No route: 404, never reaching the upstream (which is down: a 502 would show it had been asked).
    let (status, content_type, body) = get(&down.address, "/elsewhere", Some(&token)).await;
    assert_eq!((status, content_type.as_str()), (404, "application/json"));
    assert_eq!(body, json!({"error": "not_found", "reason": "no_route", "message": "no such route"}));

    // An allowed request the upstream cannot take: 502.
    let (status, content_type, body) = get(&down.address, "/api/x", Some(&token)).await;
    assert_eq!((status, content_type.as_str()), (502, "application/json"));
    assert_eq!(
        body,
        json!({"error": "bad_gateway", "reason": "upstream_unreachable", "message": "upstream unavailable"})
    );
    assert_no_details(&body, &closed);

    // An upstream that accepts the connection and never answers: 504 after upstream_timeout_secs.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_address = silent.local_addr().unwrap().to_string();
    let slow = GatewayProcess::start(
        binary,
        "gateway, upstream silent",
        &config(&issuer, &format!("http://{silent_address}")),
    )
    .await;
    let (status, content_type, body) = get(&slow.address, "/api/x", Some(&token)).await;
    assert_eq!((status, content_type.as_str()), (504, "application/json"));
    assert_eq!(
        body,
        json!({"error": "gateway_timeout", "reason": "upstream_timeout", "message": "upstream timed out"})
    );
    assert_no_details(&body, &silent_address);
    drop(silent);
}
