//! The tower service: auto traits, clones, accessors, readiness, builder.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use steadfast::circuit_breaker::error::CircuitOpen;
use steadfast::circuit_breaker::future::ResponseFuture;
use steadfast::circuit_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerHandle, CircuitBreakerLayer, CircuitState,
};
use steadfast::classify::ErrorsAsFailures;
use steadfast::ServiceBuilderExt;
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower::{Layer, Service, ServiceBuilder};
use tower_test::mock;

use crate::harness::consecutive;

fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
fn assert_send<T: Send>() {}

/// A tiny inner service that remembers how often it was called.
#[derive(Clone, Debug, Default)]
struct Counter(u32);

impl Service<u32> for Counter {
    type Response = u32;
    type Error = Infallible;
    type Future = Ready<Result<u32, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u32) -> Self::Future {
        self.0 += 1;
        ready(Ok(req + 1))
    }
}

#[test]
fn layer_service_handle_and_future_are_send_sync_clone() {
    assert_send_sync_clone::<CircuitBreakerLayer>();
    assert_send_sync_clone::<CircuitBreaker<Counter>>();
    assert_send_sync_clone::<CircuitBreakerHandle>();
    assert_send_sync_clone::<CircuitBreakerConfig>();
    assert_send::<ResponseFuture<Ready<Result<u32, Infallible>>, ErrorsAsFailures>>();
    #[cfg(feature = "http")]
    {
        use steadfast::classify::{GrpcClassifier, HttpClassifier};
        assert_send_sync_clone::<CircuitBreakerLayer<HttpClassifier>>();
        assert_send_sync_clone::<CircuitBreaker<Counter, GrpcClassifier>>();
    }
}

#[tokio::test(start_paused = true)]
async fn clones_and_sibling_services_share_one_breaker() {
    let layer = CircuitBreakerLayer::new(consecutive(1).build().unwrap());
    let (mock_a, mut handle_a) = mock::pair::<u32, u32>();
    let (mock_b, mut handle_b) = mock::pair::<u32, u32>();
    let svc = layer.layer(mock_a);
    let mut clone = mock::Spawn::new(svc.clone());
    let mut sibling = mock::Spawn::new(layer.layer(mock_b));
    let mut svc = mock::Spawn::new(svc);

    // Trip through the original.
    assert_ready_ok!(svc.poll_ready());
    let mut call = task::spawn(svc.call(1));
    let (_, send) = handle_a.next_request().await.unwrap();
    send.send_error("down");
    assert_ready_err!(call.poll());
    assert_eq!(svc.get_ref().handle().state(), CircuitState::Open);

    // The clone and a sibling from the same layer see it open.
    for s in [&mut clone, &mut sibling] {
        assert_ready_ok!(s.poll_ready());
        let err = assert_ready_err!(task::spawn(s.call(2)).poll());
        assert!(err.is::<CircuitOpen>());
    }
    assert!(handle_a.poll_request().is_pending());
    assert!(handle_b.poll_request().is_pending());
    assert_eq!(layer.handle().snapshot().rejected, 2);
    assert_eq!(sibling.get_ref().handle().snapshot().rejected, 2);

    // A clone of the layer is the same breaker too.
    layer.clone().handle().reset();
    assert_eq!(clone.get_ref().handle().state(), CircuitState::Closed);
}

#[test]
fn two_layers_are_two_breakers() {
    let a = CircuitBreakerLayer::new(consecutive(1).build().unwrap());
    let b = CircuitBreakerLayer::new(consecutive(1).build().unwrap());
    a.handle().force_open();
    assert_eq!(a.handle().state(), CircuitState::ForcedOpen);
    assert_eq!(b.handle().state(), CircuitState::Closed);
}

#[tokio::test]
async fn accessors_reach_the_inner_service() {
    let mut svc = CircuitBreakerLayer::default().layer(Counter(0));
    let res = tower::ServiceExt::oneshot(&mut svc, 41).await.unwrap();
    assert_eq!(res, 42);
    assert_eq!(svc.get_ref().0, 1);
    svc.get_mut().0 = 10;
    assert_eq!(svc.get_ref().0, 10);
    let inner: Counter = svc.into_inner();
    assert_eq!(inner.0, 10);
}

#[tokio::test(start_paused = true)]
async fn poll_ready_passes_the_inner_readiness_through() {
    let (mut svc, mut handle) =
        mock::spawn_layer::<u32, u32, _>(CircuitBreakerLayer::new(consecutive(1).build().unwrap()));
    handle.allow(0);
    assert_pending!(svc.poll_ready());
    handle.allow(1);
    assert!(svc.is_woken());
    assert_ready_ok!(svc.poll_ready());

    // Open: still ready (the rejection comes from the call's future).
    svc.get_ref().handle().force_open();
    assert_ready_ok!(svc.poll_ready());

    // An inner readiness error comes through, boxed.
    handle.send_error("inner broke");
    let err = assert_ready_err!(svc.poll_ready());
    assert_eq!(err.to_string(), "inner broke");
}

#[tokio::test(start_paused = true)]
async fn service_builder_ext_adds_the_breaker() {
    let (inner, mut handle) = mock::pair::<u32, u32>();
    let svc = ServiceBuilder::new()
        .circuit_breaker(consecutive(2).build().unwrap())
        .service(inner);
    let breaker = svc.handle();
    let mut svc = mock::Spawn::new(svc);
    for _ in 0..2 {
        assert_ready_ok!(svc.poll_ready());
        let mut call = task::spawn(svc.call(1));
        let (_, send) = handle.next_request().await.unwrap();
        send.send_error("down");
        assert_ready_err!(call.poll());
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_ready_ok!(svc.poll_ready());
    let err = assert_ready_err!(task::spawn(svc.call(3)).poll());
    assert!(err.is::<CircuitOpen>());
}
