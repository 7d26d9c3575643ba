//! The quickstart started as a process with only its environment variables, exercised over HTTP, against a local
//! identity provider.
#![allow(clippy::unwrap_used)]

use portcullis_testkit::claims::now;
use portcullis_testkit::idp::{Idp, key};
use serde_json::{Value, json};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const AUDIENCE: &str = "https://api.example.com";

struct Running {
    child: Child,
    base: String,
}

async fn start(env: &[(&str, &str)]) -> Running {
    let mut command = Command::new(env!("CARGO_BIN_EXE_quickstart"));
    command.env_clear().env("PORT", "0").stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let banner = lines.next_line().await.unwrap().unwrap();
    let base = banner.split_whitespace().find(|w| w.starts_with("http://127.0.0.1:")).unwrap().to_owned();
    Running { child, base }
}

async fn get(base: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_str(&response.text().await.unwrap()).unwrap())
}

#[tokio::test]
async fn serves_the_four_routes_with_discovery() {
    let idp = Idp::start().await;
    let signer = key("k1");
    idp.publish(&[&signer]);
    let issuer = idp.issuer();
    let app = start(&[("ISSUER_BASE_URL", &issuer), ("AUDIENCE", AUDIENCE)]).await;
    let claims = |scope: &str| json!({"iss": issuer, "aud": AUDIENCE, "sub": "auth0|alice", "iat": now(), "exp": now() + 600, "scope": scope});
    let reader = signer.sign_token(&claims("openid read:messages"), None).unwrap();
    let plain = signer.sign_token(&claims("openid"), None).unwrap();

    let (status, body) = get(&app.base, "/api/public", None).await;
    assert_eq!(status, 200);
    assert!(body["message"].as_str().unwrap().contains("public endpoint"));

    let (status, body) = get(&app.base, "/api/protected", None).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("token_missing")));

    let (status, body) = get(&app.base, "/api/protected", Some(&plain)).await;
    assert_eq!(status, 200);
    assert_eq!(body["message"], "You made it to the protected endpoint!");
    assert_eq!(body["user"]["sub"], "auth0|alice");

    assert_eq!(get(&app.base, "/api/private", Some(&plain)).await.0, 200);
    let (status, body) = get(&app.base, "/api/private-scoped", Some(&plain)).await;
    assert_eq!((status, body["reason"].as_str()), (403, Some("insufficient_scope")));
    assert_eq!(get(&app.base, "/api/private-scoped", Some(&reader)).await.0, 200);

    let wrong_audience =
        signer.sign_token(&json!({"iss": issuer, "aud": "https://other.example", "exp": now() + 60}), None).unwrap();
    let (status, body) = get(&app.base, "/api/private", Some(&wrong_audience)).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("audience_mismatch")));
    assert_eq!((idp.discovery_requests(), idp.jwks_requests()), (1, 1));
    drop(app.child);
}

#[tokio::test]
async fn jwks_uri_skips_discovery() {
    let idp = Idp::start().await;
    let signer = key("k1");
    idp.publish(&[&signer]);
    let issuer = idp.issuer();
    let app = start(&[("ISSUER_BASE_URL", &issuer), ("AUDIENCE", AUDIENCE), ("JWKS_URI", &idp.jwks_url())]).await;
    let token = signer.sign_token(&json!({"iss": issuer, "aud": AUDIENCE, "exp": now() + 60}), None).unwrap();
    assert_eq!(get(&app.base, "/api/private", Some(&token)).await.0, 200);
    assert_eq!(idp.discovery_requests(), 0);
}

#[tokio::test]
async fn unreachable_issuer_starts_and_answers_503() {
    let app = start(&[("ISSUER_BASE_URL", "http://127.0.0.1:9/"), ("AUDIENCE", AUDIENCE)]).await;
    let (status, body) = get(&app.base, "/api/private", Some("a.b.c")).await;
    // A malformed token is refused before keys are needed; a well-formed one waits for keys: 503.
    assert_eq!(status, 401, "{body}");
    let signer = key("k1");
    let token =
        signer.sign_token(&json!({"iss": "http://127.0.0.1:9/", "aud": AUDIENCE, "exp": now() + 60}), None).unwrap();
    let (status, body) = get(&app.base, "/api/private", Some(&token)).await;
    assert_eq!((status, body["reason"].as_str()), (503, Some("keys_unavailable")));
    assert_eq!(get(&app.base, "/api/public", None).await.0, 200);
}

#[tokio::test]
async fn missing_or_invalid_configuration_fails_clearly() {
    let cases: [(&[(&str, &str)], &str); 6] = [
        (&[("AUDIENCE", AUDIENCE)], "ISSUER_BASE_URL is not set"),
        (&[("ISSUER_BASE_URL", "https://t.example/")], "AUDIENCE is not set"),
        (&[("ISSUER_BASE_URL", "t.example"), ("AUDIENCE", AUDIENCE)], "must be an http(s) URL"),
        (&[("ISSUER_BASE_URL", "https://t.example/"), ("AUDIENCE", AUDIENCE), ("PORT", "eighty")], "PORT must be"),
        (&[("ISSUER_BASE_URL", "https://t.example/"), ("AUDIENCE", AUDIENCE), ("DPOP", "sometimes")], "DPOP must be"),
        (
            &[("ISSUER_BASE_URL", "https://t.example/"), ("AUDIENCE", AUDIENCE), ("PUBLIC_URL", "ftp://api.example")],
            "PUBLIC_URL is not usable",
        ),
    ];
    for (env, expected) in cases {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_quickstart"));
        command.env_clear();
        for (name, value) in env {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{env:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{env:?}: {stderr}");
    }
}

#[tokio::test]
async fn publishes_its_metadata_at_its_public_url_and_names_it_in_challenges() {
    let idp = Idp::start().await;
    idp.publish(&[&key("k1")]);
    let issuer = idp.issuer();
    // Behind a balancer: the public URL is not the address it listens on.
    let app = start(&[
        ("ISSUER_BASE_URL", &issuer),
        ("AUDIENCE", AUDIENCE),
        ("PUBLIC_URL", "https://api.example.com"),
        ("DPOP", "required"),
    ])
    .await;
    let (status, document) = get(&app.base, "/.well-known/oauth-protected-resource", None).await;
    assert_eq!(status, 200, "{document}");
    assert_eq!(document["resource"], "https://api.example.com");
    assert_eq!(document["authorization_servers"], json!([issuer]));
    assert_eq!(document["dpop_bound_access_tokens_required"], true);
    assert_eq!(document["scopes_supported"], json!(["read:messages"]));

    let response = reqwest::get(format!("{}/api/private", app.base)).await.unwrap();
    assert_eq!(response.status(), 401);
    let challenges: Vec<&str> =
        response.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap()).collect();
    // DPoP required: no Bearer challenge, and the DPoP one names the document at the public URL.
    assert_eq!(challenges.len(), 1, "{challenges:?}");
    assert!(challenges[0].starts_with("DPoP "), "{challenges:?}");
    assert!(
        challenges[0].contains("resource_metadata=\"https://api.example.com/.well-known/oauth-protected-resource\""),
        "{challenges:?}"
    );
}
