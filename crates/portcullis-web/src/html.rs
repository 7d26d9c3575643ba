//! What every page shares: escaping, the layout, the stylesheet and the security headers.

use axum::response::{Html, IntoResponse, Response};
use http::{HeaderValue, header};

/// The policy of the server-rendered pages: no script at all, and nothing from any other origin.
pub(crate) const PAGE_POLICY: &str =
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const STYLESHEET: &str = include_str!("../assets/portcullis.css");

/// Escapes text for HTML content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Which page the navigation marks as the current one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Current {
    App,
    Debugger,
    Status,
}

/// A whole page: `body` inside the shared layout, with the security headers and `policy`.
pub(crate) fn page(title: &str, current: Current, app: Option<&str>, body: &str, policy: &str) -> Response {
    let mut links = String::new();
    let mut link = |path: &str, label: &str, this: Current| {
        let marker = if this == current { " aria-current=\"page\"" } else { "" };
        links.push_str(&format!("<li><a href=\"{}\"{marker}>{label}</a></li>", escape(path)));
    };
    if let Some(app) = app {
        link(app, "Demo app", Current::App);
    }
    link("/debugger", "Token debugger", Current::Debugger);
    link("/status", "Status", Current::Status);
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} — portcullis</title>\n<link rel=\"stylesheet\" href=\"/portcullis.css\">\n{}</head>\n<body>\n\
         <a class=\"skip\" href=\"#main\">Skip to content</a>\n\
         <header><nav aria-label=\"portcullis pages\"><span class=\"brand\">portcullis</span><ul>{links}</ul></nav></header>\n\
         <main id=\"main\">\n{body}\n</main>\n</body>\n</html>\n",
        escape(title),
        if current == Current::App { "<script src=\"/spa.js\" defer></script>\n" } else { "" },
    );
    secured(Html(html).into_response(), policy)
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
    use super::escape;

    #[test]
    fn escape_neutralises_markup_and_attribute_quotes() {
        assert_eq!(
            escape("<a href=\"x\" title='y'>&</a>"),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }
}
