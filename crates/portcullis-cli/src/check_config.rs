//! `portcullis check-config`: validates a gateway configuration — a file completed by the same flags and
//! `PORTCULLIS_*` variables as `serve`, through the same checks — or prints the documented template.

use crate::gateway_args::{self, GatewayArgs};
use crate::{Error, Exit};
use clap::Args;
use portcullis_gateway::{Mode, Unmatched};

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
    let mut mode = match (config.mode(), &config.upstream) {
        (Mode::Proxy, None) => "no upstream".to_owned(),
        (mode, _) => mode.to_string(),
    };
    if let Some(grpc) = config.ext_authz_grpc {
        mode.push_str(&format!(", ext_authz gRPC on {grpc}"));
    }
    if config.dpop.mode != portcullis_gateway::DpopSetting::Off {
        let nonces = if config.dpop.nonce_secret_file.is_some() { " with nonces" } else { "" };
        mode.push_str(&format!(", DPoP {}{nonces}", config.dpop.mode.name()));
    }
    if let Some(metadata) = &config.resource_metadata {
        mode.push_str(&format!(", resource metadata for {}", metadata.resource));
    }
    println!(
        "{source}: valid ({mode}, {} issuer(s), {} route(s), requests no route matches: {unmatched})",
        config.issuers.len(),
        config.routes.len(),
    );
    Ok(())
}
