//! What an operator sees of a running `portcullis serve`: the metrics on the admin listener from the first scrape,
//! and the logs (plain text unless stderr is a terminal, the policy named at startup, one line per refusal, the
//! open-files warning with its numbers). Every process and server listens on loopback ports and is stopped by the
//! test.
#![allow(clippy::unwrap_used)]

mod support;

use portcullis::Algorithm;
use portcullis::signing::SigningKey;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{drain, line_with, machine_token, url_in};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};

const AUDIENCE: &str = "https://api.example.com";
/// An issuer whose key set lives on a port nothing listens on.
const UNREACHABLE: &str = "https://unreachable.example/";

/// A loopback port nothing listens on: bound, read and released.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `portcullis` with `args`, info logs on stderr (piped, so not a terminal) and `NO_COLOR` unset; returns
/// it, its stdout lines and its stderr lines.
fn spawn(args: &[&str]) -> (Child, Lines<BufReader<tokio::process::ChildStdout>>, Lines<BufReader<ChildStderr>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .env_remove("PORTCULLIS_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap()).lines();
    let logs = BufReader::new(child.stderr.take().unwrap()).lines();
    (child, out, logs)
}

/// Reads log lines until one contains `marker`; every line read is appended to `seen`.
async fn log_until(logs: &mut Lines<BufReader<ChildStderr>>, marker: &str, seen: &mut Vec<String>) -> String {
    loop {
        let line = logs.next_line().await.unwrap().unwrap_or_else(|| panic!("logs ended before {marker:?}: {seen:#?}"));
        seen.push(line.clone());
        if line.contains(marker) {
            return line;
        }
    }
}

/// One sample of a Prometheus text exposition: its value, when a line has exactly `name` and `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: BTreeMap<&str, &str> = labels.iter().copied().collect();
    text.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, found) = match series.split_once('{') {
            Some((series_name, rest)) => {
                let found: BTreeMap<&str, &str> = rest
                    .strip_suffix('}')?
                    .split("\",")
                    .filter(|pair| !pair.is_empty())
                    .filter_map(|pair| pair.split_once("=\""))
                    .map(|(key, value)| (key, value.trim_end_matches('"')))
                    .collect();
                (series_name, found)
            }
            None => (series, BTreeMap::new()),
        };
        (series_name == name && found == wanted).then(|| value.parse().unwrap())
    })
}

/// [`sample`], which must be there.
#[track_caller]
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, name, labels).unwrap_or_else(|| panic!("no {name}{labels:?} in\n{text}"))
}

async fn get_text(url: &str) -> String {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.text().await.unwrap()
}

async fn get_json(url: &str) -> Value {
    serde_json::from_str(&get_text(url).await).unwrap()
}

/// Every metric family the gateway exposes, with its Prometheus type.
const FAMILIES: [(&str, &str); 9] = [
    ("portcullis_gateway_requests_total", "counter"),
    ("portcullis_gateway_decision_seconds", "summary"),
    ("portcullis_jwks_fetches_total", "counter"),
    ("portcullis_jwks_refetch_limited_total", "counter"),
    ("portcullis_jwks_keys", "gauge"),
    ("portcullis_jwks_ready", "gauge"),
    ("portcullis_jwks_last_success_timestamp_seconds", "gauge"),
    ("portcullis_jwks_key_set_age_seconds", "gauge"),
    ("portcullis_token_cache_lookups_total", "counter"),
];

/// One key set's series as the metrics show them.
#[derive(Debug, PartialEq)]
struct KeySetSeries {
    successes: f64,
    failures: f64,
    keys: f64,
    ready: f64,
}

#[track_caller]
fn key_set_series(metrics: &str, source: &str) -> KeySetSeries {
    let of = |name: &str, extra: &[(&str, &str)]| {
        let mut labels = vec![("source", source)];
        labels.extend_from_slice(extra);
        value(metrics, name, &labels)
    };
    for limit in ["cooldown", "bucket"] {
        assert_eq!(of("portcullis_jwks_refetch_limited_total", &[("limit", limit)]), 0.0, "{source} {limit}");
    }
    let series = KeySetSeries {
        successes: of("portcullis_jwks_fetches_total", &[("outcome", "success")]),
        failures: of("portcullis_jwks_fetches_total", &[("outcome", "failure")]),
        keys: of("portcullis_jwks_keys", &[]),
        ready: of("portcullis_jwks_ready", &[]),
    };
    // The gauges agree with the counters: keys only after a success, an age only with keys.
    let last_success = of("portcullis_jwks_last_success_timestamp_seconds", &[]);
    let age = of("portcullis_jwks_key_set_age_seconds", &[]);
    if series.successes == 0.0 {
        assert_eq!((series.keys, series.ready, last_success), (0.0, 0.0, 0.0), "{source}: {series:?}");
        assert!(age.is_nan(), "{source}: age {age} before any key set");
    } else {
        assert!(series.keys > 0.0 && series.ready == 1.0, "{source}: {series:?}");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        assert!((now - last_success) < 60.0 && (0.0..60.0).contains(&age), "{source}: {last_success} {age}");
    }
    series
}

#[tokio::test]
async fn every_metric_is_there_from_the_first_scrape_with_the_status_pages_counts() {
    let issuer = portcullis_testkit::issuers::demo().await;
    let good = issuer.issuer().to_owned();
    let bad_jwks = format!("http://127.0.0.1:{}/.well-known/jwks.json", closed_port());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:{}\"\n\
             [[issuers]]\nissuer = \"{good}\"\naudiences = [\"{AUDIENCE}\"]\n\
             [[issuers]]\nissuer = \"{UNREACHABLE}\"\naudiences = [\"{AUDIENCE}\"]\njwks_uri = \"{bad_jwks}\"\n\
             [[routes]]\npath = \"/api/*\"\n[[routes]]\npath = \"/health\"\npublic = true\n",
            closed_port()
        ),
    )
    .unwrap();
    let (_gateway, mut out, logs) = spawn(&["serve", "--config", file.to_str().unwrap()]);
    let base = url_in(&line_with(&mut out, "portcullis gateway listening on").await);
    let admin = url_in(&line_with(&mut out, "admin listening on").await);
    drain(out);
    drain(logs);

    // The first scrape, right after the listening lines.
    let first = get_text(&format!("{admin}/metrics")).await;
    for (family, kind) in FAMILIES {
        assert!(first.contains(&format!("# TYPE {family} {kind}\n")), "{family} missing:\n{first}");
        assert!(first.contains(&format!("# HELP {family} ")), "{family} has no help:\n{first}");
    }
    let requests = "portcullis_gateway_requests_total";
    for route in ["/api/*", "/health", "unmatched"] {
        assert_eq!(value(&first, requests, &[("route", route), ("outcome", "allowed"), ("reason", "none")]), 0.0);
    }
    for reason in ["token_missing", "signature_invalid", "token_expired", "audience_mismatch", "keys_unavailable"] {
        let labels = [("route", "/api/*"), ("outcome", "denied"), ("reason", reason)];
        assert_eq!(value(&first, requests, &labels), 0.0, "{reason}");
    }
    // A public route refuses no token.
    assert_eq!(
        sample(&first, requests, &[("route", "/health"), ("outcome", "denied"), ("reason", "token_missing")]),
        None
    );
    assert_eq!(value(&first, "portcullis_gateway_decision_seconds_count", &[]), 0.0);
    for result in ["hit", "miss"] {
        assert_eq!(value(&first, "portcullis_token_cache_lookups_total", &[("result", result)]), 0.0, "{result}");
    }
    let unreachable = key_set_series(&first, &bad_jwks);
    assert_eq!((unreachable.successes, unreachable.keys, unreachable.ready), (0.0, 0.0, 0.0));
    key_set_series(&first, &good);

    // Once the good issuer's keys are in and the other issuer's first fetch has failed, the metrics say what the
    // status page says: the same fetches, failures and keys.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (metrics, status) = loop {
        let before = get_json(&format!("{admin}/status.json")).await;
        let metrics = get_text(&format!("{admin}/metrics")).await;
        let after = get_json(&format!("{admin}/status.json")).await;
        let settled = before["issuers"] == after["issuers"]
            && value(&metrics, "portcullis_jwks_ready", &[("source", &good)]) == 1.0
            && value(&metrics, "portcullis_jwks_fetches_total", &[("source", &bad_jwks), ("outcome", "failure")])
                >= 1.0;
        if settled {
            break (metrics, after);
        }
        assert!(Instant::now() < deadline, "the key sets did not settle:\n{metrics}\n{after}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (issuer, source) in [(good.as_str(), good.as_str()), (UNREACHABLE, bad_jwks.as_str())] {
        let shown = status["issuers"].as_array().unwrap().iter().find(|i| i["issuer"] == issuer).unwrap();
        let key_set = &shown["key_set"];
        let fetches = key_set["fetches"].as_u64().unwrap() as f64;
        let failures = key_set["failures"].as_u64().unwrap() as f64;
        let keys = key_set["keys"].as_array().map_or(0, Vec::len) as f64;
        let series = key_set_series(&metrics, source);
        assert_eq!(
            series,
            KeySetSeries { successes: fetches - failures, failures, keys, ready: series.ready },
            "{issuer}"
        );
    }
    let published = get_json(&format!("{good}.well-known/jwks.json")).await;
    let good_series = key_set_series(&metrics, &good);
    assert_eq!(good_series.keys, published["keys"].as_array().unwrap().len() as f64);
    assert_eq!((good_series.successes, good_series.failures), (1.0, 0.0));
    let bad_series = key_set_series(&metrics, &bad_jwks);
    assert_eq!((bad_series.successes, bad_series.keys, bad_series.ready), (0.0, 0.0, 0.0));

    // One refused request: its series goes from 0 to 1, as the status page's count does.
    let refused = reqwest::get(format!("{base}/api/orders")).await.unwrap();
    assert_eq!(refused.status(), 401);
    let metrics = get_text(&format!("{admin}/metrics")).await;
    assert_eq!(
        value(&metrics, requests, &[("route", "/api/*"), ("outcome", "denied"), ("reason", "token_missing")]),
        1.0
    );
    assert_eq!(value(&metrics, "portcullis_gateway_decision_seconds_count", &[]), 1.0);
    let status = get_json(&format!("{admin}/status.json")).await;
    assert_eq!(status["requests"], json!([{ "outcome": "denied", "reason": "token_missing", "count": 1 }]));
}

/// Counts the log lines that report a decision about a request (allowed, denied or refused in any wording).
fn decision_lines(seen: &[String]) -> Vec<&String> {
    seen.iter()
        .filter(|line| {
            ["request denied", "request refused", "request allowed", "answering 401"].iter().any(|m| line.contains(m))
        })
        .collect()
}

#[tokio::test]
async fn plain_logs_name_the_policy_in_flags_only_mode_and_each_refusal_once() {
    let issuer = portcullis_testkit::issuers::demo().await;
    let good = issuer.issuer().to_owned();
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}", upstream.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(upstream, axum::Router::new().fallback(|| async { "upstream" })).await });
    let args =
        ["serve", "--listen", "127.0.0.1:0", "--upstream", &upstream_url, "--issuer", &good, "--audience", AUDIENCE];
    let (_gateway, mut out, mut logs) = spawn(&args);
    let base = url_in(&line_with(&mut out, "portcullis gateway listening on").await);
    drain(out);
    let mut seen = Vec::new();
    // Without a config file there are no routes: the log says what every request needs instead.
    let said = format!("no routes configured: every request needs a valid token from {good} (audience {AUDIENCE})");
    log_until(&mut logs, &said, &mut seen).await;

    let http = reqwest::Client::new();
    let refused = http.get(format!("{base}/orders")).header("x-request-id", "refused-once").send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let token = machine_token(&good, AUDIENCE).await;
    let allowed = http.get(format!("{base}/orders")).bearer_auth(&token).header("x-request-id", "then-allowed");
    assert_eq!(allowed.send().await.unwrap().status(), 200);
    log_until(&mut logs, "then-allowed", &mut seen).await;

    let decisions = decision_lines(&seen);
    assert_eq!(decisions.len(), 2, "one line per decision: {decisions:#?}");
    assert!(decisions[0].contains("request denied") && decisions[0].contains("refused-once"), "{decisions:#?}");
    assert!(decisions[0].contains("token_missing"), "{decisions:#?}");
    // stderr is a pipe here: no colour codes.
    assert!(seen.iter().all(|line| !line.contains('\x1b')), "ANSI escapes in piped logs: {seen:#?}");
}

#[tokio::test]
async fn nginx_refusal_while_keys_are_unavailable_is_one_warning() {
    let jwks = format!("http://127.0.0.1:{}/.well-known/jwks.json", closed_port());
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--forward-auth",
        "nginx",
        "--issuer",
        UNREACHABLE,
        "--audience",
        AUDIENCE,
        "--jwks-uri",
        &jwks,
        "--log-format",
        "json",
    ];
    let (_gateway, mut out, mut logs) = spawn(&args);
    let base = url_in(&line_with(&mut out, "portcullis gateway listening on").await);
    drain(out);
    let key = SigningKey::generate(Algorithm::ES256, Some("k1".into())).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let claims = json!({ "iss": UNREACHABLE, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 600 });
    let token = key.sign_token(&claims, None).unwrap();
    let http = reqwest::Client::new();
    let ask = |id: &'static str, token: Option<&str>| {
        let mut request = http
            .get(format!("{base}/auth"))
            .header("x-original-method", "GET")
            .header("x-original-uri", "/api/orders")
            .header("x-request-id", id);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(ask("no-keys", Some(&token)).await.unwrap().status(), 401, "towards nginx, an outage is a 401");
    assert_eq!(ask("then-no-token", None).await.unwrap().status(), 401);
    let mut seen = Vec::new();
    log_until(&mut logs, "then-no-token", &mut seen).await;

    let decisions: Vec<Value> =
        decision_lines(&seen).into_iter().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(decisions.len(), 2, "one line per refusal: {seen:#?}");
    assert_eq!(decisions[0]["request_id"], "no-keys");
    assert_eq!(decisions[0]["reason"], "keys_unavailable");
    assert_eq!(decisions[0]["level"], "WARN", "the gateway's own fault stands out: {:?}", decisions[0]);
    assert_eq!(
        (decisions[1]["reason"].as_str(), decisions[1]["level"].as_str()),
        (Some("token_missing"), Some("INFO"))
    );
}

/// `sh -c 'ulimit -n 256 && exec portcullis serve …'` on an address already taken: the open-files warning comes
/// first, then the command exits 5 (it cannot listen), so nothing is left running.
fn low_limit_serve(taken: &str) -> String {
    format!(
        "ulimit -n 256 && exec {} serve --listen {taken} --upstream http://127.0.0.1:9 --issuer https://i.example/ \
         --audience {AUDIENCE}",
        env!("CARGO_BIN_EXE_portcullis")
    )
}

const OPEN_FILES: &str = "open-files limit 256 is below the 20064 that limits.max_connections = 10000 needs";

#[test]
fn the_open_files_warning_names_the_numbers_and_colour_needs_a_terminal() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let piped = std::process::Command::new("sh")
        .args(["-c", &low_limit_serve(&taken)])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert_eq!(piped.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains(OPEN_FILES), "{stderr}");
    assert!(!stderr.contains('\x1b'), "ANSI escapes with stderr piped: {stderr:?}");

    // On a terminal (script(1) gives the command one), logs are coloured unless NO_COLOR says otherwise.
    let probe = portcullis_testkit::probe::runs("script", &["-qec", "true", "/dev/null"]);
    if !portcullis_testkit::probe::require("script(1) for a terminal", probe) {
        return;
    }
    let on_terminal = |no_color: Option<&str>| {
        let mut command = std::process::Command::new("script");
        command.args(["-qec", &low_limit_serve(&taken), "/dev/null"]).env("RUST_LOG", "info");
        command.env_remove("PORTCULLIS_CONFIG").env_remove("NO_COLOR").stdin(Stdio::null());
        if let Some(value) = no_color {
            command.env("NO_COLOR", value);
        }
        let output = command.output().unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let coloured = on_terminal(None);
    assert!(coloured.contains("\x1b[") && coloured.contains("open-files limit"), "{coloured:?}");
    let empty = on_terminal(Some(""));
    assert!(empty.contains("\x1b["), "an empty NO_COLOR is unset: {empty:?}");
    let plain = on_terminal(Some("1"));
    assert!(plain.contains("open-files limit") && !plain.contains('\x1b'), "NO_COLOR=1: {plain:?}");
}
