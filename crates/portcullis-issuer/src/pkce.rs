//! PKCE (RFC 7636) with S256 only: `BASE64URL(SHA-256(code_verifier)) == code_challenge`.

use aws_lc_rs::digest;

/// Whether `verifier` matches `challenge` under S256; the verifier must be 43–128 unreserved characters.
///
/// ```
/// // RFC 7636 Appendix B.
/// assert!(portcullis_issuer::pkce::verify_s256(
///     "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
///     "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
/// ));
/// ```
pub fn verify_s256(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    well_formed && challenge_of(verifier) == challenge
}

/// The S256 challenge of a verifier.
pub fn challenge_of(verifier: &str) -> String {
    crate::base64url::encode(digest::digest(&digest::SHA256, verifier.as_bytes()))
}
