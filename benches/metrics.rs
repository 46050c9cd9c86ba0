//! What metrics cost: `MetricsLayer` against a bare service, the preset
//! with and without its metrics piece, one histogram record on one thread
//! and on two threads sharing one histogram, and each layer with its
//! telemetry on (a `tracing` subscriber that takes every event at every
//! level, and a listener) against off (no subscriber, no listener).
//!
//! Calls are made the way users make them: each awaited in an `async fn`
//! (`ready().await`, then `call(..).await`) on a current-thread runtime.
//! Before criterion runs, the binary prints each case's response future
//! size and allocations per call, counted by a global allocator.

#[path = "../tests/alloc/cases.rs"]
#[allow(dead_code)]
mod cases;
#[path = "support/awaited.rs"]
mod support;

use std::hint::black_box;
use std::sync::Barrier;
use std::time::Duration;

use bytes::Bytes;
use cases::{allocs_per_call, Bare};
use criterion::{criterion_group, Criterion};
use http::{Request, Response};
use http_body_util::Empty;
use steadfast::bulkhead::BulkheadLayer;
use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use steadfast::metrics::{Histogram, MetricsLayer};
use steadfast::retry::{RetryConfig, RetryLayer};
use steadfast::stack::ResilienceLayer;
use steadfast::timeout::TimeoutLayer;
use support::{awaited, report, runtime};
use tower::{Layer, Service};

/// An HTTP backend that answers 200 at once.
#[derive(Clone, Copy)]
struct Backend;

impl Service<Request<steadfast::retry::body::ReplayBody<Empty<Bytes>>>> for Backend {
    type Response = Response<()>;
    type Error = steadfast::BoxError;
    type Future = std::future::Ready<Result<Response<()>, steadfast::BoxError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(
        &mut self,
        _: Request<steadfast::retry::body::ReplayBody<Empty<Bytes>>>,
    ) -> Self::Future {
        std::future::ready(Ok(Response::new(())))
    }
}

fn get() -> Request<Empty<Bytes>> {
    Request::get("http://backend/items")
        .body(Empty::new())
        .unwrap()
}

/// `MetricsLayer` over the bare `u64` service, and the bare service.
macro_rules! layer_cases {
    ($with:ident) => {{
        $with!("bare", Bare);
        $with!("metrics_layer", MetricsLayer::new("bench").0.layer(Bare));
    }};
}

/// The HTTP preset without and with its metrics piece.
macro_rules! preset_cases {
    ($with:ident) => {{
        $with!(
            "preset_http",
            ResilienceLayer::http().build().unwrap().0.layer(Backend)
        );
        $with!(
            "preset_http_metrics",
            ResilienceLayer::http()
                .metrics("bench")
                .build()
                .unwrap()
                .0
                .layer(Backend)
        );
    }};
}

/// The `u64` services' request for call `i`.
fn number(i: u64) -> u64 {
    black_box(i)
}

/// The HTTP services' request (a GET built per call).
fn http_get(_: u64) -> Request<Empty<Bytes>> {
    get()
}

fn layer(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("metrics");
    macro_rules! bench {
        ($name:expr, $svc:expr) => {
            awaited(&mut g, &rt, $name, $svc, number)
        };
    }
    layer_cases!(bench);
    macro_rules! bench_http {
        ($name:expr, $svc:expr) => {
            awaited(&mut g, &rt, $name, $svc, http_get)
        };
    }
    preset_cases!(bench_http);
    g.finish();
}

fn histogram(c: &mut Criterion) {
    let mut g = c.benchmark_group("histogram");
    let h = Histogram::new();
    g.bench_function("record/1_thread", |b| {
        let mut v = 1_000u64;
        b.iter(|| {
            v = v
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            h.record_nanos(black_box(v >> 30));
        })
    });
    // Two threads record into one histogram at once; the time is per record
    // on each thread.
    g.bench_function("record/2_threads_one_histogram", |b| {
        b.iter_custom(|iters| {
            let barrier = Barrier::new(2);
            std::thread::scope(|s| {
                let run = || {
                    barrier.wait();
                    #[allow(clippy::disallowed_types)]
                    let start = std::time::Instant::now();
                    let mut v = 1_000u64;
                    for _ in 0..iters {
                        v = v
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        h.record_nanos(black_box(v >> 30));
                    }
                    start.elapsed()
                };
                let other = s.spawn(run);
                let mine = run();
                mine.max(other.join().unwrap())
            })
        })
    });
    g.finish();
}

/// A `tracing` subscriber that is interested in everything and drops each
/// event after visiting its fields: the cost of an enabled event without
/// the cost of formatting or writing it.
struct Everything;

struct Fields(usize);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {
        self.0 += 1;
    }
}

impl tracing::Subscriber for Everything {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(0);
        event.record(&mut fields);
        black_box(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A breaker built from `b`, with a listener on every hook when `on`.
fn breaker(on: bool, b: steadfast::circuit_breaker::CircuitBreakerBuilder) -> CircuitBreakerLayer {
    let b = if on {
        b.on_transition(|t| {
            black_box(t);
        })
        .on_rejection(|r| {
            black_box(r);
        })
    } else {
        b
    };
    CircuitBreakerLayer::new(b.build().unwrap())
}

/// Each layer with its telemetry `off` (no subscriber, no listener) and
/// `on` (the [`Everything`] subscriber as the thread's default, and a
/// listener on every hook the layer has). On a happy path no event fires;
/// a rejection fires one event and calls the listener.
fn telemetry(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("telemetry");
    for on in [false, true] {
        let state = if on { "on" } else { "off" };
        let _default = on.then(|| tracing::subscriber::set_default(Everything));
        macro_rules! bench {
            ($name:expr, $svc:expr) => {
                awaited(&mut g, &rt, &format!("{}/{state}", $name), $svc, number)
            };
        }
        bench!(
            "breaker_closed",
            breaker(on, CircuitBreakerConfig::builder()).layer(Bare)
        );
        let open = breaker(on, CircuitBreakerConfig::builder());
        open.handle().force_open();
        bench!("breaker_open_rejects", open.layer(Bare));
        let bulkhead = if on {
            BulkheadLayer::builder(64).on_rejection(|r| {
                black_box(r);
            })
        } else {
            BulkheadLayer::builder(64)
        };
        bench!("bulkhead", bulkhead.build().unwrap().layer(Bare));
        let retry = RetryConfig::builder();
        let retry = if on {
            retry
                .on_retry(|r| {
                    black_box(r);
                })
                .on_give_up(|r| {
                    black_box(r);
                })
        } else {
            retry
        };
        bench!("retry", RetryLayer::new(retry.build().unwrap()).layer(Bare));
        bench!(
            "timeout",
            TimeoutLayer::new(Duration::from_secs(10))
                .unwrap()
                .layer(Bare)
        );
    }
    g.finish();
}

/// Prints each case's response future size and allocations per call.
fn print_sizes_and_allocations() {
    let rt = runtime();
    macro_rules! report {
        ($name:expr, $svc:expr) => {
            report(&rt, $name, $svc, number, "")
        };
    }
    layer_cases!(report);
    macro_rules! report_http {
        ($name:expr, $svc:expr) => {
            report(&rt, $name, $svc, http_get, " (the request itself makes 2)")
        };
    }
    preset_cases!(report_http);
    let h = Histogram::new();
    let per_record = allocs_per_call(10_000, |i| h.record_nanos(i * 1_000));
    println!("{:<22} {per_record} allocations per record", "histogram");
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
    targets = layer, histogram, telemetry
}

fn main() {
    print_sizes_and_allocations();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
