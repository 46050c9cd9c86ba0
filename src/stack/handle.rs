//! [`ResilienceHandle`]: one handle on every piece of a preset stack.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use crate::bulkhead::{BulkheadHandle, BulkheadSnapshot};
use crate::circuit_breaker::{
    CircuitBreakerHandle, CircuitBreakerSnapshot, KeyedCircuitBreakerHandle,
};
use crate::fallback::{FallbackHandle, FallbackSnapshot};
use crate::hedge::{HedgeHandle, HedgeSnapshot};
use crate::metrics::{MetricsHandle, MetricsSnapshot};
use crate::rate_limit::{RateLimitHandle, RateLimitSnapshot};
use crate::retry::{RetryHandle, RetrySnapshot};

/// One handle on every piece of a [`ResilienceLayer`](super::ResilienceLayer):
/// each layer's own handle, and a [`snapshot`](Self::snapshot) of them all
/// whose `Display` is a compact summary.
///
/// Returned by [`ResilienceBuilder::build`](super::ResilienceBuilder::build)
/// beside the layer. It is also a layer that adds nothing, so the pair
/// `(layer, handle)` is itself a layer and
/// `ServiceBuilder::new().layer(ResilienceLayer::http().build()?)` works when
/// the handle is not needed; [`ResilienceLayer::handle`](super::ResilienceLayer::handle)
/// gives it back later.
///
/// # Clone
///
/// Clones are handles on the same layers.
#[derive(Clone)]
pub struct ResilienceHandle {
    inner: Arc<Parts>,
}

pub(crate) struct Parts {
    pub(crate) metrics: Option<MetricsHandle>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) rate_limit: Option<RateLimitHandle>,
    pub(crate) fallback: Option<FallbackHandle>,
    pub(crate) retry: Option<RetryHandle>,
    pub(crate) hedge: Option<HedgeHandle>,
    pub(crate) bulkhead: Option<BulkheadHandle>,
    pub(crate) breaker: BreakerHandles,
}

pub(crate) enum BreakerHandles {
    Off,
    Single(CircuitBreakerHandle),
    Keyed(KeyedBreakers),
}

impl ResilienceHandle {
    pub(crate) fn new(parts: Parts) -> Self {
        Self {
            inner: Arc::new(parts),
        }
    }

    /// The deadline of each whole call, when the deadline piece is on.
    pub fn deadline(&self) -> Option<Duration> {
        self.inner.deadline
    }

    /// The timeout of each attempt, when the timeout piece is on.
    pub fn attempt_timeout(&self) -> Option<Duration> {
        self.inner.attempt_timeout
    }

    /// The metrics piece's handle, when the stack has one
    /// ([`ResilienceBuilder::metrics`](super::ResilienceBuilder::metrics)).
    pub fn metrics(&self) -> Option<&MetricsHandle> {
        self.inner.metrics.as_ref()
    }

    /// The fallback's counters, when the stack has one
    /// ([`ResilienceBuilder::fallback`](super::ResilienceBuilder::fallback)).
    pub fn fallback(&self) -> Option<&FallbackHandle> {
        self.inner.fallback.as_ref()
    }

    /// The rate limit's handle, when the stack has one.
    pub fn rate_limit(&self) -> Option<&RateLimitHandle> {
        self.inner.rate_limit.as_ref()
    }

    /// The retry layer's handle, when retries are on.
    pub fn retry(&self) -> Option<&RetryHandle> {
        self.inner.retry.as_ref()
    }

    /// The hedge layer's handle, when the stack hedges in place of retries
    /// ([`ResilienceBuilder::hedge`](super::ResilienceBuilder::hedge)).
    pub fn hedge(&self) -> Option<&HedgeHandle> {
        self.inner.hedge.as_ref()
    }

    /// The bulkhead's handle, when a bulkhead is set.
    pub fn bulkhead(&self) -> Option<&BulkheadHandle> {
        self.inner.bulkhead.as_ref()
    }

    /// The breaker's handle, when the stack has one breaker (not one per
    /// key, see [`keyed_circuit_breakers`](Self::keyed_circuit_breakers)).
    pub fn circuit_breaker(&self) -> Option<&CircuitBreakerHandle> {
        match &self.inner.breaker {
            BreakerHandles::Single(h) => Some(h),
            _ => None,
        }
    }

    /// The breakers, when the stack keeps one per key (per authority).
    pub fn keyed_circuit_breakers(&self) -> Option<&KeyedBreakers> {
        match &self.inner.breaker {
            BreakerHandles::Keyed(h) => Some(h),
            _ => None,
        }
    }

    /// Every piece's counters at this moment.
    pub fn snapshot(&self) -> ResilienceSnapshot {
        let parts = &self.inner;
        ResilienceSnapshot {
            metrics: parts.metrics.as_ref().map(MetricsHandle::snapshot),
            deadline: parts.deadline,
            attempt_timeout: parts.attempt_timeout,
            rate_limit: parts.rate_limit.as_ref().map(RateLimitHandle::snapshot),
            fallback: parts.fallback.as_ref().map(FallbackHandle::snapshot),
            retry: parts.retry.as_ref().map(RetryHandle::snapshot),
            hedge: parts.hedge.as_ref().map(HedgeHandle::snapshot),
            bulkhead: parts.bulkhead.as_ref().map(BulkheadHandle::snapshot),
            circuit_breaker: match &parts.breaker {
                BreakerHandles::Single(h) => Some(h.snapshot()),
                _ => None,
            },
            keyed_circuit_breakers: match &parts.breaker {
                BreakerHandles::Keyed(h) => Some(KeyedSnapshot {
                    keys: h.len(),
                    overflowed: h.overflowed(),
                    evicted: h.evicted(),
                }),
                _ => None,
            },
        }
    }
}

impl fmt::Debug for ResilienceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResilienceHandle")
            .field("deadline", &self.inner.deadline)
            .field("attempt_timeout", &self.inner.attempt_timeout)
            .field("rate_limit", &self.inner.rate_limit.is_some())
            .field("retry", &self.inner.retry.is_some())
            .field("hedge", &self.inner.hedge.is_some())
            .field("bulkhead", &self.inner.bulkhead.is_some())
            .field(
                "circuit_breaker",
                &match self.inner.breaker {
                    BreakerHandles::Off => "off",
                    BreakerHandles::Single(_) => "single",
                    BreakerHandles::Keyed(_) => "keyed",
                },
            )
            .finish()
    }
}

/// Prints [`snapshot`](Self::snapshot): one line per piece.
impl fmt::Display for ResilienceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.snapshot(), f)
    }
}

/// The handle adds nothing to a service: it is a layer only so that the
/// pair `(layer, handle)` that `build()` returns is a layer too.
impl<S> Layer<S> for ResilienceHandle {
    type Service = S;

    fn layer(&self, inner: S) -> S {
        inner
    }
}

/// The counters of every piece of a stack at one moment; `None` for a
/// piece that is off. `Display` prints one line per piece.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ResilienceSnapshot {
    /// The metrics piece's counters and call-duration histogram, when the
    /// stack has one ([`ResilienceBuilder::metrics`](super::ResilienceBuilder::metrics)).
    pub metrics: Option<MetricsSnapshot>,
    /// The deadline of each whole call.
    pub deadline: Option<Duration>,
    /// The timeout of each attempt.
    pub attempt_timeout: Option<Duration>,
    /// The rate limit's counters, when the stack has one.
    pub rate_limit: Option<RateLimitSnapshot>,
    /// The fallback's counters, when the stack has one.
    pub fallback: Option<FallbackSnapshot>,
    /// The retry layer's counters.
    pub retry: Option<RetrySnapshot>,
    /// The hedge layer's counters, when the stack hedges.
    pub hedge: Option<HedgeSnapshot>,
    /// The bulkhead's counters.
    pub bulkhead: Option<BulkheadSnapshot>,
    /// The breaker's counters, when the stack has one breaker.
    pub circuit_breaker: Option<CircuitBreakerSnapshot>,
    /// The keyed breakers' totals, when the stack keeps one per key.
    pub keyed_circuit_breakers: Option<KeyedSnapshot>,
}

/// The totals of a stack's keyed breakers.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyedSnapshot {
    /// Keys with a breaker of their own.
    pub keys: usize,
    /// Calls that went through the shared overflow breaker because the
    /// key table was full.
    pub overflowed: u64,
    /// Idle breakers evicted.
    pub evicted: u64,
}

impl fmt::Display for ResilienceSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let off = |f: &mut fmt::Formatter<'_>, name: &str| writeln!(f, "{name:<9} off");
        if let Some(fb) = &self.fallback {
            writeln!(f, "{:<9} {fb}", "fallback")?;
        }
        if let Some(m) = &self.metrics {
            writeln!(f, "{:<9} {m}", "metrics")?;
        }
        match self.deadline {
            Some(d) => writeln!(f, "{:<9} {d:?} per call", "deadline")?,
            None => off(f, "deadline")?,
        }
        if let Some(l) = &self.rate_limit {
            writeln!(f, "{:<9} {l}", "limit")?;
        }
        match (&self.retry, &self.hedge) {
            (Some(r), _) => writeln!(f, "{:<9} {r}", "retry")?,
            (None, Some(h)) => writeln!(f, "{:<9} {h}", "hedge")?,
            (None, None) => off(f, "retry")?,
        }
        match &self.bulkhead {
            Some(b) => writeln!(f, "{:<9} {b}", "bulkhead")?,
            None => off(f, "bulkhead")?,
        }
        match (&self.circuit_breaker, &self.keyed_circuit_breakers) {
            (Some(b), _) => writeln!(f, "{:<9} {b}", "breaker")?,
            (None, Some(k)) => writeln!(
                f,
                "{:<9} one per key: {} keys, {} overflowed, {} evicted",
                "breaker", k.keys, k.overflowed, k.evicted
            )?,
            (None, None) => off(f, "breaker")?,
        }
        match self.attempt_timeout {
            Some(d) => write!(f, "{:<9} {d:?} per attempt", "timeout"),
            None => write!(f, "{:<9} off", "timeout"),
        }
    }
}

/// A stack's breakers kept one per key: a view of the keyed breaker's
/// handle whatever its key type.
#[derive(Clone)]
pub struct KeyedBreakers {
    view: Arc<dyn KeyedView>,
}

trait KeyedView: Send + Sync {
    fn len(&self) -> usize;
    fn overflowed(&self) -> u64;
    fn evicted(&self) -> u64;
    fn overflow(&self) -> CircuitBreakerHandle;
    fn get(&self, key: &dyn Any) -> Option<CircuitBreakerHandle>;
}

impl<K, F, C> KeyedView for KeyedCircuitBreakerHandle<K, F, C>
where
    K: std::hash::Hash + Eq + 'static,
    C: Clone,
    KeyedCircuitBreakerHandle<K, F, C>: Send + Sync,
{
    fn len(&self) -> usize {
        KeyedCircuitBreakerHandle::len(self)
    }
    fn overflowed(&self) -> u64 {
        KeyedCircuitBreakerHandle::overflowed(self)
    }
    fn evicted(&self) -> u64 {
        KeyedCircuitBreakerHandle::evicted(self)
    }
    fn overflow(&self) -> CircuitBreakerHandle {
        KeyedCircuitBreakerHandle::overflow(self)
    }
    fn get(&self, key: &dyn Any) -> Option<CircuitBreakerHandle> {
        KeyedCircuitBreakerHandle::get(self, key.downcast_ref::<K>()?)
    }
}

impl KeyedBreakers {
    pub(crate) fn new<K, F, C>(handle: KeyedCircuitBreakerHandle<K, F, C>) -> Self
    where
        K: std::hash::Hash + Eq + 'static,
        C: Clone,
        KeyedCircuitBreakerHandle<K, F, C>: Send + Sync + 'static,
    {
        Self {
            view: Arc::new(handle),
        }
    }

    /// Keys with a breaker of their own.
    pub fn len(&self) -> usize {
        self.view.len()
    }

    /// `true` when no key has a breaker yet.
    pub fn is_empty(&self) -> bool {
        self.view.len() == 0
    }

    /// Calls that went through the overflow breaker (the key table was full).
    pub fn overflowed(&self) -> u64 {
        self.view.overflowed()
    }

    /// Idle breakers evicted.
    pub fn evicted(&self) -> u64 {
        self.view.evicted()
    }

    /// The breaker shared by the keys that found the table full.
    pub fn overflow(&self) -> CircuitBreakerHandle {
        self.view.overflow()
    }

    /// The breaker of `key` (for a stack keyed per authority, a
    /// `circuit_breaker::keys::AuthorityKey`), if it has one;
    /// `None` also for a key of another type.
    pub fn get<K: Any>(&self, key: &K) -> Option<CircuitBreakerHandle> {
        self.view.get(key)
    }
}

impl fmt::Debug for KeyedBreakers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBreakers")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}
