//! `BulkheadFull`, and how the breaker and retry treat it.

use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};
use steadfast::retry::{RetryConfig, RetryLayer};
use steadfast::{cause_ref, is_caused_by};
use tower::service_fn;

use super::*;

#[test]
fn display_is_lowercase_and_says_why() {
    let full = BulkheadFull::new(FullReason::QueueFull, 8, Duration::ZERO);
    assert_eq!(
        full.to_string(),
        "bulkhead full; all 8 slots taken and no room to wait"
    );
    let timed_out = BulkheadFull::new(FullReason::WaitTimedOut, 8, Duration::from_millis(250));
    assert_eq!(
        timed_out.to_string(),
        "bulkhead full; no slot of 8 came free within 250.000ms"
    );
    assert_eq!(FullReason::QueueFull.to_string(), "queue_full");
    assert_eq!(FullReason::WaitTimedOut.as_str(), "wait_timed_out");
    assert!(std::error::Error::source(&full).is_none());
}

#[derive(Debug)]
struct Wrapped(BoxError);

impl std::fmt::Display for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("wrapped")
    }
}

impl std::error::Error for Wrapped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

#[test]
fn found_anywhere_in_a_source_chain() {
    let inner: BoxError = Box::new(BulkheadFull::new(FullReason::QueueFull, 1, Duration::ZERO));
    let outer = Wrapped(inner);
    assert!(is_caused_by::<BulkheadFull>(&outer));
    assert_eq!(
        cause_ref::<BulkheadFull>(&outer).map(BulkheadFull::reason),
        Some(FullReason::QueueFull)
    );
}

/// A service whose calls never finish: every slot stays taken.
fn stuck() -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone {
    service_fn(|_: u32| std::future::pending::<Result<u32, BoxError>>())
}

#[tokio::test(start_paused = true)]
async fn a_breaker_outside_ignores_rejections() {
    let bulkhead = BulkheadLayer::new(1).unwrap();
    let breaker = CircuitBreakerLayer::new(
        CircuitBreakerConfig::builder()
            .without_failure_rate()
            .consecutive_failures(1)
            .build()
            .unwrap(),
    );
    let cb = breaker.handle();
    let mut svc = breaker.layer(bulkhead.layer(stuck()));
    let _hold = svc.ready().await.unwrap().call(1);
    for _ in 0..5 {
        let err = svc.ready().await.unwrap().call(2).await.unwrap_err();
        assert!(err.is::<BulkheadFull>(), "{err}");
    }
    assert_eq!(
        cb.state(),
        CircuitState::Closed,
        "a rejection tripped the breaker"
    );
    let s = cb.snapshot();
    assert_eq!((s.failures, s.ignored), (0, 5));
}

#[tokio::test(start_paused = true)]
async fn retry_never_repeats_a_rejection() {
    let bulkhead = BulkheadLayer::new(1).unwrap();
    let bh = bulkhead.handle();
    let retry = RetryLayer::new(RetryConfig::builder().no_budget().build().unwrap());
    let rh = retry.handle();
    let mut svc = retry.layer(bulkhead.layer(stuck()));
    let _hold = svc.ready().await.unwrap().call(1);
    let err = svc.ready().await.unwrap().call(2).await.unwrap_err();
    assert!(is_caused_by::<BulkheadFull>(err.as_ref()), "{err}");
    assert_eq!(rh.snapshot().retries, 0);
    assert_eq!(bh.rejected(FullReason::QueueFull), 1);
}
