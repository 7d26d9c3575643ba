//! Refresh tokens with rotation and reuse detection, as Auth0 does them.
//!
//! Every authorization-code exchange that grants `offline_access` starts a *family*. Each refresh hands out the
//! family's next token and marks the presented one used; presenting a used token again means two parties hold
//! the family (one of them stole it), so the whole family is revoked, newest token included. A token expires when
//! it is not used within the inactivity lifetime, and every token of a family expires at the family's absolute
//! lifetime, counted from the exchange that started it. Used tokens are kept (to recognise reuse) only while
//! their family is alive; dead families are swept whenever a token is issued.

use crate::issuer::{Grant, random_string};
use std::collections::{HashMap, HashSet};

/// The lifetimes that apply, in seconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lifetimes {
    /// From the start of the family.
    pub absolute: i64,
    /// From the issue of each token.
    pub idle: i64,
}

#[derive(Debug, Clone)]
struct RefreshToken {
    grant: Grant,
    family: String,
    /// When the token expires: its inactivity deadline, never later than the family's end.
    expires_at: i64,
    /// When the family ends.
    family_ends_at: i64,
    /// Already exchanged; presenting it again is reuse.
    used: bool,
}

/// Why a refresh token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Never issued, revoked or swept.
    Unknown,
    /// Issued to another client.
    OtherClient,
    /// Past its inactivity or absolute lifetime.
    Expired,
    /// Used before: its family is now revoked.
    Reused,
}

/// Every refresh token handed out and not yet swept.
#[derive(Debug, Default)]
pub(crate) struct RefreshTokens {
    tokens: HashMap<String, RefreshToken>,
}

impl RefreshTokens {
    /// Starts a family for `grant` and returns its first token.
    pub fn start(&mut self, grant: Grant, now: i64, lifetimes: Lifetimes) -> String {
        let family_ends_at = now.saturating_add(lifetimes.absolute);
        let token = self.insert(grant, random_string(16), family_ends_at, now, lifetimes);
        self.sweep(now);
        token
    }

    /// Exchanges `presented` (for `client_id`) for the family's next token, or refuses it. A reused token revokes
    /// its family.
    pub fn rotate(
        &mut self,
        presented: &str,
        client_id: &str,
        now: i64,
        lifetimes: Lifetimes,
    ) -> Result<(Grant, String), Refused> {
        let result = self.exchange(presented, client_id, now, lifetimes);
        self.sweep(now);
        result
    }

    fn exchange(
        &mut self,
        presented: &str,
        client_id: &str,
        now: i64,
        lifetimes: Lifetimes,
    ) -> Result<(Grant, String), Refused> {
        let Some(token) = self.tokens.get_mut(presented) else { return Err(Refused::Unknown) };
        if token.grant.client_id != client_id {
            return Err(Refused::OtherClient);
        }
        if token.used {
            let family = token.family.clone();
            self.tokens.retain(|_, t| t.family != family);
            return Err(Refused::Reused);
        }
        if now >= token.expires_at {
            return Err(Refused::Expired);
        }
        token.used = true;
        let (grant, family, family_ends_at) = (token.grant.clone(), token.family.clone(), token.family_ends_at);
        let next = self.insert(grant.clone(), family, family_ends_at, now, lifetimes);
        Ok((grant, next))
    }

    fn insert(&mut self, grant: Grant, family: String, family_ends_at: i64, now: i64, lifetimes: Lifetimes) -> String {
        let token = random_string(32);
        let expires_at = now.saturating_add(lifetimes.idle).min(family_ends_at);
        self.tokens.insert(token.clone(), RefreshToken { grant, family, expires_at, family_ends_at, used: false });
        token
    }

    /// Removes expired tokens, and the used tokens of families that no longer have a live token.
    pub fn sweep(&mut self, now: i64) {
        let live: HashSet<String> =
            self.tokens.values().filter(|t| !t.used && now < t.expires_at).map(|t| t.family.clone()).collect();
        self.tokens.retain(|_, t| live.contains(&t.family) && (t.used || now < t.expires_at));
    }

    /// How many tokens are held, used ones included.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIFETIMES: Lifetimes = Lifetimes { absolute: 100, idle: 40 };

    fn grant(client_id: &str) -> Grant {
        Grant { client_id: client_id.into(), user: Some("alice".into()), audience: "aud".into(), scopes: Vec::new() }
    }

    #[test]
    fn rotation_reuse_and_lifetimes() {
        let mut store = RefreshTokens::default();
        let first = store.start(grant("spa"), 0, LIFETIMES);
        let other = store.start(grant("spa"), 0, LIFETIMES);
        assert_eq!(store.rotate(&first, "another-client", 1, LIFETIMES), Err(Refused::OtherClient));
        let (_, second) = store.rotate(&first, "spa", 10, LIFETIMES).unwrap();
        assert_ne!(first, second);
        assert_eq!(store.len(), 3, "the used token is kept while its family lives");
        assert_eq!(store.rotate(&first, "spa", 11, LIFETIMES), Err(Refused::Reused));
        assert_eq!(store.rotate(&second, "spa", 12, LIFETIMES), Err(Refused::Unknown), "the family is revoked");
        assert_eq!(store.len(), 1, "only the other family remains");

        // Inactivity: 40 s after its issue a token is dead.
        assert_eq!(store.rotate(&other, "spa", 40, LIFETIMES), Err(Refused::Expired));
        assert_eq!(store.len(), 0);

        // Absolute: used every 30 s, the family still ends 100 s after it started.
        let mut token = store.start(grant("spa"), 1000, LIFETIMES);
        for now in [1030, 1060, 1090] {
            token = store.rotate(&token, "spa", now, LIFETIMES).unwrap().1;
        }
        assert_eq!(store.len(), 4);
        assert_eq!(store.rotate(&token, "spa", 1100, LIFETIMES), Err(Refused::Expired));
        assert_eq!(store.len(), 0, "a dead family's used tokens are swept");
    }
}
