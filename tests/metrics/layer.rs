//! `MetricsLayer`: every outcome and every rejection of ours counted, the
//! in-flight gauge, cancellation, durations on virtual time, threads.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use steadfast::bulkhead::BulkheadLayer;
use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use steadfast::classify::Outcome;
use steadfast::metrics::{MetricsLayer, MetricsSnapshot};
use steadfast::timeout::TimeoutLayer;
use steadfast::{BoxError, DeadlineExceeded};
use tokio::time::{advance, sleep};
use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};

/// Answers after `n` ms; `n` ≥ 1000 fails, 999 is "ignored" by the
/// classifier below.
async fn backend(n: u64) -> Result<u64, BoxError> {
    sleep(Duration::from_millis(n)).await;
    if n >= 1000 {
        Err("backend failed".into())
    } else {
        Ok(n)
    }
}

/// Polls once, with a waker that does nothing.
fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
}

fn classify(result: &Result<u64, BoxError>) -> Outcome {
    match result {
        Ok(999) => Outcome::Ignored,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    }
}

#[tokio::test(start_paused = true)]
async fn outcomes_and_durations_follow_virtual_time() {
    let (layer, metrics) = MetricsLayer::with_classifier("db", classify);
    let service = layer.layer(service_fn(backend));
    for n in [10, 20, 30, 999, 1000] {
        let _ = service.clone().oneshot(n).await;
    }
    let s = metrics.snapshot();
    assert_eq!(&*s.name, "db");
    assert_eq!(
        (
            s.calls,
            s.successes,
            s.ignored,
            s.failures,
            s.cancelled,
            s.in_flight
        ),
        (5, 3, 1, 1, 0, 0)
    );
    assert_eq!(s.rejected(), 0);
    assert_eq!(s.duration.count(), 5);
    assert_eq!(
        s.duration.sum(),
        Duration::from_millis(10 + 20 + 30 + 999 + 1000)
    );
    assert_eq!(s.duration.max(), Duration::from_millis(1000));
    let p50 = s.duration.p50().unwrap();
    assert!(
        p50.abs_diff(Duration::from_millis(30)) <= Duration::from_millis(30) / 32,
        "{p50:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn in_flight_and_cancelled() {
    let (layer, metrics) = MetricsLayer::new("slow");
    let service = layer.layer(service_fn(backend));
    let mut first = Box::pin(service.clone().oneshot(100));
    let second = Box::pin(service.clone().oneshot(100));
    // Start both.
    assert!(poll_once(&mut first).is_pending());
    let mut second = second;
    assert!(poll_once(&mut second).is_pending());
    assert_eq!(metrics.snapshot().in_flight, 2);
    // Dropping one mid-call: cancelled, not classified, not timed.
    drop(second);
    let s = metrics.snapshot();
    assert_eq!((s.in_flight, s.cancelled), (1, 1));
    advance(Duration::from_millis(100)).await;
    assert_eq!(first.await.unwrap(), 100);
    let s = metrics.snapshot();
    assert_eq!(
        (
            s.calls,
            s.successes,
            s.failures,
            s.ignored,
            s.cancelled,
            s.in_flight
        ),
        (2, 1, 0, 0, 1, 0)
    );
    assert_eq!(s.duration.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn each_rejection_of_ours_counted_by_reason() {
    let (layer, metrics) = MetricsLayer::new("stack");

    // Timeout: a failure of the backend.
    let timed = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(TimeoutLayer::new(Duration::from_millis(50)).unwrap())
        .service(service_fn(backend));
    assert!(timed.oneshot(500).await.is_err());

    // Open breaker: ignored.
    let config = CircuitBreakerConfig::builder()
        .consecutive_failures(1)
        .without_failure_rate()
        .build()
        .unwrap();
    let mut breaker = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(CircuitBreakerLayer::new(config))
        .service(service_fn(backend));
    assert!(breaker.ready().await.unwrap().call(1000).await.is_err()); // trips
    let err = breaker.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(steadfast::Rejection::of(&err).is_some());

    // Full bulkhead: ignored.
    let bulkhead = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(BulkheadLayer::new(1).unwrap())
        .service(service_fn(backend));
    let mut holder = Box::pin(bulkhead.clone().oneshot(100));
    assert!(poll_once(&mut holder).is_pending());
    assert!(bulkhead.clone().oneshot(1).await.is_err());
    advance(Duration::from_millis(100)).await;
    assert!(holder.await.is_ok());

    // Deadline: ignored.
    let late = layer.layer(service_fn(|_: ()| async {
        Err::<(), BoxError>(DeadlineExceeded::new(Some(Duration::from_secs(1))).into())
    }));
    assert!(late.oneshot(()).await.is_err());

    let s: MetricsSnapshot = metrics.snapshot();
    assert_eq!(s.timed_out, 1);
    assert_eq!(s.rejected_circuit_open, 1);
    assert_eq!(s.rejected_bulkhead_full, 1);
    assert_eq!(s.deadline_exceeded, 1);
    assert_eq!(s.rejected(), 4);
    // The timeout and the tripping call failed; the three rejections were
    // ignored; the bulkhead's holder succeeded.
    assert_eq!((s.failures, s.ignored, s.successes), (2, 3, 1));
    assert_eq!(s.calls, 6);
    assert_eq!(s.duration.count(), 6);
}

#[tokio::test(start_paused = true)]
async fn clones_and_handles_share_one_set_of_counters() {
    let (layer, metrics) = MetricsLayer::new(String::from("shared"));
    let other_handle = layer.handle();
    let a = layer.clone().layer(service_fn(backend));
    let b = layer.layer(service_fn(backend));
    a.oneshot(1).await.unwrap();
    b.oneshot(1).await.unwrap();
    assert_eq!(metrics.snapshot().successes, 2);
    assert_eq!(other_handle.snapshot(), metrics.snapshot());
    assert_eq!(other_handle.name(), "shared");
    assert!(metrics
        .snapshot()
        .to_string()
        .starts_with("shared: 2 calls"));
}

async fn busy(n: u64) -> Result<u64, BoxError> {
    tokio::task::yield_now().await;
    if n % 3 == 0 {
        Err("no".into())
    } else {
        Ok(n)
    }
}

#[test]
fn exact_counts_from_many_tasks_on_a_multi_thread_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let (layer, metrics) = MetricsLayer::new("busy");
    let service = layer.layer(service_fn(busy));
    runtime.block_on(async {
        let tasks: Vec<_> = (0..8u64)
            .map(|t| {
                let service = service.clone();
                tokio::spawn(async move {
                    for i in 0..3_000u64 {
                        let _ = service.clone().oneshot(t * 3_000 + i).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    let s = metrics.snapshot();
    assert_eq!(s.calls, 24_000);
    assert_eq!(s.failures, 8_000);
    assert_eq!(s.successes, 16_000);
    assert_eq!(s.in_flight, 0);
    assert_eq!(s.duration.count(), 24_000);
}

#[tokio::test(start_paused = true)]
async fn call_latency_and_attempt_latency_apart() {
    use steadfast::retry::{Backoff, RetryConfig, RetryLayer};
    let (metrics_layer, metrics) = MetricsLayer::new("orders");
    let retry = RetryLayer::new(
        RetryConfig::builder()
            .max_attempts(3)
            .backoff(Backoff::fixed(Duration::from_millis(100)))
            .attempt_durations(true)
            .build()
            .unwrap(),
    );
    let retry_handle = retry.handle();
    let attempts = Arc::new(AtomicU64::new(0));
    let counter = attempts.clone();
    // Fails twice after 10 ms, then answers after 20 ms.
    let service = ServiceBuilder::new()
        .layer(metrics_layer)
        .layer(retry)
        .service(service_fn(move |_: ()| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    sleep(Duration::from_millis(10)).await;
                    Err::<u64, BoxError>("try again".into())
                } else {
                    sleep(Duration::from_millis(20)).await;
                    Ok(n)
                }
            }
        }));
    assert_eq!(service.oneshot(()).await.unwrap(), 2);
    let attempt = retry_handle
        .snapshot()
        .attempt_duration
        .expect("attempts are timed");
    assert_eq!(attempt.count(), 3);
    assert_eq!(attempt.sum(), Duration::from_millis(10 + 10 + 20));
    assert_eq!(attempt.max(), Duration::from_millis(20));
    let call = metrics.snapshot().duration;
    assert_eq!(call.count(), 1);
    assert_eq!(call.sum(), Duration::from_millis(10 + 100 + 10 + 100 + 20));
}

#[tokio::test(start_paused = true)]
async fn attempts_are_not_timed_unless_asked() {
    use steadfast::retry::{RetryConfig, RetryLayer};
    let retry = RetryLayer::new(RetryConfig::default());
    let handle = retry.handle();
    retry.layer(service_fn(backend)).oneshot(1).await.unwrap();
    assert_eq!(handle.snapshot().attempt_duration, None);
}
