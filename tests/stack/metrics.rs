//! The preset's metrics piece: outermost, one count per call whatever the
//! retries, the call's whole duration, our rejections by reason.

use super::*;

#[tokio::test(start_paused = true)]
async fn one_count_per_call_and_the_whole_duration() {
    let seen = Seen::default();
    let (layer, handle) = ResilienceLayer::http()
        .metrics("products")
        .retry(
            RetryConfig::builder()
                .backoff(steadfast::retry::Backoff::fixed(Duration::from_millis(100))),
        )
        .build()
        .unwrap();
    let svc = layer.layer(backend(
        &seen,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_millis(10),
    ));
    let res = svc.clone().oneshot(get("http://products/1")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.calls(), 3);
    let metrics = handle.metrics().expect("the metrics piece is on");
    assert_eq!(metrics.name(), "products");
    let s = metrics.snapshot();
    // One call, a failure by the stack's classifier (503), three attempts
    // and two backoffs long.
    assert_eq!(
        (s.calls, s.failures, s.successes, s.in_flight),
        (1, 1, 0, 0)
    );
    assert_eq!(s.duration.count(), 1);
    assert_eq!(s.duration.max(), Duration::from_millis(3 * 10 + 2 * 100));
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.metrics.as_ref(), Some(&s));
    // Each attempt timed apart, by the retry piece the metrics name named.
    let retry = snapshot.retry.as_ref().unwrap();
    assert_eq!(retry.name.as_deref(), Some("products"));
    let attempts = retry.attempt_duration.as_ref().expect("timed with metrics");
    assert_eq!(attempts.count(), 3);
    assert_eq!(attempts.max(), Duration::from_millis(10));
    assert!(
        handle
            .to_string()
            .starts_with("metrics   products: 1 calls"),
        "{handle}"
    );
}

#[tokio::test(start_paused = true)]
async fn off_by_default() {
    let (_layer, handle) = ResilienceLayer::http().build().unwrap();
    assert!(handle.metrics().is_none());
    assert!(handle.snapshot().metrics.is_none());
    let (_layer, handle) = ResilienceLayer::http()
        .metrics("x")
        .no_metrics()
        .build()
        .unwrap();
    assert!(handle.metrics().is_none());
}

#[tokio::test(start_paused = true)]
async fn rejections_by_reason_and_cancellation() {
    let seen = Seen::default();
    let (layer, handle) = ResilienceLayer::http()
        .metrics("flaky")
        .no_retry()
        .circuit_breaker(
            CircuitBreakerConfig::builder()
                .consecutive_failures(2)
                .without_failure_rate(),
        )
        .attempt_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let svc = layer.layer(backend(&seen, StatusCode::OK, Duration::from_millis(80)));
    // Two timeouts trip the breaker; the third call is refused.
    for _ in 0..2 {
        let err = svc.clone().oneshot(get("http://flaky/")).await.unwrap_err();
        assert!(is_caused_by::<Elapsed>(&*err), "{err}");
    }
    let err = svc.clone().oneshot(get("http://flaky/")).await.unwrap_err();
    assert!(is_caused_by::<CircuitOpen>(&*err), "{err}");
    // A call dropped mid-flight is cancelled, not a failure.
    handle.circuit_breaker().unwrap().reset();
    let mut pending = Box::pin(svc.clone().oneshot(get("http://flaky/")));
    assert!(futures_util::FutureExt::now_or_never(pending.as_mut()).is_none());
    assert_eq!(handle.metrics().unwrap().snapshot().in_flight, 1);
    drop(pending);
    let s = handle.metrics().unwrap().snapshot();
    assert_eq!(s.calls, 4);
    assert_eq!((s.timed_out, s.rejected_circuit_open), (2, 1));
    assert_eq!(
        (s.failures, s.ignored, s.cancelled, s.in_flight),
        (2, 1, 1, 0)
    );
    assert_eq!(s.duration.count(), 3);
}
