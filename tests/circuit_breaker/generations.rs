//! Results from an older generation, and cancellation while closed.

use steadfast::circuit_breaker::{CircuitState, TransitionReason, Window};
use tokio::time::advance;

use crate::harness::{consecutive, rate, Harness, SEC};

use CircuitState::{Closed, Open};

#[tokio::test(start_paused = true)]
async fn a_failure_admitted_while_closed_arriving_after_the_trip_is_late() {
    let mut h = Harness::new(consecutive(2));
    let slow = h.in_flight().await;
    h.fail_n(2).await;
    assert_eq!(h.state(), Open);
    let retry_after = h.snapshot().retry_after;

    assert!(slow.finish(Err("late".into())).is_err());
    let snap = h.snapshot();
    assert_eq!(snap.state, Open);
    assert_eq!((snap.failures, snap.late, snap.opened), (3, 1, 1));
    assert_eq!(
        snap.retry_after, retry_after,
        "the open period is unchanged"
    );
    assert_eq!(h.log.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failure_from_an_older_closed_phase_does_not_count_in_the_new_one() {
    let mut h = Harness::new(
        rate(50.0)
            .consecutive_failures(2)
            .window(Window::count(2))
            .minimum_calls(1),
    );
    let old = h.in_flight().await;
    // Trip, recover: closed again, in a later generation.
    h.fail_n(1).await;
    assert_eq!(h.state(), Open);
    advance(SEC).await;
    h.ok().await;
    assert_eq!(h.state(), Closed);

    // Under this rule set a single current failure would trip (1 of 1).
    assert!(old.finish(Err("from before".into())).is_err());
    let snap = h.snapshot();
    assert_eq!(snap.state, Closed);
    assert_eq!(
        (snap.late, snap.consecutive_failures, snap.window_calls),
        (1, 0, 0)
    );
    assert_eq!(
        h.log.steps(),
        [
            (Closed, Open, TransitionReason::FailureRate(100.0)),
            (Open, CircuitState::HalfOpen, TransitionReason::OpenElapsed),
            (
                CircuitState::HalfOpen,
                Closed,
                TransitionReason::ProbesSucceeded
            ),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn cancelled_calls_while_closed_are_not_failures() {
    let mut h = Harness::new(
        rate(50.0)
            .consecutive_failures(3)
            .window(Window::count(5))
            .minimum_calls(1),
    );
    let mut calls = Vec::new();
    for _ in 0..10 {
        calls.push(h.in_flight().await);
    }
    drop(calls);
    let snap = h.snapshot();
    assert_eq!(snap.state, Closed);
    assert_eq!(snap.cancelled, 10);
    assert_eq!((snap.failures, snap.successes, snap.ignored), (0, 0, 0));
    assert_eq!((snap.consecutive_failures, snap.window_calls), (0, 0));
    assert!(h.log.all().is_empty());
}
