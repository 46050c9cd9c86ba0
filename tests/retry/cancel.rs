//! Dropping the response future cancels the call: no further attempt, the
//! attempt in flight is dropped, and a withdrawn retry goes back to the
//! budget.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use steadfast::retry::{RetryBudget, RetryLayer};
use steadfast::BoxError;
use tokio_test::{assert_pending, task};
use tower::{service_fn, Layer, Service, ServiceExt};

use crate::harness::{down, ms, quick, Calls, Counts};

/// Sets its flag when dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn dropped_during_the_backoff_no_further_attempt() {
    let calls = Calls::new();
    let layer = RetryLayer::new(quick().build().unwrap());
    let handle = layer.handle();
    let mut svc = layer.layer(down(&calls));
    svc.ready().await.unwrap();
    let mut call = task::spawn(svc.call(1));
    assert_pending!(call.poll(), "sleeping the 100 ms backoff");
    assert_eq!(calls.count(), 1);
    tokio::time::advance(ms(50)).await;
    assert_pending!(call.poll());
    drop(call);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(calls.count(), 1);
    // The retry was never sent: it is not counted as one.
    assert_eq!(Counts::of(&handle), Counts::call(1));
}

#[tokio::test(start_paused = true)]
async fn dropped_during_the_first_attempt_no_further_attempt() {
    let calls = Calls::new();
    let dropped = Arc::new(AtomicBool::new(false));
    let (log, flag) = (calls.clone(), dropped.clone());
    let slow = service_fn(move |_: u32| {
        log.record();
        let guard = DropFlag(flag.clone());
        async move {
            tokio::time::sleep(ms(1_000)).await;
            drop(guard);
            Err::<u32, BoxError>("too late".into())
        }
    });
    let layer = RetryLayer::new(quick().build().unwrap());
    let handle = layer.handle();
    let mut svc = layer.layer(slow);
    svc.ready().await.unwrap();
    let mut call = task::spawn(svc.call(1));
    assert_pending!(call.poll());
    tokio::time::advance(ms(500)).await;
    assert_pending!(call.poll());
    assert!(!dropped.load(Ordering::SeqCst));
    drop(call);
    assert!(
        dropped.load(Ordering::SeqCst),
        "the attempt in flight is dropped"
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(calls.count(), 1);
    assert_eq!(Counts::of(&handle), Counts::call(1));
}

#[tokio::test(start_paused = true)]
async fn dropped_during_a_retry_no_further_attempt() {
    let calls = Calls::new();
    let log = calls.clone();
    let slow = service_fn(move |_: u32| {
        log.record();
        async move {
            tokio::time::sleep(ms(1_000)).await;
            Err::<u32, BoxError>("slow failure".into())
        }
    });
    let layer = RetryLayer::new(quick().max_attempts(5).build().unwrap());
    let handle = layer.handle();
    let mut svc = layer.layer(slow);
    svc.ready().await.unwrap();
    let mut call = task::spawn(svc.call(1));
    assert_pending!(call.poll());
    tokio::time::advance(ms(1_000)).await; // attempt 1 fails
    assert_pending!(call.poll());
    tokio::time::advance(ms(100)).await; // the backoff ends, attempt 2 starts
    assert_pending!(call.poll());
    assert_eq!(calls.count(), 2);
    tokio::time::advance(ms(500)).await;
    assert_pending!(call.poll());
    drop(call);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(calls.count(), 2);
    assert_eq!(Counts::of(&handle), Counts::call(2));
}

/// A retry withdrawn from the budget but not sent yet goes back to it.
#[tokio::test(start_paused = true)]
async fn dropped_during_the_backoff_refunds_the_budget() {
    let budget = RetryBudget::default();
    let calls = Calls::new();
    let layer = RetryLayer::new(quick().budget(budget.clone()).build().unwrap());
    let mut svc = layer.layer(down(&calls));
    svc.ready().await.unwrap();
    let mut call = task::spawn(svc.call(1));
    assert_pending!(call.poll(), "sleeping the 100 ms backoff");
    let sleeping = budget.snapshot();
    assert_eq!(sleeping.retries, 1);
    assert_eq!(sleeping.refunded, 0);
    drop(call);
    let after = budget.snapshot();
    assert_eq!(after.refunded, 1);
    assert_eq!(after.retries, 0, "the refunded retry counts no more");
    assert_eq!(after.available, sleeping.available + 1);
    // The layer's handle reads the same budget.
    assert_eq!(layer.handle().snapshot().budget, Some(after));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(calls.count(), 1);
}

/// A retry that was sent is not refunded when the call is dropped later.
#[tokio::test(start_paused = true)]
async fn dropped_during_a_retry_keeps_the_withdrawal() {
    let budget = RetryBudget::default();
    let calls = Calls::new();
    let log = calls.clone();
    let slow = service_fn(move |_: u32| {
        let n = log.record();
        async move {
            if n > 1 {
                tokio::time::sleep(ms(1_000)).await;
            }
            Err::<u32, BoxError>("failure".into())
        }
    });
    let layer = RetryLayer::new(quick().budget(budget.clone()).build().unwrap());
    let mut svc = layer.layer(slow);
    svc.ready().await.unwrap();
    let mut call = task::spawn(svc.call(1));
    assert_pending!(call.poll());
    tokio::time::advance(ms(100)).await;
    assert_pending!(call.poll());
    assert_eq!(calls.count(), 2, "the retry is in flight");
    let before = budget.snapshot();
    drop(call);
    assert_eq!(budget.snapshot(), before);
    assert_eq!(before.refunded, 0);
}
