//! Revocations and the shared store through `portcullis serve` processes: `portcullis revoke` against one
//! gateway with the in-memory store (its admin tokens signed by a test key the gateway trusts), and `/ready`,
//! `/metrics` and DPoP requests while `[store] redis_url` points at a closed port (no Redis needed).
#![allow(clippy::unwrap_used)]

use portcullis::Algorithm;
use portcullis::signing::SigningKey;
use portcullis_testkit::process::{Running, url_in};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::{Duration, Instant};

const ISSUER: &str = "https://issuer.test/";
const AUDIENCE: &str = "https://api.test";
const ADMIN_AUDIENCE: &str = "https://portcullis.test/admin";
const PUBLIC: &str = "https://api.example.test";

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

/// The issuer's key, in a local JWKS file.
struct Keys {
    key: SigningKey,
    jwks: String,
    _dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Self {
        let key = portcullis_testkit::keys::key("k1");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, portcullis_testkit::keys::jwks(&[&key])).unwrap();
        Self { key, jwks: format!("file://{}", path.display()), _dir: dir }
    }

    fn access(&self, sub: &str, jti: Option<&str>, iat: u64, jkt: Option<&str>) -> String {
        let mut claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": iat, "exp": iat + 600});
        if let Some(jti) = jti {
            claims["jti"] = json!(jti);
        }
        if let Some(jkt) = jkt {
            claims["cnf"] = json!({ "jkt": jkt });
        }
        self.key.sign_token(&claims, None).unwrap()
    }

    fn admin(&self, permissions: &[&str]) -> String {
        let now = portcullis_testkit::claims::now();
        let claims = json!({"iss": ISSUER, "aud": ADMIN_AUDIENCE, "sub": "ops|7", "iat": now, "exp": now + 600,
            "permissions": permissions});
        self.key.sign_token(&claims, None).unwrap()
    }

    /// A forward-auth (nginx) gateway with `extra` lines at the top level and `tables` after the issuer.
    fn config(&self, top: &str, tables: &str) -> String {
        format!(
            "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{top}\n[[issuers]]\nissuer = \"{ISSUER}\"\n\
             audiences = [\"{AUDIENCE}\"]\njwks_uri = \"{}\"\n[[routes]]\npath = \"/api/*\"\n{tables}\n",
            self.jwks
        )
    }
}

const REVOCATION: &str = "[revocation]\nissuer = \"https://issuer.test/\"\naudience = \"https://portcullis.test/admin\"\n\
                          retention_secs = 3600\n";

/// A `portcullis serve` process logging at `info`.
struct Serve {
    base: String,
    admin: String,
    process: Running,
}

impl Serve {
    /// Starts it and waits until its keys are loaded (`/ready` says anything but "keys not loaded yet").
    async fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gateway.toml");
        std::fs::write(&file, config).unwrap();
        let mut command = tokio::process::Command::new(binary());
        command
            .args(["serve", "--config", file.to_str().unwrap()])
            .env_remove("PORTCULLIS_CONFIG")
            .env("RUST_LOG", "info");
        let mut process = Running::spawn("portcullis serve", command, dir);
        let lines = process.lines_with(&["portcullis gateway listening on", "admin listening on"]).await;
        process.drain_stdout();
        let base = url_in(&lines[0]);
        let admin = url_in(&lines[1]);
        let serve = Self { base, admin, process };
        let started = Instant::now();
        while serve.ready().await.1 == "keys not loaded yet" {
            assert!(started.elapsed() < Duration::from_secs(10), "keys never loaded:\n{}", serve.process.stderr());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        serve
    }

    async fn ready(&self) -> (u16, String) {
        let response = reqwest::get(format!("{}/ready", self.admin)).await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// An nginx forward-auth check of `GET /api/orders` with `authorization`.
    async fn check(&self, authorization: &str) -> (u16, Value) {
        let response = reqwest::Client::new()
            .get(format!("{}/auth", self.base))
            .header("x-original-method", "GET")
            .header("x-original-uri", "/api/orders")
            .header("authorization", authorization)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
    }

    /// Runs `portcullis revoke` against this gateway's admin listener with `token` in a file, and `args`.
    fn revoke(&self, token: &str, args: &[&str]) -> std::process::Output {
        let file = self.process.dir().join(format!("admin-{}.jwt", args.join("-").replace(['/', '|', ':'], "_")));
        std::fs::write(&file, token).unwrap();
        std::process::Command::new(binary())
            .args(["revoke", "--admin", &self.admin, "--token-file", file.to_str().unwrap()])
            .args(args)
            .env_remove("PORTCULLIS_ADMIN_URL")
            .env_remove("PORTCULLIS_ADMIN_TOKEN")
            .output()
            .unwrap()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `portcullis revoke` with `args` and an admin token in a file (no gateway behind any URL used).
fn revoke_without_gateway(args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin.jwt");
    std::fs::write(&file, "eyJhbGciOiJFUzI1NiJ9.e30.c2ln").unwrap();
    std::process::Command::new(binary())
        .args(["revoke", "--token-file", file.to_str().unwrap()])
        .args(args)
        .env_remove("PORTCULLIS_ADMIN_URL")
        .env_remove("PORTCULLIS_ADMIN_TOKEN")
        .output()
        .unwrap()
}

#[test]
fn revoke_refuses_plain_http_off_loopback_and_admin_urls_with_a_query_or_fragment() {
    for admin in ["http://10.0.0.5:9090", "http://portcullis-admin.invalid:9090/"] {
        let output = revoke_without_gateway(&["--admin", admin, "--jti", "a"]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{admin}: {stderr}");
        assert!(stderr.contains("admin token across the network in clear"), "{admin}: {stderr}");
        assert!(stderr.contains("--allow-insecure-http"), "{admin}: {stderr}");
    }
    // Allowed: the request is sent, and fails only because nobody answers (exit 4, unreachable).
    let output = revoke_without_gateway(&[
        "--admin",
        "http://portcullis-admin.invalid:9090/",
        "--allow-insecure-http",
        "--jti",
        "a",
    ]);
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    // Loopback hosts take plain http (nothing listens on port 1: unreachable, exit 4).
    for admin in ["http://127.0.0.1:1", "http://127.3.2.1:1/", "http://[::1]:1", "http://localhost:1"] {
        let output = revoke_without_gateway(&["--admin", admin, "--jti", "a"]);
        assert_eq!(output.status.code(), Some(4), "{admin}: {}", text(&output.stderr));
    }
    for admin in ["http://127.0.0.1:1/?x=1", "http://127.0.0.1:1/#top"] {
        let output = revoke_without_gateway(&["--admin", admin, "--jti", "a"]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{admin}: {stderr}");
        assert!(stderr.contains("without a query or fragment"), "{admin}: {stderr}");
    }
}

#[test]
fn revoke_takes_before_only_with_sub() {
    for what in [["--jti", "a"], ["--token-hash", &"ab".repeat(32)]] {
        let output = revoke_without_gateway(&["--admin", "http://127.0.0.1:1", what[0], what[1], "--before", "now"]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{what:?}: {stderr}");
        assert!(stderr.contains("--sub"), "{what:?}: {stderr}");
    }
}

/// Polls `condition` until it holds, within `within`.
async fn until(within: Duration, what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < within, "{what} did not happen within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn revoke_by_jti_hash_and_subject_through_the_admin_endpoint_of_a_serve_process() {
    let keys = Keys::new();
    let serve = Serve::start(&keys.config("forward_auth = \"nginx\"", REVOCATION)).await;
    let admin = keys.admin(&["revoke:tokens"]);
    let now = portcullis_testkit::claims::now();
    let by_jti = keys.access("alice", Some("jti-a"), now, None);
    let by_hash = keys.access("bob", None, now, None);
    let older = keys.access("carol", Some("c-1"), now - 120, None);
    let newer = keys.access("carol", Some("c-2"), now, None);
    for token in [&by_jti, &by_hash, &older, &newer] {
        assert_eq!(serve.check(&format!("Bearer {token}")).await.0, 200, "accepted (and cached) first");
    }

    let out = serve.revoke(&admin, &["--jti", "jti-a"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(
        printed.contains("revoked the token with jti \"jti-a\" until") && printed.contains("(store: memory)"),
        "{printed}"
    );

    // The hash is made locally from the token on stdin: nothing is sent.
    let mut hashing = std::process::Command::new(binary())
        .args(["revoke", "--hash-token"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut hashing.stdin.take().unwrap(), format!("{by_hash}\n").as_bytes()).unwrap();
    let hashed = hashing.wait_with_output().unwrap();
    assert_eq!(hashed.status.code(), Some(0));
    let hash = text(&hashed.stdout).trim().to_owned();
    assert_eq!(hash, portcullis::store::TokenHash::of_token(&by_hash).to_string());
    let out = serve.revoke(&admin, &["--token-hash", &hash, "--expires", &(now + 900).to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("revoked the token with SHA-256 {hash}")), "{}", text(&out.stdout));

    let before = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(now - 60)).to_string();
    let out = serve.revoke(&admin, &["--sub", "carol", "--before", &before]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("subject \"carol\" issued at or before {before}")),
        "{}",
        text(&out.stdout)
    );

    for token in [&by_jti, &by_hash, &older] {
        let (status, body) = serve.check(&format!("Bearer {token}")).await;
        assert_eq!((status, body["reason"].as_str()), (401, Some("token_revoked")), "{body}");
    }
    assert_eq!(serve.check(&format!("Bearer {newer}")).await.0, 200, "issued after --before");

    // Refusals: the server's error, and a non-zero status.
    let out = serve.revoke(&keys.admin(&["read:orders"]), &["--jti", "x"]);
    assert_eq!(out.status.code(), Some(6));
    assert!(
        text(&out.stderr).contains("403") && text(&out.stderr).contains("insufficient_scope"),
        "{}",
        text(&out.stderr)
    );
    let out = serve.revoke(&by_jti, &["--jti", "x"]);
    assert_eq!(out.status.code(), Some(6));
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
    // Usage errors are found before anything is sent.
    let out = serve.revoke(&admin, &["--token-hash", "abc"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = serve.revoke(&admin, &["--jti", "a", "--sub", "b"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // Nobody listens on the admin URL: unreachable.
    let closed = format!("http://127.0.0.1:{}", portcullis_testkit::net::free_port());
    let out = std::process::Command::new(binary())
        .args(["revoke", "--admin", &closed, "--jti", "x"])
        .env("PORTCULLIS_ADMIN_TOKEN", &admin)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));

    // Every revocation is logged with the caller's sub, never a token.
    let logs = serve.process.stderr();
    let lines: Vec<&str> = logs.lines().filter(|line| line.contains("revocation recorded")).collect();
    assert_eq!(lines.len(), 3, "{logs}");
    assert!(lines.iter().all(|line| line.contains("ops|7")), "{lines:?}");
    for token in [&admin, &by_jti, &by_hash, &older] {
        assert!(!logs.contains(token.as_str()), "a token is in the logs");
    }
}

#[tokio::test]
async fn a_revoked_token_stays_refused_after_a_sighup_reload() {
    let keys = Keys::new();
    let config = keys.config("forward_auth = \"nginx\"", REVOCATION);
    let serve = Serve::start(&config).await;
    let token = keys.access("dave", Some("d-1"), portcullis_testkit::claims::now(), None);
    assert_eq!(serve.check(&format!("Bearer {token}")).await.0, 200);
    let out = serve.revoke(&keys.admin(&["revoke:tokens"]), &["--jti", "d-1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let file = serve.process.dir().join("gateway.toml");
    std::fs::write(&file, config.replace("path = \"/api/*\"", "path = \"/api/*\"\nmethods = [\"GET\", \"POST\"]"))
        .unwrap();
    let pid = serve.process.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    until(Duration::from_secs(10), "the reload", async || serve.process.stderr().contains("configuration reloaded"))
        .await;
    let (status, body) = serve.check(&format!("Bearer {token}")).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("token_revoked")), "{body}");

    // A [store] change is refused, naming the key.
    std::fs::write(&file, format!("{config}\n[store]\ntimeout_ms = 75\n")).unwrap();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    until(Duration::from_secs(10), "the refusal", async || serve.process.stderr().contains("store.timeout_ms")).await;
    assert!(serve.process.stderr().contains("changes only on restart"));
}

/// A DPoP client key, its thumbprint, and proofs for `htu`.
struct Client {
    key: SigningKey,
    jkt: String,
}

impl Client {
    fn new() -> Self {
        let key = SigningKey::generate(Algorithm::ES256, None).unwrap();
        let jkt = portcullis::dpop::thumbprint(key.public_jwk().as_object().unwrap()).unwrap();
        Self { key, jkt }
    }

    fn proof(&self, jti: &str, htu: &str, token: &str) -> String {
        let claims = json!({"jti": jti, "htm": "GET", "htu": htu, "iat": portcullis_testkit::claims::now(),
            "ath": portcullis::dpop::access_token_hash(token)});
        self.key.sign_token(&claims, json!({"typ": "dpop+jwt", "jwk": self.key.public_jwk()}).as_object()).unwrap()
    }
}

/// A proxy gateway (to `upstream`) whose Redis is a closed port.
fn unreachable_store_config(keys: &Keys, upstream: &str, dpop: bool, on_failure: &str) -> String {
    let port = portcullis_testkit::net::free_port();
    let top = if dpop {
        format!("upstream = \"{upstream}\"\npublic_url = \"{PUBLIC}\"\n[dpop]\nmode = \"allowed\"\n")
    } else {
        format!("upstream = \"{upstream}\"\n")
    };
    keys.config(
        &top,
        &format!("[store]\nredis_url = \"redis://127.0.0.1:{port}/0\"\ntimeout_ms = 50\nreplay_on_failure = \"{on_failure}\"\n"),
    )
}

async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, Value, Duration) {
    let mut request = reqwest::Client::new().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let started = Instant::now();
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null), started.elapsed())
}

#[tokio::test]
async fn with_redis_down_dpop_fails_closed_and_ready_says_so_while_bearer_requests_pass() {
    let keys = Keys::new();
    let upstream = portcullis_testkit::net::serve(axum::Router::new().fallback(|| async { "{}" })).await;
    let serve = Serve::start(&unreachable_store_config(&keys, &upstream, true, "fail_closed")).await;
    assert_eq!(serve.ready().await, (503, "not ready: replay store unavailable".to_owned()));

    let client = Client::new();
    let now = portcullis_testkit::claims::now();
    let bound = keys.access("erin", Some("e-1"), now, Some(&client.jkt));
    let proof = client.proof("p-1", &format!("{PUBLIC}/api/orders"), &bound);
    let url = format!("{}/api/orders", serve.base);
    let (status, body, took) = get(&url, &[("authorization", &format!("DPoP {bound}")), ("dpop", &proof)]).await;
    assert_eq!((status, body["reason"].as_str()), (503, Some("store_unavailable")), "{body}");
    assert!(took < Duration::from_secs(1), "answered within the budget, not after a hang: {took:?}");
    let bearer = keys.access("erin", Some("e-2"), now, None);
    assert_eq!(get(&url, &[("authorization", &format!("Bearer {bearer}"))]).await.0, 200);

    let metrics = reqwest::get(format!("{}/metrics", serve.admin)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("portcullis_revocations{kind=\"jti\"} 0"), "{metrics}");
    assert!(metrics.contains("reason=\"store_unavailable\""), "the refusal is counted under its reason");
    assert!(metrics.contains("# HELP portcullis_revocations "), "{metrics}");
    assert!(metrics.contains("portcullis_store_connected 0"), "the store's own series: {metrics}");
}

#[tokio::test]
async fn with_redis_down_and_no_dpop_the_gateway_is_ready_but_degraded() {
    let keys = Keys::new();
    let upstream = portcullis_testkit::net::serve(axum::Router::new().fallback(|| async { "{}" })).await;
    let serve = Serve::start(&unreachable_store_config(&keys, &upstream, false, "fail_closed")).await;
    let (status, said) = serve.ready().await;
    assert_eq!(status, 200);
    assert!(said.starts_with("ready (degraded: store unavailable; revocations as of"), "{said}");

    // The start-up log names the store, without its password.
    let keys = Keys::new();
    let port = portcullis_testkit::net::free_port();
    let store = format!("[store]\nredis_url = \"redis://user:s3cret@127.0.0.1:{port}/0\"\n");
    let serve = Serve::start(&keys.config(&format!("upstream = \"{upstream}\""), &store)).await;
    let logs = serve.process.stderr();
    assert!(logs.contains(&format!("shared store: Redis at redis://127.0.0.1:{port}/0")), "{logs}");
    assert!(!logs.contains("s3cret"), "{logs}");
}

#[tokio::test]
async fn with_redis_down_and_local_only_a_proof_is_checked_in_memory() {
    let keys = Keys::new();
    let upstream = portcullis_testkit::net::serve(axum::Router::new().fallback(|| async { "{}" })).await;
    let serve = Serve::start(&unreachable_store_config(&keys, &upstream, true, "local_only")).await;
    assert_eq!(serve.ready().await.0, 200, "replays are still refused, by this replica");
    let client = Client::new();
    let bound = keys.access("frank", Some("f-1"), portcullis_testkit::claims::now(), Some(&client.jkt));
    let proof = client.proof("p-1", &format!("{PUBLIC}/api/orders"), &bound);
    let url = format!("{}/api/orders", serve.base);
    let headers = [("authorization", format!("DPoP {bound}")), ("dpop", proof)];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert_eq!(get(&url, &headers).await.0, 200);
    let (status, body, _) = get(&url, &headers).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("dpop_proof_invalid")), "a replay: {body}");
    let metrics = reqwest::get(format!("{}/metrics", serve.admin)).await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("portcullis_replay_fallbacks_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
}

#[test]
fn check_config_names_the_key_path_of_each_store_and_revocation_error() {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    let check = |tables: &str| {
        let file = dir.path().join("gateway.toml");
        std::fs::write(&file, keys.config("upstream = \"http://127.0.0.1:3000\"", tables)).unwrap();
        std::process::Command::new(binary()).args(["check-config", file.to_str().unwrap()]).output().unwrap()
    };
    let good = check(&format!("[store]\nredis_url = \"redis://10.0.0.5:6379/0\"\n{REVOCATION}"));
    assert_eq!(good.status.code(), Some(0), "{}", text(&good.stderr));

    let bad = check(
        "[store]\nredis_url = \"rediss://10.0.0.5:6380/0\"\ntimeout_ms = 0\n[revocation]\nissuer = \"https://issuer.test/\"\n\
         audience = \"a\"\npermission = \"revoke tokens\"\n",
    );
    assert_eq!(bad.status.code(), Some(3));
    let said = text(&bad.stderr);
    for expected in [
        "store.redis_url: TLS to Redis is not supported",
        "store.timeout_ms: must be 1 to 5000",
        "revocation.permission: must be one permission or scope",
    ] {
        assert!(said.contains(expected), "{expected}: {said}");
    }
    // Each error is located in the file.
    assert!(said.contains("gateway.toml:12:14: store.timeout_ms"), "{said}");
}
