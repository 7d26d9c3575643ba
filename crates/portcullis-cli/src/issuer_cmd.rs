//! `portcullis issuer`: the Auth0-shaped development issuer.

use crate::EXIT_USAGE;
use clap::Args;
use portcullis_issuer::{DevIssuer, Tenant};
use std::net::SocketAddr;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub(crate) struct IssuerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4000")]
    listen: SocketAddr,
    /// A TOML tenant file (APIs, clients, users); without it, the built-in demo tenant.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// The issuer URL when the issuer runs behind something else (default `http://<listen>/`).
    #[arg(long, value_name = "URL")]
    issuer_url: Option<String>,
    /// Allow listening on a non-loopback address. The issuer mints tokens for anyone who asks: development only.
    #[arg(long)]
    allow_remote: bool,
}

pub(crate) const BANNER: &str = "DEVELOPMENT ONLY: this issuer signs tokens for anyone who asks; never expose it";

pub(crate) fn run(args: IssuerArgs) -> ExitCode {
    if !args.listen.ip().is_loopback() && !args.allow_remote {
        eprintln!(
            "portcullis issuer: refusing to listen on {} (not loopback) without --allow-remote; {BANNER}",
            args.listen
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let tenant = match &args.config {
        Some(path) => {
            match std::fs::read_to_string(path).map_err(|e| e.to_string()).and_then(|t| Tenant::from_toml(&t)) {
                Ok(tenant) => tenant,
                Err(why) => {
                    eprintln!("portcullis issuer: {}: {why}", path.display());
                    return ExitCode::from(EXIT_USAGE);
                }
            }
        }
        None => Tenant::demo("http://127.0.0.1:3000/callback"),
    };
    let runtime = match crate::runtime() {
        Ok(runtime) => runtime,
        Err(why) => {
            eprintln!("portcullis issuer: {why}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<(), String> = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let url = args.issuer_url.clone().unwrap_or_else(|| format!("http://{address}/"));
        let issuer = DevIssuer::new(tenant, &url).map_err(|e| e.to_string())?;
        println!("{BANNER}");
        println!("portcullis dev issuer at {url} (discovery: {url}.well-known/openid-configuration)");
        print_tenant(issuer.tenant());
        portcullis_issuer::serve(listener, issuer).await.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("portcullis issuer: {why}");
            ExitCode::FAILURE
        }
    }
}

fn print_tenant(tenant: &Tenant) {
    for api in &tenant.apis {
        println!("  API     {}  permissions: {}", api.audience, api.permissions.join(", "));
    }
    for client in &tenant.clients {
        let secret = client.client_secret.as_deref().map_or("public, PKCE".to_owned(), |s| format!("secret {s}"));
        println!("  client  {} ({secret}) grants: {}", client.client_id, client.grants.join(", "));
    }
    for user in &tenant.users {
        println!("  user    {} ({})", user.id, user.subject());
    }
}
