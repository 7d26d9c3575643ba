//! `portcullis serve`: the gateway, from a config file, flags, or both (flags win); SIGHUP reloads the file and
//! the listener's certificate and key.

use crate::gateway_args::{GatewayArgs, config};
use crate::{Error, Exit};
use clap::Args;
use portcullis_gateway::{Gateway, LogFormat, Mode};

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    gateway: GatewayArgs,
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
    let config = config(&args.gateway)?;
    init_logs(config.log_format);
    for warning in crate::gateway_args::warnings(&args.gateway, &config) {
        tracing::warn!(target: "portcullis::gateway", "{warning}");
    }
    raise_open_files_limit(config.limits.max_connections, config.ext_authz_grpc.is_some());
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
        let ext_authz = match config.ext_authz_grpc {
            Some(address) => {
                Some(tokio::net::TcpListener::bind(address).await.map_err(|e| Error::listen(address, "", e))?)
            }
            None => None,
        };
        let address = listener.local_addr().map_err(|e| Error::listen(config.listen, "", e))?;
        let mode = match (config.mode(), config.upstream.as_deref()) {
            (Mode::Proxy, Some(upstream)) => format!("reverse proxy to {upstream}"),
            (Mode::Proxy, None) => "no upstream: decisions over gRPC ext_authz only".to_owned(),
            (other, _) => other.to_string(),
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
        let gateway = Gateway::new(config).map_err(|e| match &args.gateway.config {
            Some(path) => Error::file(path, e),
            None => Error::UsageBecause(e.into()),
        })?;
        println!("portcullis gateway listening on {scheme}://{address} ({mode}, {threads})");
        if let Some(admin) = &admin {
            let admin = admin.local_addr().map_err(|e| Error::listen("the admin address", "", e))?;
            println!("admin listening on http://{admin} ({admin_paths})");
        }
        if let Some(ext_authz) = &ext_authz {
            let grpc = ext_authz.local_addr().map_err(|e| Error::listen("the ext_authz gRPC address", "", e))?;
            println!("ext_authz gRPC listening on {grpc}");
        }
        for line in policy {
            tracing::info!(target: "portcullis::gateway", "{line}");
        }
        reload_on_hangup(gateway.clone(), args);
        // One signal stops every listener; either one ending stops the other.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let stop = std::sync::Arc::new(stop);
        let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let signalled = std::sync::Arc::clone(&stop);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = signalled.send(true);
        });
        let grpc = ext_authz.map(|listener| {
            let (gateway, stop, stopped) = (gateway.clone(), std::sync::Arc::clone(&stop), stopped.clone());
            tokio::spawn(async move {
                let served = portcullis_gateway::serve_ext_authz(gateway, listener, until_stopped(stopped)).await;
                let _ = stop.send(true);
                served
            })
        });
        let served = portcullis_gateway::serve(gateway, listener, admin, until_stopped(stopped)).await;
        let _ = stop.send(true);
        if let Some(grpc) = grpc {
            match grpc.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(Error::stopped("the ext_authz gRPC service stopped", e)),
                Err(e) => return Err(Error::stopped("the ext_authz gRPC service stopped", std::io::Error::other(e))),
            }
        }
        served.map_err(|e| Error::stopped("the gateway stopped", e))
    })
}

/// Raises the soft limit on open files to the hard limit: each connection is a descriptor, and many systems start
/// services with a soft limit of 1,024. Warns when the limit stays below what `max_connections` needs.
fn raise_open_files_limit(max_connections: usize, ext_authz_grpc: bool) {
    // Two descriptors per proxied connection (client and upstream), one per connection of the gRPC ext_authz
    // listener (which has its own max_connections), plus listeners, key fetches and logs.
    let per_connection = if ext_authz_grpc { 3 } else { 2 };
    let wanted = (max_connections as u64).saturating_mul(per_connection).saturating_add(64);
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
            let reloaded = config(&args.gateway).and_then(|config| {
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
