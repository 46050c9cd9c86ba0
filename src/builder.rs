//! [`ServiceBuilderExt`]: this crate's layers as `ServiceBuilder` methods.

use tower::layer::util::Stack;
use tower::ServiceBuilder;

use crate::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use crate::classify::ErrorsAsFailures;
use crate::retry::{RetryConfig, RetryLayer};

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

/// Adds this crate's layers to [`tower::ServiceBuilder`].
///
/// The method names never collide with `ServiceBuilder`'s own (`retry`,
/// `timeout`, `concurrency_limit`, …): an inherent method would silently win
/// once any crate in the build enabled that tower feature.
///
/// ```
/// use steadfast::ServiceBuilderExt;
/// use steadfast::circuit_breaker::CircuitBreakerConfig;
/// use tower::ServiceBuilder;
///
/// # fn main() -> Result<(), steadfast::InvalidConfig> {
/// let svc = ServiceBuilder::new()
///     .circuit_breaker(CircuitBreakerConfig::builder().consecutive_failures(5).build()?)
///     .service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x * 2) });
/// # let _ = svc;
/// # Ok(())
/// # }
/// ```
///
/// This trait is sealed: only `ServiceBuilder` implements it.
pub trait ServiceBuilderExt<L>: sealed::Sealed + Sized {
    /// Adds a [`CircuitBreakerLayer`] with `config` that counts every `Err`
    /// as a failure. For another classifier, build the layer with
    /// [`CircuitBreakerLayer::with_classifier`] and pass it to `.layer(..)`.
    fn circuit_breaker(
        self,
        config: CircuitBreakerConfig,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<ErrorsAsFailures>, L>>;

    /// Adds a [`RetryLayer`] with `config` that retries every `Err` of a
    /// service whose requests are `Clone`. For HTTP, gRPC or `reqwest`,
    /// build the layer with `RetryLayer::http` / `grpc` / `reqwest` and pass
    /// it to `.layer(..)`.
    ///
    /// Named `retries`, not `retry`: tower's own `ServiceBuilder::retry`
    /// would silently take its place.
    fn retries(self, config: RetryConfig) -> ServiceBuilder<Stack<RetryLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn circuit_breaker(
        self,
        config: CircuitBreakerConfig,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<ErrorsAsFailures>, L>> {
        self.layer(CircuitBreakerLayer::new(config))
    }

    fn retries(self, config: RetryConfig) -> ServiceBuilder<Stack<RetryLayer, L>> {
        self.layer(RetryLayer::new(config))
    }
}
