//! TLS as an operator runs it: `portcullis serve` with a certificate and key (flags, environment or file), swapped
//! on SIGHUP; `https://` upstreams verified against the system's roots or `--upstream-ca`; broken TLS files
//! refused alike by `check-config` and `serve`. Every CA, certificate and key is made here, at test time.
#![allow(clippy::unwrap_used)]

mod support;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::any;
use portcullis_testkit::process::url_in;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use std::process::Stdio;
use std::sync::Arc;
use support::ca::{Ca, Leaf};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStderr, Command};

fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Reads what the peer sends until it closes (a TLS peer may close without close_notify).
async fn read_all(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// One HTTPS request on a new connection to `address` (`127.0.0.1:port`), trusting only `ca_pem`: the
/// certificate the server presented and the whole response, or the handshake's error.
async fn https_get(address: &str, ca_pem: &str, path: &str) -> Result<(CertificateDer<'static>, String), String> {
    let tcp = TcpStream::connect(address).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_config(ca_pem));
    let mut tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    Ok((presented, read_all(&mut tls).await))
}

/// The status code of an HTTP/1.1 response's text.
fn status(response: &str) -> u16 {
    response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("no status: {response}"))
}

/// The `host:port` of a URL printed by the gateway.
fn address_of(url: &str) -> String {
    url.split("://").nth(1).unwrap().trim_end_matches('/').to_owned()
}

/// A gateway process with its JSON log lines.
struct Gateway {
    child: Child,
    url: String,
    logs: Lines<BufReader<ChildStderr>>,
    seen: String,
}

impl Gateway {
    /// Starts `portcullis serve args…` with `env`, and waits for its listening line.
    async fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        command.arg("serve").args(args).env("RUST_LOG", "info").env_remove("PORTCULLIS_CONFIG");
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true).spawn().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let logs = BufReader::new(child.stderr.take().unwrap()).lines();
        let line = loop {
            match out.next_line().await.unwrap() {
                Some(line) if line.contains("portcullis gateway listening on") => break line,
                Some(_) => {}
                None => {
                    let mut logs = logs;
                    let mut said = String::new();
                    while let Ok(Some(line)) = logs.next_line().await {
                        said.push_str(&line);
                    }
                    panic!("the gateway ended before listening: {said}");
                }
            }
        };
        // Keep reading stdout so a later line never meets a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
        Self { child, url: url_in(&line), logs, seen: String::new() }
    }

    /// Reads JSON log lines until one has `message`, and returns it.
    async fn log(&mut self, message: &str) -> Value {
        loop {
            let line = self.logs.next_line().await.unwrap().unwrap_or_else(|| panic!("ended before {message:?}"));
            self.seen.push_str(&line);
            self.seen.push('\n');
            let entry: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
            if entry["message"] == message {
                return entry;
            }
        }
    }

    fn hangup(&self) {
        let pid = self.child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    }
}

/// A configuration: a public `/api/*` in front of `upstream`, JSON logs, and `extra` top-level keys. The issuer's
/// keys are never fetched successfully; public routes do not need them.
fn config(upstream: &str, extra: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\nlog_format = \"json\"\n{extra}\n[[issuers]]\n\
         issuer = \"http://127.0.0.1:9/\"\naudiences = [\"api\"]\njwks_uri = \"http://127.0.0.1:9/jwks.json\"\n\
         [[routes]]\npath = \"/api/*\"\npublic = true\n"
    )
}

/// A plain HTTP upstream that answers with the `X-Forwarded-Proto` it received.
async fn plain_upstream() -> String {
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", upstream.local_addr().unwrap());
    let echo = Router::new().fallback(any(|headers: HeaderMap| async move {
        format!("proto={}", headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).unwrap_or("-"))
    }));
    tokio::spawn(async move { axum::serve(upstream, echo).await.unwrap() });
    url
}

#[tokio::test]
async fn https_listener_answers_a_client_that_trusts_its_ca_and_refuses_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("listener CA");
    let leaf = ca.leaf(&["localhost", "127.0.0.1"]);
    let (cert, key) = leaf.write(dir.path());
    let upstream = plain_upstream().await;
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, config(&upstream, "")).unwrap();
    // The pair from the environment, as a service manager would pass it.
    let gateway = Gateway::start(
        &["--config", file.to_str().unwrap()],
        &[("PORTCULLIS_TLS_CERT", cert.to_str().unwrap()), ("PORTCULLIS_TLS_KEY", key.to_str().unwrap())],
    )
    .await;
    assert!(gateway.url.starts_with("https://127.0.0.1:"), "{}", gateway.url);
    let address = address_of(&gateway.url);

    let (presented, response) = https_get(&address, &ca.pem, "/api/hello").await.unwrap();
    assert_eq!(presented, leaf.der);
    assert_eq!(status(&response), 200, "{response}");
    assert!(response.ends_with("proto=https"), "the upstream learns the client used HTTPS: {response}");
    // An ordinary HTTPS client trusting the CA: HTTP/2 by ALPN, or HTTP/1.1 when it offers only that.
    let trusting =
        || reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap()]);
    for (client, version) in [
        (trusting().build().unwrap(), reqwest::Version::HTTP_2),
        (trusting().http1_only().build().unwrap(), reqwest::Version::HTTP_11),
    ] {
        let response = client.get(format!("{}/api/hello", gateway.url)).send().await.unwrap();
        assert_eq!((response.status().as_u16(), response.version()), (200, version));
        assert_eq!(response.text().await.unwrap(), "proto=https");
    }
    // Unmatched paths are still refused over TLS.
    assert_eq!(status(&https_get(&address, &ca.pem, "/elsewhere").await.unwrap().1), 404);

    // A client that does not trust the CA fails the handshake.
    let stranger = Ca::new("another CA");
    let refused = https_get(&address, &stranger.pem, "/api/hello").await.unwrap_err();
    assert!(refused.contains("UnknownIssuer") || refused.contains("certificate"), "{refused}");

    // Plain HTTP on the HTTPS port gets no HTTP answer: the connection is closed.
    let mut plain = TcpStream::connect(&address).await.unwrap();
    plain.write_all(format!("GET /api/hello HTTP/1.1\r\nHost: {address}\r\n\r\n").as_bytes()).await.unwrap();
    let answer = read_all(&mut plain).await;
    assert!(!answer.contains("HTTP/1.1") && !answer.contains("proto="), "plain HTTP was served: {answer:?}");
}

#[tokio::test]
async fn sighup_swaps_the_certificate_and_a_bad_pair_keeps_the_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("listener CA");
    let first = ca.leaf(&["127.0.0.1", "first.example"]);
    let (cert, key) = first.write(dir.path());
    let upstream = plain_upstream().await;
    let file = dir.path().join("gateway.toml");
    let keys = format!("tls_cert = {:?}\ntls_key = {:?}", cert.to_str().unwrap(), key.to_str().unwrap());
    std::fs::write(&file, config(&upstream, &keys)).unwrap();
    let mut gateway = Gateway::start(&["--config", file.to_str().unwrap()], &[]).await;
    let address = address_of(&gateway.url);
    let (presented, response) = https_get(&address, &ca.pem, "/api/a").await.unwrap();
    assert_eq!(presented, first.der);
    assert_eq!(status(&response), 200);

    // A new pair in the same files: new connections get it once the reload is logged.
    let second = ca.leaf(&["127.0.0.1", "second.example"]);
    second.write(dir.path());
    gateway.hangup();
    let reloaded = gateway.log("configuration reloaded").await;
    assert_eq!(reloaded["tls_cert"], cert.to_str().unwrap());
    let (presented, response) = https_get(&address, &ca.pem, "/api/b").await.unwrap();
    assert_eq!(presented, second.der, "a new connection after SIGHUP gets the new certificate");
    assert_eq!(status(&response), 200);

    // A key that does not match the certificate: refused, the second pair stays.
    let third = ca.leaf(&["127.0.0.1", "third.example"]);
    std::fs::write(&cert, &third.pem).unwrap();
    gateway.hangup();
    let refused = gateway.log("configuration reload refused; the running configuration is kept").await;
    let why = refused["error"].as_str().unwrap();
    assert!(why.contains("tls_key") && why.contains("does not match the certificate"), "{why}");
    let (presented, response) = https_get(&address, &ca.pem, "/api/c").await.unwrap();
    assert_eq!(presented, second.der, "a refused pair keeps the running certificate");
    assert_eq!(status(&response), 200);

    // A certificate file that is not PEM: refused too, naming tls_cert.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    gateway.hangup();
    let refused = gateway.log("configuration reload refused; the running configuration is kept").await;
    let why = refused["error"].as_str().unwrap();
    assert!(why.contains("tls_cert") && why.contains("no certificate"), "{why}");
    assert_eq!(https_get(&address, &ca.pem, "/api/d").await.unwrap().0, second.der);

    // Turning TLS off needs a restart: refused, the listener keeps speaking HTTPS.
    std::fs::write(&file, config(&upstream, "")).unwrap();
    gateway.hangup();
    let refused = gateway.log("configuration reload refused; the running configuration is kept").await;
    let why = refused["error"].as_str().unwrap();
    assert!(why.contains("tls_cert: changes only on restart"), "{why}");
    assert_eq!(https_get(&address, &ca.pem, "/api/e").await.unwrap().0, second.der);

    // Never key material in the logs.
    for line in second.key_pem.lines().chain(third.key_pem.lines()).filter(|l| !l.starts_with("-----")) {
        assert!(!gateway.seen.contains(line), "key material reached the logs:\n{}", gateway.seen);
    }
}

/// A TLS upstream on 127.0.0.1 presenting `leaf`: answers every request with the SNI name it was asked for.
async fn tls_upstream(leaf: &Leaf) -> u16 {
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let sni = tls.get_ref().1.server_name().unwrap_or("-").to_owned();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && tls.read(&mut byte).await.is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                let body = format!("tls upstream, sni={sni}");
                let response =
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

/// A plain-HTTP gateway in front of `upstream` (with `args`, `env`): the answer to `GET /api/x` (status, body) and
/// the gateway, for its logs.
async fn through(upstream: &str, args: &[&str], env: &[(&str, &str)]) -> (u16, String, Gateway) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, config(upstream, "")).unwrap();
    let mut all = vec!["--config", file.to_str().unwrap()];
    all.extend_from_slice(args);
    let gateway = Gateway::start(&all, env).await;
    let response = reqwest::get(format!("{}/api/x", gateway.url)).await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap(), gateway)
}

#[tokio::test]
async fn https_upstreams_are_verified_against_the_system_roots_or_only_upstream_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("upstream CA");
    let port = tls_upstream(&ca.leaf(&["localhost", "127.0.0.1"])).await;
    let ca_file = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let stranger_file = dir.path().join("stranger-ca.pem");
    std::fs::write(&stranger_file, Ca::new("another CA").pem).unwrap();
    let (ca_path, stranger_path) = (ca_file.to_str().unwrap(), stranger_file.to_str().unwrap());
    // The system's roots, as OpenSSL and rustls-native-certs find them: SSL_CERT_FILE, here a CA of the test's.
    let (system_has_ca, system_has_stranger) = ([("SSL_CERT_FILE", ca_path)], [("SSL_CERT_FILE", stranger_path)]);

    // --upstream-ca trusted: the request goes through, with the URL's host as SNI.
    let by_name = format!("https://localhost:{port}");
    let (status, body, _) = through(&by_name, &["--upstream-ca", ca_path], &system_has_stranger).await;
    assert_eq!((status, body.as_str()), (200, "tls upstream, sni=localhost"));

    // The system's roots, when they hold the upstream's CA and no --upstream-ca is given.
    let (status, body, _) = through(&by_name, &[], &system_has_ca).await;
    assert_eq!((status, body.as_str()), (200, "tls upstream, sni=localhost"));

    // Untrusted: 502, the reason in the log and not in the answer.
    let (status, body, mut gateway) = through(&by_name, &[], &system_has_stranger).await;
    assert_eq!(status, 502);
    let logged = gateway.log("upstream unavailable").await;
    let why = logged["error"].as_str().unwrap();
    assert!(why.contains("invalid peer certificate") && why.contains("UnknownIssuer"), "{why}");
    assert!(!body.contains("certificate") && !body.contains("UnknownIssuer"), "{body}");

    // With --upstream-ca, only it: the system's roots holding the upstream's CA do not help.
    let (status, _, mut gateway) = through(&by_name, &["--upstream-ca", stranger_path], &system_has_ca).await;
    assert_eq!(status, 502);
    assert!(gateway.log("upstream unavailable").await["error"].as_str().unwrap().contains("UnknownIssuer"));

    // A trusted certificate for another name: 502.
    let wrong_name = ca.leaf(&["upstream.example"]);
    let other_port = tls_upstream(&wrong_name).await;
    let by_address = format!("https://127.0.0.1:{other_port}");
    let (status, body, mut gateway) = through(&by_address, &["--upstream-ca", ca_path], &[]).await;
    assert_eq!(status, 502);
    let why = gateway.log("upstream unavailable").await["error"].as_str().unwrap().to_owned();
    assert!(why.contains("invalid peer certificate: certificate not valid for name \"127.0.0.1\""), "{why}");
    assert!(!body.contains("upstream.example") && !body.contains("not valid"), "{body}");
}

#[test]
fn check_config_and_serve_refuse_the_same_broken_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("listener CA");
    let (one, two) = (ca.leaf(&["localhost"]), ca.leaf(&["localhost"]));
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    std::fs::write(path("cert.pem"), &one.pem).unwrap();
    std::fs::write(path("key.pem"), &one.key_pem).unwrap();
    std::fs::write(path("other-key.pem"), &two.key_pem).unwrap();
    std::fs::write(path("garbage.pem"), "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n").unwrap();
    std::fs::write(path("ca.pem"), &ca.pem).unwrap();
    let pair = |cert: &str, key: &str| format!("tls_cert = {:?}\ntls_key = {:?}", path(cert), path(key));
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("mismatched pair", pair("cert.pem", "other-key.pem"), "tls_key", "does not match the certificate"),
        ("certificate without key", format!("tls_cert = {:?}", path("cert.pem")), "tls_key", "give both"),
        ("key without certificate", format!("tls_key = {:?}", path("key.pem")), "tls_cert", "give both"),
        ("missing certificate file", pair("absent.pem", "key.pem"), "tls_cert", "cannot read"),
        ("key file holding a certificate", pair("cert.pem", "cert.pem"), "tls_key", "no private key"),
        ("certificate file not PEM", pair("garbage.pem", "key.pem"), "tls_cert", "not valid PEM"),
        ("upstream CA not PEM", format!("upstream_ca = {:?}", path("garbage.pem")), "upstream_ca", "not valid PEM"),
        // A device would be read without end: refused at once.
        (
            "certificate file a device",
            format!("tls_cert = \"/dev/zero\"\ntls_key = {:?}", path("key.pem")),
            "tls_cert",
            "not a regular file",
        ),
        ("upstream CA a device", "upstream_ca = \"/dev/zero\"".to_owned(), "upstream_ca", "not a regular file"),
        // A CA for a plain-text upstream: the operator expects TLS that would not happen.
        (
            "upstream CA for an http upstream",
            format!("upstream_ca = {:?}", path("ca.pem")),
            "upstream_ca",
            "plain text",
        ),
        (
            "upstream CA without certificate",
            format!("upstream_ca = {:?}", path("key.pem")),
            "upstream_ca",
            "no certificate",
        ),
    ];
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(args)
            .env_remove("PORTCULLIS_CONFIG")
            .output()
            .unwrap()
    };
    for (case, keys, key, message) in cases {
        let file = dir.path().join("gateway.toml");
        let text = config("http://127.0.0.1:9", &keys);
        std::fs::write(&file, &text).unwrap();
        let checked = run(&["check-config", file.to_str().unwrap()]);
        let served = run(&["serve", "--config", file.to_str().unwrap()]);
        let (checked_said, served_said) =
            (String::from_utf8_lossy(&checked.stderr), String::from_utf8_lossy(&served.stderr));
        assert_eq!(checked.status.code(), Some(3), "{case}: {checked_said}");
        assert_eq!(served.status.code(), Some(3), "{case}: {served_said}");
        // The error names the key, and its line when the key is in the file.
        let expected = match text.lines().position(|line| line.starts_with(&format!("{key} = "))) {
            Some(line) => format!("{}:{}:{}: {key}: ", file.display(), line + 1, key.len() + 4),
            None => format!("{key}: "),
        };
        for said in [&checked_said, &served_said] {
            assert!(said.contains(&expected) && said.contains(message), "{case}: expected {expected:?}: {said}");
        }
        assert!(!String::from_utf8_lossy(&served.stdout).contains("listening"), "{case}: serve bound anyway");
    }

    // The good pair and CA pass both.
    std::fs::write(
        dir.path().join("gateway.toml"),
        config("https://127.0.0.1:9", &format!("{}\nupstream_ca = {:?}", pair("cert.pem", "key.pem"), path("ca.pem"))),
    )
    .unwrap();
    let checked = run(&["check-config", &path("gateway.toml")]);
    assert_eq!(checked.status.code(), Some(0), "{}", String::from_utf8_lossy(&checked.stderr));
}
