use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::config::RetryConfig;
use super::future::ResponseFuture;
use super::handle::{RetryHandle, Stats};
use super::policy::RetryOn;
use super::replay::Replay;
use crate::error::BoxError;
use crate::metrics::thread_stripe;
use crate::runtime;

/// What every service of one layer shares: the config (with its budget),
/// the counters, and the retry and replay policies.
pub(crate) struct Shared<On, Rp> {
    pub(crate) config: RetryConfig,
    pub(crate) stats: Arc<Stats>,
    pub(crate) on: On,
    pub(crate) replay: Rp,
    /// The config's seed, or a random one.
    pub(crate) seed: u64,
    /// Numbers the retried calls: each seeds its jitter RNG from `seed` and
    /// its number, so a seeded layer gives the same schedules in the same
    /// order.
    pub(crate) rng_seq: AtomicU64,
}

impl<On, Rp> Shared<On, Rp> {
    pub(crate) fn new(config: RetryConfig, on: On, replay: Rp) -> Self {
        let stats = Arc::new(Stats::new(
            config.budget.clone(),
            config.name.clone(),
            config.attempt_durations,
        ));
        let seed = config.seed.unwrap_or_else(|| {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(0x5eed_u64)
        });
        Self {
            seed,
            config,
            stats,
            on,
            replay,
            rng_seq: AtomicU64::new(0),
        }
    }
}

/// Retries failed calls to the inner service; made by
/// [`RetryLayer`](super::RetryLayer).
///
/// `On` decides which results are retried ([`RetryOn`]), `Rp` how a
/// request is sent again ([`Replay`]). See the [module docs](super).
///
/// # Clone
///
/// Clones share the configuration, the budget and the counters; each call
/// keeps its own clone of the inner service to send its retries through.
///
/// # Panics
///
/// A `call` panics, before calling the inner service, unless it runs
/// within a Tokio runtime with time enabled (a backoff needs tokio's timer):
/// "steadfast::retry::Retry needs a Tokio runtime with time enabled (…)".
/// The first call fails this way even when the backend succeeds, so a
/// missing runtime shows in the first test, not in the first outage.
pub struct Retry<S, On, Rp> {
    inner: S,
    shared: Arc<Shared<On, Rp>>,
}

impl<S, On, Rp> Retry<S, On, Rp> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared<On, Rp>>) -> Self {
        Self { inner, shared }
    }

    /// A handle on the counters this service shares.
    pub fn handle(&self) -> RetryHandle {
        RetryHandle::new(self.shared.stats.clone())
    }

    define_inner_service_accessors!();
}

impl<S: Clone, On, Rp> Clone for Retry<S, On, Rp> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, On, Rp> fmt::Debug for Retry<S, On, Rp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<S, On, Rp, Req> Service<Req> for Retry<S, On, Rp>
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
        // A backoff needs the timer; check for it now, before the request is
        // sent, not on the day the backend first fails.
        runtime::assert_timer("steadfast::retry::Retry");
        let shared = &self.shared;
        let stripe = thread_stripe();
        shared.stats.call(stripe);
        if let Some(budget) = &shared.config.budget {
            budget.deposit_on(stripe);
        }
        let deadline = shared.replay.deadline(&req);
        let (request, stash) = shared.replay.prepare(req);
        // The readied service takes this attempt; the future keeps a clone
        // (readied again before each retry), as tower's own retry does.
        let clone = self.inner.clone();
        let mut service = std::mem::replace(&mut self.inner, clone);
        // Timed only when asked: the start is the time a layer outside
        // just read (the preset's metrics piece), or the clock.
        let started = shared
            .stats
            .attempt_duration
            .is_some()
            .then(|| crate::deadline::scope_now().unwrap_or_else(tokio::time::Instant::now));
        let future = service.call(request);
        ResponseFuture::new(future, service, shared.clone(), stash, deadline, started)
    }
}
