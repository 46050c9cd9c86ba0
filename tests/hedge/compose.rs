//! Each hedge is a separate call on the inner service: the bulkhead gives
//! it a slot (and takes it back from a loser), the breaker sees it.

use steadfast::bulkhead::BulkheadLayer;
use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use steadfast::hedge::HedgeLayer;
use steadfast::retry::RetryBudget;
use tokio::time::Instant;
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::{Layer, Service, ServiceExt};

use crate::harness::{counts, fixed, ms, Backend, Step};

#[tokio::test(start_paused = true)]
async fn each_hedge_takes_a_bulkhead_slot_and_losers_give_it_back() {
    let backend = Backend::new(&[Step::Hang, Step::Ok(10)]);
    let bulkhead = BulkheadLayer::new(10).unwrap();
    let slots = bulkhead.handle();
    let layer = HedgeLayer::new(fixed(100, 2).build().unwrap());
    let mut svc = layer.layer(bulkhead.layer(backend.service()));
    svc.ready().await.unwrap();
    let mut call = task::spawn(svc.call(1));
    assert_pending!(call.poll());
    assert_eq!(slots.in_flight(), 1);
    tokio::time::advance(ms(100)).await;
    assert_pending!(call.poll());
    assert_eq!(slots.in_flight(), 2, "the hedge holds a slot of its own");
    tokio::time::advance(ms(10)).await;
    assert_eq!(assert_ready_ok!(call.poll()), 1);
    assert_eq!(
        slots.in_flight(),
        0,
        "the loser's slot is back with the answer"
    );
    assert_eq!(backend.cancelled(), [0]);
}

#[tokio::test(start_paused = true)]
async fn a_hedge_the_bulkhead_rejects_is_refunded_and_the_first_attempt_still_answers() {
    let backend = Backend::new(&[Step::Ok(300)]);
    let bulkhead = BulkheadLayer::new(1).unwrap();
    let budget = RetryBudget::default();
    let layer = HedgeLayer::new(fixed(100, 2).budget(budget.clone()).build().unwrap());
    let handle = layer.handle();
    let svc = layer.layer(bulkhead.layer(backend.service()));
    let start = Instant::now();
    assert_eq!(svc.oneshot(1).await.unwrap(), 0);
    assert_eq!(start.elapsed(), ms(300));
    assert_eq!(
        backend.sent_ms(),
        [0],
        "the hedge never reached the backend"
    );
    // The hedge was sent to the bulkhead, which refused it: given back.
    assert_eq!(counts(&handle.snapshot()), (1, 1, 0, 0, 0, 0));
    let b = budget.snapshot();
    assert_eq!((b.retries, b.refunded), (0, 1), "{b:?}");
}

#[tokio::test(start_paused = true)]
async fn a_rejection_of_the_first_attempt_is_returned_at_once() {
    let backend = Backend::new(&[Step::Err(1)]);
    let breaker = CircuitBreakerLayer::new(
        CircuitBreakerConfig::builder()
            .consecutive_failures(1)
            .build()
            .unwrap(),
    );
    let layer = HedgeLayer::new(fixed(100, 2).build().unwrap());
    let handle = layer.handle();
    let svc = layer.layer(breaker.layer(backend.service()));
    // Trip the breaker (the hedge layer treats the failure as non-fatal and
    // hedges at once; the hedge is rejected by the open breaker).
    let err = svc.clone().oneshot(1).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "attempt 0 failed",
        "the backend's failure, not ours"
    );
    let start = Instant::now();
    let err = svc.oneshot(1).await.unwrap_err();
    assert!(
        steadfast::is_caused_by::<steadfast::CircuitOpen>(err.as_ref()),
        "{err}"
    );
    assert_eq!(start.elapsed(), ms(0), "fail fast, no waiting for a hedge");
    assert_eq!(backend.sent_ms(), [0]);
    assert_eq!(counts(&handle.snapshot()).1, 1);
}

#[tokio::test(start_paused = true)]
async fn service_builder_hedge_sits_outside_the_bulkhead() {
    use steadfast::ServiceBuilderExt as _;

    let backend = Backend::new(&[Step::Hang, Step::Ok(10)]);
    let svc = tower::ServiceBuilder::new()
        .hedge(fixed(100, 2).build().unwrap())
        .bulkhead(4)
        .unwrap()
        .service(backend.service());
    let start = Instant::now();
    assert_eq!(svc.oneshot(1).await.unwrap(), 1);
    assert_eq!(start.elapsed(), ms(110));
    assert_eq!(backend.cancelled(), [0]);
}
