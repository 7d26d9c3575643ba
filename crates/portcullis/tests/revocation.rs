//! Revocations: the `RevocationList` on its own (apply, expiry, concurrency, JSON), and a `Verifier` enforcing it on
//! every path (`verify`, `verify_now`, `verify_async`, `explain`), cached tokens included.
#![allow(clippy::unwrap_used)]

use portcullis::clock::{Clock, ManualClock, UnixTime};
use portcullis::signing::SigningKey;
use portcullis::store::{Revocation, RevocationList, RevocationStore, TokenHash};
use portcullis::{Algorithm, KeySet, Reason, VerifiedToken, Verifier};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const NOW: u64 = 1_800_000_000;
const ISSUER: &str = "https://tenant.example.com/";
const AUDIENCE: &str = "https://api.example.com";

fn at(secs: u64) -> UnixTime {
    UnixTime::from_secs(secs)
}

/// An issuer and a verifier with the token cache on, enforcing `list`.
struct Fixture {
    issuer: SigningKey,
    jwks: String,
    clock: Arc<ManualClock>,
    list: RevocationList,
    verifier: Verifier,
}

impl Fixture {
    fn new() -> Self {
        let clock = Arc::new(ManualClock::at_unix(NOW));
        let issuer = SigningKey::generate(Algorithm::ES256, Some("k1".into())).unwrap();
        let jwks = json!({ "keys": [issuer.public_jwk()] }).to_string();
        let list = RevocationList::new();
        let verifier = build(&jwks, &clock, &list);
        Self { issuer, jwks, clock, list, verifier }
    }

    /// A verifier on the fixture's keys, clock and list.
    fn build(&self) -> Verifier {
        build(&self.jwks, &self.clock, &self.list)
    }

    /// A token of `sub` with `extra` claims merged in (a `null` removes a claim).
    fn token(&self, sub: &str, extra: Value) -> String {
        let mut claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "exp": NOW + 3600, "iat": NOW - 10});
        for (name, value) in extra.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        self.issuer.sign_token(&claims, None).unwrap()
    }

    /// The reason each verification path gives for `token`.
    fn outcomes(&self, token: &str) -> [Result<(), Reason>; 3] {
        let now = self.verifier.verify_now(token).expect("decided by the keys at hand");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let later = rt.block_on(self.verifier.verify_async(token));
        [self.verifier.verify(token), now, later].map(|outcome| outcome.map(|_| ()).map_err(|err| err.reason()))
    }

    /// Verifies `token` until the token cache holds it.
    fn cache(&self, token: &str) {
        let before = self.verifier.cached_tokens();
        for _ in 0..3 {
            self.verifier.verify(token).unwrap();
        }
        assert_eq!(self.verifier.cached_tokens(), before + 1, "cached");
    }

    fn verified(&self, token: &str) -> VerifiedToken {
        self.verifier.verify(token).unwrap()
    }
}

/// A verifier (token cache on) of `jwks` on `clock`, enforcing `list`.
fn build(jwks: &str, clock: &Arc<ManualClock>, list: &RevocationList) -> Verifier {
    Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .keys(KeySet::from_jwks_json(jwks.as_bytes()).unwrap())
        .clock(clock.clone())
        .revocations(list.clone())
        .build()
        .unwrap()
}

const OK: [Result<(), Reason>; 3] = [Ok(()), Ok(()), Ok(())];
const REVOKED: [Result<(), Reason>; 3] = [Err(Reason::TokenRevoked); 3];

#[test]
fn a_token_revoked_by_jti_is_refused_on_every_path_cached_or_not() {
    let fx = Fixture::new();
    assert!(fx.verifier.revocations().is_some());
    let cached = fx.token("alice", json!({"jti": "j-cached"}));
    let fresh = fx.token("alice", json!({"jti": "j-fresh"}));
    let other = fx.token("alice", json!({"jti": "j-other"}));
    fx.cache(&cached);
    fx.cache(&other);
    assert_eq!(fx.outcomes(&cached), OK);

    let changed = fx.list.apply(
        &[Revocation::jti("j-cached", at(NOW + 3600)), Revocation::jti("j-fresh", at(NOW + 3600))],
        fx.clock.now(),
    );
    assert_eq!(changed, 2);
    assert_eq!(fx.verifier.cached_tokens(), 1, "the revoked token left the cache, the other stayed");
    assert_eq!(fx.outcomes(&cached), REVOKED);
    assert_eq!(fx.outcomes(&fresh), REVOKED);
    assert_eq!(fx.outcomes(&other), OK);
    let err = fx.verifier.verify(&cached).unwrap_err();
    assert_eq!(err.http_status(), 401);
    // explain gives the same verdict.
    assert_eq!(fx.verifier.explain(&cached).verdict.unwrap_err().reason(), Reason::TokenRevoked);
    assert!(fx.verifier.explain(&other).verdict.is_ok());
}

#[test]
fn revoking_through_the_memory_store_drops_the_cached_token_at_once() {
    let fx = Fixture::new();
    let token = fx.token("alice", json!({"jti": "j1"}));
    fx.cache(&token);
    let store: &dyn RevocationStore = &fx.list;
    assert_eq!(store.name(), "memory");
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(store.revoke(Revocation::jti("j1", at(NOW + 60)), fx.clock.now())).unwrap();
    assert_eq!(fx.verifier.cached_tokens(), 0);
    assert_eq!(fx.outcomes(&token), REVOKED);
    assert_eq!(fx.verifier.cached_tokens(), 0, "a refused token is not cached again");
}

#[test]
fn a_token_revoked_by_hash_is_refused() {
    let fx = Fixture::new();
    // Auth0's default access tokens have no jti: only the hash names them.
    let token = fx.token("alice", json!({}));
    let same_subject = fx.token("alice", json!({"iat": NOW - 5}));
    fx.cache(&token);
    fx.list.apply(&[Revocation::token_hash(TokenHash::of_token(&token), at(NOW + 3600))], fx.clock.now());
    assert_eq!(fx.verifier.cached_tokens(), 0);
    assert_eq!(fx.outcomes(&token), REVOKED);
    assert_eq!(fx.outcomes(&same_subject), OK);
}

#[test]
fn a_subject_revoked_before_a_time_refuses_its_older_tokens_only() {
    let fx = Fixture::new();
    let before = NOW - 5;
    let older = fx.token("alice", json!({"iat": NOW - 10}));
    let at_before = fx.token("alice", json!({"iat": before}));
    let without_iat = fx.token("alice", json!({"iat": null}));
    let newer = fx.token("alice", json!({"iat": NOW - 1}));
    let other_subject = fx.token("bob", json!({"iat": NOW - 10}));
    for token in [&older, &newer, &other_subject] {
        fx.cache(token);
    }
    fx.list.apply(&[Revocation::subject("alice", at(before), at(NOW + 3600))], fx.clock.now());
    assert_eq!(fx.verifier.cached_tokens(), 2, "only alice's older token left the cache");
    assert_eq!(fx.outcomes(&older), REVOKED);
    assert_eq!(fx.outcomes(&at_before), REVOKED);
    assert_eq!(fx.outcomes(&without_iat), REVOKED);
    assert_eq!(fx.outcomes(&newer), OK);
    assert_eq!(fx.outcomes(&other_subject), OK);
}

#[test]
fn an_expired_entry_no_longer_refuses() {
    let fx = Fixture::new();
    let token = fx.token("alice", json!({"jti": "j1"}));
    fx.list.apply(&[Revocation::jti("j1", at(NOW + 60))], fx.clock.now());
    assert_eq!(fx.outcomes(&token), REVOKED);
    fx.clock.advance(Duration::from_secs(59));
    assert_eq!(fx.outcomes(&token), REVOKED);
    fx.clock.advance(Duration::from_secs(1));
    assert_eq!(fx.outcomes(&token), OK, "expires_at is the first second it no longer holds");
    fx.list.prune(fx.clock.now());
    assert!(fx.list.is_empty());
}

#[test]
fn revocation_checks_run_only_on_verified_tokens() {
    let fx = Fixture::new();
    // A forged token naming a revoked jti is refused for its signature, not as revoked: the list never sees it.
    let forger = SigningKey::generate(Algorithm::ES256, Some("k1".into())).unwrap();
    let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": NOW + 60, "iat": NOW, "jti": "j1"});
    let forged = forger.sign_token(&claims, None).unwrap();
    fx.list.apply(&[Revocation::jti("j1", at(NOW + 60))], fx.clock.now());
    assert_eq!(fx.verifier.verify(&forged).unwrap_err().reason(), Reason::SignatureInvalid);
}

#[test]
fn a_dropped_verifier_unregisters_its_listener() {
    let fx = Fixture::new();
    let baseline = fx.list.listener_count();
    assert_eq!(baseline, 1, "the fixture's verifier");
    for _ in 0..20 {
        let rebuilt = fx.build();
        let clone = rebuilt.clone();
        assert_eq!(fx.list.listener_count(), baseline + 1);
        drop(rebuilt);
        assert_eq!(fx.list.listener_count(), baseline + 1, "a clone keeps the cache alive");
        drop(clone);
    }
    assert_eq!(fx.list.listener_count(), baseline, "rebuilt verifiers leave no listener behind");
    // A verifier without a token cache registers none.
    let uncached = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .keys(KeySet::from_jwks_json(fx.jwks.as_bytes()).unwrap())
        .clock(fx.clock.clone())
        .without_cache()
        .revocations(fx.list.clone())
        .build()
        .unwrap();
    assert_eq!(fx.list.listener_count(), baseline);
    let token = fx.token("alice", json!({"jti": "j9"}));
    fx.list.apply(&[Revocation::jti("j9", at(NOW + 60))], fx.clock.now());
    assert_eq!(uncached.verify(&token).unwrap_err().reason(), Reason::TokenRevoked);
}

#[test]
fn a_verifier_without_revocations_ignores_the_list() {
    let fx = Fixture::new();
    let plain = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .keys(KeySet::from_jwks_json(fx.jwks.as_bytes()).unwrap())
        .clock(fx.clock.clone())
        .build()
        .unwrap();
    let token = fx.token("alice", json!({"jti": "j1"}));
    fx.list.apply(&[Revocation::jti("j1", at(NOW + 60))], fx.clock.now());
    assert!(plain.revocations().is_none());
    assert!(plain.verify(&token).is_ok());
    assert_eq!(fx.verifier.verify(&token).unwrap_err().reason(), Reason::TokenRevoked);
}

// The list on its own.

#[test]
fn apply_is_idempotent_and_later_times_extend() {
    let list = RevocationList::new();
    let now = at(NOW);
    let jti = Revocation::jti("j1", at(NOW + 60));
    let hash = Revocation::token_hash(TokenHash::of_token("a.b.c"), at(NOW + 60));
    let subject = Revocation::subject("alice", at(NOW - 100), at(NOW + 60));
    assert_eq!(list.apply(&[jti.clone(), hash.clone(), subject.clone()], now), 3);
    assert_eq!(list.apply(&[jti.clone(), hash.clone(), subject.clone()], now), 0, "already known");
    let counts = list.counts();
    assert_eq!((counts.jti, counts.token_hashes, counts.subjects, list.len()), (1, 1, 1, 3));

    // An earlier expiry or an earlier before changes nothing; a later one extends the entry.
    assert_eq!(list.apply(&[Revocation::jti("j1", at(NOW + 30))], now), 0);
    assert_eq!(list.apply(&[Revocation::subject("alice", at(NOW - 200), at(NOW + 60))], now), 0);
    assert_eq!(list.apply(&[Revocation::jti("j1", at(NOW + 120))], now), 1);
    assert_eq!(list.apply(&[Revocation::token_hash(TokenHash::of_token("a.b.c"), at(NOW + 120))], now), 1);
    assert_eq!(list.apply(&[Revocation::subject("alice", at(NOW - 50), at(NOW + 60))], now), 1, "later before");
    assert_eq!(list.apply(&[Revocation::subject("alice", at(NOW - 50), at(NOW + 90))], now), 1, "later expiry");
    assert_eq!(list.len(), 3);
    let mut entries: Vec<String> = list.entries().iter().map(|entry| serde_json::to_string(entry).unwrap()).collect();
    entries.sort();
    assert_eq!(
        entries,
        [
            format!(r#"{{"kind":"jti","jti":"j1","expires_at":{}}}"#, NOW + 120),
            format!(r#"{{"kind":"subject","sub":"alice","before":{},"expires_at":{}}}"#, NOW - 50, NOW + 90),
            format!(
                r#"{{"kind":"token_hash","sha256":"{}","expires_at":{}}}"#,
                TokenHash::of_token("a.b.c"),
                NOW + 120
            ),
        ]
    );

    // Listeners hear exactly the entries that changed the list.
    let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let heard = Arc::clone(&heard);
        list.on_change(move |entries| {
            heard.lock().unwrap().extend(entries.iter().cloned());
            true
        });
    }
    let j2 = Revocation::jti("j2", at(NOW + 60));
    assert_eq!(list.apply(&[jti, j2.clone()], now), 1);
    assert_eq!(*heard.lock().unwrap(), [j2]);
}

#[test]
fn prune_and_expired_entries() {
    let list = RevocationList::new();
    assert_eq!(list.apply(&[Revocation::jti("gone", at(NOW))], at(NOW)), 0, "already expired: ignored");
    assert_eq!(
        list.apply(&[Revocation::jti("short", at(NOW + 10)), Revocation::jti("long", at(NOW + 100))], at(NOW)),
        2
    );
    list.prune(at(NOW + 9));
    assert_eq!(list.len(), 2);
    list.prune(at(NOW + 10));
    assert_eq!(list.len(), 1);
    assert_eq!(list.entries(), [Revocation::jti("long", at(NOW + 100))]);
    // apply prunes too.
    list.apply(&[], at(NOW + 100));
    assert!(list.is_empty());
}

#[test]
fn readers_never_wait_for_writers_and_see_whole_sets() {
    let fx = Fixture::new();
    let revoked = fx.verified(&fx.token("alice", json!({"jti": "j-first"})));
    let kept = fx.verified(&fx.token("alice", json!({"jti": "j-kept"})));
    let list = RevocationList::new();
    list.apply(&[Revocation::jti("j-first", at(NOW + 3600))], at(NOW));
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let mut checks = 0u64;
                while !done.load(Ordering::SeqCst) || checks < 1000 {
                    assert_eq!(list.check(&revoked, at(NOW)).unwrap_err().reason(), Reason::TokenRevoked);
                    assert!(list.check(&kept, at(NOW)).is_ok());
                    checks += 1;
                }
            });
        }
        for writer in 0..2 {
            let list = &list;
            scope.spawn(move || {
                for i in 0..500 {
                    let entry = Revocation::jti(format!("w{writer}-{i}"), at(NOW + 3600));
                    assert_eq!(list.apply(&[entry], at(NOW)), 1);
                }
            });
        }
        // The writers finish first (scoped threads are joined in order of the closure's end, so wait here).
        while list.len() < 1001 {
            std::thread::yield_now();
        }
        done.store(true, Ordering::SeqCst);
    });
    assert_eq!(list.counts().jti, 1001);
}

#[test]
fn validate_refuses_what_deserialization_lets_through() {
    let ok = [
        Revocation::jti("j", at(NOW)),
        Revocation::subject("auth0|42", at(NOW), at(NOW)),
        Revocation::token_hash(TokenHash::of_token("x"), at(NOW)),
    ];
    for entry in ok {
        assert_eq!(entry.validate(), Ok(()), "{entry:?}");
    }
    assert!(Revocation::jti("", at(NOW)).validate().is_err());
    assert!(Revocation::jti("a".repeat(1025), at(NOW)).validate().is_err());
    assert!(Revocation::jti("a".repeat(1024), at(NOW)).validate().is_ok());
    assert!(Revocation::jti("line\nbreak", at(NOW)).validate().is_err());
    assert!(Revocation::subject("", at(NOW), at(NOW)).validate().is_err());
    assert_eq!(Revocation::subject("alice", at(NOW + 1), at(NOW)).validate(), Err("before is later than expires_at"));
}

#[test]
fn the_json_form_round_trips_and_refuses_unknown_members() {
    let hash = TokenHash::of_token("a.b.c");
    for entry in [
        Revocation::jti("j1", at(NOW)),
        Revocation::token_hash(hash, at(NOW)),
        Revocation::subject("auth0|42", at(NOW - 10), at(NOW)),
    ] {
        let text = serde_json::to_string(&entry).unwrap();
        assert_eq!(serde_json::from_str::<Revocation>(&text).unwrap(), entry, "{text}");
        assert_eq!(json!(entry)["kind"], entry.kind());
    }
    let refused = [
        r#"{"kind":"jti","jti":"j1","expires_at":1,"extra":true}"#,
        r#"{"kind":"jti","jti":"j1"}"#,
        r#"{"kind":"sub","sub":"alice","before":1,"expires_at":2}"#,
        r#"{"kind":"token_hash","sha256":"abc","expires_at":1}"#,
        r#"{"kind":"token_hash","sha256":"zz","expires_at":1}"#,
        r#"{"kind":"subject","sub":"alice","before":-1,"expires_at":2}"#,
        r#"{"jti":"j1","expires_at":1}"#,
    ];
    for text in refused {
        assert!(serde_json::from_str::<Revocation>(text).is_err(), "{text}");
    }
    // Upper-case hex is accepted and written back lower-case.
    let upper = format!(r#"{{"kind":"token_hash","sha256":"{}","expires_at":1}}"#, hash.to_string().to_uppercase());
    let parsed: Revocation = serde_json::from_str(&upper).unwrap();
    assert_eq!(parsed, Revocation::token_hash(hash, at(1)));
}

/// The order of the P-256 group, big-endian.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa,
    0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64url_decode(text: &str) -> Vec<u8> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text.bytes() {
        let value = B64URL.iter().position(|c| *c == byte).unwrap() as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}

fn b64url_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut block = [0u8; 3];
        block[..chunk.len()].copy_from_slice(chunk);
        let n = (u32::from(block[0]) << 16) | (u32::from(block[1]) << 8) | u32::from(block[2]);
        for i in 0..=chunk.len() {
            out.push(B64URL[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The same ES256 token with its signature `(r, s)` replaced by `(r, n − s)`: the other valid signature.
fn other_ecdsa_form(token: &str) -> String {
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let mut signature = b64url_decode(signature);
    assert_eq!(signature.len(), 64);
    let s = &mut signature[32..];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut digit = i16::from(P256_ORDER[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(digit < 0);
        if digit < 0 {
            digit += 256;
        }
        s[i] = digit as u8;
    }
    assert_eq!(borrow, 0, "s < n");
    format!("{signing_input}.{}", b64url_encode(&signature))
}

#[test]
fn an_ecdsa_token_revoked_by_hash_stays_refused_in_its_other_signature_form() {
    let fx = Fixture::new();
    let token = fx.token("alice", json!({}));
    let twin = other_ecdsa_form(&token);
    assert_ne!(twin, token);
    // Both forms verify.
    assert_eq!(fx.outcomes(&token), OK);
    assert_eq!(fx.outcomes(&twin), OK);
    assert_eq!(TokenHash::of_token(&token), TokenHash::of_token(&twin));
    fx.list.apply(&[Revocation::token_hash(TokenHash::of_token(&token), at(NOW + 3600))], fx.clock.now());
    assert_eq!(fx.outcomes(&token), REVOKED);
    assert_eq!(fx.outcomes(&twin), REVOKED);

    // Revoking the twin names the original just the same.
    let fx = Fixture::new();
    let token = fx.token("bob", json!({}));
    let twin = other_ecdsa_form(&token);
    fx.list.apply(&[Revocation::token_hash(TokenHash::of_token(&twin), at(NOW + 3600))], fx.clock.now());
    assert_eq!(fx.outcomes(&token), REVOKED);
    assert_eq!(fx.outcomes(&twin), REVOKED);
}

#[test]
fn an_rs256_token_revoked_by_hash_is_refused_and_others_are_not() {
    let clock = Arc::new(ManualClock::at_unix(NOW));
    let issuer = SigningKey::generate(Algorithm::RS256, Some("r1".into())).unwrap();
    let jwks = json!({ "keys": [issuer.public_jwk()] }).to_string();
    let list = RevocationList::new();
    let verifier = build(&jwks, &clock, &list);
    let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "carol", "exp": NOW + 3600, "iat": NOW - 10});
    let token = issuer.sign_token(&claims, None).unwrap();
    let mut later = claims.clone();
    later["iat"] = json!(NOW - 5);
    let other = issuer.sign_token(&later, None).unwrap();
    list.apply(&[Revocation::token_hash(TokenHash::of_token(&token), at(NOW + 3600))], clock.now());
    assert_eq!(verifier.verify(&token).unwrap_err().reason(), Reason::TokenRevoked);
    assert!(verifier.verify(&other).is_ok());
    // The hash is that of the signing input, the bytes before the second dot.
    let signing_input = &token[..token.rfind('.').unwrap()];
    assert_eq!(TokenHash::of_token(&token), TokenHash::of_token(signing_input));
}

#[test]
fn a_burst_of_revocations_applied_one_at_a_time_rebuilds_the_set_rarely() {
    let fx = Fixture::new();
    let first = fx.verified(&fx.token("alice", json!({"jti": "burst-0"})));
    let last = fx.verified(&fx.token("alice", json!({"jti": "burst-19999"})));
    let kept = fx.verified(&fx.token("alice", json!({"jti": "not-revoked"})));
    let list = RevocationList::new();
    let mut changed = 0;
    for i in 0..20_000u64 {
        changed += list.apply(&[Revocation::jti(format!("burst-{i}"), at(NOW + 3600 + i))], at(NOW));
    }
    assert_eq!(changed, 20_000);
    assert_eq!(list.len(), 20_000);
    assert_eq!(list.counts().jti, 20_000);
    assert_eq!(list.entries().len(), 20_000);
    // One rebuild per merge of the delta into the base: logarithmic in the number of entries, not one per entry.
    assert!(list.rebuilds() <= 40, "{} rebuilds for 20,000 entries", list.rebuilds());
    for token in [&first, &last] {
        assert_eq!(list.check(token, at(NOW)).unwrap_err().reason(), Reason::TokenRevoked);
    }
    assert!(list.check(&kept, at(NOW)).is_ok());
    // Re-applying the whole set (a resync) changes nothing and rebuilds nothing.
    let rebuilds = list.rebuilds();
    assert_eq!(list.apply(&list.entries(), at(NOW)), 0);
    assert_eq!(list.rebuilds(), rebuilds);
}

#[test]
fn entries_in_the_delta_combine_with_the_base() {
    let fx = Fixture::new();
    let old = fx.verified(&fx.token("alice", json!({"iat": NOW - 100})));
    let newer = fx.verified(&fx.token("alice", json!({"iat": NOW - 10})));
    let list = RevocationList::new();
    // Enough entries for a base, then one subject in the base and an extension of it in the delta.
    let filler: Vec<Revocation> = (0..2000).map(|i| Revocation::jti(format!("f{i}"), at(NOW + 3600))).collect();
    list.apply(&filler, at(NOW));
    list.apply(&[Revocation::subject("alice", at(NOW - 50), at(NOW + 100))], at(NOW));
    list.prune(at(NOW)); // the subject is in the base now
    let rebuilds = list.rebuilds();
    // A later "before" with an earlier expiry: combined, it refuses the newer token until the later expiry.
    assert_eq!(list.apply(&[Revocation::subject("alice", at(NOW - 5), at(NOW + 50))], at(NOW)), 1);
    assert_eq!(list.rebuilds(), rebuilds, "added to the delta");
    assert_eq!(list.check(&newer, at(NOW + 60)).unwrap_err().reason(), Reason::TokenRevoked);
    assert_eq!(list.check(&old, at(NOW + 60)).unwrap_err().reason(), Reason::TokenRevoked);
    assert!(list.check(&old, at(NOW + 100)).is_ok());
    assert_eq!(list.len(), 2001);
    assert_eq!(list.counts().subjects, 1);
    assert!(list.entries().contains(&Revocation::subject("alice", at(NOW - 5), at(NOW + 100))));
    // Expired entries refuse nothing before they are pruned, and are pruned at most every 30 s.
    list.apply(&[Revocation::jti("brief", at(NOW + 110))], at(NOW + 101));
    assert_eq!(list.counts().subjects, 0, "pruned: more than 30 s since the last rebuild");
    let brief = fx.verified(&fx.token("bob", json!({"jti": "brief"})));
    assert_eq!(list.check(&brief, at(NOW + 109)).unwrap_err().reason(), Reason::TokenRevoked);
    list.apply(&[Revocation::jti("late", at(NOW + 7200))], at(NOW + 120));
    assert!(list.check(&brief, at(NOW + 120)).is_ok(), "expired: refuses nothing");
    assert!(list.entries().contains(&Revocation::jti("brief", at(NOW + 110))), "not pruned within 30 s");
    list.apply(&[], at(NOW + 131));
    assert!(!list.entries().contains(&Revocation::jti("brief", at(NOW + 110))), "pruned");
    assert_eq!(list.len(), 2001);
}

#[test]
fn values_with_bidirectional_or_format_controls_are_refused() {
    for bad in ['\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202E}', '\u{2066}', '\u{2069}', '\u{FEFF}'] {
        let value = format!("user{bad}1");
        assert!(Revocation::jti(value.clone(), at(NOW)).validate().is_err(), "{:?}", bad);
        assert!(Revocation::subject(value, at(NOW), at(NOW + 1)).validate().is_err(), "{:?}", bad);
    }
    assert!(Revocation::jti("auth0|ümlaut-名前", at(NOW)).validate().is_ok());
}
