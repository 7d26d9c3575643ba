//! The DPoP verifier with a replay store: the in-memory default, a shared store awaited after every other check,
//! the failure modes (`fail_closed`, `local_only`), and two verifiers sharing one store as two replicas would.
#![allow(clippy::unwrap_used)]

use portcullis::clock::ManualClock;
use portcullis::dpop::{
    DpopMode, DpopVerifier, DpopVerifierBuilder, Htu, ProofExpectations, RequestTarget, Scheme, access_token_hash,
    thumbprint,
};
use portcullis::signing::SigningKey;
use portcullis::store::{MemoryReplayStore, ReplayFailure, ReplayKey, ReplayStore, StoreError, StoreFuture};
use portcullis::{Algorithm, Error, KeySet, Reason, VerifiedToken, Verifier};
use serde_json::{Map, Value, json};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NOW: u64 = 1_800_000_000;
const ISSUER: &str = "https://tenant.example.com/";
const AUDIENCE: &str = "https://api.example.com";
const URI: &str = "https://api.example.com/orders";

/// How the fake store answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Records keys like a real store.
    Answer,
    /// Fails every call (`Unavailable`).
    Fail,
    /// Holds every call until released, then answers.
    Stall,
}

/// A shared replay store for tests: counts calls, records the ttl asked for, and can fail or stall. It never
/// answers at once (`first_use_now` is `None`), like a store across the network.
#[derive(Debug)]
struct FakeStore {
    behaviour: Mutex<Behaviour>,
    calls: AtomicUsize,
    seen: Mutex<HashSet<ReplayKey>>,
    ttls: Mutex<Vec<Duration>>,
    release: tokio::sync::Notify,
}

impl FakeStore {
    fn new(behaviour: Behaviour) -> Arc<Self> {
        Arc::new(Self {
            behaviour: Mutex::new(behaviour),
            calls: AtomicUsize::new(0),
            seen: Mutex::default(),
            ttls: Mutex::default(),
            release: tokio::sync::Notify::new(),
        })
    }

    fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl ReplayStore for FakeStore {
    fn first_use(&self, key: ReplayKey, ttl: Duration) -> StoreFuture<'_, bool> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.ttls.lock().unwrap().push(ttl);
        let behaviour = *self.behaviour.lock().unwrap();
        Box::pin(async move {
            match behaviour {
                Behaviour::Fail => return Err(StoreError::Unavailable("connection refused".into())),
                Behaviour::Stall => self.release.notified().await,
                Behaviour::Answer => {}
            }
            Ok(self.seen.lock().unwrap().insert(key))
        })
    }

    fn name(&self) -> &'static str {
        "fake"
    }
}

/// An issuer, a client key, a token verifier and a DPoP verifier, on one manual clock.
struct Fixture {
    issuer: SigningKey,
    client: SigningKey,
    verifier: Verifier,
    dpop: DpopVerifier,
    clock: Arc<ManualClock>,
    uri: Htu,
}

impl Fixture {
    fn with(configure: impl FnOnce(DpopVerifierBuilder) -> DpopVerifierBuilder) -> Self {
        let clock = Arc::new(ManualClock::at_unix(NOW));
        let issuer = SigningKey::generate(Algorithm::ES256, Some("issuer-key".into())).unwrap();
        let jwks = json!({ "keys": [issuer.public_jwk()] }).to_string();
        let verifier = Verifier::builder()
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .keys(KeySet::from_jwks_json(jwks.as_bytes()).unwrap())
            .clock(clock.clone())
            .build()
            .unwrap();
        let dpop = configure(DpopVerifier::builder().clock(clock.clone())).build().unwrap();
        let client = SigningKey::generate(Algorithm::ES256, None).unwrap();
        Self { issuer, client, verifier, dpop, clock, uri: Htu::parse(URI).unwrap() }
    }

    fn shared(store: Arc<dyn ReplayStore>, on_failure: ReplayFailure) -> Self {
        Self::with(|builder| builder.replay_store(store, on_failure))
    }

    /// Another DPoP verifier on the same clock.
    fn another(&self, configure: impl FnOnce(DpopVerifierBuilder) -> DpopVerifierBuilder) -> DpopVerifier {
        configure(DpopVerifier::builder().clock(self.clock.clone())).build().unwrap()
    }

    fn jkt(&self) -> String {
        thumbprint(&public_members(&self.client)).unwrap()
    }

    /// A token bound to the client key.
    fn token(&self) -> VerifiedToken {
        let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": NOW + 600, "iat": NOW,
            "cnf": { "jkt": self.jkt() }});
        self.verifier.verify(&self.issuer.sign_token(&claims, None).unwrap()).unwrap()
    }

    /// A good proof for `GET URI` with `token`, changed by `edit`.
    fn proof(&self, token: &VerifiedToken, edit: impl FnOnce(&mut Map<String, Value>)) -> String {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": public_members(&self.client)});
        let mut claims = json!({"jti": unique_jti(), "htm": "GET", "htu": URI, "iat": NOW,
            "ath": access_token_hash(token.raw())})
        .as_object()
        .unwrap()
        .clone();
        edit(&mut claims);
        self.client.sign_parts(&serde_json::to_vec(&header).unwrap(), &serde_json::to_vec(&claims).unwrap()).unwrap()
    }

    /// `check_request_async` for a DPoP request with `proof` and `token`.
    async fn request(&self, dpop: &DpopVerifier, proof: &str, token: &VerifiedToken) -> Result<(), Error> {
        let target = RequestTarget { method: "GET", htu: &self.uri };
        dpop.check_request_async(DpopMode::Allowed, Scheme::Dpop, &[proof], token, &target).await.map(|_| ())
    }

    /// The synchronous `check_request`.
    fn request_now(&self, dpop: &DpopVerifier, proof: &str, token: &VerifiedToken) -> Result<(), Error> {
        let target = RequestTarget { method: "GET", htu: &self.uri };
        dpop.check_request(DpopMode::Allowed, Scheme::Dpop, &[proof], token, &target).map(|_| ())
    }
}

fn public_members(key: &SigningKey) -> Map<String, Value> {
    let mut jwk = key.public_jwk().as_object().unwrap().clone();
    for optional in ["use", "alg", "kid"] {
        jwk.remove(optional);
    }
    jwk
}

fn unique_jti() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("store-jti-{}", NEXT.fetch_add(1, Ordering::SeqCst))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn reason(outcome: Result<(), Error>) -> Result<(), Reason> {
    outcome.map_err(|err| err.reason())
}

#[test]
fn the_memory_store_is_the_default_and_answers_at_once() {
    let fx = Fixture::with(|builder| builder);
    assert_eq!(fx.dpop.replay_store_name(), "memory");
    assert!(!fx.dpop.replay_is_shared());
    let token = fx.token();
    let proof = fx.proof(&token, |_| {});
    assert_eq!(reason(fx.request_now(&fx.dpop, &proof, &token)), Ok(()));
    assert_eq!(reason(fx.request_now(&fx.dpop, &proof, &token)), Err(Reason::DpopProofInvalid));
    // The async path of a verifier without a shared store is the same check.
    let other = fx.proof(&token, |_| {});
    let rt = runtime();
    assert_eq!(reason(rt.block_on(fx.request(&fx.dpop, &other, &token))), Ok(()));
    assert_eq!(reason(rt.block_on(fx.request(&fx.dpop, &other, &token))), Err(Reason::DpopProofInvalid));
    assert_eq!(reason(fx.request_now(&fx.dpop, &other, &token)), Err(Reason::DpopProofInvalid));
    assert_eq!(fx.dpop.replay_entries(), 2);

    // The store on its own: per-key, once, with the ttl it was given.
    let store = MemoryReplayStore::new(10);
    let key = ReplayKey::for_proof(URI, "j1");
    assert!(store.is_empty());
    assert_eq!(rt.block_on(store.first_use(key, Duration::from_secs(60))), Ok(true));
    assert_eq!(store.first_use_now(key, Duration::from_secs(60)), Some(Ok(false)));
    assert_eq!(store.contains_now(ReplayKey::for_proof(URI, "j2")), Some(false));
    assert_eq!((store.name(), store.capacity()), ("memory", 10));
}

#[test]
fn only_a_proof_that_passed_every_other_check_reaches_the_store() {
    let store = FakeStore::new(Behaviour::Answer);
    let fx = Fixture::shared(store.clone(), ReplayFailure::FailClosed);
    assert_eq!(fx.dpop.replay_store_name(), "fake");
    assert!(fx.dpop.replay_is_shared());
    let token = fx.token();
    let rt = runtime();

    let other_client = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let good = fx.proof(&token, |_| {});
    let (header, claims, _) = {
        let mut parts = good.split('.');
        (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap())
    };
    let foreign_signature = other_client.sign_parts(b"{}", b"{}").unwrap();
    let bad_signature = format!("{header}.{claims}.{}", foreign_signature.rsplit('.').next().unwrap());
    let refused: Vec<(&str, String, Reason)> = vec![
        ("bad signature", bad_signature, Reason::DpopProofInvalid),
        (
            "wrong htm",
            fx.proof(&token, |claims| drop(claims.insert("htm".into(), json!("POST")))),
            Reason::DpopProofInvalid,
        ),
        (
            "wrong htu",
            fx.proof(&token, |claims| drop(claims.insert("htu".into(), json!("https://api.example.com/x")))),
            Reason::DpopProofInvalid,
        ),
        (
            "wrong ath",
            fx.proof(&token, |claims| drop(claims.insert("ath".into(), json!(access_token_hash("other"))))),
            Reason::DpopProofInvalid,
        ),
        (
            "stale iat",
            fx.proof(&token, |claims| drop(claims.insert("iat".into(), json!(NOW - 3600)))),
            Reason::DpopProofInvalid,
        ),
    ];
    for (case, proof, expected) in &refused {
        assert_eq!(reason(rt.block_on(fx.request(&fx.dpop, proof, &token))), Err(*expected), "{case}");
        assert_eq!(store.calls(), 0, "{case} reached the store");
    }
    // Bound to another key: the binding fails before the store is asked.
    let foreign = Fixture::with(|builder| builder);
    let foreign_token = {
        let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": NOW + 600, "iat": NOW,
            "cnf": { "jkt": foreign.jkt() }});
        fx.verifier.verify(&fx.issuer.sign_token(&claims, None).unwrap()).unwrap()
    };
    let proof = fx.proof(&foreign_token, |_| {});
    assert_eq!(reason(rt.block_on(fx.request(&fx.dpop, &proof, &foreign_token))), Err(Reason::TokenBindingInvalid));
    assert_eq!(store.calls(), 0);

    // A good proof is recorded once, for the iat window plus the leeway; the store says replay the second time.
    assert_eq!(reason(rt.block_on(fx.request(&fx.dpop, &good, &token))), Ok(()));
    assert_eq!(store.calls(), 1);
    assert_eq!(*store.ttls.lock().unwrap(), [fx.dpop.max_age() + fx.dpop.leeway()]);
    let err = rt.block_on(fx.request(&fx.dpop, &good, &token)).unwrap_err();
    assert_eq!(err.reason(), Reason::DpopProofInvalid);
    assert!(err.description().contains("replayed"), "{err}");
    assert_eq!(store.calls(), 2);
    // With fail_closed nothing is recorded locally: the store alone decides.
    assert_eq!(fx.dpop.replay_entries(), 0);
}

#[test]
fn fail_closed_refuses_with_store_unavailable() {
    let store = FakeStore::new(Behaviour::Fail);
    let fx = Fixture::shared(store.clone(), ReplayFailure::FailClosed);
    let token = fx.token();
    let proof = fx.proof(&token, |_| {});
    let (recorder, rendered) = prometheus();
    let outcome = metrics::with_local_recorder(&recorder, || runtime().block_on(fx.request(&fx.dpop, &proof, &token)));
    let err = outcome.unwrap_err();
    assert_eq!(err.reason(), Reason::StoreUnavailable);
    assert_eq!(err.http_status(), 503);
    assert!(err.retry_after().is_some());
    assert!(err.www_authenticate("api").is_none(), "no challenge on a 503");
    assert!(err.description().starts_with("the DPoP replay store is unavailable: "), "{err}");
    assert_eq!(store.calls(), 1);
    let text = rendered.render();
    assert!(text.contains(r#"portcullis_dpop_proofs_total{result="store_unavailable"} 1"#), "{text}");
    assert!(!text.contains("portcullis_replay_fallbacks_total"), "{text}");

    // The store back: the same proof is accepted (it was never recorded), then a replay.
    store.set(Behaviour::Answer);
    assert_eq!(reason(runtime().block_on(fx.request(&fx.dpop, &proof, &token))), Ok(()));
    assert_eq!(reason(runtime().block_on(fx.request(&fx.dpop, &proof, &token))), Err(Reason::DpopProofInvalid));
}

#[test]
fn local_only_lets_this_process_decide_while_the_store_fails() {
    let store = FakeStore::new(Behaviour::Fail);
    let fx = Fixture::shared(store.clone(), ReplayFailure::LocalOnly);
    let token = fx.token();
    let (first, second) = (fx.proof(&token, |_| {}), fx.proof(&token, |_| {}));
    let (recorder, rendered) = prometheus();
    let outcomes = metrics::with_local_recorder(&recorder, || {
        let rt = runtime();
        [&first, &first, &second].map(|proof| reason(rt.block_on(fx.request(&fx.dpop, proof, &token))))
    });
    // Accepted during the outage, a replay within it is still refused on this process.
    assert_eq!(outcomes, [Ok(()), Err(Reason::DpopProofInvalid), Ok(())]);
    assert_eq!(store.calls(), 3);
    assert_eq!(fx.dpop.replay_entries(), 2);
    let text = rendered.render();
    assert!(text.contains("portcullis_replay_fallbacks_total 3"), "{text}");

    // Once the store is back, a proof accepted during the outage (the store never saw it) stays a replay here.
    store.set(Behaviour::Answer);
    assert_eq!(reason(runtime().block_on(fx.request(&fx.dpop, &first, &token))), Err(Reason::DpopProofInvalid));
    let third = fx.proof(&token, |_| {});
    assert_eq!(reason(runtime().block_on(fx.request(&fx.dpop, &third, &token))), Ok(()));
    assert_eq!(reason(runtime().block_on(fx.request(&fx.dpop, &third, &token))), Err(Reason::DpopProofInvalid));
}

#[test]
fn the_sync_check_with_a_shared_store_refuses_with_store_unavailable() {
    for on_failure in [ReplayFailure::FailClosed, ReplayFailure::LocalOnly] {
        let store = FakeStore::new(Behaviour::Answer);
        let fx = Fixture::shared(store.clone(), on_failure);
        let token = fx.token();
        let proof = fx.proof(&token, |_| {});
        let err = fx.request_now(&fx.dpop, &proof, &token).unwrap_err();
        assert_eq!(err.reason(), Reason::StoreUnavailable, "{on_failure:?}");
        assert!(err.description().contains("use check_request_async"), "{err}");
        let expected = ProofExpectations {
            method: "GET",
            htu: &fx.uri,
            access_token: Some(token.raw()),
            jkt: Some(token.jkt().unwrap()),
        };
        assert_eq!(fx.dpop.check_proof(&proof, &expected).unwrap_err().reason(), Reason::StoreUnavailable);
        assert_eq!(store.calls(), 0, "the sync path never starts a call it cannot wait for");
        // The proof was not used up: the async path accepts it.
        assert_eq!(reason(runtime().block_on(fx.request(&fx.dpop, &proof, &token))), Ok(()));
    }
}

#[test]
fn a_stalled_store_holds_the_proof_until_it_answers() {
    let store = FakeStore::new(Behaviour::Stall);
    let fx = Arc::new(Fixture::shared(store.clone(), ReplayFailure::FailClosed));
    let token = fx.token();
    let proof = fx.proof(&token, |_| {});
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let task = {
        let fx = Arc::clone(&fx);
        rt.spawn(async move { reason(fx.request(&fx.dpop, &proof, &token).await) })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.calls() == 0 {
        assert!(Instant::now() < deadline, "the store was never called");
        std::thread::yield_now();
    }
    assert!(!task.is_finished(), "answered before the store did");
    store.release.notify_one();
    assert_eq!(rt.block_on(task).unwrap(), Ok(()));
}

#[test]
fn two_verifiers_sharing_one_store_are_two_replicas() {
    // A memory store shared in one process answers at once: the sync path works too.
    let memory: Arc<dyn ReplayStore> = Arc::new(MemoryReplayStore::new(1000));
    let fx = Fixture::shared(Arc::clone(&memory), ReplayFailure::FailClosed);
    let replica = fx.another(|builder| builder.replay_store(Arc::clone(&memory), ReplayFailure::FailClosed));
    let token = fx.token();
    let proof = fx.proof(&token, |_| {});
    assert_eq!(reason(fx.request_now(&fx.dpop, &proof, &token)), Ok(()));
    assert_eq!(reason(fx.request_now(&replica, &proof, &token)), Err(Reason::DpopProofInvalid));
    let rt = runtime();
    assert_eq!(reason(rt.block_on(fx.request(&replica, &proof, &token))), Err(Reason::DpopProofInvalid));

    // A store across the network: accepted by one replica, a replay to the other, each way round.
    let store = FakeStore::new(Behaviour::Answer);
    let fx = Fixture::shared(store.clone(), ReplayFailure::FailClosed);
    let replica = fx.another(|builder| builder.replay_store(store.clone(), ReplayFailure::FailClosed));
    let token = fx.token();
    let (one, two) = (fx.proof(&token, |_| {}), fx.proof(&token, |_| {}));
    assert_eq!(reason(rt.block_on(fx.request(&fx.dpop, &one, &token))), Ok(()));
    assert_eq!(reason(rt.block_on(fx.request(&replica, &one, &token))), Err(Reason::DpopProofInvalid));
    assert_eq!(reason(rt.block_on(fx.request(&replica, &two, &token))), Ok(()));
    assert_eq!(reason(rt.block_on(fx.request(&fx.dpop, &two, &token))), Err(Reason::DpopProofInvalid));
    // Without the shared store, each replica would have accepted the other's proof.
    let alone = fx.another(|builder| builder);
    assert_eq!(reason(rt.block_on(fx.request(&alone, &one, &token))), Ok(()));
}

#[test]
fn a_verifier_built_to_replace_another_keeps_its_shared_store() {
    let store = FakeStore::new(Behaviour::Answer);
    let fx = Fixture::shared(store.clone(), ReplayFailure::LocalOnly);
    let next = fx.another(|builder| builder.max_age(Duration::from_secs(60)).replay_cache_of(&fx.dpop));
    assert!(next.replay_is_shared());
    assert_eq!(next.replay_store_name(), "fake");
    let token = fx.token();
    let proof = fx.proof(&token, |_| {});
    let rt = runtime();
    assert_eq!(reason(rt.block_on(fx.request(&fx.dpop, &proof, &token))), Ok(()));
    assert_eq!(reason(rt.block_on(fx.request(&next, &proof, &token))), Err(Reason::DpopProofInvalid));
    assert_eq!(*store.ttls.lock().unwrap().last().unwrap(), Duration::from_secs(65), "the new window");
    // Its failure mode came along: with the store failing, the local memory (carried over) decides.
    store.set(Behaviour::Fail);
    assert_eq!(reason(rt.block_on(fx.request(&next, &proof, &token))), Err(Reason::DpopProofInvalid));
    // A store given to the builder wins over the carried one.
    let memory = Arc::new(MemoryReplayStore::new(10));
    let replaced =
        fx.another(|builder| builder.replay_cache_of(&fx.dpop).replay_store(memory, ReplayFailure::FailClosed));
    assert_eq!(replaced.replay_store_name(), "memory");
    assert!(replaced.replay_is_shared());
}

#[test]
fn explain_proof_looks_without_recording() {
    let memory = Arc::new(MemoryReplayStore::new(10));
    let fx = Fixture::shared(memory.clone(), ReplayFailure::FailClosed);
    let token = fx.token();
    let proof = fx.proof(&token, |_| {});
    let expected = ProofExpectations {
        method: "GET",
        htu: &fx.uri,
        access_token: Some(token.raw()),
        jkt: Some(token.jkt().unwrap()),
    };
    assert!(fx.dpop.explain_proof(&proof, &expected).verdict.is_ok());
    assert!(memory.is_empty(), "a report records nothing");
    assert!(fx.dpop.check_proof(&proof, &expected).is_ok());
    let report = fx.dpop.explain_proof(&proof, &expected);
    assert_eq!(report.verdict.unwrap_err().reason(), Reason::DpopProofInvalid);
    assert_eq!(report.steps.last().unwrap().check, portcullis::dpop::DpopCheck::Replay);
}

#[test]
fn the_local_only_fallback_warns_at_most_once_a_second() {
    let store = FakeStore::new(Behaviour::Fail);
    let fx = Fixture::shared(store.clone(), ReplayFailure::LocalOnly);
    let token = fx.token();
    let lines = Arc::new(Mutex::new(Vec::<u8>::new()));
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer({
            let lines = Arc::clone(&lines);
            move || Capture(Arc::clone(&lines))
        })
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let rt = runtime();
        for _ in 0..5 {
            assert_eq!(reason(rt.block_on(fx.request(&fx.dpop, &fx.proof(&token, |_| {}), &token))), Ok(()));
        }
        fx.clock.advance(Duration::from_secs(1));
        for _ in 0..5 {
            assert_eq!(reason(rt.block_on(fx.request(&fx.dpop, &fx.proof(&token, |_| {}), &token))), Ok(()));
        }
    });
    let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
    let warnings: Vec<&str> = text.lines().filter(|line| line.contains("WARN")).collect();
    assert_eq!(warnings.len(), 2, "{text}");
    assert!(warnings[0].contains("DPoP replay store failed") && warnings[0].contains("store=\"fake\""), "{text}");
    assert!(warnings[0].contains("kind=\"unavailable\""), "{text}");
    assert_eq!(store.calls(), 10);
}

/// Log output collected in memory.
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A Prometheus recorder for `metrics::with_local_recorder`, and its handle.
fn prometheus() -> (metrics_exporter_prometheus::PrometheusRecorder, metrics_exporter_prometheus::PrometheusHandle) {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    (recorder, handle)
}
