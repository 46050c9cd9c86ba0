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
#[path = "support/awaited.rs"]
mod support;

use std::future::{ready, Ready};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, Criterion};
use http::{Request, Response};
use http_body_util::Empty;
use steadfast::stack::ResilienceLayer;
use support::{awaited, report, run, runtime};
use tower::{Layer, Service};

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

/// The request of every call: a GET built per call.
fn http_get(_: u64) -> Request<Empty<Bytes>> {
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
            awaited(&mut g, &rt, $name, $svc, http_get)
        };
    }
    cases!(bench);
    g.finish();
}

/// Prints each case's response future size and allocations per call.
fn print_sizes_and_allocations() {
    let rt = runtime();
    macro_rules! report {
        ($name:expr, $svc:expr) => {
            report(&rt, $name, $svc, http_get, " (the request itself makes 2)")
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
                run(&rt, n, $svc, http_get);
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
