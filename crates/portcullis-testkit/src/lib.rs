//! Test support shared by portcullis's test suites:
//!
//! - [`idp::Idp`], an identity provider on `127.0.0.1:0` that serves discovery and a JWKS, counts requests, and
//!   rotates keys or misbehaves on command (with the dev issuer's [`idp::Fault`]s);
//! - [`process`], external programs on free loopback ports, killed when dropped;
//! - [`raw`], an HTTP/1.1 client that writes exactly the bytes it is given (no normalization of the target or the
//!   headers);
//! - [`upstreams`], real upstream applications (Express, a stdlib WSGI app, nginx serving files) that report which
//!   resource they served and echo the headers they received;
//! - [`fronts`], the nginx and Caddy configurations and the Envoy bootstraps the deployment guides show, those proxies as processes, and
//!   the `portcullis` gateway binary as a process;
//! - [`envoy`], a real Envoy (found, its bootstraps validated, run with the ports it picked read back);
//! - [`issuers`], dev issuers in process (the demo tenant's, and two for the attack corpus) and tokens fetched from
//!   them over HTTP;
//! - [`keys`], signing keys, key sets, and verifiers over static or remote key sets;
//! - [`claims`], claim sets for test tokens;
//! - [`dpop`], a DPoP client signing fresh proofs;
//! - [`markdown`], the fenced code blocks of the documentation pages;
//! - [`net`], loopback listeners and servers;
//! - [`probe`], whether an optional program is installed, skipping the test without it unless under CI.
//!
//! Test code only; not published.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod claims;
pub mod dpop;
pub mod envoy;
pub mod fronts;
pub mod idp;
pub mod issuers;
pub mod keys;
pub mod markdown;
pub mod net;
pub mod probe;
pub mod process;
pub mod raw;
pub mod redis;
pub mod upstreams;
