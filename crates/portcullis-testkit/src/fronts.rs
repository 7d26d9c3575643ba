//! What stands in front of an upstream: the `portcullis` gateway binary (as a reverse proxy, or as the forward-auth
//! or ext_authz endpoint), and nginx (`auth_request`), Caddy (`forward_auth`) or Envoy (`ext_authz`, gRPC or HTTP)
//! asking it — with the configurations the deployment guides show, generated here in one place
//! (docs/deployment/nginx.md, caddy.md and envoy.md contain their output for example addresses; tests check it).

use crate::envoy::Envoy;
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
            # nginx passes only WWW-Authenticate of a 401 on; the DPoP server nonce is passed by hand (when set).
            auth_request_set $dpop_nonce $upstream_http_dpop_nonce;
            add_header DPoP-Nonce $dpop_nonce always;
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

/// How Envoy's `ext_authz` filter asks portcullis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvoyMode {
    /// The gRPC `envoy.service.auth.v3.Authorization/Check` service (`portcullis serve --ext-authz-grpc ADDR`).
    Grpc,
    /// Envoy's HTTP service: the original request's method and path, behind `path_prefix`
    /// (`portcullis serve --forward-auth envoy --envoy-path-prefix /ext-authz`).
    Http,
}

impl EnvoyMode {
    /// Both modes, gRPC first.
    pub const ALL: [EnvoyMode; 2] = [EnvoyMode::Grpc, EnvoyMode::Http];

    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            EnvoyMode::Grpc => "grpc",
            EnvoyMode::Http => "http",
        }
    }
}

/// The `path_prefix` of the HTTP-mode bootstrap: portcullis strips it (`envoy_path_prefix`).
pub const ENVOY_PATH_PREFIX: &str = "/ext-authz";

/// The `stat_prefix` of the bootstraps' connection manager: Envoy counts checks as `http.api.ext_authz.ok`,
/// `.denied`, `.error`.
pub const ENVOY_STAT_PREFIX: &str = "api";

/// The headers the bootstraps remove from every client request before any filter runs: the forwarding family,
/// which Envoy would otherwise pass on (it sets `X-Forwarded-For` and `X-Forwarded-Proto` itself), the headers
/// other proxies use to describe a request to their authorizer, and the path and method overrides some frameworks
/// route on: none of them may reach the API or steer a decision.
pub const ENVOY_REMOVED_HEADERS: [&str; 11] = [
    "forwarded",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-real-ip",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The prefix of header names the bootstraps also remove (`X-Original-URI`, `-Method`, `-URL`, …).
pub const ENVOY_REMOVED_PREFIX: &str = "x-original-";

/// The request headers the HTTP-mode bootstrap sends with a check besides Host, method and path: the token, the
/// request id, and what tells a CORS preflight.
pub const ENVOY_CHECKED_HEADERS: [&str; 5] =
    ["authorization", "x-request-id", "origin", "access-control-request-method", "access-control-request-headers"];

/// The answer headers of a refusal or an answered preflight the HTTP-mode bootstrap passes to the client (status
/// and body always pass), besides every `access-control-*` header.
pub const ENVOY_CLIENT_HEADERS: [&str; 5] =
    ["www-authenticate", "content-type", "retry-after", "cache-control", "vary"];

/// `host:port` as an Envoy `socket_address`.
fn envoy_socket(address: &str) -> String {
    let (host, port) = address.rsplit_once(':').unwrap_or_else(|| panic!("{address} is not host:port"));
    format!("{{ address: {host}, port_value: {port} }}")
}

/// A static cluster of one endpoint; `http2` for the gRPC authorizer; over TLS with `tls`.
fn envoy_cluster(name: &str, address: &str, connect_timeout: &str, http2: bool, tls: Option<&AuthorizerTls>) -> String {
    let how = if tls.is_some() { "over TLS" } else { "plaintext, prior knowledge" };
    let protocol = if http2 {
        "    # gRPC needs HTTP/2 (HOW) to portcullis.
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
"
        .replace("HOW", how)
    } else {
        String::new()
    };
    let transport = tls.map(AuthorizerTls::transport_socket).unwrap_or_default();
    format!(
        "  - name: {name}
    type: STATIC
    connect_timeout: {connect_timeout}
{protocol}{transport}    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {socket}
",
        socket = envoy_socket(address)
    )
}

/// TLS from Envoy to portcullis's gRPC ext_authz listener: the CA Envoy trusts and the name portcullis's
/// certificate must carry (sent as SNI and matched against its DNS subject alternative names).
#[derive(Debug, Clone)]
pub struct AuthorizerTls {
    /// A PEM file with the certificate authority that signed portcullis's certificate.
    pub trusted_ca: std::path::PathBuf,
    /// The DNS name in portcullis's certificate.
    pub server_name: String,
}

impl AuthorizerTls {
    /// The cluster's `transport_socket`: TLS verified against `trusted_ca` and `server_name`, offering ALPN `h2`.
    fn transport_socket(&self) -> String {
        format!(
            "    # TLS to portcullis, verified against the CA that signed its certificate and the name in it.
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: {name}
        common_tls_context:
          alpn_protocols: [h2]
          validation_context:
            trusted_ca: {{ filename: {ca} }}
            match_typed_subject_alt_names:
            - san_type: DNS
              matcher: {{ exact: {name} }}
",
            name = self.server_name,
            ca = self.trusted_ca.display(),
        )
    }
}

/// A list of case-insensitive exact header matchers, one per line at `indent`.
fn envoy_patterns(indent: &str, names: &[String]) -> String {
    names.iter().map(|name| format!("{indent}- {{ exact: {name}, ignore_case: true }}\n")).collect()
}

/// The Envoy bootstrap the docs show (docs/deployment/envoy.md): a listener on `listen` (`host:port`; port 0 lets
/// Envoy pick one, read back from its admin `/listeners`) with path normalization on and header names with
/// underscores refused, that removes client copies of the `managed` headers and of [`ENVOY_REMOVED_HEADERS`], asks
/// portcullis at `authorizer` in `mode` (failing closed), and routes what portcullis allowed to `upstream` with
/// the claim headers of portcullis's answer and without the token. Admin on `admin` (loopback only).
pub fn envoy_bootstrap(
    mode: EnvoyMode,
    listen: &str,
    admin: &str,
    authorizer: &str,
    upstream: &str,
    managed: &[&str],
) -> String {
    bootstrap(mode, listen, admin, authorizer, upstream, managed, None)
}

/// [`envoy_bootstrap`] in gRPC mode, with Envoy speaking TLS to portcullis's gRPC ext_authz listener as `tls`
/// says (portcullis with `tls_cert` and `tls_key`).
pub fn envoy_grpc_tls_bootstrap(
    listen: &str,
    admin: &str,
    authorizer: &str,
    upstream: &str,
    managed: &[&str],
    tls: &AuthorizerTls,
) -> String {
    bootstrap(EnvoyMode::Grpc, listen, admin, authorizer, upstream, managed, Some(tls))
}

fn bootstrap(
    mode: EnvoyMode,
    listen: &str,
    admin: &str,
    authorizer: &str,
    upstream: &str,
    managed: &[&str],
    tls: Option<&AuthorizerTls>,
) -> String {
    let lower: Vec<String> = managed.iter().map(|name| name.to_ascii_lowercase()).collect();
    let mut removed: Vec<String> = lower.clone();
    removed.extend(ENVOY_REMOVED_HEADERS.iter().map(|name| (*name).to_owned()));
    let mut removals: String = removed.iter().map(|name| format!("              - remove: {name}\n")).collect();
    removals.push_str(&format!(
        "              - remove_on_match:\n                  key_matcher: {{ prefix: {ENVOY_REMOVED_PREFIX} }}\n"
    ));
    let service = match mode {
        EnvoyMode::Grpc => {
            "              # Envoy sends the method, path (with the query) and all request headers; portcullis answers
              # the claim headers to set and the headers to remove (the token), or the refusal to send.
              grpc_service:
                envoy_grpc:
                  cluster_name: portcullis
                timeout: 1s
"
            .to_owned()
        }
        EnvoyMode::Http => {
            let asked: Vec<String> = ENVOY_CHECKED_HEADERS.iter().map(|h| (*h).to_owned()).collect();
            let client: Vec<String> = ENVOY_CLIENT_HEADERS.iter().map(|h| (*h).to_owned()).collect();
            format!(
                "              # The request headers the check carries besides Host, method and path (Origin and the
              # Access-Control-Request-* pair: portcullis tells a CORS preflight by them).
              allowed_headers:
                patterns:
{asked}              # The check is the original method on {ENVOY_PATH_PREFIX} + the original path and query.
              http_service:
                server_uri:
                  uri: http://{authorizer}
                  cluster: portcullis
                  timeout: 1s
                path_prefix: {ENVOY_PATH_PREFIX}
                authorization_response:
                  # Copied from portcullis's 200 into the request for the API, replacing any value.
                  allowed_upstream_headers:
                    patterns:
{upstream_headers}                  # Passed to the client with portcullis's status and body when it refuses or answers a preflight.
                  allowed_client_headers:
                    patterns:
{client}                    - {{ prefix: access-control-, ignore_case: true }}
",
                asked = envoy_patterns("                ", &asked),
                upstream_headers = envoy_patterns("                    ", &lower),
                client = envoy_patterns("                    ", &client),
            )
        }
    };
    let authorizer_cluster = envoy_cluster("portcullis", authorizer, "0.25s", mode == EnvoyMode::Grpc, tls);
    let upstream_cluster = envoy_cluster("api", upstream, "1s", false, None);
    format!(
        r#"admin:
  address:
    socket_address: {admin_socket}
static_resources:
  listeners:
  - name: api
    address:
      socket_address: {listen_socket}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {ENVOY_STAT_PREFIX}
          # Envoy is the edge: it appends the peer to X-Forwarded-For (trust its last entry), sets
          # X-Forwarded-Proto, and removes client-sent x-envoy-* headers.
          use_remote_address: true
          # The path portcullis checks is the path the API gets: dot-segments resolved, slashes merged, and an
          # encoded slash or backslash (which an API could decode into a different path) refused with 400.
          normalize_path: true
          merge_slashes: true
          path_with_escaped_slashes_action: REJECT_REQUEST
          common_http_protocol_options:
            # X_Auth_Subject would reach CGI-style APIs as HTTP_X_AUTH_SUBJECT: refused with 400.
            headers_with_underscores_action: REJECT_REQUEST
          # Client copies of claim, forwarding and override headers are gone before anything reads the request.
          early_header_mutation_extensions:
          - name: envoy.http.early_header_mutation.header_mutation
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation
              mutations:
{removals}          route_config:
            name: api
            virtual_hosts:
            - name: api
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route:
                  cluster: api
                  timeout: 30s
          http_filters:
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              # portcullis unreachable, slow or failing: the request is refused (503), never let through.
              failure_mode_allow: false
              status_on_error:
                code: ServiceUnavailable
              # The check carries the body's first byte (never more, and without waiting for the rest): the
              # check shows neither Transfer-Encoding nor a size for a chunked or HTTP/2 body, so this byte is
              # what tells portcullis that an OPTIONS request with a body is no browser preflight. The API still
              # gets the whole body.
              with_request_body:
                max_request_bytes: 1
                allow_partial_message: true
                pack_as_bytes: true
{service}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{upstream_cluster}{authorizer_cluster}"#,
        admin_socket = envoy_socket(admin),
        listen_socket = envoy_socket(listen),
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

/// Starts Envoy with [`envoy_bootstrap`] in `mode`, asking portcullis at `authorizer` (its gRPC ext_authz address,
/// or its HTTP listener in `forward_auth = "envoy"` mode), in front of `upstream`; listener and admin on ports
/// Envoy picks.
pub async fn envoy_front(mode: EnvoyMode, authorizer: &str, upstream: &str, claim_headers: &[&str]) -> Envoy {
    let bootstrap = envoy_bootstrap(mode, "127.0.0.1:0", "127.0.0.1:0", authorizer, upstream, claim_headers);
    Envoy::start(&format!("envoy front ({})", mode.name()), &bootstrap).await
}

/// The line `portcullis serve` prints for its gRPC ext_authz listener, followed by the bound address.
pub const EXT_AUTHZ_GRPC_LINE: &str = "ext_authz gRPC listening on";

/// The `portcullis` binary running `serve --config FILE`.
pub struct GatewayProcess {
    /// The main listener, `127.0.0.1:PORT`.
    pub address: String,
    /// The admin listener, `127.0.0.1:PORT`.
    pub admin: String,
    /// The gRPC ext_authz listener, `127.0.0.1:PORT`, when the configuration has `ext_authz_grpc`.
    pub ext_authz_grpc: Option<String>,
    /// The process, killed when dropped.
    pub process: Running,
}

impl GatewayProcess {
    /// Runs `binary serve --config FILE` with `config` (which must listen on `127.0.0.1:0` and have an
    /// `admin_listen`), reads the addresses it announces (the gRPC ext_authz one too when `config` sets
    /// `ext_authz_grpc`), and waits (bounded) until its `/ready` answers 200 — every issuer's keys loaded.
    pub async fn start(binary: &Path, name: &str, config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gateway.toml");
        std::fs::write(&file, config).unwrap();
        let mut command = Command::new(binary);
        command
            .args(["serve", "--config", file.to_str().unwrap()])
            .env_remove("PORTCULLIS_CONFIG")
            .env_remove("PORTCULLIS_EXT_AUTHZ_GRPC")
            .env("RUST_LOG", "warn");
        let mut process = Running::spawn(name, command, dir);
        let grpc = config.lines().any(|line| line.trim_start().starts_with("ext_authz_grpc"));
        let mut markers = vec!["portcullis gateway listening on", "admin listening on"];
        if grpc {
            markers.push(EXT_AUTHZ_GRPC_LINE);
        }
        let lines = process.lines_with(&markers).await;
        process.drain_stdout();
        let address = url_in(&lines[0]).trim_start_matches("http://").to_owned();
        let admin = url_in(&lines[1]).trim_start_matches("http://").to_owned();
        let ext_authz_grpc = lines.get(2).map(|line| {
            let rest = &line[line.find(EXT_AUTHZ_GRPC_LINE).unwrap() + EXT_AUTHZ_GRPC_LINE.len()..];
            rest.split_whitespace().next().unwrap_or_else(|| panic!("no address: {line}")).to_owned()
        });
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
        Self { address, admin, ext_authz_grpc, process }
    }
}
