//! Auth0's SPA SDK, `@auth0/auth0-spa-js` unchanged (its UMD bundle), logs in against `portcullis issuer` in real
//! headless Chromium: `loginWithRedirect` to the issuer's login page, "Log in as Alice", `handleRedirectCallback`,
//! `getUser`, `getTokenSilently` through the hidden iframe (`prompt=none`, `response_mode=web_message`, the issuer's
//! session cookie) and with refresh tokens (rotated at every use), a call to the demo API with the token,
//! `revokeRefreshToken`, and `logout` with `returnTo`, after which silent login answers `login_required`.
//!
//! The issuer runs with the tenant file of docs/issuer.md ("Use it with your Auth0 app") and its single-page app,
//! whose settings the page uses. The test page (`tests/spa/`) and the demo API share one origin; the issuer runs on
//! another port of the same host, `127.0.0.1`, so the two are the same site, as silent login through the iframe
//! needs.
//!
//! `.ci/run` installs the SDK into `PORTCULLIS_INTEROP_DIR` (default `~/.cache/portcullis-interop`). Without
//! Chromium or the package the test prints why it skips; with `CI=true` it fails.
#![allow(clippy::unwrap_used)]

mod support;

use axum::Router;
use axum::http::header;
use axum::response::Html;
use axum::routing::get;
use fantoccini::{Client, Locator};
use portcullis_issuer::DEMO_AUDIENCE;
use portcullis_testkit::net;
use serde_json::{Value, json};
use support::browser::{ONE_BROWSER, browser, browser_available, screenshot, text_of, wait_for};
use support::interop::{DOCUMENTED_APP, demo_verifier, documented, interop_dir, require_npm_packages};
use support::{drain, portcullis, url_after};

/// The version `.ci/run` installs; docs/issuer.md names it.
const SPA_JS: &str = "@auth0/auth0-spa-js@2.28.3";

/// The documented single-page application.
const CLIENT_ID: &str = "my-spa";

/// The scopes the page asks for: the SDK's defaults and the demo API's permission.
const SCOPE: &str = "openid profile email read:messages";

/// The SDK's browser bundle, when the pinned version is installed; otherwise skips (or, in CI, fails).
fn sdk_bundle() -> Option<String> {
    if !require_npm_packages("auth0-spa-js", &[SPA_JS]) {
        return None;
    }
    let bundle = interop_dir().join("node_modules/@auth0/auth0-spa-js/dist/auth0-spa-js.production.js");
    Some(std::fs::read_to_string(bundle).unwrap())
}

/// The documented tenant file with the documented single-page app added, for a page at `origin` instead of the
/// docs' [`DOCUMENTED_APP`].
fn tenant(origin: &str) -> String {
    let spa = documented("toml", "file: tenant.toml, single-page app");
    assert!(spa.contains(&format!("client_id = \"{CLIENT_ID}\"")), "{spa}");
    assert!(spa.contains(&format!("web_origins = [\"{DOCUMENTED_APP}\"]")), "{spa}");
    format!("{}\n{spa}", documented("toml", "file: tenant.toml")).replace(DOCUMENTED_APP, origin)
}

#[test]
fn the_documented_settings_are_the_pages() {
    let settings = documented("js", "auth0-spa-js");
    for setting in [
        "domain: 'http://127.0.0.1:4000',".to_owned(),
        format!("clientId: '{CLIENT_ID}',"),
        format!("redirect_uri: '{DOCUMENTED_APP}/',"),
        format!("audience: '{DEMO_AUDIENCE}',"),
        format!("scope: '{SCOPE}',"),
        "useRefreshTokens: true,".to_owned(),
    ] {
        assert!(settings.contains(&setting), "docs/issuer.md's createAuth0Client has no {setting}\n{settings}");
    }
    let page = include_str!("spa/app.js");
    for option in ["domain:", "clientId:", "redirect_uri:", "audience:", "scope:", "useRefreshTokens: true"] {
        assert!(page.contains(option), "the page sets {option}");
    }
}

/// The page, its script, the SDK's bundle, the page's settings (the refresh client's `cacheLocation` when given),
/// and the demo API trusting `issuer`.
async fn app(issuer: &str, bundle: String, cache_location: Option<&str>) -> Router {
    let verifier = demo_verifier(issuer).await;
    // `domain` as the full URL, without the trailing slash: the SDK appends `/authorize` and expects `iss` to be
    // this URL with a slash.
    let mut config = json!({
        "domain": issuer.trim_end_matches('/'),
        "clientId": CLIENT_ID,
        "audience": DEMO_AUDIENCE,
        "scope": SCOPE,
    });
    if let Some(location) = cache_location {
        config["cacheLocation"] = json!(location);
    }
    const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
    Router::new()
        .route("/", get(|| async { Html(include_str!("spa/index.html")) }))
        .route("/app.js", get(|| async { ([(header::CONTENT_TYPE, JAVASCRIPT)], include_str!("spa/app.js")) }))
        .route("/auth0-spa-js.production.js", get(|| async move { ([(header::CONTENT_TYPE, JAVASCRIPT)], bundle) }))
        .route("/config.json", get(|| async move { axum::Json(config) }))
        .merge(quickstart::app(verifier))
}

/// The issuer's journal after entry `since`: (method, path, status) of each request.
async fn journal(issuer: &str, since: u64) -> (u64, Vec<(String, String, u16)>) {
    let entries: Value = reqwest::get(format!("{issuer}__admin/journal")).await.unwrap().json().await.unwrap();
    let mut last = since;
    let mut requests = Vec::new();
    for entry in entries.as_array().unwrap() {
        let seq = entry["seq"].as_u64().unwrap();
        if seq > since {
            last = last.max(seq);
            let method = entry["method"].as_str().unwrap().to_owned();
            requests.push((
                method,
                entry["path"].as_str().unwrap().to_owned(),
                entry["status"].as_u64().unwrap() as u16,
            ));
        }
    }
    (last, requests)
}

/// Whether `requests` holds `method path` answered `status`.
fn has(requests: &[(String, String, u16)], method: &str, path: &str, status: u16) -> bool {
    requests.iter().any(|(m, p, s)| m == method && p == path && *s == status)
}

/// Clicks the page's button `action` and waits for its run to end; returns the outcome (`ok` or `error`) and the
/// JSON the page shows.
async fn run(client: &Client, action: &str) -> (String, Value) {
    let section = format!("#result-{action}");
    let before: u64 =
        client.find(Locator::Css(&section)).await.unwrap().attr("data-run").await.unwrap().unwrap().parse().unwrap();
    client.find(Locator::Id(action)).await.unwrap().click().await.unwrap();
    let done = wait_for(client, &format!("{section}[data-run='{}']", before + 1)).await;
    let outcome = done.attr("data-outcome").await.unwrap().unwrap();
    let shown = text_of(client, &format!("{section} pre")).await;
    (outcome, serde_json::from_str(&shown).unwrap_or_else(|e| panic!("{action}: {e}: {shown}")))
}

/// Waits until the page has started and shows the session state `state`.
async fn wait_for_session(client: &Client, state: &str) {
    wait_for(client, "body[data-ready='true']").await;
    let shown = wait_for(client, "#session").await;
    let now = shown.attr("data-state").await.unwrap().unwrap();
    assert_eq!(now, state, "{}", shown.text().await.unwrap());
}

/// What both silent renewals must answer: alice's tokens, the ID token from the same login session.
fn assert_alice(step: &str, answer: &Value, login: &Value) {
    let id_token = &answer["id_token"];
    assert_eq!(id_token["sub"], "auth0|alice", "{step}: {answer}");
    assert_eq!(id_token["aud"], CLIENT_ID, "{step}: {answer}");
    assert_eq!((&id_token["sid"], &id_token["auth_time"]), (&login["sid"], &login["auth_time"]), "{step}: {answer}");
    let access = &answer["access_token"];
    assert_eq!(access["sub"], "auth0|alice", "{step}: {answer}");
    let audiences = access["aud"].as_array().map(|a| a.to_vec()).unwrap_or_else(|| vec![access["aud"].clone()]);
    assert!(audiences.contains(&json!(DEMO_AUDIENCE)), "{step}: {answer}");
    assert_eq!(access["permissions"], json!(["read:messages"]), "{step}: {answer}");
}

/// The issuer with the test's tenant, the page and the demo API on another port of 127.0.0.1, and a browser.
struct Setup {
    issuer: String,
    origin: String,
    browser: support::browser::Browser,
    _issuer: tokio::process::Child,
    _tenant: tempfile::NamedTempFile,
}

/// How a test runs the page.
#[derive(Clone, Copy)]
struct Page {
    /// The host the browser opens the page as: `127.0.0.1`, the issuer's host, or `localhost`, another site.
    host: &'static str,
    /// Where the refresh client keeps its tokens (`None`: the SDK's default, memory and its web worker).
    cache_location: Option<&'static str>,
    /// Whether the tenant lists the page's origin in the client's `web_origins`, as documented.
    web_origin_listed: bool,
}

/// The documented set-up: the page on the issuer's site, the SDK's default cache, its origin a web origin.
const DOCUMENTED: Page = Page { host: "127.0.0.1", cache_location: None, web_origin_listed: true };

/// Starts the issuer, the page as `page` says, and a browser.
async fn start(bundle: String, page: Page) -> Setup {
    // The page's origin first: the tenant lists it.
    let (listener, address) = net::listen().await;
    let port = address.rsplit(':').next().unwrap();
    let origin = format!("http://{}:{port}", page.host);
    let mut tenant = tenant(&origin);
    if !page.web_origin_listed {
        tenant = tenant.replace(&format!("web_origins = [\"{origin}\"]"), "web_origins = []");
    }
    let tenant_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tenant_file.path(), tenant).unwrap();
    let (child, mut out) =
        portcullis(&["issuer", "--config", tenant_file.path().to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    let issuer = url_after(&mut out, "portcullis dev issuer at").await;
    drain(out);
    let app = app(&issuer, bundle, page.cache_location).await;
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Setup { issuer, origin, browser: browser().await, _issuer: child, _tenant: tenant_file }
}

/// loginWithRedirect: the issuer's login page, alice picked, back to the page, which runs
/// `handleRedirectCallback`; its outcome (`ok` or `error`) and what the page shows of it.
async fn callback_after_login(setup: &Setup, screenshots: bool) -> (String, Value) {
    let (client, issuer) = (&setup.browser.client, setup.issuer.as_str());
    client.goto(&format!("{}/", setup.origin)).await.unwrap();
    wait_for_session(client, "logged-out").await;
    client.find(Locator::Id("login")).await.unwrap().click().await.unwrap();
    let alice = wait_for(client, "button[name=user][value=alice]").await;
    assert!(client.current_url().await.unwrap().as_str().starts_with(&format!("{issuer}authorize?")));
    assert_eq!(alice.text().await.unwrap(), "Log in as Alice Example");
    if screenshots {
        screenshot(client, "spa-issuer-login").await;
    }
    alice.click().await.unwrap();
    let callback = wait_for(client, "#result-callback[data-run='1']").await;
    let shown = text_of(client, "#result-callback pre").await;
    (callback.attr("data-outcome").await.unwrap().unwrap(), serde_json::from_str(&shown).unwrap())
}

/// [`callback_after_login`], which must succeed; the page then shows alice as `getUser` has her. Returns the ID
/// token's summary the page showed.
async fn log_in_as_alice(setup: &Setup, screenshots: bool) -> Value {
    let (client, issuer) = (&setup.browser.client, setup.issuer.as_str());
    let (outcome, shown) = callback_after_login(setup, screenshots).await;
    assert_eq!(outcome, "ok", "{shown}");
    let login = shown["id_token"].clone();
    assert_eq!(login["iss"], issuer, "{login}");
    assert_eq!(login["has_nonce"], true, "the SDK's nonce came back: {login}");
    assert!(login["sid"].is_string() && login["auth_time"].is_u64(), "{login}");

    // getUser: the profile from the ID token.
    wait_for_session(client, "logged-in").await;
    assert_eq!(text_of(client, "#user-name").await, "Alice Example");
    assert_eq!(text_of(client, "#user-email").await, "alice@example.com");
    assert_eq!(text_of(client, "#user-sub").await, "auth0|alice");
    let url = client.current_url().await.unwrap();
    assert_eq!((url.path(), url.query()), ("/", None), "the code and state leave the address bar");
    login
}

#[tokio::test]
async fn auth0_spa_js_logs_in_renews_silently_calls_the_api_and_logs_out() {
    if !browser_available("auth0_spa_js_logs_in_renews_silently_calls_the_api_and_logs_out") {
        return;
    }
    let Some(bundle) = sdk_bundle() else { return };
    let _one = ONE_BROWSER.lock().await;
    let setup = start(bundle, DOCUMENTED).await;
    let (client, issuer, origin) = (&setup.browser.client, setup.issuer.as_str(), setup.origin.as_str());

    let (seen, _) = journal(issuer, 0).await;
    let login = log_in_as_alice(&setup, true).await;
    let (seen, requests) = journal(issuer, seen).await;
    assert!(has(&requests, "GET", "/authorize", 200), "the login page: {requests:?}");
    assert!(
        requests.iter().any(|(m, p, s)| m == "POST" && p == "/authorize" && (300..400).contains(s)),
        "{requests:?}"
    );
    assert!(has(&requests, "POST", "/oauth/token", 200), "the code was exchanged: {requests:?}");
    screenshot(client, "spa-logged-in").await;

    // getTokenSilently through the iframe: /authorize with prompt=none answers from the session, by web_message.
    let (outcome, answer) = run(client, "silent-iframe").await;
    assert_eq!(outcome, "ok", "{answer}");
    assert_alice("iframe", &answer, &login);
    let (seen, requests) = journal(issuer, seen).await;
    assert!(has(&requests, "GET", "/authorize", 200), "{requests:?}");
    assert!(has(&requests, "POST", "/oauth/token", 200), "{requests:?}");

    // getTokenSilently with the refresh token (from the SDK's web worker), twice: the second use takes the token
    // the first one rotated in (presenting a used one again would end the family).
    for round in 1..=2 {
        let (outcome, answer) = run(client, "silent-refresh").await;
        assert_eq!(outcome, "ok", "refresh {round}: {answer}");
        assert_alice(&format!("refresh {round}"), &answer, &login);
    }
    let (seen, requests) = journal(issuer, seen).await;
    let exchanges = requests.iter().filter(|(m, p, _)| m == "POST" && p == "/oauth/token").count();
    assert_eq!(exchanges, 2, "{requests:?}");
    assert!(!requests.iter().any(|(_, p, _)| p == "/authorize"), "no iframe this time: {requests:?}");
    assert!(requests.iter().all(|(_, _, status)| *status < 400), "{requests:?}");

    // The demo API, on the page's origin, takes the token.
    let (outcome, call) = run(client, "call-api").await;
    assert_eq!(outcome, "ok", "{call}");
    assert_eq!(call["status"], 200, "{call}");
    assert!(call["body"]["message"].as_str().unwrap().starts_with("Hello from a private endpoint"), "{call}");
    screenshot(client, "spa-tokens").await;

    // revokeRefreshToken: the SDK's worker posts the token to /oauth/revoke (CORS, with its Auth0-Client header)
    // and forgets it, so the next refresh has none.
    let (outcome, answer) = run(client, "revoke").await;
    assert_eq!(outcome, "ok", "{answer}");
    let (outcome, answer) = run(client, "silent-refresh").await;
    assert_eq!(outcome, "error", "{answer}");
    assert_eq!(answer["error"], "missing_refresh_token", "{answer}");
    let (seen, requests) = journal(issuer, seen).await;
    assert!(
        has(&requests, "OPTIONS", "/oauth/revoke", 200) && has(&requests, "POST", "/oauth/revoke", 200),
        "{requests:?}"
    );

    // logout with returnTo: the issuer ends its session and sends the browser back to the page, logged out.
    client.find(Locator::Id("logout")).await.unwrap().click().await.unwrap();
    wait_for(client, "#session[data-state='logged-out']").await;
    wait_for_session(client, "logged-out").await;
    assert_eq!(client.current_url().await.unwrap().as_str(), format!("{origin}/"));
    let (seen, requests) = journal(issuer, seen).await;
    assert!(has(&requests, "GET", "/v2/logout", 302), "{requests:?}");

    // Silent login now fails as Auth0's does: login_required, from the issuer (not a timeout).
    let (outcome, answer) = run(client, "silent-iframe").await;
    assert_eq!(outcome, "error", "{answer}");
    assert_eq!(answer["error"], "login_required", "{answer}");
    let (_, requests) = journal(issuer, seen).await;
    assert!(has(&requests, "GET", "/authorize", 200), "{requests:?}");
    assert!(!has(&requests, "POST", "/oauth/token", 200), "no token without a session: {requests:?}");
    screenshot(client, "spa-logged-out").await;
    setup.browser.quit().await;
}

/// The refresh token the SDK keeps in `localStorage` for the demo API.
async fn stored_refresh_token(client: &Client) -> String {
    let found = client
        .execute(
            "const key = Object.keys(localStorage).find((k) => k.startsWith(arguments[0]));\
             return key ? JSON.parse(localStorage.getItem(key)).body.refresh_token : null;",
            vec![json!(format!("@@auth0spajs@@::{CLIENT_ID}::{DEMO_AUDIENCE}::"))],
        )
        .await
        .unwrap();
    found.as_str().unwrap_or_else(|| panic!("no refresh token in localStorage: {found}")).to_owned()
}

#[tokio::test]
async fn auth0_spa_js_follows_refresh_token_rotation_a_replayed_token_ends_the_family_and_revocation_works() {
    if !browser_available(
        "auth0_spa_js_follows_refresh_token_rotation_a_replayed_token_ends_the_family_and_revocation_works",
    ) {
        return;
    }
    let Some(bundle) = sdk_bundle() else { return };
    let _one = ONE_BROWSER.lock().await;
    // `cacheLocation: 'localstorage'`: the SDK keeps its tokens where the test can see them.
    let setup = start(bundle, Page { cache_location: Some("localstorage"), ..DOCUMENTED }).await;
    let (client, issuer) = (&setup.browser.client, setup.issuer.as_str());
    let login = log_in_as_alice(&setup, false).await;

    let first = stored_refresh_token(client).await;
    let (outcome, answer) = run(client, "silent-refresh").await;
    assert_eq!(outcome, "ok", "{answer}");
    assert_alice("refresh", &answer, &login);
    let second = stored_refresh_token(client).await;
    assert_ne!(first, second, "the refresh rotated the token and the SDK kept the new one");

    // The first token, presented again, is refused as reused, and its whole family ends with it.
    let refused = refresh_directly(issuer, &first).await;
    assert_eq!(refused["error"], "invalid_grant", "{refused}");

    // So the SDK's current token is refused too: the error Auth0 answers, which the SDK passes on.
    let (outcome, answer) = run(client, "silent-refresh").await;
    assert_eq!(outcome, "error", "{answer}");
    assert_eq!(answer["error"], "invalid_grant", "{answer}");
    assert_eq!(answer["error_description"], "Unknown or invalid refresh token.", "{answer}");

    // A new login starts a new family ("Continue as …" on the login page); revokeRefreshToken sends its token to
    // /oauth/revoke, and the issuer refuses it from then on.
    client.find(Locator::Id("login")).await.unwrap().click().await.unwrap();
    let again = wait_for(client, "button[name=user][value=alice]").await;
    assert_eq!(again.text().await.unwrap(), "Continue as Alice Example");
    again.click().await.unwrap();
    let callback = wait_for(client, "#result-callback[data-run='1']").await;
    assert_eq!(callback.attr("data-outcome").await.unwrap().as_deref(), Some("ok"));
    let third = stored_refresh_token(client).await;
    let (outcome, answer) = run(client, "revoke").await;
    assert_eq!(outcome, "ok", "{answer}");
    let refused = refresh_directly(issuer, &third).await;
    assert_eq!(refused["error"], "invalid_grant", "the revoked token: {refused}");
    setup.browser.quit().await;
}

/// The token endpoint's answer to a refresh with `refresh_token`, sent from outside the browser; it must be a
/// refusal.
async fn refresh_directly(issuer: &str, refresh_token: &str) -> Value {
    let answer = reqwest::Client::new()
        .post(format!("{issuer}oauth/token"))
        .form(&[("grant_type", "refresh_token"), ("client_id", CLIENT_ID), ("refresh_token", refresh_token)])
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_client_error(), "{}", answer.status());
    answer.json().await.unwrap()
}

#[tokio::test]
async fn silent_login_through_the_iframe_needs_the_same_site_and_refresh_tokens_do_not() {
    if !browser_available("silent_login_through_the_iframe_needs_the_same_site_and_refresh_tokens_do_not") {
        return;
    }
    let Some(bundle) = sdk_bundle() else { return };
    let _one = ONE_BROWSER.lock().await;
    // The page as `localhost`, the issuer on 127.0.0.1: two sites, though both are this machine. The tenant lists
    // the localhost origin, so the login and the code exchange work.
    let setup = start(bundle, Page { host: "localhost", ..DOCUMENTED }).await;
    let (client, issuer) = (&setup.browser.client, setup.issuer.as_str());
    let login = log_in_as_alice(&setup, false).await;

    // The iframe reaches the issuer, but the browser keeps the SameSite=Lax session cookie from a cross-site frame:
    // no session, so login_required.
    let (seen, _) = journal(issuer, 0).await;
    let (outcome, answer) = run(client, "silent-iframe").await;
    assert_eq!(outcome, "error", "{answer}");
    assert_eq!(answer["error"], "login_required", "{answer}");
    let (_, requests) = journal(issuer, seen).await;
    assert!(has(&requests, "GET", "/authorize", 200), "the iframe was answered: {requests:?}");

    // The refresh token needs no cookie.
    let (outcome, answer) = run(client, "silent-refresh").await;
    assert_eq!(outcome, "ok", "{answer}");
    assert_alice("refresh from another site", &answer, &login);
    setup.browser.quit().await;
}

#[tokio::test]
async fn an_origin_missing_from_web_origins_fails_the_code_exchange_in_the_browser() {
    if !browser_available("an_origin_missing_from_web_origins_fails_the_code_exchange_in_the_browser") {
        return;
    }
    let Some(bundle) = sdk_bundle() else { return };
    let _one = ONE_BROWSER.lock().await;
    let setup = start(bundle, Page { web_origin_listed: false, ..DOCUMENTED }).await;
    let (seen, _) = journal(&setup.issuer, 0).await;
    // The preflight gets no CORS headers, so the browser never sends the exchange: the SDK only sees the network
    // error, which it reports as it is.
    let (outcome, shown) = callback_after_login(&setup, false).await;
    assert_eq!(outcome, "error", "{shown}");
    assert_eq!(shown["error_description"], "Failed to fetch", "{shown}");
    let (_, requests) = journal(&setup.issuer, seen).await;
    assert!(has(&requests, "OPTIONS", "/oauth/token", 200), "the preflight: {requests:?}");
    assert!(!requests.iter().any(|(m, p, _)| m == "POST" && p == "/oauth/token"), "{requests:?}");
    wait_for_session(&setup.browser.client, "logged-out").await;
    setup.browser.quit().await;
}
