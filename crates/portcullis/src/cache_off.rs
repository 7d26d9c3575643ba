//! Without the `cache` feature there is no verified-token cache: every token is verified in full.

use crate::clock::Clock;
use crate::token::VerifiedToken;
use std::sync::Arc;

/// Stands in for the cache's limits; never built.
#[derive(Debug, Clone, Default)]
pub(crate) struct CacheOptions {
    _none: (),
}

/// A cache that cannot exist: the verifier's `Option<TokenCache>` is always `None`.
#[derive(Debug, Clone)]
pub(crate) enum TokenCache {}

/// No cache, whatever the options.
pub(crate) fn build(_: Option<CacheOptions>, _: Arc<dyn Clock>) -> Option<TokenCache> {
    None
}

impl TokenCache {
    pub(crate) fn get(&self, _: &str) -> Option<VerifiedToken> {
        match *self {}
    }

    pub(crate) fn insert(&self, _: &VerifiedToken) -> bool {
        match *self {}
    }

    pub(crate) fn remove(&self, _: &str) {
        match *self {}
    }

    pub(crate) fn drop_revoked(&self, _: &[crate::store::Revocation]) {
        match *self {}
    }

    pub(crate) fn len(&self) -> u64 {
        match *self {}
    }
}
