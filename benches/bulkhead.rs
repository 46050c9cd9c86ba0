//! The bulkhead's cost over a bare, always-ready service, next to tower's
//! `ConcurrencyLimit` in the same run.
//!
//! Calls are driven as in `benches/circuit_breaker.rs` (`poll_ready`, `call`
//! and one poll with a no-op waker), inside a current-thread runtime's
//! context. Bare and wrapped services are measured in one group, so the
//! difference is the layer's cost. A slot is always free (the limit is far
//! above the one call in flight per thread) except in `bulkhead_rejection`.
//! See `BENCHMARKS.md` for the results.
//!
//! Before criterion runs, the binary prints the allocations per call of each
//! case, counted by a global allocator.

// Wall-clock timing of the threads in the contention benches needs std's clock.
#![allow(clippy::disallowed_types)]

#[path = "support/in_task.rs"]
mod in_task;

#[path = "support/awaited.rs"]
mod awaited;

#[path = "../tests/alloc/cases.rs"]
#[allow(dead_code)]
mod cases;

use std::hint::black_box;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use cases::{allocs_per_call, drive, Bare};
use criterion::{criterion_group, BenchmarkGroup, Criterion};
use in_task::in_task;
use steadfast::adaptive::{AdaptiveLimitLayer, Aimd, Algorithm, Gradient};
use steadfast::bulkhead::BulkheadLayer;
use tower::limit::ConcurrencyLimitLayer;
use tower_layer::Layer;
use tower_service::Service;

/// Far above the calls in flight at once (one per thread).
const LIMIT: usize = 1_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

fn bulkhead() -> BulkheadLayer {
    BulkheadLayer::new(LIMIT).expect("valid config")
}

fn bulkhead_waiting() -> BulkheadLayer {
    BulkheadLayer::builder(LIMIT)
        .max_wait(Duration::from_millis(100))
        .build()
        .expect("valid config")
}

fn bulkhead_in_poll_ready() -> BulkheadLayer {
    bulkhead_waiting().wait_in_poll_ready()
}

fn bench_calls<S>(
    g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: &str,
    mut svc: S,
) where
    S: Service<u64>,
{
    g.bench_function(id, |b| {
        b.iter(|| black_box(drive(&mut svc, black_box(7))));
    });
}

/// A free slot: what every admitted call pays.
fn fast_path(c: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("bulkhead_fast_path");
    bench_calls(&mut g, "bare", Bare);
    bench_calls(&mut g, "bulkhead", bulkhead().layer(Bare));
    bench_calls(&mut g, "bulkhead_max_wait", bulkhead_waiting().layer(Bare));
    bench_calls(
        &mut g,
        "bulkhead_in_poll_ready",
        bulkhead_in_poll_ready().layer(Bare),
    );
    bench_calls(
        &mut g,
        "tower_concurrency_limit",
        ConcurrencyLimitLayer::new(LIMIT).layer(Bare),
    );
    // Inside a spawned task, as a server calls: the runtime check of a
    // bulkhead that may wait is cached for the task (see `src/runtime.rs`).
    g.bench_function("in_task/bare", |b| {
        b.iter_custom(|iters| in_task(&rt, iters, Bare))
    });
    g.bench_function("in_task/bulkhead", |b| {
        b.iter_custom(|iters| in_task(&rt, iters, bulkhead().layer(Bare)))
    });
    g.bench_function("in_task/bulkhead_max_wait", |b| {
        b.iter_custom(|iters| in_task(&rt, iters, bulkhead_waiting().layer(Bare)))
    });
    g.finish();
}

/// A bulkhead whose limit an adaptive limit of `algorithm` drives (the
/// limit far above the one call in flight: every call is admitted).
fn adaptive_bulkhead<S>(algorithm: impl Into<Algorithm>, inner: S) -> impl Service<u64> + Clone
where
    S: Service<u64, Response = u64> + Clone,
    S::Error: Into<steadfast::BoxError>,
{
    let bulkhead = bulkhead();
    let adaptive = AdaptiveLimitLayer::builder(bulkhead.handle())
        .algorithm(algorithm)
        .max_limit(LIMIT)
        .min_limit(LIMIT)
        .build()
        .expect("valid config");
    bulkhead.layer(adaptive.layer(inner))
}

/// An admitted call through a bulkhead with an adaptive limit: the
/// bulkhead alone, with AIMD (no clock), with the gradient (two clock
/// reads), each awaited as users call.
fn adaptive(c: &mut Criterion) {
    let rt = awaited::runtime();
    awaited::report(
        &rt,
        "awaited/adaptive_aimd",
        adaptive_bulkhead(Aimd::new(), Bare),
        id,
        "",
    );
    awaited::report(
        &rt,
        "awaited/adaptive_gradient",
        adaptive_bulkhead(Gradient::new(), Bare),
        id,
        "",
    );
    let mut g = c.benchmark_group("adaptive_awaited");
    awaited::awaited(&mut g, &rt, "bare", Bare, id);
    awaited::awaited(&mut g, &rt, "bulkhead", bulkhead().layer(Bare), id);
    awaited::awaited(
        &mut g,
        &rt,
        "bulkhead+aimd",
        adaptive_bulkhead(Aimd::new(), Bare),
        id,
    );
    awaited::awaited(
        &mut g,
        &rt,
        "bulkhead+gradient",
        adaptive_bulkhead(Gradient::new(), Bare),
        id,
    );
    awaited::awaited(
        &mut g,
        &rt,
        "bulkhead+aimd_timeout",
        adaptive_bulkhead(Aimd::new().timeout(Duration::from_secs(1)), Bare),
        id,
    );
    g.finish();
}

/// Every slot taken and no wait allowed: the call fails with `BulkheadFull`.
fn rejection(c: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("bulkhead_rejection");
    bench_calls(&mut g, "bare", Bare);
    let (full, _held) = full_bulkhead();
    bench_calls(&mut g, "queue_full", full);
    g.finish();
}

/// A one-slot bulkhead whose slot is held by the returned future.
fn full_bulkhead() -> (impl Service<u64>, impl Sized) {
    let mut svc = BulkheadLayer::new(1).expect("valid config").layer(Bare);
    let held = svc.call(0);
    (svc, held)
}

/// `threads` threads, each calling its own clone of `svc` `iters` times;
/// returns the time of the slowest thread, i.e. the time per call per thread.
fn on_threads<S>(rt: &tokio::runtime::Runtime, threads: usize, svc: &S, iters: u64) -> Duration
where
    S: Service<u64> + Clone + Send,
{
    let start = Barrier::new(threads);
    thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let mut svc = svc.clone();
                let (start, handle) = (&start, rt.handle());
                scope.spawn(move || {
                    let _guard = handle.enter();
                    // Warm up thread-locals (the stripe slot) off the clock.
                    black_box(drive(&mut svc, 0)).ok();
                    start.wait();
                    let t = Instant::now();
                    for i in 0..iters {
                        black_box(drive(&mut svc, black_box(i))).ok();
                    }
                    t.elapsed()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("bench thread"))
            .max()
            .expect("at least one thread")
    })
}

/// One and two threads on one shared limit (clones of one service), with
/// the same loop, so the difference is contention. tower's
/// `ConcurrencyLimit` clones share their semaphore too.
fn contention(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("threads_fast_path");
    let bulkhead = bulkhead().layer(Bare);
    let tower = ConcurrencyLimitLayer::new(LIMIT).layer(Bare);
    for threads in [1, 2] {
        g.bench_function(format!("{threads}/bare"), |b| {
            b.iter_custom(|n| on_threads(&rt, threads, &Bare, n))
        });
        g.bench_function(format!("{threads}/bulkhead"), |b| {
            b.iter_custom(|n| on_threads(&rt, threads, &bulkhead, n))
        });
        g.bench_function(format!("{threads}/tower_concurrency_limit"), |b| {
            b.iter_custom(|n| on_threads(&rt, threads, &tower, n))
        });
    }
    g.finish();
}

/// Allocations per call of `svc`, over 10,000 calls.
fn allocations<S: Service<u64>>(mut svc: S) -> f64 {
    allocs_per_call(10_000, |i| {
        let _ = black_box(drive(&mut svc, i));
    })
}

/// Prints the allocations per call of every case.
fn print_allocations() {
    let rt = runtime();
    let _guard = rt.enter();
    let report = |case: &str, per_call: f64| {
        println!("allocations per call: {case} = {per_call}");
    };
    report("bare", allocations(Bare));
    report("bulkhead", allocations(bulkhead().layer(Bare)));
    report(
        "bulkhead_max_wait",
        allocations(bulkhead_waiting().layer(Bare)),
    );
    report(
        "bulkhead_in_poll_ready",
        allocations(bulkhead_in_poll_ready().layer(Bare)),
    );
    report(
        "tower_concurrency_limit",
        allocations(ConcurrencyLimitLayer::new(LIMIT).layer(Bare)),
    );
    let (full, _held) = full_bulkhead();
    report("bulkhead_rejection/queue_full", allocations(full));
}

/// The request of every awaited call.
fn id(i: u64) -> u64 {
    i
}

/// Each call awaited in an `async fn` (`ready().await`, then
/// `call(..).await`) on a current-thread runtime, as users make it. The
/// response future's size and the allocations per awaited call are printed
/// first.
fn awaited_calls(c: &mut Criterion) {
    let rt = awaited::runtime();
    awaited::report(&rt, "awaited/bare", Bare, id, "");
    awaited::report(&rt, "awaited/bulkhead", bulkhead().layer(Bare), id, "");
    let limit = ConcurrencyLimitLayer::new(LIMIT).layer(Bare);
    awaited::report(&rt, "awaited/tower_concurrency_limit", limit, id, "");
    let mut g = c.benchmark_group("bulkhead_awaited");
    awaited::awaited(&mut g, &rt, "bare", Bare, id);
    awaited::awaited(&mut g, &rt, "bulkhead", bulkhead().layer(Bare), id);
    let limit = ConcurrencyLimitLayer::new(LIMIT).layer(Bare);
    awaited::awaited(&mut g, &rt, "tower_concurrency_limit", limit, id);
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = fast_path, rejection, contention, awaited_calls, adaptive
}

fn main() {
    print_allocations();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
