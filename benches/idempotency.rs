//! `MemoryStore` with one million small responses already stored: the cost
//! of each store operation the server layer makes.
//!
//! * `claim_new`: a claim of a key never seen (the first request), released
//!   untimed so the store stays at a million entries;
//! * `complete`: storing a small response under a fresh claim;
//! * `replay`: a claim of a stored key, returning the response (a repeat);
//! * `claim_complete_replay`: the three in a row on one new key;
//! * `claim_new_at_bound`: a claim of a new key in a store filled to its
//!   bound (a million), so it first evicts the oldest entry, as every new
//!   key does on a busy server once a TTL's worth of keys arrived.
//!
//! The store for the first four has a bound the run never reaches, so they
//! measure the operations on a million entries, not eviction.
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
//!
//! `IdempotencyLayer` over `MemoryStore::new()`, against the same bare
//! always-ready service (`Created`: a 201 with a content type and a 17-byte
//! JSON body) without the layer, all in one group so the differences are
//! the layer's cost. Every request is a `POST /orders` with an
//! `Authorization` header and an 18-byte `Full<Bytes>` body, built in
//! untimed setup (`iter_batched`, responses dropped untimed too):
//!
//! * `bare`: the service alone;
//! * `passthrough`: through the layer, without a key;
//! * `fresh_key`: a new key each time: buffer and fingerprint the body,
//!   claim, run the service, read and store its response, answer (the
//!   store soon holds its default bound of 100,000 entries, so each new
//!   key also evicts the oldest, as on a busy server);
//! * `replay`: one key over and over: buffer and fingerprint the body,
//!   claim (the stored response comes back), answer with the replay.
//!
//! Each call is `poll_ready`, `call` and polls of the future with a no-op
//! waker until it is ready (once, with this store), inside a current-thread
//! runtime's context. The binary also prints the allocations per call of
//! each case, counted by a global allocator (`tests/alloc/cases.rs`).

#[path = "../tests/alloc/cases.rs"]
#[allow(dead_code)]
mod cases;

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use cases::allocs_per_call;
use criterion::{criterion_group, BatchSize, Criterion};
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use steadfast::idempotency::store::{
    Claim, ClaimToken, Fingerprint, MemoryStore, Store, StoreError, StoreKey, StoredResponse,
};
use steadfast::idempotency::IdempotencyLayer;
use tower_layer::Layer;
use tower_service::Service;

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
    StoredResponse::new(201, Bytes::from_static(b"{\"id\":1234567890}"))
        .with_headers([("content-type", "application/json")])
}

/// A claim released when dropped.
struct Release<'a> {
    store: &'a MemoryStore,
    key: StoreKey,
    claim: Result<Claim, StoreError>,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if let Ok(Claim::Claimed(token)) = &self.claim {
            assert!(matches!(
                now(self.store.release(&self.key, token)),
                Ok(true)
            ));
        }
    }
}

fn claim_new(store: &MemoryStore, key: &StoreKey) -> ClaimToken {
    match now(store.claim(key, &ClaimToken::random(), FP, LOCK)) {
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

/// A store with `STORED` small responses, under `key(0..STORED)`, and a
/// bound of `max_entries` (and none on bytes).
fn filled_store(max_entries: usize) -> MemoryStore {
    let store = MemoryStore::builder()
        .max_entries(max_entries)
        .max_bytes(usize::MAX)
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
    // The second store reuses the memory the first one freed: only a growth
    // says anything.
    if let (Some(before), Some(after)) = (before, after.filter(|a| before.is_some_and(|b| *a > b)))
    {
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
    // A bound the run never reaches: these cases measure the operations on
    // a store of a million entries, not eviction.
    let store = filled_store(1 << 26);
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
                let claim = now(store.claim(black_box(&k), &ClaimToken::random(), FP, LOCK));
                // Released untimed, when criterion drops the outputs: the
                // store stays at a million entries.
                Release {
                    store: &store,
                    key: k,
                    claim,
                }
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
                let claim = now(store.claim(black_box(&k), &ClaimToken::random(), FP, LOCK));
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
                let replay = now(store.claim(&k, &ClaimToken::random(), FP, LOCK));
                (k, done, replay)
            },
            BatchSize::SmallInput,
        );
    });
    drop(store);
    // A store at its bound, as a busy server's is once a TTL's worth of
    // keys arrived: each new claim first evicts the oldest entry.
    let full = filled_store(STORED);
    g.bench_function("claim_new_at_bound", |b| {
        b.iter_batched(
            &mut fresh,
            |k| {
                let claim = now(full.claim(black_box(&k), &ClaimToken::random(), FP, LOCK));
                (k, claim)
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

// ===== the server layer =====

/// Always ready; answers every request at once with a small JSON 201,
/// without reading the request body.
#[derive(Debug, Clone, Copy)]
struct Created;

impl<B> Service<Request<B>> for Created {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Full<Bytes>>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        let mut res = Response::new(Full::new(Bytes::from_static(b"{\"id\":1234567890}")));
        *res.status_mut() = StatusCode::CREATED;
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        ready(Ok(res))
    }
}

/// How many times a call's future is polled before the bench gives up: the
/// memory store's futures are ready at once, so one poll is enough.
const MAX_POLLS: usize = 16;

/// `poll_ready`, `call`, and polls with a no-op waker until the response.
fn serve<S, B>(svc: &mut S, req: Request<B>) -> S::Response
where
    S: Service<Request<B>>,
    S::Error: Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => panic!("bench services never fail: {e:?}"),
        Poll::Pending => panic!("bench services are always ready"),
    }
    let mut fut = pin!(svc.call(req));
    for _ in 0..MAX_POLLS {
        if let Poll::Ready(res) = fut.as_mut().poll(&mut cx) {
            return res.expect("bench services never fail");
        }
    }
    panic!("the response is not ready after {MAX_POLLS} polls")
}

/// `POST /orders` with a bearer token, a small JSON body and, if given, an
/// `Idempotency-Key`.
fn order(key: Option<&HeaderValue>) -> Request<Full<Bytes>> {
    let mut req = Request::post("/orders")
        .header(AUTHORIZATION, "Bearer 7f3a9c2e5b1d4f8a")
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(b"{\"sku\":42,\"qty\":1}")))
        .expect("a valid request");
    if let Some(key) = key {
        req.headers_mut().insert("idempotency-key", key.clone());
    }
    req
}

/// The `Idempotency-Key` header value for key number `n`: a quoted UUID.
fn key_header(n: u64) -> HeaderValue {
    let uuid = key(n);
    // `StoreKey` is "principal:key"; keep the key.
    let uuid = uuid.as_str().rsplit(':').next().expect("a key");
    HeaderValue::try_from(format!("\"{uuid}\"")).expect("a valid header value")
}

fn server_layer(c: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();
    let mut layered = IdempotencyLayer::new(MemoryStore::new()).layer(Created);
    let mut next: u64 = 0;
    let mut fresh = move || {
        next += 1;
        key_header(next)
    };
    let repeated = key_header(u64::MAX);
    let first = serve(&mut layered, order(Some(&repeated)));
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(!first.headers().contains_key("idempotent-replayed"));
    let again = serve(&mut layered, order(Some(&repeated)));
    assert_eq!(again.headers()["idempotent-replayed"], "true");

    let mut g = c.benchmark_group("idempotency_server_layer");
    let mut bare = Created;
    g.bench_function("bare", |b| {
        b.iter_batched(
            || order(None),
            |req| serve(&mut bare, black_box(req)),
            BatchSize::SmallInput,
        );
    });
    g.bench_function("passthrough", |b| {
        b.iter_batched(
            || order(None),
            |req| serve(&mut layered, black_box(req)),
            BatchSize::SmallInput,
        );
    });
    g.bench_function("fresh_key", |b| {
        b.iter_batched(
            || order(Some(&fresh())),
            |req| serve(&mut layered, black_box(req)),
            BatchSize::SmallInput,
        );
    });
    g.bench_function("replay", |b| {
        b.iter_batched(
            || order(Some(&repeated)),
            |req| serve(&mut layered, black_box(req)),
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

/// Prints the allocations per call of `svc` serving `CALLS` requests made
/// by `make` (built before counting; responses dropped inside it).
fn print_allocs<S>(name: &str, svc: &mut S, make: impl FnMut(u64) -> Request<Full<Bytes>>)
where
    S: Service<Request<Full<Bytes>>>,
    S::Error: Debug,
{
    const CALLS: u64 = 10_000;
    // One extra for `allocs_per_call`'s warm-up call; popped in order.
    let mut reqs: Vec<_> = (0..=CALLS).rev().map(make).collect();
    let per_call = allocs_per_call(CALLS, |_| {
        let req = reqs.pop().expect("one request per call");
        drop(black_box(serve(svc, req)));
    });
    println!("allocations per call: {name} = {per_call}");
}

/// Prints the allocations per call of the bare service and of each case of
/// the layer.
fn print_allocations() {
    let rt = runtime();
    let _guard = rt.enter();
    print_allocs("bare", &mut Created, |_| order(None));
    let mut layered = IdempotencyLayer::new(MemoryStore::new()).layer(Created);
    print_allocs("passthrough (no key)", &mut layered, |_| order(None));
    print_allocs("fresh_key (claim, run, store)", &mut layered, |n| {
        order(Some(&key_header(n)))
    });
    // The warm-up call stores the response; the counted calls replay it.
    let repeated = key_header(u64::MAX);
    print_allocs("replay", &mut layered, |_| order(Some(&repeated)));
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
    targets = memory_store, server_layer
}

fn main() {
    print_allocations();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
