//! `portcullis serve` with flags only, in front of a real upstream, trusting `portcullis issuer` — all processes
//! and servers on loopback ports, stopped when the test ends.
#![allow(clippy::unwrap_used)]

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::any;
use serde_json::{Value, json};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

fn spawn(args: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .env_remove("PORTCULLIS_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// Reads stdout until a line contains `marker`, and returns the first `http://…` word of it.
async fn url_after(lines: &mut Lines<BufReader<ChildStdout>>, marker: &str) -> String {
    loop {
        let line = lines.next_line().await.unwrap().expect("the process ended before printing its address");
        if line.contains(marker) {
            let word = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap();
            return word.trim_end_matches([',', ')']).to_owned();
        }
    }
}

#[tokio::test]
async fn flags_only_gateway_in_front_of_an_upstream_with_the_dev_issuer() {
    let (_issuer, mut issuer_out) = spawn(&["issuer", "--listen", "127.0.0.1:0"]);
    let issuer = url_after(&mut issuer_out, "portcullis dev issuer at").await;

    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}", upstream.local_addr().unwrap());
    let echo = Router::new().fallback(any(|headers: HeaderMap| async move {
        axum::Json(json!({ "subject": headers.get("x-auth-subject").and_then(|v| v.to_str().ok()) }))
    }));
    tokio::spawn(async move { axum::serve(upstream, echo).await.unwrap() });

    let (_gateway, mut gateway_out) = spawn(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream_url,
        "--issuer",
        &issuer,
        "--audience",
        "https://api.example.com",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let gateway = url_after(&mut gateway_out, "portcullis gateway listening on").await;
    let admin = url_after(&mut gateway_out, "admin listening on").await;
    let http = reqwest::Client::new();

    let token: Value = http
        .post(format!("{issuer}oauth/token"))
        .json(&json!({"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-secret", "audience": "https://api.example.com"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap();

    let response = http.get(format!("{gateway}/api/anything")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let seen: Value =
        http.get(format!("{gateway}/api/anything")).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    assert_eq!(seen["subject"], "demo-client@clients");
    assert_eq!(http.get(format!("{admin}/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(http.get(format!("{admin}/ready")).send().await.unwrap().status(), 200);
}

#[test]
fn serve_flag_errors_exit_two() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(args)
            .env_remove("PORTCULLIS_CONFIG")
            .output()
            .unwrap()
    };
    let missing_issuer = run(&["serve", "--upstream", "http://127.0.0.1:9"]);
    assert_eq!(missing_issuer.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing_issuer.stderr).contains("[[issuers]]"));
    let no_audience = run(&["serve", "--upstream", "http://127.0.0.1:9", "--issuer", "https://i/"]);
    assert_eq!(no_audience.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_audience.stderr).contains("--audience"));
}
