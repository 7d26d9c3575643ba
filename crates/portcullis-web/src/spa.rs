//! The demo's single-page app: "Log in" at the issuer (authorization code + PKCE S256, `state` checked), the code
//! exchanged for an access token kept in memory only, and the API called with it.
//!
//! Served at `/` and at `/callback` (the page the issuer redirects back to; register
//! `<origin>/callback` as the client's callback URL and `<origin>` as an allowed web origin). Merge it with
//! [`pages`](crate::pages), which serves the stylesheet.
//!
//! ```
//! let spa = portcullis_web::spa::SpaConfig::new(
//!     "http://127.0.0.1:4000/",
//!     "demo-spa",
//!     "https://api.example",
//!     "openid profile read:messages",
//!     vec!["/api/public".into(), "/api/private".into()],
//! );
//! let app: axum::Router = portcullis_web::spa::router(spa).unwrap();
//! ```

use crate::html::{Current, escape, page, secured};
use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header;
use std::fmt::Write;
use std::sync::Arc;

const SCRIPT: &str = include_str!("../assets/spa.js");

/// What the app logs in with and what it calls.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SpaConfig {
    /// The issuer's base URL (its `/authorize` and `/oauth/token` are used).
    pub issuer: String,
    /// The public client the app is registered as.
    pub client_id: String,
    /// The API identifier the token is asked for.
    pub audience: String,
    /// The scopes asked for.
    pub scope: String,
    /// The API paths the app offers to call (same origin as the app).
    pub calls: Vec<String>,
}

impl SpaConfig {
    /// An app logging in at `issuer` as `client_id`, asking for a token for `audience` with `scope`, and offering
    /// to call `calls`.
    pub fn new(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        audience: impl Into<String>,
        scope: impl Into<String>,
        calls: Vec<String>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            client_id: client_id.into(),
            audience: audience.into(),
            scope: scope.into(),
            calls,
        }
    }
}

/// Why a [`SpaConfig`] cannot be served.
#[derive(Debug)]
pub struct SpaConfigError(String);

impl std::fmt::Display for SpaConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpaConfigError {}

/// The app's routes: `/`, `/callback` and `/spa.js`.
pub fn router(config: SpaConfig) -> Result<Router, SpaConfigError> {
    let issuer = url::Url::parse(&config.issuer)
        .map_err(|e| SpaConfigError(format!("the issuer URL {:?} is not a URL: {e}", config.issuer)))?;
    // The only other origin the app talks to is the issuer's token endpoint.
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self' {}; \
         form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
        issuer.origin().ascii_serialization()
    );
    let shared = Arc::new((config, policy));
    let app_page = {
        let shared = Arc::clone(&shared);
        move || {
            let shared = Arc::clone(&shared);
            async move { app_page(&shared.0, &shared.1) }
        }
    };
    let script = move || {
        let shared = Arc::clone(&shared);
        async move {
            let response = ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT).into_response();
            secured(response, &shared.1)
        }
    };
    Ok(Router::new().route("/", get(app_page.clone())).route("/callback", get(app_page)).route("/spa.js", get(script)))
}

fn app_page(config: &SpaConfig, policy: &str) -> Response {
    let mut calls = String::new();
    for path in &config.calls {
        let _ = write!(calls, "<li><button type=\"button\" data-call=\"{0}\">GET {0}</button></li>", escape(path));
    }
    let body = format!(
        "<div id=\"app\" data-issuer=\"{}\" data-client-id=\"{}\" data-audience=\"{}\" data-scope=\"{}\">\n\
         <h1>portcullis demo app</h1>\n\
         <p>A browser app as your users run it: it logs in at the issuer with the authorization code flow and PKCE, \
         keeps the access token in this page's memory only (reloading the page forgets it), and calls the API with \
         <code>Authorization: Bearer</code>.</p>\n\
         <section aria-labelledby=\"session-title\"><h2 id=\"session-title\">Session</h2>\n\
         <p id=\"session\" role=\"status\" aria-live=\"polite\" class=\"verdict\">Not logged in.</p>\n\
         <div class=\"actions\"><button type=\"button\" id=\"login\">Log in</button>\
         <button type=\"button\" id=\"logout\" hidden>Log out</button></div>\n</section>\n\
         <section aria-labelledby=\"calls-title\"><h2 id=\"calls-title\">Call the API</h2>\n\
         <ul class=\"actions\" id=\"calls\">{calls}</ul>\n<div id=\"results\" aria-live=\"polite\"></div>\n</section>\n\
         <noscript><p class=\"verdict fail\">This app needs JavaScript; the token debugger and status pages do not.</p></noscript>\n</div>",
        escape(&config.issuer),
        escape(&config.client_id),
        escape(&config.audience),
        escape(&config.scope),
    );
    page("Demo app", Current::App, Some("/"), &body, policy)
}
