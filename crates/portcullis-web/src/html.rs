//! What every page shares: the layout, the stylesheet and the security headers.

use axum::response::{Html, IntoResponse, Response};
use http::{HeaderValue, header};
use maud::{Markup, PreEscaped, html};

/// The policy of the server-rendered pages: no script at all, and nothing from any other origin.
pub(crate) const PAGE_POLICY: &str =
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const STYLESHEET: &str = include_str!("../assets/portcullis.css");

/// The document type, as the pages have always spelled it.
const DOCTYPE: PreEscaped<&str> = PreEscaped("<!doctype html>");

/// Which page the navigation marks as the current one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Current {
    App,
    Debugger,
    Status,
}

/// A whole page: `body` inside the shared layout, with the security headers and `policy`.
pub(crate) fn page(title: &str, current: Current, app: Option<&str>, body: Markup, policy: &str) -> Response {
    secured(Html(layout(title, current, app, body).into_string()).into_response(), policy)
}

/// The shared layout around `body`.
fn layout(title: &str, current: Current, app: Option<&str>, body: Markup) -> Markup {
    let link = |path: &str, label: &str, this: Current| {
        html! { li { a href=(path) aria-current=[(this == current).then_some("page")] { (label) } } }
    };
    html! {
        (DOCTYPE) "\n"
        html lang="en" {
            "\n"
            head {
                "\n" meta charset="utf-8";
                "\n" meta name="viewport" content="width=device-width, initial-scale=1";
                "\n" title { (title) " — portcullis" }
                "\n" link rel="stylesheet" href="/portcullis.css";
                "\n"
                @if current == Current::App {
                    script src="/spa.js" defer {}
                    "\n"
                }
            }
            "\n"
            body {
                "\n" a class="skip" href="#main" { "Skip to content" }
                "\n"
                header {
                    nav aria-label="portcullis pages" {
                        span class="brand" { "portcullis" }
                        ul {
                            @if let Some(app) = app {
                                (link(app, "Demo app", Current::App))
                            }
                            (link("/debugger", "Token debugger", Current::Debugger))
                            (link("/status", "Status", Current::Status))
                        }
                    }
                }
                "\n"
                main id="main" { "\n" (body) "\n" }
                "\n"
            }
            "\n"
        }
        "\n"
    }
}

/// Each item as code, separated by spaces.
pub(crate) fn codes(items: &[String]) -> Markup {
    html! {
        @for (number, item) in items.iter().enumerate() {
            @if number > 0 { " " }
            code { (item) }
        }
    }
}

/// Adds the headers every page carries: `policy` as Content-Security-Policy, no caching, no referrer, no
/// framing, no content sniffing.
pub(crate) fn secured(mut response: Response, policy: &str) -> Response {
    let headers = response.headers_mut();
    if let Ok(policy) = HeaderValue::from_str(policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    response
}

/// `/portcullis.css`.
pub(crate) async fn stylesheet() -> Response {
    let response = ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLESHEET).into_response();
    secured(response, PAGE_POLICY)
}

#[cfg(test)]
mod tests {
    use super::{Current, layout};
    use maud::html;

    #[test]
    fn escape_neutralises_markup_and_attribute_quotes() {
        let hostile = "<a href=\"x\" title='y'>&</a>";
        let page =
            layout(hostile, Current::Debugger, Some(hostile), html! { p data-x=(hostile) { (hostile) } }).into_string();
        // Text, attribute values and the title: markup stays text, and a value cannot leave its (always
        // double-quoted) attribute.
        let text = "&lt;a href=&quot;x&quot; title='y'&gt;&amp;&lt;/a&gt;";
        assert!(page.contains(&format!("<title>{text} — portcullis</title>")), "{page}");
        assert!(page.contains(&format!("<li><a href=\"{text}\">Demo app</a></li>")), "{page}");
        assert!(page.contains(&format!("<p data-x=\"{text}\">{text}</p>")), "{page}");
        assert!(!page.contains("<a href=\"x\""), "{page}");
    }
}
