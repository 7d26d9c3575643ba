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
    assert_eq!(stdout.matches("[ok] HTTP").count(), 6, "{stdout}");
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
    // The tour never prints a token.
    assert!(!stdout.contains("eyJ"), "{stdout}");
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
