//! DPoP at the dev issuer's token endpoint (RFC 9449 §5, §8, §10) over real sockets: bound access tokens for every
//! grant, refresh tokens bound to the proof key, every proof refusal the token endpoint makes, server nonces, and
//! `dpop_jkt` at `/authorize`.
#![allow(clippy::unwrap_used)]

use portcullis::signing::SigningKey;
use portcullis::{Algorithm, KeySet, Verifier};
use portcullis_issuer::{DEMO_AUDIENCE, DevIssuer, Tenant, pkce};
use portcullis_testkit::claims::{now, part as decode};
use portcullis_testkit::issuers;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};

const CALLBACK: &str = "http://127.0.0.1:3000/callback";
const VERIFIER: &str = "a-code-verifier-that-is-long-enough-0123456789";

/// A client's DPoP key.
struct ProofKey {
    key: SigningKey,
}

static JTI: AtomicU64 = AtomicU64::new(0);

impl ProofKey {
    fn new(alg: Algorithm) -> Self {
        Self { key: SigningKey::generate(alg, None).unwrap() }
    }

    fn jwk(&self) -> Value {
        self.key.public_jwk()
    }

    /// The RFC 7638 thumbprint, computed here from the required members in lexicographic order.
    fn thumbprint(&self) -> String {
        let jwk = self.jwk();
        let member = |name: &str| jwk[name].as_str().unwrap().to_owned();
        let canonical = match member("kty").as_str() {
            "EC" => format!(r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#, member("crv"), member("x"), member("y")),
            "RSA" => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, member("e"), member("n")),
            "OKP" => format!(r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#, member("crv"), member("x")),
            other => panic!("{other}"),
        };
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        portcullis::__internals::base64url::encode(digest.as_ref())
    }

    /// Fresh proof claims for `htm` `htu`.
    fn claims(htm: &str, htu: &str) -> Value {
        let jti = format!("jti-{}-{}", std::process::id(), JTI.fetch_add(1, Ordering::SeqCst));
        json!({ "jti": jti, "htm": htm, "htu": htu, "iat": now() })
    }

    /// A proof over `claims` with this key, header `typ` `typ`.
    fn sign(&self, claims: &Value, typ: &str, jwk: &Value) -> String {
        let header = json!({ "typ": typ, "jwk": jwk });
        self.key.sign_token(claims, header.as_object()).unwrap()
    }

    /// A fresh, valid proof for `POST htu`.
    fn proof(&self, htu: &str) -> String {
        self.sign(&Self::claims("POST", htu), "dpop+jwt", &self.jwk())
    }
}

struct Running {
    issuer: DevIssuer,
    base: String,
    http: reqwest::Client,
    no_redirect: reqwest::Client,
}

async fn start_with(tenant: Tenant) -> Running {
    let issuer = issuers::serve(tenant).await;
    let base = issuer.issuer().to_owned();
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    Running { issuer, base, http: reqwest::Client::new(), no_redirect }
}

async fn start() -> Running {
    start_with(Tenant::demo(CALLBACK)).await
}

/// A token endpoint answer.
struct Answer {
    status: u16,
    body: Value,
    nonce: Option<String>,
}

impl Answer {
    fn error(&self) -> (u16, &str) {
        (self.status, self.body["error"].as_str().unwrap_or("(none)"))
    }

    fn access_token(&self) -> &str {
        self.body["access_token"].as_str().unwrap_or_else(|| panic!("no access token: {}", self.body))
    }
}

impl Running {
    fn token_url(&self) -> String {
        format!("{}oauth/token", self.base)
    }

    /// `POST /oauth/token` with `body` and these `DPoP` header values.
    async fn token(&self, body: &Value, proofs: &[&str]) -> Answer {
        let mut request = self.http.post(self.token_url()).json(body);
        for proof in proofs {
            request = request.header("dpop", *proof);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let nonce = response.headers().get("dpop-nonce").map(|v| v.to_str().unwrap().to_owned());
        Answer { status, body: response.json().await.unwrap(), nonce }
    }

    async fn verifier(&self) -> Verifier {
        let jwks: Value =
            self.http.get(format!("{}.well-known/jwks.json", self.base)).send().await.unwrap().json().await.unwrap();
        let keys = KeySet::from_jwks_json(jwks.to_string().as_bytes()).unwrap();
        Verifier::builder().issuer(&self.base).audience(DEMO_AUDIENCE).keys(keys).without_cache().build().unwrap()
    }

    /// A code for alice through `/authorize` (PKCE S256, `offline_access`), with `extra` parameters.
    async fn code(&self, extra: &[(&str, &str)]) -> String {
        let challenge = pkce::challenge_of(VERIFIER);
        let mut query = vec![
            ("response_type", "code"),
            ("client_id", "demo-spa"),
            ("redirect_uri", CALLBACK),
            ("scope", "openid read:messages offline_access"),
            ("audience", DEMO_AUDIENCE),
            ("state", "s"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("login_hint", "alice"),
        ];
        query.extend_from_slice(extra);
        let response = self.no_redirect.get(format!("{}authorize", self.base)).query(&query).send().await.unwrap();
        assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
        let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
        location.query_pairs().find(|(name, _)| name == "code").unwrap().1.into_owned()
    }
}

fn machine() -> Value {
    json!({"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-secret", "audience": DEMO_AUDIENCE})
}

fn exchange(code: &str) -> Value {
    json!({"grant_type": "authorization_code", "client_id": "demo-spa", "code": code, "code_verifier": VERIFIER, "redirect_uri": CALLBACK})
}

fn refresh(token: &str) -> Value {
    json!({"grant_type": "refresh_token", "client_id": "demo-spa", "refresh_token": token})
}

/// The answer is a DPoP-bound token for `key`, which verifies and carries `cnf.jkt`.
async fn assert_bound(r: &Running, answer: &Answer, key: &ProofKey) {
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["token_type"], "DPoP");
    let token = answer.access_token();
    assert_eq!(decode(token, 1)["cnf"], json!({ "jkt": key.thumbprint() }));
    let verified = r.verifier().await.verify(token).unwrap();
    assert_eq!(verified.jkt(), Some(key.thumbprint().as_str()));
}

#[tokio::test]
async fn client_credentials_with_a_proof_get_a_token_bound_to_its_key() {
    let r = start().await;
    for alg in [Algorithm::ES256, Algorithm::PS256, Algorithm::EdDSA] {
        let key = ProofKey::new(alg);
        let answer = r.token(&machine(), &[&key.proof(&r.token_url())]).await;
        assert_bound(&r, &answer, &key).await;
        let jwk = key.jwk();
        assert_eq!(portcullis::dpop::thumbprint(jwk.as_object().unwrap()).unwrap(), key.thumbprint(), "{alg:?}");
    }
    // Without a proof: a Bearer token without `cnf`, as before.
    let bearer = r.token(&machine(), &[]).await;
    assert_eq!((bearer.status, bearer.body["token_type"].as_str()), (200, Some("Bearer")));
    assert!(decode(bearer.access_token(), 1).get("cnf").is_none());
    assert!(bearer.nonce.is_none(), "no nonce when nonces are off");
}

#[tokio::test]
async fn authorization_code_and_refresh_tokens_are_bound_to_the_proof_key() {
    let r = start().await;
    let key = ProofKey::new(Algorithm::ES256);
    let other = ProofKey::new(Algorithm::ES256);
    let code = r.code(&[]).await;
    let answer = r.token(&exchange(&code), &[&key.proof(&r.token_url())]).await;
    assert_bound(&r, &answer, &key).await;
    assert_eq!(decode(answer.access_token(), 1)["sub"], "auth0|alice");
    let refresh_token = answer.body["refresh_token"].as_str().unwrap().to_owned();

    // Without a proof, or with a proof of another key: invalid_grant, and the token is not used up.
    let missing = r.token(&refresh(&refresh_token), &[]).await;
    assert_eq!(missing.error(), (403, "invalid_grant"));
    let stolen = r.token(&refresh(&refresh_token), &[&other.proof(&r.token_url())]).await;
    assert_eq!(stolen.error(), (403, "invalid_grant"));
    assert!(stolen.body["error_description"].as_str().unwrap().contains("bound to a DPoP key"), "{}", stolen.body);
    // With the key: a new bound access token and a new refresh token, bound as well.
    let refreshed = r.token(&refresh(&refresh_token), &[&key.proof(&r.token_url())]).await;
    assert_bound(&r, &refreshed, &key).await;
    let next = refreshed.body["refresh_token"].as_str().unwrap();
    assert_ne!(next, refresh_token);
    assert_eq!(r.token(&refresh(next), &[]).await.error(), (403, "invalid_grant"));
    assert_eq!(r.token(&refresh(next), &[&other.proof(&r.token_url())]).await.error(), (403, "invalid_grant"));
    assert_bound(&r, &r.token(&refresh(next), &[&key.proof(&r.token_url())]).await, &key).await;

    // A login without DPoP starts an unbound family; a refresh with a proof still binds its access token.
    let code = r.code(&[]).await;
    let plain = r.token(&exchange(&code), &[]).await;
    assert_eq!((plain.status, plain.body["token_type"].as_str()), (200, Some("Bearer")));
    let unbound = plain.body["refresh_token"].as_str().unwrap();
    assert_bound(&r, &r.token(&refresh(unbound), &[&other.proof(&r.token_url())]).await, &other).await;
}

#[tokio::test]
async fn every_proof_defect_is_refused_before_the_grant_is_used() {
    let r = start().await;
    let key = ProofKey::new(Algorithm::ES256);
    let url = r.token_url();
    let port = url::Url::parse(&url).unwrap().port().unwrap();
    let signed = |claims: Value| key.sign(&claims, "dpop+jwt", &key.jwk());
    let mut private = key.jwk();
    private["d"] = json!("AAAA");
    let hs256 = {
        let header = portcullis::__internals::base64url::encode(
            json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": key.jwk()}).to_string(),
        );
        let claims = portcullis::__internals::base64url::encode(ProofKey::claims("POST", &url).to_string());
        format!("{header}.{claims}.c2lnbmF0dXJl")
    };
    let cases: Vec<(&str, String)> = vec![
        ("htm GET", signed(ProofKey::claims("GET", &url))),
        ("htu of another path", signed(ProofKey::claims("POST", &format!("{}authorize", r.base)))),
        ("htu of another port", signed(ProofKey::claims("POST", &url.replace(&port.to_string(), "1")))),
        ("htu of another host", signed(ProofKey::claims("POST", "https://evil.example/oauth/token"))),
        ("typ JWT", key.sign(&ProofKey::claims("POST", &url), "JWT", &key.jwk())),
        ("a private key in jwk", key.sign(&ProofKey::claims("POST", &url), "dpop+jwt", &private)),
        (
            "another key in jwk",
            key.sign(&ProofKey::claims("POST", &url), "dpop+jwt", &ProofKey::new(Algorithm::ES256).jwk()),
        ),
        ("iat an hour ago", signed(json!({"jti": "old", "htm": "POST", "htu": url, "iat": now() - 3600}))),
        ("iat an hour ahead", signed(json!({"jti": "new", "htm": "POST", "htu": url, "iat": now() + 3600}))),
        ("no jti", signed(json!({"htm": "POST", "htu": url, "iat": now()}))),
        ("HS256", hs256),
        ("not a JWT", "not-a-proof".to_owned()),
    ];
    let code = r.code(&[]).await;
    for (case, proof) in &cases {
        let answer = r.token(&exchange(&code), &[proof]).await;
        assert_eq!(answer.error(), (400, "invalid_dpop_proof"), "{case}: {}", answer.body);
        let description = answer.body["error_description"].as_str().unwrap();
        assert!(!description.contains(proof.as_str()), "{case}: the proof is never echoed");
    }
    // Two DPoP headers, or two proofs in one: refused too.
    let two = [key.proof(&url), key.proof(&url)];
    assert_eq!(r.token(&exchange(&code), &[&two[0], &two[1]]).await.error(), (400, "invalid_dpop_proof"));
    let joined = format!("{}, {}", key.proof(&url), key.proof(&url));
    assert_eq!(r.token(&exchange(&code), &[&joined]).await.error(), (400, "invalid_dpop_proof"));

    // None of the refusals used the code: it is still good, with a valid proof.
    let proof = key.proof(&url);
    assert_bound(&r, &r.token(&exchange(&code), &[&proof]).await, &key).await;
    // Replay: the same proof again is refused, for any request.
    let replayed = r.token(&machine(), &[&proof]).await;
    assert_eq!(replayed.error(), (400, "invalid_dpop_proof"));
    assert!(replayed.body["error_description"].as_str().unwrap().contains("replay"), "{}", replayed.body);
    // The journal shows each refusal as a 400.
    let refusals = r.issuer.journal().iter().filter(|e| e.path == "/oauth/token" && e.status == 400).count();
    assert_eq!(refusals, cases.len() + 3);
}

#[tokio::test]
async fn nonces_are_required_when_turned_on_and_a_retry_succeeds() {
    let mut tenant = Tenant::demo(CALLBACK);
    tenant.dpop_nonce = true;
    let r = start_with(tenant).await;
    let key = ProofKey::new(Algorithm::ES256);
    let url = r.token_url();
    let code = r.code(&[]).await;

    // First try without a nonce: 400 use_dpop_nonce with the nonce to use.
    let first = r.token(&exchange(&code), &[&key.proof(&url)]).await;
    assert_eq!(first.error(), (400, "use_dpop_nonce"));
    let nonce = first.nonce.clone().expect("a DPoP-Nonce header");
    assert!(!nonce.is_empty() && nonce.bytes().all(|b| b.is_ascii_graphic()), "{nonce}");
    // A made-up nonce is refused the same way.
    let mut made_up = ProofKey::claims("POST", &url);
    made_up["nonce"] = json!("made-up");
    let refused = r.token(&exchange(&code), &[&key.sign(&made_up, "dpop+jwt", &key.jwk())]).await;
    assert_eq!(refused.error(), (400, "use_dpop_nonce"));
    // The retry with the nonce redeems the same code (the refusals did not use it).
    let mut claims = ProofKey::claims("POST", &url);
    claims["nonce"] = json!(nonce);
    let retry = r.token(&exchange(&code), &[&key.sign(&claims, "dpop+jwt", &key.jwk())]).await;
    assert_bound(&r, &retry, &key).await;
    assert!(retry.nonce.is_some(), "successful answers carry the nonce too");
    // A Bearer request is still answered (nonces concern proofs only), with the nonce for next time.
    let bearer = r.token(&machine(), &[]).await;
    assert_eq!((bearer.status, bearer.nonce.is_some()), (200, true));
}

#[tokio::test]
async fn dpop_jkt_binds_the_code_to_a_key() {
    let r = start().await;
    let key = ProofKey::new(Algorithm::ES256);
    let other = ProofKey::new(Algorithm::ES256);
    let thumbprint = key.thumbprint();
    let bound = [("dpop_jkt", thumbprint.as_str())];
    let code = r.code(&bound).await;
    assert_eq!(r.token(&exchange(&code), &[&other.proof(&r.token_url())]).await.error(), (403, "invalid_grant"));
    let code = r.code(&bound).await;
    assert_eq!(r.token(&exchange(&code), &[]).await.error(), (403, "invalid_grant"));
    let code = r.code(&bound).await;
    assert_bound(&r, &r.token(&exchange(&code), &[&key.proof(&r.token_url())]).await, &key).await;
    // A dpop_jkt that is not a thumbprint is refused at /authorize.
    let response = r
        .no_redirect
        .get(format!("{}authorize", r.base))
        .query(&[
            ("response_type", "code"),
            ("client_id", "demo-spa"),
            ("redirect_uri", CALLBACK),
            ("code_challenge", &pkce::challenge_of(VERIFIER)),
            ("code_challenge_method", "S256"),
            ("dpop_jkt", "short"),
            ("login_hint", "alice"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("dpop_jkt"));
}

#[tokio::test]
async fn browser_scripts_may_send_proofs_and_read_nonces() {
    let mut tenant = Tenant::demo(CALLBACK);
    tenant.dpop_nonce = true;
    let r = start_with(tenant).await;
    let preflight = r
        .http
        .request(reqwest::Method::OPTIONS, r.token_url())
        .header("origin", "http://127.0.0.1:3000")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type, dpop")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let allowed = preflight.headers()["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(allowed.split(',').any(|h| h.trim() == "dpop"), "{allowed}");
    let key = ProofKey::new(Algorithm::ES256);
    let answer = r
        .http
        .post(r.token_url())
        .header("origin", "http://127.0.0.1:3000")
        .header("dpop", key.proof(&r.token_url()))
        // The SPA's own client, as a page of its origin calls it (the nonce is asked for before the token is read).
        .json(&refresh("not-yet-read"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let exposed = answer.headers()["access-control-expose-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(exposed.split(',').any(|h| h.trim() == "dpop-nonce"), "{exposed}");
    assert!(answer.headers().contains_key("dpop-nonce"));
}

#[tokio::test]
async fn userinfo_takes_a_bound_token_only_with_a_proof_of_its_key() {
    let r = start().await;
    let key = ProofKey::new(Algorithm::ES256);
    let code = r.code(&[]).await;
    let answer = r.token(&exchange(&code), &[&key.proof(&r.token_url())]).await;
    assert_bound(&r, &answer, &key).await;
    let token = answer.access_token().to_owned();
    let userinfo = format!("{}userinfo", r.base);
    let get = |authorization: String, proof: Option<String>| {
        let mut request = r.http.get(&userinfo).header("authorization", authorization);
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let challenge =
                response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
            (status, challenge, response.text().await.unwrap())
        }
    };
    // A bound token sent as Bearer is a stolen token's way in: refused.
    let (status, challenge, _) = get(format!("Bearer {token}"), None).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("invalid_token"), "{challenge}");
    // With the DPoP scheme and a proof for GET <issuer>userinfo bound to the token: the profile.
    let ath = {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        portcullis::__internals::base64url::encode(digest.as_ref())
    };
    let mut claims = ProofKey::claims("GET", &userinfo);
    claims["ath"] = json!(ath);
    let proof = key.sign(&claims, "dpop+jwt", &key.jwk());
    let (status, _, body) = get(format!("DPoP {token}"), Some(proof.clone())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["sub"], "auth0|alice");
    // The same proof again, a proof without ath, a proof by another key, and no proof: refused.
    let (status, challenge, _) = get(format!("DPoP {token}"), Some(proof)).await;
    assert_eq!(status, 401, "replay");
    assert!(challenge.starts_with("DPoP "), "{challenge}");
    let no_ath = key.sign(&ProofKey::claims("GET", &userinfo), "dpop+jwt", &key.jwk());
    assert_eq!(get(format!("DPoP {token}"), Some(no_ath)).await.0, 401, "no ath");
    let other = ProofKey::new(Algorithm::ES256);
    let mut claims = ProofKey::claims("GET", &userinfo);
    claims["ath"] = json!(ath);
    assert_eq!(get(format!("DPoP {token}"), Some(other.sign(&claims, "dpop+jwt", &other.jwk()))).await.0, 401);
    assert_eq!(get(format!("DPoP {token}"), None).await.0, 401, "no proof");
    // An unbound token still works as Bearer, and not with the DPoP scheme.
    let plain = r.token(&exchange(&r.code(&[]).await), &[]).await;
    let plain = plain.access_token().to_owned();
    assert_eq!(get(format!("Bearer {plain}"), None).await.0, 200);
}
