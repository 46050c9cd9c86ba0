//! Rejections of our own: `CircuitOpen` from an inner breaker is returned
//! at once, unless `wait_for_open_circuit` asks to wait for it, once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use steadfast::circuit_breaker::error::CircuitOpen;
use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};
use steadfast::retry::{RetryConfigBuilder, RetryLayer};
use steadfast::BoxError;
use tower::{service_fn, Layer, Service, ServiceExt};

use crate::harness::{ms, offsets, quick, Calls, Counts};

/// A backend that fails while `healthy` is false.
fn backend(
    calls: &Calls,
    healthy: &Arc<AtomicBool>,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send + 'static {
    let calls = calls.clone();
    let healthy = healthy.clone();
    service_fn(move |req: u32| {
        calls.record();
        let ok = healthy.load(Ordering::SeqCst);
        async move {
            if ok {
                Ok(req)
            } else {
                Err(BoxError::from("backend down"))
            }
        }
    })
}

/// A breaker that opens for exactly 1 s after one failure.
fn breaker() -> CircuitBreakerLayer {
    let config = CircuitBreakerConfig::builder()
        .without_failure_rate()
        .consecutive_failures(1)
        .open_jitter(0.0)
        .open_duration(ms(1_000))
        .build()
        .unwrap();
    CircuitBreakerLayer::new(config)
}

/// Retry around a breaker around the backend; the breaker was tripped by a
/// failed call straight through it, at offset 0 of `calls`.
async fn tripped(
    retry: RetryConfigBuilder,
) -> (
    impl Service<u32, Response = u32, Error = BoxError>,
    RetryLayer,
    CircuitBreakerLayer,
    Calls,
    Arc<AtomicBool>,
) {
    let calls = Calls::new();
    let healthy = Arc::new(AtomicBool::new(false));
    let cb = breaker();
    let inner = cb.layer(backend(&calls, &healthy));
    inner.clone().oneshot(0).await.unwrap_err();
    assert_eq!(cb.handle().state(), CircuitState::Open);
    let layer = RetryLayer::new(retry.max_attempts(5).build().unwrap());
    (layer.layer(inner), layer, cb, calls, healthy)
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_is_returned_at_once() {
    let (svc, layer, _cb, calls, healthy) = tripped(quick()).await;
    healthy.store(true, Ordering::SeqCst);
    tokio::time::advance(ms(200)).await;
    let err = svc.oneshot(1).await.unwrap_err();
    let open = err
        .downcast_ref::<CircuitOpen>()
        .expect("CircuitOpen itself");
    assert_eq!(open.state(), CircuitState::Open);
    assert_eq!(open.retry_after(), Some(ms(800)));
    assert_eq!(
        calls.offsets(),
        offsets(&[0]),
        "only the call that tripped it"
    );
    assert_eq!(calls.elapsed(), ms(200), "no wait");
    assert_eq!(Counts::of(&layer.handle()), Counts::call(1), "no give-up");
}

#[tokio::test(start_paused = true)]
async fn a_forced_open_circuit_is_returned_at_once_even_when_waiting() {
    let calls = Calls::new();
    let healthy = Arc::new(AtomicBool::new(true));
    let cb = breaker();
    cb.handle().force_open();
    let layer = RetryLayer::new(quick().wait_for_open_circuit(true).build().unwrap());
    let svc = layer.layer(cb.layer(backend(&calls, &healthy)));
    let err = svc.oneshot(1).await.unwrap_err();
    let open = err
        .downcast_ref::<CircuitOpen>()
        .expect("CircuitOpen itself");
    assert_eq!(open.state(), CircuitState::ForcedOpen);
    assert_eq!(calls.count(), 0);
    assert_eq!(calls.elapsed(), ms(0));
    assert_eq!(Counts::of(&layer.handle()), Counts::call(1));
}

/// With `wait_for_open_circuit`, the breaker's `retry_after` is waited
/// exactly; the next attempt is the half-open probe and succeeds.
#[tokio::test(start_paused = true)]
async fn waits_for_an_open_circuit_exactly() {
    let (svc, layer, cb, calls, healthy) = tripped(quick().wait_for_open_circuit(true)).await;
    healthy.store(true, Ordering::SeqCst);
    tokio::time::advance(ms(200)).await;
    assert_eq!(svc.oneshot(7).await.unwrap(), 7);
    assert_eq!(calls.offsets(), offsets(&[0, 1_000]), "the probe at 1 s");
    assert_eq!(calls.elapsed(), ms(1_000));
    assert_eq!(cb.handle().state(), CircuitState::Closed);
    assert_eq!(Counts::of(&layer.handle()), Counts::call(2));
}

/// The circuit is waited for once per call: when the probe fails and the
/// breaker opens again, the next `CircuitOpen` is returned.
#[tokio::test(start_paused = true)]
async fn waits_for_an_open_circuit_only_once_per_call() {
    let (svc, layer, cb, calls, _healthy) = tripped(quick().wait_for_open_circuit(true)).await;
    tokio::time::advance(ms(200)).await;
    let err = svc.oneshot(7).await.unwrap_err();
    let open = err
        .downcast_ref::<CircuitOpen>()
        .expect("CircuitOpen itself");
    assert_eq!(open.state(), CircuitState::Open);
    // The trip, then the failed probe at 1 s; the retry 100 ms later was
    // rejected and returned.
    assert_eq!(calls.offsets(), offsets(&[0, 1_000]));
    assert_eq!(calls.elapsed(), ms(1_100));
    assert_eq!(cb.handle().state(), CircuitState::Open);
    assert_eq!(Counts::of(&layer.handle()), Counts::call(3));
}

/// A circuit that opens for longer than `max_server_delay` is not waited for.
#[tokio::test(start_paused = true)]
async fn an_open_circuit_longer_than_max_server_delay_is_not_waited() {
    let config = quick()
        .wait_for_open_circuit(true)
        .max_server_delay(ms(500));
    let (svc, layer, _cb, calls, healthy) = tripped(config).await;
    healthy.store(true, Ordering::SeqCst);
    let err = svc.oneshot(7).await.unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
    assert_eq!(calls.count(), 1);
    assert_eq!(calls.elapsed(), ms(0));
    assert_eq!(
        Counts::of(&layer.handle()),
        Counts {
            server_hint: 1,
            ..Counts::call(1)
        }
    );
}

/// An open circuit whose `retry_after` ends after the request's deadline is
/// not waited for.
#[tokio::test(start_paused = true)]
async fn an_open_circuit_past_the_deadline_is_not_waited() {
    use crate::deadline::Job;
    use steadfast::classify::ErrorsAsFailures;
    use steadfast::retry::{CloneWithDeadline, RetryFailures};

    let calls = Calls::new();
    let log = calls.clone();
    let cb = breaker();
    let inner = cb.layer(service_fn(move |_: Job| {
        log.record();
        async { Err::<(), BoxError>("backend down".into()) }
    }));
    inner
        .clone()
        .oneshot(Job { deadline: None })
        .await
        .unwrap_err();
    let config = quick().wait_for_open_circuit(true).build().unwrap();
    let layer = RetryLayer::with_policy(
        config,
        RetryFailures::new(ErrorsAsFailures),
        CloneWithDeadline,
    );
    let err = layer
        .layer(inner)
        .oneshot(Job::within(500))
        .await
        .unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
    assert_eq!(calls.count(), 1, "only the call that tripped it");
    assert_eq!(calls.elapsed(), ms(0));
    assert_eq!(
        Counts::of(&layer.handle()),
        Counts {
            deadline: 1,
            ..Counts::call(1)
        }
    );
}
