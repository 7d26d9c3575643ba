//! Logout: Auth0's `GET /v2/logout` and OpenID Connect RP-Initiated Logout 1.0 at `GET|POST /oidc/logout`.
//!
//! Both end the browser's session (the server's entry removed, the cookie expired) whatever else the request
//! says, then return to the app only at one of the identified client's `logout_urls`, matched exactly; any other
//! URL gets the error page saying what to add, and nothing is redirected.

use crate::authorize::page::{DEV_ONLY, browser_page, error_page, html_response};
use crate::authorize::request::repeated;
use crate::config::Client;
use crate::issuer::DevIssuer;
use crate::params::Params;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use portcullis::clock::ManualClock;
use std::sync::Arc;

/// `GET /v2/logout?client_id=…&returnTo=…` (Auth0).
pub(crate) async fn v2(State(issuer): State<DevIssuer>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let params = Params::from_form(query.unwrap_or_default().as_bytes());
    let answer = v2_answer(&issuer, &params);
    finish(&issuer, &headers, answer)
}

fn v2_answer(issuer: &DevIssuer, params: &Params) -> Result<Option<String>, String> {
    if let Some(name) = repeated(params, &["client_id", "returnTo"]) {
        return Err(format!("{name} is repeated: send each parameter once"));
    }
    let get = |name: &str| params.get(name).filter(|v| !v.is_empty());
    let Some(return_to) = get("returnTo") else { return Ok(None) };
    let Some(client_id) = get("client_id") else {
        return Err(format!(
            "returnTo {return_to} needs client_id: the URL must be one of that client's allowed logout URLs"
        ));
    };
    let client = issuer.client(client_id).ok_or_else(|| "unknown client_id".to_owned())?;
    allowed(&client, return_to).map(|()| Some(return_to.clone()))
}

/// `GET /oidc/logout` (RP-Initiated Logout 1.0, parameters in the query).
pub(crate) async fn oidc_get(
    State(issuer): State<DevIssuer>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::from_form(query.unwrap_or_default().as_bytes());
    let answer = oidc_answer(&issuer, &params);
    finish(&issuer, &headers, answer)
}

/// `POST /oidc/logout` (RP-Initiated Logout 1.0, parameters in a form body).
pub(crate) async fn oidc_post(State(issuer): State<DevIssuer>, headers: HeaderMap, body: Bytes) -> Response {
    let params = Params::from_form(&body);
    let answer = oidc_answer(&issuer, &params);
    finish(&issuer, &headers, answer)
}

fn oidc_answer(issuer: &DevIssuer, params: &Params) -> Result<Option<String>, String> {
    let single = ["id_token_hint", "client_id", "post_logout_redirect_uri", "state", "logout_hint", "ui_locales"];
    if let Some(name) = repeated(params, &single) {
        return Err(format!("{name} is repeated: send each parameter once"));
    }
    let get = |name: &str| params.get(name).filter(|v| !v.is_empty());
    let hinted = match get("id_token_hint") {
        None => None,
        Some(hint) => Some(hint_client(issuer, hint)?),
    };
    let named = get("client_id");
    if let (Some(hinted), Some(named)) = (&hinted, named)
        && hinted != named
    {
        return Err(format!("id_token_hint was issued to client {hinted}, but client_id is {named}"));
    }
    let Some(target) = get("post_logout_redirect_uri") else { return Ok(None) };
    let Some(client_id) = hinted.as_deref().or(named.map(String::as_str)) else {
        return Err(format!(
            "post_logout_redirect_uri {target} needs client_id or id_token_hint: the URL must be one of that \
             client's allowed logout URLs"
        ));
    };
    let client = issuer.client(client_id).ok_or_else(|| "unknown client_id".to_owned())?;
    allowed(&client, target)?;
    let mut location = target.clone();
    if let Some(state) = get("state") {
        match url::Url::parse(target) {
            Ok(mut url) => {
                url.query_pairs_mut().append_pair("state", state);
                location = url.to_string();
            }
            Err(_) => return Err(format!("post_logout_redirect_uri {target} is not a URL")),
        }
    }
    Ok(Some(location))
}

/// Whether `url` is one of `client`'s logout URLs, exactly; if not, the text that says what to add.
fn allowed(client: &Client, url: &str) -> Result<(), String> {
    if client.logout_urls.iter().any(|allowed| allowed == url) {
        return Ok(());
    }
    let list = if client.logout_urls.is_empty() { "none".to_owned() } else { client.logout_urls.join(", ") };
    Err(format!(
        "Logout URL mismatch: {url} is not an allowed logout URL of client {} (allowed: {list}). Add it to the \
         client's logout_urls (Auth0: Application Settings → Allowed Logout URLs). It must match exactly — scheme, \
         host, port and path: localhost and 127.0.0.1 are different hosts.",
        client.client_id
    ))
}

/// The client an `id_token_hint` was issued to: the token must carry this issuer's `iss` and a valid signature by
/// one of its published keys, and name one client as `aud`. Its expiry is ignored (RP-Initiated Logout §2: a
/// logout often comes after the ID token expired).
fn hint_client(issuer: &DevIssuer, hint: &str) -> Result<String, String> {
    let refused = || "id_token_hint is not an ID token from this issuer".to_owned();
    let payload = hint.split('.').nth(1).and_then(crate::base64url::decode).ok_or_else(refused)?;
    let claims: serde_json::Value = serde_json::from_slice(&payload).map_err(|_| refused())?;
    let audience = match &claims["aud"] {
        serde_json::Value::String(aud) => aud.clone(),
        serde_json::Value::Array(auds) if auds.len() == 1 => auds[0].as_str().ok_or_else(refused)?.to_owned(),
        _ => return Err(refused()),
    };
    let issued_at = claims["iat"].as_u64().ok_or_else(refused)?;
    let keys = portcullis::KeySet::from_jwks_json(issuer.jwks().to_string().as_bytes()).map_err(|_| refused())?;
    // Checked as of the moment it was issued: the signature, issuer and audience count, the expiry does not.
    let verifier = portcullis::Verifier::builder()
        .issuer(issuer.issuer())
        .audience(audience.clone())
        .keys(keys)
        .clock(Arc::new(ManualClock::at_unix(issued_at)))
        .without_cache()
        .build()
        .map_err(|_| refused())?;
    verifier.verify(hint).map_err(|_| refused())?;
    if issuer.client(&audience).is_none() {
        return Err(format!("id_token_hint was issued to {audience}, which is not a client of this tenant"));
    }
    Ok(audience)
}

/// Ends the browser's session and answers: a redirect to the checked URL, the logged-out page, or the error page.
fn finish(issuer: &DevIssuer, headers: &HeaderMap, answer: Result<Option<String>, String>) -> Response {
    if let Some(id) = issuer.session_cookie_in(headers) {
        issuer.end_session(&id);
    }
    let mut response = match answer {
        Ok(Some(location)) => match HeaderValue::from_str(&location) {
            Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
            Err(_) => error_page(StatusCode::BAD_REQUEST, "the logout URL cannot be sent as a header"),
        },
        Ok(None) => {
            let main = html! {
                h1 { "Logged out" }
                p id="logged-out" { "You are logged out of the portcullis dev issuer." }
                p { em { (DEV_ONLY) "." } }
            };
            html_response(StatusCode::OK, browser_page("Logged out", main))
        }
        Err(why) => error_page(StatusCode::BAD_REQUEST, &format!("{why} You are logged out; nothing was redirected.")),
    };
    response.headers_mut().append(header::SET_COOKIE, issuer.expired_session_cookie());
    response
}
