//! Refresh tokens with rotation and reuse detection, as Auth0 does them.
//!
//! Every authorization-code exchange that grants `offline_access` starts a *family*. Each refresh hands out the
//! family's next token and marks the presented one used; presenting a used token again means two parties hold
//! the family (one of them stole it), so the whole family is revoked, newest token included. A token expires when
//! it is not used within the inactivity lifetime, and every token of a family expires at the family's absolute
//! lifetime, counted from the exchange that started it. Used tokens are kept (to recognise reuse) only while
//! their family is alive; dead families are swept whenever a token is issued.
//!
//! A family started by a DPoP token request is bound to that proof's key (RFC 9449 §5): each refresh must prove the
//! same key, and a request that does not is refused without using the token (a thief without the key can neither
//! redeem it nor, by presenting it, revoke the family).
//!
//! A family keeps the login it started from (`auth_time`, `sid`, never the nonce), so that each refresh of an
//! `openid` family answers an ID token about that same login, and can be revoked whole (RFC 7009).

use crate::id_token::Login;
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
    /// The thumbprint of the DPoP key the family is bound to.
    jkt: Option<String>,
    /// The login the family started from, without its nonce.
    login: Login,
}

/// A refresh request: the token presented and what the request proves and names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Presented<'a> {
    /// The refresh token.
    pub token: &'a str,
    /// The authenticated client.
    pub client_id: &'a str,
    /// The thumbprint of the request's DPoP proof key.
    pub jkt: Option<&'a str>,
    /// The API the request names, if it names one.
    pub resource: Option<&'a str>,
}

/// A successful refresh.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rotated {
    /// What the new access token is for.
    pub grant: Grant,
    /// The family's next refresh token.
    pub next: String,
    /// The login the family started from (no nonce: a refreshed ID token echoes none).
    pub login: Login,
}

/// Why a refresh token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Never issued, revoked or swept.
    Unknown,
    /// Issued to another client.
    OtherClient,
    /// Bound to a DPoP key the request did not prove.
    KeyMismatch,
    /// The request names (RFC 8707 `resource`) another API than the family's.
    OtherTarget,
    /// Past its inactivity or absolute lifetime.
    Expired,
    /// Used before: its family is now revoked.
    Reused,
}

/// What the tokens of one family share.
struct Family {
    id: String,
    ends_at: i64,
    jkt: Option<String>,
    login: Login,
}

/// What a revocation request (RFC 7009) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Revoked {
    /// The token's family is gone.
    Family,
    /// No such token (never issued, already revoked, or swept): nothing to do, and nothing said about it.
    Unknown,
    /// The token was issued to another client; nothing was revoked.
    OtherClient,
    /// The family is bound to a DPoP key the request did not prove; nothing was revoked.
    KeyMismatch,
}

/// Every refresh token handed out and not yet swept.
#[derive(Debug, Default)]
pub(crate) struct RefreshTokens {
    tokens: HashMap<String, RefreshToken>,
}

impl RefreshTokens {
    /// Starts a family for `grant` after `login` and returns its first token. The login's nonce is dropped.
    pub fn start(&mut self, grant: Grant, login: Login, jkt: Option<String>, now: i64, lifetimes: Lifetimes) -> String {
        let login = Login { nonce: None, ..login };
        let family = Family { id: random_string(16), ends_at: now.saturating_add(lifetimes.absolute), jkt, login };
        let token = self.insert(grant, family, now, lifetimes);
        self.sweep(now);
        token
    }

    /// Exchanges `presented` (for `client_id`, with a proof of the key `jkt` if any) for the family's next token,
    /// or refuses it. A reused token revokes its family.
    pub fn rotate(&mut self, presented: Presented<'_>, now: i64, lifetimes: Lifetimes) -> Result<Rotated, Refused> {
        let result = self.exchange(presented, now, lifetimes);
        self.sweep(now);
        result
    }

    fn exchange(&mut self, presented: Presented<'_>, now: i64, lifetimes: Lifetimes) -> Result<Rotated, Refused> {
        let Some(token) = self.tokens.get_mut(presented.token) else { return Err(Refused::Unknown) };
        if token.grant.client_id != presented.client_id {
            return Err(Refused::OtherClient);
        }
        if token.jkt.as_deref().is_some_and(|bound| Some(bound) != presented.jkt) {
            return Err(Refused::KeyMismatch);
        }
        if presented.resource.is_some_and(|resource| resource != token.grant.audience) {
            return Err(Refused::OtherTarget);
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
        let family = Family {
            id: token.family.clone(),
            ends_at: token.family_ends_at,
            jkt: token.jkt.clone(),
            login: token.login.clone(),
        };
        let (grant, login) = (token.grant.clone(), token.login.clone());
        let next = self.insert(grant.clone(), family, now, lifetimes);
        Ok(Rotated { grant, next, login })
    }

    /// Revokes the family of `token` when it was issued to `client_id` (RFC 7009 §2.1: a client revokes only its
    /// own tokens) and, for a bound family, the request proves its key `jkt`. A used token names its family as
    /// well as the newest one does.
    pub fn revoke(&mut self, token: &str, client_id: &str, jkt: Option<&str>, now: i64) -> Revoked {
        let outcome = match self.tokens.get(token) {
            None => Revoked::Unknown,
            Some(found) if found.grant.client_id != client_id => Revoked::OtherClient,
            Some(found) if found.jkt.as_deref().is_some_and(|bound| Some(bound) != jkt) => Revoked::KeyMismatch,
            Some(found) => {
                let family = found.family.clone();
                self.tokens.retain(|_, t| t.family != family);
                Revoked::Family
            }
        };
        self.sweep(now);
        outcome
    }

    /// Revokes the family of `token` whoever holds it: the code that started it was presented again.
    pub fn revoke_family_of(&mut self, token: &str, now: i64) {
        if let Some(family) = self.tokens.get(token).map(|found| found.family.clone()) {
            self.tokens.retain(|_, t| t.family != family);
        }
        self.sweep(now);
    }

    fn insert(&mut self, grant: Grant, family: Family, now: i64, lifetimes: Lifetimes) -> String {
        let token = random_string(32);
        let expires_at = now.saturating_add(lifetimes.idle).min(family.ends_at);
        let entry = RefreshToken {
            grant,
            family: family.id,
            expires_at,
            family_ends_at: family.ends_at,
            used: false,
            jkt: family.jkt,
            login: family.login,
        };
        self.tokens.insert(token.clone(), entry);
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

    fn ask<'a>(token: &'a str, client_id: &'a str, jkt: Option<&'a str>) -> Presented<'a> {
        Presented { token, client_id, jkt, resource: None }
    }

    fn login() -> Login {
        Login { auth_time: 7, sid: "sid-1".into(), nonce: Some("n".into()) }
    }

    fn grant(client_id: &str) -> Grant {
        Grant { client_id: client_id.into(), user: Some("alice".into()), audience: "aud".into(), scopes: Vec::new() }
    }

    #[test]
    fn rotation_reuse_and_lifetimes() {
        let mut store = RefreshTokens::default();
        let first = store.start(grant("spa"), login(), None, 0, LIFETIMES);
        let other = store.start(grant("spa"), login(), None, 0, LIFETIMES);
        assert_eq!(store.rotate(ask(&first, "another-client", None), 1, LIFETIMES), Err(Refused::OtherClient));
        let second = store.rotate(ask(&first, "spa", None), 10, LIFETIMES).unwrap().next;
        assert_ne!(first, second);
        assert_eq!(store.len(), 3, "the used token is kept while its family lives");
        assert_eq!(store.rotate(ask(&first, "spa", None), 11, LIFETIMES), Err(Refused::Reused));
        assert_eq!(
            store.rotate(ask(&second, "spa", None), 12, LIFETIMES),
            Err(Refused::Unknown),
            "the family is revoked"
        );
        assert_eq!(store.len(), 1, "only the other family remains");

        // Inactivity: 40 s after its issue a token is dead.
        assert_eq!(store.rotate(ask(&other, "spa", None), 40, LIFETIMES), Err(Refused::Expired));
        assert_eq!(store.len(), 0);

        // Absolute: used every 30 s, the family still ends 100 s after it started.
        let mut token = store.start(grant("spa"), login(), None, 1000, LIFETIMES);
        for now in [1030, 1060, 1090] {
            token = store.rotate(ask(&token, "spa", None), now, LIFETIMES).unwrap().next;
        }
        assert_eq!(store.len(), 4);
        assert_eq!(store.rotate(ask(&token, "spa", None), 1100, LIFETIMES), Err(Refused::Expired));
        assert_eq!(store.len(), 0, "a dead family's used tokens are swept");
    }

    #[test]
    fn a_bound_family_needs_its_key_and_a_refusal_has_no_effect() {
        let mut store = RefreshTokens::default();
        let first = store.start(grant("spa"), login(), Some("key-a".into()), 0, LIFETIMES);
        for jkt in [None, Some("key-b")] {
            assert_eq!(store.rotate(ask(&first, "spa", jkt), 1, LIFETIMES), Err(Refused::KeyMismatch), "{jkt:?}");
        }
        let second = store.rotate(ask(&first, "spa", Some("key-a")), 2, LIFETIMES).unwrap().next;
        assert_eq!(
            store.rotate(ask(&second, "spa", None), 3, LIFETIMES),
            Err(Refused::KeyMismatch),
            "the binding stays"
        );
        // Without the key, presenting a used token is refused and does not revoke the family.
        assert_eq!(store.rotate(ask(&first, "spa", Some("key-b")), 4, LIFETIMES), Err(Refused::KeyMismatch));
        assert!(store.rotate(ask(&second, "spa", Some("key-a")), 5, LIFETIMES).is_ok());
        // An unbound family takes any request, with or without a proof.
        let free = store.start(grant("spa"), login(), None, 0, LIFETIMES);
        let elsewhere = Presented { resource: Some("https://other.example"), ..ask(&free, "spa", None) };
        assert_eq!(store.rotate(elsewhere, 1, LIFETIMES), Err(Refused::OtherTarget));
        let same = Presented { resource: Some("aud"), ..ask(&free, "spa", Some("key-c")) };
        assert!(store.rotate(same, 1, LIFETIMES).is_ok());
    }
}

#[cfg(test)]
mod login_and_revocation {
    use super::*;

    const LIFETIMES: Lifetimes = Lifetimes { absolute: 100, idle: 40 };

    fn presented(token: &str) -> Presented<'_> {
        Presented { token, client_id: "spa", jkt: None, resource: None }
    }

    #[test]
    fn a_family_keeps_its_login_without_the_nonce() {
        let mut store = RefreshTokens::default();
        let login = Login { auth_time: 5, sid: "sid-9".into(), nonce: Some("once".into()) };
        let grant = Grant::new("spa", "aud").with_user("alice");
        let first = store.start(grant, login, None, 10, LIFETIMES);
        let rotated = store.rotate(presented(&first), 11, LIFETIMES).unwrap();
        assert_eq!(rotated.login, Login { auth_time: 5, sid: "sid-9".into(), nonce: None });
        let again = store.rotate(presented(&rotated.next), 12, LIFETIMES).unwrap();
        assert_eq!(again.login, rotated.login, "every rotation speaks of the same login");
    }

    #[test]
    fn revocation_removes_the_whole_family_of_the_client_only() {
        let mut store = RefreshTokens::default();
        let login = Login { auth_time: 0, sid: "s".into(), nonce: None };
        let start =
            |store: &mut RefreshTokens| store.start(Grant::new("spa", "aud"), login.clone(), None, 0, LIFETIMES);
        let first = start(&mut store);
        let kept = start(&mut store);
        let second = store.rotate(presented(&first), 1, LIFETIMES).unwrap().next;
        assert_eq!(store.revoke(&second, "another", None, 2), Revoked::OtherClient);
        assert_eq!(store.len(), 3, "another client's request revokes nothing");
        // The used token names the family as well as the newest one.
        assert_eq!(store.revoke(&first, "spa", Some("any-key"), 2), Revoked::Family, "an unbound family");
        assert_eq!(store.len(), 1);
        assert_eq!(store.rotate(presented(&second), 3, LIFETIMES), Err(Refused::Unknown));
        assert_eq!(store.revoke(&second, "spa", None, 3), Revoked::Unknown);
        assert!(store.rotate(presented(&kept), 3, LIFETIMES).is_ok(), "another family is untouched");
        // A bound family: only a proof of its key revokes it.
        let bound = store.start(Grant::new("spa", "aud"), login, Some("key-a".into()), 3, LIFETIMES);
        for jkt in [None, Some("key-b")] {
            assert_eq!(store.revoke(&bound, "spa", jkt, 4), Revoked::KeyMismatch, "{jkt:?}");
        }
        assert_eq!(store.revoke(&bound, "spa", Some("key-a"), 4), Revoked::Family);
    }
}
