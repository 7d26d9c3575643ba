//! Where a [`Verifier`](crate::Verifier) finds keys: the [`KeySource`] trait.
//!
//! A static [`KeySet`] is a key source that never changes. A [`RemoteKeySet`](crate::remote::RemoteKeySet) fetches
//! an issuer's JWKS, caches it and refreshes it. The verifier asks [`KeySource::current`] first, which never waits;
//! only when that set cannot answer (no set yet, or an unknown `kid`) does it call [`KeySource::resolve`], which may
//! fetch, within the source's own rate limits.

use crate::error::{Error, Reason};
use crate::jwk::VerifyingKey;
use crate::keyset::KeySet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed future answering a key lookup.
pub type KeyFuture<'a> = Pin<Box<dyn Future<Output = Result<Arc<VerifyingKey>, Error>> + Send + 'a>>;

/// A provider of verifying keys for one issuer (or a shared set for several).
pub trait KeySource: Send + Sync + fmt::Debug {
    /// The usable key set right now, without waiting; `None` when there is none (never loaded, or too stale).
    fn current(&self) -> Option<Arc<KeySet>>;

    /// Finds the key for `kid` when [`current`](Self::current) could not: may fetch a fresh set, rate-limited.
    fn resolve<'a>(&'a self, kid: Option<&'a str>) -> KeyFuture<'a>;

    /// Whether the source has a usable key set (for readiness checks).
    fn is_ready(&self) -> bool {
        self.current().is_some()
    }
}

/// A fixed key set, shared without copying.
#[derive(Debug, Clone)]
pub struct StaticKeys(pub Arc<KeySet>);

impl KeySource for StaticKeys {
    fn current(&self) -> Option<Arc<KeySet>> {
        Some(Arc::clone(&self.0))
    }

    fn resolve<'a>(&'a self, kid: Option<&'a str>) -> KeyFuture<'a> {
        Box::pin(std::future::ready(self.0.select(kid).cloned()))
    }
}

/// The error for a source that has no usable keys.
pub(crate) fn keys_unavailable(what: &str, retry_after: u32) -> Error {
    Error::new(Reason::KeysUnavailable, format!("keys for {what} cannot be obtained right now"))
        .with_retry_after(retry_after)
}
