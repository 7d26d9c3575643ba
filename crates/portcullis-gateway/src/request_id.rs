//! Request ids: every request carries one in `X-Request-Id` — the client's when it is sane, otherwise a new random
//! one — so the gateway's log line, the upstream's logs and the response can be matched.

use http::{HeaderMap, HeaderValue};

/// The header that carries the request id.
pub(crate) const HEADER: &str = "x-request-id";

/// The longest client-supplied id kept.
const MAX_LEN: usize = 128;

/// Makes sure `headers` carry exactly one sane request id and returns it.
pub(crate) fn ensure(headers: &mut HeaderMap) -> HeaderValue {
    let mut sent = headers.get_all(HEADER).iter();
    if let (Some(value), None) = (sent.next(), sent.next()) {
        if is_sane(value.as_bytes()) {
            return value.clone();
        }
    }
    let fresh = generate();
    headers.insert(HEADER, fresh.clone());
    fresh
}

fn is_sane(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'='))
}

/// 128 random bits as 32 hex digits.
fn generate() -> HeaderValue {
    let mut bytes = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // The system random source failing is not a reason to refuse service: fall back to a process counter.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bytes[8..].copy_from_slice(&n.to_be_bytes());
    }
    let mut text = String::with_capacity(32);
    for byte in bytes {
        text.push_str(&format!("{byte:02x}"));
    }
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("-"))
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
