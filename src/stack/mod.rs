//! The preset stack: every layer of this crate in the right order, in one
//! line, for HTTP, gRPC or any service.
//!
//! ```text
//! Metrics → IdempotencyKey → Deadline → RateLimit → Retry (+ budget) → Bulkhead → CircuitBreaker → Timeout → service
//! ```
//!
//! `ResilienceLayer::http`, `ResilienceLayer::grpc` (feature `http`) and
//! [`ResilienceLayer::new`] return a [`ResilienceBuilder`] in which each
//! piece can be tuned or switched off; [`build`](ResilienceBuilder::build)
//! checks every setting at once and returns the layer and a
//! [`ResilienceHandle`] on every piece.
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "http")]
//! # mod example {
//! use std::time::Duration;
//! use steadfast::retry::body::ReplayBody;
//! use steadfast::stack::ResilienceLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # pub async fn main() -> Result<(), steadfast::BoxError> {
//! let (resilience, handle) = ResilienceLayer::http()
//!     .deadline(Duration::from_secs(5))
//!     .bulkhead(64)
//!     .build()?; // Err(InvalidConfig) names the bad field
//! // The service receives the request with a replayable body.
//! let backend = tower::service_fn(|_req: http::Request<ReplayBody<String>>| async {
//!     Ok::<_, std::io::Error>(http::Response::new("product 1"))
//! });
//! let products = ServiceBuilder::new().layer(resilience).service(backend);
//!
//! let req = http::Request::get("http://products/api/1").body(String::new())?;
//! let res = products.oneshot(req).await?;
//! assert_eq!(*res.body(), "product 1");
//! println!("{handle}"); // one line per piece: state, retries, rejections
//! # Ok(())
//! # }
//! # }
//! # #[cfg(feature = "http")]
//! # fn main() -> Result<(), steadfast::BoxError> { example::main() }
//! # #[cfg(not(feature = "http"))]
//! # fn main() {}
//! ```
//!
//! # Ordering
//!
//! - **IdempotencyKey** outermost (HTTP): the key is set once, so every
//!   attempt of a POST carries the same one and the server runs it once.
//! - **Deadline** outside the retry: it bounds the whole call, backoff
//!   included, and every layer inside sees the time left. It travels in a
//!   scope around the inner `call`s, not in the request's extensions, so it
//!   costs no allocation (see
//!   [Carried in a scope](crate::deadline#carried-in-a-scope)); a service
//!   behind the stack reads it with
//!   [`Deadline::current`](crate::deadline::Deadline::current) in its `call`.
//! - **RateLimit** (off unless [`rate_limit`](ResilienceBuilder::rate_limit)
//!   is set) outside the retry: a call takes one cell of the limit however
//!   many attempts it makes, so a rate agreed with a dependency holds for
//!   the calls themselves, and retries stay paced by the retry budget and
//!   backoff rather than by the limiter. Inside the deadline: a call that
//!   waits for its turn never waits past it. Its rejection
//!   ([`RateLimited`](crate::RateLimited)) is never retried.
//! - **Retry** outside the bulkhead and the breaker: a retry never hammers
//!   an open breaker (its rejection is not retried, unless
//!   [`wait_for_open_circuit`](crate::retry::RetryConfigBuilder::wait_for_open_circuit)
//!   lets it wait out a short open period), and each attempt takes its own
//!   bulkhead slot.
//! - **Bulkhead** outside the breaker: it bounds attempts in flight; a call
//!   the breaker rejects gives its slot straight back.
//! - **CircuitBreaker** outside the timeout: a timed-out attempt counts as a
//!   failure of the backend. Our own rejections (open, full, deadline) never
//!   do.
//! - **Timeout** innermost: it bounds one attempt by the smaller of its own
//!   timeout and the time left, and writes that as `grpc-timeout` on gRPC
//!   requests. Its timer is the call's only one: with the attempt timeout
//!   on, the deadline keeps no timer of its own (the attempt's fires at the
//!   deadline when that comes first, the retry neither sleeps nor waits for
//!   readiness past it, a bulkhead waits no longer than it), so a call
//!   starts one timer per attempt, as tower's `Timeout` does.
//!
//! # Errors
//!
//! The stack's error is [`BoxError`](crate::BoxError): the backend's own
//! error, or one of our rejections — match them with
//! [`is_caused_by`](crate::is_caused_by) (`CircuitOpen`, `BulkheadFull`,
//! `DeadlineExceeded`, `Elapsed`).
//!
//! # Clone
//!
//! Every service the layer makes shares its breaker, budget and bulkhead:
//! clone the service or layer it twice, the limits stay one.
//!
//! # Types
//!
//! The service type is named through the layer:
//! `HttpResilience<S>`, `GrpcResilience<S>` (feature `http`),
//! or `<ResilienceLayer<..> as Layer<S>>::Service`. No piece boxes its
//! future; a switched-off piece costs one branch.
//!
//! Because a piece can be switched off at run time, its type holds both
//! ways through it, and the compiler checks the service behind along each
//! way. That is quick for one stack, but a stack nested directly inside
//! another (a preset around a service that is itself a preset) multiplies
//! the work: such a crate once took clippy over 20 minutes and about
//! 20 GB. Box the inner one when nesting
//! (`tower::util::BoxCloneService::new(inner)`): one dynamic call, and the
//! outer stack sees a plain service.

mod breaker;
mod builder;
mod collect;
mod handle;
pub mod prelude;
mod retry;
mod toggle;
#[cfg(feature = "tonic")]
mod tonic;

use std::fmt;

use tower_layer::{Identity, Layer};

use crate::bulkhead::BulkheadLayer;
use crate::deadline::RequestDeadline;
use crate::metrics::MetricsLayer;
use crate::rate_limit::{RateLimit, RateLimitLayer};
use crate::retry::{CloneWithDeadline, RetryFailures};
use crate::timeout::{DeadlineLayer, TimeoutLayer};

pub use self::breaker::{Breaker, BreakerKey, BreakerLayer, NoKey};
pub use self::builder::{ResilienceBuilder, DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_DEADLINE};
pub use self::handle::{KeyedBreakers, KeyedSnapshot, ResilienceHandle, ResilienceSnapshot};
pub use self::retry::{RetryPiece, RetryToggle};
pub use self::toggle::{Toggle, ToggleFuture, ToggleLayer};
#[cfg(feature = "tonic")]
pub use self::tonic::{try_status_from, GrpcStatus, GrpcStatusFuture, GrpcStatusLayer};

/// Every layer of this crate in the right order; see the [module docs](self).
///
/// Type parameters: the classifier `C` (what is a failure), the retry rule
/// `On`, the replay `Rp`, the breaker key `Kf`, the key-setting layer `Kl`
/// (HTTP) and an outermost layer `Ol` (the gRPC status mapping).
pub struct ResilienceLayer<C, On, Rp, Kf: BreakerKey = NoKey, Kl = Identity, Ol = Identity> {
    outer: Ol,
    metrics: MetricsLayer<C>,
    key: Kl,
    deadline: ToggleLayer<DeadlineLayer>,
    rate_limit: RateLimitLayer<RequestDeadline>,
    retry: RetryPiece<On, Rp>,
    bulkhead: ToggleLayer<BulkheadLayer<RequestDeadline>>,
    breaker: BreakerLayer<C, Kf>,
    timeout: ToggleLayer<TimeoutLayer<RequestDeadline>>,
    handle: ResilienceHandle,
}

/// The stack inside the key-setting and outermost layers.
pub type Core<S, C, On, Rp, Kf = NoKey> = Toggle<
    DeadlineLayer,
    RateLimit<
        RetryToggle<
            Toggle<
                BulkheadLayer<RequestDeadline>,
                Breaker<Toggle<TimeoutLayer<RequestDeadline>, S>, C, Kf>,
            >,
            On,
            Rp,
        >,
        RequestDeadline,
    >,
>;

impl<C, On, Rp: Clone, Kf: BreakerKey, Kl: Clone, Ol: Clone> Clone
    for ResilienceLayer<C, On, Rp, Kf, Kl, Ol>
{
    fn clone(&self) -> Self {
        Self {
            outer: self.outer.clone(),
            metrics: self.metrics.clone(),
            key: self.key.clone(),
            deadline: self.deadline.clone(),
            rate_limit: self.rate_limit.clone(),
            retry: self.retry.clone(),
            bulkhead: self.bulkhead.clone(),
            breaker: self.breaker.clone(),
            timeout: self.timeout.clone(),
            handle: self.handle.clone(),
        }
    }
}

impl<C, On, Rp, Kf: BreakerKey, Kl, Ol> fmt::Debug for ResilienceLayer<C, On, Rp, Kf, Kl, Ol> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResilienceLayer")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

impl<C, On, Rp, Kf: BreakerKey, Kl, Ol> ResilienceLayer<C, On, Rp, Kf, Kl, Ol> {
    /// The handle on every piece (the same one `build()` returned).
    pub fn handle(&self) -> ResilienceHandle {
        self.handle.clone()
    }
}

impl<S, C, On, Rp, Kf, Kl, Ol> Layer<S> for ResilienceLayer<C, On, Rp, Kf, Kl, Ol>
where
    Rp: Clone,
    Kf: BreakerKey,
    Kl: Layer<Core<S, C, On, Rp, Kf>>,
    Ol: Layer<crate::metrics::Metrics<Kl::Service, C>>,
{
    type Service = Ol::Service;

    fn layer(&self, inner: S) -> Self::Service {
        let service = self.timeout.layer(inner);
        let service = self.breaker.layer(service);
        let service = self.bulkhead.layer(service);
        let service = self.retry.layer(service);
        let service = self.rate_limit.layer(service);
        let service = self.deadline.layer(service);
        self.outer
            .layer(self.metrics.layer(self.key.layer(service)))
    }
}

impl<C> ResilienceLayer<C, RetryFailures<C>, CloneWithDeadline> {
    /// The preset for any service whose requests are `Clone` and carry a
    /// [`Deadline`](crate::deadline::Deadline)
    /// ([`CarriesDeadline`](crate::deadline::CarriesDeadline)): `classifier`
    /// decides what is a failure, for the breaker and for retries alike.
    #[allow(clippy::new_ret_no_self)] // `new` as in `http()` and `grpc()`: a builder
    pub fn new(classifier: C) -> ResilienceBuilder<C, RetryFailures<C>, CloneWithDeadline>
    where
        C: Clone,
    {
        ResilienceBuilder::preset(
            classifier.clone(),
            RetryFailures::new(classifier),
            |_, _| CloneWithDeadline,
            Identity::new(),
            Identity::new(),
        )
    }
}

#[cfg(feature = "http")]
mod presets {
    use super::*;
    use crate::classify::{GrpcClassifier, HttpClassifier};
    use crate::idempotency::IdempotencyKeyLayer;
    use crate::retry::{GrpcRetryOn, HttpReplay, HttpRetryOn, RestoreBody};

    /// The outermost piece of the gRPC preset: with feature `tonic`,
    /// [`GrpcStatusLayer`](super::GrpcStatusLayer), which turns our
    /// rejections into a `tonic::Status` with the right code; without it,
    /// nothing.
    #[cfg(feature = "tonic")]
    pub type GrpcOuter = super::GrpcStatusLayer;
    /// The outermost piece of the gRPC preset: with feature `tonic`,
    /// `GrpcStatusLayer`, which turns our rejections into a `tonic::Status`
    /// with the right code; without it, nothing.
    #[cfg(not(feature = "tonic"))]
    pub type GrpcOuter = Identity;

    fn grpc_outer() -> GrpcOuter {
        #[cfg(feature = "tonic")]
        return super::GrpcStatusLayer::new();
        #[cfg(not(feature = "tonic"))]
        return Identity::new();
    }

    /// The key-setting piece of the HTTP preset.
    pub type HttpKey = ToggleLayer<IdempotencyKeyLayer>;

    /// The layer [`ResilienceLayer::http`] builds.
    pub type HttpResilienceLayer<Kf = NoKey> =
        ResilienceLayer<HttpClassifier, HttpRetryOn, HttpReplay, Kf, HttpKey>;

    /// The service of [`HttpResilienceLayer`] around `S`.
    pub type HttpResilience<S, Kf = NoKey> = <HttpResilienceLayer<Kf> as Layer<S>>::Service;

    /// The layer [`ResilienceLayer::grpc`] builds.
    pub type GrpcResilienceLayer<Kf = NoKey> =
        ResilienceLayer<GrpcClassifier, GrpcRetryOn, RestoreBody, Kf, Identity, GrpcOuter>;

    /// The service of [`GrpcResilienceLayer`] around `S`.
    pub type GrpcResilience<S, Kf = NoKey> = <GrpcResilienceLayer<Kf> as Layer<S>>::Service;

    fn http_replay(config: &crate::retry::RetryConfig, paths: &[Box<str>]) -> HttpReplay {
        HttpReplay::new(config.max_replay_body).idempotent_paths(paths.iter().cloned())
    }

    impl ResilienceLayer<HttpClassifier, HttpRetryOn, HttpReplay, NoKey, HttpKey> {
        /// The preset for HTTP clients: `http::Request<B>` (the service
        /// receives `http::Request<ReplayBody<B>>`) or, with feature
        /// `reqwest`, `reqwest::Request` around a `reqwest::Client`.
        ///
        /// With feature `reqwest` the stack serves both request types, so
        /// `svc.ready()` cannot tell which one is meant: call
        /// `svc.oneshot(req)`, name the type
        /// (`ServiceExt::<reqwest::Request>::ready(&mut svc)`), or use
        /// `ResilienceLayer::reqwest()`, which takes only
        /// `reqwest::Request`.
        ///
        /// Failures are 5xx, 408, 429 and transport errors
        /// ([`HttpClassifier`]); retries follow [`HttpRetryOn`] and repeat
        /// only requests that are safe to repeat (idempotent methods, or an
        /// `Idempotency-Key`, which the stack sets on POST and PATCH).
        pub fn http() -> ResilienceBuilder<HttpClassifier, HttpRetryOn, HttpReplay, NoKey, HttpKey>
        {
            ResilienceBuilder::preset(
                HttpClassifier::new(),
                HttpRetryOn::new(),
                http_replay,
                ToggleLayer::on(IdempotencyKeyLayer::new()),
                Identity::new(),
            )
        }
    }

    /// The layer [`ResilienceLayer::reqwest`] builds (feature `reqwest`).
    #[cfg(feature = "reqwest")]
    pub type ReqwestResilienceLayer<Kf = NoKey> =
        ResilienceLayer<HttpClassifier, HttpRetryOn, crate::retry::ReqwestReplay, Kf, HttpKey>;

    /// The service of [`ReqwestResilienceLayer`] around `S` (a `reqwest::Client`).
    #[cfg(feature = "reqwest")]
    pub type ReqwestResilience<S, Kf = NoKey> = <ReqwestResilienceLayer<Kf> as Layer<S>>::Service;

    #[cfg(feature = "reqwest")]
    impl ResilienceLayer<HttpClassifier, HttpRetryOn, crate::retry::ReqwestReplay, NoKey, HttpKey> {
        /// The HTTP preset for `reqwest::Request` alone, around a
        /// `reqwest::Client` (feature `reqwest`): the same pieces and defaults
        /// as [`http`](ResilienceLayer::http), requests replayed with
        /// `try_clone`, each attempt's reqwest timeout set to the time left.
        ///
        /// `http()` takes `reqwest::Request` too; this one takes nothing
        /// else, so `svc.ready().await?.call(req)` infers the request type
        /// (with `http()` and feature `reqwest`, name it or use `oneshot`).
        /// A request is safe to repeat by method, key or
        /// [`idempotent_paths`](ResilienceBuilder::idempotent_paths).
        pub fn reqwest() -> ResilienceBuilder<
            HttpClassifier,
            HttpRetryOn,
            crate::retry::ReqwestReplay,
            NoKey,
            HttpKey,
        > {
            ResilienceBuilder::preset(
                HttpClassifier::new(),
                HttpRetryOn::new(),
                |_, paths| {
                    crate::retry::ReqwestReplay::new().idempotent_paths(paths.iter().cloned())
                },
                ToggleLayer::on(IdempotencyKeyLayer::new()),
                Identity::new(),
            )
        }
    }

    impl ResilienceLayer<GrpcClassifier, GrpcRetryOn, RestoreBody, NoKey, Identity, GrpcOuter> {
        /// The preset for gRPC clients: `http::Request<B>` with
        /// `content-type: application/grpc`, around a tonic `Channel`.
        ///
        /// Failures are UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED,
        /// INTERNAL and UNKNOWN ([`GrpcClassifier`]); retries follow
        /// [`GrpcRetryOn`]: a call is repeated after UNAVAILABLE, or after
        /// any retryable failure when its method is listed in
        /// [`idempotent_paths`](ResilienceBuilder::idempotent_paths). Every
        /// attempt's `grpc-timeout` is the smaller of the time left and the
        /// attempt timeout.
        ///
        /// The service behind receives the caller's own request type
        /// ([`RestoreBody`]): `http::Request<tonic::body::Body>` for a tonic
        /// `Channel`, so a generated client takes the wrapped channel as it
        /// is. With feature `tonic`, our rejections reach the caller as a
        /// `tonic::Status` (UNAVAILABLE for an open breaker or a full
        /// bulkhead, DEADLINE_EXCEEDED for timeouts) with our error as its
        /// source. A hyper client whose requests carry
        /// `BoxBody<Bytes, BoxError>` or `UnsyncBoxBody<Bytes, BoxError>`
        /// gets that type back too; over one whose body type cannot be
        /// rebuilt ([`FromReplayBody`](crate::retry::FromReplayBody)),
        /// replay with `.replay(HttpReplay::new(cap))`: the service then
        /// receives `http::Request<ReplayBody<B>>`.
        pub fn grpc(
        ) -> ResilienceBuilder<GrpcClassifier, GrpcRetryOn, RestoreBody, NoKey, Identity, GrpcOuter>
        {
            ResilienceBuilder::preset(
                GrpcClassifier::new(),
                GrpcRetryOn::new(),
                |config, paths| RestoreBody::from(http_replay(config, paths)),
                Identity::new(),
                grpc_outer(),
            )
        }
    }
}

#[cfg(feature = "http")]
pub use self::presets::{
    GrpcOuter, GrpcResilience, GrpcResilienceLayer, HttpKey, HttpResilience, HttpResilienceLayer,
};
#[cfg(feature = "reqwest")]
pub use self::presets::{ReqwestResilience, ReqwestResilienceLayer};
