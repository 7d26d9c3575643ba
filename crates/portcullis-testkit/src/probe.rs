//! Whether an optional program or file is there, and what a test does when it is not: outside CI it prints a
//! `SKIPPED:` line and skips; under CI (`CI=true` or `CI=1`) a missing prerequisite fails the test, because `.ci/run`
//! installs every one.

use std::path::Path;
use std::process::{Command, Stdio};

/// Whether the tests run under CI (`CI=true` or `CI=1`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `true` when `check` passed. Otherwise prints `SKIPPED: {what} ({reason})` and returns `false`, or under CI
/// fails the test with the reason.
pub fn require(what: &str, check: Result<(), String>) -> bool {
    match check {
        Ok(()) => true,
        Err(reason) => {
            assert!(!in_ci(), "{what}: {reason}; CI requires it (.ci/run installs it)");
            eprintln!("SKIPPED: {what} ({reason})");
            false
        }
    }
}

/// Whether `command` starts and exits successfully (its output is discarded); `Err` says why not.
pub fn succeeds(command: &mut Command) -> Result<(), String> {
    let program = command.get_program().to_string_lossy().into_owned();
    match command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("{program} is not installed or not usable ({status})")),
        Err(error) => Err(format!("{program} is not installed ({error})")),
    }
}

/// Whether `program args…` starts and exits successfully.
pub fn runs(program: &str, args: &[&str]) -> Result<(), String> {
    succeeds(Command::new(program).args(args))
}

/// Whether every one of `paths` exists; `Err` names the missing ones.
pub fn files_exist(paths: &[&str]) -> Result<(), String> {
    let missing: Vec<&str> = paths.iter().copied().filter(|path| !Path::new(path).exists()).collect();
    if missing.is_empty() { Ok(()) } else { Err(format!("{} not installed", missing.join(", "))) }
}
