//! Authorization codes: the pending ones, and a tombstone of each redeemed one until its expiry.
//!
//! A code is exchanged once. Only a valid presentation counts: the client, `redirect_uri`, PKCE verifier, DPoP key
//! and resource all as the authorization request bound them (see [`Binding`]); anything else leaves the code and
//! its family as they were, so whoever merely reads a code can neither burn it nor revoke the login. Presented
//! validly again, it was leaked or replayed (RFC 6749 §4.1.2): the refresh-token family its first exchange started
//! is revoked, so the tokens issued from it stop working. Both stores are bounded; beyond [`MAX_CODES`] the code
//! that expires first (the oldest, all living equally long) is forgotten.

use crate::issuer::AuthorizationCode;
use std::collections::HashMap;

/// How many pending codes, and how many tombstones, the issuer keeps at most.
pub(crate) const MAX_CODES: usize = 10_000;

/// What presenting a code found.
#[derive(Debug)]
pub(crate) enum Taken {
    /// A pending code, now redeemed.
    Fresh(Box<AuthorizationCode>),
    /// A code redeemed before; with the first token of the refresh family its exchange started, if any.
    Reused(Option<String>),
    /// Never issued, expired, or forgotten.
    Unknown,
}

/// What a presentation of a code must match: what the authorization request bound the code to.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    pub dpop_jkt: Option<String>,
    pub audience: String,
}

impl Binding {
    fn of(code: &AuthorizationCode) -> Self {
        Self {
            client_id: code.grant.client_id.clone(),
            redirect_uri: code.redirect_uri.clone(),
            code_challenge: code.code_challenge.clone(),
            dpop_jkt: code.dpop_jkt.clone(),
            audience: code.grant.audience.clone(),
        }
    }
}

/// A redeemed code until its expiry.
#[derive(Debug)]
struct Tombstone {
    expires_at: i64,
    /// What the code was bound to, to tell a valid presentation of it from anyone else's.
    binding: Binding,
    /// The first refresh token of the family the exchange started.
    family: Option<String>,
    /// Presented again since it was redeemed.
    reused: bool,
}

/// The codes, by their value.
#[derive(Debug, Default)]
pub(crate) struct Codes {
    pending: HashMap<String, AuthorizationCode>,
    redeemed: HashMap<String, Tombstone>,
}

impl Codes {
    /// Keeps `code` as `id`, sweeping expired codes first and, when still full, forgetting the oldest.
    pub fn insert(&mut self, id: String, code: AuthorizationCode, now: i64) {
        self.sweep(now);
        make_room(&mut self.pending, |code| code.expires_at);
        self.pending.insert(id, code);
    }

    /// Redeems `id` when `check` accepts the presentation against the code's [`Binding`]: a live pending code
    /// becomes a tombstone, a tombstone reports reuse. When `check` refuses, its error is returned and nothing
    /// changes.
    pub fn take<E>(&mut self, id: &str, now: i64, check: impl FnOnce(&Binding) -> Result<(), E>) -> Result<Taken, E> {
        self.sweep(now);
        if let Some(tombstone) = self.redeemed.get_mut(id) {
            check(&tombstone.binding)?;
            tombstone.reused = true;
            return Ok(Taken::Reused(tombstone.family.clone()));
        }
        let Some(code) = self.pending.get(id) else { return Ok(Taken::Unknown) };
        let binding = Binding::of(code);
        check(&binding)?;
        let Some(code) = self.pending.remove(id) else { return Ok(Taken::Unknown) };
        make_room(&mut self.redeemed, |tombstone| tombstone.expires_at);
        let tombstone = Tombstone { expires_at: code.expires_at, binding, family: None, reused: false };
        self.redeemed.insert(id.to_owned(), tombstone);
        Ok(Taken::Fresh(Box::new(code)))
    }

    /// Records the family the exchange of the redeemed code `id` started, named by its first refresh token.
    /// Returns whether the code was presented again before that (the family must then be revoked at once).
    pub fn started(&mut self, id: &str, first_refresh_token: String) -> bool {
        match self.redeemed.get_mut(id) {
            Some(tombstone) => {
                tombstone.family = Some(first_refresh_token);
                tombstone.reused
            }
            None => false,
        }
    }

    /// Removes expired codes and tombstones.
    fn sweep(&mut self, now: i64) {
        self.pending.retain(|_, code| code.expires_at > now);
        self.redeemed.retain(|_, tombstone| tombstone.expires_at > now);
    }

    /// How many codes are pending.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// How many tombstones are held.
    #[cfg(test)]
    fn redeemed(&self) -> usize {
        self.redeemed.len()
    }
}

/// Forgets the entries of `map` that expire first until one more fits under [`MAX_CODES`].
fn make_room<T>(map: &mut HashMap<String, T>, expires_at: impl Fn(&T) -> i64) {
    while map.len() >= MAX_CODES {
        let Some(oldest) = map.iter().min_by_key(|(_, entry)| expires_at(entry)).map(|(id, _)| id.clone()) else {
            break;
        };
        map.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id_token::Login;
    use crate::issuer::Grant;

    fn ok(_: &Binding) -> Result<(), ()> {
        Ok(())
    }

    fn code(expires_at: i64) -> AuthorizationCode {
        AuthorizationCode {
            grant: Grant::new("spa", "aud"),
            redirect_uri: "http://127.0.0.1:3000/callback".into(),
            code_challenge: None,
            dpop_jkt: None,
            login: Login { auth_time: 0, sid: "s".into(), nonce: None },
            expires_at,
        }
    }

    #[test]
    fn a_redeemed_code_is_remembered_until_its_expiry_with_its_family() {
        let mut codes = Codes::default();
        codes.insert("a".into(), code(300), 0);
        codes.insert("b".into(), code(300), 0);
        assert!(matches!(codes.take("a", 1, ok).unwrap(), Taken::Fresh(_)));
        assert!(!codes.started("b", "rt-0".into()), "not redeemed: nothing recorded");
        assert!(!codes.started("a", "rt-1".into()));
        assert!(matches!(codes.take("a", 2, ok).unwrap(), Taken::Reused(Some(family)) if family == "rt-1"));
        // Presented again while its exchange was still running: the exchange hears it.
        codes.insert("c".into(), code(300), 2);
        assert!(matches!(codes.take("c", 2, ok).unwrap(), Taken::Fresh(_)));
        assert!(matches!(codes.take("c", 2, ok).unwrap(), Taken::Reused(None)));
        assert!(codes.started("c", "rt-2".into()));
        assert!(matches!(codes.take("a", 3, ok).unwrap(), Taken::Reused(Some(family)) if family == "rt-1"));
        assert!(matches!(codes.take("nope", 3, ok).unwrap(), Taken::Unknown));
        assert_eq!((codes.pending(), codes.redeemed()), (1, 2));
        // Expired: the pending code and the tombstone are both gone.
        assert!(matches!(codes.take("a", 300, ok).unwrap(), Taken::Unknown));
        assert!(matches!(codes.take("b", 300, ok).unwrap(), Taken::Unknown));
        assert_eq!((codes.pending(), codes.redeemed()), (0, 0));
    }

    #[test]
    fn a_refused_presentation_changes_nothing() {
        let mut codes = Codes::default();
        codes.insert("a".into(), code(300), 0);
        let other_client = |bound: &Binding| if bound.client_id == "spa" { Err("other client") } else { Ok(()) };
        assert!(matches!(codes.take("a", 1, other_client), Err("other client")));
        assert_eq!((codes.pending(), codes.redeemed()), (1, 0), "still pending");
        assert!(matches!(codes.take("a", 1, ok).unwrap(), Taken::Fresh(_)));
        assert!(!codes.started("a", "rt-1".into()));
        // Redeemed: a refused presentation neither reports reuse nor marks the tombstone.
        assert!(matches!(codes.take("a", 2, other_client), Err("other client")));
        codes.insert("b".into(), code(300), 2);
        assert!(matches!(codes.take("b", 2, ok).unwrap(), Taken::Fresh(_)));
        assert!(matches!(codes.take("b", 2, other_client), Err("other client")));
        assert!(!codes.started("b", "rt-2".into()), "no valid reuse before the family started");
        assert!(matches!(codes.take("a", 3, ok).unwrap(), Taken::Reused(Some(family)) if family == "rt-1"));
    }

    #[test]
    fn the_tombstones_are_bounded_and_forget_the_oldest() {
        let mut codes = Codes::default();
        let last = i64::try_from(MAX_CODES).unwrap();
        for n in 0..last {
            codes.insert(format!("c{n}"), code(1_000 + n), 0);
            assert!(matches!(codes.take(&format!("c{n}"), 0, ok).unwrap(), Taken::Fresh(_)));
        }
        assert_eq!((codes.pending(), codes.redeemed()), (0, MAX_CODES));
        codes.insert("one-more".into(), code(5_000_000), 1);
        assert!(matches!(codes.take("one-more", 1, ok).unwrap(), Taken::Fresh(_)));
        assert_eq!(codes.redeemed(), MAX_CODES);
        assert!(matches!(codes.take("c0", 1, ok).unwrap(), Taken::Unknown), "the oldest tombstone is forgotten");
        assert!(matches!(codes.take("c1", 1, ok).unwrap(), Taken::Reused(None)));
    }

    #[test]
    fn pending_codes_are_bounded_and_the_oldest_is_forgotten() {
        let mut codes = Codes::default();
        let last = i64::try_from(MAX_CODES).unwrap();
        for n in 0..last {
            codes.insert(format!("c{n}"), code(1_000 + n), 0);
        }
        assert_eq!(codes.pending(), MAX_CODES);
        codes.insert("newest".into(), code(1_000 + last), 0);
        assert_eq!(codes.pending(), MAX_CODES);
        assert!(matches!(codes.take("c0", 1, ok).unwrap(), Taken::Unknown), "the oldest is forgotten");
        assert!(matches!(codes.take("c1", 1, ok).unwrap(), Taken::Fresh(_)));
        assert!(matches!(codes.take("newest", 1, ok).unwrap(), Taken::Fresh(_)));
    }
}
