//! The browser pages in real headless Chromium (Debian's `chromium` and `chromium-driver`, driven over WebDriver):
//! the demo app's login for alice and bob, logout, a tampered `state`, the callback-URL pitfall, the token
//! debugger, the status page, and the same pages on the gateway's admin listener.
//!
//! Every page visited is saved as a PNG in `target/screenshots/` (or in `$PORTCULLIS_SCREENSHOTS`; the images in
//! `docs/images/` come from `PORTCULLIS_SCREENSHOTS=docs/images cargo test -p portcullis-cli --test browser`).
//! Without Chromium the tests skip with the reason; with `CI=true` they fail instead.
#![allow(clippy::unwrap_used)]

mod support;

use fantoccini::key::Key;
use fantoccini::{Client, Locator};
use portcullis_testkit::claims;
use serde_json::{Value, json};
use support::browser::{ONE_BROWSER, browser, browser_available, screenshot, text_of, wait_for};
use support::{drain, line_with, machine_token, portcullis};
use tokio::process::Child;

const AUDIENCE: &str = "https://api.example.com";
const OTHER_AUDIENCE: &str = "https://billing.example.com";

/// The first `http://` URL in `line`, without a trailing slash (the pages' origins and the issuer's base).
fn url_in(line: &str) -> String {
    support::url_in(line).trim_end_matches('/').to_owned()
}

/// `portcullis demo` on free ports, once its tour has run.
struct Demo {
    _child: Child,
    api: String,
    issuer: String,
}

async fn demo() -> Demo {
    let (child, mut out) = portcullis(&["demo", "--port", "0", "--issuer-port", "0"]);
    let issuer = url_in(&line_with(&mut out, "identity provider").await);
    let api = url_in(&line_with(&mut out, "  API ").await);
    line_with(&mut out, "press Ctrl-C to stop").await;
    drain(out);
    Demo { _child: child, api, issuer }
}

/// Checks what every page must have: a language, a label for every control, a name for every button, and no
/// sideways scrolling on a narrow screen (the window is made phone-sized for the check and restored).
async fn check_accessible(client: &Client, name: &str) {
    let report = client
        .execute(
            "const controls = [...document.querySelectorAll('input:not([type=hidden]), textarea, select')];\
             const buttons = [...document.querySelectorAll('button')].filter((b) => !b.hidden);\
             return {\
               lang: document.documentElement.lang,\
               unlabelled: controls.filter((c) => c.labels.length === 0).map((c) => c.outerHTML),\
               nameless: buttons.filter((b) => b.textContent.trim() === '').map((b) => b.outerHTML),\
               h1: document.querySelectorAll('h1').length,\
             };",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(report["lang"], "en", "{name}: {report}");
    assert_eq!(report["unlabelled"], json!([]), "{name}: controls without a label");
    assert_eq!(report["nameless"], json!([]), "{name}: buttons without a name");
    assert_eq!(report["h1"], 1, "{name}: one main heading");
    client.set_window_size(390, 844).await.unwrap();
    let overflow = client
        .execute("return document.documentElement.scrollWidth - document.documentElement.clientWidth;", vec![])
        .await
        .unwrap();
    screenshot(client, &format!("{name}-narrow")).await;
    client.set_window_size(1280, 900).await.unwrap();
    assert!(overflow.as_i64().unwrap() <= 0, "{name}: {overflow} px of sideways scrolling at 390 px wide");
}

/// The `kid` in a token's header.
fn kid_of(token: &str) -> String {
    claims::part(token, 0)["kid"].as_str().unwrap().to_owned()
}

/// Logs in through the demo app as `user` and waits for the session line.
async fn log_in(client: &Client, demo: &Demo, user: &str) {
    client.goto(&format!("{}/", demo.api)).await.unwrap();
    // Keyboard only: the button is focused and activated with Enter.
    client.find(Locator::Id("login")).await.unwrap().send_keys(&Key::Enter.to_string()).await.unwrap();
    let button = wait_for(client, &format!("button[name=user][value={user}]")).await;
    button.click().await.unwrap();
    wait_for(client, "#session.pass").await;
}

/// Clicks the demo app's call button for `path` and returns the status and body it shows.
async fn call(client: &Client, path: &str) -> (String, String) {
    client.find(Locator::Css(&format!("button[data-call='{path}']"))).await.unwrap().click().await.unwrap();
    let card = wait_for(client, &format!("section.call[data-path='{path}'][data-status]")).await;
    let status = card.attr("data-status").await.unwrap().unwrap();
    (status, card.text().await.unwrap())
}

#[tokio::test]
async fn alice_and_bob_log_in_from_the_demo_app_and_call_the_api() {
    if !browser_available("alice_and_bob_log_in_from_the_demo_app_and_call_the_api") {
        return;
    }
    let _one = ONE_BROWSER.lock().await;
    let demo = demo().await;
    let browser = browser().await;
    let client = &browser.client;

    client.goto(&format!("{}/", demo.api)).await.unwrap();
    assert_eq!(text_of(client, "#session").await, "Not logged in.");
    check_accessible(client, "demo-app").await;
    screenshot(client, "demo-app").await;
    let (status, _) = call(client, "/api/private").await;
    assert_eq!(status, "401", "no token yet");

    // alice: the login page, back with a code, the token exchanged; the scoped route answers 200.
    client.find(Locator::Id("login")).await.unwrap().click().await.unwrap();
    wait_for(client, "button[name=user][value=alice]").await;
    check_accessible(client, "issuer-login").await;
    screenshot(client, "issuer-login").await;
    client.find(Locator::Css("button[name=user][value=alice]")).await.unwrap().click().await.unwrap();
    wait_for(client, "#session.pass").await;
    let session = text_of(client, "#session").await;
    assert!(session.starts_with("Logged in as auth0|alice."), "{session}");
    assert!(session.contains("read:messages"), "{session}");
    let url = client.current_url().await.unwrap();
    assert_eq!((url.path(), url.query()), ("/", None), "the code and state leave the address bar");
    let (status, body) = call(client, "/api/private-scoped").await;
    assert_eq!(status, "200", "{body}");
    assert!(body.contains("Hello from a private endpoint"), "{body}");
    let (status, body) = call(client, "/api/protected").await;
    assert_eq!(status, "200");
    assert!(body.contains("auth0|alice"), "{body}");
    let kept = client
        .execute("return [document.cookie, JSON.stringify(localStorage), JSON.stringify(sessionStorage)];", vec![])
        .await
        .unwrap();
    assert_eq!(kept, json!(["", "{}", "{}"]), "the token lives in memory only");
    screenshot(client, "demo-app-alice").await;

    // Log out: the token is gone, the API refuses again.
    client.find(Locator::Id("logout")).await.unwrap().click().await.unwrap();
    assert!(text_of(client, "#session").await.starts_with("Logged out"));
    assert!(client.find(Locator::Id("login")).await.unwrap().is_displayed().await.unwrap());
    let (status, body) = call(client, "/api/private-scoped").await;
    assert_eq!(status, "401", "{body}");

    // bob: logged in, but without read:messages: 403 insufficient_scope with the RFC 6750 challenge.
    log_in(client, &demo, "bob").await;
    assert!(text_of(client, "#session").await.starts_with("Logged in as auth0|bob."));
    let (status, body) = call(client, "/api/private-scoped").await;
    assert_eq!(status, "403", "{body}");
    assert!(body.contains("insufficient_scope"), "{body}");
    assert!(body.contains("scope=\"read:messages\""), "{body}");
    let (status, _) = call(client, "/api/private").await;
    assert_eq!(status, "200");
    screenshot(client, "demo-app-bob").await;
    browser.quit().await;
}

#[tokio::test]
async fn a_tampered_state_and_an_unregistered_callback_are_refused() {
    if !browser_available("a_tampered_state_and_an_unregistered_callback_are_refused") {
        return;
    }
    let _one = ONE_BROWSER.lock().await;
    let demo = demo().await;
    let browser = browser().await;
    let client = &browser.client;

    // The login form's state is changed before alice is picked: the issuer sends the changed state back, the
    // app refuses the callback and never exchanges the code.
    let exchanges = || async {
        let journal = reqwest::get(format!("{}/__admin/journal", demo.issuer)).await.unwrap().text().await.unwrap();
        journal.matches("/oauth/token").count()
    };
    let before = exchanges().await;
    client.goto(&format!("{}/", demo.api)).await.unwrap();
    client.find(Locator::Id("login")).await.unwrap().click().await.unwrap();
    wait_for(client, "button[name=user][value=alice]").await;
    client.execute("document.querySelector('input[name=state]').value = 'forged-state';", vec![]).await.unwrap();
    client.find(Locator::Css("button[name=user][value=alice]")).await.unwrap().click().await.unwrap();
    wait_for(client, "#session.fail").await;
    let session = text_of(client, "#session").await;
    assert!(session.starts_with("Login refused: the state"), "{session}");
    let (status, _) = call(client, "/api/private").await;
    assert_eq!(status, "401", "no token after a refused callback");
    assert_eq!(exchanges().await, before, "the code was never sent to the token endpoint");
    screenshot(client, "demo-app-tampered-state").await;

    // The same app opened as localhost instead of 127.0.0.1 asks to be called back at an unregistered URL: the
    // issuer answers with a page that says what to fix, and never redirects.
    let localhost = demo.api.replace("127.0.0.1", "localhost");
    client.goto(&format!("{localhost}/")).await.unwrap();
    client.find(Locator::Id("login")).await.unwrap().click().await.unwrap();
    let error = wait_for(client, "#error").await.text().await.unwrap();
    assert!(error.starts_with("Callback URL mismatch"), "{error}");
    assert!(error.contains(&format!("{localhost}/callback")), "{error}");
    assert!(error.contains(&format!("{}/callback", demo.api)), "names the allowed callback: {error}");
    assert!(client.current_url().await.unwrap().as_str().starts_with(&demo.issuer));
    screenshot(client, "issuer-callback-mismatch").await;
    browser.quit().await;
}

/// Pastes `token` into the debugger, picks `route` (its label), and submits with the keyboard alone.
async fn debug(client: &Client, base: &str, token: &str, route: &str) {
    client.goto(&format!("{base}/debugger")).await.unwrap();
    let field = client.find(Locator::Id("token")).await.unwrap();
    field.send_keys(token).await.unwrap();
    client.find(Locator::Id("route")).await.unwrap().select_by_label(route).await.unwrap();
    // From the text area, Tab reaches the route list, then the button; Enter submits.
    field.click().await.unwrap();
    client.active_element().await.unwrap().send_keys(&Key::Tab.to_string()).await.unwrap();
    assert_eq!(client.active_element().await.unwrap().attr("id").await.unwrap().as_deref(), Some("route"));
    client.active_element().await.unwrap().send_keys(&Key::Tab.to_string()).await.unwrap();
    let button = client.active_element().await.unwrap();
    assert_eq!(button.text().await.unwrap(), "Check token");
    button.send_keys(&Key::Enter.to_string()).await.unwrap();
    wait_for(client, "#verdict").await;
}

/// Every check row as (check, class, text).
async fn check_rows(client: &Client) -> Vec<(String, String, String)> {
    let rows = client.find_all(Locator::Css("table.checks tbody tr")).await.unwrap();
    let mut out = Vec::new();
    for row in rows {
        out.push((
            row.attr("data-check").await.unwrap().unwrap(),
            row.attr("class").await.unwrap().unwrap(),
            row.text().await.unwrap(),
        ));
    }
    out
}

/// Every resource the page loaded came from its own origin.
async fn only_own_origin(client: &Client) {
    let foreign = client
        .execute(
            "return performance.getEntriesByType('resource').map((e) => e.name)\
                .filter((name) => new URL(name).origin !== location.origin);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(foreign, json!([]), "the page loaded something from another origin");
}

async fn debugger_and_status(client: &Client, base: &str, issuer: &str, scoped_route: &str, name: &str) {
    // The page's policy: nothing from elsewhere, no script, forms only to itself.
    let response = reqwest::get(format!("{base}/debugger")).await.unwrap();
    let policy = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.starts_with("default-src 'none'"), "{policy}");
    assert!(policy.contains("form-action 'self'") && !policy.contains("script-src"), "{policy}");
    assert_eq!(response.headers()["cache-control"], "no-store");

    let wrong = machine_token(issuer, OTHER_AUDIENCE).await;
    debug(client, base, &wrong, "No route: the token checks only").await;
    let verdict = text_of(client, "#verdict").await;
    assert!(verdict.contains("audience_mismatch") && verdict.contains("HTTP 401"), "{verdict}");
    let rows = check_rows(client).await;
    let audience = rows.iter().find(|(check, _, _)| check == "audience").unwrap();
    assert_eq!(audience.1, "fail", "{rows:?}");
    assert!(audience.2.contains("audience mismatch"), "{}", audience.2);
    assert!(audience.2.contains(&format!("Hint: request the token with audience={AUDIENCE}")), "{}", audience.2);
    for passing in ["structure", "key", "signature", "issuer", "expiry"] {
        assert!(rows.iter().any(|(check, class, _)| check == passing && class == "pass"), "{passing}: {rows:?}");
    }
    let expires = text_of(client, "tr[data-claim=exp]").await;
    assert!(expires.contains("expires in"), "{expires}");
    only_own_origin(client).await;
    check_accessible(client, &format!("{name}-debugger-wrong-audience")).await;
    screenshot(client, &format!("{name}-debugger-wrong-audience")).await;

    let good = machine_token(issuer, AUDIENCE).await;
    debug(client, base, &good, scoped_route).await;
    let verdict = text_of(client, "#verdict").await;
    assert!(verdict.starts_with("Allowed"), "{verdict}");
    let rows = check_rows(client).await;
    assert!(rows.len() >= 11, "every check is listed: {rows:?}");
    assert!(rows.iter().all(|(_, class, _)| class == "pass"), "{rows:?}");
    assert!(rows.last().unwrap().0.starts_with("route "), "{rows:?}");
    only_own_origin(client).await;
    screenshot(client, &format!("{name}-debugger-valid")).await;

    // The status page lists the key the tokens are signed with, and what has been decided.
    client.goto(&format!("{base}/status")).await.unwrap();
    let kid = kid_of(&good);
    let key_row = wait_for(client, &format!("tr[data-kid='{kid}']")).await;
    assert!(key_row.text().await.unwrap().contains("RS256"));
    assert_eq!(text_of(client, "[data-state]").await, "fresh");
    let next_refresh = client.find(Locator::XPath("//dt[.='Next refresh']/following-sibling::dd[1]")).await.unwrap();
    assert!(next_refresh.text().await.unwrap().ends_with('Z'), "a UTC time");
    check_accessible(client, &format!("{name}-status")).await;
    screenshot(client, &format!("{name}-status")).await;
}

#[tokio::test]
async fn the_demo_debugger_explains_a_wrong_audience_and_the_status_page_lists_the_keys() {
    if !browser_available("the_demo_debugger_explains_a_wrong_audience_and_the_status_page_lists_the_keys") {
        return;
    }
    let _one = ONE_BROWSER.lock().await;
    let demo = demo().await;
    let browser = browser().await;
    let client = &browser.client;
    debugger_and_status(client, &demo.api, &demo.issuer, "GET /api/private-scoped", "demo").await;
    // The demo's tour was counted: its refusals by reason, the DPoP ones (a replayed proof, a bound token sent as
    // Bearer) included.
    for reason in
        ["token_missing", "audience_mismatch", "insufficient_scope", "dpop_proof_invalid", "token_binding_invalid"]
    {
        wait_for(client, &format!("tr[data-outcome=denied][data-reason={reason}]")).await;
    }
    let status: Value = reqwest::get(format!("{}/status.json", demo.api)).await.unwrap().json().await.unwrap();
    assert_eq!(status["issuers"][0]["issuer"], format!("{}/", demo.issuer));
    assert!(status["requests"][0]["count"].as_u64().unwrap() >= 3, "{status}");
    // The demo API accepts DPoP: its debugger takes a proof, with the request's method and URL, after the token's
    // own button.
    client.goto(&format!("{}/debugger", demo.api)).await.unwrap();
    for id in ["proof", "method", "url"] {
        let field = client.find(Locator::Id(id)).await.unwrap();
        assert_eq!(field.attr("name").await.unwrap().as_deref(), Some(id));
    }
    let buttons = client.find_all(Locator::Css("form button[type=submit]")).await.unwrap();
    let mut labels = Vec::new();
    for button in buttons {
        labels.push(button.text().await.unwrap());
    }
    assert_eq!(labels, ["Check token", "Check token and proof"]);
    browser.quit().await;
}

#[tokio::test]
async fn the_gateway_admin_listener_serves_the_debugger_and_the_status_page() {
    if !browser_available("the_gateway_admin_listener_serves_the_debugger_and_the_status_page") {
        return;
    }
    let _one = ONE_BROWSER.lock().await;
    let demo = demo().await;
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!(
            "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nforward_auth = \"nginx\"\n\
             [[issuers]]\nissuer = \"{}/\"\naudiences = [\"{AUDIENCE}\"]\n\
             [[routes]]\npath = \"/health\"\npublic = true\n\
             [[routes]]\npath = \"/messages/*\"\nmethods = [\"GET\"]\nrequire = {{ scope = \"read:messages\" }}\n",
            demo.issuer
        ),
    )
    .unwrap();
    let (_gateway, mut out) = portcullis(&["serve", "--config", config.path().to_str().unwrap()]);
    let main = url_in(&line_with(&mut out, "portcullis gateway listening on").await);
    let admin_line = line_with(&mut out, "admin listening on").await;
    assert!(admin_line.contains("/debugger, /status"), "{admin_line}");
    let admin = url_in(&admin_line);
    drain(out);
    // A refusal to count before the status page is read; the keys load on the first token.
    let refused = reqwest::Client::new()
        .get(format!("{main}/auth"))
        .header("x-original-method", "GET")
        .header("x-original-uri", "/messages/1")
        .bearer_auth(machine_token(&demo.issuer, OTHER_AUDIENCE).await)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let browser = browser().await;
    debugger_and_status(&browser.client, &admin, &demo.issuer, "GET /messages/*", "gateway").await;
    wait_for(&browser.client, "tr[data-outcome=denied][data-reason=audience_mismatch]").await;
    browser.quit().await;
}
