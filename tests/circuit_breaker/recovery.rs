//! How long the breaker stays open: a backend that was down is used again
//! within one base open duration of coming back, however long the outage;
//! a backend that flaps is backed off further on each flap.
//!
//! Each test drives calls at a steady rate through the breaker on paused
//! time, into a backend whose health is a function of the time and of the
//! breaker's transitions so far.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use steadfast::circuit_breaker::error::CircuitOpen;
use steadfast::circuit_breaker::{
    CircuitBreakerBuilder, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState, Transition,
    TransitionReason,
};
use steadfast::BoxError;
use tokio::time::{advance, Instant};
use tower::{service_fn, Layer, Service, ServiceExt};

use CircuitState::{Closed, HalfOpen, Open};

const MS: Duration = Duration::from_millis(1);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A transition and when it happened (since the run began).
#[derive(Debug, Clone)]
struct Event {
    at: Duration,
    transition: Transition,
}

/// What one call saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Success,
    /// The backend failed.
    Failure,
    /// The breaker rejected the call.
    Rejected,
}

/// A run: every transition, and every call's start time and outcome.
#[derive(Debug, Default)]
struct Trace {
    events: Vec<Event>,
    calls: Vec<(Duration, Seen)>,
}

impl Trace {
    /// `open_for` of every transition to open, in order.
    fn opens(&self) -> Vec<Duration> {
        self.events
            .iter()
            .filter_map(|e| e.transition.open_for())
            .collect()
    }

    /// `open_for` of every trip from closed, in order.
    fn trips(&self) -> Vec<Duration> {
        self.events
            .iter()
            .filter(|e| e.transition.from() == Closed && e.transition.to() == Open)
            .map(|e| e.transition.open_for().expect("an open has a duration"))
            .collect()
    }

    fn count(&self, from: Duration, seen: Seen) -> usize {
        self.calls
            .iter()
            .filter(|&&(at, s)| at >= from && s == seen)
            .count()
    }
}

/// Calls the breaker once every `interval` from time 0 until `stop` says so.
/// The backend answers a call made at `t` (since the start) successfully
/// when `up(t, events so far)` holds; the events include the transition the
/// call itself caused on its way in (to half-open, for a probe).
async fn run(
    builder: CircuitBreakerBuilder,
    interval: Duration,
    up: impl Fn(Duration, &[Event]) -> bool + Send + Sync + 'static,
    stop: impl Fn(Duration, &[Event]) -> bool,
) -> Trace {
    let start = Instant::now();
    let events = Arc::new(Mutex::new(Vec::<Event>::new()));
    let log = events.clone();
    let config = builder
        .on_transition(move |t| {
            log.lock().unwrap().push(Event {
                at: start.elapsed(),
                transition: t.clone(),
            })
        })
        .build()
        .expect("valid test config");
    let seen = events.clone();
    let backend = Arc::new(up);
    let mut svc = CircuitBreakerLayer::new(config).layer(service_fn(move |()| {
        let up = backend(start.elapsed(), &seen.lock().unwrap());
        async move {
            if up {
                Ok(())
            } else {
                Err::<(), BoxError>("backend down".into())
            }
        }
    }));
    let mut calls = Vec::new();
    loop {
        let t = start.elapsed();
        if stop(t, &events.lock().unwrap()) {
            break;
        }
        let res = svc.ready().await.expect("always ready").call(()).await;
        let outcome = match res {
            Ok(()) => Seen::Success,
            Err(e) if e.is::<CircuitOpen>() => Seen::Rejected,
            Err(_) => Seen::Failure,
        };
        calls.push((t, outcome));
        advance(interval).await;
    }
    let events = events.lock().unwrap().clone();
    Trace { events, calls }
}

/// The default configuration, a hard outage from 10 s for `outage`, calls
/// every millisecond, and 30 s of healthy backend after it.
async fn hard_outage(outage: Duration, seed: u64) -> Trace {
    let down_from = secs(10);
    let back = down_from + outage;
    let end = back + secs(30);
    run(
        CircuitBreakerConfig::builder().jitter_seed(seed),
        MS,
        move |t, _| !(down_from <= t && t < back),
        move |t, _| t >= end,
    )
    .await
}

/// Checks the recovery bound on a hard outage of `outage` from 10 s.
fn assert_recovers_within_the_base(trace: &Trace, outage: Duration) {
    let down_from = secs(10);
    let back = down_from + outage;
    let base = secs(5);

    // Detected at once: 20 consecutive failures at 1,000 calls/s.
    let first = &trace.events[0];
    assert_eq!(
        (first.transition.from(), first.transition.to()),
        (Closed, Open)
    );
    assert!(
        first.at - down_from <= Duration::from_millis(100),
        "{first:?}"
    );

    // One trip, then only failed probes, each re-opening for the base,
    // shortened by at most the default 20 % jitter.
    assert_eq!(trace.trips().len(), 1, "{:?}", trace.events);
    let opens = trace.opens();
    assert!(opens.len() >= (outage.as_secs() / 5) as usize, "{opens:?}");
    for d in &opens {
        assert!(
            base.mul_f64(0.8) <= *d && *d <= base,
            "an open of {d:?} in {opens:?}"
        );
    }

    // Closed by the backend's return + the base + one call interval, and
    // closed from then on.
    let last = trace.events.last().unwrap();
    assert_eq!(
        (
            last.transition.from(),
            last.transition.to(),
            last.transition.reason()
        ),
        (HalfOpen, Closed, TransitionReason::ProbesSucceeded),
        "{:?}",
        trace.events
    );
    assert!(
        back < last.at && last.at <= back + base + MS,
        "closed at {:?}, {:?} after the backend came back",
        last.at,
        last.at - back
    );
    // Every call from the close on succeeds; at most one open duration of
    // calls after the backend's return is lost.
    let after_close = trace.calls.iter().filter(|c| c.0 >= last.at).count();
    assert_eq!(trace.count(last.at, Seen::Success), after_close);
    let after_back = trace.calls.iter().filter(|c| c.0 >= back).count();
    let lost = after_back - trace.count(back, Seen::Success);
    assert!(lost <= 5_001, "{lost} of {after_back} calls lost");
    assert_eq!(trace.count(back, Seen::Failure), 0);
}

#[tokio::test(start_paused = true)]
async fn defaults_recover_within_the_base_after_a_30_s_outage() {
    for seed in 0..4 {
        let outage = secs(30);
        let trace = hard_outage(outage, seed).await;
        assert_recovers_within_the_base(&trace, outage);
    }
}

#[tokio::test(start_paused = true)]
async fn defaults_recover_within_the_base_after_a_300_s_outage() {
    let outage = secs(300);
    let trace = hard_outage(outage, 7).await;
    assert_recovers_within_the_base(&trace, outage);
    // About one probe per open duration: 300 s / (4 to 5 s).
    let probes = trace.opens().len() - 1;
    assert!((60..=75).contains(&probes), "{probes} failed probes");
}

#[tokio::test(start_paused = true)]
async fn failed_probes_do_not_grow_the_open_duration() {
    // Down for good; jitter off: every re-open is exactly the base.
    let trace = run(
        CircuitBreakerConfig::builder().open_jitter(0.0),
        MS,
        |_, _| false,
        |_, events| events.len() >= 21,
    )
    .await;
    let opens = trace.opens();
    assert_eq!(opens, [secs(5); 11]);
    let reasons: Vec<_> = trace
        .events
        .iter()
        .filter(|e| e.transition.from() == HalfOpen)
        .map(|e| e.transition.reason())
        .collect();
    assert_eq!(reasons, [TransitionReason::ProbeFailed; 10]);
}

/// After the `n`th close (from 1), how long the backend stays healthy
/// before it dies again: 1 s, except 31 s (longer than the default 30 s
/// flap window) after the 7th. Before the first close it is healthy for
/// 1 s from the start; while half-open (a probe) it is always up: it
/// "recovered" by the time the breaker probes.
fn flapping(t: Duration, events: &[Event]) -> bool {
    let Some(last) = events.last() else {
        return t < secs(1);
    };
    match last.transition.to() {
        HalfOpen => true,
        Closed => {
            let closes = events
                .iter()
                .filter(|e| e.transition.to() == Closed)
                .count();
            let healthy = if closes == 7 { secs(31) } else { secs(1) };
            t < last.at + healthy
        }
        _ => false,
    }
}

/// The un-jittered open durations of the flapping run, one per trip.
const FLAP_SCHEDULE: [u64; 9] = [5, 10, 20, 40, 60, 60, 60, 5, 10];

async fn flap(builder: CircuitBreakerBuilder) -> Trace {
    run(builder, Duration::from_millis(10), flapping, |_, events| {
        events
            .iter()
            .filter(|e| e.transition.from() == Closed)
            .count()
            >= FLAP_SCHEDULE.len()
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn flapping_doubles_the_open_duration_up_to_the_cap_and_a_long_close_resets_it() {
    let trace = flap(CircuitBreakerConfig::builder().open_jitter(0.0)).await;
    // Every trip soon after a close doubles it, up to the 60 s cap; the one
    // after 31 s closed starts again from 5 s, and the next flap doubles.
    assert_eq!(trace.trips(), FLAP_SCHEDULE.map(secs));
    // Every probe found the backend up: each open lasted its trip's
    // duration, then closed.
    assert_eq!(trace.opens(), trace.trips());
    assert!(trace
        .events
        .iter()
        .filter(|e| e.transition.from() == HalfOpen)
        .all(|e| e.transition.to() == Closed));
    // Each flap costs the 20 consecutive failures that trip the breaker.
    assert_eq!(
        trace.count(Duration::ZERO, Seen::Failure),
        20 * FLAP_SCHEDULE.len()
    );
}

#[tokio::test(start_paused = true)]
async fn jitter_only_shortens_the_open_duration() {
    let jitter = 0.2;
    let mut shortened = 0;
    for seed in 0..8 {
        let trace = flap(
            CircuitBreakerConfig::builder()
                .open_jitter(jitter)
                .jitter_seed(seed),
        )
        .await;
        let trips = trace.trips();
        assert_eq!(trips.len(), FLAP_SCHEDULE.len());
        for (open_for, d) in trips.iter().zip(FLAP_SCHEDULE.map(secs)) {
            assert!(
                d.mul_f64(1.0 - jitter) <= *open_for && *open_for <= d,
                "seed {seed}: {open_for:?} for {d:?} in {trips:?}"
            );
            shortened += usize::from(*open_for < d.mul_f64(0.99));
        }
    }
    // And it does spread them.
    assert!(shortened > 8 * FLAP_SCHEDULE.len() / 2, "{shortened}");
}
