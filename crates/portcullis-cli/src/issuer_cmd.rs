//! `portcullis issuer`: the Auth0-shaped development issuer.

use crate::{Error, Exit};
use clap::Args;
use portcullis_issuer::config::Api;
use portcullis_issuer::{DevIssuer, Tenant};
use std::net::SocketAddr;

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
    /// Add an API (its audience, also accepted as an RFC 8707 resource) to the tenant; repeatable. An audience
    /// the tenant already has is left as it is.
    #[arg(long = "api", value_name = "AUDIENCE")]
    apis: Vec<String>,
    /// Require DPoP server nonces at the token endpoint (RFC 9449 §8).
    #[arg(long)]
    dpop_nonce: bool,
    /// Print the effective tenant (the tenant file or the demo tenant, with `--api` and `--dpop-nonce` applied) as
    /// a TOML tenant file that `--config` reads back unchanged, and exit without listening.
    #[arg(long)]
    print_tenant: bool,
}

pub(crate) const BANNER: &str = "DEVELOPMENT ONLY: this issuer signs tokens for anyone who asks; never expose it";

pub(crate) fn run(args: IssuerArgs) -> Exit {
    match issue(args) {
        Ok(()) => Exit::Success,
        Err(error) => error.report("issuer"),
    }
}

fn issue(args: IssuerArgs) -> Result<(), Error> {
    let tenant = effective_tenant(&args)?;
    if args.print_tenant {
        let text = toml::to_string_pretty(&tenant).map_err(|e| Error::start("cannot write the tenant as TOML", e))?;
        print!("{text}");
        return Ok(());
    }
    if !args.listen.ip().is_loopback() && !args.allow_remote {
        return Err(Error::Usage(format!(
            "refusing to listen on {} (not loopback) without --allow-remote; {BANNER}",
            args.listen
        )));
    }
    crate::runtime()?.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(args.listen).await.map_err(|e| Error::listen(args.listen, "", e))?;
        let address = listener.local_addr().map_err(|e| Error::listen(args.listen, "", e))?;
        let url = args.issuer_url.clone().unwrap_or_else(|| format!("http://{address}/"));
        let issuer = DevIssuer::new(tenant, &url).map_err(|e| Error::start("cannot create the signing keys", e))?;
        println!("{BANNER}");
        println!("portcullis dev issuer at {url} (discovery: {url}.well-known/openid-configuration)");
        if issuer.tenant().dpop_nonce {
            println!("  DPoP nonces required at {url}oauth/token");
        }
        print_tenant(issuer.tenant());
        portcullis_issuer::serve(listener, issuer).await.map_err(|e| Error::stopped("the issuer stopped", e))
    })
}

/// The tenant the issuer serves: the tenant file or the demo tenant, with the `--api` audiences added and
/// `--dpop-nonce` applied.
fn effective_tenant(args: &IssuerArgs) -> Result<Tenant, Error> {
    let mut tenant = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
            Tenant::from_toml(&text).map_err(|e| Error::file(path, e))?
        }
        None => Tenant::demo("http://127.0.0.1:3000/callback"),
    };
    for audience in &args.apis {
        if audience.is_empty() || audience.chars().any(char::is_control) {
            return Err(Error::Usage(format!("--api {audience:?}: an audience must be non-empty text")));
        }
        if tenant.api(audience).is_none() {
            tenant.apis.push(Api::new(audience.clone(), Vec::<String>::new()));
        }
    }
    tenant.dpop_nonce |= args.dpop_nonce;
    Ok(tenant)
}

fn print_tenant(tenant: &Tenant) {
    for api in &tenant.apis {
        println!("  API     {}  permissions: {}", api.audience, api.permissions.join(", "));
    }
    for client in &tenant.clients {
        let secret = client.client_secret.as_deref().map_or("public, PKCE".to_owned(), |s| format!("secret {s}"));
        println!("  client  {} ({secret}) grants: {}", client.client_id, client.grants.join(", "));
        let app_type = client.app_type.map_or("unset".to_owned(), |t| {
            serde_json::to_value(t).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
        });
        println!("          type: {app_type}");
        for (name, urls) in [
            ("callbacks", &client.callbacks),
            ("logout URLs", &client.logout_urls),
            ("web origins", &client.web_origins),
        ] {
            if !urls.is_empty() {
                println!("          {name}: {}", urls.join(", "));
            }
        }
    }
    for user in &tenant.users {
        println!("  user    {} ({})", user.id, user.subject());
    }
}
