//! Unpadded base64url (RFC 4648 §5), as tokens, key ids and PKCE use it; decoding is strict.

use base64_simd::URL_SAFE_NO_PAD as STRICT;

/// Decodes strict unpadded base64url; `None` for any deviation.
pub(crate) fn decode(input: &str) -> Option<Vec<u8>> {
    STRICT.decode_to_vec(input).ok()
}

/// Encodes without padding.
pub(crate) fn encode(input: impl AsRef<[u8]>) -> String {
    STRICT.encode_to_string(input)
}
