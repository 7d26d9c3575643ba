//! The debugger and status pages in process, as HTML: what they say about good, wrong and hostile input, and the
//! headers that keep a pasted token on this server. (The browser tests in portcullis-cli drive them in Chromium.)
#![allow(clippy::unwrap_used)]

use axum::body::Body;
use http::{Request, StatusCode, header};
use portcullis::dpop::{DpopVerifier, Htu, ProofExpectations};
use portcullis::signing::SigningKey;
use portcullis::{Algorithm, Error, KeySet, Report, Requirement, VerifiedToken, Verifier, VerifyingKey};
use portcullis_testkit::claims::{access, now, with};
use portcullis_testkit::keys;
use portcullis_web::{Inspect, IssuerView, KeySetView, RouteRule, Tally};
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

const ISSUER: &str = "https://tenant.example/";
const AUDIENCE: &str = "https://api.example";

struct Api {
    verifier: Verifier,
    keys: Arc<KeySet>,
    rule: Requirement,
    tally: Tally,
    dpop: Option<DpopVerifier>,
}

impl Inspect for Api {
    fn explain(&self, token: &str) -> Report {
        self.verifier.explain(token)
    }

    fn routes(&self) -> Vec<RouteRule> {
        vec![RouteRule::public("GET /health"), RouteRule::requiring("GET /messages", &self.rule)]
    }

    fn check_route(&self, route: usize, token: &VerifiedToken) -> Result<(), Error> {
        if route == 1 { self.rule.check(token) } else { Ok(()) }
    }

    fn issuers(&self) -> Vec<IssuerView> {
        vec![IssuerView::new(ISSUER, vec![AUDIENCE.into()], KeySetView::fixed("keys.json", Arc::clone(&self.keys)))]
    }

    fn tally(&self) -> &Tally {
        &self.tally
    }

    fn now(&self) -> portcullis::clock::UnixTime {
        self.verifier.now()
    }

    fn dpop(&self) -> Option<&DpopVerifier> {
        self.dpop.as_ref()
    }
}

fn setup() -> (Arc<Api>, SigningKey) {
    let signer = keys::key("key-2026");
    let keys = Arc::new(keys::key_set(&[&signer]));
    let verifier = Verifier::builder().issuer(ISSUER).audience(AUDIENCE).keys((*keys).clone()).build().unwrap();
    let api = Api {
        verifier,
        keys,
        rule: Requirement::scope("read:messages"),
        tally: Tally::default(),
        dpop: Some(DpopVerifier::builder().build().unwrap()),
    };
    (Arc::new(api), signer)
}

fn token(signer: &SigningKey, audience: &str, scope: &str) -> String {
    let claims = with(access(ISSUER, audience, now(), now() + 600), "scope", json!(scope));
    signer.sign_token(&claims, None).unwrap()
}

async fn send(api: &Arc<Api>, request: Request<Body>) -> (StatusCode, http::HeaderMap, String) {
    let response = portcullis_web::pages(Arc::clone(api) as Arc<dyn Inspect>).oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    (parts.status, parts.headers, String::from_utf8(body.to_vec()).unwrap())
}

async fn check(api: &Arc<Api>, token: &str, route: &str) -> String {
    check_with_proof(api, token, route, &[]).await
}

/// Submits the form with the token, the route and `extra` fields (the DPoP proof, method and URL).
async fn check_with_proof(api: &Arc<Api>, token: &str, route: &str, extra: &[(&str, &str)]) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("token", token).append_pair("route", route);
    for (name, value) in extra {
        form.append_pair(name, value);
    }
    let form = form.finish();
    let request = Request::post("/debugger")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap();
    let (status, _, body) = send(api, request).await;
    assert_eq!(status, StatusCode::OK);
    body
}

/// The rows of the checks table as (check, class).
fn rows(html: &str) -> Vec<(String, String)> {
    html.split("<tr data-check=\"")
        .skip(1)
        .map(|rest| {
            let (check, rest) = rest.split_once('"').unwrap();
            let class = rest.split("class=\"").nth(1).unwrap().split('"').next().unwrap();
            (check.to_owned(), class.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn a_valid_token_passes_every_check_and_the_route_rule_decides() {
    let (api, signer) = setup();
    let good = token(&signer, AUDIENCE, "openid read:messages");
    let html = check(&api, &format!("Bearer {good}\n"), "1").await;
    assert!(html.contains("Allowed: this server lets the request through."), "{html}");
    let rows = rows(&html);
    assert_eq!(rows.len(), 12, "{rows:?}");
    assert!(rows.iter().all(|(_, class)| class == "pass"), "{rows:?}");
    assert_eq!(rows.last().unwrap().0, "route GET /messages");
    assert!(html.contains("<tr data-claim=\"exp\">"), "{html}");
    assert!(html.contains("expires in 600 s") || html.contains("expires in 599 s"), "{html}");

    // The same token without the scope: refused by the route, 403, with what the token does grant.
    let unscoped = token(&signer, AUDIENCE, "openid");
    let html = check(&api, &unscoped, "1").await;
    assert!(html.contains("Refused: <strong>insufficient_scope</strong> (HTTP 403)"), "{html}");
    assert!(html.contains("the token grants scope openid and permissions (none)"), "{html}");
    // On the public route any token, even a broken one, is let through.
    let html = check(&api, "not-a-token", "0").await;
    assert!(html.contains("Allowed: this server lets the request through."), "{html}");
}

#[tokio::test]
async fn wrong_audience_opaque_and_encrypted_tokens_get_their_hints() {
    let (api, signer) = setup();
    let html = check(&api, &token(&signer, "https://other.example", "openid"), "").await;
    assert!(html.contains("Refused: <strong>audience_mismatch</strong> (HTTP 401)"), "{html}");
    assert!(html.contains("<strong>Hint:</strong> request the token with audience=https://api.example"), "{html}");
    assert!(rows(&html).contains(&("audience".to_owned(), "fail".to_owned())));
    assert!(rows(&html).contains(&("signature".to_owned(), "pass".to_owned())));

    let id_token = signer
        .sign_token(
            &json!({"iss": ISSUER, "sub": "auth0|alice", "aud": "client-123", "exp": now() + 60, "nonce": "n"}),
            None,
        )
        .unwrap();
    let html = check(&api, &id_token, "").await;
    assert!(html.contains("this looks like an ID token"), "{html}");

    let html = check(&api, "8Hq3ZtQoVn0Z2x", "").await;
    assert!(html.contains("an opaque access token"), "{html}");
    let html = check(&api, "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..iv.ciphertext.tag", "").await;
    assert!(html.contains("this is an encrypted token (JWE)"), "{html}");
    let html = check(&api, "   ", "").await;
    assert!(html.contains("Paste a token first."), "{html}");
}

#[tokio::test]
async fn hostile_input_is_shown_as_text_and_the_page_allows_no_other_origin() {
    let (api, signer) = setup();
    // Markup in the token (reflected into the form) and in a claim (shown decoded) stays text.
    let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "exp": now() + 60, "sub": "</pre><script>alert(1)</script>"});
    let hostile = signer.sign_token(&claims, None).unwrap();
    let html = check(&api, &format!("{hostile}\"></textarea><img src=x onerror=alert(2)>"), "").await;
    assert!(!html.contains("<script>alert(1)") && !html.contains("<img src=x"), "{html}");
    assert!(html.contains("&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("&quot;&gt;&lt;/textarea&gt;&lt;img src=x onerror=alert(2)&gt;"));

    let (status, headers, html) = send(&api, Request::get("/debugger").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert_eq!(
        policy,
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    );
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    assert!(!html.contains("<script"), "the debugger runs no script");
    assert!(html.contains("<label for=\"token\">") && html.contains("<label for=\"route\">"));

    // A form far beyond any token is refused before it is read.
    let huge = format!("token={}", "a".repeat(100 * 1024));
    let request = Request::post("/debugger")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(huge))
        .unwrap();
    assert_eq!(send(&api, request).await.0, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn the_status_page_lists_the_keys_and_the_counts() {
    let (api, _) = setup();
    api.tally.allowed();
    api.tally.denied("token_expired");
    let (status, headers, html) = send(&api, Request::get("/status").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().starts_with("default-src 'none'"));
    assert!(
        html.contains("<tr data-kid=\"key-2026\"><td><code>key-2026</code></td><td>ES256</td><td>EC P-256</td>"),
        "{html}"
    );
    assert!(html.contains("data-state=\"fixed\""), "{html}");
    assert!(html.contains(
        "<tr data-outcome=\"denied\" data-reason=\"token_expired\"><td>denied</td><td>token_expired</td><td>1</td></tr>"
    ));

    let (_, headers, json) = send(&api, Request::get("/status.json").body(Body::empty()).unwrap()).await;
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["issuers"][0]["key_set"]["keys"][0]["kid"], "key-2026");
    assert_eq!(
        json["requests"],
        json!([
            {"outcome": "allowed", "reason": "none", "count": 1},
            {"outcome": "denied", "reason": "token_expired", "count": 1},
        ])
    );
    let (status, headers, css) = send(&api, Request::get("/portcullis.css").body(Body::empty()).unwrap()).await;
    assert_eq!((status, headers[header::CONTENT_TYPE].to_str().unwrap()), (StatusCode::OK, "text/css; charset=utf-8"));
    assert!(css.contains(":focus-visible"));
}

#[tokio::test]
async fn the_debugger_measures_times_on_the_verifiers_clock() {
    // A clock far from the system's: the times shown must come from it, as the verdicts do.
    const THEN: u64 = 1_000_000_000;
    let signer = SigningKey::generate(Algorithm::ES256, Some("key-2026".into())).unwrap();
    let public = VerifyingKey::from_jwk(signer.public_jwk().as_object().unwrap()).unwrap();
    let keys = Arc::new(KeySet::from_keys([public]));
    let verifier = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .keys((*keys).clone())
        .clock(Arc::new(portcullis::clock::ManualClock::at_unix(THEN)))
        .build()
        .unwrap();
    let api = Arc::new(Api {
        verifier,
        keys,
        rule: Requirement::scope("read:messages"),
        tally: Tally::default(),
        dpop: None,
    });
    let claims = json!({"iss": ISSUER, "sub": "auth0|alice", "aud": AUDIENCE, "iat": THEN - 5, "exp": THEN + 120});
    let html = check(&api, &signer.sign_token(&claims, None).unwrap(), "").await;
    assert!(html.contains("Valid: every check passed."), "{html}");
    assert!(html.contains("expires in 120 s (difference +120 s)"), "{html}");
    assert!(html.contains("issued 5 s ago"), "{html}");
    assert!(html.contains("This server's clock: 2001-09-09T01:46:40Z."), "{html}");
}

/// A DPoP client's key: its public JWK (key members only) and the proofs it signs.
struct Client {
    key: SigningKey,
    jwk: serde_json::Map<String, Value>,
}

impl Client {
    fn new() -> Self {
        let key = SigningKey::generate(Algorithm::ES256, None).unwrap();
        let mut jwk = key.public_jwk().as_object().cloned().unwrap();
        jwk.retain(|name, _| ["kty", "crv", "x", "y"].contains(&name.as_str()));
        Self { key, jwk }
    }

    fn thumbprint(&self) -> String {
        portcullis::dpop::thumbprint(&self.jwk).unwrap()
    }

    fn proof(&self, method: &str, url: &str, token: &str, jti: &str) -> String {
        let claims = json!({"jti": jti, "htm": method, "htu": url, "iat": now(),
                            "ath": portcullis::dpop::access_token_hash(token)});
        let header = serde_json::Map::from_iter([
            ("typ".to_owned(), json!("dpop+jwt")),
            ("jwk".to_owned(), Value::Object(self.jwk.clone())),
        ]);
        self.key.sign_token(&claims, Some(&header)).unwrap()
    }
}

fn bound_token(signer: &SigningKey, jkt: &str) -> String {
    let claims = with(access(ISSUER, AUDIENCE, now(), now() + 600), "cnf", json!({ "jkt": jkt }));
    signer.sign_token(&claims, None).unwrap()
}

const URL: &str = "https://api.example/messages";

#[tokio::test]
async fn a_dpop_bound_token_shows_its_key_and_every_proof_check() {
    let (api, signer) = setup();
    let client = Client::new();
    let token = bound_token(&signer, &client.thumbprint());
    let proof = client.proof("GET", URL, &token, "jti-1");
    let form = [("proof", proof.as_str()), ("method", "GET"), ("url", URL)];

    // The token alone: valid, and shown as bound to the client's key.
    let html = check(&api, &token, "").await;
    assert!(html.contains("Valid: every check passed."), "{html}");
    assert!(html.contains(&format!("is the key thumbprint <code>{}</code>", client.thumbprint())), "{html}");

    // With its proof (the header value pasted as `DPoP <token>`): every proof check passes, twice — the debugger
    // records nothing, so the proof can still be used once.
    for _ in 0..2 {
        let html = check_with_proof(&api, &format!("DPoP {token}"), "", &form).await;
        assert!(html.contains("Valid: every check passed."), "{html}");
        let rows = rows(&html);
        for label in
            ["proof structure", "proof signature", "htm", "htu", "proof iat", "ath", "cnf.jkt binding", "jti replay"]
        {
            assert!(rows.contains(&(label.to_owned(), "pass".to_owned())), "{label}: {rows:?}");
        }
        assert!(html.contains("matches https://api.example/messages"), "{html}");
    }
    // Used once for real, the same proof is shown as a replay.
    let verifier = api.dpop.as_ref().unwrap();
    let htu = Htu::parse(URL).unwrap();
    let jkt = client.thumbprint();
    let expected = ProofExpectations { method: "GET", htu: &htu, access_token: Some(&token), jkt: Some(&jkt) };
    verifier.check_proof(&proof, &expected).unwrap();
    let html = check_with_proof(&api, &token, "", &form).await;
    assert!(rows(&html).contains(&("jti replay".to_owned(), "fail".to_owned())), "{html}");
    assert!(html.contains("Refused: <strong>dpop_proof_invalid</strong> (HTTP 401)"), "{html}");
}

#[tokio::test]
async fn each_proof_defect_is_named() {
    let (api, signer) = setup();
    let client = Client::new();
    let token = bound_token(&signer, &client.thumbprint());
    let refused = |html: &str, label: &str, reason: &str| {
        assert!(rows(html).contains(&(label.to_owned(), "fail".to_owned())), "{label}: {html}");
        assert!(html.contains(&format!("Refused: <strong>{reason}</strong> (HTTP 401)")), "{reason}: {html}");
    };
    // Another URL, another method, another token's hash.
    let proof = client.proof("GET", "https://api.example/other", &token, "a");
    let html = check_with_proof(&api, &token, "", &[("proof", &proof), ("method", "GET"), ("url", URL)]).await;
    refused(&html, "htu", "dpop_proof_invalid");
    let proof = client.proof("POST", URL, &token, "b");
    let html = check_with_proof(&api, &token, "", &[("proof", &proof), ("method", "GET"), ("url", URL)]).await;
    refused(&html, "htm", "dpop_proof_invalid");
    let other = bound_token(&signer, &client.thumbprint());
    let proof = client.proof("GET", URL, &other, "c");
    let html = check_with_proof(&api, &token, "", &[("proof", &proof), ("method", "GET"), ("url", URL)]).await;
    refused(&html, "ath", "dpop_proof_invalid");
    // A proof by another key, and a proof with a token that is not bound at all.
    let stranger = Client::new();
    let proof = stranger.proof("GET", URL, &token, "d");
    let html = check_with_proof(&api, &token, "", &[("proof", &proof), ("method", "GET"), ("url", URL)]).await;
    refused(&html, "cnf.jkt binding", "token_binding_invalid");
    let unbound = token_for(&signer);
    let proof = client.proof("GET", URL, &unbound, "e");
    let html = check_with_proof(&api, &unbound, "", &[("proof", &proof), ("method", "GET"), ("url", URL)]).await;
    refused(&html, "cnf.jkt binding", "token_binding_invalid");
    assert!(!html.contains("id=\"dpop-binding\""), "an unbound token is not shown as bound: {html}");
    // Not a proof at all, and a URL that is not one.
    let html = check_with_proof(&api, &token, "", &[("proof", "not-a-proof"), ("url", URL)]).await;
    refused(&html, "proof structure", "dpop_proof_invalid");
    let proof = client.proof("GET", URL, &token, "f");
    let html = check_with_proof(&api, &token, "", &[("proof", &proof), ("url", "ftp://x/<b>")]).await;
    assert!(rows(&html).contains(&("request URL".to_owned(), "fail".to_owned())), "{html}");
    assert!(!html.contains("<b>"), "{html}");
}

fn token_for(signer: &SigningKey) -> String {
    token(signer, AUDIENCE, "openid")
}

#[tokio::test]
async fn a_server_without_dpop_offers_no_proof_field_and_says_so() {
    let signer = keys::key("key-2026");
    let keys = Arc::new(keys::key_set(&[&signer]));
    let verifier = Verifier::builder().issuer(ISSUER).audience(AUDIENCE).keys((*keys).clone()).build().unwrap();
    let api = Arc::new(Api {
        verifier,
        keys,
        rule: Requirement::scope("read:messages"),
        tally: Tally::default(),
        dpop: None,
    });
    let (_, _, html) = send(&api, Request::get("/debugger").body(Body::empty()).unwrap()).await;
    assert!(!html.contains("name=\"proof\""), "{html}");
    let client = Client::new();
    let token = bound_token(&signer, &client.thumbprint());
    let proof = client.proof("GET", URL, &token, "g");
    let html = check_with_proof(&api, &token, "", &[("proof", &proof), ("url", URL)]).await;
    assert!(rows(&html).contains(&("DPoP".to_owned(), "fail".to_owned())), "{html}");
    assert!(html.contains("this server does not accept DPoP-bound tokens"), "{html}");
}

#[tokio::test]
async fn the_debugger_answers_json_when_asked() {
    let (api, signer) = setup();
    let client = Client::new();
    let token = bound_token(&signer, &client.thumbprint());
    let ask = |fields: Vec<(&str, String)>| {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in &fields {
            form.append_pair(name, value);
        }
        Request::post("/debugger")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "text/html;q=0.5, application/json")
            .body(Body::from(form.finish()))
            .unwrap()
    };
    let proof = client.proof("GET", URL, &token, "json-1");
    let fields = vec![("token", token.clone()), ("proof", proof), ("method", "GET".into()), ("url", URL.into())];
    let (status, headers, body) = send(&api, ask(fields)).await;
    assert_eq!((status, headers[header::CONTENT_TYPE].to_str().unwrap()), (StatusCode::OK, "application/json"));
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["verdict"], "valid", "{json}");
    assert_eq!(json["dpop_bound_to"], client.thumbprint());
    let checks = json["checks"].as_array().unwrap();
    assert!(checks.iter().any(|c| c["check"] == "cnf.jkt binding" && c["passed"] == true), "{json}");
    assert!(checks.iter().all(|c| c["passed"] == true), "{json}");

    // A proof for another URL, with the route: refused, with the reason, status and message.
    let proof = client.proof("GET", "https://api.example/other", &token, "json-2");
    let fields = vec![
        ("token", token.clone()),
        ("route", "1".into()),
        ("proof", proof),
        ("method", "GET".into()),
        ("url", URL.into()),
    ];
    let json: Value = serde_json::from_str(&send(&api, ask(fields)).await.2).unwrap();
    assert_eq!(
        (&json["verdict"], &json["reason"], &json["status"]),
        (&json!("refused"), &json!("dpop_proof_invalid"), &json!(401)),
        "{json}"
    );
    assert!(json["checks"].as_array().unwrap().iter().any(|c| c["check"] == "htu" && c["passed"] == false));
    // No token: said so, as JSON.
    let json: Value = serde_json::from_str(&send(&api, ask(vec![("token", " ".into())])).await.2).unwrap();
    assert_eq!(json["verdict"], "no_token");
}
