//! `portcullis check-config`: validates a gateway configuration file, or prints the documented template.

use crate::EXIT_USAGE;
use clap::Args;
use portcullis_gateway::Config;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub(crate) struct CheckConfigArgs {
    /// The TOML file to check.
    #[arg(value_name = "FILE", required_unless_present = "template")]
    file: Option<std::path::PathBuf>,
    /// Print the documented default configuration (every key, its default and meaning) instead.
    #[arg(long, conflicts_with = "file")]
    template: bool,
}

pub(crate) fn run(args: CheckConfigArgs) -> ExitCode {
    let Some(path) = args.file else {
        print!("{}", portcullis_gateway::config::TEMPLATE);
        return ExitCode::SUCCESS;
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match Config::from_toml(&text) {
        Ok(config) => {
            let mode = match config.mode() {
                portcullis_gateway::Mode::Proxy => "reverse proxy".to_owned(),
                portcullis_gateway::Mode::ForwardAuth(front) => format!("forward-auth for {front}"),
            };
            println!(
                "{}: valid ({mode}, {} issuer(s), {} route(s), unmatched requests: {:?})",
                path.display(),
                config.issuers.len(),
                config.routes.len(),
                config.unmatched
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{}: {error}", path.display());
            ExitCode::from(EXIT_USAGE)
        }
    }
}
