//! The limit, rejection at once, and when the slot is freed.

use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok};

use super::*;

#[tokio::test(start_paused = true)]
async fn full_bulkhead_without_wait_rejects_at_once_and_never_calls_inner() {
    let layer = layer(1, Duration::ZERO, None);
    let (mut svc, mut handle) = service(&layer);
    let mut a = call(&mut svc, 1).await;
    assert_pending!(a.poll());
    for i in 0..3 {
        let mut rejected = call(&mut svc, 100 + i).await;
        let err = full(assert_ready_err!(rejected.poll()));
        assert_eq!(err.reason(), FullReason::QueueFull);
        assert_eq!(err.max_concurrent(), 1);
        assert_eq!(err.waited(), Duration::ZERO);
    }
    assert_eq!(received(&mut handle).map(|r| r.0), Some(1));
    assert!(received(&mut handle).is_none());
    assert_eq!(layer.handle().rejected(FullReason::QueueFull), 3);
}

#[tokio::test(start_paused = true)]
async fn the_slot_is_taken_in_call_not_when_first_polled() {
    let layer = layer(1, Duration::ZERO, None);
    let (mut svc, _handle) = service(&layer);
    let _a = call(&mut svc, 1).await; // never polled
    assert_eq!(layer.handle().in_flight(), 1);
    let mut b = call(&mut svc, 2).await;
    assert_eq!(reason(assert_ready_err!(b.poll())), FullReason::QueueFull);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_response_future_frees_the_slot() {
    let layer = layer(1, Duration::ZERO, None);
    let bh = layer.handle();
    let (mut svc, mut handle) = service(&layer);

    // Dropped before it was ever polled.
    let a = call(&mut svc, 1).await;
    assert_eq!(bh.in_flight(), 1);
    drop(a);
    assert_eq!(bh.in_flight(), 0);

    // Dropped while the inner service works on it.
    let mut b = call(&mut svc, 2).await;
    assert_pending!(b.poll());
    let (_, _pending) = received(&mut handle).expect("b reached the inner service");
    drop(b);
    assert_eq!(bh.in_flight(), 0);

    let mut c = call(&mut svc, 3).await;
    assert_pending!(c.poll());
    assert_eq!(bh.in_flight(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_inner_error_passes_through_and_frees_the_slot() {
    let layer = layer(1, Duration::ZERO, None);
    let bh = layer.handle();
    let (mut svc, mut handle) = service(&layer);
    let mut a = call(&mut svc, 1).await;
    assert_pending!(a.poll());
    let (_, send) = received(&mut handle).unwrap();
    send.send_error(std::io::Error::other("backend down"));
    let err = assert_ready_err!(a.poll());
    assert!(err.downcast_ref::<BulkheadFull>().is_none());
    assert_eq!(err.to_string(), "backend down");
    assert_eq!(bh.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_slot_is_freed_when_the_response_arrives_not_when_the_future_is_dropped() {
    let layer = layer(1, Duration::ZERO, None);
    let bh = layer.handle();
    let (mut svc, mut handle) = service(&layer);
    let mut a = call(&mut svc, 1).await;
    assert_pending!(a.poll());
    received(&mut handle).unwrap().1.send_response(7);
    assert_eq!(assert_ready_ok!(a.poll()), 7);
    // `a` is still alive, finished: its slot is free.
    assert_eq!(bh.in_flight(), 0);
    let mut b = call(&mut svc, 2).await;
    assert_pending!(b.poll());
    drop(a);
}

#[tokio::test(start_paused = true)]
async fn every_service_of_a_layer_and_every_clone_share_one_limit() {
    let layer = layer(3, Duration::ZERO, None);
    let bh = layer.handle();
    let (mut one, _h1) = service(&layer);
    let (mut two, _h2) = service(&layer);
    let mut three = one.clone();

    let _a = call(&mut one, 1).await;
    let _b = call(&mut two, 2).await;
    let _c = call(&mut three, 3).await;
    assert_eq!(bh.in_flight(), 3);
    for svc in [&mut one, &mut two, &mut three] {
        let mut d = call(svc, 4).await;
        assert_eq!(reason(assert_ready_err!(d.poll())), FullReason::QueueFull);
    }

    // Another layer is another limit.
    let other = super::layer(1, Duration::ZERO, None);
    let (mut four, _h4) = service(&other);
    let mut e = call(&mut four, 5).await;
    assert_pending!(e.poll());
    assert_eq!((bh.in_flight(), other.handle().in_flight()), (3, 1));
}

#[tokio::test(start_paused = true)]
async fn a_layer_clone_is_the_same_bulkhead() {
    let layer = layer(1, Duration::ZERO, None);
    let clone = layer.clone();
    let (mut a_svc, _h1) = service(&layer);
    let (mut b_svc, _h2) = service(&clone);
    let _a = call(&mut a_svc, 1).await;
    let mut b = call(&mut b_svc, 2).await;
    assert_eq!(reason(assert_ready_err!(b.poll())), FullReason::QueueFull);
    assert_eq!(clone.handle().in_flight(), 1);
}
