//! Circuit breaker behaviour, driven through `tower_test` mocks on paused time.
//!
//! * `transitions`: every state change and the open-duration schedule;
//! * `recovery`: steady-rate runs through a hard outage and a flapping
//!   backend, against the recovery bound and the flap back-off;
//! * `windows`: the count and time windows, `minimum_calls`, ignored outcomes;
//! * `half_open`: probe slots, cancellation, the probe timeout;
//! * `generations`: results that arrive after the state moved on;
//! * `handle`: manual control, snapshots and the transition callback;
//! * `errors`: `CircuitOpen`, and rejections of our own seen by an outer breaker;
//! * `config`: build-time validation;
//! * `service`: auto traits, clones, accessors, readiness, `ServiceBuilderExt`;
//! * `backpressure`: the `wait_when_open` mode, waiting in `poll_ready`.

#[path = "../support/mod.rs"]
mod support;

mod harness;

mod backpressure;
mod config;
mod errors;
mod generations;
mod half_open;
mod handle;
mod recovery;
mod service;
mod transitions;
mod windows;

use std::time::Duration;

use steadfast::circuit_breaker::error::CircuitOpen;
use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower_test::mock;

/// Closed → Open → HalfOpen → Closed, written out by hand without the harness.
#[tokio::test(start_paused = true)]
async fn smoke_trips_and_recovers() {
    support::trace_init();
    let cfg = CircuitBreakerConfig::builder()
        .without_failure_rate()
        .consecutive_failures(2)
        .open_jitter(0.0)
        .open_duration(Duration::from_secs(1))
        .build()
        .unwrap();
    let layer = CircuitBreakerLayer::new(cfg);
    let handle = layer.handle();
    let (mut svc, mut h) = mock::spawn_layer::<u32, u32, _>(layer);
    h.allow(100);
    for _ in 0..2 {
        assert_ready_ok!(svc.poll_ready());
        let mut f = task::spawn(svc.call(1));
        assert_pending!(f.poll());
        let (_, send) = h.next_request().await.unwrap();
        send.send_error("boom");
        assert_ready_err!(f.poll());
    }
    assert_eq!(handle.state(), CircuitState::Open);
    assert_ready_ok!(svc.poll_ready());
    let err = assert_ready_err!(task::spawn(svc.call(1)).poll());
    assert!(err.is::<CircuitOpen>());
    tokio::time::advance(Duration::from_secs(1)).await;
    let mut f = task::spawn(svc.call(2));
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    let (req, send) = h.next_request().await.unwrap();
    assert_eq!(req, 2);
    send.send_response(7);
    assert_eq!(assert_ready_ok!(f.poll()), 7);
    assert_eq!(handle.state(), CircuitState::Closed);
}
