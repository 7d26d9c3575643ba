//! The gateway against a real upstream and the real dev issuer, all on loopback ports started by the test.
#![allow(clippy::unwrap_used)]

mod support;

use portcullis_gateway::{Config, Gateway};
use portcullis_issuer::{DEMO_AUDIENCE, DevIssuer};
use serde_json::{Value, json};
use support::{gateway, issuer, listen, upstream};

fn proxy_config(issuer: &DevIssuer, upstream: &str) -> String {
    format!(
        r#"
        upstream = "{upstream}"
        upstream_timeout_secs = 1
        [[issuers]]
        issuer = "{}"
        audiences = ["{DEMO_AUDIENCE}"]
        [[routes]]
        path = "/api/public"
        public = true
        [[routes]]
        path = "/api/private-scoped"
        require = {{ any = [{{ scope = "read:messages" }}, {{ permission = "read:messages" }}] }}
        [[routes]]
        path = "/api/forward"
        forward_authorization = true
        [[routes]]
        path = "/api/users/{{id}}"
        methods = ["GET"]
        [[routes]]
        path = "/api/*"
        [[routes]]
        path = "/slow"
        "#,
        issuer.issuer()
    )
}

#[tokio::test]
async fn reverse_proxy_verifies_before_the_upstream_and_passes_claims_as_headers() {
    let issuer = issuer().await;
    let upstream = upstream().await;
    let base = gateway(&proxy_config(&issuer, &upstream)).await;
    let http = reqwest::Client::new();
    let alice = issuer.user_token("demo-spa", "alice", DEMO_AUDIENCE, &["openid", "read:messages"]).unwrap();
    let bob = issuer.user_token("demo-spa", "bob", DEMO_AUDIENCE, &["openid"]).unwrap();

    // Public route: no token needed.
    assert_eq!(http.get(format!("{base}/api/public")).send().await.unwrap().status(), 200);

    // No token: 401 with the challenge; the upstream never sees the request.
    let response = http.get(format!("{base}/api/private")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer realm=\"api\"");

    // A valid token: the upstream sees the claim headers, not the token, and no spoofed headers.
    let response = http
        .get(format!("{base}/api/private?x=1"))
        .bearer_auth(&alice)
        .header("x-auth-subject", "auth0|mallory")
        .header("x-auth-permissions", "admin:everything")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["uri"], "/api/private?x=1");
    assert_eq!(seen["headers"]["x-auth-subject"], "auth0|alice");
    assert_eq!(seen["headers"]["x-auth-scope"], "openid read:messages");
    assert_eq!(seen["headers"]["x-auth-permissions"], "read:messages write:messages");
    assert!(seen["headers"].get("authorization").is_none(), "the token is stripped by default");
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http");
    assert!(seen["headers"]["x-forwarded-host"].as_str().unwrap().starts_with("127.0.0.1:"));

    // Hop-by-hop names in Connection cannot make a later hop drop the gateway's claim headers: the gateway
    // consumes Connection itself, and the headers it adds come after.
    let seen: Value = http
        .get(format!("{base}/api/private"))
        .bearer_auth(&alice)
        .header("connection", "x-auth-subject, x-auth-scope")
        .header("x-auth-scope", "admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["headers"]["x-auth-subject"], "auth0|alice");
    assert_eq!(seen["headers"]["x-auth-scope"], "openid read:messages");
    let connection = seen["headers"].get("connection").and_then(Value::as_str).unwrap_or_default();
    assert!(!connection.contains("x-auth"), "Connection reached the upstream: {connection}");

    // forward_authorization keeps it.
    let seen: Value =
        http.get(format!("{base}/api/forward")).bearer_auth(&alice).send().await.unwrap().json().await.unwrap();
    assert_eq!(seen["headers"]["authorization"], format!("Bearer {alice}"));

    // Rules: 403 with the scope attribute for bob; alice passes.
    let response = http.get(format!("{base}/api/private-scoped")).bearer_auth(&bob).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert!(response.headers()["www-authenticate"].to_str().unwrap().ends_with("scope=\"read:messages\""));
    assert_eq!(http.get(format!("{base}/api/private-scoped")).bearer_auth(&alice).send().await.unwrap().status(), 200);

    // Pattern routes match methods; unmatched requests are refused without reaching the upstream.
    assert_eq!(http.get(format!("{base}/api/users/42")).bearer_auth(&alice).send().await.unwrap().status(), 200);
    assert_eq!(http.get(format!("{base}/elsewhere")).bearer_auth(&alice).send().await.unwrap().status(), 404);

    // Token defects answer 401 with the reason.
    let other = issuer.client_credentials_token("demo-client", "https://billing.example.com").unwrap();
    let response = http.get(format!("{base}/api/private")).bearer_auth(&other).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["reason"], "audience_mismatch");
}

#[tokio::test]
async fn bodies_stream_both_ways() {
    let issuer = issuer().await;
    let upstream = upstream().await;
    let base = gateway(&proxy_config(&issuer, &upstream)).await;
    let token = issuer.client_credentials_token("demo-client", DEMO_AUDIENCE).unwrap();
    let body = vec![b'x'; 8 * 1024 * 1024];
    let seen: Value = reqwest::Client::new()
        .post(format!("{base}/api/upload"))
        .bearer_auth(&token)
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((seen["method"].as_str(), seen["body_len"].as_u64()), (Some("POST"), Some(8 * 1024 * 1024)));
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504_without_details() {
    let issuer = issuer().await;
    let token = issuer.client_credentials_token("demo-client", DEMO_AUDIENCE).unwrap();
    // Nothing listens on port 9 of the loopback address.
    let down = gateway(&proxy_config(&issuer, "http://127.0.0.1:9")).await;
    let response = reqwest::Client::new().get(format!("{down}/api/private")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": "bad_gateway", "reason": "upstream_unreachable", "message": "upstream unavailable"})
    );
    let slow = gateway(&proxy_config(&issuer, &upstream().await)).await;
    let response = reqwest::Client::new().get(format!("{slow}/slow")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 504);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": "gateway_timeout", "reason": "upstream_timeout", "message": "upstream timed out"})
    );
}

#[tokio::test]
async fn forward_auth_decides_about_the_original_request() {
    let issuer = issuer().await;
    let http = reqwest::Client::new();
    let alice = issuer.user_token("demo-spa", "alice", DEMO_AUDIENCE, &["openid"]).unwrap();
    let bob = issuer.user_token("demo-spa", "bob", DEMO_AUDIENCE, &["openid"]).unwrap();
    for front in ["nginx", "caddy", "traefik"] {
        let base = gateway(&format!(
            r#"
            forward_auth = "{front}"
            [[issuers]]
            issuer = "{}"
            audiences = ["{DEMO_AUDIENCE}"]
            [[routes]]
            path = "/api/public"
            public = true
            [[routes]]
            path = "/api/private-scoped"
            require = {{ permission = "read:messages" }}
            [[routes]]
            path = "/api/*"
            "#,
            issuer.issuer()
        ))
        .await;
        let ask = |uri: &'static str, token: Option<String>| {
            let mut request = http.get(format!("{base}/auth"));
            request = match front {
                "nginx" => request.header("x-original-method", "GET").header("x-original-uri", uri),
                _ => request
                    .header("x-forwarded-method", "GET")
                    .header("x-forwarded-uri", uri)
                    .header("x-forwarded-host", "app.example"),
            };
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            async move { request.send().await.unwrap() }
        };
        let allowed = ask("/api/private-scoped?page=2", Some(alice.clone())).await;
        assert_eq!(allowed.status(), 200, "{front}");
        assert_eq!(allowed.headers()["x-auth-subject"], "auth0|alice");
        assert_eq!(ask("/api/private-scoped", Some(bob.clone())).await.status(), 403, "{front}");
        assert_eq!(ask("/api/private", Some(bob.clone())).await.status(), 200, "{front}");
        let missing = ask("/api/private", None).await;
        assert_eq!(missing.status(), 401, "{front}");
        assert_eq!(missing.headers()["www-authenticate"], "Bearer realm=\"api\"");
        assert_eq!(ask("/api/public", None).await.status(), 200, "{front}");
    }
}

#[tokio::test]
async fn forward_auth_turns_a_keys_outage_into_a_401_nginx_can_pass() {
    let base = gateway(&format!(
        r#"
        forward_auth = "nginx"
        realm = "orders"
        [[issuers]]
        issuer = "http://127.0.0.1:9/"
        audiences = ["{DEMO_AUDIENCE}"]
        [[routes]]
        path = "/*"
        "#
    ))
    .await;
    let stranger = portcullis::signing::SigningKey::generate(portcullis::Algorithm::ES256, Some("k".into())).unwrap();
    let token = stranger
        .sign_token(&json!({"iss": "http://127.0.0.1:9/", "aud": DEMO_AUDIENCE, "exp": 4_000_000_000u64}), None)
        .unwrap();
    let response = reqwest::Client::new()
        .get(format!("{base}/auth"))
        .bearer_auth(token)
        .header("x-original-uri", "/x")
        .header("x-original-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.starts_with("Bearer realm=\"orders\"") && challenge.contains("keys unavailable"), "{challenge}");
}

#[tokio::test]
async fn ready_is_false_until_keys_load() {
    // The issuer cannot be reached: the gateway is alive but not ready.
    let config = format!(
        "upstream = \"http://127.0.0.1:9\"\n[[issuers]]\nissuer = \"http://127.0.0.1:9/\"\naudiences = [\"{DEMO_AUDIENCE}\"]\n"
    );
    let gateway = Gateway::new(Config::from_toml(&config).unwrap()).unwrap();
    let (main, _) = listen().await;
    let (admin, admin_address) = listen().await;
    tokio::spawn(portcullis_gateway::serve(gateway, main, Some(admin), std::future::pending()));
    let http = reqwest::Client::new();
    assert_eq!(http.get(format!("http://{admin_address}/healthz")).send().await.unwrap().status(), 200);
    let ready = http.get(format!("http://{admin_address}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.text().await.unwrap(), "keys not loaded yet");
}

#[test]
fn configuration_errors_are_explained() {
    let cases = [
        ("upstream = \"http://x\"", "at least one [[issuers]]"),
        ("[[issuers]]\nissuer = \"https://i/\"\naudiences = [\"a\"]", "proxy mode needs an upstream"),
        ("upstream = \"http://x\"\n[[issuers]]\nissuer = \"https://i/\"\naudiences = []", "at least one audience"),
        (
            "upstream = \"http://x\"\n[[issuers]]\nissuer = \"https://i/\"\naudiences = [\"a\"]\n[[routes]]\npath = \"api\"",
            "must start with '/'",
        ),
        ("upstream = \"http://x\"\nbogus = 1", "line 2, column 1: unknown field `bogus`"),
        (
            "upstream = \"http://x\"\n[[issuers]]\nissuer = \"https://i/\"\naudiences = [\"a\"]\n[[routes]]\npath = \"/b\"\naudiences = [\"b\"]",
            "line 7, column 14: routes[0].audiences[0]: \"b\" is not an audience of the route's issuers",
        ),
        (
            "upstream = \"http://x\"\n[[issuers]]\nissuer = \"https://i/\"\naudiences = [\"a\"]\n[[routes]]\npath = \"/b\"\nissuers = [\"https://j/\"]",
            "line 7, column 12: routes[0].issuers[0]: \"https://j/\" is not one of the [[issuers]]",
        ),
    ];
    for (toml, expected) in cases {
        let err = Config::from_toml(toml).unwrap_err().to_string();
        assert!(err.contains(expected), "{toml}: {err}");
    }
}

#[tokio::test]
async fn admin_listener_reports_health_readiness_and_metrics() {
    let issuer = issuer().await;
    let upstream = upstream().await;
    let config = format!(
        r#"
        upstream = "{upstream}"
        [[issuers]]
        issuer = "{}"
        audiences = ["{DEMO_AUDIENCE}"]
        [[routes]]
        path = "/metrics-test/*"
        "#,
        issuer.issuer()
    );
    let gateway = Gateway::new(Config::from_toml(&config).unwrap()).unwrap();
    let (main, address) = listen().await;
    let (admin, admin_address) = listen().await;
    tokio::spawn(portcullis_gateway::serve(gateway, main, Some(admin), std::future::pending()));
    let (base, admin) = (format!("http://{address}"), format!("http://{admin_address}"));
    let http = reqwest::Client::new();
    assert_eq!(http.get(format!("{admin}/healthz")).send().await.unwrap().status(), 200);
    let token = issuer.client_credentials_token("demo-client", DEMO_AUDIENCE).unwrap();
    for _ in 0..3 {
        assert_eq!(http.get(format!("{base}/metrics-test/a")).send().await.unwrap().status(), 401);
    }
    assert_eq!(http.get(format!("{base}/metrics-test/a")).bearer_auth(&token).send().await.unwrap().status(), 200);
    assert_eq!(http.get(format!("{admin}/ready")).send().await.unwrap().status(), 200, "keys are loaded by now");
    let metrics = http.get(format!("{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    let line = |needle: &str| metrics.lines().find(|l| l.starts_with(needle)).map(str::to_owned);
    let denied =
        line(r#"portcullis_gateway_requests_total{route="/metrics-test/*",outcome="denied",reason="token_missing"}"#);
    assert_eq!(denied.as_deref().and_then(|l| l.rsplit(' ').next()), Some("3"), "{metrics}");
    let allowed = line(r#"portcullis_gateway_requests_total{route="/metrics-test/*",outcome="allowed",reason="none"}"#);
    assert_eq!(allowed.as_deref().and_then(|l| l.rsplit(' ').next()), Some("1"), "{metrics}");
    assert!(metrics.contains("portcullis_jwks_fetches_total{"), "{metrics}");
    assert!(metrics.contains("portcullis_gateway_decision_seconds"), "{metrics}");
    assert!(metrics.contains("portcullis_token_cache_lookups_total{result=\"miss\"}"), "{metrics}");
    // The status page counts the same decisions, across every route.
    let status: serde_json::Value =
        http.get(format!("{admin}/status.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        status["requests"],
        serde_json::json!([
            {"outcome": "allowed", "reason": "none", "count": 1},
            {"outcome": "denied", "reason": "token_missing", "count": 3},
        ])
    );
    assert_eq!(status["issuers"][0]["key_set"]["state"], "fresh");
    // Found by discovery: the page names the JWKS URL the keys came from.
    assert_eq!(status["issuers"][0]["key_set"]["location"], format!("{}.well-known/jwks.json", issuer.issuer()));
    assert_eq!(http.get(format!("{admin}/debugger")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn admin_pages_can_be_switched_off() {
    let issuer = issuer().await;
    let config = format!(
        "admin_pages = false\nforward_auth = \"nginx\"\n[[issuers]]\nissuer = \"{}\"\naudiences = [\"{DEMO_AUDIENCE}\"]\n",
        issuer.issuer()
    );
    let gateway = Gateway::new(Config::from_toml(&config).unwrap()).unwrap();
    let (main, _) = listen().await;
    let (admin, admin_address) = listen().await;
    tokio::spawn(portcullis_gateway::serve(gateway, main, Some(admin), std::future::pending()));
    let http = reqwest::Client::new();
    for (path, status) in [("/healthz", 200), ("/debugger", 404), ("/status", 404), ("/status.json", 404)] {
        assert_eq!(http.get(format!("http://{admin_address}{path}")).send().await.unwrap().status(), status, "{path}");
    }
}

#[tokio::test]
async fn reload_replaces_the_policy_and_a_bad_config_keeps_the_running_one() {
    let issuer = issuer().await;
    let upstream = upstream().await;
    let config = |public: bool| {
        format!(
            "upstream = \"{upstream}\"\n[[issuers]]\nissuer = \"{}\"\naudiences = [\"{DEMO_AUDIENCE}\"]\n\
             jwks_uri = \"{}.well-known/jwks.json\"\n[[routes]]\npath = \"/api/*\"\npublic = {public}\n",
            issuer.issuer(),
            issuer.issuer()
        )
    };
    let gateway = Gateway::new(Config::from_toml(&config(false)).unwrap()).unwrap();
    let (listener, address) = listen().await;
    tokio::spawn(portcullis_gateway::serve(gateway.clone(), listener, None, std::future::pending()));
    let http = reqwest::Client::new();
    let base = format!("http://{address}");
    let token = issuer.client_credentials_token("demo-client", DEMO_AUDIENCE).unwrap();
    assert_eq!(http.get(format!("{base}/api/x")).bearer_auth(&token).send().await.unwrap().status(), 200);
    assert_eq!(http.get(format!("{base}/api/x")).send().await.unwrap().status(), 401);
    let fetches = issuer.requests_to("/.well-known/jwks.json");
    assert_eq!(fetches, 1);

    // A valid new config takes effect for the next request, keeping the loaded keys (no refetch).
    let reloaded = gateway.reload(Config::from_toml(&config(true)).unwrap()).unwrap();
    assert_eq!((reloaded.routes, reloaded.issuers, reloaded.new_key_sets), (1, 1, 0));
    assert_eq!(http.get(format!("{base}/api/x")).send().await.unwrap().status(), 200, "now public");
    assert!(gateway.is_ready(), "the kept key set is still loaded");
    assert_eq!(issuer.requests_to("/.well-known/jwks.json"), fetches);

    // Invalid configs and restart-only changes are refused with the reason; the running policy stays.
    let mut broken = Config::from_toml(&config(false)).unwrap();
    broken.routes[0].path = "api".into();
    assert!(
        gateway.reload(broken).unwrap_err().to_string().contains("routes[0].path: must start with '/', got \"api\"")
    );
    let mut moved = Config::from_toml(&config(false)).unwrap();
    moved.listen = "127.0.0.1:1".parse().unwrap();
    let why = gateway.reload(moved).unwrap_err().to_string();
    assert_eq!(why, "listen: changes only on restart; the running configuration is kept");
    let mut rethreaded = Config::from_toml(&config(false)).unwrap();
    rethreaded.workers = 7;
    let why = gateway.reload(rethreaded).unwrap_err().to_string();
    assert_eq!(why, "workers: changes only on restart; the running configuration is kept");
    let mut paged = Config::from_toml(&config(false)).unwrap();
    paged.admin_pages = false;
    let why = gateway.reload(paged).unwrap_err().to_string();
    assert_eq!(why, "admin_pages: changes only on restart; the running configuration is kept");
    assert_eq!(http.get(format!("{base}/api/x")).send().await.unwrap().status(), 200, "still the reloaded policy");
}

#[tokio::test]
async fn routes_restrict_issuers_and_audiences() {
    let main = issuer().await;
    let other = issuer().await;
    let upstream = upstream().await;
    let base = gateway(&format!(
        r#"
        upstream = "{upstream}"
        [[issuers]]
        issuer = "{main}"
        audiences = ["{DEMO_AUDIENCE}", "https://billing.example.com"]
        [[issuers]]
        issuer = "{other}"
        audiences = ["{DEMO_AUDIENCE}"]
        [[routes]]
        path = "/billing/*"
        audiences = ["https://billing.example.com"]
        [[routes]]
        path = "/internal/*"
        issuers = ["{main}"]
        [[routes]]
        path = "/*"
        "#,
        main = main.issuer(),
        other = other.issuer()
    ))
    .await;
    let http = reqwest::Client::new();
    let status_and_reason = |path: &'static str, token: String| {
        let request = http.get(format!("{base}{path}")).bearer_auth(token);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body["reason"].as_str().map(str::to_owned))
        }
    };
    let api = main.client_credentials_token("demo-client", DEMO_AUDIENCE).unwrap();
    let billing = main.client_credentials_token("demo-client", "https://billing.example.com").unwrap();
    let foreign = other.client_credentials_token("demo-client", DEMO_AUDIENCE).unwrap();

    assert_eq!(status_and_reason("/anything", api.clone()).await.0, 200);
    assert_eq!(status_and_reason("/anything", foreign.clone()).await.0, 200, "both issuers are trusted");
    assert_eq!(status_and_reason("/billing/invoices", billing).await.0, 200);
    assert_eq!(status_and_reason("/billing/invoices", api.clone()).await, (401, Some("audience_mismatch".into())));
    assert_eq!(status_and_reason("/internal/x", api).await.0, 200);
    assert_eq!(status_and_reason("/internal/x", foreign).await, (401, Some("issuer_mismatch".into())));
}

#[tokio::test]
async fn audiences_belong_to_their_issuer() {
    let a = issuer().await;
    let b = issuer().await;
    let upstream = upstream().await;
    let billing = "https://billing.example.com";
    let base = gateway(&format!(
        r#"
        upstream = "{upstream}"
        [[issuers]]
        issuer = "{a}"
        audiences = ["{billing}"]
        [[issuers]]
        issuer = "{b}"
        audiences = ["{DEMO_AUDIENCE}"]
        [[routes]]
        path = "/billing/*"
        audiences = ["{billing}"]
        [[routes]]
        path = "/*"
        "#,
        a = a.issuer(),
        b = b.issuer()
    ))
    .await;
    let http = reqwest::Client::new();
    let answer = |path: &'static str, token: String| {
        let request = http.get(format!("{base}{path}")).bearer_auth(token);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let challenge =
                response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body["reason"].as_str().map(str::to_owned), challenge)
        }
    };
    let a_billing = a.client_credentials_token("demo-client", billing).unwrap();
    let b_own = b.client_credentials_token("demo-client", DEMO_AUDIENCE).unwrap();
    // Issuer B will sign a token for any audience its clients ask for, including A's.
    let b_for_a = b.client_credentials_token("demo-client", billing).unwrap();

    assert_eq!(answer("/billing/invoices", a_billing.clone()).await.0, 200);
    assert_eq!(answer("/anything", a_billing).await.0, 200);
    assert_eq!(answer("/anything", b_own.clone()).await.0, 200);
    assert_eq!(answer("/billing/invoices", b_own).await.1.as_deref(), Some("audience_mismatch"));
    for path in ["/billing/invoices", "/anything"] {
        let (status, reason, challenge) = answer(path, b_for_a.clone()).await;
        assert_eq!((status, reason.as_deref()), (401, Some("audience_mismatch")), "{path}");
        assert!(
            challenge.contains(&format!("tokens from '{}' are accepted for '{DEMO_AUDIENCE}'", b.issuer())),
            "{challenge}"
        );
    }
}

#[tokio::test]
async fn request_ids_reach_the_upstream_and_the_client() {
    let issuer = issuer().await;
    let base = gateway(&proxy_config(&issuer, &upstream().await)).await;
    let http = reqwest::Client::new();
    let token = issuer.client_credentials_token("demo-client", DEMO_AUDIENCE).unwrap();
    let response = http.get(format!("{base}/api/x")).bearer_auth(&token).send().await.unwrap();
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["headers"]["x-request-id"], id.as_str());

    let response =
        http.get(format!("{base}/api/x")).bearer_auth(&token).header("x-request-id", "trace-42").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-42", "a sane client id is kept");
    let denied = http.get(format!("{base}/api/x")).header("x-request-id", "bad id!").send().await.unwrap();
    assert_eq!(denied.status(), 401);
    assert_eq!(denied.headers()["x-request-id"].len(), 32, "refusals carry an id too; junk is replaced");
}

/// A WebSocket upstream that echoes messages and answers its first message with the claim headers it saw.
#[allow(clippy::result_large_err)] // the handshake callback's error type is tungstenite's
async fn websocket_upstream() -> String {
    use futures_util::{SinkExt, StreamExt};
    let (listener, address) = listen().await;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = None;
                let callback = |request: &tokio_tungstenite::tungstenite::handshake::server::Request, response| {
                    let header =
                        |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                    seen = Some(json!({"subject": header("x-auth-subject"), "authorization": header("authorization")}));
                    Ok(response)
                };
                let mut socket = tokio_tungstenite::accept_hdr_async(stream, callback).await.unwrap();
                let seen = seen.unwrap().to_string();
                socket.send(seen.into()).await.unwrap();
                while let Some(Ok(message)) = socket.next().await {
                    if message.is_close() {
                        break;
                    }
                    socket.send(message).await.unwrap();
                }
            });
        }
    });
    format!("http://{address}")
}

#[tokio::test]
async fn websocket_upgrades_pass_through_after_verification() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::{Error as WsError, Message};
    let issuer = issuer().await;
    let base = gateway(&proxy_config(&issuer, &websocket_upstream().await)).await;
    let url = format!("{}/api/socket", base.replacen("http://", "ws://", 1));

    let refused = tokio_tungstenite::connect_async(url.as_str()).await.unwrap_err();
    match refused {
        WsError::Http(response) => assert_eq!(response.status(), 401),
        other => panic!("expected the gateway's 401, got {other}"),
    }

    let token = issuer.client_credentials_token("demo-client", DEMO_AUDIENCE).unwrap();
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request.headers_mut().insert("x-auth-subject", "spoofed".parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), 101);
    let first = socket.next().await.unwrap().unwrap();
    let seen: Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(seen, json!({"subject": "demo-client@clients", "authorization": null}));
    for text in ["hello", "through the gateway"] {
        socket.send(Message::text(text)).await.unwrap();
        assert_eq!(socket.next().await.unwrap().unwrap(), Message::text(text));
    }
    socket.close(None).await.unwrap();
}

#[tokio::test]
async fn routes_map_their_own_claim_headers_and_can_be_forward_auth_endpoints() {
    let issuer = issuer().await;
    let upstream = upstream().await;
    let base = gateway(&format!(
        r#"
        upstream = "{upstream}"
        [[issuers]]
        issuer = "{}"
        audiences = ["{DEMO_AUDIENCE}"]
        [[routes]]
        path = "/auth"
        forward_auth = "nginx"
        [[routes]]
        path = "/reports/*"
        claim_headers = {{ sub = "X-User", permissions = "X-Perms" }}
        [[routes]]
        path = "/api/*"
        "#,
        issuer.issuer()
    ))
    .await;
    let http = reqwest::Client::new();
    let alice = issuer.user_token("demo-spa", "alice", DEMO_AUDIENCE, &["openid"]).unwrap();

    // Its own mapping; client copies of every managed header (its own and the global ones) are removed.
    let seen: Value = http
        .get(format!("{base}/reports/q1"))
        .bearer_auth(&alice)
        .header("x-auth-subject", "spoofed")
        .header("x-user", "spoofed")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["headers"]["x-user"], "auth0|alice");
    assert_eq!(seen["headers"]["x-perms"], "read:messages write:messages");
    assert!(seen["headers"].get("x-auth-subject").is_none(), "{seen}");
    let seen: Value = http
        .get(format!("{base}/api/x"))
        .bearer_auth(&alice)
        .header("x-user", "spoofed")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["headers"]["x-auth-subject"], "auth0|alice");
    assert!(seen["headers"].get("x-user").is_none(), "{seen}");

    // /auth answers decisions about the original request instead of being proxied.
    let decide = |uri: &'static str, token: Option<&str>| {
        let mut request =
            http.get(format!("{base}/auth")).header("x-original-uri", uri).header("x-original-method", "GET");
        if let Some(token) = token {
            request = request.bearer_auth(token.to_owned());
        }
        async move { request.send().await.unwrap() }
    };
    let allowed = decide("/reports/q2", Some(&alice)).await;
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["x-user"], "auth0|alice");
    assert_eq!(allowed.text().await.unwrap(), "", "a decision, not the upstream's answer");
    assert_eq!(decide("/api/x", None).await.status(), 401);
    // The endpoint is never the resource; towards nginx a refusal without a route is a 403.
    let itself = decide("/auth", Some(&alice)).await;
    assert_eq!(itself.status(), 403);
    assert!(itself.text().await.unwrap().contains("no_route"));
}
