//! [`RateLimitLayer`] and its builder.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tower_layer::Layer;

use super::gcra::{Limiter, Rate, MAX_SPAN_NANOS};
use super::shared::{Rejected, Shared};
use super::{RateLimit, RateLimitHandle};
use crate::deadline::{NoDeadline, RequestDeadline};
use crate::error::InvalidConfig;
use crate::metrics::listener::Listeners;
use crate::metrics::Striped;

/// Applies a rate limit, shared by every service it makes, to calls.
///
/// # Clone
///
/// Every clone of the layer, every service it makes and every clone of
/// those draw from **one** limit: `n per period` holds for all of them
/// together. (tower's `RateLimit` keeps a limit per service clone, so `k`
/// clones admit `k` times the rate.) For limits of their own, build a
/// second layer.
///
/// See the [module docs](super) for an example.
pub struct RateLimitLayer<D = NoDeadline> {
    shared: Arc<Shared>,
    _deadline: PhantomData<fn() -> D>,
}

impl RateLimitLayer {
    /// At most `rate` calls per `period` with a burst of `rate`, rejecting
    /// the calls over it at once with
    /// [`RateLimited`](super::error::RateLimited).
    /// Shorthand for `RateLimitLayer::builder(rate, period).build()`.
    ///
    /// # Errors
    ///
    /// As [`RateLimitBuilder::build`].
    pub fn new(rate: u64, period: Duration) -> Result<Self, InvalidConfig> {
        Self::builder(rate, period).build()
    }

    /// A builder for `rate` calls per `period`; see [`RateLimitBuilder`].
    pub fn builder(rate: u64, period: Duration) -> RateLimitBuilder {
        RateLimitBuilder {
            rate,
            period,
            burst: None,
            max_wait: Duration::ZERO,
            max_waiting: None,
            name: None,
            on_rejection: Listeners::new(),
        }
    }
}

impl RateLimitLayer<crate::deadline::RequestDeadline> {
    /// A layer whose services pass every call straight through: the
    /// preset's rate limit piece when none is configured.
    pub(crate) fn off() -> Self {
        let shared = Shared {
            off: true,
            limiter: Limiter::new(Rate::new(1, 1), Instant::now()),
            stats: Striped::with_len(1, Default::default),
            name: None,
            max_wait: Duration::ZERO,
            max_waiting: 0,
            on_rejection: Listeners::new(),
        };
        Self {
            shared: Arc::new(shared),
            _deadline: PhantomData,
        }
    }
}

impl<D> RateLimitLayer<D> {
    /// Waiting callers also go by the deadline the request carries (through
    /// [`CarriesDeadline`](crate::deadline::CarriesDeadline): an
    /// `http::Request`'s extensions, a `reqwest::Request`'s timeout), not
    /// only by the one in scope ([`Deadline::current`](crate::deadline::Deadline::current)),
    /// and the next hop is told the time left after the wait. Only matters
    /// with a [`max_wait`](RateLimitBuilder::max_wait).
    pub fn deadline_aware(self) -> RateLimitLayer<RequestDeadline> {
        RateLimitLayer {
            shared: self.shared,
            _deadline: PhantomData,
        }
    }

    /// A handle on the shared limit: counters and a [`snapshot`](RateLimitHandle::snapshot).
    pub fn handle(&self) -> RateLimitHandle {
        RateLimitHandle::new(self.shared.clone())
    }
}

impl<D> Clone for RateLimitLayer<D> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            _deadline: PhantomData,
        }
    }
}

impl<D> fmt::Debug for RateLimitLayer<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limit", &self.shared)
            .finish()
    }
}

impl<S, D> Layer<S> for RateLimitLayer<D> {
    type Service = RateLimit<S, D>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::from_shared(inner, self.shared.clone())
    }
}

/// Builds a [`RateLimitLayer`]; made by [`RateLimitLayer::builder`].
///
/// [`build`](Self::build) checks the values and names the first bad field.
#[derive(Clone, Debug)]
pub struct RateLimitBuilder {
    rate: u64,
    period: Duration,
    burst: Option<u64>,
    max_wait: Duration,
    max_waiting: Option<usize>,
    name: Option<Arc<str>>,
    on_rejection: Listeners<Rejected>,
}

impl RateLimitBuilder {
    /// How many calls an idle limiter admits at once (default: the rate,
    /// as `governor` and Resilience4j do). After a burst, calls are
    /// admitted one per `period / rate`. A burst of 1 spaces every call
    /// evenly.
    pub fn burst(mut self, burst: u64) -> Self {
        self.burst = Some(burst);
        self
    }

    /// How long a call over the limit may wait for its turn (default zero:
    /// it is rejected at once). Waiters are served first in, first out; a
    /// call whose turn, with the queue ahead of it, comes later than its
    /// wait allows — or later than its deadline — is rejected at once
    /// rather than after waiting in vain.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// How many calls may wait at once (default 1,024); more are rejected
    /// at once. Each waiter holds its request. Needs a non-zero
    /// [`max_wait`](Self::max_wait).
    pub fn max_waiting(mut self, max_waiting: usize) -> Self {
        self.max_waiting = Some(max_waiting);
        self
    }

    /// A name for the limiter's events, snapshot and listener events.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Called on every call the limiter rejects, outside any lock, on the
    /// rejecting thread: keep it short. Each call adds a listener; a
    /// listener that panics is caught and reported, and the others still
    /// get the event.
    pub fn on_rejection<F>(mut self, f: F) -> Self
    where
        F: Fn(&Rejected) + Send + Sync + 'static,
    {
        self.on_rejection.push(Arc::new(f));
        self
    }

    /// Whether a name was set (the preset names unnamed pieces).
    pub(crate) fn has_name(&self) -> bool {
        self.name.is_some()
    }

    /// Checks the values and builds the layer.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming the field:
    ///
    /// * `rate_limit.rate`: 0, or more calls than nanoseconds in the period;
    /// * `rate_limit.period`: zero;
    /// * `rate_limit.burst`: 0, or so large that `burst * period / rate`
    ///   exceeds 73 years;
    /// * `rate_limit.max_waiting`: set while `max_wait` is zero, or 0.
    ///
    /// ```
    /// use std::time::Duration;
    /// use steadfast::rate_limit::RateLimitLayer;
    ///
    /// let err = RateLimitLayer::new(0, Duration::from_secs(1)).unwrap_err();
    /// assert_eq!(err.field(), "rate_limit.rate");
    /// let err = RateLimitLayer::builder(10, Duration::from_secs(1)).burst(0).build().unwrap_err();
    /// assert_eq!(err.field(), "rate_limit.burst");
    /// ```
    pub fn build(self) -> Result<RateLimitLayer, InvalidConfig> {
        let (interval, burst) = check(self.rate, self.period, self.burst)?;
        let max_waiting = match self.max_waiting {
            Some(_) if self.max_wait.is_zero() => {
                return Err(InvalidConfig::new(
                    "rate_limit.max_waiting",
                    "has no effect while max_wait is zero: no call waits",
                ))
            }
            Some(0) => {
                return Err(InvalidConfig::new(
                    "rate_limit.max_waiting",
                    "must be at least 1, got 0; for no queue, leave max_wait at zero",
                ))
            }
            Some(n) => n,
            None if self.max_wait.is_zero() => 0,
            None => DEFAULT_MAX_WAITING,
        };
        let shared = Shared {
            off: false,
            limiter: Limiter::new(Rate::new(interval, burst), Instant::now()),
            stats: Striped::new(),
            name: self.name,
            max_wait: self.max_wait,
            max_waiting,
            on_rejection: self.on_rejection,
        };
        Ok(RateLimitLayer {
            shared: Arc::new(shared),
            _deadline: PhantomData,
        })
    }
}

/// The waiters a limiter that waits holds at most, unless told otherwise.
const DEFAULT_MAX_WAITING: usize = 1024;

/// Checks a rate; returns the interval in nanoseconds and the burst.
pub(crate) fn check(
    rate: u64,
    period: Duration,
    burst: Option<u64>,
) -> Result<(u64, u64), InvalidConfig> {
    if rate == 0 {
        return Err(InvalidConfig::new(
            "rate_limit.rate",
            "must be at least 1, got 0",
        ));
    }
    if period.is_zero() {
        return Err(InvalidConfig::new("rate_limit.period", "must be non-zero"));
    }
    let period_nanos = period.as_nanos();
    if u128::from(rate) > period_nanos {
        return Err(InvalidConfig::new(
            "rate_limit.rate",
            format!("must be at most one call per nanosecond: {rate} per {period:?}"),
        ));
    }
    // Rounded up: the limiter never admits more than configured.
    let interval = period_nanos.div_ceil(u128::from(rate));
    let burst = burst.unwrap_or(rate);
    if burst == 0 {
        return Err(InvalidConfig::new(
            "rate_limit.burst",
            "must be at least 1, got 0",
        ));
    }
    match interval.checked_mul(u128::from(burst)) {
        Some(span) if span <= u128::from(MAX_SPAN_NANOS) => {}
        _ => {
            return Err(InvalidConfig::new(
                "rate_limit.burst",
                format!("{burst} calls at one per {interval} ns span more than 73 years"),
            ))
        }
    }
    // `interval <= span <= MAX_SPAN_NANOS` fits a u64.
    Ok((interval as u64, burst))
}
