//! The per-attempt timeout's cost: steadfast's `Timeout` against tower's own
//! `tower::timeout::Timeout` and a bare service, in one group.
//!
//! Two inner futures are measured: one ready at once (the timer is created
//! but never polled) and one pending on its first poll and ready on the
//! second (the timer is polled, so registered with tokio's timer driver, and
//! deregistered when the future is dropped). Calls are driven as in
//! `benches/circuit_breaker.rs` — `poll_ready`, `call`, then one or two polls
//! with a no-op waker — inside a current-thread runtime's context with time
//! enabled, without the runtime in the loop.
//!
//! Before criterion runs, the binary prints the allocations per call of each
//! case, counted by a global allocator.

#[path = "support/in_task.rs"]
mod in_task;

#[path = "support/awaited.rs"]
mod awaited;

#[path = "../tests/alloc/cases.rs"]
#[allow(dead_code)]
mod cases;

#[path = "../tests/timeout/pending_once.rs"]
mod pending_once;

use std::hint::black_box;
use std::time::Duration;

use cases::{allocs_per_call, drive, Bare};
use criterion::{criterion_group, Criterion};
use in_task::in_task;
use pending_once::{drive_twice, PendingOnce};
use steadfast::timeout::TimeoutLayer;
use tower_layer::Layer;

/// Long enough never to fire while measured.
const TIMEOUT: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

fn steadfast_timeout<S>(inner: S) -> steadfast::timeout::Timeout<S> {
    TimeoutLayer::new(TIMEOUT).expect("valid").layer(inner)
}

fn tower_timeout<S>(inner: S) -> tower::timeout::Timeout<S> {
    tower::timeout::Timeout::new(inner, TIMEOUT)
}

fn timeout(c: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("timeout");

    // Ready at once.
    let mut bare = Bare;
    g.bench_function("ready/bare", |b| {
        b.iter(|| black_box(drive(&mut bare, black_box(7))))
    });
    // The same calls made inside a spawned task, as a server makes them:
    // the runtime check is cached for the task (see `src/runtime.rs`).
    g.bench_function("in_task/ready/bare", |b| {
        b.iter_custom(|iters| in_task(&rt, iters, Bare))
    });
    g.bench_function("in_task/ready/steadfast", |b| {
        b.iter_custom(|iters| in_task(&rt, iters, steadfast_timeout(Bare)))
    });
    g.bench_function("in_task/ready/tower", |b| {
        b.iter_custom(|iters| in_task(&rt, iters, tower_timeout(Bare)))
    });
    let mut svc = steadfast_timeout(Bare);
    g.bench_function("ready/steadfast", |b| {
        b.iter(|| black_box(drive(&mut svc, black_box(7))))
    });
    let mut svc = tower_timeout(Bare);
    g.bench_function("ready/tower", |b| {
        b.iter(|| black_box(drive(&mut svc, black_box(7))))
    });

    // Pending on the first poll, ready on the second.
    let mut bare = PendingOnce;
    g.bench_function("pending_once/bare", |b| {
        b.iter(|| black_box(drive_twice(&mut bare, black_box(7))))
    });
    let mut svc = steadfast_timeout(PendingOnce);
    g.bench_function("pending_once/steadfast", |b| {
        b.iter(|| black_box(drive_twice(&mut svc, black_box(7))))
    });
    let mut svc = tower_timeout(PendingOnce);
    g.bench_function("pending_once/tower", |b| {
        b.iter(|| black_box(drive_twice(&mut svc, black_box(7))))
    });
    g.finish();
}

/// Prints the allocations per call of every case.
fn print_allocations() {
    const CALLS: u64 = 10_000;
    let rt = runtime();
    let _guard = rt.enter();
    let report = |name: &str, per_call: f64| println!("allocations per call: {name} = {per_call}");

    let mut svc = Bare;
    report(
        "ready/bare",
        allocs_per_call(CALLS, |i| {
            let _ = black_box(drive(&mut svc, i));
        }),
    );
    let mut svc = steadfast_timeout(Bare);
    report(
        "ready/steadfast",
        allocs_per_call(CALLS, |i| {
            let _ = black_box(drive(&mut svc, i));
        }),
    );
    let mut svc = tower_timeout(Bare);
    report(
        "ready/tower",
        allocs_per_call(CALLS, |i| {
            let _ = black_box(drive(&mut svc, i));
        }),
    );
    let mut svc = PendingOnce;
    report(
        "pending_once/bare",
        allocs_per_call(CALLS, |i| {
            let _ = black_box(drive_twice(&mut svc, i));
        }),
    );
    let mut svc = steadfast_timeout(PendingOnce);
    report(
        "pending_once/steadfast",
        allocs_per_call(CALLS, |i| {
            let _ = black_box(drive_twice(&mut svc, i));
        }),
    );
    let mut svc = tower_timeout(PendingOnce);
    report(
        "pending_once/tower",
        allocs_per_call(CALLS, |i| {
            let _ = black_box(drive_twice(&mut svc, i));
        }),
    );
}

/// The request of every awaited call.
fn id(i: u64) -> u64 {
    i
}

/// Each call awaited in an `async fn` (`ready().await`, then
/// `call(..).await`) on a current-thread runtime, as users make it: the
/// response future is moved, not polled in place, so its size costs
/// copies. The response future's size and the allocations per awaited call
/// are printed first.
fn awaited_calls(c: &mut Criterion) {
    let rt = awaited::runtime();
    awaited::report(&rt, "awaited/bare", Bare, id, "");
    awaited::report(&rt, "awaited/steadfast", steadfast_timeout(Bare), id, "");
    awaited::report(&rt, "awaited/tower", tower_timeout(Bare), id, "");
    let mut g = c.benchmark_group("timeout_awaited");
    awaited::awaited(&mut g, &rt, "bare", Bare, id);
    awaited::awaited(&mut g, &rt, "steadfast", steadfast_timeout(Bare), id);
    awaited::awaited(&mut g, &rt, "tower", tower_timeout(Bare), id);
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
    targets = timeout, awaited_calls
}

fn main() {
    print_allocations();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
