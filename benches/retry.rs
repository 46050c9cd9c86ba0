//! The retry layer's cost over a bare, always-ready service, the budget's
//! deposit and withdrawal, and the backoff computation.
//!
//! Calls are driven as in `benches/circuit_breaker.rs` (`poll_ready`, `call`
//! and one poll with a no-op waker), inside a current-thread runtime's context.
//! Bare and wrapped services are measured in one group, so the difference is
//! the layer's cost. See `BENCHMARKS.md` for the results.
//!
//! Before criterion runs, the binary prints the allocations per call of the
//! no-retry path, counted by a global allocator.

// Wall-clock timing of the threads in the contention benches needs std's clock.
#![allow(clippy::disallowed_types)]

#[path = "support/in_task.rs"]
mod in_task;

#[path = "support/awaited.rs"]
mod awaited;

#[path = "../tests/alloc/cases.rs"]
#[allow(dead_code)]
mod cases;

use std::future::{ready, Ready};
use std::hint::black_box;
use std::sync::Barrier;
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use cases::{allocs_per_call, drive, Bare, Boom};
use criterion::{criterion_group, Criterion};
use in_task::in_task;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use steadfast::retry::{Backoff, Jitter, RetryBudget, RetryConfig, RetryLayer};
use tower_layer::Layer;
use tower_service::Service;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

/// Always ready, answers `Ok(len)` for a `String` request: what a request
/// that costs something to clone looks like.
#[derive(Debug, Clone, Copy)]
struct BareString;

impl Service<String> for BareString {
    type Response = usize;
    type Error = Boom;
    type Future = Ready<Result<usize, Boom>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Boom>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: String) -> Self::Future {
        ready(Ok(req.len()))
    }
}

fn with_budget() -> RetryLayer {
    RetryLayer::new(RetryConfig::default())
}

fn without_budget() -> RetryLayer {
    RetryLayer::new(RetryConfig::builder().no_budget().build().expect("valid"))
}

/// The first attempt succeeds: what every healthy call pays.
fn no_retry(c: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("retry_no_retry");
    let mut bare = Bare;
    g.bench_function("bare", |b| {
        b.iter(|| black_box(drive(&mut bare, black_box(7))))
    });
    let mut svc = with_budget().layer(Bare);
    g.bench_function("retry", |b| {
        b.iter(|| black_box(drive(&mut svc, black_box(7))))
    });
    let mut svc = without_budget().layer(Bare);
    g.bench_function("retry_no_budget", |b| {
        b.iter(|| black_box(drive(&mut svc, black_box(7))))
    });
    // The same calls made inside a spawned task, as a server makes them:
    // the runtime check is cached for the task (see `src/runtime.rs`).
    g.bench_function("in_task/bare", |b| {
        b.iter_custom(|iters| in_task(&rt, iters, Bare))
    });
    g.bench_function("in_task/retry", |b| {
        b.iter_custom(|iters| in_task(&rt, iters, with_budget().layer(Bare)))
    });

    // A 32-byte String request: the layer clones it once per call.
    let request = "GET /api/v1/products/1234567890".to_owned();
    let mut bare = BareString;
    g.bench_function("string/bare", |b| {
        b.iter(|| black_box(drive(&mut bare, black_box(request.clone()))))
    });
    g.bench_function("string/clone_only", |b| {
        b.iter(|| black_box(black_box(&request).clone()))
    });
    let mut svc = with_budget().layer(BareString);
    g.bench_function("string/retry", |b| {
        b.iter(|| black_box(drive(&mut svc, black_box(request.clone()))))
    });
    g.finish();
}

/// `threads` threads each run `op` `iters` times; the slowest thread's time.
fn on_threads(threads: usize, iters: u64, op: &(impl Fn(u64) + Sync)) -> Duration {
    let start = Barrier::new(threads);
    thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let start = &start;
                scope.spawn(move || {
                    op(0);
                    start.wait();
                    let t = Instant::now();
                    for i in 0..iters {
                        op(black_box(i));
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

/// Deposit (every call) and withdraw + refund (a retry decided, then
/// abandoned, so the budget never runs dry), on one and two threads.
fn budget(c: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("retry_budget");
    let now = tokio::time::Instant::now();
    for threads in [1, 2] {
        let budget = RetryBudget::default();
        g.bench_function(format!("{threads}/deposit"), |b| {
            b.iter_custom(|n| on_threads(threads, n, &|_| budget.deposit()))
        });
        // A floor so high the budget never runs dry: every withdrawal is granted.
        let budget = RetryBudget::builder()
            .min_per_second(u32::MAX)
            .window(Duration::from_secs(60))
            .build()
            .expect("valid budget");
        g.bench_function(format!("{threads}/withdraw"), |b| {
            b.iter_custom(|n| {
                on_threads(threads, n, &|_| {
                    black_box(budget.try_withdraw_at(black_box(now)));
                })
            })
        });
        let budget = RetryBudget::default();
        g.bench_function(format!("{threads}/withdraw_refund"), |b| {
            b.iter_custom(|n| {
                on_threads(threads, n, &|_| {
                    if let Some(w) = budget.try_withdraw_at(black_box(now)) {
                        budget.refund(w);
                    }
                })
            })
        });
    }
    // A spent budget: every withdrawal is refused (an outage's steady state).
    let budget = RetryBudget::default();
    while budget.try_withdraw_at(now).is_some() {}
    g.bench_function("1/withdraw_refused", |b| {
        b.iter(|| black_box(budget.try_withdraw_at(black_box(now))).is_none())
    });
    g.finish();
}

/// One jittered delay, per backoff kind and jitter.
fn backoff(c: &mut Criterion) {
    let mut g = c.benchmark_group("retry_backoff");
    let base = Duration::from_millis(50);
    let cases = [
        ("exponential/none", Backoff::exponential(base, 2.0)),
        (
            "exponential/full",
            Backoff::exponential(base, 2.0).jitter(Jitter::Full),
        ),
        (
            "exponential/equal",
            Backoff::exponential(base, 2.0).jitter(Jitter::Equal),
        ),
        (
            "exponential/proportional",
            Backoff::exponential(base, 1.6).jitter(Jitter::Proportional(0.2)),
        ),
        (
            "exponential/decorrelated",
            Backoff::exponential(base, 2.0).jitter(Jitter::Decorrelated),
        ),
        (
            "linear/full",
            Backoff::linear(base, base).jitter(Jitter::Full),
        ),
        ("fixed/none", Backoff::fixed(base)),
    ];
    for (name, backoff) in cases {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut retry = 0u32;
        g.bench_function(name, |b| {
            b.iter(|| {
                retry = retry % 8 + 1;
                black_box(backoff.delay(black_box(retry), base, &mut rng))
            })
        });
    }
    g.finish();
}

/// Answers an `http::Request` at once, after reading its whole body the way
/// a client sends it (the bodies here are always ready).
#[cfg(feature = "http")]
#[derive(Debug, Clone, Copy)]
struct DrainBody;

#[cfg(feature = "http")]
impl<B> Service<http::Request<B>> for DrainBody
where
    B: http_body::Body + Unpin,
{
    type Response = http::Response<()>;
    type Error = Boom;
    type Future = Ready<Result<http::Response<()>, Boom>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Boom>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let mut body = req.into_body();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        while let Poll::Ready(Some(frame)) = std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
            if frame.is_err() {
                break;
            }
        }
        ready(Ok(http::Response::new(())))
    }
}

/// `http::Request` calls through `RetryLayer::http` that need no retry: a
/// GET without a body, and a POST with 1 KiB, whose body is kept for a
/// replay while it is sent.
#[cfg(feature = "http")]
fn http_no_retry(c: &mut Criterion) {
    use bytes::Bytes;
    use http_body_util::Full;

    let rt = runtime();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("retry_http_no_retry");
    let payload = Bytes::from(vec![7u8; 1024]);
    let get = || {
        http::Request::get("http://products/api/v1/products/1")
            .body(Full::new(Bytes::new()))
            .expect("a request")
    };
    let post = || {
        http::Request::post("http://products/api/v1/orders")
            .header("content-type", "application/json")
            .body(Full::new(payload.clone()))
            .expect("a request")
    };
    let mut bare = DrainBody;
    g.bench_function("get/bare", |b| {
        b.iter(|| black_box(drive(&mut bare, get())))
    });
    g.bench_function("post_1k/bare", |b| {
        b.iter(|| black_box(drive(&mut bare, post())))
    });
    let mut svc = RetryLayer::http(RetryConfig::default()).layer(DrainBody);
    g.bench_function("get/retry", |b| {
        b.iter(|| black_box(drive(&mut svc, get())))
    });
    g.bench_function("post_1k/retry", |b| {
        b.iter(|| black_box(drive(&mut svc, post())))
    });
    g.finish();
}

/// What tokio offers to find out, on each call, whether a timer is there
/// (see `src/runtime.rs`): the candidates for the runtime check.
fn runtime_check(c: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("runtime_check");
    // An `Arc` clone and drop; does not look for the timer.
    g.bench_function("handle_try_current", |b| {
        b.iter(|| black_box(tokio::runtime::Handle::try_current().is_ok()))
    });
    // What the retry layer does: make a `Sleep` (which panics without a
    // timer) and drop it unpolled.
    let epoch = tokio::time::Instant::now();
    g.bench_function("sleep_until_dropped", |b| {
        b.iter(|| drop(black_box(tokio::time::sleep_until(black_box(epoch)))))
    });
    // A thread-local read, but `None` outside a task: no answer here.
    g.bench_function("task_try_id", |b| {
        b.iter(|| black_box(tokio::task::try_id()))
    });
    g.finish();
}

#[cfg(not(feature = "http"))]
fn http_no_retry(_: &mut Criterion) {}

/// Prints the allocations per call of the no-retry path.
fn print_allocations() {
    let rt = runtime();
    let _guard = rt.enter();
    let mut bare = Bare;
    let per_call = allocs_per_call(10_000, |i| {
        let _ = black_box(drive(&mut bare, i));
    });
    println!("allocations per call: bare = {per_call}");
    let mut svc = with_budget().layer(Bare);
    let per_call = allocs_per_call(10_000, |i| {
        let _ = black_box(drive(&mut svc, i));
    });
    println!("allocations per call: retry (no retry needed) = {per_call}");
    let mut svc = without_budget().layer(Bare);
    let per_call = allocs_per_call(10_000, |i| {
        let _ = black_box(drive(&mut svc, i));
    });
    println!("allocations per call: retry_no_budget (no retry needed) = {per_call}");
}

/// The request of every awaited call.
fn id(i: u64) -> u64 {
    i
}

/// Each call awaited in an `async fn` (`ready().await`, then
/// `call(..).await`) on a current-thread runtime, as users make it; the
/// first attempt succeeds. The response future's size and the allocations
/// per awaited call are printed first.
fn awaited_calls(c: &mut Criterion) {
    let rt = awaited::runtime();
    awaited::report(&rt, "awaited/bare", Bare, id, "");
    awaited::report(&rt, "awaited/retry", with_budget().layer(Bare), id, "");
    awaited::report(
        &rt,
        "awaited/retry_no_budget",
        without_budget().layer(Bare),
        id,
        "",
    );
    let mut g = c.benchmark_group("retry_awaited");
    awaited::awaited(&mut g, &rt, "bare", Bare, id);
    awaited::awaited(&mut g, &rt, "retry", with_budget().layer(Bare), id);
    awaited::awaited(
        &mut g,
        &rt,
        "retry_no_budget",
        without_budget().layer(Bare),
        id,
    );
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
    targets = no_retry, http_no_retry, budget, backoff, runtime_check, awaited_calls
}

fn main() {
    print_allocations();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
