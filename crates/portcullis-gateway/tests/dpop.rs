//! DPoP (RFC 9449) through every edge of one gateway: the reverse proxy (with a real upstream), forward-auth for
//! nginx and Caddy, and the gRPC ext_authz service (a tonic client, as Envoy calls it). Proofs are made here from
//! the RFC's text: header `typ` `dpop+jwt` with the public `jwk`, claims `jti htm htu iat ath [nonce]`, and tokens
//! carry the key's RFC 7638 thumbprint in `cnf.jkt`, computed here too. Each refusal is checked with its status,
//! reason and challenge; a proof used at one edge is a replay at the others.
#![allow(clippy::unwrap_used)]

#[allow(unused_imports)]
mod support;

use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use portcullis::__internals::base64url;
use portcullis::Algorithm;
use portcullis::signing::SigningKey;
use portcullis_gateway::{Config, Gateway};
use serde_json::{Value, json};
use support::{listen, upstream};
use tonic::transport::Channel;

const ISSUER: &str = "https://issuer.test/";
const AUDIENCE: &str = "https://api.test";
const PUBLIC: &str = "https://api.example.test";

/// The issuer's key, published in a local JWKS file (its directory kept alive).
struct Issuer {
    key: SigningKey,
    dir: tempfile::TempDir,
}

impl Issuer {
    fn new() -> Self {
        let key = portcullis_testkit::keys::key("k1");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("jwks.json"), portcullis_testkit::keys::jwks(&[&key])).unwrap();
        Self { key, dir }
    }

    /// The `[[issuers]]` table trusting this key, with `extra` lines.
    fn table(&self, extra: &str) -> String {
        let jwks = format!("file://{}", self.dir.path().join("jwks.json").display());
        format!("[[issuers]]\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\njwks_uri = \"{jwks}\"\n{extra}\n")
    }

    /// An access token with `scope`, bound to `jkt` when given.
    fn token(&self, scope: &str, jkt: Option<&str>) -> String {
        let now = portcullis_testkit::claims::now();
        let mut claims =
            json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "scope": scope, "iat": now, "exp": now + 600});
        if let Some(jkt) = jkt {
            claims["cnf"] = json!({ "jkt": jkt });
        }
        self.key.sign_token(&claims, None).unwrap()
    }

    /// A token with exactly `claims` and `header` members added to the key's header.
    fn token_with(&self, claims: &Value, header: Value) -> String {
        self.key.sign_token(claims, header.as_object()).unwrap()
    }
}

/// A DPoP client: its key pair and the key's thumbprint.
struct Client {
    key: SigningKey,
    jwk: Value,
    jkt: String,
}

/// RFC 7638: SHA-256 over the required members, lexicographic order, no whitespace.
fn thumbprint(jwk: &Value) -> String {
    let canonical = match jwk["kty"].as_str().unwrap() {
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["crv"].as_str().unwrap(),
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        ),
        "OKP" => {
            format!(r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#, jwk["crv"].as_str().unwrap(), jwk["x"].as_str().unwrap())
        }
        other => panic!("no thumbprint here for {other}"),
    };
    sha256(canonical.as_bytes())
}

fn sha256(bytes: &[u8]) -> String {
    base64url::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

fn fresh_id() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    base64url::encode(bytes)
}

impl Client {
    fn new(alg: Algorithm) -> Self {
        let key = SigningKey::generate(alg, None).unwrap();
        let mut jwk = key.public_jwk();
        let object = jwk.as_object_mut().unwrap();
        object.remove("use");
        object.remove("alg");
        let jkt = thumbprint(&jwk);
        Self { key, jwk, jkt }
    }

    /// The claims of a fresh proof for `method` and `htu`, bound to `token`.
    fn claims(method: &str, htu: &str, token: &str) -> Value {
        json!({
            "jti": fresh_id(), "htm": method, "htu": htu, "iat": portcullis_testkit::claims::now(), "ath": sha256(token.as_bytes()),
        })
    }

    /// A proof of exactly `claims`, with this key's `jwk` in a `dpop+jwt` header.
    fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(claims, json!({"typ": "dpop+jwt", "alg": self.key.algorithm().name(), "jwk": self.jwk}))
    }

    fn sign_with_header(&self, claims: &Value, header: Value) -> String {
        self.key.sign_parts(header.to_string().as_bytes(), claims.to_string().as_bytes()).unwrap()
    }

    /// A fresh, valid proof for `method` on the public URL's `path`, bound to `token`.
    fn proof(&self, method: &str, path: &str, token: &str) -> String {
        self.sign(&Self::claims(method, &format!("{PUBLIC}{path}"), token))
    }
}

/// One gateway serving the reverse proxy (to an echoing upstream) and the gRPC ext_authz service; its routes hold
/// forward-auth endpoints for nginx and Caddy. `dpop` and `issuer_extra` go into `[dpop]` and the issuer.
struct Edges {
    gateway: Gateway,
    base: String,
    grpc: AuthorizationClient<Channel>,
    http: reqwest::Client,
}

fn config(issuer: &Issuer, upstream: &str, dpop: &str, issuer_extra: &str) -> String {
    format!(
        r#"public_url = "{PUBLIC}"
upstream = "{upstream}"
[dpop]
{dpop}
{}
[[routes]]
path = "/auth/nginx"
forward_auth = "nginx"
[[routes]]
path = "/auth/caddy"
forward_auth = "caddy"
[[routes]]
path = "/api/forwarded/*"
forward_authorization = true
[[routes]]
path = "/api/required/*"
dpop = "required"
[[routes]]
path = "/api/off/*"
dpop = "off"
[[routes]]
path = "/api/allowed/*"
dpop = "allowed"
[[routes]]
path = "/api/scoped/*"
require = {{ scope = "admin" }}
[[routes]]
path = "/api/*"
"#,
        issuer.table(issuer_extra)
    )
}

impl Edges {
    async fn start(config: &str) -> Self {
        let gateway = Gateway::new(Config::from_toml(config).unwrap()).unwrap();
        let (listener, address) = listen().await;
        tokio::spawn(portcullis_gateway::serve(gateway.clone(), listener, None, std::future::pending()));
        let (grpc_listener, grpc_address) = listen().await;
        tokio::spawn(portcullis_gateway::serve_ext_authz(gateway.clone(), grpc_listener, std::future::pending()));
        let grpc = AuthorizationClient::connect(format!("http://{grpc_address}")).await.unwrap();
        Self { gateway, base: format!("http://{address}"), grpc, http: reqwest::Client::new() }
    }

    /// A request through the reverse proxy.
    async fn proxy(&self, method: reqwest::Method, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Answer::from(request.send().await.unwrap()).await
    }

    /// A check through the nginx forward-auth endpoint about `method` `uri`.
    async fn nginx(&self, method: &str, uri: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = self
            .http
            .get(format!("{}/auth/nginx", self.base))
            .header("x-original-method", method)
            .header("x-original-uri", uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Answer::from(request.send().await.unwrap()).await
    }

    /// A check through the Caddy forward-auth endpoint about `method` `uri`.
    async fn caddy(&self, method: &str, uri: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = self
            .http
            .get(format!("{}/auth/caddy", self.base))
            .header("x-forwarded-method", method)
            .header("x-forwarded-uri", uri)
            .header("x-forwarded-host", "api.example.test")
            .header("x-forwarded-proto", "https");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Answer::from(request.send().await.unwrap()).await
    }

    /// A gRPC check as Envoy sends it, about `method` `path` (query included).
    async fn check(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) -> (CheckResponse, Answer) {
        let mut map: std::collections::HashMap<String, String> =
            headers.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
        map.insert(":method".into(), method.into());
        map.insert(":path".into(), path.into());
        map.insert(":authority".into(), "api.example.test".into());
        let http = HttpRequest {
            id: "envoy-1".into(),
            method: method.into(),
            path: path.into(),
            host: "api.example.test".into(),
            scheme: "https".into(),
            headers: map,
            size: -1,
            protocol: "HTTP/1.1".into(),
            ..Default::default()
        };
        let request = CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(Request { http: Some(http), ..Default::default() }),
                ..Default::default()
            }),
        };
        let response = self.grpc.check(request).await.unwrap().into_inner();
        let answer = Answer::from_check(&response);
        (response, answer)
    }
}

/// What a client gets: status, every `WWW-Authenticate` line, `DPoP-Nonce`, and the JSON body.
#[derive(Debug)]
struct Answer {
    status: u16,
    challenges: Vec<String>,
    nonce: Option<String>,
    body: Value,
}

impl Answer {
    async fn from(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        // One line may carry several challenges (the nginx edge joins them, as RFC 9110 §11.6.1 allows): each
        // begins with its scheme and realm.
        let challenges = response
            .headers()
            .get_all("www-authenticate")
            .iter()
            .flat_map(|v| {
                let line = v.to_str().unwrap().replace(", DPoP realm=", "\nDPoP realm=");
                line.replace(", Bearer realm=", "\nBearer realm=").lines().map(str::to_owned).collect::<Vec<_>>()
            })
            .collect();
        let nonce = response.headers().get("dpop-nonce").map(|v| v.to_str().unwrap().to_owned());
        let body = response.json().await.unwrap_or(Value::Null);
        Self { status, challenges, nonce, body }
    }

    /// A gRPC check's answer: 200 for OK, else the denied response's status and headers.
    fn from_check(response: &CheckResponse) -> Self {
        match &response.http_response {
            Some(HttpResponse::OkResponse(_)) => {
                Self { status: 200, challenges: Vec::new(), nonce: None, body: Value::Null }
            }
            Some(HttpResponse::DeniedResponse(denied)) => {
                let header = |name: &str| {
                    denied
                        .headers
                        .iter()
                        .filter_map(|option| option.header.as_ref())
                        .filter(|header| header.key.eq_ignore_ascii_case(name))
                        .map(|header| header.value.clone())
                        .collect::<Vec<_>>()
                };
                Self {
                    status: denied.status.map_or(0, |s| s.code) as u16,
                    challenges: header("www-authenticate"),
                    nonce: header("dpop-nonce").pop(),
                    body: serde_json::from_str(&denied.body).unwrap_or(Value::Null),
                }
            }
            _ => panic!("no HTTP answer: {response:?}"),
        }
    }

    fn reason(&self) -> &str {
        self.body["reason"].as_str().unwrap_or("")
    }

    /// The challenge of `scheme` (`Bearer` or `DPoP`).
    fn challenge(&self, scheme: &str) -> Option<&str> {
        self.challenges.iter().map(String::as_str).find(|line| line.starts_with(&format!("{scheme} ")))
    }

    /// Asserts a refusal: `status`, `reason`, and the `error` on the `scheme` challenge.
    #[track_caller]
    fn refused(&self, status: u16, reason: &str, scheme: &str, error: &str, case: &str) {
        assert_eq!((self.status, self.reason()), (status, reason), "{case}: {self:?}");
        let challenge = self.challenge(scheme).unwrap_or_else(|| panic!("{case}: no {scheme} challenge: {self:?}"));
        assert!(challenge.contains(&format!("error=\"{error}\"")), "{case}: {challenge}");
    }
}

fn dpop_auth(token: &str) -> String {
    format!("DPoP {token}")
}

#[tokio::test]
async fn a_bound_token_with_its_proof_passes_the_proxy_and_the_upstream_sees_the_dpop_header_unchanged() {
    let issuer = Issuer::new();
    let upstream = upstream().await;
    let edges = Edges::start(&config(&issuer, &upstream, "mode = \"allowed\"", "")).await;
    let client = Client::new(Algorithm::ES256);
    let token = issuer.token("read", Some(&client.jkt));

    let proof = client.proof("GET", "/api/items", &token);
    let auth = dpop_auth(&token);
    let response = edges
        .http
        .get(format!("{}/api/items?page=2", edges.base))
        .header("authorization", auth.as_str())
        .header("dpop", proof.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["uri"], "/api/items?page=2");
    assert_eq!(seen["headers"]["dpop"], proof.as_str(), "the proof reaches the upstream unchanged");
    assert!(seen["headers"].get("authorization").is_none(), "Authorization: DPoP is removed like Bearer");
    assert_eq!(seen["headers"]["x-auth-subject"], "alice");

    // A route that forwards the credentials forwards `Authorization: DPoP` as it came.
    let proof = client.proof("POST", "/api/forwarded/x", &token);
    let response = edges
        .http
        .post(format!("{}/api/forwarded/x", edges.base))
        .header("authorization", auth.as_str())
        .header("dpop", proof.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["headers"]["authorization"], auth.as_str());

    // The htu comes from public_url only: a spoofed Host changes nothing, either way.
    let proof = client.proof("GET", "/api/items", &token);
    let spoofed = [("authorization", auth.as_str()), ("dpop", proof.as_str()), ("host", "evil.example")];
    assert_eq!(edges.proxy(reqwest::Method::GET, "/api/items", &spoofed).await.status, 200);
    let for_the_spoofed_host = client.sign(&Client::claims("GET", "https://evil.example/api/items", &token));
    let headers = [("authorization", auth.as_str()), ("dpop", for_the_spoofed_host.as_str()), ("host", "evil.example")];
    edges.proxy(reqwest::Method::GET, "/api/items", &headers).await.refused(
        401,
        "dpop_proof_invalid",
        "DPoP",
        "invalid_dpop_proof",
        "a proof for the Host header's origin",
    );
    let forwarded = client.sign(&Client::claims("GET", "http://127.0.0.1/api/items", &token));
    let headers = [("authorization", auth.as_str()), ("dpop", forwarded.as_str()), ("x-forwarded-host", "127.0.0.1")];
    let answer = edges.proxy(reqwest::Method::GET, "/api/items", &headers).await;
    answer.refused(401, "dpop_proof_invalid", "DPoP", "invalid_dpop_proof", "a proof for X-Forwarded-Host");

    // The path is the one received, normalized: a proof for /api/items fits a target with a needlessly encoded letter.
    let proof = client.proof("GET", "/api/items", &token);
    let headers = [("authorization", auth.as_str()), ("dpop", proof.as_str())];
    assert_eq!(edges.proxy(reqwest::Method::GET, "/api/%69tems", &headers).await.status, 200);
}

#[tokio::test]
async fn each_defect_of_a_proof_or_a_binding_is_refused_with_its_reason_and_challenge() {
    let issuer = Issuer::new();
    let edges = Edges::start(&config(&issuer, "http://127.0.0.1:9", "mode = \"allowed\"", "")).await;
    let client = Client::new(Algorithm::ES256);
    let stranger = Client::new(Algorithm::ES256);
    let token = issuer.token("read", Some(&client.jkt));
    let unbound = issuer.token("read", None);
    let auth = dpop_auth(&token);
    let htu = format!("{PUBLIC}/api/x");
    let now = portcullis_testkit::claims::now();
    let claims = || Client::claims("GET", &htu, &token);
    let with = |name: &str, value: Value| {
        let mut claims = claims();
        claims[name] = value;
        claims
    };
    let without = |name: &str| {
        let mut claims = claims();
        claims.as_object_mut().unwrap().remove(name);
        claims
    };
    let header = |typ: &str, jwk: &Value| json!({"typ": typ, "alg": "ES256", "jwk": jwk});
    let mut private_jwk = client.jwk.clone();
    private_jwk["d"] = json!(base64url::encode([7u8; 32]));
    let proof_invalid: Vec<(&str, String)> = vec![
        ("htm of another method", client.sign(&with("htm", json!("POST")))),
        ("htu of another path", client.sign(&with("htu", json!(format!("{PUBLIC}/api/y"))))),
        ("htu of another origin", client.sign(&with("htu", json!("https://other.example/api/x")))),
        ("iat too old", client.sign(&with("iat", json!(now - 3600)))),
        ("iat in the future", client.sign(&with("iat", json!(now + 3600)))),
        ("no jti", client.sign(&without("jti"))),
        ("no iat", client.sign(&without("iat"))),
        ("ath of another token", client.sign(&with("ath", json!(sha256(b"another token"))))),
        ("no ath", client.sign(&without("ath"))),
        ("typ JWT", client.sign_with_header(&claims(), header("JWT", &client.jwk))),
        ("no jwk", client.sign_with_header(&claims(), json!({"typ": "dpop+jwt", "alg": "ES256"}))),
        ("a private jwk", client.sign_with_header(&claims(), header("dpop+jwt", &private_jwk))),
        ("signed by another key than its jwk", stranger.sign_with_header(&claims(), header("dpop+jwt", &client.jwk))),
        ("not a JWS", "not.a.proof".to_owned()),
    ];
    for (case, proof) in &proof_invalid {
        let headers = [("authorization", auth.as_str()), ("dpop", proof.as_str())];
        let answer = edges.proxy(reqwest::Method::GET, "/api/x", &headers).await;
        answer.refused(401, "dpop_proof_invalid", "DPoP", "invalid_dpop_proof", case);
        assert!(answer.challenge("DPoP").unwrap().contains("algs=\""), "{case}: {answer:?}");
        assert!(answer.challenge("Bearer").is_some_and(|bearer| !bearer.contains("error=")), "{case}: {answer:?}");
    }

    // Proof count: none, two headers, two in one header.
    let (one, two) = (client.proof("GET", "/api/x", &token), client.proof("GET", "/api/x", &token));
    let joined = format!("{one}, {two}");
    for (case, proofs) in [
        ("no proof", vec![]),
        ("two DPoP headers", vec![one.as_str(), two.as_str()]),
        ("a comma-joined header", vec![joined.as_str()]),
    ] {
        let mut headers = vec![("authorization", auth.as_str())];
        headers.extend(proofs.into_iter().map(|proof| ("dpop", proof)));
        edges.proxy(reqwest::Method::GET, "/api/x", &headers).await.refused(
            401,
            "dpop_proof_invalid",
            "DPoP",
            "invalid_dpop_proof",
            case,
        );
    }

    // Binding: a proof by another key than the token's, and an unbound token sent as DPoP.
    let by_stranger = stranger.proof("GET", "/api/x", &token);
    let headers = [("authorization", auth.as_str()), ("dpop", by_stranger.as_str())];
    let answer = edges.proxy(reqwest::Method::GET, "/api/x", &headers).await;
    answer.refused(401, "token_binding_invalid", "DPoP", "invalid_token", "a proof by another key");
    let unbound_auth = dpop_auth(&unbound);
    let proof = client.proof("GET", "/api/x", &unbound);
    let headers = [("authorization", unbound_auth.as_str()), ("dpop", proof.as_str())];
    let answer = edges.proxy(reqwest::Method::GET, "/api/x", &headers).await;
    answer.refused(401, "token_binding_invalid", "DPoP", "invalid_token", "an unbound token as DPoP");

    // Bearer downgrade: the bound token as Bearer is refused, with the error on the Bearer challenge.
    let bearer = format!("Bearer {token}");
    let answer = edges.proxy(reqwest::Method::GET, "/api/x", &[("authorization", bearer.as_str())]).await;
    answer.refused(401, "token_binding_invalid", "Bearer", "invalid_token", "a bound token as Bearer");
    // A Bearer token with a DPoP header is a malformed request.
    let unbound_bearer = format!("Bearer {unbound}");
    let proof = client.proof("GET", "/api/x", &unbound);
    let headers = [("authorization", unbound_bearer.as_str()), ("dpop", proof.as_str())];
    let answer = edges.proxy(reqwest::Method::GET, "/api/x", &headers).await;
    answer.refused(400, "request_invalid", "Bearer", "invalid_request", "Bearer with a DPoP proof");
    // The unbound token as Bearer, without a proof, passes where DPoP is only allowed (the upstream is down: 502).
    let answer = edges.proxy(reqwest::Method::GET, "/api/x", &[("authorization", unbound_bearer.as_str())]).await;
    assert_eq!(answer.status, 502, "{answer:?}");

    // Replay: the second use of a proof is refused.
    let proof = client.proof("GET", "/api/x", &token);
    let headers = [("authorization", auth.as_str()), ("dpop", proof.as_str())];
    assert_eq!(edges.proxy(reqwest::Method::GET, "/api/x", &headers).await.status, 502);
    let answer = edges.proxy(reqwest::Method::GET, "/api/x", &headers).await;
    answer.refused(401, "dpop_proof_invalid", "DPoP", "invalid_dpop_proof", "a replayed proof");
}

#[tokio::test]
async fn the_token_cache_never_lets_a_request_skip_its_proof() {
    let issuer = Issuer::new();
    let upstream = upstream().await;
    let edges = Edges::start(&config(&issuer, &upstream, "mode = \"allowed\"", "")).await;
    let client = Client::new(Algorithm::EdDSA);
    let token = issuer.token("read", Some(&client.jkt));
    let auth = dpop_auth(&token);
    for round in 0..3 {
        let proof = client.proof("GET", "/api/x", &token);
        let headers = [("authorization", auth.as_str()), ("dpop", proof.as_str())];
        assert_eq!(edges.proxy(reqwest::Method::GET, "/api/x", &headers).await.status, 200, "round {round}");
        // The token is cached now; without a proof, or with the one just used, it is refused all the same.
        let answer = edges.proxy(reqwest::Method::GET, "/api/x", &[("authorization", auth.as_str())]).await;
        answer.refused(401, "dpop_proof_invalid", "DPoP", "invalid_dpop_proof", "no proof, token cached");
        let answer = edges.proxy(reqwest::Method::GET, "/api/x", &headers).await;
        answer.refused(401, "dpop_proof_invalid", "DPoP", "invalid_dpop_proof", "replay, token cached");
    }
}

#[tokio::test]
async fn modes_per_route_and_per_issuer_decide_which_schemes_pass_and_are_offered() {
    let issuer = Issuer::new();
    let upstream = upstream().await;
    let client = Client::new(Algorithm::ES256);
    let bound = issuer.token("read", Some(&client.jkt));
    let unbound = issuer.token("read", None);
    let bearer = format!("Bearer {unbound}");

    // [dpop] allowed; routes required and off.
    let edges = Edges::start(&config(&issuer, &upstream, "mode = \"allowed\"", "")).await;
    let answer = edges.proxy(reqwest::Method::GET, "/api/required/x", &[("authorization", bearer.as_str())]).await;
    assert_eq!((answer.status, answer.reason()), (401, "token_binding_invalid"), "{answer:?}");
    assert!(answer.challenge("Bearer").is_none(), "a DPoP-only route offers no Bearer: {answer:?}");
    assert!(answer.challenge("DPoP").unwrap().contains("error=\"invalid_token\""), "{answer:?}");
    let proof = client.proof("GET", "/api/required/x", &bound);
    let auth = dpop_auth(&bound);
    let headers = [("authorization", auth.as_str()), ("dpop", proof.as_str())];
    assert_eq!(edges.proxy(reqwest::Method::GET, "/api/required/x", &headers).await.status, 200);

    let proof = client.proof("GET", "/api/off/x", &bound);
    let headers = [("authorization", auth.as_str()), ("dpop", proof.as_str())];
    let answer = edges.proxy(reqwest::Method::GET, "/api/off/x", &headers).await;
    assert_eq!((answer.status, answer.reason()), (400, "request_invalid"), "{answer:?}");
    assert!(answer.challenge("DPoP").is_none(), "a route with DPoP off offers Bearer only: {answer:?}");
    assert_eq!(
        edges.proxy(reqwest::Method::GET, "/api/off/x", &[("authorization", bearer.as_str())]).await.status,
        200
    );
    // A bound token is never a Bearer token, even where DPoP is off.
    let bound_bearer = format!("Bearer {bound}");
    let answer = edges.proxy(reqwest::Method::GET, "/api/off/x", &[("authorization", bound_bearer.as_str())]).await;
    assert_eq!((answer.status, answer.reason()), (401, "token_binding_invalid"), "{answer:?}");

    // No credentials on an allowed route: both schemes offered, without an error.
    let answer = edges.proxy(reqwest::Method::GET, "/api/x", &[]).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.challenges.len(), 2, "{answer:?}");
    assert!(
        answer.challenges[0].starts_with("Bearer realm=\"api\"")
            && answer.challenges[1].starts_with("DPoP realm=\"api\"")
    );
    assert!(answer.challenges.iter().all(|line| !line.contains("error=")), "{answer:?}");

    // The issuer requires DPoP ([dpop] off): Bearer is refused on its routes, but a route's own mode wins.
    let edges = Edges::start(&config(&issuer, &upstream, "mode = \"off\"", "dpop = \"required\"")).await;
    let answer = edges.proxy(reqwest::Method::GET, "/api/x", &[("authorization", bearer.as_str())]).await;
    assert_eq!((answer.status, answer.reason()), (401, "token_binding_invalid"), "{answer:?}");
    assert_eq!(
        edges.proxy(reqwest::Method::GET, "/api/allowed/x", &[("authorization", bearer.as_str())]).await.status,
        200
    );
    let proof = client.proof("GET", "/api/x", &bound);
    let headers = [("authorization", auth.as_str()), ("dpop", proof.as_str())];
    assert_eq!(edges.proxy(reqwest::Method::GET, "/api/x", &headers).await.status, 200);
}

#[tokio::test]
async fn forward_auth_and_ext_authz_check_the_proof_against_the_path_they_checked() {
    let issuer = Issuer::new();
    let mut edges = Edges::start(&config(&issuer, "http://127.0.0.1:9", "mode = \"allowed\"", "")).await;
    let client = Client::new(Algorithm::ES256);
    let token = issuer.token("read", Some(&client.jkt));
    let auth = dpop_auth(&token);

    // nginx: the original URI, query left out of the htu; not the check request's own path.
    let proof = client.proof("GET", "/api/x", &token);
    let answer = edges.nginx("GET", "/api/x?q=1", &[("authorization", auth.as_str()), ("dpop", proof.as_str())]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let for_the_endpoint = client.proof("GET", "/auth/nginx", &token);
    let answer =
        edges.nginx("GET", "/api/x", &[("authorization", auth.as_str()), ("dpop", for_the_endpoint.as_str())]).await;
    answer.refused(401, "dpop_proof_invalid", "DPoP", "invalid_dpop_proof", "nginx: a proof for the endpoint");
    let bound_bearer = format!("Bearer {token}");
    let answer = edges.nginx("GET", "/api/x", &[("authorization", bound_bearer.as_str())]).await;
    answer.refused(401, "token_binding_invalid", "Bearer", "invalid_token", "nginx: Bearer downgrade");
    // nginx turns any status but 401 and 403 into a 500: the malformed request is a 401 there.
    let proof = client.proof("POST", "/api/off/x", &token);
    let answer = edges.nginx("POST", "/api/off/x", &[("authorization", auth.as_str()), ("dpop", proof.as_str())]).await;
    assert_eq!((answer.status, answer.reason()), (401, "request_invalid"), "{answer:?}");

    // Caddy: X-Forwarded-Method and -Uri, the method counts.
    let proof = client.proof("DELETE", "/api/x/7", &token);
    let answer = edges.caddy("DELETE", "/api/x/7", &[("authorization", auth.as_str()), ("dpop", proof.as_str())]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let proof = client.proof("GET", "/api/x/7", &token);
    let answer = edges.caddy("DELETE", "/api/x/7", &[("authorization", auth.as_str()), ("dpop", proof.as_str())]).await;
    answer.refused(401, "dpop_proof_invalid", "DPoP", "invalid_dpop_proof", "caddy: a proof for another method");

    // ext_authz: attributes.request.http.path; the DPoP header is left for the upstream, Authorization removed.
    let proof = client.proof("POST", "/api/x", &token);
    let (response, answer) =
        edges.check("POST", "/api/x?y=2", &[("authorization", auth.as_str()), ("dpop", proof.as_str())]).await;
    assert_eq!(answer.status, 200, "{response:?}");
    let Some(HttpResponse::OkResponse(ok)) = &response.http_response else { unreachable!() };
    assert!(ok.headers_to_remove.contains(&"authorization".to_owned()), "{ok:?}");
    assert!(!ok.headers_to_remove.iter().any(|name| name == "dpop"), "{ok:?}");
    assert!(ok.headers.iter().all(|option| option.header.as_ref().unwrap().key != "dpop"), "{ok:?}");
    let proof = client.proof("POST", "/api/elsewhere", &token);
    let (_, answer) =
        edges.check("POST", "/api/x", &[("authorization", auth.as_str()), ("dpop", proof.as_str())]).await;
    answer.refused(401, "dpop_proof_invalid", "DPoP", "invalid_dpop_proof", "ext_authz: a proof for another path");
    let (_, answer) = edges.check("POST", "/api/x", &[("authorization", bound_bearer.as_str())]).await;
    answer.refused(401, "token_binding_invalid", "Bearer", "invalid_token", "ext_authz: Bearer downgrade");
}

#[tokio::test]
async fn a_proof_used_at_one_edge_is_a_replay_at_every_other_edge_of_the_gateway() {
    let issuer = Issuer::new();
    let upstream = upstream().await;
    let mut edges = Edges::start(&config(&issuer, &upstream, "mode = \"allowed\"", "")).await;
    let client = Client::new(Algorithm::ES256);
    let token = issuer.token("read", Some(&client.jkt));
    let auth = dpop_auth(&token);
    let proof = client.proof("GET", "/api/x", &token);
    let headers = [("authorization", auth.as_str()), ("dpop", proof.as_str())];
    assert_eq!(edges.proxy(reqwest::Method::GET, "/api/x", &headers).await.status, 200);
    edges.nginx("GET", "/api/x", &headers).await.refused(
        401,
        "dpop_proof_invalid",
        "DPoP",
        "invalid_dpop_proof",
        "nginx replay",
    );
    edges.caddy("GET", "/api/x", &headers).await.refused(
        401,
        "dpop_proof_invalid",
        "DPoP",
        "invalid_dpop_proof",
        "caddy replay",
    );
    let (_, answer) = edges.check("GET", "/api/x", &headers).await;
    answer.refused(401, "dpop_proof_invalid", "DPoP", "invalid_dpop_proof", "ext_authz replay");

    // The other way round: first at ext_authz, then at the proxy.
    let proof = client.proof("GET", "/api/z", &token);
    let headers = [("authorization", auth.as_str()), ("dpop", proof.as_str())];
    assert_eq!(edges.check("GET", "/api/z", &headers).await.1.status, 200);
    edges.proxy(reqwest::Method::GET, "/api/z", &headers).await.refused(
        401,
        "dpop_proof_invalid",
        "DPoP",
        "invalid_dpop_proof",
        "proxy replay",
    );

    // A reload that leaves [dpop] alone keeps the replay cache: the proof is still a replay after it.
    let reloaded = config(&issuer, &upstream, "mode = \"allowed\"", "")
        .replace("path = \"/api/scoped/*\"", "path = \"/api/admin/*\"");
    edges.gateway.reload(Config::from_toml(&reloaded).unwrap()).unwrap();
    edges.proxy(reqwest::Method::GET, "/api/z", &headers).await.refused(
        401,
        "dpop_proof_invalid",
        "DPoP",
        "invalid_dpop_proof",
        "replay after reload",
    );
}

#[tokio::test]
async fn with_a_nonce_secret_proofs_need_the_servers_nonce_which_survives_a_reload() {
    let issuer = Issuer::new();
    let upstream = upstream().await;
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "a nonce secret of more than thirty-two bytes, for the test\n").unwrap();
    let dpop = format!("mode = \"allowed\"\nnonce_secret_file = \"{}\"", secret.path().display());
    let mut edges = Edges::start(&config(&issuer, &upstream, &dpop, "")).await;
    let client = Client::new(Algorithm::ES256);
    let token = issuer.token("read", Some(&client.jkt));
    let auth = dpop_auth(&token);

    // Without a nonce: 401 use_dpop_nonce, and the nonce to retry with.
    let proof = client.proof("GET", "/api/x", &token);
    let answer = edges
        .proxy(reqwest::Method::GET, "/api/x", &[("authorization", auth.as_str()), ("dpop", proof.as_str())])
        .await;
    answer.refused(401, "dpop_nonce_required", "DPoP", "use_dpop_nonce", "no nonce");
    let nonce = answer.nonce.clone().expect("a DPoP-Nonce header");
    // With it: through.
    let mut claims = Client::claims("GET", &format!("{PUBLIC}/api/x"), &token);
    claims["nonce"] = json!(nonce);
    let proof = client.sign(&claims);
    assert_eq!(
        edges
            .proxy(reqwest::Method::GET, "/api/x", &[("authorization", auth.as_str()), ("dpop", proof.as_str())])
            .await
            .status,
        200
    );
    // A wrong nonce is a nonce refusal too; every 401 carries the current nonce, a credential-less one included.
    claims["nonce"] = json!("not-a-nonce");
    claims["jti"] = json!(fresh_id());
    let proof = client.sign(&claims);
    let answer = edges
        .proxy(reqwest::Method::GET, "/api/x", &[("authorization", auth.as_str()), ("dpop", proof.as_str())])
        .await;
    answer.refused(401, "dpop_nonce_required", "DPoP", "use_dpop_nonce", "a wrong nonce");
    assert!(answer.nonce.is_some());
    assert!(edges.proxy(reqwest::Method::GET, "/api/x", &[]).await.nonce.is_some());
    // The gRPC edge says the same.
    let proof = client.proof("GET", "/api/x", &token);
    let (_, answer) = edges.check("GET", "/api/x", &[("authorization", auth.as_str()), ("dpop", proof.as_str())]).await;
    answer.refused(401, "dpop_nonce_required", "DPoP", "use_dpop_nonce", "ext_authz: no nonce");
    assert!(answer.nonce.is_some(), "{answer:?}");

    // The nonce key survives a reload with the same secret.
    edges.gateway.reload(Config::from_toml(&config(&issuer, &upstream, &dpop, "")).unwrap()).unwrap();
    claims["nonce"] = json!(nonce);
    claims["jti"] = json!(fresh_id());
    let proof = client.sign(&claims);
    assert_eq!(
        edges
            .proxy(reqwest::Method::GET, "/api/x", &[("authorization", auth.as_str()), ("dpop", proof.as_str())])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn an_rfc9068_issuer_refuses_tokens_missing_a_required_claim_by_name() {
    let issuer = Issuer::new();
    let upstream = upstream().await;
    let edges = Edges::start(&config(&issuer, &upstream, "mode = \"allowed\"", "profile = \"rfc9068\"")).await;
    let now = portcullis_testkit::claims::now();
    let full = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "client_id": "app", "iat": now, "exp": now + 600, "jti": "t-1",
    });
    let token = issuer.token_with(&full, json!({"typ": "at+jwt"}));
    let bearer = format!("Bearer {token}");
    assert_eq!(edges.proxy(reqwest::Method::GET, "/api/x", &[("authorization", bearer.as_str())]).await.status, 200);
    let mut partial = full.clone();
    partial.as_object_mut().unwrap().remove("client_id");
    let token = issuer.token_with(&partial, json!({"typ": "at+jwt"}));
    let bearer = format!("Bearer {token}");
    let answer = edges.proxy(reqwest::Method::GET, "/api/x", &[("authorization", bearer.as_str())]).await;
    assert_eq!((answer.status, answer.reason()), (401, "claim_missing"), "{answer:?}");
    assert!(answer.body["message"].as_str().unwrap().contains("client_id"), "{answer:?}");
    let untyped = issuer.token_with(&full, json!({}));
    let bearer = format!("Bearer {untyped}");
    assert_eq!(edges.proxy(reqwest::Method::GET, "/api/x", &[("authorization", bearer.as_str())]).await.status, 401);
}

/// The errors `Config::from_toml` reports for `text`, as `key: message`.
fn errors(text: &str) -> Vec<String> {
    match Config::from_toml(text) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.errors().iter().map(|e| format!("{}: {}", e.key, e.message)).collect(),
    }
}

#[test]
fn check_config_names_each_dpop_and_metadata_mistake_at_its_key() {
    let issuer = Issuer::new();
    let base = |top: &str, tables: &str| {
        format!(
            "upstream = \"http://127.0.0.1:3000\"\n{top}\n{tables}\n{}[[routes]]\npath = \"/api/*\"\n",
            issuer.table("")
        )
    };
    let has = |errors: &[String], key: &str, words: &str| {
        assert!(
            errors.iter().any(|e| e.starts_with(&format!("{key}: ")) && e.contains(words)),
            "{key} / {words}: {errors:?}"
        );
    };
    // DPoP on without public_url, wherever it is turned on.
    has(&errors(&base("", "[dpop]\nmode = \"allowed\"")), "dpop.mode", "public_url");
    let text = base("", "").replace("path = \"/api/*\"", "path = \"/api/*\"\ndpop = \"required\"");
    has(&errors(&text), "routes[0].dpop", "public_url");
    let text = base("", "").replace("jwks_uri", "dpop = \"allowed\"\njwks_uri");
    has(&errors(&text), "issuers[0].dpop", "public_url");
    // public_url must be a plain http(s) base URL.
    for (url, words) in [
        ("https://api.example.com/?x=1", "query"),
        ("https://api.example.com/#top", "fragment"),
        ("https://user@api.example.com", "user information"),
        ("ftp://api.example.com", "http"),
    ] {
        has(&errors(&base(&format!("public_url = \"{url}\""), "")), "public_url", words);
    }
    // The nonce secret file: readable, at least 32 bytes.
    let short = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(short.path(), "short").unwrap();
    let tables = format!("[dpop]\nnonce_secret_file = \"{}\"", short.path().display());
    has(&errors(&base("public_url = \"https://api.example.com\"", &tables)), "dpop.nonce_secret_file", "32");
    let tables = "[dpop]\nnonce_secret_file = \"/nonexistent/secret\"";
    has(&errors(&base("public_url = \"https://api.example.com\"", tables)), "dpop.nonce_secret_file", "cannot be read");
    // Values of the tables.
    let tables = "[dpop]\nmode = \"sometimes\"";
    has(&errors(&base("public_url = \"https://api.example.com\"", tables)), "dpop.mode", "unknown variant");
    let tables = "[dpop]\nalgorithms = [\"HS256\"]\nmax_age_secs = 0\nreplay_capacity = 0";
    let found = errors(&base("public_url = \"https://api.example.com\"", tables));
    has(&found, "dpop.algorithms[0]", "asymmetric");
    has(&found, "dpop.max_age_secs", "between");
    has(&found, "dpop.replay_capacity", "at least 1");
    let text = base("", "").replace("jwks_uri", "profile = \"rfc9999\"\njwks_uri");
    has(&errors(&text), "issuers[0].profile", "unknown variant");
    // Resource metadata: needs public_url, and its resource on that origin.
    let tables = "[resource_metadata]\nresource = \"https://api.example.com/mcp\"";
    has(&errors(&base("", tables)), "resource_metadata", "public_url");
    let found = errors(&base(
        "public_url = \"https://api.example.com\"",
        &tables.replace("api.example.com", "elsewhere.example"),
    ));
    has(&found, "resource_metadata.resource", "origin");
    let tables = "[resource_metadata]\nresource = \"https://api.example.com/mcp\"\nauthorization_servers = [\"not a url\"]\nscopes = []";
    let found = errors(&base("public_url = \"https://api.example.com\"", tables));
    has(&found, "resource_metadata.authorization_servers[0]", "URL");
    has(&found, "resource_metadata", "unknown field `scopes`");
    // A public route reads no token, so it has no DPoP mode.
    let text = base("public_url = \"https://api.example.com\"", "")
        .replace("path = \"/api/*\"", "path = \"/api/*\"\npublic = true\ndpop = \"allowed\"");
    has(&errors(&text), "routes[0].dpop", "public route");
    // And a complete, valid file.
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), [b'k'; 32]).unwrap();
    let tables = format!(
        "[dpop]\nmode = \"required\"\nalgorithms = [\"ES256\"]\nnonce_secret_file = \"{}\"\n[resource_metadata]\nresource = \"https://API.example.com:443/mcp\"",
        secret.path().display()
    );
    assert_eq!(errors(&base("public_url = \"https://api.example.com/base/\"", &tables)), Vec::<String>::new());
}

#[tokio::test]
async fn envoy_http_mode_and_traefik_check_the_proof_against_the_original_path() {
    let issuer = Issuer::new();
    let client = Client::new(Algorithm::ES256);
    let token = issuer.token("read", Some(&client.jkt));
    let auth = dpop_auth(&token);
    let http = reqwest::Client::new();
    let routes = "[[routes]]\npath = \"/api/*\"\n";

    // Envoy's HTTP ext_authz service: the check request's own method and target, after envoy_path_prefix.
    let envoy = format!(
        "public_url = \"{PUBLIC}\"\nforward_auth = \"envoy\"\nenvoy_path_prefix = \"/ext-authz\"\n[dpop]\nmode = \"allowed\"\n{}{routes}",
        issuer.table("")
    );
    let base = support::gateway(&envoy).await;
    let proof = client.proof("PUT", "/api/x", &token);
    let response = http
        .put(format!("{base}/ext-authz/api/x?v=1"))
        .header("authorization", &auth)
        .header("dpop", &proof)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let removed = response.headers()["x-envoy-auth-headers-to-remove"].to_str().unwrap().to_owned();
    assert!(removed.split(',').any(|name| name == "authorization"), "{removed}");
    assert!(!removed.split(',').any(|name| name == "dpop"), "the proof goes on to the upstream: {removed}");
    let with_prefix = client.proof("PUT", "/ext-authz/api/x", &token);
    let response = http
        .put(format!("{base}/ext-authz/api/x"))
        .header("authorization", &auth)
        .header("dpop", &with_prefix)
        .send()
        .await
        .unwrap();
    let answer = Answer::from(response).await;
    answer.refused(401, "dpop_proof_invalid", "DPoP", "invalid_dpop_proof", "envoy: a proof for the check's target");

    // Traefik ForwardAuth: X-Forwarded-Method and X-Forwarded-Uri.
    let traefik = format!(
        "public_url = \"{PUBLIC}\"\nforward_auth = \"traefik\"\n[dpop]\nmode = \"allowed\"\n{}{routes}",
        issuer.table("")
    );
    let base = support::gateway(&traefik).await;
    let ask = |proof: String| {
        http.get(format!("{base}/"))
            .header("x-forwarded-method", "PATCH")
            .header("x-forwarded-uri", "/api/x/9?y=1")
            .header("x-forwarded-host", "api.example.test")
            .header("authorization", &auth)
            .header("dpop", proof)
            .send()
    };
    assert_eq!(ask(client.proof("PATCH", "/api/x/9", &token)).await.unwrap().status(), 200);
    let answer = Answer::from(ask(client.proof("PATCH", "/", &token)).await.unwrap()).await;
    answer.refused(401, "dpop_proof_invalid", "DPoP", "invalid_dpop_proof", "traefik: a proof for the check's path");
}

#[tokio::test]
async fn a_reload_applies_new_dpop_settings_to_the_next_request() {
    let issuer = Issuer::new();
    let upstream = upstream().await;
    let edges = Edges::start(&config(&issuer, &upstream, "mode = \"allowed\"", "")).await;
    let bearer = format!("Bearer {}", issuer.token("read", None));
    assert_eq!(edges.proxy(reqwest::Method::GET, "/api/x", &[("authorization", bearer.as_str())]).await.status, 200);
    edges.gateway.reload(Config::from_toml(&config(&issuer, &upstream, "mode = \"required\"", "")).unwrap()).unwrap();
    let answer = edges.proxy(reqwest::Method::GET, "/api/x", &[("authorization", bearer.as_str())]).await;
    assert_eq!((answer.status, answer.reason()), (401, "token_binding_invalid"), "{answer:?}");
    assert!(answer.challenge("Bearer").is_none(), "{answer:?}");
    // A reload that turns DPoP off everywhere and drops public_url: Bearer only again, and DPoP refused.
    let plain = config(&issuer, &upstream, "", "")
        .replace(&format!("public_url = \"{PUBLIC}\"\n"), "")
        .replace("dpop = \"required\"\n", "")
        .replace("dpop = \"allowed\"\n", "");
    edges.gateway.reload(Config::from_toml(&plain).unwrap()).unwrap();
    assert_eq!(edges.proxy(reqwest::Method::GET, "/api/x", &[("authorization", bearer.as_str())]).await.status, 200);
    let answer = edges.proxy(reqwest::Method::GET, "/api/x", &[]).await;
    assert_eq!(answer.challenges, ["Bearer realm=\"api\""], "{answer:?}");
    let client = Client::new(Algorithm::ES256);
    let token = issuer.token("read", Some(&client.jkt));
    let auth = dpop_auth(&token);
    let proof = client.proof("GET", "/api/x", &token);
    let answer = edges
        .proxy(reqwest::Method::GET, "/api/x", &[("authorization", auth.as_str()), ("dpop", proof.as_str())])
        .await;
    assert_eq!((answer.status, answer.reason()), (400, "request_invalid"), "{answer:?}");
    let bound_bearer = format!("Bearer {token}");
    let answer = edges.proxy(reqwest::Method::GET, "/api/x", &[("authorization", bound_bearer.as_str())]).await;
    assert_eq!((answer.status, answer.reason()), (401, "token_binding_invalid"), "{answer:?}");
}

#[tokio::test]
async fn a_reload_that_changes_the_dpop_settings_still_refuses_proofs_used_before_it() {
    let issuer = Issuer::new();
    let upstream = upstream().await;
    let edges = Edges::start(&config(&issuer, &upstream, "mode = \"allowed\"", "")).await;
    let client = Client::new(Algorithm::ES256);
    let token = issuer.token("read", Some(&client.jkt));
    let auth = dpop_auth(&token);
    let proof = client.proof("GET", "/api/x", &token);
    let headers = [("authorization", auth.as_str()), ("dpop", proof.as_str())];
    assert_eq!(edges.proxy(reqwest::Method::GET, "/api/x", &headers).await.status, 200);

    // Each reload changes [dpop], so a new verifier is built; the proofs already used must stay used.
    for dpop in [
        "mode = \"required\"",
        "mode = \"required\"\nleeway_secs = 10",
        "mode = \"required\"\nleeway_secs = 10\nmax_age_secs = 600",
        "mode = \"allowed\"\nreplay_capacity = 5000",
        "mode = \"allowed\"\nalgorithms = [\"ES256\", \"EdDSA\"]",
    ] {
        edges.gateway.reload(Config::from_toml(&config(&issuer, &upstream, dpop, "")).unwrap()).unwrap();
        edges.proxy(reqwest::Method::GET, "/api/x", &headers).await.refused(
            401,
            "dpop_proof_invalid",
            "DPoP",
            "invalid_dpop_proof",
            &format!("replay after a reload to {dpop:?}"),
        );
        // A fresh proof still passes.
        let fresh = client.proof("GET", "/api/x", &token);
        let answer = edges
            .proxy(reqwest::Method::GET, "/api/x", &[("authorization", auth.as_str()), ("dpop", fresh.as_str())])
            .await;
        assert_eq!(answer.status, 200, "{dpop:?}: {answer:?}");
    }

    // A reload that turns DPoP off (no public_url), then one that turns it on again: still a replay.
    let plain = config(&issuer, &upstream, "", "")
        .replace(&format!("public_url = \"{PUBLIC}\"\n"), "")
        .replace("dpop = \"required\"\n", "")
        .replace("dpop = \"allowed\"\n", "");
    edges.gateway.reload(Config::from_toml(&plain).unwrap()).unwrap();
    edges.gateway.reload(Config::from_toml(&config(&issuer, &upstream, "mode = \"allowed\"", "")).unwrap()).unwrap();
    edges.proxy(reqwest::Method::GET, "/api/x", &headers).await.refused(
        401,
        "dpop_proof_invalid",
        "DPoP",
        "invalid_dpop_proof",
        "replay after DPoP was turned off and on again",
    );
}

/// Sends `target` exactly as written (a client library would resolve its dot-segments) with `headers`; the status.
async fn raw_status(base: &str, target: &str, headers: &[(&str, &str)]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut request = format!("GET {target} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    text.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("no status: {text}"))
}

#[tokio::test]
async fn under_a_public_url_with_a_path_the_request_path_never_climbs_out_of_it() {
    let issuer = Issuer::new();
    let upstream = upstream().await;
    let config = config(&issuer, &upstream, "mode = \"allowed\"", "")
        .replace(&format!("public_url = \"{PUBLIC}\""), &format!("public_url = \"{PUBLIC}/v1\""));
    let edges = Edges::start(&config).await;
    let client = Client::new(Algorithm::ES256);
    let token = issuer.token("read", Some(&client.jkt));
    let auth = dpop_auth(&token);
    // The upstream serves `/../api/x` as `/api/x`, which clients reach as `/v1/api/x`: a proof for the origin's
    // `/api/x` (another service behind the same balancer) is not a proof for it.
    let outside = client.sign(&Client::claims("GET", &format!("{PUBLIC}/api/x"), &token));
    let status = raw_status(&edges.base, "/../api/x", &[("authorization", &auth), ("dpop", &outside)]).await;
    assert_eq!(status, 401);
    let inside = client.sign(&Client::claims("GET", &format!("{PUBLIC}/v1/api/x"), &token));
    let status = raw_status(&edges.base, "/../api/x", &[("authorization", &auth), ("dpop", &inside)]).await;
    assert_eq!(status, 200);
}

/// The value of the requests counter of `route` refused for `reason` in the Prometheus text `metrics`.
fn denied_count(metrics: &str, route: &str, reason: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| line.starts_with("portcullis_gateway_requests_total{"))
        .filter(|line| {
            line.contains(&format!("route=\"{route}\""))
                && line.contains("outcome=\"denied\"")
                && line.contains(&format!("reason=\"{reason}\""))
        })
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn dpop_refusals_are_counted_under_their_own_reasons() {
    let issuer = Issuer::new();
    let upstream = upstream().await;
    // A route of its own, so that no other test's requests count on it.
    let config = config(&issuer, &upstream, "mode = \"allowed\"", "").replace(
        "[[routes]]\npath = \"/api/*\"\n",
        "[[routes]]\npath = \"/metered/*\"\n[[routes]]\npath = \"/api/*\"\n",
    );
    let edges = Edges::start(&config).await;
    let admin = portcullis_testkit::net::serve(portcullis_gateway::admin_router(edges.gateway.clone())).await;
    let client = Client::new(Algorithm::ES256);
    let token = issuer.token("read", Some(&client.jkt));
    let (auth, bearer) = (dpop_auth(&token), format!("Bearer {token}"));
    let stale = client.sign(&json!({
        "jti": fresh_id(), "htm": "GET", "htu": format!("{PUBLIC}/metered/x"), "iat": 1, "ath": sha256(token.as_bytes()),
    }));
    let answer = edges
        .proxy(reqwest::Method::GET, "/metered/x", &[("authorization", auth.as_str()), ("dpop", stale.as_str())])
        .await;
    assert_eq!(answer.reason(), "dpop_proof_invalid");
    let answer = edges.proxy(reqwest::Method::GET, "/metered/x", &[("authorization", bearer.as_str())]).await;
    assert_eq!(answer.reason(), "token_binding_invalid");
    let metrics = reqwest::get(format!("{admin}/metrics")).await.unwrap().text().await.unwrap();
    assert_eq!(denied_count(&metrics, "/metered/*", "dpop_proof_invalid"), Some(1.0), "{metrics}");
    assert_eq!(denied_count(&metrics, "/metered/*", "token_binding_invalid"), Some(1.0), "{metrics}");
    assert_eq!(denied_count(&metrics, "/metered/*", "dpop_nonce_required"), Some(0.0), "{metrics}");
}

/// A nonce secret file that is no regular file (a FIFO nobody writes to, a device without end, a directory, a
/// symbolic link loop) or is far larger than any secret is refused at once, naming the key, instead of blocking the
/// check (and `serve`) forever or reading it all into memory.
#[test]
fn a_nonce_secret_file_that_is_no_regular_file_or_too_large_is_refused_at_once() {
    let issuer = Issuer::new();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let huge = dir.path().join("huge");
    // Sparse: no disk is used, but reading it all would take 256 MiB of memory.
    std::fs::File::create(&huge).unwrap().set_len(256 * 1024 * 1024).unwrap();
    let (one, two) = (dir.path().join("loop1"), dir.path().join("loop2"));
    std::os::unix::fs::symlink(&two, &one).unwrap();
    std::os::unix::fs::symlink(&one, &two).unwrap();
    let cases = [
        (fifo, "not a regular file"),
        (std::path::PathBuf::from("/dev/zero"), "not a regular file"),
        (huge, "larger than"),
        (dir.path().to_owned(), "cannot be read"),
        (one, "cannot be read"),
    ];
    for (path, words) in cases {
        let text = format!(
            "upstream = \"http://127.0.0.1:3000\"\npublic_url = \"https://api.example.com\"\n[dpop]\n\
             nonce_secret_file = \"{}\"\n{}[[routes]]\npath = \"/api/*\"\n",
            path.display(),
            issuer.table("")
        );
        let (done, answer) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(errors(&text));
        });
        let found = answer
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{}: the check did not end", path.display()));
        assert!(
            found.iter().any(|e| e.starts_with("dpop.nonce_secret_file: ") && e.contains(words)),
            "{} / {words}: {found:?}",
            path.display()
        );
    }
}

/// `check-config` gives `serve`'s verdict on `public_url` and `resource_metadata.resource`: a URL the proof
/// verifier cannot take (a raw `%` in an IPv6 zone, a port out of range) is refused by both, and so is a path the
/// gateway would refuse or respell in a request (an encoded slash, NUL, `;`, dot-segments, an encoded unreserved
/// character): the metadata URL named in every challenge would answer 400 or 404, and no request would have the
/// `htu` prefix.
#[test]
fn a_public_url_or_resource_the_gateway_could_not_serve_is_refused_by_the_check() {
    let issuer = Issuer::new();
    let text = |public: &str, resource: &str| {
        format!(
            "upstream = \"http://127.0.0.1:3000\"\npublic_url = \"{public}\"\n[dpop]\nmode = \"allowed\"\n\
             [resource_metadata]\nresource = \"{resource}\"\n{}[[routes]]\npath = \"/api/*\"\n",
            issuer.table("")
        )
    };
    let refused = [
        ("https://[fe80::1%eth0]", "IPv6"),
        ("https://api.example.com:99999", "port"),
        ("https://api.example.com/a%2Fb", "encoded slash"),
        ("https://api.example.com/%00", "control character"),
        ("https://api.example.com/a;b", "semicolon"),
        ("https://api.example.com/./x/../y", "/y"),
        ("https://api.example.com/%7Ebase", "/~base"),
    ];
    for (url, words) in refused {
        let found = errors(&text(url, url));
        for key in ["public_url", "resource_metadata.resource"] {
            assert!(
                found.iter().any(|e| e.starts_with(&format!("{key}: ")) && e.contains(words)),
                "{url} / {key} / {words}: {found:?}"
            );
        }
        // Neither key is an error where the gateway has the other right.
        let found = errors(&text("https://api.example.com", &url.replace("api.example.com:99999", "api.example.com")));
        assert!(!found.iter().any(|e| e.starts_with("public_url: ")), "{url}: {found:?}");
    }
    for url in [
        "https://api.example.com/base/",
        "https://[::1]:8443/a",
        "https://xn--bcher-kva.example",
        "http://127.0.0.1:8080",
    ] {
        assert_eq!(errors(&text(url, url)), Vec::<String>::new(), "{url}");
        Gateway::new(Config::from_toml(&text(url, url)).unwrap()).unwrap();
    }
}
