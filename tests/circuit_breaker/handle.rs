//! The handle: manual control, snapshots, transition callbacks.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use steadfast::circuit_breaker::{
    CircuitBreakerHandle, CircuitBreakerLayer, CircuitState, TransitionReason, Window,
};
use tokio::time::advance;

use crate::harness::{consecutive, rate, trip, Harness, SEC};

use CircuitState::{Closed, Disabled, ForcedOpen, HalfOpen, Open};

#[tokio::test(start_paused = true)]
async fn force_open_rejects_everything_until_reset() {
    let mut h = Harness::new(consecutive(5));
    h.breaker.force_open();
    assert_eq!(h.state(), ForcedOpen);
    for _ in 0..3 {
        let rejected = h.reject();
        assert_eq!(rejected.state(), ForcedOpen);
        assert_eq!(rejected.retry_after(), None);
    }
    // Time does not half-open it.
    advance(Duration::from_secs(3600)).await;
    assert_eq!(h.reject().state(), ForcedOpen);
    let snap = h.snapshot();
    assert_eq!(
        (snap.state, snap.rejected, snap.retry_after),
        (ForcedOpen, 4, None)
    );
    assert_eq!(snap.time_open, Duration::from_secs(3600));

    h.breaker.reset();
    assert_eq!(h.state(), Closed);
    h.ok().await;
    assert_eq!(
        h.log.steps(),
        [
            (Closed, ForcedOpen, TransitionReason::Manual),
            (ForcedOpen, Closed, TransitionReason::Manual),
        ]
    );
    assert_eq!(h.log.all()[0].open_for(), None);
}

#[tokio::test(start_paused = true)]
async fn disable_lets_failures_through_without_tripping_but_counts_them() {
    let mut h = Harness::new(consecutive(2).failure_rate(50.0).minimum_calls(2));
    h.breaker.disable();
    assert_eq!(h.state(), Disabled);
    h.fail_n(10).await;
    h.ok().await;
    let snap = h.snapshot();
    assert_eq!(snap.state, Disabled);
    assert_eq!((snap.failures, snap.successes, snap.rejected), (10, 1, 0));
    assert_eq!(snap.opened, 0);

    // Back to closed with nothing carried over from the disabled phase.
    h.breaker.reset();
    h.fail().await;
    assert_eq!(h.state(), Closed);
    h.fail().await;
    assert_eq!(h.state(), Open);
    assert_eq!(
        h.log.steps(),
        [
            (Closed, Disabled, TransitionReason::Manual),
            (Disabled, Closed, TransitionReason::Manual),
            (Closed, Open, TransitionReason::ConsecutiveFailures(2)),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn reset_closes_clears_the_window_and_restarts_the_open_schedule() {
    let mut h = Harness::new(
        rate(50.0)
            .consecutive_failures(3)
            .window(Window::count(10))
            .minimum_calls(10)
            .open_duration(SEC)
            .open_duration_multiplier(4.0),
    );
    // Trip and close once, so the next trip is a flap.
    trip(&mut h, 3).await;
    advance(SEC).await;
    h.ok().await;
    assert_eq!(h.state(), Closed);
    // Fill the window with 4 failures in 10 calls, then trip on the run.
    h.ok_n(5).await;
    h.fail_n(1).await;
    h.ok().await;
    h.fail_n(3).await;
    assert_eq!(
        h.log.last().reason(),
        TransitionReason::ConsecutiveFailures(3)
    );
    // Grown: a trip within the flap window of closing opens for 4 s.
    assert_eq!(h.log.last().open_for(), Some(SEC * 4));

    h.breaker.reset();
    let snap = h.snapshot();
    assert_eq!(snap.state, Closed);
    assert_eq!((snap.window_calls, snap.consecutive_failures), (0, 0));
    assert_eq!(snap.retry_after, None);
    let last = h.log.last();
    assert_eq!(
        (last.from(), last.to(), last.reason()),
        (Open, Closed, TransitionReason::Manual)
    );

    // With the old window (5 of 10) or the old run (4 ≥ 3) this would trip.
    h.fail().await;
    assert_eq!(h.state(), Closed);
    assert_eq!(h.snapshot().window_calls, 1);
    h.fail_n(2).await;
    assert_eq!(h.state(), Open);
    assert_eq!(
        h.log.last().reason(),
        TransitionReason::ConsecutiveFailures(3)
    );
    // Within the flap window of the probes' close, but the reset forgot it.
    assert_eq!(h.log.last().open_for(), Some(SEC), "back to the base");
}

#[tokio::test(start_paused = true)]
async fn reset_during_half_open_makes_the_probe_late() {
    let mut h = Harness::new(consecutive(1));
    trip(&mut h, 1).await;
    advance(SEC).await;
    let probe = h.in_flight().await;
    h.breaker.reset();
    assert_eq!(h.state(), Closed);
    assert!(probe.finish(Err("probe failed".into())).is_err());
    let snap = h.snapshot();
    assert_eq!(
        (snap.state, snap.late, snap.consecutive_failures),
        (Closed, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn on_transition_sees_every_transition_in_order() {
    let mut h = Harness::new(consecutive(2).name("inventory"));
    trip(&mut h, 2).await;
    advance(SEC).await;
    h.fail().await; // probe fails: open for 1 s again
    advance(SEC).await;
    h.ok().await;
    h.breaker.force_open();
    h.breaker.force_open(); // no change, no event
    h.breaker.reset();
    h.breaker.disable();
    h.breaker.reset();
    h.breaker.reset(); // closed → closed: no event

    let all = h.log.all();
    assert_eq!(
        h.log.steps(),
        [
            (Closed, Open, TransitionReason::ConsecutiveFailures(2)),
            (Open, HalfOpen, TransitionReason::OpenElapsed),
            (HalfOpen, Open, TransitionReason::ProbeFailed),
            (Open, HalfOpen, TransitionReason::OpenElapsed),
            (HalfOpen, Closed, TransitionReason::ProbesSucceeded),
            (Closed, ForcedOpen, TransitionReason::Manual),
            (ForcedOpen, Closed, TransitionReason::Manual),
            (Closed, Disabled, TransitionReason::Manual),
            (Disabled, Closed, TransitionReason::Manual),
        ]
    );
    let open_for: Vec<_> = all.iter().map(|t| t.open_for()).collect();
    assert_eq!(
        open_for,
        [
            Some(SEC),
            None,
            Some(SEC),
            None,
            None,
            None,
            None,
            None,
            None
        ]
    );
    assert!(all.iter().all(|t| t.name() == Some("inventory")));
    assert_eq!(
        all[0].to_string(),
        "inventory: closed -> open (2 consecutive failures) for 1.00s"
    );

    let snap = h.snapshot();
    assert_eq!(snap.name.as_deref(), Some("inventory"));
    assert_eq!(h.breaker.name(), Some("inventory"));
    assert_eq!((snap.opened, snap.half_opened, snap.closed), (3, 2, 3));
    assert_eq!(snap.time_open, SEC * 2);
}

#[tokio::test(start_paused = true)]
async fn the_callback_runs_outside_the_lock_and_after_the_change() {
    // The callback reads the breaker through a handle; were it called under
    // the breaker's lock, the snapshot would deadlock.
    let handle: Arc<OnceLock<CircuitBreakerHandle>> = Arc::default();
    let seen: Arc<Mutex<Vec<(CircuitState, CircuitState)>>> = Arc::default();
    let config = consecutive(1)
        .on_transition({
            let handle = handle.clone();
            let seen = seen.clone();
            move |t| {
                let h = handle.get().expect("handle set before any call");
                seen.lock().unwrap().push((t.to(), h.snapshot().state));
            }
        })
        .build()
        .unwrap();
    let layer = CircuitBreakerLayer::new(config);
    handle.set(layer.handle()).unwrap();
    let (mut svc, mut mock) = tower_test::mock::spawn_layer::<u32, u32, _>(layer);

    tokio_test::assert_ready_ok!(svc.poll_ready());
    let mut call = tokio_test::task::spawn(svc.call(1));
    let (_, send) = mock.next_request().await.unwrap();
    send.send_error("down");
    tokio_test::assert_ready_err!(call.poll());
    handle.get().unwrap().force_open();
    handle.get().unwrap().reset();

    assert_eq!(
        *seen.lock().unwrap(),
        [(Open, Open), (ForcedOpen, ForcedOpen), (Closed, Closed)]
    );
}
