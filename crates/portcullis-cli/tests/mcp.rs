//! The official MCP Python SDK (PyPI `mcp`) through `portcullis serve`: an MCP server with no authorization code
//! (the SDK's own streamable-HTTP server, `tests/mcp/server.py`) behind the gateway configured with the MCP preset
//! (`deploy/mcp/portcullis.toml`, shown verbatim in docs/mcp.md), and the SDK's OAuth client (`tests/mcp/client.py`)
//! logging in at `portcullis issuer`. The client is told nothing but the MCP server's URL: it discovers the rest
//! from the gateway's 401 (RFC 9728 `resource_metadata`), registers itself (RFC 7591), logs in with PKCE and
//! `resource` (RFC 8707), and calls tools whose answers stream back through the gateway as Server-Sent Events.
//!
//! `.ci/run` installs the pinned SDK (`pip install mcp==…`); without it the tests print why they skip, and with
//! `CI=true` they fail.
#![allow(clippy::unwrap_used)]

use portcullis_testkit::markdown;
use portcullis_testkit::probe;
use portcullis_testkit::process::{Running, free_port, url_in};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use tokio::process::Command;

/// How long one run of the SDK client may take (the whole login and two tool calls).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);

fn repository() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp")).join(name)
}

/// Whether the MCP Python SDK is there; otherwise skips (printing why) or, in CI, fails.
fn sdk_installed() -> bool {
    let modules = "import mcp.client.auth, mcp.server.mcpserver, httpx2, uvicorn";
    let check = probe::runs("python3", &["-c", modules]).map_err(|why| {
        format!("python3 cannot import {modules:?} ({why}); run .ci/run, or `python3 -m pip install mcp`, to include this test")
    });
    probe::require("the MCP Python SDK (PyPI mcp)", check)
}

/// The SDK's version, for the failure messages.
fn sdk_version() -> String {
    let output = std::process::Command::new("python3")
        .args(["-c", "import importlib.metadata as m; print(m.version('mcp'))"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Where everything runs: the dev issuer, the MCP server and the gateway in front of it.
struct Setup {
    issuer: String,
    /// The MCP endpoint behind the gateway, which is the protected resource (and the token audience).
    resource: String,
    /// The protected-resource metadata URL the challenges name.
    metadata_url: String,
    gateway: Running,
    _issuer: Running,
    mcp: Running,
}

/// The preset file the documentation shows and the gateway ships.
fn preset() -> String {
    std::fs::read_to_string(repository().join("deploy/mcp/portcullis.toml")).unwrap()
}

/// A string setting of a TOML table, by its dotted path (numbers index arrays).
fn setting<'a>(table: &'a toml::Value, path: &str) -> &'a str {
    let mut value = table;
    for key in path.split('.') {
        value = match key.parse::<usize>() {
            Ok(index) => &value[index],
            Err(_) => value.get(key).unwrap_or_else(|| panic!("the MCP preset has no {path}")),
        };
    }
    value.as_str().unwrap_or_else(|| panic!("{path} in the MCP preset is not a string"))
}

/// Replaces every string equal to a key of `map`, anywhere in `value`.
fn replace_strings(value: &mut toml::Value, map: &[(String, String)]) {
    match value {
        toml::Value::String(text) => {
            if let Some((_, to)) = map.iter().find(|(from, _)| from == text) {
                *text = to.clone();
            }
        }
        toml::Value::Array(items) => items.iter_mut().for_each(|item| replace_strings(item, map)),
        toml::Value::Table(table) => table.iter_mut().for_each(|(_, item)| replace_strings(item, map)),
        _ => {}
    }
}

/// The MCP preset with its example URLs replaced by this test's: the preset's `public_url`, resource, issuer and
/// upstream become the gateway's, the MCP endpoint's, the dev issuer's and the MCP server's, wherever they occur.
/// Only `listen` and `log_format` (JSON, for the assertions on the log) are set besides.
fn configure(preset: &str, public_url: &str, resource: &str, issuer: &str, upstream: &str) -> String {
    let mut config: toml::Value = toml::from_str(preset).unwrap();
    let map = [
        (setting(&config, "public_url").to_owned(), public_url.to_owned()),
        (setting(&config, "resource_metadata.resource").to_owned(), resource.to_owned()),
        (setting(&config, "issuers.0.issuer").to_owned(), issuer.to_owned()),
        (setting(&config, "upstream").to_owned(), upstream.to_owned()),
    ];
    replace_strings(&mut config, &map);
    let table = config.as_table_mut().unwrap();
    table.insert("listen".into(), toml::Value::String(public_url.trim_start_matches("http://").to_owned()));
    table.insert("log_format".into(), toml::Value::String("json".into()));
    toml::to_string(&config).unwrap()
}

async fn start() -> Setup {
    // The resource URL holds the gateway's port, and the issuer must know the resource as an API before the
    // client asks for it: so the gateway's port is chosen first.
    let gateway_port = free_port();
    let public_url = format!("http://127.0.0.1:{gateway_port}");
    let resource = format!("{public_url}/mcp");

    let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    command.args(["issuer", "--listen", "127.0.0.1:0", "--api", &resource, "--api", OTHER_RESOURCE]);
    let mut issuer_process = Running::spawn("portcullis issuer", command, tempfile::tempdir().unwrap());
    let issuer = url_in(&issuer_process.line_with("portcullis dev issuer at").await);
    issuer_process.drain_stdout();

    let mut command = Command::new("python3");
    command.arg(script("server.py")).arg("0").env("PYTHONDONTWRITEBYTECODE", "1");
    let mut mcp = Running::spawn("MCP server", command, tempfile::tempdir().unwrap());
    let mcp_url = url_in(&mcp.line_with("mcp server listening on").await);
    mcp.drain_stdout();
    let upstream = mcp_url.strip_suffix("/mcp").unwrap().to_owned();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.toml");
    std::fs::write(&file, configure(&preset(), &public_url, &resource, &issuer, &upstream)).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    command.args(["serve", "--config"]).arg(&file).env_remove("PORTCULLIS_CONFIG").env_remove("RUST_LOG");
    let mut gateway = Running::spawn("portcullis serve", command, dir);
    let listening = gateway.line_with("portcullis gateway listening on").await;
    assert_eq!(url_in(&listening), public_url, "{listening}");
    gateway.drain_stdout();

    let metadata_url = format!("{public_url}/.well-known/oauth-protected-resource/mcp");
    Setup { issuer, resource, metadata_url, gateway, _issuer: issuer_process, mcp }
}

/// Another resource the dev issuer knows: tokens for it must not open the MCP server.
const OTHER_RESOURCE: &str = "https://other-mcp.example.com/mcp";

/// Runs the SDK client against `url` as `user` in `mode`; its report.
async fn run_client(setup: &Setup, user: &str, mode: &str) -> Value {
    let url = setup.resource.as_str();
    let mut command = Command::new("python3");
    command.arg(script("client.py")).args([url, user, mode]).env("PYTHONDONTWRITEBYTECODE", "1").kill_on_drop(true);
    let output = tokio::time::timeout(CLIENT_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("the MCP client did not finish within {CLIENT_TIMEOUT:?}"))
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the MCP client (mcp {}) failed ({}):\n{stderr}\nThe gateway's log:\n{}\nThe MCP server's:\n{}",
        sdk_version(),
        output.status,
        setup.gateway.stderr(),
        setup.mcp.stderr()
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("the client's report is not JSON ({e}):\n{stderr}"))
}

/// The gateway's JSON log lines with this `message`.
fn gateway_log(gateway: &Running, message: &str) -> Vec<Value> {
    gateway
        .stderr()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["message"] == message)
        .collect()
}

/// The first exchange of the client's report at or after `from` with this method and URL (query left out), and its
/// index.
fn find<'a>(exchanges: &'a [Value], method: &str, url: &str, from: usize) -> (usize, &'a Value) {
    exchanges
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, e)| e["method"] == method && e["url"] == url)
        .unwrap_or_else(|| panic!("no {method} {url} after exchange {from}: {exchanges:#?}"))
}

fn audiences(claims: &Value) -> Vec<String> {
    match &claims["aud"] {
        Value::String(one) => vec![one.clone()],
        Value::Array(many) => many.iter().map(|a| a.as_str().unwrap().to_owned()).collect(),
        other => panic!("aud is {other}"),
    }
}

#[tokio::test]
async fn mcp_sdk_client_discovers_registers_logs_in_and_calls_a_tool_through_the_gateway() {
    if !sdk_installed() {
        return;
    }
    let setup = start().await;
    let report = run_client(&setup, "alice", "legacy").await;
    let exchanges = report["exchanges"].as_array().unwrap();
    let issuer = &setup.issuer;

    // 1. The first request, the `initialize` without a token, is refused with the metadata URL in the challenge.
    let (at, first) = find(exchanges, "POST", &setup.resource, 0);
    assert_eq!(
        (at, &first["rpc"], &first["status"], &first["authorization"]),
        (0, &json!("initialize"), &json!(401), &Value::Null)
    );
    let challenge =
        first["www_authenticate"].as_array().unwrap().iter().find(|c| c.as_str().unwrap().starts_with("Bearer "));
    let challenge = challenge.unwrap_or_else(|| panic!("no Bearer challenge: {first}")).as_str().unwrap();
    assert!(challenge.contains(&format!("resource_metadata=\"{}\"", setup.metadata_url)), "{challenge}");
    assert!(!challenge.contains("error="), "no credentials, no error (RFC 6750 §3.1): {challenge}");

    // 2. The SDK fetched that document, then the authorization server's metadata (RFC 8414).
    let (at, document) = find(exchanges, "GET", &setup.metadata_url, at);
    assert_eq!(document["status"], 200, "{document}");
    let (at, metadata) = find(exchanges, "GET", &format!("{issuer}.well-known/oauth-authorization-server"), at);
    assert_eq!(metadata["status"], 200, "{metadata}");

    // 3. It registered itself (RFC 7591) as a public client.
    let (at, registration) = find(exchanges, "POST", &format!("{issuer}oidc/register"), at);
    assert_eq!(registration["status"], 201, "{registration}");
    let client_id = report["client"]["client_id"].as_str().unwrap();
    assert!(!client_id.is_empty());
    assert_eq!(report["client"]["token_endpoint_auth_method"], "none");

    // 4. It sent the user to the authorization endpoint with PKCE and the resource; the login redirected back.
    let authorize = &report["browser"][0]["authorize"];
    assert_eq!(authorize["resource"], setup.resource.as_str(), "{authorize}");
    assert_eq!(authorize["code_challenge_method"], "S256", "{authorize}");
    assert_eq!(authorize["response_type"], "code", "{authorize}");
    assert!(authorize["names"].as_array().unwrap().contains(&json!("code_challenge")), "{authorize}");
    assert_eq!(report["browser"][1]["login"]["status"], 303, "{report:#}");

    // 5. It exchanged the code with its verifier and the same resource.
    let (at, token) = find(exchanges, "POST", &format!("{issuer}oauth/token"), at);
    assert_eq!(token["status"], 200, "{token}");
    assert_eq!(token["form"]["grant_type"], "authorization_code", "{token}");
    assert_eq!(token["form"]["resource"], setup.resource.as_str(), "{token}");
    assert!(token["form"]["names"].as_array().unwrap().contains(&json!("code_verifier")), "{token}");
    assert_eq!(report["token_type"], "Bearer");

    // The access token is the resource's: audience = the MCP endpoint (RFC 8707), for the registered client.
    let claims = &report["token"];
    assert!(audiences(claims).contains(&setup.resource), "{claims}");
    assert!(!audiences(claims).contains(&OTHER_RESOURCE.to_owned()), "{claims}");
    assert_eq!((claims["iss"].as_str(), claims["sub"].as_str()), (Some(issuer.as_str()), Some("auth0|alice")));
    let for_client = claims["azp"].as_str().or(claims["client_id"].as_str());
    assert_eq!(for_client, Some(client_id), "{claims}");

    // 6. The retried `initialize` and the tool calls passed the gateway, their answers streamed back as SSE.
    let (_, retried) = find(exchanges, "POST", &setup.resource, at);
    assert_eq!(
        (&retried["rpc"], &retried["status"], &retried["authorization"]),
        (&json!("initialize"), &json!(200), &json!("Bearer"))
    );
    let calls: Vec<&Value> = exchanges.iter().filter(|e| e["rpc"] == "tools/call").collect();
    assert_eq!(calls.len(), 2, "{exchanges:#?}");
    for call in calls {
        assert_eq!(call["status"], 200, "{call}");
        assert!(call["content_type"].as_str().unwrap().starts_with("text/event-stream"), "{call}");
    }
    // The server's own event stream (a GET the server holds open for the whole session) came through as well: the
    // gateway passed its head on without waiting for an end.
    let stream = exchanges.iter().find(|e| e["method"] == "GET" && e["url"] == setup.resource.as_str());
    let stream = stream.unwrap_or_else(|| panic!("no event stream: {exchanges:#?}"));
    assert_eq!(stream["status"], 200, "{stream}");
    assert!(stream["content_type"].as_str().unwrap().starts_with("text/event-stream"), "{stream}");
    // Only the first request went without a token, and only it was refused.
    let refused: Vec<&Value> = exchanges
        .iter()
        .filter(|e| e["url"] == setup.resource.as_str() && e["status"] != 200 && e["status"] != 202)
        .collect();
    assert_eq!(refused.len(), 1, "{exchanges:#?}");

    // The tools ran on the MCP server with the identity the gateway verified, and never saw the token.
    assert_eq!(report["add"], "42");
    assert_eq!(
        report["whoami"],
        json!({"subject": "auth0|alice", "issuer": issuer, "authorization_reached_upstream": false})
    );

    // The issuer's journal shows each step on its side, in order.
    let journal: Vec<Value> = reqwest::get(format!("{issuer}__admin/journal")).await.unwrap().json().await.unwrap();
    let steps: Vec<(String, String, u64)> = journal
        .iter()
        .map(|e| {
            let text = |name: &str| e[name].as_str().unwrap().to_owned();
            (text("method"), text("path"), e["status"].as_u64().unwrap())
        })
        .filter(|(_, path, _): &(String, String, u64)| !path.starts_with("/.well-known/jwks"))
        .collect();
    let expected = [
        ("GET", "/.well-known/oauth-authorization-server", 200),
        ("POST", "/oidc/register", 201),
        ("GET", "/authorize", 200),
        ("POST", "/authorize", 303),
        ("POST", "/oauth/token", 200),
    ];
    let mut from = 0;
    for (method, path, status) in expected {
        let found = steps[from..].iter().position(|(m, p, s)| m == method && p == path && *s == status);
        from += found.unwrap_or_else(|| panic!("the issuer's journal has no {method} {path} in order: {steps:?}")) + 1;
    }

    // The gateway's log: the refusal (no token) and the calls allowed for alice on the /mcp route.
    let denied = gateway_log(&setup.gateway, "request denied");
    assert!(denied.iter().any(|e| e["reason"] == "token_missing" && e["path"] == "/mcp"), "{denied:#?}");
    let allowed = gateway_log(&setup.gateway, "request allowed");
    let for_alice = allowed.iter().filter(|e| e["subject"] == "auth0|alice" && e["path"] == "/mcp").count();
    assert!(for_alice >= 3, "initialize, two tool calls and the session's other requests: {allowed:#?}");
}

#[tokio::test]
async fn mcp_sdk_client_in_its_default_mode_logs_in_and_calls_tools_through_the_gateway() {
    if !sdk_installed() {
        return;
    }
    let setup = start().await;
    // The SDK's default: it probes `server/discover` first, and the server answers with plain JSON.
    let report = run_client(&setup, "bob", "auto").await;
    let exchanges = report["exchanges"].as_array().unwrap();
    let (at, first) = find(exchanges, "POST", &setup.resource, 0);
    assert_eq!((at, &first["rpc"], &first["status"]), (0, &json!("server/discover"), &json!(401)));
    let metadata = format!("resource_metadata=\"{}\"", setup.metadata_url);
    let challenges = first["www_authenticate"].as_array().unwrap();
    assert!(challenges.iter().all(|c| c.as_str().unwrap().contains(&metadata)), "{challenges:?}");
    let (at, _) = find(exchanges, "POST", &format!("{}oidc/register", setup.issuer), at);
    let (at, token) = find(exchanges, "POST", &format!("{}oauth/token", setup.issuer), at);
    assert_eq!(token["form"]["resource"], setup.resource.as_str(), "{token}");
    let after: Vec<&Value> = exchanges[at + 1..].iter().collect();
    assert!(after.iter().any(|e| e["rpc"] == "tools/call"), "{exchanges:#?}");
    assert!(after.iter().all(|e| e["status"] == 200 && e["authorization"] == "Bearer"), "{exchanges:#?}");
    assert!(audiences(&report["token"]).contains(&setup.resource), "{report:#}");
    assert_eq!(report["add"], "42");
    assert_eq!(report["whoami"]["subject"], "auth0|bob");
    assert_eq!(report["whoami"]["authorization_reached_upstream"], false);
}

/// An MCP `initialize` request as the SDK sends it.
fn initialize() -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "portcullis-test", "version": "0"},
        },
    })
}

#[tokio::test]
async fn mcp_requests_without_a_token_or_with_another_resources_token_are_refused() {
    if !sdk_installed() {
        return;
    }
    let setup = start().await;
    let http = reqwest::Client::new();
    let post = |token: Option<String>| {
        let mut request = http
            .post(&setup.resource)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .json(&initialize());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            let challenges: Vec<String> =
                response.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
            (response.status().as_u16(), challenges)
        }
    };
    let metadata = format!("resource_metadata=\"{}\"", setup.metadata_url);

    // No token: 401 with the challenge that leads a client to the metadata, without an error code.
    let (status, challenges) = post(None).await;
    assert_eq!(status, 401);
    let bearer = challenges.iter().find(|c| c.starts_with("Bearer ")).unwrap_or_else(|| panic!("{challenges:?}"));
    assert!(bearer.contains(&metadata) && !bearer.contains("error="), "{bearer}");

    // The document it points to names the resource and the dev issuer.
    let document: Value = http.get(&setup.metadata_url).send().await.unwrap().json().await.unwrap();
    assert_eq!(document["resource"], setup.resource.as_str(), "{document}");
    assert_eq!(document["authorization_servers"], json!([setup.issuer]), "{document}");
    assert!(document["bearer_methods_supported"].as_array().unwrap().contains(&json!("header")), "{document}");

    // Tokens of the same issuer, for alice, valid in every other way, but for another resource: refused.
    let mint = |audience: &str| {
        let body = json!({"user": "alice", "client_id": "demo-spa", "audience": audience, "scopes": ["openid"]});
        let request = http.post(format!("{}__admin/tokens", setup.issuer)).json(&body);
        async move {
            let answer: Value = request.send().await.unwrap().json().await.unwrap();
            answer["access_token"].as_str().unwrap_or_else(|| panic!("no token: {answer}")).to_owned()
        }
    };
    let mut minted = Vec::new();
    for audience in [OTHER_RESOURCE, "https://api.example.com"] {
        minted.push(mint(audience).await);
        let (status, challenges) = post(minted.last().cloned()).await;
        assert_eq!(status, 401, "a token for {audience}");
        let bearer = challenges.iter().find(|c| c.starts_with("Bearer ")).unwrap();
        assert!(bearer.contains("error=\"invalid_token\"") && bearer.contains(&metadata), "{audience}: {bearer}");
    }
    // The same kind of token for this resource is accepted: the audience alone made the difference.
    let (status, _) = post(Some(mint(&setup.resource).await)).await;
    assert_eq!(status, 200);

    let denied = gateway_log(&setup.gateway, "request denied");
    let reasons: Vec<&str> =
        denied.iter().filter(|e| e["path"] == "/mcp").map(|e| e["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["token_missing", "audience_mismatch", "audience_mismatch"], "{denied:#?}");
    let log = setup.gateway.stderr();
    for token in &minted {
        assert!(!log.contains(token.rsplit('.').next().unwrap()), "a token reached the gateway's log");
    }
}

#[test]
fn the_mcp_guide_shows_the_preset_verbatim() {
    let guide = std::fs::read_to_string(repository().join("docs/mcp.md")).unwrap();
    let preset = preset();
    let shown = markdown::fenced_blocks(&guide, &["toml"]);
    assert!(
        shown.iter().any(|block| block.text == preset),
        "docs/mcp.md must show deploy/mcp/portcullis.toml verbatim in a ```toml block"
    );
    let version = std::fs::read_to_string(repository().join(".ci/run")).unwrap();
    let pinned = version
        .split_whitespace()
        .find_map(|word| word.trim_matches('"').strip_prefix("mcp=="))
        .expect(".ci/run pins the MCP SDK")
        .to_owned();
    assert!(guide.contains(&format!("`mcp` {pinned}")), "docs/mcp.md names the tested SDK version {pinned}");
}
