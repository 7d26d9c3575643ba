//! Helpers the command-line tests share: starting processes whose stdout announces their addresses and reading
//! those lines; the URL in a line and a machine token from the dev issuer come from `portcullis_testkit`.
#![allow(dead_code)]

pub mod browser;
pub mod ca;
pub mod interop;

#[allow(unused_imports)]
pub use portcullis_testkit::issuers::machine_token;
pub use portcullis_testkit::process::url_in;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// Starts `program` with `args`, stdout piped (read it with [`line_with`]), stderr discarded; killed when dropped.
pub fn spawn(program: &str, args: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(program)
        .args(args)
        .env_remove("PORTCULLIS_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// Starts this crate's `portcullis` binary with `args` (see [`spawn`]).
pub fn portcullis(args: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>) {
    spawn(env!("CARGO_BIN_EXE_portcullis"), args)
}

/// Reads lines until one contains `marker`, and returns it.
pub async fn line_with(lines: &mut Lines<BufReader<ChildStdout>>, marker: &str) -> String {
    loop {
        let line = lines.next_line().await.unwrap().unwrap_or_else(|| panic!("the process ended before {marker:?}"));
        if line.contains(marker) {
            return line;
        }
    }
}

/// Reads lines until one contains `marker`, and returns the first URL in it.
pub async fn url_after(lines: &mut Lines<BufReader<ChildStdout>>, marker: &str) -> String {
    url_in(&line_with(lines, marker).await)
}

/// Keeps reading a child's output so that it never blocks on a full pipe.
pub fn drain<R: tokio::io::AsyncRead + Unpin + Send + 'static>(mut lines: Lines<BufReader<R>>) {
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
}
