//! Timeouts around attempts: a per-attempt `Elapsed` is a failure and is
//! retried; `DeadlineExceeded` (the caller's time ran out) never is.

use steadfast::retry::RetryLayer;
use steadfast::timeout::error::{DeadlineExceeded, Elapsed};
use steadfast::timeout::TimeoutLayer;
use steadfast::BoxError;
use tower::{service_fn, Layer, ServiceExt};

use crate::harness::{ms, offsets, quick, Calls, Counts};

/// Retry around a 200 ms per-attempt timeout around a backend whose first
/// `slow` attempts take 10 s.
fn stack(
    calls: &Calls,
    slow: usize,
    retry: &RetryLayer,
) -> impl tower::Service<u32, Response = usize, Error = BoxError> {
    let log = calls.clone();
    let backend = service_fn(move |_: u32| {
        let n = log.record();
        async move {
            if n <= slow {
                tokio::time::sleep(ms(10_000)).await;
            }
            Ok::<usize, BoxError>(n)
        }
    });
    retry.layer(TimeoutLayer::new(ms(200)).unwrap().layer(backend))
}

#[tokio::test(start_paused = true)]
async fn timed_out_attempts_are_retried() {
    let calls = Calls::new();
    let retry = RetryLayer::new(quick().build().unwrap());
    let err = stack(&calls, usize::MAX, &retry)
        .oneshot(1)
        .await
        .unwrap_err();
    let elapsed = err.downcast_ref::<Elapsed>().expect("the last Elapsed");
    assert_eq!(elapsed.timeout(), ms(200));
    // Each attempt times out after 200 ms, then 100 ms of backoff.
    assert_eq!(calls.offsets(), offsets(&[0, 300, 600]));
    assert_eq!(calls.elapsed(), ms(800));
    assert_eq!(
        Counts::of(&retry.handle()),
        Counts {
            exhausted: 1,
            ..Counts::call(3)
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_then_a_quick_one() {
    let calls = Calls::new();
    let retry = RetryLayer::new(quick().build().unwrap());
    assert_eq!(stack(&calls, 1, &retry).oneshot(1).await.unwrap(), 2);
    assert_eq!(calls.offsets(), offsets(&[0, 300]));
    assert_eq!(Counts::of(&retry.handle()), Counts::call(2));
}

#[tokio::test(start_paused = true)]
async fn deadline_exceeded_is_never_retried() {
    let calls = Calls::new();
    let log = calls.clone();
    let backend = service_fn(move |_: u32| {
        log.record();
        async { Err::<u32, BoxError>(DeadlineExceeded::new(Some(ms(1_000))).into()) }
    });
    let retry = RetryLayer::new(quick().build().unwrap());
    let err = retry.layer(backend).oneshot(1).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(calls.count(), 1);
    assert_eq!(Counts::of(&retry.handle()), Counts::call(1), "no give-up");
}
