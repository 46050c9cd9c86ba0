//! `Timeout` alone: when its timer fires and what happens then.

use std::convert::Infallible;
use std::io;
use std::time::Duration;

use steadfast::timeout::error::Elapsed;
use steadfast::timeout::TimeoutLayer;
use steadfast::BoxError;
use tokio::time::Instant;
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::{Layer, ServiceExt};
use tower_service::Service;
use tower_test::mock;

use super::{finishes_at, ms, poll_until, support, DropFlag};

/// Answers `"response"` after `after`; the future holds a guard of `dropped`.
fn answers_after(
    after: Duration,
    dropped: &DropFlag,
) -> impl Service<(), Response = &'static str, Error = Infallible> {
    let dropped = dropped.clone();
    tower::service_fn(move |()| {
        let guard = dropped.guard();
        async move {
            let _guard = guard;
            tokio::time::sleep(after).await;
            Ok("response")
        }
    })
}

fn elapsed(err: BoxError) -> Elapsed {
    *err.downcast::<Elapsed>()
        .unwrap_or_else(|e| panic!("expected Elapsed, got {e}"))
}

#[tokio::test(start_paused = true)]
async fn elapsed_fires_exactly_at_the_timeout_not_a_tick_earlier() {
    support::trace_init();
    let flag = DropFlag::default();
    let mut svc = TimeoutLayer::new(ms(500))
        .unwrap()
        .layer(answers_after(Duration::from_secs(10), &flag));
    let start = Instant::now();
    let mut fut = task::spawn(svc.ready().await.unwrap().call(()));

    let err = finishes_at(&mut fut, start + ms(500)).await.unwrap_err();
    assert_eq!(err.to_string(), "attempt timed out after 500ms");
    assert_eq!(elapsed(err), Elapsed::new(ms(500)));
}

#[tokio::test(start_paused = true)]
async fn a_response_that_arrives_first_wins() {
    let flag = DropFlag::default();
    let mut svc = TimeoutLayer::new(ms(500))
        .unwrap()
        .layer(answers_after(ms(300), &flag));
    let start = Instant::now();
    let mut fut = task::spawn(svc.ready().await.unwrap().call(()));

    assert_eq!(
        finishes_at(&mut fut, start + ms(300)).await.unwrap(),
        "response"
    );
}

#[tokio::test(start_paused = true)]
async fn a_response_ready_at_the_same_instant_as_the_timer_wins() {
    // Both timers fire in the same turn of the timer driver; the inner
    // future is polled first, so the response is returned, not `Elapsed`.
    let flag = DropFlag::default();
    let mut svc = TimeoutLayer::new(ms(500))
        .unwrap()
        .layer(answers_after(ms(500), &flag));
    let start = Instant::now();
    let mut fut = task::spawn(svc.ready().await.unwrap().call(()));

    assert_eq!(
        finishes_at(&mut fut, start + ms(500)).await.unwrap(),
        "response"
    );
}

#[tokio::test(start_paused = true)]
async fn the_inner_future_is_dropped_when_the_timer_fires() {
    let flag = DropFlag::default();
    let mut svc = TimeoutLayer::new(ms(500))
        .unwrap()
        .layer(answers_after(Duration::from_secs(10), &flag));
    let start = Instant::now();
    let mut fut = task::spawn(svc.ready().await.unwrap().call(()));

    assert!(poll_until(&mut fut, start + ms(499)).await.is_pending());
    assert!(!flag.is_set(), "the inner future is alive while it runs");
    let result = poll_until(&mut fut, start + ms(500)).await;
    assert!(matches!(result, std::task::Poll::Ready(Err(_))));
    // The response future itself is still alive here: the inner future was
    // dropped by the timer firing, not by dropping the response future.
    assert!(flag.is_set(), "the inner future was dropped at once");
    drop(fut);
}

#[tokio::test(start_paused = true)]
async fn the_timer_starts_in_call_not_in_poll_ready() {
    let (mut svc, mut handle) =
        mock::spawn_layer::<(), &'static str, _>(TimeoutLayer::new(ms(500)).unwrap());

    // Not ready for two seconds: that wait is not charged to the attempt.
    handle.allow(0);
    assert_pending!(svc.poll_ready());
    let waited = Instant::now() + Duration::from_secs(2);
    while Instant::now() < waited {
        tokio::time::advance(ms(100)).await;
        assert_pending!(svc.poll_ready());
    }
    handle.allow(1);
    assert!(svc.is_woken(), "allowing a call wakes the caller");
    assert_ready_ok!(svc.poll_ready());

    let called = Instant::now();
    let mut fut = task::spawn(svc.call(()));
    let (_request, _send_response) = handle
        .next_request()
        .await
        .expect("the call reached the mock");
    let err = finishes_at(&mut fut, called + ms(500)).await.unwrap_err();
    assert_eq!(elapsed(err).timeout(), ms(500));
}

#[tokio::test(start_paused = true)]
async fn errors_of_the_inner_service_pass_through() {
    let svc = TimeoutLayer::new(ms(500))
        .unwrap()
        .layer(tower::service_fn(|()| async {
            Err::<(), _>(io::Error::other("refused"))
        }));
    let start = Instant::now();
    let err = svc.oneshot(()).await.unwrap_err();
    assert_eq!(Instant::now(), start);
    assert!(err.downcast_ref::<Elapsed>().is_none());
    assert_eq!(
        err.downcast_ref::<io::Error>().unwrap().to_string(),
        "refused"
    );
}

#[tokio::test(start_paused = true)]
async fn each_call_gets_its_own_timer() {
    // A call made later times out later: the timer is per call, not per service.
    let flag = DropFlag::default();
    let mut svc = TimeoutLayer::new(ms(500))
        .unwrap()
        .layer(answers_after(Duration::from_secs(10), &flag));
    let start = Instant::now();
    let mut first = task::spawn(svc.ready().await.unwrap().call(()));
    assert!(poll_until(&mut first, start + ms(200)).await.is_pending());
    let mut second = task::spawn(svc.ready().await.unwrap().call(()));

    assert!(finishes_at(&mut first, start + ms(500)).await.is_err());
    assert!(finishes_at(&mut second, start + ms(700)).await.is_err());
}
