//! `/debugger`: a pasted token checked against this server's own configuration, every check with its outcome.

use crate::html::{Current, PAGE_POLICY, escape, page};
use crate::{Access, Inspect, RouteRule};
use axum::Form;
use axum::extract::State;
use axum::response::Response;
use portcullis::clock::UnixTime;
use portcullis::{Error, Reason, Report, VerifiedToken};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// Largest form the debugger reads: a token of the largest size any sane issuer makes, and then some.
pub(crate) const MAX_FORM_BYTES: usize = 64 * 1024;

/// The submitted form.
#[derive(Deserialize)]
pub(crate) struct Submitted {
    token: String,
    #[serde(default)]
    route: String,
}

/// `GET /debugger`: the empty form.
pub(crate) async fn form(State(inspect): State<Arc<dyn Inspect>>) -> Response {
    render(inspect.as_ref(), &inspect.routes(), "", None, "")
}

/// `POST /debugger`: the form again, with the checks of the submitted token.
pub(crate) async fn check(State(inspect): State<Arc<dyn Inspect>>, Form(submitted): Form<Submitted>) -> Response {
    let token = normalize(&submitted.token);
    let routes = inspect.routes();
    let route = submitted.route.parse::<usize>().ok().filter(|&i| i < routes.len());
    let results = if token.is_empty() {
        "<p class=\"verdict fail\" role=\"alert\">Paste a token first.</p>".to_owned()
    } else {
        results(inspect.as_ref(), &routes, token, route)
    };
    render(inspect.as_ref(), &routes, &submitted.token, route, &results)
}

/// The token without surrounding whitespace or a leading `Bearer ` (as copied from a request).
fn normalize(input: &str) -> &str {
    let trimmed = input.trim();
    trimmed.strip_prefix("Bearer ").or_else(|| trimmed.strip_prefix("bearer ")).map_or(trimmed, str::trim)
}

fn render(inspect: &dyn Inspect, routes: &[RouteRule], token: &str, route: Option<usize>, results: &str) -> Response {
    let mut options = String::from("<option value=\"\">No route: the token checks only</option>");
    for (index, rule) in routes.iter().enumerate() {
        let selected = if route == Some(index) { " selected" } else { "" };
        let _ = write!(options, "<option value=\"{index}\"{selected}>{}</option>", escape(&rule.label));
    }
    let body = format!(
        "<h1>Token debugger</h1>\n\
         <p>Checks a token exactly as this server does, against its own configuration. The token goes to this \
         server only: the page runs no script and its Content-Security-Policy allows no other origin.</p>\n\
         <form method=\"post\" action=\"/debugger\" class=\"stack\">\n\
         <label for=\"token\">Access token</label>\n\
         <textarea id=\"token\" name=\"token\" rows=\"6\" required spellcheck=\"false\" autocomplete=\"off\" \
         autocapitalize=\"off\" aria-describedby=\"token-help\">{}</textarea>\n\
         <p id=\"token-help\" class=\"help\">The compact JWT (three dot-separated parts); a leading \
         <code>Bearer </code> is ignored.</p>\n\
         <label for=\"route\">Route</label>\n<select id=\"route\" name=\"route\">{options}</select>\n\
         <button type=\"submit\">Check token</button>\n</form>\n{results}\n{}",
        escape(token),
        expectations(inspect),
    );
    page("Token debugger", Current::Debugger, inspect.app_path(), &body, PAGE_POLICY)
}

/// What this server accepts, shown under the form.
fn expectations(inspect: &dyn Inspect) -> String {
    let mut out = String::from(
        "<section aria-labelledby=\"expects\"><h2 id=\"expects\">This server accepts</h2>\
         <table><thead><tr><th scope=\"col\">Issuer</th><th scope=\"col\">Audiences</th></tr></thead><tbody>",
    );
    for issuer in inspect.issuers() {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td></tr>",
            escape(&issuer.issuer),
            issuer.audiences.iter().map(|a| format!("<code>{}</code>", escape(a))).collect::<Vec<_>>().join(" ")
        );
    }
    out.push_str("</tbody></table></section>");
    out
}

/// One row of the checks table.
struct Row {
    label: String,
    passed: bool,
    detail: String,
    hint: Option<String>,
}

fn results(inspect: &dyn Inspect, routes: &[RouteRule], token: &str, route: Option<usize>) -> String {
    let report = inspect.explain(token);
    let mut rows: Vec<Row> = report
        .steps
        .iter()
        .map(|step| match &step.outcome {
            Ok(detail) => {
                Row { label: step.check.label().to_owned(), passed: true, detail: detail.clone(), hint: None }
            }
            Err(err) => Row {
                label: step.check.label().to_owned(),
                passed: false,
                detail: err.description().to_owned(),
                hint: step.hint.clone(),
            },
        })
        .collect();
    let chosen = route.and_then(|index| routes.get(index).map(|rule| (index, rule)));
    // The answer this server gives: a token failure first, then the route's rule.
    let mut refusal: Option<Error> = report.verdict.as_ref().err().cloned();
    if let Some((index, rule)) = chosen {
        let label = format!("route {}", rule.label);
        match (&rule.access, &report.verdict) {
            (Access::Public, _) => {
                refusal = None;
                rows.push(Row { label, passed: true, detail: "public: no token needed".into(), hint: None });
            }
            (Access::Token, Ok(_)) => {
                rows.push(Row { label, passed: true, detail: "any valid token".into(), hint: None });
            }
            (Access::Rule(text), Ok(verified)) => match inspect.check_route(index, verified) {
                Ok(()) => rows.push(Row { label, passed: true, detail: format!("met: {text}"), hint: None }),
                Err(err) => {
                    let hint = route_hint(&err, verified);
                    rows.push(Row { label, passed: false, detail: err.description().to_owned(), hint });
                    refusal = Some(err);
                }
            },
            (_, Err(_)) => {
                rows.push(Row { label, passed: false, detail: "not checked: the token is invalid".into(), hint: None });
            }
        }
    }
    let verdict = match &refusal {
        None if chosen.is_some() => "<p class=\"verdict pass\" role=\"status\" id=\"verdict\">Allowed: this server \
                                     lets the request through.</p>"
            .to_owned(),
        None => "<p class=\"verdict pass\" role=\"status\" id=\"verdict\">Valid: every check passed.</p>".to_owned(),
        Some(err) => format!(
            "<p class=\"verdict fail\" role=\"status\" id=\"verdict\">Refused: <strong>{}</strong> (HTTP {}) — {}</p>",
            escape(err.reason().code()),
            err.http_status(),
            escape(err.description())
        ),
    };
    let mut out = format!("<section aria-labelledby=\"result\"><h2 id=\"result\">Result</h2>{verdict}");
    out.push_str(&checks_table(&rows));
    out.push_str(&times(&report, inspect.now()));
    out.push_str(&decoded("Header", report.header.as_ref(), true));
    let title = if report.verdict.is_ok() { "Claims" } else { "Claims (not trusted: the token is invalid)" };
    out.push_str(&decoded(title, report.claims.as_ref(), report.verdict.is_ok()));
    out.push_str("</section>");
    out
}

fn checks_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "<h3>Checks</h3><div class=\"scroll\"><table class=\"checks\"><thead><tr><th scope=\"col\">Check</th>\
         <th scope=\"col\">Outcome</th><th scope=\"col\">Detail</th></tr></thead><tbody>",
    );
    for row in rows {
        let (class, word) = if row.passed { ("pass", "pass") } else { ("fail", "FAIL") };
        let hint = row
            .hint
            .as_deref()
            .map(|hint| format!("<p class=\"hint\"><strong>Hint:</strong> {}</p>", escape(hint)))
            .unwrap_or_default();
        let _ = write!(
            out,
            "<tr data-check=\"{}\" class=\"{class}\"><th scope=\"row\">{}</th><td><span class=\"badge {class}\">{word}</span></td>\
             <td>{}{hint}</td></tr>",
            escape(&row.label),
            escape(&row.label),
            escape(&row.detail)
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

/// `iat`, `nbf` and `exp` as UTC times and as seconds from now.
fn times(report: &Report, clock: UnixTime) -> String {
    let Some(claims) = &report.claims else { return String::new() };
    let now = clock.as_secs_f64();
    let mut rows = String::new();
    for (name, meaning) in [("iat", "issued"), ("nbf", "valid from"), ("exp", "expires")] {
        let Some(value) = claims.get(name) else { continue };
        let Some(seconds) = value.as_f64().filter(|s| (0.0..1e11).contains(s)) else {
            let _ = write!(
                rows,
                "<tr><th scope=\"row\"><code>{name}</code></th><td>{}</td><td colspan=\"2\">not a usable NumericDate</td></tr>",
                escape(&value.to_string())
            );
            continue;
        };
        let utc = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs_f64(seconds));
        let difference = (seconds - now).round() as i64;
        let relative = match difference {
            0 => format!("{meaning} now"),
            d if d > 0 => format!("{meaning} in {d} s"),
            d => format!("{meaning} {} s ago", -d),
        };
        let _ = write!(
            rows,
            "<tr data-claim=\"{name}\"><th scope=\"row\"><code>{name}</code></th><td>{}</td><td>{utc}</td>\
             <td>{relative} (difference {difference:+} s)</td></tr>",
            escape(&value.to_string())
        );
    }
    if rows.is_empty() {
        return String::new();
    }
    let now_utc = humantime::format_rfc3339_seconds(clock.to_system_time());
    format!(
        "<h3>Times</h3><p>This server's clock: {now_utc}.</p><div class=\"scroll\"><table><thead><tr>\
         <th scope=\"col\">Claim</th><th scope=\"col\">Value</th><th scope=\"col\">UTC</th>\
         <th scope=\"col\">From now</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )
}

fn decoded(title: &str, value: Option<&Map<String, Value>>, trusted: bool) -> String {
    let text = match value {
        Some(map) => serde_json::to_string_pretty(map).unwrap_or_default(),
        None => "(cannot be decoded)".to_owned(),
    };
    let class = if trusted { "json" } else { "json untrusted" };
    format!("<h3>{}</h3><pre class=\"{class}\">{}</pre>", escape(title), escape(&text))
}

/// Advice when a valid token does not meet a route's rule.
fn route_hint(err: &Error, token: &VerifiedToken) -> Option<String> {
    if err.reason() != Reason::InsufficientScope {
        return None;
    }
    let list = |items: &[String]| if items.is_empty() { "(none)".to_owned() } else { items.join(" ") };
    Some(format!(
        "the token grants scope {} and permissions {}. Ask for what the rule names in the authorization request's \
         scope, or grant it to the user or client at the issuer (Auth0: the API's permissions, with RBAC and \
         \"Add Permissions in the Access Token\" on)",
        list(token.scopes()),
        list(token.permissions())
    ))
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn a_copied_authorization_value_is_reduced_to_the_token() {
        assert_eq!(normalize("  Bearer a.b.c \n"), "a.b.c");
        assert_eq!(normalize("a.b.c"), "a.b.c");
        assert_eq!(normalize("bearer  a.b.c"), "a.b.c");
    }
}
