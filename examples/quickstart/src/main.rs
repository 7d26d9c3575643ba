//! # quickstart
//!
//! An API protected by Auth0 (or any OpenID Connect issuer), in the shape of Auth0's API quickstart:
//!
//! | route | needs |
//! |---|---|
//! | `GET /api/public` | nothing |
//! | `GET /api/protected` | a valid token; answers with its claims |
//! | `GET /api/private` | a valid token |
//! | `GET /api/private-scoped` | a valid token with `read:messages` in `scope` or `permissions` |
//!
//! How to run:
//!
//! ```sh
//! ISSUER_BASE_URL=https://your-tenant.auth0.com/ AUDIENCE=https://api.example.com cargo run --release -p portcullis-quickstart
//! ```
//!
//! Configuration (environment):
//! - `ISSUER_BASE_URL` (required): the issuer exactly as in your tokens' `iss` (Auth0: `https://TENANT/`, with
//!   the trailing slash). Its keys are found by OpenID Connect discovery unless `JWKS_URI` is set.
//! - `AUDIENCE` (required): your API's identifier, as in the tokens' `aud`.
//! - `JWKS_URI` (optional): where the issuer publishes its keys.
//! - `PORT` (optional, default 3000): the port on 127.0.0.1 (0 picks a free one).
//! - `DPOP` (optional, default `allowed`): `off` (Bearer tokens only), `allowed` (DPoP-bound tokens too, RFC 9449)
//!   or `required` (DPoP-bound tokens only).
//! - `PUBLIC_URL` (optional, default `http://127.0.0.1:PORT`): the URL clients use to reach the API, e.g. the
//!   `https://` address of the balancer in front. Proofs' `htu` and the metadata's `resource` are built from it.
//!
//! The API publishes its RFC 9728 protected-resource metadata at `/.well-known/oauth-protected-resource` (the
//! issuer as its authorization server) and names that document in every `WWW-Authenticate` challenge.
//!
//! The routes themselves are [`quickstart::app`] (`src/lib.rs`): a dozen lines worth reading.

use portcullis::dpop::{DpopMode, DpopVerifier};
use portcullis::remote::{KeyLocation, RemoteKeySet, RemoteOptions};
use portcullis::{SystemClock, Verifier};
use std::process::ExitCode;
use std::sync::Arc;

/// mimalloc: a flat resident size under token churn and faster small allocations.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The configuration, read from the environment.
struct Config {
    issuer: String,
    audience: String,
    jwks_uri: Option<String>,
    port: u16,
    dpop: DpopMode,
    public_url: Option<String>,
}

fn config() -> Result<Config, String> {
    let required = |name: &str, what: &str| match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_owned()),
        _ => Err(format!("{name} is not set: {what}")),
    };
    let issuer = required("ISSUER_BASE_URL", "the issuer of your tokens, e.g. https://your-tenant.auth0.com/")?;
    if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
        return Err(format!("ISSUER_BASE_URL must be an http(s) URL, got {issuer:?}"));
    }
    let audience = required("AUDIENCE", "your API's identifier, e.g. https://api.example.com")?;
    let jwks_uri = std::env::var("JWKS_URI").ok().filter(|v| !v.trim().is_empty());
    let port = match std::env::var("PORT") {
        Ok(port) => port.trim().parse().map_err(|_| format!("PORT must be a port number, got {port:?}"))?,
        Err(_) => 3000,
    };
    let dpop = match std::env::var("DPOP") {
        Ok(mode) if !mode.trim().is_empty() => {
            mode.trim().parse().map_err(|_| format!("DPOP must be off, allowed or required, got {mode:?}"))?
        }
        _ => DpopMode::Allowed,
    };
    let public_url = std::env::var("PUBLIC_URL").ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    if let Some(url) = &public_url {
        portcullis::dpop::Htu::parse(url).map_err(|e| format!("PUBLIC_URL is not usable: {}", e.description()))?;
    }
    Ok(Config { issuer, audience, jwks_uri, port, dpop, public_url })
}

async fn run(config: Config) -> Result<(), String> {
    let location = match &config.jwks_uri {
        Some(uri) => KeyLocation::Jwks(uri.clone()),
        None => KeyLocation::Discovery { issuer: config.issuer.clone() },
    };
    let keys =
        RemoteKeySet::new(location, RemoteOptions::default(), Arc::new(SystemClock)).map_err(|e| e.to_string())?;
    // Load the keys now so configuration mistakes show at start-up; requests get 503 until keys are available.
    if let Err(why) = keys.refresh().await {
        eprintln!(
            "warning: the issuer's keys cannot be loaded yet ({why}); protected routes answer 503 until they can"
        );
    }
    keys.spawn_refresher();
    let verifier = Verifier::builder()
        .issuer(&config.issuer)
        .audience(&config.audience)
        .key_source(Arc::new(keys))
        .build()
        .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", config.port))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let sender = quickstart::Sender {
        verifier: DpopVerifier::builder().build().map_err(|e| e.to_string())?,
        mode: config.dpop,
        public_url: config.public_url.clone().unwrap_or_else(|| format!("http://{address}")),
        authorization_servers: vec![config.issuer.clone()],
    };
    println!(
        "quickstart API listening on http://{address} (issuer {}, audience {}, DPoP {}, public URL {})",
        config.issuer, config.audience, config.dpop, sender.public_url
    );
    axum::serve(listener, quickstart::app_with(verifier, &sender)).await.map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let config = match config() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("quickstart: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("quickstart: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("quickstart: {message}");
            ExitCode::FAILURE
        }
    }
}
