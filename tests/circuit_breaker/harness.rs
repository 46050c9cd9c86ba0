//! A breaker around a `tower_test` mock, with a transition log.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steadfast::circuit_breaker::error::CircuitOpen;
use steadfast::circuit_breaker::future::ResponseFuture;
use steadfast::circuit_breaker::{
    CircuitBreaker, CircuitBreakerBuilder, CircuitBreakerConfig, CircuitBreakerHandle,
    CircuitBreakerLayer, CircuitBreakerSnapshot, CircuitState, Transition, TransitionReason,
    Window,
};
use steadfast::classify::{Classify, ErrorsAsFailures};
use steadfast::BoxError;
use tokio_test::{assert_pending, assert_ready, assert_ready_err, assert_ready_ok, task};
use tower_test::mock;

pub(crate) const SEC: Duration = Duration::from_secs(1);
pub(crate) const NS: Duration = Duration::from_nanos(1);

/// A builder with only the consecutive-failures rule, no jitter, open 1 s.
pub(crate) fn consecutive(n: u32) -> CircuitBreakerBuilder {
    CircuitBreakerConfig::builder()
        .without_failure_rate()
        .consecutive_failures(n)
        .open_jitter(0.0)
        .open_duration(SEC)
}

/// A builder with only the failure-rate rule, no jitter, open 1 s.
pub(crate) fn rate(percent: f64) -> CircuitBreakerBuilder {
    CircuitBreakerConfig::builder()
        .without_consecutive_failures()
        .failure_rate(percent)
        .open_jitter(0.0)
        .open_duration(SEC)
}

/// The failure-rate rule over the last 10 s in 1 s buckets.
pub(crate) fn ten_second_window(minimum_calls: u32) -> CircuitBreakerBuilder {
    rate(50.0)
        .window(Window::time(Duration::from_secs(10), 10))
        .minimum_calls(minimum_calls)
}

/// Every transition the breaker reported, in order.
#[derive(Clone, Default)]
pub(crate) struct Log(Arc<Mutex<Vec<Transition>>>);

impl Log {
    pub(crate) fn attach(&self, builder: CircuitBreakerBuilder) -> CircuitBreakerBuilder {
        let log = self.clone();
        builder.on_transition(move |t| log.0.lock().unwrap().push(t.clone()))
    }

    pub(crate) fn all(&self) -> Vec<Transition> {
        self.0.lock().unwrap().clone()
    }

    /// `(from, to, reason)` of every transition.
    pub(crate) fn steps(&self) -> Vec<(CircuitState, CircuitState, TransitionReason)> {
        self.all()
            .iter()
            .map(|t| (t.from(), t.to(), t.reason()))
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub(crate) fn last(&self) -> Transition {
        self.all().pop().expect("no transition was reported")
    }
}

pub(crate) type Call<T, C> = task::Spawn<ResponseFuture<mock::future::ResponseFuture<T>, C>>;

/// A breaker layer around a mock inner service.
pub(crate) struct Harness<T = u32, C = ErrorsAsFailures> {
    pub(crate) svc: mock::Spawn<CircuitBreaker<mock::Mock<u32, T>, C>>,
    pub(crate) mock: mock::Handle<u32, T>,
    pub(crate) breaker: CircuitBreakerHandle,
    pub(crate) log: Log,
    next_id: u32,
}

impl Harness {
    /// Classifies every `Err` as a failure.
    pub(crate) fn new(builder: CircuitBreakerBuilder) -> Self {
        Self::with_classifier(builder, ErrorsAsFailures)
    }
}

impl<T, C> Harness<T, C>
where
    T: fmt::Debug,
    C: Classify<T, BoxError> + Clone,
{
    pub(crate) fn with_classifier(builder: CircuitBreakerBuilder, classifier: C) -> Self {
        let log = Log::default();
        let config = log.attach(builder).build().expect("valid test config");
        let layer = CircuitBreakerLayer::with_classifier(config, classifier);
        let breaker = layer.handle();
        let (svc, mock) = mock::spawn_layer(layer);
        Self {
            svc,
            mock,
            breaker,
            log,
            next_id: 0,
        }
    }

    pub(crate) fn state(&self) -> CircuitState {
        self.breaker.state()
    }

    pub(crate) fn snapshot(&self) -> CircuitBreakerSnapshot {
        self.breaker.snapshot()
    }

    /// The breaker is open, and its only transition was Closed → Open for `reason`.
    #[track_caller]
    pub(crate) fn assert_tripped_once(&self, reason: TransitionReason) {
        assert_eq!(self.state(), CircuitState::Open);
        assert_eq!(
            self.log.steps(),
            [(CircuitState::Closed, CircuitState::Open, reason)]
        );
    }

    /// Makes a call (after `poll_ready`) and returns its future, unpolled.
    pub(crate) fn call(&mut self) -> Call<T, C> {
        assert_ready_ok!(self.svc.poll_ready());
        self.next_id += 1;
        task::spawn(self.svc.call(self.next_id))
    }

    /// Makes a call that the breaker admits: it reaches the mock and waits
    /// there for its response.
    pub(crate) async fn in_flight(&mut self) -> InFlight<T, C> {
        let mut call = self.call();
        assert_pending!(call.poll(), "an admitted call waits for the inner service");
        let (req, send) = self
            .mock
            .next_request()
            .await
            .expect("the admitted call reached the inner service");
        assert_eq!(req, self.next_id);
        InFlight { call, send }
    }

    /// One admitted call that ends with `result` from the inner service.
    pub(crate) async fn respond(&mut self, result: Result<T, BoxError>) -> Result<T, BoxError> {
        self.in_flight().await.finish(result)
    }

    /// A call the breaker rejects at once, without calling the inner service.
    pub(crate) fn reject(&mut self) -> CircuitOpen {
        let mut call = self.call();
        let err = assert_ready_err!(call.poll());
        assert!(
            self.mock.poll_request().is_pending(),
            "a rejected call reached the inner service"
        );
        err.downcast_ref::<CircuitOpen>()
            .expect("the rejection is a CircuitOpen")
            .clone()
    }
}

impl<C> Harness<u32, C>
where
    C: Classify<u32, BoxError> + Clone,
{
    /// One admitted call that succeeds.
    pub(crate) async fn ok(&mut self) {
        let res = self.respond(Ok(7)).await;
        assert_eq!(res.unwrap(), 7);
    }

    /// One admitted call whose inner service fails.
    pub(crate) async fn fail(&mut self) {
        let err = self.respond(Err("backend down".into())).await.unwrap_err();
        assert_eq!(err.to_string(), "backend down");
    }

    pub(crate) async fn ok_n(&mut self, n: usize) {
        for _ in 0..n {
            self.ok().await;
        }
    }

    pub(crate) async fn fail_n(&mut self, n: usize) {
        for _ in 0..n {
            self.fail().await;
        }
    }
}

/// A call that is in flight (admitted, not yet answered).
pub(crate) struct InFlight<T, C> {
    pub(crate) call: Call<T, C>,
    pub(crate) send: mock::SendResponse<T>,
}

impl<T, C> InFlight<T, C>
where
    C: Classify<T, BoxError>,
{
    /// Answers the call with `result` and returns what the caller sees.
    pub(crate) fn finish(mut self, result: Result<T, BoxError>) -> Result<T, BoxError> {
        match result {
            Ok(res) => self.send.send_response(res),
            Err(err) => self.send.send_error(err),
        }
        assert_ready!(self.call.poll()).map_err(BoxError::from)
    }
}

/// Trips a consecutive-failures breaker with `n` failures.
pub(crate) async fn trip<C>(h: &mut Harness<u32, C>, n: usize)
where
    C: Classify<u32, BoxError> + Clone,
{
    h.fail_n(n).await;
    assert_eq!(h.state(), CircuitState::Open);
}
