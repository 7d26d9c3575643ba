//! The issuer's browser pages: the login page, the error page, and their shared layout. Every value from a
//! request is written as escaped text; no page may be framed by another site (clickjacking).

use super::request::AuthorizationRequest;
use crate::issuer::DevIssuer;
use crate::params::Params;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{Markup, PreEscaped, html};

/// The document type, as the pages have always spelled it.
pub(crate) const DOCTYPE: PreEscaped<&str> = PreEscaped("<!doctype html>");

/// The warning every page carries.
pub(crate) const DEV_ONLY: &str = "portcullis development issuer: for development and tests only, never for production";

const BODY_STYLE: &str = "font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 1rem auto; padding: 0 1rem";

const BUTTON_STYLE: &str = "min-height: 44px; padding: 0.5rem 1rem; font: inherit; font-weight: 600";

/// A page of the browser login flow: `main` in the issuer's plain layout.
pub(crate) fn browser_page(title: &str, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " — portcullis dev issuer" }
            body style=(BODY_STYLE) { main { (main) } }
        }
    }
}

/// `markup` as an HTML answer with `status`, never cached and never shown inside another site's frame.
pub(crate) fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, Html(markup.into_string())).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("frame-ancestors 'none'"));
    response
}

/// The page a browser lands on when a request cannot go back to the app: `message` in `<p id="error">`.
pub(crate) fn error_page(status: StatusCode, message: &str) -> Response {
    let main = html! {
        h1 { "Authorization error" }
        p id="error" role="alert" { (message) }
        p { em { (DEV_ONLY) "." } }
    };
    html_response(status, browser_page("Authorization error", main))
}

/// The login page: one form that posts every request parameter back with the picked user. `first` (the user the
/// session remembers, or a cross-site request's `login_hint`), when it is a user of the tenant, comes first as
/// "Continue as …".
pub(crate) fn login_page(
    issuer: &DevIssuer,
    request: &AuthorizationRequest,
    params: &Params,
    first: Option<&str>,
) -> Response {
    let display =
        |id: &str| -> String { issuer.user(id).and_then(|user| user.name.clone()).unwrap_or_else(|| id.to_owned()) };
    let first = first.filter(|id| issuer.user(id).is_some());
    let main = html! {
        p { strong { (DEV_ONLY) "." } }
        h1 { "Log in to " (request.client.client_id) }
        p {
            "Pick a user; there are no passwords. The app asked for scopes " code { (request.scopes.join(" ")) }
            " on " code { (request.audience) } "."
        }
        form method="post" action="/authorize" {
            @for (name, value) in params.iter().filter(|(name, _)| *name != "user") {
                input type="hidden" name=(name) value=(value);
            }
            @if let Some(id) = first {
                p {
                    button type="submit" name="user" value=(id) style=(BUTTON_STYLE) {
                        "Continue as " (display(id))
                    }
                }
                p { "Or log in as someone else:" }
            }
            ul style="list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 0.5rem" {
                @for user in &issuer.tenant().users {
                    li {
                        button type="submit" name="user" value=(user.id) style=(BUTTON_STYLE) {
                            "Log in as " (user.name.as_deref().unwrap_or(&user.id))
                        }
                    }
                }
            }
        }
    };
    html_response(StatusCode::OK, browser_page("Log in", main))
}
