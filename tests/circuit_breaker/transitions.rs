//! Every transition of the state machine, and the open-duration schedule.

use std::collections::BTreeSet;
use std::time::Duration;

use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitState, TransitionReason, Window};
use steadfast::BoxError;
use tokio::time::advance;

use crate::harness::{consecutive, rate, ten_second_window, trip, Harness, NS, SEC};

use CircuitState::{Closed, HalfOpen, Open};

#[tokio::test(start_paused = true)]
async fn consecutive_failures_trip_at_exactly_n() {
    let mut h = Harness::new(consecutive(3));
    h.fail_n(2).await;
    assert_eq!(h.state(), Closed);
    assert_eq!(h.snapshot().consecutive_failures, 2);
    assert!(h.log.all().is_empty());

    h.fail().await;
    assert_eq!(h.state(), Open);
    h.assert_tripped_once(TransitionReason::ConsecutiveFailures(3));
    assert_eq!(h.log.last().open_for(), Some(SEC));
    let open = h.reject();
    assert_eq!(open.state(), Open);
    assert_eq!(open.retry_after(), Some(SEC));
    let snap = h.snapshot();
    assert_eq!((snap.failures, snap.rejected, snap.opened), (3, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_consecutive_run() {
    let mut h = Harness::new(consecutive(3));
    h.fail_n(2).await;
    h.ok().await;
    assert_eq!(h.snapshot().consecutive_failures, 0);
    h.fail_n(2).await;
    assert_eq!(h.state(), Closed, "the run restarted after the success");
    h.fail().await;
    assert_eq!(h.state(), Open);
}

#[tokio::test(start_paused = true)]
async fn ignored_outcomes_neither_count_nor_break_the_run() {
    // `Ok(0)` means "not the backend's fault".
    let classify = |res: &Result<u32, BoxError>| match res {
        Ok(0) => steadfast::classify::Outcome::Ignored,
        Ok(_) => steadfast::classify::Outcome::Success,
        Err(_) => steadfast::classify::Outcome::Failure,
    };
    let mut h = Harness::with_classifier(consecutive(3), classify);
    h.fail_n(2).await;
    for _ in 0..5 {
        assert_eq!(h.respond(Ok(0)).await.unwrap(), 0);
    }
    let snap = h.snapshot();
    assert_eq!(snap.state, Closed);
    assert_eq!(snap.consecutive_failures, 2, "ignored calls keep the run");
    assert_eq!((snap.ignored, snap.failures, snap.successes), (5, 2, 0));
    h.fail().await;
    h.assert_tripped_once(TransitionReason::ConsecutiveFailures(3));
}

#[tokio::test(start_paused = true)]
async fn failure_rate_over_a_count_window_trips_once_minimum_is_reached() {
    let mut h = Harness::new(rate(50.0).window(Window::count(10)).minimum_calls(10));
    // 100 % failures, but below the minimum.
    h.fail_n(5).await;
    h.ok_n(4).await;
    assert_eq!(h.state(), Closed);
    assert_eq!(h.snapshot().window_calls, 9);
    // The 10th call: 6 of 10 failed.
    h.fail().await;
    h.assert_tripped_once(TransitionReason::FailureRate(60.0));
}

#[tokio::test(start_paused = true)]
async fn failure_rate_over_a_time_window_trips_across_buckets() {
    let mut h = Harness::new(ten_second_window(4));
    // One call per bucket: all four stay inside the 10 s window.
    h.ok().await;
    advance(SEC).await;
    h.ok().await;
    advance(SEC).await;
    h.fail().await;
    advance(SEC).await;
    assert_eq!(h.state(), Closed);
    assert_eq!(h.snapshot().window_calls, 3);
    h.fail().await;
    h.assert_tripped_once(TransitionReason::FailureRate(50.0));
}

#[tokio::test(start_paused = true)]
async fn slow_call_rate_trips() {
    let mut h = Harness::new(
        CircuitBreakerConfig::builder()
            .without_failure_rate()
            .without_consecutive_failures()
            .slow_call_duration(SEC)
            .slow_call_rate(50.0)
            .window(Window::count(4))
            .minimum_calls(4)
            .open_jitter(0.0),
    );
    // Just under the limit: not slow.
    let call = h.in_flight().await;
    advance(SEC - NS).await;
    call.finish(Ok(1)).unwrap();
    // Fast.
    h.ok().await;
    // Exactly the limit: slow (a success, but slow).
    let call = h.in_flight().await;
    advance(SEC).await;
    call.finish(Ok(1)).unwrap();
    let snap = h.snapshot();
    assert_eq!(
        (snap.state, snap.slow_calls, snap.window_calls),
        (Closed, 1, 3)
    );
    // Fourth call, slow: 2 of 4.
    let call = h.in_flight().await;
    advance(Duration::from_secs(3)).await;
    call.finish(Ok(1)).unwrap();
    h.assert_tripped_once(TransitionReason::SlowCallRate(50.0));
    assert_eq!(h.snapshot().successes, 4);
}

#[tokio::test(start_paused = true)]
async fn open_becomes_half_open_lazily_at_exactly_the_open_duration() {
    let open = Duration::from_secs(10);
    let mut h = Harness::new(consecutive(1).open_duration(open));
    trip(&mut h, 1).await;

    advance(open - NS).await;
    let rejected = h.reject();
    assert_eq!(rejected.state(), Open);
    assert_eq!(rejected.retry_after(), Some(NS));

    advance(NS).await;
    // Lazy: nothing happens until a call comes.
    assert_eq!(h.state(), Open);
    assert_eq!(h.snapshot().retry_after, Some(Duration::ZERO));
    assert_eq!(h.log.len(), 1);

    let probe = h.in_flight().await;
    assert_eq!(h.state(), HalfOpen);
    assert_eq!(
        h.log.steps()[1..],
        [(Open, HalfOpen, TransitionReason::OpenElapsed)]
    );
    assert_eq!(h.log.last().open_for(), None);
    probe.finish(Ok(3)).unwrap();
    assert_eq!(h.state(), Closed);
    assert_eq!(h.snapshot().time_open, open);
}

#[tokio::test(start_paused = true)]
async fn half_open_needs_success_threshold_successes_to_close() {
    let mut h = Harness::new(consecutive(1).success_threshold(3));
    trip(&mut h, 1).await;
    advance(SEC).await;
    h.ok().await;
    assert_eq!(h.state(), HalfOpen);
    h.ok().await;
    assert_eq!(h.state(), HalfOpen);
    h.ok().await;
    assert_eq!(h.state(), Closed);
    assert_eq!(
        h.log.steps(),
        [
            (Closed, Open, TransitionReason::ConsecutiveFailures(1)),
            (Open, HalfOpen, TransitionReason::OpenElapsed),
            (HalfOpen, Closed, TransitionReason::ProbesSucceeded),
        ]
    );
    let snap = h.snapshot();
    assert_eq!((snap.opened, snap.half_opened, snap.closed), (1, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn closing_empties_the_window_and_the_run() {
    let mut h = Harness::new(
        rate(50.0)
            .consecutive_failures(3)
            .window(Window::count(10))
            .minimum_calls(4),
    );
    h.ok().await;
    h.fail_n(3).await;
    assert_eq!(h.state(), Open);
    advance(SEC).await;
    h.ok().await;
    let snap = h.snapshot();
    assert_eq!(snap.state, Closed);
    assert_eq!((snap.window_calls, snap.consecutive_failures), (0, 0));
    assert_eq!(snap.failure_rate, None);
    // Old failures are gone: three more calls with one failure do not trip.
    h.fail().await;
    h.ok_n(2).await;
    assert_eq!(h.state(), Closed);
}

#[tokio::test(start_paused = true)]
async fn flaps_grow_the_capped_open_duration_and_failed_probes_keep_it() {
    // Each trip from closed within 10 s of the probes' close grows the open
    // duration ×3 (1 s, 3 s, 9 s capped at 5 s); each failed probe after a
    // trip re-opens for the duration that trip chose, exactly.
    let flap_window = Duration::from_secs(10);
    let mut h = Harness::new(
        consecutive(1)
            .open_duration(SEC)
            .open_duration_multiplier(3.0)
            .max_open_duration(Duration::from_secs(5))
            .flap_window(flap_window),
    );
    let mut expected = vec![];
    for want in [1, 3, 5, 5].map(Duration::from_secs) {
        h.fail().await;
        let last = h.log.last();
        assert_eq!((last.from(), last.to()), (Closed, Open));
        assert_eq!(last.open_for(), Some(want));
        expected.push(want);
        // Two failed probes: each re-opens for the same duration.
        for _ in 0..2 {
            advance(want - NS).await;
            assert_eq!(h.reject().retry_after(), Some(NS));
            advance(NS).await;
            h.fail().await;
            let last = h.log.last();
            assert_eq!(
                (last.from(), last.to(), last.reason()),
                (HalfOpen, Open, TransitionReason::ProbeFailed)
            );
            assert_eq!(last.open_for(), Some(want));
            assert_eq!(h.reject().retry_after(), Some(want));
            expected.push(want);
        }
        advance(want).await;
        h.ok().await;
        assert_eq!(h.state(), Closed);
        // Closed for just under the flap window: the next trip is a flap.
        advance(flap_window - NS).await;
    }
    let opens: Vec<_> = h.log.all().iter().filter_map(|t| t.open_for()).collect();
    assert_eq!(opens, expected);

    // Closed for the whole flap window: the next trip starts at the base.
    advance(NS).await;
    h.fail().await;
    assert_eq!(h.log.last().open_for(), Some(SEC));
}

#[tokio::test(start_paused = true)]
async fn jitter_stays_within_the_fraction_and_is_reproducible() {
    let base = Duration::from_secs(10);
    let jitter = 0.5;
    // Jitter only shortens: in [d·(1 − jitter), d].
    let (lo, hi) = (base.mul_f64(1.0 - jitter), base);
    let mut seen = BTreeSet::new();
    for seed in 0..64 {
        let builder = || {
            consecutive(1)
                .open_duration(base)
                .max_open_duration(Duration::from_secs(100))
                .open_jitter(jitter)
                .jitter_seed(seed)
        };
        let mut h = Harness::new(builder());
        trip(&mut h, 1).await;
        let open_for = h.log.last().open_for().unwrap();
        assert!(
            lo <= open_for && open_for <= hi,
            "seed {seed}: {open_for:?} outside {lo:?}..={hi:?}"
        );
        assert_eq!(h.reject().retry_after(), Some(open_for));

        // A failed probe re-opens around the same base, with fresh jitter.
        advance(open_for).await;
        h.fail().await;
        let reopen = h.log.last().open_for().unwrap();
        assert!(
            lo <= reopen && reopen <= hi,
            "seed {seed}: re-open {reopen:?}"
        );

        // Same seed, same schedule.
        let mut again = Harness::new(builder());
        trip(&mut again, 1).await;
        assert_eq!(again.log.last().open_for(), Some(open_for));
        seen.insert(open_for);
    }
    assert!(seen.len() > 32, "jitter spreads the durations: {seen:?}");
}

#[tokio::test(start_paused = true)]
async fn default_config_trips_on_twenty_consecutive_failures() {
    let mut h = Harness::new(CircuitBreakerConfig::builder().jitter_seed(1));
    h.fail_n(19).await;
    assert_eq!(h.state(), Closed);
    h.fail().await;
    h.assert_tripped_once(TransitionReason::ConsecutiveFailures(20));
    // 5 s, shortened by up to 20 %.
    let open_for = h.log.last().open_for().unwrap();
    assert!(
        Duration::from_secs(4) <= open_for && open_for <= Duration::from_secs(5),
        "{open_for:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn default_minimum_calls_is_twenty() {
    let mut h = Harness::new(rate(50.0).window(Window::count(100)));
    h.fail_n(19).await;
    assert_eq!(h.state(), Closed);
    h.fail().await;
    h.assert_tripped_once(TransitionReason::FailureRate(100.0));
}

#[tokio::test(start_paused = true)]
async fn default_minimum_calls_shrinks_to_a_small_count_window() {
    // Not set: 20 shrinks to the window's 4.
    let mut h = Harness::new(rate(50.0).window(Window::count(4)));
    h.ok().await;
    h.fail().await;
    h.ok().await;
    assert_eq!(h.state(), Closed);
    h.fail().await;
    h.assert_tripped_once(TransitionReason::FailureRate(50.0));
}

/// A failure that brings the window to exactly the threshold trips it
/// ("at least `percent` %"), whatever the threshold.
#[tokio::test(start_paused = true)]
async fn failure_rate_exactly_at_an_awkward_threshold_trips() {
    // 7 of 25 is exactly 28 %; 0.28 * 25.0 == 7.000000000000001 in f64.
    let mut h = Harness::new(rate(28.0).window(Window::count(25)).minimum_calls(25));
    h.ok_n(18).await;
    h.fail_n(6).await;
    assert_eq!(h.state(), Closed);
    h.fail().await;
    assert_eq!(
        h.state(),
        Open,
        "7 failures of 25 calls is 28 %, at the threshold"
    );
}

/// With jitter off, the breaker stays open for exactly the configured duration.
#[tokio::test(start_paused = true)]
async fn open_duration_is_exact_without_jitter() {
    let open = Duration::from_millis(1001);
    let mut h = Harness::new(consecutive(1).open_duration(open));
    trip(&mut h, 1).await;
    assert_eq!(h.log.last().open_for(), Some(open));
    advance(open - NS).await;
    assert_eq!(h.reject().state(), Open);
}
