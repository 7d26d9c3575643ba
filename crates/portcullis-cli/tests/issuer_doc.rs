//! docs/issuer.md against `portcullis issuer` as a developer runs it: every admin endpoint the page lists exists and
//! answers its example with the documented status and answer shape, every documented body field is accepted (the
//! "every field" examples) and has its documented effect, every fault kind is taken, the admin guards refuse as
//! described, the flags table matches `--help`, and every admin route of the issuer is on the page.
#![allow(clippy::unwrap_used)]

mod support;

use portcullis_testkit::claims::part;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::BTreeSet;
use support::{drain, portcullis, url_after};

fn page() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/issuer.md")).unwrap()
}

/// The cells of a table row (`| a | b |` → `["a", "b"]`), trimmed.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split(" | ").map(|cell| cell.trim().to_owned()).collect()
}

/// The text between the first pair of backticks of `cell`.
fn code(cell: &str) -> String {
    cell.split('`').nth(1).unwrap_or_else(|| panic!("no `code` in {cell:?}")).to_owned()
}

/// Every `code` span of `cell`.
fn codes(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// A row of the admin endpoint table.
#[derive(Debug)]
struct Endpoint {
    method: Method,
    path: String,
    /// `None` for "none".
    example: Option<String>,
    status: u16,
    answer: String,
}

/// One `### \`METHOD PATH\`` section: its field names, its "Every field" example, its fault kinds (name, example).
#[derive(Debug, Default)]
struct Section {
    fields: Vec<String>,
    every_field: Option<String>,
    kinds: Vec<(String, String)>,
}

/// The section text of each heading (by the heading's text), in page order.
fn sections(page: &str) -> Vec<(String, String)> {
    let mut sections: Vec<(String, String)> = Vec::new();
    for line in page.lines() {
        if line.starts_with("## ") || line.starts_with("### ") {
            sections.push((line.trim_start_matches('#').trim().to_owned(), String::new()));
        } else if let Some((_, text)) = sections.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    sections
}

/// The rows of the table whose header starts with `| {first} |`.
fn table(text: &str, first: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with(&format!("| {first} |")) {
            inside = true;
        } else if inside && line.starts_with("|---") {
        } else if inside && line.starts_with('|') {
            rows.push(cells(line));
        } else {
            inside = false;
        }
    }
    rows
}

fn endpoints(page: &str) -> Vec<Endpoint> {
    let (_, text) = sections(page).into_iter().find(|(title, _)| title == "Admin endpoints").unwrap();
    let rows = table(&text, "Method");
    assert!(!rows.is_empty(), "docs/issuer.md has no admin endpoint table");
    rows.into_iter()
        .map(|row| {
            assert_eq!(row.len(), 5, "{row:?}");
            Endpoint {
                method: code(&row[0]).parse().unwrap(),
                path: code(&row[1]),
                example: (row[2] != "none").then(|| code(&row[2])),
                status: row[3].parse().unwrap_or_else(|_| panic!("status of {row:?}")),
                answer: row[4].clone(),
            }
        })
        .collect()
}

/// The endpoint sections by `METHOD PATH`.
fn endpoint_sections(page: &str) -> Vec<(String, Section)> {
    sections(page)
        .into_iter()
        .filter(|(title, _)| title.starts_with('`'))
        .map(|(title, text)| {
            let every_field = text
                .split_once("Every field:\n\n```json\n")
                .map(|(_, rest)| rest.split("```").next().unwrap().trim().to_owned());
            let section = Section {
                fields: table(&text, "Field").iter().map(|row| code(&row[0])).collect(),
                every_field,
                kinds: table(&text, "Kind").iter().map(|row| (code(&row[0]), code(&row[1]))).collect(),
            };
            (code(&title), section)
        })
        .collect()
}

struct Issuer {
    base: String,
    http: reqwest::Client,
}

impl Issuer {
    /// Sends `method path` with `body` (JSON) to the issuer; returns status and body text.
    async fn call(&self, method: &Method, path: &str, body: Option<&str>) -> (StatusCode, String) {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_owned());
        }
        let response = request.send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }

    /// The kid the JWKS lists first (the signing key).
    async fn a_published_kid(&self) -> String {
        let (_, jwks) = self.call(&Method::GET, "/.well-known/jwks.json", None).await;
        let jwks: Value = serde_json::from_str(&jwks).unwrap();
        jwks["keys"][0]["kid"].as_str().unwrap().to_owned()
    }

    /// `example` with `<kid>` replaced by a kid the JWKS publishes now.
    async fn filled(&self, example: &str) -> String {
        if example.contains("<kid>") {
            example.replace("<kid>", &self.a_published_kid().await)
        } else {
            example.to_owned()
        }
    }
}

/// Checks `body` against an answer cell: `empty`, `object: \`a\`, \`b\``, or `array of objects: \`a\`, …`.
fn assert_answer(endpoint: &str, answer: &str, body: &str) {
    if answer == "empty" {
        assert_eq!(body, "", "{endpoint}");
        return;
    }
    let fields: BTreeSet<String> = codes(answer).into_iter().collect();
    let value: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{endpoint}: not JSON: {body}"));
    let keys = |value: &Value| -> BTreeSet<String> {
        value.as_object().unwrap_or_else(|| panic!("{endpoint}: not an object: {value}")).keys().cloned().collect()
    };
    if answer.starts_with("object:") {
        assert_eq!(keys(&value), fields, "{endpoint}: {body}");
    } else if answer.starts_with("array of objects:") {
        let entries = value.as_array().unwrap_or_else(|| panic!("{endpoint}: not an array: {body}"));
        assert!(!entries.is_empty(), "{endpoint}");
        for entry in entries {
            assert_eq!(keys(entry), fields, "{endpoint}: {entry}");
        }
    } else {
        panic!("{endpoint}: unknown answer description {answer:?}");
    }
}

#[tokio::test]
async fn every_documented_admin_endpoint_answers_as_documented() {
    let page = page();
    let (_child, mut out) = portcullis(&["issuer", "--listen", "127.0.0.1:0"]);
    let base = url_after(&mut out, "portcullis dev issuer at").await.trim_end_matches('/').to_owned();
    drain(out);
    let issuer = Issuer { base, http: reqwest::Client::new() };

    // The table: each example answered with the documented status and shape.
    let endpoints = endpoints(&page);
    let mut clock_readings = Vec::new();
    for endpoint in &endpoints {
        let name = format!("{} {}", endpoint.method, endpoint.path);
        let body = match &endpoint.example {
            Some(example) => Some(issuer.filled(example).await),
            None => None,
        };
        let (status, text) = issuer.call(&endpoint.method, &endpoint.path, body.as_deref()).await;
        assert_eq!(status.as_u16(), endpoint.status, "{name}: {text}");
        assert_answer(&name, &endpoint.answer, &text);
        if endpoint.path == "/__admin/clock" {
            clock_readings.push(serde_json::from_str::<Value>(&text).unwrap()["now"].as_i64().unwrap());
        }
    }

    // Each section: the field table names exactly the fields of its "every field" example, which is answered as
    // the table says (tokens and faults refuse unknown fields, so a documented field that does not exist fails).
    let sections = endpoint_sections(&page);
    let listed: BTreeSet<String> = endpoints.iter().map(|e| format!("{} {}", e.method, e.path)).collect();
    let headed: BTreeSet<String> = sections.iter().map(|(name, _)| name.clone()).collect();
    assert_eq!(listed, headed, "every endpoint of the table has its section, and no other");
    for (name, section) in &sections {
        let endpoint = endpoints.iter().find(|e| &format!("{} {}", e.method, e.path) == name).unwrap();
        if let Some(example) = &section.every_field {
            let example = issuer.filled(example).await;
            let fields: BTreeSet<String> =
                serde_json::from_str::<Value>(&example).unwrap().as_object().unwrap().keys().cloned().collect();
            assert_eq!(fields, section.fields.iter().cloned().collect(), "{name}: fields table and example");
            let (status, text) = issuer.call(&endpoint.method, &endpoint.path, Some(&example)).await;
            assert_eq!(status.as_u16(), endpoint.status, "{name}: {text}");
            assert_answer(name, &endpoint.answer, &text);
            let answer: Value = serde_json::from_str(&text).unwrap();
            match endpoint.path.as_str() {
                "/__admin/tokens" => {
                    let mut answer = answer;
                    answer["request"] = serde_json::from_str(&example).unwrap();
                    assert_minted_as_documented(&issuer, &answer).await;
                }
                "/__admin/clock" => clock_readings.push(answer["now"].as_i64().unwrap()),
                _ => {}
            }
        } else {
            assert!(section.fields.is_empty(), "{name}: a fields table without an \"Every field\" example");
        }
        for (kind, example) in &section.kinds {
            let body: Value = serde_json::from_str(example).unwrap();
            assert_eq!(body["kind"], kind.as_str(), "{name}: example of {kind}");
            let (status, text) = issuer.call(&endpoint.method, &endpoint.path, Some(example)).await;
            assert_eq!(status.as_u16(), endpoint.status, "{name} {kind}: {text}");
        }
        if !section.kinds.is_empty() {
            assert_eq!(issuer.call(&Method::DELETE, "/__admin/faults", None).await.0, 204);
        }
    }

    // Documented behaviours.
    // The clock: moves add up (the table's example, then the section's, each 3600 s).
    let [first, second] = clock_readings[..] else { panic!("{clock_readings:?}") };
    assert!((3600..3660).contains(&(second - first)), "{clock_readings:?}");
    // Faults: first in, first out, `count` requests each, then the endpoint behaves.
    for fault in [r#"{"kind": "status", "status": 503, "count": 2}"#, r#"{"kind": "empty_set", "count": 1}"#] {
        assert_eq!(issuer.call(&Method::POST, "/__admin/faults", Some(fault)).await.0, 204);
    }
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (status, body) = issuer.call(&Method::GET, "/.well-known/jwks.json", None).await;
        seen.push((status.as_u16(), body.contains(r#""kid""#)));
    }
    assert_eq!(seen, [(503, false), (503, false), (200, false), (200, true)]);
    // Revoking a kid the JWKS does not publish: 404.
    let (status, text) = issuer.call(&Method::POST, "/__admin/keys/revoke", Some(r#"{"kid": "no-such-kid"}"#)).await;
    assert_eq!((status.as_u16(), text.as_str()), (404, "no such key"));
    // Unknown fields and kinds: 422; a body that is not JSON: 400; an unknown user: 400.
    for (path, body, expected) in [
        ("/__admin/tokens", r#"{"nonsense": 1}"#, 422),
        ("/__admin/faults", r#"{"kind": "nonsense", "count": 1}"#, 422),
        ("/__admin/faults", r#"{"kind": "garbage", "count": 1, "ms": 5}"#, 422),
        ("/__admin/clock", r#"{"shift": "soon"}"#, 422),
        ("/__admin/clock", "{", 400),
        ("/__admin/tokens", r#"{"user": "mallory"}"#, 400),
        ("/__admin/tokens", r#"{"key": "previous-of-nothing"}"#, 400),
    ] {
        assert_eq!(issuer.call(&Method::POST, path, Some(body)).await.0.as_u16(), expected, "{path} {body}");
    }
    // The guards.
    let url = format!("{}/__admin/clock", issuer.base);
    let shift = r#"{"shift": 0}"#;
    let plain = issuer.http.post(&url).header("content-type", "text/plain").body(shift).send().await.unwrap();
    assert_eq!(plain.status(), 415);
    let json_post = || issuer.http.post(&url).header("content-type", "application/json").body(shift);
    assert_eq!(json_post().header("host", "evil.example").send().await.unwrap().status(), 421);
    assert_eq!(json_post().header("origin", "http://evil.example").send().await.unwrap().status(), 403);
    assert_eq!(json_post().header("sec-fetch-site", "cross-site").send().await.unwrap().status(), 403);
    let answered = json_post().send().await.unwrap();
    assert_eq!(answered.headers()["x-development-only"], "true");
    // The journal: every request answered, oldest first, numbered from 1, without the query string.
    issuer.call(&Method::GET, "/.well-known/openid-configuration?secret=1", None).await;
    let (_, journal) = issuer.call(&Method::GET, "/__admin/journal", None).await;
    let journal: Vec<Value> = serde_json::from_str(&journal).unwrap();
    let numbers: Vec<i64> = journal.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(numbers, (1..=i64::try_from(journal.len()).unwrap()).collect::<Vec<_>>());
    assert!(journal.iter().any(|e| e["method"] == "DELETE" && e["path"] == "/__admin/faults" && e["status"] == 204));
    assert_eq!(journal.last().unwrap()["path"], "/.well-known/openid-configuration");
}

/// The "every field" mint example: each field did what the fields table says.
async fn assert_minted_as_documented(issuer: &Issuer, answer: &Value) {
    let claims = &answer["claims"];
    let token = answer["access_token"].as_str().unwrap();
    assert_eq!(&part(token, 1), claims, "claims are the token's payload");
    assert_eq!(claims["sub"], "auth0|alice", "user");
    assert_eq!(claims["aud"][0], "https://api.example.com", "audience");
    assert_eq!(claims["aud"][1], format!("{}/userinfo", issuer.base), "openid with a user");
    assert_eq!(claims["scope"], "openid read:messages", "scopes");
    assert_eq!(claims["tenant"], "acme", "claims set");
    assert!(claims.get("azp").is_none(), "claims: null removes");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), -60, "lifetime");
    let (_, jwks) = issuer.call(&Method::GET, "/.well-known/jwks.json", None).await;
    let jwks: Value = serde_json::from_str(&jwks).unwrap();
    assert_eq!(part(token, 0)["kid"], jwks["keys"][1]["kid"], "key: next (the JWKS lists current, next, previous)");
    // broken: bad_signature — RS256 signatures are deterministic, so the same request without `broken`, minted
    // within the same second, gives the same header and payload and another signature.
    let mut request = answer["request"].clone();
    request.as_object_mut().unwrap().remove("broken");
    for _ in 0..5 {
        let mint = |body: String| async move {
            let (_, text) = issuer.call(&Method::POST, "/__admin/tokens", Some(&body)).await;
            serde_json::from_str::<Value>(&text).unwrap()["access_token"].as_str().unwrap().to_owned()
        };
        let broken = mint(answer["request"].to_string()).await;
        let unbroken = mint(request.to_string()).await;
        let (head, signature) = broken.rsplit_once('.').unwrap();
        let (unbroken_head, unbroken_signature) = unbroken.rsplit_once('.').unwrap();
        if head == unbroken_head {
            assert_ne!(signature, unbroken_signature, "broken: bad_signature");
            return;
        }
    }
    panic!("no two mints within one second");
}

#[test]
fn the_flags_table_is_the_help_and_remote_listening_is_refused() {
    let run = |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_portcullis")).args(args).output().unwrap();
    let help = String::from_utf8(run(&["issuer", "--help"]).stdout).unwrap();
    let in_help: BTreeSet<String> = help
        .split_whitespace()
        .filter(|word| word.starts_with("--") && *word != "--help")
        .map(|word| word.trim_end_matches([',', '.']).to_owned())
        .collect();
    let (_, text) = sections(&page()).into_iter().find(|(title, _)| title == "Running it").unwrap();
    let documented: BTreeSet<String> = table(&text, "Flag").iter().map(|row| code(&row[0])).collect();
    assert_eq!(in_help, documented);
    let remote = run(&["issuer", "--listen", "192.0.2.1:0"]);
    assert_eq!(remote.status.code(), Some(2), "{}", String::from_utf8_lossy(&remote.stderr));
}

/// Every admin route the issuer serves is on the page (read from its router, which names each once).
#[test]
fn every_admin_route_is_documented() {
    let source =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../portcullis-issuer/src/server.rs")).unwrap();
    let admin = source.split("let admin = Router::new()").nth(1).unwrap().split(".layer(").next().unwrap();
    let mut served = BTreeSet::new();
    for route in admin.split(".route(\"").skip(1) {
        let (path, handlers) = route.split_once('"').unwrap();
        let handlers = handlers.split(")\n").next().unwrap();
        for method in ["get", "post", "delete", "put", "patch"] {
            if handlers.contains(&format!("{method}(")) {
                served.insert(format!("{} /__admin{path}", method.to_ascii_uppercase()));
            }
        }
    }
    assert!(served.len() >= 7, "{served:?}");
    let documented: BTreeSet<String> = endpoints(&page()).iter().map(|e| format!("{} {}", e.method, e.path)).collect();
    assert_eq!(served, documented);
}
