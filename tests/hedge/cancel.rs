//! Dropping the response future cancels the call: every attempt in flight
//! is dropped, a hedge withdrawn but not sent goes back to the budget, and
//! nothing counts as a failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use steadfast::hedge::{Hedge, HedgeHandle, HedgeLayer};
use steadfast::retry::{CloneRequest, RetryBudget, RetryFailures};
use steadfast::BoxError;
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::{Layer, Service, ServiceExt};

use crate::harness::{counts, fixed, ms, Backend, Reply, Step};

#[tokio::test(start_paused = true)]
async fn dropping_the_future_drops_every_attempt() {
    let backend = Backend::new(&[Step::Hang]);
    let breaker = CircuitBreakerLayer::new(
        CircuitBreakerConfig::builder()
            .consecutive_failures(1)
            .build()
            .unwrap(),
    );
    let breaker_handle = breaker.handle();
    let layer = HedgeLayer::new(fixed(100, 3).build().unwrap());
    let mut svc = layer.layer(breaker.layer(backend.service()));
    svc.ready().await.unwrap();
    let mut call = task::spawn(svc.call(1));
    assert_pending!(call.poll());
    tokio::time::advance(ms(100)).await;
    assert_pending!(call.poll());
    assert_eq!(backend.sent_ms(), [0, 100]);
    assert!(backend.cancelled().is_empty());
    drop(call);
    assert_eq!(backend.cancelled(), [0, 1]);
    tokio::time::advance(ms(1000)).await;
    assert_eq!(backend.sent_ms().len(), 2, "no hedge after the drop");
    // The breaker saw two cancelled calls, no failure: it stays closed.
    let s = breaker_handle.snapshot();
    assert_eq!((s.failures, s.cancelled), (0, 2), "{s:?}");
}

/// Ready for the first call made through it or its clones; then never.
#[derive(Clone)]
struct Gate {
    backend: Backend,
    used: Arc<AtomicBool>,
}

impl Service<u32> for Gate {
    type Response = usize;
    type Error = BoxError;
    type Future = Reply;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if !self.used.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        let _ = cx;
        Poll::Pending
    }

    fn call(&mut self, _: u32) -> Reply {
        self.used.store(true, Ordering::SeqCst);
        self.backend.attempt()
    }
}

fn budget() -> RetryBudget {
    RetryBudget::builder()
        .percent(0.0)
        .min_per_second(10)
        .build()
        .unwrap()
}

type GatedCall = task::Spawn<<Hedge<Gate, RetryFailures, CloneRequest> as Service<u32>>::Future>;

/// A call through a `Gate` whose first attempt follows `first`, polled
/// until its hedge, due at 100 ms, has been withdrawn and waits for the
/// service.
async fn gated_call(first: Step) -> (GatedCall, Backend, RetryBudget, HedgeHandle) {
    let backend = Backend::new(&[first]);
    let gate = Gate {
        backend: backend.clone(),
        used: Arc::default(),
    };
    let budget = budget();
    let layer = HedgeLayer::new(fixed(100, 2).budget(budget.clone()).build().unwrap());
    let handle = layer.handle();
    let mut svc = layer.layer(gate);
    svc.ready().await.unwrap();
    let mut call = task::spawn(svc.call(1));
    assert_pending!(call.poll());
    tokio::time::advance(ms(100)).await;
    assert_pending!(call.poll());
    assert_eq!(backend.sent_ms(), [0], "the hedge waits for the service");
    assert_eq!(budget.snapshot().retries, 1, "withdrawn");
    (call, backend, budget, handle)
}

#[tokio::test(start_paused = true)]
async fn a_hedge_waiting_for_readiness_is_refunded_when_the_call_is_dropped() {
    let (call, _backend, budget, handle) = gated_call(Step::Hang).await;
    drop(call);
    let b = budget.snapshot();
    assert_eq!((b.retries, b.refunded), (0, 1), "refunded: {b:?}");
    assert_eq!(counts(&handle.snapshot()), (1, 0, 0, 0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_hedge_waiting_for_readiness_is_refunded_when_the_first_answers() {
    let (mut call, backend, budget, _handle) = gated_call(Step::Ok(150)).await;
    tokio::time::advance(ms(50)).await;
    assert_eq!(assert_ready_ok!(call.poll()), 0);
    let b = budget.snapshot();
    assert_eq!((b.retries, b.refunded), (0, 1), "{b:?}");
    assert_eq!(backend.sent_ms(), [0]);
}

#[tokio::test(start_paused = true)]
async fn a_sent_hedge_that_loses_stays_spent() {
    // The budget bounds the load the backend received: a hedge that was
    // sent counts, win or lose.
    let backend = Backend::new(&[Step::Ok(150), Step::Ok(100)]);
    let budget = budget();
    let layer = HedgeLayer::new(fixed(100, 2).budget(budget.clone()).build().unwrap());
    assert_eq!(layer.layer(backend.service()).oneshot(1).await.unwrap(), 0);
    assert_eq!(backend.cancelled(), [1]);
    let b = budget.snapshot();
    assert_eq!((b.retries, b.refunded), (1, 0), "{b:?}");
}
