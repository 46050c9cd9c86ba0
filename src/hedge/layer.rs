use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::config::HedgeConfig;
use super::handle::HedgeHandle;
use super::service::{Hedge, Shared};
use crate::classify::ErrorsAsFailures;
use crate::retry::{CloneRequest, RetryFailures};

/// Wraps services in [`Hedge`]; every service it makes shares one budget,
/// one delay estimate and one set of counters.
///
/// `On` decides which results are non-fatal (a retry verdict of its
/// [`RetryOn`](crate::retry::RetryOn)), `Rp` how a request is sent again
/// ([`Replay`](crate::retry::Replay)). The constructors pick both:
///
/// | constructor | requests | non-fatal |
/// |---|---|---|
/// | [`new`](HedgeLayer::new) | any `Req: Clone`, every one safe to repeat | every `Err` |
/// | [`with_policy`](HedgeLayer::with_policy) | any | your `RetryOn` and `Replay` |
/// | `http` (feature `http`) | `http::Request<B>`, body kept up to the cap; hedged only when safe to repeat | transport errors, 408, 429, 502, 503, 504 |
/// | `grpc` (feature `http`) | gRPC `http::Request<B>`; hedged only when marked idempotent | UNAVAILABLE, transport errors |
pub struct HedgeLayer<On = RetryFailures<ErrorsAsFailures>, Rp = CloneRequest> {
    shared: Arc<Shared<On, Rp>>,
}

impl HedgeLayer {
    /// Hedges calls of a service whose requests are `Clone`; any `Err` is
    /// non-fatal.
    pub fn new(config: HedgeConfig) -> Self {
        Self::with_policy(config, RetryFailures::default(), CloneRequest)
    }
}

impl<On, Rp> HedgeLayer<On, Rp> {
    /// Hedges with `on` deciding what is non-fatal and `replay` making each
    /// hedge's request.
    pub fn with_policy(config: HedgeConfig, on: On, replay: Rp) -> Self {
        Self {
            shared: Arc::new(Shared::new(config, on, replay)),
        }
    }

    /// A handle on the counters of every service this layer makes.
    pub fn handle(&self) -> HedgeHandle {
        HedgeHandle::new(&self.shared)
    }

    /// The configuration.
    pub fn config(&self) -> &HedgeConfig {
        &self.shared.config
    }
}

#[cfg(feature = "http")]
impl HedgeLayer<crate::retry::HttpRetryOn, crate::retry::HttpReplay> {
    /// Hedges `http::Request<B>` calls that are safe to repeat (an
    /// idempotent method, an `Idempotency-Key`, the
    /// [`Idempotent`](crate::retry::Idempotent) marker); bodies are kept
    /// up to [`max_replay_body`](super::HedgeConfigBuilder::max_replay_body)
    /// bytes and replayed ([`HttpReplay`](crate::retry::HttpReplay)). The
    /// HTTP retry rule says what is non-fatal
    /// ([`HttpRetryOn`](crate::retry::HttpRetryOn)): a 503 sends the next
    /// hedge at once.
    ///
    /// The inner service receives `http::Request<ReplayBody<B>>`.
    pub fn http(config: HedgeConfig) -> Self {
        let replay = crate::retry::HttpReplay::new(config.max_replay_body);
        Self::with_policy(config, crate::retry::HttpRetryOn::new(), replay)
    }
}

#[cfg(feature = "http")]
impl HedgeLayer<crate::retry::GrpcRetryOn, crate::retry::HttpReplay> {
    /// Hedges gRPC calls marked idempotent (by
    /// [`idempotent_paths`](HedgeLayer::idempotent_paths), the
    /// [`Idempotent`](crate::retry::Idempotent) marker or an
    /// `Idempotency-Key`); UNAVAILABLE and transport errors are non-fatal.
    /// Each hedge carries `grpc-previous-rpc-attempts` and the time left as
    /// `grpc-timeout`.
    pub fn grpc(config: HedgeConfig) -> Self {
        let replay = crate::retry::HttpReplay::new(config.max_replay_body);
        Self::with_policy(config, crate::retry::GrpcRetryOn::new(), replay)
    }
}

#[cfg(feature = "http")]
impl<On: Clone> HedgeLayer<On, crate::retry::HttpReplay> {
    /// Treats requests to these exact paths as safe to repeat
    /// ([`HttpReplay::idempotent_paths`](crate::retry::HttpReplay::idempotent_paths)):
    /// for gRPC, the methods that may be hedged. The counters and the delay
    /// estimate start afresh; the budget stays shared.
    pub fn idempotent_paths<I, P>(self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<Box<str>>,
    {
        let shared = &self.shared;
        let replay = shared.replay.clone().idempotent_paths(paths);
        HedgeLayer::with_policy(shared.config.clone(), shared.on.clone(), replay)
    }
}

impl<On, Rp> Clone for HedgeLayer<On, Rp> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<On, Rp> fmt::Debug for HedgeLayer<On, Rp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeLayer")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<S, On, Rp> Layer<S> for HedgeLayer<On, Rp> {
    type Service = Hedge<S, On, Rp>;

    fn layer(&self, inner: S) -> Self::Service {
        Hedge::from_shared(inner, self.shared.clone())
    }
}
