//! A circuit breaker inside a deadline: `DeadlineExceeded` (the caller's
//! budget ran out) is not held against the backend; `Elapsed` (one attempt
//! took too long) is a failure.

use std::time::Duration;

use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};
use steadfast::timeout::error::{DeadlineExceeded, Elapsed};
use steadfast::timeout::{DeadlineLayer, TimeoutLayer};
use tokio::time::Instant;
use tokio_test::task;
use tower::{Layer, ServiceExt};
use tower_service::Service;

use super::{finishes_at, hanging, ms, Log};

fn breaker() -> CircuitBreakerLayer {
    CircuitBreakerLayer::new(
        CircuitBreakerConfig::builder()
            .consecutive_failures(1)
            .build()
            .unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn deadline_exceeded_from_a_deadline_aware_timeout_is_ignored_by_the_breaker() {
    // Deadline(1 s) → breaker → deadline-aware Timeout(5 s) → hanging: the
    // timeout shrinks to the deadline and reports DeadlineExceeded, which
    // the breaker sees and ignores. A single failure would have tripped it.
    let log = Log::default();
    let breaker = breaker();
    let handle = breaker.handle();
    let mut svc = DeadlineLayer::new(Duration::from_secs(1)).unwrap().layer(
        breaker.layer(
            TimeoutLayer::new(Duration::from_secs(5))
                .unwrap()
                .deadline_aware()
                .layer(hanging(&log)),
        ),
    );
    let start = Instant::now();
    let mut fut = task::spawn(svc.ready().await.unwrap().call(http::Request::new(())));

    let err = finishes_at(&mut fut, start + Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.ignored, 1, "{snapshot:?}");
    assert_eq!(snapshot.failures, 0, "{snapshot:?}");
    assert_eq!(snapshot.cancelled, 0, "{snapshot:?}");
    assert_eq!(snapshot.state, CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn elapsed_from_an_inner_timeout_counts_as_a_failure() {
    let log = Log::default();
    let breaker = breaker();
    let handle = breaker.handle();
    let mut svc = DeadlineLayer::new(Duration::from_secs(10))
        .unwrap()
        .layer(breaker.layer(TimeoutLayer::new(ms(200)).unwrap().layer(hanging(&log))));
    let start = Instant::now();
    let mut fut = task::spawn(svc.ready().await.unwrap().call(http::Request::new(())));

    let err = finishes_at(&mut fut, start + ms(200)).await.unwrap_err();
    assert!(err.is::<Elapsed>(), "{err}");
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.failures, 1, "{snapshot:?}");
    assert_eq!(snapshot.ignored, 0, "{snapshot:?}");
    assert_eq!(snapshot.state, CircuitState::Open, "one failure trips it");
}

#[tokio::test(start_paused = true)]
async fn a_deadline_outside_the_breaker_cancels_the_call_without_a_failure() {
    // With no deadline-aware timeout inside, the breaker never sees the
    // error: its future is dropped when the deadline passes, which counts
    // as cancelled, not failed.
    let log = Log::default();
    let breaker = breaker();
    let handle = breaker.handle();
    let mut svc = DeadlineLayer::new(Duration::from_secs(1))
        .unwrap()
        .layer(breaker.layer(hanging(&log)));
    let start = Instant::now();
    let mut fut = task::spawn(svc.ready().await.unwrap().call(http::Request::new(())));

    let err = finishes_at(&mut fut, start + Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.failures, 0, "{snapshot:?}");
    assert_eq!(snapshot.cancelled, 1, "{snapshot:?}");
    assert_eq!(snapshot.state, CircuitState::Closed);

    // And the breaker still lets calls through.
    let mut again = task::spawn(svc.ready().await.unwrap().call(http::Request::new(())));
    assert!(again.poll().is_pending());
    assert_eq!(log.get().len(), 2, "the hanging service was called again");
}
