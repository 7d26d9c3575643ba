//! A certificate authority made at test time (rcgen on aws-lc-rs), and the server certificates it signs.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::CertificateDer;
use std::path::{Path, PathBuf};

/// A certificate authority made for one test.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA's certificate (PEM).
    pub pem: String,
}

impl Ca {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self { issuer: Issuer::new(params, key), pem }
    }

    /// A server certificate for `names` (DNS names or IP addresses), with its key.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let mut params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        Leaf { der: certificate.der().clone(), pem: certificate.pem(), key_pem: key.serialize_pem() }
    }

    /// Writes a server certificate for `names` and its key to `cert.pem` and `key.pem` in `dir`, and this CA's
    /// certificate to `ca.pem`; returns the three paths.
    pub fn write_leaf(&self, dir: &Path, names: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
        let (cert, key) = self.leaf(names).write(dir);
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, &self.pem).unwrap();
        (cert, key, ca)
    }
}

/// A server certificate and its private key.
pub struct Leaf {
    /// The certificate (DER).
    pub der: CertificateDer<'static>,
    /// The certificate (PEM).
    pub pem: String,
    /// The private key (PEM).
    pub key_pem: String,
}

impl Leaf {
    /// Writes the certificate and key to `cert.pem` and `key.pem` in `dir`; returns their paths.
    pub fn write(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, &self.pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}
