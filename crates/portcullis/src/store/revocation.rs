//! Token revocations: deny entries by `jti`, by the token's SHA-256, and per-subject "not before" times, held by
//! every replica in a [`RevocationList`] so that requests never wait on a shared store for them.

use super::StoreFuture;
use crate::clock::UnixTime;
use crate::error::{Error, Reason};
use crate::token::VerifiedToken;
use arc_swap::ArcSwap;
use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The longest `jti` or `sub` a revocation names, in bytes.
pub const MAX_VALUE_LEN: usize = 1024;

/// One revocation. Entries by `jti` and by token hash refuse the tokens they name until `expires_at` (set it to
/// the token's `exp`: after that the token is refused anyway); a subject entry refuses every token of `sub` issued
/// at or before `before` (and any of its tokens without `iat`) until `expires_at`.
///
/// Its JSON form is what the admin endpoint takes and what replicas exchange:
///
/// ```
/// use portcullis::store::Revocation;
/// let entry: Revocation = serde_json::from_str(r#"{"kind":"subject","sub":"auth0|42","before":1700000000,"expires_at":1700086400}"#).unwrap();
/// assert_eq!(entry, Revocation::Subject { sub: "auth0|42".into(), before: 1_700_000_000, expires_at: 1_700_086_400 });
/// assert_eq!(serde_json::to_string(&entry).unwrap(), r#"{"kind":"subject","sub":"auth0|42","before":1700000000,"expires_at":1700086400}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Revocation {
    /// The token whose `jti` claim is `jti` (from any issuer).
    Jti {
        /// The `jti` claim.
        jti: String,
        /// Seconds since the epoch after which the entry is dropped.
        expires_at: u64,
    },
    /// The token whose signing input hashes to `sha256` (for tokens without `jti`, such as Auth0's default access
    /// tokens). See [`TokenHash::of_token`]: the signature is left out, so a token re-signed with the other valid
    /// form of an ECDSA signature is still named.
    TokenHash {
        /// SHA-256 of the token's signing input: its header and payload segments and the dot between them (the
        /// bytes before the second dot).
        sha256: TokenHash,
        /// Seconds since the epoch after which the entry is dropped.
        expires_at: u64,
    },
    /// Every token of subject `sub` issued at or before `before`.
    Subject {
        /// The `sub` claim.
        sub: String,
        /// Seconds since the epoch: tokens with an `iat` at or before it (or without one) are refused.
        before: u64,
        /// Seconds since the epoch after which the entry is dropped (`before` plus the longest token lifetime).
        expires_at: u64,
    },
}

impl Revocation {
    /// The token with `jti`, until `expires_at`.
    pub fn jti(jti: impl Into<String>, expires_at: UnixTime) -> Self {
        Self::Jti { jti: jti.into(), expires_at: expires_at.as_secs() }
    }

    /// The token hashing to `sha256`, until `expires_at`.
    pub fn token_hash(sha256: TokenHash, expires_at: UnixTime) -> Self {
        Self::TokenHash { sha256, expires_at: expires_at.as_secs() }
    }

    /// Tokens of `sub` issued at or before `before`, until `expires_at`.
    pub fn subject(sub: impl Into<String>, before: UnixTime, expires_at: UnixTime) -> Self {
        Self::Subject { sub: sub.into(), before: before.as_secs(), expires_at: expires_at.as_secs() }
    }

    /// When the entry is dropped.
    pub fn expires_at(&self) -> UnixTime {
        match self {
            Self::Jti { expires_at, .. } | Self::TokenHash { expires_at, .. } | Self::Subject { expires_at, .. } => {
                UnixTime::from_secs(*expires_at)
            }
        }
    }

    /// A stable label for metrics and logs: `jti`, `token_hash` or `subject`.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Jti { .. } => "jti",
            Self::TokenHash { .. } => "token_hash",
            Self::Subject { .. } => "subject",
        }
    }

    /// Checks what deserialization cannot: a non-empty `jti` or `sub` of at most [`MAX_VALUE_LEN`] bytes without
    /// control characters or Unicode bidirectional/format controls (U+061C, U+200E, U+200F, U+202A–U+202E,
    /// U+2066–U+2069, U+FEFF), and `before` not after `expires_at`.
    pub fn validate(&self) -> Result<(), &'static str> {
        let value = match self {
            Self::Jti { jti, .. } => Some(jti),
            Self::Subject { sub, before, expires_at } => {
                if before > expires_at {
                    return Err("before is later than expires_at");
                }
                Some(sub)
            }
            Self::TokenHash { .. } => None,
        };
        match value {
            Some(value) if value.is_empty() => Err("the value is empty"),
            Some(value) if value.len() > MAX_VALUE_LEN => Err("the value is longer than 1024 bytes"),
            Some(value) if value.chars().any(char::is_control) => Err("the value holds a control character"),
            Some(value) if value.chars().any(is_bidi_or_format_control) => {
                Err("the value holds a Unicode bidirectional or format control")
            }
            _ => Ok(()),
        }
    }

    /// Whether the entry names `token` (its expiry aside).
    pub fn matches(&self, token: &VerifiedToken) -> bool {
        match self {
            Self::Jti { jti, .. } => token.registered().jti.as_deref() == Some(jti.as_str()),
            Self::TokenHash { sha256, .. } => TokenHash::of_token(token.raw()) == *sha256,
            Self::Subject { sub, before, .. } => {
                token.subject() == Some(sub.as_str()) && issued_at_or_before(token, *before)
            }
        }
    }
}

/// The Unicode bidirectional and format controls a revoked value may not hold (they make a value display unlike
/// what it is): ALM, LRM, RLM, the embeddings and overrides, the isolates, and the byte-order mark.
fn is_bidi_or_format_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Whether `token` was issued at or before `before` (a token without `iat` counts as issued before anything).
fn issued_at_or_before(token: &VerifiedToken, before: u64) -> bool {
    token.registered().iat.is_none_or(|iat| iat <= before as f64)
}

/// The SHA-256 of a token's signing input (`header.payload`, the bytes before the second dot of its compact form);
/// written as 64 lowercase hex digits.
///
/// The signature is left out on purpose: an ECDSA signature `(r, s)` has a second valid form `(r, n − s)`, so anyone
/// holding a token can make a different compact form that verifies just the same. Both share the signing input.
///
/// ```
/// use portcullis::store::TokenHash;
/// let hash = TokenHash::of_token("a.b.c");
/// assert_eq!(hash, TokenHash::of_token("a.b.other-signature"));
/// assert_ne!(hash, TokenHash::of_token("a.x.c"));
/// assert_eq!(hash.to_string().parse::<TokenHash>().unwrap(), hash);
/// assert!("not hex".parse::<TokenHash>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The hash of `token`'s signing input: the SHA-256 of the bytes before its second dot (of all of `token` when it
    /// has fewer than two dots).
    pub fn of_token(token: &str) -> Self {
        let signing_input = match token.match_indices('.').nth(1) {
            Some((second_dot, _)) => &token[..second_dot],
            None => token,
        };
        let mut hash = [0u8; 32];
        hash.copy_from_slice(digest::digest(&digest::SHA256, signing_input.as_bytes()).as_ref());
        Self(hash)
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({self})")
    }
}

impl FromStr for TokenHash {
    type Err = &'static str;

    /// 64 hex digits, either case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_hex(text).map(Self)
    }
}

impl Serialize for TokenHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TokenHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

pub(super) fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for byte in bytes {
        write!(f, "{byte:02x}")?;
    }
    Ok(())
}

pub(super) fn parse_hex(text: &str) -> Result<[u8; 32], &'static str> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return Err("a SHA-256 is 64 hex digits");
    }
    let mut bytes = [0u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        let high = (pair[0] as char).to_digit(16).ok_or("a SHA-256 is 64 hex digits")?;
        let low = (pair[1] as char).to_digit(16).ok_or("a SHA-256 is 64 hex digits")?;
        *byte = (high * 16 + low) as u8;
    }
    Ok(bytes)
}

/// How many entries of each kind a [`RevocationList`] holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RevocationCounts {
    /// Entries by `jti`.
    pub jti: usize,
    /// Entries by token hash.
    pub token_hashes: usize,
    /// Subjects with a "not before" time.
    pub subjects: usize,
}

#[derive(Default, Clone)]
struct Set {
    jti: HashMap<String, u64>,
    hashes: HashMap<[u8; 32], u64>,
    /// `sub` → (`before`, `expires_at`).
    subjects: HashMap<String, (u64, u64)>,
}

impl Set {
    fn is_empty(&self) -> bool {
        self.jti.is_empty() && self.hashes.is_empty() && self.subjects.is_empty()
    }

    /// Merges `other` into the set (later values win), as [`add`](Self::add) would.
    fn merge(&mut self, other: &Set) {
        for (jti, expires) in &other.jti {
            let slot = self.jti.entry(jti.clone()).or_insert(0);
            *slot = (*slot).max(*expires);
        }
        for (hash, expires) in &other.hashes {
            let slot = self.hashes.entry(*hash).or_insert(0);
            *slot = (*slot).max(*expires);
        }
        for (sub, (before, expires)) in &other.subjects {
            let slot = self.subjects.entry(sub.clone()).or_insert((0, 0));
            slot.0 = slot.0.max(*before);
            slot.1 = slot.1.max(*expires);
        }
    }

    fn earliest_expiry(&self) -> Option<u64> {
        let jti = self.jti.values().copied();
        let hashes = self.hashes.values().copied();
        let subjects = self.subjects.values().map(|(_, expires)| *expires);
        jti.chain(hashes).chain(subjects).min()
    }

    /// Adds `entry`; `true` when it changed the set (new, a later expiry, or a later `before`).
    fn add(&mut self, entry: &Revocation) -> bool {
        fn later(slot: &mut u64, value: u64) -> bool {
            let grew = value > *slot;
            *slot = (*slot).max(value);
            grew
        }
        match entry {
            Revocation::Jti { jti, expires_at } => match self.jti.get_mut(jti) {
                Some(slot) => later(slot, *expires_at),
                None => self.jti.insert(jti.clone(), *expires_at).is_none(),
            },
            Revocation::TokenHash { sha256, expires_at } => match self.hashes.get_mut(sha256.as_bytes()) {
                Some(slot) => later(slot, *expires_at),
                None => self.hashes.insert(*sha256.as_bytes(), *expires_at).is_none(),
            },
            Revocation::Subject { sub, before, expires_at } => match self.subjects.get_mut(sub) {
                Some((known_before, known_expiry)) => {
                    let moved = later(known_before, *before);
                    later(known_expiry, *expires_at) || moved
                }
                None => self.subjects.insert(sub.clone(), (*before, *expires_at)).is_none(),
            },
        }
    }

    fn prune(&mut self, now: u64) -> bool {
        let before = self.len();
        self.jti.retain(|_, expires| *expires > now);
        self.hashes.retain(|_, expires| *expires > now);
        self.subjects.retain(|_, (_, expires)| *expires > now);
        self.len() != before
    }

    fn len(&self) -> usize {
        self.jti.len() + self.hashes.len() + self.subjects.len()
    }

    /// `Err(token_revoked)` when an entry expiring after `now` names `token`.
    fn names(&self, token: &VerifiedToken, now: u64) -> Result<(), Error> {
        let in_force = |expires: u64| expires > now;
        if let Some(jti) = token.registered().jti.as_deref()
            && self.jti.get(jti).is_some_and(|expires| in_force(*expires))
        {
            return Err(Error::new(Reason::TokenRevoked, "the token has been revoked"));
        }
        if !self.hashes.is_empty()
            && self.hashes.get(TokenHash::of_token(token.raw()).as_bytes()).is_some_and(|expires| in_force(*expires))
        {
            return Err(Error::new(Reason::TokenRevoked, "the token has been revoked"));
        }
        if let Some(sub) = token.subject()
            && let Some((before, expires)) = self.subjects.get(sub)
            && in_force(*expires)
            && issued_at_or_before(token, *before)
        {
            return Err(Error::new(
                Reason::TokenRevoked,
                "the tokens of this subject issued until a revocation time have been revoked",
            ));
        }
        Ok(())
    }
}

/// The set readers see: a shared base and a small delta of what was added since. Adding an entry copies only the
/// delta; the delta merges into a new base once it outgrows `max(1024, base / 8)`, so a burst of N entries costs
/// O(N log N) copies rather than O(N²). The delta holds each of its keys with the combined value (base and new
/// entry together), so a lookup asks the delta first and the base only for keys the delta lacks.
#[derive(Default, Clone)]
struct Layered {
    base: Arc<Set>,
    delta: Set,
    /// Keys in `delta` that `base` lacks.
    fresh: usize,
}

/// The smallest delta that merges into the base.
const MIN_MERGE: usize = 1024;

impl Layered {
    fn is_empty(&self) -> bool {
        self.base.is_empty() && self.delta.is_empty()
    }

    fn len(&self) -> usize {
        self.base.len() + self.fresh
    }

    fn jti(&self, jti: &str) -> Option<u64> {
        self.delta.jti.get(jti).or_else(|| self.base.jti.get(jti)).copied()
    }

    fn hash(&self, hash: &[u8; 32]) -> Option<u64> {
        self.delta.hashes.get(hash).or_else(|| self.base.hashes.get(hash)).copied()
    }

    fn subject(&self, sub: &str) -> Option<(u64, u64)> {
        self.delta.subjects.get(sub).or_else(|| self.base.subjects.get(sub)).copied()
    }

    /// Whether [`add`](Self::add) would change the set, without changing it.
    fn would_grow(&self, entry: &Revocation) -> bool {
        match entry {
            Revocation::Jti { jti, expires_at } => self.jti(jti).is_none_or(|known| *expires_at > known),
            Revocation::TokenHash { sha256, expires_at } => {
                self.hash(sha256.as_bytes()).is_none_or(|known| *expires_at > known)
            }
            Revocation::Subject { sub, before, expires_at } => self
                .subject(sub)
                .is_none_or(|(known_before, known_expiry)| *before > known_before || *expires_at > known_expiry),
        }
    }

    /// Adds `entry` to the delta, combined with what the base holds for its key; `true` when it changed the set.
    fn add(&mut self, entry: &Revocation) -> bool {
        if !self.would_grow(entry) {
            return false;
        }
        let (in_delta, in_base, combined) = match entry {
            Revocation::Jti { jti, expires_at } => {
                let known = self.jti(jti).unwrap_or(0);
                (
                    self.delta.jti.contains_key(jti),
                    self.base.jti.contains_key(jti),
                    Revocation::Jti { jti: jti.clone(), expires_at: known.max(*expires_at) },
                )
            }
            Revocation::TokenHash { sha256, expires_at } => {
                let known = self.hash(sha256.as_bytes()).unwrap_or(0);
                (
                    self.delta.hashes.contains_key(sha256.as_bytes()),
                    self.base.hashes.contains_key(sha256.as_bytes()),
                    Revocation::TokenHash { sha256: *sha256, expires_at: known.max(*expires_at) },
                )
            }
            Revocation::Subject { sub, before, expires_at } => {
                let (known_before, known_expiry) = self.subject(sub).unwrap_or((0, 0));
                (
                    self.delta.subjects.contains_key(sub),
                    self.base.subjects.contains_key(sub),
                    Revocation::Subject {
                        sub: sub.clone(),
                        before: known_before.max(*before),
                        expires_at: known_expiry.max(*expires_at),
                    },
                )
            }
        };
        if !in_delta && !in_base {
            self.fresh += 1;
        }
        self.delta.add(&combined);
        true
    }

    /// Whether the delta is due to merge into the base.
    fn outgrown(&self) -> bool {
        self.delta.len() > MIN_MERGE.max(self.base.len() / 8)
    }

    /// One set of base and delta, without the entries expired at `now`.
    fn merged(&self, now: u64) -> Set {
        let mut set = Set::clone(&self.base);
        set.merge(&self.delta);
        set.prune(now);
        set
    }

    /// Every key once, its delta value winning.
    fn flat(&self) -> std::borrow::Cow<'_, Set> {
        if self.delta.is_empty() {
            std::borrow::Cow::Borrowed(&self.base)
        } else {
            std::borrow::Cow::Owned(self.merged(0))
        }
    }

    /// `Err(token_revoked)` when an entry expiring after `now` names `token`.
    fn names(&self, token: &VerifiedToken, now: u64) -> Result<(), Error> {
        let in_force = |expires: u64| expires > now;
        if let Some(jti) = token.registered().jti.as_deref()
            && self.jti(jti).is_some_and(in_force)
        {
            return Err(Error::new(Reason::TokenRevoked, "the token has been revoked"));
        }
        if !(self.base.hashes.is_empty() && self.delta.hashes.is_empty())
            && self.hash(TokenHash::of_token(token.raw()).as_bytes()).is_some_and(in_force)
        {
            return Err(Error::new(Reason::TokenRevoked, "the token has been revoked"));
        }
        if let Some(sub) = token.subject()
            && let Some((before, expires)) = self.subject(sub)
            && in_force(expires)
            && issued_at_or_before(token, before)
        {
            return Err(Error::new(
                Reason::TokenRevoked,
                "the tokens of this subject issued until a revocation time have been revoked",
            ));
        }
        Ok(())
    }
}

/// Expired entries never refuse anything (every lookup compares the expiry), so the set is rebuilt to drop them at
/// most this often (in seconds), or when the delta merges anyway.
const PRUNE_EVERY: u64 = 30;

/// Entries gathered for matching many tokens: one lookup per token and kind, whatever the number of entries (a
/// token cache dropping what a resynchronization brought).
#[cfg(feature = "cache")]
#[derive(Default)]
pub(crate) struct Matcher {
    set: Set,
}

#[cfg(feature = "cache")]
impl Matcher {
    /// The entries to match, their expiry aside.
    pub(crate) fn new(entries: &[Revocation]) -> Self {
        let mut set = Set::default();
        for entry in entries {
            set.add(entry);
        }
        Self { set }
    }

    /// Whether an entry names `token`.
    pub(crate) fn matches(&self, token: &VerifiedToken) -> bool {
        !self.set.is_empty() && self.set.names(token, 0).is_err()
    }
}

type Listener = Box<dyn Fn(&[Revocation]) -> bool + Send + Sync>;

struct Shared {
    set: ArcSwap<Layered>,
    /// How many entries `set` holds, for the check of an empty list: one atomic load.
    entries: AtomicUsize,
    /// At most the earliest `expires_at` in `set` (`u64::MAX` when empty): nothing is due for pruning before it.
    earliest: AtomicU64,
    /// When (`now`, seconds) the set was last pruned.
    pruned_at: AtomicU64,
    /// How many times the whole set was rebuilt (the delta merged, or expired entries dropped).
    rebuilds: AtomicU64,
    /// Serializes writers (readers never wait).
    write: Mutex<()>,
    listeners: Mutex<Vec<Listener>>,
}

/// The revocations one replica enforces: a set swapped atomically, so checking a token never takes a lock.
/// Cloning is cheap and clones share the set.
///
/// Entries only ever grow or expire: applying what a replica already knows changes nothing, so a resynchronization
/// can apply the whole shared set again.
#[derive(Clone)]
pub struct RevocationList {
    shared: Arc<Shared>,
}

impl Default for RevocationList {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RevocationList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationList").field("counts", &self.counts()).finish()
    }
}

impl RevocationList {
    /// An empty list.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                set: ArcSwap::from_pointee(Layered::default()),
                entries: AtomicUsize::new(0),
                earliest: AtomicU64::new(u64::MAX),
                pruned_at: AtomicU64::new(0),
                rebuilds: AtomicU64::new(0),
                write: Mutex::new(()),
                listeners: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Adds `entries`; drops those expired at `now` (at most every 30 s: an expired entry refuses nothing
    /// meanwhile). Returns how many entries changed the list (new ones, or ones extending an entry); listeners hear
    /// about exactly those. Entries already expired at `now` are ignored. Adding an entry copies a small delta,
    /// never the whole set: apply a burst as one slice or one at a time, at about the same cost.
    pub fn apply(&self, entries: &[Revocation], now: UnixTime) -> usize {
        self.apply_at(entries, now.as_secs(), false)
    }

    fn apply_at(&self, entries: &[Revocation], now: u64, force_prune: bool) -> usize {
        let changed: Vec<Revocation> = {
            let _writer = self.shared.write.lock().unwrap_or_else(PoisonError::into_inner);
            let current = self.shared.set.load();
            let expired = self.shared.earliest.load(Ordering::Acquire) <= now;
            let prune_due = expired
                && (force_prune || now >= self.shared.pruned_at.load(Ordering::Acquire).saturating_add(PRUNE_EVERY));
            // Applying what the list already holds (every replica hears its own revocations back, and a resync
            // reads the whole set again) must not copy anything.
            let grows = entries.iter().any(|entry| entry.expires_at().as_secs() > now && current.would_grow(entry));
            if !grows && !prune_due {
                return 0;
            }
            let mut next = Layered::clone(&current);
            let changed: Vec<Revocation> =
                entries.iter().filter(|entry| entry.expires_at().as_secs() > now && next.add(entry)).cloned().collect();
            let mut earliest = self.shared.earliest.load(Ordering::Acquire);
            if prune_due || next.outgrown() {
                let set = next.merged(now);
                earliest = set.earliest_expiry().unwrap_or(u64::MAX);
                next = Layered { base: Arc::new(set), delta: Set::default(), fresh: 0 };
                self.shared.rebuilds.fetch_add(1, Ordering::Relaxed);
                self.shared.pruned_at.store(now, Ordering::Release);
            } else if let Some(soonest) = changed.iter().map(|entry| entry.expires_at().as_secs()).min() {
                earliest = earliest.min(soonest);
            }
            let entries = next.len();
            self.shared.set.store(Arc::new(next));
            self.shared.earliest.store(earliest, Ordering::Release);
            self.shared.entries.store(entries, Ordering::Release);
            changed
        };
        if !changed.is_empty() {
            let mut listeners = self.shared.listeners.lock().unwrap_or_else(PoisonError::into_inner);
            listeners.retain(|listener| listener(&changed));
        }
        changed.len()
    }

    /// Drops the entries expired at `now`, now.
    pub fn prune(&self, now: UnixTime) {
        self.apply_at(&[], now.as_secs(), true);
    }

    /// How many times the whole set was rebuilt (for tests of the cost of a burst of revocations).
    #[doc(hidden)]
    pub fn rebuilds(&self) -> u64 {
        self.shared.rebuilds.load(Ordering::Relaxed)
    }

    /// `Err(token_revoked)` when an entry in force at `now` names `token`. Call it only on a verified token.
    /// With an empty list this is one atomic load.
    pub fn check(&self, token: &VerifiedToken, now: UnixTime) -> Result<(), Error> {
        if self.shared.entries.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let set = self.shared.set.load();
        if set.is_empty() {
            return Ok(());
        }
        set.names(token, now.as_secs())
    }

    /// Every entry, in no particular order.
    pub fn entries(&self) -> Vec<Revocation> {
        let layered = self.shared.set.load();
        let set = layered.flat();
        let jti = set.jti.iter().map(|(jti, expires_at)| Revocation::Jti { jti: jti.clone(), expires_at: *expires_at });
        let hashes = set
            .hashes
            .iter()
            .map(|(hash, expires_at)| Revocation::TokenHash { sha256: TokenHash(*hash), expires_at: *expires_at });
        let subjects = set.subjects.iter().map(|(sub, (before, expires_at))| Revocation::Subject {
            sub: sub.clone(),
            before: *before,
            expires_at: *expires_at,
        });
        jti.chain(hashes).chain(subjects).collect()
    }

    /// How many entries of each kind the list holds.
    pub fn counts(&self) -> RevocationCounts {
        let layered = self.shared.set.load();
        let set = layered.flat();
        RevocationCounts { jti: set.jti.len(), token_hashes: set.hashes.len(), subjects: set.subjects.len() }
    }

    /// How many entries the list holds.
    pub fn len(&self) -> usize {
        self.shared.set.load().len()
    }

    /// Whether the list holds no entry.
    pub fn is_empty(&self) -> bool {
        self.shared.set.load().is_empty()
    }

    /// Calls `listener` with the entries each [`apply`](Self::apply) adds or extends, after the list holds them,
    /// until it returns `false` (a verified-token cache drops the tokens they name, and unregisters once it is
    /// gone itself). Registering also calls every listener already registered with no entries, so that those
    /// whose owner is gone answer `false` and are forgotten: the listeners do not pile up across rebuilt
    /// verifiers sharing one list.
    pub fn on_change(&self, listener: impl Fn(&[Revocation]) -> bool + Send + Sync + 'static) {
        let mut listeners = self.shared.listeners.lock().unwrap_or_else(PoisonError::into_inner);
        listeners.retain(|listener| listener(&[]));
        listeners.push(Box::new(listener));
    }

    /// How many listeners are registered whose owner is still alive (for tests of the listener lifecycle).
    #[doc(hidden)]
    pub fn listener_count(&self) -> usize {
        let mut listeners = self.shared.listeners.lock().unwrap_or_else(PoisonError::into_inner);
        listeners.retain(|listener| listener(&[]));
        listeners.len()
    }
}

/// Where revocations are recorded so that every replica enforces them.
///
/// Implementations: [`RevocationList`] itself (one replica: the entry is in force at once), and Redis in
/// `portcullis-redis`, which stores the entry, publishes it to every replica, and adds it to its local list.
pub trait RevocationStore: Send + Sync + fmt::Debug {
    /// Records `revocation` (already [validated](Revocation::validate)) at `now`. When this returns `Ok`, this
    /// replica's list holds it and the store has it for every other replica.
    fn revoke(&self, revocation: Revocation, now: UnixTime) -> StoreFuture<'_, ()>;

    /// A short name for logs and metrics: `memory`, `redis`.
    fn name(&self) -> &'static str;
}

impl RevocationStore for RevocationList {
    fn revoke(&self, revocation: Revocation, now: UnixTime) -> StoreFuture<'_, ()> {
        self.apply(std::slice::from_ref(&revocation), now);
        Box::pin(std::future::ready(Ok(())))
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applying_known_entries_keeps_the_set_without_copying_it_until_one_expires() {
        let list = RevocationList::new();
        let entries = [Revocation::jti("a", UnixTime::from_secs(200)), Revocation::jti("b", UnixTime::from_secs(300))];
        assert_eq!(list.apply(&entries, UnixTime::from_secs(100)), 2);
        let before = list.shared.set.load_full();
        assert_eq!(list.apply(&entries, UnixTime::from_secs(150)), 0);
        assert!(Arc::ptr_eq(&before, &list.shared.set.load_full()), "nothing new, nothing due: the same set");
        assert_eq!(list.apply(&entries[1..], UnixTime::from_secs(250)), 0);
        assert!(!Arc::ptr_eq(&before, &list.shared.set.load_full()), "an entry expired: pruned");
        assert_eq!(list.len(), 1);
    }
}
