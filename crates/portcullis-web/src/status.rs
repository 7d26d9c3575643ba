//! `/status` and `/status.json`: the trusted issuers, their key sets, and the requests decided so far.

use crate::html::{self, Current, PAGE_POLICY, codes, secured};
use crate::{Inspect, IssuerView};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use portcullis::algorithm::KeyFamily;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

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

fn utc(seconds: Option<f64>) -> String {
    match seconds.filter(|s| (0.0..1e11).contains(s)) {
        Some(s) => humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs_f64(s)).to_string(),
        None => "—".to_owned(),
    }
}

/// `GET /status`.
pub(crate) async fn page(State(inspect): State<Arc<dyn Inspect>>) -> Response {
    let inspect = inspect.as_ref();
    let now = inspect.now().as_secs_f64();
    let body = html! {
        h1 { "Status" } "\n"
        p {
            "As of " (utc(Some(now))) " (this server's clock). " a href="/status" { "Refresh" } " · "
            a href="/status.json" { "as JSON" }
        }
        "\n"
        @for (number, view) in inspect.issuers().iter().enumerate() {
            (issuer_section(view, number, now)) "\n"
        }
        @if let Some(store) = inspect.store() {
            (store_section(&store)) "\n"
        }
        (counts_table(inspect))
    };
    html::page("Status", Current::Status, inspect.app_path(), body, PAGE_POLICY)
}

fn issuer_section(view: &IssuerView, number: usize, now: f64) -> Markup {
    let state = freshness(view, now);
    let status = view.key_set.status.as_ref();
    let heading = format!("issuer-{number}");
    html! {
        section aria-labelledby=(heading) class="issuer" {
            h2 id=(heading) { "Issuer " code { (view.issuer) } }
            dl {
                dt { "Audiences" } dd { (codes(&view.audiences)) }
                dt { "Key set" } dd { code { (view.key_set.location) } }
                dt { "State" }
                dd {
                    span class={ "badge " (if state == "fresh" || state == "fixed" { "pass" } else { "fail" }) }
                        data-state=(state) { (state) }
                }
                dt { "Fetched at" } dd { (utc(status.and_then(|s| s.fetched_at))) }
                dt { "Expires at" } dd { (utc(status.and_then(|s| s.expires_at))) }
                dt { "Next refresh" } dd { (utc(status.and_then(|s| s.next_refresh_at))) }
                dt { "Fetches" }
                dd { (status.map_or(0, |s| s.fetches)) " (" (status.map_or(0, |s| s.failures)) " failed)" }
                @if let Some(error) = status.and_then(|s| s.last_error.as_deref()) {
                    dt { "Last error" } dd { (error) }
                }
            }
            (keys_table(view, number))
        }
    }
}

fn keys_table(view: &IssuerView, number: usize) -> Markup {
    let Some(keys) = &view.key_set.keys else {
        return html! { p { "No keys loaded." } };
    };
    html! {
        div class="scroll" {
            table id={ "keys-" (number) } {
                caption { "Keys" }
                thead {
                    tr {
                        th scope="col" { "kid" } th scope="col" { "Algorithms" } th scope="col" { "Type" }
                        th scope="col" { "Size" }
                    }
                }
                tbody {
                    @for key in keys.keys() {
                        tr data-kid=(key.kid().unwrap_or("")) {
                            td { code { (key.kid().unwrap_or("(none)")) } }
                            td { (key.algorithms().to_string()) }
                            td { (key_type(key.family())) }
                            td { (key.bits()) " bits" }
                        }
                    }
                }
            }
        }
    }
}

fn store_section(store: &crate::StoreView) -> Markup {
    html! {
        section aria-labelledby="store" {
            h2 id="store" { "Shared store" }
            dl {
                dt { "Store" } dd { code { (store.name) } }
                dt { "State" }
                dd {
                    @let (class, state, text) = match (store.connected, store.synchronized) {
                        (true, true) => ("pass", "connected", "connected"),
                        (true, false) => ("fail", "unsynchronized", "connected; revocations not synchronized"),
                        (false, _) => ("fail", "disconnected", "disconnected"),
                    };
                    span class={ "badge " (class) } data-state=(state) { (text) }
                }
                dt { "Revocations in force" } dd { (store.revocations) }
                dt { "Last synchronized" } dd { (utc(store.last_sync)) }
                @if let Some(error) = store.last_error.as_deref() {
                    dt { "Last error" } dd { (error) }
                }
            }
        }
    }
}

fn counts_table(inspect: &dyn Inspect) -> Markup {
    let counts = inspect.tally().counts();
    html! {
        section aria-labelledby="requests" {
            h2 id="requests" { "Requests" }
            @if counts.is_empty() {
                p { "No requests decided yet." }
            } @else {
                div class="scroll" {
                    table id="counts" {
                        thead {
                            tr { th scope="col" { "Outcome" } th scope="col" { "Reason" } th scope="col" { "Count" } }
                        }
                        tbody {
                            @for count in counts {
                                tr data-outcome=(count.outcome) data-reason=(count.reason) {
                                    td { (count.outcome) } td { (count.reason) } td { (count.count) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /status.json`: the same facts for scripts.
pub(crate) async fn json(State(inspect): State<Arc<dyn Inspect>>) -> Response {
    let now = inspect.now().as_secs_f64();
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
    let store = inspect.store().map(|store| {
        json!({
            "name": store.name,
            "connected": store.connected,
            "last_sync": store.last_sync,
            "last_error": store.last_error,
            "revocations": store.revocations,
        })
    });
    let body = json!({ "now": now, "issuers": issuers, "store": store, "requests": inspect.tally().counts() });
    secured(axum::Json(body).into_response(), PAGE_POLICY)
}

#[cfg(test)]
mod tests {
    use super::issuer_section;
    use crate::{IssuerView, KeySetView};
    use portcullis::{KeySet, VerifyingKey};
    use serde_json::json;
    use std::sync::Arc;

    const HOSTILE: &str = "<script>alert(1)</script>\"'&";
    const ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;&quot;'&amp;";

    #[test]
    fn hostile_issuers_and_keys_are_shown_as_text() {
        // The Ed25519 public key of RFC 8037, appendix A.2, with a hostile kid.
        let jwk =
            json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": HOSTILE});
        let key = VerifyingKey::from_jwk(jwk.as_object().expect("an object")).expect("a valid key");
        let view = IssuerView {
            issuer: HOSTILE.into(),
            audiences: vec![HOSTILE.into()],
            key_set: KeySetView {
                location: HOSTILE.into(),
                keys: Some(Arc::new(KeySet::from_keys([key]))),
                status: None,
            },
        };
        let html = issuer_section(&view, 0, 0.0).into_string();
        assert!(html.contains(&format!("<h2 id=\"issuer-0\">Issuer <code>{ESCAPED}</code></h2>")), "{html}");
        assert!(html.contains(&format!("<dt>Audiences</dt><dd><code>{ESCAPED}</code></dd>")), "{html}");
        assert!(html.contains(&format!("<dt>Key set</dt><dd><code>{ESCAPED}</code></dd>")), "{html}");
        assert!(html.contains(&format!("<tr data-kid=\"{ESCAPED}\"><td><code>{ESCAPED}</code></td>")), "{html}");
        assert!(!html.contains("<script>") && !html.contains("\"'&"), "{html}");
    }
}
