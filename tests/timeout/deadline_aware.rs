//! `TimeoutLayer::deadline_aware`: the attempt's timer is
//! `min(timeout, time left before the request's deadline)`, and the error
//! says which of the two ran out.

use std::time::Duration;

use steadfast::deadline::{CarriesDeadline, Deadline};
use steadfast::timeout::error::{DeadlineExceeded, Elapsed};
use steadfast::timeout::TimeoutLayer;
use tokio::time::Instant;
use tokio_test::task;
use tower::{Layer, ServiceExt};
use tower_service::Service;

use super::{answering, finishes_at, hanging, ms, poll_until, Log};

fn request_with_deadline(at: Instant) -> http::Request<()> {
    let mut req = http::Request::new(());
    req.set_deadline(Deadline::at(at));
    req
}

#[tokio::test(start_paused = true)]
async fn a_deadline_earlier_than_the_timeout_ends_the_attempt_with_deadline_exceeded() {
    let log = Log::default();
    let mut svc = TimeoutLayer::new(Duration::from_secs(1))
        .unwrap()
        .deadline_aware()
        .layer(hanging(&log));
    let start = Instant::now();
    let req = request_with_deadline(start + ms(300));
    let mut fut = task::spawn(svc.ready().await.unwrap().call(req));

    let err = finishes_at(&mut fut, start + ms(300)).await.unwrap_err();
    assert!(err.downcast_ref::<Elapsed>().is_none());
    // This layer did not set the deadline, so it does not know the budget.
    assert_eq!(
        *err.downcast::<DeadlineExceeded>().unwrap(),
        DeadlineExceeded::new(None)
    );
    assert!(log.get()[0].dropped.is_set());
}

#[tokio::test(start_paused = true)]
async fn a_deadline_later_than_the_timeout_leaves_the_timeout_in_charge() {
    let log = Log::default();
    let mut svc = TimeoutLayer::new(Duration::from_secs(1))
        .unwrap()
        .deadline_aware()
        .layer(hanging(&log));
    let start = Instant::now();
    let req = request_with_deadline(start + Duration::from_secs(5));
    let mut fut = task::spawn(svc.ready().await.unwrap().call(req));

    let err = finishes_at(&mut fut, start + Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(
        *err.downcast::<Elapsed>().unwrap(),
        Elapsed::new(Duration::from_secs(1))
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_without_a_deadline_gets_the_timeout() {
    let log = Log::default();
    let mut svc = TimeoutLayer::new(ms(400))
        .unwrap()
        .deadline_aware()
        .layer(hanging(&log));
    let start = Instant::now();
    let mut fut = task::spawn(svc.ready().await.unwrap().call(http::Request::new(())));

    let err = finishes_at(&mut fut, start + ms(400)).await.unwrap_err();
    assert!(err.is::<Elapsed>());
}

#[tokio::test(start_paused = true)]
async fn a_plain_timeout_ignores_the_requests_deadline() {
    let log = Log::default();
    let mut svc = TimeoutLayer::new(Duration::from_secs(1))
        .unwrap()
        .layer(hanging(&log));
    let start = Instant::now();
    let req = request_with_deadline(start + ms(300));
    let mut fut = task::spawn(svc.ready().await.unwrap().call(req));

    let err = finishes_at(&mut fut, start + Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(err.is::<Elapsed>());
}

#[tokio::test(start_paused = true)]
async fn a_deadline_already_passed_fails_on_the_first_poll_unless_the_response_is_ready() {
    let start = Instant::now();
    tokio::time::advance(ms(50)).await;
    let now = Instant::now();

    let log = Log::default();
    let mut svc = TimeoutLayer::new(Duration::from_secs(1))
        .unwrap()
        .deadline_aware()
        .layer(hanging(&log));
    let mut fut = task::spawn(
        svc.ready()
            .await
            .unwrap()
            .call(request_with_deadline(start)),
    );
    match poll_until(&mut fut, now).await {
        std::task::Poll::Ready(Err(err)) => assert!(err.is::<DeadlineExceeded>()),
        other => panic!("expected DeadlineExceeded at once, got {other:?}"),
    }
    assert_eq!(Instant::now(), now);

    // The inner future is polled first: a response ready at once still wins.
    let svc = TimeoutLayer::new(Duration::from_secs(1))
        .unwrap()
        .deadline_aware()
        .layer(answering(&log));
    let answer = svc.oneshot(request_with_deadline(start)).await.unwrap();
    assert_eq!(answer, "answered");
    assert_eq!(log.get().len(), 2, "the inner service is called either way");
}
