//! `portcullis demo --check` and `portcullis issuer` run as processes.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn demo_check_passes_every_step() {
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["demo", "--check", "--port", "0", "--issuer-port", "0"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout.matches("[ok] HTTP").count(), 10, "{stdout}");
    assert!(!stdout.contains("[FAIL]"), "{stdout}");
    assert!(stdout.contains("demo check: every step behaved as described"));
    assert!(stdout.contains("DEVELOPMENT ONLY"));
    // The tour points to the browser pages the demo serves.
    for page in ["/  ", "/debugger  ", "/status  "] {
        assert!(
            stdout.lines().any(|line| line.contains("http://127.0.0.1:") && line.contains(page)),
            "{page}: {stdout}"
        );
    }
    // The tour shows the API's metadata document, naming the issuer, and every challenge points to it.
    let issuer = stdout.lines().find(|l| l.contains("identity provider")).unwrap().split_whitespace().nth(2).unwrap();
    let api = stdout.lines().find(|l| l.trim_start().starts_with("API ")).unwrap().split_whitespace().nth(1).unwrap();
    let metadata = format!("{api}/.well-known/oauth-protected-resource");
    let step = tour_step(&stdout, "protected-resource metadata");
    assert!(step.contains(&format!("$ curl -s {metadata}")), "{step}");
    assert!(step.contains("[ok] HTTP 200"), "{step}");
    assert!(step.contains(&format!("\"authorization_servers\":[\"{issuer}\"]")), "{step}");
    assert!(step.contains(&format!("\"resource\":\"{api}\"")), "{step}");
    for line in stdout.lines().filter(|l| l.trim_start().starts_with("WWW-Authenticate:")) {
        assert!(line.contains(&format!("resource_metadata=\"{metadata}\"")), "{line}");
    }
    // A DPoP-bound token with a fresh proof is accepted; the same proof again, and the token as Bearer, are not.
    let fresh = tour_step(&stdout, "DPoP-bound token with a fresh proof");
    assert!(
        fresh.contains("-H \"Authorization: DPoP $DPOP_TOKEN\" -H \"DPoP: $PROOF\"") && fresh.contains("[ok] HTTP 200")
    );
    assert!(fresh.contains("\"cnf\":{\"jkt\":"), "{fresh}");
    let replay = tour_step(&stdout, "The same proof again");
    assert!(
        replay.contains("[ok] HTTP 401")
            && replay.contains("WWW-Authenticate: DPoP realm=\"api\", error=\"invalid_dpop_proof\""),
        "{replay}"
    );
    let downgrade = tour_step(&stdout, "as a plain Bearer token");
    assert!(
        downgrade.contains("[ok] HTTP 401") && downgrade.contains("\"reason\":\"token_binding_invalid\""),
        "{downgrade}"
    );
    // The tour never prints a token.
    assert!(!stdout.contains("eyJ"), "{stdout}");
}

/// The lines of the tour step whose title contains `title`, up to the next step.
fn tour_step<'a>(stdout: &'a str, title: &str) -> &'a str {
    let start = stdout.find(title).unwrap_or_else(|| panic!("no step {title:?}: {stdout}"));
    let rest = &stdout[start..];
    let end = rest.find("\n\n").unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn issuer_refuses_non_loopback_addresses_without_allow_remote() {
    let output =
        Command::new(env!("CARGO_BIN_EXE_portcullis")).args(["issuer", "--listen", "0.0.0.0:0"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--allow-remote") && stderr.contains("DEVELOPMENT ONLY"), "{stderr}");
}

#[test]
fn issuer_rejects_a_bad_tenant_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenant.toml");
    std::fs::write(&path, "[[clients]]\nclient_id = \"x\"\ngrants = [\"password\"]\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["issuer", "--listen", "127.0.0.1:0", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    // 3: a file the command reads is invalid (configuration).
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown grant password"));
}
