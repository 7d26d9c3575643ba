//! The answer to an authorization request, rendered by its response mode: a redirect with the answer in the query
//! or the fragment, a page that posts it (`form_post`), or a page whose script hands it to the opener or parent
//! window (`web_message`, Auth0's silent authentication).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{PreEscaped, html};
use serde_json::{Map, Value};

/// How the answer reaches the client (`response_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseMode {
    /// In the redirect URI's query.
    Query,
    /// In the redirect URI's fragment.
    Fragment,
    /// In a form the browser posts to the redirect URI.
    FormPost,
    /// In a `postMessage` to the redirect URI's origin.
    WebMessage,
}

impl ResponseMode {
    /// Parses a `response_mode`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "query" => Some(Self::Query),
            "fragment" => Some(Self::Fragment),
            "form_post" => Some(Self::FormPost),
            "web_message" => Some(Self::WebMessage),
            _ => None,
        }
    }
}

/// Where an answer goes: a checked redirect URI, the mode, the client's `state`, and for `web_message` the
/// redirect URI's origin (one of the client's web origins).
#[derive(Debug, Clone)]
pub(crate) struct Destination {
    /// One of the client's callbacks, exactly.
    pub redirect_uri: String,
    /// The response mode.
    pub mode: ResponseMode,
    /// `state`, handed back with every answer.
    pub state: Option<String>,
    /// The origin messages are posted to (`web_message` only).
    pub origin: Option<String>,
}

/// An answer: its name–value pairs, to which `state` is added.
pub(crate) type Answer = Vec<(&'static str, String)>;

/// The error answer `error` with `description`.
pub(crate) fn error(destination: &Destination, error: &str, description: &str) -> Response {
    render(destination, vec![("error", error.to_owned()), ("error_description", description.to_owned())])
}

/// Renders `answer` (with `state`) by the destination's response mode. Nothing here is cached by the browser.
pub(crate) fn render(destination: &Destination, mut answer: Answer) -> Response {
    if let Some(state) = &destination.state {
        answer.push(("state", state.clone()));
    }
    let mut response = match destination.mode {
        ResponseMode::Query | ResponseMode::Fragment => redirect(destination, &answer),
        ResponseMode::FormPost => form_post(&destination.redirect_uri, &answer),
        ResponseMode::WebMessage => web_message(destination.origin.as_deref().unwrap_or("null"), &answer),
    };
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `303 See Other` to the redirect URI with the answer in its query or fragment.
fn redirect(destination: &Destination, answer: &Answer) -> Response {
    let Ok(mut url) = url::Url::parse(&destination.redirect_uri) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "the client's callback URL is not a URL").into_response();
    };
    if destination.mode == ResponseMode::Query {
        url.query_pairs_mut().extend_pairs(answer);
    } else {
        let encoded = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(answer).finish();
        url.set_fragment(Some(&encoded));
    }
    let location = HeaderValue::from_str(url.as_str());
    match location {
        Ok(location) => (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the callback URL cannot be sent as a header").into_response(),
    }
}

/// The script that submits the `form_post` page's form.
const SUBMIT: &str = "document.forms[0].submit();";

/// A `Content-Security-Policy` that runs exactly the inline `script` and loads nothing.
fn script_policy(script: &str) -> String {
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, script.as_bytes());
    format!("default-src 'none'; script-src 'sha256-{}'", base64_simd::STANDARD.encode_to_string(hash))
}

/// `policy` as a header value, or a policy that runs and frames nothing when it cannot be one.
fn policy_header(policy: &str) -> HeaderValue {
    HeaderValue::from_str(policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"))
}

/// A page that posts the answer to `redirect_uri` as a form: at once with scripts, by its button without.
fn form_post(redirect_uri: &str, answer: &Answer) -> Response {
    let markup = html! {
        (super::page::DOCTYPE)
        html lang="en" {
            meta charset="utf-8";
            title { "Returning to the application" }
            body {
                form method="post" action=(redirect_uri) {
                    @for (name, value) in answer {
                        input type="hidden" name=(name) value=(value);
                    }
                    noscript { button type="submit" { "Continue to the application" } }
                }
                script { (PreEscaped(SUBMIT)) }
            }
        }
    };
    let policy = policy_header(&script_policy(SUBMIT));
    (StatusCode::OK, [(header::CONTENT_SECURITY_POLICY, policy)], Html(markup.into_string())).into_response()
}

/// `value` as JSON that is inert inside an HTML `<script>` element: `<`, `>` and `&` are written as `\u` escapes
/// (no `</script>` or `<!--` can appear), and so are U+2028 and U+2029 (line ends to older JavaScript).
pub(crate) fn script_json(value: &Value) -> String {
    let mut out = String::new();
    for c in value.to_string().chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// A page whose script posts `{type: "authorization_response", response: {…}}` to the opener or parent window,
/// for `origin` only (never `"*"`), and which only a page of `origin` may frame (`frame-ancestors`).
fn web_message(origin: &str, answer: &Answer) -> Response {
    let response: Map<String, Value> =
        answer.iter().map(|(name, value)| ((*name).to_owned(), Value::String(value.clone()))).collect();
    let message = serde_json::json!({ "type": "authorization_response", "response": response });
    let script = format!(
        "(window.opener || window.parent).postMessage({}, {});",
        script_json(&message),
        script_json(&Value::String(origin.to_owned()))
    );
    let markup = html! {
        (super::page::DOCTYPE)
        html lang="en" {
            meta charset="utf-8";
            title { "Authorization response" }
            body { script { (PreEscaped(&script)) } }
        }
    };
    // Only the app's own page may frame it (its silent-authentication iframe); no other site can load it unseen.
    let ancestor = if origin == "null" { "'none'" } else { origin };
    let policy = policy_header(&format!("{}; frame-ancestors {ancestor}", script_policy(&script)));
    (StatusCode::OK, [(header::CONTENT_SECURITY_POLICY, policy)], Html(markup.into_string())).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_json_cannot_close_the_script_and_reads_back_the_same() {
        let hostile = "</script><script>alert(1)</script><!-- \"'& \u{2028}\u{2029}";
        let text = script_json(&Value::String(hostile.into()));
        for bad in ["<", ">", "&", "\u{2028}", "\u{2029}"] {
            assert!(!text.contains(bad), "{bad:?} in {text}");
        }
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), Value::String(hostile.into()));
    }
}
