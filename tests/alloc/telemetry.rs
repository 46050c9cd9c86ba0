//! Telemetry costs no allocation while its level is disabled: with a
//! subscriber that takes only errors, a breaker rejection, a breaker
//! transition, a bulkhead rejection and a retry allocate exactly what they
//! allocate with no subscriber at all, and the named breaker's transitions
//! (a name made from a `String`) allocate nothing.

use std::future::{pending, Future, Pending};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use steadfast::bulkhead::BulkheadLayer;
use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};
use steadfast::retry::{Backoff, RetryConfig, RetryLayer};
use tower::Service;
use tower_layer::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;

use super::cases::{allocs_per_call, drive, Bare, Boom, Failing};
use super::{in_runtime, CALLS};

/// Runs `f` twice: with no subscriber, then with one (on this thread only)
/// that takes errors only. Returns both allocation counts per call.
fn quiet_and_silent(mut f: impl FnMut() -> f64) -> (f64, f64) {
    let silent = f();
    let subscriber = tracing_subscriber::registry().with(LevelFilter::ERROR);
    let _guard = tracing::subscriber::set_default(subscriber);
    (f(), silent)
}

fn named_breaker() -> CircuitBreakerLayer {
    let config = CircuitBreakerConfig::builder()
        .name(String::from("inventory"))
        .build()
        .expect("valid");
    CircuitBreakerLayer::new(config)
}

#[test]
fn breaker_rejections_allocate_nothing_for_telemetry() {
    let (quiet, silent) = quiet_and_silent(|| {
        in_runtime(|| {
            let layer = named_breaker();
            layer.handle().force_open();
            let mut svc = layer.layer(Bare);
            allocs_per_call(CALLS, |i| assert!(drive(&mut svc, i).is_err()))
        })
    });
    assert_eq!(quiet, silent);
    assert!(quiet <= 1.0, "{quiet} allocations per rejection");
}

#[test]
fn breaker_transitions_allocate_nothing() {
    let (quiet, silent) = quiet_and_silent(|| {
        in_runtime(|| {
            let layer = named_breaker();
            let handle = layer.handle();
            let per_pair = allocs_per_call(CALLS, |_| {
                handle.force_open();
                handle.reset();
            });
            assert_eq!(handle.state(), CircuitState::Closed);
            assert_eq!(handle.snapshot().opened, CALLS + 1);
            per_pair
        })
    });
    assert_eq!((quiet, silent), (0.0, 0.0));
}

/// Never answers: holds the bulkhead's one slot.
#[derive(Clone, Copy)]
struct Hang;

impl Service<u64> for Hang {
    type Response = u64;
    type Error = Boom;
    type Future = Pending<Result<u64, Boom>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Boom>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: u64) -> Self::Future {
        pending()
    }
}

#[test]
fn bulkhead_rejections_allocate_nothing_for_telemetry() {
    let (quiet, silent) = quiet_and_silent(|| {
        let layer = BulkheadLayer::builder(1)
            .name(String::from("db"))
            .build()
            .expect("valid");
        let handle = layer.handle();
        let mut svc = layer.layer(Hang);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(svc.poll_ready(&mut cx).is_ready());
        let mut held = pin!(svc.call(0));
        assert!(held.as_mut().poll(&mut cx).is_pending());
        let per_call = allocs_per_call(CALLS, |i| {
            assert!(svc.poll_ready(&mut cx).is_ready());
            let rejected = pin!(svc.call(i)).poll(&mut cx);
            assert!(matches!(rejected, Poll::Ready(Err(_))));
        });
        assert_eq!(handle.snapshot().rejected(), CALLS + 1);
        per_call
    });
    assert_eq!(quiet, silent);
    assert!(quiet <= 1.0, "{quiet} allocations per rejection");
}

#[test]
fn retries_and_give_ups_allocate_nothing_for_telemetry() {
    let (quiet, silent) = quiet_and_silent(|| {
        in_runtime(|| {
            let config = RetryConfig::builder()
                .name(String::from("api"))
                .max_attempts(2)
                .backoff(Backoff::fixed(Duration::ZERO))
                .no_budget()
                .build()
                .expect("valid");
            let layer = RetryLayer::new(config);
            let mut svc = layer.layer(Failing::always());
            let per_call = allocs_per_call(CALLS, |i| assert!(drive(&mut svc, i).is_err()));
            let s = layer.handle().snapshot();
            assert_eq!((s.retries, s.exhausted), (CALLS + 1, CALLS + 1), "{s:?}");
            per_call
        })
    });
    assert_eq!(quiet, silent);
    // The retry state, boxed on the first retry; nothing else.
    assert!(quiet <= 1.0, "{quiet} allocations per retried call");
}

/// A per-call span that no subscriber wants costs no allocation: neither
/// with no subscriber nor with one that takes only errors.
#[test]
fn disabled_call_spans_allocate_nothing() {
    let (quiet, silent) = quiet_and_silent(|| {
        in_runtime(|| {
            let mut svc =
                steadfast::metrics::CallSpanLayer::new(String::from("inventory")).layer(Bare);
            allocs_per_call(CALLS, |i| assert!(drive(&mut svc, i).is_ok()))
        })
    });
    assert_eq!((quiet, silent), (0.0, 0.0));
}
