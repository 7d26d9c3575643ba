//! examples/express-behind-gateway: a real Express app (from npm, no auth code) made safe by `portcullis serve`
//! with the example's own config file, trusting the dev issuer. Needs Node and the example's `npm ci`; without
//! them the test prints why it skips, with `CI=true` it fails (`.ci/run` runs `npm ci`).
#![allow(clippy::unwrap_used)]

use portcullis_issuer::DEMO_AUDIENCE;
use portcullis_testkit::{issuers, probe};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn example_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/express-behind-gateway"))
}

/// Whether Node and the example's packages are there; otherwise skips (printing why) or, in CI, fails.
fn ready() -> bool {
    let check = probe::runs("node", &["--version"]).and_then(|()| {
        let installed = example_dir().join("node_modules/express/package.json").exists();
        let missing = "the example's packages are not installed (npm ci in examples/express-behind-gateway)";
        if installed { Ok(()) } else { Err(missing.to_owned()) }
    });
    probe::require("the Express example", check)
}

/// Starts `command` and returns it with the first `http://` word of the first stdout line containing `marker`.
async fn start(mut command: Command, marker: &str) -> (Child, String) {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next_line().await.unwrap().expect("the process ended before printing its address");
        if line.contains(marker) {
            let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_owned();
            // Keep draining stdout so the child never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return (child, url);
        }
    }
}

#[tokio::test]
async fn express_app_behind_the_gateway_gets_verified_claims_as_headers() {
    if !ready() {
        return;
    }
    let issuer = issuers::demo().await;
    let issuer_url = issuer.issuer().to_owned();

    let mut express = Command::new("node");
    express.arg("server.js").current_dir(example_dir()).env("PORT", "0");
    let (_express, express_url) = start(express, "express API listening on").await;

    let mut gateway = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    gateway
        .args(["serve", "--config", "portcullis.toml", "--listen", "127.0.0.1:0", "--upstream", &express_url])
        .args(["--issuer", &issuer_url, "--audience", DEMO_AUDIENCE])
        .current_dir(example_dir())
        .env_remove("PORTCULLIS_CONFIG");
    let (_gateway, base) = start(gateway, "portcullis gateway listening on").await;

    let http = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>, spoof: bool| {
        let mut request = http.get(format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if spoof {
            request = request.header("X-Auth-Subject", "auth0|mallory").header("X-Auth-Scope", "read:messages");
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, challenge, body)
        }
    };
    let alice = issuer.user_token("demo-spa", "alice", DEMO_AUDIENCE, &["openid", "read:messages"]).unwrap();
    let bob = issuer.user_token("demo-spa", "bob", DEMO_AUDIENCE, &["openid"]).unwrap();

    let (status, _, body) = get("/api/public", None, false).await;
    assert_eq!(status, 200);
    assert!(body["message"].as_str().unwrap().starts_with("Hello from a public endpoint"));

    // Without a token, spoofed identity headers get nowhere: the gateway answers before Express runs.
    let (status, challenge, _) = get("/api/private", None, true).await;
    assert_eq!((status, challenge.as_deref()), (401, Some("Bearer realm=\"api\"")));

    // With a token, Express sees the verified claims and never the spoofed copies.
    let (status, _, body) = get("/api/private", Some(&bob), true).await;
    assert_eq!(status, 200);
    assert_eq!(body["caller"]["subject"], "auth0|bob");
    assert_eq!(body["caller"]["scope"], "openid");

    let (status, challenge, body) = get("/api/private-scoped", Some(&bob), false).await;
    assert_eq!(status, 403);
    assert!(challenge.unwrap().contains("error=\"insufficient_scope\""));
    assert_eq!(body["reason"], "insufficient_scope");
    let (status, _, body) = get("/api/private-scoped", Some(&alice), false).await;
    assert_eq!(status, 200);
    assert_eq!(body["caller"]["subject"], "auth0|alice");
    assert_eq!(body["caller"]["scope"], "openid read:messages");

    let tampered = format!("{}.{}", alice.rsplit_once('.').unwrap().0, "A".repeat(342));
    let (status, challenge, _) = get("/api/private", Some(&tampered), false).await;
    assert_eq!(status, 401);
    assert!(challenge.unwrap().contains("error=\"invalid_token\""));
    assert_eq!(get("/admin", Some(&alice), false).await.0, 404, "routes outside the config never reach Express");
}
