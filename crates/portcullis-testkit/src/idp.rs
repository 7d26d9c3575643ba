//! A test identity provider on 127.0.0.1:0 that serves discovery and a JWKS, counts every request, and on command
//! rotates keys, moves its key set to another path, or misbehaves (error statuses, garbage, empty sets, huge
//! bodies, hangs, cross-host redirects); any path can be made to redirect anywhere.
//!
//! Misbehaviours are the dev issuer's [`Fault`]s, queued and counted down exactly as the dev issuer does; a fault
//! with `count: UNTIL_CLEARED` lasts until [`Idp::clear_faults`].

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use portcullis::signing::SigningKey;
pub use portcullis_issuer::Fault;
use portcullis_issuer::{Faults, HUGE_BODY_BYTES};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// Requests a fault answers when it is to last until [`Idp::clear_faults`].
pub const UNTIL_CLEARED: u32 = u32::MAX;

/// How long [`hang`] keeps a request waiting: an hour, longer than any test.
pub const HANG_MS: u64 = 3_600_000;

/// A fault that holds every key set request for [`HANG_MS`], until cleared.
pub fn hang() -> Fault {
    Fault::Delay { ms: HANG_MS, count: UNTIL_CLEARED }
}

struct Shared {
    keys: Mutex<Vec<Value>>,
    faults: Mutex<Faults>,
    cache_control: Mutex<Option<String>>,
    discovery_issuer: Mutex<String>,
    jwks_path: Mutex<String>,
    /// Paths answered with a 302 to a URL, before anything else.
    redirects: Mutex<Vec<(String, String)>>,
    jwks_requests: AtomicUsize,
    discovery_requests: AtomicUsize,
    port: u16,
}

/// The running identity provider; it stops when dropped.
pub struct Idp {
    shared: Arc<Shared>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Idp {
    /// Starts serving; the issuer is `http://127.0.0.1:PORT/`.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}");
        let shared = Arc::new(Shared {
            keys: Mutex::new(Vec::new()),
            faults: Mutex::new(Faults::default()),
            cache_control: Mutex::new(None),
            discovery_issuer: Mutex::new(format!("{base}/")),
            jwks_path: Mutex::new(JWKS_PATH.to_owned()),
            redirects: Mutex::new(Vec::new()),
            jwks_requests: AtomicUsize::new(0),
            discovery_requests: AtomicUsize::new(0),
            port,
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .fallback(get(jwks))
            .with_state(Arc::clone(&shared));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self { shared, base, stop: Some(stop) }
    }

    /// `http://127.0.0.1:PORT/`, with the trailing slash, as Auth0 spells issuers.
    pub fn issuer(&self) -> String {
        format!("{}/", self.base)
    }

    /// The JWKS URL discovery currently names.
    pub fn jwks_url(&self) -> String {
        format!("{}{}", self.base, self.shared.jwks_path.lock().unwrap())
    }

    /// Moves the key set to `path` (discovery names the new URL; the old one answers 404).
    pub fn move_jwks(&self, path: &str) {
        *self.shared.jwks_path.lock().unwrap() = path.to_owned();
    }

    /// Answers requests for `path` with a 302 to `location` (counted as key set requests).
    pub fn redirect(&self, path: &str, location: &str) {
        self.shared.redirects.lock().unwrap().push((path.to_owned(), location.to_owned()));
    }

    /// Publishes exactly these keys.
    pub fn publish(&self, keys: &[&SigningKey]) {
        *self.shared.keys.lock().unwrap() = keys.iter().map(|k| k.public_jwk()).collect();
    }

    /// Queues `fault` for the key set endpoint, after the faults already waiting (as the dev issuer's
    /// `POST /__admin/faults` does).
    pub fn inject_fault(&self, fault: Fault) {
        self.shared.faults.lock().unwrap().push(fault);
    }

    /// Forgets every waiting fault: the key set endpoint answers with the published keys again.
    pub fn clear_faults(&self) {
        self.shared.faults.lock().unwrap().clear();
    }

    /// Sets (or removes) the JWKS `Cache-Control` header.
    pub fn set_cache_control(&self, value: Option<&str>) {
        *self.shared.cache_control.lock().unwrap() = value.map(str::to_owned);
    }

    /// Makes discovery claim another issuer.
    pub fn set_discovery_issuer(&self, issuer: &str) {
        *self.shared.discovery_issuer.lock().unwrap() = issuer.to_owned();
    }

    /// Requests for a key set so far (every path but discovery's, including moved-away ones).
    pub fn jwks_requests(&self) -> usize {
        self.shared.jwks_requests.load(Ordering::SeqCst)
    }

    /// Discovery requests served so far.
    pub fn discovery_requests(&self) -> usize {
        self.shared.discovery_requests.load(Ordering::SeqCst)
    }
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    shared.discovery_requests.fetch_add(1, Ordering::SeqCst);
    let issuer = shared.discovery_issuer.lock().unwrap().clone();
    let base = format!("http://127.0.0.1:{}", shared.port);
    let jwks_path = shared.jwks_path.lock().unwrap().clone();
    axum::Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{base}{jwks_path}"),
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/oauth/token"),
    }))
    .into_response()
}

async fn jwks(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    shared.jwks_requests.fetch_add(1, Ordering::SeqCst);
    let redirect = shared.redirects.lock().unwrap().iter().find(|(path, _)| path == uri.path()).cloned();
    if let Some((_, location)) = redirect {
        return (StatusCode::FOUND, [(header::LOCATION, location)]).into_response();
    }
    if uri.path() != *shared.jwks_path.lock().unwrap() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let fault = shared.faults.lock().unwrap().take();
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/jwk-set+json"));
    if let Some(value) = shared.cache_control.lock().unwrap().clone() {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_str(&value).unwrap());
    }
    let keys = || {
        let keys = shared.keys.lock().unwrap().clone();
        json!({ "keys": keys }).to_string()
    };
    match fault {
        None => (headers, keys()).into_response(),
        Some(Fault::Delay { ms, .. }) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            (headers, keys()).into_response()
        }
        Some(Fault::Status { status, .. }) => StatusCode::from_u16(status).unwrap().into_response(),
        Some(Fault::Garbage { .. }) => (headers, "<html>this is not a key set</html>").into_response(),
        Some(Fault::Drop { .. }) => {
            let dropped = Broken(true);
            (headers, [(header::CONTENT_LENGTH, "1000")], axum::body::Body::from_stream(dropped)).into_response()
        }
        Some(Fault::EmptySet { .. }) => (headers, r#"{"keys":[]}"#).into_response(),
        Some(Fault::Huge { .. }) => {
            (headers, format!(r#"{{"keys":[],"pad":"{}"}}"#, "x".repeat(HUGE_BODY_BYTES))).into_response()
        }
        Some(Fault::RedirectToOtherHost { .. }) => {
            let target = format!("http://localhost:{}{JWKS_PATH}", shared.port);
            (StatusCode::FOUND, [(header::LOCATION, target)]).into_response()
        }
        // A kind added to the dev issuer's vocabulary later: say so rather than answer with keys.
        Some(_) => {
            (StatusCode::NOT_IMPLEMENTED, "this fault is not simulated by the test identity provider").into_response()
        }
    }
}

/// A body that fails at once: the server closes the connection in the middle of its answer.
struct Broken(bool);

impl futures_core::Stream for Broken {
    type Item = Result<axum::body::Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let first = std::mem::replace(&mut self.0, false);
        std::task::Poll::Ready(first.then(|| Err(std::io::Error::other("connection dropped on purpose"))))
    }
}

/// Where the key set is served until [`Idp::move_jwks`].
const JWKS_PATH: &str = "/.well-known/jwks.json";

pub use crate::keys::key;
