//! The FIFO queue: `max_wait`, `max_waiting`, deadlines, cancellation.

use steadfast::deadline::{CarriesDeadline, Deadline};
use tokio::time::{advance, Instant};
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok};

use super::*;

const WAIT: Duration = Duration::from_millis(100);

/// Queues with the bulkhead full: one call in flight, its response sender
/// returned.
async fn one_in_flight(
    svc: &mut Bulkhead<Mock>,
    handle: &mut Handle,
) -> (Call, mock::SendResponse<u32>) {
    let mut a = call(svc, 0).await;
    assert_pending!(a.poll());
    let (req, send) = received(handle).expect("the first call runs");
    assert_eq!(req, 0);
    (a, send)
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_first_in_first_out() {
    let layer = layer(1, Duration::from_secs(60), None);
    let bh = layer.handle();
    let (mut svc, mut handle) = service(&layer);
    let (mut a, send) = one_in_flight(&mut svc, &mut handle).await;

    let mut waiters = Vec::new();
    for i in 1..=4 {
        let mut w = call(&mut svc, i).await;
        assert_pending!(w.poll());
        waiters.push(w);
    }
    assert_eq!((bh.in_flight(), bh.waiting()), (1, 4));
    assert!(
        received(&mut handle).is_none(),
        "a waiter reached the service"
    );

    send.send_response(0);
    assert_ready_ok!(a.poll());
    for expected in 1..=4 {
        // Poll the waiters newest first: the order of polls does not matter.
        for w in waiters[expected as usize - 1..].iter_mut().rev() {
            assert_pending!(w.poll());
        }
        let (req, send) = received(&mut handle).expect("the oldest waiter runs");
        assert_eq!(req, expected);
        assert!(received(&mut handle).is_none(), "two ran at once");
        send.send_response(req);
        let w = &mut waiters[expected as usize - 1];
        assert_eq!(assert_ready_ok!(w.poll()), expected);
    }
    assert_eq!((bh.in_flight(), bh.waiting()), (0, 0));
    let s = bh.snapshot();
    assert_eq!((s.admitted, s.waited), (5, 4));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_is_woken_when_its_slot_comes() {
    let layer = layer(1, WAIT, None);
    let (mut svc, mut handle) = service(&layer);
    let (mut a, send) = one_in_flight(&mut svc, &mut handle).await;
    let mut b = call(&mut svc, 1).await;
    assert_pending!(b.poll());
    assert!(!b.is_woken());
    send.send_response(0);
    assert_ready_ok!(a.poll());
    assert!(b.is_woken(), "the freed slot did not wake the waiter");
    assert_pending!(b.poll());
    assert_eq!(received(&mut handle).unwrap().0, 1);
}

#[tokio::test(start_paused = true)]
async fn max_wait_expires_at_exactly_the_virtual_instant() {
    let layer = layer(1, WAIT, None);
    let (mut svc, mut handle) = service(&layer);
    let (_a, _send) = one_in_flight(&mut svc, &mut handle).await;
    let start = Instant::now();
    let mut b = call(&mut svc, 1).await;
    assert_pending!(b.poll());

    advance(WAIT - MS).await;
    assert_pending!(b.poll());
    assert_eq!(layer.handle().waiting(), 1);

    advance(MS).await;
    assert!(b.is_woken());
    let err = full(assert_ready_err!(b.poll()));
    assert_eq!(err.reason(), FullReason::WaitTimedOut);
    assert_eq!(err.waited(), WAIT);
    assert_eq!(start.elapsed(), WAIT);
    assert_eq!(layer.handle().waiting(), 0);
    assert!(received(&mut handle).is_none(), "a timed-out call ran");
}

#[tokio::test(start_paused = true)]
async fn the_wait_starts_in_call_not_at_the_first_poll() {
    let layer = layer(1, WAIT, None);
    let (mut svc, mut handle) = service(&layer);
    let (_a, _send) = one_in_flight(&mut svc, &mut handle).await;
    let mut b = call(&mut svc, 1).await;
    advance(WAIT).await;
    assert_eq!(
        reason(assert_ready_err!(b.poll())),
        FullReason::WaitTimedOut
    );
}

#[tokio::test(start_paused = true)]
async fn a_slot_handed_over_as_the_wait_runs_out_is_used() {
    let layer = layer(1, WAIT, None);
    let (mut svc, mut handle) = service(&layer);
    let (mut a, send) = one_in_flight(&mut svc, &mut handle).await;
    let mut b = call(&mut svc, 1).await;
    assert_pending!(b.poll());
    advance(WAIT).await; // the timer is due...
    send.send_response(0);
    assert_ready_ok!(a.poll()); // ...and the slot is handed over first
    assert_pending!(b.poll());
    let (req, send) = received(&mut handle).expect("the waiter ran");
    assert_eq!(req, 1);
    send.send_response(1);
    assert_eq!(assert_ready_ok!(b.poll()), 1);
    assert_eq!(layer.handle().rejected(FullReason::WaitTimedOut), 0);
}

#[tokio::test(start_paused = true)]
async fn max_waiting_bounds_the_queue() {
    let layer = layer(1, WAIT, Some(2));
    let bh = layer.handle();
    let (mut svc, mut handle) = service(&layer);
    let (_a, _send) = one_in_flight(&mut svc, &mut handle).await;
    let mut b = call(&mut svc, 1).await;
    let c = call(&mut svc, 2).await;
    assert_eq!(bh.waiting(), 2);

    let mut d = call(&mut svc, 3).await;
    let err = full(assert_ready_err!(d.poll()));
    assert_eq!(err.reason(), FullReason::QueueFull);
    assert_eq!(err.waited(), Duration::ZERO);

    // A waiter that leaves makes room.
    drop(c);
    assert_eq!(bh.waiting(), 1);
    let mut e = call(&mut svc, 4).await;
    assert_pending!(e.poll());
    assert_pending!(b.poll());
    assert_eq!(bh.waiting(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_newcomer_never_takes_a_slot_handed_to_a_waiter() {
    let layer = layer(1, WAIT, None);
    let bh = layer.handle();
    let (mut svc, mut handle) = service(&layer);
    let (mut a, send) = one_in_flight(&mut svc, &mut handle).await;
    let mut b = call(&mut svc, 1).await;
    assert_pending!(b.poll());
    send.send_response(0);
    assert_ready_ok!(a.poll());
    // b owns the slot but has not run yet; c must wait behind it.
    assert_eq!((bh.in_flight(), bh.waiting()), (1, 0));
    let mut c = call(&mut svc, 2).await;
    assert_pending!(c.poll());
    assert_eq!(bh.waiting(), 1);
    assert_pending!(b.poll());
    assert_eq!(received(&mut handle).unwrap().0, 1);
    assert!(received(&mut handle).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_frees_its_place() {
    let layer = layer(1, WAIT, None);
    let bh = layer.handle();
    let (mut svc, mut handle) = service(&layer);
    let (mut a, send) = one_in_flight(&mut svc, &mut handle).await;
    let mut b = call(&mut svc, 1).await;
    assert_pending!(b.poll());
    let mut c = call(&mut svc, 2).await;
    assert_pending!(c.poll());
    drop(b);
    assert_eq!((bh.in_flight(), bh.waiting()), (1, 1));
    assert_eq!(bh.snapshot().cancelled_waiting, 1);

    send.send_response(0);
    assert_ready_ok!(a.poll());
    assert!(c.is_woken());
    assert_pending!(c.poll());
    assert_eq!(received(&mut handle).unwrap().0, 2);
    assert_eq!(bh.in_flight(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_dropped_after_being_handed_a_slot_passes_it_on() {
    let layer = layer(1, WAIT, None);
    let bh = layer.handle();
    let (mut svc, mut handle) = service(&layer);
    let (mut a, send) = one_in_flight(&mut svc, &mut handle).await;
    let mut b = call(&mut svc, 1).await;
    assert_pending!(b.poll());
    let mut c = call(&mut svc, 2).await;
    assert_pending!(c.poll());

    send.send_response(0);
    assert_ready_ok!(a.poll()); // the slot goes to b...
    drop(b); // ...which leaves without using it
    assert!(c.is_woken());
    assert_pending!(c.poll());
    assert_eq!(received(&mut handle).unwrap().0, 2);
    assert_eq!((bh.in_flight(), bh.waiting()), (1, 0));

    // And when the last holder leaves, every slot is back.
    drop(c);
    assert_eq!(bh.in_flight(), 0);
    let mut d = call(&mut svc, 3).await;
    assert_pending!(d.poll());
    assert_eq!(received(&mut handle).unwrap().0, 3);
}

#[tokio::test(start_paused = true)]
async fn no_wait_for_a_free_slot_even_with_max_wait() {
    let layer = layer(2, WAIT, None);
    let (mut svc, mut handle) = service(&layer);
    let mut a = call(&mut svc, 1).await;
    assert_pending!(a.poll());
    assert_eq!(received(&mut handle).unwrap().0, 1);
    assert_eq!(layer.handle().snapshot().waited, 0);
}

// --- deadlines ---

/// A request that carries a deadline.
#[derive(Debug)]
struct Job {
    id: u32,
    deadline: Option<Deadline>,
}

impl CarriesDeadline for Job {
    fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }
    fn set_deadline(&mut self, deadline: Deadline) {
        self.deadline = Some(deadline);
    }
}

fn job(id: u32, within: Option<Duration>) -> Job {
    Job {
        id,
        deadline: within.map(Deadline::after),
    }
}

#[tokio::test(start_paused = true)]
async fn a_deadline_shorter_than_max_wait_cuts_the_wait() {
    let layer = super::layer(1, Duration::from_secs(10), None).deadline_aware();
    let (mock, mut handle) = mock::pair::<Job, u32>();
    let mut svc = layer.layer(mock);
    svc.ready().await.unwrap();
    let mut a = task::spawn(svc.call(job(0, None)));
    assert_pending!(a.poll());

    svc.ready().await.unwrap();
    let mut b = task::spawn(svc.call(job(1, Some(Duration::from_millis(250)))));
    assert_pending!(b.poll());
    advance(Duration::from_millis(249)).await;
    assert_pending!(b.poll());
    advance(MS).await;
    let err = full(assert_ready_err!(b.poll()));
    assert_eq!(err.reason(), FullReason::WaitTimedOut);
    assert_eq!(err.waited(), Duration::from_millis(250));

    // A deadline later than max_wait does not stretch the wait.
    svc.ready().await.unwrap();
    let mut c = task::spawn(svc.call(job(2, Some(Duration::from_secs(60)))));
    assert_pending!(c.poll());
    advance(Duration::from_secs(10) - MS).await;
    assert_pending!(c.poll());
    advance(MS).await;
    assert_eq!(
        full(assert_ready_err!(c.poll())).waited(),
        Duration::from_secs(10)
    );

    let first = handle.next_request().await.unwrap().0;
    assert_eq!(first.id, 0);
    assert!(matches!(handle.poll_request(), std::task::Poll::Pending));
}

#[tokio::test(start_paused = true)]
async fn an_expired_deadline_cannot_wait_but_takes_a_free_slot() {
    let layer = super::layer(1, Duration::from_secs(10), None).deadline_aware();
    let (mock, mut handle) = mock::pair::<Job, u32>();
    let mut svc = layer.layer(mock);

    // A free slot is taken whatever the deadline: the bulkhead is no timeout.
    svc.ready().await.unwrap();
    let mut a = task::spawn(svc.call(job(0, Some(Duration::ZERO))));
    assert_pending!(a.poll());
    assert_eq!(handle.next_request().await.unwrap().0.id, 0);

    svc.ready().await.unwrap();
    let mut b = task::spawn(svc.call(job(1, Some(Duration::ZERO))));
    let err = full(assert_ready_err!(b.poll()));
    assert_eq!(
        (err.reason(), err.waited()),
        (FullReason::WaitTimedOut, Duration::ZERO)
    );
    assert_eq!(layer.handle().waiting(), 0);
}

#[tokio::test(start_paused = true)]
async fn without_deadline_aware_the_deadline_is_ignored() {
    let layer = super::layer(1, WAIT, None);
    let (mock, _handle) = mock::pair::<Job, u32>();
    let mut svc = layer.layer(mock);
    svc.ready().await.unwrap();
    let _a = task::spawn(svc.call(job(0, None)));
    svc.ready().await.unwrap();
    let mut b = task::spawn(svc.call(job(1, Some(MS))));
    assert_pending!(b.poll());
    advance(WAIT - MS).await;
    assert_pending!(b.poll());
    advance(MS).await;
    assert_eq!(full(assert_ready_err!(b.poll())).waited(), WAIT);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_call_keeps_the_readied_service() {
    // The mock panics when called without a ready `poll_ready`; a queued
    // call must take the service that was readied for it.
    let layer = layer(1, WAIT, None);
    let (mut svc, mut handle) = service(&layer);
    let (mut a, send) = one_in_flight(&mut svc, &mut handle).await;
    let mut b = call(&mut svc, 1).await;
    assert_pending!(b.poll());
    // The service left behind is readied again for the next call.
    let mut c = call(&mut svc, 2).await;
    assert_pending!(c.poll());
    send.send_response(0);
    assert_ready_ok!(a.poll());
    assert_pending!(b.poll());
    let (req, send_b) = received(&mut handle).unwrap();
    assert_eq!(req, 1);
    send_b.send_response(1);
    assert_eq!(assert_ready_ok!(b.poll()), 1);
    assert_pending!(c.poll());
    assert_eq!(received(&mut handle).unwrap().0, 2);
}
