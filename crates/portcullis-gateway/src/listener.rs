//! The accept loop: serves HTTP/1.1 (and h2c) connections under the configured [`Limits`], with graceful
//! shutdown.
//!
//! hyper enforces the header limits (431) and the header read timeout; this loop bounds the connections served at
//! once by holding a permit per connection and not accepting while none is free, so excess clients wait in the
//! kernel's listen queue instead of costing memory.

use crate::config::Limits;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// The HTTP settings of every accepted connection, from `limits`.
fn connection_builder(limits: &Limits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
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

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting and waits for the connections in
/// flight to finish their current requests. Each request carries the client's [`ConnectInfo<SocketAddr>`].
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let builder = connection_builder(limits);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Tells connections still waiting for their first byte that the listener is closing.
    let (closing, closed) = tokio::sync::watch::channel(false);
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
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request.map(axum::body::Body::new))
        });
        let (builder, watcher, mut closed) = (builder.clone(), graceful.watcher(), closed.clone());
        let first_byte = Duration::from_secs(limits.header_read_timeout_secs);
        tokio::spawn(async move {
            // hyper's header read timeout starts with the first byte: a connection that sends nothing at all is
            // closed after the same time, so silent sockets cannot hold every connection slot.
            let mut first = [0u8; 1];
            let arrived = tokio::select! {
                arrived = tokio::time::timeout(first_byte, stream.peek(&mut first)) => arrived.is_ok(),
                _ = closed.changed() => false,
            };
            if !arrived {
                tracing::debug!(target: "portcullis::gateway", "connection sent nothing; closed");
                drop(permit);
                return;
            }
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(target: "portcullis::gateway", %error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = closing.send(true);
    graceful.shutdown().await;
    Ok(())
}
