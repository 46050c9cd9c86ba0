//! [`ServiceBuilderExt`]: this crate's layers as `ServiceBuilder` methods.

use std::time::Duration;

use tower::layer::util::Stack;
use tower::ServiceBuilder;

use crate::bulkhead::BulkheadLayer;
use crate::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use crate::classify::ErrorsAsFailures;
use crate::error::InvalidConfig;
use crate::hedge::{HedgeConfig, HedgeLayer};
use crate::retry::{RetryConfig, RetryLayer};
use crate::timeout::{DeadlineLayer, TimeoutLayer};

#[cfg(feature = "http")]
use crate::classify::{GrpcClassifier, HttpClassifier};
#[cfg(feature = "http")]
use crate::idempotency::IdempotencyKeyLayer;
#[cfg(feature = "reqwest")]
use crate::retry::ReqwestReplay;
#[cfg(feature = "http")]
use crate::retry::{GrpcRetryOn, HttpReplay, HttpRetryOn};

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

/// Adds this crate's layers to [`tower::ServiceBuilder`], each with the
/// classifier that fits the request type.
///
/// | request type | breaker | retries | hedges |
/// |---|---|---|---|
/// | any (every `Err` is a failure) | [`circuit_breaker`](Self::circuit_breaker) | [`retries`](Self::retries) (`Req: Clone`) | [`hedge`](Self::hedge) (`Req: Clone`) |
/// | `http::Request<B>` (feature `http`) | `http_circuit_breaker` (5xx, 408, 429, transport errors) | `http_retries` (body replay, the safe-method rule) | `http_hedge` |
/// | gRPC over `http::Request<B>` (feature `http`) | `grpc_circuit_breaker` (UNAVAILABLE, …) | `grpc_retries` | `grpc_hedge` |
/// | `reqwest::Request` (feature `reqwest`) | `http_circuit_breaker` | `reqwest_retries` | — |
///
/// and for every request type [`attempt_timeout`](Self::attempt_timeout),
/// [`deadline`](Self::deadline) (requests that carry a deadline),
/// [`bulkhead`](Self::bulkhead), and `idempotency_key` (feature `http`).
///
/// The plain `circuit_breaker` and `retries` count only `Err` as a failure:
/// an HTTP client answers a 503 with `Ok(response)`, so around one they
/// would never see the backend fail. Use the `http_` and `grpc_` methods
/// there.
///
/// ```
/// use std::time::Duration;
/// use steadfast::circuit_breaker::CircuitBreakerConfig;
/// use steadfast::retry::RetryConfig;
/// use steadfast::ServiceBuilderExt as _;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), steadfast::BoxError> {
/// // Outermost first: retries outside the breaker, the per-attempt
/// // timeout inside it so that timeouts count as failures.
/// let svc = ServiceBuilder::new()
///     .retries(RetryConfig::default())
///     .bulkhead(64)?
///     .circuit_breaker(CircuitBreakerConfig::builder().consecutive_failures(5).build()?)
///     .attempt_timeout(Duration::from_secs(2))?
///     .service_fn(|id: u32| async move { Ok::<_, std::io::Error>(id * 2) });
///
/// assert_eq!(svc.oneshot(21).await?, 42);
/// # Ok(())
/// # }
/// ```
///
/// # Never a panic
///
/// A method that takes a config made by a `build()` returns the builder: the
/// config was checked when it was built. A method that takes a bare value (a
/// duration, a limit) checks it and returns `Result<ServiceBuilder<_>,
/// InvalidConfig>`, so chain it with `?` as above; a zero timeout or a zero
/// limit is an [`InvalidConfig`] naming the field, never a panic.
///
/// # Handles and other knobs
///
/// The methods build the layer with its defaults and hand it to
/// `ServiceBuilder::layer`. For the layer's handle (state, metrics, manual
/// control) or a knob the method does not take, build the layer yourself,
/// keep `layer.handle()`, and pass the layer to `.layer(..)`.
///
/// # Names
///
/// No method shares a name with an inherent method of `ServiceBuilder`
/// (`retry`, `timeout`, `concurrency_limit`, `rate_limit`, `load_shed`, …):
/// an inherent method wins silently once any crate in the build enables
/// that tower feature — hence `retries` and `attempt_timeout`. Nor with
/// tower-http's `ServiceBuilderExt`, whose trait has the same name: import
/// both anonymously and both sets of methods work.
///
/// ```
/// use steadfast::ServiceBuilderExt as _;
/// // use tower_http::ServiceBuilderExt as _;
/// ```
///
/// (Importing both by name is error E0252, "the name `ServiceBuilderExt` is
/// defined multiple times".) [`prelude`](crate::prelude) imports this one
/// as `_`.
///
/// This trait is sealed: only `ServiceBuilder` implements it.
pub trait ServiceBuilderExt<L>: sealed::Sealed + Sized {
    /// Adds a [`CircuitBreakerLayer`] with `config` that counts every `Err`
    /// as a failure, for any service. Not for HTTP or gRPC clients, whose
    /// failures arrive as `Ok` responses: use `http_circuit_breaker` or
    /// `grpc_circuit_breaker` there.
    fn circuit_breaker(
        self,
        config: CircuitBreakerConfig,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<ErrorsAsFailures>, L>>;

    /// Adds a [`CircuitBreakerLayer`] with `config` and the
    /// [`HttpClassifier`]: transport errors, 5xx, 408 and 429 are failures,
    /// other 4xx are ignored. For `http::Response<B>` and
    /// `reqwest::Response`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use http_body_util::Empty;
    /// use steadfast::circuit_breaker::CircuitBreakerConfig;
    /// use steadfast::retry::{body::ReplayBody, RetryConfig};
    /// use steadfast::ServiceBuilderExt as _;
    /// use tower::{ServiceBuilder, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), steadfast::BoxError> {
    /// let svc = ServiceBuilder::new()
    ///     .idempotency_key()
    ///     .deadline(Duration::from_secs(10))?
    ///     .http_retries(RetryConfig::default())
    ///     .http_circuit_breaker(CircuitBreakerConfig::builder().consecutive_failures(5).build()?)
    ///     .attempt_timeout(Duration::from_secs(2))?
    ///     .service_fn(|_req: http::Request<ReplayBody<Empty<Bytes>>>| async {
    ///         Ok::<_, std::io::Error>(http::Response::new(()))
    ///     });
    ///
    /// let res = svc.oneshot(http::Request::new(Empty::new())).await?;
    /// assert_eq!(res.status(), 200);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "http")]
    fn http_circuit_breaker(
        self,
        config: CircuitBreakerConfig,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<HttpClassifier>, L>>;

    /// Adds a [`CircuitBreakerLayer`] with `config` and the
    /// [`GrpcClassifier`]: transport errors, UNAVAILABLE, DEADLINE_EXCEEDED,
    /// RESOURCE_EXHAUSTED, INTERNAL and UNKNOWN are failures.
    #[cfg(feature = "http")]
    fn grpc_circuit_breaker(
        self,
        config: CircuitBreakerConfig,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<GrpcClassifier>, L>>;

    /// Adds a [`RetryLayer::new`] with `config`: retries every `Err` of a
    /// service whose requests are `Clone`. Not for HTTP or gRPC clients: use
    /// `http_retries`, `grpc_retries` or `reqwest_retries` there.
    ///
    /// Named `retries`, not `retry`: tower's own `ServiceBuilder::retry`
    /// would silently take its place.
    fn retries(self, config: RetryConfig) -> ServiceBuilder<Stack<RetryLayer, L>>;

    /// Adds a [`RetryLayer::http`] with `config`: retries `http::Request<B>`
    /// calls by the HTTP rule (transport errors, 408, 429, 502, 503, 504,
    /// `Retry-After`; requests not safe to repeat only when never sent),
    /// replaying bodies up to the cap.
    #[cfg(feature = "http")]
    fn http_retries(
        self,
        config: RetryConfig,
    ) -> ServiceBuilder<Stack<RetryLayer<HttpRetryOn, HttpReplay>, L>>;

    /// Adds a [`RetryLayer::grpc`] with `config`: retries gRPC calls on
    /// UNAVAILABLE, honouring `grpc-retry-pushback-ms`.
    #[cfg(feature = "http")]
    fn grpc_retries(
        self,
        config: RetryConfig,
    ) -> ServiceBuilder<Stack<RetryLayer<GrpcRetryOn, HttpReplay>, L>>;

    /// Adds a `RetryLayer::reqwest` with `config`: retries
    /// `reqwest::Request` calls by the HTTP rule, replaying them with
    /// `try_clone`.
    #[cfg(feature = "reqwest")]
    fn reqwest_retries(
        self,
        config: RetryConfig,
    ) -> ServiceBuilder<Stack<RetryLayer<HttpRetryOn, ReqwestReplay>, L>>;

    /// Adds a [`TimeoutLayer`]: each attempt that takes longer than
    /// `timeout` fails with [`Elapsed`](crate::Elapsed). Put it inside the
    /// breaker so timeouts count as failures.
    ///
    /// Named `attempt_timeout`, not `timeout`: tower's own
    /// `ServiceBuilder::timeout` would silently take its place.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming `timeout.timeout` for a zero duration.
    fn attempt_timeout(
        self,
        timeout: Duration,
    ) -> Result<ServiceBuilder<Stack<TimeoutLayer, L>>, InvalidConfig>;

    /// Adds a [`DeadlineLayer`]: each whole call — every attempt and
    /// backoff of the layers inside — must finish within `timeout`, or
    /// fails with [`DeadlineExceeded`](crate::DeadlineExceeded). Needs
    /// requests that carry a deadline
    /// ([`CarriesDeadline`](crate::deadline::CarriesDeadline);
    /// `http::Request` does).
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming `deadline.timeout` for a zero duration.
    fn deadline(
        self,
        timeout: Duration,
    ) -> Result<ServiceBuilder<Stack<DeadlineLayer, L>>, InvalidConfig>;

    /// Adds a [`BulkheadLayer`] of `max_concurrent` slots that rejects a
    /// call at once with [`BulkheadFull`](crate::BulkheadFull) when every
    /// slot is taken. For a bounded wait, build the layer with
    /// [`BulkheadLayer::builder`] and pass it to `.layer(..)`.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming `bulkhead.max_concurrent` for zero.
    fn bulkhead(
        self,
        max_concurrent: usize,
    ) -> Result<ServiceBuilder<Stack<BulkheadLayer, L>>, InvalidConfig>;

    /// Adds an [`IdempotencyKeyLayer`]: a fresh `Idempotency-Key` on each
    /// request with a non-idempotent method that has none. Put it outside
    /// the retries so every attempt carries the same key, which also lets
    /// `http_retries` repeat the request.
    #[cfg(feature = "http")]
    fn idempotency_key(self) -> ServiceBuilder<Stack<IdempotencyKeyLayer, L>>;

    /// Adds a [`HedgeLayer::new`] with `config`: when an attempt is slow,
    /// another goes after the delay and the first answer wins; every `Err`
    /// is non-fatal. In place of the retries, outside the bulkhead and the
    /// breaker.
    fn hedge(self, config: HedgeConfig) -> ServiceBuilder<Stack<HedgeLayer, L>>;

    /// Adds a [`HedgeLayer::http`] with `config`: hedges `http::Request<B>`
    /// calls that are safe to repeat, by the HTTP retry rule.
    #[cfg(feature = "http")]
    fn http_hedge(
        self,
        config: HedgeConfig,
    ) -> ServiceBuilder<Stack<HedgeLayer<HttpRetryOn, HttpReplay>, L>>;

    /// Adds a [`HedgeLayer::grpc`] with `config`: hedges gRPC calls marked
    /// idempotent, by the gRPC retry rule. For idempotent paths, build the
    /// layer and use [`HedgeLayer::idempotent_paths`].
    #[cfg(feature = "http")]
    fn grpc_hedge(
        self,
        config: HedgeConfig,
    ) -> ServiceBuilder<Stack<HedgeLayer<GrpcRetryOn, HttpReplay>, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn circuit_breaker(
        self,
        config: CircuitBreakerConfig,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<ErrorsAsFailures>, L>> {
        self.layer(CircuitBreakerLayer::new(config))
    }

    #[cfg(feature = "http")]
    fn http_circuit_breaker(
        self,
        config: CircuitBreakerConfig,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<HttpClassifier>, L>> {
        self.layer(CircuitBreakerLayer::with_classifier(
            config,
            HttpClassifier::new(),
        ))
    }

    #[cfg(feature = "http")]
    fn grpc_circuit_breaker(
        self,
        config: CircuitBreakerConfig,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<GrpcClassifier>, L>> {
        self.layer(CircuitBreakerLayer::with_classifier(
            config,
            GrpcClassifier::new(),
        ))
    }

    fn retries(self, config: RetryConfig) -> ServiceBuilder<Stack<RetryLayer, L>> {
        self.layer(RetryLayer::new(config))
    }

    #[cfg(feature = "http")]
    fn http_retries(
        self,
        config: RetryConfig,
    ) -> ServiceBuilder<Stack<RetryLayer<HttpRetryOn, HttpReplay>, L>> {
        self.layer(RetryLayer::http(config))
    }

    #[cfg(feature = "http")]
    fn grpc_retries(
        self,
        config: RetryConfig,
    ) -> ServiceBuilder<Stack<RetryLayer<GrpcRetryOn, HttpReplay>, L>> {
        self.layer(RetryLayer::grpc(config))
    }

    #[cfg(feature = "reqwest")]
    fn reqwest_retries(
        self,
        config: RetryConfig,
    ) -> ServiceBuilder<Stack<RetryLayer<HttpRetryOn, ReqwestReplay>, L>> {
        self.layer(RetryLayer::reqwest(config))
    }

    fn attempt_timeout(
        self,
        timeout: Duration,
    ) -> Result<ServiceBuilder<Stack<TimeoutLayer, L>>, InvalidConfig> {
        Ok(self.layer(TimeoutLayer::new(timeout)?))
    }

    fn deadline(
        self,
        timeout: Duration,
    ) -> Result<ServiceBuilder<Stack<DeadlineLayer, L>>, InvalidConfig> {
        Ok(self.layer(DeadlineLayer::new(timeout)?))
    }

    fn bulkhead(
        self,
        max_concurrent: usize,
    ) -> Result<ServiceBuilder<Stack<BulkheadLayer, L>>, InvalidConfig> {
        Ok(self.layer(BulkheadLayer::new(max_concurrent)?))
    }

    #[cfg(feature = "http")]
    fn idempotency_key(self) -> ServiceBuilder<Stack<IdempotencyKeyLayer, L>> {
        self.layer(IdempotencyKeyLayer::new())
    }

    fn hedge(self, config: HedgeConfig) -> ServiceBuilder<Stack<HedgeLayer, L>> {
        self.layer(HedgeLayer::new(config))
    }

    #[cfg(feature = "http")]
    fn http_hedge(
        self,
        config: HedgeConfig,
    ) -> ServiceBuilder<Stack<HedgeLayer<HttpRetryOn, HttpReplay>, L>> {
        self.layer(HedgeLayer::http(config))
    }

    #[cfg(feature = "http")]
    fn grpc_hedge(
        self,
        config: HedgeConfig,
    ) -> ServiceBuilder<Stack<HedgeLayer<GrpcRetryOn, HttpReplay>, L>> {
        self.layer(HedgeLayer::grpc(config))
    }
}
