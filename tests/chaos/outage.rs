//! The outage simulation: a backend behind a circuit breaker and a
//! per-attempt timeout, with a small error rate, a latency tail and, from
//! 10 s to 40 s, an outage of hangs and refused connections. The breaker
//! opens within the outage's first calls, keeps the backend free of calls
//! while it lasts, and closes within one open duration of its end; the
//! same seeds replay the same timeline.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use steadfast::chaos::{Fault, FaultLayer, FaultSnapshot, Latency};
use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};
use steadfast::timeout::TimeoutLayer;
use steadfast::{BoxError, Rejection};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use crate::{counting, Boom};

const MS: fn(u64) -> Duration = Duration::from_millis;
const S: fn(u64) -> Duration = Duration::from_secs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Ok,
    Failed,
    Rejected,
}

/// One run: a call every 100 ms for 60 s. Returns each call's outcome, the
/// breaker state after it, and the fault layer's snapshot.
async fn simulate() -> (Vec<(Step, CircuitState)>, FaultSnapshot, usize) {
    let started = Arc::new(AtomicUsize::new(0));
    let faults = FaultLayer::builder()
        .seed(11)
        .latency(Latency::exponential(MS(10), MS(200)))
        .fault(0.01, Fault::error(|| Boom))
        .window(S(10), S(25), Fault::hang())
        .window(S(25), S(40), Fault::refused())
        .build()
        .unwrap();
    let breaker = CircuitBreakerLayer::new(
        CircuitBreakerConfig::builder()
            .consecutive_failures(3)
            .open_duration(S(2))
            // The default multiplier: failed probes during the outage do
            // not grow the open duration (only a re-trip soon after closing
            // does), so the breaker comes back within one open duration.
            .jitter_seed(5)
            .build()
            .unwrap(),
    );
    let states = breaker.handle();
    let mut svc = breaker.layer(
        TimeoutLayer::new(MS(300))
            .unwrap()
            .layer(faults.layer(counting(&started))),
    );
    let origin = Instant::now();
    let mut steps = Vec::new();
    for i in 0..600u32 {
        tokio::time::sleep_until(origin + MS(100) * i).await;
        let result: Result<u32, BoxError> = svc
            .ready()
            .await
            .unwrap()
            .call(i)
            .await
            .map_err(BoxError::from);
        let step = match result {
            Ok(_) => Step::Ok,
            Err(e) if matches!(Rejection::of(&e), Some(Rejection::CircuitOpen { .. })) => {
                Step::Rejected
            }
            Err(_) => Step::Failed,
        };
        steps.push((step, states.state()));
    }
    (
        steps,
        faults.handle().snapshot(),
        started.load(Ordering::SeqCst),
    )
}

#[tokio::test(start_paused = true)]
async fn outage_opens_the_breaker_and_recovery_closes_it() {
    let (steps, snap, started) = simulate().await;
    // Call i starts at i × 100 ms (a call that hangs takes 300 ms, so the
    // next one starts late: the schedule catches up at once).
    let at = |secs: usize| secs * 10;

    // Before the outage the backend is healthy: at most the 1 % errors.
    let early_failures = steps[..at(10)]
        .iter()
        .filter(|(s, _)| *s == Step::Failed)
        .count();
    assert!(early_failures <= 5, "{early_failures}");

    // Three failures in a row in the outage open the breaker.
    let opened = steps[at(10)..]
        .iter()
        .position(|(_, state)| *state == CircuitState::Open)
        .expect("the breaker opened")
        + at(10);
    assert!(opened < at(10) + 6, "opened at call {opened}");

    // During the outage most calls never reach the fault layer: rejected.
    let rejected = steps[at(11)..at(40)]
        .iter()
        .filter(|(s, _)| *s == Step::Rejected)
        .count();
    assert!(rejected > 200, "{rejected}");
    assert!(steps[at(10)..at(40)].iter().all(|(s, _)| *s != Step::Ok));

    // Within one open duration (2 s ± 20 %) and a probe of the end, calls
    // succeed again and the breaker is closed.
    let recovered = steps[at(40)..]
        .iter()
        .position(|(s, state)| *s == Step::Ok && *state == CircuitState::Closed)
        .expect("recovered")
        + at(40);
    assert!(recovered <= at(43), "recovered at call {recovered}");
    assert!(steps[at(45)..]
        .iter()
        .all(|(_, state)| *state == CircuitState::Closed));

    // The fault layer saw only the calls the breaker let through.
    assert_eq!(snap.calls as usize, steps.len() - rejected_total(&steps));
    assert_eq!(
        snap.windows.iter().sum::<u64>(),
        snap.hangs + snap.refused,
        "{snap}"
    );
    assert_eq!(started as u64, snap.passed);

    // The same seeds replay the same timeline.
    let (again, snap_again, _) = simulate().await;
    assert_eq!(steps, again);
    assert_eq!(snap, snap_again);
}

fn rejected_total(steps: &[(Step, CircuitState)]) -> usize {
    steps.iter().filter(|(s, _)| *s == Step::Rejected).count()
}
