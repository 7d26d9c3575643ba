//! The verified-token cache: hits skip the signature, but never outlive the token or its key.
#![allow(clippy::unwrap_used)]

use portcullis::cache::CacheOptions;
use portcullis::clock::{Clock, ManualClock};
use portcullis::remote::{KeyLocation, RemoteKeySet, RemoteOptions};
use portcullis::{Reason, Verifier};
use portcullis_testkit::idp::{Idp, key};
use portcullis_testkit::keys::remote_verifier;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const AUDIENCE: &str = "https://api.example.com";
const START: u64 = 1_800_000_000;

struct Setup {
    idp: Idp,
    clock: Arc<ManualClock>,
    keys: RemoteKeySet,
    verifier: Verifier,
}

async fn setup(cache: CacheOptions) -> Setup {
    let idp = Idp::start().await;
    let clock = Arc::new(ManualClock::at_unix(START));
    let location = KeyLocation::Jwks(idp.jwks_url());
    let (keys, verifier) =
        remote_verifier(&idp, AUDIENCE, location, RemoteOptions::default(), clock.clone(), |b| b.cache(cache));
    idp.set_cache_control(Some("max-age=86400"));
    Setup { idp, clock, keys, verifier }
}

fn claims(s: &Setup, lifetime: u64) -> serde_json::Value {
    let now = s.clock.now().as_secs();
    portcullis_testkit::claims::access(&s.idp.issuer(), AUDIENCE, now, now + lifetime)
}

#[tokio::test]
async fn a_repeated_token_is_served_from_the_cache() {
    let s = setup(CacheOptions::default()).await;
    let a = key("a");
    s.idp.publish(&[&a]);
    let token = a.sign_token(&claims(&s, 3600), None).unwrap();
    // Seen once: remembered by the doorkeeper, not cached yet.
    let first = s.verifier.verify_async(&token).await.unwrap();
    assert_eq!(s.verifier.cached_tokens(), 0);
    let second = s.verifier.verify_async(&token).await.unwrap();
    assert!(!std::ptr::eq(first.claims(), second.claims()), "verified again");
    assert_eq!(s.verifier.cached_tokens(), 1);
    // From now on the very same verified data, not another verification.
    let third = s.verifier.verify_async(&token).await.unwrap();
    assert!(std::ptr::eq(second.claims(), third.claims()));
    // The sync path hits it too.
    assert!(std::ptr::eq(s.verifier.verify(&token).unwrap().claims(), second.claims()));
}

#[tokio::test]
async fn one_time_tokens_do_not_enter_the_cache() {
    let s = setup(CacheOptions::default()).await;
    let a = key("a");
    s.idp.publish(&[&a]);
    for i in 0..200 {
        let mut c = claims(&s, 3600);
        c["jti"] = json!(format!("once-{i}"));
        assert!(s.verifier.verify_async(&a.sign_token(&c, None).unwrap()).await.is_ok());
    }
    assert_eq!(s.verifier.cached_tokens(), 0);
}

#[tokio::test]
async fn failures_are_never_cached() {
    let s = setup(CacheOptions::default()).await;
    let a = key("a");
    s.idp.publish(&[&a]);
    let mut wrong = claims(&s, 3600);
    wrong["aud"] = json!("https://other.example");
    let token = a.sign_token(&wrong, None).unwrap();
    for _ in 0..3 {
        assert_eq!(s.verifier.verify_async(&token).await.unwrap_err().reason(), Reason::AudienceMismatch);
    }
    assert_eq!(s.verifier.cached_tokens(), 0);
}

#[tokio::test]
async fn time_claims_are_rechecked_on_every_hit() {
    let s = setup(CacheOptions::default()).await;
    let a = key("a");
    s.idp.publish(&[&a]);
    let token = a.sign_token(&claims(&s, 120), None).unwrap();
    assert!(s.verifier.verify_async(&token).await.is_ok());
    assert!(s.verifier.verify_async(&token).await.is_ok());
    assert_eq!(s.verifier.cached_tokens(), 1);
    // 120 s lifetime + 60 s leeway: expired at +180 s, whatever the cache holds.
    s.clock.advance(Duration::from_secs(179));
    assert!(s.verifier.verify_async(&token).await.is_ok());
    s.clock.advance(Duration::from_secs(2));
    assert_eq!(s.verifier.verify_async(&token).await.unwrap_err().reason(), Reason::TokenExpired);
    assert_eq!(s.verifier.cached_tokens(), 0, "the stale entry is dropped");
}

#[tokio::test]
async fn entries_of_a_removed_key_are_dropped() {
    let s = setup(CacheOptions::default()).await;
    let (old, new) = (key("old"), key("new"));
    s.idp.publish(&[&old]);
    let token = old.sign_token(&claims(&s, 86_400), None).unwrap();
    assert!(s.verifier.verify_async(&token).await.is_ok());
    assert!(s.verifier.verify_async(&token).await.is_ok());
    assert_eq!(s.verifier.cached_tokens(), 1);
    // The issuer revokes the key; once the key set is refreshed, the cached verification no longer counts.
    s.idp.publish(&[&new]);
    s.keys.refresh().await.unwrap();
    let err = s.verifier.verify_async(&token).await.unwrap_err();
    assert_eq!(err.reason(), Reason::KeyNotFound);
    assert_eq!(s.verifier.cached_tokens(), 0);
}

#[tokio::test]
async fn the_cache_is_bounded_by_weight() {
    let s = setup(CacheOptions::default().with_max_bytes(64 * 1024).with_max_ttl(Duration::from_secs(600))).await;
    let a = key("a");
    s.idp.publish(&[&a]);
    for i in 0..500 {
        let mut c = claims(&s, 3600);
        c["jti"] = json!(format!("token-{i}"));
        let token = a.sign_token(&c, None).unwrap();
        assert!(s.verifier.verify_async(&token).await.is_ok());
        assert!(s.verifier.verify_async(&token).await.is_ok(), "admitted on its second verification");
    }
    let cache_entries = s.verifier.cached_tokens();
    assert!(cache_entries > 0 && cache_entries < 500, "{cache_entries}");
}

#[tokio::test]
async fn the_cache_can_be_turned_off() {
    let idp = Idp::start().await;
    let a = key("a");
    idp.publish(&[&a]);
    let clock = Arc::new(ManualClock::at_unix(START));
    let keys = RemoteKeySet::new(KeyLocation::Jwks(idp.jwks_url()), RemoteOptions::default(), clock.clone()).unwrap();
    let verifier = Verifier::builder()
        .issuer(idp.issuer())
        .audience(AUDIENCE)
        .key_source(Arc::new(keys))
        .clock(clock)
        .without_cache()
        .build()
        .unwrap();
    let token = a.sign_token(&json!({"iss": idp.issuer(), "aud": AUDIENCE, "exp": START + 60}), None).unwrap();
    let first = verifier.verify_async(&token).await.unwrap();
    let second = verifier.verify_async(&token).await.unwrap();
    assert!(!std::ptr::eq(first.claims(), second.claims()));
    assert_eq!(verifier.cached_tokens(), 0);
}
