//! The gRPC ext_authz listener over TLS: with `tls_cert` and `tls_key`, `portcullis serve --ext-authz-grpc`
//! speaks only TLS there too (the main listener's certificate, ALPN `h2`). A real Envoy trusting the test CA gets
//! allowances and refusals through it; an Envoy trusting another CA gets nothing from it and refuses (fail
//! closed); a plaintext gRPC client is refused; SIGHUP gives it a new pair. Every CA, certificate and key is made
//! here, at test time.
//!
//! Without Envoy (or python3 for the upstream) the Envoy test prints `SKIPPED:`; with `CI=true` it fails instead.
#![allow(clippy::unwrap_used)]

mod support;

use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use portcullis_testkit::envoy::{self, Envoy};
use portcullis_testkit::fronts::{
    AuthorizerTls, ENVOY_STAT_PREFIX, GUIDE_CLAIM_HEADERS, GatewayProcess, envoy_grpc_tls_bootstrap,
};
use portcullis_testkit::issuers::{AUDIENCE_A, Credential, Issuers};
use portcullis_testkit::probe::require;
use portcullis_testkit::process::available;
use portcullis_testkit::raw::{RawRequest, RawResponse, send};
use portcullis_testkit::upstreams::{Upstream, served};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use support::ca::Ca;

/// The DNS name in portcullis's test certificate; Envoy sends it as SNI and checks it.
const SERVER_NAME: &str = "portcullis.test";

/// The gateway: the gRPC ext_authz listener, TLS with `cert` and `key`, issuer A, routes of three kinds.
fn gateway_config(issuers: &Issuers, cert: &Path, key: &Path) -> String {
    let a = issuers.a.issuer();
    format!(
        r#"listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
workers = 1
ext_authz_grpc = "127.0.0.1:0"
tls_cert = "{cert}"
tls_key = "{key}"
[[issuers]]
issuer = "{a}"
audiences = ["{AUDIENCE_A}"]
[[routes]]
path = "/public/*"
public = true
[[routes]]
path = "/api/private"
[[routes]]
path = "/admin/*"
require = {{ permission = "admin:all" }}
"#,
        cert = cert.display(),
        key = key.display(),
    )
}

/// A gateway process with TLS, its certificate signed by a new CA (whose PEM file is returned).
async fn tls_gateway(issuers: &Issuers, dir: &Path) -> (GatewayProcess, PathBuf) {
    let ca = Ca::new("portcullis test CA");
    let (cert, key, ca_file) = ca.write_leaf(dir, &[SERVER_NAME, "127.0.0.1"]);
    let binary = Path::new(env!("CARGO_BIN_EXE_portcullis"));
    let gateway = GatewayProcess::start(binary, "portcullis (TLS)", &gateway_config(issuers, &cert, &key)).await;
    (gateway, ca_file)
}

/// Sends `request` with `credential`'s token to Envoy.
async fn ask(envoy: &Envoy, issuers: &Issuers, credential: Credential, target: &str) -> RawResponse {
    let mut request = RawRequest::new("GET", target);
    if let Some(token) = issuers.token(credential) {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    send(&envoy.address, &request, Duration::from_secs(5)).await.unwrap_or_else(|e| panic!("{target}: {e}"))
}

/// The value of a header as the WSGI upstream received it.
fn received(response: &RawResponse, header: &str) -> Option<String> {
    let wanted = header.to_ascii_lowercase();
    served(response).headers.into_iter().find_map(|(name, value)| {
        let name = name.to_ascii_lowercase().replace('_', "-");
        (name.strip_prefix("http-").unwrap_or(&name) == wanted).then_some(value)
    })
}

/// Envoy in front of `upstream`, asking portcullis at `grpc` over TLS, trusting the CA in `trusted_ca`.
async fn envoy_over_tls(grpc: &str, upstream: &str, trusted_ca: PathBuf) -> Envoy {
    let tls = AuthorizerTls { trusted_ca, server_name: SERVER_NAME.to_owned() };
    let bootstrap = envoy_grpc_tls_bootstrap("127.0.0.1:0", "127.0.0.1:0", grpc, upstream, &GUIDE_CLAIM_HEADERS, &tls);
    if let Err(why) = envoy::validate(&bootstrap) {
        panic!("envoy --mode validate refused:\n{bootstrap}\n{why}");
    }
    Envoy::start("envoy front (gRPC over TLS)", &bootstrap).await
}

/// Envoy asks portcullis over TLS: an allowance reaches the upstream with the claim headers and without the
/// token, refusals reach the client with their status and challenge, Envoy's counters move, and its TLS
/// handshakes with portcullis are counted. An Envoy trusting another CA cannot talk to portcullis and refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_checks_over_tls() {
    if !require("envoy", envoy::installed()) || !require("wsgi upstream", available("python3", &["--version"])) {
        return;
    }
    let issuers = Issuers::start().await;
    let upstream = Upstream::wsgi().await;
    let dir = tempfile::tempdir().unwrap();
    let (gateway, ca_file) = tls_gateway(&issuers, dir.path()).await;
    let grpc = gateway.ext_authz_grpc.clone().expect("the gateway announces its gRPC ext_authz address");
    let envoy = envoy_over_tls(&grpc, &upstream.address, ca_file).await;
    let counter = |name: &str| format!("http.{ENVOY_STAT_PREFIX}.ext_authz.{name}");

    let response = ask(&envoy, &issuers, Credential::Admin, "/admin/x").await;
    assert_eq!(response.status, 200, "{}\n{}", String::from_utf8_lossy(&response.body), envoy.log());
    assert_eq!(served(&response).resource.as_deref(), Some("admin"));
    assert_eq!(received(&response, "x-auth-subject").as_deref(), Some("auth0|admin"), "{response:?}");
    assert_eq!(received(&response, "authorization"), None, "the token reached the upstream");
    assert_eq!(envoy.counter_reaching(&counter("ok"), 1).await, 1);

    let response = ask(&envoy, &issuers, Credential::Low, "/admin/x").await;
    assert_eq!(response.status, 403, "{response:?}");
    let challenge = response.header_text("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer") && challenge.contains("insufficient_scope"), "{challenge}");
    assert_eq!(served(&response).resource, None, "a refusal reached the upstream");
    let response = ask(&envoy, &issuers, Credential::None, "/api/private").await;
    assert_eq!(response.status, 401, "{response:?}");
    assert_eq!(envoy.counter_reaching(&counter("denied"), 2).await, 2);
    assert_eq!(envoy.counter(&counter("error")).await, 0);
    // The checks went over TLS: Envoy's cluster for portcullis counts its handshakes.
    assert!(envoy.counter("cluster.portcullis.ssl.handshake").await >= 1, "{:?}", envoy.stats("ssl").await);

    // An Envoy that trusts another CA does not accept portcullis's certificate: no check, a 503.
    let stranger = tempfile::tempdir().unwrap();
    let (_, _, other_ca) = Ca::new("another CA").write_leaf(stranger.path(), &[SERVER_NAME]);
    let untrusting = envoy_over_tls(&grpc, &upstream.address, other_ca).await;
    let response = ask(&untrusting, &issuers, Credential::Admin, "/admin/x").await;
    assert_eq!(response.status, 503, "{response:?}");
    assert_eq!(served(&response).resource, None, "the upstream was reached without a check");
    assert_eq!(untrusting.counter(&counter("ok")).await, 0);
    assert!(
        untrusting.counter("cluster.portcullis.ssl.fail_verify_error").await >= 1,
        "{:?}",
        untrusting.stats("ssl").await
    );
}

/// A check request for `path` without a token.
fn check(path: &str) -> CheckRequest {
    let http = HttpRequest { method: "GET".into(), path: path.into(), size: -1, ..Default::default() };
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request { http: Some(http), ..Default::default() }),
            ..Default::default()
        }),
    }
}

/// With TLS on, the gRPC listener answers no plaintext (h2c) client; a TLS client trusting the CA is offered
/// `h2` and shown the configured certificate.
#[tokio::test]
async fn plaintext_clients_are_refused_on_a_tls_grpc_listener() {
    let issuers = Issuers::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (gateway, ca_file) = tls_gateway(&issuers, dir.path()).await;
    let grpc = gateway.ext_authz_grpc.clone().unwrap();

    let plaintext = tokio::time::timeout(Duration::from_secs(10), async {
        let mut client = AuthorizationClient::connect(format!("http://{grpc}")).await.map_err(|e| e.to_string())?;
        client.check(check("/public/x")).await.map(|_| ()).map_err(|status| status.to_string())
    })
    .await
    .expect("the plaintext client got no answer in time");
    assert!(plaintext.is_err(), "a plaintext gRPC check was answered on a TLS listener");

    let (alpn, presented) = handshake(&grpc, &ca_file, &[b"h2"]).await.unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let configured = CertificateDer::from_pem_file(dir.path().join("cert.pem")).unwrap();
    assert_eq!(presented, configured);
}

/// A TLS handshake with `address` offering the ALPN protocols `alpn` and trusting only the CA in `ca_file`: the
/// protocol the server chose and the certificate it presented, or why the handshake failed.
async fn handshake(
    address: &str,
    ca_file: &Path,
    alpn: &[&[u8]],
) -> Result<(Option<Vec<u8>>, CertificateDer<'static>), String> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca_file).unwrap() {
        roots.add(certificate.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = connector.connect(ServerName::try_from(SERVER_NAME).unwrap(), tcp).await.map_err(|e| e.to_string())?;
    let connection = tls.get_ref().1;
    Ok((
        connection.alpn_protocol().map(<[u8]>::to_vec),
        connection.peer_certificates().unwrap()[0].clone().into_owned(),
    ))
}

/// The TLS gRPC listener speaks HTTP/2 only: a client offering only ALPN `http/1.1` fails the handshake, and one
/// offering both gets `h2`.
#[tokio::test]
async fn the_tls_grpc_listener_negotiates_h2_only() {
    let issuers = Issuers::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (gateway, ca_file) = tls_gateway(&issuers, dir.path()).await;
    let grpc = gateway.ext_authz_grpc.clone().unwrap();

    let http1 = handshake(&grpc, &ca_file, &[b"http/1.1"]).await;
    assert!(http1.is_err(), "the gRPC listener accepted ALPN http/1.1: {:?}", http1.map(|(alpn, _)| alpn));
    let (alpn, _) = handshake(&grpc, &ca_file, &[b"http/1.1", b"h2"]).await.unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
}

/// SIGHUP gives the gRPC listener the new pair in the same files, as it does the main listener: the next
/// connection is shown the new certificate.
#[tokio::test]
async fn sighup_gives_the_grpc_listener_the_new_certificate() {
    let issuers = Issuers::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (gateway, ca_file) = tls_gateway(&issuers, dir.path()).await;
    let grpc = gateway.ext_authz_grpc.clone().unwrap();
    let first = CertificateDer::from_pem_file(dir.path().join("cert.pem")).unwrap();
    assert_eq!(handshake(&grpc, &ca_file, &[b"h2"]).await.unwrap().1, first);

    // A new certificate and key from another CA, written over the same files.
    let other = tempfile::tempdir().unwrap();
    let (cert, key, other_ca) = Ca::new("second CA").write_leaf(other.path(), &[SERVER_NAME, "127.0.0.1"]);
    std::fs::copy(&cert, dir.path().join("cert.pem")).unwrap();
    std::fs::copy(&key, dir.path().join("key.pem")).unwrap();
    let second = CertificateDer::from_pem_file(&cert).unwrap();
    assert_ne!(first, second);
    let pid = gateway.process.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());

    // Poll, bounded, until a new connection trusting only the second CA completes its handshake.
    let started = std::time::Instant::now();
    let presented = loop {
        match handshake(&grpc, &other_ca, &[b"h2"]).await {
            Ok((_, presented)) => break presented,
            Err(why) => assert!(
                started.elapsed() < Duration::from_secs(10),
                "the gRPC listener kept the first certificate: {why}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(presented, second);
    // The first CA's clients are now refused: the old certificate is gone.
    assert!(handshake(&grpc, &ca_file, &[b"h2"]).await.is_err());
}
