//! Metrics: the [`MetricsLayer`], the latency [`Histogram`], the counting
//! every layer shares, and the exporters — Prometheus text and (feature
//! `metrics`) the `metrics` facade.
//!
//! [`MetricsLayer`] counts calls by outcome and by which of this crate's
//! layers ended them, keeps an in-flight gauge, and times every call into a
//! [`Histogram`]; each other layer keeps its own counters behind its handle
//! (e.g. [`CircuitBreakerSnapshot`](crate::circuit_breaker::CircuitBreakerSnapshot)).
//!
//! # Exporters
//!
//! Every handle — [`MetricsHandle`], [`CircuitBreakerHandle`],
//! [`RetryHandle`], [`BulkheadHandle`], `IdempotencyHandle` (feature
//! `http`), [`FaultHandle`](crate::chaos::FaultHandle), [`ResilienceHandle`]
//! (every piece of the preset, its metrics piece included) — and every
//! snapshot implements
//! [`Collect`]: it writes its current values as [`Samples`] of the families
//! below. Register the handles in a [`Registry`] and either
//!
//! * serve [`Registry::render_prometheus`] from your scrape endpoint
//!   (text format 0.0.4, `Content-Type` [`PROMETHEUS_CONTENT_TYPE`]; no
//!   dependency), or
//! * with feature `metrics`, call `Registry::publish` (or spawn
//!   `Registry::publish_every(period)`) to push the same samples to the
//!   `metrics` facade's installed recorder, under the OpenTelemetry-style
//!   names: counters as totals (`Counter::absolute`), gauges set, and each
//!   histogram given the durations recorded since the last publish (at
//!   their bucket midpoints, within 3.125 %). Every metric is described
//!   (unit, help) once, on the first publish.
//!
//! Both read the snapshots the layers keep anyway: nothing is added on the
//! call path, and the counts are exact whenever they are read. The facade's
//! per-event cost (a key lookup in the recorder for every call) stays off
//! the hot path; the price is that a facade recorder sees values only as
//! often as you publish. For any other sink, read [`Registry::samples`]:
//! each [`Sample`] has its [`Family`], labels and [`Value`].
//!
//! ```
//! use std::time::Duration;
//! use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
//! use steadfast::metrics::{MetricsLayer, Registry};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let breaker = CircuitBreakerLayer::new(
//!     CircuitBreakerConfig::builder()
//!         .name("inventory")
//!         .consecutive_failures(2)
//!         .open_duration(Duration::from_secs(30))
//!         .build()?,
//! );
//! let (metrics, calls) = MetricsLayer::new("inventory");
//! let registry = Registry::new();
//! registry.register(calls).register(breaker.handle());
//!
//! // Metrics outside the breaker, so that it sees the breaker's rejections.
//! let svc = metrics.layer(breaker.layer(service_fn(|n: u32| async move {
//!     if n == 0 { Ok(n) } else { Err("unavailable") }
//! })));
//! for n in [0, 1, 1, 1] {
//!     let _ = svc.clone().oneshot(n).await; // ok, failed, failed, rejected
//! }
//!
//! let text = registry.render_prometheus();
//! println!("{text}");
//! assert!(text.contains(r#"resilience_calls_total{layer="metrics",name="inventory",outcome="failure"} 2"#));
//! assert!(text.contains(r#"resilience_events_total{layer="circuit_breaker",name="inventory",event="rejected"} 1"#));
//! assert!(text.contains(r#"resilience_circuit_state{name="inventory",state="open"} 1"#));
//! assert!(text.contains(r#"resilience_call_duration_seconds_count{name="inventory"} 4"#));
//! # Ok(())
//! # }
//! ```
//!
//! # Metric families
//!
//! One table for both exporters (the Prometheus name is the OpenTelemetry
//! name with `_` for `.`, `_seconds` for a unit of seconds, and `_total` on
//! counters). Counters count since the layer was made. `name` is the
//! instance's name (`""` when it has none); `layer` one of `metrics`,
//! `circuit_breaker`, `retry`, `hedge`, `bulkhead`, `adaptive`, `rate_limit`, `fallback`, `idempotency`, `chaos`; `outcome` one of
//! `success`, `failure`, `ignored`, `cancelled`; `state` one of `closed`,
//! `open`, `half_open`, `forced_open`, `disabled`. Histograms' `le` bounds
//! are 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
//! 2.5, 5, 10, 30, 60 seconds and `+Inf`. Series with the same labels (two
//! handles with one name) are added up; for the rates the highest is kept.
//!
//! | OpenTelemetry name | Prometheus name | type | unit | labels | what |
//! |---|---|---|---|---|---|
//! | `resilience.calls` | `resilience_calls_total` | counter | `{call}` | `layer`, `name`, `outcome` | Finished calls by outcome: success, failure, ignored (neither), cancelled (dropped before the result). |
//! | `resilience.events` | `resilience_events_total` | counter | `{event}` | `layer`, `name`, `event` | What the layers did: rejections, retries and give-ups by reason, transitions, sheds. |
//! | `resilience.retry.attempts` | `resilience_retry_attempts_total` | counter | `{attempt}` | `name` | Attempts the retry layer sent: first attempts and retries. |
//! | `resilience.in_flight` | `resilience_in_flight` | gauge | `{call}` | `layer`, `name` | Calls started and not yet finished (metrics) or holding a slot (bulkhead). |
//! | `resilience.bulkhead.waiting` | `resilience_bulkhead_waiting` | gauge | `{call}` | `name` | Calls waiting in the bulkhead's queue for a slot. |
//! | `resilience.bulkhead.limit` | `resilience_bulkhead_limit` | gauge | `{call}` | `name` | The bulkhead's limit on calls in flight. |
//! | `resilience.circuit.state` | `resilience_circuit_state` | gauge | `1` | `name`, `state` | 1 for the breaker's current state, 0 for the others. |
//! | `resilience.circuit.failure_rate` | `resilience_circuit_failure_rate` | gauge | `1` | `name` | Failures over calls in the breaker's current window, 0 to 1; absent while the window is empty. |
//! | `resilience.circuit.slow_call_rate` | `resilience_circuit_slow_call_rate` | gauge | `1` | `name` | Slow calls over calls in the breaker's current window, 0 to 1; absent while the window is empty. |
//! | `resilience.circuit.keys` | `resilience_circuit_keys` | gauge | `{breaker}` | `name` | Keys with a breaker of their own, for breakers kept one per key. |
//! | `resilience.retry.budget.available` | `resilience_retry_budget_available` | gauge | `{retry}` | `name` | Retries the retry budget would allow now (for a hedge layer, hedges). |
//! | `resilience.rate_limit.available` | `resilience_rate_limit_available` | gauge | `{call}` | `name` | Calls the rate limiter would admit at once now. |
//! | `resilience.rate_limit.waiting` | `resilience_rate_limit_waiting` | gauge | `{call}` | `name` | Calls waiting in the rate limiter's queue for their turn. |
//! | `resilience.rate_limit.keys` | `resilience_rate_limit_keys` | gauge | `{key}` | `name` | Keys with a limit of their own, for rate limiters kept one per key. |
//! | `resilience.hedge.delay` | `resilience_hedge_delay_seconds` | gauge | `s` | `name` | The hedge layer's delay in force: the fixed delay, or the latest percentile estimate. |
//! | `resilience.adaptive.limit` | `resilience_adaptive_limit` | gauge | `{call}` | `name` | The limit an adaptive limit last gave its bulkhead. |
//! | `resilience.adaptive.rtt` | `resilience_adaptive_rtt_seconds` | gauge | `s` | `name`, `window` | An adaptive limit's round-trip estimates: short (recent average) and long (windowed minimum). |
//! | `resilience.call.duration` | `resilience_call_duration_seconds` | histogram | `s` | `name` | How long finished calls took through the metrics layer, whatever the outcome. |
//! | `resilience.attempt.duration` | `resilience_attempt_duration_seconds` | histogram | `s` | `name` | How long each attempt of the retry layer took. |
//!
//! `resilience.attempt.duration` has samples when the retry layer times
//! its attempts ([`RetryConfigBuilder::attempt_durations`](crate::retry::RetryConfigBuilder::attempt_durations),
//! on in the preset with [`metrics`](crate::stack::ResilienceBuilder::metrics)).
//!
//! # Events
//!
//! The values of `event` in `resilience.events`, by `layer`:
//!
//! | layer | events |
//! |---|---|
//! | `metrics` | `rejected_circuit_open`, `rejected_bulkhead_full`, `rejected_rate_limited`, `deadline_exceeded`, `timed_out` (calls this crate's layers ended, as the metrics layer saw them) |
//! | `circuit_breaker` | `rejected`, `slow_call`, `late`, `opened`, `half_opened`, `closed`; for breakers kept per key: `overflowed`, `evicted` |
//! | `retry` | `retry`, `budget_refused`, `skipped_unsafe`, `skipped_unreplayable`, `exhausted`, `deadline_reached`, `server_hint` |
//! | `hedge` | `call`, `hedge`, `hedge_won`, `budget_refused`, `deadline_reached`, `skipped_unsafe`, `skipped_unreplayable` |
//! | `bulkhead` | `admitted`, `waited`, `rejected_queue_full`, `rejected_wait_timed_out`, `cancelled_waiting` |
//! | `adaptive` | `sample`, `skipped`, `drop` (finished calls the estimate took, successes left out while another call updated it, drops) |
//! | `fallback` | `served`, `failed`, `declined` (what the fallback did with the failures it ran for) |
//! | `rate_limit` | `waited`, `rejected`, `rejected_after_waiting`, `cancelled_waiting`; for limiters kept per key: `rejected`, `overflowed`, `evicted` |
//! | `idempotency` | `claim`, `replay`, `conflict`, `mismatch`, `store_error`, `shed`, `detached`, `detached_timed_out`, `store_write_failure`, `lease_renewal`, `lease_lost` |
//! | `chaos` | `passed`, `delayed`, `injected_error`, `injected_response`, `hang`, `refused`, `reset` (what a [`FaultLayer`](crate::chaos::FaultLayer) did to the calls it saw) |
//!
//! # How counting works
//!
//! Each layer keeps its counters in a block of cache-line-sized stripes. A
//! thread that counts takes a *stripe slot* of its own for as long as it
//! lives: slot `i` owns stripe `i` of every block, and since no other thread
//! ever writes an owned stripe, its counters are bumped with a plain load
//! and store — no locked instruction, no cache line shared with another
//! core. Threads beyond the number of owned slots (twice the cores) share
//! stripe 0, bumped with atomic read-modify-writes. A slot is handed back
//! when its thread exits, so a pool that replaces its threads reuses them.
//! Reading a value sums the stripes; readers are rare (snapshots,
//! exporters), writers are every call.
//!
//! [`CircuitBreakerHandle`]: crate::circuit_breaker::CircuitBreakerHandle
//! [`RetryHandle`]: crate::retry::RetryHandle
//! [`BulkheadHandle`]: crate::bulkhead::BulkheadHandle
//! [`ResilienceHandle`]: crate::ResilienceHandle

mod collect;
pub(crate) mod export;
#[cfg(feature = "metrics")]
mod facade;
mod future;
mod handle;
mod histogram;
mod layer;
mod prometheus;
mod registry;
mod service;
mod span;

pub use self::export::{families, Collect, Family, Kind, Sample, Samples, Value};
pub use self::future::ResponseFuture;
pub use self::handle::{MetricsHandle, MetricsSnapshot};
pub use self::histogram::{Histogram, HistogramSnapshot};
pub use self::layer::MetricsLayer;
pub use self::prometheus::{render_prometheus, PROMETHEUS_CONTENT_TYPE};
pub use self::registry::Registry;
pub use self::service::Metrics;
pub use self::span::{CallSpan, CallSpanLayer};

pub(crate) mod listener;

use std::fmt;
use std::ops::Deref;
use std::sync::OnceLock;

use crate::sync::AtomicU64;
use std::sync::atomic::Ordering;

/// Pads and aligns a value to 128 bytes, two cache lines, so that the
/// adjacent-line prefetcher does not couple neighbouring stripes.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: fmt::Debug> fmt::Debug for CachePadded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How many stripe slots threads can own: twice the available parallelism
/// (room for a runtime's workers and a few other threads), 2 to 32.
pub(crate) fn owned_slots() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (2 * cores).clamp(2, 32)
    })
}

/// Stripes for data that every thread updates atomically and that is read
/// whole on the failure path (the time window's buckets): one per core,
/// rounded up to a power of two, at most 16.
pub(crate) fn shared_stripe_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .next_power_of_two()
            .clamp(1, 16)
    })
}

/// The number of stripes in a block: one per owned slot, plus the shared one.
pub(crate) fn stripe_count() -> usize {
    owned_slots() + 1
}

#[cfg(not(steadfast_loom))]
mod slot {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    use std::sync::Mutex;

    const UNSET: usize = usize::MAX;

    static NEXT: AtomicUsize = AtomicUsize::new(1);
    static FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());

    thread_local! {
        // Read on every call: a `const` cell, no lazy-initialisation check.
        static SLOT: Cell<usize> = const { Cell::new(UNSET) };
        // Only there to hand the slot back when the thread exits.
        static RETURN: Returner = const { Returner };
    }

    struct Returner;

    impl Drop for Returner {
        fn drop(&mut self) {
            let slot = SLOT.try_with(|s| s.replace(0)).unwrap_or(0);
            if slot != 0 && slot != UNSET {
                // The mutex orders this thread's last plain stores before the
                // next owner's first loads.
                if let Ok(mut free) = FREE.lock() {
                    free.push(slot);
                }
            }
        }
    }

    #[cold]
    fn take() -> usize {
        let recycled = FREE.lock().ok().and_then(|mut free| free.pop());
        let slot = recycled.unwrap_or_else(|| {
            // Past the owned slots a thread shares stripe 0; `NEXT` stops
            // growing there, so it cannot wrap.
            let limit = super::owned_slots();
            let mut next = NEXT.load(Relaxed);
            while next <= limit {
                match NEXT.compare_exchange_weak(next, next + 1, Relaxed, Relaxed) {
                    Ok(_) => return next,
                    Err(actual) => next = actual,
                }
            }
            0
        });
        // Register the hand-back; a thread already being torn down cannot,
        // and shares stripe 0 instead.
        if slot != 0 && RETURN.try_with(|_| ()).is_err() {
            if let Ok(mut free) = FREE.lock() {
                free.push(slot);
            }
            return 0;
        }
        slot
    }

    #[inline]
    pub(super) fn current() -> usize {
        SLOT.try_with(|s| {
            let v = s.get();
            if v != UNSET {
                return v;
            }
            let v = take();
            s.set(v);
            v
        })
        .unwrap_or(0)
    }
}

/// The calling thread's stripe: `1..=owned_slots()` when it owns one, 0 (the
/// shared stripe) otherwise.
#[cfg(not(steadfast_loom))]
#[inline]
pub(crate) fn thread_stripe() -> usize {
    slot::current()
}

/// Under loom every thread shares stripe 0 (atomic updates only).
#[cfg(steadfast_loom)]
pub(crate) fn thread_stripe() -> usize {
    0
}

/// A block of stripes of `T` (a struct of atomics), one per stripe slot.
pub(crate) struct Striped<T> {
    stripes: Box<[CachePadded<T>]>,
}

impl<T: Default> Striped<T> {
    pub(crate) fn new() -> Self {
        Self::from_fn(T::default)
    }
}

impl<T> Striped<T> {
    /// One stripe per slot, each made by `make`.
    pub(crate) fn from_fn(mut make: impl FnMut() -> T) -> Self {
        Self {
            stripes: (0..stripe_count()).map(|_| CachePadded(make())).collect(),
        }
    }

    /// `n` stripes (at least one), each made by `make`, for data that takes
    /// atomic updates from any thread and is read whole: fewer stripes make
    /// reading cheaper. Index them with [`get_wrapped`](Self::get_wrapped).
    pub(crate) fn with_len(n: usize, mut make: impl FnMut() -> T) -> Self {
        Self {
            stripes: (0..n.max(1)).map(|_| CachePadded(make())).collect(),
        }
    }

    /// The stripe at `index` modulo the number of stripes.
    #[inline]
    pub(crate) fn get_wrapped(&self, index: usize) -> &T {
        &self.stripes[index % self.stripes.len()]
    }

    /// The stripe at `index` (from [`thread_stripe`]).
    #[inline]
    pub(crate) fn get(&self, index: usize) -> &T {
        match self.stripes.get(index) {
            Some(s) => s,
            None => &self.stripes[0],
        }
    }

    /// Every stripe, for sums.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.stripes.iter().map(|s| &s.0)
    }
}

impl<T> fmt::Debug for Striped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Striped")
            .field("stripes", &self.stripes.len())
            .finish()
    }
}

/// One monotonically increasing counter inside a stripe.
#[derive(Debug, Default)]
pub(crate) struct Count(AtomicU64);

impl Count {
    /// Adds one. `stripe` must be the calling thread's [`thread_stripe`],
    /// the stripe this counter lives in: an owned stripe has one writer, so
    /// a plain load and store is exact; stripe 0 is shared.
    #[inline]
    pub(crate) fn incr(&self, stripe: usize) {
        if stripe == 0 {
            self.0.fetch_add(1, Ordering::Relaxed);
        } else {
            self.0.store(
                self.0.load(Ordering::Relaxed).wrapping_add(1),
                Ordering::Relaxed,
            );
        }
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Sums one field over every stripe.
pub(crate) fn sum<T>(block: &Striped<T>, field: impl Fn(&T) -> &Count) -> u64 {
    block
        .iter()
        .fold(0u64, |acc, s| acc.wrapping_add(field(s).get()))
}

#[cfg(all(test, not(steadfast_loom)))]
mod tests {
    use super::*;

    /// These tests count slots: run them one at a time.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[test]
    fn live_threads_never_share_an_owned_stripe() {
        let _serial = serial();
        let main = thread_stripe();
        let barrier = std::sync::Barrier::new(4);
        let seen: Vec<usize> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let x = thread_stripe();
                        // Stay alive until every thread has its slot.
                        barrier.wait();
                        x
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut owned: Vec<usize> = seen.iter().copied().filter(|&x| x != 0).collect();
        owned.push(main);
        owned.retain(|&x| x != 0);
        let before = owned.len();
        owned.sort_unstable();
        owned.dedup();
        assert_eq!(
            owned.len(),
            before,
            "two live threads own one stripe: {seen:?}, main {main}"
        );
        assert!(seen.iter().all(|&x| x <= owned_slots()));
    }

    #[test]
    fn slots_are_handed_back_when_threads_exit() {
        let _serial = serial();
        // More short-lived threads than there are slots: recycling keeps
        // handing out owned stripes.
        let owned = (0..4 * owned_slots())
            .filter(|_| std::thread::spawn(thread_stripe).join().unwrap() != 0)
            .count();
        assert!(owned > owned_slots(), "only {owned} owned slots handed out");
    }

    #[test]
    fn counts_are_exact_across_threads() {
        let _serial = serial();
        let block: Striped<Count> = Striped::new();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        let stripe = thread_stripe();
                        block.get(stripe).incr(stripe);
                    }
                });
            }
        });
        assert_eq!(sum(&block, |c| c), 80_000);
    }
}
