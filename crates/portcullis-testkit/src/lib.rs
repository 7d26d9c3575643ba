//! Test support shared by portcullis's test suites:
//!
//! - [`idp::Idp`], an identity provider on `127.0.0.1:0` that serves discovery and a JWKS, counts requests, and
//!   rotates keys or misbehaves on command;
//! - [`process`], external programs on free loopback ports, killed when dropped;
//! - [`raw`], an HTTP/1.1 client that writes exactly the bytes it is given (no normalization of the target or the
//!   headers);
//! - [`upstreams`], real upstream applications (Express, a stdlib WSGI app, nginx serving files) that report which
//!   resource they served and echo the headers they received;
//! - [`fronts`], the nginx and Caddy configurations the deployment guides show, those proxies as processes, and
//!   the `portcullis` gateway binary as a process;
//! - [`issuers`], two dev issuers in process and the credentials the attack corpus uses.
//!
//! Test code only; not published.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod fronts;
pub mod idp;
pub mod issuers;
pub mod process;
pub mod raw;
pub mod upstreams;
