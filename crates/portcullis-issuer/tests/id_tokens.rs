//! ID tokens, `/userinfo`, revocation and CORS over real HTTP, as OpenID clients and Auth0's SDKs use them: the
//! code exchange with `openid` answers an ID token that verifies against the JWKS and speaks of the login, every
//! refresh of the family answers a new one about the same login, `/userinfo` answers the scoped profile, a revoked
//! family is refused, and browser pages from the tenant's web origins (and only those) may call these endpoints
//! with the headers the SDKs send.
#![allow(clippy::unwrap_used)]

use portcullis::{KeySet, VerifiedToken, Verifier};
use portcullis_issuer::{DEMO_AUDIENCE, DevIssuer, Tenant, pkce};
use portcullis_testkit::claims::part as decode;
use portcullis_testkit::issuers;
use serde_json::{Value, json};
use std::collections::HashMap;

const CALLBACK: &str = "http://127.0.0.1:3000/callback";
const WEB_ORIGIN: &str = "http://127.0.0.1:3000";
const VERIFIER: &str = "a-code-verifier-that-is-long-enough-0123456789";

struct Running {
    issuer: DevIssuer,
    base: String,
    http: reqwest::Client,
}

async fn start() -> Running {
    start_with(Tenant::demo(CALLBACK)).await
}

async fn start_with(tenant: Tenant) -> Running {
    let issuer = issuers::serve(tenant).await;
    let base = issuer.issuer().to_owned();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    Running { issuer, base, http }
}

impl Running {
    /// Logs `user` in through `GET /authorize?…&login_hint=` for the demo API and returns the code from the
    /// redirect.
    async fn code(&self, user: &str, scope: &str, nonce: Option<&str>) -> String {
        self.code_for(user, scope, nonce, Some(DEMO_AUDIENCE)).await
    }

    /// Logs `user` in for `audience` (none: the tenant's default) and returns the code from the redirect.
    async fn code_for(&self, user: &str, scope: &str, nonce: Option<&str>, audience: Option<&str>) -> String {
        let challenge = pkce::challenge_of(VERIFIER);
        let mut query = vec![
            ("response_type", "code"),
            ("client_id", "demo-spa"),
            ("redirect_uri", CALLBACK),
            ("scope", scope),
            ("state", "st"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("login_hint", user),
        ];
        if let Some(nonce) = nonce {
            query.push(("nonce", nonce));
        }
        if let Some(audience) = audience {
            query.push(("audience", audience));
        }
        let response = self.http.get(format!("{}authorize", self.base)).query(&query).send().await.unwrap();
        assert!(response.status().is_redirection(), "{}", response.status());
        let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
        let pairs: HashMap<_, _> = location.query_pairs().into_owned().collect();
        pairs["code"].clone()
    }

    async fn token(&self, body: Value) -> (u16, Value) {
        let response = self.http.post(format!("{}oauth/token", self.base)).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Logs `user` in with `scope` (and `nonce`) and exchanges the code: the token answer.
    async fn login(&self, user: &str, scope: &str, nonce: Option<&str>) -> Value {
        let code = self.code(user, scope, nonce).await;
        self.exchange(&code).await
    }

    /// Exchanges `code` for tokens: the token answer.
    async fn exchange(&self, code: &str) -> Value {
        let (status, body) = self
            .token(json!({
                "grant_type": "authorization_code", "client_id": "demo-spa", "code": code,
                "code_verifier": VERIFIER, "redirect_uri": CALLBACK,
            }))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn refresh(&self, refresh_token: &str) -> (u16, Value) {
        self.token(json!({"grant_type": "refresh_token", "client_id": "demo-spa", "refresh_token": refresh_token}))
            .await
    }

    /// A verifier of ID tokens for the demo SPA: the issuer's JWKS, `iss`, and `aud` = the client ID.
    async fn id_token_verifier(&self) -> Verifier {
        let jwks = self.http.get(format!("{}.well-known/jwks.json", self.base)).send().await.unwrap();
        let keys = KeySet::from_jwks_json(&jwks.bytes().await.unwrap()).unwrap();
        let clock =
            std::sync::Arc::new(portcullis::clock::ManualClock::at_unix(u64::try_from(self.issuer.now()).unwrap()));
        Verifier::builder()
            .issuer(&self.base)
            .audience("demo-spa")
            .keys(keys)
            .clock(clock)
            .without_cache()
            .build()
            .unwrap()
    }

    async fn userinfo(&self, token: &str) -> (u16, Value) {
        let response = self.http.get(format!("{}userinfo", self.base)).bearer_auth(token).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn revoke(&self, form: &[(&str, &str)]) -> (u16, String) {
        let response = self.http.post(format!("{}oauth/revoke", self.base)).form(form).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }
}

/// `at_hash` as OpenID Connect Core §3.1.3.6 defines it for RS256, computed here independently of the issuer.
fn at_hash(access_token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access_token.as_bytes());
    portcullis::__internals::base64url::encode(&digest.as_ref()[..16])
}

fn claims(token: &VerifiedToken) -> &serde_json::Map<String, Value> {
    token.claims()
}

#[tokio::test]
async fn the_code_exchange_with_openid_answers_an_id_token_about_the_login() {
    let r = start().await;
    let before = r.issuer.now();
    let answer = r.login("alice", "openid profile email read:messages", Some("n-0S6_WzA2Mj")).await;
    let access_token = answer["access_token"].as_str().unwrap();
    let id_token = answer["id_token"].as_str().expect("an ID token for openid");
    let header = decode(id_token, 0);
    assert_eq!(
        (header["alg"].as_str(), header["kid"].as_str()),
        (Some("RS256"), Some(r.issuer.current_kid().as_str()))
    );
    let verified = r.id_token_verifier().await.verify(id_token).expect("the ID token verifies against the JWKS");
    let claims = claims(&verified);
    assert_eq!(claims["iss"], r.base);
    assert_eq!(claims["aud"], "demo-spa", "the audience of an ID token is the client");
    assert_eq!(claims["sub"], "auth0|alice");
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj", "the nonce is echoed");
    assert_eq!(claims["at_hash"], at_hash(access_token));
    assert_ne!(claims["at_hash"], at_hash(&format!("{access_token}x")));
    let auth_time = claims["auth_time"].as_i64().unwrap();
    assert!((before..=r.issuer.now()).contains(&auth_time), "{auth_time} is the login's time");
    assert!(claims["sid"].as_str().is_some_and(|sid| !sid.is_empty()), "{claims:?}");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 36_000);
    // The profile and email claims the scopes asked for.
    assert_eq!((claims["name"].as_str(), claims["nickname"].as_str()), (Some("Alice"), Some("alice")));
    assert_eq!((claims["email"].as_str(), claims["email_verified"].as_bool()), (Some("alice@example.com"), Some(true)));
    // No permissions or API claims in an ID token; the access token is still the API's.
    assert!(claims.get("permissions").is_none() && claims.get("scope").is_none(), "{claims:?}");
    assert_eq!(decode(access_token, 1)["aud"], json!([DEMO_AUDIENCE, format!("{}userinfo", r.base)]));

    // Two logins are two sessions: their sid differ.
    let other = r.login("alice", "openid", None).await;
    let other = decode(other["id_token"].as_str().unwrap(), 1);
    assert_ne!(other["sid"], claims["sid"]);
    assert!(other.get("nonce").is_none(), "no nonce sent, none echoed");
    assert!(other.get("name").is_none() && other.get("email").is_none(), "openid alone: no profile: {other}");

    // Without openid: no ID token.
    let plain = r.login("alice", "profile read:messages", Some("n")).await;
    assert!(plain.get("id_token").is_none(), "{plain}");
    assert!(plain.get("access_token").is_some());
}

#[tokio::test]
async fn every_refresh_of_an_openid_family_answers_an_id_token_about_the_same_login() {
    let r = start().await;
    let first = r.login("alice", "openid profile offline_access", Some("nonce-1")).await;
    let login = decode(first["id_token"].as_str().unwrap(), 1);
    let mut refresh_token = first["refresh_token"].as_str().unwrap().to_owned();
    let mut used = Vec::new();
    for step in 1..=2 {
        r.issuer.shift_clock(600);
        let before = r.issuer.now();
        let (status, answer) = r.refresh(&refresh_token).await;
        assert_eq!(status, 200, "{answer}");
        let id_token = answer["id_token"].as_str().expect("a refresh of an openid family answers an ID token");
        let claims = decode(id_token, 1);
        assert_eq!((&claims["sid"], &claims["auth_time"]), (&login["sid"], &login["auth_time"]), "step {step}");
        assert!(claims.get("nonce").is_none(), "a refreshed ID token echoes no nonce: {claims}");
        assert_eq!(claims["aud"], "demo-spa");
        let iat = claims["iat"].as_i64().unwrap();
        assert!((before..=r.issuer.now()).contains(&iat), "a new token, issued now: {iat}");
        assert!(iat >= login["iat"].as_i64().unwrap() + 600 * step, "{iat}");
        assert_eq!(claims["at_hash"], at_hash(answer["access_token"].as_str().unwrap()));
        assert_eq!(claims["name"], "Alice", "the family's scopes still bring the profile");
        let fresh = r.id_token_verifier().await.verify(id_token).expect("verifies against the JWKS");
        assert_eq!(fresh.subject(), Some("auth0|alice"));
        used.push(refresh_token.clone());
        refresh_token = answer["refresh_token"].as_str().unwrap().to_owned();
        assert!(!used.contains(&refresh_token), "rotation hands out a new refresh token");
    }
    // Reuse detection is unchanged: a used token revokes the family, the newest token included.
    let (status, answer) = r.refresh(&used[0]).await;
    assert_eq!((status, answer["error"].as_str()), (403, Some("invalid_grant")));
    let (status, _) = r.refresh(&refresh_token).await;
    assert_eq!(status, 403, "the family is revoked");

    // A family without openid refreshes without an ID token.
    let plain = r.login("alice", "read:messages offline_access", None).await;
    assert!(plain.get("id_token").is_none());
    let (status, answer) = r.refresh(plain["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert!(answer.get("id_token").is_none(), "{answer}");
}

#[tokio::test]
async fn userinfo_answers_the_profile_the_token_scopes_allow() {
    let r = start().await;
    let info = |scope: &'static str| {
        let r = &r;
        async move {
            let answer = r.login("alice", scope, None).await;
            let (status, info) = r.userinfo(answer["access_token"].as_str().unwrap()).await;
            assert_eq!(status, 200, "{info}");
            info
        }
    };
    let names = |info: &Value| info.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(info("openid").await, json!({"sub": "auth0|alice"}));
    let profile = info("openid profile").await;
    assert_eq!(names(&profile), ["given_name", "name", "nickname", "sub", "updated_at"]);
    assert_eq!((profile["name"].as_str(), profile["given_name"].as_str()), (Some("Alice"), Some("Alice")));
    assert!(profile["updated_at"].as_str().is_some_and(|t| t.ends_with('Z') && t.contains('T')), "{profile}");
    let email = info("openid email").await;
    assert_eq!(email, json!({"sub": "auth0|alice", "email": "alice@example.com", "email_verified": true}));
    let both = info("openid profile email").await;
    assert_eq!(names(&both).len(), 7, "{both}");

    // A token without the userinfo audience (no openid, or a machine's) is refused.
    let api_only = r.login("alice", "profile read:messages", None).await;
    let (status, _) = r.userinfo(api_only["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 401);
    let machine = issuers::machine_token(&r.base, DEMO_AUDIENCE).await;
    assert_eq!(r.userinfo(&machine).await.0, 401);
    let response = r.http.get(format!("{}userinfo", r.base)).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer error=\"invalid_token\""));
}

#[tokio::test]
async fn a_userinfo_only_access_token_has_that_one_audience_and_no_permissions() {
    let r = start().await;
    let userinfo = format!("{}userinfo", r.base);
    assert_eq!(r.issuer.userinfo_audience(), userinfo);
    // A login without an API gets an access token for /userinfo alone: as the admin endpoint mints it, through the
    // same claims as every issued token.
    let minted: Value = r
        .http
        .post(format!("{}__admin/tokens", r.base))
        .json(&json!({"client_id": "demo-spa", "user": "alice", "audience": userinfo, "scopes": ["openid", "email"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = minted["access_token"].as_str().unwrap();
    let claims = decode(token, 1);
    assert_eq!(claims["aud"], json!(userinfo), "one string, not an array");
    assert!(claims.get("permissions").is_none(), "{claims}");
    assert_eq!(claims["scope"], "openid email");
    let (status, info) = r.userinfo(token).await;
    assert_eq!((status, info["email"].as_str()), (200, Some("alice@example.com")));
    // The API refuses it.
    let jwks = r.http.get(format!("{}.well-known/jwks.json", r.base)).send().await.unwrap().bytes().await.unwrap();
    let api = Verifier::builder()
        .issuer(&r.base)
        .audience(DEMO_AUDIENCE)
        .keys(KeySet::from_jwks_json(&jwks).unwrap())
        .without_cache()
        .build()
        .unwrap();
    assert!(api.verify(token).is_err());

    // And through a login that names no API, in a tenant without a default audience.
    let mut tenant = Tenant::demo(CALLBACK);
    tenant.default_audience = None;
    let r = start_with(tenant).await;
    let userinfo = r.issuer.userinfo_audience();
    let code = r.code_for("alice", "openid profile offline_access", Some("n1"), None).await;
    let answer = r.exchange(&code).await;
    let claims = decode(answer["access_token"].as_str().unwrap(), 1);
    assert_eq!(claims["aud"], json!(userinfo), "{claims}");
    assert!(claims.get("permissions").is_none(), "{claims}");
    let (status, info) = r.userinfo(answer["access_token"].as_str().unwrap()).await;
    assert_eq!((status, info["name"].as_str()), (200, Some("Alice")));
    assert_eq!(decode(answer["id_token"].as_str().unwrap(), 1)["nonce"], "n1");
    let (status, refreshed) = r.refresh(answer["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(decode(refreshed["access_token"].as_str().unwrap(), 1)["aud"], json!(userinfo));
    assert!(refreshed["id_token"].is_string());
}

#[tokio::test]
async fn a_revoked_family_is_refused_and_revocation_is_rfc_7009() {
    let r = start().await;
    let answer = r.login("alice", "openid offline_access", None).await;
    let first = answer["refresh_token"].as_str().unwrap().to_owned();
    let (_, rotated) = r.refresh(&first).await;
    let newest = rotated["refresh_token"].as_str().unwrap().to_owned();
    let kept = r.login("alice", "openid offline_access", None).await["refresh_token"].as_str().unwrap().to_owned();

    // Another client may not revoke it (and a wrong secret is not a client at all); the token stays valid.
    let other = [("client_id", "demo-client"), ("client_secret", "demo-secret"), ("token", newest.as_str())];
    let (status, body) = r.revoke(&other).await;
    assert_eq!(status, 403, "{body}");
    let wrong = [("client_id", "demo-client"), ("client_secret", "nope"), ("token", newest.as_str())];
    assert_eq!(r.revoke(&wrong).await.0, 401);
    assert_eq!(r.revoke(&[("client_id", "demo-spa")]).await.0, 400, "token is required");

    // The owner revokes the used first token: the whole family goes, the newest token included.
    let (status, body) = r.revoke(&[("client_id", "demo-spa"), ("token", first.as_str())]).await;
    assert_eq!((status, body.as_str()), (200, ""));
    let (status, refused) = r.refresh(&newest).await;
    assert_eq!((status, refused["error"].as_str()), (403, Some("invalid_grant")), "{refused}");
    // Revoking again, or a token never issued: 200, as RFC 7009 §2.2 asks.
    assert_eq!(r.revoke(&[("client_id", "demo-spa"), ("token", newest.as_str())]).await.0, 200);
    assert_eq!(r.revoke(&[("client_id", "demo-spa"), ("token", "never-issued")]).await.0, 200);
    // A JSON body and HTTP Basic for a confidential client work as at the token endpoint.
    let json = r
        .http
        .post(format!("{}oauth/revoke", r.base))
        .json(&json!({"client_id": "demo-spa", "token": "never-issued", "token_type_hint": "refresh_token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 200);
    let basic = r
        .http
        .post(format!("{}oauth/revoke", r.base))
        .basic_auth("demo-client", Some("demo-secret"))
        .form(&[("token", "never-issued")])
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);
    // Another login's family is untouched.
    assert_eq!(r.refresh(&kept).await.0, 200);
}

/// A CORS preflight for `method path` from `origin`, asking for the headers auth0-spa-js sends.
async fn preflight(r: &Running, path: &str, method: &str, origin: &str) -> reqwest::Response {
    r.http
        .request(reqwest::Method::OPTIONS, format!("{}{path}", r.base))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", "auth0-client,content-type,authorization")
        .send()
        .await
        .unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get(name).map(|v| v.to_str().unwrap().to_ascii_lowercase())
}

#[tokio::test]
async fn browser_pages_from_web_origins_may_send_the_sdk_headers_and_no_other_page_may() {
    let r = start().await;
    for (path, method) in [("oauth/token", "POST"), ("oauth/revoke", "POST"), ("userinfo", "GET")] {
        let allowed = preflight(&r, path, method, WEB_ORIGIN).await;
        assert!(allowed.status().is_success(), "{path}: {}", allowed.status());
        assert_eq!(header(&allowed, "access-control-allow-origin").as_deref(), Some(WEB_ORIGIN), "{path}");
        let headers = header(&allowed, "access-control-allow-headers").unwrap_or_default();
        for needed in ["auth0-client", "content-type", "authorization"] {
            assert!(headers.contains(needed), "{path}: {needed} in {headers:?}");
        }
        assert!(
            header(&allowed, "access-control-allow-methods").is_some_and(|m| m.contains(&method.to_ascii_lowercase()))
        );
        for origin in ["https://evil.example", "http://localhost:3000", "null"] {
            let refused = preflight(&r, path, method, origin).await;
            for name in
                ["access-control-allow-origin", "access-control-allow-headers", "access-control-allow-credentials"]
            {
                assert!(header(&refused, name).is_none(), "{path} from {origin}: {name}");
            }
        }
    }
    // The answers themselves carry the origin for the listed origin only.
    let answer = r.login("alice", "openid", None).await;
    let token = answer["access_token"].as_str().unwrap();
    let get = |origin: &'static str| {
        r.http
            .get(format!("{}userinfo", r.base))
            .bearer_auth(token)
            .header("origin", origin)
            .header("auth0-client", "eyJ9")
            .send()
    };
    let allowed = get(WEB_ORIGIN).await.unwrap();
    assert_eq!(
        (allowed.status().as_u16(), header(&allowed, "access-control-allow-origin").as_deref()),
        (200, Some(WEB_ORIGIN))
    );
    assert!(header(&get("https://evil.example").await.unwrap(), "access-control-allow-origin").is_none());
    let revoke = r
        .http
        .post(format!("{}oauth/revoke", r.base))
        .header("origin", WEB_ORIGIN)
        .header("auth0-client", "eyJ9")
        .form(&[("client_id", "demo-spa"), ("token", "never-issued")])
        .send()
        .await
        .unwrap();
    assert_eq!(header(&revoke, "access-control-allow-origin").as_deref(), Some(WEB_ORIGIN));

    // Discovery and the JWKS are public documents: any page may read them.
    for path in [".well-known/openid-configuration", ".well-known/jwks.json", ".well-known/oauth-authorization-server"]
    {
        let response =
            r.http.get(format!("{}{path}", r.base)).header("origin", "https://evil.example").send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "access-control-allow-origin").as_deref(), Some("*"), "{path}");
    }
}

#[tokio::test]
async fn discovery_lists_what_openid_clients_read() {
    let r = start().await;
    let document: Value =
        r.http.get(format!("{}.well-known/openid-configuration", r.base)).send().await.unwrap().json().await.unwrap();
    let base = &r.base;
    for (member, url) in [
        ("userinfo_endpoint", format!("{base}userinfo")),
        ("revocation_endpoint", format!("{base}oauth/revoke")),
        ("end_session_endpoint", format!("{base}oidc/logout")),
        ("authorization_endpoint", format!("{base}authorize")),
    ] {
        assert_eq!(document[member], url.as_str(), "{member}");
    }
    assert_eq!(document["response_types_supported"], json!(["code", "id_token", "id_token token", "code id_token"]));
    assert_eq!(document["response_modes_supported"], json!(["query", "fragment", "form_post", "web_message"]));
    assert_eq!(document["id_token_signing_alg_values_supported"], json!(["RS256"]));
    assert_eq!(document["subject_types_supported"], json!(["public"]));
    assert_eq!(document["request_parameter_supported"], json!(false));
    assert_eq!(document["code_challenge_methods_supported"], json!(["S256"]));
    let listed = |member: &str| -> Vec<String> {
        document[member].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
    };
    for grant in ["authorization_code", "client_credentials", "implicit", "refresh_token"] {
        assert!(listed("grant_types_supported").contains(&grant.to_owned()), "{grant}");
    }
    for claim in
        ["sub", "nonce", "auth_time", "sid", "name", "nickname", "picture", "email", "email_verified", "updated_at"]
    {
        assert!(listed("claims_supported").contains(&claim.to_owned()), "{claim}");
    }
    for scope in ["openid", "profile", "email", "offline_access"] {
        assert!(listed("scopes_supported").contains(&scope.to_owned()), "{scope}");
    }
    assert!(listed("token_endpoint_auth_methods_supported").contains(&"client_secret_basic".to_owned()));
    // The revocation endpoint it names answers.
    let revoke = r
        .http
        .post(document["revocation_endpoint"].as_str().unwrap())
        .form(&[("client_id", "demo-spa"), ("token", "x")]);
    assert_eq!(revoke.send().await.unwrap().status(), 200);
}

/// A fresh DPoP proof for `POST htu` by `key`.
fn proof(key: &portcullis::signing::SigningKey, htu: &str) -> String {
    static JTI: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let jti = format!("revoke-{}", JTI.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    let claims = json!({"jti": jti, "htm": "POST", "htu": htu, "iat": portcullis_testkit::claims::now()});
    key.sign_token(&claims, json!({"typ": "dpop+jwt", "jwk": key.public_jwk()}).as_object()).unwrap()
}

#[tokio::test]
async fn a_dpop_bound_family_is_revoked_only_with_a_proof_of_its_key() {
    use portcullis::Algorithm;
    use portcullis::signing::SigningKey;
    let r = start().await;
    let (key, stranger) =
        (SigningKey::generate(Algorithm::ES256, None).unwrap(), SigningKey::generate(Algorithm::ES256, None).unwrap());
    let (token_url, revoke_url) = (format!("{}oauth/token", r.base), format!("{}oauth/revoke", r.base));
    let code = r.code("alice", "openid offline_access", None).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", "demo-spa"),
        ("code", code.as_str()),
        ("code_verifier", VERIFIER),
        ("redirect_uri", CALLBACK),
    ];
    let answer: Value = r
        .http
        .post(&token_url)
        .header("dpop", proof(&key, &token_url))
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["token_type"], "DPoP", "{answer}");
    let refresh_token = answer["refresh_token"].as_str().unwrap().to_owned();
    let revoke = |dpop: Option<String>| {
        let mut request =
            r.http.post(&revoke_url).form(&[("client_id", "demo-spa"), ("token", refresh_token.as_str())]);
        if let Some(dpop) = dpop {
            request = request.header("dpop", dpop);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    // Without a proof, with another key's, or with a proof for the token endpoint: nothing is revoked.
    let (status, body) = revoke(None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(revoke(Some(proof(&stranger, &revoke_url))).await.0, 403);
    let (status, body) = revoke(Some(proof(&key, &token_url))).await;
    assert_eq!(status, 400, "a proof for another URL: {body}");
    assert!(body.contains("invalid_dpop_proof"), "{body}");
    // With a proof of its key for the revocation endpoint: revoked; the family cannot be refreshed any more.
    let (status, body) = revoke(Some(proof(&key, &revoke_url))).await;
    assert_eq!((status, body.as_str()), (200, ""));
    let refreshed = r
        .http
        .post(&token_url)
        .header("dpop", proof(&key, &token_url))
        .form(&[("grant_type", "refresh_token"), ("client_id", "demo-spa"), ("refresh_token", refresh_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 403);
}
