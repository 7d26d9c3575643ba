//! # portcullis-issuer — development only
//!
//! An issuer that looks like an Auth0 tenant to the API it protects, so that the whole system — a client logging
//! in, getting a token, calling a protected API — runs offline, in development and in tests. **Never use it in
//! production**: keys live in memory, users log in by picking a name, and admin endpoints mint any token.
//!
//! It serves discovery, a JWKS with the next, current and previous keys, `POST /oauth/token` (client credentials,
//! authorization code with PKCE, refresh token; JSON or form bodies; secrets in the body or HTTP Basic),
//! `GET /authorize` with a login page, `GET /userinfo`, and admin endpoints under [`ADMIN_PREFIX`] (loopback
//! clients only) to rotate and revoke keys, mint arbitrary or deliberately broken tokens, inject JWKS faults, shift
//! the clock and read the request journal. Responses and errors have Auth0's shapes.
//!
//! ```no_run
//! use portcullis_issuer::{DevIssuer, Tenant, serve};
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:4000").await?;
//! let issuer = DevIssuer::new(Tenant::demo("http://127.0.0.1:3000/callback"), "http://127.0.0.1:4000/").unwrap();
//! serve(listener, issuer).await
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod config;
mod issuer;
pub mod journal;
mod keys;
pub mod pkce;
mod server;

pub use config::{DEMO_AUDIENCE, OTHER_AUDIENCE, Tenant};
pub use issuer::{Broken, DevIssuer, Grant};
pub use journal::{Fault, JournalEntry};
pub use keys::KeyChoice;
pub use server::{ADMIN_PREFIX, MAX_BODY_BYTES, router, serve};
