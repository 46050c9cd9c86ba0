//! Half-open: probe slots, cancellation, probe timeout.

use std::time::Duration;

use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitState, TransitionReason, Window};
use steadfast::classify::Outcome;
use steadfast::BoxError;
use tokio::time::advance;

use crate::harness::{consecutive, trip, Harness, NS, SEC};

use CircuitState::{Closed, HalfOpen, Open};

#[tokio::test(start_paused = true)]
async fn at_most_half_open_max_calls_probes_are_admitted() {
    let mut h = Harness::new(consecutive(1).half_open_max_calls(2).success_threshold(2));
    trip(&mut h, 1).await;
    advance(SEC).await;

    let p1 = h.in_flight().await;
    assert_eq!(h.state(), HalfOpen);
    let p2 = h.in_flight().await;
    assert_eq!(h.snapshot().probes_in_flight, 2);
    for _ in 0..3 {
        let rejected = h.reject();
        assert_eq!(rejected.state(), HalfOpen);
        assert_eq!(rejected.retry_after(), None);
    }
    assert_eq!(h.snapshot().rejected, 3);

    // A finished probe frees its slot for another.
    p1.finish(Ok(1)).unwrap();
    assert_eq!(h.state(), HalfOpen, "1 of 2 successes");
    assert_eq!(h.snapshot().probes_in_flight, 1);
    let p3 = h.in_flight().await;
    assert_eq!(h.reject().state(), HalfOpen);

    // The second success closes it; the third probe's result is then late.
    p2.finish(Ok(2)).unwrap();
    assert_eq!(h.state(), Closed);
    assert_eq!(p3.finish(Ok(3)).unwrap(), 3);
    let snap = h.snapshot();
    assert_eq!((snap.state, snap.successes, snap.late), (Closed, 3, 1));
    assert_eq!(snap.probes_in_flight, 0);
    assert_eq!(snap.closed, 1);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_frees_its_slot_and_records_nothing() {
    let mut h = Harness::new(consecutive(1));
    trip(&mut h, 1).await;
    advance(SEC).await;

    let probe = h.in_flight().await;
    assert_eq!(h.reject().state(), HalfOpen);
    let before = h.snapshot();
    drop(probe);
    let after = h.snapshot();
    assert_eq!(after.cancelled, before.cancelled + 1);
    assert_eq!(
        (after.successes, after.failures, after.ignored),
        (before.successes, before.failures, before.ignored)
    );
    assert_eq!(after.state, HalfOpen, "a cancelled probe moves nothing");

    // The slot is free again.
    let probe = h.in_flight().await;
    probe.finish(Ok(1)).unwrap();
    assert_eq!(h.state(), Closed);
    assert_eq!(h.log.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn an_ignored_probe_frees_its_slot_and_moves_nothing() {
    let classify = |res: &Result<u32, BoxError>| match res {
        Ok(0) => Outcome::Ignored,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    };
    let mut h = Harness::with_classifier(consecutive(1), classify);
    trip(&mut h, 1).await;
    advance(SEC).await;
    h.respond(Ok(0)).await.unwrap();
    assert_eq!(h.state(), HalfOpen);
    assert_eq!(h.snapshot().ignored, 1);
    h.ok().await;
    assert_eq!(h.state(), Closed);
}

#[tokio::test(start_paused = true)]
async fn a_hung_probe_times_out_and_its_late_result_moves_nothing() {
    let probe_timeout = Duration::from_secs(5);
    let mut h = Harness::new(
        consecutive(1)
            .open_duration(SEC)
            .open_duration_multiplier(2.0)
            .probe_timeout(probe_timeout),
    );
    trip(&mut h, 1).await;
    advance(SEC).await;
    let hung = h.in_flight().await;

    advance(probe_timeout - NS).await;
    assert_eq!(h.reject().state(), HalfOpen, "the probe may still answer");
    assert_eq!(h.state(), HalfOpen);

    advance(NS).await;
    // The next call finds the probe overdue: the breaker re-opens (for
    // 1 s again: a timed-out probe, like a failed one, does not grow the
    // open duration) and this call is rejected as open.
    let rejected = h.reject();
    assert_eq!(rejected.state(), Open);
    assert_eq!(rejected.retry_after(), Some(SEC));
    let last = h.log.last();
    assert_eq!(
        (last.from(), last.to(), last.reason()),
        (HalfOpen, Open, TransitionReason::ProbeTimeout)
    );
    assert_eq!(last.open_for(), Some(SEC));

    // After the open duration a fresh probe is admitted.
    advance(SEC).await;
    let fresh = h.in_flight().await;
    assert_eq!(h.state(), HalfOpen);

    // The old probe fails at last: counted, late, and the fresh phase stays.
    let before = h.snapshot();
    assert!(hung.finish(Err("too late".into())).is_err());
    let after = h.snapshot();
    assert_eq!(after.state, HalfOpen);
    assert_eq!(after.failures, before.failures + 1);
    assert_eq!(after.late, before.late + 1);
    assert_eq!(
        h.reject().state(),
        HalfOpen,
        "the fresh probe holds the slot"
    );

    fresh.finish(Ok(1)).unwrap();
    assert_eq!(
        h.log.steps(),
        [
            (Closed, Open, TransitionReason::ConsecutiveFailures(1)),
            (Open, HalfOpen, TransitionReason::OpenElapsed),
            (HalfOpen, Open, TransitionReason::ProbeTimeout),
            (Open, HalfOpen, TransitionReason::OpenElapsed),
            (HalfOpen, Closed, TransitionReason::ProbesSucceeded),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_late_success_of_a_timed_out_probe_does_not_close() {
    let mut h = Harness::new(consecutive(1).probe_timeout(SEC));
    trip(&mut h, 1).await;
    advance(SEC).await;
    let hung = h.in_flight().await;
    advance(SEC).await;
    assert_eq!(h.reject().state(), Open);
    hung.finish(Ok(9)).unwrap();
    let snap = h.snapshot();
    assert_eq!((snap.state, snap.late, snap.closed), (Open, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_slow_probe_is_a_failed_probe() {
    let mut h = Harness::new(
        CircuitBreakerConfig::builder()
            .without_failure_rate()
            .consecutive_failures(1)
            .slow_call_duration(SEC)
            .slow_call_rate(100.0)
            .window(Window::count(10))
            .open_duration(SEC)
            .open_jitter(0.0),
    );
    trip(&mut h, 1).await;
    advance(SEC).await;
    let probe = h.in_flight().await;
    advance(SEC).await;
    probe.finish(Ok(1)).unwrap();
    assert_eq!(h.state(), Open);
    assert_eq!(h.log.last().reason(), TransitionReason::ProbeFailed);
    assert_eq!(h.snapshot().slow_calls, 1);
}
