//! `/authorize` over real HTTP, attacked: response types and modes, errors back to the client, the session cookie
//! with `prompt=none` and `max_age`, redirect URIs that nearly match, hostile values in the rendered pages,
//! repeated parameters, cross-site login posts, and the default audience.
#![allow(clippy::unwrap_used)]

use portcullis::clock::ManualClock;
use portcullis::{KeySet, Verifier};
use portcullis_issuer::{DevIssuer, Tenant, pkce};
use portcullis_testkit::claims::part;
use reqwest::header::HeaderMap;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

const CALLBACK: &str = "http://127.0.0.1:3000/callback";
const VERIFIER: &str = "a-code-verifier-that-is-long-enough-0123456789";
const HOSTILE: &str = "\"'<>&</script><script>alert(1)</script><!--";

/// A tenant with a public SPA (code only) and a regular web app with a secret that may also use implicit.
const TENANT: &str = r#"
default_audience = "https://api.example.com"
[[apis]]
audience = "https://api.example.com"
permissions = ["read:messages"]
[[clients]]
client_id = "spa"
type = "spa"
grants = ["authorization_code", "refresh_token"]
callbacks = ["http://127.0.0.1:3000/callback", "http://127.0.0.1:3001/callback"]
web_origins = ["http://127.0.0.1:3000"]
[[clients]]
client_id = "web"
type = "regular_web"
client_secret = "web-secret"
grants = ["authorization_code", "implicit"]
callbacks = ["http://127.0.0.1:3000/callback"]
web_origins = ["http://127.0.0.1:3000"]
[[users]]
id = "alice"
name = "Alice"
email = "alice@example.com"
permissions = { "https://api.example.com" = ["read:messages"] }
[[users]]
id = "bob"
name = "Bob"
"#;

struct Run {
    issuer: DevIssuer,
    base: String,
    http: reqwest::Client,
}

/// An answer, read whole.
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: String,
    /// The session cookie's name for the issuer that answered: `portcullis_session_<its port>`.
    cookie_name: String,
}

impl Reply {
    fn location(&self) -> url::Url {
        let location =
            self.headers.get("location").unwrap_or_else(|| panic!("no Location: {} {}", self.status, self.body));
        url::Url::parse(location.to_str().unwrap()).unwrap()
    }

    /// The answer's pairs from the query (`query`) or the fragment.
    fn pairs(&self, query: bool) -> HashMap<String, String> {
        assert_eq!(self.status, 303, "{}", self.body);
        let location = self.location();
        assert!(location.as_str().starts_with(CALLBACK), "{location}");
        if query {
            assert!(location.fragment().is_none(), "{location}");
            location.query_pairs().into_owned().collect()
        } else {
            assert!(location.query().is_none(), "nothing in the query: {location}");
            url::form_urlencoded::parse(location.fragment().unwrap().as_bytes()).into_owned().collect()
        }
    }

    /// The session cookie this answer sets, if any.
    fn cookie(&self) -> Option<String> {
        let set = self
            .headers
            .get_all("set-cookie")
            .iter()
            .find_map(|v| v.to_str().unwrap().strip_prefix(&format!("{}=", self.cookie_name)).map(str::to_owned))?;
        Some(set.split(';').next().unwrap().to_owned())
    }

    /// The page shows an error and redirects nowhere.
    fn assert_page(&self, status: u16, says: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert!(self.headers.get("location").is_none(), "{:?}", self.headers);
        assert!(self.headers.get("set-cookie").is_none(), "{:?}", self.headers);
        assert!(self.body.contains(says), "{says:?} in {}", self.body);
    }
}

/// The issuer on a loopback port, its clock frozen at the current time (moved only by the test).
async fn start(tenant: &str) -> Run {
    let (listener, address) = portcullis_testkit::net::listen().await;
    let clock = Arc::new(ManualClock::at_unix(portcullis_testkit::claims::now()));
    let issuer =
        DevIssuer::with_clock(Tenant::from_toml(tenant).unwrap(), &format!("http://{address}/"), clock).unwrap();
    tokio::spawn(portcullis_issuer::serve(listener, issuer.clone()));
    let base = issuer.issuer().to_owned();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    Run { issuer, base, http }
}

impl Run {
    async fn read(response: reqwest::Response) -> Reply {
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let cookie_name = format!("portcullis_session_{}", response.url().port_or_known_default().unwrap());
        Reply { status, headers, body: response.text().await.unwrap(), cookie_name }
    }

    /// The `Cookie` header that sends `value` as this issuer's session cookie.
    fn cookie(&self, value: &str) -> String {
        format!("portcullis_session_{}={value}", url::Url::parse(&self.base).unwrap().port().unwrap())
    }

    async fn get(&self, params: &[(&str, &str)], cookie: Option<&str>) -> Reply {
        let mut request = self.http.get(format!("{}authorize", self.base)).query(params);
        if let Some(cookie) = cookie {
            request = request.header("cookie", self.cookie(cookie));
        }
        Self::read(request.send().await.unwrap()).await
    }

    async fn post(&self, params: &[(&str, &str)], headers: &[(&str, &str)]) -> Reply {
        let mut request = self.http.post(format!("{}authorize", self.base)).form(params);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Self::read(request.send().await.unwrap()).await
    }

    async fn verifier(&self, audience: &str) -> Verifier {
        let jwks = self.http.get(format!("{}.well-known/jwks.json", self.base)).send().await.unwrap();
        let keys = KeySet::from_jwks_json(jwks.text().await.unwrap().as_bytes()).unwrap();
        // Checked on the issuer's clock, which the tests move.
        let clock = Arc::new(ManualClock::at_unix(u64::try_from(self.issuer.now()).unwrap()));
        Verifier::builder()
            .issuer(&self.base)
            .audience(audience)
            .keys(keys)
            .clock(clock)
            .without_cache()
            .build()
            .unwrap()
    }

    /// The claims of a verified ID token for `client`.
    async fn id_token(&self, token: &str, client: &str) -> Value {
        self.verifier(client).await.verify(token).unwrap();
        part(token, 1)
    }
}

/// The SPA's code request.
fn code_request(challenge: &str) -> Vec<(&str, &str)> {
    vec![
        ("response_type", "code"),
        ("client_id", "spa"),
        ("redirect_uri", CALLBACK),
        ("scope", "openid profile"),
        ("state", "st"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
}

/// The web app's implicit ID-token request.
fn implicit(response_type: &'static str, nonce: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("response_type", response_type),
        ("client_id", "web"),
        ("redirect_uri", CALLBACK),
        ("scope", "openid profile email read:messages"),
        ("state", "st"),
        ("nonce", nonce),
    ]
}

fn with<'a>(mut params: Vec<(&'a str, &'a str)>, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    params.extend_from_slice(extra);
    params
}

/// base64url(left half of SHA-256(value)), as `at_hash` and `c_hash` are made.
fn half_hash(value: &str) -> String {
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
    base64_simd::URL_SAFE_NO_PAD.encode_to_string(&hash.as_ref()[..16])
}

#[tokio::test]
async fn every_response_type_answers_by_its_default_mode() {
    let r = start(TENANT).await;
    let challenge = pkce::challenge_of(VERIFIER);

    // code: in the query, with state.
    let reply = r.get(&with(code_request(&challenge), &[("login_hint", "alice")]), None).await;
    let pairs = reply.pairs(true);
    assert_eq!((pairs.len(), pairs["state"].as_str()), (2, "st"), "{pairs:?}");
    assert_eq!(reply.headers["cache-control"], "no-store");

    // id_token: in the fragment, nonce echoed, the login's sid and auth_time, no code and no access token.
    let reply = r.get(&with(implicit("id_token", "n-1"), &[("login_hint", "alice")]), None).await;
    let pairs = reply.pairs(false);
    let mut names: Vec<&str> = pairs.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["id_token", "state"]);
    let claims = r.id_token(&pairs["id_token"], "web").await;
    assert_eq!((claims["sub"].as_str(), claims["nonce"].as_str()), (Some("auth0|alice"), Some("n-1")));
    assert_eq!(claims["auth_time"], claims["iat"]);
    assert!(claims["sid"].as_str().is_some_and(|sid| !sid.is_empty()), "{claims}");
    assert_eq!((claims["name"].as_str(), claims["email"].as_str()), (Some("Alice"), Some("alice@example.com")));
    assert!(claims.get("at_hash").is_none() && claims.get("c_hash").is_none(), "{claims}");

    // id_token token, in either order: the access token and its at_hash.
    for response_type in ["id_token token", "token id_token"] {
        let reply = r.get(&with(implicit(response_type, "n-2"), &[("login_hint", "alice")]), None).await;
        let pairs = reply.pairs(false);
        assert_eq!((pairs["token_type"].as_str(), pairs["expires_in"].as_str()), ("Bearer", "86400"));
        assert_eq!(pairs["scope"], "openid profile email read:messages");
        let access = &pairs["access_token"];
        let verified = r.verifier("https://api.example.com").await.verify(access).unwrap();
        assert_eq!(verified.subject(), Some("auth0|alice"));
        let claims = r.id_token(&pairs["id_token"], "web").await;
        assert_eq!(claims["at_hash"].as_str(), Some(half_hash(access).as_str()));
        assert_eq!(claims["nonce"], "n-2");
        assert!(!pairs.contains_key("code"));
    }

    // code id_token (hybrid): the code and its c_hash in the fragment; the code is exchanged with the secret.
    let reply = r.get(&with(implicit("code id_token", "n-3"), &[("login_hint", "bob")]), None).await;
    let pairs = reply.pairs(false);
    let code = &pairs["code"];
    let claims = r.id_token(&pairs["id_token"], "web").await;
    assert_eq!(claims["c_hash"].as_str(), Some(half_hash(code).as_str()));
    assert_eq!(claims["sub"], "auth0|bob");
    assert!(!pairs.contains_key("access_token"));
    let exchanged = r
        .http
        .post(format!("{}oauth/token", r.base))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "web"),
            ("client_secret", "web-secret"),
            ("code", code.as_str()),
            ("redirect_uri", CALLBACK),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(exchanged.status(), 200);
    let body: Value = exchanged.json().await.unwrap();
    assert_eq!(part(body["access_token"].as_str().unwrap(), 1)["sub"], "auth0|bob");
}

#[tokio::test]
async fn form_post_and_web_message_pages_keep_hostile_values_inert() {
    let r = start(TENANT).await;
    let challenge = pkce::challenge_of(VERIFIER);
    let mut request = code_request(&challenge);
    request[4].1 = HOSTILE;

    // form_post: every value an escaped attribute, one fixed script allowed by its hash and nothing else.
    let reply = r.get(&with(request.clone(), &[("response_mode", "form_post"), ("login_hint", "alice")]), None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.headers.get("location").is_none());
    let escaped = "&quot;'&lt;&gt;&amp;&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;!--";
    assert!(reply.body.contains(&format!("<form method=\"post\" action=\"{CALLBACK}\">")), "{}", reply.body);
    assert!(
        reply.body.contains(&format!("<input type=\"hidden\" name=\"state\" value=\"{escaped}\">")),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("<input type=\"hidden\" name=\"code\" value=\""), "{}", reply.body);
    assert_eq!(reply.body.matches("<script").count(), 1, "{}", reply.body);
    assert!(reply.body.contains("<script>document.forms[0].submit();</script>"), "{}", reply.body);
    let policy = reply.headers["content-security-policy"].to_str().unwrap();
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"document.forms[0].submit();");
    assert_eq!(
        policy,
        format!("default-src 'none'; script-src 'sha256-{}'", base64_simd::STANDARD.encode_to_string(hash))
    );

    // web_message: the answer as inert JSON, posted to the callback's origin only.
    let reply = r.get(&with(request.clone(), &[("response_mode", "web_message"), ("login_hint", "alice")]), None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!((reply.body.matches("<script").count(), reply.body.matches("</script>").count()), (1, 1));
    let script = reply.body.split("<script>").nth(1).unwrap().split("</script>").next().unwrap();
    for bad in ["<", ">", "&", "\"*\""] {
        assert!(!script.contains(bad), "{bad} in {script}");
    }
    let arguments = script.strip_prefix("(window.opener || window.parent).postMessage(").unwrap();
    let arguments = arguments.strip_suffix(");").unwrap();
    let (message, origin) = arguments.rsplit_once(", ").unwrap();
    assert_eq!(origin, "\"http://127.0.0.1:3000\"");
    let message: Value = serde_json::from_str(message).unwrap();
    assert_eq!(message["type"], "authorization_response");
    assert_eq!(message["response"]["state"], HOSTILE, "the state reads back unchanged");
    assert!(message["response"]["code"].as_str().is_some_and(|c| c.len() > 20), "{message}");
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, script.as_bytes());
    assert_eq!(
        reply.headers["content-security-policy"].to_str().unwrap(),
        format!(
            "default-src 'none'; script-src 'sha256-{}'; frame-ancestors http://127.0.0.1:3000",
            base64_simd::STANDARD.encode_to_string(hash)
        )
    );

    // An error through web_message (prompt=none, no session) is just as inert.
    let reply = r.get(&with(request, &[("response_mode", "web_message"), ("prompt", "none")]), None).await;
    let script = reply.body.split("<script>").nth(1).unwrap().split("</script>").next().unwrap();
    assert!(!script.contains('<') && !script.contains('>'), "{script}");
    let message = script.split_once('(').unwrap().1.split_once('(').unwrap().1.rsplit_once(", ").unwrap().0;
    let message: Value = serde_json::from_str(message).unwrap();
    assert_eq!(
        (message["response"]["error"].as_str(), message["response"]["state"].as_str()),
        (Some("login_required"), Some(HOSTILE))
    );

    // An error description that repeats a hostile value (an unknown resource) through both pages.
    let resource = "https://x.example/'\"</script><script>alert(1)</script>&<!--";
    let silent = [
        ("response_type", "code"),
        ("client_id", "spa"),
        ("redirect_uri", CALLBACK),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("prompt", "none"),
        ("resource", resource),
    ];
    let reply = r.get(&with(silent.to_vec(), &[("response_mode", "web_message")]), None).await;
    let script = reply.body.split("<script>").nth(1).unwrap().split("</script>").next().unwrap();
    assert_eq!(reply.body.matches("<script").count(), 1, "{}", reply.body);
    assert!(!script.contains('<') && !script.contains('>') && !script.contains('&'), "{script}");
    let message = script.split_once("postMessage(").unwrap().1.rsplit_once(", ").unwrap().0;
    let message: Value = serde_json::from_str(message).unwrap();
    assert_eq!(message["response"]["error"], "invalid_target");
    let description = message["response"]["error_description"].as_str().unwrap();
    assert!(description.contains("</script><script>alert(1)</script>&<!--"), "{description}");
    let reply = r.get(&with(silent.to_vec(), &[("response_mode", "form_post")]), None).await;
    assert_eq!(reply.body.matches("<script").count(), 1, "{}", reply.body);
    assert!(reply.body.contains("&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;&lt;!--"), "{}", reply.body);

    // The nonce is hostile too: the ID token carries it as it was sent.
    let reply = r
        .get(
            &[
                ("response_type", "id_token"),
                ("client_id", "web"),
                ("redirect_uri", CALLBACK),
                ("nonce", HOSTILE),
                ("response_mode", "form_post"),
                ("login_hint", "alice"),
            ],
            None,
        )
        .await;
    let token = reply.body.split("name=\"id_token\" value=\"").nth(1).unwrap().split('"').next().unwrap();
    assert_eq!(r.id_token(token, "web").await["nonce"], HOSTILE);
}

#[tokio::test]
async fn web_message_goes_only_to_a_listed_web_origin() {
    let r = start(TENANT).await;
    let challenge = pkce::challenge_of(VERIFIER);
    // 3001/callback is an allowed callback, but 127.0.0.1:3001 is not an allowed web origin.
    let mut request = with(code_request(&challenge), &[("response_mode", "web_message")]);
    request[2].1 = "http://127.0.0.1:3001/callback";
    for extra in [&[("login_hint", "alice")][..], &[("prompt", "none")][..], &[][..]] {
        let reply = r.get(&with(request.clone(), extra), None).await;
        reply.assert_page(400, "is not an allowed web origin of client spa");
        assert!(!reply.body.contains("postMessage") && !reply.body.contains("<script"), "{}", reply.body);
    }
}

#[tokio::test]
async fn form_post_posts_to_web_callbacks_only() {
    // A tenant may list an app's own scheme as a callback; a page never posts a form there.
    let r = start(&TENANT.replace(
        "callbacks = [\"http://127.0.0.1:3000/callback\"]\nweb_origins",
        "callbacks = [\"http://127.0.0.1:3000/callback\", \"javascript:alert(1)//\", \"com.example.app:/cb\"]\nweb_origins",
    ))
    .await;
    for callback in ["javascript:alert(1)//", "com.example.app:/cb"] {
        let mut request = with(implicit("id_token", "n"), &[("response_mode", "form_post"), ("login_hint", "alice")]);
        request[2].1 = callback;
        let reply = r.get(&request, None).await;
        reply.assert_page(400, "response_mode=form_post needs an http or https callback");
        assert!(!reply.body.contains("<form"), "{}", reply.body);
    }
    // The app's scheme is fine for a redirect.
    let mut request = with(implicit("id_token", "n"), &[("login_hint", "alice")]);
    request[2].1 = "com.example.app:/cb";
    let reply = r.get(&request, None).await;
    assert_eq!(reply.status, 303);
    assert!(reply.headers["location"].to_str().unwrap().starts_with("com.example.app:/cb#"), "{:?}", reply.headers);
}

#[tokio::test]
async fn redirect_uris_that_nearly_match_are_never_redirected_to() {
    let r = start(TENANT).await;
    let challenge = pkce::challenge_of(VERIFIER);
    for near in [
        "http://127.0.0.1:3000/callback/",
        "http://127.0.0.1:3000/Callback",
        "HTTP://127.0.0.1:3000/callback",
        "http://127.0.0.1:3000:80/callback",
        "http://127.0.0.1:3002/callback",
        "http://127.0.0.1/callback",
        "http://localhost:3000/callback",
        "https://127.0.0.1:3000/callback",
        "http://a@127.0.0.1:3000/callback",
        "http://127.0.0.1:3000@evil.example/callback",
        "http://evil.example/http://127.0.0.1:3000/callback",
        "http://127.0.0.1:3000/%63allback",
        "http://127.0.0.1:3000/callback%2F..%2Fevil",
        "http://127.0.0.1:3000/x/../callback",
        "http://127.0.0.1:3000/callback?next=evil",
        "http://127.0.0.1:3000/callback#",
        " http://127.0.0.1:3000/callback",
        "http://127.0.0.1:3000/callback\n",
    ] {
        for extra in
            [&[("login_hint", "alice")][..], &[("prompt", "none")][..], &[("response_mode", "web_message")][..]]
        {
            let mut request = with(code_request(&challenge), extra);
            request[2].1 = near;
            let reply = r.get(&request, None).await;
            reply.assert_page(400, "Callback URL mismatch");
            assert!(!reply.body.contains("postMessage"), "{near:?}");
        }
        // Nor through a posted form.
        let mut form = with(code_request(&challenge), &[("user", "alice")]);
        form[2].1 = near;
        r.post(&form, &[]).await.assert_page(400, "Callback URL mismatch");
    }
    // Without a client, nothing can be checked: the page answers.
    let reply = r.get(&[("response_type", "code"), ("redirect_uri", CALLBACK)], None).await;
    reply.assert_page(400, "client_id is required");
    let reply = r.get(&[("response_type", "code"), ("client_id", "nobody"), ("redirect_uri", CALLBACK)], None).await;
    reply.assert_page(400, "unknown client_id");
}

#[tokio::test]
async fn errors_after_the_redirect_uri_is_checked_go_back_by_the_response_mode() {
    let r = start(TENANT).await;
    let error_of = |reply: &Reply, query: bool| {
        let pairs = reply.pairs(query);
        assert_eq!(pairs["state"], "st", "{pairs:?}");
        assert!(!pairs.contains_key("code") && !pairs.contains_key("id_token"), "{pairs:?}");
        (pairs["error"].clone(), pairs["error_description"].clone())
    };
    let base = [("client_id", "web"), ("redirect_uri", CALLBACK), ("state", "st"), ("login_hint", "alice")];
    // Extra parameters, whether the error comes in the query, the error, and what its description says.
    type Case<'a> = (&'a [(&'a str, &'a str)], bool, &'a str, &'a str);
    let cases: &[Case] = &[
        (&[("response_type", "token")], true, "unsupported_response_type", "response_type must be"),
        (&[("response_type", "code code")], true, "unsupported_response_type", "response_type must be"),
        (&[("response_type", "code"), ("response_mode", "jsonp")], true, "invalid_request", "response_mode must be"),
        (
            &[("response_type", "id_token"), ("response_mode", "jsonp"), ("nonce", "n")],
            false,
            "invalid_request",
            "response_mode must be",
        ),
        // Tokens are never put in a query: the error comes in the fragment.
        (
            &[("response_type", "id_token"), ("response_mode", "query"), ("nonce", "n")],
            false,
            "invalid_request",
            "cannot carry tokens",
        ),
        (
            &[("response_type", "id_token token"), ("response_mode", "query"), ("nonce", "n")],
            false,
            "invalid_request",
            "cannot carry tokens",
        ),
        (
            &[("response_type", "code id_token"), ("response_mode", "query"), ("nonce", "n")],
            false,
            "invalid_request",
            "cannot carry tokens",
        ),
        // Implicit without a nonce, or without openid.
        (&[("response_type", "id_token")], false, "invalid_request", "nonce is required"),
        (&[("response_type", "code id_token"), ("scope", "openid")], false, "invalid_request", "nonce is required"),
        (&[("response_type", "id_token"), ("nonce", "n"), ("scope", "profile")], false, "invalid_scope", "openid"),
        (&[("response_type", "code"), ("prompt", "none login")], true, "invalid_request", "prompt must be"),
        (&[("response_type", "code"), ("prompt", "always")], true, "invalid_request", "prompt must be"),
        (&[("response_type", "code"), ("max_age", "-1")], true, "invalid_request", "max_age"),
        (&[("response_type", "code"), ("max_age", "+5")], true, "invalid_request", "max_age"),
        (&[("response_type", "code"), ("max_age", "1e3")], true, "invalid_request", "max_age"),
    ];
    for (extra, query, error, says) in cases {
        let reply = r.get(&[&base[..], extra].concat(), None).await;
        let (got, description) = error_of(&reply, *query);
        assert_eq!(got, *error, "{extra:?}: {description}");
        assert!(description.contains(says), "{extra:?}: {description}");
        assert!(reply.cookie().is_none(), "{extra:?}: no login happened");
    }
    // A client without the implicit grant asks for an ID token: unauthorized_client, in the fragment.
    let spa =
        [("client_id", "spa"), ("redirect_uri", CALLBACK), ("state", "st"), ("login_hint", "alice"), ("nonce", "n")];
    for response_type in ["id_token", "id_token token"] {
        let reply = r.get(&[&spa[..], &[("response_type", response_type)]].concat(), None).await;
        assert_eq!(error_of(&reply, false).0, "unauthorized_client");
    }
    // An error through form_post is a posted form too.
    let reply =
        r.get(&[&base[..], &[("response_type", "id_token"), ("response_mode", "form_post")]].concat(), None).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("<input type=\"hidden\" name=\"error\" value=\"invalid_request\">"), "{}", reply.body);
    assert!(reply.body.contains("<input type=\"hidden\" name=\"state\" value=\"st\">"), "{}", reply.body);
    // The app's own mistakes are shown to its developer (PKCE, the API), unless the request is silent.
    let no_pkce = [("response_type", "code"), ("client_id", "spa"), ("redirect_uri", CALLBACK), ("state", "st")];
    r.get(&no_pkce, None).await.assert_page(400, "PKCE");
    let silent = r.get(&[&no_pkce[..], &[("prompt", "none")]].concat(), None).await;
    let (error, description) = error_of(&silent, true);
    assert_eq!(error, "invalid_request");
    assert!(description.contains("PKCE"), "{description}");
    let unknown_api = [&base[..], &[("response_type", "code"), ("audience", "https://unknown.example")]].concat();
    r.get(&unknown_api, None).await.assert_page(400, "unknown audience");
}

#[tokio::test]
async fn repeated_parameters_are_refused() {
    let r = start(TENANT).await;
    let challenge = pkce::challenge_of(VERIFIER);
    let request = with(code_request(&challenge), &[("login_hint", "alice")]);
    for (name, value) in [
        ("redirect_uri", "https://evil.example/cb"),
        ("redirect_uri", CALLBACK),
        ("client_id", "web"),
        ("response_type", "id_token token"),
        ("response_mode", "form_post"),
        ("prompt", "none"),
        ("state", "other"),
        ("nonce", "n"),
        ("scope", "openid"),
        ("code_challenge", "x"),
        ("login_hint", "bob"),
        ("max_age", "0"),
    ] {
        // A name the request lacks is sent twice; either order: neither the first nor the last value wins.
        let base = if request.iter().any(|(n, _)| *n == name) {
            request.clone()
        } else {
            with(request.clone(), &[(name, "x")])
        };
        for params in [with(base.clone(), &[(name, value)]), [&[(name, value)][..], &base[..]].concat()] {
            let reply = r.get(&params, None).await;
            reply.assert_page(400, &format!("{name} is repeated"));
        }
    }
    // A posted form that names two users.
    let form = with(code_request(&challenge), &[("user", "alice"), ("user", "bob")]);
    r.post(&form, &[]).await.assert_page(400, "user is repeated");
    // resource may repeat (RFC 8707); two different ones are refused by that rule, on the page.
    let two =
        with(request.clone(), &[("resource", "https://api.example.com"), ("resource", "https://api.example.com")]);
    assert_eq!(r.get(&two, None).await.status, 303, "the same resource twice is one resource");
}

#[tokio::test]
async fn prompt_none_answers_from_the_session_and_never_logs_in() {
    let r = start(TENANT).await;
    let silent = |nonce: &'static str| with(implicit("id_token", nonce), &[("prompt", "none")]);
    let login_required = |reply: &Reply| {
        let pairs = reply.pairs(false);
        assert_eq!((pairs["error"].as_str(), pairs["state"].as_str()), ("login_required", "st"), "{pairs:?}");
        assert!(reply.cookie().is_none() && !pairs.contains_key("id_token"));
    };
    // No session: login_required, and login_hint does not log anybody in.
    login_required(&r.get(&silent("n"), None).await);
    login_required(&r.get(&with(silent("n"), &[("login_hint", "alice")]), None).await);
    // A forged cookie of the right shape, a malformed one, an empty one.
    let forged = base64_simd::URL_SAFE_NO_PAD.encode_to_string([0x5a; 32]);
    for cookie in [forged.as_str(), "short", "", "../../etc"] {
        login_required(&r.get(&silent("n"), Some(cookie)).await);
    }

    // An interactive login sets the cookie: 256 random bits, HttpOnly, SameSite=Lax, for the whole issuer.
    let login = r.get(&with(implicit("id_token", "n-login"), &[("login_hint", "alice")]), None).await;
    let set = login.headers["set-cookie"].to_str().unwrap().to_owned();
    let cookie = login.cookie().unwrap();
    assert_eq!(set, format!("{}; Path=/; HttpOnly; SameSite=Lax", r.cookie(&cookie)), "no Secure on http");
    assert_eq!(base64_simd::URL_SAFE_NO_PAD.decode_to_vec(&cookie).unwrap().len(), 32);
    let first = r.id_token(&login.pairs(false)["id_token"], "web").await;

    // prompt=none with it: the same login (sid, auth_time), this request's nonce, no new cookie.
    r.issuer.shift_clock(100);
    let reply = r.get(&silent("n-silent"), Some(&cookie)).await;
    assert!(reply.cookie().is_none(), "a silent answer does not start a session");
    let again = r.id_token(&reply.pairs(false)["id_token"], "web").await;
    assert_eq!(
        (&again["sid"], &again["auth_time"], &again["sub"]),
        (&first["sid"], &first["auth_time"], &first["sub"])
    );
    assert_eq!(again["nonce"], "n-silent");
    assert_eq!(again["iat"].as_i64().unwrap() - first["auth_time"].as_i64().unwrap(), 100);
    // login_hint naming the session's user: the session answers; naming anyone else (known or not): the app asked
    // for another user than the one logged in, so login_required, never the session user's tokens.
    let hinted = r.get(&with(silent("n"), &[("login_hint", "alice")]), Some(&cookie)).await;
    assert_eq!(r.id_token(&hinted.pairs(false)["id_token"], "web").await["sub"], "auth0|alice");
    for other in ["bob", "mallory", "Alice"] {
        login_required(&r.get(&with(silent("n"), &[("login_hint", other)]), Some(&cookie)).await);
    }

    // max_age: a login older than it is no session; max_age=0 always asks for a new login.
    for max_age in ["0", "50", "99"] {
        login_required(&r.get(&with(silent("n"), &[("max_age", max_age)]), Some(&cookie)).await);
    }
    for max_age in ["100", "1000"] {
        let reply = r.get(&with(silent("n"), &[("max_age", max_age)]), Some(&cookie)).await;
        assert!(reply.pairs(false).contains_key("id_token"), "max_age={max_age}");
    }

    // A code through prompt=none, exchanged: alice's token.
    let challenge = pkce::challenge_of(VERIFIER);
    let reply = r.get(&with(code_request(&challenge), &[("prompt", "none")]), Some(&cookie)).await;
    let code = reply.pairs(true)["code"].clone();
    let exchanged = r
        .http
        .post(format!("{}oauth/token", r.base))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "spa"),
            ("code", code.as_str()),
            ("code_verifier", VERIFIER),
            ("redirect_uri", CALLBACK),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = exchanged.json().await.unwrap();
    assert_eq!(part(body["access_token"].as_str().unwrap(), 1)["sub"], "auth0|alice");
    // The code carried the session's login into the exchange's ID token.
    let claims = r.id_token(body["id_token"].as_str().unwrap(), "spa").await;
    assert_eq!((&claims["sid"], &claims["auth_time"]), (&first["sid"], &first["auth_time"]));

    // Unused for the tenant's session lifetime (three days): gone.
    r.issuer.shift_clock(259_199);
    assert!(r.get(&silent("n"), Some(&cookie)).await.pairs(false).contains_key("id_token"), "used just in time");
    r.issuer.shift_clock(259_200);
    login_required(&r.get(&silent("n"), Some(&cookie)).await);
    login_required(&r.get(&silent("n"), Some(&cookie)).await);

    // A posted login form never carries prompt=none.
    let form = with(implicit("id_token", "n"), &[("prompt", "none"), ("user", "alice")]);
    r.post(&form, &[]).await.assert_page(400, "prompt=none never logs anybody in");
}

#[tokio::test]
async fn a_login_as_another_user_replaces_the_session() {
    let r = start(TENANT).await;
    let alice = r.get(&with(implicit("id_token", "n"), &[("login_hint", "alice")]), None).await.cookie().unwrap();
    // The login page remembers alice first, and may not be framed.
    let page = r.get(&implicit("id_token", "n"), Some(&alice)).await;
    assert_eq!(page.status, 200);
    let (continue_at, list_at) =
        (page.body.find("Continue as Alice").unwrap(), page.body.find("Log in as Alice").unwrap());
    assert!(continue_at < list_at);
    assert!(page.body.contains("<button type=\"submit\" name=\"user\" value=\"alice\""), "{}", page.body);
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert_eq!(page.headers["content-security-policy"], "frame-ancestors 'none'");
    assert!(!r.get(&implicit("id_token", "n"), None).await.body.contains("Continue as"));

    // bob logs in from the same browser: a new cookie; alice's no longer names a session.
    let form = with(implicit("id_token", "n"), &[("user", "bob")]);
    let reply = r.post(&form, &[("cookie", &r.cookie(&alice)), ("sec-fetch-site", "same-origin")]).await;
    let bob = reply.cookie().unwrap();
    assert_ne!(bob, alice);
    let bob_login = r.id_token(&reply.pairs(false)["id_token"], "web").await;
    let silent = with(implicit("id_token", "n"), &[("prompt", "none")]);
    let old = r.get(&silent, Some(&alice)).await.pairs(false);
    assert_eq!(old["error"], "login_required", "{old:?}");
    let now = r.get(&silent, Some(&bob)).await.pairs(false);
    let claims = r.id_token(&now["id_token"], "web").await;
    assert_eq!((claims["sub"].as_str(), &claims["sid"]), (Some("auth0|bob"), &bob_login["sid"]));
    // alice logging in again gets a new session, not her old one back.
    let again = r.get(&with(implicit("id_token", "n"), &[("login_hint", "alice")]), Some(&bob)).await;
    let claims = r.id_token(&again.pairs(false)["id_token"], "web").await;
    assert_ne!(again.cookie().unwrap(), alice);
    assert_ne!(claims["sid"], bob_login["sid"]);
}

#[tokio::test]
async fn only_the_issuers_own_page_may_post_a_login() {
    let r = start(TENANT).await;
    let form = with(implicit("id_token", "n"), &[("user", "alice")]);
    for site in ["cross-site", "same-site", "none"] {
        let reply = r.post(&form, &[("sec-fetch-site", site)]).await;
        reply.assert_page(403, "posted from the issuer's own login page only");
    }
    let reply = r.post(&form, &[("sec-fetch-site", "same-origin")]).await;
    assert!(reply.pairs(false).contains_key("id_token"));
    assert!(reply.cookie().is_some());
    // Unknown users and no user at all are refused on the page.
    r.post(&with(implicit("id_token", "n"), &[("user", "mallory")]), &[]).await.assert_page(400, "unknown user");
    r.post(&implicit("id_token", "n"), &[]).await.assert_page(400, "pick a user");
    r.get(&with(implicit("id_token", "n"), &[("login_hint", "mallory")]), None).await.assert_page(400, "unknown user");
}

#[tokio::test]
async fn without_an_audience_the_token_is_for_the_default_api_or_userinfo_alone() {
    let aud_of = |token: &str| -> Vec<String> {
        match &part(token, 1)["aud"] {
            Value::String(aud) => vec![aud.clone()],
            Value::Array(auds) => auds.iter().map(|a| a.as_str().unwrap().to_owned()).collect(),
            other => panic!("aud {other}"),
        }
    };
    let token_of = |reply: Reply| reply.pairs(false)["access_token"].clone();
    // The tenant's default audience.
    let r = start(TENANT).await;
    let token = token_of(r.get(&with(implicit("id_token token", "n"), &[("login_hint", "alice")]), None).await);
    assert!(aud_of(&token).contains(&"https://api.example.com".to_owned()), "{:?}", aud_of(&token));
    assert_eq!(part(&token, 1)["permissions"], serde_json::json!(["read:messages"]));

    // No default: a token for /userinfo alone, which /userinfo accepts; the API's scopes are not granted.
    let r = start(&TENANT.replace("default_audience = \"https://api.example.com\"", "")).await;
    let token = token_of(r.get(&with(implicit("id_token token", "n"), &[("login_hint", "alice")]), None).await);
    let userinfo = format!("{}userinfo", r.base);
    assert!(aud_of(&token).iter().all(|aud| *aud == userinfo), "{:?}", aud_of(&token));
    let claims = part(&token, 1);
    assert!(claims.get("permissions").is_none(), "{claims}");
    assert_eq!(claims["scope"], "openid profile email");
    let info = r.http.get(&userinfo).bearer_auth(&token).send().await.unwrap();
    assert_eq!(info.status(), 200);
    // An audience named explicitly still counts.
    let named =
        with(implicit("id_token token", "n"), &[("login_hint", "alice"), ("audience", "https://api.example.com")]);
    let token = token_of(r.get(&named, None).await);
    assert!(aud_of(&token).contains(&"https://api.example.com".to_owned()));
}

#[tokio::test]
async fn the_cookie_is_secure_when_the_issuer_url_is_https() {
    // Served over plain HTTP here, but named by an https URL (as behind a TLS proxy): the cookie is Secure, and
    // SameSite=None so that an app on another site can renew silently in an iframe, as with Auth0.
    let (listener, address) = portcullis_testkit::net::listen().await;
    let issuer = DevIssuer::new(Tenant::from_toml(TENANT).unwrap(), "https://issuer.example/").unwrap();
    tokio::spawn(portcullis_issuer::serve(listener, issuer));
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let query = with(implicit("id_token", "n"), &[("login_hint", "alice")]);
    let reply = Run::read(http.get(format!("http://{address}/authorize")).query(&query).send().await.unwrap()).await;
    assert_eq!(reply.status, 303, "{}", reply.body);
    // Named by the issuer URL's port (443 for https), not the port it is served on behind the proxy.
    let set = reply.headers["set-cookie"].to_str().unwrap();
    let cookie = set.strip_prefix("portcullis_session_443=").unwrap().split(';').next().unwrap();
    assert_eq!(set, format!("portcullis_session_443={cookie}; Path=/; HttpOnly; SameSite=None; Secure"));
    let logout = Run::read(http.get(format!("http://{address}/v2/logout")).send().await.unwrap()).await;
    assert_eq!(
        logout.headers["set-cookie"],
        "portcullis_session_443=; Path=/; Max-Age=0; HttpOnly; SameSite=None; Secure"
    );
}

#[tokio::test]
async fn an_auth0_spa_js_silent_request_is_answered_by_web_message() {
    let r = start(TENANT).await;
    let challenge = pkce::challenge_of(VERIFIER);
    // Parameters Auth0's SDKs send that this issuer ignores, as a tenant without those features does.
    let sdk = [
        ("auth0Client", "eyJuYW1lIjoiYXV0aDAtc3BhLWpzIiwidmVyc2lvbiI6IjIuMjguMyJ9"),
        ("connection", "Username-Password-Authentication"),
        ("screen_hint", "signup"),
        ("ui_locales", "de"),
        ("organization", "org_123"),
        ("nonce", "n-sdk"),
    ];
    let login = r.get(&[&code_request(&challenge)[..], &sdk[..], &[("login_hint", "alice")]].concat(), None).await;
    assert!(login.pairs(true).contains_key("code"));
    let cookie = login.cookie().unwrap();
    // getTokenSilently: prompt=none in a hidden iframe, answered by postMessage to the app's origin.
    let silent =
        [&code_request(&challenge)[..], &sdk[..], &[("prompt", "none"), ("response_mode", "web_message")]].concat();
    let reply = r.get(&silent, Some(&cookie)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.cookie().is_none());
    let script = reply.body.split("<script>").nth(1).unwrap().split("</script>").next().unwrap();
    let (message, origin) = script.split_once("postMessage(").unwrap().1.rsplit_once(", ").unwrap();
    assert_eq!(origin, "\"http://127.0.0.1:3000\");");
    let message: Value = serde_json::from_str(message).unwrap();
    assert_eq!(
        (message["type"].as_str(), message["response"]["state"].as_str()),
        (Some("authorization_response"), Some("st"))
    );
    let code = message["response"]["code"].as_str().unwrap();
    let exchanged = r
        .http
        .post(format!("{}oauth/token", r.base))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "spa"),
            ("code", code),
            ("code_verifier", VERIFIER),
            ("redirect_uri", CALLBACK),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = exchanged.json().await.unwrap();
    let claims = r.id_token(body["id_token"].as_str().unwrap(), "spa").await;
    assert_eq!((claims["sub"].as_str(), claims["nonce"].as_str()), (Some("auth0|alice"), Some("n-sdk")));
    // Without the session, the same request hears login_required through the same channel.
    let reply = r.get(&silent, None).await;
    assert!(reply.body.contains("\"error\":\"login_required\""), "{}", reply.body);
}

#[tokio::test]
async fn a_login_hint_from_another_site_shows_the_page_instead_of_logging_in() {
    let r = start(TENANT).await;
    let hinted = with(implicit("id_token", "n"), &[("login_hint", "bob")]);
    let send = |site: Option<&'static str>, cookie: Option<String>| {
        let mut request = r.http.get(format!("{}authorize", r.base)).query(&hinted);
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site);
        }
        if let Some(cookie) = cookie {
            request = request.header("cookie", r.cookie(&cookie));
        }
        async move { Run::read(request.send().await.unwrap()).await }
    };
    let alice = r.get(&with(implicit("id_token", "n"), &[("login_hint", "alice")]), None).await.cookie().unwrap();
    // A link or a frame on another site (or a sibling one): the login page, bob offered first, nothing replaced.
    for site in ["cross-site", "same-site", "CROSS-SITE"] {
        let reply = send(Some(site), Some(alice.clone())).await;
        assert_eq!(reply.status, 200, "{site}: {}", reply.body);
        assert!(reply.cookie().is_none() && reply.headers.get("location").is_none(), "{site}");
        let (first, list) = (reply.body.find("Continue as Bob").unwrap(), reply.body.find("Log in as Alice").unwrap());
        assert!(first < list, "{site}");
    }
    let silent = r.get(&with(implicit("id_token", "n"), &[("prompt", "none")]), Some(&alice)).await;
    assert_eq!(r.id_token(&silent.pairs(false)["id_token"], "web").await["sub"], "auth0|alice", "still alice");
    // Typed in the address bar, from the issuer's own pages, or by a program (no header): logged in at once.
    for site in [Some("none"), Some("same-origin"), None] {
        let reply = send(site, None).await;
        let claims = r.id_token(&reply.pairs(false)["id_token"], "web").await;
        assert_eq!(claims["sub"], "auth0|bob", "{site:?}");
        assert!(reply.cookie().is_some(), "{site:?}");
    }
}

impl Run {
    /// A token-endpoint request from a server (no `Origin`) or, with `origin`, from a page of that origin.
    async fn token(&self, form: &[(&str, &str)], origin: Option<&str>) -> (u16, Value) {
        let mut request = self.http.post(format!("{}oauth/token", self.base)).form(form);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A code for alice by the SPA's request with `scope`.
    async fn spa_code(&self, scope: &str) -> String {
        let challenge = pkce::challenge_of(VERIFIER);
        let mut request = code_request(&challenge);
        request[3].1 = scope;
        self.get(&with(request, &[("login_hint", "alice")]), None).await.pairs(true)["code"].clone()
    }
}

fn spa_exchange(code: &str) -> Vec<(&str, &str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("client_id", "spa"),
        ("code", code),
        ("code_verifier", VERIFIER),
        ("redirect_uri", CALLBACK),
    ]
}

fn spa_refresh(token: &str) -> Vec<(&str, &str)> {
    vec![("grant_type", "refresh_token"), ("client_id", "spa"), ("refresh_token", token)]
}

#[tokio::test]
async fn a_reused_code_revokes_the_refresh_tokens_its_first_exchange_issued() {
    let r = start(TENANT).await;
    let code = r.spa_code("openid offline_access").await;
    let kept_code = r.spa_code("openid offline_access").await;
    let (status, first) = r.token(&spa_exchange(&code), None).await;
    assert_eq!(status, 200, "{first}");
    let refresh = first["refresh_token"].as_str().unwrap().to_owned();
    let (_, other) = r.token(&spa_exchange(&kept_code), None).await;
    let kept = other["refresh_token"].as_str().unwrap().to_owned();
    // The family works until the code comes back.
    let (status, rotated) = r.token(&spa_refresh(&refresh), None).await;
    assert_eq!(status, 200, "{rotated}");
    let newest = rotated["refresh_token"].as_str().unwrap().to_owned();
    // Presented again: invalid_grant as before, and the family the first exchange started is gone.
    let (status, again) = r.token(&spa_exchange(&code), None).await;
    assert_eq!((status, again["error"].as_str()), (403, Some("invalid_grant")), "{again}");
    let (status, refused) = r.token(&spa_refresh(&newest), None).await;
    assert_eq!((status, refused["error"].as_str()), (403, Some("invalid_grant")), "{refused}");
    // Another code's family is untouched; a third presentation changes nothing more.
    assert_eq!(r.token(&spa_refresh(&kept), None).await.0, 200);
    assert_eq!(r.token(&spa_exchange(&code), None).await.1["error"], "invalid_grant");
    // Past the code's lifetime the tombstone is forgotten: the code is unknown, as any other.
    r.issuer.shift_clock(301);
    assert_eq!(r.token(&spa_exchange(&code), None).await.1["error"], "invalid_grant");
}

#[tokio::test]
async fn only_the_clients_own_web_origins_may_redeem_its_codes_and_revoke_its_tokens() {
    // A second SPA on another origin: a page of that origin may not use the first SPA's code or tokens.
    let tenant = format!(
        "{TENANT}\n[[clients]]\nclient_id = \"other\"\ntype = \"spa\"\ngrants = [\"authorization_code\"]\n\
         callbacks = [\"http://127.0.0.1:5000/callback\"]\nweb_origins = [\"http://127.0.0.1:5000\"]\n"
    );
    let r = start(&tenant).await;
    let code = r.spa_code("openid offline_access").await;
    for foreign in ["http://127.0.0.1:5000", "http://evil.example", "null"] {
        let (status, body) = r.token(&spa_exchange(&code), Some(foreign)).await;
        assert_eq!((status, body["error"].as_str()), (403, Some("access_denied")), "{foreign}: {body}");
        let description = body["error_description"].as_str().unwrap();
        for says in [foreign, "spa", "Allowed Web Origins"] {
            assert!(description.contains(says), "{says:?} in {description}");
        }
    }
    // The refusals used nothing up: the SPA's own page redeems the code.
    let (status, body) = r.token(&spa_exchange(&code), Some("http://127.0.0.1:3000")).await;
    assert_eq!(status, 200, "{body}");
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    // Revocation: refused from another client's origin (the family stays), accepted from its own.
    let revoke = [("client_id", "spa"), ("token", refresh.as_str())];
    let send = |origin: Option<&'static str>| {
        let mut request = r.http.post(format!("{}oauth/revoke", r.base)).form(&revoke);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        async move { Run::read(request.send().await.unwrap()).await }
    };
    let refused = send(Some("http://127.0.0.1:5000")).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("access_denied") && refused.body.contains("http://127.0.0.1:5000"));
    let (status, rotated) = r.token(&spa_refresh(&refresh), None).await;
    assert_eq!(status, 200, "a server (no Origin) refreshes: {rotated}");
    let newest = rotated["refresh_token"].as_str().unwrap().to_owned();
    let revoke = [("client_id", "spa"), ("token", newest.as_str())];
    let own = r.http.post(format!("{}oauth/revoke", r.base)).form(&revoke).header("origin", "http://127.0.0.1:3000");
    assert_eq!(own.send().await.unwrap().status(), 200);
    assert_eq!(r.token(&spa_refresh(&newest), None).await.1["error"], "invalid_grant");
}

#[tokio::test]
async fn issuers_on_two_ports_of_one_host_keep_their_own_sessions() {
    let (a, b) = (start(TENANT).await, start(TENANT).await);
    let port = |r: &Run| url::Url::parse(&r.base).unwrap().port().unwrap();
    let alice = a.get(&with(implicit("id_token", "n"), &[("login_hint", "alice")]), None).await;
    let bob = b.get(&with(implicit("id_token", "n"), &[("login_hint", "bob")]), None).await;
    // Each cookie is named by its issuer's port, since browsers send a host's cookies to every port of it.
    let named = |reply: &Reply, port: u16| {
        let set = reply.headers["set-cookie"].to_str().unwrap();
        let prefix = format!("portcullis_session_{port}=");
        set.strip_prefix(&prefix).unwrap_or_else(|| panic!("{prefix} in {set}")).split(';').next().unwrap().to_owned()
    };
    let (alice, bob) = (named(&alice, port(&a)), named(&bob, port(&b)));
    // The browser sends both to each issuer: each answers from its own session.
    let both = format!("portcullis_session_{}={alice}; portcullis_session_{}={bob}", port(&a), port(&b));
    for (r, user) in [(&a, "auth0|alice"), (&b, "auth0|bob")] {
        let reply = r
            .http
            .get(format!("{}authorize", r.base))
            .query(&with(implicit("id_token", "n"), &[("prompt", "none")]))
            .header("cookie", &both)
            .send()
            .await
            .unwrap();
        let reply = Run::read(reply).await;
        assert_eq!(r.id_token(&reply.pairs(false)["id_token"], "web").await["sub"], user);
    }
}

#[tokio::test]
async fn the_web_message_page_may_be_framed_by_the_apps_origin_only() {
    let r = start(TENANT).await;
    let challenge = pkce::challenge_of(VERIFIER);
    let cookie = r.get(&with(code_request(&challenge), &[("login_hint", "alice")]), None).await.cookie().unwrap();
    let silent = with(code_request(&challenge), &[("prompt", "none"), ("response_mode", "web_message")]);
    for cookie in [Some(cookie.as_str()), None] {
        // The answer and the login_required error alike.
        let reply = r.get(&silent, cookie).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let policy = reply.headers["content-security-policy"].to_str().unwrap();
        let directives: Vec<&str> = policy.split(';').map(str::trim).collect();
        assert!(directives.contains(&"frame-ancestors http://127.0.0.1:3000"), "{policy}");
        assert!(directives.contains(&"default-src 'none'"), "{policy}");
        assert_eq!(directives.iter().filter(|d| d.starts_with("frame-ancestors")).count(), 1, "{policy}");
    }
}

/// An issuer named by a plain-http URL of a non-loopback host (`http://issuer.test:PORT/`, as in docker-compose or
/// on a LAN), served on loopback: browsers send it no `Sec-Fetch-Site`. The base URL to reach it, and the issuer.
async fn start_plain_http_host() -> (String, DevIssuer) {
    let (listener, address) = portcullis_testkit::net::listen().await;
    let issuer = DevIssuer::new(
        Tenant::from_toml(TENANT).unwrap(),
        &format!("http://issuer.test:{}/", address.rsplit_once(':').unwrap().1),
    )
    .unwrap();
    tokio::spawn(portcullis_issuer::serve(listener, issuer.clone()));
    (format!("http://{address}/"), issuer)
}

#[tokio::test]
async fn without_sec_fetch_site_a_login_form_from_another_origin_is_refused() {
    let (base, issuer) = start_plain_http_host().await;
    let own = issuer.issuer().trim_end_matches('/').to_owned();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let form = with(implicit("id_token", "n"), &[("user", "alice")]);
    let post = |origin: Option<&str>| {
        let mut request = http.post(format!("{base}authorize")).form(&form);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        async move { Run::read(request.send().await.unwrap()).await }
    };
    for foreign in ["http://evil.example", "null", "http://issuer.test:1", "https://issuer.test"] {
        post(Some(foreign)).await.assert_page(403, "posted from the issuer's own login page only");
    }
    // The issuer's own page, and a program (no Origin), log in.
    for origin in [Some(own.as_str()), None] {
        let reply = post(origin).await;
        assert_eq!(reply.status, 303, "{origin:?}: {}", reply.body);
        assert!(reply.headers.get("set-cookie").is_some(), "{origin:?}");
    }
}

#[tokio::test]
async fn without_sec_fetch_site_a_browser_navigation_with_login_hint_shows_the_page() {
    let (base, issuer) = start_plain_http_host().await;
    let own = issuer.issuer().to_owned();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let hinted = with(implicit("id_token", "n"), &[("login_hint", "bob")]);
    let send = |headers: &[(&'static str, String)]| {
        let mut request = http.get(format!("{base}authorize")).query(&hinted);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        async move { Run::read(request.send().await.unwrap()).await }
    };
    let navigations: [&[(&str, String)]; 6] = [
        &[("upgrade-insecure-requests", "1".into())],
        &[("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8".into())],
        &[("accept", "TEXT/HTML".into())],
        &[("referer", "http://evil.example/page".into())],
        &[("origin", "http://evil.example".into())],
        &[("origin", "null".into())],
    ];
    for headers in navigations {
        let reply = send(headers).await;
        assert_eq!(reply.status, 200, "{headers:?}: {}", reply.body);
        assert!(reply.headers.get("set-cookie").is_none() && reply.headers.get("location").is_none(), "{headers:?}");
        assert!(reply.body.contains("Continue as Bob"), "{headers:?}: {}", reply.body);
    }
    // Programs (reqwest, Node's fetch, curl) and requests from the issuer's own pages log in at once.
    let programs: [&[(&str, String)]; 4] = [
        &[],
        &[("accept", "*/*".into())],
        &[("accept", "*/*".into()), ("sec-fetch-mode", "cors".into()), ("user-agent", "node".into())],
        &[("referer", format!("{own}authorize?x=1"))],
    ];
    for headers in programs {
        let reply = send(headers).await;
        assert_eq!(reply.status, 303, "{headers:?}: {}", reply.body);
        assert!(reply.headers.get("set-cookie").is_some(), "{headers:?}");
    }
}

#[tokio::test]
async fn only_a_valid_presentation_of_a_code_uses_it_up_or_revokes_its_family() {
    let r = start(TENANT).await;
    let code = r.spa_code("openid offline_access").await;
    let exchange = spa_exchange(&code);
    let changed = |index: usize, value: &'static str| {
        let mut form = exchange.clone();
        form[index].1 = value;
        form
    };
    let without_verifier: Vec<_> = exchange.iter().filter(|(name, _)| *name != "code_verifier").copied().collect();
    let by_the_web_app = [
        ("grant_type", "authorization_code"),
        ("client_id", "web"),
        ("client_secret", "web-secret"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
    ];
    let invalid: Vec<Vec<(&str, &str)>> = vec![
        by_the_web_app.to_vec(),
        changed(4, "http://127.0.0.1:3001/callback"),
        changed(3, "a-wrong-code-verifier-that-is-long-enough-0123456789"),
        without_verifier.clone(),
        with(exchange.clone(), &[("resource", "https://other.example.com")]),
    ];
    // Anyone who read the code, presenting it without what binds it: refused, and the code is still there.
    for form in &invalid {
        let (status, body) = r.token(form, None).await;
        assert!([400, 403].contains(&status), "{form:?}: {body}");
        assert!(["invalid_grant", "invalid_target"].contains(&body["error"].as_str().unwrap()), "{form:?}: {body}");
    }
    let (status, first) = r.token(&exchange, None).await;
    assert_eq!(status, 200, "the real app's exchange: {first}");
    let refresh = first["refresh_token"].as_str().unwrap().to_owned();
    // Redeemed: invalid presentations again are refused and leave the login's refresh family alone.
    for form in &invalid {
        assert_ne!(r.token(form, None).await.0, 200, "{form:?}");
    }
    let (status, rotated) = r.token(&spa_refresh(&refresh), None).await;
    assert_eq!(status, 200, "the family lives on: {rotated}");
    let newest = rotated["refresh_token"].as_str().unwrap().to_owned();
    // A presentation that would have been valid is a replay: the family is revoked.
    assert_eq!(r.token(&exchange, None).await.1["error"], "invalid_grant");
    assert_eq!(r.token(&spa_refresh(&newest), None).await.1["error"], "invalid_grant");
}

#[tokio::test]
async fn of_many_parallel_valid_exchanges_of_a_code_exactly_one_wins() {
    let r = start(TENANT).await;
    let code = r.spa_code("openid offline_access").await;
    let exchange = spa_exchange(&code);
    let (a, b, c, d) = tokio::join!(
        r.token(&exchange, None),
        r.token(&exchange, None),
        r.token(&exchange, None),
        r.token(&exchange, None)
    );
    let answers = [a, b, c, d];
    assert_eq!(answers.iter().filter(|(status, _)| *status == 200).count(), 1, "{answers:?}");
}

#[tokio::test]
async fn the_hybrid_code_id_token_needs_both_the_code_and_the_implicit_grant() {
    // As Auth0: a hybrid flow needs the implicit grant too. An implicit-only client cannot get a code either.
    let tenant = format!(
        "{TENANT}\n[[clients]]\nclient_id = \"implicit-only\"\nclient_secret = \"s\"\ngrants = [\"implicit\"]\n\
         callbacks = [\"http://127.0.0.1:3000/callback\"]\n"
    );
    let r = start(&tenant).await;
    let challenge = pkce::challenge_of(VERIFIER);
    let hybrid = |client: &'static str| {
        let mut request = with(code_request(&challenge), &[("nonce", "n"), ("login_hint", "alice")]);
        request[0].1 = "code id_token";
        request[1].1 = client;
        request
    };
    for (client, missing) in [("spa", "implicit"), ("implicit-only", "authorization_code")] {
        let reply = r.get(&hybrid(client), None).await;
        let pairs = reply.pairs(false);
        assert_eq!(pairs["error"], "unauthorized_client", "{client}: {pairs:?}");
        assert!(pairs["error_description"].contains(missing), "{client}: {pairs:?}");
        assert!(!pairs.contains_key("code") && !pairs.contains_key("id_token"), "{client}: {pairs:?}");
        assert!(reply.cookie().is_none(), "{client}: no login happened");
    }
    // The web app has both: the hybrid answer.
    let pairs = r.get(&hybrid("web"), None).await.pairs(false);
    assert!(pairs.contains_key("code") && pairs.contains_key("id_token"), "{pairs:?}");
}

#[tokio::test]
async fn issuers_under_two_paths_of_one_host_and_port_keep_their_own_sessions() {
    // Behind one proxy at https://dev.example, under /a/ and /b/: each cookie is limited to its issuer's path, so
    // the browser sends each issuer its own session only.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for (url, path) in [
        ("https://dev.example/a/", "/a/"),
        ("https://dev.example/b/", "/b/"),
        ("https://dev.example/", "/"),
        ("https://dev.example/x;Domain=evil.example/", "/x%3BDomain=evil.example/"),
    ] {
        let (listener, address) = portcullis_testkit::net::listen().await;
        let issuer = DevIssuer::new(Tenant::from_toml(TENANT).unwrap(), url).unwrap();
        tokio::spawn(portcullis_issuer::serve(listener, issuer));
        let query = with(implicit("id_token", "n"), &[("login_hint", "alice")]);
        let reply =
            Run::read(http.get(format!("http://{address}/authorize")).query(&query).send().await.unwrap()).await;
        assert_eq!(reply.status, 303, "{url}: {}", reply.body);
        let set = reply.headers["set-cookie"].to_str().unwrap();
        let cookie = set.strip_prefix("portcullis_session_443=").unwrap().split(';').next().unwrap();
        assert_eq!(set, format!("portcullis_session_443={cookie}; Path={path}; HttpOnly; SameSite=None; Secure"));
        let logout = Run::read(http.get(format!("http://{address}/v2/logout")).send().await.unwrap()).await;
        assert_eq!(
            logout.headers["set-cookie"],
            format!("portcullis_session_443=; Path={path}; Max-Age=0; HttpOnly; SameSite=None; Secure").as_str(),
            "{url}"
        );
    }
}
