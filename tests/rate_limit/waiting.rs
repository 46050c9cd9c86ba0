//! Waiting mode: the FIFO queue, `max_wait`, `max_waiting`, deadlines and
//! cancellation. The limiter admits one call every 100 ms (burst 1 unless
//! said otherwise), so every turn falls on a millisecond and tokio's timer
//! fires exactly on it.

use steadfast::deadline::Deadline;
use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready_ok};

use super::*;

/// A limiter of burst 1 waiting up to `max_wait`, its cell at t = 0 taken.
fn spent(max_wait: Duration) -> (RateLimitLayer, Limited, Recorder, Instant) {
    let start = Instant::now();
    let layer = waiting_layer(1, max_wait);
    let (mut svc, rec) = service(&layer);
    assert_eq!(try_call(&mut svc, 0), Some(Ok(0)));
    (layer, svc, rec, start)
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_order_at_their_turns() {
    support::trace_init();
    let (layer, mut svc, rec, start) = spent(Duration::from_secs(1));
    let mut calls: Vec<Call> = (1..=4).map(|n| call(&mut svc, n)).collect();
    for c in &mut calls {
        assert_pending!(c.poll());
    }
    assert_eq!(layer.handle().waiting(), 4);
    for turn in 1..=4usize {
        advance(99 * MS).await;
        assert!(calls[turn - 1..].iter_mut().all(|c| c.poll().is_pending()));
        advance(MS).await;
        assert!(calls[turn - 1].is_woken(), "waiter {turn} not woken");
        assert_eq!(assert_ready_ok!(calls[turn - 1].poll()), turn as u32);
        if turn < 4 {
            assert!(calls[turn].is_woken(), "the next head is woken");
        }
        for c in &mut calls[turn..] {
            assert_pending!(c.poll());
        }
    }
    let expected: Vec<(u32, Duration)> = (0..=4).map(|n| (n, n * 100 * MS)).collect();
    assert_eq!(rec.times_since(start), expected);
    let s = layer.handle().snapshot();
    assert_eq!((s.waited, s.waiting, s.rejected), (4, 0, 0));
    // Nobody waits: the fast path is open again.
    advance(100 * MS).await;
    assert_eq!(try_call(&mut svc, 5), Some(Ok(5)));
}

#[tokio::test(start_paused = true)]
async fn a_newcomer_queues_behind_waiters_even_when_a_cell_is_due() {
    let (layer, mut svc, rec, start) = spent(Duration::from_secs(1));
    let mut a = call(&mut svc, 1);
    assert_pending!(a.poll());
    // At t = 100 ms the cell is due, but `a` has not been polled yet.
    advance(100 * MS).await;
    let mut b = call(&mut svc, 2);
    assert_pending!(b.poll());
    assert_eq!(assert_ready_ok!(a.poll()), 1);
    assert_pending!(b.poll());
    advance(100 * MS).await;
    assert_eq!(assert_ready_ok!(b.poll()), 2);
    assert_eq!(
        rec.times_since(start),
        [(0, Duration::ZERO), (1, 100 * MS), (2, 200 * MS)]
    );
    assert_eq!(layer.handle().snapshot().waited, 2);
}

#[tokio::test(start_paused = true)]
async fn a_turn_after_max_wait_is_rejected_at_once_with_its_turn() {
    let (layer, mut svc, _, _) = spent(250 * MS);
    let mut a = call(&mut svc, 1); // 100 ms
    let mut b = call(&mut svc, 2); // 200 ms
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    let mut c = call(&mut svc, 3); // 300 ms > 250 ms
    let l = rejected(&mut c);
    assert_eq!((l.retry_after(), l.waited()), (300 * MS, Duration::ZERO));
    // 50 ms on, the same call's turn is 250 ms away: it fits.
    advance(50 * MS).await;
    let mut d = call(&mut svc, 4);
    assert_pending!(d.poll());
    let s = layer.handle().snapshot();
    assert_eq!((s.rejected, s.waiting), (1, 3));
}

#[tokio::test(start_paused = true)]
async fn max_waiting_bounds_the_queue() {
    let layer = RateLimitLayer::builder(10, Duration::from_secs(1))
        .burst(1)
        .max_wait(Duration::from_secs(10))
        .max_waiting(2)
        .build()
        .unwrap();
    let (mut svc, _) = service(&layer);
    assert_eq!(try_call(&mut svc, 0), Some(Ok(0)));
    let mut a = call(&mut svc, 1);
    let mut b = call(&mut svc, 2);
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    let mut c = call(&mut svc, 3);
    let l = rejected(&mut c);
    assert_eq!((l.retry_after(), l.waited()), (300 * MS, Duration::ZERO));
    advance(100 * MS).await;
    assert_eq!(assert_ready_ok!(a.poll()), 1);
    // A place came free.
    let mut d = call(&mut svc, 4);
    assert_pending!(d.poll());
    assert_eq!(layer.handle().waiting(), 2);
}

/// (a) One waiter dropped: the next caller gets its earlier turn.
#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_gives_its_turn_to_the_next_caller() {
    // 150 ms of wait: a turn at 100 ms fits, one at 200 ms would not.
    let (layer, mut svc, rec, start) = spent(150 * MS);
    let mut a = call(&mut svc, 1);
    assert_pending!(a.poll());
    drop(a);
    let h = layer.handle();
    assert_eq!((h.waiting(), h.snapshot().cancelled_waiting), (0, 1));
    let mut b = call(&mut svc, 2);
    assert_pending!(b.poll());
    advance(100 * MS).await;
    assert!(b.is_woken());
    assert_eq!(assert_ready_ok!(b.poll()), 2);
    assert_eq!(rec.times_since(start)[1], (2, 100 * MS));
}

/// (b) Three waiters, the middle one dropped: the last moves up to its turn.
#[tokio::test(start_paused = true)]
async fn a_dropped_middle_waiter_moves_the_last_up() {
    let (layer, mut svc, rec, start) = spent(Duration::from_secs(1));
    let mut a = call(&mut svc, 1);
    let mut b = call(&mut svc, 2);
    let mut c = call(&mut svc, 3);
    for x in [&mut a, &mut b, &mut c] {
        assert_pending!(x.poll());
    }
    drop(b);
    assert_eq!(layer.handle().waiting(), 2);
    advance(100 * MS).await;
    assert_eq!(assert_ready_ok!(a.poll()), 1);
    assert!(c.is_woken(), "c is the head now");
    assert_pending!(c.poll());
    advance(100 * MS).await;
    assert_eq!(assert_ready_ok!(c.poll()), 3);
    assert_eq!(
        rec.times_since(start),
        [(0, Duration::ZERO), (1, 100 * MS), (3, 200 * MS)]
    );
    // A newcomer now gets c's old turn, 300 ms.
    let mut d = call(&mut svc, 4);
    assert_pending!(d.poll());
    advance(100 * MS).await;
    assert_eq!(assert_ready_ok!(d.poll()), 4);
    assert_eq!(rec.times_since(start)[3], (4, 300 * MS));
    assert_eq!(layer.handle().snapshot().cancelled_waiting, 1);
}

/// (c) The head dropped: the next head is woken and served at the head's turn.
#[tokio::test(start_paused = true)]
async fn a_dropped_head_wakes_the_next_at_the_heads_turn() {
    let (layer, mut svc, rec, start) = spent(Duration::from_secs(1));
    let mut a = call(&mut svc, 1);
    let mut b = call(&mut svc, 2);
    assert_pending!(a.poll());
    assert_pending!(b.poll());
    advance(50 * MS).await;
    assert!(!b.is_woken());
    drop(a);
    assert!(b.is_woken(), "the new head is woken");
    assert_pending!(b.poll());
    advance(50 * MS).await;
    assert!(b.is_woken());
    assert_eq!(assert_ready_ok!(b.poll()), 2);
    assert_eq!(rec.times_since(start)[1], (2, 100 * MS));
    let s = layer.handle().snapshot();
    assert_eq!((s.waiting, s.waited, s.cancelled_waiting), (0, 1, 1));
}

/// Dropping every waiter, unpolled or polled, head or not, empties the
/// queue and reopens the fast path.
#[tokio::test(start_paused = true)]
async fn dropping_all_waiters_clears_the_queue() {
    let (layer, mut svc, rec, _) = spent(Duration::from_secs(1));
    let mut calls: Vec<Call> = (1..=5).map(|n| call(&mut svc, n)).collect();
    assert_pending!(calls[0].poll());
    assert_pending!(calls[3].poll());
    let h = layer.handle();
    assert_eq!(h.waiting(), 5);
    // Out of order: the head last.
    let mut calls: Vec<Option<Call>> = calls.into_iter().map(Some).collect();
    for i in [2, 4, 1, 3] {
        drop(calls[i].take());
        assert_eq!(h.waiting(), calls.iter().flatten().count() as u64);
    }
    drop(calls);
    assert_eq!(h.waiting(), 0);
    assert_eq!(h.snapshot().cancelled_waiting, 5);
    // Nobody took a cell: the next one comes at 100 ms, on the fast path.
    advance(100 * MS).await;
    assert_eq!(h.available(), 1);
    assert_eq!(try_call(&mut svc, 6), Some(Ok(6)));
    assert_eq!(rec.requests(), [0, 6]);
}

/// Dropping waiters at seeded random points, between polls and advances:
/// the queue always empties, cells are neither lost nor duplicated, and
/// every waiter is counted once.
#[tokio::test(start_paused = true)]
async fn random_drops_leave_a_consistent_limiter() {
    let start = Instant::now();
    let layer = waiting_layer(2, 400 * MS);
    let h = layer.handle();
    let (mut svc, rec) = service(&layer);
    let mut rng = Rng(42);
    let mut pending: Vec<Call> = Vec::new();
    let (mut admitted, mut rejected_n, mut dropped) = (0u64, 0u64, 0u64);
    for n in 0..2_000u32 {
        match rng.below(6) {
            0 | 1 => {
                let mut c = call(&mut svc, n);
                match c.poll() {
                    Poll::Ready(Ok(_)) => admitted += 1,
                    Poll::Ready(Err(e)) => {
                        limited(e);
                        rejected_n += 1;
                    }
                    Poll::Pending => pending.push(c),
                }
            }
            2 if !pending.is_empty() => {
                let i = rng.below(pending.len() as u64) as usize;
                drop(pending.remove(i));
                dropped += 1;
            }
            3 => advance(Duration::from_millis(rng.below(60))).await,
            _ => {}
        }
        let mut still = Vec::new();
        for mut c in pending.drain(..) {
            match c.poll() {
                Poll::Ready(Ok(_)) => admitted += 1,
                Poll::Ready(Err(e)) => {
                    assert!(limited(e).waited() > Duration::ZERO);
                    rejected_n += 1;
                }
                Poll::Pending => still.push(c),
            }
        }
        pending = still;
        assert_eq!(h.waiting(), pending.len() as u64);
    }
    dropped += pending.len() as u64;
    drop(pending);
    let s = h.snapshot();
    assert_eq!(s.waiting, 0);
    assert_eq!(s.cancelled_waiting, dropped);
    assert_eq!(s.rejected_total(), rejected_n);
    assert_eq!(rec.requests().len() as u64, admitted);
    // The bound holds over the whole run.
    let elapsed = nanos(Instant::now() - start);
    assert!(
        admitted <= 2 + elapsed / 100_000_000,
        "{admitted} in {elapsed} ns"
    );
    // And the fast path is open: after a full burst's time, the burst passes.
    advance(200 * MS).await;
    assert_eq!(try_call(&mut svc, 9_998), Some(Ok(9_998)));
    assert_eq!(try_call(&mut svc, 9_999), Some(Ok(9_999)));
}

// === deadlines ===

#[tokio::test(start_paused = true)]
async fn a_turn_after_the_deadline_in_scope_is_rejected_at_once() {
    let (layer, mut svc, _, _) = spent(Duration::from_secs(1));
    // Turn at 100 ms, deadline 150 ms: waits.
    let mut a = task::spawn(Deadline::after(150 * MS).scope(|| svc.call(1)));
    assert_pending!(a.poll());
    // Turn at 200 ms, deadline 150 ms: rejected at once, with its turn.
    let mut b = task::spawn(Deadline::after(150 * MS).scope(|| svc.call(2)));
    let l = rejected(&mut b);
    assert_eq!((l.retry_after(), l.waited()), (200 * MS, Duration::ZERO));
    advance(100 * MS).await;
    assert_eq!(assert_ready_ok!(a.poll()), 1);
    assert_eq!(layer.handle().snapshot().rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_never_waits_past_its_deadline() {
    let (layer, mut svc, rec, _) = spent(Duration::from_secs(1));
    // The head's turn is at 100 ms, but its owner never polls it again:
    // the waiter behind it, due at 200 ms, must give up at its deadline.
    let mut head = call(&mut svc, 1);
    assert_pending!(head.poll());
    let mut b = task::spawn(Deadline::after(250 * MS).scope(|| svc.call(2)));
    assert_pending!(b.poll());
    advance(249 * MS).await;
    assert_pending!(b.poll());
    advance(MS).await;
    assert!(b.is_woken(), "woken at its deadline");
    let l = limited(tokio_test::assert_ready_err!(b.poll()));
    assert_eq!(l.waited(), 250 * MS);
    assert!(l.retry_after() > Duration::ZERO);
    let s = layer.handle().snapshot();
    assert_eq!((s.rejected_after_waiting, s.waiting), (1, 1));
    assert_eq!(assert_ready_ok!(head.poll()), 1);
    assert_eq!(rec.requests(), [0, 1]);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_gives_up_at_max_wait() {
    let (layer, mut svc, _, _) = spent(150 * MS);
    let mut head = call(&mut svc, 1);
    assert_pending!(head.poll());
    // The head is never polled again. 50 ms on, a second call's turn
    // (200 ms) is 150 ms away: it just fits, and waits.
    advance(50 * MS).await;
    let mut b = call(&mut svc, 2);
    assert_pending!(b.poll());
    advance(150 * MS).await;
    let l = limited(tokio_test::assert_ready_err!(b.poll()));
    assert_eq!(l.waited(), 150 * MS);
    assert_eq!(layer.handle().snapshot().rejected_after_waiting, 1);
    drop(head);
    assert_eq!(layer.handle().waiting(), 0);
}

#[cfg(feature = "http")]
mod http_deadline {
    use steadfast::deadline::RequestDeadline;
    use steadfast::rate_limit::RateLimit;

    use super::*;

    type Req = http::Request<()>;

    /// An inner service that answers with the request's `grpc-timeout`.
    #[derive(Clone)]
    struct Echo;

    impl Service<Req> for Echo {
        type Response = Option<String>;
        type Error = Infallible;
        type Future = Ready<Result<Option<String>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: Req) -> Self::Future {
            let t = req.headers().get("grpc-timeout");
            ready(Ok(t.map(|v| v.to_str().unwrap().to_owned())))
        }
    }

    fn grpc(deadline: Option<Deadline>) -> Req {
        let mut req = http::Request::builder()
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        if let Some(d) = deadline {
            req.extensions_mut().insert(d);
        }
        req
    }

    fn svc() -> RateLimit<Echo, RequestDeadline> {
        waiting_layer(1, Duration::from_secs(1))
            .deadline_aware()
            .layer(Echo)
    }

    #[tokio::test(start_paused = true)]
    async fn the_requests_own_deadline_bounds_the_wait() {
        let mut svc = svc();
        assert_ready_ok!(task::spawn(svc.call(grpc(None))).poll());
        let mut a = task::spawn(svc.call(grpc(Some(Deadline::after(150 * MS)))));
        assert_pending!(a.poll());
        let mut b = task::spawn(svc.call(grpc(Some(Deadline::after(150 * MS)))));
        let l = limited(tokio_test::assert_ready_err!(b.poll()));
        assert_eq!((l.retry_after(), l.waited()), (200 * MS, Duration::ZERO));
        advance(100 * MS).await;
        // The next hop is told the time left after the wait: 50 ms.
        let timeout = assert_ready_ok!(a.poll());
        assert_eq!(timeout.as_deref(), Some("50000000n"));
    }

    #[tokio::test(start_paused = true)]
    async fn without_deadline_aware_the_requests_deadline_is_not_read() {
        let mut svc = waiting_layer(1, Duration::from_secs(1)).layer(Echo);
        assert_ready_ok!(task::spawn(svc.call(grpc(None))).poll());
        let mut a = task::spawn(svc.call(grpc(Some(Deadline::after(50 * MS)))));
        assert_pending!(a.poll());
        advance(100 * MS).await;
        assert_eq!(assert_ready_ok!(a.poll()), None);
    }
}
