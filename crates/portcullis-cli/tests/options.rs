//! The token options as an operator runs them: `portcullis serve` with a file naming a local JWKS file (reloaded on
//! SIGHUP), optional authentication, a token cookie and answered CORS preflights; `check-config` and `serve`
//! refusing a missing key file alike; the per-issuer rules from flags and environment variables.
#![allow(clippy::unwrap_used)]

#[allow(unused_imports)]
mod support;

use portcullis::Algorithm;
use portcullis::signing::SigningKey;
use serde_json::{Map, Value, json};
use std::process::Stdio;
use std::time::{SystemTime, UNIX_EPOCH};
use support::{drain, line_with, url_after, url_in};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};

const ISSUER: &str = "https://issuer.example/";
const AUDIENCE: &str = "https://api.example";

fn token(key: &SigningKey, age: i64, typ: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now - age, "exp": now + 3600});
    let mut header = Map::new();
    header.insert("typ".into(), Value::from(typ));
    key.sign_token(&claims, Some(&header)).unwrap()
}

fn publish(path: &std::path::Path, key: &SigningKey) {
    std::fs::write(path, json!({ "keys": [key.public_jwk()] }).to_string()).unwrap();
}

/// An upstream answering with the headers it received.
async fn upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let echo = axum::Router::new().fallback(axum::routing::any(|headers: axum::http::HeaderMap| async move {
        let headers: Map<String, Value> =
            headers.iter().map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or("?")))).collect();
        axum::Json(json!({ "headers": headers }))
    }));
    tokio::spawn(async move { axum::serve(listener, echo).await.unwrap() });
    url
}

/// `portcullis serve` with `args` and `env`, JSON logs on stderr; the gateway's and the admin listener's URLs.
async fn serve(args: &[&str], env: &[(&str, &str)]) -> (Child, String, String, Lines<BufReader<ChildStderr>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("PORTCULLIS_CONFIG")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = url_in(&line_with(&mut out, "portcullis gateway listening on").await);
    let admin = url_after(&mut out, "admin listening on").await;
    drain(out);
    let logs = BufReader::new(child.stderr.take().unwrap()).lines();
    (child, base, admin, logs)
}

async fn until_logged(logs: &mut Lines<BufReader<ChildStderr>>, message: &str) {
    loop {
        let line = logs.next_line().await.unwrap().unwrap_or_else(|| panic!("the gateway ended before {message:?}"));
        if line.contains(message) {
            return;
        }
    }
}

#[tokio::test]
async fn a_gateway_file_with_a_local_key_file_and_the_route_options() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let first = SigningKey::generate(Algorithm::ES256, Some("k1".into())).unwrap();
    publish(&jwks, &first);
    let upstream = upstream().await;
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        format!(
            r#"listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
upstream = "{upstream}"
log_format = "json"
[[issuers]]
issuer = "{ISSUER}"
audiences = ["{AUDIENCE}"]
jwks_uri = "file://{jwks}"
max_token_age_secs = 600
[[routes]]
path = "/feed/*"
auth = "optional"
[[routes]]
path = "/app/*"
token_from = {{ cookie = "access_token" }}
preflight = "answer"
cors = {{ allowed_origins = ["https://app.example"], allowed_methods = ["GET"], allowed_headers = ["Authorization"] }}
"#,
            jwks = jwks.display()
        ),
    )
    .unwrap();
    let checked = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check-config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));

    let (gateway, base, admin, mut logs) = serve(&["serve", "--config", file.to_str().unwrap()], &[]).await;
    let http = reqwest::Client::new();
    // Ready at once: the keys came from the file, nothing was fetched.
    assert_eq!(http.get(format!("{admin}/ready")).send().await.unwrap().status(), 200);
    let status: Value = http.get(format!("{admin}/status.json")).send().await.unwrap().json().await.unwrap();
    let shown = status.to_string();
    assert!(shown.contains(&format!("file://{}", jwks.display())), "{shown}");
    let metrics = http.get(format!("{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    let gauge = format!("portcullis_jwks_keys{{source=\"file://{}\"}} 1", jwks.display());
    assert!(metrics.contains(&gauge), "{metrics}");

    // Optional authentication: anonymous passes without claim headers, a token adds them, a too-old one is 401.
    let seen: Value = http.get(format!("{base}/feed/x")).send().await.unwrap().json().await.unwrap();
    assert!(seen["headers"].get("x-auth-subject").is_none(), "{seen}");
    let seen: Value = http
        .get(format!("{base}/feed/x"))
        .bearer_auth(token(&first, 5, "JWT"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["headers"]["x-auth-subject"], "alice");
    let response = http.get(format!("{base}/feed/x")).bearer_auth(token(&first, 900, "JWT")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    // The token cookie, removed before the upstream; two places is 400.
    let cookie = format!("access_token={}; theme=dark", token(&first, 5, "JWT"));
    let seen: Value =
        http.get(format!("{base}/app/x")).header("cookie", &cookie).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (seen["headers"]["x-auth-subject"].as_str(), seen["headers"]["cookie"].as_str()),
        (Some("alice"), Some("theme=dark"))
    );
    let twice = http.get(format!("{base}/app/x")).header("cookie", &cookie).bearer_auth(token(&first, 5, "JWT"));
    assert_eq!(twice.send().await.unwrap().status(), 400);
    // A preflight answered by the gateway.
    let preflight = http
        .request(reqwest::Method::OPTIONS, format!("{base}/app/x"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "https://app.example");

    // Rotate the key in the file: only after SIGHUP does the new key count.
    let second = SigningKey::generate(Algorithm::ES256, Some("k2".into())).unwrap();
    publish(&jwks, &second);
    let fresh = token(&second, 5, "JWT");
    assert_eq!(http.get(format!("{base}/app/x")).bearer_auth(&fresh).send().await.unwrap().status(), 401);
    let hangup = || {
        let pid = gateway.id().unwrap().to_string();
        assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    };
    hangup();
    until_logged(&mut logs, "configuration reloaded").await;
    assert_eq!(http.get(format!("{base}/app/x")).bearer_auth(&fresh).send().await.unwrap().status(), 200);

    // A broken key file: the reload is refused, the keys in force stay.
    std::fs::write(&jwks, "{").unwrap();
    hangup();
    until_logged(&mut logs, "configuration reload refused").await;
    assert_eq!(http.get(format!("{base}/app/x")).bearer_auth(&fresh).send().await.unwrap().status(), 200);

    // check-config and serve refuse the same file alike, naming the key.
    let run = |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_portcullis")).args(args).output().unwrap();
    for args in [&["check-config", file.to_str().unwrap()][..], &["serve", "--config", file.to_str().unwrap()]] {
        let refused = run(args);
        assert_eq!(refused.status.code(), Some(3), "{args:?}");
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains("issuers[0].jwks_uri") && said.contains("not a usable JWK Set"), "{args:?}: {said}");
    }
    std::fs::remove_file(&jwks).unwrap();
    let refused = run(&["check-config", file.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cannot read the key file"));
}

#[tokio::test]
async fn issuer_rules_from_flags_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let key = SigningKey::generate(Algorithm::ES256, Some("k1".into())).unwrap();
    publish(&jwks, &key);
    let upstream = upstream().await;
    let uri = format!("file://{}", jwks.display());
    let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--upstream", &upstream];
    args.extend(["--issuer", ISSUER, "--audience", AUDIENCE, "--jwks-uri", &uri]);
    let http = reqwest::Client::new();

    let mut flags = args.clone();
    flags.extend(["--max-token-age-secs", "60", "--typ", "at+jwt"]);
    let (_gateway, base, _, logs) = serve(&flags, &[]).await;
    drain(logs);
    let status = |token: String| {
        let request = http.get(format!("{base}/x")).bearer_auth(token);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(token(&key, 5, "at+jwt")).await, 200);
    assert_eq!(status(token(&key, 5, "JWT")).await, 401, "typ");
    assert_eq!(status(token(&key, 600, "at+jwt")).await, 401, "age");

    let env = [("PORTCULLIS_ALGORITHMS", "RS256,PS256")];
    let (_gateway, base, _, logs) = serve(&args, &env).await;
    drain(logs);
    let response = http.get(format!("{base}/x")).bearer_auth(token(&key, 5, "JWT")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["reason"], "algorithm_not_allowed");

    // A value that cannot work is a usage error naming the key.
    let mut bad = args.clone();
    bad.extend(["--typ", "JOSE"]);
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(&bad)
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("issuers[0].typ"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
