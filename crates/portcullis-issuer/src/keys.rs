//! Signing keys with Auth0's rotation: the JWKS publishes the next, current and previous keys; rotating moves
//! previous ← current ← next ← new; revoking removes a key from the JWKS.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use portcullis::Algorithm;
use portcullis::signing::{SigningError, SigningKey};
use serde_json::{Value, json};
use std::sync::Arc;

/// Which key signs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyChoice {
    /// The current key (normal).
    Current,
    /// The next key (published ahead of rotation).
    Next,
    /// The previous key.
    Previous,
    /// A key by kid, if held (revoked keys still sign, for tests).
    Kid(String),
}

/// The keys, in rotation order.
#[derive(Debug)]
pub struct KeyRing {
    previous: Option<Arc<SigningKey>>,
    current: Arc<SigningKey>,
    next: Arc<SigningKey>,
    revoked: Vec<Arc<SigningKey>>,
}

/// A fresh RS256 key with a random kid.
pub(crate) fn new_key() -> Result<Arc<SigningKey>, SigningError> {
    let mut bytes = [0u8; 12];
    SystemRandom::new().fill(&mut bytes).map_err(|_| SigningError::new("no randomness"))?;
    Ok(Arc::new(SigningKey::generate(Algorithm::RS256, Some(crate::base64url::encode(bytes)))?))
}

impl KeyRing {
    /// Generates the current and next keys.
    pub fn generate() -> Result<Self, SigningError> {
        Ok(Self { previous: None, current: new_key()?, next: new_key()?, revoked: Vec::new() })
    }

    /// The published key set: current, next and previous (Auth0 publishes upcoming and recent keys).
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = [Some(&self.current), Some(&self.next), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .map(|k| k.public_jwk())
            .collect();
        json!({ "keys": keys })
    }

    /// The key that signs tokens now.
    pub fn current(&self) -> &Arc<SigningKey> {
        &self.current
    }

    /// A key by choice.
    pub fn choose(&self, choice: &KeyChoice) -> Option<Arc<SigningKey>> {
        match choice {
            KeyChoice::Current => Some(Arc::clone(&self.current)),
            KeyChoice::Next => Some(Arc::clone(&self.next)),
            KeyChoice::Previous => self.previous.clone(),
            KeyChoice::Kid(kid) => [Some(&self.current), Some(&self.next), self.previous.as_ref()]
                .into_iter()
                .flatten()
                .chain(self.revoked.iter())
                .find(|k| k.kid() == Some(kid.as_str()))
                .cloned(),
        }
    }

    /// previous ← current ← next ← new.
    pub fn rotate(&mut self) -> Result<(), SigningError> {
        let new = new_key()?;
        let old_next = std::mem::replace(&mut self.next, new);
        let old_current = std::mem::replace(&mut self.current, old_next);
        if let Some(dropped) = self.previous.replace(old_current) {
            self.revoked.push(dropped);
        }
        Ok(())
    }

    /// Removes a key from the JWKS; revoking the current key promotes the next one. `false` if no such key.
    pub fn revoke(&mut self, kid: &str) -> Result<bool, SigningError> {
        let is = |key: &Arc<SigningKey>| key.kid() == Some(kid);
        if self.previous.as_ref().is_some_and(is) {
            self.revoked.extend(self.previous.take());
        } else if is(&self.next) {
            let old = std::mem::replace(&mut self.next, new_key()?);
            self.revoked.push(old);
        } else if is(&self.current) {
            let promoted = std::mem::replace(&mut self.next, new_key()?);
            let old = std::mem::replace(&mut self.current, promoted);
            self.revoked.push(old);
        } else {
            return Ok(false);
        }
        Ok(true)
    }
}
