use std::fmt;
use std::task::{Context, Poll};

use tower_service::Service;

use std::sync::Arc;

use super::future::{On, ResponseFuture};
use super::handle::Stats;
use super::policy::{Recover, RequestKey};
use crate::classify::{Classify, ErrorsAsFailures};
use crate::error::BoxError;

/// Answers with a fallback when the inner call fails as configured; made
/// by [`FallbackLayer`](super::FallbackLayer).
///
/// `P` is the fallback ([`Recover`]), `C` the classifier that may call a
/// response a failure, `X` what is taken from the request before the call
/// ([`RequestKey`]). See the module docs.
///
/// # Clone
///
/// A clone holds a clone of the inner service, the fallback, the classifier
/// and the key extractor: whatever they share (an `Arc` they capture, a
/// [`LastGood`] cache) is shared by every clone.
///
/// # Backpressure
///
/// `poll_ready` is the inner service's.
#[cfg_attr(feature = "http", doc = "")]
#[cfg_attr(feature = "http", doc = "[`LastGood`]: super::LastGood")]
#[cfg_attr(not(feature = "http"), doc = "")]
#[cfg_attr(not(feature = "http"), doc = "[`LastGood`]: super")]
#[derive(Clone)]
pub struct Fallback<S, P, C = ErrorsAsFailures, X = ()> {
    inner: S,
    policy: P,
    classifier: C,
    key: X,
    on: On,
    stats: Option<Arc<Stats>>,
}

// === impl Fallback ===

impl<S, P, C, X> Fallback<S, P, C, X> {
    pub(crate) fn from_parts(
        inner: S,
        policy: P,
        classifier: C,
        key: X,
        on: On,
        stats: Option<Arc<Stats>>,
    ) -> Self {
        Self {
            inner,
            policy,
            classifier,
            key,
            on,
            stats,
        }
    }

    /// The fallback.
    pub fn policy(&self) -> &P {
        &self.policy
    }

    define_inner_service_accessors!();
}

impl<S: fmt::Debug, P, C: fmt::Debug, X> fmt::Debug for Fallback<S, P, C, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("inner", &self.inner)
            .field("classifier", &self.classifier)
            .field("on_rejections", &self.on.rejections)
            .field("on_errors", &self.on.errors)
            .finish_non_exhaustive()
    }
}

impl<S, P, C, X, Req> Service<Req> for Fallback<S, P, C, X>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    X: RequestKey<Req>,
    P: Recover<X::Key, S::Response> + Clone,
    C: Classify<S::Response, BoxError> + Clone,
{
    type Response = P::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, P, C, X::Key>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let key = self.key.key(&req);
        ResponseFuture::new(
            self.inner.call(req),
            self.policy.clone(),
            self.classifier.clone(),
            key,
            self.on,
            self.stats.clone(),
        )
    }
}
