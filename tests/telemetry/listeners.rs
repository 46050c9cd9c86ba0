//! Listeners: several per layer, called in order; one that panics neither
//! poisons the layer nor keeps the event from the listeners after it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steadfast::bulkhead::error::FullReason;
use steadfast::bulkhead::BulkheadLayer;
use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};
use steadfast::retry::{Backoff, RetryConfig, RetryLayer};
use tower::{service_fn, Layer, Service, ServiceExt};

fn counter() -> (Arc<AtomicUsize>, impl Fn() -> usize) {
    let n = Arc::new(AtomicUsize::new(0));
    let read = {
        let n = n.clone();
        move || n.load(Ordering::SeqCst)
    };
    (n, read)
}

#[tokio::test(start_paused = true)]
async fn breaker_listeners_survive_a_panicking_one() {
    let (rejections, rejected) = counter();
    let transitions = Arc::new(Mutex::new(Vec::new()));
    let seen = transitions.clone();
    let config = CircuitBreakerConfig::builder()
        .name("inventory")
        .without_failure_rate()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(1))
        .open_jitter(0.0)
        .on_transition(|_| panic!("first transition listener"))
        .on_transition(move |t| seen.lock().unwrap().push((t.from(), t.to())))
        .on_rejection(|_| panic!("first rejection listener"))
        .on_rejection(move |r| {
            assert_eq!(r.name(), Some("inventory"));
            assert_eq!(r.state(), CircuitState::Open);
            assert!(r.retry_after().is_some());
            rejections.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let layer = CircuitBreakerLayer::new(config);
    let handle = layer.handle();
    let fail = layer.layer(service_fn(|_: ()| async { Err::<(), _>("down") }));
    let ok = layer.layer(service_fn(|_: ()| async { Ok::<_, &str>(()) }));

    let _ = fail.clone().oneshot(()).await;
    assert_eq!(handle.state(), CircuitState::Open);
    assert!(ok.clone().oneshot(()).await.is_err());
    assert!(ok.clone().oneshot(()).await.is_err());
    assert_eq!(rejected(), 2);

    // The breaker still works: it half-opens, closes, and its lock is sound.
    tokio::time::advance(Duration::from_secs(1)).await;
    ok.clone().oneshot(()).await.unwrap();
    assert_eq!(handle.state(), CircuitState::Closed);
    handle.force_open();
    handle.reset();
    assert_eq!(handle.snapshot().rejected, 2);
    use CircuitState::*;
    assert_eq!(
        *transitions.lock().unwrap(),
        [
            (Closed, Open),
            (Open, HalfOpen),
            (HalfOpen, Closed),
            (Closed, ForcedOpen),
            (ForcedOpen, Closed)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn bulkhead_listeners_survive_a_panicking_one() {
    let (rejections, rejected) = counter();
    let layer = BulkheadLayer::builder(1)
        .name("db")
        .on_rejection(|_| panic!("first rejection listener"))
        .on_rejection(move |r| {
            assert_eq!(r.name(), Some("db"));
            assert_eq!(r.reason(), FullReason::QueueFull);
            assert_eq!(r.error().max_concurrent(), 1);
            rejections.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(service_fn(|_: ()| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, std::io::Error>(())
    }));
    let busy = svc.ready().await.unwrap().call(());
    assert!(svc.ready().await.unwrap().call(()).await.is_err());
    assert!(svc.ready().await.unwrap().call(()).await.is_err());
    assert_eq!(rejected(), 2);
    busy.await.unwrap();
    // Still admits calls.
    svc.ready().await.unwrap().call(()).await.unwrap();
    let s = handle.snapshot();
    assert_eq!((s.admitted, s.rejected(), s.in_flight), (2, 2, 0));
}

#[tokio::test(start_paused = true)]
async fn retry_listeners_survive_a_panicking_one() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let config = RetryConfig::builder()
        .name("api")
        .max_attempts(3)
        .backoff(Backoff::fixed(Duration::from_millis(100)))
        .on_retry(|_| panic!("first retry listener"))
        .on_retry(move |r| {
            assert_eq!(r.name(), Some("api"));
            log.lock()
                .unwrap()
                .push((r.attempt(), r.delay(), r.reason()));
        })
        .build()
        .unwrap();
    let layer = RetryLayer::new(config);
    let calls = Arc::new(AtomicUsize::new(0));
    let n = calls.clone();
    let svc = layer.layer(service_fn(move |_: ()| {
        let n = n.fetch_add(1, Ordering::SeqCst);
        async move {
            if n < 2 {
                Err("down")
            } else {
                Ok(n)
            }
        }
    }));
    assert_eq!(svc.clone().oneshot(()).await.unwrap(), 2);
    let ms100 = Duration::from_millis(100);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (2, ms100, "retryable failure"),
            (3, ms100, "retryable failure")
        ]
    );
    assert_eq!(layer.handle().snapshot().retries, 2);
}

#[tokio::test(start_paused = true)]
async fn give_up_listeners_survive_a_panicking_one() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let config = RetryConfig::builder()
        .name("api")
        .max_attempts(2)
        .backoff(Backoff::fixed(Duration::ZERO))
        .on_give_up(|_| panic!("first give-up listener"))
        .on_give_up(move |g| {
            assert_eq!(g.name(), Some("api"));
            log.lock().unwrap().push((g.attempts(), g.reason()));
        })
        .build()
        .unwrap();
    let layer = RetryLayer::new(config);
    let svc = layer.layer(service_fn(|_: ()| async { Err::<(), _>("down") }));
    assert!(svc.clone().oneshot(()).await.is_err());
    assert!(svc.clone().oneshot(()).await.is_err());
    assert_eq!(
        *seen.lock().unwrap(),
        [(2, "attempts exhausted"), (2, "attempts exhausted")]
    );
    assert_eq!(layer.handle().snapshot().exhausted, 2);
}
