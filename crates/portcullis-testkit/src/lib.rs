//! Test support shared by portcullis's test suites: [`idp::Idp`], an identity provider on `127.0.0.1:0` that
//! serves discovery and a JWKS, counts requests, and rotates keys or misbehaves on command.
//!
//! Test code only; not published.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod idp;
