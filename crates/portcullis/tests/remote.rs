//! Remote key sets against a real HTTP identity provider on 127.0.0.1:0 (never a mocked client), with the
//! lifecycle clock injected.
#![allow(clippy::unwrap_used)]

use portcullis::clock::{Clock, ManualClock};
use portcullis::remote::{KeyLocation, RemoteKeySet, RemoteOptions};
use portcullis::signing::SigningKey;
use portcullis::{KeySource, Reason, Verifier};
use portcullis_testkit::claims;
use portcullis_testkit::idp::{Fault, Idp, UNTIL_CLEARED, hang, key};
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

fn options() -> RemoteOptions {
    let mut options = RemoteOptions::default();
    options.fetch.timeout = Duration::from_millis(500);
    options
}

async fn setup_with(location: impl FnOnce(&Idp) -> KeyLocation, options: RemoteOptions) -> Setup {
    let idp = Idp::start().await;
    let clock = Arc::new(ManualClock::at_unix(START));
    let (keys, verifier) = remote_verifier(&idp, AUDIENCE, location(&idp), options, clock.clone(), |b| b);
    Setup { idp, clock, keys, verifier }
}

async fn setup() -> Setup {
    setup_with(|idp| KeyLocation::Jwks(idp.jwks_url()), options()).await
}

fn token(key: &SigningKey, issuer: &str, clock: &ManualClock) -> String {
    let now = clock.now().as_secs();
    key.sign_token(&claims::access(issuer, AUDIENCE, now, now + 86_400 * 3), None).unwrap()
}

impl Setup {
    fn token(&self, key: &SigningKey) -> String {
        token(key, &self.idp.issuer(), &self.clock)
    }

    async fn check(&self, key: &SigningKey) -> Result<(), Reason> {
        self.verifier.verify_async(&self.token(key)).await.map(|_| ()).map_err(|e| e.reason())
    }

    fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }
}

/// Waits for the next completed fetch attempt (an event, not a sleep); the timeout only guards a broken test.
async fn next_fetch(keys: &RemoteKeySet, mut events: tokio::sync::watch::Receiver<u64>) {
    let _ = keys;
    tokio::time::timeout(Duration::from_secs(10), events.changed()).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_use_fetches_once_even_for_many_concurrent_requests() {
    let s = Arc::new(setup().await);
    let a = key("a");
    s.idp.publish(&[&a]);
    let token = s.token(&a);
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (s, token) = (Arc::clone(&s), token.clone());
        tasks.push(tokio::spawn(async move { s.verifier.verify_async(&token).await.map(|_| ()) }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(s.idp.jwks_requests(), 1);
    assert!(s.verifier.is_ready());
    // Later requests are served from the cache.
    for _ in 0..100 {
        s.verifier.verify_async(&token).await.unwrap();
    }
    assert_eq!(s.idp.jwks_requests(), 1);
    assert_eq!(s.keys.status().fetches, 1);
}

#[tokio::test]
async fn rotation_is_picked_up_on_first_use_without_a_failed_request() {
    let s = setup().await;
    let (a, b) = (key("a"), key("b"));
    s.idp.publish(&[&a]);
    s.idp.set_cache_control(Some("max-age=86400"));
    assert_eq!(s.check(&a).await, Ok(()));
    assert_eq!(s.idp.jwks_requests(), 1);
    // Hours later the issuer starts signing with a new key (Auth0 publishes next + current).
    s.advance(3600 * 3);
    s.idp.publish(&[&b, &a]);
    assert_eq!(s.check(&b).await, Ok(()), "the first token under the new key is accepted");
    assert_eq!(s.idp.jwks_requests(), 2, "exactly one refetch");
    for _ in 0..10 {
        assert_eq!(s.check(&a).await, Ok(()));
        assert_eq!(s.check(&b).await, Ok(()));
    }
    assert_eq!(s.idp.jwks_requests(), 2, "both keys now come from the cache");
}

#[tokio::test]
async fn unknown_kid_flood_is_bounded_and_a_genuine_rotation_still_works() {
    let s = setup().await;
    let (a, genuine) = (key("a"), key("genuine-next"));
    s.idp.publish(&[&a]);
    s.idp.set_cache_control(Some("max-age=86400"));
    assert_eq!(s.check(&a).await, Ok(()));
    assert_eq!(s.idp.jwks_requests(), 1);

    let attacker = key("unused");
    let signed_with_kid = |kid: String| {
        let header = json!({ "kid": kid });
        let now = s.clock.now().as_secs();
        attacker
            .sign_token(&json!({"iss": s.idp.issuer(), "aud": AUDIENCE, "exp": now + 60}), header.as_object())
            .unwrap()
    };
    // 10,000 tokens with invented kids in one instant: the cooldown since the first fetch refuses every refetch.
    for i in 0..10_000 {
        let err = s.verifier.verify_async(&signed_with_kid(format!("bogus-{i}"))).await.unwrap_err();
        assert_eq!(err.reason(), Reason::KeyNotFound);
    }
    assert_eq!(s.idp.jwks_requests(), 1, "no refetch within the cooldown");

    // The same flood spread over 10 simulated minutes: at most one refetch per 30 s cooldown.
    for i in 0..10_000u64 {
        if i % 50 == 0 {
            s.advance(3);
        }
        let err = s.verifier.verify_async(&signed_with_kid(format!("spread-{i}"))).await.unwrap_err();
        assert_eq!(err.reason(), Reason::KeyNotFound);
    }
    let flood_fetches = s.idp.jwks_requests() - 1;
    assert!(flood_fetches <= 600 / 30 + 1, "{flood_fetches} refetches in 600 s");
    let status = s.keys.status();
    assert!(status.cooldown_rejections > 0 && status.negative_hits == 0, "{status:?}");

    // A repeated bogus kid is answered by the negative cache without touching the limiter.
    s.advance(31);
    let repeated = signed_with_kid("repeat-me".into());
    assert!(s.verifier.verify_async(&repeated).await.is_err());
    let before = s.idp.jwks_requests();
    for _ in 0..100 {
        assert!(s.verifier.verify_async(&repeated).await.is_err());
    }
    assert_eq!(s.idp.jwks_requests(), before);
    assert!(s.keys.status().negative_hits >= 100);

    // The issuer rotates for real: once the cooldown has passed, the first token with the new kid refetches.
    s.idp.publish(&[&genuine, &a]);
    s.advance(31);
    assert_eq!(s.check(&genuine).await, Ok(()));
    assert_eq!(s.idp.jwks_requests(), before + 1);
}

#[tokio::test]
async fn token_bucket_caps_fetches_even_past_the_cooldown() {
    let mut o = options();
    o.cooldown = Duration::from_secs(1);
    o.bucket_capacity = 3;
    o.fetches_per_minute = 6;
    let s = setup_with(|idp| KeyLocation::Jwks(idp.jwks_url()), o).await;
    let a = key("a");
    s.idp.publish(&[&a]);
    s.idp.set_cache_control(Some("max-age=86400"));
    assert_eq!(s.check(&a).await, Ok(()));
    let attacker = key("x");
    // 120 simulated seconds, a new bogus kid every 2 s: the cooldown alone would allow 60 refetches.
    for i in 0..60 {
        s.advance(2);
        let t = attacker
            .sign_token(
                &json!({"iss": s.idp.issuer(), "aud": AUDIENCE, "exp": START + 3600}),
                json!({"kid": format!("b{i}")}).as_object(),
            )
            .unwrap();
        assert!(s.verifier.verify_async(&t).await.is_err());
    }
    // Capacity 3 left after the first fetch used one: 2 + 6/min * 2 min = 14 at most.
    let refetches = s.idp.jwks_requests() - 1;
    assert!(refetches <= 14, "{refetches}");
    assert!(s.keys.status().bucket_rejections > 0);
}

#[tokio::test]
async fn idp_outage_after_a_good_fetch_serves_cached_keys_up_to_max_staleness() {
    let s = setup().await;
    let a = key("a");
    s.idp.publish(&[&a]);
    assert_eq!(s.check(&a).await, Ok(()));
    s.idp.inject_fault(Fault::Status { status: 503, count: UNTIL_CLEARED });
    // Past the 10-minute lifetime, refreshes fail, the cached set keeps answering.
    for hour in 1..=23 {
        s.clock.set_unix(START + 600 + hour * 3600);
        let events = s.keys.subscribe();
        assert_eq!(s.check(&a).await, Ok(()), "hour {hour}");
        next_fetch(&s.keys, events).await;
        assert!(s.keys.status().last_error.unwrap().contains("503"));
    }
    assert!(s.verifier.is_ready());
    // 24 h past expiry the set is too stale: 503-class error with Retry-After, and not ready.
    s.clock.set_unix(START + 600 + 24 * 3600 + 1);
    let err = s.verifier.verify_async(&s.token(&a)).await.unwrap_err();
    assert_eq!(err.reason(), Reason::KeysUnavailable);
    assert_eq!(err.http_status(), 503);
    assert!(err.retry_after().is_some());
    assert!(!s.verifier.is_ready());
}

#[tokio::test]
async fn idp_down_at_start_is_503_and_recovers() {
    let s = setup().await;
    let a = key("a");
    s.idp.publish(&[&a]);
    s.idp.inject_fault(Fault::Status { status: 500, count: UNTIL_CLEARED });
    assert!(!s.verifier.is_ready());
    let err = s.verifier.verify_async(&s.token(&a)).await.unwrap_err();
    assert_eq!(err.reason(), Reason::KeysUnavailable);
    assert_eq!(err.http_status(), 503);
    assert!(err.description().contains("cannot be obtained"));
    assert!(!s.verifier.is_ready());
    // The sync path never fetches and says the same.
    assert_eq!(s.verifier.verify(&s.token(&a)).unwrap_err().reason(), Reason::KeysUnavailable);
    s.idp.clear_faults();
    s.advance(10);
    assert_eq!(s.check(&a).await, Ok(()));
    assert!(s.verifier.is_ready());
    assert_eq!(s.idp.jwks_requests(), 2);
}

#[tokio::test]
async fn bad_responses_never_replace_a_good_set_nor_hang() {
    let s = setup().await;
    let a = key("a");
    s.idp.publish(&[&a]);
    assert_eq!(s.check(&a).await, Ok(()));
    let cases = [
        (Fault::Garbage { count: UNTIL_CLEARED }, "invalid JWK Set"),
        (Fault::EmptySet { count: UNTIL_CLEARED }, "no usable keys"),
        (Fault::Huge { count: UNTIL_CLEARED }, "more than 1048576 bytes"),
        (Fault::RedirectToOtherHost { count: UNTIL_CLEARED }, "redirect to another host refused"),
        (Fault::Status { status: 500, count: UNTIL_CLEARED }, "HTTP 500"),
        (hang(), "timed out"),
    ];
    for (mode, expected) in cases {
        s.idp.clear_faults();
        s.idp.inject_fault(mode.clone());
        s.advance(60);
        let err = tokio::time::timeout(Duration::from_secs(10), s.keys.refresh()).await.unwrap().unwrap_err();
        assert!(err.to_string().contains(expected), "{mode:?}: {err}");
        assert_eq!(s.keys.status().keys, 1, "{mode:?}: the good set is kept");
        assert!(s.verifier.verify(&s.token(&a)).is_ok(), "{mode:?}");
    }
    // A request that needs a refetch while the IdP hangs returns after the fetch timeout, not never.
    s.advance(60);
    let stranger = key("b");
    let err = tokio::time::timeout(Duration::from_secs(10), s.verifier.verify_async(&s.token(&stranger)))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.reason(), Reason::KeyNotFound);
}

#[tokio::test]
async fn redirects_are_followed_only_within_the_origin() {
    let other_port = Idp::start().await;
    let s = setup_with(|idp| KeyLocation::Jwks(format!("{}/old-keys", idp.base)), options()).await;
    let a = key("a");
    s.idp.publish(&[&a]);
    other_port.publish(&[&a]);
    // Same scheme, host and port: followed, over plain http because the host is loopback.
    s.idp.redirect("/old-keys", &s.idp.jwks_url());
    assert_eq!(s.check(&a).await, Ok(()));
    assert_eq!(s.idp.jwks_requests(), 2, "the redirect and the key set");

    /// Where a redirect goes, from the redirecting IdP and the one on another port.
    type Target = fn(&Idp, &Idp) -> String;
    let elsewhere: [(Target, &str); 3] = [
        (|_, other| other.jwks_url(), "redirect to another port refused"),
        (|idp, _| idp.jwks_url().replace("http://", "https://"), "redirect to another scheme refused"),
        (|idp, _| idp.jwks_url().replace("127.0.0.1", "localhost"), "redirect to another host refused"),
    ];
    for (target, expected) in elsewhere {
        let s = setup_with(|idp| KeyLocation::Jwks(format!("{}/old-keys", idp.base)), options()).await;
        s.idp.publish(&[&a]);
        let target = target(&s.idp, &other_port);
        s.idp.redirect("/old-keys", &target);
        let err = s.keys.refresh().await.unwrap_err();
        assert!(err.to_string().contains(expected), "{target}: {err}");
        assert_eq!(s.check(&a).await, Err(Reason::KeysUnavailable), "{target}");
    }
    assert_eq!(other_port.jwks_requests(), 0, "no request left the origin");
}

#[tokio::test]
async fn bad_first_responses_mean_keys_unavailable() {
    let s = setup().await;
    let a = key("a");
    s.idp.publish(&[&a]);
    for mode in [
        Fault::Garbage { count: UNTIL_CLEARED },
        Fault::EmptySet { count: UNTIL_CLEARED },
        Fault::Huge { count: UNTIL_CLEARED },
    ] {
        s.idp.clear_faults();
        s.idp.inject_fault(mode.clone());
        s.advance(10);
        assert_eq!(s.check(&a).await, Err(Reason::KeysUnavailable), "{mode:?}");
    }
}

#[tokio::test]
async fn cache_control_is_honoured_within_bounds() {
    let s = setup().await;
    let a = key("a");
    s.idp.publish(&[&a]);
    for (header, ttl) in [
        (Some("public, max-age=120"), 120.0),
        (Some("max-age=5"), 60.0),
        (Some("max-age=999999"), 86400.0),
        (None, 600.0),
    ] {
        s.idp.set_cache_control(header);
        s.advance(100_000);
        s.keys.refresh().await.unwrap();
        let status = s.keys.status();
        assert_eq!(status.expires_at.unwrap() - status.fetched_at.unwrap(), ttl, "{header:?}");
    }
}

#[tokio::test]
async fn refresh_ahead_happens_before_expiry_without_blocking_requests() {
    let s = setup().await;
    let a = key("a");
    s.idp.publish(&[&a]);
    s.idp.set_cache_control(Some("max-age=1000"));
    assert_eq!(s.check(&a).await, Ok(()));
    // Before 80 % of the lifetime nothing is fetched.
    s.advance(700);
    assert_eq!(s.check(&a).await, Ok(()));
    assert_eq!(s.idp.jwks_requests(), 1);
    // Past 80 %, still before expiry: the request is answered from the cache at once while a refresh starts in the
    // background. The IdP hangs, so a request that waited for the refresh could not have returned.
    s.idp.inject_fault(hang());
    s.advance(150);
    let events = s.keys.subscribe();
    assert!(s.verifier.verify(&s.token(&a)).is_ok());
    assert_eq!(s.check(&a).await, Ok(()));
    next_fetch(&s.keys, events).await;
    assert_eq!(s.idp.jwks_requests(), 2);
    assert!(s.keys.status().last_error.unwrap().contains("timed out"));
    // The next due refresh succeeds and moves the expiry forward.
    s.idp.clear_faults();
    s.advance(20);
    let events = s.keys.subscribe();
    assert_eq!(s.check(&a).await, Ok(()));
    next_fetch(&s.keys, events).await;
    assert_eq!(s.keys.status().fetched_at, Some(s.clock.now().as_secs_f64()));
}

#[tokio::test]
async fn discovery_finds_the_key_set_and_checks_the_issuer_exactly() {
    let s = setup_with(|idp| KeyLocation::Discovery { issuer: idp.issuer() }, options()).await;
    let a = key("a");
    s.idp.publish(&[&a]);
    assert_eq!(s.check(&a).await, Ok(()));
    assert_eq!((s.idp.discovery_requests(), s.idp.jwks_requests()), (1, 1));

    let m = setup_with(|idp| KeyLocation::Discovery { issuer: idp.issuer() }, options()).await;
    m.idp.publish(&[&a]);
    m.idp.set_discovery_issuer(m.idp.issuer().trim_end_matches('/'));
    let err = m.keys.refresh().await.unwrap_err();
    assert!(err.to_string().contains("its issuer is"), "{err}");
    assert!(err.to_string().contains("differ only in the trailing slash"), "{err}");
    assert_eq!(m.idp.jwks_requests(), 0, "no keys are fetched from a mismatching provider");
    assert_eq!(m.check(&a).await, Err(Reason::KeysUnavailable));
}

#[tokio::test]
async fn a_key_set_moved_by_the_issuer_is_found_again_through_discovery() {
    let s = setup_with(|idp| KeyLocation::Discovery { issuer: idp.issuer() }, options()).await;
    let (a, b) = (key("a"), key("b"));
    s.idp.publish(&[&a]);
    s.idp.set_cache_control(Some("max-age=86400"));
    assert_eq!(s.check(&a).await, Ok(()));
    let first_location = s.keys.jwks_url().unwrap();

    // The issuer moves its key set and starts signing with a new key; the old URL now answers 404.
    s.idp.move_jwks("/keys/v2.json");
    s.idp.publish(&[&b, &a]);
    s.advance(31);
    assert_eq!(s.check(&b).await, Err(Reason::KeyNotFound), "the refetch hits the old location");
    assert_eq!(s.idp.discovery_requests(), 1);
    assert!(s.keys.status().last_error.unwrap().contains("404"));
    assert_eq!(s.check(&a).await, Ok(()), "the cached set keeps serving");

    // After the cooldown the next unknown kid asks discovery first and fetches from the new location.
    s.advance(31);
    assert_eq!(s.check(&b).await, Ok(()));
    assert_eq!(s.idp.discovery_requests(), 2);
    assert_eq!(s.keys.jwks_url().unwrap(), s.idp.jwks_url());
    assert_ne!(s.keys.jwks_url().unwrap(), first_location);
    assert_eq!(s.keys.status().last_error, None);
}

#[tokio::test]
async fn discovery_is_read_again_after_max_ttl_and_its_failure_keeps_the_known_location() {
    let s = setup_with(|idp| KeyLocation::Discovery { issuer: idp.issuer() }, options()).await;
    let a = key("a");
    s.idp.publish(&[&a]);
    s.idp.set_cache_control(Some("max-age=3600"));
    assert_eq!(s.keys.refresh().await, Ok(()));
    assert_eq!(s.idp.discovery_requests(), 1);

    // Within a day, refreshes reuse the discovered location.
    s.advance(3600);
    assert_eq!(s.keys.refresh().await, Ok(()));
    assert_eq!(s.idp.discovery_requests(), 1);

    // A day after discovery the location is confirmed again, before any fetch fails.
    s.advance(86_400);
    s.idp.move_jwks("/keys/v2.json");
    let requests_before = s.idp.jwks_requests();
    assert_eq!(s.keys.refresh().await, Ok(()));
    assert_eq!(s.idp.discovery_requests(), 2);
    assert_eq!(s.idp.jwks_requests(), requests_before + 1, "straight to the new location");
    assert_eq!(s.keys.status().failures, 0);
    assert_eq!(s.keys.jwks_url().unwrap(), s.idp.jwks_url());

    // Another day on, discovery answers for the wrong issuer: the known location is used all the same.
    s.advance(86_400);
    s.idp.set_discovery_issuer("https://impostor.example.com/");
    assert_eq!(s.keys.refresh().await, Ok(()));
    assert_eq!(s.idp.discovery_requests(), 3);
    assert_eq!(s.keys.jwks_url().unwrap(), s.idp.jwks_url());
    assert_eq!(s.check(&a).await, Ok(()));
}

#[tokio::test]
async fn two_issuers_sharing_a_kid_never_cross_verify() {
    let (one, two) = (Idp::start().await, Idp::start().await);
    let (key_one, key_two) = (key("shared-kid"), key("shared-kid"));
    one.publish(&[&key_one]);
    two.publish(&[&key_two]);
    let clock = Arc::new(ManualClock::at_unix(START));
    let source = |idp: &Idp| -> Arc<dyn KeySource> {
        Arc::new(RemoteKeySet::new(KeyLocation::Jwks(idp.jwks_url()), options(), clock.clone()).unwrap())
    };
    let verifier = Verifier::builder()
        .issuer_keys(one.issuer(), source(&one))
        .issuer_keys(two.issuer(), source(&two))
        .audience(AUDIENCE)
        .clock(clock.clone())
        .build()
        .unwrap();
    let check = |key: &SigningKey, issuer: String| {
        let token = token(key, &issuer, &clock);
        let verifier = verifier.clone();
        async move { verifier.verify_async(&token).await.map(|v| v.issuer().map(str::to_owned)).map_err(|e| e.reason()) }
    };
    assert_eq!(check(&key_one, one.issuer()).await, Ok(Some(one.issuer())));
    assert_eq!(check(&key_two, two.issuer()).await, Ok(Some(two.issuer())));
    assert_eq!(check(&key_one, two.issuer()).await, Err(Reason::SignatureInvalid));
    assert_eq!(check(&key_two, one.issuer()).await, Err(Reason::SignatureInvalid));
    assert_eq!(check(&key_one, "https://stranger.example/".into()).await, Err(Reason::IssuerMismatch));
    assert_eq!(verifier.readiness().len(), 2);
    assert!(verifier.is_ready());
}

#[tokio::test]
async fn background_refresher_loads_keys_before_any_request() {
    let s = setup().await;
    let a = key("a");
    s.idp.publish(&[&a]);
    let events = s.keys.subscribe();
    let refresher = s.keys.spawn_refresher();
    next_fetch(&s.keys, events).await;
    assert!(s.verifier.is_ready());
    assert_eq!(s.idp.jwks_requests(), 1);
    assert!(s.verifier.verify(&s.token(&a)).is_ok());
    refresher.abort();
}
