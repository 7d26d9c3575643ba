//! What stands in front of an upstream: the `portcullis` gateway binary (as a reverse proxy, or as the forward-auth
//! endpoint), and nginx (`auth_request`) or Caddy (`forward_auth`) asking it — with the configurations the
//! deployment guides show, generated here in one place (docs/deployment/nginx.md and caddy.md contain their output
//! for example addresses; a test checks it).

use crate::process::{Running, free_port, url_in};
use crate::raw::{RawRequest, send};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::process::Command;

/// The claim headers the deployment guides' configurations hand from portcullis to the upstream (and remove from
/// client requests).
pub const GUIDE_CLAIM_HEADERS: [&str; 2] = ["X-Auth-Subject", "X-Auth-Permissions"];

/// The nginx variable holding a claim header's value: `X-Auth-Subject` → `auth_subject`.
fn nginx_variable(header: &str) -> String {
    let name = header.to_ascii_lowercase().replace('-', "_");
    name.strip_prefix("x_").map(str::to_owned).unwrap_or(name)
}

/// The nginx configuration the docs show: nginx on `127.0.0.1:port` asks the gateway at `gateway` (`host:port`,
/// forward-auth) about each request with `auth_request`, hands over `claim_headers` from its answer (replacing
/// client copies), and proxies to `upstream` (`host:port`). `dir` holds nginx's pid, log and temporary files.
pub fn nginx_config(dir: &str, port: u16, gateway: &str, upstream: &str, claim_headers: &[&str]) -> String {
    let keep: String = claim_headers
        .iter()
        .map(|header| {
            let variable = nginx_variable(header);
            let upstream_variable = header.to_ascii_lowercase().replace('-', "_");
            format!("            auth_request_set ${variable} $upstream_http_{upstream_variable};\n")
        })
        .collect();
    let set: String = claim_headers
        .iter()
        .map(|header| format!("            proxy_set_header {header} ${};\n", nginx_variable(header)))
        .collect();
    format!(
        r#"master_process off;
daemon off;
error_log {dir}/error.log;
pid {dir}/nginx.pid;
events {{}}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            auth_request /_portcullis;
{keep}            auth_request_set $auth_challenge $upstream_http_www_authenticate;
            # The gateway's answer replaces whatever the client sent under these names.
{set}            proxy_set_header Authorization "";
            error_page 401 = @unauthorized;
            error_page 403 = @forbidden;
            proxy_pass http://{upstream};
        }}
        location = /_portcullis {{
            internal;
            proxy_pass http://{gateway}/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
        }}
        location @unauthorized {{
            add_header WWW-Authenticate $auth_challenge always;
            return 401;
        }}
        location @forbidden {{
            add_header WWW-Authenticate $auth_challenge always;
            return 403;
        }}
    }}
}}
"#
    )
}

/// The Caddyfile the docs show: Caddy on `127.0.0.1:port` removes client copies of `claim_headers`, asks the
/// gateway at `gateway` with `forward_auth`, copies those headers from its answer, and proxies to `upstream`.
pub fn caddyfile(port: u16, gateway: &str, upstream: &str, claim_headers: &[&str]) -> String {
    let remove: String = claim_headers.iter().map(|header| format!("        request_header -{header}\n")).collect();
    let copy = claim_headers.join(" ");
    format!(
        r#"{{
    admin off
    auto_https off
}}
http://127.0.0.1:{port} {{
    # `route` keeps this order: drop client copies, ask portcullis, drop the token, proxy.
    route {{
{remove}        forward_auth {gateway} {{
            uri /auth
            copy_headers {copy}
        }}
        request_header -Authorization
        reverse_proxy {upstream}
    }}
}}
"#
    )
}

/// A front proxy process and the address clients use.
pub struct Front {
    /// `127.0.0.1:PORT`.
    pub address: String,
    /// The process, killed when dropped.
    pub process: Running,
}

/// Starts nginx with [`nginx_config`].
pub async fn nginx_front(gateway: &str, upstream: &str, claim_headers: &[&str]) -> Front {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().to_str().unwrap().to_owned();
    let port = free_port();
    std::fs::write(dir.path().join("nginx.conf"), nginx_config(&prefix, port, gateway, upstream, claim_headers))
        .unwrap();
    let mut command = Command::new("nginx");
    command.args(["-c", &format!("{prefix}/nginx.conf"), "-p", &prefix, "-e", &format!("{prefix}/error.log")]);
    let mut process = Running::spawn("nginx front", command, dir);
    process.until_listening(port).await;
    Front { address: format!("127.0.0.1:{port}"), process }
}

/// Starts Caddy with [`caddyfile`].
pub async fn caddy_front(gateway: &str, upstream: &str, claim_headers: &[&str]) -> Front {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let file = dir.path().join("Caddyfile");
    std::fs::write(&file, caddyfile(port, gateway, upstream, claim_headers)).unwrap();
    let mut command = Command::new("caddy");
    command
        .args(["run", "--config", file.to_str().unwrap(), "--adapter", "caddyfile"])
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path());
    let mut process = Running::spawn("caddy front", command, dir);
    process.until_listening(port).await;
    Front { address: format!("127.0.0.1:{port}"), process }
}

/// The `portcullis` binary running `serve --config FILE`.
pub struct GatewayProcess {
    /// The main listener, `127.0.0.1:PORT`.
    pub address: String,
    /// The process, killed when dropped.
    pub process: Running,
}

impl GatewayProcess {
    /// Runs `binary serve --config FILE` with `config` (which must listen on `127.0.0.1:0` and have an
    /// `admin_listen`), reads the addresses it announces, and waits (bounded) until its `/ready` answers 200 —
    /// every issuer's keys loaded.
    pub async fn start(binary: &Path, name: &str, config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gateway.toml");
        std::fs::write(&file, config).unwrap();
        let mut command = Command::new(binary);
        command
            .args(["serve", "--config", file.to_str().unwrap()])
            .env_remove("PORTCULLIS_CONFIG")
            .env("RUST_LOG", "warn");
        let mut process = Running::spawn(name, command, dir);
        let address = url_in(&process.line_with("portcullis gateway listening on").await);
        let admin = url_in(&process.line_with("admin listening on").await);
        process.drain_stdout();
        let admin = admin.trim_start_matches("http://").to_owned();
        let started = Instant::now();
        loop {
            let ready = send(&admin, &RawRequest::new("GET", "/ready"), Duration::from_secs(2)).await;
            if ready.is_ok_and(|r| r.status == 200) {
                break;
            }
            assert!(
                started.elapsed() < crate::process::START_TIMEOUT,
                "{name} was not ready in time:\n{}",
                process.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { address: address.trim_start_matches("http://").to_owned(), process }
    }
}
