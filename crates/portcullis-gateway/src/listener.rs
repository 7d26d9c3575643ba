//! The accept loop: serves HTTP/1.1 and HTTP/2 connections, over plain TCP (h2c) or TLS, under the configured
//! [`Limits`], with graceful shutdown.
//!
//! hyper enforces the header limits (431) and the header read timeout; this loop bounds the connections served at
//! once by holding a permit per connection and not accepting while none is free, so excess clients wait in the
//! kernel's listen queue instead of costing memory.

use crate::config::Limits;
use crate::tls::ListenerTls;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// The HTTP versions a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocols {
    /// HTTP/1.1 and HTTP/2 (h2c, or ALPN `h2` and `http/1.1` over TLS).
    Http1And2,
    /// HTTP/2 only (the gRPC listener): an HTTP/1.1 request gets no answer, and over TLS only ALPN `h2` (or none)
    /// is accepted.
    Http2Only,
}

/// The HTTP settings of every accepted connection, from `limits`.
fn connection_builder(limits: &Limits, protocols: Protocols) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    if protocols == Protocols::Http2Only {
        builder = builder.http2_only();
    }
    let mut http1 = builder.http1();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_secs))
        // A request head that does not fit the read buffer is answered 431. The buffer also carries body chunks
        // on their way through, so it stays at least hyper's 8 KiB minimum (the configuration checks that too).
        .max_buf_size(limits.max_header_bytes.max(8192));
    // hyper parses up to 100 headers on the stack; another count costs a heap allocation per request.
    if limits.max_headers != 100 {
        http1.max_headers(limits.max_headers);
    }
    // HTTP/2 has no header read timeout: idle connections are pinged instead, and closed when the peer does not
    // answer (a socket that sent the preface and then nothing).
    let every = Duration::from_secs(limits.header_read_timeout_secs);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(every))
        .keep_alive_timeout(every)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// When a connection last served a request, and how many it is serving now.
struct Activity {
    started: tokio::time::Instant,
    /// Milliseconds after `started` at which the last request finished (or the connection opened).
    last: AtomicU64,
    in_flight: AtomicUsize,
}

/// Marks one request in flight until dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let elapsed = u64::try_from(self.0.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last.store(elapsed, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self { started: tokio::time::Instant::now(), last: AtomicU64::new(0), in_flight: AtomicUsize::new(0) })
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }

    /// When the connection will have been idle for `idle`, if nothing happens before.
    fn idle_deadline(&self, idle: Duration) -> tokio::time::Instant {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return tokio::time::Instant::now() + idle;
        }
        self.started + Duration::from_millis(self.last.load(Ordering::Relaxed)) + idle
    }
}

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting and waits for the connections in
/// flight to finish their current requests. Each request carries the client's [`ConnectInfo<SocketAddr>`].
///
/// Every connection is closed once it has served no request for `header_read_timeout_secs`: before its first
/// byte (hyper's own timer starts with the first byte), and between requests on HTTP/2, which has no header read
/// timeout (HTTP/1.1 keep-alive is closed by hyper's timer already). Silent or idle sockets therefore cannot hold
/// every connection slot.
///
/// With `tls`, every connection is a TLS connection: the handshake, with the settings in force when it starts,
/// must end within the same `header_read_timeout_secs`; a client speaking plain HTTP or failing the handshake is
/// disconnected. With [`Protocols::Http2Only`], only HTTP/2 is served.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    tls: Option<Arc<ListenerTls>>,
    protocols: Protocols,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let builder = connection_builder(limits, protocols);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let idle = Duration::from_secs(limits.header_read_timeout_secs);
    // Tells every connection that the listener is closing; each holds a `live` sender until it has ended.
    let (closing, closed) = tokio::sync::watch::channel(false);
    let (live, mut all_ended) = tokio::sync::mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors or a connection reset before accept: wait a moment, keep serving.
                    tracing::warn!(target: "portcullis::gateway", %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (app, builder, mut closed, live, tls) =
            (app.clone(), builder.clone(), closed.clone(), live.clone(), tls.clone());
        tokio::spawn(async move {
            let _live = live;
            let _permit = permit;
            let mut first = [0u8; 1];
            let arrived = tokio::select! {
                arrived = tokio::time::timeout(idle, stream.peek(&mut first)) => arrived.is_ok(),
                _ = closed.changed() => false,
            };
            if !arrived {
                tracing::debug!(target: "portcullis::gateway", "connection sent nothing; closed");
                return;
            }
            let Some(tls) = tls else {
                return serve_connection(TokioIo::new(stream), peer, app, builder, idle, closed).await;
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls_settings(&tls, protocols));
            let handshake = tokio::select! {
                handshake = tokio::time::timeout(idle, acceptor.accept(stream)) => handshake,
                _ = closed.changed() => return,
            };
            match handshake {
                Ok(Ok(stream)) => serve_connection(TokioIo::new(stream), peer, app, builder, idle, closed).await,
                Ok(Err(error)) => tracing::debug!(target: "portcullis::gateway", %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(target: "portcullis::gateway", "TLS handshake timed out; closed"),
            }
        });
    }
    drop(listener);
    let _ = closing.send(true);
    drop(live);
    let _ = all_ended.recv().await;
    Ok(())
}

/// The TLS settings in force now, offering ALPN `h2` alone on an HTTP/2-only listener (a client offering only
/// `http/1.1` then fails the handshake).
fn tls_settings(tls: &ListenerTls, protocols: Protocols) -> Arc<rustls::ServerConfig> {
    let current = tls.current();
    match protocols {
        Protocols::Http1And2 => current,
        Protocols::Http2Only => {
            let mut config = (*current).clone();
            config.alpn_protocols = vec![b"h2".to_vec()];
            Arc::new(config)
        }
    }
}

/// Serves one connection (its first byte has arrived) until it ends, is idle for `idle`, or the listener closes.
async fn serve_connection<I>(
    io: TokioIo<I>,
    peer: SocketAddr,
    app: Router,
    builder: Builder<TokioExecutor>,
    idle: Duration,
    closed: tokio::sync::watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let tracked = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let in_flight = tracked.begin();
        let app = app.clone();
        async move {
            let response = app.oneshot(request.map(axum::body::Body::new)).await;
            drop(in_flight);
            response
        }
    });
    // hyper-util's upgradeable connection ignores `http2_only`, and an HTTP/2-only listener has no upgrades.
    if builder.is_http1_available() {
        let connection = std::pin::pin!(builder.serve_connection_with_upgrades(io, service).into_owned());
        drive(connection, |connection| connection.graceful_shutdown(), &activity, idle, closed).await;
    } else {
        let connection = std::pin::pin!(builder.serve_connection(io, service).into_owned());
        drive(connection, |connection| connection.graceful_shutdown(), &activity, idle, closed).await;
    }
}

/// Runs `connection` until it ends; once the listener closes or the connection has been idle for `idle`, asks it
/// to finish gracefully with `shut_down`.
async fn drive<C, E>(
    mut connection: std::pin::Pin<&mut C>,
    shut_down: impl Fn(std::pin::Pin<&mut C>),
    activity: &Activity,
    idle: Duration,
    mut closed: tokio::sync::watch::Receiver<bool>,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut closing = false;
    loop {
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(error) = ended {
                    tracing::debug!(target: "portcullis::gateway", %error, "connection ended with an error");
                }
                return;
            }
            _ = closed.changed(), if !closing => {
                shut_down(connection.as_mut());
                closing = true;
            }
            () = tokio::time::sleep_until(activity.idle_deadline(idle)), if !closing => {
                if activity.idle_deadline(idle) <= tokio::time::Instant::now() {
                    tracing::debug!(target: "portcullis::gateway", "connection idle; closing");
                    shut_down(connection.as_mut());
                    closing = true;
                }
            }
        }
    }
}
