//! App code nobody here wrote logs in against `portcullis issuer`, started as a developer starts it (`--config` with
//! the tenant file of docs/issuer.md):
//!
//! - npm `openid-client` (panva, OpenID certified): discovery, client credentials, the authorization code flow with
//!   PKCE, nonce and state and the library's own ID-token validation, userinfo, a refresh, a call to the demo API,
//!   revocation, and what the library must refuse (`tests/oidc/openid_client.mjs`);
//! - Auth0's `express-openid-connect` in an Express app (`tests/oidc/app.mjs`) with the settings of docs/issuer.md,
//!   driven by form posts as a browser without scripts would: its default login (implicit `id_token`,
//!   `response_mode=form_post`, a nonce) and `response_type: 'code'` with the client secret, each logging out with
//!   `auth0Logout: true` (`/v2/logout`) and with `idpLogout: true` (`/oidc/logout`); a forged answer (another user
//!   in the ID token, another `state`) and a replayed one are refused, and after logout `prompt=none` answers
//!   `login_required`.
//!
//! Without Node.js, one more test checks that the settings docs/issuer.md gives are the ones the app and the script
//! use, and that the page and `.ci/run` name the versions tested.
//!
//! `.ci/run` installs the pinned packages into `PORTCULLIS_INTEROP_DIR` (default `~/.cache/portcullis-interop`).
//! Without Node.js or the packages the tests print why they skip; with `CI=true` they fail.
#![allow(clippy::unwrap_used)]

mod support;

use portcullis::remote::{KeyLocation, RemoteKeySet, RemoteOptions};
use portcullis::{SystemClock, Verifier};
use portcullis_issuer::DEMO_AUDIENCE;
use portcullis_testkit::net;
use portcullis_testkit::process::Running;
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use support::interop::{DOCUMENTED_APP, demo_verifier, documented, interop_dir, issuer_page, require_npm_packages};
use support::{drain, portcullis, url_after};
use tokio::process::Child;

/// The versions `.ci/run` installs; docs/issuer.md names them.
const PACKAGES: [&str; 3] = ["openid-client@6.9.0", "express-openid-connect@3.4.0", "express@4.22.3"];

/// The application of the documented tenant file.
const CLIENT_ID: &str = "my-web-app";

/// Whether Node.js and every pinned package are there; skips (or, in CI, fails) otherwise.
fn packages_available(test: &str) -> bool {
    require_npm_packages(test, &PACKAGES)
}

/// The documented tenant file for an app at `app` (no trailing slash) instead of the docs' [`DOCUMENTED_APP`].
fn tenant_for(app: &str) -> String {
    let tenant = documented("toml", "file: tenant.toml");
    assert!(tenant.contains(&format!("{DOCUMENTED_APP}/callback")), "{tenant}");
    tenant.replace(DOCUMENTED_APP, app)
}

/// `portcullis issuer --config FILE --listen 127.0.0.1:PORT` with `tenant`; its issuer URL once it listens.
struct Issuer {
    _child: Child,
    _dir: tempfile::TempDir,
    url: String,
}

async fn issuer(tenant: &str, port: u16) -> Issuer {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenant.toml");
    std::fs::write(&file, tenant).unwrap();
    let listen = format!("127.0.0.1:{port}");
    let (child, mut out) = portcullis(&["issuer", "--config", file.to_str().unwrap(), "--listen", &listen]);
    let url = url_after(&mut out, "portcullis dev issuer at").await;
    drain(out);
    if port != 0 {
        assert_eq!(url, format!("http://{listen}/"));
    }
    Issuer { _child: child, _dir: dir, url }
}

/// The quickstart API in process, trusting `issuer` for the demo audience; the URL of its `/api/protected`.
async fn demo_api(issuer: &str) -> String {
    let verifier = demo_verifier(issuer).await;
    format!("{}{}", net::serve(quickstart::app(verifier)).await, quickstart::PROTECTED)
}

#[tokio::test]
async fn openid_client_discovers_logs_in_with_pkce_refreshes_and_calls_the_demo_api() {
    if !packages_available("openid-client") {
        return;
    }
    let issuer = issuer(&tenant_for(DOCUMENTED_APP), 0).await;
    let api = demo_api(&issuer.url).await;
    let secret = client_secret(&tenant_for(DOCUMENTED_APP));
    // The callback is never fetched: the script reads the code from the issuer's redirect to it.
    let callback = format!("{DOCUMENTED_APP}/callback");
    let output = tokio::process::Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc/openid_client.mjs"))
        .args([issuer.url.as_str(), CLIENT_ID, secret.as_str(), callback.as_str(), api.as_str(), DEMO_AUDIENCE])
        .env("PORTCULLIS_INTEROP_DIR", interop_dir())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "openid_client.mjs failed: {}", String::from_utf8_lossy(&output.stderr));
    // The script never prints a token.
    assert!(!stdout.contains("eyJ"), "{stdout}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let base = &issuer.url;

    // Discovery: the document openid-client read names the issuer's endpoints.
    let discovery = &report["discovery"];
    assert_eq!(discovery["issuer"], *base, "{discovery}");
    assert_eq!(discovery["token_endpoint"], format!("{base}oauth/token"), "{discovery}");
    assert_eq!(discovery["userinfo_endpoint"], format!("{base}userinfo"), "{discovery}");
    assert_eq!(discovery["end_session_endpoint"], format!("{base}oidc/logout"), "{discovery}");
    assert_eq!(discovery["revocation_endpoint"], format!("{base}oauth/revoke"), "{discovery}");

    // Client credentials: an access token for the API, no ID token.
    let machine = &report["client_credentials"];
    assert_eq!(machine["token_type"], "bearer", "{machine}");
    assert_eq!(machine["id_token"], false, "{machine}");
    assert_eq!(machine["claims"]["aud"], DEMO_AUDIENCE, "{machine}");
    assert_eq!(machine["claims"]["sub"], format!("{CLIENT_ID}@clients"), "{machine}");

    // HTTP Basic, as openid-client encodes it: the same client; a wrong secret is Auth0's 401 access_denied.
    let basic = &report["client_secret_basic"];
    assert_eq!(basic["claims"]["sub"], format!("{CLIENT_ID}@clients"), "{basic}");
    assert_eq!(basic["claims"]["aud"], DEMO_AUDIENCE, "{basic}");
    assert_eq!(basic["wrong_secret"]["refused"]["status"], 401, "{basic}");
    assert_eq!(basic["wrong_secret"]["refused"]["error"], "access_denied", "{basic}");

    // The code flow: openid-client validated the ID token (it throws otherwise); its claims are Auth0's.
    assert!((300..400).contains(&report["login"]["authorize_status"].as_u64().unwrap()), "{}", report["login"]);
    let tokens = &report["tokens"];
    let id = &tokens["id_token_claims"];
    assert_eq!(id["iss"], *base, "{id}");
    assert_eq!(id["aud"], CLIENT_ID, "{id}");
    assert_eq!(id["sub"], "auth0|alice", "{id}");
    assert_eq!(tokens["nonce_matches"], true, "{tokens}");
    assert_eq!(id["name"], "Alice Example", "{id}");
    assert_eq!(id["nickname"], "alice", "{id}");
    assert_eq!(id["email"], "alice@example.com", "{id}");
    assert_eq!(id["email_verified"], true, "{id}");
    assert!(id["updated_at"].is_string(), "{id}");
    assert!(id["auth_time"].is_u64() && id["sid"].is_string(), "{id}");
    assert!(id["exp"].as_u64().unwrap() > id["iat"].as_u64().unwrap(), "{id}");
    assert_eq!(tokens["has_refresh_token"], true, "offline_access was asked: {tokens}");
    // The access token is for the tenant's default audience and for /userinfo, as Auth0's.
    let access = &tokens["access_token_claims"];
    assert_eq!(access["aud"], serde_json::json!([DEMO_AUDIENCE, format!("{base}userinfo")]), "{access}");
    assert_eq!(access["sub"], "auth0|alice", "{access}");

    // The demo API accepted the access token and saw alice.
    assert_eq!(report["api"]["status"], 200, "{}", report["api"]);
    assert_eq!(report["api"]["body"]["user"]["sub"], "auth0|alice", "{}", report["api"]);

    // userinfo as Auth0 answers it for `openid profile email`.
    let info = &report["userinfo"];
    assert_eq!(info["sub"], "auth0|alice", "{info}");
    assert_eq!(info["name"], "Alice Example", "{info}");
    assert_eq!(info["given_name"], "Alice", "{info}");
    assert_eq!(info["family_name"], "Example", "{info}");
    assert_eq!(info["email"], "alice@example.com", "{info}");
    assert_eq!(info["email_verified"], true, "{info}");

    // The refresh: rotated, with a new ID token of the same login (same sub, sid and auth_time).
    let refresh = &report["refresh"];
    assert_eq!(refresh["rotated"], true, "{refresh}");
    let again = &refresh["id_token_claims"];
    assert_eq!(again["sub"], "auth0|alice", "{refresh}");
    assert_eq!((&again["sid"], &again["auth_time"]), (&id["sid"], &id["auth_time"]), "{refresh}");
    assert_eq!(again["aud"], CLIENT_ID, "{refresh}");

    // What openid-client refused, and why.
    let refused = &report["refused"];
    let code = |case: &str| refused[case]["refused"]["code"].as_str().unwrap_or_else(|| panic!("{case}: {refused}"));
    let oauth_error = |case: &str| refused[case]["refused"]["error"].as_str().unwrap_or_default().to_owned();
    // A nonce other than the login's: the ID token's `nonce` claim does not match.
    assert_eq!(code("wrong_nonce"), "OAUTH_JWT_CLAIM_COMPARISON_FAILED", "{refused}");
    assert!(refused["wrong_nonce"]["refused"]["cause"].as_str().unwrap().contains("\"nonce\""), "{refused}");
    // A state other than the one sent: refused before the code is exchanged.
    assert_eq!(code("wrong_state"), "OAUTH_INVALID_RESPONSE", "{refused}");
    assert!(refused["wrong_state"]["refused"]["cause"].as_str().unwrap().contains("\"state\""), "{refused}");
    // A wrong PKCE verifier did not use the code up: the right one then redeems it.
    assert_eq!(refused["after_wrong_verifier"], serde_json::json!({"accepted": true}), "{refused}");
    // The issuer refused a wrong PKCE verifier, a spent code and a reused one (invalid_grant).
    for case in ["wrong_verifier", "spent_code", "reused_code", "old_refresh_token"] {
        assert_eq!(code(case), "OAUTH_RESPONSE_BODY_ERROR", "{case}: {refused}");
        assert_eq!(oauth_error(case), "invalid_grant", "{case}: {refused}");
    }
    // userinfo for another subject than the ID token's: openid-client refuses the answer.
    assert_eq!(code("userinfo_other_subject"), "OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED", "{refused}");

    // Revocation: accepted, and the family's refresh token no longer works.
    let revocation = &report["revocation"];
    assert_eq!(revocation["revoked"], true, "{revocation}");
    assert_eq!(revocation["refresh_after"]["refused"]["error"], "invalid_grant", "{revocation}");
    // The end-session URL openid-client builds is the issuer's RP-initiated logout.
    assert_eq!(report["end_session"]["origin_and_path"], format!("{base}oidc/logout"), "{report}");
}

/// The `client_secret` of the documented tenant's application.
fn client_secret(tenant: &str) -> String {
    let tenant = portcullis_issuer::Tenant::from_toml(tenant).unwrap();
    tenant.client(CLIENT_ID).unwrap().client_secret.clone().unwrap()
}

/// A browser without scripts: one cookie jar for `127.0.0.1` (cookies are per host, not per port, so the app and
/// the issuer share it as they would in a browser), no redirect followed by itself.
struct Browser {
    http: reqwest::Client,
    jar: BTreeMap<String, String>,
}

/// One answer, read whole.
struct Page {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

impl Page {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    /// The redirect target, absolute (resolved against `base`).
    fn redirect(&self, base: &str) -> String {
        assert!(self.status.is_redirection(), "not a redirect: {} {}", self.status, self.body);
        let location = self.location.as_deref().unwrap();
        url::Url::parse(base).unwrap().join(location).unwrap().to_string()
    }
}

impl Browser {
    fn new() -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { http, jar: BTreeMap::new() }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder, url: &str) -> Page {
        // Over http a browser may withhold `Secure` cookies; this one does (those are kept apart by their name).
        let cookies: Vec<String> = self
            .jar
            .iter()
            .filter(|(name, _)| !name.starts_with("secure:") || url.starts_with("https:"))
            .map(|(name, value)| format!("{}={value}", name.trim_start_matches("secure:")))
            .collect();
        let request = if cookies.is_empty() { request } else { request.header("cookie", cookies.join("; ")) };
        let answer = request.send().await.unwrap();
        for set in answer.headers().get_all("set-cookie") {
            self.store(set.to_str().unwrap());
        }
        let status = answer.status();
        let location = answer.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
        Page { status, location, body: answer.text().await.unwrap() }
    }

    /// Keeps or (when it has expired) forgets one `Set-Cookie`.
    fn store(&mut self, set_cookie: &str) {
        let mut parts = set_cookie.split(';').map(str::trim);
        let (name, value) = parts.next().unwrap().split_once('=').unwrap();
        let attributes: Vec<String> = parts.map(str::to_ascii_lowercase).collect();
        let secure = attributes.iter().any(|a| a == "secure");
        let expired = attributes.iter().any(|a| {
            a.strip_prefix("max-age=").is_some_and(|age| age.parse::<i64>().is_ok_and(|age| age <= 0))
                || a.strip_prefix("expires=").is_some_and(|date| date.contains("1970"))
        });
        let key = if secure { format!("secure:{name}") } else { name.to_owned() };
        if expired {
            self.jar.remove(&key);
        } else {
            self.jar.insert(key, value.to_owned());
        }
    }

    async fn get(&mut self, url: &str) -> Page {
        let request = self.http.get(url);
        self.send(request, url).await
    }

    async fn post(&mut self, url: &str, fields: &[(String, String)]) -> Page {
        let request = self.http.post(url).form(fields);
        self.send(request, url).await
    }

    fn has_cookie(&self, name: &str) -> bool {
        self.jar.keys().any(|key| key.trim_start_matches("secure:") == name)
    }
}

/// A form of an HTML page as a browser submits it: the method, the absolute action, the hidden fields, and the
/// submit buttons' name and value.
struct Form {
    method: String,
    action: String,
    fields: Vec<(String, String)>,
    buttons: Vec<(String, String)>,
}

/// The text of HTML attribute `name` in `tag` (double-quoted, entities decoded).
fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = tag[start..].find('"')? + start;
    let raw = &tag[start..end];
    let decoded = raw
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&#x2F;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    Some(decoded)
}

/// The forms of `page` (fetched from `base`).
fn forms(page: &str, base: &str) -> Vec<Form> {
    page.split("<form")
        .skip(1)
        .map(|form| {
            let form = form.split("</form>").next().unwrap();
            let open = form.split('>').next().unwrap();
            let action = attribute(open, "action").unwrap_or_default();
            let action = url::Url::parse(base).unwrap().join(&action).unwrap().to_string();
            let tags = |kind: &str| -> Vec<(String, String)> {
                form.split(&format!("<{kind}"))
                    .skip(1)
                    .filter_map(|tag| {
                        let tag = tag.split('>').next().unwrap();
                        let hidden = kind == "input" && attribute(tag, "type").as_deref() == Some("hidden");
                        let submit = kind == "button" && attribute(tag, "type").as_deref() != Some("button");
                        (hidden || submit).then(|| Some((attribute(tag, "name")?, attribute(tag, "value")?)))?
                    })
                    .collect()
            };
            let method = attribute(open, "method").unwrap_or_else(|| "get".to_owned()).to_ascii_lowercase();
            Form { method, action, fields: tags("input"), buttons: tags("button") }
        })
        .collect()
}

/// The value of query parameter `name` of `url`.
fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url).unwrap().query_pairs().find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

/// The express-openid-connect app of `tests/oidc/app.mjs` in `mode` and `logout`, for the issuer at `issuer_url`
/// (which may start later: the SDK reads its discovery document at the first login) and the API at `api`; its URL.
async fn express_app(mode: &str, logout: &str, issuer_url: &str, api: &str, secret: &str) -> (Running, String) {
    let mut command = tokio::process::Command::new("node");
    command
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc/app.mjs"))
        .args([mode, logout])
        .env("PORTCULLIS_INTEROP_DIR", interop_dir())
        .env("ISSUER_BASE_URL", issuer_url)
        .env("CLIENT_ID", CLIENT_ID)
        .env("CLIENT_SECRET", secret)
        // The SDK's own secret for its session cookie (its `secret` setting).
        .env("SECRET", "a secret of this test that signs the app's session cookie")
        .env("API_URL", api);
    let mut app = Running::spawn(&format!("express app ({mode}, {logout})"), command, tempfile::tempdir().unwrap());
    let line = app.line_with("express-openid-connect app listening at").await;
    app.drain_stdout();
    let url = support::url_in(&line);
    (app, url)
}

/// Logs in to the express-openid-connect app as alice through the issuer's login page, checks the session and
/// the protected routes, logs out through the issuer, and checks that the app and the issuer both forgot the login.
async fn express_login_and_logout(mode: &str, logout: &str) {
    // The issuer's port is picked first: the app needs the issuer's URL, the tenant the app's.
    let issuer_port = net::free_port();
    let issuer_url = format!("http://127.0.0.1:{issuer_port}/");
    let secret = client_secret(&tenant_for(DOCUMENTED_APP));
    // The demo API loads the issuer's keys, so it is served once the issuer runs; its address is bound now, for
    // the app.
    let (api_listener, api_address) = net::listen().await;
    let api = format!("http://{api_address}{}", quickstart::PROTECTED);
    let (_app, app_url) = express_app(mode, logout, &issuer_url, &api, &secret).await;
    let issuer = issuer(&tenant_for(&app_url), issuer_port).await;
    assert_eq!(issuer.url, issuer_url);
    {
        let keys = RemoteKeySet::new(
            KeyLocation::Discovery { issuer: issuer.url.clone() },
            RemoteOptions::default(),
            Arc::new(SystemClock),
        )
        .unwrap();
        keys.refresh().await.unwrap();
        let verifier = Verifier::builder()
            .issuer(issuer.url.as_str())
            .audience(DEMO_AUDIENCE)
            .key_source(Arc::new(keys))
            .build()
            .unwrap();
        tokio::spawn(async move { axum::serve(api_listener, quickstart::app(verifier)).await.unwrap() });
    }
    let context = format!("{mode} login, {logout} logout");
    let mut browser = Browser::new();

    // Not logged in: the public route says so; the protected one sends the browser to the issuer.
    let home = browser.get(&format!("{app_url}/")).await;
    assert_eq!(home.status, 200, "{context}: {}", home.body);
    assert_eq!(home.json()["authenticated"], false, "{context}");
    let profile = browser.get(&format!("{app_url}/profile")).await;
    let authorize = profile.redirect(&app_url);
    assert!(authorize.starts_with(&format!("{issuer_url}authorize?")), "{context}: {authorize}");
    assert_eq!(query_param(&authorize, "client_id").as_deref(), Some(CLIENT_ID), "{context}");
    assert_eq!(query_param(&authorize, "redirect_uri"), Some(format!("{app_url}/callback")), "{context}");
    assert!(query_param(&authorize, "nonce").is_some(), "{context}: no nonce: {authorize}");
    match mode {
        "default" => {
            assert_eq!(query_param(&authorize, "response_type").as_deref(), Some("id_token"), "{context}");
            assert_eq!(query_param(&authorize, "response_mode").as_deref(), Some("form_post"), "{context}");
        }
        _ => {
            assert_eq!(query_param(&authorize, "response_type").as_deref(), Some("code"), "{context}");
            assert_eq!(query_param(&authorize, "code_challenge_method").as_deref(), Some("S256"), "{context}");
        }
    }

    // A first login whose answer is forged on its way to the app: the SDK refuses it and nobody is logged in.
    let answer = pick_alice(&mut browser, &authorize, &issuer_url, &context).await;
    let session_cookie = format!("portcullis_session_{issuer_port}");
    assert!(browser.has_cookie(&session_cookie), "{context}: the login set the issuer's session cookie");
    let forged = deliver_forged(&mut browser, answer, &issuer_url, &context).await;
    assert!(forged.status.is_client_error(), "{context}: a forged answer: {} {}", forged.status, forged.body);
    assert_eq!(browser.get(&format!("{app_url}/")).await.json()["authenticated"], false, "{context}");

    // The login again, from the start (the issuer's page now offers "Continue as" alice first).
    let profile = browser.get(&format!("{app_url}/profile")).await;
    let authorize = profile.redirect(&app_url);
    let nonce = query_param(&authorize, "nonce").unwrap_or_else(|| panic!("{context}: no nonce: {authorize}"));
    let answer = pick_alice(&mut browser, &authorize, &issuer_url, &context).await;

    // The answer reaches the app's callback: by a page that posts a form (form_post) or by a redirect (query).
    let callback = deliver(&mut browser, answer, &issuer_url, &app_url, &context).await;
    let (callback_url, callback_fields) = match &callback {
        Delivered::Posted { action, fields, .. } => (action.clone(), Some(fields.clone())),
        Delivered::Redirected { url, .. } => (url.clone(), None),
    };
    assert!(callback_url.starts_with(&format!("{app_url}/callback")), "{context}: {callback_url}");
    let landed = callback.page();
    let (status, body) = (landed.status, &landed.body);
    assert!(status.is_redirection(), "{context}: the app refused the login at its callback: {status} {body}");
    // The SDK logged alice in and sends the browser back where it started.
    assert_eq!(landed.redirect(&app_url), format!("{app_url}/profile"), "{context}: {}", landed.body);

    let profile = browser.get(&format!("{app_url}/profile")).await;
    assert_eq!(profile.status, 200, "{context}: {}", profile.body);
    let profile = profile.json();
    let user = &profile["user"];
    assert_eq!(user["sub"], "auth0|alice", "{context}: {profile}");
    assert_eq!(user["name"], "Alice Example", "{context}: {profile}");
    assert_eq!(user["email"], "alice@example.com", "{context}: {profile}");
    let claims = &profile["id_token_claims"];
    assert_eq!(claims["iss"], issuer_url, "{context}: {profile}");
    assert_eq!(claims["aud"], CLIENT_ID, "{context}: {profile}");
    assert_eq!(claims["nonce"], nonce, "{context}: the nonce the SDK sent comes back: {profile}");
    let home = browser.get(&format!("{app_url}/")).await.json();
    assert_eq!(home["authenticated"], true, "{context}: {home}");
    assert_eq!(home["user"]["email"], "alice@example.com", "{context}: {home}");

    if mode == "code" {
        // The code flow also got an access token: /userinfo and the demo API take it.
        assert_eq!(profile["has_access_token"], true, "{context}: {profile}");
        let info = browser.get(&format!("{app_url}/userinfo")).await;
        assert_eq!(info.status, 200, "{context}: {}", info.body);
        assert_eq!(info.json()["sub"], "auth0|alice", "{context}: {}", info.body);
        assert_eq!(info.json()["email_verified"], true, "{context}: {}", info.body);
        let call = browser.get(&format!("{app_url}/api")).await;
        assert_eq!(call.status, 200, "{context}: {}", call.body);
        assert_eq!(call.json()["status"], 200, "{context}: {}", call.body);
        assert_eq!(call.json()["body"]["user"]["sub"], "auth0|alice", "{context}: {}", call.body);
    }

    // The issuer remembers the login: the SDK's own request with prompt=none is answered at once, no page shown.
    let silent = format!("{authorize}&prompt=none");
    let remembered = browser.get(&silent).await;
    let remembered = answer_fields(&remembered, &issuer_url, &context);
    let key = if mode == "default" { "id_token" } else { "code" };
    assert!(remembered.iter().any(|(name, _)| name == key), "{context}: prompt=none with a session: {remembered:?}");

    // Logout: the SDK ends its session and sends the browser to the issuer, which ends its own and returns.
    let out = browser.get(&format!("{app_url}/logout")).await;
    let to_issuer = out.redirect(&app_url);
    let expected = if logout == "auth0" { "v2/logout?" } else { "oidc/logout?" };
    assert!(to_issuer.starts_with(&format!("{issuer_url}{expected}")), "{context}: {to_issuer}");
    let back = browser.get(&to_issuer).await;
    let back = back.redirect(&issuer_url);
    let back_without_query = back.split('?').next().unwrap().trim_end_matches('/').to_owned();
    assert_eq!(back_without_query, app_url, "{context}: the issuer returned to the app: {back}");
    assert!(!browser.has_cookie(&session_cookie), "{context}: the issuer's session cookie is expired");
    let home = browser.get(&format!("{app_url}/")).await.json();
    assert_eq!(home["authenticated"], false, "{context}: {home}");
    assert_eq!(home["user"], Value::Null, "{context}: {home}");
    let profile = browser.get(&format!("{app_url}/profile")).await;
    assert!(profile.redirect(&app_url).starts_with(&format!("{issuer_url}authorize?")), "{context}");

    // The issuer forgot the login: prompt=none now answers login_required to the callback.
    let forgotten = browser.get(&silent).await;
    let forgotten = answer_fields(&forgotten, &issuer_url, &context);
    let error = forgotten.iter().find(|(name, _)| name == "error").map(|(_, value)| value.as_str());
    assert_eq!(error, Some("login_required"), "{context}: {forgotten:?}");

    // The callback answer of the login, delivered once more: the SDK's transaction is over, so it is refused.
    let replayed = match callback_fields {
        Some(fields) => browser.post(&callback_url, &fields).await,
        None => browser.get(&callback_url).await,
    };
    assert!(replayed.status.is_client_error(), "{context}: a replayed callback: {} {}", replayed.status, replayed.body);
    let home = browser.get(&format!("{app_url}/")).await.json();
    assert_eq!(home["authenticated"], false, "{context}: {home}");
}

/// The issuer's login page at `authorize`, and its form posted as a browser does when alice is picked; the
/// issuer's answer.
async fn pick_alice(browser: &mut Browser, authorize: &str, issuer_url: &str, context: &str) -> Page {
    let login = browser.get(authorize).await;
    assert_eq!(login.status, 200, "{context}: {}", login.body);
    let form = forms(&login.body, issuer_url).into_iter().next().unwrap_or_else(|| panic!("{context}: no form"));
    assert_eq!(form.method, "post", "{context}: {}", login.body);
    let alice = form
        .buttons
        .iter()
        .find(|(name, value)| name == "user" && value == "alice")
        .unwrap_or_else(|| panic!("{context}: no button for alice: {}", login.body))
        .clone();
    let mut fields = form.fields.clone();
    fields.push(alice);
    browser.post(&form.action, &fields).await
}

/// `id_token` with its payload's `sub` changed to bob's, its signature kept (so no longer valid).
fn forged_id_token(id_token: &str) -> String {
    let parts: Vec<&str> = id_token.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS");
    let payload = base64_simd::URL_SAFE_NO_PAD.decode_to_vec(parts[1]).unwrap();
    let payload = String::from_utf8(payload).unwrap();
    assert!(payload.contains("\"auth0|alice\""), "alice's ID token");
    let forged = base64_simd::URL_SAFE_NO_PAD.encode_to_string(payload.replace("auth0|alice", "auth0|bob"));
    format!("{}.{forged}.{}", parts[0], parts[2])
}

/// Delivers the issuer's authorization answer to the app forged: a form_post answer with bob put into the ID
/// token, a redirect with another `state`. The app's answer.
async fn deliver_forged(browser: &mut Browser, answer: Page, issuer: &str, context: &str) -> Page {
    if answer.status.is_redirection() {
        let mut url = url::Url::parse(&answer.redirect(issuer)).unwrap();
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "state" { "forged".to_owned() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        assert!(pairs.iter().any(|(k, v)| k == "state" && v == "forged"), "{context}: {pairs:?}");
        url.query_pairs_mut().clear().extend_pairs(&pairs);
        return browser.get(url.as_str()).await;
    }
    assert_eq!(answer.status, 200, "{context}: {}", answer.body);
    let form = forms(&answer.body, issuer).into_iter().next().unwrap_or_else(|| panic!("{context}: {}", answer.body));
    let fields: Vec<(String, String)> =
        form.fields.into_iter().map(|(k, v)| if k == "id_token" { (k, forged_id_token(&v)) } else { (k, v) }).collect();
    assert!(fields.iter().any(|(k, _)| k == "id_token"), "{context}: {fields:?}");
    browser.post(&form.action, &fields).await
}

/// How an authorization answer reached the app's callback, and the app's answer to it.
enum Delivered {
    /// A page of the issuer auto-posting a form (`response_mode=form_post`).
    Posted { action: String, fields: Vec<(String, String)>, page: Page },
    /// A redirect to the callback (`response_mode=query`).
    Redirected { url: String, page: Page },
}

impl Delivered {
    fn page(&self) -> &Page {
        match self {
            Delivered::Posted { page, .. } | Delivered::Redirected { page, .. } => page,
        }
    }
}

/// Delivers the issuer's authorization answer `answer` to the app as a browser would: posts the form of a
/// form_post page, or follows a redirect.
async fn deliver(browser: &mut Browser, answer: Page, issuer: &str, app: &str, context: &str) -> Delivered {
    if answer.status.is_redirection() {
        let url = answer.redirect(issuer);
        assert!(url.starts_with(app), "{context}: redirected to {url}");
        let page = browser.get(&url).await;
        return Delivered::Redirected { url, page };
    }
    assert_eq!(answer.status, 200, "{context}: {}", answer.body);
    let form = forms(&answer.body, issuer).into_iter().next().unwrap_or_else(|| panic!("{context}: {}", answer.body));
    assert_eq!(form.method, "post", "{context}: {}", answer.body);
    let page = browser.post(&form.action, &form.fields).await;
    Delivered::Posted { action: form.action, fields: form.fields, page }
}

/// The parameters of an authorization answer: the fields of a form_post page, or the query of a redirect.
fn answer_fields(answer: &Page, issuer: &str, context: &str) -> Vec<(String, String)> {
    if answer.status.is_redirection() {
        let url = answer.redirect(issuer);
        return url::Url::parse(&url).unwrap().query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    }
    assert_eq!(answer.status, 200, "{context}: {}", answer.body);
    forms(&answer.body, issuer).into_iter().next().unwrap_or_else(|| panic!("{context}: {}", answer.body)).fields
}

#[tokio::test]
async fn express_openid_connect_default_login_form_post_and_auth0_logout() {
    if packages_available("express-openid-connect") {
        express_login_and_logout("default", "auth0").await;
    }
}

#[tokio::test]
async fn express_openid_connect_default_login_form_post_and_rp_initiated_logout() {
    if packages_available("express-openid-connect") {
        express_login_and_logout("default", "idp").await;
    }
}

#[tokio::test]
async fn express_openid_connect_code_flow_with_client_secret_and_auth0_logout() {
    if packages_available("express-openid-connect") {
        express_login_and_logout("code", "auth0").await;
    }
}

#[tokio::test]
async fn express_openid_connect_code_flow_with_client_secret_and_rp_initiated_logout() {
    if packages_available("express-openid-connect") {
        express_login_and_logout("code", "idp").await;
    }
}

/// The `key:` settings of a documented JavaScript block (comments skipped), with the rest of each line.
fn settings_of(block: &str) -> Vec<(String, String)> {
    block
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with("//"))
        .filter_map(|line| {
            let (key, value) = line.split_once(": ")?;
            key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_').then(|| (key.to_owned(), value.to_owned()))
        })
        .collect()
}

#[test]
fn the_documented_settings_are_the_tested_ones() {
    let app = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc/app.mjs")).unwrap();
    let script = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc/openid_client.mjs")).unwrap();
    // Every setting the docs give express-openid-connect is one the tested app sets; the ones that choose a
    // behaviour (not an address or a secret) with the same value.
    for (mode, marker) in [("default", "express-openid-connect: default"), ("code", "express-openid-connect: code")] {
        let settings = settings_of(&documented("js", marker));
        assert!(settings.len() >= 6, "{mode}: {settings:?}");
        for (key, value) in &settings {
            let set = app.contains(&format!("{key}:")) || app.contains(&format!("    {key},\n"));
            assert!(set, "app.mjs does not set {key} ({mode})");
            let chosen = ["authRequired", "auth0Logout", "idpLogout", "authorizationParams"].contains(&key.as_str());
            if chosen {
                let setting = format!("{key}: {}", value.trim_end_matches(','));
                assert!(app.contains(&setting), "app.mjs does not set {setting} ({mode})");
            }
        }
        for key in ["issuerBaseURL", "baseURL", "clientID", "secret"] {
            assert!(settings.iter().any(|(k, _)| k == key), "{mode}: the docs give {key}");
        }
    }
    let code = settings_of(&documented("js", "express-openid-connect: code"));
    assert!(code.iter().any(|(key, _)| key == "clientSecret"), "{code:?}");
    // The documented application is the tenant's, with the documented secret.
    let tenant = tenant_for(DOCUMENTED_APP);
    let value = |settings: &[(String, String)], key: &str| {
        settings.iter().find(|(k, _)| k == key).map(|(_, v)| v.trim_end_matches(',').trim_matches('\'').to_owned())
    };
    assert_eq!(value(&code, "clientID").as_deref(), Some(CLIENT_ID));
    assert_eq!(value(&code, "clientSecret"), Some(client_secret(&tenant)));
    assert_eq!(value(&code, "baseURL").as_deref(), Some(DOCUMENTED_APP));
    // openid-client: the documented calls, with allowInsecureRequests for the plain-http issuer, are the script's.
    let discovery = documented("js", "openid-client: discovery");
    assert!(discovery.contains("execute: [client.allowInsecureRequests]"), "{discovery}");
    assert!(script.contains("execute: [client.allowInsecureRequests]"));
    for call in discovery.split("client.").skip(1).filter_map(|rest| rest.split('(').next()) {
        if call.chars().all(|c| c.is_ascii_alphanumeric()) {
            assert!(script.contains(&format!("client.{call}")), "openid_client.mjs does not use client.{call}");
        }
    }
    for (key, _) in settings_of(&discovery) {
        assert!(script.contains(&format!("{key}:")) || script.contains(&format!("{key},")), "{key}");
    }
    // The page names the versions tested, as .ci/run installs them.
    let page = issuer_page();
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.ci/run")).unwrap();
    for package in PACKAGES {
        let (name, version) = package.rsplit_once('@').unwrap();
        assert!(page.contains(&format!("{name} {version}")), "docs/issuer.md names {name} {version}");
        assert!(ci.contains(package), ".ci/run installs {package}");
    }
}
