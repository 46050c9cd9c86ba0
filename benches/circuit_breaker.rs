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
#![allow(clippy::disallowed_types)]

#[path = "../tests/alloc/cases.rs"]
mod cases;

#[path = "support/awaited.rs"]
mod awaited;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use cases::{allocs_per_call, drive, Bare, Failing, Mode};
use criterion::{criterion_group, BenchmarkGroup, Criterion};
use steadfast::circuit_breaker::{
    CircuitBreakerConfig, CircuitBreakerLayer, KeyedCircuitBreakerLayer, Window,
};
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
    // The default time window has 1 s buckets; a bucket stops counting once
    // it holds about a million calls, which a bench loop reaches within
    // 100 ms, so most of the `time_window` case runs on full buckets. With
    // 1 ms buckets no bucket fills up and every call pays for its increment.
    let cfg = CircuitBreakerConfig::builder()
        .without_consecutive_failures()
        .window(Window::time(Duration::from_millis(10), 10))
        .build()
        .expect("valid config");
    bench_calls(
        &mut g,
        "time_window_1ms_buckets",
        CircuitBreakerLayer::new(cfg).layer(Bare),
    );
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

/// A keyed breaker on the closed path: the key's lookup (a hash and a shard
/// lock) plus its breaker. `1_key` calls one key, `64_keys` cycles through 64;
/// each with the default config (time window) and with consecutive failures
/// only.
fn keyed_closed_success(c: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("keyed_closed_success");
    bench_calls(&mut g, "bare", Bare);
    let configs = [
        ("time_window", CircuitBreakerConfig::default()),
        (
            "consecutive",
            CircuitBreakerConfig::builder()
                .without_failure_rate()
                .build()
                .expect("valid config"),
        ),
    ];
    for (name, cfg) in configs {
        for keys in [1_u64, 64] {
            let layer = KeyedCircuitBreakerLayer::builder(move |req: &u64| req % keys)
                .config(cfg.clone())
                .build()
                .expect("valid config");
            let id = format!("{name}/{keys}_key{}", if keys == 1 { "" } else { "s" });
            let mut svc = layer.layer(Bare);
            let mut i = 0_u64;
            g.bench_function(id, |b| {
                b.iter(|| {
                    i = i.wrapping_add(1);
                    black_box(drive(&mut svc, black_box(i)))
                });
            });
        }
    }
    g.finish();
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
                    // Warm up thread-locals (the breaker's stripe slot) off the clock.
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

/// One and two threads on one shared breaker (every service comes from one
/// layer), with the same loop, so the difference is contention.
fn contention(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("threads_closed_success");
    for threads in [1, 2] {
        g.bench_function(format!("{threads}/bare"), |b| {
            b.iter_custom(|n| on_threads(&rt, threads, &Bare, n))
        });
        for mode in [Mode::Default, Mode::Consecutive, Mode::CountWindow] {
            let svc = mode.closed().layer(Bare);
            g.bench_function(format!("{threads}/{}", mode.name()), |b| {
                b.iter_custom(|n| on_threads(&rt, threads, &svc, n))
            });
        }
    }
    g.finish();
}

/// What the building blocks of the hot path cost on this machine.
fn reference(c: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("reference");
    g.bench_function("tokio_instant_now", |b| {
        b.iter(|| black_box(tokio::time::Instant::now()))
    });
    let arc = Arc::new(0u64);
    g.bench_function("arc_clone_drop", |b| {
        b.iter(|| drop(black_box(Arc::clone(black_box(&arc)))))
    });
    // The size of a boxed `CircuitOpen`, through the counting allocator.
    g.bench_function("box_alloc_free_24_bytes", |b| {
        b.iter(|| drop(black_box(Box::new(black_box([0u64; 3])))))
    });
    let counter = AtomicU64::new(0);
    g.bench_function("atomic_fetch_add", |b| {
        b.iter(|| black_box(&counter).fetch_add(1, Ordering::Relaxed))
    });
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

/// The request of every awaited call.
fn id(i: u64) -> u64 {
    i
}

/// Each call awaited in an `async fn` (`ready().await`, then
/// `call(..).await`) on a current-thread runtime, as users make it: the
/// response future is moved, not polled in place. The response future's
/// size and the allocations per awaited call are printed first.
fn awaited_calls(c: &mut Criterion) {
    let rt = awaited::runtime();
    awaited::report(&rt, "awaited/bare", Bare, id, "");
    for mode in Mode::ALL {
        let name = mode.name();
        awaited::report(
            &rt,
            &format!("awaited/closed/{name}"),
            mode.closed().layer(Bare),
            id,
            "",
        );
        awaited::report(
            &rt,
            &format!("awaited/tripped/{name}"),
            mode.tripped().layer(Bare),
            id,
            "",
        );
    }
    let mut g = c.benchmark_group("awaited");
    awaited::awaited(&mut g, &rt, "bare", Bare, id);
    for mode in Mode::ALL {
        let name = mode.name();
        awaited::awaited(
            &mut g,
            &rt,
            &format!("closed/{name}"),
            mode.closed().layer(Bare),
            id,
        );
        awaited::awaited(
            &mut g,
            &rt,
            &format!("tripped/{name}"),
            mode.tripped().layer(Bare),
            id,
        );
    }
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
    targets = closed_success, closed_failure, open_rejection, keyed_closed_success, contention, reference, awaited_calls
}

fn main() {
    print_allocations();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
