//! DPoP at the token endpoint (RFC 9449 §5, §8): one proof for `POST <issuer>oauth/token`, checked by the core's
//! [`DpopVerifier`]; its key's RFC 7638 thumbprint binds the access token (`cnf.jkt`) and the refresh tokens.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::http::HeaderMap;
use portcullis::clock::Clock;
use portcullis::dpop::{DpopMode, DpopVerifier, Htu, ProofExpectations, RequestTarget, Scheme};
use portcullis::{Algorithm, Error, Reason, VerifiedToken};
use std::sync::Arc;

/// The request header carrying the proof (RFC 9449 §4.1).
pub(crate) const DPOP: &str = "dpop";
/// The answer header carrying the server nonce (RFC 9449 §8).
pub(crate) const DPOP_NONCE: &str = "dpop-nonce";

/// The token endpoint's DPoP checks.
#[derive(Clone)]
pub(crate) struct TokenEndpointDpop {
    verifier: DpopVerifier,
    /// `<issuer>oauth/token`, normalized; `None` when the issuer URL is not an http(s) URL (every proof refused).
    htu: Option<Htu>,
    /// `<issuer>userinfo`, normalized, likewise.
    userinfo: Option<Htu>,
    /// `<issuer>oauth/revoke`, normalized, likewise.
    revoke: Option<Htu>,
}

/// Why a token request's proof is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `invalid_dpop_proof`.
    Invalid(String),
    /// `use_dpop_nonce`: the proof lacks the current nonce, which the answer carries in `DPoP-Nonce`.
    NonceRequired(String),
}

impl TokenEndpointDpop {
    /// The checks for the token endpoint of `issuer_url`, on `clock`; with `nonces`, a fresh random nonce secret.
    pub fn new(issuer_url: &str, nonces: bool, clock: Arc<dyn Clock>) -> Result<Self, String> {
        let mut builder = DpopVerifier::builder().clock(clock);
        if nonces {
            let mut secret = [0u8; 32];
            SystemRandom::new().fill(&mut secret).map_err(|_| "no randomness for the DPoP nonce secret".to_owned())?;
            builder = builder.nonce_secret(&secret);
        }
        let verifier = builder.build().map_err(|e| format!("DPoP: {e}"))?;
        let htu = Htu::parse(&format!("{issuer_url}oauth/token")).ok();
        let userinfo = Htu::parse(&format!("{issuer_url}userinfo")).ok();
        let revoke = Htu::parse(&format!("{issuer_url}oauth/revoke")).ok();
        Ok(Self { verifier, htu, userinfo, revoke })
    }

    /// The algorithms a proof may use, for the metadata's `dpop_signing_alg_values_supported`.
    pub fn algorithms(&self) -> Vec<&'static str> {
        self.verifier.algorithms().iter().map(Algorithm::name).collect()
    }

    /// The current nonce, when nonces are on.
    pub fn nonce(&self) -> Option<String> {
        self.verifier.nonce()
    }

    /// The thumbprint of the proof key of a token request, `None` when it has no `DPoP` header.
    pub fn check(&self, headers: &HeaderMap) -> Result<Option<String>, Refusal> {
        self.check_post(headers, self.htu.as_ref())
    }

    /// The thumbprint of the proof key of a revocation request (a proof for `POST <issuer>oauth/revoke`), `None`
    /// when it has no `DPoP` header: a DPoP-bound refresh token is revoked only with a proof of its key.
    pub fn check_revocation(&self, headers: &HeaderMap) -> Result<Option<String>, Refusal> {
        self.check_post(headers, self.revoke.as_ref())
    }

    /// The thumbprint of the key of the one proof for `POST htu` in `headers`, `None` without a `DPoP` header.
    fn check_post(&self, headers: &HeaderMap, htu: Option<&Htu>) -> Result<Option<String>, Refusal> {
        let values: Vec<_> = headers.get_all(DPOP).iter().collect();
        let proof = match values[..] {
            [] => return Ok(None),
            [one] => one.to_str().map_err(|_| Refusal::Invalid("the DPoP header is not a JWT".into()))?,
            _ => return Err(Refusal::Invalid("exactly one DPoP header is allowed".into())),
        };
        if proof.contains(|c: char| c == ',' || c.is_ascii_whitespace()) {
            return Err(Refusal::Invalid("exactly one DPoP proof is allowed".into()));
        }
        let Some(htu) = htu else {
            return Err(Refusal::Invalid("the issuer URL is not an http(s) URL; no proof can match it".into()));
        };
        let expected = ProofExpectations { method: "POST", htu, access_token: None, jkt: None };
        match self.verifier.check_proof(proof, &expected) {
            Ok(proof) => Ok(Some(proof.thumbprint().to_owned())),
            Err(error) if error.reason() == Reason::DpopNonceRequired => {
                Err(Refusal::NonceRequired(error.description().to_owned()))
            }
            Err(error) => Err(Refusal::Invalid(error.description().to_owned())),
        }
    }
}

impl TokenEndpointDpop {
    /// Checks a `GET /userinfo` request whose token verified (RFC 9449 §7): a token bound by `cnf.jkt` only with
    /// the `DPoP` scheme and one fresh proof of its key for `GET <issuer>userinfo` with its `ath`; an unbound one
    /// only as `Bearer`.
    pub fn check_userinfo(&self, scheme: Scheme, headers: &HeaderMap, token: &VerifiedToken) -> Result<(), Error> {
        let mut proofs = Vec::new();
        for value in headers.get_all(DPOP) {
            let value =
                value.to_str().map_err(|_| Error::new(Reason::RequestInvalid, "a DPoP header is not visible ASCII"))?;
            let parts: Vec<&str> = value.split(|c: char| c == ',' || c.is_ascii_whitespace()).collect();
            // A value holding a separator holds several proofs, however many of them are empty.
            proofs.extend(parts.iter().copied().filter(|part| !part.is_empty()));
            if parts.len() > 1 && proofs.len() < 2 {
                proofs.push("");
            }
        }
        let Some(htu) = &self.userinfo else {
            return Err(Error::new(Reason::DpopProofInvalid, "the issuer URL is not an http(s) URL"));
        };
        let target = RequestTarget { method: "GET", htu };
        self.verifier.check_request(DpopMode::Allowed, scheme, &proofs, token, &target).map(|_| ())
    }
}

/// Whether `text` has the shape of an RFC 7638 SHA-256 thumbprint: 43 base64url characters.
pub(crate) fn is_thumbprint(text: &str) -> bool {
    text.len() == 43 && crate::base64url::decode(text).is_some_and(|bytes| bytes.len() == 32)
}
