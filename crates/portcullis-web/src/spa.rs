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

use crate::html::{Current, page, secured};
use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header;
use maud::{Markup, html};
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
    page("Demo app", Current::App, Some("/"), app_body(config), policy)
}

fn app_body(config: &SpaConfig) -> Markup {
    html! {
        div id="app" data-issuer=(config.issuer) data-client-id=(config.client_id) data-audience=(config.audience)
            data-scope=(config.scope) {
            "\n" h1 { "portcullis demo app" }
            "\n"
            p {
                "A browser app as your users run it: it logs in at the issuer with the authorization code flow and \
                 PKCE, keeps the access token in this page's memory only (reloading the page forgets it), and calls \
                 the API with " code { "Authorization: Bearer" } "."
            }
            "\n"
            section aria-labelledby="session-title" {
                h2 id="session-title" { "Session" }
                "\n" p id="session" role="status" aria-live="polite" class="verdict" { "Not logged in." }
                "\n"
                div class="actions" {
                    button type="button" id="login" { "Log in" }
                    button type="button" id="logout" hidden { "Log out" }
                }
                "\n"
            }
            "\n"
            section aria-labelledby="calls-title" {
                h2 id="calls-title" { "Call the API" }
                "\n"
                ul class="actions" id="calls" {
                    @for path in &config.calls {
                        li { button type="button" data-call=(path) { "GET " (path) } }
                    }
                }
                "\n" div id="results" aria-live="polite" {}
                "\n"
            }
            "\n"
            noscript {
                p class="verdict fail" {
                    "This app needs JavaScript; the token debugger and status pages do not."
                }
            }
            "\n"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{SpaConfig, app_body};

    #[test]
    fn hostile_configuration_stays_inside_its_attributes() {
        let hostile = "\"><script>alert(1)</script>'&";
        let escaped = "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;'&amp;";
        let config = SpaConfig {
            issuer: hostile.into(),
            client_id: hostile.into(),
            audience: hostile.into(),
            scope: hostile.into(),
            calls: vec![hostile.into()],
        };
        let html = app_body(&config).into_string();
        assert!(
            html.starts_with(&format!(
                "<div id=\"app\" data-issuer=\"{escaped}\" data-client-id=\"{escaped}\" data-audience=\"{escaped}\" \
             data-scope=\"{escaped}\">"
            )),
            "{html}"
        );
        assert!(
            html.contains(&format!("<li><button type=\"button\" data-call=\"{escaped}\">GET {escaped}</button></li>"))
        );
        assert!(!html.contains("<script>"), "{html}");
    }
}
