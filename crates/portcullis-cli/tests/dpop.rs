//! DPoP with a client nobody here wrote: npm `oauth4webapi` (panva) gets DPoP-bound tokens from `portcullis
//! issuer` with its own client-credentials flow and calls the demo API (the quickstart app, DPoP "allowed") and
//! `portcullis serve` (DPoP "allowed", configured by the file in docs/dpop.md) — with fresh proofs, and with a
//! proof for another URL, another method, a replayed proof, a proof for another token, a proof by another key and
//! the bound token sent as Bearer (`tests/dpop/client.mjs`).
//!
//! `.ci/run` installs oauth4webapi into `PORTCULLIS_INTEROP_DIR` (default `~/.cache/portcullis-interop`). Without
//! Node.js or the package the test prints why it skips; with `CI=true` it fails.
#![allow(clippy::unwrap_used)]

mod support;

use axum::Router;
use axum::routing::any;
use portcullis::dpop::{DpopMode, DpopVerifier};
use portcullis_issuer::{DEMO_AUDIENCE, OTHER_AUDIENCE};
use portcullis_testkit::{markdown, net};
use serde_json::{Value, json};
use support::interop::{demo_verifier, interop_dir, require_npm_packages};
use support::{drain, portcullis, url_after};

/// The version `.ci/run` installs; docs/dpop.md names it.
const OAUTH4WEBAPI: &str = "oauth4webapi@3.8.8";

/// Whether Node.js finds the pinned oauth4webapi in the interop directory; skips (or, in CI, fails) otherwise.
fn client_available() -> bool {
    require_npm_packages("oauth4webapi", &[OAUTH4WEBAPI])
}

/// The gateway file of docs/dpop.md (the block marked `file: gateway.toml`), pointed at this test's issuer,
/// upstream and address.
fn documented_gateway(issuer: &str, upstream: &str, public_url: &str) -> String {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/dpop.md")).unwrap();
    let block = markdown::fenced_blocks(&page, &["toml"])
        .into_iter()
        .find(|block| block.marker.as_deref() == Some("file: gateway.toml"))
        .expect("docs/dpop.md has a toml block marked <!-- file: gateway.toml -->");
    assert!(block.text.contains("https://TENANT.auth0.com/") && block.text.contains("public_url = "), "{}", block.text);
    block
        .text
        .lines()
        .map(|line| match line.split_once(" = ") {
            Some(("public_url" | "resource", _)) => format!("{} = \"{public_url}\"", line.split_once(" = ").unwrap().0),
            Some(("upstream", _)) => format!("upstream = \"{upstream}\""),
            Some(("listen", _)) => format!("listen = \"{}\"", public_url.trim_start_matches("http://")),
            _ => line.replace("https://TENANT.auth0.com/", issuer),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The quickstart API in process, trusting `issuer`, DPoP "allowed", its own URL as the public URL.
async fn demo_api(issuer: &str) -> String {
    let verifier = demo_verifier(issuer).await;
    let (listener, address) = net::listen().await;
    let sender = quickstart::Sender {
        verifier: DpopVerifier::builder().build().unwrap(),
        mode: DpopMode::Allowed,
        public_url: format!("http://{address}"),
        authorization_servers: vec![issuer.to_owned()],
    };
    let app = quickstart::app_with(verifier, &sender);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

/// The challenge of `scheme` (lower case, as oauth4webapi reports it) in a call's parsed challenges.
fn challenge<'a>(call: &'a Value, scheme: &str) -> &'a Value {
    call["challenges"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["scheme"] == scheme))
        .unwrap_or_else(|| panic!("no {scheme} challenge: {call}"))
}

/// A refusal as oauth4webapi saw it: 401, the `error` on the challenge of `scheme`, and the `DPoP` challenge
/// with its algorithms.
fn assert_refused(target: &str, mode: &str, call: &Value, scheme: &str, error: &str, reason: &str) {
    assert_eq!(call["status"], 401, "{target} {mode}: {call}");
    assert_eq!(challenge(call, scheme)["parameters"]["error"], error, "{target} {mode}: {call}");
    let algs = challenge(call, "dpop")["parameters"]["algs"].as_str().unwrap_or_default().to_owned();
    assert!(algs.split(' ').any(|alg| alg == "ES256"), "{target} {mode}: {call}");
    assert!(call["www_authenticate"].as_str().unwrap().contains("DPoP "), "{target} {mode}: {call}");
    assert_eq!(call["body"]["reason"], reason, "{target} {mode}: {call}");
}

#[tokio::test]
async fn oauth4webapi_gets_a_dpop_token_and_calls_the_demo_api_and_the_gateway() {
    if !client_available() {
        return;
    }
    let (_issuer, mut issuer_out) = portcullis(&["issuer", "--listen", "127.0.0.1:0"]);
    let issuer = url_after(&mut issuer_out, "portcullis dev issuer at").await;
    drain(issuer_out);
    let api = demo_api(&issuer).await;

    let upstream =
        net::serve(Router::new().fallback(any(|| async { axum::Json(json!({"upstream": "reached"})) }))).await;
    let gateway = format!("http://127.0.0.1:{}", net::free_port());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, documented_gateway(&issuer, &upstream, &gateway)).unwrap();
    let (_gateway, mut gateway_out) = portcullis(&["serve", "--config", file.to_str().unwrap(), "--workers", "1"]);
    let listening = url_after(&mut gateway_out, "portcullis gateway listening on").await;
    assert_eq!(listening, gateway);
    drain(gateway_out);
    // The same file with server nonces on (docs/dpop.md, "Server nonces").
    let nonced = format!("http://127.0.0.1:{}", net::free_port());
    let nonced_file = dir.path().join("nonced.toml");
    std::fs::write(&nonced_file, documented_gateway(&issuer, &upstream, &nonced)).unwrap();
    let secret = dir.path().join("dpop-nonce.key");
    std::fs::write(&secret, "a nonce secret of this test, at least 32 bytes long").unwrap();
    let (_nonced, mut nonced_out) = portcullis(&[
        "serve",
        "--config",
        nonced_file.to_str().unwrap(),
        "--dpop-nonce-secret-file",
        secret.to_str().unwrap(),
        "--workers",
        "1",
    ]);
    assert_eq!(url_after(&mut nonced_out, "portcullis gateway listening on").await, nonced);
    drain(nonced_out);

    let targets =
        [format!("{api}/api/protected"), format!("{gateway}/api/protected"), format!("{nonced}/api/protected")];
    let output = tokio::process::Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dpop/client.mjs"))
        .args([issuer.as_str(), DEMO_AUDIENCE, OTHER_AUDIENCE])
        .args(&targets)
        .env("PORTCULLIS_INTEROP_DIR", interop_dir())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "client.mjs failed: {stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    // The issuer bound the tokens to oauth4webapi's key, and said so.
    assert_eq!(report["token_type"], "dpop", "{report}");
    assert_eq!(report["jkt_matches_key"], true, "{report}");
    assert_eq!(report["tokens_differ"], true, "{report}");
    // The client never prints a token or a proof.
    assert!(!String::from_utf8_lossy(&output.stdout).contains("eyJ"));

    for target in &targets {
        let calls = &report["targets"][target];
        assert_eq!(calls["fresh"]["status"], 200, "{target}: {}", calls["fresh"]);
        assert!(calls["fresh"]["challenges"].is_null(), "{target}: {}", calls["fresh"]);
        // With nonces on, the first request got 401 use_dpop_nonce and a DPoP-Nonce; oauth4webapi sent it again
        // with that nonce in a fresh proof, as RFC 9449 §9 has it. Without nonces, no retry.
        let retries = if *target == targets[2] { 1 } else { 0 };
        assert_eq!(calls["fresh"]["nonce_retries"], retries, "{target}: {}", calls["fresh"]);
        // The demo API's handler saw the bound token's claims; the gateway let the request through to its upstream.
        let served = &calls["fresh"]["body"];
        if *target == targets[0] {
            assert!(served["user"]["cnf"]["jkt"].is_string(), "{target}: {served}");
        } else {
            assert_eq!(served["upstream"], "reached", "{target}: {served}");
        }
        assert_eq!(calls["replay"]["first_status"], 200, "{target}: the first use of the proof: {}", calls["replay"]);
        for mode in ["other_htu", "other_htm", "replay", "other_token"] {
            assert_refused(target, mode, &calls[mode], "dpop", "invalid_dpop_proof", "dpop_proof_invalid");
        }
        // A valid proof by a key the token is not bound to, and the token without any proof: binding failures.
        assert_refused(target, "other_key", &calls["other_key"], "dpop", "invalid_token", "token_binding_invalid");
        assert_refused(target, "bearer", &calls["bearer"], "bearer", "invalid_token", "token_binding_invalid");
        // Every challenge names the resource's metadata document.
        let metadata = format!("{}/.well-known/oauth-protected-resource", target.trim_end_matches("/api/protected"));
        for scheme in ["bearer", "dpop"] {
            assert_eq!(challenge(&calls["bearer"], scheme)["parameters"]["resource_metadata"], metadata, "{target}");
        }
    }
}
