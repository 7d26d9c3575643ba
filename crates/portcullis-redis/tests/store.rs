//! The Redis store against a real `redis-server` (started by each test on a free loopback port): replay entries
//! across replicas, revocations pushed and resynchronized, and what happens when the link to Redis is cut or
//! stalled, when Redis dies and comes back, and when the channel carries garbage.
#![allow(clippy::unwrap_used)]

use portcullis::clock::UnixTime;
use portcullis::store::{ReplayKey, ReplayStore, Revocation, RevocationList, RevocationStore, StoreError, TokenHash};
use portcullis_redis::{RedisSettings, RedisStore};
use portcullis_testkit::redis::{Link, RedisServer};
use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

/// How long a test waits for something that should happen within a second or two (a loaded machine included).
const PATIENCE: Duration = Duration::from_secs(10);

fn redis_available() -> bool {
    portcullis_testkit::probe::require("redis-server", portcullis_testkit::redis::available())
}

fn now() -> UnixTime {
    UnixTime::from_system_time(SystemTime::now())
}

/// Settings for tests: a request budget generous enough for a loaded machine, and quick reconnection.
fn settings(url: &str) -> RedisSettings {
    let mut settings = RedisSettings::new(url);
    settings.timeout = Duration::from_millis(500);
    settings.connect_timeout = Duration::from_millis(500);
    settings.backoff_min = Duration::from_millis(20);
    settings.backoff_max = Duration::from_millis(200);
    settings
}

/// A started store that has synchronized once.
async fn replica(settings: RedisSettings, list: RevocationList) -> RedisStore {
    let store = RedisStore::start(settings, list).unwrap();
    assert!(store.until_synchronized(PATIENCE).await, "the store did not synchronize: {:?}", store.health());
    store
}

/// Polls `condition` until it holds or `within` passed; whether it held.
async fn eventually<F, Fut>(within: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn key(name: &str) -> ReplayKey {
    ReplayKey::for_proof("https://api.example.com/orders", name)
}

fn jti_entry(jti: &str) -> Revocation {
    Revocation::jti(jti, UnixTime::from_secs(now().as_secs() + 3600))
}

fn holds(list: &RevocationList, entry: &Revocation) -> bool {
    list.entries().contains(entry)
}

/// The members of the revocation set in Redis.
async fn members(redis: &RedisServer) -> Vec<Revocation> {
    let reply = redis.command(&["ZRANGE", "portcullis:revocations", "0", "-1"]).await;
    reply.lines().filter(|line| !line.is_empty()).map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_is_new_exactly_once_across_replicas_and_expires_with_its_ttl() {
    if !redis_available() {
        return;
    }
    let redis = RedisServer::start().await;
    let a = replica(settings(&redis.url()), RevocationList::new()).await;
    let b = replica(settings(&redis.url()), RevocationList::new()).await;

    assert_eq!(a.first_use(key("j1"), Duration::from_secs(60)).await, Ok(true));
    assert_eq!(a.first_use(key("j1"), Duration::from_secs(60)).await, Ok(false), "a replay to the same replica");
    assert_eq!(b.first_use(key("j1"), Duration::from_secs(60)).await, Ok(false), "a replay to another replica");
    assert_eq!(b.first_use(key("j2"), Duration::from_secs(60)).await, Ok(true), "another jti is new");
    let other_uri = ReplayKey::for_proof("https://api.example.com/other", "j1");
    assert_eq!(b.first_use(other_uri, Duration::from_secs(60)).await, Ok(true), "the same jti at another URI is new");

    // Stored under the prefix with the proof window as its TTL.
    let stored = format!("portcullis:replay:{}", key("j1"));
    assert_eq!(redis.command(&["GET", &stored]).await, "1");
    let pttl: i64 = redis.command(&["PTTL", &stored]).await.parse().unwrap();
    assert!((50_000..=60_000).contains(&pttl), "PTTL {pttl} ms for a 60 s proof window");

    // 50 concurrent uses of one key through each of two replicas: exactly one is new.
    let contested = key("contested");
    let mut tasks = Vec::new();
    for store in [&a, &b] {
        for _ in 0..50 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move { store.first_use(contested, Duration::from_secs(60)).await }));
        }
    }
    let mut firsts = 0;
    for task in tasks {
        if task.await.unwrap().expect("every call answered") {
            firsts += 1;
        }
    }
    assert_eq!(firsts, 1, "of 100 concurrent uses exactly one is the first");

    // An entry lives for its ttl, then Redis drops it (and the proof would be new again, were it still fresh).
    let short = key("short-lived");
    assert_eq!(a.first_use(short, Duration::from_millis(300)).await, Ok(true));
    let short_key = format!("portcullis:replay:{short}");
    let pttl: i64 = redis.command(&["PTTL", &short_key]).await.parse().unwrap();
    assert!((1..=300).contains(&pttl), "PTTL {pttl} ms for a 300 ms ttl");
    assert!(
        eventually(PATIENCE, || async { redis.command(&["EXISTS", &short_key]).await == "0" }).await,
        "the replay entry did not expire"
    );
    assert_eq!(a.first_use(short, Duration::from_millis(300)).await, Ok(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_every_replica_and_the_set_drops_expired_entries() {
    if !redis_available() {
        return;
    }
    let redis = RedisServer::start().await;
    // An entry already in Redis is in a replica's list once it started; an expired one is not.
    let earlier = jti_entry("revoked-before-start");
    let earlier_json = serde_json::to_string(&earlier).unwrap();
    let stale = Revocation::jti("long-expired", UnixTime::from_secs(now().as_secs() - 10));
    let stale_json = serde_json::to_string(&stale).unwrap();
    let score = |entry: &Revocation| entry.expires_at().as_secs().to_string();
    assert_eq!(redis.command(&["ZADD", "portcullis:revocations", &score(&earlier), &earlier_json]).await, "1");
    assert_eq!(redis.command(&["ZADD", "portcullis:revocations", &score(&stale), &stale_json]).await, "1");

    let (list_a, list_b) = (RevocationList::new(), RevocationList::new());
    let a = replica(settings(&redis.url()), list_a.clone()).await;
    let _b = replica(settings(&redis.url()), list_b.clone()).await;
    assert!(holds(&list_a, &earlier) && holds(&list_b, &earlier), "the set is read at start");
    assert!(!holds(&list_b, &stale), "an expired entry is not applied");
    assert!(a.health().connected && a.health().last_sync.is_some() && a.health().last_error.is_none());

    let entries = [
        jti_entry("j-revoked"),
        Revocation::token_hash(TokenHash::of_token("a.b.c"), UnixTime::from_secs(now().as_secs() + 600)),
        Revocation::subject("auth0|42", now(), UnixTime::from_secs(now().as_secs() + 7200)),
    ];
    for entry in &entries {
        a.revoke(entry.clone(), now()).await.unwrap();
        assert!(holds(&list_a, entry), "the revoking replica enforces it as soon as revoke returns");
        let started = Instant::now();
        assert!(
            eventually(Duration::from_secs(1), || async { holds(&list_b, entry) }).await,
            "{} entry not on the other replica within 1 s",
            entry.kind()
        );
        eprintln!("{} entry reached the other replica in {:?}", entry.kind(), started.elapsed());
    }

    // In Redis: every entry with its expiry as the score, and the expired one gone since the first revoke.
    let stored = members(&redis).await;
    for entry in entries.iter().chain([&earlier]) {
        assert!(stored.contains(entry), "{} entry missing from the set", entry.kind());
        let score = redis.command(&["ZSCORE", "portcullis:revocations", &serde_json::to_string(entry).unwrap()]).await;
        assert_eq!(score, entry.expires_at().as_secs().to_string());
    }
    assert!(!stored.contains(&stale), "the expired entry was not removed by the next revocation");
    assert_eq!(stored.len(), 4);

    // An invalid entry is refused and applied nowhere.
    let invalid = Revocation::jti("", UnixTime::from_secs(now().as_secs() + 60));
    assert!(matches!(a.revoke(invalid.clone(), now()).await, Err(StoreError::Protocol(_))));
    assert!(!holds(&list_a, &invalid));
    assert_eq!(members(&redis).await.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_redis_catches_up_when_the_link_is_back() {
    if !redis_available() {
        return;
    }
    let redis = RedisServer::start().await;
    let link = Link::to(redis.port).await;
    let list_b = RevocationList::new();
    let a = replica(settings(&redis.url()), RevocationList::new()).await;
    let b = replica(settings(&link.url()), list_b.clone()).await;

    link.cut();
    assert!(eventually(PATIENCE, || async { !b.health().connected }).await, "B still reports itself connected");
    let health = b.health();
    assert!(health.last_error.is_some(), "a disconnected store says why: {health:?}");
    assert!(health.last_sync.is_some(), "the last synchronization is still known");

    // While cut off, B refuses at once instead of waiting.
    let started = Instant::now();
    let refused = b.first_use(key("while-cut"), Duration::from_secs(60)).await;
    assert!(matches!(refused, Err(StoreError::Unavailable(_))), "{refused:?}");
    assert!(started.elapsed() < Duration::from_millis(100), "refusing took {:?}", started.elapsed());

    // A revocation made meanwhile (published while B's subscription is down) does not reach B...
    let entry = jti_entry("revoked-while-b-was-cut-off");
    a.revoke(entry.clone(), now()).await.unwrap();
    assert!(!holds(&list_b, &entry));

    // ...until the link is back: B resynchronizes and has it, without being rebuilt.
    link.restore();
    assert!(eventually(PATIENCE, || async { holds(&list_b, &entry) }).await, "B did not catch up: {:?}", b.health());
    assert!(b.until_synchronized(PATIENCE).await);
    assert!(b.health().connected && b.health().last_error.is_none());
    assert_eq!(b.first_use(key("while-cut"), Duration::from_secs(60)).await, Ok(true));

    // And the subscription works again: the next revocation is pushed.
    let next = jti_entry("after-restore");
    a.revoke(next.clone(), now()).await.unwrap();
    assert!(eventually(Duration::from_secs(1), || async { holds(&list_b, &next) }).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_costs_a_request_at_most_its_budget() {
    if !redis_available() {
        return;
    }
    let redis = RedisServer::start().await;
    let link = Link::to(redis.port).await;
    let budget = Duration::from_millis(100);
    let mut stalled = settings(&link.url());
    stalled.timeout = budget;
    let store = replica(stalled, RevocationList::new()).await;
    assert_eq!(store.first_use(key("before-stall"), Duration::from_secs(60)).await, Ok(true));

    link.stall();
    let started = Instant::now();
    let answer = store.first_use(key("during-stall"), Duration::from_secs(60)).await;
    let elapsed = started.elapsed();
    assert_eq!(answer, Err(StoreError::Timeout(budget)));
    assert!(elapsed >= budget, "answered before its budget: {elapsed:?}");
    assert!(elapsed < budget * 10, "a stalled call took {elapsed:?} for a {budget:?} budget");

    // Every later call is bounded too (timing out, or refused once the stalled connection was given up).
    for n in 0..5 {
        let started = Instant::now();
        let answer = store.first_use(key(&format!("stalled-{n}")), Duration::from_secs(60)).await;
        assert!(matches!(answer, Err(StoreError::Timeout(_) | StoreError::Unavailable(_))), "{answer:?}");
        assert!(started.elapsed() < budget * 10, "call {n} took {:?}", started.elapsed());
    }
    assert!(eventually(PATIENCE, || async { !store.health().connected }).await, "a stalled Redis looks connected");

    link.restore();
    assert!(
        eventually(PATIENCE, || async { store.first_use(key("after-stall"), Duration::from_secs(60)).await.is_ok() })
            .await,
        "the store did not recover: {:?}",
        store.health()
    );
    assert!(store.until_synchronized(PATIENCE).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_then_restarted_empty_gets_the_revocations_back_from_the_replica() {
    if !redis_available() {
        return;
    }
    let mut redis = RedisServer::start().await;
    // Through a link, so that the test can see the restarted Redis empty before the replica reaches it.
    let link = Link::to(redis.port).await;
    let list = RevocationList::new();
    let store = replica(settings(&link.url()), list.clone()).await;
    let before = jti_entry("revoked-before-the-crash");
    store.revoke(before.clone(), now()).await.unwrap();
    assert_eq!(store.first_use(key("before-crash"), Duration::from_secs(60)).await, Ok(true));

    redis.kill().await;
    // Once the store noticed (the first call may still find the dead connection), it fails fast.
    assert!(
        eventually(PATIENCE, || async { store.first_use(key("probe"), Duration::from_secs(60)).await.is_err() }).await
    );
    assert!(eventually(PATIENCE, || async { !store.health().connected }).await);
    let budget = store.settings().timeout;
    let started = Instant::now();
    let answer = store.first_use(key("during-outage"), Duration::from_secs(60)).await;
    assert!(matches!(answer, Err(StoreError::Unavailable(_) | StoreError::Timeout(_))), "{answer:?}");
    assert!(started.elapsed() < budget * 10, "took {:?}", started.elapsed());

    // A revocation during the outage is enforced here, and reported as not shared.
    let during = jti_entry("revoked-during-the-outage");
    assert!(store.revoke(during.clone(), now()).await.is_err());
    assert!(holds(&list, &during));

    link.cut();
    redis.restart().await;
    assert_eq!(redis.dbsize().await, 0, "the restarted Redis is empty");
    link.restore();
    assert!(
        eventually(PATIENCE, || async { store.first_use(key("after-restart"), Duration::from_secs(60)).await.is_ok() })
            .await,
        "the store did not recover: {:?}",
        store.health()
    );
    assert!(store.until_synchronized(PATIENCE).await);
    assert!(
        eventually(PATIENCE, || async {
            let stored = members(&redis).await;
            stored.contains(&before) && stored.contains(&during)
        })
        .await,
        "the replica did not write its revocations back: {:?}",
        members(&redis).await
    );

    // A replica started now learns both from Redis.
    let fresh = RevocationList::new();
    let _late = replica(settings(&redis.url()), fresh.clone()).await;
    assert!(holds(&fresh, &before) && holds(&fresh, &during));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_ignored_and_the_subscription_keeps_working() {
    if !redis_available() {
        return;
    }
    let redis = RedisServer::start().await;
    let list = RevocationList::new();
    let store = replica(settings(&redis.url()), list.clone()).await;
    let channel = "portcullis:revocations";
    let expires = (now().as_secs() + 3600).to_string();
    let garbage = [
        "not json at all".to_owned(),
        r#"{"kind":"jti"}"#.to_owned(),
        format!(r#"{{"kind":"jti","jti":"","expires_at":{expires}}}"#),
        format!(r#"{{"kind":"jti","jti":"line\nbreak","expires_at":{expires}}}"#),
        format!(r#"{{"kind":"subject","sub":"s","before":{},"expires_at":{expires}}}"#, now().as_secs() + 7200),
        format!(r#"{{"kind":"jti","jti":"x","expires_at":{expires},"extra":1}}"#),
        format!(r#"{{"kind":"token_hash","sha256":"zz","expires_at":{expires}}}"#),
    ];
    for message in &garbage {
        assert_eq!(redis.command(&["PUBLISH", channel, message]).await, "1", "one subscriber");
    }
    let valid = jti_entry("valid-after-garbage");
    redis.command(&["PUBLISH", channel, &serde_json::to_string(&valid).unwrap()]).await;
    assert!(eventually(Duration::from_secs(1), || async { holds(&list, &valid) }).await);
    assert_eq!(list.entries(), vec![valid], "only the valid message was applied");
    assert!(store.health().connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_does_not_stop_the_start_and_fails_calls_at_once() {
    if !redis_available() {
        return;
    }
    // A port nothing listens on.
    let port = portcullis_testkit::net::free_port();
    let list = RevocationList::new();
    let store = RedisStore::start(settings(&format!("redis://:hunter2@127.0.0.1:{port}")), list.clone()).unwrap();
    assert!(!store.until_synchronized(Duration::from_millis(300)).await);
    let health = store.health();
    assert!(!health.connected && health.last_sync.is_none());
    assert!(health.last_error.is_some());
    assert!(!format!("{store:?}").contains("hunter2"), "the password shows in {store:?}");
    let started = Instant::now();
    assert!(matches!(store.first_use(key("j"), Duration::from_secs(60)).await, Err(StoreError::Unavailable(_))));
    assert!(started.elapsed() < Duration::from_millis(100));

    // A Redis that appears later is picked up without a restart of the store.
    let redis_dir = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new("redis-server");
    command.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
    command.args(["--requirepass", "hunter2", "--dir", redis_dir.path().to_str().unwrap()]);
    let mut process = portcullis_testkit::process::Running::spawn("redis-server", command, redis_dir);
    process.until_listening(port).await;
    assert!(store.until_synchronized(PATIENCE).await, "{:?}", store.health());
    assert_eq!(store.first_use(key("j"), Duration::from_secs(60)).await, Ok(true));
}

#[test]
fn a_url_that_is_not_redis_is_refused_without_its_password() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let refused = RedisStore::start(RedisSettings::new("http://user:hunter2@example.com/"), RevocationList::new());
        let error = refused.expect_err("an http URL is not a Redis URL").to_string();
        assert!(error.starts_with("invalid Redis URL"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_set_is_read_again_every_resync_interval() {
    if !redis_available() {
        return;
    }
    let redis = RedisServer::start().await;
    let list = RevocationList::new();
    let mut often = settings(&redis.url());
    often.resync_interval = Duration::from_millis(200);
    let store = replica(often, list.clone()).await;
    let first_sync = store.health().last_sync.unwrap();

    // Added to the set without a message (as a lost message would leave it): only a resynchronization finds it.
    let entry = jti_entry("added-without-a-message");
    let json = serde_json::to_string(&entry).unwrap();
    redis.command(&["ZADD", "portcullis:revocations", &entry.expires_at().as_secs().to_string(), &json]).await;
    assert!(eventually(PATIENCE, || async { holds(&list, &entry) }).await, "no periodic resynchronization");
    assert!(store.health().last_sync.unwrap() > first_sync);
}

#[tokio::test]
async fn durations_that_would_spin_the_background_tasks_are_raised() {
    let mut zero = RedisSettings::new(format!("redis://127.0.0.1:{}", portcullis_testkit::net::free_port()));
    zero.backoff_min = Duration::ZERO;
    zero.backoff_max = Duration::ZERO;
    zero.resync_interval = Duration::ZERO;
    let store = RedisStore::start(zero, RevocationList::new()).unwrap();
    let used = store.settings();
    assert_eq!(used.backoff_min, Duration::from_millis(1));
    assert_eq!(used.backoff_max, Duration::from_millis(1));
    assert_eq!(used.resync_interval, Duration::from_millis(10));
}

/// Sends `commands` to `redis` in one pipeline (one write, so that the server answers them back to back).
async fn pipeline(redis: &RedisServer, commands: redis::Pipeline) {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    commands.query_async::<()>(&mut connection).await.unwrap();
}

/// How many times `redis` ran `command` since its statistics were last reset (`INFO commandstats`).
async fn calls(redis: &RedisServer, command: &str) -> u64 {
    let stats = redis.command(&["INFO", "commandstats"]).await;
    let prefix = format!("cmdstat_{command}:calls=");
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_set_is_read_in_pages_and_written_back_in_chunks_without_publishing() {
    if !redis_available() {
        return;
    }
    let redis = RedisServer::start().await;
    let base = now().as_secs() + 3600;
    // Groups of seven members share a score, so that pages end in the middle of a score.
    let entries: Vec<Revocation> =
        (0..3000u64).map(|i| Revocation::jti(format!("large-{i}"), UnixTime::from_secs(base + i / 7))).collect();
    let mut add = redis::pipe();
    for entry in &entries {
        add.cmd("ZADD")
            .arg("portcullis:revocations")
            .arg(entry.expires_at().as_secs())
            .arg(serde_json::to_string(entry).unwrap())
            .ignore();
    }
    pipeline(&redis, add).await;
    redis.command(&["CONFIG", "RESETSTAT"]).await;

    let list = RevocationList::new();
    let mut paged = settings(&redis.url());
    paged.page = 100;
    paged.resync_interval = Duration::from_millis(200);
    let store = replica(paged, list.clone()).await;
    assert_eq!(list.len(), 3000, "every member read");
    let mut held = list.entries();
    held.sort_by_key(|entry| serde_json::to_string(entry).unwrap());
    let mut expected = entries.clone();
    expected.sort_by_key(|entry| serde_json::to_string(entry).unwrap());
    assert_eq!(held, expected);
    assert!(calls(&redis, "zrangebyscore").await >= 30, "read in pages of 100");

    // Redis loses the set (as a Redis restarted empty would): the replica writes it back in transactions of at
    // most 100 members, and publishes none of them.
    // The statistics are reset before the set is dropped: a resync running at that moment may start writing back
    // at once, and every one of its transactions must be counted.
    redis.command(&["CONFIG", "RESETSTAT"]).await;
    redis.command(&["DEL", "portcullis:revocations"]).await;
    assert!(
        eventually(PATIENCE, || async { redis.command(&["ZCARD", "portcullis:revocations"]).await == "3000" }).await,
        "not written back: {:?}",
        store.health()
    );
    assert!(calls(&redis, "exec").await >= 30, "written back in chunks of 100");
    assert_eq!(calls(&redis, "publish").await, 0, "written-back entries are not published");
    let mut stored = members(&redis).await;
    stored.sort_by_key(|entry| serde_json::to_string(entry).unwrap());
    assert_eq!(stored, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_received_together_are_applied_as_one_batch() {
    if !redis_available() {
        return;
    }
    let redis = RedisServer::start().await;
    let list = RevocationList::new();
    let batches = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let heard = batches.clone();
    list.on_change(move |entries| {
        if !entries.is_empty() {
            heard.lock().unwrap().push(entries.len());
        }
        true
    });
    let _store = replica(settings(&redis.url()), list.clone()).await;
    let mut publish = redis::pipe();
    for i in 0..2000 {
        publish
            .cmd("PUBLISH")
            .arg("portcullis:revocations")
            .arg(serde_json::to_string(&jti_entry(&format!("b{i}"))).unwrap())
            .ignore();
    }
    pipeline(&redis, publish).await;
    assert!(eventually(PATIENCE, || async { list.len() == 2000 }).await, "{} of 2000", list.len());
    let batches = batches.lock().unwrap().clone();
    assert_eq!(batches.iter().sum::<usize>(), 2000);
    assert!(batches.iter().any(|size| *size > 1), "one apply per message: {} batches", batches.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_resyncs_fail_while_connected_is_not_synchronized() {
    if !redis_available() {
        return;
    }
    let redis = RedisServer::start().await;
    let mut often = settings(&redis.url());
    often.resync_interval = Duration::from_millis(100);
    let store = replica(often, RevocationList::new()).await;
    assert!(store.health().synchronized);

    // The set's key holds a string: every read of the set fails, the connection stays up.
    redis.command(&["SET", "portcullis:revocations", "not a sorted set"]).await;
    assert!(
        eventually(PATIENCE, || async { !store.health().synchronized }).await,
        "still synchronized: {:?}",
        store.health()
    );
    let health = store.health();
    assert!(health.connected, "{health:?}");
    assert!(!health.synchronized);

    redis.command(&["DEL", "portcullis:revocations"]).await;
    assert!(eventually(PATIENCE, || async { store.health().synchronized }).await, "{:?}", store.health());
}
