//! The clients of the simulation: each wraps the backend the way a user of
//! that crate would, with the crate's defaults, and under one rule where it
//! retries: at most 3 attempts per call, the first included.
//!
//! Not here, because their breakers read `std::time::Instant` directly and
//! so cannot follow tokio's paused clock (an open breaker would wait for
//! real seconds while the simulated minutes pass in milliseconds):
//! tower-resilience 0.13's circuit breaker (`Circuit::try_acquire` compares
//! `last_state_change.elapsed()` with `wait_duration_in_open`) and recloser
//! 1.4 (`State::Open(until)` is compared with `std::time::Instant::now()`;
//! its fake clock is `#[cfg(test)]` inside the crate).

use std::future::{ready, Ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use seatbelt::breaker::Breaker;
use seatbelt::retry::Retry as SeatbeltRetry;
use seatbelt::{RecoveryInfo, ResilienceContext};
use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use steadfast::classify::ErrorsAsFailures;
use steadfast::retry::{RetryConfig, RetryLayer};
use steadfast::stack::ResilienceLayer;
use tower::retry::budget::{Budget, TpsBudget};
use tower::{Layer, Service, ServiceExt};

use super::{Backend, BoxError, Call, CallFuture, Clocks, MakeCall};

/// A client: its name in the tables and how to build it around a backend.
pub struct Client {
    /// The name in the tables and the pictures.
    pub name: &'static str,
    /// Builds it around the backend.
    pub build: fn(Backend, &Clocks) -> MakeCall,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Every client, in the order of the tables.
pub const CLIENTS: &[Client] = &[
    Client {
        name: "no middleware",
        build: |backend, _| boxed(backend),
    },
    Client {
        name: "naive retry (3 attempts)",
        build: |backend, _| boxed(tower::retry::Retry::new(Attempts::new(), backend)),
    },
    Client {
        name: "tower Retry + TpsBudget",
        build: |backend, _| boxed(tower::retry::Retry::new(Budgeted::default(), backend)),
    },
    Client {
        name: "tower-resilience retry",
        build: |backend, _| {
            // Its defaults: 3 attempts, exponential backoff from 100 ms, no
            // budget; its breaker cannot run here (see the module docs).
            let retry =
                tower_resilience::retry::RetryLayer::<Call, (), BoxError>::builder().build();
            boxed(retry.layer(backend))
        },
    },
    Client {
        name: "failsafe",
        build: |backend, _| boxed(Failsafe::new(backend)),
    },
    Client {
        name: "failsafe + naive retry",
        build: |backend, _| {
            boxed(tower::retry::Retry::new(
                Attempts::new(),
                Failsafe::new(backend),
            ))
        },
    },
    Client {
        name: "seatbelt breaker",
        build: |backend, clocks| boxed(seatbelt_breaker(backend, clocks)),
    },
    Client {
        name: "seatbelt breaker + retry",
        build: |backend, clocks| {
            let context = ResilienceContext::new(&clocks.tick);
            let retry = SeatbeltRetry::layer("retry", &context)
                .max_retry_attempts(2)
                .clone_input()
                .recovery_with(|result: &Result<(), BoxError>, _| match result {
                    Ok(()) => RecoveryInfo::never(),
                    Err(_) => RecoveryInfo::retry(),
                });
            boxed(layered::Layer::layer(
                &retry,
                seatbelt_breaker(backend, clocks),
            ))
        },
    },
    Client {
        name: "steadfast breaker",
        build: |backend, _| {
            let config = CircuitBreakerConfig::builder()
                .jitter_seed(13)
                .build()
                .expect("the defaults");
            boxed(CircuitBreakerLayer::new(config).layer(backend))
        },
    },
    Client {
        name: "steadfast retry",
        build: |backend, _| {
            let config = RetryConfig::builder()
                .seed(13)
                .build()
                .expect("the defaults");
            boxed(RetryLayer::new(config).layer(backend))
        },
    },
    Client {
        name: "steadfast preset",
        build: |backend, _| boxed(steadfast_preset().layer(backend)),
    },
];

/// The name of the client whose targets the tables mark.
pub const PRESET: &str = "steadfast preset";

/// The steadfast preset with its defaults; the seeds only make the jitter
/// of the breaker's open duration and of the retry backoff repeatable.
pub fn steadfast_preset() -> ResilienceLayer<
    ErrorsAsFailures,
    steadfast::retry::RetryFailures<ErrorsAsFailures>,
    steadfast::retry::CloneWithDeadline,
> {
    ResilienceLayer::new(ErrorsAsFailures)
        .retry(RetryConfig::builder().seed(13))
        .circuit_breaker(CircuitBreakerConfig::builder().jitter_seed(13))
        .build()
        .expect("the defaults")
        .0
}

/// Erases a service's type: each call on a clone, through `oneshot`.
fn boxed<S>(service: S) -> MakeCall
where
    S: Service<Call, Response = ()> + Clone + 'static,
    S::Error: Into<BoxError>,
    S::Future: 'static,
{
    Box::new(move |call| -> CallFuture {
        let service = service.clone();
        Box::pin(async move { service.oneshot(call).await.map_err(Into::into) })
    })
}

/// seatbelt's breaker with its defaults, on the driver's clock.
fn seatbelt_breaker(
    backend: Backend,
    clocks: &Clocks,
) -> Breaker<Call, Result<(), BoxError>, Backend> {
    let context = ResilienceContext::new(&clocks.tick);
    let layer = Breaker::layer("breaker", &context)
        .recovery_with(|result: &Result<(), BoxError>, _| match result {
            Ok(()) => RecoveryInfo::never(),
            Err(_) => RecoveryInfo::retry(),
        })
        .rejected_input_error(|_, _| BoxError::from("circuit open"));
    layered::Layer::layer(&layer, backend)
}

/// tower's retry policy for "3 attempts, no budget, no backoff": retries
/// every error. One per call (tower clones the policy into each call).
#[derive(Clone, Copy, Debug)]
pub struct Attempts {
    made: u32,
}

impl Default for Attempts {
    fn default() -> Self {
        Self::new()
    }
}

impl Attempts {
    /// The first attempt made.
    pub const fn new() -> Self {
        Self { made: 1 }
    }
}

impl<E> tower::retry::Policy<Call, (), E> for Attempts {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut Call, result: &mut Result<(), E>) -> Option<Ready<()>> {
        if result.is_err() && self.made < 3 {
            self.made += 1;
            Some(ready(()))
        } else {
            None
        }
    }

    fn clone_request(&mut self, call: &Call) -> Option<Call> {
        Some(call.clone())
    }
}

/// tower's retry policy with its `TpsBudget` (defaults: 10 s, 10/s, 20 %):
/// each call deposits once, each retry withdraws, at most 3 attempts.
#[derive(Clone, Debug, Default)]
pub struct Budgeted {
    attempts: Attempts,
    budget: Arc<TpsBudget>,
}

impl<E> tower::retry::Policy<Call, (), E> for Budgeted {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut Call, result: &mut Result<(), E>) -> Option<Ready<()>> {
        if self.attempts.made == 1 {
            self.budget.deposit();
        }
        if result.is_err() && self.attempts.made < 3 && self.budget.withdraw() {
            self.attempts.made += 1;
            Some(ready(()))
        } else {
            None
        }
    }

    fn clone_request(&mut self, call: &Call) -> Option<Call> {
        Some(call.clone())
    }
}

/// failsafe's default policy (success rate 80 % over 30 s with at least 5
/// calls, or 5 consecutive failures) with its backoff's jitter off: the
/// default `equal_jittered(10 s, 300 s)` draws from `rand::thread_rng`,
/// which cannot be seeded; `exponential(10 s, 300 s)` is the same backoff
/// without the jitter.
type FailsafePolicy = failsafe::failure_policy::OrElse<
    failsafe::failure_policy::SuccessRateOverTimeWindow<failsafe::backoff::Exponential>,
    failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::Exponential>,
>;

/// failsafe's breaker as a tower service: the response future holds the
/// breaker's, as failsafe's `futures` adapter makes it.
#[derive(Clone, Debug)]
pub struct Failsafe {
    inner: Backend,
    breaker: failsafe::StateMachine<FailsafePolicy, ()>,
}

impl Failsafe {
    fn new(inner: Backend) -> Self {
        use failsafe::failure_policy::{consecutive_failures, success_rate_over_time_window};
        use failsafe::FailurePolicy as _;
        use std::time::Duration;
        let backoff =
            failsafe::backoff::exponential(Duration::from_secs(10), Duration::from_secs(300));
        let policy =
            success_rate_over_time_window(0.8, 5, Duration::from_secs(30), backoff.clone())
                .or_else(consecutive_failures(5, backoff));
        Self {
            inner,
            breaker: failsafe::Config::new().failure_policy(policy).build(),
        }
    }
}

impl Service<Call> for Failsafe {
    type Response = ();
    type Error = BoxError;
    type Future = CallFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: Call) -> CallFuture {
        // What failsafe's `futures` adapter does (feature `futures-support`):
        // ask the breaker, then record the attempt's outcome. Its future
        // asks on its first poll and never polls the inner future when
        // rejected; here the inner call is not made then, which is the same
        // for a backend that does nothing until polled.
        if !self.breaker.is_call_permitted() {
            return Box::pin(ready(Err(BoxError::from("circuit open"))));
        }
        let attempt = self.inner.call(call);
        let breaker = self.breaker.clone();
        Box::pin(async move {
            let result = attempt.await;
            match result {
                Ok(()) => breaker.on_success(),
                Err(_) => breaker.on_error(),
            }
            result
        })
    }
}
