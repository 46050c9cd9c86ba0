//! When each hedge goes, and which result the call returns.

use steadfast::hedge::{future::ResponseFuture, HedgeLayer};
use steadfast::retry::{CloneRequest, RetryIf};
use steadfast::BoxError;
use tokio::time::Instant;
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::{Layer, Service, ServiceExt};

use crate::harness::{counts, fixed, ms, Backend, Step};

#[tokio::test(start_paused = true)]
async fn hedges_go_at_each_delay_and_the_first_answer_wins() {
    crate::support::trace_init();
    // Attempt 0 hangs, attempt 1 takes 500 ms, attempt 2 takes 30 ms.
    let backend = Backend::new(&[Step::Hang, Step::Ok(500), Step::Ok(30)]);
    let layer = HedgeLayer::new(fixed(100, 3).build().unwrap());
    let handle = layer.handle();
    let mut svc = layer.layer(backend.service());

    let start = Instant::now();
    svc.ready().await.unwrap();
    let mut call = task::spawn(svc.call(1));
    assert_pending!(call.poll());
    assert_eq!(backend.sent_ms(), [0]);
    tokio::time::advance(ms(99)).await;
    assert_pending!(call.poll());
    assert_eq!(backend.sent_ms(), [0], "no hedge before the delay");
    tokio::time::advance(ms(1)).await;
    assert!(call.is_woken(), "the timer wakes the call");
    assert_pending!(call.poll());
    assert_eq!(backend.sent_ms(), [0, 100]);
    tokio::time::advance(ms(100)).await;
    assert_pending!(call.poll());
    assert_eq!(
        backend.sent_ms(),
        [0, 100, 200],
        "the next delay runs from the last hedge"
    );
    tokio::time::advance(ms(30)).await;
    assert_eq!(
        assert_ready_ok!(call.poll()),
        2,
        "the fastest attempt answers"
    );
    assert_eq!(start.elapsed(), ms(230));
    // The two others were dropped with the answer, not when the caller
    // drops the future.
    assert_eq!(backend.cancelled(), [0, 1]);
    assert_eq!(counts(&handle.snapshot()), (1, 2, 1, 0, 0, 0));
    drop(call);
    tokio::time::advance(ms(1000)).await;
    assert_eq!(
        backend.sent_ms().len(),
        3,
        "max_attempts bounds the attempts"
    );
}

#[tokio::test(start_paused = true)]
async fn an_answer_before_the_delay_sends_no_hedge() {
    let backend = Backend::new(&[Step::Ok(100), Step::Ok(99)]);
    let layer = HedgeLayer::new(fixed(100, 2).build().unwrap());
    let handle = layer.handle();
    let svc = layer.layer(backend.service());

    // An answer at exactly the delay: the attempt is polled before the timer.
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), 0);
    assert_eq!(svc.oneshot(1).await.unwrap(), 1);
    assert_eq!(backend.sent_ms(), [0, 100]);
    assert!(backend.cancelled().is_empty());
    assert_eq!(counts(&handle.snapshot()), (2, 0, 0, 0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn the_first_attempt_may_still_win_after_a_hedge() {
    let backend = Backend::new(&[Step::Ok(120), Step::Ok(100)]);
    let layer = HedgeLayer::new(fixed(50, 2).build().unwrap());
    let handle = layer.handle();
    let start = Instant::now();
    assert_eq!(layer.layer(backend.service()).oneshot(1).await.unwrap(), 0);
    assert_eq!(start.elapsed(), ms(120));
    assert_eq!(backend.sent_ms(), [0, 50]);
    assert_eq!(backend.cancelled(), [1], "the losing hedge is dropped");
    assert_eq!(counts(&handle.snapshot()), (1, 1, 0, 0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_non_fatal_result_sends_the_next_hedge_at_once() {
    // Attempt 0 fails at 20 ms: the hedge goes then, not at 100 ms, and the
    // one after it 100 ms after that.
    let backend = Backend::new(&[Step::Err(20), Step::Hang, Step::Ok(10)]);
    let layer = HedgeLayer::new(fixed(100, 3).build().unwrap());
    let handle = layer.handle();
    let start = Instant::now();
    assert_eq!(layer.layer(backend.service()).oneshot(1).await.unwrap(), 2);
    assert_eq!(backend.sent_ms(), [0, 20, 120]);
    assert_eq!(start.elapsed(), ms(130));
    assert_eq!(backend.cancelled(), [1]);
    assert_eq!(counts(&handle.snapshot()), (1, 2, 1, 0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn when_every_attempt_fails_the_last_failure_is_returned() {
    let backend = Backend::new(&[Step::Err(300), Step::Err(10)]);
    let layer = HedgeLayer::new(fixed(100, 2).build().unwrap());
    let start = Instant::now();
    let err = layer.layer(backend.service()).oneshot(1).await.unwrap_err();
    // The hedge failed at 110 ms; the first attempt went on and failed last.
    assert_eq!(err.to_string(), "attempt 0 failed");
    assert_eq!(start.elapsed(), ms(300));
    assert_eq!(backend.sent_ms(), [0, 100]);
}

#[tokio::test(start_paused = true)]
async fn a_fatal_failure_is_the_answer_and_cancels_the_others() {
    // Only errors mentioning "unavailable" are non-fatal.
    let backend = Backend::new(&[Step::Hang, Step::Err(10)]);
    let on = RetryIf::new(
        |r: &Result<usize, BoxError>| matches!(r, Err(e) if e.to_string().contains("unavailable")),
    );
    let layer = HedgeLayer::with_policy(fixed(100, 3).build().unwrap(), on, CloneRequest);
    let start = Instant::now();
    let err = layer.layer(backend.service()).oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "attempt 1 failed");
    assert_eq!(start.elapsed(), ms(110));
    assert_eq!(backend.cancelled(), [0]);
}

#[tokio::test(start_paused = true)]
async fn a_zero_delay_sends_every_attempt_at_once() {
    let backend = Backend::new(&[Step::Ok(30), Step::Ok(20), Step::Ok(10)]);
    let layer = HedgeLayer::new(fixed(0, 3).build().unwrap());
    assert_eq!(layer.layer(backend.service()).oneshot(1).await.unwrap(), 2);
    assert_eq!(backend.sent_ms(), [0, 0, 0]);
}

#[test]
fn response_future_size() {
    type Svc = tower::util::ServiceFn<fn(u32) -> std::future::Ready<Result<u32, BoxError>>>;
    type Fut = ResponseFuture<Svc, steadfast::retry::RetryFailures, CloneRequest, u32>;
    let size = std::mem::size_of::<Fut>();
    println!("hedge ResponseFuture over an always-ready service_fn(u32): {size} bytes");
    assert!(size <= 256, "{size} bytes");
}
