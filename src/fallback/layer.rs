use std::fmt;

use tower_layer::Layer;

use std::sync::Arc;

use super::future::On;
use super::handle::{FallbackHandle, Stats};
use super::policy::{CloneRequest, Failed, WithKey};
use super::service::Fallback;
use crate::classify::ErrorsAsFailures;
use crate::error::BoxError;

/// Wraps a service in [`Fallback`]: a response of the fallback's when the
/// call fails as configured. See the module docs.
#[derive(Clone)]
pub struct FallbackLayer<P, C = ErrorsAsFailures, X = ()> {
    policy: P,
    classifier: C,
    key: X,
    on: On,
    stats: Option<Arc<Stats>>,
}

impl<P, X> FallbackLayer<P, ErrorsAsFailures, X> {
    /// `policy` with `key`, on the default outcomes, no classifier, no
    /// counters: what every constructor starts from.
    fn from_parts(policy: P, key: X) -> Self {
        Self {
            policy,
            classifier: ErrorsAsFailures,
            key,
            on: On::DEFAULT,
            stats: None,
        }
    }
}

impl<P> FallbackLayer<P> {
    /// Runs `f` on our rejections and transport errors; it gets what went
    /// wrong and nothing of the request, so the happy path costs nothing
    /// but the move of `f` (a clone of it per call: keep what it captures
    /// behind an `Arc`).
    pub fn new<Res>(f: P) -> Self
    where
        P: Fn(Failed<'_, Res>) -> Result<Res, BoxError>,
    {
        Self::with_policy(f)
    }

    /// Runs `policy`, any [`Recover`](super::Recover) (the closures of
    /// [`new`](Self::new) are some), on our rejections and transport errors.
    pub fn with_policy(policy: P) -> Self {
        Self::from_parts(policy, ())
    }
}

impl<F> FallbackLayer<WithKey<F>, ErrorsAsFailures, CloneRequest> {
    /// Like [`new`](Self::new), and `f` also gets a clone of the request,
    /// taken before every call: the happy path pays for that clone.
    pub fn with_request<Req, Res>(f: F) -> Self
    where
        Req: Clone,
        F: Fn(Req, Failed<'_, Res>) -> Result<Res, BoxError>,
    {
        Self::from_parts(WithKey(f), CloneRequest)
    }
}

impl<F, X> FallbackLayer<WithKey<F>, ErrorsAsFailures, X> {
    /// Like [`new`](Self::new), and `f` also gets `key(&request)`, taken
    /// before every call: the happy path pays for `key` (an allocation, for
    /// a `String` key).
    pub fn with_key<Req, K, Res>(key: X, f: F) -> Self
    where
        X: Fn(&Req) -> K,
        F: Fn(K, Failed<'_, Res>) -> Result<Res, BoxError>,
    {
        Self::from_parts(WithKey(f), key)
    }
}

impl<P, C, X> FallbackLayer<P, C, X> {
    /// Whether this crate's rejections make the fallback run (default
    /// `true`): anything [`Rejection::of`](crate::Rejection::of) finds —
    /// an open breaker, a full bulkhead, an attempt timeout, the deadline.
    pub fn on_rejections(mut self, yes: bool) -> Self {
        self.on.rejections = yes;
        self
    }

    /// Whether the other errors of the inner service — transport errors,
    /// the backend's own — make the fallback run (default `true`).
    pub fn on_errors(mut self, yes: bool) -> Self {
        self.on.errors = yes;
        self
    }

    /// Also runs the fallback for responses `classifier` calls a
    /// [`Failure`](crate::classify::Outcome::Failure) (`HttpClassifier`: a
    /// 5xx, 408, 429). By default no response is one. Errors are not
    /// classified: [`on_rejections`](Self::on_rejections) and
    /// [`on_errors`](Self::on_errors) decide for them.
    ///
    /// The classifier is cloned into every call's future: `HttpClassifier`
    /// is 240 bytes.
    pub fn on_failed_responses<C2>(self, classifier: C2) -> FallbackLayer<P, C2, X> {
        FallbackLayer {
            policy: self.policy,
            classifier,
            key: self.key,
            on: self.on,
            stats: self.stats,
        }
    }

    /// The fallback.
    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// The layer and a [`FallbackHandle`] on its counters: how often the
    /// fallback served a response, failed, or had nothing to serve. A
    /// layer with a handle clones an `Arc` into each response future (one
    /// atomic increment per call); one without counts nothing and costs
    /// nothing for it.
    pub fn pair(mut self) -> (Self, FallbackHandle) {
        let stats = self.stats.get_or_insert_with(Default::default).clone();
        (self, FallbackHandle::new(stats))
    }
}

impl<P, C: fmt::Debug, X> fmt::Debug for FallbackLayer<P, C, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayer")
            .field("classifier", &self.classifier)
            .field("on_rejections", &self.on.rejections)
            .field("on_errors", &self.on.errors)
            .finish_non_exhaustive()
    }
}

impl<S, P: Clone, C: Clone, X: Clone> Layer<S> for FallbackLayer<P, C, X> {
    type Service = Fallback<S, P, C, X>;

    fn layer(&self, inner: S) -> Self::Service {
        Fallback::from_parts(
            inner,
            self.policy.clone(),
            self.classifier.clone(),
            self.key.clone(),
            self.on,
            self.stats.clone(),
        )
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl FallbackLayer<super::StaticResponse> {
    /// Answers with `response`, built afresh for each fallback, on our
    /// rejections and transport errors.
    pub fn http_response(response: super::StaticResponse) -> Self {
        Self::with_policy(response)
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl FallbackLayer<super::LastGood, ErrorsAsFailures, super::MethodPathQuery> {
    /// Records the good responses that pass in `cache`, keyed by method,
    /// path and query, and serves the last one for the key on our
    /// rejections and transport errors.
    pub fn last_good(cache: super::LastGood) -> Self {
        Self::from_parts(cache, super::MethodPathQuery)
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl<K, X> FallbackLayer<super::LastGood<K>, ErrorsAsFailures, X> {
    /// Like [`last_good`](FallbackLayer::last_good), keyed by `key`: a
    /// [`RequestKey`](super::RequestKey), such as a closure
    /// `Fn(&Request) -> K` (name the request type in its argument:
    /// `|req: &http::Request<Body>| ..`).
    pub fn last_good_by(cache: super::LastGood<K>, key: X) -> Self {
        Self::from_parts(cache, key)
    }
}
