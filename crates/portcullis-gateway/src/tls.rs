//! TLS on both sides, with rustls on the aws-lc-rs provider (TLS 1.2 and 1.3): the listener's certificate and
//! key, read from PEM files and re-read on every reload, and the trusted roots of `https://` upstreams (the
//! system's, or only those of `upstream_ca`).
//!
//! Each file is read and checked here, so `check-config`, `serve` and a reload all refuse the same files with the
//! same message: the key (`tls_cert`, `tls_key`, `upstream_ca`), the file, and what is wrong with it. Key
//! material never appears in a message.

use crate::config::{Config, ConfigError};
use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::Path;
use std::sync::Arc;

/// TLS 1.3 and 1.2, nothing older.
const VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The one crypto provider: aws-lc-rs.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Checks every TLS file `config` names: the listener's pair (both or neither, readable, PEM, the key matching
/// the certificate) and the upstream's trusted roots.
pub(crate) fn check(config: &Config) -> Vec<ConfigError> {
    let listener = listener_config(config).err();
    let upstream = upstream_config(config).err();
    listener.into_iter().chain(upstream).chain(unused_upstream_ca(config)).collect()
}

/// `upstream_ca` beside an `http://` upstream: the operator expects a verified TLS connection, and the requests
/// would go in plain text.
fn unused_upstream_ca(config: &Config) -> Option<ConfigError> {
    let plain = config.forward_auth.is_none()
        && config.upstream.as_deref().is_some_and(|upstream| upstream.starts_with("http://"));
    (config.upstream_ca.is_some() && plain).then(|| {
        ConfigError::at(
            "upstream_ca",
            "is set, but the upstream is http://: requests would go in plain text, unverified; write https://",
        )
    })
}

/// The listener's TLS settings, when `tls_cert` and `tls_key` are set: their pair, TLS 1.2 and 1.3, ALPN `h2`
/// and `http/1.1` (the listener serves both).
pub(crate) fn listener_config(config: &Config) -> Result<Option<Arc<ServerConfig>>, ConfigError> {
    let (cert, key) = match (&config.tls_cert, &config.tls_key) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(ConfigError::at("tls_key", "tls_cert is set but tls_key is not: give both, or neither"));
        }
        (None, Some(_)) => {
            return Err(ConfigError::at("tls_cert", "tls_key is set but tls_cert is not: give both, or neither"));
        }
        (Some(cert), Some(key)) => (cert, key),
    };
    let provider = provider();
    let chain = read_certificates("tls_cert", cert)?;
    let private_key = read_private_key(key)?;
    let signing_key = provider
        .key_provider
        .load_private_key(private_key.clone_key())
        .map_err(|e| ConfigError::at("tls_key", format!("{}: not a usable private key ({e})", key.display())))?;
    CertifiedKey::new(chain.clone(), signing_key).keys_match().map_err(|e| match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => ConfigError::at(
            "tls_key",
            format!("{}: the key does not match the certificate in {}", key.display(), cert.display()),
        ),
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown) => ConfigError::at(
            "tls_key",
            format!("{}: cannot tell whether the key matches the certificate in {}", key.display(), cert.display()),
        ),
        other => ConfigError::at("tls_cert", format!("{}: not a usable certificate ({other})", cert.display())),
    })?;
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(|e| ConfigError::at("tls_cert", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| ConfigError::at("tls_cert", format!("{}: {e}", cert.display())))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(Arc::new(server)))
}

/// The upstream client's TLS settings: verified against the certificates of `upstream_ca` only when it is set,
/// else against the system's roots (loaded only for an `https://` upstream), with the server name taken from the
/// upstream URL's host; ALPN `http/1.1`, which is what the gateway speaks upstream.
pub(crate) fn upstream_config(config: &Config) -> Result<ClientConfig, ConfigError> {
    let mut roots = RootCertStore::empty();
    let https = config.forward_auth.is_none()
        && config.upstream.as_deref().is_some_and(|upstream| upstream.starts_with("https://"));
    match &config.upstream_ca {
        Some(path) => {
            for (i, certificate) in read_certificates("upstream_ca", path)?.into_iter().enumerate() {
                roots.add(certificate).map_err(|e| {
                    ConfigError::at(
                        "upstream_ca",
                        format!("{}: certificate {} is not usable as a trust anchor ({e})", path.display(), i + 1),
                    )
                })?;
            }
        }
        None if https => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found.errors.first().map(|e| format!(" ({e})")).unwrap_or_default();
                return Err(ConfigError::at(
                    "upstream",
                    format!(
                        "an https:// upstream needs trusted roots, and no system root certificate was found{why}: \
                         install the system's CA certificates (SSL_CERT_FILE or SSL_CERT_DIR point elsewhere), \
                         or set upstream_ca"
                    ),
                ));
            }
        }
        None => {}
    }
    let mut client = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| ConfigError::at("upstream", e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(client)
}

/// The certificates in the PEM file at `path` (at least one), for the error's `key`.
fn read_certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let text = read(key, path)?;
    let certificates = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::at(key, format!("{}: {}", path.display(), pem_problem(&e))))?;
    if certificates.is_empty() {
        return Err(ConfigError::at(
            key,
            format!("{}: no certificate in the file (PEM, -----BEGIN CERTIFICATE-----)", path.display()),
        ));
    }
    Ok(certificates)
}

/// The first private key in the PEM file at `path` (PKCS#8, PKCS#1 or SEC1).
fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let text = read("tls_key", path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| match e {
        pem::Error::NoItemsFound => ConfigError::at(
            "tls_key",
            format!(
                "{}: no private key in the file (PEM: PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
                path.display()
            ),
        ),
        other => ConfigError::at("tls_key", format!("{}: {}", path.display(), pem_problem(&other))),
    })
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    let unreadable = |e: std::io::Error| ConfigError::at(key, format!("cannot read {}: {e}", path.display()));
    // A device or a pipe (`/dev/zero`, a FIFO) would be read without end, or block the start and reloads.
    if !std::fs::metadata(path).map_err(unreadable)?.is_file() {
        return Err(ConfigError::at(key, format!("{}: not a regular file", path.display())));
    }
    std::fs::read(path).map_err(unreadable)
}

/// What is wrong with a PEM file, in words that quote none of its content.
fn pem_problem(error: &pem::Error) -> &'static str {
    match error {
        pem::Error::MissingSectionEnd { .. } => "not valid PEM: a section has no -----END line",
        pem::Error::IllegalSectionStart { .. } => "not valid PEM: a malformed -----BEGIN line",
        pem::Error::Base64Decode(_) => "not valid PEM: a section is not base64",
        pem::Error::NoItemsFound => "nothing usable in the file",
        pem::Error::SectionTooLarge => "not valid PEM: a section is too large",
        _ => "not readable as PEM",
    }
}

/// The listener's TLS settings in force: replaced by each successful reload, read by each new connection.
pub(crate) struct ListenerTls {
    current: ArcSwap<ServerConfig>,
}

impl ListenerTls {
    pub(crate) fn new(config: Arc<ServerConfig>) -> Self {
        Self { current: ArcSwap::new(config) }
    }

    /// The settings a connection accepted now uses.
    pub(crate) fn current(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// New connections use `config` from now on; connections already open keep theirs.
    pub(crate) fn replace(&self, config: Arc<ServerConfig>) {
        self.current.store(config);
    }
}
