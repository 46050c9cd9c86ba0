//! A deadline over retries: `DeadlineLayer → RetryLayer → slow failing
//! service`, attempt by attempt on virtual time.
//!
//! Retry reads the deadline the outer layer wrote into the request: it
//! never starts a backoff that would end at or after the deadline (and then
//! returns the last failure at once), and an attempt still running when the
//! deadline passes is cut by the deadline layer.

use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use steadfast::deadline::Deadline;
use steadfast::retry::body::ReplayBody;
use steadfast::retry::{Backoff, CloneWithDeadline, RetryConfig, RetryLayer};
use steadfast::timeout::error::DeadlineExceeded;
use steadfast::timeout::DeadlineLayer;
use tokio::time::Instant;
use tokio_test::task;
use tower::{Layer, ServiceExt};
use tower_service::Service;

use super::{finishes_at, grpc_request, ms, Log, Seen};

/// Records each attempt, then fails it with "connection reset" after `after`.
fn failing_after<B>(
    log: &Log<Seen>,
    after: Duration,
) -> impl Service<
    http::Request<B>,
    Response = http::Response<()>,
    Error = io::Error,
    Future = impl Future<Output = Result<http::Response<()>, io::Error>>,
> + Clone {
    let log = log.clone();
    tower::service_fn(move |req: http::Request<B>| {
        let guard = log.record(&req);
        async move {
            let _guard = guard;
            tokio::time::sleep(after).await;
            Err(io::Error::other("connection reset"))
        }
    })
}

/// `max_attempts` attempts, `backoff` apart, no budget (every retry the
/// rules allow is sent).
fn config(max_attempts: u32, backoff: Duration) -> RetryConfig {
    RetryConfig::builder()
        .max_attempts(max_attempts)
        .backoff(Backoff::fixed(backoff))
        .no_budget()
        .build()
        .unwrap()
}

/// `svc.ready()`, with the request type named: `HttpReplay` replays
/// `reqwest::Request` too (feature `reqwest`), so a retry service's request
/// type is not inferred from the service alone.
async fn ready<S>(svc: &mut S) -> &mut S
where
    S: Service<http::Request<Empty<Bytes>>>,
    S::Error: std::fmt::Debug,
{
    ServiceExt::<http::Request<Empty<Bytes>>>::ready(svc)
        .await
        .unwrap()
}

fn get() -> http::Request<Empty<Bytes>> {
    http::Request::get("http://svc/items/1")
        .body(Empty::new())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn three_attempts_and_their_backoffs_fit_in_the_deadline() {
    // 200 ms attempts, 100 ms apart: [0, 200] [300, 500] [600, 800].
    let log = Log::default();
    let retry = RetryLayer::new(config(3, ms(100))).with_replay(CloneWithDeadline);
    let handle = retry.handle();
    let mut svc = DeadlineLayer::new(Duration::from_secs(1))
        .unwrap()
        .layer(retry.layer(failing_after(&log, ms(200))));
    let start = Instant::now();
    let mut fut = task::spawn(svc.ready().await.unwrap().call(http::Request::new(())));

    let err = finishes_at(&mut fut, start + ms(800)).await.unwrap_err();
    assert_eq!(err.to_string(), "connection reset", "the last failure");
    assert_eq!(log.arrivals(start), [0, 300, 600].map(ms));
    let deadline = Some(Deadline::at(start + Duration::from_secs(1)));
    assert!(log.get().iter().all(|s| s.deadline == deadline));
    let snapshot = handle.snapshot();
    assert_eq!((snapshot.attempts, snapshot.retries), (3, 2), "{snapshot}");
    assert_eq!(
        (snapshot.exhausted, snapshot.deadline_reached),
        (1, 0),
        "{snapshot}"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_stops_when_the_next_attempt_would_start_at_the_deadline() {
    // 400 ms attempts, 100 ms apart: [0, 400] [500, 900]; a third would
    // start at 1.0 s, at the deadline, so the second failure is returned at
    // 0.9 s rather than DeadlineExceeded at 1.0 s.
    let log = Log::default();
    let retry = RetryLayer::http(config(10, ms(100)));
    let handle = retry.handle();
    let mut svc = DeadlineLayer::new(Duration::from_secs(1))
        .unwrap()
        .layer(retry.layer(failing_after::<ReplayBody<Empty<Bytes>>>(&log, ms(400))));
    let start = Instant::now();
    let mut fut = task::spawn(ready(&mut svc).await.call(get()));

    let err = finishes_at(&mut fut, start + ms(900)).await.unwrap_err();
    assert!(!err.is::<DeadlineExceeded>());
    assert_eq!(err.to_string(), "connection reset");
    assert_eq!(log.arrivals(start), [0, 500].map(ms));
    let snapshot = handle.snapshot();
    assert_eq!((snapshot.attempts, snapshot.retries), (2, 1), "{snapshot}");
    assert_eq!(snapshot.deadline_reached, 1, "{snapshot}");
}

#[tokio::test(start_paused = true)]
async fn an_attempt_in_flight_at_the_deadline_is_cut_exactly_at_the_deadline() {
    // 300 ms attempts, 100 ms apart: [0, 300] [400, 700] [800, 1100), cut
    // at 1.0 s by the deadline.
    for http_replay in [false, true] {
        let log = Log::default();
        let start = Instant::now();
        let err = if http_replay {
            let retry = RetryLayer::http(config(10, ms(100)));
            let mut svc = DeadlineLayer::new(Duration::from_secs(1))
                .unwrap()
                .layer(retry.layer(failing_after::<ReplayBody<Empty<Bytes>>>(&log, ms(300))));
            let mut fut = task::spawn(ready(&mut svc).await.call(get()));
            let err = finishes_at(&mut fut, start + Duration::from_secs(1))
                .await
                .unwrap_err();
            // Checked before the response future is dropped.
            assert!(
                log.get()[2].dropped.is_set(),
                "the third attempt was dropped"
            );
            err
        } else {
            let retry = RetryLayer::new(config(10, ms(100))).with_replay(CloneWithDeadline);
            let mut svc = DeadlineLayer::new(Duration::from_secs(1))
                .unwrap()
                .layer(retry.layer(failing_after(&log, ms(300))));
            let mut fut = task::spawn(svc.ready().await.unwrap().call(http::Request::new(())));
            let err = finishes_at(&mut fut, start + Duration::from_secs(1))
                .await
                .unwrap_err();
            assert!(
                log.get()[2].dropped.is_set(),
                "the third attempt was dropped"
            );
            err
        };
        assert_eq!(
            *err.downcast::<DeadlineExceeded>().unwrap(),
            DeadlineExceeded::new(Some(Duration::from_secs(1))),
            "http_replay: {http_replay}"
        );
        assert_eq!(log.arrivals(start), [0, 400, 800].map(ms));
    }
}

#[tokio::test(start_paused = true)]
async fn retry_that_cannot_see_the_deadline_starts_an_attempt_the_deadline_cuts_at_once() {
    // `RetryLayer::new` without `CloneWithDeadline` does not read the
    // deadline: with 400 ms attempts, 100 ms apart, it starts a third
    // attempt at 1.0 s, which the deadline cuts in the same instant.
    let log = Log::default();
    let retry = RetryLayer::new(config(10, ms(100)));
    let mut svc = DeadlineLayer::new(Duration::from_secs(1))
        .unwrap()
        .layer(retry.layer(failing_after(&log, ms(400))));
    let start = Instant::now();
    let mut fut = task::spawn(svc.ready().await.unwrap().call(http::Request::new(())));

    let err = finishes_at(&mut fut, start + Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(log.arrivals(start), [0, 500, 1000].map(ms));
    assert!(log.get()[2].dropped.is_set());
}

/// Every attempt of a retried gRPC call should tell the server the time
/// the caller has left. The deadline layer writes `grpc-timeout` once,
/// before the first attempt, and retry rewrites it for each retry: the
/// second attempt, sent at 0.5 s, says 0.5 s. (The call is marked
/// idempotent: its failures prove nothing about whether it ran, so an
/// unmarked call would not be retried at all.)
#[tokio::test(start_paused = true)]
async fn each_retried_grpc_attempt_carries_the_time_left() {
    let log = Log::default();
    let retry = RetryLayer::grpc(config(2, ms(100)));
    let mut svc = DeadlineLayer::new(Duration::from_secs(1))
        .unwrap()
        .layer(retry.layer(failing_after::<ReplayBody<Empty<Bytes>>>(&log, ms(400))));
    let start = Instant::now();
    let mut req = grpc_request().map(|()| Empty::<Bytes>::new());
    req.extensions_mut().insert(steadfast::retry::Idempotent);
    let mut fut = task::spawn(ready(&mut svc).await.call(req));

    let _ = finishes_at(&mut fut, start + ms(900)).await;
    let sent: Vec<_> = log.get().into_iter().map(|s| s.grpc_timeout).collect();
    assert_eq!(
        sent,
        [
            Some(http::HeaderValue::from_static("1000000u")),
            Some(http::HeaderValue::from_static("500000u")),
        ]
    );
}
