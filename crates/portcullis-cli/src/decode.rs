//! `portcullis verify --decode`: the header and claims of a signed JWT, read without any key and checked for
//! nothing, so every output says UNVERIFIED. Input that is not a JWS compact serialization is refused with what it
//! looks like instead.

use base64_simd::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

/// The banner that opens and closes the readable output.
const UNVERIFIED: &str = "UNVERIFIED: decoded without keys; the signature, issuer, audience and times were not \
                          checked, so nothing below can be trusted";

/// A JWT's parts, decoded.
#[derive(Debug)]
pub(crate) struct Decoded {
    header: Map<String, Value>,
    claims: Map<String, Value>,
    /// Bytes of the signature (0 for an unsecured token).
    signature_bytes: usize,
}

/// Why the input cannot be decoded as a JWT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum NotAJwt {
    /// No dots at all: an opaque token.
    #[error(
        "this is not a JWT (no dots): an opaque access token, which only its issuer can read (Auth0 issues one when \
         the authorization request names no audience)"
    )]
    Opaque,
    /// Five parts: an encrypted token.
    #[error("this is an encrypted token (JWE, 5 parts): its claims cannot be read without the decryption key")]
    Encrypted,
    /// Another number of parts.
    #[error("a JWT has 3 parts separated by dots, this input has {0}")]
    Parts(usize),
    /// A part that is not unpadded base64url.
    #[error("the {0} is not unpadded base64url")]
    Base64(&'static str),
    /// A part that is not a JSON object.
    #[error("the {0} is not a JSON object: {1}")]
    Json(&'static str, String),
}

impl NotAJwt {
    /// The reason code `--json` reports (the one verification gives for such input).
    pub(crate) fn reason(&self) -> &'static str {
        portcullis::Reason::TokenMalformed.code()
    }
}

/// Decodes `token`'s header and claims; nothing is verified.
pub(crate) fn decode(token: &str) -> Result<Decoded, NotAJwt> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err(match parts.len() {
            1 => NotAJwt::Opaque,
            5 => NotAJwt::Encrypted,
            n => NotAJwt::Parts(n),
        });
    };
    let signature_bytes = URL_SAFE_NO_PAD.decode_to_vec(signature).map_err(|_| NotAJwt::Base64("signature"))?.len();
    Ok(Decoded { header: object(header, "header")?, claims: object(claims, "claim set")?, signature_bytes })
}

fn object(part: &str, name: &'static str) -> Result<Map<String, Value>, NotAJwt> {
    let bytes = URL_SAFE_NO_PAD.decode_to_vec(part).map_err(|_| NotAJwt::Base64(name))?;
    serde_json::from_slice(&bytes).map_err(|e| NotAJwt::Json(name, e.to_string()))
}

impl Decoded {
    /// The `--json` object: `unverified` is always true.
    pub(crate) fn json(&self) -> Value {
        json!({ "unverified": true, "header": self.header, "claims": self.claims })
    }

    /// The readable output: the banner, the header, the claims with their times in UTC, the banner again.
    pub(crate) fn readable(&self) -> String {
        let mut out = format!("{UNVERIFIED}\n\n");
        crate::explain::section(&mut out, "Header (unverified)", Some(&self.header));
        crate::explain::section(&mut out, "Claims (unverified)", Some(&self.claims));
        crate::explain::times(&mut out, &self.claims);
        let signature = match self.signature_bytes {
            0 => "no signature (an unsecured token, which verification always refuses)".to_owned(),
            n => format!("{n} bytes, not checked"),
        };
        out.push_str(&format!("Signature\n  {signature}\n\n"));
        out.push_str("UNVERIFIED: verify it with --jwks FILE|URL or --discover, and --issuer and --audience\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{NotAJwt, decode};

    #[test]
    fn refusals_say_what_the_input_looks_like() {
        assert_eq!(decode("opaque-token").unwrap_err(), NotAJwt::Opaque);
        assert_eq!(decode("a.b.c.d.e").unwrap_err(), NotAJwt::Encrypted);
        assert_eq!(decode("a.b").unwrap_err(), NotAJwt::Parts(2));
        assert_eq!(decode("e30.e30.***").unwrap_err(), NotAJwt::Base64("signature"));
        assert!(matches!(decode("W10.e30.").unwrap_err(), NotAJwt::Json("header", _)));
        assert!(matches!(decode("e30.bm9wZQ.").unwrap_err(), NotAJwt::Json("claim set", _)));
        let decoded = decode("e30.eyJzdWIiOiJ4In0.").unwrap();
        assert_eq!(decoded.json()["claims"]["sub"], "x");
        assert_eq!(decoded.json()["unverified"], true);
    }
}
