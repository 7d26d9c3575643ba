//! `portcullis check-config`: validates a gateway configuration — a file completed by the same flags and
//! `PORTCULLIS_*` variables as `serve`, through the same checks — or prints the documented template.

use crate::gateway_args::{self, GatewayArgs};
use crate::{Error, Exit};
use clap::Args;
use portcullis_gateway::Unmatched;

#[derive(Debug, Args)]
pub(crate) struct CheckConfigArgs {
    /// The TOML file to check (the same as --config).
    #[arg(value_name = "FILE", required_unless_present_any = ["template", "config", "issuer"])]
    file: Option<std::path::PathBuf>,
    /// Print the documented default configuration (every key, its default and meaning) instead.
    #[arg(long, conflicts_with = "file")]
    template: bool,
    #[command(flatten)]
    gateway: GatewayArgs,
}

pub(crate) fn run(args: CheckConfigArgs) -> Exit {
    match check(args) {
        Ok(()) => Exit::Success,
        // Every error on its own line, the file's name leading, as compilers print them.
        Err(error) => {
            eprintln!("{}", error.chain());
            error.exit()
        }
    }
}

fn check(mut args: CheckConfigArgs) -> Result<(), Error> {
    if args.template {
        print!("{}", portcullis_gateway::config::TEMPLATE);
        return Ok(());
    }
    if let Some(file) = args.file.take() {
        args.gateway.config = Some(file);
    }
    let config = gateway_args::config(&args.gateway)?;
    for warning in gateway_args::warnings(&args.gateway, &config) {
        eprintln!("{warning}");
    }
    let source = match &args.gateway.config {
        Some(path) => path.display().to_string(),
        None => "flags".to_owned(),
    };
    let unmatched = match config.unmatched {
        Unmatched::Deny => "404",
        _ => "any valid token passes",
    };
    println!(
        "{source}: valid ({}, {} issuer(s), {} route(s), requests no route matches: {unmatched})",
        config.mode(),
        config.issuers.len(),
        config.routes.len(),
    );
    Ok(())
}
