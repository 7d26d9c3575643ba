//! `portcullis check-config`: validates a gateway configuration file, or prints the documented template.

use crate::{Error, Exit};
use clap::Args;
use portcullis_gateway::Config;

#[derive(Debug, Args)]
pub(crate) struct CheckConfigArgs {
    /// The TOML file to check.
    #[arg(value_name = "FILE", required_unless_present = "template")]
    file: Option<std::path::PathBuf>,
    /// Print the documented default configuration (every key, its default and meaning) instead.
    #[arg(long, conflicts_with = "file")]
    template: bool,
}

pub(crate) fn run(args: CheckConfigArgs) -> Exit {
    match check(args) {
        Ok(()) => Exit::Success,
        // The file's name leads the line, as compilers print it.
        Err(error) => {
            eprintln!("{}", error.chain());
            error.exit()
        }
    }
}

fn check(args: CheckConfigArgs) -> Result<(), Error> {
    let Some(path) = args.file else {
        print!("{}", portcullis_gateway::config::TEMPLATE);
        return Ok(());
    };
    let text = std::fs::read_to_string(&path).map_err(|e| Error::file(&path, e))?;
    let config = Config::from_toml(&text).map_err(|e| Error::file(&path, e))?;
    let mode = config.mode();
    println!(
        "{}: valid ({mode}, {} issuer(s), {} route(s), unmatched requests: {:?})",
        path.display(),
        config.issuers.len(),
        config.routes.len(),
        config.unmatched
    );
    Ok(())
}
