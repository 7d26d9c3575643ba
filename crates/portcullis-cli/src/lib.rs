//! The `portcullis` command line: argument parsing and the subcommands.
//!
//! Every command ends with an [`Exit`] status, stable for scripts and listed in `portcullis --help`; a failure is
//! an [`Error`], whose [`Error::exit`] is the status.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod check_config;
mod decode;
mod demo;
mod exit;
mod explain;
mod gateway_args;
mod issuer_cmd;
mod revoke;
mod serve;
mod startup;
mod verify;

pub use exit::{BoxError, Error, Exit};

/// Gatekeeper for HTTP APIs secured with JWT access tokens from Auth0 or any OpenID Connect issuer.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about, max_term_width = 100, after_help = Exit::help())]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a gateway configuration file and explain every error with its location (or print the template).
    CheckConfig(check_config::CheckConfigArgs),
    /// Run the whole system on this machine — dev issuer, protected API, real tokens — with a guided tour.
    Demo(demo::DemoArgs),
    /// Run the Auth0-shaped development issuer (development only).
    Issuer(issuer_cmd::IssuerArgs),
    /// Revoke a token (by jti or SHA-256) or a subject's tokens through a gateway's admin endpoint.
    Revoke(revoke::RevokeArgs),
    /// Run the gateway: a reverse proxy or forward-auth endpoint that verifies every request.
    Serve(serve::ServeArgs),
    /// Verify one access token against a key set, issuer and audience, and explain the outcome.
    Verify(verify::VerifyArgs),
}

/// A tokio runtime for a subcommand.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(Error::Runtime)
}

/// Parses the process arguments and runs the chosen subcommand.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() { Exit::Usage.into() } else { Exit::Success.into() };
        }
    };
    let exit = match cli.command {
        Command::CheckConfig(args) => check_config::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Issuer(args) => issuer_cmd::run(args),
        Command::Revoke(args) => revoke::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Verify(args) => verify::run(args),
    };
    exit.into()
}
