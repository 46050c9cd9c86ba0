//! `RateLimited`, and how `Rejection`, the breaker, retry and metrics treat it.

use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};
use steadfast::metrics::MetricsLayer;
use steadfast::retry::{RetryConfig, RetryLayer};
use steadfast::{is_caused_by, Rejection};
use tower::ServiceExt;
use tower_test::mock;

use super::*;

/// 2 calls per second (one every 500 ms), burst 2.
fn two_per_second() -> RateLimitLayer {
    layer(2, Duration::from_secs(1), 2)
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_exact_on_virtual_time() {
    let layer = two_per_second();
    let (mut svc, _) = service(&layer);
    assert_eq!(try_call(&mut svc, 1), Some(Ok(1)));
    assert_eq!(try_call(&mut svc, 2), Some(Ok(2)));
    let l = try_call(&mut svc, 3).unwrap().unwrap_err();
    assert_eq!(l.retry_after(), Duration::from_millis(500));
    assert_eq!(l.waited(), Duration::ZERO);

    tokio::time::advance(Duration::from_millis(123)).await;
    let l = try_call(&mut svc, 4).unwrap().unwrap_err();
    assert_eq!(l.retry_after(), Duration::from_millis(377));

    tokio::time::advance(Duration::from_nanos(376_999_999)).await;
    let l = try_call(&mut svc, 5).unwrap().unwrap_err();
    assert_eq!(l.retry_after(), Duration::from_nanos(1), "never zero");

    tokio::time::advance(Duration::from_nanos(1)).await;
    assert_eq!(try_call(&mut svc, 6), Some(Ok(6)));
    let l = try_call(&mut svc, 7).unwrap().unwrap_err();
    assert_eq!(l.retry_after(), Duration::from_millis(500));
    assert_eq!(layer.handle().snapshot().rejected, 4);
}

#[test]
fn display_is_lowercase_and_says_how_long() {
    let l = RateLimited::new(Duration::from_millis(250), Duration::ZERO);
    assert_eq!(l.to_string(), "rate limited; retry after 250.000ms");
    let l = RateLimited::new(Duration::from_millis(250), Duration::from_millis(40));
    assert_eq!(
        l.to_string(),
        "rate limited after waiting 40.000ms; retry after 250.000ms"
    );
    assert!(std::error::Error::source(&l).is_none());
}

#[tokio::test(start_paused = true)]
async fn rejection_of_says_not_sent_with_retry_after() {
    let layer = layer(1, Duration::from_secs(1), 1);
    let (svc, _) = service(&layer);
    svc.clone().oneshot(1).await.unwrap();
    let err = svc.clone().oneshot(2).await.unwrap_err();
    assert!(is_caused_by::<RateLimited>(err.as_ref()));
    let rejection = Rejection::of(&err).expect("one of ours");
    assert!(
        matches!(
            rejection,
            Rejection::RateLimited { retry_after, waited, .. }
                if retry_after == Duration::from_secs(1) && waited == Duration::ZERO
        ),
        "{rejection:?}"
    );
    assert!(rejection.is_not_sent());
    assert!(!rejection.is_backend_failure());
    assert_eq!(rejection.retry_after(), Some(Duration::from_secs(1)));
}

#[tokio::test(start_paused = true)]
async fn a_breaker_outside_ignores_rejections() {
    let breaker = CircuitBreakerLayer::new(
        CircuitBreakerConfig::builder()
            .without_failure_rate()
            .consecutive_failures(1)
            .build()
            .unwrap(),
    );
    let cb = breaker.handle();
    let limit = layer(1, Duration::from_secs(1), 1);
    let rec = Recorder::default();
    let mut svc = breaker.layer(limit.layer(rec.clone()));
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 1);
    for n in 0..20 {
        let err = svc.ready().await.unwrap().call(n).await.unwrap_err();
        assert!(is_caused_by::<RateLimited>(err.as_ref()), "{err}");
    }
    assert_eq!(cb.state(), CircuitState::Closed, "rejections tripped it");
    let s = cb.snapshot();
    assert_eq!((s.failures, s.ignored, s.successes), (0, 20, 1));
    assert_eq!(rec.requests(), [1]);
}

#[tokio::test(start_paused = true)]
async fn retry_outside_never_repeats_a_rejection() {
    let retry = RetryLayer::new(RetryConfig::builder().no_budget().build().unwrap());
    let rh = retry.handle();
    let limit = layer(1, Duration::from_secs(1), 1);
    let (mock, mut handle) = mock::pair::<u32, u32>();
    let mut svc = retry.layer(limit.layer(mock));
    handle.allow(10);

    let first = tokio::spawn(svc.ready().await.unwrap().call(1));
    let (req, send) = tokio::time::timeout(Duration::from_secs(1), handle.next_request())
        .await
        .expect("the first call reaches the mock")
        .unwrap();
    assert_eq!(req, 1);
    send.send_response(1);
    assert_eq!(first.await.unwrap().unwrap(), 1);

    let err = svc.ready().await.unwrap().call(2).await.unwrap_err();
    assert!(is_caused_by::<RateLimited>(err.as_ref()), "{err}");
    // One attempt only: nothing more reached the mock, nothing was retried.
    assert!(tokio_test::task::spawn(handle.next_request())
        .poll()
        .is_pending());
    assert_eq!(rh.snapshot().retries, 0);
    assert_eq!(limit.handle().snapshot().rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn metrics_count_rejected_rate_limited() {
    let (metrics, mh) = MetricsLayer::new("limited");
    let limit = layer(2, Duration::from_secs(1), 2);
    let svc = metrics.layer(limit.layer(Recorder::default()));
    for n in 0..5 {
        let _ = svc.clone().oneshot(n).await;
    }
    let s = mh.snapshot();
    assert_eq!(s.rejected_rate_limited, 3);
    assert_eq!(s.rejected(), 3);
    assert_eq!((s.successes, s.ignored, s.failures), (2, 3, 0));
    assert_eq!(s.calls, 5);
}
