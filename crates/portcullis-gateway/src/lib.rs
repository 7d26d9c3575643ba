//! # portcullis-gateway
//!
//! portcullis in front of any HTTP API, without touching its code: a reverse proxy that verifies every request
//! before it reaches the upstream, or the forward-auth endpoint of the proxy already in place (nginx
//! `auth_request`, Traefik ForwardAuth, Caddy `forward_auth`). Routes are matched first-wins by path (exact,
//! `/prefix/*`, `{param}` patterns) and method; each is public or carries an authorization rule (the same
//! [`Requirement`](portcullis::Requirement) type as the middleware). Claims reach the upstream as headers, and
//! client-sent copies of those headers are always removed.
//!
//! With `public_url` and `[dpop]`, DPoP-bound tokens (RFC 9449) are checked on every edge alike, each proof
//! against the method and the path that edge checked; with `[resource_metadata]`, the gateway publishes the
//! protected-resource metadata (RFC 9728) and names it in every challenge.
#![forbid(unsafe_code)]

mod canonical;
pub mod config;
mod cors;
mod decide;
mod dpop_config;
mod ext_authz;
mod forward_auth;
mod gateway;
mod headers;
mod inspect;
mod listener;
mod load;
mod local_keys;
mod metadata;
mod observe;
mod options;
mod policy;
mod proxy;
mod render;
mod request;
mod request_id;
mod revocations;
mod sender;
mod shared_state;
mod store_config;
mod tls;
mod token_source;
mod upstream;
mod validate;

pub use canonical::{CanonicalPath, PathError};
pub use config::{
    AuthMode, Config, ConfigError, ConfigErrors, CorsConfig, DpopConfig, DpopSetting, FrontProxy, IssuerConfig, Limits,
    LogFormat, Mode, Preflight, Profile, ReplayOnFailure, ResourceMetadataConfig, RevocationConfig, RouteConfig,
    StoreConfig, TokenFrom, Unmatched,
};
pub use decide::{Allowed, Decision, Denial, PreflightAnswer};
pub use gateway::{Gateway, Reloaded};
pub use request::CanonicalRequest;

/// Internals for this crate's tests and fuzz targets, behind the `internals` feature.
///
/// **Not part of the API**: hidden from the documentation, left out of the public API listing, and free to change
/// in any release.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod __internals {
    pub use crate::canonical::{Canonicalized, canonicalize, split_target};
    pub use crate::headers::{managed_header_names, parse_trusted_proxy};

    /// The reverse proxy's decision for `request` with `headers`, made and reported exactly as the proxy makes it
    /// (preflights answered), with the policy in force now.
    pub async fn decide(
        gateway: &crate::Gateway,
        request: &crate::CanonicalRequest,
        headers: &http::HeaderMap,
    ) -> crate::Decision {
        gateway.policy().decide_and_report(request, headers, true).await
    }

    /// Removes every client spelling of the headers the gateway manages from `headers`, as the proxy does.
    pub fn strip_managed(gateway: &crate::Gateway, headers: &mut http::HeaderMap) {
        crate::headers::strip_client_copies(headers, &gateway.policy().managed);
    }
}

use axum::Router;
use axum::routing::{any, get};
use std::future::Future;

/// The main listener's routes for `gateway`. Without an upstream (only the gRPC ext_authz service decides), every
/// request to it is answered 404.
pub fn router(gateway: Gateway) -> Router {
    let config = gateway.config();
    match config.mode() {
        Mode::ForwardAuth(_) => Router::new().fallback(any(forward_auth::handler)).with_state(gateway),
        Mode::Proxy if config.upstream.is_none() => {
            Router::new().fallback(any(proxy::no_upstream)).with_state(proxy::ProxyState { gateway })
        }
        Mode::Proxy => {
            let state = proxy::ProxyState { gateway };
            Router::new().fallback(any(proxy::proxy)).with_state(state)
        }
    }
}

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle). Every portcullis
/// metric — gateway requests and decision latency, JWKS fetches, keys loaded, key set age and readiness, limiter
/// refusals, token-cache hits — is then rendered by `/metrics`, each family with its `# HELP` line.
pub fn install_metrics() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(observe::CHECK_SECONDS.to_owned()),
                    &observe::CHECK_BUCKETS,
                )
                .ok()?
                .install_recorder()
                .ok()?;
            describe_metrics();
            Some(handle)
        })
        .clone()
}

/// The `# HELP` text of every metric family portcullis emits.
fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "portcullis_gateway_requests_total",
        "Requests decided, by route, outcome (allowed, denied) and reason code"
    );
    describe_histogram!("portcullis_gateway_decision_seconds", Unit::Seconds, "Time to decide about one request");
    describe_histogram!(
        observe::CHECK_SECONDS,
        Unit::Seconds,
        "Time the ext_authz Check handler takes for one check request, reading and rendering included"
    );
    describe_counter!("portcullis_jwks_fetches_total", "Key set fetch attempts, by source and outcome");
    describe_counter!(
        "portcullis_jwks_refetch_limited_total",
        "Key set fetches refused by the unknown-kid cooldown or the token bucket"
    );
    describe_gauge!("portcullis_jwks_keys", "Usable keys in the key set held (0 before the first successful fetch)");
    describe_gauge!("portcullis_jwks_ready", "1 while a usable key set is held, else 0");
    describe_gauge!(
        "portcullis_jwks_last_success_timestamp_seconds",
        Unit::Seconds,
        "When the key set held was fetched (Unix time; 0 before the first successful fetch)"
    );
    describe_gauge!(
        "portcullis_jwks_key_set_age_seconds",
        Unit::Seconds,
        "Seconds since the key set held was fetched (NaN before the first successful fetch)"
    );
    describe_counter!("portcullis_token_cache_lookups_total", "Token cache lookups, by result (hit, miss)");
    describe_gauge!(
        "portcullis_revocations",
        "Revocations in force on this replica, by kind (jti, token_hash, subject)"
    );
    describe_counter!(
        "portcullis_revocations_refused_total",
        "Revocation requests refused because the list is full (reason list_full)"
    );
    portcullis_redis::describe_metrics();
}

/// The admin listener's routes: `/healthz` (alive), `/ready` (every issuer has keys, and the shared store is up
/// or its loss is tolerated), `/metrics` (Prometheus text, when [`install_metrics`] succeeded), `/revocations`
/// (with `[revocation]`) and, unless `admin_pages = false`, the token debugger (`/debugger`) and the status page
/// (`/status`, `/status.json`).
pub fn admin_router(gateway: Gateway) -> Router {
    let handle = install_metrics();
    gateway.report_key_files();
    let pages = if gateway.config().admin_pages {
        portcullis_web::pages(std::sync::Arc::new(gateway.clone()))
    } else {
        Router::new()
    };
    Router::new()
        .route(
            "/metrics",
            get(move |axum::extract::State(gateway): axum::extract::State<Gateway>| {
                let handle = handle.clone();
                async move {
                    match handle {
                        Some(handle) => {
                            // Every series known in advance, at its value now: present from the first scrape.
                            gateway.publish_metrics();
                            // No key set writes half of its series into the text while it is rendered.
                            (http::StatusCode::OK, portcullis::remote::without_publication(|| handle.render()))
                        }
                        None => (http::StatusCode::NOT_FOUND, "metrics recorder not installed".to_owned()),
                    }
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/ready",
            get(|axum::extract::State(gateway): axum::extract::State<Gateway>| async move { gateway.readiness() }),
        )
        .route("/revocations", axum::routing::post(revocations::revoke).get(revocations::list))
        .with_state(gateway)
        .merge(pages)
}

/// Serves Envoy's gRPC ext_authz service (`envoy.service.auth.v3.Authorization/Check`, HTTP/2) for `gateway` on
/// `listener` until `shutdown` completes, under the configuration's [`Limits`] like the main listener, and over
/// TLS with the main listener's reloadable `tls_cert`/`tls_key` pair when they are set (plaintext h2c otherwise); checks in flight finish. Each check is decided under the
/// policy in force at that moment, so [`Gateway::reload`] applies to it. Starts the key refresh like [`serve`]
/// (once per gateway), and installs the metrics recorder so that `portcullis_ext_authz_check_seconds` counts.
pub async fn serve_ext_authz(
    gateway: Gateway,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    ext_authz::serve(gateway, listener, shutdown).await
}

/// Serves the gateway (and its admin listener) until `shutdown` completes; in-flight requests finish. Both
/// listeners apply the configuration's [`Limits`] (header size and count, header read timeout, connections).
/// With `tls_cert` and `tls_key` the main listener speaks HTTPS only (TLS 1.2 and 1.3), with the pair of the
/// latest [`Gateway::reload`]; the admin listener stays plain HTTP, for loopback or a private network.
pub async fn serve(
    gateway: Gateway,
    listener: tokio::net::TcpListener,
    admin: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    gateway.start_key_refresh();
    let limits = gateway.config().limits.clone();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    if let Some(admin) = admin {
        let app = admin_router(gateway.clone());
        if let Some(handle) = install_metrics() {
            // Histogram samples are buffered until drained: drain them every few seconds whether or not anyone
            // scrapes /metrics, so the buffer never grows with traffic.
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
                loop {
                    tokio::select! {
                        _ = every.tick() => handle.run_upkeep(),
                        _ = stopped.changed() => return,
                    }
                }
            });
        }
        let mut stopped = stopped.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stopped.changed().await;
            };
            let _ = listener::serve(admin, app, &limits, None, listener::Protocols::Http1And2, stopped).await;
        });
    }
    let tls = gateway.listener_tls();
    let result =
        listener::serve(listener, router(gateway), &limits, tls, listener::Protocols::Http1And2, shutdown).await;
    let _ = stop.send(true);
    result
}
