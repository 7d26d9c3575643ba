//! External programs as test fixtures: started on free loopback ports with their files in a temporary directory,
//! ready once their port accepts connections (polled, bounded), and killed when dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// How long a program may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

pub use crate::net::free_port;

/// Whether `program` can be run (`program args…` starts); `Err` says why not, for a `SKIPPED:` line.
pub fn available(program: &str, args: &[&str]) -> Result<(), String> {
    match std::process::Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(_) => Ok(()),
        Err(error) => Err(format!("{program} cannot be run ({error})")),
    }
}

/// A running program: killed when dropped, its temporary directory (configuration, logs) removed after it.
pub struct Running {
    /// What it is, for messages.
    pub name: String,
    child: Child,
    /// Its stdout, until drained.
    stdout: Option<Lines<BufReader<ChildStdout>>>,
    stderr: PathBuf,
    /// Removed when dropped, after the child is killed.
    dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Running {
    /// Starts `command` (its stderr goes to a file in `dir`), calling it `name`.
    pub fn spawn(name: &str, mut command: Command, dir: tempfile::TempDir) -> Self {
        let stderr = dir.path().join(format!("{}.stderr", name.replace(['/', ' '], "-")));
        let file = std::fs::File::create(&stderr).unwrap();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = child.stdout.take().map(|out| BufReader::new(out).lines());
        Self { name: name.to_owned(), child, stdout, stderr, dir }
    }

    /// The process id, while the program runs.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// The temporary directory holding the program's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the program wrote on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Panics with the program's stderr when it has exited.
    fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}) before it was ready:\n{}", self.name, self.stderr());
        }
    }

    /// Keeps reading stdout in the background, so that the program never blocks on a full pipe.
    pub fn drain_stdout(&mut self) {
        if let Some(mut lines) = self.stdout.take() {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        }
    }

    /// Waits, bounded by [`START_TIMEOUT`], until `127.0.0.1:port` accepts connections; drains stdout.
    pub async fn until_listening(&mut self, port: u16) {
        self.drain_stdout();
        let started = Instant::now();
        loop {
            self.check_alive();
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return;
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "{} did not listen on port {port} within {START_TIMEOUT:?}:\n{}",
                self.name,
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Reads stdout, bounded by [`START_TIMEOUT`], until a line contains `marker`; returns that line. Call
    /// [`Running::drain_stdout`] once done reading.
    pub async fn line_with(&mut self, marker: &str) -> String {
        let lines = self.stdout.as_mut().expect("stdout is drained already");
        let found = tokio::time::timeout(START_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains(marker) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            Ok(None) => panic!("{} ended before printing {marker:?}:\n{}", self.name, self.stderr()),
            Err(_) => panic!("{} did not print {marker:?} within {START_TIMEOUT:?}:\n{}", self.name, self.stderr()),
        }
    }
}

impl Running {
    /// Reads stdout, bounded by [`START_TIMEOUT`], until every one of `markers` occurred in a line, in any order;
    /// returns the first line with each marker, in the order of `markers`. Call [`Running::drain_stdout`] once done
    /// reading.
    pub async fn lines_with(&mut self, markers: &[&str]) -> Vec<String> {
        let lines = self.stdout.as_mut().expect("stdout is drained already");
        let mut found: Vec<Option<String>> = vec![None; markers.len()];
        let read = tokio::time::timeout(START_TIMEOUT, async {
            while found.iter().any(Option::is_none) {
                let Ok(Some(line)) = lines.next_line().await else { return false };
                for (marker, slot) in markers.iter().zip(found.iter_mut()) {
                    if slot.is_none() && line.contains(marker) {
                        *slot = Some(line.clone());
                    }
                }
            }
            true
        })
        .await;
        let missing: Vec<&str> =
            markers.iter().zip(&found).filter(|(_, line)| line.is_none()).map(|(marker, _)| *marker).collect();
        assert!(
            missing.is_empty(),
            "{} {} {missing:?}:\n{}",
            self.name,
            if read.is_ok() { "ended before printing" } else { "did not print in time" },
            self.stderr()
        );
        found.into_iter().flatten().collect()
    }
}

/// The first `http://` or `https://` word of `line`, without trailing punctuation (an issuer keeps its trailing slash).
pub fn url_in(line: &str) -> String {
    let word = line
        .split_whitespace()
        .find(|w| w.starts_with("http://") || w.starts_with("https://"))
        .unwrap_or_else(|| panic!("no URL: {line}"));
    word.trim_end_matches([',', ')']).to_owned()
}

/// The start of an nginx configuration that runs unprivileged in `dir` (pid, log and temporary files there), up to
/// and including the opening of the `http` block.
pub fn nginx_prelude(dir: &str) -> String {
    format!(
        "master_process off;\ndaemon off;\nerror_log {dir}/error.log;\npid {dir}/nginx.pid;\nevents {{}}\nhttp {{\n    \
         access_log off;\n    client_body_temp_path {dir}/body;\n    proxy_temp_path {dir}/proxy;\n    \
         fastcgi_temp_path {dir}/fastcgi;\n    uwsgi_temp_path {dir}/uwsgi;\n    scgi_temp_path {dir}/scgi;\n"
    )
}
