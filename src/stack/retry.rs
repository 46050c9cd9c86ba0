//! The retry piece of the stack: retries, or hedges in their place, or
//! neither with the same request type.

use std::fmt;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::toggle::ToggleFuture;
use crate::error::BoxError;
use crate::hedge::future::ResponseFuture as HedgeFuture;
use crate::hedge::{Hedge, HedgeLayer};
use crate::retry::future::ResponseFuture;
use crate::retry::{Replay, Retry, RetryLayer, RetryOn};

/// The retry piece of [`ResilienceLayer`](super::ResilienceLayer):
/// retries, or hedges in their place
/// ([`hedge`](super::ResilienceBuilder::hedge)), or neither.
///
/// Off, it still hands the inner service the request type retry would
/// (`Rp::Request`, e.g. `http::Request<ReplayBody<B>>`), so that switching
/// retries off does not change what the service behind must accept; the
/// replay's stash is dropped at once.
pub struct RetryPiece<On, Rp> {
    mode: Mode<On, Rp>,
    replay: Rp,
}

/// What the piece does.
pub(crate) enum Mode<On, Rp> {
    Retry(RetryLayer<On, Rp>),
    Hedge(HedgeLayer<On, Rp>),
    Off,
}

impl<On, Rp> RetryPiece<On, Rp> {
    pub(crate) fn new(mode: Mode<On, Rp>, replay: Rp) -> Self {
        Self { mode, replay }
    }
}

impl<On, Rp: Clone> Clone for RetryPiece<On, Rp> {
    fn clone(&self) -> Self {
        Self {
            mode: match &self.mode {
                Mode::Retry(l) => Mode::Retry(l.clone()),
                Mode::Hedge(l) => Mode::Hedge(l.clone()),
                Mode::Off => Mode::Off,
            },
            replay: self.replay.clone(),
        }
    }
}

impl<On, Rp> fmt::Debug for RetryPiece<On, Rp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            Mode::Retry(_) => "retry",
            Mode::Hedge(_) => "hedge",
            Mode::Off => "off",
        };
        f.debug_struct("RetryPiece")
            .field("mode", &mode)
            .finish_non_exhaustive()
    }
}

impl<S, On, Rp: Clone> Layer<S> for RetryPiece<On, Rp> {
    type Service = RetryToggle<S, On, Rp>;

    fn layer(&self, inner: S) -> Self::Service {
        match &self.mode {
            Mode::Retry(retry) => RetryToggle::On(retry.layer(inner)),
            Mode::Hedge(hedge) => RetryToggle::Hedge(hedge.layer(inner)),
            Mode::Off => RetryToggle::Off {
                inner,
                replay: self.replay.clone(),
            },
        }
    }
}

/// The service of a [`RetryPiece`].
///
/// # Clone
///
/// Clones share the retry (or hedge) layer's budget and counters.
pub enum RetryToggle<S, On, Rp> {
    /// Retries on.
    On(Retry<S, On, Rp>),
    /// Hedges in place of retries.
    Hedge(Hedge<S, On, Rp>),
    /// Retries off: one attempt, the request converted as for a retry.
    Off {
        /// The inner service.
        inner: S,
        /// The replay that converts each request.
        replay: Rp,
    },
}

impl<S: Clone, On, Rp: Clone> Clone for RetryToggle<S, On, Rp> {
    fn clone(&self) -> Self {
        match self {
            Self::On(s) => Self::On(s.clone()),
            Self::Hedge(s) => Self::Hedge(s.clone()),
            Self::Off { inner, replay } => Self::Off {
                inner: inner.clone(),
                replay: replay.clone(),
            },
        }
    }
}

impl<S: fmt::Debug, On, Rp> fmt::Debug for RetryToggle<S, On, Rp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::On(s) => f.debug_tuple("On").field(s).finish(),
            Self::Hedge(s) => f.debug_tuple("Hedge").field(s).finish(),
            Self::Off { inner, .. } => f.debug_tuple("Off").field(inner).finish(),
        }
    }
}

impl<S, On, Rp, Req> Service<Req> for RetryToggle<S, On, Rp>
where
    Rp: Replay<Req>,
    S: Service<Rp::Request> + Clone,
    S::Error: Into<BoxError>,
    On: RetryOn<S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ToggleFuture<
        ToggleFuture<ResponseFuture<S, On, Rp, Req>, HedgeFuture<S, On, Rp, Req>>,
        S::Future,
    >;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Self::On(s) => s.poll_ready(cx),
            Self::Hedge(s) => s.poll_ready(cx),
            Self::Off { inner, .. } => inner.poll_ready(cx).map_err(Into::into),
        }
    }

    #[cfg_attr(not(debug_assertions), inline(always))]
    #[cfg_attr(debug_assertions, inline)]
    fn call(&mut self, req: Req) -> Self::Future {
        match self {
            Self::On(s) => ToggleFuture::on(ToggleFuture::on(s.call(req))),
            Self::Hedge(s) => ToggleFuture::on(ToggleFuture::off(s.call(req))),
            Self::Off { inner, replay } => {
                // Converted the same way, nothing kept.
                ToggleFuture::off(inner.call(replay.convert(req)))
            }
        }
    }
}
