//! What the README and deploy/ tell an operator to run: the systemd unit's commands run as the service manager
//! would run them (its environment file, `ExecStartPre`, `ExecStart`, `ExecReload` with `$MAINPID`, then
//! SIGTERM), `systemd-analyze verify` on the unit where systemd is installed, the install command names the crate
//! of the `portcullis` binary, and no page advises plain HTTP on a public address.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use support::{drain, line_with, url_in};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where the unit expects the binary and its files, and where they are in this repository.
const INSTALLED_BINARY: &str = "/usr/local/bin/portcullis";
const INSTALLED_FILES: &str = "/etc/portcullis/";

fn unit() -> String {
    std::fs::read_to_string(root().join("deploy/systemd/portcullis.service")).unwrap()
}

/// The values of `key=` lines in the unit's `[Service]` section, in order.
fn service_values(unit: &str, key: &str) -> Vec<String> {
    let service = unit.split("[Service]").nth(1).unwrap().split("\n[").next().unwrap();
    service.lines().filter_map(|line| line.strip_prefix(&format!("{key}="))).map(str::to_owned).collect()
}

/// A command line of the unit with the installed paths mapped to this build and repository, split into words
/// (the unit's commands use no quoting).
fn mapped(command: &str) -> Vec<String> {
    let files = format!("{}/", root().join("deploy/systemd").display());
    command
        .replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_portcullis"))
        .replace(INSTALLED_FILES, &files)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// `KEY=VALUE` lines of an environment file (comments and blank lines skipped), as systemd reads them.
fn environment_file(path: &str) -> Vec<(String, String)> {
    let path = mapped(path.trim_start_matches('-')).remove(0);
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not KEY=VALUE: {line}"));
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

fn run_to_end(words: &[String], environment: &[(String, String)]) -> std::process::Output {
    std::process::Command::new(&words[0])
        .args(&words[1..])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(environment.iter().cloned())
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_systemd_unit_starts_reloads_and_stops_the_gateway() {
    let unit = unit();
    let [environment_file_path] = &service_values(&unit, "EnvironmentFile")[..] else { panic!("one EnvironmentFile") };
    let mut environment = environment_file(environment_file_path);
    assert!(environment.iter().all(|(key, _)| key.starts_with("PORTCULLIS_") || key == "RUST_LOG"), "{environment:?}");
    assert!(service_values(&unit, "LimitNOFILE").len() == 1, "LimitNOFILE is set");

    // ExecStartPre: the file is valid.
    for command in service_values(&unit, "ExecStartPre") {
        let checked = run_to_end(&mapped(&command), &environment);
        assert!(checked.status.success(), "{command}: {}", String::from_utf8_lossy(&checked.stderr));
    }

    // ExecStart, with the environment file's variables; free ports instead of the file's through the same
    // variables an operator would put in that file.
    environment.push(("PORTCULLIS_LISTEN".into(), "127.0.0.1:0".into()));
    environment.push(("PORTCULLIS_ADMIN_LISTEN".into(), "127.0.0.1:0".into()));
    let [start] = &service_values(&unit, "ExecStart")[..] else { panic!("one ExecStart") };
    let words = mapped(start);
    assert_eq!(words[1..3], ["serve", "--config"], "{start}");
    let mut gateway = Command::new(&words[0])
        .args(&words[1..])
        .env_clear()
        .envs(environment.iter().cloned())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(gateway.stdout.take().unwrap()).lines();
    let mut logs = BufReader::new(gateway.stderr.take().unwrap()).lines();
    let base = url_in(&line_with(&mut out, "portcullis gateway listening on").await);
    drain(out);
    // The file's routes are served: /api/* needs a token, and nothing else is routed.
    let http = reqwest::Client::new();
    assert_eq!(http.get(format!("{base}/api/orders")).send().await.unwrap().status(), 401);
    assert_eq!(http.get(format!("{base}/elsewhere")).send().await.unwrap().status(), 404);

    // ExecReload, in order: the check, then `kill -HUP $MAINPID`.
    let pid = gateway.id().unwrap().to_string();
    let reloads = service_values(&unit, "ExecReload");
    assert!(reloads.iter().any(|command| command == "/bin/kill -HUP $MAINPID"), "{reloads:?}");
    for command in &reloads {
        let words: Vec<String> = mapped(command).into_iter().map(|w| w.replace("$MAINPID", &pid)).collect();
        let done = run_to_end(&words, &environment);
        assert!(done.status.success(), "{command}: {}", String::from_utf8_lossy(&done.stderr));
    }
    let reloaded = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = logs.next_line().await.unwrap() {
            if line.contains("configuration reloaded") {
                return line;
            }
        }
        panic!("the gateway ended before reloading");
    })
    .await
    .expect("a reload logged within 20 s");
    let reloaded = without_colour(&reloaded);
    assert!(reloaded.contains("routes=2") || reloaded.contains("\"routes\":2"), "{reloaded}");

    // systemctl stop: SIGTERM, and a clean exit within TimeoutStopSec.
    assert_eq!(service_values(&unit, "KillSignal"), ["SIGTERM"]);
    let stop: u64 = service_values(&unit, "TimeoutStopSec")[0].parse().unwrap();
    let kill = std::process::Command::new("/bin/kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(stop), gateway.wait()).await.expect("stopped").unwrap();
    assert!(status.success(), "{status}");
}

/// `line` without ANSI colour sequences (`ESC [ … m`).
fn without_colour(line: &str) -> String {
    let mut plain = String::new();
    let mut rest = line;
    while let Some(start) = rest.find("\x1b[") {
        plain.push_str(&rest[..start]);
        rest = rest[start..].split_once('m').map_or("", |(_, after)| after);
    }
    plain.push_str(rest);
    plain
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let found = portcullis_testkit::process::available("systemd-analyze", &["--version"])
        .map_err(|why| format!("{why}: apt-get install systemd"));
    if !portcullis_testkit::probe::require("systemd-analyze", found) {
        return;
    }
    // The unit as installed, but naming this build's binary (verify checks that every command is executable).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portcullis.service");
    std::fs::write(&file, unit().replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_portcullis"))).unwrap();
    let verified = std::process::Command::new("systemd-analyze").arg("verify").arg(&file).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&verified.stdout), String::from_utf8_lossy(&verified.stderr));
    // Unknown keys and bad values are warnings with exit status 0: any output is a failure.
    assert!(verified.status.success() && said.trim().is_empty(), "systemd-analyze verify:\n{said}");
}

#[test]
fn the_readme_installs_the_portcullis_binary_and_keeps_its_first_commands() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let opening = "# portcullis\n\n```sh\ncargo run --release -- demo ";
    assert!(readme.starts_with(opening), "the README opens with the demo command");
    assert!(readme.lines().nth(4).unwrap().starts_with("cargo test --workspace "), "then the tests");
    let install = readme.lines().find(|line| line.starts_with("cargo install ")).expect("an install command");
    let words: Vec<&str> = install.split('#').next().unwrap().split_whitespace().collect();
    assert_eq!(words, ["cargo", "install", "--locked", "--path", "crates/portcullis-cli"]);
    let manifest: toml::Table =
        std::fs::read_to_string(root().join(words[4]).join("Cargo.toml")).unwrap().parse().unwrap();
    assert_eq!(manifest["bin"][0]["name"].as_str(), Some("portcullis"));
    assert!(readme.contains("(docs/deployment/systemd.md)") && readme.contains("(docs/issuer.md)"));
}

/// Markdown, TOML and shell files under `dir`, recursively (build output and dependencies skipped).
fn pages(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !["node_modules", "target", ".git"].contains(&name.as_str()) {
                pages(&path, found);
            }
        } else if [".md", ".toml", ".sh", ".service", ".env", ".conf", ".yml", ".yaml"]
            .iter()
            .any(|e| name.ends_with(e))
        {
            found.push(path);
        }
    }
}

/// No page tells anyone to listen with plain HTTP on every interface: an all-interfaces address with a port
/// (`0.0.0.0:…`, `[::]:…`) appears only in a paragraph (or code block) that also sets up TLS. (`0.0.0.0/0` is a
/// network, not a listen address.)
#[test]
fn no_page_advises_plain_http_on_a_public_address() {
    let mut files = vec![root().join("README.md")];
    for dir in ["docs", "examples", "deploy"] {
        pages(&root().join(dir), &mut files);
    }
    assert!(files.len() > 10, "{files:?}");
    let mut advice = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for paragraph in text.split("\n\n") {
            let public = paragraph.contains("0.0.0.0:") || paragraph.contains("[::]:");
            if public && !paragraph.to_ascii_lowercase().contains("tls") {
                advice.push(format!("{}: {paragraph}", file.strip_prefix(root()).unwrap_or(file).display()));
            }
        }
    }
    assert!(advice.is_empty(), "plain HTTP on every interface:\n{}", advice.join("\n---\n"));
}
