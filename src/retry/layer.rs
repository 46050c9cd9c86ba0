use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::config::RetryConfig;
use super::handle::RetryHandle;
use super::policy::{RetryFailures, RetryIf};
use super::replay::CloneRequest;
use super::service::{Retry, Shared};
use crate::classify::ErrorsAsFailures;

/// Wraps services in [`Retry`]; every service it makes shares one budget
/// and one set of counters.
///
/// `On` decides which results are retried, `Rp` how a request is sent
/// again. The constructors pick both for the common cases:
///
/// | constructor | requests | retried |
/// |---|---|---|
/// | [`new`](RetryLayer::new) | any `Req: Clone` | every `Err` |
/// | [`with_policy`](RetryLayer::with_policy) | any | your [`RetryOn`](super::RetryOn) and [`Replay`](super::Replay) |
/// | `http` (feature `http`) | `http::Request<B>`, body buffered up to the cap | transport errors, 408, 429, 502, 503, 504, `Retry-After`; requests not safe to repeat only when never sent |
/// | `grpc` (feature `http`) | gRPC `http::Request<B>` | UNAVAILABLE, `grpc-retry-pushback-ms`, errors that prove the call was never sent; calls marked idempotent also after timeouts and transport errors |
/// | `http` (feature `reqwest`) | `reqwest::Request`, `try_clone`; each retry's timeout is the time left | as `http` |
/// | `reqwest` (feature `reqwest`) | `reqwest::Request`, as `http` without idempotent paths | as `http` |
/// | `tonic` (feature `tonic`) | `http::Request<tonic::body::Body>`, passed on as that type (`restore_body`) | as `grpc` |
///
/// See the [module docs](super#the-safe-method-rule) for what makes a
/// request safe to repeat.
pub struct RetryLayer<On = RetryFailures<ErrorsAsFailures>, Rp = CloneRequest> {
    shared: Arc<Shared<On, Rp>>,
}

impl RetryLayer {
    /// Retries every `Err` of a service whose requests are `Clone`.
    pub fn new(config: RetryConfig) -> Self {
        Self::with_policy(config, RetryFailures::default(), CloneRequest)
    }
}

impl<On, Rp> RetryLayer<On, Rp> {
    /// Retries what `on` asks for, replaying requests with `replay`.
    pub fn with_policy(config: RetryConfig, on: On, replay: Rp) -> Self {
        Self {
            shared: Arc::new(Shared::new(config, on, replay)),
        }
    }

    /// A handle on the counters of every service this layer makes.
    pub fn handle(&self) -> RetryHandle {
        RetryHandle::new(self.shared.stats.clone())
    }

    /// The configuration.
    pub fn config(&self) -> &RetryConfig {
        &self.shared.config
    }

    /// How requests are sent again.
    pub fn replay(&self) -> &Rp {
        &self.shared.replay
    }
}

impl<On: Clone, Rp> RetryLayer<On, Rp> {
    /// Replays requests with `replay` instead (for example
    /// [`CloneWithDeadline`](super::CloneWithDeadline) for request types
    /// that carry a deadline). The counters start afresh; the budget stays
    /// shared.
    pub fn with_replay<R>(self, replay: R) -> RetryLayer<On, R> {
        let shared = &self.shared;
        RetryLayer::with_policy(shared.config.clone(), shared.on.clone(), replay)
    }
}

impl<Rp: Clone> RetryLayer<RetryFailures<ErrorsAsFailures>, Rp> {
    /// Retries only the results for which `predicate` returns `true`, instead
    /// of every `Err`. The counters start afresh; the budget stays shared.
    pub fn retry_if<F>(self, predicate: F) -> RetryLayer<RetryIf<F>, Rp> {
        let shared = &self.shared;
        RetryLayer::with_policy(
            shared.config.clone(),
            RetryIf::new(predicate),
            shared.replay.clone(),
        )
    }
}

#[cfg(feature = "http")]
impl RetryLayer<super::HttpRetryOn, super::HttpReplay> {
    /// Retries `http::Request<B>` calls by the HTTP rule
    /// ([`HttpRetryOn`](super::HttpRetryOn)), replaying bodies up to
    /// [`max_replay_body`](super::RetryConfigBuilder::max_replay_body) bytes
    /// ([`HttpReplay`](super::HttpReplay)).
    ///
    /// The inner service receives `http::Request<ReplayBody<B>>`
    /// ([`ReplayBody`](super::body::ReplayBody)): a hyper client built for
    /// that body type. A client whose body type is fixed (a tonic
    /// `Channel`) takes [`restore_body`](RetryLayer::restore_body), which
    /// passes on `http::Request<B>` instead.
    ///
    /// With feature `reqwest` the same layer takes `reqwest::Request` and
    /// wraps a plain `reqwest::Client`: requests are replayed with
    /// `try_clone` (a streaming body is sent once) and each retry gets the
    /// time left before the deadline as its timeout. As the layer then
    /// serves two request types, `svc.ready()` cannot always infer which:
    /// name it (`ServiceExt::<Req>::ready(&mut svc)`), or use `oneshot`.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use steadfast::retry::{body::ReplayBody, RetryConfig, RetryLayer};
    /// use tower::{Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), steadfast::BoxError> {
    /// // A backend that is down.
    /// let backend = tower::service_fn(|_req: http::Request<ReplayBody<Full<Bytes>>>| async {
    ///     Ok::<_, std::io::Error>(http::Response::builder().status(503).body(()).unwrap())
    /// });
    /// let layer = RetryLayer::http(RetryConfig::default());
    /// let handle = layer.handle();
    /// let svc = layer.layer(backend);
    ///
    /// // A POST without an Idempotency-Key is not repeated: one attempt.
    /// let post = http::Request::post("http://products/api").body(Full::new(Bytes::from("{}")))?;
    /// assert_eq!(svc.clone().oneshot(post).await?.status(), 503);
    /// assert_eq!(handle.snapshot().skipped_unsafe, 1);
    ///
    /// // A GET is: three attempts, then the last 503 is returned.
    /// let get = http::Request::get("http://products/api/1").body(Full::new(Bytes::new()))?;
    /// assert_eq!(svc.oneshot(get).await?.status(), 503);
    /// assert_eq!(handle.snapshot().retries, 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn http(config: RetryConfig) -> Self {
        let replay = super::HttpReplay::new(config.max_replay_body);
        Self::with_policy(config, super::HttpRetryOn::new(), replay)
    }
}

#[cfg(feature = "http")]
impl RetryLayer<super::GrpcRetryOn, super::HttpReplay> {
    /// Retries gRPC calls (`http::Request<B>` with `content-type:
    /// application/grpc`) by the gRPC rule
    /// ([`GrpcRetryOn`](super::GrpcRetryOn)), replaying bodies up to
    /// [`max_replay_body`](super::RetryConfigBuilder::max_replay_body) bytes.
    pub fn grpc(config: RetryConfig) -> Self {
        let replay = super::HttpReplay::new(config.max_replay_body);
        Self::with_policy(config, super::GrpcRetryOn::new(), replay)
    }
}

#[cfg(feature = "http")]
impl<On: Clone> RetryLayer<On, super::HttpReplay> {
    /// Treats requests to these exact paths as safe to repeat
    /// ([`HttpReplay::idempotent_paths`](super::HttpReplay::idempotent_paths)):
    /// for gRPC, the methods that can run twice without harm, which are then
    /// retried after any retryable failure, a timeout included. The counters
    /// start afresh; the budget stays shared.
    ///
    /// ```
    /// use steadfast::retry::{RetryConfig, RetryLayer};
    ///
    /// let layer = RetryLayer::grpc(RetryConfig::default())
    ///     .idempotent_paths(["/shop.Products/Get", "/shop.Products/List"]);
    /// # let _ = layer;
    /// ```
    pub fn idempotent_paths<I, P>(self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<Box<str>>,
    {
        let shared = &self.shared;
        let replay = shared.replay.clone().idempotent_paths(paths);
        RetryLayer::with_policy(shared.config.clone(), shared.on.clone(), replay)
    }
}

#[cfg(feature = "reqwest")]
impl RetryLayer<super::HttpRetryOn, super::ReqwestReplay> {
    /// Retries `reqwest::Request` calls through a `reqwest::Client` by the
    /// HTTP rule; requests are replayed with `try_clone`. The same as
    /// [`http`](RetryLayer::http) without
    /// [`idempotent_paths`](RetryLayer::idempotent_paths), and a type that
    /// serves `reqwest::Request` only.
    pub fn reqwest(config: RetryConfig) -> Self {
        Self::with_policy(
            config,
            super::HttpRetryOn::new(),
            super::ReqwestReplay::new(),
        )
    }
}

impl<On, Rp> Clone for RetryLayer<On, Rp> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<On, Rp> fmt::Debug for RetryLayer<On, Rp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<S, On, Rp> Layer<S> for RetryLayer<On, Rp> {
    type Service = Retry<S, On, Rp>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::from_shared(inner, self.shared.clone())
    }
}
