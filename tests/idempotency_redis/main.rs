//! `RedisStore` against a real Redis.
//!
//! `REDIS_URL` names the server (`.ci/run` starts one and sets it). Without
//! it the tests print a note and pass, except under CI (`CI` set), where
//! they fail. The kill/restart test starts a private server from
//! `REDIS_SERVER_BIN` (or `redis-server` on the `PATH`).
//!
//! These tests run in real time (Redis expires keys by its own clock), each
//! bounded by a timeout of a few seconds.
#![cfg(feature = "redis")]

#[path = "../support/redis_server.rs"]
mod redis_server;

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use bytes::Bytes;
use redis_server::{free_port, start_private, Server};
use steadfast::idempotency::store::{
    Claim, ClaimToken, Fingerprint, RedisStore, Store, StoreError, StoreKey, StoredResponse,
};

const LOCK: Duration = Duration::from_secs(30);
const TTL: Duration = Duration::from_secs(60);

/// `REDIS_URL`, or `None` (after a note) when the test should be skipped.
fn redis_url() -> Option<String> {
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "REDIS_URL is not set under CI: .ci/run must start redis-server"
            );
            eprintln!("note: REDIS_URL is not set, skipping this Redis test");
            None
        }
    }
}

/// A prefix no other test or run shares.
fn unique_prefix(test: &str) -> String {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("steadfast-test:{:016x}:{test}:", h.finish())
}

async fn store(test: &str) -> Option<RedisStore> {
    let url = redis_url()?;
    let store = RedisStore::connect(url.as_str())
        .await
        .expect("REDIS_URL is set but Redis does not answer")
        .key_prefix(unique_prefix(test));
    Some(store)
}

/// A raw connection, to read and write keys behind the store's back.
async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn bounded<F: Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test took too long")
}

fn response() -> StoredResponse {
    StoredResponse::new(201, Bytes::from_static(b"{\"id\":7}\0\xff\r\n")).with_headers([
        ("content-type", &b"application/json"[..]),
        ("x-bytes", &[0, 1, 254, 255]),
    ])
}

fn fp(n: u8) -> Fingerprint {
    Fingerprint([n; 32])
}

/// A claim with a fresh token, as another request's would be.
async fn claim_any(store: &RedisStore, key: &StoreKey, fp: Fingerprint) -> Claim {
    store
        .claim(key, &ClaimToken::random(), fp, LOCK)
        .await
        .unwrap()
}

fn claimed(c: Claim) -> ClaimToken {
    match c {
        Claim::Claimed(t) => t,
        other => panic!("expected Claimed, got {other:?}"),
    }
}

#[tokio::test]
async fn claim_in_progress_completed_replay_is_byte_identical() {
    let Some(store) = store("replay").await else {
        return;
    };
    bounded(5, async {
        let key = StoreKey::new("alice", "k1");
        let token = claimed(claim_any(&store, &key, fp(1)).await);

        // While it runs, a repeat sees the claim and its fingerprint.
        assert_eq!(
            claim_any(&store, &key, fp(2)).await,
            Claim::InProgress { fingerprint: fp(1) }
        );

        assert!(store
            .complete(&key, &token, fp(1), response(), TTL)
            .await
            .unwrap());
        assert_eq!(
            claim_any(&store, &key, fp(1)).await,
            Claim::Completed {
                fingerprint: fp(1),
                response: response()
            }
        );
        // Completed twice: the repeat of a write that landed is answered
        // `true` (the token's own response), and nothing changes; released
        // after completion: the claim is gone.
        assert!(store
            .complete(&key, &token, fp(1), response(), TTL)
            .await
            .unwrap());
        assert!(!store
            .complete(&key, &ClaimToken::random(), fp(1), response(), TTL)
            .await
            .unwrap());
        assert!(!store.release(&key, &token).await.unwrap());

        // Another scope with the same key is another key.
        claimed(
            store
                .claim(
                    &StoreKey::new("bob", "k1"),
                    &ClaimToken::random(),
                    fp(1),
                    LOCK,
                )
                .await
                .unwrap(),
        );
    })
    .await;
}

#[tokio::test]
async fn wrong_token_cannot_complete_or_release() {
    let Some(store) = store("token").await else {
        return;
    };
    bounded(5, async {
        let key = StoreKey::new("s", "k");
        let token = claimed(claim_any(&store, &key, fp(1)).await);
        let other = ClaimToken(token.0 ^ 1);
        assert!(!store
            .complete(&key, &other, fp(1), response(), TTL)
            .await
            .unwrap());
        assert!(!store.release(&key, &other).await.unwrap());
        // The real claim is untouched.
        assert_eq!(
            claim_any(&store, &key, fp(1)).await,
            Claim::InProgress { fingerprint: fp(1) }
        );
        // A token for a key never claimed releases nothing (a cancelled
        // claim that never landed): the key is still free.
        let free = StoreKey::new("s", "never");
        assert!(!store.release(&free, &token).await.unwrap());
        claimed(claim_any(&store, &free, fp(1)).await);
    })
    .await;
}

#[tokio::test]
async fn release_frees_the_key() {
    let Some(store) = store("release").await else {
        return;
    };
    bounded(5, async {
        let key = StoreKey::new("s", "k");
        let token = claimed(claim_any(&store, &key, fp(1)).await);
        assert!(store.release(&key, &token).await.unwrap());
        let again = claimed(claim_any(&store, &key, fp(2)).await);
        assert_ne!(token, again);
        // The old token cannot release the new claim.
        assert!(!store.release(&key, &token).await.unwrap());
        assert_eq!(
            claim_any(&store, &key, fp(3)).await,
            Claim::InProgress { fingerprint: fp(2) }
        );
    })
    .await;
}

#[tokio::test]
async fn lock_timeout_and_ttl_expire() {
    let Some(store) = store("expiry").await else {
        return;
    };
    bounded(5, async {
        let short = Duration::from_millis(200);
        let key = StoreKey::new("s", "lock");
        let stale = claimed(
            store
                .claim(&key, &ClaimToken::random(), fp(1), short)
                .await
                .unwrap(),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The lock timed out: a new claim wins, and the stale holder can
        // neither complete nor release it.
        let fresh = claimed(claim_any(&store, &key, fp(2)).await);
        assert!(!store
            .complete(&key, &stale, fp(1), response(), TTL)
            .await
            .unwrap());
        assert!(!store.release(&key, &stale).await.unwrap());
        assert!(store
            .complete(&key, &fresh, fp(2), response(), TTL)
            .await
            .unwrap());
        assert!(matches!(
            claim_any(&store, &key, fp(2)).await,
            Claim::Completed { fingerprint, .. } if fingerprint == fp(2)
        ));

        // A stored response expires after its TTL.
        let key = StoreKey::new("s", "ttl");
        let token = claimed(claim_any(&store, &key, fp(1)).await);
        // (Longer than the lock above, so a slow machine still sees it
        // before it expires.)
        assert!(store
            .complete(&key, &token, fp(1), response(), Duration::from_millis(700))
            .await
            .unwrap());
        assert!(matches!(
            claim_any(&store, &key, fp(1)).await,
            Claim::Completed { .. }
        ));
        tokio::time::sleep(Duration::from_millis(900)).await;
        claimed(claim_any(&store, &key, fp(1)).await);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_claims_one_winner() {
    let Some(store) = store("race").await else {
        return;
    };
    bounded(10, async {
        let key = StoreKey::new("s", "race");
        let tasks: Vec<_> = (0..50u8)
            .map(|i| {
                let store = store.clone();
                let key = key.clone();
                tokio::spawn(async move {
                    (
                        i,
                        store
                            .claim(&key, &ClaimToken::random(), fp(i), LOCK)
                            .await
                            .unwrap(),
                    )
                })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        let winners: Vec<u8> = results
            .iter()
            .filter(|(_, c)| matches!(c, Claim::Claimed(_)))
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        // Every loser sees the winner's fingerprint.
        for (_, c) in &results {
            match c {
                Claim::Claimed(_) => {}
                Claim::InProgress { fingerprint } => assert_eq!(*fingerprint, fp(winners[0])),
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
}

#[tokio::test]
async fn one_round_trip_to_claim_one_to_complete() {
    let Some(store) = store("round-trips").await else {
        return;
    };
    bounded(5, async {
        // Warm up: make sure Redis knows the scripts (the first use of a
        // script may cost one more round trip).
        let warm = StoreKey::new("s", "warm");
        let t = claimed(claim_any(&store, &warm, fp(1)).await);
        store.release(&warm, &t).await.unwrap();
        let t = claimed(claim_any(&store, &warm, fp(1)).await);
        store
            .complete(&warm, &t, fp(1), response(), TTL)
            .await
            .unwrap();

        let key = StoreKey::new("s", "counted");
        let n = store.round_trips();
        let token = claimed(claim_any(&store, &key, fp(1)).await);
        assert_eq!(store.round_trips(), n + 1, "claim");
        assert!(store
            .complete(&key, &token, fp(1), response(), TTL)
            .await
            .unwrap());
        assert_eq!(store.round_trips(), n + 2, "complete");
        // A replay, too, is one round trip.
        assert!(matches!(
            claim_any(&store, &key, fp(1)).await,
            Claim::Completed { .. }
        ));
        assert_eq!(store.round_trips(), n + 3, "replay");
        // Clones share the count.
        let clone = store.clone();
        clone
            .claim(&key, &ClaimToken::random(), fp(1), LOCK)
            .await
            .unwrap();
        assert_eq!(store.round_trips(), n + 4, "clone");
    })
    .await;
}

#[tokio::test]
async fn a_garbage_value_is_an_error_not_a_panic() {
    let Some(url) = redis_url() else {
        return;
    };
    bounded(5, async {
        let prefix = unique_prefix("garbage");
        let store = RedisStore::connect(url.as_str())
            .await
            .unwrap()
            .key_prefix(prefix.clone());
        let mut conn = raw(&url).await;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("text", b"hello world".to_vec()),
            ("empty", Vec::new()),
            ("magic only", b"SFI1".to_vec()),
            // A completed value whose header count is huge.
            ("huge count", {
                let mut v = b"SFI1D".to_vec();
                v.extend_from_slice(&[0; 48]);
                v.extend_from_slice(&200u16.to_be_bytes());
                v.extend_from_slice(&u32::MAX.to_be_bytes());
                v
            }),
        ];
        for (name, value) in cases {
            let key = StoreKey::new("s", name);
            let full = format!("{prefix}{}", key.as_str());
            redis::cmd("SET")
                .arg(&full)
                .arg(value)
                .arg("PX")
                .arg(10_000)
                .exec_async(&mut conn)
                .await
                .unwrap();
            assert!(
                store
                    .claim(&key, &ClaimToken::random(), fp(1), LOCK)
                    .await
                    .is_err(),
                "claim over {name}"
            );
            // No claim token matches garbage: complete and release refuse.
            let t = ClaimToken(1);
            assert!(!store
                .complete(&key, &t, fp(1), response(), TTL)
                .await
                .unwrap());
            assert!(!store.release(&key, &t).await.unwrap());
        }
        // A key of another type: Redis itself refuses, and so do we.
        let key = StoreKey::new("s", "list");
        let full = format!("{prefix}{}", key.as_str());
        redis::cmd("RPUSH")
            .arg(&full)
            .arg("x")
            .exec_async(&mut conn)
            .await
            .unwrap();
        redis::cmd("PEXPIRE")
            .arg(&full)
            .arg(10_000)
            .exec_async(&mut conn)
            .await
            .unwrap();
        assert!(store
            .claim(&key, &ClaimToken::random(), fp(1), LOCK)
            .await
            .is_err());
        assert!(store.release(&key, &ClaimToken(1)).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn unreachable_redis_is_an_error() {
    // Runs without a Redis: nothing listens on a port just freed.
    bounded(10, async {
        let url = format!("redis://127.0.0.1:{}", free_port());
        let err = RedisStore::connect(url.as_str()).await.unwrap_err();
        // The Redis error is kept as the source.
        assert!(std::error::Error::source(&err).is_some(), "{err:?}");

        let store = RedisStore::new(url.as_str()).unwrap();
        let key = StoreKey::new("s", "k");
        assert!(store
            .claim(&key, &ClaimToken::random(), fp(1), LOCK)
            .await
            .is_err());
        assert!(store
            .complete(&key, &ClaimToken(1), fp(1), response(), TTL)
            .await
            .is_err());
        assert!(store.release(&key, &ClaimToken(1)).await.is_err());

        assert!(RedisStore::new("not a url").is_err());
    })
    .await;
}

#[test]
fn new_outside_a_runtime_is_an_error_not_a_panic() {
    assert!(RedisStore::new("redis://127.0.0.1:1").is_err());
}

/// Retries `claim` for up to `secs` seconds until it answers.
async fn claim_when_up(store: &RedisStore, key: &StoreKey, secs: u64) -> Claim {
    let token = ClaimToken::random();
    when_up(secs, || store.claim(key, &token, fp(1), LOCK)).await
}

/// Retries `op` for up to `secs` seconds until Redis answers.
async fn when_up<T, Fut>(secs: u64, mut op: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Result<T, StoreError>>,
{
    bounded(secs, async {
        loop {
            match op().await {
                Ok(answer) => return answer,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
}

#[tokio::test]
async fn kill_and_restart_redis() {
    let Some((bin, port, mut server)) = start_private() else {
        return;
    };
    let store = RedisStore::new(format!("redis://127.0.0.1:{port}").as_str()).unwrap();

    // Up: claims work (allow the server a moment to start).
    claimed(claim_when_up(&store, &StoreKey::new("s", "before"), 5).await);

    // Down: every call fails, none hangs.
    server.kill();
    bounded(10, async {
        for i in 0..3 {
            let key = StoreKey::new("s", &format!("down-{i}"));
            assert!(store
                .claim(&key, &ClaimToken::random(), fp(1), LOCK)
                .await
                .is_err());
        }
    })
    .await;

    // Back (empty: no persistence): the same store reconnects.
    let _server = Server::start(&bin, port);
    let key = StoreKey::new("s", "after");
    let token = claimed(claim_when_up(&store, &key, 5).await);
    bounded(5, async {
        assert!(store
            .complete(&key, &token, fp(1), response(), TTL)
            .await
            .unwrap());
        assert_eq!(
            claim_any(&store, &key, fp(1)).await,
            Claim::Completed {
                fingerprint: fp(1),
                response: response()
            }
        );
    })
    .await;
}

#[tokio::test]
async fn get_reads_without_claiming() {
    let Some(store) = store("get").await else {
        return;
    };
    bounded(5, async {
        let key = StoreKey::new("alice", "get");
        assert_eq!(store.get(&key).await.unwrap(), None);
        let token = claimed(claim_any(&store, &key, fp(1)).await);
        assert_eq!(
            store.get(&key).await.unwrap(),
            Some(Claim::InProgress { fingerprint: fp(1) })
        );
        // `get` took nothing: the holder still completes.
        assert!(store
            .complete(&key, &token, fp(1), response(), TTL)
            .await
            .unwrap());
        assert_eq!(
            store.get(&key).await.unwrap(),
            Some(Claim::Completed {
                fingerprint: fp(1),
                response: response()
            })
        );
    })
    .await;
}

/// Issue 10 part 4: a lease renewed with a token-checked `PEXPIRE` outlives
/// its lock timeout; another token cannot renew it; a lapsed claim nobody
/// took is claimed again by its renewal, and completes.
#[tokio::test]
async fn extend_renews_a_lease_and_a_lapsed_claim_still_completes() {
    let Some(store) = store("extend").await else {
        return;
    };
    bounded(5, async {
        let short = Duration::from_millis(300);
        let key = StoreKey::new("s", "lease");
        let token = ClaimToken::random();
        claimed(store.claim(&key, &token, fp(1), short).await.unwrap());
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            assert!(store.extend(&key, &token, fp(1), short).await.unwrap());
        }
        // 450 ms after the claim, past its 300 ms lock: still held.
        assert_eq!(
            claim_any(&store, &key, fp(2)).await,
            Claim::InProgress { fingerprint: fp(1) }
        );
        assert!(!store
            .extend(&key, &ClaimToken::random(), fp(1), short)
            .await
            .unwrap());
        // Lapsed, not taken: a renewal claims it again.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(store.get(&key).await.unwrap(), None);
        assert!(store.extend(&key, &token, fp(1), short).await.unwrap());
        assert_eq!(
            store.get(&key).await.unwrap(),
            Some(Claim::InProgress { fingerprint: fp(1) })
        );
        // Lapsed, not taken: the completion lands.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(store
            .complete(&key, &token, fp(1), response(), TTL)
            .await
            .unwrap());
        assert!(matches!(
            store.get(&key).await.unwrap(),
            Some(Claim::Completed { .. })
        ));
        // A stored response: the lease is lost.
        assert!(!store.extend(&key, &token, fp(1), short).await.unwrap());
    })
    .await;
}

/// Issue 10 part 4: Redis killed and restarted (empty) while a handler
/// runs: the renewal claims the key again for the same token, a repeat
/// sees it in progress, and the completion lands.
#[tokio::test]
async fn a_lease_survives_redis_restarting_empty() {
    let Some((bin, port, mut server)) = start_private() else {
        return;
    };
    let store = RedisStore::new(format!("redis://127.0.0.1:{port}").as_str()).unwrap();
    let key = StoreKey::new("s", "mid-lease");
    let token = ClaimToken::random();
    claimed(when_up(5, || store.claim(&key, &token, fp(1), LOCK)).await);

    server.kill();
    bounded(10, async {
        assert!(store.extend(&key, &token, fp(1), LOCK).await.is_err());
    })
    .await;
    let _server = Server::start(&bin, port);
    let renewed = when_up(5, || store.extend(&key, &token, fp(1), LOCK)).await;
    assert!(renewed, "the restarted, empty Redis gave the key back");
    bounded(5, async {
        assert_eq!(
            claim_any(&store, &key, fp(1)).await,
            Claim::InProgress { fingerprint: fp(1) }
        );
        assert!(store
            .complete(&key, &token, fp(1), response(), TTL)
            .await
            .unwrap());
    })
    .await;
}
