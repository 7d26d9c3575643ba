//! The gateway's configuration flags, shared by `serve` and `check-config`: a file completed by flags and
//! `PORTCULLIS_*` variables the same way for both, and checked by the same [`Config::check`], so `check-config`
//! refuses exactly what `serve` would.

use crate::Error;
use clap::Args;
use portcullis_gateway::{
    Config, ConfigError, ConfigErrors, DpopSetting, FrontProxy, IssuerConfig, LogFormat, Unmatched,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    /// A TOML config file (routes, rules, several issuers); `portcullis check-config` validates it.
    #[arg(long, env = "PORTCULLIS_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "PORTCULLIS_LISTEN")]
    listen: Option<SocketAddr>,
    /// The API to protect (reverse proxy mode).
    #[arg(long, env = "PORTCULLIS_UPSTREAM", value_name = "URL")]
    upstream: Option<String>,
    /// The trusted issuer, exactly as in tokens.
    #[arg(long, env = "PORTCULLIS_ISSUER", value_name = "ISS")]
    pub(crate) issuer: Option<String>,
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
    /// Traefik ForwardAuth, Envoy ext_authz in HTTP mode); only that proxy's description of the request is read.
    #[arg(long, env = "PORTCULLIS_FORWARD_AUTH", value_name = "PROXY", value_parser = front_proxy_parser())]
    forward_auth: Option<FrontProxy>,
    /// With --forward-auth envoy: the path_prefix of Envoy's HTTP ext_authz service, taken off each check
    /// request's target (default: none).
    #[arg(long, env = "PORTCULLIS_ENVOY_PATH_PREFIX", value_name = "PREFIX")]
    envoy_path_prefix: Option<String>,
    /// Serve Envoy's gRPC ext_authz service (envoy.service.auth.v3.Authorization/Check, plaintext HTTP/2) on this
    /// address, next to the HTTP listener.
    #[arg(long, env = "PORTCULLIS_EXT_AUTHZ_GRPC", value_name = "ADDR")]
    ext_authz_grpc: Option<SocketAddr>,
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
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "PORTCULLIS_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that an https:// upstream is verified against, instead of the system's roots.
    #[arg(long, env = "PORTCULLIS_UPSTREAM_CA", value_name = "FILE")]
    upstream_ca: Option<PathBuf>,
    /// The external base URL clients use (https://api.example.com): the origin of DPoP proofs' htu and of the
    /// resource_metadata URL. Required for DPoP.
    #[arg(long, env = "PORTCULLIS_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// DPoP (RFC 9449) for routes and issuers that set none: off, allowed or required ([dpop].mode).
    #[arg(long = "dpop-mode", env = "PORTCULLIS_DPOP_MODE", value_name = "MODE", value_parser = parse_dpop_mode)]
    dpop_mode: Option<DpopSetting>,
    /// A file holding at least 32 secret bytes that DPoP server nonces are derived from; turns nonces on
    /// ([dpop].nonce_secret_file).
    #[arg(long, env = "PORTCULLIS_DPOP_NONCE_SECRET_FILE", value_name = "FILE")]
    dpop_nonce_secret_file: Option<PathBuf>,
}

fn parse_dpop_mode(text: &str) -> Result<DpopSetting, String> {
    match text {
        "off" => Ok(DpopSetting::Off),
        "allowed" => Ok(DpopSetting::Allowed),
        "required" => Ok(DpopSetting::Required),
        other => Err(format!("{other:?} is not a DPoP mode (off, allowed or required)")),
    }
}

/// `nginx`, `caddy`, `traefik` or `envoy`; clap lists the choices when the value is missing or unknown.
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

/// The configuration from the file (when given) with the flags applied, checked. The file's errors are all
/// reported, one per line as `FILE:LINE:COLUMN: key: message`; without a file, what the flags leave wrong is a
/// usage error.
pub(crate) fn config(args: &GatewayArgs) -> Result<Config, Error> {
    match (&args.issuer, args.audiences.is_empty()) {
        (Some(_), true) => return Err(Error::Usage("--issuer needs at least one --audience".into())),
        (None, false) => return Err(Error::Usage("--audience needs --issuer".into())),
        _ => {}
    }
    match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
            Config::from_toml_with(&text, |config| complete(args, config)).map_err(|errors| file_errors(path, &errors))
        }
        // Without a file there are no routes: every request needs a valid token.
        None => {
            let mut config = Config::defaults();
            config.unmatched = Unmatched::Authenticated;
            complete(args, &mut config);
            config.check().map_err(|errors| Error::UsageBecause(errors.into()))?;
            Ok(config)
        }
    }
}

/// Applies the flags (and their variables) over what the file says.
fn complete(args: &GatewayArgs, config: &mut Config) {
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
    if args.envoy_path_prefix.is_some() {
        config.envoy_path_prefix.clone_from(&args.envoy_path_prefix);
    }
    if args.ext_authz_grpc.is_some() {
        config.ext_authz_grpc = args.ext_authz_grpc;
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
    if args.public_url.is_some() {
        config.public_url.clone_from(&args.public_url);
    }
    if let Some(mode) = args.dpop_mode {
        config.dpop.mode = mode;
    }
    if args.dpop_nonce_secret_file.is_some() {
        config.dpop.nonce_secret_file.clone_from(&args.dpop_nonce_secret_file);
    }
    if let Some(issuer) = &args.issuer {
        config.issuers.retain(|known| &known.issuer != issuer);
        let mut entry = IssuerConfig::new(issuer.clone(), args.audiences.clone()).with_jwks_uri(args.jwks_uri.clone());
        entry.leeway_secs = args.leeway_secs;
        entry.max_token_age_secs = args.max_token_age_secs;
        entry.typ.clone_from(&args.typ);
        entry.algorithms.clone_from(&args.algorithms);
        config.issuers.push(entry);
    }
}

/// What is valid but probably not meant, one line each (`FILE: warning: key: message`); only a file has any: a
/// configuration from flags alone has no routes on purpose.
pub(crate) fn warnings(args: &GatewayArgs, config: &Config) -> Vec<String> {
    let Some(path) = &args.config else { return Vec::new() };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    config.warnings().into_iter().map(|warning| warning_line(path, &warning.located_in(&text))).collect()
}

fn warning_line(path: &Path, warning: &ConfigError) -> String {
    let line = warning.render(&path.display().to_string());
    match line.split_once(": ") {
        Some((place, rest)) => format!("{place}: warning: {rest}"),
        None => line,
    }
}

/// A file's errors as one configuration error, one line per error with the file's name leading.
fn file_errors(path: &Path, errors: &ConfigErrors) -> Error {
    Error::Config { what: errors.render(&path.display().to_string()), source: None }
}
