//! # portcullis-axum
//!
//! JWT bearer authentication for axum and any tower stack, on the [`portcullis`] verifier: one [`JwtLayer`] that
//! verifies every request before a handler runs, typed extractors ([`Token`], [`Claims`]), per-route
//! authorization rules ([`require`]), and refusals answered exactly as RFC 6750 says.
//!
//! | situation | answer |
//! |---|---|
//! | no credentials | 401, `WWW-Authenticate: Bearer realm="api"` |
//! | two credentials, wrong scheme, two tokens | 400 `invalid_request` |
//! | any token defect | 401 `invalid_token` with `error_description` |
//! | authorization rule not met | 403 `insufficient_scope` with `scope="…"` |
//! | keys cannot be obtained | 503 with `Retry-After` |
//! | the shared DPoP replay store fails (with `fail_closed`) | 503 with `Retry-After` |
//! | with [`JwtLayer::dpop`]: a bad DPoP proof, a replay, no proof | 401 `invalid_dpop_proof` on the `DPoP` challenge |
//! | with nonces on: no nonce or a stale one | 401 `use_dpop_nonce` and `DPoP-Nonce` |
//! | a DPoP-bound token (`cnf.jkt`) sent as `Bearer`, or bound to another key | 401 `invalid_token` |
//!
//! With DPoP on, refusals carry one `WWW-Authenticate` line per accepted scheme (`Bearer`, then `DPoP algs="…"`),
//! and with [`JwtLayer::resource_metadata`] each names the RFC 9728 document (`resource_metadata="…"`), which the
//! layer serves itself.
//!
//! Every refusal also carries a JSON body `{"error","reason","message"}` with the stable
//! [`Reason`](portcullis::Reason) code.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use portcullis::remote::{KeyLocation, RemoteKeySet, RemoteOptions};
//! use portcullis::{Requirement, SystemClock, Verifier};
//! use portcullis_axum::{JwtLayer, Token, require};
//! use std::sync::Arc;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let issuer = "https://your-tenant.auth0.com/";
//! let keys = RemoteKeySet::new(KeyLocation::Discovery { issuer: issuer.into() }, RemoteOptions::default(), Arc::new(SystemClock))?;
//! keys.spawn_refresher();
//! let verifier = Verifier::builder().issuer(issuer).audience("https://api.example.com").key_source(Arc::new(keys)).build()?;
//!
//! let app = Router::new()
//!     .route("/api/private", get(|Token(token): Token| async move { format!("hello {:?}", token.subject()) }))
//!     .route(
//!         "/api/private-scoped",
//!         get(|| async { "secret messages" }).route_layer(require(Requirement::scope("read:messages"))),
//!     )
//!     .layer(JwtLayer::new(verifier));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod credentials;
mod extract;
mod future;
mod layer;
mod rejection;
mod require;
mod service;

pub use credentials::{authorization, authorization_bearer, dpop_proofs};
pub use extract::{Claims, Token};
pub use future::ResponseFuture;
pub use layer::{JwtLayer, RevocationCheck};
pub use rejection::{Answer, AuthRejection, DEFAULT_REALM, Rejected, Responder, challenge_response, default_response};
pub use require::{RequireLayer, RequireService, require};
pub use service::JwtService;
