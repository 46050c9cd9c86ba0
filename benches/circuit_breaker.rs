//! The circuit breaker's cost over a bare, always-ready service.
//!
//! Every call is `poll_ready` + `call` + one poll of the returned future with
//! a no-op waker, inside a current-thread runtime's context (the breaker reads
//! tokio's clock in some modes) but without a runtime in the loop. Bare and
//! wrapped services are driven the same way and measured in one group, so
//! the difference is the layer's cost. See `BENCHMARKS.md` for the results.
//!
//! Before criterion runs, the binary prints the allocations per call of each
//! case, counted by a global allocator.

// Wall-clock timing of the threads in the contention benches needs std's clock.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "../tests/alloc/cases.rs"]
mod cases;

use std::hint::black_box;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use cases::{allocs_per_call, drive, Bare, Failing, Mode};
use criterion::{criterion_group, BenchmarkGroup, Criterion};
use tower_layer::Layer;
use tower_service::Service;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
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

fn closed_success(c: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("closed_success");
    bench_calls(&mut g, "bare", Bare);
    for mode in Mode::ALL {
        bench_calls(&mut g, mode.name(), mode.closed().layer(Bare));
    }
    g.finish();
}

fn closed_failure(c: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("closed_failure");
    bench_calls(&mut g, "bare", Failing::always());
    bench_calls(&mut g, "bare_99pct", Failing::all_but_one_in(100));
    for mode in Mode::ALL {
        bench_calls(
            &mut g,
            mode.name(),
            mode.never_trips().layer(mode.failing()),
        );
    }
    g.finish();
}

fn open_rejection(c: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("open_rejection");
    bench_calls(&mut g, "bare", Bare);
    for mode in Mode::ALL {
        let name = format!("forced/{}", mode.name());
        bench_calls(&mut g, &name, mode.forced_open().layer(Bare));
        let name = format!("tripped/{}", mode.name());
        bench_calls(&mut g, &name, mode.tripped().layer(Bare));
    }
    g.finish();
}

/// Two threads, each calling its own clone of `svc` `iters` times; returns
/// the time of the slower thread, i.e. the time per call per thread.
fn two_threads<S>(rt: &tokio::runtime::Runtime, svc: &S, iters: u64) -> Duration
where
    S: Service<u64> + Clone + Send,
{
    let start = Barrier::new(2);
    thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let mut svc = svc.clone();
                let (start, handle) = (&start, rt.handle());
                scope.spawn(move || {
                    let _guard = handle.enter();
                    // Warm up thread-locals (the breaker's stripe slot) outside the clock.
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
            .expect("two threads")
    })
}

fn contention(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("two_threads_closed_success");
    g.bench_function("bare", |b| b.iter_custom(|n| two_threads(&rt, &Bare, n)));
    for mode in [Mode::Default, Mode::Consecutive, Mode::CountWindow] {
        // Both threads' services come from one layer: one shared breaker.
        let svc = mode.closed().layer(Bare);
        g.bench_function(mode.name(), |b| {
            b.iter_custom(|n| two_threads(&rt, &svc, n))
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
    report("bare/success", allocations(Bare));
    report("bare/failure", allocations(Failing::always()));
    for mode in Mode::ALL {
        let name = mode.name();
        let per_call = allocations(mode.closed().layer(Bare));
        report(&format!("closed_success/{name}"), per_call);
        let per_call = allocations(mode.never_trips().layer(mode.failing()));
        report(&format!("closed_failure/{name}"), per_call);
        let per_call = allocations(mode.forced_open().layer(Bare));
        report(&format!("open_rejection/forced/{name}"), per_call);
        let per_call = allocations(mode.tripped().layer(Bare));
        report(&format!("open_rejection/tripped/{name}"), per_call);
    }
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
    targets = closed_success, closed_failure, open_rejection, contention
}

fn main() {
    print_allocations();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
