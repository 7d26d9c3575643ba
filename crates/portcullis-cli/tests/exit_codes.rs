//! Every documented exit status of `portcullis`, produced by running the binary.
#![allow(clippy::unwrap_used)]

use portcullis::Algorithm;
use portcullis::signing::SigningKey;
use portcullis_cli::Exit;
use serde_json::json;
use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

const ISSUER: &str = "https://tenant.example.com/";
const AUDIENCE: &str = "https://api.example.com";

fn portcullis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis")).args(args).env_remove("PORTCULLIS_CONFIG").output().unwrap()
}

/// Asserts the status `code` (the documented number) and that [`Exit`] names it `exit`.
fn assert_exit(output: &Output, code: i32, exit: Exit) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    assert_eq!(i32::from(exit.code()), code, "{exit:?}");
}

/// A loopback port nothing listens on: bound, read and released.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn the_help_lists_every_status() {
    let help = portcullis(&["--help"]);
    assert_exit(&help, 0, Exit::Success);
    let text = String::from_utf8_lossy(&help.stdout);
    for exit in Exit::ALL {
        assert!(text.contains(&format!("  {}  {}", exit.code(), exit.meaning())), "{exit:?}: {text}");
    }
}

#[test]
fn an_invalid_token_exits_one_and_a_valid_one_zero() {
    let key = SigningKey::generate(Algorithm::RS256, Some("k1".into())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({ "keys": [key.public_jwk()] }).to_string()).unwrap();
    let claims = json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now(), "exp": now() + 600 });
    let token = key.sign_token(&claims, None).unwrap();
    let verify = |token: &str| {
        portcullis(&["verify", "--jwks", jwks.to_str().unwrap(), "--issuer", ISSUER, "--audience", AUDIENCE, token])
    };
    assert_exit(&verify(&token), 0, Exit::Success);
    let (signed, _) = token.rsplit_once('.').unwrap();
    assert_exit(&verify(&format!("{signed}.AAAA")), 1, Exit::TokenInvalid);
    assert_exit(&verify("not-a-token"), 1, Exit::TokenInvalid);
}

#[test]
fn usage_errors_exit_two() {
    assert_exit(&portcullis(&["--frobnicate"]), 2, Exit::Usage);
    assert_exit(&portcullis(&["verify", "--jwks", "x.json", "--issuer", ISSUER, "--bogus", "t"]), 2, Exit::Usage);
    assert_exit(&portcullis(&["no-such-command"]), 2, Exit::Usage);
    assert_exit(&portcullis(&["serve", "--issuer", ISSUER]), 2, Exit::Usage);
    assert_exit(&portcullis(&["issuer", "--listen", "0.0.0.0:0"]), 2, Exit::Usage);
}

#[test]
fn configuration_errors_exit_three() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "listen = [\n").unwrap();
    let broken = broken.to_str().unwrap();
    let missing = dir.path().join("missing.toml");
    let missing = missing.to_str().unwrap();
    for args in [
        &["check-config", broken][..],
        &["check-config", missing],
        &["serve", "--config", broken],
        &["serve", "--config", missing],
        &["issuer", "--listen", "127.0.0.1:0", "--config", broken],
        &["verify", "--jwks", broken, "--issuer", ISSUER, "--audience", AUDIENCE, "a.b.c"],
    ] {
        let output = portcullis(args);
        assert_exit(&output, 3, Exit::Config);
        assert!(String::from_utf8_lossy(&output.stderr).contains("broken.toml") || args.contains(&missing), "{args:?}");
    }
}

#[test]
fn unreachable_keys_exit_four() {
    let port = closed_port();
    let jwks = format!("http://127.0.0.1:{port}/.well-known/jwks.json");
    let output = portcullis(&["verify", "--jwks", &jwks, "--issuer", ISSUER, "--audience", AUDIENCE, "a.b.c"]);
    assert_exit(&output, 4, Exit::Unreachable);
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot fetch the key set"));

    let issuer = format!("http://127.0.0.1:{}/", closed_port());
    let output = portcullis(&["verify", "--discover", "--issuer", &issuer, "--audience", AUDIENCE, "a.b.c"]);
    assert_exit(&output, 4, Exit::Unreachable);
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot load the key set of"));

    // With --json, an unreachable issuer is not a usage error: the status has its own reason code.
    for source in [&["--jwks", &jwks][..], &["--discover"]] {
        let mut args = vec!["verify", "--issuer", &issuer, "--audience", AUDIENCE, "--json"];
        args.extend_from_slice(source);
        args.push("a.b.c");
        let output = portcullis(&args);
        assert_exit(&output, 4, Exit::Unreachable);
        assert_eq!(json_reason(&output), "keys_unreachable", "{source:?}");
    }
}

/// The `reason` of the one JSON object `verify --json` printed.
fn json_reason(output: &Output) -> String {
    let verdict: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(verdict["valid"], false);
    verdict["reason"].as_str().unwrap().to_owned()
}

#[test]
fn verify_json_names_each_failure_status() {
    let usage = portcullis(&["verify", "--issuer", ISSUER, "--audience", AUDIENCE, "--json", "a.b.c"]);
    assert_exit(&usage, 2, Exit::Usage);
    assert_eq!(json_reason(&usage), "usage_error");
    let config = portcullis(&[
        "verify",
        "--jwks",
        "/nonexistent/jwks.json",
        "--issuer",
        ISSUER,
        "--audience",
        AUDIENCE,
        "--json",
        "a.b.c",
    ]);
    assert_exit(&config, 3, Exit::Config);
    assert_eq!(json_reason(&config), "config_error");
    // Each failing status has a code of its own.
    let codes: Vec<&str> = Exit::ALL.into_iter().filter_map(Exit::failure_code).collect();
    assert_eq!(codes, ["usage_error", "config_error", "keys_unreachable", "cannot_start", "failed"]);
}

#[test]
fn an_address_in_use_exits_five() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let upstream = format!("http://127.0.0.1:{}", closed_port());
    let serve = portcullis(&[
        "serve",
        "--listen",
        &address,
        "--upstream",
        &upstream,
        "--issuer",
        ISSUER,
        "--audience",
        AUDIENCE,
    ]);
    assert_exit(&serve, 5, Exit::CannotStart);
    assert!(String::from_utf8_lossy(&serve.stderr).contains(&format!("cannot listen on {address}")));

    assert_exit(&portcullis(&["issuer", "--listen", &address]), 5, Exit::CannotStart);
    let port = taken.local_addr().unwrap().port().to_string();
    let demo = portcullis(&["demo", "--check", "--port", &port, "--issuer-port", "0"]);
    assert_exit(&demo, 5, Exit::CannotStart);
    assert!(String::from_utf8_lossy(&demo.stderr).contains("try --port"));
    drop(taken);
}
