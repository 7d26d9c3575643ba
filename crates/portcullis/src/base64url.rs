//! Strict base64url (RFC 4648 §5) as JWS requires it (RFC 7515 §2).
//!
//! No padding, no `+` or `/`, no whitespace, and canonical trailing bits: every token has exactly one encoding,
//! so a token cannot be altered without changing what it means.

use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

const STRICT: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Decodes strict unpadded base64url; `None` for any deviation.
///
/// ```
/// use portcullis::base64url;
/// assert_eq!(base64url::decode("Zm9v").as_deref(), Some(&b"foo"[..]));
/// assert_eq!(base64url::decode("Zm9="), None); // padding
/// assert_eq!(base64url::decode("Zm9w"), Some(b"fop".to_vec()));
/// assert_eq!(base64url::decode("Zh"), None); // non-canonical trailing bits ("Zg" is canonical)
/// assert_eq!(base64url::decode("a+b/"), None); // standard alphabet
/// ```
pub fn decode(input: &str) -> Option<Vec<u8>> {
    STRICT.decode(input).ok()
}

/// Decodes into `buf` (cleared first), reusing its allocation.
pub fn decode_into(input: &str, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    STRICT.decode_vec(input, buf).is_ok()
}

/// Encodes without padding.
///
/// ```
/// assert_eq!(portcullis::base64url::encode(b"foo?"), "Zm9vPw");
/// ```
pub fn encode(input: impl AsRef<[u8]>) -> String {
    STRICT.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_whitespace_and_empty_ok() {
        assert_eq!(decode(""), Some(vec![]));
        assert_eq!(decode("Zm9v\n"), None);
        assert_eq!(decode(" Zm9v"), None);
        assert_eq!(decode("Z"), None);
    }

    #[test]
    fn round_trips() {
        for len in 0..40u8 {
            let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(decode(&encode(&data)), Some(data));
        }
    }
}
