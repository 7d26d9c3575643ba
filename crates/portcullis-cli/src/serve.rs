//! `portcullis serve`: the gateway, from a config file, flags, or both (flags win); SIGHUP reloads the file and
//! the listener's certificate and key.

use crate::{Error, Exit};
use clap::Args;
use portcullis_gateway::{Config, FrontProxy, Gateway, IssuerConfig, LogFormat, Mode, Unmatched};
use std::net::SocketAddr;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// A TOML config file (routes, rules, several issuers); `portcullis check-config` validates it.
    #[arg(long, env = "PORTCULLIS_CONFIG", value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "PORTCULLIS_LISTEN")]
    listen: Option<SocketAddr>,
    /// The API to protect (reverse proxy mode).
    #[arg(long, env = "PORTCULLIS_UPSTREAM", value_name = "URL")]
    upstream: Option<String>,
    /// The trusted issuer, exactly as in tokens.
    #[arg(long, env = "PORTCULLIS_ISSUER", value_name = "ISS")]
    issuer: Option<String>,
    /// An accepted audience; may repeat (comma-separated in the environment).
    #[arg(long = "audience", env = "PORTCULLIS_AUDIENCE", value_name = "AUD", value_delimiter = ',')]
    audiences: Vec<String>,
    /// The issuer's JWKS URL (default: discovery).
    #[arg(long, env = "PORTCULLIS_JWKS_URI", value_name = "URL")]
    jwks_uri: Option<String>,
    /// Clock-skew allowance in seconds for the --issuer's tokens (default 60, at most a week).
    #[arg(long, env = "PORTCULLIS_LEEWAY_SECS", value_name = "SECS", requires = "issuer")]
    leeway_secs: Option<u64>,
    /// Refuse the --issuer's tokens issued longer ago than this (makes iat required).
    #[arg(long, env = "PORTCULLIS_MAX_TOKEN_AGE_SECS", value_name = "SECS", requires = "issuer")]
    max_token_age_secs: Option<u64>,
    /// The header typ the --issuer's tokens must carry: at+jwt or jwt.
    #[arg(long, env = "PORTCULLIS_TYP", value_name = "TYP", requires = "issuer")]
    typ: Option<String>,
    /// Algorithms accepted in the --issuer's tokens (e.g. RS256); may repeat (comma-separated in the
    /// environment). Default: the algorithm each key declares.
    #[arg(
        long = "algorithm",
        env = "PORTCULLIS_ALGORITHMS",
        value_name = "ALG",
        value_delimiter = ',',
        requires = "issuer"
    )]
    algorithms: Vec<String>,
    /// Answer as the forward-auth endpoint of this proxy in front (nginx auth_request, Caddy forward_auth,
    /// Traefik ForwardAuth); only that proxy's description of the request is read.
    #[arg(long, env = "PORTCULLIS_FORWARD_AUTH", value_name = "PROXY", value_parser = front_proxy_parser())]
    forward_auth: Option<FrontProxy>,
    /// Admin listener for /healthz, /ready and /metrics.
    #[arg(long, env = "PORTCULLIS_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// Log format: pretty or json (logs go to stderr; RUST_LOG filters, default info).
    #[arg(long, env = "PORTCULLIS_LOG_FORMAT", value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
    /// Threads serving requests (0: one per CPU the process may run on; 1: single-threaded).
    #[arg(long, env = "PORTCULLIS_WORKERS", value_name = "N")]
    workers: Option<usize>,
    /// The listener's certificate chain (PEM, leaf first); with --tls-key the listener speaks HTTPS only. Both
    /// files are read again on SIGHUP.
    #[arg(long, env = "PORTCULLIS_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "PORTCULLIS_TLS_KEY", value_name = "FILE")]
    tls_key: Option<std::path::PathBuf>,
    /// CA certificates (PEM) that an https:// upstream is verified against, instead of the system's roots.
    #[arg(long, env = "PORTCULLIS_UPSTREAM_CA", value_name = "FILE")]
    upstream_ca: Option<std::path::PathBuf>,
}

/// `nginx`, `caddy` or `traefik`; clap lists the choices when the value is missing or unknown.
fn front_proxy_parser() -> impl clap::builder::TypedValueParser<Value = FrontProxy> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(FrontProxy::ALL.map(FrontProxy::name))
        .try_map(|name| name.parse::<FrontProxy>())
}

fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    match text {
        "pretty" => Ok(LogFormat::Pretty),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("{other:?} is not a log format (pretty or json)")),
    }
}

/// The configuration from the file (when given) with the flags applied, checked. Without a file, what the flags
/// leave wrong is a usage error.
fn config(args: &ServeArgs) -> Result<Config, Error> {
    let (mut config, text) = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
            let config = Config::parse_toml(&text).map_err(|e| Error::file(path, e))?;
            (config, Some(text))
        }
        // Without a file there are no routes: every request needs a valid token.
        None => {
            let mut config = Config::defaults();
            config.unmatched = Unmatched::Authenticated;
            (config, None)
        }
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if args.admin_listen.is_some() {
        config.admin_listen = args.admin_listen;
    }
    if let Some(upstream) = &args.upstream {
        config.upstream = Some(upstream.clone());
    }
    if let Some(front) = args.forward_auth {
        config.forward_auth = Some(front);
    }
    if let Some(format) = args.log_format {
        config.log_format = format;
    }
    if let Some(workers) = args.workers {
        config.workers = workers;
    }
    if args.tls_cert.is_some() {
        config.tls_cert.clone_from(&args.tls_cert);
    }
    if args.tls_key.is_some() {
        config.tls_key.clone_from(&args.tls_key);
    }
    if args.upstream_ca.is_some() {
        config.upstream_ca.clone_from(&args.upstream_ca);
    }
    match (&args.issuer, args.audiences.is_empty()) {
        (Some(issuer), false) => {
            config.issuers.retain(|known| &known.issuer != issuer);
            let mut entry =
                IssuerConfig::new(issuer.clone(), args.audiences.clone()).with_jwks_uri(args.jwks_uri.clone());
            entry.leeway_secs = args.leeway_secs;
            entry.max_token_age_secs = args.max_token_age_secs;
            entry.typ.clone_from(&args.typ);
            entry.algorithms.clone_from(&args.algorithms);
            config.issuers.push(entry);
        }
        (Some(_), true) => return Err(Error::Usage("--issuer needs at least one --audience".into())),
        (None, false) => return Err(Error::Usage("--audience needs --issuer".into())),
        (None, true) => {}
    }
    config.check().map_err(|e| match (&args.config, &text) {
        (Some(path), Some(text)) => Error::file(path, e.located_in(text)),
        _ => Error::UsageBecause(e.into()),
    })?;
    Ok(config)
}

/// Logs to stderr in `format`, coloured only when stderr is a terminal and `NO_COLOR` is unset or empty.
fn init_logs(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = colour_logs(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    let _ = match format {
        LogFormat::Json => logs.json().flatten_event(true).try_init(),
        _ => logs.try_init(),
    };
}

/// Whether logs get ANSI colours: only on a terminal, and never when `NO_COLOR` is set to anything but the empty
/// string (<https://no-color.org>).
fn colour_logs(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(std::ffi::OsStr::is_empty)
}

pub(crate) fn run(args: ServeArgs) -> Exit {
    match serve(args) {
        Ok(()) => Exit::Success,
        Err(error) => error.report("serve"),
    }
}

fn serve(args: ServeArgs) -> Result<(), Error> {
    let config = config(&args)?;
    init_logs(config.log_format);
    raise_open_files_limit(config.limits.max_connections);
    let runtime = serving_runtime(config.worker_threads()).map_err(Error::Runtime)?;
    runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(config.listen).await.map_err(|e| Error::listen(config.listen, "", e))?;
        let admin = match config.admin_listen {
            Some(address) => {
                Some(tokio::net::TcpListener::bind(address).await.map_err(|e| Error::listen(address, "", e))?)
            }
            None => None,
        };
        let address = listener.local_addr().map_err(|e| Error::listen(config.listen, "", e))?;
        let mode = match config.mode() {
            Mode::Proxy => format!("reverse proxy to {}", config.upstream.as_deref().unwrap_or_default()),
            other => other.to_string(),
        };
        let threads = match config.worker_threads() {
            1 => "1 worker thread".to_owned(),
            n => format!("{n} worker threads"),
        };
        let admin_paths = if config.admin_pages {
            "/healthz, /ready, /metrics, /debugger, /status"
        } else {
            "/healthz, /ready, /metrics"
        };
        let scheme = if config.tls_cert.is_some() { "https" } else { "http" };
        let policy = crate::startup::policy_lines(&config);
        let gateway = Gateway::new(config).map_err(|e| match &args.config {
            Some(path) => Error::file(path, e),
            None => Error::UsageBecause(e.into()),
        })?;
        println!("portcullis gateway listening on {scheme}://{address} ({mode}, {threads})");
        if let Some(admin) = &admin {
            let admin = admin.local_addr().map_err(|e| Error::listen("the admin address", "", e))?;
            println!("admin listening on http://{admin} ({admin_paths})");
        }
        for line in policy {
            tracing::info!(target: "portcullis::gateway", "{line}");
        }
        reload_on_hangup(gateway.clone(), args);
        portcullis_gateway::serve(gateway, listener, admin, shutdown_signal())
            .await
            .map_err(|e| Error::stopped("the gateway stopped", e))
    })
}

/// Raises the soft limit on open files to the hard limit: each connection is a descriptor, and many systems start
/// services with a soft limit of 1,024. Warns when the limit stays below what `max_connections` needs.
fn raise_open_files_limit(max_connections: usize) {
    // Two descriptors per proxied connection (client and upstream), plus listeners, key fetches and logs.
    let wanted = (max_connections as u64).saturating_mul(2).saturating_add(64);
    match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) if limit < wanted => tracing::warn!(
            target: "portcullis::gateway",
            open_files = limit,
            needed = wanted,
            max_connections,
            "open-files limit {limit} is below the {wanted} that limits.max_connections = {max_connections} needs; \
             raise it (ulimit -n, LimitNOFILE) or lower limits.max_connections"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(target: "portcullis::gateway", %error, "cannot read the open-files limit"),
    }
}

/// The runtime that serves requests: single-threaded for one worker (no hand-offs between threads), else one
/// worker thread per `workers`.
fn serving_runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    builder.enable_all().build()
}

/// On every SIGHUP, re-reads the file, applies the same flags and replaces the gateway's policy, certificate and
/// key; an invalid file or TLS pair keeps the running ones, and the log says why.
#[cfg(unix)]
fn reload_on_hangup(gateway: Gateway, args: ServeArgs) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!(target: "portcullis::gateway", "SIGHUP cannot be handled: configuration reload is off");
        return;
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let reloaded = config(&args).and_then(|config| {
                let certificate = config.tls_cert.as_ref().map(|path| path.display().to_string());
                let reloaded = gateway.reload(config).map_err(|e| Error::UsageBecause(e.into()))?;
                Ok((reloaded, certificate))
            });
            match reloaded {
                Ok((reloaded, certificate)) => tracing::info!(
                    target: "portcullis::gateway",
                    routes = reloaded.routes,
                    issuers = reloaded.issuers,
                    new_key_sets = reloaded.new_key_sets,
                    tls_cert = certificate.as_deref(),
                    "configuration reloaded"
                ),
                Err(why) => tracing::error!(
                    target: "portcullis::gateway",
                    error = %why.chain(),
                    "configuration reload refused; the running configuration is kept"
                ),
            }
        }
    });
}

#[cfg(not(unix))]
fn reload_on_hangup(_gateway: Gateway, _args: ServeArgs) {}

/// Ctrl-C or SIGTERM: stop accepting, let in-flight requests finish.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!(target: "portcullis::gateway", "shutting down: no new connections, finishing requests in flight");
}

#[cfg(test)]
mod tests {
    use super::colour_logs;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_logs(true, None));
        assert!(colour_logs(true, Some(OsStr::new(""))));
        assert!(!colour_logs(true, Some(OsStr::new("1"))));
        assert!(!colour_logs(false, None));
        assert!(!colour_logs(false, Some(OsStr::new(""))));
    }
}
