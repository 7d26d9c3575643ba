//! Redis for tests: Debian's `redis-server` on a free loopback port (no persistence, its files in a temporary
//! directory), commands over RESP without a client library, and [`Link`], a TCP relay the test can cut or stall
//! to put one replica out of Redis's reach.

use crate::process::Running;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::sync::watch;

/// Whether `redis-server` can be run; `Err` says why not (for [`crate::probe::require`]).
pub fn available() -> Result<(), String> {
    crate::probe::runs("redis-server", &["--version"])
}

/// A `redis-server` process on `127.0.0.1:port`, killed when dropped.
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    process: Option<Running>,
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits (bounded) until it answers `PING`.
    pub async fn start() -> Self {
        let mut server = Self { port: crate::net::free_port(), process: None };
        server.run().await;
        server
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn run(&mut self) {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("redis-server");
        command.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
            "--dir",
            dir.path().to_str().unwrap(),
        ]);
        let mut process = Running::spawn("redis-server", command, dir);
        process.until_listening(self.port).await;
        self.process = Some(process);
        let pong = self.command(&["PING"]).await;
        assert_eq!(pong, "PONG", "redis-server on port {} answered PING with {pong:?}", self.port);
    }

    /// Kills the server (SIGKILL: no goodbye to its clients) and waits until it is gone.
    pub async fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            drop(process);
        }
        // The port is free once the process is gone: poll, bounded.
        let started = std::time::Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
            assert!(started.elapsed() < crate::process::START_TIMEOUT, "redis-server did not stop");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the server again on the same port, empty.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.run().await;
    }

    /// Sends one command and returns its reply as text: a status or bulk string as it is, an integer in decimal,
    /// an array as its elements joined by newlines, an error as `ERR …`, a nil as the empty string.
    pub async fn command(&self, args: &[&str]) -> String {
        command(self.port, args).await
    }

    /// How many keys the server holds (`DBSIZE`).
    pub async fn dbsize(&self) -> u64 {
        self.command(&["DBSIZE"]).await.parse().unwrap()
    }
}

/// Sends one RESP command to `127.0.0.1:port` (see [`RedisServer::command`]).
pub async fn command(port: u16, args: &[&str]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    stream.write_all(&request).await.unwrap();
    let mut reader = BufReader::new(stream);
    tokio::time::timeout(Duration::from_secs(10), reply(&mut reader)).await.expect("redis-server did not answer")
}

fn reply<'a>(
    reader: &'a mut BufReader<TcpStream>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send + 'a>> {
    Box::pin(async move {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at(1);
        match kind {
            "+" | ":" => rest.to_owned(),
            "-" => rest.to_owned(),
            "$" => {
                let len: i64 = rest.parse().unwrap();
                if len < 0 {
                    return String::new();
                }
                let mut bulk = vec![0u8; len as usize + 2];
                reader.read_exact(&mut bulk).await.unwrap();
                bulk.truncate(len as usize);
                String::from_utf8(bulk).unwrap()
            }
            "*" => {
                let len: i64 = rest.parse().unwrap();
                let mut items = Vec::new();
                for _ in 0..len.max(0) {
                    items.push(reply(reader).await);
                }
                items.join("\n")
            }
            other => panic!("unexpected RESP reply type {other:?}"),
        }
    })
}

const PASS: u8 = 0;
const CUT: u8 = 1;
const STALL: u8 = 2;

/// A TCP relay from a free loopback port to a target port, which the test can cut (open connections are closed,
/// new ones closed at once: a network partition) or stall (bytes are no longer relayed, connections stay open: a
/// Redis that stopped answering), and restore.
pub struct Link {
    /// The port to connect to instead of the target's.
    pub port: u16,
    state: Arc<AtomicU8>,
    changed: watch::Sender<u8>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Link {
    /// Relays `127.0.0.1:PORT` → `127.0.0.1:target`.
    pub async fn to(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(AtomicU8::new(PASS));
        let (changed, _) = watch::channel(PASS);
        let (accept_state, accept_changed) = (Arc::clone(&state), changed.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                if accept_state.load(Ordering::SeqCst) == CUT {
                    drop(client);
                    continue;
                }
                tokio::spawn(relay(client, target, accept_changed.subscribe()));
            }
        });
        Self { port, state, changed, task }
    }

    /// `redis://127.0.0.1:PORT`, the relay's address.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Closes every relayed connection and refuses new ones until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.set(CUT);
    }

    /// Stops relaying bytes (connections stay open, and new ones are accepted but never answered).
    pub fn stall(&self) {
        self.set(STALL);
    }

    /// Relays again (new connections; a stalled connection resumes).
    pub fn restore(&self) {
        self.set(PASS);
    }

    fn set(&self, state: u8) {
        self.state.store(state, Ordering::SeqCst);
        self.changed.send_replace(state);
    }
}

/// Relays one connection both ways until either side closes or the link is cut; while stalled, reads nothing.
async fn relay(mut client: TcpStream, target: u16, mut state: watch::Receiver<u8>) {
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)).await else { return };
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let mut up = [0u8; 16 * 1024];
    let mut down = [0u8; 16 * 1024];
    loop {
        let current = *state.borrow_and_update();
        match current {
            CUT => return,
            STALL => {
                if state.changed().await.is_err() {
                    return;
                }
            }
            _ => {
                tokio::select! {
                    read = client_read.read(&mut up) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => if server_write.write_all(&up[..n]).await.is_err() { return },
                    },
                    read = server_read.read(&mut down) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => if client_write.write_all(&down[..n]).await.is_err() { return },
                    },
                    changed = state.changed() => if changed.is_err() { return },
                }
            }
        }
    }
}
