//! A deadline-aware per-attempt timeout tells the server what *its* timer
//! allows: each gRPC request leaves with `grpc-timeout` =
//! `min(time left, attempt timeout)`, exact to the microsecond on paused
//! time — not the whole call's time left, which the server would otherwise
//! keep working for after the attempt was cut.

use std::convert::Infallible;
use std::future::Ready;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use http_body_util::Empty;
use steadfast::deadline::grpc_timeout::GRPC_TIMEOUT;
use steadfast::deadline::{CarriesDeadline, Deadline};
use steadfast::retry::{Backoff, RetryConfig, RetryLayer};
use steadfast::timeout::{DeadlineLayer, TimeoutLayer};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};
use tower_service::Service;

use super::{answering, grpc_request, ms, Log, Seen};

/// The `grpc-timeout` of each request the inner service saw, as text.
fn sent(log: &Log<Seen>) -> Vec<Option<String>> {
    log.get()
        .into_iter()
        .map(|s| s.grpc_timeout.map(|v| v.to_str().unwrap().to_owned()))
        .collect()
}

fn some(values: &[&str]) -> Vec<Option<String>> {
    values.iter().map(|v| Some((*v).to_owned())).collect()
}

/// A deadline-aware `timeout` over a service that records and answers.
fn aware(
    timeout: Duration,
    log: &Log<Seen>,
) -> impl Service<http::Request<()>, Response = &'static str, Error = steadfast::BoxError> + Clone {
    TimeoutLayer::new(timeout)
        .unwrap()
        .deadline_aware()
        .layer(answering(log))
}

#[tokio::test(start_paused = true)]
async fn the_attempt_timeout_is_written_when_shorter_than_the_time_left() {
    // The case: a 2 s deadline, 300 ms per attempt. The server saw
    // `2000000u` before; the attempt is cut at 300 ms, so it must see that.
    let log = Log::default();
    let attempt = TimeoutLayer::new(ms(300)).unwrap().deadline_aware();
    let svc = DeadlineLayer::new(ms(2000))
        .unwrap()
        .layer(attempt.layer(answering(&log)));

    svc.oneshot(grpc_request()).await.unwrap();
    assert_eq!(sent(&log), some(&["300000u"]));
}

#[tokio::test(start_paused = true)]
async fn the_time_left_is_written_when_shorter_than_the_attempt_timeout() {
    let log = Log::default();
    let svc = aware(ms(300), &log);
    let start = Instant::now();
    let mut req = grpc_request();
    req.set_deadline(Deadline::at(start + ms(200)));
    tokio::time::advance(ms(50)).await;

    svc.oneshot(req).await.unwrap();
    assert_eq!(sent(&log), some(&["150000u"]));
}

#[tokio::test(start_paused = true)]
async fn without_a_deadline_the_attempt_timeout_is_written() {
    let log = Log::default();
    let svc = aware(ms(250), &log);
    svc.oneshot(grpc_request()).await.unwrap();
    assert_eq!(sent(&log), some(&["250000u"]));
}

#[tokio::test(start_paused = true)]
async fn a_shorter_grpc_timeout_already_on_the_request_is_kept() {
    // tonic's `Request::set_timeout(100ms)` wrote `100m`: a 300 ms attempt
    // timeout must not lengthen what the caller asked for; a longer one
    // already there is shortened.
    let log = Log::default();
    let svc = aware(ms(300), &log);
    for value in ["100m", "5S", "garbage"] {
        let mut req = grpc_request();
        req.headers_mut()
            .insert(GRPC_TIMEOUT, HeaderValue::from_static(value));
        svc.clone().oneshot(req).await.unwrap();
    }
    assert_eq!(sent(&log), some(&["100m", "300000u", "300000u"]));
}

#[tokio::test(start_paused = true)]
async fn a_plain_timeout_and_other_requests_get_no_grpc_timeout() {
    let log = Log::default();
    // Not deadline-aware: the layer knows nothing of requests.
    let plain = TimeoutLayer::new(ms(300)).unwrap().layer(answering(&log));
    plain.oneshot(grpc_request()).await.unwrap();
    // Deadline-aware, but not gRPC.
    let aware = aware(ms(300), &log);
    let json = http::Request::post("http://svc/api")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(())
        .unwrap();
    aware.oneshot(json).await.unwrap();
    assert_eq!(sent(&log), [None, None]);
}

/// Records each attempt and answers UNAVAILABLE at once (trailers-only).
fn unavailable<B>(
    log: &Log<Seen>,
) -> impl Service<
    http::Request<B>,
    Response = http::Response<()>,
    Error = Infallible,
    Future = Ready<Result<http::Response<()>, Infallible>>,
> + Clone {
    let log = log.clone();
    tower::service_fn(move |req: http::Request<B>| {
        drop(log.record(&req));
        let res = http::Response::builder()
            .header("grpc-status", "14")
            .body(())
            .unwrap();
        std::future::ready(Ok(res))
    })
}

#[tokio::test(start_paused = true)]
async fn over_retries_each_attempt_gets_the_smaller_of_the_time_left_and_its_timeout() {
    // Deadline 1 s, 400 ms per attempt, attempts 300 ms apart: at 0, 300,
    // 600 and 900 ms the time left is 1000, 700, 400 and 100 ms.
    let log = Log::default();
    let retry = RetryLayer::grpc(
        RetryConfig::builder()
            .max_attempts(4)
            .backoff(Backoff::fixed(ms(300)))
            .no_budget()
            .build()
            .unwrap(),
    );
    let attempt = TimeoutLayer::new(ms(400)).unwrap().deadline_aware();
    let svc = DeadlineLayer::new(ms(1000))
        .unwrap()
        .layer(retry.layer(attempt.layer(unavailable(&log))));
    let start = Instant::now();
    let req = http::Request::post("http://svc/pkg.Service/Method")
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .body(Empty::<Bytes>::new())
        .unwrap();

    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "14", "the last answer");
    assert_eq!(log.arrivals(start), [0, 300, 600, 900].map(ms));
    assert_eq!(
        sent(&log),
        some(&["400000u", "400000u", "400000u", "100000u"])
    );
}
