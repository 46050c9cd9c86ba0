//! Every layer that needs tokio's timer panics on its first call when there
//! is no runtime, or no timer in it, with a message naming the layer — even
//! when the backend succeeds and no timer would be needed yet. Layers that
//! never need the timer work anywhere.

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use steadfast::bulkhead::BulkheadLayer;
use steadfast::circuit_breaker::{
    CircuitBreakerConfig, CircuitBreakerLayer, KeyedCircuitBreakerLayer,
};
use steadfast::retry::{RetryConfig, RetryLayer};
use steadfast::timeout::TimeoutLayer;
use tower_layer::Layer;
use tower_service::Service;

/// Always ready, always succeeds.
#[derive(Debug, Clone, Copy)]
struct Bare;

impl<R> Service<R> for Bare {
    type Response = ();
    type Error = Infallible;
    type Future = Ready<Result<(), Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: R) -> Self::Future {
        ready(Ok(()))
    }
}

/// One call as a caller makes it: `poll_ready`, `call`, one poll.
fn first_call<S, R>(mut svc: S, req: R)
where
    S: Service<R>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(r) => r.expect("ready"),
        Poll::Pending => panic!("not ready"),
    }
    let fut = pin!(svc.call(req));
    match fut.poll(&mut cx) {
        Poll::Ready(r) => {
            r.expect("the call succeeds");
        }
        Poll::Pending => panic!("the call is pending"),
    }
}

#[derive(Debug, Clone, Copy)]
enum Where {
    /// No runtime at all.
    Outside,
    /// A current-thread runtime built without `enable_time`.
    NoTimer,
    /// A current-thread runtime with time enabled.
    Timer,
}

const ALL: [Where; 2] = [Where::Outside, Where::NoTimer];

fn run_in<T>(at: Where, f: impl FnOnce() -> T) -> T {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    match at {
        Where::Outside => return f(),
        Where::NoTimer => {}
        Where::Timer => {
            builder.enable_time();
        }
    }
    let rt = builder.build().expect("runtime");
    let _guard = rt.enter();
    f()
}

/// Runs `f` in `at` and returns its panic message, if it panicked.
fn panic_of(at: Where, f: impl FnOnce()) -> Option<String> {
    let payload = catch_unwind(AssertUnwindSafe(|| run_in(at, f))).err()?;
    Some(
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default(),
    )
}

/// The first call made in `at` panics, naming `layer`, and saying why.
fn assert_first_call_panics(layer: &str, at: Where, f: impl FnOnce()) {
    let msg = panic_of(at, f)
        .unwrap_or_else(|| panic!("{layer} in {at:?}: the first call did not panic"));
    let expected = format!("{layer} needs a Tokio runtime with time enabled (");
    assert!(msg.contains(&expected), "{layer} in {at:?}: {msg}");
    let why = match at {
        Where::Outside => "called outside a Tokio runtime",
        _ => "the current runtime was built without `enable_time`",
    };
    assert!(msg.contains(why), "{layer} in {at:?}: {msg}");
}

fn assert_works(at: Where, f: impl FnOnce()) {
    if let Some(msg) = panic_of(at, f) {
        panic!("panicked in {at:?}: {msg}");
    }
}

/// The first call of a service made by `svc` panics outside a runtime and in
/// a runtime without a timer, naming `layer`, and succeeds in one with a timer.
fn needs_timer<S, R>(layer: &str, svc: impl Fn() -> S, req: impl Fn() -> R)
where
    S: Service<R>,
    S::Error: std::fmt::Debug,
{
    for at in ALL {
        assert_first_call_panics(layer, at, || first_call(svc(), req()));
    }
    assert_works(Where::Timer, || first_call(svc(), req()));
}

#[test]
fn timeout_panics_on_the_first_call() {
    let layer = || TimeoutLayer::new(Duration::from_secs(1)).expect("valid");
    needs_timer(
        "steadfast::timeout::Timeout",
        || layer().layer(Bare),
        || 1_u64,
    );
}

#[cfg(feature = "http")]
#[test]
fn deadline_panics_on_the_first_call() {
    use steadfast::timeout::DeadlineLayer;
    let layer = || DeadlineLayer::new(Duration::from_secs(1)).expect("valid");
    needs_timer(
        "steadfast::timeout::WithDeadline",
        || layer().layer(Bare),
        || http::Request::new(()),
    );
}

/// The backend succeeds, so no backoff is ever needed: the retry layer still
/// fails at once, not on the day the backend starts failing.
#[test]
fn retry_panics_on_the_first_call_even_when_the_backend_succeeds() {
    let layer = || RetryLayer::new(RetryConfig::default());
    needs_timer("steadfast::retry::Retry", || layer().layer(Bare), || 1_u64);
}

/// A bulkhead that may wait needs the timer, in both modes, even when a slot
/// is free.
#[test]
fn waiting_bulkhead_panics_on_the_first_call() {
    const BULKHEAD: &str = "steadfast::bulkhead::Bulkhead";
    let layer = || {
        BulkheadLayer::builder(4)
            .max_wait(Duration::from_millis(100))
            .build()
            .expect("valid")
    };
    needs_timer(BULKHEAD, || layer().layer(Bare), || 1_u64);
    needs_timer(
        BULKHEAD,
        || layer().wait_in_poll_ready().layer(Bare),
        || 1_u64,
    );
}

/// A breaker that waits while open needs the timer, even while closed.
#[test]
fn waiting_breaker_panics_on_the_first_call() {
    let layer = || CircuitBreakerLayer::new(CircuitBreakerConfig::default()).wait_when_open();
    needs_timer(
        "steadfast::circuit_breaker::CircuitBreaker",
        || layer().layer(Bare),
        || 1_u64,
    );
}

/// The layers that never sleep work anywhere: the breaker that rejects, the
/// keyed breaker, the bulkhead that never waits.
#[test]
fn layers_without_a_timer_work_outside_a_runtime() {
    for at in [Where::Outside, Where::NoTimer, Where::Timer] {
        assert_works(at, || {
            let layer = CircuitBreakerLayer::new(CircuitBreakerConfig::default());
            first_call(layer.layer(Bare), 1_u64);
        });
        assert_works(at, || {
            let layer = KeyedCircuitBreakerLayer::builder(|req: &u64| *req)
                .build()
                .expect("valid");
            first_call(layer.layer(Bare), 1_u64);
        });
        assert_works(at, || {
            let layer = BulkheadLayer::new(4).expect("valid");
            first_call(layer.layer(Bare), 1_u64);
        });
    }
}

/// The check is not cached per service: a retry service that worked in a
/// task of a runtime with a timer (twice, so the second call is the cached
/// one) panics when it moves to a runtime without one, and outside any.
#[test]
fn a_service_that_moves_to_another_runtime_is_checked_there() {
    const RETRY: &str = "steadfast::retry::Retry";
    let mut svc = RetryLayer::new(RetryConfig::default()).layer(Bare);
    let with_timer = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let task = with_timer.spawn(async move {
        first_call(&mut svc, 1_u64);
        first_call(&mut svc, 2_u64);
        svc
    });
    svc = with_timer.block_on(task).expect("the task succeeds");
    drop(with_timer);

    let without_timer = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut moved = svc.clone();
    let task = without_timer.spawn(async move { first_call(&mut moved, 3_u64) });
    let err = without_timer.block_on(task).expect_err("the call panics");
    let payload = err.into_panic();
    let msg = payload
        .downcast_ref::<String>()
        .expect("a formatted message");
    assert!(
        msg.contains(&format!("{RETRY} needs a Tokio runtime with time enabled")),
        "{msg}"
    );
    assert_first_call_panics(RETRY, Where::Outside, move || first_call(svc, 4_u64));
}

/// Outside tasks the answer is kept per thread only once the thread has
/// passed the check 16 times in a row (it lives in a runtime); even then a
/// thread that leaves its runtime fails within 64 calls, and at once after
/// that.
#[test]
fn outside_tasks_a_thread_that_leaves_its_runtime_fails_soon() {
    const RETRY: &str = "steadfast::retry::Retry";
    let layer = RetryLayer::new(RetryConfig::default());
    run_in(Where::Timer, || {
        for i in 0..15_u64 {
            first_call(layer.layer(Bare), i);
        }
    });
    assert_first_call_panics(RETRY, Where::Outside, || {
        first_call(layer.layer(Bare), 0_u64)
    });

    run_in(Where::Timer, || {
        for i in 0..100_u64 {
            first_call(layer.layer(Bare), i);
        }
    });
    let failed_at = (0..=64_u64)
        .find(|i| panic_of(Where::Outside, || first_call(layer.layer(Bare), *i)).is_some());
    assert!(failed_at.is_some(), "no panic within 65 calls outside");
    assert_first_call_panics(RETRY, Where::Outside, || {
        first_call(layer.layer(Bare), 0_u64)
    });
}
