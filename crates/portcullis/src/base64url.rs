//! Strict base64url (RFC 4648 §5) as JWS requires it (RFC 7515 §2).
//!
//! No padding, no `+` or `/`, no whitespace, and canonical trailing bits: every token has exactly one encoding,
//! so a token cannot be altered without changing what it means.
//!
//! Decoding runs on `base64-simd`, whose URL-safe no-pad decoder is exactly this strict and several times faster
//! than a scalar decoder on the request path (three segments per token).

use base64_simd::URL_SAFE_NO_PAD as STRICT;

/// Decodes strict unpadded base64url; `None` for any deviation.
///
/// ```
/// use portcullis::__internals::base64url;
/// assert_eq!(base64url::decode("Zm9v").as_deref(), Some(&b"foo"[..]));
/// assert_eq!(base64url::decode("Zm9="), None); // padding
/// assert_eq!(base64url::decode("Zm9w"), Some(b"fop".to_vec()));
/// assert_eq!(base64url::decode("Zh"), None); // non-canonical trailing bits ("Zg" is canonical)
/// assert_eq!(base64url::decode("a+b/"), None); // standard alphabet
/// ```
pub fn decode(input: &str) -> Option<Vec<u8>> {
    STRICT.decode_to_vec(input).ok()
}

/// Encodes without padding.
///
/// ```
/// assert_eq!(portcullis::__internals::base64url::encode(b"foo?"), "Zm9vPw");
/// ```
pub fn encode(input: impl AsRef<[u8]>) -> String {
    STRICT.encode_to_string(input)
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
    fn every_non_canonical_final_character_is_refused() {
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        // One trailing byte leaves 4 spare bits in the second character; two bytes leave 2 in the third.
        for (prefix, spare_mask) in [("Z", 0b1111), ("Zm", 0b11)] {
            for (index, last) in alphabet.chars().enumerate() {
                let input = format!("Zm9v{prefix}{last}");
                assert_eq!(decode(&input).is_some(), index & spare_mask == 0, "{input}");
            }
        }
    }

    #[test]
    fn round_trips() {
        for len in 0..40u8 {
            let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(decode(&encode(&data)), Some(data));
        }
    }
}
