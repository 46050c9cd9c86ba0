//! The `wait_in_poll_ready` mode, and `poll_ready` in the default mode.

use std::task::Poll;

use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready, assert_ready_err, assert_ready_ok};

use super::*;

const WAIT: Duration = Duration::from_millis(100);

fn waiting_layer(max: usize, wait: Duration) -> BulkheadLayer {
    layer(max, wait, None).wait_in_poll_ready()
}

/// `poll_ready` of `svc`, stepped by hand.
fn poll_ready(svc: &mut task::Spawn<Bulkhead<Mock>>) -> Poll<Result<(), BoxError>> {
    svc.enter(|cx, svc| svc.get_mut().poll_ready(cx))
}

#[tokio::test(start_paused = true)]
async fn default_mode_never_waits_in_poll_ready() {
    let layer = layer(1, WAIT, None);
    let (mut svc, _handle) = service(&layer);
    let mut a = call(&mut svc, 1).await;
    assert_pending!(a.poll());
    // Full, yet ready: the wait happens in the response future.
    let mut svc = task::spawn(svc);
    assert_ready_ok!(poll_ready(&mut svc));
    // The inner service's readiness passes straight through.
    let (mock, mut h2) = mock::pair::<u32, u32>();
    h2.allow(0);
    let mut gated = task::spawn(layer.layer(mock));
    assert_pending!(poll_ready(&mut gated));
    h2.allow(1);
    assert!(gated.is_woken());
    assert_ready_ok!(poll_ready(&mut gated));
}

#[tokio::test(start_paused = true)]
async fn poll_ready_waits_for_a_slot_and_reserves_it() {
    let layer = waiting_layer(1, Duration::from_secs(60));
    let bh = layer.handle();
    let (svc, mut handle) = service(&layer);
    let mut first = task::spawn(svc.clone());
    let mut second = task::spawn(svc);

    assert_ready_ok!(poll_ready(&mut first));
    assert_eq!(bh.in_flight(), 1, "the slot is reserved by poll_ready");
    assert_pending!(poll_ready(&mut second));
    assert_eq!(bh.waiting(), 1);

    let mut a = task::spawn(first.call(1));
    assert_pending!(a.poll());
    let (req, send) = received(&mut handle).unwrap();
    assert_eq!(req, 1);
    assert!(!second.is_woken());
    send.send_response(1);
    assert_ready_ok!(a.poll());
    assert!(second.is_woken(), "the freed slot did not wake poll_ready");
    assert_ready_ok!(poll_ready(&mut second));
    assert_eq!((bh.in_flight(), bh.waiting()), (1, 0));
    let mut b = task::spawn(second.call(2));
    assert_pending!(b.poll());
    assert_eq!(received(&mut handle).unwrap().0, 2);
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_wait_is_ready_and_the_call_fails() {
    let layer = waiting_layer(1, WAIT);
    let (svc, mut handle) = service(&layer);
    let mut first = task::spawn(svc.clone());
    let mut second = task::spawn(svc);
    assert_ready_ok!(poll_ready(&mut first));

    assert_pending!(poll_ready(&mut second));
    advance(WAIT - MS).await;
    assert_pending!(poll_ready(&mut second));
    advance(MS).await;
    assert!(second.is_woken());
    // Ready, never Err: the rejection is reserved for the call.
    assert_ready_ok!(poll_ready(&mut second));
    assert_ready_ok!(poll_ready(&mut second), "stays ready until called");
    let mut b = task::spawn(second.call(2));
    let err = full(assert_ready_err!(b.poll()));
    assert_eq!(
        (err.reason(), err.waited()),
        (FullReason::WaitTimedOut, WAIT)
    );
    assert!(received(&mut handle).is_none());
    assert_eq!(layer.handle().waiting(), 0);

    // The next poll_ready waits afresh.
    assert_pending!(poll_ready(&mut second));
}

#[tokio::test(start_paused = true)]
async fn zero_max_wait_reserves_the_rejection_at_once() {
    let layer = waiting_layer(1, Duration::ZERO);
    let (svc, _handle) = service(&layer);
    let mut first = task::spawn(svc.clone());
    let mut second = task::spawn(svc);
    assert_ready_ok!(poll_ready(&mut first));
    assert_ready_ok!(poll_ready(&mut second));
    let mut b = task::spawn(second.call(2));
    assert_eq!(reason(assert_ready_err!(b.poll())), FullReason::QueueFull);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_is_ready_and_the_call_fails() {
    let layer = layer(1, WAIT, Some(1)).wait_in_poll_ready();
    let (svc, _handle) = service(&layer);
    let mut first = task::spawn(svc.clone());
    let mut second = task::spawn(svc.clone());
    let mut third = task::spawn(svc);
    assert_ready_ok!(poll_ready(&mut first));
    assert_pending!(poll_ready(&mut second));
    assert_ready_ok!(poll_ready(&mut third));
    let mut c = task::spawn(third.call(3));
    assert_eq!(reason(assert_ready_err!(c.poll())), FullReason::QueueFull);
}

#[tokio::test(start_paused = true)]
async fn a_clone_starts_without_the_reservation_and_a_drop_frees_it() {
    let layer = waiting_layer(1, WAIT);
    let bh = layer.handle();
    let (svc, _handle) = service(&layer);
    let mut first = task::spawn(svc);
    assert_ready_ok!(poll_ready(&mut first));
    let mut clone = task::spawn(first.clone());
    assert_pending!(poll_ready(&mut clone), "the clone has no slot of its own");
    assert_eq!((bh.in_flight(), bh.waiting()), (1, 1));

    drop(first); // frees its reservation, which goes to the clone
    assert!(clone.is_woken());
    assert_ready_ok!(poll_ready(&mut clone));
    assert_eq!((bh.in_flight(), bh.waiting()), (1, 0));
    drop(clone);
    assert_eq!(bh.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_service_dropped_while_waiting_leaves_the_queue() {
    let layer = waiting_layer(1, WAIT);
    let bh = layer.handle();
    let (svc, _handle) = service(&layer);
    let mut first = task::spawn(svc.clone());
    let mut second = task::spawn(svc.clone());
    let mut third = task::spawn(svc);
    assert_ready_ok!(poll_ready(&mut first));
    assert_pending!(poll_ready(&mut second));
    assert_pending!(poll_ready(&mut third));
    drop(second);
    assert_eq!(bh.waiting(), 1);
    drop(first);
    assert_ready_ok!(poll_ready(&mut third));
}

#[tokio::test(start_paused = true)]
async fn the_inner_service_is_polled_after_the_slot() {
    let layer = waiting_layer(1, WAIT);
    let bh = layer.handle();
    let (mock, mut handle) = mock::pair::<u32, u32>();
    handle.allow(0);
    let mut svc = task::spawn(layer.layer(mock));
    assert_pending!(poll_ready(&mut svc));
    assert_eq!(
        bh.in_flight(),
        1,
        "the slot is held while the inner service gets ready"
    );
    handle.allow(1);
    assert_ready_ok!(poll_ready(&mut svc));
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "poll_ready")]
async fn calling_without_poll_ready_panics_in_this_mode() {
    let layer = waiting_layer(1, WAIT);
    let (mut svc, _handle) = service(&layer);
    drop(svc.call(1));
}

#[tokio::test(start_paused = true)]
async fn ready_then_call_end_to_end() {
    let layer = waiting_layer(2, WAIT);
    let (svc, mut handle) = service(&layer);
    let mut one = svc.clone();
    let work = tokio::spawn(async move { one.ready().await?.call(5).await });
    let (req, send) = handle.next_request().await.unwrap();
    send.send_response(req * 2);
    assert_eq!(work.await.unwrap().unwrap(), 10);
    let mut svc = task::spawn(svc);
    assert_ready!(poll_ready(&mut svc)).unwrap();
    assert_eq!(layer.handle().in_flight(), 1);
}
