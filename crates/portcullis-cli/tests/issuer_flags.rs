//! `portcullis issuer --api` and `--dpop-nonce` as a test that learns ports at run time uses them: the added API is
//! listed and is a resource tokens are issued for, and token requests with a DPoP proof must carry the nonce.
#![allow(clippy::unwrap_used)]

mod support;

use portcullis::Algorithm;
use portcullis::signing::SigningKey;
use portcullis_testkit::claims::{now, part};
use serde_json::{Value, json};
use support::{drain, line_with, portcullis, url_after};

#[tokio::test]
async fn added_apis_are_resources_and_nonces_are_required() {
    let mcp = "http://127.0.0.1:1/mcp";
    let (_child, mut out) = portcullis(&[
        "issuer",
        "--listen",
        "127.0.0.1:0",
        "--api",
        mcp,
        "--api",
        "https://api.example.com",
        "--dpop-nonce",
    ]);
    let base = url_after(&mut out, "portcullis dev issuer at").await;
    line_with(&mut out, "DPoP nonces required").await;
    // An audience the tenant has is left as it is: the demo API keeps its permissions.
    line_with(&mut out, "API     https://api.example.com  permissions: read:messages, write:messages").await;
    line_with(&mut out, &format!("API     {mcp}  permissions: ")).await;
    drain(out);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    // The added API is a resource: a user logs in for it, and the token's audience is it.
    let verifier = "a-code-verifier-that-is-long-enough-0123456789";
    let challenge = portcullis_issuer::pkce::challenge_of(verifier);
    let callback = "http://127.0.0.1:3000/callback";
    let response = http
        .get(format!("{base}authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", "demo-spa"),
            ("redirect_uri", callback),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("resource", mcp),
            ("login_hint", "alice"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let code = location.query_pairs().find(|(n, _)| n == "code").unwrap().1.into_owned();
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", "demo-spa"),
        ("code", code.as_str()),
        ("code_verifier", verifier),
        ("redirect_uri", callback),
    ];
    let token = |proof: Option<String>| {
        let mut request = http.post(format!("{base}oauth/token")).form(&form);
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        async move { request.send().await.unwrap() }
    };

    // A proof without the nonce: 400 use_dpop_nonce and the nonce; with it, a DPoP token for the added API.
    let key = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let proof = |nonce: Option<&str>| {
        let mut claims =
            json!({"jti": format!("j-{nonce:?}"), "htm": "POST", "htu": format!("{base}oauth/token"), "iat": now()});
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        key.sign_token(&claims, json!({"typ": "dpop+jwt", "jwk": key.public_jwk()}).as_object()).unwrap()
    };
    let first = token(Some(proof(None))).await;
    assert_eq!(first.status(), 400);
    let nonce = first.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    assert_eq!(first.json::<Value>().await.unwrap()["error"], "use_dpop_nonce");
    let answer: Value = token(Some(proof(Some(&nonce)))).await.json().await.unwrap();
    assert_eq!(answer["token_type"], "DPoP", "{answer}");
    let claims = part(answer["access_token"].as_str().unwrap(), 1);
    assert_eq!(claims["aud"][0], mcp, "openid is the default scope: the userinfo audience comes second");
    assert!(claims["cnf"]["jkt"].as_str().is_some_and(|jkt| jkt.len() == 43), "{claims}");
}

#[test]
fn an_empty_api_audience_is_a_usage_error() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["issuer", "--listen", "127.0.0.1:0", "--api", ""])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--api"));
}
