//! `/status` and `/status.json`: the trusted issuers, their key sets, and the requests decided so far.

use crate::html::{self, Current, PAGE_POLICY, escape, secured};
use crate::{Inspect, IssuerView};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use portcullis::algorithm::KeyFamily;
use serde_json::{Value, json};
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A key set's freshness.
fn freshness(view: &IssuerView, now: f64) -> &'static str {
    match (&view.key_set.keys, &view.key_set.status) {
        (None, _) => "not loaded",
        (Some(_), None) => "fixed",
        (Some(_), Some(status)) => match status.expires_at {
            Some(expires) if now > expires => "stale",
            _ => "fresh",
        },
    }
}

/// The key type as a JWK names it (`kty`, and the curve for elliptic keys).
fn key_type(family: KeyFamily) -> String {
    match family {
        KeyFamily::Rsa => "RSA".to_owned(),
        KeyFamily::Ec(curve) => format!("EC {}", curve.name()),
        KeyFamily::Ed25519 => "OKP Ed25519".to_owned(),
        other => format!("{other:?}"),
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn utc(seconds: Option<f64>) -> String {
    match seconds.filter(|s| (0.0..1e11).contains(s)) {
        Some(s) => humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs_f64(s)).to_string(),
        None => "—".to_owned(),
    }
}

/// `GET /status`.
pub(crate) async fn page(State(inspect): State<Arc<dyn Inspect>>) -> Response {
    let inspect = inspect.as_ref();
    let now = now();
    let mut body = format!(
        "<h1>Status</h1>\n<p>As of {} (this server's clock). <a href=\"/status\">Refresh</a> · \
         <a href=\"/status.json\">as JSON</a></p>\n",
        utc(Some(now))
    );
    for (number, view) in inspect.issuers().iter().enumerate() {
        let state = freshness(view, now);
        let status = view.key_set.status.as_ref();
        let _ = write!(
            body,
            "<section aria-labelledby=\"issuer-{number}\" class=\"issuer\"><h2 id=\"issuer-{number}\">Issuer \
             <code>{}</code></h2><dl>\
             <dt>Audiences</dt><dd>{}</dd>\
             <dt>Key set</dt><dd><code>{}</code></dd>\
             <dt>State</dt><dd><span class=\"badge {}\" data-state=\"{state}\">{state}</span></dd>\
             <dt>Fetched at</dt><dd>{}</dd>\
             <dt>Expires at</dt><dd>{}</dd>\
             <dt>Next refresh</dt><dd>{}</dd>\
             <dt>Fetches</dt><dd>{} ({} failed)</dd>{}</dl>",
            escape(&view.issuer),
            view.audiences.iter().map(|a| format!("<code>{}</code>", escape(a))).collect::<Vec<_>>().join(" "),
            escape(&view.key_set.location),
            if state == "fresh" || state == "fixed" { "pass" } else { "fail" },
            utc(status.and_then(|s| s.fetched_at)),
            utc(status.and_then(|s| s.expires_at)),
            utc(status.and_then(|s| s.next_refresh_at)),
            status.map_or(0, |s| s.fetches),
            status.map_or(0, |s| s.failures),
            status
                .and_then(|s| s.last_error.as_deref())
                .map(|e| format!("<dt>Last error</dt><dd>{}</dd>", escape(e)))
                .unwrap_or_default(),
        );
        body.push_str(&keys_table(view, number));
        body.push_str("</section>\n");
    }
    body.push_str(&counts_table(inspect));
    html::page("Status", Current::Status, inspect.app_path(), &body, PAGE_POLICY)
}

fn keys_table(view: &IssuerView, number: usize) -> String {
    let Some(keys) = &view.key_set.keys else {
        return "<p>No keys loaded.</p>".to_owned();
    };
    let mut out = format!(
        "<div class=\"scroll\"><table id=\"keys-{number}\"><caption>Keys</caption><thead><tr>\
         <th scope=\"col\">kid</th><th scope=\"col\">Algorithms</th><th scope=\"col\">Type</th>\
         <th scope=\"col\">Size</th></tr></thead><tbody>"
    );
    for key in keys.keys() {
        let _ = write!(
            out,
            "<tr data-kid=\"{}\"><td><code>{}</code></td><td>{}</td><td>{}</td><td>{} bits</td></tr>",
            escape(key.kid().unwrap_or("")),
            escape(key.kid().unwrap_or("(none)")),
            escape(&key.algorithms().to_string()),
            key_type(key.family()),
            key.bits()
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

fn counts_table(inspect: &dyn Inspect) -> String {
    let counts = inspect.tally().counts();
    if counts.is_empty() {
        return "<section aria-labelledby=\"requests\"><h2 id=\"requests\">Requests</h2><p>No requests decided yet.</p>\
                </section>"
            .to_owned();
    }
    let mut out = String::from(
        "<section aria-labelledby=\"requests\"><h2 id=\"requests\">Requests</h2><div class=\"scroll\">\
         <table id=\"counts\"><thead><tr><th scope=\"col\">Outcome</th><th scope=\"col\">Reason</th>\
         <th scope=\"col\">Count</th></tr></thead><tbody>",
    );
    for count in counts {
        let _ = write!(
            out,
            "<tr data-outcome=\"{0}\" data-reason=\"{1}\"><td>{0}</td><td>{1}</td><td>{2}</td></tr>",
            count.outcome, count.reason, count.count
        );
    }
    out.push_str("</tbody></table></div></section>");
    out
}

/// `GET /status.json`: the same facts for scripts.
pub(crate) async fn json(State(inspect): State<Arc<dyn Inspect>>) -> Response {
    let now = now();
    let issuers: Vec<Value> = inspect
        .issuers()
        .iter()
        .map(|view| {
            let keys: Vec<Value> = view.key_set.keys.as_ref().map_or_else(Vec::new, |keys| {
                keys.keys()
                    .iter()
                    .map(|key| {
                        json!({
                            "kid": key.kid(),
                            "algorithms": key.algorithms().to_string(),
                            "type": key_type(key.family()),
                            "bits": key.bits(),
                        })
                    })
                    .collect()
            });
            let status = view.key_set.status.as_ref();
            json!({
                "issuer": view.issuer,
                "audiences": view.audiences,
                "key_set": {
                    "location": view.key_set.location,
                    "state": freshness(view, now),
                    "fetched_at": status.and_then(|s| s.fetched_at),
                    "expires_at": status.and_then(|s| s.expires_at),
                    "next_refresh_at": status.and_then(|s| s.next_refresh_at),
                    "fetches": status.map(|s| s.fetches),
                    "failures": status.map(|s| s.failures),
                    "last_error": status.and_then(|s| s.last_error.clone()),
                    "keys": keys,
                },
            })
        })
        .collect();
    let body = json!({ "now": now, "issuers": issuers, "requests": inspect.tally().counts() });
    secured(axum::Json(body).into_response(), PAGE_POLICY)
}
