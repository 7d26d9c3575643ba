//! Logs at every level, from every crate, carry no token, signature, client secret or private key: the dev issuer
//! and a gateway in front of an upstream run in this process with a TRACE subscriber capturing everything while
//! tokens are minted, used, tampered with and refused.
#![allow(clippy::unwrap_used)]

use portcullis_gateway::{Config, Gateway};
use portcullis_issuer::DEMO_AUDIENCE;
use portcullis_testkit::issuers;
use portcullis_testkit::net::{self, listen};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Every log line written, shared with the subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_reaches_the_logs_at_any_level() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let issuer = issuers::demo().await;
    let upstream = net::serve(axum::Router::new().fallback(|| async { "upstream" })).await;
    let config = Config::from_toml(&format!(
        "upstream = \"{upstream}\"\n[[issuers]]\nissuer = \"{}\"\naudiences = [\"{DEMO_AUDIENCE}\"]\n\
         [[routes]]\npath = \"/api/*\"\n",
        issuer.issuer()
    ))
    .unwrap();
    tracing::debug!(config = ?config, tenant = ?issuer.tenant(), "configurations in use");
    let (listener, gateway_address) = listen().await;
    tokio::spawn(portcullis_gateway::serve(Gateway::new(config).unwrap(), listener, None, std::future::pending()));

    let http = reqwest::Client::new();
    let secret = issuer.tenant().client("demo-client").unwrap().client_secret.clone().unwrap();
    let answer: serde_json::Value = http
        .post(format!("{}oauth/token", issuer.issuer()))
        .json(&serde_json::json!({
            "grant_type": "client_credentials", "client_id": "demo-client", "client_secret": secret,
            "audience": DEMO_AUDIENCE,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = answer["access_token"].as_str().unwrap().to_owned();
    let signature = token.rsplit('.').next().unwrap().to_owned();
    let tampered = format!("{}{}", &token[..token.len() - 4], "AAAA");
    let wrong_secret = http
        .post(format!("{}oauth/token", issuer.issuer()))
        .basic_auth("demo-client", Some("not-the-secret-but-close"))
        .form(&[("grant_type", "client_credentials"), ("audience", DEMO_AUDIENCE)])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_secret.status(), 401);

    let base = format!("http://{gateway_address}");
    for (presented, expected) in [(&token, 200), (&tampered, 401), (&token, 200)] {
        let status = http.get(format!("{base}/api/x")).bearer_auth(presented).send().await.unwrap().status();
        assert_eq!(status, expected);
    }
    let jwks: serde_json::Value =
        http.get(format!("{}.well-known/jwks.json", issuer.issuer())).send().await.unwrap().json().await.unwrap();
    assert!(jwks["keys"].as_array().is_some_and(|keys| !keys.is_empty()));

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.lines().count() > 20, "the subscriber captured too little to prove anything:\n{logs}");
    assert!(logs.contains("configurations in use"), "Debug output of the configurations was logged");
    for (what, needle) in [
        ("the token", token.as_str()),
        ("the token's signature", signature.as_str()),
        ("the tampered token", tampered.as_str()),
        ("the client secret", secret.as_str()),
        ("the wrong client secret", "not-the-secret-but-close"),
        ("a private JWK member", "\"d\":"),
        ("a PKCS#8 private key", "PRIVATE KEY"),
    ] {
        assert!(!logs.contains(needle), "{what} appears in the logs");
    }
}
