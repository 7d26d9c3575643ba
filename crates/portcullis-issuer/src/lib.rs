//! # portcullis-issuer — development only
//!
//! An issuer that looks like an Auth0 tenant to the API it protects, so that the whole system — a client logging
//! in, getting a token, calling a protected API — runs offline, in development and in tests. **Never use it in
//! production**: keys live in memory, users log in by picking a name, and admin endpoints mint any token.
//!
//! It serves discovery, a JWKS with the next, current and previous keys, `POST /oauth/token` (client credentials,
//! authorization code with PKCE, refresh token; JSON or form bodies; secrets in the body or HTTP Basic),
//! `GET /authorize` with a login page, `GET /userinfo`, and admin endpoints under [`ADMIN_PREFIX`] to rotate and
//! revoke keys, mint arbitrary or deliberately broken tokens, inject JWKS faults, shift the clock, add APIs and read
//! the request journal. Responses and errors have Auth0's shapes.
//!
//! `/authorize` answers codes, ID tokens or both (`code`, `id_token`, `id_token token`, `code id_token`) by
//! `query`, `fragment`, `form_post` or `web_message`. A login sets a session cookie naming a server-side session,
//! from which `prompt=none` answers without a page (or with `login_required`); `/v2/logout` and `/oidc/logout` end
//! it and return only to a client's listed logout URLs.
//!
//! For OAuth clients that discover and register themselves (MCP clients among them) it also serves RFC 8414
//! metadata at `/.well-known/oauth-authorization-server`, dynamic registration of public clients at
//! `POST /oidc/register` (RFC 7591), RFC 8707 `resource` as the audience, and DPoP-bound tokens (RFC 9449): a token
//! request with a valid `DPoP` proof gets an access token with `cnf.jkt` and `token_type: DPoP`, and refresh tokens
//! bound to the proof's key; [`Tenant::dpop_nonce`] turns on server nonces.
//!
//! Refresh tokens rotate as Auth0's do: each refresh answers a new refresh token and invalidates the presented one,
//! and presenting a used token again revokes every token descended from the same login. They expire after
//! [`Tenant::refresh_token_idle_lifetime`] unused and [`Tenant::refresh_token_lifetime`] after the login, on the
//! issuer's own (shiftable) clock. Expired codes and refresh tokens are swept as new ones are issued.
//!
//! The admin endpoints answer loopback clients only, and only requests no other site's page could have made:
//! - `Host` (and an absolute request target) must be the issuer URL's host and port — or `localhost` with that
//!   port when the issuer's host is a loopback address, since no DNS server can rebind `localhost` — else
//!   421 Misdirected Request (a DNS-rebinding page sends its own host name);
//! - `Origin`, when present, must be the issuer's own origin, and `Sec-Fetch-Site`, when present, `same-origin` or
//!   `none`, else 403;
//! - POST bodies must be `Content-Type: application/json`, else 415 (an HTML form cannot send that type, and a
//!   script on another site cannot without a CORS preflight, which the admin endpoints never grant).
//!
//! Tools such as curl and test clients send none of the browser headers and pass unchanged.
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

mod authorize;
mod base64url;
mod codes;
pub mod config;
mod cors;
mod discovery;
mod dpop;
mod error;
mod id_token;
mod issuer;
mod journal;
mod keys;
mod logout;
mod params;
pub mod pkce;
mod refresh;
mod register;
mod revoke;
mod server;
mod session;
mod target;
mod token;
mod userinfo;

pub use config::{DEMO_AUDIENCE, OTHER_AUDIENCE, Tenant};
pub use error::{AddApiError, ParseError, SignError, TenantError};
pub use issuer::{Broken, DevIssuer, Grant, MAX_ADDED_APIS, ShiftedClock};
pub use journal::{Fault, Faults, HUGE_BODY_BYTES, JournalEntry};
pub use keys::KeyChoice;
pub use server::{ADMIN_PREFIX, MAX_BODY_BYTES, router, serve};
