use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_service::Service;

use super::config::HedgeConfig;
use super::delay::Delay;
use super::future::{ResponseFuture, Spare};
use super::handle::{HedgeHandle, Stats};
use crate::error::BoxError;
use crate::metrics::thread_stripe;
use crate::retry::{NotReplayable, Replay, RetryOn};
use crate::runtime;

/// What every service of one layer shares: the config (with its budget),
/// the delay, the counters, and the policies.
pub(crate) struct Shared<On, Rp> {
    pub(crate) config: HedgeConfig,
    pub(crate) delay: Arc<Delay>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) on: On,
    pub(crate) replay: Rp,
}

impl<On, Rp> Shared<On, Rp> {
    pub(crate) fn new(config: HedgeConfig, on: On, replay: Rp) -> Self {
        Self {
            delay: Arc::new(Delay::new(config.delay, Instant::now())),
            stats: Arc::new(Stats::new(config.name.clone())),
            config,
            on,
            replay,
        }
    }
}

/// Sends hedged attempts to the inner service; made by
/// [`HedgeLayer`](super::HedgeLayer).
///
/// `On` decides which results are non-fatal ([`RetryOn`]), `Rp` how a
/// request is sent again ([`Replay`]). See the [module docs](super).
///
/// # Clone
///
/// Clones share the configuration, the budget, the delay estimate and the
/// counters. Each call keeps its own clone of the inner service, readied
/// before each hedge.
///
/// # Backpressure
///
/// `poll_ready` is the inner service's. A hedge readies the call's own
/// clone of the inner service before it is sent and waits for it (within
/// the deadline) while the other attempts go on.
///
/// # Panics
///
/// A `call` panics, before calling the inner service, unless it runs within
/// a Tokio runtime with time enabled: "steadfast::hedge::Hedge needs a
/// Tokio runtime with time enabled (…)".
pub struct Hedge<S, On, Rp> {
    inner: S,
    shared: Arc<Shared<On, Rp>>,
}

// === impl Hedge ===

impl<S, On, Rp> Hedge<S, On, Rp> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared<On, Rp>>) -> Self {
        Self { inner, shared }
    }

    /// A handle on the counters this service shares.
    pub fn handle(&self) -> HedgeHandle {
        HedgeHandle::new(&self.shared)
    }

    define_inner_service_accessors!();
}

impl<S: Clone, On, Rp> Clone for Hedge<S, On, Rp> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, On, Rp> fmt::Debug for Hedge<S, On, Rp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedge")
            .field("inner", &self.inner)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<S, On, Rp, Req> Service<Req> for Hedge<S, On, Rp>
where
    Rp: Replay<Req>,
    S: Service<Rp::Request> + Clone,
    S::Error: Into<BoxError>,
    On: RetryOn<S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, On, Rp, Req>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[cfg_attr(not(debug_assertions), inline(always))]
    #[cfg_attr(debug_assertions, inline)]
    fn call(&mut self, req: Req) -> Self::Future {
        // Hedges need the timer; check for it now, not on the first slow call.
        runtime::assert_timer("steadfast::hedge::Hedge");
        let shared = &self.shared;
        let stripe = thread_stripe();
        shared.stats.call(stripe);
        if let Some(budget) = &shared.config.budget {
            budget.deposit_on(stripe);
        }
        let deadline = shared.replay.deadline(&req);
        let (request, stash) = shared.replay.prepare(req);
        let spare = match stash {
            // The hedges go through a clone, readied before each one; the
            // readied service takes the first attempt.
            Ok(stash) if shared.replay.idempotent(&stash) => Some(Spare {
                service: self.inner.clone(),
                stash,
            }),
            Ok(_) | Err(NotReplayable::Unsafe) => {
                shared.stats.not_safe();
                None
            }
            Err(NotReplayable::Unreplayable) => {
                shared.stats.skip(super::handle::Skip::Unreplayable);
                None
            }
        };
        let future = self.inner.call(request);
        ResponseFuture::new(future, shared.clone(), spare, deadline)
    }
}
