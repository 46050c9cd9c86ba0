//! Bulkhead behaviour, driven through `tower_test` mocks on paused time.
//!
//! * `admission`: the limit, rejection at once, when the slot is freed;
//! * `waiting`: the FIFO queue, `max_wait`, `max_waiting`, deadlines, cancellation;
//! * `backpressure`: the `wait_in_poll_ready` mode;
//! * `handle`: snapshots, counters, changing the limit, the rejection event;
//! * `config`: build-time validation;
//! * `errors`: `BulkheadFull`, and how the breaker and retry treat it;
//! * `body`: holding the slot until the response body ends (feature `http`);
//! * `service`: auto traits, clones, accessors, `ServiceBuilder`.
//!
//! The mock inner service sends each request to the test's handle as soon
//! as it is called, so a request seen on the handle has reached the inner
//! service, and one not seen has not. It also panics when called without a
//! ready `poll_ready`, which checks that a queued call uses the readied
//! service.

#[path = "../support/mod.rs"]
mod support;

mod admission;
mod backpressure;
#[cfg(feature = "http")]
mod body;
mod config;
mod errors;
mod handle;
mod service;
mod waiting;

use std::time::Duration;

use steadfast::bulkhead::error::{BulkheadFull, FullReason};
use steadfast::bulkhead::future::ResponseFuture;
use steadfast::bulkhead::{Bulkhead, BulkheadLayer};
use steadfast::BoxError;
use tokio_test::task;
use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

type Mock = mock::Mock<u32, u32>;
type Handle = mock::Handle<u32, u32>;
type Call = task::Spawn<ResponseFuture<Mock, u32>>;

const MS: Duration = Duration::from_millis(1);

/// A bulkhead of `max` slots where calls wait up to `wait` in a queue of
/// up to `waiting` (no bound when `None`).
fn layer(max: usize, wait: Duration, waiting: Option<usize>) -> BulkheadLayer {
    let b = BulkheadLayer::builder(max).max_wait(wait);
    match waiting {
        Some(n) => b.max_waiting(n),
        None => b,
    }
    .build()
    .expect("valid config")
}

/// A service behind `layer`, and the mock's handle.
fn service(layer: &BulkheadLayer) -> (Bulkhead<Mock>, Handle) {
    let (mock, handle) = mock::pair();
    (layer.layer(mock), handle)
}

/// Readies `svc` and calls it; the returned call has not been polled.
async fn call(svc: &mut Bulkhead<Mock>, req: u32) -> Call {
    svc.ready()
        .await
        .expect("the bulkhead never fails poll_ready");
    task::spawn(svc.call(req))
}

/// The next request the inner service received, if any (without waiting).
fn received(handle: &mut Handle) -> Option<(u32, mock::SendResponse<u32>)> {
    match handle.poll_request() {
        std::task::Poll::Ready(r) => r,
        std::task::Poll::Pending => None,
    }
}

/// The rejection inside `err`.
#[track_caller]
fn full(err: BoxError) -> BulkheadFull {
    match err.downcast::<BulkheadFull>() {
        Ok(full) => *full,
        Err(other) => panic!("expected BulkheadFull, got {other}"),
    }
}

#[track_caller]
fn reason(err: BoxError) -> FullReason {
    full(err).reason()
}

/// Two slots; a third call is refused without reaching the service, and
/// once a slot is free calls pass again.
#[tokio::test(start_paused = true)]
async fn smoke_limits_and_recovers() {
    support::trace_init();
    let layer = layer(2, Duration::ZERO, None);
    let bh = layer.handle();
    let (mut svc, mut handle) = service(&layer);

    let mut a = call(&mut svc, 1).await;
    let mut b = call(&mut svc, 2).await;
    tokio_test::assert_pending!(a.poll());
    tokio_test::assert_pending!(b.poll());
    assert_eq!(bh.in_flight(), 2);

    let mut c = call(&mut svc, 3).await;
    let err = tokio_test::assert_ready_err!(c.poll());
    assert_eq!(reason(err), FullReason::QueueFull);

    let (req, send) = received(&mut handle).expect("first request");
    assert_eq!(req, 1);
    send.send_response(10);
    assert_eq!(tokio_test::assert_ready_ok!(a.poll()), 10);
    let (req, _b) = received(&mut handle).expect("second request");
    assert_eq!(req, 2);
    assert!(
        received(&mut handle).is_none(),
        "the rejected call got through"
    );
    assert_eq!(bh.in_flight(), 1);

    let mut d = call(&mut svc, 4).await;
    tokio_test::assert_pending!(d.poll());
    assert_eq!(received(&mut handle).expect("fourth request").0, 4);
}
