//! No hedge at or after the deadline; each hedge carries the time left.

use std::time::Duration;

use steadfast::deadline::grpc_timeout;
use steadfast::hedge::HedgeLayer;
use steadfast::timeout::DeadlineLayer;
use tower::{Layer, ServiceExt};

use crate::harness::{counts, fixed, ms, Backend, Step};
use crate::safety::{http_backend, Seen};

#[tokio::test(start_paused = true)]
async fn no_hedge_after_the_deadline_and_the_time_left_in_each() {
    let hedge =
        HedgeLayer::grpc(fixed(100, 5).build().unwrap()).idempotent_paths(["/shop.Products/Get"]);
    let handle = hedge.handle();
    let backend = Backend::new(&[Step::Hang]);
    let seen = Seen::default();
    let svc = DeadlineLayer::new(ms(250))
        .unwrap()
        .layer(hedge.layer(http_backend(&backend, &seen)));
    let req = http::Request::post("http://shop/shop.Products/Get")
        .header("content-type", "application/grpc")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"x")))
        .unwrap();
    let err = svc.oneshot(req).await.unwrap_err();
    assert!(err.is::<steadfast::DeadlineExceeded>(), "{err}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Hedges at 100 and 200 ms; the next would go at 300 ms, after the
    // deadline: not sent (max_attempts 5 would allow it).
    assert_eq!(backend.sent_ms(), [0, 100, 200]);
    assert_eq!(counts(&handle.snapshot()), (1, 2, 0, 0, 1, 0));
    let left: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(h, _)| grpc_timeout::parse(h["grpc-timeout"].as_bytes()).unwrap())
        .collect();
    assert_eq!(left, [ms(250), ms(150), ms(50)]);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_shorter_than_the_delay_sends_no_hedge() {
    let hedge = HedgeLayer::http(fixed(100, 2).build().unwrap());
    let handle = hedge.handle();
    let backend = Backend::new(&[Step::Ok(90)]);
    let seen = Seen::default();
    let svc = DeadlineLayer::new(ms(80))
        .unwrap()
        .layer(hedge.layer(http_backend(&backend, &seen)));
    let req = get();
    assert!(svc.oneshot(req).await.is_err());
    assert_eq!(backend.sent_ms(), [0]);
    assert_eq!(handle.snapshot().deadline_reached, 1);
}

#[tokio::test(start_paused = true)]
async fn a_non_fatal_result_hedges_at_once_even_when_the_delay_is_past_the_deadline() {
    let hedge = HedgeLayer::http(fixed(100, 2).build().unwrap());
    let handle = hedge.handle();
    // The first attempt fails at 5 ms (a transport error: non-fatal).
    let backend = Backend::new(&[Step::Err(5), Step::Ok(10)]);
    let seen = Seen::default();
    let svc = DeadlineLayer::new(ms(80))
        .unwrap()
        .layer(hedge.layer(http_backend(&backend, &seen)));
    let req = get();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.headers()["x-attempt"], "1");
    assert_eq!(backend.sent_ms(), [0, 5]);
    // Counted when the first attempt was found pending: no hedge by the
    // delay could go before the deadline.
    assert_eq!(counts(&handle.snapshot()), (1, 1, 1, 0, 1, 0));
}

fn get() -> http::Request<http_body_util::Full<bytes::Bytes>> {
    http::Request::get("http://shop/p/1")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap()
}
