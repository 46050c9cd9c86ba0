//! The sliding windows behind the rate rules, and `minimum_calls`.

use std::time::Duration;

use steadfast::circuit_breaker::{CircuitState, TransitionReason, Window};
use tokio::time::advance;

use crate::harness::{rate, ten_second_window, Harness, NS, SEC};

use CircuitState::Closed;

#[tokio::test(start_paused = true)]
async fn minimum_calls_gates_the_rate_rule() {
    let mut h = Harness::new(rate(50.0).window(Window::count(20)).minimum_calls(10));
    h.fail_n(9).await;
    let snap = h.snapshot();
    assert_eq!(snap.state, Closed, "100 % failed, but only 9 calls");
    assert_eq!(snap.window_calls, 9);
    assert_eq!(snap.failure_rate, Some(100.0));
    h.fail().await;
    h.assert_tripped_once(TransitionReason::FailureRate(100.0));
}

#[tokio::test(start_paused = true)]
async fn count_window_slides_after_a_long_healthy_run() {
    let mut h = Harness::new(rate(50.0).window(Window::count(10)).minimum_calls(10));
    h.ok_n(1_000).await;
    for n in 1..=4 {
        h.fail().await;
        assert_eq!(h.state(), Closed, "{n} failures of the last 10 calls");
        assert_eq!(h.snapshot().failure_rate, Some(f64::from(n) * 10.0));
    }
    h.fail().await;
    h.assert_tripped_once(TransitionReason::FailureRate(50.0));
}

#[tokio::test(start_paused = true)]
async fn count_window_drops_the_oldest_call() {
    let mut h = Harness::new(rate(50.0).window(Window::count(10)).minimum_calls(10));
    h.fail_n(4).await;
    h.ok_n(6).await;
    assert_eq!(h.snapshot().failure_rate, Some(40.0));
    // Each success pushes out the oldest call, a failure.
    for rate in [30.0, 20.0, 10.0, 0.0] {
        h.ok().await;
        let snap = h.snapshot();
        assert_eq!((snap.window_calls, snap.failure_rate), (10, Some(rate)));
    }
    // Each failure now pushes out a success.
    for rate in [10.0, 20.0, 30.0, 40.0] {
        h.fail().await;
        assert_eq!(h.snapshot().failure_rate, Some(rate));
        assert_eq!(h.state(), Closed);
    }
    h.fail().await;
    h.assert_tripped_once(TransitionReason::FailureRate(50.0));
}

#[tokio::test(start_paused = true)]
async fn time_window_bucket_leaves_whole_at_the_window_edge() {
    // 10 buckets of 1 s.
    let mut h = Harness::new(ten_second_window(4));
    h.fail_n(3).await;
    advance(Duration::from_secs(10) - NS).await;
    assert_eq!(h.snapshot().window_calls, 3);
    advance(NS).await;
    let snap = h.snapshot();
    assert_eq!(snap.window_calls, 0, "the first bucket left the window");
    assert_eq!(snap.failure_rate, None);
}

#[tokio::test(start_paused = true)]
async fn time_window_failures_older_than_the_window_no_longer_count() {
    let mut h = Harness::new(ten_second_window(4));
    h.fail_n(3).await;
    advance(Duration::from_secs(11)).await;
    // With the old failures this would be 4 of 7.
    h.ok_n(3).await;
    h.fail().await;
    assert_eq!(h.state(), Closed);
    assert_eq!(h.snapshot().window_calls, 4);
    h.fail().await;
    assert_eq!(h.state(), Closed, "2 of 5");
    h.fail().await;
    h.assert_tripped_once(TransitionReason::FailureRate(50.0));
}

#[tokio::test(start_paused = true)]
async fn time_window_keeps_the_recent_buckets() {
    // Failures spread over 9.5 s all count together.
    let mut h = Harness::new(ten_second_window(7));
    for _ in 0..5 {
        h.fail().await;
        advance(SEC * 2 - Duration::from_millis(100)).await;
    }
    // t = 9.5 s: buckets 0, 1.9, 3.8, 5.7, 7.6 are all live.
    assert_eq!(h.snapshot().window_calls, 5);
    h.ok().await;
    assert_eq!(h.snapshot().failure_rate, Some(500.0 / 6.0));
    assert_eq!(h.state(), Closed);
    h.fail().await;
    h.assert_tripped_once(TransitionReason::FailureRate(600.0 / 7.0));
}

/// With `HttpClassifier`: a 4xx other than 408/429 is ignored.
#[cfg(feature = "http")]
mod http_classified {
    use steadfast::circuit_breaker::{CircuitState, TransitionReason, Window};
    use steadfast::classify::HttpClassifier;
    use steadfast::BoxError;

    use crate::harness::{rate, Harness};

    use CircuitState::Closed;

    type Response = http::Response<()>;

    fn response(status: u16) -> Result<Response, BoxError> {
        Ok(http::Response::builder().status(status).body(()).unwrap())
    }

    /// Trips on 2 failures in a row or 50 % of the last 4 calls.
    fn http_harness() -> Harness<Response, HttpClassifier> {
        Harness::with_classifier(
            rate(50.0)
                .consecutive_failures(2)
                .window(Window::count(4))
                .minimum_calls(4),
            HttpClassifier::new(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn http_client_errors_do_not_count_towards_the_window() {
        let mut h = http_harness();
        h.respond(response(500)).await.unwrap();
        for _ in 0..10 {
            let res = h.respond(response(404)).await.unwrap();
            assert_eq!(res.status(), 404);
        }
        let snap = h.snapshot();
        assert_eq!(snap.window_calls, 1, "404s are not in the window");
        assert_eq!(snap.consecutive_failures, 1, "404s do not break the run");
        assert_eq!((snap.ignored, snap.failures), (10, 1));
        // The second 5xx in a row trips it, 404s between them notwithstanding.
        h.respond(response(404)).await.unwrap();
        h.respond(response(503)).await.unwrap();
        h.assert_tripped_once(TransitionReason::ConsecutiveFailures(2));
    }

    #[tokio::test(start_paused = true)]
    async fn http_successes_break_the_run_and_fill_the_window() {
        let mut h = http_harness();
        // 500 and 429 fail, 200 and 302 succeed: no run of two, but once the
        // 302 fills the window to minimum_calls, 2 of 4 is 50 %.
        for status in [500, 200, 429] {
            h.respond(response(status)).await.unwrap();
        }
        let snap = h.snapshot();
        assert_eq!((snap.state, snap.window_calls), (Closed, 3));
        assert_eq!(snap.consecutive_failures, 1);
        h.respond(response(302)).await.unwrap();
        h.assert_tripped_once(TransitionReason::FailureRate(50.0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_below_the_threshold_does_not_trip() {
        let mut h = http_harness();
        // [500, 200, 200, 302]: 1 of 4 failed once the window is full.
        for status in [500, 200, 200, 302, 200, 200] {
            h.respond(response(status)).await.unwrap();
        }
        let snap = h.snapshot();
        assert_eq!((snap.state, snap.window_calls), (Closed, 4));
        assert_eq!(snap.failure_rate, Some(0.0));
    }
}
