//! Logout over real HTTP: `/v2/logout` (Auth0) and `/oidc/logout` (RP-Initiated Logout 1.0) end the session and
//! return only to a client's allowed logout URLs; near-miss URLs, forged and foreign ID-token hints and client
//! mismatches get the error page and no redirect.
#![allow(clippy::unwrap_used)]

use portcullis::clock::ManualClock;
use portcullis_issuer::{Broken, DevIssuer, KeyChoice, Tenant};
use portcullis_testkit::claims::part;
use reqwest::header::HeaderMap;
use std::collections::HashMap;
use std::sync::Arc;

const CALLBACK: &str = "http://127.0.0.1:3000/callback";
const HOME: &str = "http://127.0.0.1:3000/";
const BYE: &str = "http://127.0.0.1:3000/bye?from=issuer";

const TENANT: &str = r#"
[[apis]]
audience = "https://api.example.com"
[[clients]]
client_id = "spa"
type = "spa"
grants = ["authorization_code"]
callbacks = ["http://127.0.0.1:3000/callback"]
logout_urls = ["http://127.0.0.1:3000/"]
[[clients]]
client_id = "web"
type = "regular_web"
client_secret = "web-secret"
grants = ["authorization_code", "implicit"]
callbacks = ["http://127.0.0.1:3000/callback"]
logout_urls = ["http://127.0.0.1:3000/bye?from=issuer"]
[[clients]]
client_id = "nowhere"
grants = ["implicit"]
callbacks = ["http://127.0.0.1:3000/callback"]
[[users]]
id = "alice"
"#;

struct Run {
    issuer: DevIssuer,
    base: String,
    http: reqwest::Client,
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: String,
    /// The session cookie's name for the issuer that answered: `portcullis_session_<its port>`.
    cookie_name: String,
}

impl Reply {
    /// A redirect to exactly `location`, the cookie expired.
    fn assert_redirect(&self, location: &str) {
        assert_eq!(self.status, 302, "{}", self.body);
        assert_eq!(self.headers["location"], location);
        self.assert_cookie_expired();
    }

    /// The error page saying `says`, no redirect, the cookie expired all the same.
    fn assert_refused(&self, says: &str) {
        assert_eq!(self.status, 400, "{}", self.body);
        assert!(self.headers.get("location").is_none(), "{:?}", self.headers);
        assert!(self.body.contains(says), "{says:?} in {}", self.body);
        assert!(self.body.contains("You are logged out; nothing was redirected."), "{}", self.body);
        self.assert_cookie_expired();
    }

    fn assert_cookie_expired(&self) {
        let expired = format!("{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax", self.cookie_name);
        assert_eq!(self.headers["set-cookie"], expired.as_str());
    }
}

async fn start() -> Run {
    let (listener, address) = portcullis_testkit::net::listen().await;
    let clock = Arc::new(ManualClock::at_unix(portcullis_testkit::claims::now()));
    let tenant = Tenant::from_toml(TENANT).unwrap();
    let issuer = DevIssuer::with_clock(tenant, &format!("http://{address}/"), clock).unwrap();
    tokio::spawn(portcullis_issuer::serve(listener, issuer.clone()));
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    Run { base: issuer.issuer().to_owned(), issuer, http }
}

impl Run {
    /// The `Cookie` header that sends `value` as this issuer's session cookie.
    fn cookie(&self, value: &str) -> String {
        format!("portcullis_session_{}={value}", url::Url::parse(&self.base).unwrap().port().unwrap())
    }

    async fn read(response: reqwest::Response) -> Reply {
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let cookie_name = format!("portcullis_session_{}", response.url().port_or_known_default().unwrap());
        Reply { status, headers, body: response.text().await.unwrap(), cookie_name }
    }

    /// Logs alice in for `client` (implicit ID token): the session cookie and the ID token. The session is the
    /// browser's, whichever client it logged in for.
    async fn log_in(&self, client: &str) -> (String, String) {
        let query = [
            ("response_type", "id_token"),
            ("client_id", client),
            ("redirect_uri", CALLBACK),
            ("nonce", "n"),
            ("login_hint", "alice"),
        ];
        let reply =
            Self::read(self.http.get(format!("{}authorize", self.base)).query(&query).send().await.unwrap()).await;
        assert_eq!(reply.status, 303, "{}", reply.body);
        let set = reply.headers["set-cookie"].to_str().unwrap();
        let cookie =
            set.strip_prefix(&format!("{}=", reply.cookie_name)).unwrap().split(';').next().unwrap().to_owned();
        let location = url::Url::parse(reply.headers["location"].to_str().unwrap()).unwrap();
        let pairs: HashMap<String, String> =
            url::form_urlencoded::parse(location.fragment().unwrap().as_bytes()).into_owned().collect();
        (cookie, pairs["id_token"].clone())
    }

    /// Whether `cookie` still names a session (a `prompt=none` request answers without `login_required`).
    async fn logged_in(&self, cookie: &str) -> bool {
        let query = [
            ("response_type", "id_token"),
            ("client_id", "web"),
            ("redirect_uri", CALLBACK),
            ("nonce", "n"),
            ("prompt", "none"),
        ];
        let request = self.http.get(format!("{}authorize", self.base)).query(&query);
        let reply = Self::read(request.header("cookie", self.cookie(cookie)).send().await.unwrap()).await;
        let location = reply.headers["location"].to_str().unwrap();
        !location.contains("error=login_required")
    }

    async fn get(&self, path: &str, params: &[(&str, &str)], cookie: Option<&str>) -> Reply {
        let mut request = self.http.get(format!("{}{path}", self.base)).query(params);
        if let Some(cookie) = cookie {
            request = request.header("cookie", self.cookie(cookie));
        }
        Self::read(request.send().await.unwrap()).await
    }

    async fn post(&self, path: &str, params: &[(&str, &str)], cookie: Option<&str>) -> Reply {
        let mut request = self.http.post(format!("{}{path}", self.base)).form(params);
        if let Some(cookie) = cookie {
            request = request.header("cookie", self.cookie(cookie));
        }
        Self::read(request.send().await.unwrap()).await
    }
}

/// URLs that nearly match `http://127.0.0.1:3000/`.
const NEAR_HOME: &[&str] = &[
    "http://127.0.0.1:3000",
    "http://127.0.0.1:3000//",
    "http://127.0.0.1:3000/?",
    "HTTP://127.0.0.1:3000/",
    "http://127.0.0.1:3001/",
    "http://127.0.0.1:3000:80/",
    "http://localhost:3000/",
    "https://127.0.0.1:3000/",
    "http://a@127.0.0.1:3000/",
    "http://127.0.0.1:3000@evil.example/",
    "http://127.0.0.1:3000/%2e%2e/",
    "http://127.0.0.1:3000/#",
    "//evil.example/",
    "https://evil.example/",
    " http://127.0.0.1:3000/",
];

#[tokio::test]
async fn v2_logout_ends_the_session_and_returns_to_listed_urls_only() {
    let r = start().await;
    let (cookie, _) = r.log_in("web").await;
    assert!(r.logged_in(&cookie).await);
    let reply = r.get("v2/logout", &[("client_id", "spa"), ("returnTo", HOME)], Some(&cookie)).await;
    reply.assert_redirect(HOME);
    assert!(!r.logged_in(&cookie).await, "the server forgot the session");

    for near in NEAR_HOME {
        let (cookie, _) = r.log_in("web").await;
        let reply = r.get("v2/logout", &[("client_id", "spa"), ("returnTo", near)], Some(&cookie)).await;
        reply.assert_refused("Logout URL mismatch");
        assert!(reply.body.contains(&format!("(allowed: {HOME})")), "{}", reply.body);
        assert!(reply.body.contains("Allowed Logout URLs"), "{}", reply.body);
        assert!(!r.logged_in(&cookie).await, "{near}: logged out all the same");
    }
    // Another client's URL, a client with none, no client, an unknown client, a repeated parameter.
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("client_id", "spa"), ("returnTo", BYE)], "Logout URL mismatch"),
        (&[("client_id", "nowhere"), ("returnTo", HOME)], "(allowed: none)"),
        (&[("returnTo", HOME)], "needs client_id"),
        (&[("client_id", "nobody"), ("returnTo", HOME)], "unknown client_id"),
        (&[("client_id", "spa"), ("returnTo", HOME), ("returnTo", "https://evil.example/")], "returnTo is repeated"),
        (&[("client_id", "spa"), ("returnTo", "https://evil.example/"), ("returnTo", HOME)], "returnTo is repeated"),
        (&[("client_id", "web"), ("client_id", "spa"), ("returnTo", HOME)], "client_id is repeated"),
    ];
    for (params, says) in cases {
        r.get("v2/logout", params, None).await.assert_refused(says);
    }
    // The web app's URL with its query, exactly.
    r.get("v2/logout", &[("client_id", "web"), ("returnTo", BYE)], None).await.assert_redirect(BYE);
    // No returnTo: the logged-out page.
    let (cookie, _) = r.log_in("web").await;
    let reply = r.get("v2/logout", &[("client_id", "spa")], Some(&cookie)).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("You are logged out"), "{}", reply.body);
    reply.assert_cookie_expired();
    assert!(!r.logged_in(&cookie).await);
}

#[tokio::test]
async fn oidc_logout_checks_the_id_token_hint_and_hands_back_state() {
    let r = start().await;
    let (cookie, hint) = r.log_in("web").await;
    let params = [("id_token_hint", hint.as_str()), ("post_logout_redirect_uri", BYE), ("state", "a b&c=<d>")];
    let reply = r.get("oidc/logout", &params, Some(&cookie)).await;
    reply.assert_redirect("http://127.0.0.1:3000/bye?from=issuer&state=a+b%26c%3D%3Cd%3E");
    assert!(!r.logged_in(&cookie).await);

    // POST with a form body; the hint long expired (its expiry is ignored); client_id agreeing with it.
    let (cookie, hint) = r.log_in("web").await;
    r.issuer.shift_clock(10 * 36_000);
    let params = [("id_token_hint", hint.as_str()), ("client_id", "web"), ("post_logout_redirect_uri", BYE)];
    r.post("oidc/logout", &params, Some(&cookie)).await.assert_redirect(BYE);
    assert!(!r.logged_in(&cookie).await);
    // client_id alone identifies the client too; nothing to return to gives the logged-out page.
    r.get("oidc/logout", &[("client_id", "spa"), ("post_logout_redirect_uri", HOME)], None).await.assert_redirect(HOME);
    let reply = r.get("oidc/logout", &[("id_token_hint", hint.as_str())], None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.assert_cookie_expired();

    // Near misses of the web app's URL, and the spa's URL for a web hint.
    for near in [
        "http://127.0.0.1:3000/bye",
        "http://127.0.0.1:3000/bye?from=issuer&x=1",
        "http://127.0.0.1:3000/bye?from=Issuer",
        HOME,
    ] {
        let (cookie, _) = r.log_in("web").await;
        let params = [("id_token_hint", hint.as_str()), ("post_logout_redirect_uri", near)];
        r.get("oidc/logout", &params, Some(&cookie)).await.assert_refused("Logout URL mismatch");
        assert!(!r.logged_in(&cookie).await);
    }

    // Hints that are not this issuer's ID token for a client.
    let claims = part(&hint, 1);
    let mut foreign_iss = claims.as_object().unwrap().clone();
    foreign_iss.insert("iss".into(), "https://evil.example/".into());
    let mut api_aud = claims.as_object().unwrap().clone();
    api_aud.insert("aud".into(), "https://api.example.com".into());
    let mut spa_aud = claims.as_object().unwrap().clone();
    spa_aud.insert("aud".into(), serde_json::json!(["spa"]));
    let claims = claims.as_object().unwrap().clone();
    let stranger = DevIssuer::new(Tenant::from_toml(TENANT).unwrap(), &r.base).unwrap();
    // One character of the signature changed, well inside it (the last one may hold only padding bits).
    let at = hint.len() - 10;
    let changed = if &hint[at..=at] == "A" { "B" } else { "A" };
    let flipped = format!("{}{changed}{}", &hint[..at], &hint[at + 1..]);
    let forged = [
        ("another key", stranger.sign(&claims, &KeyChoice::Current, None).unwrap()),
        ("alg none", r.issuer.sign(&claims, &KeyChoice::Current, Some(Broken::AlgNone)).unwrap()),
        ("a bad signature", r.issuer.sign(&claims, &KeyChoice::Current, Some(Broken::BadSignature)).unwrap()),
        ("an unknown key", r.issuer.sign(&claims, &KeyChoice::Current, Some(Broken::UnknownKey)).unwrap()),
        ("another issuer", r.issuer.sign(&foreign_iss, &KeyChoice::Current, None).unwrap()),
        ("an altered signature", flipped),
        ("not a token", "not-a-token".to_owned()),
    ];
    for (what, hint) in &forged {
        let params = [("id_token_hint", hint.as_str()), ("post_logout_redirect_uri", BYE)];
        let reply = r.get("oidc/logout", &params, None).await;
        assert_eq!(reply.status, 400, "{what}");
        reply.assert_refused("id_token_hint is not an ID token from this issuer");
    }
    // A real signature, but for an API (an access token's audience): no client.
    let access = r.issuer.sign(&api_aud, &KeyChoice::Current, None).unwrap();
    let params = [("id_token_hint", access.as_str()), ("post_logout_redirect_uri", BYE)];
    r.get("oidc/logout", &params, None).await.assert_refused("not a client of this tenant");
    // The hint names one client, client_id another: refused, even towards the hint's own URL.
    let params = [("id_token_hint", hint.as_str()), ("client_id", "spa"), ("post_logout_redirect_uri", BYE)];
    r.get("oidc/logout", &params, None).await.assert_refused("issued to client web, but client_id is spa");
    // A hint for the spa cannot return to the web app's URL.
    let spa_hint = r.issuer.sign(&spa_aud, &KeyChoice::Current, None).unwrap();
    let params = [("id_token_hint", spa_hint.as_str()), ("post_logout_redirect_uri", BYE)];
    r.get("oidc/logout", &params, None).await.assert_refused("Logout URL mismatch");
    // A URL without any client, and repeated parameters.
    r.get("oidc/logout", &[("post_logout_redirect_uri", BYE)], None)
        .await
        .assert_refused("needs client_id or id_token_hint");
    let params = [
        ("client_id", "web"),
        ("post_logout_redirect_uri", BYE),
        ("post_logout_redirect_uri", "https://evil.example/"),
    ];
    r.get("oidc/logout", &params, None).await.assert_refused("post_logout_redirect_uri is repeated");
    let params = [("client_id", "web"), ("post_logout_redirect_uri", BYE), ("state", "1"), ("state", "2")];
    r.post("oidc/logout", &params, None).await.assert_refused("state is repeated");
}
