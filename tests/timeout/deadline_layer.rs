//! `DeadlineLayer`: the deadline it writes into the request, nested
//! deadlines, deadlines already passed, and `grpc-timeout` both ways.

use std::time::Duration;

use http::HeaderValue;
use steadfast::deadline::grpc_timeout::{self, GRPC_TIMEOUT};
use steadfast::deadline::{CarriesDeadline, Deadline};
use steadfast::timeout::error::DeadlineExceeded;
use steadfast::timeout::DeadlineLayer;
use tokio::time::Instant;
use tokio_test::task;
use tower::{Layer, ServiceExt};
use tower_service::Service;

use super::{answering, finishes_at, grpc_request, hanging, ms, Log};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn deadline_exceeded(err: steadfast::BoxError) -> DeadlineExceeded {
    *err.downcast::<DeadlineExceeded>()
        .unwrap_or_else(|e| panic!("expected DeadlineExceeded, got {e}"))
}

#[tokio::test(start_paused = true)]
async fn the_inner_service_sees_the_deadline_in_the_request() {
    let log = Log::default();
    let svc = DeadlineLayer::new(secs(1)).unwrap().layer(answering(&log));
    tokio::time::advance(ms(1234)).await; // not at the clock's origin
    let start = Instant::now();
    assert_eq!(
        svc.oneshot(http::Request::new(())).await.unwrap(),
        "answered"
    );

    let seen = log.get();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].deadline, Some(Deadline::at(start + secs(1))));
    assert_eq!(seen[0].grpc_timeout, None, "not a gRPC request");
}

#[tokio::test(start_paused = true)]
async fn a_hanging_call_fails_with_deadline_exceeded_at_the_deadline() {
    let log = Log::default();
    let mut svc = DeadlineLayer::new(ms(750)).unwrap().layer(hanging(&log));
    let start = Instant::now();
    let mut fut = task::spawn(svc.ready().await.unwrap().call(http::Request::new(())));

    let err = finishes_at(&mut fut, start + ms(750)).await.unwrap_err();
    assert_eq!(err.to_string(), "deadline exceeded (the call had 750ms)");
    assert_eq!(deadline_exceeded(err).budget(), Some(ms(750)));
    assert!(
        log.get()[0].dropped.is_set(),
        "the inner future was dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn an_earlier_outer_deadline_is_kept_by_an_inner_deadline_layer() {
    let log = Log::default();
    let mut svc = DeadlineLayer::new(secs(1))
        .unwrap()
        .layer(DeadlineLayer::new(secs(5)).unwrap().layer(hanging(&log)));
    let start = Instant::now();
    let mut fut = task::spawn(svc.ready().await.unwrap().call(http::Request::new(())));

    let err = finishes_at(&mut fut, start + secs(1)).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(log.get()[0].deadline, Some(Deadline::at(start + secs(1))));
}

#[tokio::test(start_paused = true)]
async fn a_later_outer_deadline_gives_way_to_the_inner_one() {
    let log = Log::default();
    let mut svc = DeadlineLayer::new(secs(5))
        .unwrap()
        .layer(DeadlineLayer::new(secs(1)).unwrap().layer(hanging(&log)));
    let start = Instant::now();
    let mut fut = task::spawn(svc.ready().await.unwrap().call(http::Request::new(())));

    let err = finishes_at(&mut fut, start + secs(1)).await.unwrap_err();
    assert_eq!(deadline_exceeded(err).budget(), Some(secs(1)));
    assert_eq!(log.get()[0].deadline, Some(Deadline::at(start + secs(1))));
}

#[tokio::test(start_paused = true)]
async fn an_expired_deadline_fails_without_calling_the_inner_service() {
    let log = Log::default();
    let svc = DeadlineLayer::new(secs(1)).unwrap().layer(answering(&log));
    let set_at = Instant::now();
    tokio::time::advance(ms(10)).await;

    for deadline in [set_at, Instant::now()] {
        let mut req = http::Request::new(());
        req.set_deadline(Deadline::at(deadline));
        let before = Instant::now();
        let err = svc.clone().oneshot(req).await.unwrap_err();
        assert!(err.is::<DeadlineExceeded>(), "{err}");
        assert_eq!(Instant::now(), before, "fails at once");
    }
    assert!(log.get().is_empty(), "the inner service was never called");
}

#[tokio::test(start_paused = true)]
async fn grpc_requests_carry_the_time_left_as_grpc_timeout() {
    let log = Log::default();
    let svc = DeadlineLayer::new(secs(1)).unwrap().layer(answering(&log));

    // The layer's own deadline: 1 s, in the finest unit that fits 8 digits.
    svc.clone().oneshot(grpc_request()).await.unwrap();
    // An outer deadline 750 ms away wins over the layer's 1 s.
    let mut req = grpc_request();
    req.set_deadline(Deadline::at(Instant::now() + ms(750)));
    svc.clone().oneshot(req).await.unwrap();
    // A sub-type of gRPC, and a stale `grpc-timeout` that is replaced.
    let mut req = grpc_request();
    req.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc+proto"),
    );
    req.headers_mut()
        .insert(GRPC_TIMEOUT, HeaderValue::from_static("5S"));
    req.set_deadline(Deadline::at(
        Instant::now() + Duration::from_nanos(1_234_567),
    ));
    svc.clone().oneshot(req).await.unwrap();

    let sent: Vec<_> = log.get().into_iter().map(|s| s.grpc_timeout).collect();
    assert_eq!(
        sent,
        [
            Some(HeaderValue::from_static("1000000u")),
            Some(HeaderValue::from_static("750000u")),
            Some(HeaderValue::from_static("1234567n")),
        ]
    );
    for value in sent.into_iter().flatten() {
        assert!(grpc_timeout::parse(value.as_bytes()).is_some());
    }
}

#[tokio::test(start_paused = true)]
async fn other_requests_get_no_grpc_timeout() {
    let log = Log::default();
    let svc = DeadlineLayer::new(secs(1)).unwrap().layer(answering(&log));
    let json = http::Request::post("http://svc/api")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(())
        .unwrap();
    let grpcish = http::Request::post("http://svc/api")
        .header(http::header::CONTENT_TYPE, "text/plain; application/grpc")
        .body(())
        .unwrap();
    for req in [http::Request::new(()), json, grpcish] {
        svc.clone().oneshot(req).await.unwrap();
    }
    let seen = log.get();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.grpc_timeout.is_none()), "{seen:?}");
    assert!(seen.iter().all(|s| s.deadline.is_some()));
}

fn grpc_request_with_timeout(value: &'static [u8]) -> http::Request<()> {
    let mut req = grpc_request();
    req.headers_mut()
        .insert(GRPC_TIMEOUT, HeaderValue::from_bytes(value).unwrap());
    req
}

#[tokio::test(start_paused = true)]
async fn an_incoming_grpc_timeout_is_honoured_when_asked() {
    let log = Log::default();
    let mut svc = DeadlineLayer::new(secs(1)).unwrap().layer(hanging(&log));
    let start = Instant::now();
    let req = grpc_request_with_timeout(b"200m");
    let mut fut = task::spawn(svc.ready().await.unwrap().call(req));

    let err = finishes_at(&mut fut, start + ms(200)).await.unwrap_err();
    assert_eq!(deadline_exceeded(err).budget(), Some(ms(200)));
    let seen = &log.get()[0];
    assert_eq!(seen.deadline, Some(Deadline::at(start + ms(200))));
    assert_eq!(
        seen.grpc_timeout,
        Some(HeaderValue::from_static("200000u")),
        "the next hop is told the time left"
    );
}

#[tokio::test(start_paused = true)]
async fn an_incoming_grpc_timeout_is_ignored_when_asked() {
    let log = Log::default();
    let mut svc = DeadlineLayer::new(secs(1))
        .unwrap()
        .ignore_incoming_timeout()
        .layer(hanging(&log));
    let start = Instant::now();
    let req = grpc_request_with_timeout(b"200m");
    let mut fut = task::spawn(svc.ready().await.unwrap().call(req));

    let err = finishes_at(&mut fut, start + secs(1)).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>());
}

#[tokio::test(start_paused = true)]
async fn a_grpc_timeout_on_a_request_that_is_not_grpc_is_ignored() {
    let log = Log::default();
    let svc = DeadlineLayer::new(secs(1)).unwrap().layer(answering(&log));
    let start = Instant::now();
    let mut req = http::Request::new(());
    req.headers_mut()
        .insert(GRPC_TIMEOUT, HeaderValue::from_static("200m"));
    svc.oneshot(req).await.unwrap();
    assert_eq!(log.get()[0].deadline, Some(Deadline::at(start + secs(1))));
}

#[tokio::test(start_paused = true)]
async fn malformed_or_huge_incoming_timeouts_leave_the_layers_own_deadline() {
    let cases: [&[u8]; 9] = [
        b"12x",
        b"-1S",
        b"123456789m", // 9 digits
        b"",
        b"S",
        b" 1S",
        b"1.5S",
        b"99999999H", // valid, but longer than the layer's own timeout
        b"1000001m",  // valid, 1000.001 s
    ];
    for value in cases {
        let log = Log::default();
        let mut svc = DeadlineLayer::new(secs(1)).unwrap().layer(hanging(&log));
        let start = Instant::now();
        let req = grpc_request_with_timeout(value);
        let mut fut = task::spawn(svc.ready().await.unwrap().call(req));

        let err = finishes_at(&mut fut, start + secs(1)).await.unwrap_err();
        let value = String::from_utf8_lossy(value);
        assert_eq!(deadline_exceeded(err).budget(), Some(secs(1)), "{value:?}");
        let seen = &log.get()[0];
        assert_eq!(
            seen.deadline,
            Some(Deadline::at(start + secs(1))),
            "{value:?}"
        );
        assert_eq!(
            seen.grpc_timeout,
            Some(HeaderValue::from_static("1000000u")),
            "{value:?} is replaced by the time left"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_incoming_zero_timeout_fails_without_calling_the_inner_service() {
    let log = Log::default();
    let svc = DeadlineLayer::new(secs(1)).unwrap().layer(answering(&log));
    for value in [&b"0S"[..], b"0n", b"00000000H"] {
        let err = svc
            .clone()
            .oneshot(grpc_request_with_timeout(value))
            .await
            .unwrap_err();
        assert!(err.is::<DeadlineExceeded>(), "{err}");
    }
    assert!(log.get().is_empty());
}
