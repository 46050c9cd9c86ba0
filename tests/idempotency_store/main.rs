//! `MemoryStore` against the `Store` contract, on paused time.
//!
//! Claims, completion and release with right and wrong tokens, the lock
//! timeout, TTL expiry, the bound on entries and which entry it evicts, and
//! concurrent claims of one key on a multi-thread runtime; a model test
//! of random operation sequences (`model.rs`).
#![cfg(feature = "http")]

mod model;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use steadfast::idempotency::store::{
    Claim, ClaimToken, Fingerprint, MemoryStore, Store, StoreError, StoreKey, StoredResponse,
};
use tokio::time::advance;

const LOCK: Duration = Duration::from_secs(30);
const TTL: Duration = Duration::from_secs(24 * 60 * 60);
const FP: Fingerprint = Fingerprint([1; 32]);
const OTHER_FP: Fingerprint = Fingerprint([2; 32]);

fn key(k: &str) -> StoreKey {
    StoreKey::new("tenant", k)
}

fn response(body: &'static [u8]) -> StoredResponse {
    StoredResponse::new(201, Bytes::from_static(body)).with_headers([
        ("content-type", &b"application/json"[..]),
        ("set-cookie", b"a=1"),
        ("set-cookie", &[0xff, b'x']),
    ])
}

async fn claimed(store: &MemoryStore, key: &StoreKey) -> ClaimToken {
    match store.claim(key, FP, LOCK).await.expect("memory store") {
        Claim::Claimed(token) => token,
        other => panic!("expected Claimed, got {other:?}"),
    }
}

async fn claim(store: &MemoryStore, key: &StoreKey) -> Claim {
    store
        .claim(key, OTHER_FP, LOCK)
        .await
        .expect("memory store")
}

/// Stored responses and claims evicted before they expired.
fn evicted(store: &MemoryStore) -> (u64, u64) {
    let stats = store.stats();
    (stats.evicted_responses, stats.evicted_claims)
}

fn small_store(max_entries: usize) -> MemoryStore {
    MemoryStore::builder()
        .max_entries(max_entries)
        .shards(1)
        .build()
        .expect("valid config")
}

#[tokio::test(start_paused = true)]
async fn first_claim_is_claimed_second_is_in_progress() -> Result<(), StoreError> {
    let store = MemoryStore::new();
    let k = key("a");
    claimed(&store, &k).await;
    // The repeat sees the first request's fingerprint, not its own.
    assert_eq!(
        claim(&store, &k).await,
        Claim::InProgress { fingerprint: FP }
    );
    // Another key, or the same key in another scope, is free.
    assert!(matches!(claim(&store, &key("b")).await, Claim::Claimed(_)));
    assert!(matches!(
        store.claim(&StoreKey::new("other", "a"), FP, LOCK).await?,
        Claim::Claimed(_)
    ));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn complete_with_the_token_stores_the_response() -> Result<(), StoreError> {
    let store = MemoryStore::new();
    let k = key("a");
    let token = claimed(&store, &k).await;
    assert!(
        store
            .complete(&k, &token, FP, response(b"{\"id\":1}"), TTL)
            .await?
    );
    // Replayed byte for byte, with the stored fingerprint, as often as asked.
    for _ in 0..2 {
        assert_eq!(
            claim(&store, &k).await,
            Claim::Completed {
                fingerprint: FP,
                response: response(b"{\"id\":1}")
            }
        );
    }
    // A completed key cannot be completed or released again with the old token.
    assert!(
        !store
            .complete(&k, &token, FP, response(b"other"), TTL)
            .await?
    );
    assert!(!store.release(&k, &token).await?);
    assert_eq!(
        claim(&store, &k).await,
        Claim::Completed {
            fingerprint: FP,
            response: response(b"{\"id\":1}")
        }
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn wrong_token_changes_nothing() -> Result<(), StoreError> {
    let store = MemoryStore::new();
    let k = key("a");
    let token = claimed(&store, &k).await;
    let wrong = ClaimToken(token.0.wrapping_add(1));
    assert!(!store.complete(&k, &wrong, FP, response(b"x"), TTL).await?);
    assert!(!store.release(&k, &wrong).await?);
    assert_eq!(
        claim(&store, &k).await,
        Claim::InProgress { fingerprint: FP }
    );
    // A token for a key nobody claimed does nothing either.
    assert!(
        !store
            .complete(&key("free"), &token, FP, response(b"x"), TTL)
            .await?
    );
    assert!(!store.release(&key("free"), &token).await?);
    assert!(matches!(
        claim(&store, &key("free")).await,
        Claim::Claimed(_)
    ));
    // The right token still works afterwards.
    assert!(store.complete(&k, &token, FP, response(b"x"), TTL).await?);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn release_frees_the_key() -> Result<(), StoreError> {
    let store = MemoryStore::new();
    let k = key("a");
    let token = claimed(&store, &k).await;
    assert!(store.release(&k, &token).await?);
    assert_eq!(store.stats().entries, 0);
    // Released once: the token holds nothing any more.
    assert!(!store.release(&k, &token).await?);
    let next = claimed(&store, &k).await;
    assert_ne!(next, token);
    assert!(
        !store
            .complete(&k, &token, FP, response(b"late"), TTL)
            .await?
    );
    assert_eq!(
        claim(&store, &k).await,
        Claim::InProgress { fingerprint: FP }
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn expired_claim_can_be_taken_again_and_the_old_token_is_dead() -> Result<(), StoreError> {
    let store = MemoryStore::new();
    let k = key("a");
    let old = claimed(&store, &k).await;

    advance(LOCK - Duration::from_millis(1)).await;
    assert_eq!(
        claim(&store, &k).await,
        Claim::InProgress { fingerprint: FP }
    );

    advance(Duration::from_millis(1)).await;
    let new = match claim(&store, &k).await {
        Claim::Claimed(token) => token,
        other => panic!("the lock timed out, expected Claimed, got {other:?}"),
    };
    assert_ne!(new, old);
    // The late writer cannot complete or release the new claim.
    assert!(!store.complete(&k, &old, FP, response(b"late"), TTL).await?);
    assert!(!store.release(&k, &old).await?);
    assert_eq!(
        claim(&store, &k).await,
        Claim::InProgress {
            fingerprint: OTHER_FP
        }
    );
    assert!(
        store
            .complete(&k, &new, OTHER_FP, response(b"new"), TTL)
            .await?
    );
    assert_eq!(
        claim(&store, &k).await,
        Claim::Completed {
            fingerprint: OTHER_FP,
            response: response(b"new")
        }
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn expired_claim_cannot_complete_even_if_not_taken() -> Result<(), StoreError> {
    let store = MemoryStore::new();
    let k = key("a");
    let token = claimed(&store, &k).await;
    advance(LOCK).await;
    assert!(
        !store
            .complete(&k, &token, FP, response(b"late"), TTL)
            .await?
    );
    assert!(matches!(claim(&store, &k).await, Claim::Claimed(_)));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn completed_entries_expire_after_their_ttl() -> Result<(), StoreError> {
    let store = MemoryStore::new();
    let k = key("a");
    let token = claimed(&store, &k).await;
    // The TTL counts from completion, not from the claim.
    advance(Duration::from_secs(10)).await;
    assert!(store.complete(&k, &token, FP, response(b"r"), TTL).await?);

    advance(TTL - Duration::from_millis(1)).await;
    assert!(matches!(claim(&store, &k).await, Claim::Completed { .. }));
    advance(Duration::from_millis(1)).await;
    assert!(matches!(claim(&store, &k).await, Claim::Claimed(_)));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn huge_durations_do_not_overflow() -> Result<(), StoreError> {
    let store = MemoryStore::new();
    let k = key("a");
    let token = match store.claim(&k, FP, Duration::MAX).await? {
        Claim::Claimed(token) => token,
        other => panic!("expected Claimed, got {other:?}"),
    };
    advance(Duration::from_secs(365 * 24 * 60 * 60)).await;
    assert_eq!(
        claim(&store, &k).await,
        Claim::InProgress { fingerprint: FP }
    );
    assert!(
        store
            .complete(&k, &token, FP, response(b"r"), Duration::MAX)
            .await?
    );
    advance(Duration::from_secs(365 * 24 * 60 * 60)).await;
    assert!(matches!(claim(&store, &k).await, Claim::Completed { .. }));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn entries_stay_within_the_bound_under_100_000_keys() -> Result<(), StoreError> {
    const BOUND: usize = 1_000;
    let store = MemoryStore::builder()
        .max_entries(BOUND)
        .shards(8)
        .build()
        .expect("valid config");
    for i in 0..100_000 {
        let k = key(&i.to_string());
        let token = claimed(&store, &k).await;
        assert!(store.complete(&k, &token, FP, response(b"r"), TTL).await?);
        if i % 1_000 == 999 {
            assert!(
                store.stats().entries <= BOUND,
                "at key {i}: {:?}",
                store.stats()
            );
        }
    }
    let stats = store.stats();
    // Every shard is full: the bound is reached, not just respected.
    assert_eq!(stats.entries, BOUND);
    // The newest keys are kept, the oldest evicted.
    assert!(matches!(
        claim(&store, &key("99999")).await,
        Claim::Completed { .. }
    ));
    assert!(matches!(claim(&store, &key("0")).await, Claim::Claimed(_)));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn the_default_bound_holds_under_100_000_keys() -> Result<(), StoreError> {
    let store = MemoryStore::new();
    assert_eq!(store.max_entries(), 100_000);
    for i in 0..110_000 {
        claimed(&store, &key(&i.to_string())).await;
    }
    // Each shard holds its share of the bound, so a shard that fills first
    // evicts while others still have room: close to the bound, never above.
    let entries = store.stats().entries;
    assert!((99_000..=100_000).contains(&entries), "{entries}");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn eviction_takes_the_oldest_entry() -> Result<(), StoreError> {
    let store = small_store(3);
    for k in ["a", "b", "c"] {
        let token = claimed(&store, &key(k)).await;
        assert!(
            store
                .complete(&key(k), &token, FP, response(b"r"), TTL)
                .await?
        );
    }
    claimed(&store, &key("d")).await;
    assert_eq!(store.stats().entries, 3);
    assert_eq!(evicted(&store), (1, 0));
    // "a" is gone; "b" and "c" replay; claiming "a" again then evicts "b".
    assert!(matches!(
        claim(&store, &key("b")).await,
        Claim::Completed { .. }
    ));
    assert!(matches!(
        claim(&store, &key("c")).await,
        Claim::Completed { .. }
    ));
    assert!(matches!(claim(&store, &key("a")).await, Claim::Claimed(_)));
    assert!(matches!(
        claim(&store, &key("c")).await,
        Claim::Completed { .. }
    ));
    assert!(matches!(claim(&store, &key("b")).await, Claim::Claimed(_)));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn eviction_spares_running_claims() -> Result<(), StoreError> {
    let store = small_store(3);
    // The oldest entry is a claim still within its lock timeout.
    claimed(&store, &key("running")).await;
    for k in ["b", "c"] {
        let token = claimed(&store, &key(k)).await;
        assert!(
            store
                .complete(&key(k), &token, FP, response(b"r"), TTL)
                .await?
        );
    }
    claimed(&store, &key("d")).await;
    assert_eq!(store.stats().entries, 3);
    // The oldest stored response went instead.
    assert_eq!(evicted(&store), (1, 0));
    assert_eq!(
        claim(&store, &key("running")).await,
        Claim::InProgress { fingerprint: FP }
    );
    assert!(matches!(
        claim(&store, &key("c")).await,
        Claim::Completed { .. }
    ));
    assert_eq!(
        claim(&store, &key("d")).await,
        Claim::InProgress { fingerprint: FP }
    );
    assert_eq!(store.stats().entries, 3);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn eviction_takes_expired_claims_before_stored_responses() -> Result<(), StoreError> {
    let store = small_store(3);
    // Oldest first: a running claim, a claim that will expire, a response.
    store.claim(&key("running"), FP, LOCK * 10).await?;
    store.claim(&key("expiring"), FP, LOCK).await?;
    let token = claimed(&store, &key("done")).await;
    assert!(
        store
            .complete(&key("done"), &token, FP, response(b"r"), TTL)
            .await?
    );
    advance(LOCK).await;

    claimed(&store, &key("d")).await;
    assert_eq!(store.stats().entries, 3);
    // An expired entry's removal is no loss: not counted as an eviction.
    assert_eq!(evicted(&store), (0, 0));
    assert_eq!(
        claim(&store, &key("running")).await,
        Claim::InProgress { fingerprint: FP }
    );
    assert!(matches!(
        claim(&store, &key("done")).await,
        Claim::Completed { .. }
    ));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_shard_of_running_claims_still_takes_new_ones() -> Result<(), StoreError> {
    // Unavoidable: every entry is a running claim; the oldest one goes.
    let store = small_store(2);
    claimed(&store, &key("a")).await;
    claimed(&store, &key("b")).await;
    claimed(&store, &key("c")).await;
    assert_eq!(store.stats().entries, 2);
    assert_eq!(evicted(&store), (0, 1));
    assert_eq!(
        claim(&store, &key("b")).await,
        Claim::InProgress { fingerprint: FP }
    );
    assert_eq!(
        claim(&store, &key("c")).await,
        Claim::InProgress { fingerprint: FP }
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn expired_entries_are_purged_as_new_ones_arrive() -> Result<(), StoreError> {
    let store = MemoryStore::builder()
        .shards(1)
        .build()
        .expect("valid config");
    for i in 0..100 {
        let k = key(&format!("old {i}"));
        let token = claimed(&store, &k).await;
        assert!(
            store
                .complete(&k, &token, FP, response(b"r"), Duration::from_secs(1))
                .await?
        );
    }
    advance(Duration::from_secs(1)).await;
    for i in 0..100 {
        claimed(&store, &key(&format!("new {i}"))).await;
    }
    // Far below the bound, yet the expired responses did not pile up.
    assert_eq!(store.stats().entries, 100);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn released_keys_give_their_bytes_back() -> Result<(), StoreError> {
    let store = small_store(10);
    for i in 0..10_000 {
        let k = key(&i.to_string());
        let token = claimed(&store, &k).await;
        assert!(store.release(&k, &token).await?);
    }
    let token = claimed(&store, &key("last")).await;
    assert_eq!(store.stats().entries, 1);
    let one = store.stats().bytes;
    assert!(store.release(&key("last"), &token).await?);
    assert_eq!(store.stats().bytes, 0);
    assert!(one > 0);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn stats_count_entries_and_response_bytes() -> Result<(), StoreError> {
    let store = MemoryStore::new();
    let k = key("a");
    let token = claimed(&store, &k).await;
    let claim_bytes = store.stats().bytes;
    assert!(claim_bytes >= k.as_str().len());

    let big = StoredResponse::new(201, vec![7; 10_000]).with_headers([("content-type", "a/b")]);
    assert!(store.complete(&k, &token, FP, big.clone(), TTL).await?);
    let stats = store.stats();
    assert_eq!(stats.entries, 1);
    // The response's headers and body are counted, no more than its size.
    let grown = stats.bytes - claim_bytes;
    assert!(
        grown >= 10_000 + "content-type".len() + "a/b".len(),
        "{grown}"
    );
    assert!(grown <= big.size(), "{grown}");

    // An expired entry replaced by a new claim is counted once.
    advance(TTL).await;
    claimed(&store, &k).await;
    let stats = store.stats();
    assert_eq!((stats.entries, stats.bytes), (1, claim_bytes));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn clones_share_entries() -> Result<(), StoreError> {
    let store = MemoryStore::default();
    let clone = store.clone();
    let token = claimed(&store, &key("a")).await;
    assert_eq!(
        claim(&clone, &key("a")).await,
        Claim::InProgress { fingerprint: FP }
    );
    assert!(
        clone
            .complete(&key("a"), &token, FP, response(b"r"), TTL)
            .await?
    );
    assert!(matches!(
        claim(&store, &key("a")).await,
        Claim::Completed { .. }
    ));
    Ok(())
}

#[test]
fn bad_config_is_an_error_not_a_panic() {
    for (shards, ok) in [
        (0, false),
        (3, false),
        (1 << 17, false),
        (1, true),
        (1 << 16, true),
    ] {
        let built = MemoryStore::builder().shards(shards).build();
        assert_eq!(built.is_ok(), ok, "shards = {shards}");
        if let Err(e) = built {
            assert_eq!(e.field(), "idempotency.memory_store.shards");
        }
    }
    let err = MemoryStore::builder().max_entries(0).build().unwrap_err();
    assert_eq!(err.field(), "idempotency.memory_store.max_entries");
    let err = MemoryStore::builder().max_bytes(0).build().unwrap_err();
    assert_eq!(err.field(), "idempotency.memory_store.max_bytes");
    let store = MemoryStore::builder().max_bytes(1).build().unwrap();
    assert_eq!(store.max_bytes(), 1);
    assert_eq!(MemoryStore::new().max_bytes(), 256 << 20);
    // Fewer entries than shards: the store uses fewer shards.
    let store = MemoryStore::builder()
        .max_entries(3)
        .shards(64)
        .build()
        .unwrap();
    assert_eq!(store.shards(), 2);
    assert!(MemoryStore::new().shards().is_power_of_two());
}

#[test]
fn fingerprints_are_sha256_of_length_prefixed_parts() {
    // Moving bytes between parts changes the fingerprint.
    assert_ne!(
        Fingerprint::of("POST", "/ab", b"c"),
        Fingerprint::of("POST", "/a", b"bc")
    );
    assert_ne!(
        Fingerprint::of("POS", "T/a", b""),
        Fingerprint::of("POST", "/a", b"")
    );
    // A known vector: SHA-256 of three empty parts (three zero lengths).
    let empty = Fingerprint::of("", "", b"");
    assert_eq!(empty.0[..4], [0x9d, 0x90, 0x8e, 0xcf], "{:02x?}", empty.0);
}

#[test]
fn store_keys_are_unambiguous() {
    assert_eq!(StoreKey::new("", "k").as_str(), "0::k");
    assert_ne!(StoreKey::new("a:b", "c"), StoreKey::new("a", "b:c"));
    assert_ne!(StoreKey::new("1:a", "b"), StoreKey::new("1", "a:b"));
}

#[test]
fn auto_traits() {
    fn assert_store<T: Store + std::fmt::Debug + Send + Sync + Clone>() {}
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_store::<MemoryStore>();
    assert_send_sync::<StoreError>();
    assert_send_sync::<Claim>();
}

#[test]
fn claim_futures_are_send() {
    fn assert_send<T: Send>(_: T) {}
    let store = MemoryStore::new();
    let k = key("a");
    assert_send(store.claim(&k, FP, LOCK));
    assert_send(store.release(&k, &ClaimToken(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_of_one_key_give_one_claim() {
    const TASKS: usize = 64;
    for round in 0..20 {
        let store = MemoryStore::new();
        let k = Arc::new(key(&format!("hot {round}")));
        let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (store, k, barrier) = (store.clone(), k.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.claim(&k, FP, LOCK).await.expect("memory store")
                })
            })
            .collect();
        let mut claimed = 0;
        for task in tasks {
            match task.await.expect("task") {
                Claim::Claimed(_) => claimed += 1,
                Claim::InProgress { fingerprint } => assert_eq!(fingerprint, FP),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(claimed, 1, "round {round}");
    }
}

#[tokio::test(start_paused = true)]
async fn get_reads_without_claiming() -> Result<(), StoreError> {
    let store = MemoryStore::new();
    let k = key("g");
    assert_eq!(store.get(&k).await?, None);
    let token = claimed(&store, &k).await;
    assert_eq!(
        store.get(&k).await?,
        Some(Claim::InProgress { fingerprint: FP })
    );
    // `get` took nothing: the holder still completes, and then it reads the response.
    assert!(store.complete(&k, &token, FP, response(b"ok"), TTL).await?);
    assert_eq!(
        store.get(&k).await?,
        Some(Claim::Completed {
            fingerprint: FP,
            response: response(b"ok")
        })
    );
    // Expired entries read as free.
    tokio::time::advance(TTL).await;
    assert_eq!(store.get(&k).await?, None);
    Ok(())
}

/// Many tasks on a multi-thread runtime claim, complete, release and replay
/// keys spread over every shard: a key is never held by two claims at once,
/// a replay is always the response stored for that key, and once every
/// claim is settled the store's accounting adds up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_over_many_keys_keep_each_key_exclusive() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    const TASKS: usize = 16;
    const KEYS: usize = 200;
    const OPS: usize = 2_000;
    let store = MemoryStore::builder()
        .max_entries(4 * KEYS)
        .shards(8)
        .build()
        .expect("valid config");
    let holders: Arc<Vec<AtomicUsize>> = Arc::new((0..KEYS).map(|_| AtomicUsize::new(0)).collect());
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (store, holders) = (store.clone(), holders.clone());
            tokio::spawn(async move {
                let mut completed = 0;
                for op in 0..OPS {
                    // A scattered but reproducible walk over the keys.
                    let n = (t * 7_919 + op * 104_729) % KEYS;
                    let k = key(&n.to_string());
                    match store.claim(&k, FP, LOCK).await.expect("memory store") {
                        Claim::Claimed(token) => {
                            let before = holders[n].fetch_add(1, Ordering::SeqCst);
                            assert_eq!(before, 0, "key {n} held twice");
                            tokio::task::yield_now().await;
                            holders[n].fetch_sub(1, Ordering::SeqCst);
                            if op % 3 == 0 {
                                let body = Bytes::from(n.to_string());
                                let res = StoredResponse::new(201, body);
                                assert!(store.complete(&k, &token, FP, res, TTL).await.unwrap());
                                completed += 1;
                            } else {
                                assert!(store.release(&k, &token).await.unwrap());
                            }
                        }
                        Claim::InProgress { fingerprint } => assert_eq!(fingerprint, FP),
                        Claim::Completed { response, .. } => {
                            assert_eq!(response.body(), n.to_string().as_bytes());
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
                completed
            })
        })
        .collect();
    let mut completed = 0;
    for task in tasks {
        completed += task.await.expect("no task panicked");
    }
    // Every claim was completed or released: what is left is one stored
    // response per completed key, each counted once.
    let stats = store.stats();
    assert_eq!(stats.entries, completed);
    assert!(completed > 0 && completed <= KEYS);
    let one = MemoryStore::new();
    let k = key("0");
    let Claim::Claimed(token) = one.claim(&k, FP, LOCK).await.unwrap() else {
        panic!("a new key is free");
    };
    assert!(one
        .complete(
            &k,
            &token,
            FP,
            StoredResponse::new(201, Bytes::from("0")),
            TTL
        )
        .await
        .unwrap());
    // Entries differ only in their key's length here: the total is within
    // the range the single entry gives.
    let per_entry = one.stats().bytes;
    assert!(stats.bytes <= completed * (per_entry + 8));
    assert!(stats.bytes >= completed * (per_entry - 8));
}

/// Stores a response with a `len`-byte body under `k`.
async fn store_body(store: &MemoryStore, k: &str, len: usize) -> Result<(), StoreError> {
    let token = claimed(store, &key(k)).await;
    let res = StoredResponse::new(201, vec![b'x'; len]);
    assert!(store.complete(&key(k), &token, FP, res, TTL).await?);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn the_byte_bound_evicts_the_oldest_responses() -> Result<(), StoreError> {
    // Room for three 10 kB responses, not four.
    let one = MemoryStore::new();
    store_body(&one, "0", 10_000).await?;
    let per_entry = one.stats().bytes;
    let store = MemoryStore::builder()
        .max_entries(100)
        .max_bytes(per_entry * 3 + per_entry / 2)
        .shards(1)
        .build()
        .expect("valid config");
    for k in ["1", "2", "3", "4", "5"] {
        store_body(&store, k, 10_000).await?;
        assert!(store.stats().bytes <= store.max_bytes());
    }
    let stats = store.stats();
    assert_eq!(stats.entries, 3);
    assert_eq!(evicted(&store), (2, 0));
    // The two oldest went; the newest three replay.
    for k in ["1", "2"] {
        assert!(
            matches!(claim(&store, &key(k)).await, Claim::Claimed(_)),
            "{k}"
        );
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_response_larger_than_the_byte_bound_is_still_kept_alone() -> Result<(), StoreError> {
    let store = MemoryStore::builder()
        .max_bytes(1_000)
        .shards(1)
        .build()
        .expect("valid config");
    // "big" is claimed first, so it is the oldest entry when it completes.
    let token = claimed(&store, &key("big")).await;
    store_body(&store, "small", 10).await?;
    let big = StoredResponse::new(201, vec![b'x'; 5_000]);
    assert!(store.complete(&key("big"), &token, FP, big, TTL).await?);
    // The one just stored is never evicted to make room for itself; the
    // other one went.
    assert_eq!(store.stats().entries, 1);
    assert!(matches!(
        claim(&store, &key("big")).await,
        Claim::Completed { .. }
    ));
    assert!(matches!(
        claim(&store, &key("small")).await,
        Claim::Claimed(_)
    ));
    Ok(())
}
