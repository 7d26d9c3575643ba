//! Many replicas, one truth: two `portcullis serve` replicas sharing one real Redis (`[store] redis_url`), behind
//! nginx balancing them round-robin, in front of an upstream — all on loopback ports, stopped when each test ends.
//! Replica B reaches Redis through a [`Link`] the test can cut. Tokens and DPoP proofs are signed here; the
//! replicas load the issuer's keys from a test identity provider, which also signs the admin tokens that may revoke.
//!
//! Covered: a DPoP proof accepted by one replica is refused by the other; a `jti`, a token hash or a subject
//! revoked through one replica is refused by both within a second, cached tokens included; a revocation made while
//! a replica is cut off reaches it when it reconnects; Redis killed mid-traffic gives the configured behaviour
//! (`fail_closed`, `local_only`) with no request past its budget, and Redis back means recovery without a restart;
//! a soak of mixed traffic with zero wrong answers, flat memory and a Redis key count bounded by the replay window;
//! and the JWKS fetches a fleet makes at its issuer.
//!
//! Skipped (printed) without `redis-server` or nginx, failed under CI. The tests take turns (one fleet at a time):
//! their time bounds are about the replicas, not about sharing two cores with another fleet.
#![allow(clippy::unwrap_used)]

use axum::Router;
use axum::routing::any;
use portcullis::signing::SigningKey;
use portcullis::store::TokenHash;
use portcullis_testkit::dpop::{DpopClient, unique_jti};
use portcullis_testkit::fronts::GatewayProcess;
use portcullis_testkit::idp::Idp;
use portcullis_testkit::process::{Running, free_port, nginx_prelude};
use portcullis_testkit::redis::{Link, RedisServer};
use portcullis_testkit::{claims, keys, probe};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::Command;

/// The audience of the API's tokens.
const AUDIENCE: &str = "https://api.replicas.test";
/// The audience of the tokens that may revoke (`[revocation] audience`).
const ADMIN_AUDIENCE: &str = "https://portcullis.replicas.test/admin";
/// The permission they must carry (`[revocation] permission`).
const PERMISSION: &str = "revoke:tokens";
/// The path every API request asks for (a route of the replicas).
const PATH: &str = "/api/orders";
/// The DPoP leeway the replicas are configured with.
const LEEWAY_SECS: u64 = 2;
/// The store budget of one call on the request path (`[store] timeout_ms`).
const STORE_TIMEOUT_MS: u64 = 50;
/// What any single request may take, Redis up or down: the budget plus generous slack for a loaded machine.
const REQUEST_BOUND: Duration = Duration::from_secs(2);
/// How soon a revocation made through one replica must be enforced by every replica.
const PROPAGATION: Duration = Duration::from_secs(1);

/// One fleet at a time (see the module documentation).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn prerequisites() -> bool {
    probe::require("redis-server", portcullis_testkit::redis::available())
        && probe::require("nginx", probe::runs("nginx", &["-v"]))
}

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_portcullis"))
}

/// How a fleet is configured.
#[derive(Debug, Clone, Copy)]
struct Options {
    /// `[store] replay_on_failure`.
    on_failure: &'static str,
    /// `[dpop] max_age_secs`.
    max_age_secs: u64,
    /// `[store] timeout_ms`.
    timeout_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self { on_failure: "fail_closed", max_age_secs: 60, timeout_ms: STORE_TIMEOUT_MS }
    }
}

/// A replica's configuration: reverse proxy to `upstream`, DPoP allowed, the shared store at `redis_url`, the
/// admin endpoint for revocations, and the test issuer's keys from `idp`.
fn replica_config(public_url: &str, upstream: &str, redis_url: &str, idp: &Idp, options: Options) -> String {
    let issuer = idp.issuer();
    let jwks = idp.jwks_url();
    format!(
        r#"listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
upstream = "{upstream}"
public_url = "{public_url}"
workers = 2

[dpop]
mode = "allowed"
max_age_secs = {max_age}
leeway_secs = {LEEWAY_SECS}

[store]
redis_url = "{redis_url}"
timeout_ms = {timeout_ms}
connect_timeout_ms = 1000
resync_secs = 60
replay_on_failure = "{on_failure}"

[revocation]
issuer = "{issuer}"
jwks_uri = "{jwks}"
audience = "{ADMIN_AUDIENCE}"
permission = "{PERMISSION}"

[[issuers]]
issuer = "{issuer}"
audiences = ["{AUDIENCE}"]
jwks_uri = "{jwks}"

[[routes]]
path = "/api/*"
"#,
        max_age = options.max_age_secs,
        on_failure = options.on_failure,
        timeout_ms = options.timeout_ms,
    )
}

/// nginx on `127.0.0.1:port` balancing `replicas` round-robin; each request goes to exactly one replica (no retry
/// on another: a retried DPoP request would be checked twice), and the answer names it in `X-Replica`.
fn balancer_config(dir: &str, port: u16, replicas: &[&str]) -> String {
    let servers: String = replicas.iter().map(|address| format!("        server {address};\n")).collect();
    let prelude = nginx_prelude(dir);
    format!(
        r#"{prelude}    upstream replicas {{
{servers}    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://replicas;
            proxy_next_upstream off;
            proxy_set_header Host $http_host;
            add_header X-Replica $upstream_addr always;
        }}
    }}
}}
"#
    )
}

/// Starts nginx with [`balancer_config`].
async fn start_balancer(port: u16, replicas: &[&str]) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().to_str().unwrap().to_owned();
    std::fs::write(dir.path().join("nginx.conf"), balancer_config(&prefix, port, replicas)).unwrap();
    let mut command = Command::new("nginx");
    command.args(["-c", &format!("{prefix}/nginx.conf"), "-p", &prefix, "-e", &format!("{prefix}/error.log")]);
    let mut process = Running::spawn("nginx balancer", command, dir);
    process.until_listening(port).await;
    process
}

/// An upstream that answers every request 200 with the subject the replica passed on.
async fn start_upstream() -> String {
    let app = Router::new().fallback(any(|headers: axum::http::HeaderMap| async move {
        let subject = headers.get("x-auth-subject").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        axum::Json(json!({ "served": true, "subject": subject }))
    }));
    portcullis_testkit::net::serve(app).await
}

/// What a request carries.
#[derive(Debug, Clone, Copy)]
enum Auth<'a> {
    /// `Authorization: Bearer <token>`.
    Bearer(&'a str),
    /// `Authorization: DPoP <token>` and `DPoP: <proof>`.
    Dpop(&'a str, &'a str),
}

/// An answer, as far as the tests look at it.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    challenge: String,
    retry_after: Option<String>,
    replica: String,
    body: String,
    took: Duration,
}

impl Answer {
    /// Whether this is a DPoP proof refusal (401 `invalid_dpop_proof`).
    fn is_proof_refusal(&self) -> bool {
        self.status == 401 && self.challenge.contains("invalid_dpop_proof")
    }

    /// Whether this is the refusal of a revoked (or otherwise invalid) token: 401 `invalid_token`.
    fn is_token_refusal(&self) -> bool {
        self.status == 401 && self.challenge.contains("invalid_token")
    }

    /// Whether this is the fail-closed answer of a replica whose replay store is unavailable: 503 with
    /// `Retry-After`, no challenge.
    fn is_store_unavailable(&self) -> bool {
        self.status == 503 && self.retry_after.is_some() && self.challenge.is_empty()
    }
}

/// Sends `GET PATH` to `address` (`host:port`) with `auth`; a transport failure is status 0.
async fn call(http: &reqwest::Client, address: &str, auth: Auth<'_>) -> Answer {
    let mut request = http.get(format!("http://{address}{PATH}")).timeout(Duration::from_secs(10));
    request = match auth {
        Auth::Bearer(token) => request.header("authorization", format!("Bearer {token}")),
        Auth::Dpop(token, proof) => request.header("authorization", format!("DPoP {token}")).header("dpop", proof),
    };
    let started = Instant::now();
    match request.send().await {
        Ok(response) => {
            let header =
                |name: &str| response.headers().get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            // Every challenge (Bearer and DPoP each have their own header).
            let challenge: Vec<String> = response
                .headers()
                .get_all("www-authenticate")
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            let (status, challenge) = (response.status().as_u16(), challenge.join(", "));
            let (retry_after, replica) = (header("retry-after"), header("x-replica").unwrap_or_default());
            let body = response.text().await.unwrap_or_default();
            Answer { status, challenge, retry_after, replica, body, took: started.elapsed() }
        }
        Err(error) => Answer {
            status: 0,
            challenge: String::new(),
            retry_after: None,
            replica: String::new(),
            body: error.to_string(),
            took: started.elapsed(),
        },
    }
}

/// Redis, the identity provider, two replicas, nginx in front, an upstream behind.
struct Fleet {
    redis: RedisServer,
    /// Replica B's path to Redis.
    link: Link,
    idp: Idp,
    key: SigningKey,
    a: GatewayProcess,
    b: GatewayProcess,
    _balancer: Running,
    /// nginx, `127.0.0.1:PORT`.
    balancer: String,
    /// The URL clients use (nginx's), the replicas' `public_url`.
    public_url: String,
    http: reqwest::Client,
}

impl Fleet {
    async fn start(options: Options) -> Self {
        let redis = RedisServer::start().await;
        let link = Link::to(redis.port).await;
        let idp = Idp::start().await;
        let key = keys::key("replicas-key");
        idp.publish(&[&key]);
        let upstream = start_upstream().await;
        let port = free_port();
        let public_url = format!("http://127.0.0.1:{port}");
        let a = GatewayProcess::start(
            binary(),
            "replica A",
            &replica_config(&public_url, &upstream, &redis.url(), &idp, options),
        )
        .await;
        let b = GatewayProcess::start(
            binary(),
            "replica B",
            &replica_config(&public_url, &upstream, &link.url(), &idp, options),
        )
        .await;
        let balancer = start_balancer(port, &[&a.address, &b.address]).await;
        let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
        let fleet = Self {
            redis,
            link,
            idp,
            key,
            a,
            b,
            _balancer: balancer,
            balancer: format!("127.0.0.1:{port}"),
            public_url,
            http,
        };
        // Both replicas are connected: GatewayProcess waited for `/ready`, which says whether the store is up.
        for replica in [&fleet.a, &fleet.b] {
            let (status, body) = fleet.ready(&replica.admin).await;
            assert_eq!((status, body.contains("degraded")), (200, false), "{}: {body}", replica.admin);
            let connected = fleet.metric(&replica.admin, "portcullis_store_connected").await;
            assert_eq!(connected, Some(1.0), "{}", replica.admin);
        }
        fleet
    }

    /// The `htu` of proofs for `GET PATH`.
    fn htu(&self) -> String {
        format!("{}{PATH}", self.public_url)
    }

    /// A token of subject `sub` issued at `iat`, valid for ten minutes, with `extra` claims.
    fn token_at(&self, sub: &str, iat: u64, extra: &[(&str, Value)]) -> String {
        let mut token = claims::with(claims::access(&self.idp.issuer(), AUDIENCE, iat, iat + 600), "sub", json!(sub));
        for (name, value) in extra {
            token = claims::with(token, name, value.clone());
        }
        self.key.sign_token(&token, None).unwrap()
    }

    /// A token of `sub`, issued now, with a fresh `jti`.
    fn token(&self, sub: &str) -> String {
        self.token_at(sub, claims::now(), &[("jti", json!(unique_jti()))])
    }

    /// A token of `sub` bound to `client`'s key (`cnf.jkt`), with a fresh `jti`.
    fn bound_token(&self, client: &DpopClient, sub: &str) -> String {
        self.token_at(sub, claims::now(), &[("jti", json!(unique_jti())), ("cnf", json!({ "jkt": client.jkt() }))])
    }

    /// An admin token: the revocation audience, the permission, and an operator's subject.
    fn admin_token(&self) -> String {
        let now = claims::now();
        let token = claims::with(
            claims::with(claims::access(&self.idp.issuer(), ADMIN_AUDIENCE, now, now + 600), "sub", json!("ops|1")),
            "permissions",
            json!([PERMISSION]),
        );
        self.key.sign_token(&token, None).unwrap()
    }

    async fn call(&self, address: &str, auth: Auth<'_>) -> Answer {
        call(&self.http, address, auth).await
    }

    /// `POST /revocations` on the admin listener `admin`; status and JSON answer.
    async fn revoke(&self, admin: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("http://{admin}/revocations"))
            .bearer_auth(self.admin_token())
            .json(&body)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Revokes through `admin` and returns when the answer (201, stored in Redis) arrived.
    async fn revoke_shared(&self, admin: &str, body: Value) -> Instant {
        let (status, answer) = self.revoke(admin, body.clone()).await;
        assert_eq!(status, 201, "revoking {body} through {admin}: {answer}");
        assert_eq!(answer["store"], "redis", "{answer}");
        Instant::now()
    }

    /// Polls `address` with `auth`-less Bearer `token` until it is refused as an invalid token; panics after
    /// `within` from `since`. Returns how long it took from `since`.
    async fn refused_within(&self, address: &str, token: &str, since: Instant, within: Duration) -> Duration {
        loop {
            let answer = self.call(address, Auth::Bearer(token)).await;
            if answer.is_token_refusal() {
                return since.elapsed();
            }
            assert_eq!(answer.status, 200, "{address}: neither accepted nor refused: {answer:?}");
            assert!(since.elapsed() < within, "{address} still accepted the revoked token after {within:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Both replicas refuse `token` within [`PROPAGATION`] of `since`, polled at once.
    async fn both_refuse(&self, token: &str, since: Instant, what: &str) {
        let (a, b) = tokio::join!(
            self.refused_within(&self.a.address, token, since, PROPAGATION),
            self.refused_within(&self.b.address, token, since, PROPAGATION),
        );
        eprintln!("{what}: refused by A after {a:?}, by B after {b:?}");
    }

    /// Both replicas accept Bearer `token` (200 from the upstream).
    async fn both_accept(&self, token: &str, what: &str) {
        for replica in [&self.a, &self.b] {
            let answer = self.call(&replica.address, Auth::Bearer(token)).await;
            assert_eq!(answer.status, 200, "{what} at {}: {answer:?}", replica.address);
            assert!(answer.body.contains("\"served\":true"), "{answer:?}");
        }
    }

    /// The value of the metric line `name` (labels included, exactly as exposed) on admin listener `admin`.
    async fn metric(&self, admin: &str, name: &str) -> Option<f64> {
        let text = self.http.get(format!("http://{admin}/metrics")).send().await.ok()?.text().await.ok()?;
        metric_in(&text, name)
    }

    /// Polls `name` on `admin` until it equals `value`; panics after `within`.
    async fn until_metric(&self, admin: &str, name: &str, value: f64, within: Duration) {
        let started = Instant::now();
        loop {
            let seen = self.metric(admin, name).await;
            if seen == Some(value) {
                return;
            }
            assert!(started.elapsed() < within, "{admin}: {name} is {seen:?}, not {value}, after {within:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `GET /ready` on `admin`: status and body.
    async fn ready(&self, admin: &str) -> (u16, String) {
        let response = self.http.get(format!("http://{admin}/ready")).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Replay entries in Redis.
    async fn replay_keys(&self) -> usize {
        let keys = self.redis.command(&["KEYS", "portcullis:replay:*"]).await;
        keys.lines().filter(|line| !line.is_empty()).count()
    }
}

/// The value of metric line `name` (with its labels, as exposed) in a Prometheus text exposition.
fn metric_in(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The resident set size of process `pid` in KiB (`VmRSS` in `/proc/PID/status`).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dpop_proof_accepted_by_one_replica_is_refused_by_the_other() {
    if !prerequisites() {
        return;
    }
    let _turn = SERIAL.lock().await;
    let fleet = Fleet::start(Options::default()).await;
    let client = DpopClient::new();
    let token = fleet.bound_token(&client, "auth0|dpop");
    let mut accepted = 0;
    for (first, second) in [(&fleet.a, &fleet.b), (&fleet.b, &fleet.a)] {
        let proof = client.proof("GET", &fleet.htu(), Some(&token));
        let answer = fleet.call(&first.address, Auth::Dpop(&token, &proof)).await;
        assert_eq!(answer.status, 200, "first use at {}: {answer:?}", first.address);
        accepted += 1;
        let replayed = fleet.call(&second.address, Auth::Dpop(&token, &proof)).await;
        assert!(replayed.is_proof_refusal(), "the replay at {}: {replayed:?}", second.address);
        // And at the replica that accepted it, as before.
        let again = fleet.call(&first.address, Auth::Dpop(&token, &proof)).await;
        assert!(again.is_proof_refusal(), "the replay at {}: {again:?}", first.address);
    }
    // Through the balancer: the same proof twice goes to both replicas in turn; one is accepted, one refused.
    let mut answered_by = std::collections::BTreeSet::new();
    for round in 0..6 {
        let proof = client.proof("GET", &fleet.htu(), Some(&token));
        let first = fleet.call(&fleet.balancer, Auth::Dpop(&token, &proof)).await;
        let second = fleet.call(&fleet.balancer, Auth::Dpop(&token, &proof)).await;
        assert_eq!(first.status, 200, "round {round}: {first:?}");
        accepted += 1;
        assert!(second.is_proof_refusal(), "round {round}: {second:?}");
        assert_ne!(first.replica, second.replica, "round {round}: round-robin sends the two to different replicas");
        answered_by.insert(second.replica.clone());
        if round % 2 == 0 {
            // One Bearer request in between, so the replay lands on the other replica next round.
            let bearer = fleet.token("auth0|bearer");
            assert_eq!(fleet.call(&fleet.balancer, Auth::Bearer(&bearer)).await.status, 200);
        }
    }
    assert_eq!(answered_by.len(), 2, "each replica refused a replay of a proof the other accepted: {answered_by:?}");
    // One replay entry per accepted proof, in Redis, under the key prefix.
    assert_eq!(fleet.replay_keys().await, accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_through_one_replica_are_enforced_by_both_within_a_second() {
    if !prerequisites() {
        return;
    }
    let _turn = SERIAL.lock().await;
    let fleet = Fleet::start(Options::default()).await;
    let now = claims::now();

    // By jti: a token both replicas have verified (and cached) is refused by both.
    let jti = unique_jti();
    let revoked = fleet.token_at("auth0|jti", now, &[("jti", json!(jti))]);
    let control = fleet.token("auth0|jti");
    fleet.both_accept(&revoked, "before revocation").await;
    fleet.both_accept(&control, "control").await;
    let since = fleet.revoke_shared(&fleet.a.admin, json!({ "jti": jti, "expires_at": now + 600 })).await;
    fleet.both_refuse(&revoked, since, "jti revoked through A").await;
    fleet.both_accept(&control, "another jti").await;
    for _ in 0..2 {
        let answer = fleet.call(&fleet.balancer, Auth::Bearer(&revoked)).await;
        assert!(answer.is_token_refusal(), "through nginx: {answer:?}");
    }

    // By token hash, for a token without jti, through B this time.
    let hashed = fleet.token_at("auth0|hash", now, &[]);
    let other = fleet.token_at("auth0|hash", now - 1, &[]);
    fleet.both_accept(&hashed, "before revocation").await;
    fleet.both_accept(&other, "control").await;
    let sha256 = TokenHash::of_token(&hashed).to_string();
    let since = fleet.revoke_shared(&fleet.b.admin, json!({ "token_sha256": sha256 })).await;
    fleet.both_refuse(&hashed, since, "token hash revoked through B").await;
    fleet.both_accept(&other, "another token of the same subject").await;

    // By subject with a "not before" time: tokens issued at or before it are refused by both (cached or not),
    // one issued later is accepted.
    let old = fleet.token_at("auth0|subject", now - 60, &[("jti", json!(unique_jti()))]);
    let old_unseen = fleet.token_at("auth0|subject", now - 45, &[("jti", json!(unique_jti()))]);
    let bystander = fleet.token_at("auth0|bystander", now - 60, &[("jti", json!(unique_jti()))]);
    fleet.both_accept(&old, "before revocation").await;
    let since = fleet.revoke_shared(&fleet.a.admin, json!({ "sub": "auth0|subject", "before": now - 30 })).await;
    fleet.both_refuse(&old, since, "subject revoked through A").await;
    fleet.both_refuse(&old_unseen, since, "an older token never seen").await;
    let newer = fleet.token_at("auth0|subject", now, &[("jti", json!(unique_jti()))]);
    fleet.both_accept(&newer, "a token issued after the not-before time").await;
    fleet.both_accept(&bystander, "another subject").await;

    // Every replica lists all three.
    for replica in [&fleet.a, &fleet.b] {
        let listed: Value = fleet
            .http
            .get(format!("http://{}/revocations", replica.admin))
            .bearer_auth(fleet.admin_token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let kinds: Vec<&str> =
            listed["revocations"].as_array().unwrap().iter().map(|entry| entry["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds.len(), 3, "{listed}");
        for kind in ["jti", "token_hash", "subject"] {
            assert!(kinds.contains(&kind), "{kind} missing at {}: {listed}", replica.admin);
        }
    }
    // A caller without the permission cannot revoke.
    let plain = fleet.token("ops|2");
    let refused = fleet
        .http
        .post(format!("http://{}/revocations", fleet.a.admin))
        .bearer_auth(&plain)
        .json(&json!({ "jti": "x" }))
        .send()
        .await
        .unwrap();
    assert!(matches!(refused.status().as_u16(), 401 | 403), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_made_while_a_replica_is_cut_off_reaches_it_when_it_reconnects() {
    if !prerequisites() {
        return;
    }
    let _turn = SERIAL.lock().await;
    let fleet = Fleet::start(Options { on_failure: "local_only", ..Options::default() }).await;
    let jti = unique_jti();
    let now = claims::now();
    let token = fleet.token_at("auth0|cut", now, &[("jti", json!(jti))]);
    fleet.both_accept(&token, "before the cut").await;
    let pid = fleet.b.process.id().unwrap();

    fleet.link.cut();
    fleet.until_metric(&fleet.b.admin, "portcullis_store_connected", 0.0, Duration::from_secs(10)).await;
    let (status, body) = fleet.ready(&fleet.b.admin).await;
    assert_eq!(status, 200, "local_only: B stays ready, degraded: {body}");
    assert!(body.contains("degraded"), "{body}");

    let since = fleet.revoke_shared(&fleet.a.admin, json!({ "jti": jti, "expires_at": now + 600 })).await;
    fleet.refused_within(&fleet.a.address, &token, since, PROPAGATION).await;
    // B cannot know yet: it keeps enforcing what it last had, and accepts the token.
    let answer = fleet.call(&fleet.b.address, Auth::Bearer(&token)).await;
    assert_eq!(answer.status, 200, "B, cut off: {answer:?}");

    fleet.link.restore();
    let reconnect = Duration::from_secs(15);
    let took = fleet.refused_within(&fleet.b.address, &token, Instant::now(), reconnect).await;
    eprintln!("B refused the token {took:?} after its link to Redis came back");
    fleet.until_metric(&fleet.b.admin, "portcullis_store_connected", 1.0, reconnect).await;
    let (status, body) = fleet.ready(&fleet.b.admin).await;
    assert_eq!((status, body.contains("degraded")), (200, false), "{body}");
    // Without a restart.
    assert_eq!(fleet.b.process.id(), Some(pid));
}

/// One request of the traffic a test keeps sending while it breaks Redis.
#[derive(Debug, Clone)]
struct Sample {
    dpop: bool,
    sent: Instant,
    answer: Answer,
}

/// Sends DPoP (fresh proofs) and Bearer requests through nginx, two DPoP to one Bearer (so that, with nginx
/// alternating, both kinds reach both replicas), until `stop`; every answer is recorded in `samples`.
fn keep_sending(fleet: &Fleet, stop: Arc<AtomicBool>, samples: Arc<Mutex<Vec<Sample>>>) -> tokio::task::JoinHandle<()> {
    let (http, balancer, htu) = (fleet.http.clone(), fleet.balancer.clone(), fleet.htu());
    let client = DpopClient::new();
    let bound = fleet.bound_token(&client, "auth0|traffic");
    let bearer = fleet.token("auth0|traffic");
    tokio::spawn(async move {
        let mut sent_so_far = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let dpop = sent_so_far % 3 != 2;
            sent_so_far += 1;
            let sent = Instant::now();
            let answer = if dpop {
                let proof = client.proof("GET", &htu, Some(&bound));
                call(&http, &balancer, Auth::Dpop(&bound, &proof)).await
            } else {
                call(&http, &balancer, Auth::Bearer(&bearer)).await
            };
            samples.lock().unwrap().push(Sample { dpop, sent, answer });
        }
    })
}

/// Waits until `samples` holds at least `count` samples matching `pick`; panics after `within`.
async fn until_samples(samples: &Mutex<Vec<Sample>>, count: usize, within: Duration, pick: impl Fn(&Sample) -> bool) {
    let started = Instant::now();
    loop {
        if samples.lock().unwrap().iter().filter(|sample| pick(sample)).count() >= count {
            return;
        }
        assert!(started.elapsed() < within, "fewer than {count} such requests within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the last 20 DPoP requests, all sent after `since`, were accepted (both replicas take DPoP requests
/// in turn, so both recovered); returns when the first of them was sent. Panics after `within`.
async fn until_recovered(samples: &Mutex<Vec<Sample>>, since: Instant, within: Duration) -> Instant {
    let started = Instant::now();
    loop {
        {
            let samples = samples.lock().unwrap();
            let dpop: Vec<&Sample> = samples.iter().filter(|s| s.dpop && s.sent > since).collect();
            if dpop.len() >= 20 && dpop[dpop.len() - 20..].iter().all(|s| s.answer.status == 200) {
                return dpop[dpop.len() - 20].sent;
            }
        }
        assert!(started.elapsed() < within, "DPoP requests did not recover within {within:?} of the restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_traffic_fail_closed_refuses_dpop_keeps_bearer_and_recovers() {
    if !prerequisites() {
        return;
    }
    let _turn = SERIAL.lock().await;
    let mut fleet = Fleet::start(Options::default()).await;
    let pids = (fleet.a.process.id(), fleet.b.process.id());
    let (stop, samples) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
    let traffic = keep_sending(&fleet, Arc::clone(&stop), Arc::clone(&samples));
    let within = Duration::from_secs(30);
    until_samples(&samples, 40, within, |_| true).await;

    let killing = Instant::now();
    fleet.redis.kill().await;
    let killed = Instant::now();
    until_samples(&samples, 40, within, |s| s.dpop && s.sent > killed).await;
    for replica in [&fleet.a, &fleet.b] {
        let (status, body) = fleet.ready(&replica.admin).await;
        assert_eq!(status, 503, "fail_closed with DPoP on: not ready while the store is down: {body}");
        assert!(body.contains("replay store unavailable"), "{body}");
    }

    let restarting = Instant::now();
    fleet.redis.restart().await;
    // Recovery: DPoP requests succeed again, on both replicas, without restarting them.
    let recovered = until_recovered(&samples, restarting, within).await;
    stop.store(true, Ordering::SeqCst);
    traffic.await.unwrap();

    let samples = samples.lock().unwrap().clone();
    let mut refused_during_outage = 0;
    for sample in &samples {
        let answer = &sample.answer;
        assert!(answer.took < REQUEST_BOUND, "a request took {:?}: {sample:?}", answer.took);
        if !sample.dpop {
            // Bearer needs no store: accepted throughout.
            assert_eq!(answer.status, 200, "Bearer: {sample:?}");
        } else if sample.sent + answer.took < killing || sample.sent >= recovered {
            assert_eq!(answer.status, 200, "DPoP with Redis up: {sample:?}");
        } else if sample.sent > killed && sample.sent < restarting {
            assert!(answer.is_store_unavailable(), "DPoP with Redis down, fail_closed: {sample:?}");
            assert!(answer.body.contains("store"), "{sample:?}");
            refused_during_outage += 1;
        } else {
            assert!(answer.status == 200 || answer.is_store_unavailable(), "DPoP during a change: {sample:?}");
        }
    }
    assert!(refused_during_outage >= 40, "{refused_during_outage}");
    let slowest = samples.iter().map(|s| s.answer.took).max().unwrap();
    eprintln!(
        "{} requests, {refused_during_outage} DPoP refused during the outage, slowest {slowest:?}",
        samples.len()
    );

    // Replays are refused across replicas again, and nothing was restarted.
    let client = DpopClient::new();
    let token = fleet.bound_token(&client, "auth0|after");
    let proof = client.proof("GET", &fleet.htu(), Some(&token));
    assert_eq!(fleet.call(&fleet.a.address, Auth::Dpop(&token, &proof)).await.status, 200);
    let replayed = fleet.call(&fleet.b.address, Auth::Dpop(&token, &proof)).await;
    assert!(replayed.is_proof_refusal(), "{replayed:?}");
    assert_eq!((fleet.a.process.id(), fleet.b.process.id()), pids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_traffic_local_only_keeps_accepting_dpop() {
    if !prerequisites() {
        return;
    }
    let _turn = SERIAL.lock().await;
    let mut fleet = Fleet::start(Options { on_failure: "local_only", ..Options::default() }).await;
    let (stop, samples) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
    let traffic = keep_sending(&fleet, Arc::clone(&stop), Arc::clone(&samples));
    let within = Duration::from_secs(30);
    until_samples(&samples, 20, within, |_| true).await;
    fleet.redis.kill().await;
    let killed = Instant::now();
    until_samples(&samples, 40, within, |s| s.dpop && s.sent > killed).await;
    for replica in [&fleet.a, &fleet.b] {
        let (status, body) = fleet.ready(&replica.admin).await;
        assert_eq!(status, 200, "local_only: ready, degraded: {body}");
        assert!(body.contains("degraded"), "{body}");
    }
    fleet.redis.restart().await;
    stop.store(true, Ordering::SeqCst);
    traffic.await.unwrap();
    let samples = samples.lock().unwrap().clone();
    for sample in &samples {
        assert_eq!(sample.answer.status, 200, "local_only: {sample:?}");
        assert!(sample.answer.took < REQUEST_BOUND, "{sample:?}");
    }
    // The replicas counted the proofs they decided alone.
    let mut fallbacks = 0.0;
    for replica in [&fleet.a, &fleet.b] {
        fallbacks += fleet.metric(&replica.admin, "portcullis_replay_fallbacks_total").await.unwrap_or(0.0);
    }
    assert!(fallbacks >= 40.0, "portcullis_replay_fallbacks_total: {fallbacks}");
    // A proof replayed to the replica that accepted it alone is still refused there.
    let client = DpopClient::new();
    let token = fleet.bound_token(&client, "auth0|local");
    let proof = client.proof("GET", &fleet.htu(), Some(&token));
    assert_eq!(fleet.call(&fleet.a.address, Auth::Dpop(&token, &proof)).await.status, 200);
    assert!(fleet.call(&fleet.a.address, Auth::Dpop(&token, &proof)).await.is_proof_refusal());
}

/// What a soak request sends, and so what its answer must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A Bearer token never revoked: 200.
    Bearer,
    /// A Bearer token revoked before the soak: 401 `invalid_token`.
    Revoked,
    /// A DPoP-bound token with a fresh proof: 200.
    FreshProof,
    /// A proof accepted before, sent again: 401 `invalid_dpop_proof`.
    Replayed,
    /// A token revoked during the soak: 200 until the revocation, 401 from a second after its 201 on.
    RevokedDuring,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_two_replicas_shared_redis() {
    if !prerequisites() {
        return;
    }
    let _turn = SERIAL.lock().await;
    let soak = Duration::from_secs(
        std::env::var("PORTCULLIS_SOAK_SECS").ok().and_then(|secs| secs.parse().ok()).unwrap_or(60),
    );
    let max_age = 5;
    // The soak checks answers, not the budget (the Redis-down tests do): a budget that a loaded CI machine's
    // scheduling cannot blow, so that every DPoP refusal would be a wrong answer.
    let options = Options { max_age_secs: max_age, timeout_ms: 1000, ..Options::default() };
    let fleet = Arc::new(Fleet::start(options).await);
    let ttl = Duration::from_secs(max_age + LEEWAY_SECS);
    let now = claims::now();
    let revoked_jti = unique_jti();
    let revoked = fleet.token_at("auth0|revoked", now, &[("jti", json!(revoked_jti))]);
    fleet.revoke_shared(&fleet.a.admin, json!({ "jti": revoked_jti, "expires_at": now + 600 })).await;

    /// A token revoked during the soak: its revocation was asked at `asked` and answered at `answered`.
    #[derive(Clone)]
    struct Dynamic {
        token: String,
        asked: Option<Instant>,
        answered: Option<Instant>,
    }
    let dynamic: Arc<Mutex<Vec<Dynamic>>> = Arc::new(Mutex::new(Vec::new()));
    let accepted: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
    let wrong: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let counts: Arc<Mutex<std::collections::BTreeMap<&'static str, u64>>> = Arc::default();
    let started = Instant::now();
    let end = started + soak;

    // The revoker: every two seconds a new token goes live, and the previous live one is revoked, through A and B
    // in turn.
    let revoker = {
        let (fleet, dynamic) = (Arc::clone(&fleet), Arc::clone(&dynamic));
        tokio::spawn(async move {
            let mut turn = 0;
            while Instant::now() < end {
                let token = fleet.token("auth0|during");
                let jti = claims::part(&token, 1)["jti"].as_str().unwrap().to_owned();
                let index = {
                    let mut list = dynamic.lock().unwrap();
                    list.push(Dynamic { token, asked: None, answered: None });
                    list.len() - 1
                };
                tokio::time::sleep(Duration::from_secs(2)).await;
                let admin = if turn % 2 == 0 { fleet.a.admin.clone() } else { fleet.b.admin.clone() };
                turn += 1;
                dynamic.lock().unwrap()[index].asked = Some(Instant::now());
                let answered = fleet.revoke_shared(&admin, json!({ "jti": jti, "expires_at": now + 3600 })).await;
                dynamic.lock().unwrap()[index].answered = Some(answered);
            }
        })
    };

    // The senders: clients, each with its own proof key, through nginx.
    const SENDERS: u64 = 4;
    let mut senders = Vec::new();
    for sender in 0..SENDERS {
        let (fleet, dynamic, accepted, wrong, counts) =
            (Arc::clone(&fleet), Arc::clone(&dynamic), Arc::clone(&accepted), Arc::clone(&wrong), Arc::clone(&counts));
        let revoked = revoked.clone();
        senders.push(tokio::spawn(async move {
            let client = DpopClient::new();
            let bound = fleet.bound_token(&client, &format!("auth0|sender-{sender}"));
            let bearer = fleet.token(&format!("auth0|sender-{sender}"));
            let htu = fleet.htu();
            let mut used: Vec<String> = Vec::new();
            let mut step = sender;
            while Instant::now() < end {
                step += 1;
                let kind = match step % 10 {
                    0 | 1 => Kind::Bearer,
                    2 => Kind::Revoked,
                    3..=6 => Kind::FreshProof,
                    7 if !used.is_empty() => Kind::Replayed,
                    8 | 9 => Kind::RevokedDuring,
                    _ => Kind::FreshProof,
                };
                let (answer, verdict) = match kind {
                    Kind::Bearer => {
                        let answer = fleet.call(&fleet.balancer, Auth::Bearer(&bearer)).await;
                        let ok = answer.status == 200;
                        (answer, ok)
                    }
                    Kind::Revoked => {
                        let answer = fleet.call(&fleet.balancer, Auth::Bearer(&revoked)).await;
                        let ok = answer.is_token_refusal();
                        (answer, ok)
                    }
                    Kind::FreshProof => {
                        let proof = client.proof("GET", &htu, Some(&bound));
                        let answer = fleet.call(&fleet.balancer, Auth::Dpop(&bound, &proof)).await;
                        let ok = answer.status == 200;
                        if ok {
                            accepted.lock().unwrap().push(Instant::now());
                            used.push(proof);
                            if used.len() > 16 {
                                used.remove(0);
                            }
                        }
                        (answer, ok)
                    }
                    Kind::Replayed => {
                        let proof = used[(step as usize) % used.len()].clone();
                        let answer = fleet.call(&fleet.balancer, Auth::Dpop(&bound, &proof)).await;
                        let ok = answer.is_proof_refusal();
                        (answer, ok)
                    }
                    Kind::RevokedDuring => {
                        let picked = {
                            let list = dynamic.lock().unwrap();
                            if list.is_empty() { None } else { Some((step as usize) % list.len()) }
                        };
                        let Some(index) = picked else { continue };
                        let token = dynamic.lock().unwrap()[index].token.clone();
                        let sent = Instant::now();
                        let answer = fleet.call(&fleet.balancer, Auth::Bearer(&token)).await;
                        let done = Instant::now();
                        // The revocation's state once the answer is in: `asked` is set before it is asked.
                        let entry = dynamic.lock().unwrap()[index].clone();
                        let ok = match (entry.asked, entry.answered) {
                            // Answered before the revocation was asked: (still) valid.
                            (None, _) => answer.status == 200,
                            (Some(asked), _) if done < asked => answer.status == 200,
                            // Sent a second after the revocation's 201: refused.
                            (_, Some(answered)) if sent > answered + PROPAGATION => answer.is_token_refusal(),
                            // In between, either.
                            _ => answer.status == 200 || answer.is_token_refusal(),
                        };
                        (answer, ok)
                    }
                };
                let name = match kind {
                    Kind::Bearer => "bearer",
                    Kind::Revoked => "revoked",
                    Kind::FreshProof => "fresh_proof",
                    Kind::Replayed => "replayed",
                    Kind::RevokedDuring => "revoked_during",
                };
                *counts.lock().unwrap().entry(name).or_default() += 1;
                if !verdict || answer.took >= REQUEST_BOUND {
                    wrong.lock().unwrap().push(format!("{kind:?}: {answer:?}"));
                }
            }
        }));
    }

    // The observer: Redis's key count each half second against the proofs accepted within one replay window, and
    // the replicas' resident sizes in the middle and at the end.
    let pids = [fleet.a.process.id().unwrap(), fleet.b.process.id().unwrap()];
    let mut middle: Option<[u64; 2]> = None;
    let mut largest_dbsize = 0;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let dbsize = fleet.redis.dbsize().await;
        let window = accepted.lock().unwrap().iter().filter(|at| at.elapsed() < ttl + Duration::from_secs(1)).count();
        // Replay keys live `ttl`; besides them Redis holds the revocations set, and each sender may have one
        // proof in flight whose key is written but whose answer has not been counted yet.
        let bound = (window as f64 * 1.1).ceil() as u64 + 1 + SENDERS;
        assert!(dbsize <= bound, "DBSIZE {dbsize} > {bound} ({window} proofs accepted within {ttl:?} + 1 s)");
        largest_dbsize = largest_dbsize.max(dbsize);
        if middle.is_none() && started.elapsed() >= soak / 2 {
            middle = Some(pids.map(rss_kib));
        }
    }
    for sender in senders {
        sender.await.unwrap();
    }
    revoker.await.unwrap();
    let last = pids.map(rss_kib);
    let middle = middle.unwrap();
    let counts = counts.lock().unwrap().clone();
    let total: u64 = counts.values().sum();
    eprintln!(
        "soak {soak:?}: {total} requests ({:.0}/s) {counts:?}; RSS KiB middle {middle:?} end {last:?}; \
         largest DBSIZE {largest_dbsize}",
        total as f64 / soak.as_secs_f64()
    );
    let wrong = wrong.lock().unwrap().clone();
    assert!(
        wrong.is_empty(),
        "{} wrong answers of {total}, the first: {:#?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    for kind in ["bearer", "revoked", "fresh_proof", "replayed", "revoked_during"] {
        assert!(counts.get(kind).copied().unwrap_or(0) > 0, "no {kind} requests: {counts:?}");
    }
    // Flat memory: the end within 20 % + 8 MiB of the middle (the first half warms caches and allocators).
    for (replica, (middle, last)) in ["A", "B"].iter().zip(middle.iter().zip(last.iter())) {
        let limit = middle + middle / 5 + 8 * 1024;
        assert!(*last <= limit, "replica {replica} grew from {middle} KiB to {last} KiB (limit {limit} KiB)");
    }
    // With the traffic stopped, the replay keys expire: only the revocations set remains.
    let started = Instant::now();
    while fleet.redis.dbsize().await > 1 {
        assert!(started.elapsed() < ttl + Duration::from_secs(10), "replay keys outlived their TTL");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The JWKS requests the dev issuer answered so far (its request journal).
async fn jwks_fetches(http: &reqwest::Client, issuer: &str) -> usize {
    let journal: Value = http.get(format!("{issuer}__admin/journal")).send().await.unwrap().json().await.unwrap();
    journal.as_array().unwrap().iter().filter(|entry| entry["path"] == "/.well-known/jwks.json").count()
}

/// Sends `token` as Bearer to each replica in turn, `rounds` times; every answer must be `status`.
async fn each_replica(http: &reqwest::Client, replicas: &[GatewayProcess], tokens: &[String], status: u16) {
    for (i, token) in tokens.iter().enumerate() {
        let replica = &replicas[i % replicas.len()];
        let answer = call(http, &replica.address, Auth::Bearer(token)).await;
        assert_eq!(answer.status, status, "{}: {answer:?}", replica.address);
    }
}

/// N replicas trusting the dev issuer (keys by discovery): how many JWKS fetches they make at start-up, in steady
/// state, and under a flood of tokens with unknown kids. The bound docs/scaling.md states: one fetch per replica
/// at start, none in steady state within the key set's lifetime, and at most one per replica per 30 s cooldown
/// for unknown kids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_fetches_of_a_fleet_stay_within_one_per_replica() {
    let _turn = SERIAL.lock().await;
    const REPLICAS: usize = 3;
    let tenant = portcullis_issuer::Tenant::from_toml(&format!(
        "[[apis]]\naudience = \"{AUDIENCE}\"\npermissions = []\n[[users]]\nid = \"alice\"\n"
    ))
    .unwrap();
    let issuer = portcullis_testkit::issuers::serve(tenant).await;
    let issuer_url = issuer.issuer().to_owned();
    let upstream = start_upstream().await;
    let http = reqwest::Client::new();
    let config = format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\nworkers = 1\n\n\
         [[issuers]]\nissuer = \"{issuer_url}\"\naudiences = [\"{AUDIENCE}\"]\n\n[[routes]]\npath = \"/api/*\"\n"
    );
    let mut replicas = Vec::new();
    for n in 0..REPLICAS {
        replicas.push(GatewayProcess::start(binary(), &format!("replica {n}"), &config).await);
    }
    let startup = jwks_fetches(&http, &issuer_url).await;

    let valid: Vec<String> = (0..60).map(|_| issuer.user_token("fleet", "alice", AUDIENCE, &[]).unwrap()).collect();
    let steady_started = Instant::now();
    each_replica(&http, &replicas, &valid, 200).await;
    let steady = jwks_fetches(&http, &issuer_url).await - startup;
    let steady_took = steady_started.elapsed();

    // Tokens signed by keys the issuer never published, each with its own kid.
    let now = claims::now();
    let unknown: Vec<String> = (0..150)
        .map(|n| {
            let key = keys::key(&format!("unknown-{n}"));
            key.sign_token(&claims::access(&issuer_url, AUDIENCE, now, now + 600), None).unwrap()
        })
        .collect();
    let flood_started = Instant::now();
    each_replica(&http, &replicas, &unknown, 401).await;
    let flood = jwks_fetches(&http, &issuer_url).await - startup - steady;
    let flood_took = flood_started.elapsed();
    eprintln!(
        "{REPLICAS} replicas: {startup} JWKS fetches at start-up, {steady} in steady state ({} requests, \
         {steady_took:?}), {flood} for {} unknown kids ({flood_took:?})",
        valid.len(),
        unknown.len()
    );
    assert_eq!(startup, REPLICAS, "one key set fetch per replica at start-up");
    assert_eq!(steady, 0, "no fetch while the key set is fresh");
    assert!(flood <= REPLICAS, "at most one unknown-kid refetch per replica per cooldown: {flood}");
}
