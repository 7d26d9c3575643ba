//! `/debugger`: a pasted token checked against this server's own configuration, every check with its outcome;
//! with a DPoP proof, the method and the URL it came with, every proof check too (nothing is recorded: a proof
//! checked here can still be used once).

use crate::html::{Current, PAGE_POLICY, codes, page, secured};
use crate::{Access, Inspect, RouteRule};
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use portcullis::clock::UnixTime;
use portcullis::dpop::{Htu, ProofExpectations};
use portcullis::{Error, Reason, Report, VerifiedToken};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// Largest form the debugger reads: a token and a proof of the largest sizes any sane client makes, and then some.
pub(crate) const MAX_FORM_BYTES: usize = 64 * 1024;

/// The submitted form.
#[derive(Deserialize)]
pub(crate) struct Submitted {
    token: String,
    #[serde(default)]
    route: String,
    /// A DPoP proof (the `DPoP` header's value), empty when none.
    #[serde(default)]
    proof: String,
    /// The method of the request the proof came with.
    #[serde(default)]
    method: String,
    /// The URL of that request, as the client called it.
    #[serde(default)]
    url: String,
}

/// The DPoP part of the form, as submitted.
#[derive(Default)]
struct ProofInput<'a> {
    proof: &'a str,
    method: &'a str,
    url: &'a str,
}

/// `GET /debugger`: the empty form.
pub(crate) async fn form(State(inspect): State<Arc<dyn Inspect>>) -> Response {
    render(inspect.as_ref(), &inspect.routes(), "", None, &ProofInput::default(), html! {})
}

/// `POST /debugger`: the form again, with the checks of the submitted token; with `Accept: application/json`,
/// the same checks as JSON (for scripts): `{"verdict", "reason", "status", "message", "dpop_bound_to",
/// "checks": [{"check", "passed", "detail"}]}`.
pub(crate) async fn check(
    State(inspect): State<Arc<dyn Inspect>>,
    headers: HeaderMap,
    Form(submitted): Form<Submitted>,
) -> Response {
    let token = normalize(&submitted.token);
    let routes = inspect.routes();
    let route = submitted.route.parse::<usize>().ok().filter(|&i| i < routes.len());
    let input =
        ProofInput { proof: submitted.proof.trim(), method: submitted.method.trim(), url: submitted.url.trim() };
    let wants_json = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.split(',').any(|kind| kind.trim().starts_with("application/json")));
    if wants_json {
        let body = if token.is_empty() {
            json!({"verdict": "no_token", "message": "paste a token first"})
        } else {
            results_json(&evaluate(inspect.as_ref(), &routes, token, route, &input))
        };
        return secured(axum::Json(body).into_response(), PAGE_POLICY);
    }
    let results = if token.is_empty() {
        html! { p class="verdict fail" role="alert" { "Paste a token first." } }
    } else {
        results(inspect.as_ref(), &evaluate(inspect.as_ref(), &routes, token, route, &input))
    };
    render(inspect.as_ref(), &routes, &submitted.token, route, &input, results)
}

/// The token without surrounding whitespace or a leading `Bearer ` or `DPoP ` (as copied from a request).
fn normalize(input: &str) -> &str {
    let trimmed = input.trim();
    ["Bearer ", "bearer ", "DPoP ", "dpop "]
        .iter()
        .find_map(|scheme| trimmed.strip_prefix(scheme))
        .map_or(trimmed, str::trim)
}

fn render(
    inspect: &dyn Inspect,
    routes: &[RouteRule],
    token: &str,
    route: Option<usize>,
    input: &ProofInput<'_>,
    results: Markup,
) -> Response {
    let body = html! {
        h1 { "Token debugger" } "\n"
        p {
            "Checks a token exactly as this server does, against its own configuration. The token goes to this \
             server only: the page runs no script and its Content-Security-Policy allows no other origin."
        } "\n"
        form method="post" action="/debugger" class="stack" {
            "\n" label for="token" { "Access token" }
            "\n"
            textarea id="token" name="token" rows="6" required spellcheck="false" autocomplete="off"
                autocapitalize="off" aria-describedby="token-help" { (token) }
            "\n"
            p id="token-help" class="help" {
                "The compact JWT (three dot-separated parts); a leading " code { "Bearer " } " or " code { "DPoP " }
                " is ignored."
            }
            "\n" label for="route" { "Route" }
            "\n"
            select id="route" name="route" {
                option value="" { "No route: the token checks only" }
                @for (index, rule) in routes.iter().enumerate() {
                    option value=(index) selected[route == Some(index)] { (rule.label) }
                }
            }
            "\n" button type="submit" { "Check token" }
            @if inspect.dpop().is_some() {
                "\n"
                fieldset {
                    legend { "DPoP proof (optional)" }
                    "\n" label for="proof" { "Proof" }
                    "\n"
                    textarea id="proof" name="proof" rows="4" spellcheck="false" autocomplete="off"
                        autocapitalize="off" aria-describedby="proof-help" { (input.proof) }
                    "\n"
                    p id="proof-help" class="help" {
                        "The value of the request's " code { "DPoP" } " header. It is checked, not recorded: it can \
                         still be used once."
                    }
                    "\n" label for="method" { "Method" }
                    "\n"
                    input id="method" name="method" type="text" autocomplete="off" spellcheck="false"
                        value=(if input.method.is_empty() { "GET" } else { input.method });
                    "\n" label for="url" { "URL" }
                    "\n"
                    input id="url" name="url" type="url" autocomplete="off" spellcheck="false"
                        placeholder="https://api.example.com/api/protected" value=(input.url);
                    "\n" button type="submit" { "Check token and proof" }
                    "\n"
                }
            }
            "\n"
        }
        "\n" (results) "\n" (expectations(inspect))
    };
    page("Token debugger", Current::Debugger, inspect.app_path(), body, PAGE_POLICY)
}

/// What this server accepts, shown under the form.
fn expectations(inspect: &dyn Inspect) -> Markup {
    html! {
        section aria-labelledby="expects" {
            h2 id="expects" { "This server accepts" }
            table {
                thead { tr { th scope="col" { "Issuer" } th scope="col" { "Audiences" } } }
                tbody {
                    @for issuer in inspect.issuers() {
                        tr { td { code { (issuer.issuer) } } td { (codes(&issuer.audiences)) } }
                    }
                }
            }
        }
    }
}

/// One row of the checks table.
struct Row {
    label: String,
    passed: bool,
    detail: String,
    hint: Option<String>,
}

/// What the checks came to.
struct Evaluation {
    report: Report,
    rows: Vec<Row>,
    /// The answer this server gives, if it refuses.
    refusal: Option<Error>,
    /// Whether a route was chosen (the verdict is then about a request, not the token alone).
    routed: bool,
    /// The token's `cnf.jkt`.
    jkt: Option<String>,
}

fn evaluate(
    inspect: &dyn Inspect,
    routes: &[RouteRule],
    token: &str,
    route: Option<usize>,
    input: &ProofInput<'_>,
) -> Evaluation {
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
    // The answer this server gives: a token failure first, then the proof, then the route's rule.
    let mut refusal: Option<Error> = report.verdict.as_ref().err().cloned();
    let jkt = bound_to(&report);
    if !input.proof.is_empty() {
        let proof_rows = proof_rows(inspect, token, jkt.as_deref(), input);
        if refusal.is_none() {
            refusal = proof_rows.iter().find_map(|(_, err)| err.clone());
        }
        rows.extend(proof_rows.into_iter().map(|(row, _)| row));
    }
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
                    // A refused proof is answered before the route's rule is looked at.
                    refusal.get_or_insert(err);
                }
            },
            (_, Err(_)) => {
                rows.push(Row { label, passed: false, detail: "not checked: the token is invalid".into(), hint: None });
            }
        }
    }
    Evaluation { report, rows, refusal, routed: chosen.is_some(), jkt }
}

/// The checks as JSON: the verdict, each check, and the key the token is bound to.
fn results_json(evaluation: &Evaluation) -> Value {
    let checks: Vec<Value> = evaluation
        .rows
        .iter()
        .map(|row| json!({"check": row.label, "passed": row.passed, "detail": row.detail, "hint": row.hint}))
        .collect();
    let verdict = match (&evaluation.refusal, evaluation.routed) {
        (None, true) => "allowed",
        (None, false) => "valid",
        (Some(_), _) => "refused",
    };
    json!({
        "verdict": verdict,
        "reason": evaluation.refusal.as_ref().map(|err| err.reason().code()),
        "status": evaluation.refusal.as_ref().map(Error::http_status),
        "message": evaluation.refusal.as_ref().map(Error::description),
        "dpop_bound_to": evaluation.jkt,
        "checks": checks,
    })
}

fn results(inspect: &dyn Inspect, evaluation: &Evaluation) -> Markup {
    let Evaluation { report, rows, refusal, routed, jkt } = evaluation;
    let verdict = html! {
        @match refusal {
            None if *routed => p class="verdict pass" role="status" id="verdict" {
                "Allowed: this server lets the request through."
            },
            None => p class="verdict pass" role="status" id="verdict" { "Valid: every check passed." },
            Some(err) => p class="verdict fail" role="status" id="verdict" {
                "Refused: " strong { (err.reason().code()) } " (HTTP " (err.http_status()) ") — " (err.description())
            },
        }
    };
    let title = if report.verdict.is_ok() { "Claims" } else { "Claims (not trusted: the token is invalid)" };
    html! {
        section aria-labelledby="result" {
            h2 id="result" { "Result" }
            (verdict)
            (checks_table(rows))
            (binding(jkt.as_deref(), report.verdict.is_ok()))
            (times(report, inspect.now()))
            (decoded("Header", report.header.as_ref(), true))
            (decoded(title, report.claims.as_ref(), report.verdict.is_ok()))
        }
    }
}

/// The `cnf.jkt` of the token: from the verified token, or, for an invalid one, from its decoded claims.
fn bound_to(report: &Report) -> Option<String> {
    match &report.verdict {
        Ok(token) => token.jkt().map(str::to_owned),
        Err(_) => report.claims.as_ref()?.get("cnf")?.get("jkt")?.as_str().map(str::to_owned),
    }
}

/// The rows of the proof checks, each with the refusal it leads to (the core's own checks: what a request with
/// this token and proof would meet, short of recording the `jti`).
fn proof_rows(
    inspect: &dyn Inspect,
    token: &str,
    jkt: Option<&str>,
    input: &ProofInput<'_>,
) -> Vec<(Row, Option<Error>)> {
    let fail = |label: &str, err: Error| {
        let row = Row { label: label.to_owned(), passed: false, detail: err.description().to_owned(), hint: None };
        (row, Some(err))
    };
    let Some(verifier) = inspect.dpop() else {
        let err = Error::new(Reason::RequestInvalid, "this server does not accept DPoP-bound tokens");
        return vec![fail("DPoP", err)];
    };
    let htu = match Htu::parse(input.url) {
        Ok(htu) => htu,
        Err(err) => return vec![fail("request URL", err)],
    };
    let method = if input.method.is_empty() { "GET" } else { input.method };
    let expected = ProofExpectations { method, htu: &htu, access_token: Some(token), jkt };
    let report = verifier.explain_proof(input.proof, &expected);
    let mut rows: Vec<(Row, Option<Error>)> = report
        .steps
        .into_iter()
        .map(|step| match step.outcome {
            Ok(()) => {
                let detail = match step.check {
                    portcullis::dpop::DpopCheck::Uri => format!("matches {}", htu.as_str()),
                    portcullis::dpop::DpopCheck::Method => format!("matches {method}"),
                    _ => "passed".to_owned(),
                };
                (Row { label: step.check.label().to_owned(), passed: true, detail, hint: None }, None)
            }
            Err(err) => fail(step.check.label(), err),
        })
        .collect();
    if jkt.is_none() && report.verdict.is_ok() {
        let err = Error::new(
            Reason::TokenBindingInvalid,
            "the token is not DPoP-bound (no cnf.jkt): send it with the Bearer scheme",
        );
        rows.push(fail("cnf.jkt binding", err));
    }
    rows
}

/// Whether the token is bound to a key (`cnf.jkt`, RFC 9449 §6.1), and what that asks of each request.
fn binding(jkt: Option<&str>, trusted: bool) -> Markup {
    let Some(jkt) = jkt else { return html! {} };
    html! {
        h3 { "DPoP binding" }
        p id="dpop-binding" {
            "This token is DPoP-bound"
            @if !trusted { " (claimed by a token that is not valid)" }
            ": its " code { "cnf.jkt" } " is the key thumbprint " code { (jkt) } ". Send it as "
            code { "Authorization: DPoP …" } " with a fresh proof by that key on every request; sent as "
            code { "Bearer" } " it is refused."
        }
    }
}

fn checks_table(rows: &[Row]) -> Markup {
    html! {
        h3 { "Checks" }
        div class="scroll" {
            table class="checks" {
                thead { tr { th scope="col" { "Check" } th scope="col" { "Outcome" } th scope="col" { "Detail" } } }
                tbody {
                    @for row in rows {
                        @let (class, word) = if row.passed { ("pass", "pass") } else { ("fail", "FAIL") };
                        tr data-check=(row.label) class=(class) {
                            th scope="row" { (row.label) }
                            td { span class={ "badge " (class) } { (word) } }
                            td {
                                (row.detail)
                                @if let Some(hint) = &row.hint {
                                    p class="hint" { strong { "Hint:" } " " (hint) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `iat`, `nbf` and `exp` as UTC times and as seconds from now.
fn times(report: &Report, clock: UnixTime) -> Markup {
    let Some(claims) = &report.claims else { return html! {} };
    let now = clock.as_secs_f64();
    let present: Vec<_> = [("iat", "issued"), ("nbf", "valid from"), ("exp", "expires")]
        .into_iter()
        .filter_map(|(name, meaning)| claims.get(name).map(|value| (name, meaning, value)))
        .collect();
    if present.is_empty() {
        return html! {};
    }
    let rows = html! {
        @for (name, meaning, value) in present {
            @if let Some(seconds) = value.as_f64().filter(|s| (0.0..1e11).contains(s)) {
                @let utc = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs_f64(seconds));
                @let difference = (seconds - now).round() as i64;
                @let relative = match difference {
                    0 => format!("{meaning} now"),
                    d if d > 0 => format!("{meaning} in {d} s"),
                    d => format!("{meaning} {} s ago", -d),
                };
                tr data-claim=(name) {
                    th scope="row" { code { (name) } }
                    td { (value.to_string()) }
                    td { (utc.to_string()) }
                    td { (relative) " (difference " (format!("{difference:+}")) " s)" }
                }
            } @else {
                tr {
                    th scope="row" { code { (name) } }
                    td { (value.to_string()) }
                    td colspan="2" { "not a usable NumericDate" }
                }
            }
        }
    };
    let now_utc = humantime::format_rfc3339_seconds(clock.to_system_time());
    html! {
        h3 { "Times" }
        p { "This server's clock: " (now_utc.to_string()) "." }
        div class="scroll" {
            table {
                thead {
                    tr {
                        th scope="col" { "Claim" } th scope="col" { "Value" } th scope="col" { "UTC" }
                        th scope="col" { "From now" }
                    }
                }
                tbody { (rows) }
            }
        }
    }
}

fn decoded(title: &str, value: Option<&Map<String, Value>>, trusted: bool) -> Markup {
    let text = match value {
        Some(map) => serde_json::to_string_pretty(map).unwrap_or_default(),
        None => "(cannot be decoded)".to_owned(),
    };
    let class = if trusted { "json" } else { "json untrusted" };
    html! { h3 { (title) } pre class=(class) { (text) } }
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
    use super::{Row, binding, checks_table, decoded, normalize, times};
    use crate::html::codes;
    use portcullis::Report;
    use portcullis::clock::UnixTime;
    use serde_json::json;

    const HOSTILE: &str = "<script>alert(1)</script>\"'&";
    const ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;&quot;'&amp;";

    #[test]
    fn a_copied_authorization_value_is_reduced_to_the_token() {
        assert_eq!(normalize("  Bearer a.b.c \n"), "a.b.c");
        assert_eq!(normalize("a.b.c"), "a.b.c");
        assert_eq!(normalize("bearer  a.b.c"), "a.b.c");
        assert_eq!(normalize("DPoP a.b.c"), "a.b.c");
    }

    #[test]
    #[allow(clippy::field_reassign_with_default)]
    fn hostile_checks_claims_and_times_are_shown_as_text() {
        let row = Row { label: HOSTILE.into(), passed: false, detail: HOSTILE.into(), hint: Some(HOSTILE.into()) };
        let table = checks_table(&[row]).into_string();
        assert!(
            table.contains(&format!("<tr data-check=\"{ESCAPED}\" class=\"fail\"><th scope=\"row\">{ESCAPED}</th>"))
        );
        assert!(table.contains(&format!("<td>{ESCAPED}<p class=\"hint\"><strong>Hint:</strong> {ESCAPED}</p></td>")));

        let claims = json!({"sub": HOSTILE, HOSTILE: 1, "exp": HOSTILE}).as_object().cloned();
        let shown = decoded(HOSTILE, claims.as_ref(), false).into_string();
        assert!(shown.starts_with(&format!("<h3>{ESCAPED}</h3><pre class=\"json untrusted\">")), "{shown}");
        assert!(shown.contains("&quot;sub&quot;: &quot;&lt;script&gt;alert(1)&lt;/script&gt;\\&quot;'&amp;&quot;"));

        // Filled in as any crate outside portcullis can, whatever fields a report gains.
        let mut report = Report::default();
        report.claims = claims;
        let times = times(&report, UnixTime::from_secs(1_700_000_000)).into_string();
        assert!(times.contains(
            "<td>&quot;&lt;script&gt;alert(1)&lt;/script&gt;\\&quot;'&amp;&quot;</td><td colspan=\"2\">not a usable NumericDate"
        ), "{times}");

        let bound = binding(Some(HOSTILE), false).into_string();
        assert!(bound.contains(&format!("<code>{ESCAPED}</code>")), "{bound}");

        for html in [&table, &shown, &times, &bound] {
            assert!(!html.contains("<script>") && !html.contains("\"'&"), "{html}");
        }
        assert_eq!(
            codes(&[HOSTILE.into(), "b".into()]).into_string(),
            format!("<code>{ESCAPED}</code> <code>b</code>")
        );
    }
}
