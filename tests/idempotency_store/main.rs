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
    let token = ClaimToken::random();
    match store
        .claim(key, &token, FP, LOCK)
        .await
        .expect("memory store")
    {
        Claim::Claimed(claimed) => {
            assert_eq!(claimed, token);
            token
        }
        other => panic!("expected Claimed, got {other:?}"),
    }
}

async fn claim(store: &MemoryStore, key: &StoreKey) -> Claim {
    store
        .claim(key, &ClaimToken::random(), OTHER_FP, LOCK)
        .await
        .expect("memory store")
}

/// Stored responses evicted before they expired, and claims refused.
fn evicted(store: &MemoryStore) -> (u64, u64) {
    let stats = store.stats();
    (stats.evicted_responses, stats.refused_claims)
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
        store
            .claim(
                &StoreKey::new("other", "a"),
                &ClaimToken::random(),
                FP,
                LOCK
            )
            .await?,
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
    // A token for a key nobody claimed releases nothing (a cancelled claim
    // that never landed); a completion there lands (the claim lapsed).
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

/// Issue 10 part 4: a handler that outlived its claim, when nobody took
/// the key meanwhile, still stores its response (before: refused, and the
/// retry ran the handler again).
#[tokio::test(start_paused = true)]
async fn a_lapsed_claim_nobody_took_still_completes() -> Result<(), StoreError> {
    let store = MemoryStore::new();
    let k = key("a");
    let token = claimed(&store, &k).await;
    advance(LOCK * 2).await;
    assert!(
        store
            .complete(&k, &token, FP, response(b"late"), TTL)
            .await?
    );
    assert_eq!(
        claim(&store, &k).await,
        Claim::Completed {
            fingerprint: FP,
            response: response(b"late")
        }
    );
    // A key that was never claimed (the store lost it) is stored too.
    let lost = key("lost");
    assert!(
        store
            .complete(&lost, &ClaimToken::random(), FP, response(b"r"), TTL)
            .await?
    );
    assert!(matches!(
        claim(&store, &lost).await,
        Claim::Completed { .. }
    ));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn extend_renews_a_lease_and_checks_the_token() -> Result<(), StoreError> {
    let store = MemoryStore::new();
    let k = key("a");
    let token = claimed(&store, &k).await;
    // Renewed twice, the claim outlives two lock timeouts.
    for _ in 0..2 {
        advance(LOCK - Duration::from_secs(1)).await;
        assert!(store.extend(&k, &token, FP, LOCK).await?);
    }
    advance(LOCK - Duration::from_secs(1)).await;
    assert_eq!(
        claim(&store, &k).await,
        Claim::InProgress { fingerprint: FP }
    );
    // Another token cannot renew it.
    assert!(!store.extend(&k, &ClaimToken::random(), FP, LOCK).await?);
    // Its own expired claim, still there: renewed.
    advance(LOCK * 2).await;
    assert!(store.extend(&k, &token, FP, LOCK).await?);
    assert_eq!(
        claim(&store, &k).await,
        Claim::InProgress { fingerprint: FP }
    );
    // A free key (lost, or lapsed and purged) is claimed again.
    assert!(store.release(&k, &token).await?);
    assert!(store.extend(&k, &token, FP, LOCK).await?);
    assert!(store.complete(&k, &token, FP, response(b"r"), TTL).await?);
    // A stored response: the lease is lost.
    assert!(!store.extend(&k, &token, FP, LOCK).await?);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_lapsed_claim_someone_took_cannot_extend_or_complete() -> Result<(), StoreError> {
    let store = MemoryStore::new();
    let k = key("a");
    let old = claimed(&store, &k).await;
    advance(LOCK).await;
    let new = claimed(&store, &k).await;
    assert!(!store.extend(&k, &old, FP, LOCK).await?);
    assert!(!store.complete(&k, &old, FP, response(b"late"), TTL).await?);
    assert!(store.complete(&k, &new, FP, response(b"new"), TTL).await?);
    assert!(!store.complete(&k, &old, FP, response(b"late"), TTL).await?);
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
    let token = match store
        .claim(&k, &ClaimToken::random(), FP, Duration::MAX)
        .await?
    {
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
        store_body(&store, &i.to_string(), 1).await?;
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
    store
        .claim(&key("running"), &ClaimToken::random(), FP, LOCK * 10)
        .await?;
    store
        .claim(&key("expiring"), &ClaimToken::random(), FP, LOCK)
        .await?;
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

/// Issue 10 part 2: a shard full of running claims refuses a new claim
/// instead of evicting one (before: the oldest claim was evicted, and its
/// retry ran the handler again).
#[tokio::test(start_paused = true)]
async fn a_shard_full_of_running_claims_refuses_new_ones() -> Result<(), StoreError> {
    let store = small_store(2);
    claimed(&store, &key("a")).await;
    claimed(&store, &key("b")).await;
    assert_eq!(claim(&store, &key("c")).await, Claim::Full);
    assert_eq!(store.stats().entries, 2);
    assert_eq!(evicted(&store), (0, 1));
    for k in ["a", "b"] {
        assert_eq!(
            claim(&store, &key(k)).await,
            Claim::InProgress { fingerprint: FP }
        );
    }
    // Once a claim expires, there is room again.
    advance(LOCK).await;
    assert!(matches!(claim(&store, &key("c")).await, Claim::Claimed(_)));
    Ok(())
}

/// Issue 10 part 2, at the entry bound: 1,000,000 running claims against
/// the default store (100,000 entries) evicted 900,000 of them. Now none
/// is lost; the claims past the bound are refused.
#[tokio::test(start_paused = true)]
async fn a_million_running_claims_lose_none() -> Result<(), StoreError> {
    let store = MemoryStore::new();
    let mut held = Vec::new();
    let mut refused = 0u64;
    for i in 0..1_000_000 {
        let k = key(&i.to_string());
        match store.claim(&k, &ClaimToken::random(), FP, LOCK).await? {
            Claim::Claimed(_) => held.push(k),
            Claim::Full => refused += 1,
            other => panic!("a new key: {other:?}"),
        }
    }
    let stats = store.stats();
    assert!(
        held.len() <= 100_000 && held.len() > 90_000,
        "{}",
        held.len()
    );
    assert_eq!((stats.entries, stats.claims), (held.len(), held.len()));
    assert_eq!(
        (stats.refused_claims, stats.evicted_responses),
        (refused, 0)
    );
    for k in &held {
        assert_eq!(
            store.get(k).await?,
            Some(Claim::InProgress { fingerprint: FP })
        );
    }
    Ok(())
}

/// Issue 10 part 2: one shard with a 1 MiB byte share, A's request running,
/// B's 1 MiB response stored: A's claim was evicted (and A's retry ran the
/// handler again). Now B's response, which cannot fit beside A's claim, is
/// not stored; a smaller one is, and A's claim stays either way.
#[tokio::test(start_paused = true)]
async fn a_large_response_never_evicts_a_running_claim() -> Result<(), StoreError> {
    let store = MemoryStore::builder()
        .shards(1)
        .max_bytes(1 << 20)
        .build()
        .expect("valid config");
    let a = key("a");
    claimed(&store, &a).await;
    let b = key("b");
    let token = claimed(&store, &b).await;
    let big = StoredResponse::new(201, vec![7; 1 << 20]);
    assert!(!store.complete(&b, &token, FP, big, TTL).await?);
    let stats = store.stats();
    assert_eq!((stats.unstored_responses, stats.refused_claims), (1, 0));
    assert_eq!(
        store.get(&a).await?,
        Some(Claim::InProgress { fingerprint: FP })
    );
    // B's claim is kept (its handler ran): its retry gets 409 until the
    // claim expires, not a second run at once.
    assert_eq!(
        store.get(&b).await?,
        Some(Claim::InProgress { fingerprint: FP })
    );
    let fits = StoredResponse::new(201, vec![7; 900 << 10]);
    assert!(store.complete(&b, &token, FP, fits, TTL).await?);
    assert_eq!(
        store.get(&a).await?,
        Some(Claim::InProgress { fingerprint: FP })
    );
    // A third response makes room by evicting B's, never A's claim.
    let c = key("c");
    let token = claimed(&store, &c).await;
    let fits = StoredResponse::new(201, vec![7; 900 << 10]);
    assert!(store.complete(&c, &token, FP, fits, TTL).await?);
    assert_eq!(store.get(&b).await?, None);
    assert_eq!(
        store.get(&a).await?,
        Some(Claim::InProgress { fingerprint: FP })
    );
    assert_eq!(store.stats().evicted_responses, 1);
    assert!(store.stats().bytes <= 1 << 20);
    Ok(())
}

/// Issue 10 part 2, the defaults on a 64-core host: 256 shards of 1 MiB,
/// and one 1 MiB response evicted 20 of 4,096 running claims. Shards are
/// now at least 4 MiB, so the response is stored and every claim stays.
#[tokio::test(start_paused = true)]
async fn a_default_size_response_fits_beside_running_claims_on_many_cores() -> Result<(), StoreError>
{
    let store = MemoryStore::builder()
        .shards(256)
        .build()
        .expect("valid config");
    assert_eq!(store.shards(), 64);
    let running: Vec<StoreKey> = (0..4_096).map(|i| key(&format!("running {i}"))).collect();
    for k in &running {
        claimed(&store, k).await;
    }
    let k = key("big");
    let token = claimed(&store, &k).await;
    let big = StoredResponse::new(201, vec![7; 1 << 20]);
    assert!(store.complete(&k, &token, FP, big, TTL).await?);
    for k in &running {
        assert_eq!(
            store.get(k).await?,
            Some(Claim::InProgress { fingerprint: FP })
        );
    }
    let stats = store.stats();
    assert_eq!((stats.refused_claims, stats.unstored_responses), (0, 0));
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
    // The table and the queue keep their capacity; the entries' blocks go.
    let empty = store.stats().bytes;
    let token = claimed(&store, &key("last")).await;
    assert_eq!(store.stats().entries, 1);
    let one = store.stats().bytes;
    assert!(store.release(&key("last"), &token).await?);
    assert_eq!(store.stats().bytes, empty);
    assert!(one > empty);
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
    // Beyond it: the block's counts, fingerprint, key, the queue item.
    assert!(grown <= big.size() + 256, "{grown} vs {}", big.size());

    // An expired entry replaced by a new claim is counted once.
    advance(TTL).await;
    claimed(&store, &k).await;
    let stats = store.stats();
    assert_eq!(stats.entries, 1);
    assert!(
        stats.bytes < claim_bytes + 256,
        "{} vs {claim_bytes}",
        stats.bytes
    );
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
    assert_send(store.claim(&k, &ClaimToken::random(), FP, LOCK));
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
                    store
                        .claim(&k, &ClaimToken::random(), FP, LOCK)
                        .await
                        .expect("memory store")
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
                    match store
                        .claim(&k, &ClaimToken::random(), FP, LOCK)
                        .await
                        .expect("memory store")
                    {
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
    let Claim::Claimed(token) = one
        .claim(&k, &ClaimToken::random(), FP, LOCK)
        .await
        .unwrap()
    else {
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
    // Entries differ only in their key's length here: each takes at least
    // the single entry's block, and the tables' slots come on top.
    let per_entry = one.stats().bytes;
    assert_eq!(stats.claims, 0);
    assert!(stats.bytes >= completed * 64, "{}", stats.bytes);
    assert!(
        stats.bytes <= completed * (per_entry + 8) + 8 * per_entry,
        "{}",
        stats.bytes
    );
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

/// Issue 10 part 2: a response larger than its shard's byte share is not
/// stored (before: it evicted every other entry, running claims included).
#[tokio::test(start_paused = true)]
async fn a_response_larger_than_the_byte_bound_is_not_stored() -> Result<(), StoreError> {
    let store = MemoryStore::builder()
        .max_bytes(1_000)
        .shards(1)
        .build()
        .expect("valid config");
    let token = claimed(&store, &key("big")).await;
    store_body(&store, "small", 10).await?;
    let running = claimed(&store, &key("running")).await;
    let big = StoredResponse::new(201, vec![b'x'; 5_000]);
    assert!(!store.complete(&key("big"), &token, FP, big, TTL).await?);
    let stats = store.stats();
    assert_eq!((stats.entries, stats.unstored_responses), (3, 1));
    assert_eq!(stats.evicted_responses, 0);
    assert!(matches!(
        claim(&store, &key("small")).await,
        Claim::Completed { .. }
    ));
    // Its claim is left to expire; the running one is untouched.
    assert!(matches!(
        claim(&store, &key("big")).await,
        Claim::InProgress { .. }
    ));
    assert!(store.release(&key("running"), &running).await?);
    Ok(())
}
