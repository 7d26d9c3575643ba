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
/// client requests): the gateway's default managed headers (`crates/portcullis-gateway/tests/proxies.rs` checks the
/// two lists agree).
pub const GUIDE_CLAIM_HEADERS: [&str; 4] = ["X-Auth-Issuer", "X-Auth-Permissions", "X-Auth-Scope", "X-Auth-Subject"];

/// nginx's variable for a response header of the auth subrequest (`X-Auth-Subject` → `$upstream_http_x_auth_subject`).
fn nginx_variable(header: &str) -> String {
    header.to_ascii_lowercase().replace('-', "_")
}

/// The nginx configuration the docs show: nginx on `127.0.0.1:port` asks the gateway at `gateway` (`host:port`,
/// `--forward-auth nginx`) about each request with `auth_request`, hands over the `managed` headers from its
/// answer (replacing client copies), sets or clears the forwarding headers, and proxies the target unchanged to
/// `upstream`. `dir` holds nginx's pid, log and temporary files.
pub fn nginx_config(dir: &str, port: u16, gateway: &str, upstream: &str, managed: &[&str]) -> String {
    let mut copy = String::new();
    for header in managed {
        let variable = nginx_variable(header);
        copy.push_str(&format!("            auth_request_set ${variable} $upstream_http_{variable};\n"));
    }
    copy.push_str("            # The gateway's answer replaces whatever the client sent under these names.\n");
    for header in managed {
        copy.push_str(&format!("            proxy_set_header {header} ${};\n", nginx_variable(header)));
    }
    let prelude = crate::process::nginx_prelude(dir);
    format!(
        r#"{prelude}    # Headers with underscores (X_Auth_Subject) are dropped, never passed on (nginx's default, stated).
    underscores_in_headers off;
    ignore_invalid_headers on;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            auth_request /_portcullis;
            auth_request_set $auth_challenge $upstream_http_www_authenticate;
{copy}            proxy_set_header Authorization "";
            # The hop to the upstream is nginx's to describe: client copies are replaced or cleared.
            proxy_set_header Forwarded "";
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Port "";
            proxy_set_header X-Forwarded-Prefix "";
            proxy_set_header X-Forwarded-Server "";
            proxy_set_header X-Forwarded-Method "";
            proxy_set_header X-Forwarded-Uri "";
            proxy_set_header X-Real-IP $remote_addr;
            # The gateway's description of the request is for the gateway alone.
            proxy_set_header X-Original-URI "";
            proxy_set_header X-Original-Method "";
            # nginx copies the gateway's WWW-Authenticate into a 401 itself, not into a 403.
            error_page 403 = @forbidden;
            # No URI part: the upstream gets the target exactly as the gateway was asked about it.
            proxy_pass http://{upstream};
        }}
        location = /_portcullis {{
            internal;
            proxy_pass http://{gateway}/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
            # A header block the gateway's HTTP parser refuses (too many headers, control bytes) is a refusal,
            # not the 500 nginx makes of any status but 2xx, 401 and 403.
            proxy_intercept_errors on;
            error_page 400 431 = @refused;
        }}
        location @refused {{
            return 403;
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

/// The Caddyfile the docs show: Caddy on `127.0.0.1:port` removes client copies of the `managed` headers and of
/// `Forwarded` and `X-Real-IP`, asks the gateway at `gateway` (`--forward-auth caddy`), copies the managed headers
/// from its answer, and proxies to `upstream`.
pub fn caddyfile(port: u16, gateway: &str, upstream: &str, managed: &[&str]) -> String {
    let mut drop = String::new();
    for header in managed {
        drop.push_str(&format!("        request_header -{header}\n"));
    }
    let copied = managed.join(" ");
    format!(
        r#"{{
    admin off
    auto_https off
}}
http://127.0.0.1:{port} {{
    # `route` keeps this order: drop client copies, ask portcullis, drop the token, proxy.
    route {{
        # Client copies of the headers portcullis sets (a spelling this misses is refused by portcullis).
{drop}        request_header -Forwarded
        request_header -X-Real-IP
        forward_auth {gateway} {{
            uri /auth
            copy_headers {copied}
        }}
        request_header -Authorization
        # reverse_proxy sets X-Forwarded-For, -Host and -Proto itself (client copies are replaced).
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
