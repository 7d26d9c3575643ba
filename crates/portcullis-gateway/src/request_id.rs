//! Request ids: every request carries one in `X-Request-Id` — the client's when it is sane, otherwise a new random
//! one — so the gateway's log line, the upstream's logs and the response can be matched.

use http::{HeaderMap, HeaderValue};

/// The header that carries the request id.
pub(crate) const HEADER: &str = "x-request-id";

/// [`HEADER`] as a header name, built once.
pub(crate) const HEADER_NAME: http::HeaderName = http::HeaderName::from_static(HEADER);

/// The longest client-supplied id kept.
const MAX_LEN: usize = 128;

/// Makes sure `headers` carry exactly one sane request id and returns it.
pub(crate) fn ensure(headers: &mut HeaderMap) -> HeaderValue {
    let mut sent = headers.get_all(&HEADER_NAME).iter();
    if let (Some(value), None) = (sent.next(), sent.next())
        && is_sane(value.as_bytes())
    {
        return value.clone();
    }
    let fresh = generate();
    headers.insert(HEADER_NAME, fresh.clone());
    fresh
}

fn is_sane(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'='))
}

/// 32 hex digits: a random per-process prefix and a counter, unique without a random draw per request.
fn generate() -> HeaderValue {
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // Without the system random source, the process start time still separates processes.
        if aws_lc_rs::rand::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            bytes = (nanos as u64).to_be_bytes();
        }
        u64::from_be_bytes(bytes)
    });
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut text = [0u8; 32];
    for (i, digit) in text.iter_mut().enumerate() {
        let (word, shift) = if i < 16 { (prefix, 60 - 4 * i) } else { (n, 60 - 4 * (i - 16)) };
        *digit = b"0123456789abcdef"[((word >> shift) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_sane_id_and_replaces_anything_else() {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER, HeaderValue::from_static("abc-123"));
        assert_eq!(ensure(&mut headers), "abc-123");
        for bad in ["", "has space", "semi;colon", &"x".repeat(129)] {
            let mut headers = HeaderMap::new();
            headers.insert(HEADER, HeaderValue::from_str(bad).unwrap());
            let id = ensure(&mut headers);
            assert_eq!(id.len(), 32, "{bad:?} replaced by a fresh id");
            assert_eq!(headers.get(HEADER), Some(&id));
        }
        let mut twice = HeaderMap::new();
        twice.append(HEADER, HeaderValue::from_static("a"));
        twice.append(HEADER, HeaderValue::from_static("b"));
        let id = ensure(&mut twice);
        assert_eq!(twice.get_all(HEADER).iter().count(), 1);
        assert_ne!(id, "a");
        assert_ne!(ensure(&mut HeaderMap::new()), ensure(&mut HeaderMap::new()), "fresh ids differ");
    }
}
