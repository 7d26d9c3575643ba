//! The reverse proxy's upstream: HTTP/1.1 to one origin, over plain TCP (`http://`) or TLS (`https://`).
//!
//! Each exchange runs inside the task that serves the client's connection: the upstream connection is driven by
//! the same task that awaits its answer and then streams its body to the client, so a request crosses no task
//! boundary and wakes no other task. Idle connections wait in a pool of the worker thread that last used them
//! ([`pool`]), never behind a lock another worker takes. A connection is reused only after its exchange ended
//! whole (the response body read to its end and the request written): a response left half-read closes it.
//!
//! hyper's HTTP/1 state machine parses the upstream's answers as strictly as the listener parses requests.

mod body;
mod pool;

pub(crate) use body::UpstreamBody;

use axum::body::Body;
use http::header::HOST;
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use hyper::client::conn::http1;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::ServiceExt;

/// An error of any layer, with its causes.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A connection's driving half: hyper's HTTP/1 client state machine over the socket, upgrades included.
type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// The origin every proxied request goes to, and how to reach it.
#[derive(Clone)]
pub(crate) struct Upstream {
    shared: Arc<Shared>,
    /// Held by the gateway's copies of this upstream only (not by its connections): the sweeper ends with it.
    owner: Arc<()>,
}

struct Shared {
    /// Tells this upstream's idle connections apart from another's (a reload may change the origin).
    id: u64,
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://authority/`: what the connector connects to.
    origin: Uri,
    /// The `Host` every request carries: the origin's host, and its port unless it is the scheme's default.
    host: HeaderValue,
    /// The origin URL's path without its trailing `/`, put before every forwarded target.
    prefix: String,
    handshake: http1::Builder,
    /// Whether the idle-connection sweeper runs.
    sweeping: AtomicBool,
    /// Set once the gateway dropped this upstream (a reload replaced it): its connections are closed, never pooled.
    retired: AtomicBool,
    /// How long a connection may go on writing a request body after the answer came (the upstream timeout).
    finish_within: Duration,
}

/// Why an exchange with the upstream failed.
#[derive(Debug)]
pub(crate) enum UpstreamError {
    /// No connection could be made: refused, unreachable, or the TLS handshake failed (certificate untrusted,
    /// wrong name, expired).
    Connect(BoxError),
    /// The connection failed while the request was sent or the response head read.
    Exchange(hyper::Error),
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(_) => f.write_str("could not connect to the upstream"),
            Self::Exchange(_) => f.write_str("the upstream exchange failed"),
        }
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect(error) => Some(error.as_ref()),
            Self::Exchange(error) => Some(error),
        }
    }
}

impl Upstream {
    /// The upstream at `url` (`http://` or `https://`, checked by the configuration), speaking TLS with `tls` to
    /// an `https://` origin. The certificate is verified against `tls`'s roots for the URL's host name (also sent
    /// as SNI); a failure is a connection error.
    pub(crate) fn new(url: &str, tls: rustls::ClientConfig, timeout: Duration) -> Result<Self, String> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let url: Uri = url.parse().map_err(|error| format!("the upstream URL cannot be read: {error}"))?;
        let (Some(scheme), Some(authority)) = (url.scheme(), url.authority()) else {
            return Err("the upstream URL needs a scheme and a host".to_owned());
        };
        let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
        let host = match authority.port_u16() {
            Some(port) if port != default_port => format!("{}:{port}", authority.host()),
            _ => authority.host().to_owned(),
        };
        let host = HeaderValue::from_str(&host).map_err(|_| "the upstream host cannot be a Host header".to_owned())?;
        let origin = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|error| format!("the upstream URL cannot be read: {error}"))?;
        let mut connector = HttpConnector::new();
        // Requests and streamed response chunks go out at once (no Nagle delay on either side).
        connector.set_nodelay(true);
        // The scheme is the TLS layer's to check: plain TCP for http://, TLS for https://.
        connector.enforce_http(false);
        Ok(Self {
            shared: Arc::new(Shared {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                connector: HttpsConnector::from((connector, tls)),
                origin,
                host,
                prefix: url.path().trim_end_matches('/').to_owned(),
                handshake: http1::Builder::new(),
                sweeping: AtomicBool::new(false),
                retired: AtomicBool::new(false),
                finish_within: timeout,
            }),
            owner: Arc::new(()),
        })
    }

    /// The request target to send for the canonical `target` (path and query) that was checked: the origin URL's
    /// path, then `target`, in origin form. `None` when the result is not a valid request target.
    pub(crate) fn target(&self, target: String) -> Option<Uri> {
        let joined = if self.shared.prefix.is_empty() { target } else { format!("{}{target}", self.shared.prefix) };
        // Taken over as it is, without a copy.
        PathAndQuery::try_from(joined).ok().map(Uri::from)
    }

    /// Sends `request` (its target from [`target`](Self::target)) with the origin's `Host`, on an idle connection
    /// of this worker when there is one, and returns the response head with its body still streaming.
    ///
    /// A pooled connection that closes before the request was written to it is left for the next one (or a new
    /// connection); a request already written is never sent twice.
    pub(crate) async fn send(&self, mut request: Request<Body>) -> Result<Response<UpstreamBody>, UpstreamError> {
        request.headers_mut().insert(HOST, self.shared.host.clone());
        if !self.shared.sweeping.load(Ordering::Relaxed) {
            pool::start_sweeper(Arc::clone(&self.shared), Arc::downgrade(&self.owner));
        }
        loop {
            let (link, reused) = match pool::checkout(self.shared.id) {
                Some(link) => (link, true),
                None => (self.connect().await?, false),
            };
            match link.exchange(request).await {
                Ok(response) => return Ok(response),
                Err(mut unsent) => match unsent.take_message() {
                    Some(again) if reused => request = again,
                    _ => return Err(UpstreamError::Exchange(unsent.into_error())),
                },
            }
        }
    }

    async fn connect(&self) -> Result<Link, UpstreamError> {
        let shared = &self.shared;
        let io = shared.connector.clone().oneshot(shared.origin.clone()).await.map_err(UpstreamError::Connect)?;
        let (sender, connection) = shared.handshake.handshake(io).await.map_err(UpstreamError::Exchange)?;
        Ok(Link { sender, driver: Box::pin(connection.with_upgrades()), upstream: Arc::clone(shared) })
    }
}

/// One connection to the upstream: the half that sends requests and the half that drives the socket.
pub(crate) struct Link {
    sender: http1::SendRequest<Body>,
    driver: Driver,
    upstream: Arc<Shared>,
}

impl Link {
    /// Polls the connection once. `true` while it is open; `false` once it ended (closed by either side, failed,
    /// or handed over to a protocol switch).
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        self.driver.as_mut().poll(cx).is_pending()
    }

    /// Whether the connection takes a new request now: open, and done with the previous exchange in both
    /// directions.
    fn is_idle(&mut self, cx: &mut Context<'_>) -> bool {
        self.drive(cx) && self.sender.is_ready()
    }

    /// Returns the connection to this worker's pool once it is idle. An upstream may answer before it has read
    /// the whole request body (RFC 9110 §15.5): the connection then goes on writing the body in a task of its own,
    /// for at most the upstream timeout, and joins the pool when done. A connection that ended is dropped.
    fn release(mut self, cx: &mut Context<'_>) {
        if !self.drive(cx) {
            return;
        }
        if self.sender.is_ready() {
            pool::checkin(self);
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let within = self.upstream.finish_within;
        runtime.spawn(async move {
            let finished = poll_fn(|cx| {
                if !self.drive(cx) {
                    Poll::Ready(false)
                } else if self.sender.is_ready() {
                    Poll::Ready(true)
                } else {
                    Poll::Pending
                }
            });
            if let Ok(true) = tokio::time::timeout(within, finished).await {
                pool::checkin(self);
            }
        });
    }

    /// Sends `request` and drives the connection until the response head has arrived. A request the connection
    /// closed before writing comes back in the error.
    async fn exchange(
        self,
        request: Request<Body>,
    ) -> Result<Response<UpstreamBody>, hyper::client::conn::TrySendError<Request<Body>>> {
        let Link { mut sender, driver, upstream } = self;
        let mut driver = Some(driver);
        let mut answer = std::pin::pin!(sender.try_send_request(request));
        let response = poll_fn(|cx| {
            if let Some(open) = driver.as_mut()
                && open.as_mut().poll(cx).is_ready()
            {
                // It ended: its outcome reaches the answer (an error, or the request handed back unsent).
                driver = None;
            }
            answer.as_mut().poll(cx)
        })
        .await?;
        let Some(driver) = driver else {
            return Ok(response.map(|incoming| UpstreamBody::new(incoming, None)));
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            // The connection hands its socket over to the protocol switch once it has read the 101 to its end.
            tokio::spawn(driver);
            return Ok(response.map(|incoming| UpstreamBody::new(incoming, None)));
        }
        let link = Link { sender, driver, upstream };
        let (parts, incoming) = response.into_parts();
        if hyper::body::Body::is_end_stream(&incoming) {
            // No body to stream (HEAD, 204, 304, an empty body): the connection is free now.
            let mut done = Some(link);
            poll_fn(|cx| {
                if let Some(link) = done.take() {
                    link.release(cx);
                }
                Poll::Ready(())
            })
            .await;
            return Ok(Response::from_parts(parts, UpstreamBody::new(incoming, None)));
        }
        Ok(Response::from_parts(parts, UpstreamBody::new(incoming, Some(link))))
    }
}
