//! Revocations on one gateway with the in-memory store: the admin endpoint's guard (issuer, audience,
//! permission), its request checks, and revoked tokens refused on the proxy and forward-auth edges, from the token
//! cache too; reloads keep the list and refuse `[store]` changes; the `[store]` and `[revocation]` checks.
#![allow(clippy::unwrap_used)]

#[allow(unused_imports)]
mod support;

use portcullis::signing::SigningKey;
use portcullis_gateway::{Config, Gateway};
use serde_json::{Value, json};
use support::{listen, upstream};

const ISSUER: &str = "https://issuer.test/";
const AUDIENCE: &str = "https://api.test";
const ADMIN_AUDIENCE: &str = "https://portcullis.test/admin";

/// The issuer's key in a local JWKS file, and a second issuer's key (not trusted for the admin endpoint).
struct Keys {
    key: SigningKey,
    other: SigningKey,
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Self {
        let key = portcullis_testkit::keys::key("k1");
        let other = portcullis_testkit::keys::key("k2");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("jwks.json"), portcullis_testkit::keys::jwks(&[&key])).unwrap();
        std::fs::write(dir.path().join("other.json"), portcullis_testkit::keys::jwks(&[&other])).unwrap();
        Self { key, other, dir }
    }

    fn jwks(&self, name: &str) -> String {
        format!("file://{}", self.dir.path().join(name).display())
    }

    /// The configuration: one issuer, a proxy route, an nginx forward-auth endpoint, and `extra` tables.
    fn config(&self, upstream: &str, extra: &str) -> String {
        self.config_with(upstream, "", extra)
    }

    /// The configuration with `top` after the top-level keys (tables such as `[dpop]`) and `extra` at the end.
    fn config_with(&self, upstream: &str, top: &str, extra: &str) -> String {
        format!(
            r#"upstream = "{upstream}"
admin_listen = "127.0.0.1:9"
{top}
[[issuers]]
issuer = "{ISSUER}"
audiences = ["{AUDIENCE}"]
jwks_uri = "{jwks}"
[[issuers]]
issuer = "https://other.test/"
audiences = ["{ADMIN_AUDIENCE}"]
jwks_uri = "{other}"
[[routes]]
path = "/auth/nginx"
forward_auth = "nginx"
[[routes]]
path = "/api/*"
{extra}
"#,
            jwks = self.jwks("jwks.json"),
            other = self.jwks("other.json"),
        )
    }

    fn token(&self, claims: Value) -> String {
        self.key.sign_token(&claims, None).unwrap()
    }

    /// An access token for the API.
    fn access(&self, sub: &str, jti: Option<&str>, iat: u64) -> String {
        let mut claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": iat, "exp": iat + 600});
        if let Some(jti) = jti {
            claims["jti"] = json!(jti);
        }
        self.token(claims)
    }

    /// An admin token with `permissions`.
    fn admin(&self, permissions: &[&str]) -> String {
        let now = portcullis_testkit::claims::now();
        self.token(json!({"iss": ISSUER, "aud": ADMIN_AUDIENCE, "sub": "ops|7", "iat": now, "exp": now + 600,
            "permissions": permissions}))
    }
}

const REVOCATION: &str = r#"[revocation]
issuer = "https://issuer.test/"
audience = "https://portcullis.test/admin"
permission = "revoke:tokens"
retention_secs = 3600"#;

struct Running {
    gateway: Gateway,
    base: String,
    admin: String,
    http: reqwest::Client,
}

impl Running {
    async fn start(config: &str) -> Self {
        let gateway = Gateway::new(Config::from_toml(config).unwrap()).unwrap();
        let (listener, address) = listen().await;
        tokio::spawn(portcullis_gateway::serve(gateway.clone(), listener, None, std::future::pending()));
        let admin = portcullis_testkit::net::serve(portcullis_gateway::admin_router(gateway.clone())).await;
        Self { gateway, base: format!("http://{address}"), admin, http: reqwest::Client::new() }
    }

    /// Status and JSON body of a proxied request with `token`.
    async fn proxy(&self, token: &str) -> (u16, Value) {
        let response = self.http.get(format!("{}/api/orders", self.base)).bearer_auth(token).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
    }

    /// Status and JSON body of an nginx forward-auth check with `token`.
    async fn nginx(&self, token: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}/auth/nginx", self.base))
            .header("x-original-method", "GET")
            .header("x-original-uri", "/api/orders")
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
    }

    /// `POST /revocations` with `token` (none: no Authorization) and the raw `body`: status, challenge, body.
    async fn revoke(&self, token: Option<&str>, body: &str) -> (u16, String, Value) {
        let mut request = self
            .http
            .post(format!("{}/revocations", self.admin))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let challenge =
            response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        (status, challenge, response.json().await.unwrap_or(Value::Null))
    }

    async fn list(&self, token: &str) -> (u16, Value) {
        let response = self.http.get(format!("{}/revocations", self.admin)).bearer_auth(token).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn the_admin_endpoint_takes_only_admin_tokens_with_the_permission_and_well_formed_requests() {
    let keys = Keys::new();
    let running = Running::start(&keys.config(&upstream().await, REVOCATION)).await;
    let admin = keys.admin(&["revoke:tokens"]);
    let body = r#"{"jti": "t-1"}"#;

    let (status, challenge, _) = running.revoke(None, body).await;
    assert_eq!(status, 401);
    assert!(challenge.starts_with("Bearer realm=\"portcullis-admin\""), "{challenge}");

    let now = portcullis_testkit::claims::now();
    let wrong_audience = keys.access("ops|7", None, now);
    let wrong_issuer = keys
        .other
        .sign_token(
            &json!({"iss": "https://other.test/", "aud": ADMIN_AUDIENCE, "sub": "x", "iat": now, "exp": now + 600,
            "permissions": ["revoke:tokens"]}),
            None,
        )
        .unwrap();
    for (token, case) in [(wrong_audience.as_str(), "audience"), (wrong_issuer.as_str(), "issuer")] {
        let (status, challenge, _) = running.revoke(Some(token), body).await;
        assert_eq!(status, 401, "{case}");
        assert!(challenge.contains("realm=\"portcullis-admin\"") && challenge.contains("invalid_token"), "{case}");
    }

    let (status, challenge, reply) = running.revoke(Some(&keys.admin(&["read:orders"])), body).await;
    assert_eq!(status, 403, "{reply}");
    assert!(challenge.contains("error=\"insufficient_scope\""), "{challenge}");
    // The permission may come as a scope too.
    let scoped = keys.token(json!({"iss": ISSUER, "aud": ADMIN_AUDIENCE, "sub": "ops|8", "iat": now,
        "exp": now + 600, "scope": "openid revoke:tokens"}));
    assert_eq!(running.revoke(Some(&scoped), r#"{"jti": "t-0"}"#).await.0, 201);

    for (bad, says) in [
        ("{", "not a revocation request"),
        (r#"{"jti": "a", "sub": "b"}"#, "exactly one"),
        (r#"{}"#, "exactly one"),
        (r#"{"jti": "a", "reason": "x"}"#, "unknown field"),
        (r#"{"token_sha256": "abc"}"#, "64 hexadecimal"),
        (r#"{"sub": ""}"#, "empty"),
        (r#"{"jti": "a", "before": 1}"#, "before goes with sub"),
        (r#"{"jti": "a", "expires_at": 1}"#, "not in the future"),
    ] {
        let (status, _, reply) = running.revoke(Some(&admin), bad).await;
        assert_eq!(status, 400, "{bad}: {reply}");
        assert_eq!(reply["error"], "invalid_request", "{bad}");
        assert!(reply["error_description"].as_str().unwrap().contains(says), "{bad}: {reply}");
    }
    // Nothing refused was recorded.
    let (status, listed) = running.list(&admin).await;
    assert_eq!(status, 200);
    assert_eq!(listed["revocations"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["store"]["name"], "memory");
    assert_eq!(running.list(&keys.admin(&[])).await.0, 403);
}

#[tokio::test]
async fn a_revoked_token_is_refused_on_every_edge_even_from_the_token_cache() {
    let keys = Keys::new();
    let running = Running::start(&keys.config(&upstream().await, REVOCATION)).await;
    let admin = keys.admin(&["revoke:tokens"]);
    let now = portcullis_testkit::claims::now();
    let by_jti = keys.access("alice", Some("jti-alice-1"), now);
    let by_hash = keys.access("bob", None, now);
    let untouched = keys.access("carol", Some("jti-carol-1"), now);
    for token in [&by_jti, &by_hash, &untouched] {
        assert_eq!(running.proxy(token).await.0, 200);
        assert_eq!(running.nginx(token).await.0, 200);
    }

    let (status, _, reply) = running.revoke(Some(&admin), r#"{"jti": "jti-alice-1"}"#).await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["store"], "memory");
    assert_eq!(reply["revoked"]["kind"], "jti");
    assert_eq!(reply["revoked"]["jti"], "jti-alice-1");
    let expires = reply["revoked"]["expires_at"].as_u64().unwrap();
    assert!((now + 3600..=now + 3700).contains(&expires), "retention_secs applies: {expires}");

    let hash = portcullis::store::TokenHash::of_token(&by_hash).to_string();
    let (status, _, reply) =
        running.revoke(Some(&admin), &json!({"token_sha256": hash, "expires_at": now + 600}).to_string()).await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["revoked"], json!({"kind": "token_hash", "sha256": hash, "expires_at": now + 600}));

    for token in [&by_jti, &by_hash] {
        for (edge, (status, body)) in [("proxy", running.proxy(token).await), ("nginx", running.nginx(token).await)] {
            assert_eq!((status, body["reason"].as_str()), (401, Some("token_revoked")), "{edge}: {body}");
        }
    }
    assert_eq!(running.proxy(&untouched).await.0, 200);
    assert_eq!(running.nginx(&untouched).await.0, 200);

    let status: Value = reqwest::get(format!("{}/status.json", running.admin)).await.unwrap().json().await.unwrap();
    assert_eq!(status["store"]["name"], "memory", "{status}");
    assert_eq!(
        (status["store"]["connected"].as_bool(), status["store"]["revocations"].as_u64()),
        (Some(true), Some(2))
    );
    let page = reqwest::get(format!("{}/status", running.admin)).await.unwrap().text().await.unwrap();
    assert!(page.contains("Shared store") && page.contains("data-state=\"connected\""), "{page}");

    let (_, listed) = running.list(&admin).await;
    let kinds: Vec<&str> =
        listed["revocations"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["jti", "token_hash"], "{listed}");
}

#[tokio::test]
async fn a_subject_revoked_before_a_time_refuses_older_tokens_and_accepts_newer_ones() {
    let keys = Keys::new();
    let running = Running::start(&keys.config(&upstream().await, REVOCATION)).await;
    let admin = keys.admin(&["revoke:tokens"]);
    let now = portcullis_testkit::claims::now();
    let older = keys.access("dave", Some("d-1"), now - 120);
    let newer = keys.access("dave", Some("d-2"), now);
    let someone_else = keys.access("erin", Some("e-1"), now - 120);
    assert_eq!(running.proxy(&older).await.0, 200);

    let body = json!({"sub": "dave", "before": now - 60}).to_string();
    let (status, _, reply) = running.revoke(Some(&admin), &body).await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(
        reply["revoked"],
        json!({"kind": "subject", "sub": "dave", "before": now - 60, "expires_at": now - 60 + 3600})
    );

    let (status, body) = running.proxy(&older).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("token_revoked")), "{body}");
    assert_eq!(running.proxy(&newer).await.0, 200);
    assert_eq!(running.proxy(&someone_else).await.0, 200);

    // Without before: every token of the subject issued until now.
    let (status, _, _) = running.revoke(Some(&admin), r#"{"sub": "erin"}"#).await;
    assert_eq!(status, 201);
    assert_eq!(running.proxy(&someone_else).await.0, 401);
}

#[tokio::test]
async fn a_subject_revoked_now_covers_tokens_minted_by_an_issuer_clock_within_the_leeway() {
    let keys = Keys::new();
    // A third issuer granted 90 s of leeway: the largest, so a subject entry's default before is now + 90.
    let extra = format!(
        "{REVOCATION}\n[[issuers]]\nissuer = \"https://slow.test/\"\naudiences = [\"{AUDIENCE}\"]\n\
         jwks_uri = \"{}\"\nleeway_secs = 90\n",
        keys.jwks("other.json")
    );
    let running = Running::start(&keys.config(&upstream().await, &extra)).await;
    let admin = keys.admin(&["revoke:tokens"]);
    let now = portcullis_testkit::claims::now();
    // Minted by an issuer whose clock runs 20 s ahead: accepted within the leeway.
    let ahead = keys.access("frank", Some("f-1"), now + 20);
    assert_eq!(running.proxy(&ahead).await.0, 200);

    let (status, _, reply) = running.revoke(Some(&admin), r#"{"sub": "frank"}"#).await;
    assert_eq!(status, 201, "{reply}");
    let before = reply["revoked"]["before"].as_u64().unwrap();
    assert!((now + 90..=now + 92).contains(&before), "before {before}, now {now}");
    assert_eq!(reply["revoked"]["expires_at"].as_u64().unwrap(), before + 3600);
    let (status, body) = running.proxy(&ahead).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("token_revoked")), "{body}");
}

#[tokio::test]
async fn entries_already_past_or_more_than_a_year_ahead_are_refused_and_not_recorded() {
    let keys = Keys::new();
    let running = Running::start(&keys.config(&upstream().await, REVOCATION)).await;
    let admin = keys.admin(&["revoke:tokens"]);
    let now = portcullis_testkit::claims::now();
    let year_and_more = now + 367 * 86_400;
    for (body, says) in [
        (json!({"sub": "carol", "before": 0}), "nothing to revoke"),
        (json!({"sub": "carol", "before": now - 7200}), "already past"),
        (json!({"jti": "j-1", "expires_at": year_and_more}), "more than 366 days ahead"),
        (json!({"sub": "carol", "expires_at": year_and_more}), "more than 366 days ahead"),
    ] {
        let (status, _, reply) = running.revoke(Some(&admin), &body.to_string()).await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert_eq!(reply["error"], "invalid_request", "{body}");
        assert!(reply["error_description"].as_str().unwrap().contains(says), "{body}: {reply}");
    }
    let (_, listed) = running.list(&admin).await;
    assert_eq!(listed["revocations"], json!([]), "{listed}");
}

#[tokio::test]
async fn a_full_revocation_list_refuses_new_entries_with_503() {
    let keys = Keys::new();
    let config = keys.config(&upstream().await, &format!("{REVOCATION}\nmax_entries = 2"));
    let running = Running::start(&config).await;
    let admin = keys.admin(&["revoke:tokens"]);
    for jti in ["a", "b"] {
        assert_eq!(running.revoke(Some(&admin), &json!({"jti": jti}).to_string()).await.0, 201);
    }
    let (status, _, reply) = running.revoke(Some(&admin), r#"{"jti": "c"}"#).await;
    assert_eq!(status, 503, "{reply}");
    assert_eq!(reply["error"], "revocation_list_full", "{reply}");
    assert!(reply["error_description"].as_str().unwrap().contains("max_entries"), "{reply}");
    let (_, listed) = running.list(&admin).await;
    assert_eq!(listed["revocations"].as_array().unwrap().len(), 2, "{listed}");
    let now = portcullis_testkit::claims::now();
    assert_eq!(running.proxy(&keys.access("x", Some("c"), now)).await.0, 200, "c was not recorded");
}

#[tokio::test]
async fn an_admin_token_without_a_subject_is_refused() {
    let keys = Keys::new();
    let running = Running::start(&keys.config(&upstream().await, REVOCATION)).await;
    let now = portcullis_testkit::claims::now();
    let anonymous = keys.token(json!({"iss": ISSUER, "aud": ADMIN_AUDIENCE, "iat": now, "exp": now + 600,
        "permissions": ["revoke:tokens"]}));
    let (status, challenge, reply) = running.revoke(Some(&anonymous), r#"{"jti": "a"}"#).await;
    assert_eq!(status, 403, "{reply}");
    assert!(challenge.contains("the caller must have a sub claim"), "{challenge}");
    let (_, listed) = running.list(&keys.admin(&["revoke:tokens"])).await;
    assert_eq!(listed["revocations"], json!([]), "{listed}");
}

#[tokio::test]
async fn without_a_revocation_table_the_endpoint_is_not_there() {
    let keys = Keys::new();
    let running = Running::start(&keys.config(&upstream().await, "")).await;
    let (status, _, _) = running.revoke(Some(&keys.admin(&["revoke:tokens"])), r#"{"jti": "a"}"#).await;
    assert_eq!(status, 404);
    assert_eq!(running.list(&keys.admin(&["revoke:tokens"])).await.0, 404);
}

#[tokio::test]
async fn reloads_keep_the_revocations_and_refuse_store_changes() {
    let keys = Keys::new();
    let upstream = upstream().await;
    let config = keys.config(&upstream, REVOCATION);
    let running = Running::start(&config).await;
    let admin = keys.admin(&["revoke:tokens"]);
    let now = portcullis_testkit::claims::now();
    let token = keys.access("frank", Some("f-1"), now);
    assert_eq!(running.revoke(Some(&admin), r#"{"jti": "f-1"}"#).await.0, 201);
    assert_eq!(running.proxy(&token).await.0, 401);

    // Another route set: reloaded, and the revoked token stays refused.
    let changed = config.replace("path = \"/api/*\"", "path = \"/api/*\"\nmethods = [\"GET\"]");
    running.gateway.reload(Config::from_toml(&changed).unwrap()).unwrap();
    let (status, body) = running.proxy(&token).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("token_revoked")), "{body}");
    assert_eq!(running.proxy(&keys.access("frank", Some("f-2"), now)).await.0, 200);

    for (table, key) in [
        ("[store]\ntimeout_ms = 80", "store.timeout_ms"),
        ("[store]\nredis_url = \"redis://127.0.0.1:1/0\"", "store.redis_url"),
        ("[store]\nreplay_on_failure = \"local_only\"", "store.replay_on_failure"),
    ] {
        let text = format!("{changed}\n{table}\n");
        let error = running.gateway.reload(Config::from_toml(&text).unwrap()).unwrap_err();
        assert_eq!(error.errors()[0].key, key, "{error}");
        assert!(error.to_string().contains("changes only on restart"), "{error}");
    }
    assert_eq!(running.proxy(&token).await.0, 401, "the refused reloads changed nothing");
}

#[test]
fn store_and_revocation_tables_are_checked_with_their_key_paths() {
    let keys = Keys::new();
    let base = keys.config("http://127.0.0.1:3000", "");
    let good = format!(
        "{base}\n[store]\nredis_url = \"redis://10.0.0.5:6379/2\"\nkey_prefix = \"eu1:\"\ntimeout_ms = 20\n\
         connect_timeout_ms = 500\nresync_secs = 30\nreplay_on_failure = \"local_only\"\n{REVOCATION}\n"
    );
    let config = Config::from_toml(&good).unwrap();
    assert_eq!(config.store.redis_url.as_deref(), Some("redis://10.0.0.5:6379/2"));
    assert_eq!(config.store.replay_on_failure, portcullis_gateway::ReplayOnFailure::LocalOnly);
    assert_eq!(config.revocation.as_ref().unwrap().permission, "revoke:tokens");

    for (table, key, says) in [
        ("[store]\ntimeout_ms = 0", "store.timeout_ms", "must be 1 to 5000"),
        ("[store]\ntimeout_ms = 6000", "store.timeout_ms", "must be 1 to 5000"),
        ("[store]\nconnect_timeout_ms = 0", "store.connect_timeout_ms", "must be 1 to 60000"),
        ("[store]\nresync_secs = 0", "store.resync_secs", "must be 1 to 86400"),
        ("[store]\nkey_prefix = \"\"", "store.key_prefix", "1 to 64 bytes"),
        ("[store]\nredis_url = \"rediss://r:6380\"", "store.redis_url", "TLS to Redis is not supported"),
        ("[store]\nredis_url = \"http://r:6379\"", "store.redis_url", "must be a redis:// URL"),
        ("[store]\nredis_url = \"redis://r:99999\"", "store.redis_url", "not a port"),
        ("[store]\nreplay_on_failure = \"open\"", "store.replay_on_failure", "unknown variant"),
        ("[store]\ntimeout = 5", "store", "did you mean `timeout_ms`?"),
        (
            "[revocation]\nissuer = \"https://issuer.test/\"\naudience = \"a\"\npermission = \"revoke tokens\"",
            "revocation.permission",
            "without spaces",
        ),
        ("[revocation]\nissuer = \"issuer\"\naudience = \"a\"", "revocation.issuer", "issuer's URL"),
        ("[revocation]\nissuer = \"https://i/\"\naudience = \"\"", "revocation.audience", "audience"),
        (
            "[revocation]\nissuer = \"https://i/\"\naudience = \"a\"\nretention_secs = 1",
            "revocation.retention_secs",
            "60 to",
        ),
        (
            "[revocation]\nissuer = \"https://i/\"\naudience = \"a\"\njwks_uri = \"ftp://x\"",
            "revocation.jwks_uri",
            "https://",
        ),
        (
            "[revocation]\nissuer = \"https://i/\"\naudience = \"a\"\nmax_entries = 0",
            "revocation.max_entries",
            "at least 1",
        ),
        ("[revocation]\nissuer = \"https://i/\"", "revocation", "missing field `audience`"),
    ] {
        let text = format!("{base}\n{table}\n");
        let errors = Config::from_toml(&text).unwrap_err();
        let found = errors.errors().iter().find(|e| e.key == key);
        let found = found.unwrap_or_else(|| panic!("{table}: no error at {key}: {errors}"));
        assert!(found.message.contains(says), "{table}: {}", found.message);
        assert!(found.location.is_some(), "{table}: the error is located in the file");
    }
    // The endpoint lives on the admin listener.
    let no_admin = format!("{}\n{REVOCATION}\n", base.replace("admin_listen = \"127.0.0.1:9\"\n", ""));
    let errors = Config::from_toml(&no_admin).unwrap_err();
    assert!(errors.errors().iter().any(|e| e.key == "revocation" && e.message.contains("admin_listen")), "{errors}");
}

/// A DPoP client key and its thumbprint.
struct DpopClient {
    key: SigningKey,
    jkt: String,
}

impl DpopClient {
    fn new() -> Self {
        let key = SigningKey::generate(portcullis::Algorithm::ES256, None).unwrap();
        let jkt = portcullis::dpop::thumbprint(key.public_jwk().as_object().unwrap()).unwrap();
        Self { key, jkt }
    }

    fn proof(&self, jti: &str, htu: &str, token: &str) -> String {
        let claims = json!({"jti": jti, "htm": "GET", "htu": htu, "iat": portcullis_testkit::claims::now(),
            "ath": portcullis::dpop::access_token_hash(token)});
        self.key.sign_token(&claims, json!({"typ": "dpop+jwt", "jwk": self.key.public_jwk()}).as_object()).unwrap()
    }
}

#[tokio::test]
async fn store_unavailable_is_a_503_on_the_proxy_and_a_401_naming_the_store_towards_nginx() {
    let keys = Keys::new();
    let port = portcullis_testkit::net::free_port();
    let config = keys.config_with(
        &upstream().await,
        "public_url = \"https://api.example.test\"\n[dpop]\nmode = \"allowed\"",
        &format!("[store]\nredis_url = \"redis://127.0.0.1:{port}/0\"\n"),
    );
    let running = Running::start(&config).await;
    let client = DpopClient::new();
    let now = portcullis_testkit::claims::now();
    let mut claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "gina", "iat": now, "exp": now + 600});
    claims["cnf"] = json!({ "jkt": client.jkt });
    let bound = keys.token(claims);

    let proof = client.proof("p-1", "https://api.example.test/api/orders", &bound);
    let response = running
        .http
        .get(format!("{}/api/orders", running.base))
        .header("authorization", format!("DPoP {bound}"))
        .header("dpop", proof)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["reason"], "store_unavailable", "{body}");

    let proof = client.proof("p-2", "https://api.example.test/api/orders", &bound);
    let response = running
        .http
        .get(format!("{}/auth/nginx", running.base))
        .header("x-original-method", "GET")
        .header("x-original-uri", "/api/orders")
        .header("authorization", format!("DPoP {bound}"))
        .header("dpop", proof)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "nginx takes only 2xx, 401 and 403");
    let challenges: Vec<String> =
        response.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    assert!(challenges.iter().any(|c| c.contains("store unavailable")), "{challenges:?}");
}

#[tokio::test]
async fn ready_and_status_say_when_a_connected_store_has_not_synchronized_the_revocations() {
    if !portcullis_testkit::probe::require("redis-server", portcullis_testkit::redis::available()) {
        return;
    }
    let redis = portcullis_testkit::redis::RedisServer::start().await;
    // The revocation set's key holds a string: the connection is up, but reading the set fails.
    assert_eq!(redis.command(&["SET", "t21:revocations", "not a sorted set"]).await, "OK");
    let keys = Keys::new();
    let store = format!("[store]\nredis_url = \"{}\"\nkey_prefix = \"t21:\"\nresync_secs = 60\n", redis.url());
    let running = Running::start(&keys.config_with(&upstream().await, "", &store)).await;
    let ready = async || {
        let response = running.http.get(format!("{}/ready", running.admin)).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // Poll (bounded) until the store has connected: before that, /ready says it is unavailable.
    let (status, body) = loop {
        let (status, body) = ready().await;
        if !body.contains("store unavailable") || std::time::Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        (status, body.as_str()),
        (200, "ready (degraded: revocations not synchronized since start (never synchronized))")
    );
    let page = running.http.get(format!("{}/status", running.admin)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("data-state=\"unsynchronized\""), "{page}");
    assert!(page.contains("revocations not synchronized"), "{page}");

    // Once the set can be read, the next resync (retried with backoff) makes the replica plainly ready.
    redis.command(&["DEL", "t21:revocations"]).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, body) = ready().await;
        if (status, body.as_str()) == (200, "ready") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {status} {body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let page = running.http.get(format!("{}/status", running.admin)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("data-state=\"connected\""), "{page}");
}
