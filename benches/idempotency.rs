//! `MemoryStore` with one million small responses already stored: the cost
//! of each store operation the server layer makes.
//!
//! * `claim_new`: a claim of a key never seen (the first request);
//! * `complete`: storing a small response under a fresh claim;
//! * `replay`: a claim of a stored key, returning the response (a repeat);
//! * `claim_complete_replay`: the three in a row on one new key.
//!
//! The futures are ready at once; each is polled once with a no-op waker
//! inside a current-thread runtime's context. Keys for `claim_new` and
//! `complete` are made, and their claims taken, in untimed setup (a server
//! has the key at hand too: it just parsed it); `replay` visits the stored
//! keys in a scattered order, so it pays for the store's cache misses as a
//! real server would.
//!
//! Before criterion runs, the binary prints the memory per stored small
//! response: the store's own estimate (`stats().bytes / entries`) and the
//! growth of the process's resident set while the million were stored.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, BatchSize, Criterion};
use steadfast::idempotency::store::{
    Claim, ClaimToken, Fingerprint, MemoryStore, Store, StoreKey, StoredResponse,
};

/// Responses stored before measuring.
const STORED: usize = 1_000_000;
const LOCK: Duration = Duration::from_secs(60);
const TTL: Duration = Duration::from_secs(24 * 60 * 60);
const FP: Fingerprint = Fingerprint([0x5a; 32]);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

/// Polls a ready future once.
fn now<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("MemoryStore futures are ready at once"),
    }
}

/// A key as the server layer builds it: a principal and a UUID.
fn key(n: u64) -> StoreKey {
    let uuid = format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        n >> 32,
        (n >> 16) & 0xffff,
        n & 0xfff,
        (n >> 4) & 0xfff,
        n
    );
    StoreKey::new("9f86d081884c7d65", &uuid)
}

/// A small JSON response: one header, a 17-byte body.
fn small_response() -> StoredResponse {
    StoredResponse {
        status: 201,
        headers: vec![("content-type".into(), b"application/json".to_vec())],
        body: Bytes::from_static(b"{\"id\":1234567890}"),
    }
}

fn claim_new(store: &MemoryStore, key: &StoreKey) -> ClaimToken {
    match now(store.claim(key, FP, LOCK)) {
        Ok(Claim::Claimed(token)) => token,
        other => panic!("a new key is free, got {other:?}"),
    }
}

fn store_one(store: &MemoryStore, key: &StoreKey) {
    let token = claim_new(store, key);
    assert!(matches!(
        now(store.complete(key, &token, FP, small_response(), TTL)),
        Ok(true)
    ));
}

/// The resident set size in bytes, where `/proc` tells it.
fn rss() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A store with `STORED` small responses, under `key(0..STORED)`.
fn filled_store() -> MemoryStore {
    let store = MemoryStore::builder()
        .max_entries(4 * STORED)
        .build()
        .expect("valid config");
    let before = rss();
    for n in 0..STORED as u64 {
        store_one(&store, &key(n));
    }
    let after = rss();
    let stats = store.stats();
    println!(
        "MemoryStore, {} small responses stored ({} shards): estimate {} bytes per entry",
        stats.entries,
        store.shards(),
        stats.bytes / stats.entries.max(1),
    );
    if let (Some(before), Some(after)) = (before, after) {
        println!(
            "resident set grew by {} bytes per entry while storing them",
            after.saturating_sub(before) / STORED
        );
    }
    store
}

fn memory_store(c: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();
    let store = filled_store();
    let mut next = STORED as u64;
    let mut fresh = move || {
        next += 1;
        key(next)
    };

    let mut g = c.benchmark_group("idempotency_memory_store");
    g.bench_function("claim_new", |b| {
        b.iter_batched(
            &mut fresh,
            |k| {
                let claim = now(store.claim(black_box(&k), FP, LOCK));
                (k, claim)
            },
            BatchSize::SmallInput,
        );
    });
    g.bench_function("complete", |b| {
        b.iter_batched(
            || {
                let k = fresh();
                let token = claim_new(&store, &k);
                (k, token, small_response())
            },
            |(k, token, response)| {
                let done = now(store.complete(black_box(&k), &token, FP, response, TTL));
                (k, done)
            },
            BatchSize::SmallInput,
        );
    });
    let mut i: u64 = 0;
    g.bench_function("replay", |b| {
        b.iter_batched(
            || {
                // A stride coprime with STORED: every key, in scattered order.
                i = (i + 611_953) % STORED as u64;
                key(i)
            },
            |k| {
                let claim = now(store.claim(black_box(&k), FP, LOCK));
                debug_assert!(matches!(claim, Ok(Claim::Completed { .. })));
                (k, claim)
            },
            BatchSize::SmallInput,
        );
    });
    g.bench_function("claim_complete_replay", |b| {
        b.iter_batched(
            &mut fresh,
            |k| {
                let token = claim_new(&store, black_box(&k));
                let done = now(store.complete(&k, &token, FP, small_response(), TTL));
                let replay = now(store.claim(&k, FP, LOCK));
                (k, done, replay)
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = memory_store
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
