//! The `CircuitOpen` error, and our own rejections seen by an outer breaker.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use steadfast::circuit_breaker::error::CircuitOpen;
use steadfast::circuit_breaker::{CircuitBreakerLayer, CircuitState};
use steadfast::{cause_ref, is_caused_by, BoxError};
use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower::ServiceBuilder;
use tower_test::mock;

use crate::harness::{consecutive, trip, Harness, SEC};

use CircuitState::{Closed, ForcedOpen, HalfOpen, Open};

fn assert_error_style(text: &str) {
    assert!(!text.is_empty());
    assert!(
        text.starts_with(|c: char| c.is_lowercase()),
        "starts lowercase: {text:?}"
    );
    assert!(!text.ends_with('.'), "no final period: {text:?}");
}

#[tokio::test(start_paused = true)]
async fn circuit_open_is_downcastable_and_found_in_a_chain() {
    let mut h = Harness::new(consecutive(1).open_duration(Duration::from_secs(10)));
    trip(&mut h, 1).await;
    advance(Duration::from_millis(2_500)).await;

    assert_ready_ok!(h.svc.poll_ready(), "open is not a poll_ready error");
    let mut call = task::spawn(h.svc.call(1));
    // The breaker's own error type, read like a box (no allocation).
    let err = assert_ready_err!(call.poll());
    assert!(err.is_open());
    assert!(h.mock.poll_request().is_pending(), "never sent");

    assert!(err.is::<CircuitOpen>());
    assert!(is_caused_by::<CircuitOpen>(err.as_ref()));
    let open = cause_ref::<CircuitOpen>(err.as_ref()).unwrap();
    assert_eq!(open.state(), Open);
    assert_eq!(open.retry_after(), Some(Duration::from_millis(7_500)));
    assert_eq!(err.to_string(), "circuit open; next probe in 7.500s");
    assert_error_style(&err.to_string());
    assert!(err.source().is_none());

    // Behind a wrapper, the chain helpers still find it.
    let wrapped: BoxError = Box::new(Wrapped(open.clone()));
    assert!(!wrapped.is::<CircuitOpen>());
    assert!(is_caused_by::<CircuitOpen>(wrapped.as_ref()));
    assert_eq!(cause_ref::<CircuitOpen>(wrapped.as_ref()), Some(open));
}

#[tokio::test(start_paused = true)]
async fn circuit_open_display_per_state() {
    let mut h = Harness::new(consecutive(1).half_open_max_calls(1));
    trip(&mut h, 1).await;
    advance(SEC).await;
    let _probe = h.in_flight().await;
    let half_open = h.reject();
    assert_eq!(half_open.state(), HalfOpen);
    assert_eq!(
        half_open.to_string(),
        "circuit half-open; every probe slot is taken"
    );

    h.breaker.force_open();
    let forced = h.reject();
    assert_eq!(forced.state(), ForcedOpen);
    assert_eq!(forced.to_string(), "circuit forced open");

    for e in [half_open, forced] {
        assert_error_style(&e.to_string());
    }
    assert_eq!(h.snapshot().rejected, 2);
}

/// A user error that wraps another.
#[derive(Debug)]
struct Wrapped(CircuitOpen);

impl fmt::Display for Wrapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request failed")
    }
}

impl Error for Wrapped {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.0)
    }
}

/// A `CircuitOpen` as a value, taken from a forced-open breaker.
fn a_circuit_open() -> CircuitOpen {
    let mut h = Harness::new(consecutive(1));
    h.breaker.force_open();
    h.reject()
}

#[tokio::test(start_paused = true)]
async fn an_inner_breakers_rejections_are_ignored_by_the_outer_one() {
    let outer = CircuitBreakerLayer::new(consecutive(1).build().unwrap());
    let inner = CircuitBreakerLayer::new(consecutive(1).build().unwrap());
    let (outer_h, inner_h) = (outer.handle(), inner.handle());
    let stack = ServiceBuilder::new().layer(outer).layer(inner).into_inner();
    let (mut svc, mut mock) = mock::spawn_layer::<u32, u32, _>(stack);

    inner_h.force_open();
    for _ in 0..5 {
        assert_ready_ok!(svc.poll_ready());
        let err = assert_ready_err!(task::spawn(svc.call(1)).poll());
        assert_eq!(
            err.downcast_ref::<CircuitOpen>().unwrap().state(),
            ForcedOpen
        );
    }
    assert!(mock.poll_request().is_pending());
    let snap = outer_h.snapshot();
    assert_eq!(snap.state, Closed, "one failure would have tripped it");
    assert_eq!((snap.ignored, snap.failures, snap.rejected), (5, 0, 0));
    assert_eq!(inner_h.snapshot().rejected, 5);

    // A real failure still trips the outer breaker.
    inner_h.reset();
    assert_ready_ok!(svc.poll_ready());
    let mut call = task::spawn(svc.call(2));
    assert_pending!(call.poll());
    let (_, send) = mock.next_request().await.unwrap();
    send.send_error("down");
    assert_ready_err!(call.poll());
    assert_eq!(outer_h.state(), Open);
}

#[tokio::test(start_paused = true)]
async fn a_circuit_open_from_the_inner_service_is_ignored_even_when_wrapped() {
    let open = a_circuit_open();
    let mut h = Harness::new(consecutive(1));
    let err = h.respond(Err(Box::new(open.clone()))).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
    let err = h.respond(Err(Box::new(Wrapped(open)))).await.unwrap_err();
    assert!(err.is::<Wrapped>());
    let snap = h.snapshot();
    assert_eq!(snap.state, Closed);
    assert_eq!((snap.ignored, snap.failures), (2, 0));
    // Even a classifier that calls every error a failure is overruled; an
    // ordinary error is not.
    h.fail().await;
    assert_eq!(h.state(), Open);
}
