//! The hedge layer's cost when no hedge is sent: steadfast's `Hedge`
//! (fixed delay, and the default p95 delay with its budget) against a bare
//! service and steadfast's `Retry`, which pays the same request clone.
//!
//! Two inner futures, as in `benches/timeout.rs`: one ready at once (no
//! timer is made: the first attempt is polled first and answers), and one
//! pending on its first poll and ready on the second (the first poll reads
//! the clock and registers the hedge timer, which is dropped unfired).
//!
//! Before criterion runs, the binary prints the allocations per call of
//! each case, and the response future's size.

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
use steadfast::hedge::{HedgeConfig, HedgeLayer};
use steadfast::retry::{RetryConfig, RetryLayer};
use tower_layer::Layer;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

fn fixed<S>(
    inner: S,
) -> steadfast::hedge::Hedge<S, steadfast::retry::RetryFailures, steadfast::retry::CloneRequest> {
    let config = HedgeConfig::builder()
        .delay(Duration::from_secs(30))
        .build()
        .expect("valid");
    HedgeLayer::new(config).layer(inner)
}

fn p95<S>(
    inner: S,
) -> steadfast::hedge::Hedge<S, steadfast::retry::RetryFailures, steadfast::retry::CloneRequest> {
    HedgeLayer::new(HedgeConfig::default()).layer(inner)
}

fn retry<S>(
    inner: S,
) -> steadfast::retry::Retry<S, steadfast::retry::RetryFailures, steadfast::retry::CloneRequest> {
    RetryLayer::new(RetryConfig::default()).layer(inner)
}

fn hedge(c: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("hedge");
    g.bench_function("in_task/ready/bare", |b| {
        b.iter_custom(|iters| in_task(&rt, iters, Bare))
    });
    g.bench_function("in_task/ready/hedge_fixed", |b| {
        b.iter_custom(|iters| in_task(&rt, iters, fixed(Bare)))
    });
    g.bench_function("in_task/ready/hedge_p95", |b| {
        b.iter_custom(|iters| in_task(&rt, iters, p95(Bare)))
    });
    g.bench_function("in_task/ready/retry", |b| {
        b.iter_custom(|iters| in_task(&rt, iters, retry(Bare)))
    });

    let mut bare = PendingOnce;
    g.bench_function("pending_once/bare", |b| {
        b.iter(|| black_box(drive_twice(&mut bare, black_box(7))))
    });
    let mut svc = fixed(PendingOnce);
    g.bench_function("pending_once/hedge_fixed", |b| {
        b.iter(|| black_box(drive_twice(&mut svc, black_box(7))))
    });
    let mut svc = p95(PendingOnce);
    g.bench_function("pending_once/hedge_p95", |b| {
        b.iter(|| black_box(drive_twice(&mut svc, black_box(7))))
    });
    let mut svc = retry(PendingOnce);
    g.bench_function("pending_once/retry", |b| {
        b.iter(|| black_box(drive_twice(&mut svc, black_box(7))))
    });
    g.finish();
}

/// Prints the allocations per call of every case.
fn print_allocations() {
    let rt = runtime();
    let _guard = rt.enter();
    report("ready/hedge_fixed", fixed(Bare), drive);
    report("ready/hedge_p95", p95(Bare), drive);
    report("pending_once/hedge_fixed", fixed(PendingOnce), drive_twice);
    report("pending_once/hedge_p95", p95(PendingOnce), drive_twice);
}

/// Prints the allocations per call of `svc` driven by `driver`.
fn report<S, T>(name: &str, mut svc: S, driver: fn(&mut S, u64) -> T) {
    let per_call = allocs_per_call(10_000, |i| {
        black_box(driver(&mut svc, i));
    });
    println!("allocations per call: {name} = {per_call}");
}

fn id(i: u64) -> u64 {
    i
}

/// Each call awaited as users make it; the response future's size and the
/// allocations per awaited call are printed first.
fn awaited_calls(c: &mut Criterion) {
    let rt = awaited::runtime();
    awaited::report(&rt, "awaited/bare", Bare, id, "");
    awaited::report(&rt, "awaited/hedge_fixed", fixed(Bare), id, "");
    awaited::report(&rt, "awaited/retry", retry(Bare), id, "");
    let mut g = c.benchmark_group("hedge_awaited");
    awaited::awaited(&mut g, &rt, "bare", Bare, id);
    awaited::awaited(&mut g, &rt, "hedge_fixed", fixed(Bare), id);
    awaited::awaited(&mut g, &rt, "retry", retry(Bare), id);
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = hedge, awaited_calls
}

fn main() {
    print_allocations();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
