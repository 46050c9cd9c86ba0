//! `CircuitBreakerLayer::wait_when_open`: waiting in `poll_ready` instead of
//! failing in the response future.

use std::time::Duration;

use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, CircuitState};
use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower_test::mock::{self, Spawn};

const SEC: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

type Svc = steadfast::circuit_breaker::CircuitBreaker<mock::Mock<u32, u32>>;

fn waiting_breaker() -> (Spawn<Svc>, mock::Handle<u32, u32>, CircuitBreakerLayer) {
    let cfg = CircuitBreakerConfig::builder()
        .without_failure_rate()
        .consecutive_failures(1)
        .open_duration(SEC)
        .open_jitter(0.0)
        .build()
        .unwrap();
    let layer = CircuitBreakerLayer::new(cfg).wait_when_open();
    let (svc, mut handle) = mock::spawn_layer(layer.clone());
    handle.allow(100);
    (svc, handle, layer)
}

/// Trips the breaker through `svc` with one failed call.
async fn trip(svc: &mut Spawn<Svc>, handle: &mut mock::Handle<u32, u32>) {
    assert_ready_ok!(svc.poll_ready());
    let mut fut = task::spawn(svc.call(0));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error("down");
    assert_ready_err!(fut.poll());
}

fn twin(svc: &Spawn<Svc>) -> Spawn<Svc> {
    Spawn::new(svc.get_ref().clone())
}

#[tokio::test(start_paused = true)]
async fn open_is_pending_until_the_open_duration_has_passed() {
    let (mut svc, mut handle, layer) = waiting_breaker();
    trip(&mut svc, &mut handle).await;
    assert_eq!(layer.handle().state(), CircuitState::Open);

    assert_pending!(svc.poll_ready());
    advance(SEC - MS).await;
    assert!(!svc.is_woken(), "woken before the open duration passed");
    assert_pending!(svc.poll_ready());
    advance(MS).await;
    assert!(svc.is_woken(), "the open-duration timer wakes the task");

    // Ready means admitted: the caller holds the first probe.
    assert_ready_ok!(svc.poll_ready());
    assert_eq!(layer.handle().state(), CircuitState::HalfOpen);
    let mut fut = task::spawn(svc.call(7));
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, 7);
    send.send_response(70);
    assert_eq!(assert_ready_ok!(fut.poll()), 70);
    assert_eq!(layer.handle().state(), CircuitState::Closed);

    // Waiting is not rejecting.
    assert_eq!(layer.handle().snapshot().rejected, 0);
}

#[tokio::test(start_paused = true)]
async fn a_full_half_open_waits_for_the_probe_to_finish() {
    let (mut a, mut handle, layer) = waiting_breaker();
    let mut b = twin(&a);
    trip(&mut a, &mut handle).await;
    advance(SEC).await;

    assert_ready_ok!(a.poll_ready()); // a holds the only probe slot
    assert_pending!(b.poll_ready());
    let mut probe = task::spawn(a.call(1));
    let (_, send) = handle.next_request().await.unwrap();
    assert!(!b.is_woken());
    send.send_response(1);
    assert_ready_ok!(probe.poll());
    assert!(b.is_woken(), "closing wakes the waiting service");
    assert_ready_ok!(b.poll_ready());
    assert_eq!(layer.handle().state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_reservation_frees_the_probe_slot() {
    let (mut a, mut handle, layer) = waiting_breaker();
    let mut b = twin(&a);
    trip(&mut a, &mut handle).await;
    advance(SEC).await;

    assert_ready_ok!(a.poll_ready());
    assert_pending!(b.poll_ready());
    drop(a); // reserved, never called
    assert!(b.is_woken(), "the freed slot wakes the waiting service");
    assert_ready_ok!(b.poll_ready());
    assert_eq!(layer.handle().state(), CircuitState::HalfOpen);
    assert_eq!(layer.handle().snapshot().cancelled, 1);
}

#[tokio::test(start_paused = true)]
async fn a_hung_probe_cannot_keep_waiters_waiting_forever() {
    let (mut a, mut handle, layer) = waiting_breaker(); // probe timeout: 30 s
    let mut b = twin(&a);
    trip(&mut a, &mut handle).await;
    advance(SEC).await;

    assert_ready_ok!(a.poll_ready());
    let _hung = task::spawn(a.call(1)); // never answered
    let _ = handle.next_request().await.unwrap();
    assert_pending!(b.poll_ready());
    advance(30 * SEC - MS).await;
    assert!(!b.is_woken());
    advance(MS).await;
    assert!(b.is_woken(), "the probe timeout wakes the waiter");
    // Its poll re-opens the breaker (the hung probe counts as failed), then
    // it waits out the next open duration (1 s × 2) and becomes the probe.
    assert_pending!(b.poll_ready());
    assert_eq!(layer.handle().state(), CircuitState::Open);
    advance(2 * SEC).await;
    assert!(b.is_woken());
    assert_ready_ok!(b.poll_ready());
    assert_eq!(layer.handle().state(), CircuitState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn forced_open_waits_until_reset() {
    let (mut svc, _handle, layer) = waiting_breaker();
    layer.handle().force_open();
    assert_pending!(svc.poll_ready());
    advance(3600 * SEC).await;
    assert_pending!(svc.poll_ready());
    layer.handle().reset();
    assert!(svc.is_woken());
    assert_ready_ok!(svc.poll_ready());
}

#[tokio::test(start_paused = true)]
async fn a_clone_does_not_inherit_the_reservation() {
    let (mut a, mut handle, _layer) = waiting_breaker();
    trip(&mut a, &mut handle).await;
    advance(SEC).await;
    assert_ready_ok!(a.poll_ready());
    let mut clone = twin(&a);
    assert_pending!(clone.poll_ready(), "the only probe slot is a's");
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "before poll_ready returned Ready")]
async fn call_without_readiness_panics() {
    let (mut svc, _handle, _layer) = waiting_breaker();
    drop(svc.call(1));
}
