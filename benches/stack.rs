//! The preset stack's cost on the happy path, the way users call it: each
//! call awaited in an `async fn` (`ready().await`, then `call(..).await`) on
//! a current-thread runtime, against the bare service and tower's own
//! Retry + ConcurrencyLimit + Timeout stack, in one group.
//!
//! Requests are `http::Request<Empty<Bytes>>` GETs; the backend answers
//! `200` at once with a named future. Before criterion runs, the binary
//! prints each response future's size and the allocations per call.
#![cfg(feature = "http")]

#[path = "../tests/alloc/cases.rs"]
#[allow(dead_code)]
mod cases;

use std::future::{ready, Ready};
use std::hint::black_box;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use cases::allocs_per_call;
use criterion::measurement::WallTime;
use criterion::{criterion_group, BenchmarkGroup, Criterion};
use http::{Request, Response};
use http_body_util::Empty;
use steadfast::stack::ResilienceLayer;
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt};

/// The backend: always ready, answers `200` at once.
#[derive(Clone, Copy)]
struct Backend;

impl<B> Service<Request<B>> for Backend {
    type Response = Response<()>;
    type Error = std::convert::Infallible;
    type Future = Ready<Result<Response<()>, std::convert::Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<B>) -> Self::Future {
        ready(Ok(Response::new(())))
    }
}

fn get() -> Request<Empty<Bytes>> {
    Request::get("http://products/api/1")
        .body(Empty::new())
        .unwrap()
}

/// tower's retry policy for the comparison: never retries, clones a GET.
#[derive(Clone, Copy)]
struct NoRetry;

impl<Res, E> tower::retry::Policy<Request<Empty<Bytes>>, Res, E> for NoRetry {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Request<Empty<Bytes>>,
        _result: &mut Result<Res, E>,
    ) -> Option<Self::Future> {
        None
    }

    fn clone_request(&mut self, req: &Request<Empty<Bytes>>) -> Option<Request<Empty<Bytes>>> {
        let mut clone = Request::new(Empty::new());
        *clone.method_mut() = req.method().clone();
        *clone.uri_mut() = req.uri().clone();
        *clone.headers_mut() = req.headers().clone();
        Some(clone)
    }
}

/// One call, as users make it.
async fn one<S>(svc: &mut S) -> Result<S::Response, S::Error>
where
    S: Service<Request<Empty<Bytes>>>,
{
    svc.ready().await?.call(get()).await
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

macro_rules! cases {
    ($with:ident) => {{
        $with!("bare", Backend);
        $with!("tower_retry_limit_timeout", {
            tower::ServiceBuilder::new()
                .retry(NoRetry)
                .concurrency_limit(1024)
                .timeout(Duration::from_secs(10))
                .service(Backend)
        });
        $with!("preset_http", {
            let (layer, _) = ResilienceLayer::http().build().unwrap();
            layer.layer(Backend)
        });
        $with!("preset_http_bulkhead", {
            let (layer, _) = ResilienceLayer::http().bulkhead(1024).build().unwrap();
            layer.layer(Backend)
        });
        $with!("x_no_deadline", {
            let (layer, _) = ResilienceLayer::http().no_deadline().build().unwrap();
            layer.layer(Backend)
        });
        $with!("x_only_deadline", {
            let (layer, _) = ResilienceLayer::http()
                .no_retry()
                .no_circuit_breaker()
                .no_attempt_timeout()
                .no_idempotency_key()
                .build()
                .unwrap();
            layer.layer(Backend)
        });
        $with!("x_only_retry", {
            let (layer, _) = ResilienceLayer::http()
                .no_deadline()
                .no_circuit_breaker()
                .no_attempt_timeout()
                .no_idempotency_key()
                .build()
                .unwrap();
            layer.layer(Backend)
        });
        $with!("x_only_breaker", {
            let (layer, _) = ResilienceLayer::http()
                .no_deadline()
                .no_retry()
                .no_attempt_timeout()
                .no_idempotency_key()
                .build()
                .unwrap();
            layer.layer(Backend)
        });
        $with!("x_only_timeout", {
            let (layer, _) = ResilienceLayer::http()
                .no_deadline()
                .no_retry()
                .no_circuit_breaker()
                .no_idempotency_key()
                .build()
                .unwrap();
            layer.layer(Backend)
        });
        $with!("x_nothing", {
            let (layer, _) = ResilienceLayer::http()
                .no_deadline()
                .no_retry()
                .no_circuit_breaker()
                .no_attempt_timeout()
                .no_idempotency_key()
                .build()
                .unwrap();
            layer.layer(Backend)
        });
        $with!("preset_http_no_retry", {
            let (layer, _) = ResilienceLayer::http().no_retry().build().unwrap();
            layer.layer(Backend)
        });
    }};
}

fn stack(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("stack");
    macro_rules! bench {
        ($name:expr, $svc:expr) => {
            bench_case(&mut g, &rt, $name, $svc)
        };
    }
    cases!(bench);
    g.finish();
}

// The cases run through these generic functions, not through code each
// macro expansion repeats: every preset case has the same service type, so
// each function is compiled once for it rather than once per case (with
// every piece's `call` inlined, eleven copies of the preset's call took the
// release build of this bench past ten minutes).

/// Times `svc`, each call awaited in an `async fn`.
fn bench_case<S>(g: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, name: &str, svc: S)
where
    S: Service<Request<Empty<Bytes>>> + Clone,
{
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut svc = svc.clone();
            rt.block_on(async {
                #[allow(clippy::disallowed_types)]
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    let _ = black_box(one(&mut svc).await);
                }
                start.elapsed()
            })
        })
    });
}

/// Prints `svc`'s response future size and allocations per call.
fn report_case<S>(rt: &Runtime, name: &str, mut svc: S)
where
    S: Service<Request<Empty<Bytes>>>,
{
    let size = {
        let _guard = rt.enter();
        let ready = rt.block_on(ServiceExt::<Request<Empty<Bytes>>>::ready(&mut svc));
        assert!(ready.is_ok(), "bench services are ready");
        std::mem::size_of_val(&svc.call(get()))
    };
    let per_call = allocs_per_call(10_000, |_| {
        let _ = black_box(rt.block_on(one(&mut svc)));
    });
    println!(
        "{name:<28} response future {size:>4} B, {per_call} allocations per call (the request itself makes 2)"
    );
}

/// Makes `n` calls through `svc`.
fn run_case<S>(rt: &Runtime, n: u64, mut svc: S)
where
    S: Service<Request<Empty<Bytes>>>,
{
    rt.block_on(async {
        for _ in 0..n {
            let _ = black_box(one(&mut svc).await);
        }
    });
}

/// Prints each case's response future size and allocations per call.
fn print_sizes_and_allocations() {
    let rt = runtime();
    macro_rules! report {
        ($name:expr, $svc:expr) => {
            report_case(&rt, $name, $svc)
        };
    }
    cases!(report);
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
    targets = stack
}

/// `STEADFAST_STACK_CALLS=<case>:<n>`: makes `n` calls through `case` and
/// exits, for an instruction count that does not depend on the machine's
/// load (run it twice under `valgrind --tool=callgrind` with two values of
/// `n`; the difference over the difference in `n` is the cost of one call):
///
/// ```text
/// STEADFAST_STACK_CALLS=preset_http:20000 valgrind --tool=callgrind \
///     --callgrind-out-file=/dev/null target/release/deps/stack-<hash>
/// ```
fn run_calls(spec: &str) {
    let (case, n) = spec.split_once(':').expect("<case>:<n>");
    let n: u64 = n.parse().expect("a number of calls");
    let rt = runtime();
    let mut found = false;
    macro_rules! run {
        ($name:expr, $svc:expr) => {{
            if $name == case {
                found = true;
                run_case(&rt, n, $svc);
            }
        }};
    }
    cases!(run);
    assert!(found, "no case named {case}");
}

fn main() {
    if let Ok(spec) = std::env::var("STEADFAST_STACK_CALLS") {
        run_calls(&spec);
        return;
    }
    print_sizes_and_allocations();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
