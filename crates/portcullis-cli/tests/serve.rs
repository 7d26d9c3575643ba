//! `portcullis serve` with flags only, in front of a real upstream, trusting `portcullis issuer` — all processes
//! and servers on loopback ports, stopped when the test ends.
#![allow(clippy::unwrap_used)]

mod support;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::any;
use serde_json::{Value, json};
use std::process::Stdio;
use support::{drain, line_with, machine_token, portcullis, url_after, url_in};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, Command};

/// Starts `portcullis` with `args` and info logs on stderr; returns it, the gateway's URL and its log lines.
async fn serve_with_logs(args: &[&str]) -> (Child, String, Lines<BufReader<tokio::process::ChildStderr>>) {
    let mut gateway = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(gateway.stdout.take().unwrap()).lines();
    let logs = BufReader::new(gateway.stderr.take().unwrap()).lines();
    let base = url_after(&mut out, "portcullis gateway listening on").await;
    // Keep reading stdout so a later line never meets a closed pipe.
    drain(out);
    (gateway, base, logs)
}

#[tokio::test]
async fn flags_only_gateway_in_front_of_an_upstream_with_the_dev_issuer() {
    let (_issuer, mut issuer_out) = portcullis(&["issuer", "--listen", "127.0.0.1:0"]);
    let issuer = url_after(&mut issuer_out, "portcullis dev issuer at").await;

    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}", upstream.local_addr().unwrap());
    let echo = Router::new().fallback(any(|headers: HeaderMap| async move {
        axum::Json(json!({ "subject": headers.get("x-auth-subject").and_then(|v| v.to_str().ok()) }))
    }));
    tokio::spawn(async move { axum::serve(upstream, echo).await.unwrap() });

    let (_gateway, mut gateway_out) = portcullis(&[
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
        "--workers",
        "1",
    ]);
    let listening = line_with(&mut gateway_out, "portcullis gateway listening on").await;
    assert!(listening.ends_with(&format!("(reverse proxy to {upstream_url}, 1 worker thread)")), "{listening}");
    let gateway = url_in(&listening);
    let admin = url_after(&mut gateway_out, "admin listening on").await;
    let http = reqwest::Client::new();

    let token = &machine_token(&issuer, "https://api.example.com").await;

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
    // Forward-auth names the proxy in front; a bare flag or another name is refused with the choices.
    for args in [&["serve", "--forward-auth"][..], &["serve", "--forward-auth", "haproxy", "--issuer", "https://i/"]] {
        let refused = run(args);
        assert_eq!(refused.status.code(), Some(2), "{args:?}");
        let said = String::from_utf8_lossy(&refused.stderr);
        let named = ["nginx", "caddy", "traefik", "envoy"].iter().all(|front| said.contains(front));
        assert!(named, "{args:?}: {said}");
    }
}

/// Reads JSON log lines from stderr until one has `message`; returns it. Every line read is kept in `seen`.
async fn log_line(logs: &mut Lines<BufReader<tokio::process::ChildStderr>>, message: &str, seen: &mut String) -> Value {
    loop {
        let line = logs.next_line().await.unwrap().expect("the gateway ended before logging {message}");
        seen.push_str(&line);
        seen.push('\n');
        let entry: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        if entry["message"] == message {
            return entry;
        }
    }
}

#[tokio::test]
async fn json_request_logs_and_sighup_reload() {
    let (_issuer, mut issuer_out) = portcullis(&["issuer", "--listen", "127.0.0.1:0"]);
    let issuer = url_after(&mut issuer_out, "portcullis dev issuer at").await;
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}", upstream.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(upstream, Router::new().fallback(any(|| async { "upstream" }))).await });

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    let config = |public: bool| {
        format!(
            "listen = \"127.0.0.1:0\"\nupstream = \"{upstream_url}\"\nlog_format = \"json\"\n[[issuers]]\n\
             issuer = \"{issuer}\"\naudiences = [\"https://api.example.com\"]\n[[routes]]\npath = \"/api/*\"\n\
             public = {public}\n"
        )
    };
    std::fs::write(&file, config(false)).unwrap();
    let (gateway, base, mut logs) = serve_with_logs(&["serve", "--config", file.to_str().unwrap()]).await;
    let http = reqwest::Client::new();
    let mut seen = String::new();

    let token = &machine_token(&issuer, "https://api.example.com").await;
    let response = http.get(format!("{base}/api/a")).bearer_auth(token).header("x-request-id", "req-1").send().await;
    assert_eq!(response.unwrap().status(), 200);
    let allowed = log_line(&mut logs, "request allowed", &mut seen).await;
    assert_eq!(allowed["request_id"], "req-1");
    assert_eq!(allowed["route"], "/api/*");
    assert_eq!(allowed["outcome"], "allowed");
    assert_eq!(allowed["subject"], "demo-client@clients");
    assert_eq!(allowed["path"], "/api/a");

    let at = token.len() - 10;
    let flipped = if &token[at..=at] == "A" { "B" } else { "A" };
    let tampered = format!("{}{flipped}{}", &token[..at], &token[at + 1..]);
    assert_eq!(http.get(format!("{base}/api/b")).bearer_auth(&tampered).send().await.unwrap().status(), 401);
    let denied = log_line(&mut logs, "request denied", &mut seen).await;
    assert_eq!(denied["reason"], "signature_invalid");
    assert_eq!(denied["route"], "/api/*");
    assert_eq!(denied["request_id"].as_str().unwrap().len(), 32);

    // A good new file: the route becomes public after SIGHUP.
    let hangup = || {
        let pid = gateway.id().unwrap().to_string();
        assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    };
    std::fs::write(&file, config(true)).unwrap();
    hangup();
    let reloaded = log_line(&mut logs, "configuration reloaded", &mut seen).await;
    assert_eq!((reloaded["routes"].as_u64(), reloaded["new_key_sets"].as_u64()), (Some(1), Some(0)));
    assert_eq!(http.get(format!("{base}/api/c")).send().await.unwrap().status(), 200);

    // A bad file: refused with the location of the error; the public route stays.
    std::fs::write(&file, config(true).replace("path = \"/api/*\"", "path = \"api/*\"")).unwrap();
    hangup();
    let refused =
        log_line(&mut logs, "configuration reload refused; the running configuration is kept", &mut seen).await;
    let why = refused["error"].as_str().unwrap();
    assert!(why.contains(&format!("{}:8:8: routes[0].path: must start with '/'", file.display())), "{why}");
    assert_eq!(refused["level"], "ERROR");
    assert_eq!(http.get(format!("{base}/api/d")).send().await.unwrap().status(), 200);

    // Never the token, nor its signature.
    let signature = token.rsplit('.').next().unwrap();
    assert!(!seen.contains(signature) && !seen.contains(&tampered), "a token reached the logs:\n{seen}");
}

#[test]
fn check_config_explains_errors_and_prints_the_template() {
    let run = |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_portcullis")).args(args).output().unwrap();
    let template = run(&["check-config", "--template"]);
    assert!(template.status.success());
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, &template.stdout).unwrap();
    let checked = run(&["check-config", good.to_str().unwrap()]);
    assert_eq!(checked.status.code(), Some(0));
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(said.contains("valid (reverse proxy, 1 issuer(s), 3 route(s), requests no route matches: 404)"), "{said}");

    let bad = dir.path().join("bad.toml");
    let text = String::from_utf8_lossy(&template.stdout).replace("methods = [\"GET\"]", "methods = [\"GET\", \"\"]");
    std::fs::write(&bad, text.as_bytes()).unwrap();
    let line = text.lines().position(|l| l.starts_with("methods = [\"GET\", \"\"]")).unwrap() + 1;
    let checked = run(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(checked.status.code(), Some(3), "configuration");
    let said = String::from_utf8_lossy(&checked.stderr);
    assert!(
        said.contains(&format!("{}:{line}:19: routes[0].methods[1]: \"\" is not an HTTP method", bad.display())),
        "{said}"
    );

    std::fs::write(&bad, "listen = 8080\n").unwrap();
    let checked = run(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(checked.status.code(), Some(3), "configuration");
    let said = String::from_utf8_lossy(&checked.stderr);
    assert!(said.contains(&format!("{}:1:10: listen: invalid type: integer `8080`", bad.display())), "{said}");

    // The old mode key is refused with its replacement named.
    std::fs::write(&bad, "mode = \"forward_auth\"\n").unwrap();
    let checked = run(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(checked.status.code(), Some(3), "configuration");
    let said = String::from_utf8_lossy(&checked.stderr);
    assert!(said.contains(&format!("{}:1:1: `mode` is gone: name the proxy in front with", bad.display())), "{said}");
}

#[tokio::test]
async fn sigterm_lets_requests_in_flight_finish() {
    let issuer = portcullis_testkit::issuers::demo().await;
    let issuer_url = issuer.issuer().to_owned();

    // The upstream says when the request arrived and answers only when released.
    let (arrived_tx, arrived) = tokio::sync::mpsc::channel::<()>(1);
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}", upstream.local_addr().unwrap());
    let gate = release.clone();
    let app = Router::new().fallback(any(move || {
        let (arrived_tx, gate) = (arrived_tx.clone(), gate.clone());
        async move {
            let _ = arrived_tx.send(()).await;
            gate.notified().await;
            "finished"
        }
    }));
    tokio::spawn(async move { axum::serve(upstream, app).await });

    let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--upstream", &upstream_url];
    args.extend(["--issuer", &issuer_url, "--audience", "https://api.example.com"]);
    let (mut gateway, base, mut logs) = serve_with_logs(&args).await;
    let token = issuer.client_credentials_token("demo-client", "https://api.example.com").unwrap();
    let in_flight = tokio::spawn(reqwest::Client::new().get(format!("{base}/slow")).bearer_auth(token).send());
    let mut arrived = arrived;
    arrived.recv().await.unwrap();

    let pid = gateway.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    // Release the upstream only once the gateway has begun shutting down.
    while !logs.next_line().await.unwrap().expect("gateway ended early").contains("shutting down") {}
    release.notify_one();
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "finished");
    assert!(gateway.wait().await.unwrap().success(), "the gateway exits cleanly after SIGTERM");
}
