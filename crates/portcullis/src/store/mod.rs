//! State shared between replicas: DPoP replay entries and token revocations.
//!
//! Verifying a token needs no shared state, so portcullis scales by adding replicas. Two decisions do need it once
//! there is more than one replica:
//!
//! - a DPoP proof accepted by one replica must be a replay to every other ([`ReplayStore`]: one atomic
//!   check-and-insert per proof);
//! - a token or a user revoked on one replica must be refused by all ([`RevocationList`], the set every replica
//!   holds locally, and [`RevocationStore`], which spreads a revocation to every replica).
//!
//! The core holds the interfaces and the in-memory implementations (one replica, the default); it does no I/O.
//! `portcullis-redis` implements both on Redis.
//!
//! A DPoP verifier records proofs in a [`ReplayStore`] given to
//! [`DpopVerifierBuilder::replay_store`](crate::dpop::DpopVerifierBuilder::replay_store), and asks it last, with
//! the `_async` checks, only for a proof that passed every other check:
//!
//! ```
//! # #[cfg(feature = "dpop")] {
//! use portcullis::dpop::{DpopVerifier, Htu, ProofExpectations};
//! use portcullis::store::{MemoryReplayStore, ReplayFailure};
//! use portcullis::Reason;
//! use std::sync::Arc;
//!
//! // Two verifiers sharing one store are two replicas: a proof accepted by one is a replay to the other.
//! let store = Arc::new(MemoryReplayStore::new(100_000));
//! let replica = |store| DpopVerifier::builder().replay_store(store, ReplayFailure::FailClosed).build().unwrap();
//! let (a, b) = (replica(store.clone()), replica(store.clone()));
//! assert!(a.replay_is_shared() && b.replay_is_shared());
//!
//! let htu = Htu::parse("https://api.example.com/orders").unwrap();
//! let expected = ProofExpectations { method: "GET", htu: &htu, access_token: None, jkt: None };
//! let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! let err = runtime.block_on(a.check_proof_async("not-a-proof", &expected)).unwrap_err();
//! assert_eq!(err.reason(), Reason::DpopProofInvalid);
//! assert!(store.is_empty(), "a defective proof never reaches the store");
//! # }
//! ```
//!
//! Revocations are held locally by every replica:
//!
//! ```
//! use portcullis::store::{Revocation, RevocationList};
//! use portcullis::clock::UnixTime;
//!
//! let revoked = RevocationList::new();
//! let now = UnixTime::from_secs(1_700_000_000);
//! let entry = Revocation::jti("a1b2c3", UnixTime::from_secs(1_700_086_400));
//! assert_eq!(revoked.apply(&[entry.clone()], now), 1);
//! assert_eq!(revoked.apply(&[entry], now), 0, "already known");
//! assert_eq!(revoked.len(), 1);
//! ```

#[cfg(feature = "dpop")]
mod memory;
mod replay;
mod revocation;

#[cfg(feature = "dpop")]
pub use memory::MemoryReplayStore;
pub use replay::{ReplayFailure, ReplayKey, ReplayStore};
#[cfg(feature = "cache")]
pub(crate) use revocation::Matcher;
pub use revocation::{Revocation, RevocationCounts, RevocationList, RevocationStore, TokenHash};

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// The future a store call returns: boxed, so that stores are usable as trait objects.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why a call to a shared store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store did not answer within the configured budget.
    #[error("the store did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The store cannot be reached (connection refused, closed, or being re-established).
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The store answered something unexpected.
    #[error("the store answered unexpectedly: {0}")]
    Protocol(String),
}

impl StoreError {
    /// A stable label for metrics and logs: `timeout`, `unavailable` or `protocol`.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Unavailable(_) => "unavailable",
            Self::Protocol(_) => "protocol",
        }
    }
}
