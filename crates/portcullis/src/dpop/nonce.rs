//! Server nonces (RFC 9449 §8, §9), stateless: a nonce is an HMAC-SHA256 tag over the current time window under a
//! configured secret. Every replica with the same secret issues and accepts the same nonces, a restart changes
//! nothing, and there is nothing to store. The nonce of the current window and of the one before are accepted, so
//! a nonce lives between one and two lifetimes.

use crate::base64url;
use crate::clock::UnixTime;
use aws_lc_rs::hmac;
use std::time::Duration;

/// What the tag is computed over, before the window number: keeps these tags apart from any other use of the key.
const CONTEXT: &[u8] = b"portcullis dpop nonce v1\0";

/// The shortest secret accepted, in bytes.
pub(crate) const MIN_SECRET_LEN: usize = 32;

/// Issues and checks nonces.
pub(crate) struct Nonces {
    key: hmac::Key,
    lifetime: u64,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nonces").field("lifetime", &self.lifetime).finish_non_exhaustive()
    }
}

impl Nonces {
    pub(crate) fn new(secret: &[u8], lifetime: Duration) -> Self {
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, secret), lifetime: lifetime.as_secs().max(1) }
    }

    fn window(&self, now: UnixTime) -> u64 {
        now.as_secs() / self.lifetime
    }

    fn tag(&self, window: u64) -> hmac::Tag {
        hmac::sign(&self.key, &message(window))
    }

    /// The nonce to hand out now.
    pub(crate) fn current(&self, now: UnixTime) -> String {
        base64url::encode(self.tag(self.window(now)))
    }

    /// Whether `nonce` is the current or the previous window's nonce (tags compared in constant time).
    pub(crate) fn accepts(&self, nonce: &str, now: UnixTime) -> bool {
        let Some(tag) = base64url::decode(nonce) else { return false };
        let window = self.window(now);
        [Some(window), window.checked_sub(1)]
            .into_iter()
            .flatten()
            .any(|window| hmac::verify(&self.key, &message(window), &tag).is_ok())
    }
}

/// The context, then the window number.
fn message(window: u64) -> [u8; CONTEXT.len() + 8] {
    let mut message = [0u8; CONTEXT.len() + 8];
    message[..CONTEXT.len()].copy_from_slice(CONTEXT);
    message[CONTEXT.len()..].copy_from_slice(&window.to_be_bytes());
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_and_previous_windows_only() {
        let nonces = Nonces::new(&[7u8; 32], Duration::from_secs(300));
        let t = UnixTime::from_secs(1_800_000_000);
        let nonce = nonces.current(t);
        assert_eq!(nonce.len(), 43);
        assert!(nonces.accepts(&nonce, t));
        assert!(nonces.accepts(&nonce, UnixTime::from_secs(t.as_secs() + 300)));
        assert!(!nonces.accepts(&nonce, UnixTime::from_secs(t.as_secs() + 600)));
        assert!(!nonces.accepts(&nonce, UnixTime::from_secs(t.as_secs() - 300)));
        assert!(!nonces.accepts("not a nonce", t));
        let other = Nonces::new(&[8u8; 32], Duration::from_secs(300));
        assert!(!other.accepts(&nonce, t), "another secret, another nonce");
        assert_eq!(Nonces::new(&[7u8; 32], Duration::from_secs(300)).current(t), nonce, "replicas agree");
    }
}
