//! The breaker's state machine, shared by every service and clone of a layer.
//!
//! Everything the hot path touches is an atomic:
//!
//! * one state word packs `[generation: 41 | probe successes: 10 |
//!   probes in flight: 10 | state: 3]`, so half-open admission, release and
//!   success are single compare-and-swaps, and a result that carries an older
//!   generation is recognised as stale;
//! * the consecutive-failure count is written only by failures (a success
//!   resets it only when it is not already zero);
//! * the counters live on a stripe the calling thread owns (plain loads and
//!   stores), the time window's buckets on a stripe per core.
//!
//! A *compact* core ([`Core::new_compact`], one per key of a keyed breaker)
//! has one stripe of counters, bumped with atomic adds, and one set of
//! buckets: its size does not depend on the number of cores, and a key sees
//! only a share of the traffic, so contention on it is rarer.
//!
//! Transitions (rare) take a mutex, re-check the word they decided on, do
//! their side work (clear the window, set the open deadline), publish the new
//! word, release the lock and only then tell observers.
//!
//! Time is passed in as nanoseconds since the breaker was made, through a
//! closure, so the closed path reads the clock only when a rule needs it.

use std::fmt;
use std::num::NonZeroU64;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::config::{CircuitBreakerConfig, Window as WindowConfig};
use super::window::{CountWindow, TimeWindow, Totals, Window};
use crate::classify::Outcome;
use crate::metrics::listener::Listeners;
use crate::metrics::{shared_stripe_count, sum, thread_stripe, CachePadded, Count, Striped};
use crate::sync::{lock, AtomicBool, AtomicU32, AtomicU64, Mutex};

pub use crate::rejection::CircuitState;

/// The state a word of the breaker's state bits stands for.
const fn state_from_bits(bits: u64) -> CircuitState {
    match bits {
        CLOSED => CircuitState::Closed,
        OPEN => CircuitState::Open,
        HALF_OPEN => CircuitState::HalfOpen,
        FORCED_OPEN => CircuitState::ForcedOpen,
        _ => CircuitState::Disabled,
    }
}

/// Why the breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum TransitionReason {
    /// The failure rate over the window reached the threshold (in percent).
    FailureRate(f64),
    /// The slow-call rate over the window reached the threshold (in percent).
    SlowCallRate(f64),
    /// This many failures in a row.
    ConsecutiveFailures(u32),
    /// The open duration passed and a call arrived: it becomes the first probe.
    OpenElapsed,
    /// Enough probes succeeded.
    ProbesSucceeded,
    /// A probe failed (or was slow, when the slow-call rule is on).
    ProbeFailed,
    /// No probe finished within the probe timeout.
    ProbeTimeout,
    /// [`force_open`](super::CircuitBreakerHandle::force_open),
    /// [`disable`](super::CircuitBreakerHandle::disable) or
    /// [`reset`](super::CircuitBreakerHandle::reset).
    Manual,
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransitionReason::FailureRate(p) => write!(f, "failure rate {p:.1}%"),
            TransitionReason::SlowCallRate(p) => write!(f, "slow-call rate {p:.1}%"),
            TransitionReason::ConsecutiveFailures(n) => write!(f, "{n} consecutive failures"),
            TransitionReason::OpenElapsed => f.write_str("open duration elapsed"),
            TransitionReason::ProbesSucceeded => f.write_str("probes succeeded"),
            TransitionReason::ProbeFailed => f.write_str("probe failed"),
            TransitionReason::ProbeTimeout => f.write_str("probe timed out"),
            TransitionReason::Manual => f.write_str("manual"),
        }
    }
}

/// A state change, as given to the [`on_transition`] callback.
///
/// [`on_transition`]: super::CircuitBreakerBuilder::on_transition
#[derive(Debug, Clone)]
pub struct Transition {
    name: Option<Arc<str>>,
    from: CircuitState,
    to: CircuitState,
    reason: TransitionReason,
    open_for: Option<Duration>,
}

impl Transition {
    /// The breaker's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// The state before.
    pub fn from(&self) -> CircuitState {
        self.from
    }
    /// The state after.
    pub fn to(&self) -> CircuitState {
        self.to
    }
    /// Why.
    pub fn reason(&self) -> TransitionReason {
        self.reason
    }
    /// For a transition to [`CircuitState::Open`]: how long it stays open
    /// (jitter included, so at most the configured duration of its level; see
    /// the [module docs](super#open-duration)).
    pub fn open_for(&self) -> Option<Duration> {
        self.open_for
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.name {
            write!(f, "{name}: ")?;
        }
        write!(f, "{} -> {} ({})", self.from, self.to, self.reason)?;
        if let Some(d) = self.open_for {
            write!(f, " for {d:.2?}")?;
        }
        Ok(())
    }
}

/// A call the breaker rejected, as given to the [`on_rejection`] listeners.
///
/// [`on_rejection`]: super::CircuitBreakerBuilder::on_rejection
#[derive(Debug, Clone)]
pub struct Rejected {
    name: Option<Arc<str>>,
    state: CircuitState,
    retry_after: Option<Duration>,
}

impl Rejected {
    /// The breaker's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// The state the breaker rejected the call in: open, forced open, or
    /// half-open with every probe slot taken.
    pub fn state(&self) -> CircuitState {
        self.state
    }
    /// While open: the time until the next probe may be admitted.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

// --- the state word ---

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;
const FORCED_OPEN: u64 = 3;
const DISABLED: u64 = 4;

const STATE_MASK: u64 = 0b111;
const INFLIGHT_SHIFT: u32 = 3;
const SUCC_SHIFT: u32 = 13;
const GEN_SHIFT: u32 = 23;
const FIELD: u64 = 0x3ff;
const INFLIGHT_ONE: u64 = 1 << INFLIGHT_SHIFT;
const SUCC_ONE: u64 = 1 << SUCC_SHIFT;

#[inline]
const fn state_of(w: u64) -> u64 {
    w & STATE_MASK
}
#[inline]
const fn gen_of(w: u64) -> u64 {
    w >> GEN_SHIFT
}
#[inline]
const fn inflight_of(w: u64) -> u64 {
    (w >> INFLIGHT_SHIFT) & FIELD
}
#[inline]
const fn succ_of(w: u64) -> u64 {
    (w >> SUCC_SHIFT) & FIELD
}
#[inline]
const fn pack(state: u64, gen: u64, inflight: u64) -> u64 {
    (gen << GEN_SHIFT) | (inflight << INFLIGHT_SHIFT) | state
}

// --- admission ---

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TicketKind {
    Closed = 1,
    Probe = 2,
    Disabled = 3,
}

const KIND_MASK: u64 = 0b11;
const TICKET_STRIPE_SHIFT: u32 = 2;

/// What an admitted call carries until it finishes: 16 bytes, and never
/// zero in its first word, so an `Option<Ticket>` is 16 bytes too (the
/// response future carries one; every byte of it is copied when the future
/// is moved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    /// `[generation: 41 | stripe: 21 | kind: 2]`, the generation where the
    /// state word has it. The stripe is the admitting thread's, where the
    /// call is recorded in a time window (its buckets take atomic updates
    /// from any thread). The kind is never 0.
    bits: NonZeroU64,
    /// Start time in nanoseconds, when the slow-call rule needs it.
    pub(crate) start: u64,
}

impl Ticket {
    #[inline]
    fn new(kind: TicketKind, gen: u64, start: u64, stripe: usize) -> Self {
        debug_assert!((stripe as u64) < 1 << (GEN_SHIFT - TICKET_STRIPE_SHIFT));
        let bits = (gen << GEN_SHIFT) | ((stripe as u64) << TICKET_STRIPE_SHIFT) | kind as u64;
        Self {
            // The kind is 1 to 3.
            bits: NonZeroU64::new(bits).unwrap_or(NonZeroU64::MIN),
            start,
        }
    }

    #[inline]
    pub(crate) fn kind(self) -> TicketKind {
        match self.bits.get() & KIND_MASK {
            1 => TicketKind::Closed,
            2 => TicketKind::Probe,
            _ => TicketKind::Disabled,
        }
    }

    #[inline]
    pub(crate) fn gen(self) -> u64 {
        gen_of(self.bits.get())
    }

    #[inline]
    pub(crate) fn stripe(self) -> usize {
        ((self.bits.get() & ((1 << GEN_SHIFT) - 1)) >> TICKET_STRIPE_SHIFT) as usize
    }
}

/// Why a call was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) state: CircuitState,
    /// Nanoseconds until the next probe may be admitted, when known.
    pub(crate) retry_after: Option<u64>,
    /// Nanoseconds until asking again may give another answer without any
    /// state change being announced: the open duration's end, or a full
    /// half-open phase's probe timeout. For services that wait.
    pub(crate) recheck_in: Option<u64>,
}

#[derive(Debug, Default)]
struct Counters {
    successes: Count,
    failures: Count,
    ignored: Count,
    slow: Count,
    rejected: Count,
    late: Count,
    cancelled: Count,
}

#[derive(Debug)]
struct Params {
    /// Percent, as configured.
    failure_rate: Option<f64>,
    /// Percent, as configured.
    slow_rate: Option<f64>,
    slow_nanos: Option<u64>,
    consecutive: Option<u32>,
    minimum_calls: u64,
    /// Nanoseconds.
    open_base: f64,
    open_multiplier: f64,
    /// Nanoseconds.
    open_max: f64,
    open_jitter: f64,
    /// Nanoseconds: a trip from closed this soon after closing is a flap.
    flap_window: u64,
    half_open_max: u64,
    success_threshold: u64,
    probe_timeout: u64,
}

#[derive(Debug)]
struct Slow {
    rng: SmallRng,
    /// Growth steps of the open duration: it is base × multiplier^level,
    /// capped. Grown by a trip from closed within the flap window of the
    /// last close, reset to 0 by a trip after it and by a manual transition;
    /// a failed probe keeps it.
    level: u32,
    /// When probes last closed the breaker (not a manual reset).
    closed_at: Option<u64>,
    open_since: Option<u64>,
    open_total: u64,
    /// When the last transition happened (0: the breaker's making).
    state_since: u64,
}

/// Snapshot numbers of the core; the public snapshot adds the name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CoreSnapshot {
    pub(crate) state: CircuitState,
    pub(crate) successes: u64,
    pub(crate) failures: u64,
    pub(crate) ignored: u64,
    pub(crate) slow: u64,
    pub(crate) rejected: u64,
    pub(crate) late: u64,
    pub(crate) cancelled: u64,
    pub(crate) opened: u64,
    pub(crate) half_opened: u64,
    pub(crate) closed: u64,
    pub(crate) window: Option<Totals>,
    pub(crate) consecutive_failures: u32,
    pub(crate) open_total: u64,
    pub(crate) in_state: u64,
    pub(crate) retry_after: Option<u64>,
    pub(crate) probes_in_flight: u32,
}

/// One circuit breaker.
pub(crate) struct Core {
    state: CachePadded<AtomicU64>,
    consecutive: CachePadded<AtomicU32>,
    /// The window holds failures recorded before it reached `minimum_calls`.
    pending: AtomicBool,
    open_until: AtomicU64,
    probe_deadline: AtomicU64,
    opened: AtomicU64,
    half_opened: AtomicU64,
    closed: AtomicU64,
    window: Option<Window>,
    counters: Striped<Counters>,
    slow: Mutex<Slow>,
    params: Params,
    name: Option<Arc<str>>,
    on_transition: Listeners<Transition>,
    on_rejection: Listeners<Rejected>,
    /// Wakes services that wait in `poll_ready` on every transition and
    /// every freed probe slot.
    pub(crate) notify: Arc<tokio::sync::Notify>,
    base: tokio::time::Instant,
    needs_start: bool,
    record_needs_clock: bool,
    /// One shared stripe of counters (see [`Core::new_compact`]).
    compact: bool,
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("name", &self.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Core {
    /// A breaker whose counters and time window are striped per core: for
    /// one breaker that takes all of a service's calls.
    pub(crate) fn new(cfg: &CircuitBreakerConfig) -> Self {
        Self::build(cfg, false)
    }

    /// A breaker with one stripe of counters (atomic adds) and one set of
    /// time-window buckets, whatever the number of cores: for the many
    /// breakers of a keyed layer, each of which sees a share of the calls.
    /// Every stripe index passed to it must be 0 (a node's `stripe`).
    pub(crate) fn new_compact(cfg: &CircuitBreakerConfig) -> Self {
        Self::build(cfg, true)
    }

    fn build(cfg: &CircuitBreakerConfig, compact: bool) -> Self {
        let window = if cfg.failure_rate.is_some() || cfg.slow_call_rate.is_some() {
            Some(match cfg.window {
                WindowConfig::Count(n) => Window::Count(CountWindow::new(n)),
                WindowConfig::Time { duration, buckets } => {
                    let stripes = if compact { 1 } else { shared_stripe_count() };
                    Window::Time(TimeWindow::new(
                        nanos(duration / buckets.max(1)),
                        buckets,
                        stripes,
                    ))
                }
            })
        } else {
            None
        };
        let seed = cfg.seed.unwrap_or_else(|| {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(0x5eed_u64)
        });
        let slow_nanos = cfg.slow_call_duration.map(nanos);
        let needs_clock = window.as_ref().is_some_and(Window::needs_clock);
        Self {
            state: CachePadded(AtomicU64::new(pack(CLOSED, 0, 0))),
            consecutive: CachePadded(AtomicU32::new(0)),
            pending: AtomicBool::new(false),
            open_until: AtomicU64::new(0),
            probe_deadline: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            half_opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            window,
            counters: if compact {
                Striped::with_len(1, Counters::default)
            } else {
                Striped::new()
            },
            slow: Mutex::new(Slow {
                rng: SmallRng::seed_from_u64(seed),
                level: 0,
                closed_at: None,
                open_since: None,
                open_total: 0,
                state_since: 0,
            }),
            params: Params {
                failure_rate: cfg.failure_rate,
                slow_rate: cfg.slow_call_rate,
                slow_nanos,
                consecutive: cfg.consecutive_failures,
                minimum_calls: u64::from(cfg.minimum_calls),
                open_base: cfg.open_duration.as_nanos() as f64,
                open_multiplier: cfg.open_duration_multiplier,
                open_max: cfg.max_open_duration.as_nanos() as f64,
                open_jitter: cfg.open_jitter,
                flap_window: nanos(cfg.flap_window),
                half_open_max: u64::from(cfg.half_open_max_calls),
                success_threshold: u64::from(cfg.success_threshold),
                probe_timeout: nanos(cfg.probe_timeout),
            },
            name: cfg.name.clone(),
            on_transition: cfg.on_transition.clone(),
            on_rejection: cfg.on_rejection.clone(),
            notify: Arc::new(tokio::sync::Notify::new()),
            base: tokio::time::Instant::now(),
            needs_start: slow_nanos.is_some(),
            record_needs_clock: needs_clock || slow_nanos.is_some(),
            compact,
        }
    }

    /// The stripe of the counters the calling thread bumps: its own, or the
    /// only one of a compact core.
    #[inline]
    fn counter_stripe(&self) -> usize {
        if self.compact {
            0
        } else {
            thread_stripe()
        }
    }

    /// Nanoseconds since the breaker was made, on tokio's clock.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        nanos(tokio::time::Instant::now().saturating_duration_since(self.base))
    }

    pub(crate) fn name(&self) -> Option<&Arc<str>> {
        self.name.as_ref()
    }

    pub(crate) fn state(&self) -> CircuitState {
        state_from_bits(state_of(self.state.load(Acquire)))
    }

    /// Admits a call or says why not. `now` is read only when needed.
    /// `stripe` must be the calling thread's
    /// [`thread_stripe`](crate::metrics::thread_stripe): a rejection is
    /// counted there.
    #[inline]
    pub(crate) fn try_acquire(
        &self,
        stripe: usize,
        now: impl Fn() -> u64,
    ) -> Result<Ticket, Rejection> {
        let w = self.state.load(Acquire);
        if state_of(w) == CLOSED {
            let start = if self.needs_start { now() } else { 0 };
            return Ok(Ticket::new(TicketKind::Closed, gen_of(w), start, stripe));
        }
        self.try_acquire_slow(stripe, w, true, &now)
    }

    /// Like [`try_acquire`](Self::try_acquire), for a service that waits in
    /// `poll_ready`: a refusal is not counted as a rejection.
    pub(crate) fn try_reserve(
        &self,
        stripe: usize,
        now: impl Fn() -> u64,
    ) -> Result<Ticket, Rejection> {
        let w = self.state.load(Acquire);
        self.try_acquire_slow(stripe, w, false, &now)
    }

    #[cold]
    fn try_acquire_slow(
        &self,
        stripe: usize,
        mut w: u64,
        count: bool,
        now: &dyn Fn() -> u64,
    ) -> Result<Ticket, Rejection> {
        loop {
            match state_of(w) {
                CLOSED | DISABLED => {
                    let start = if self.needs_start { now() } else { 0 };
                    let kind = if state_of(w) == CLOSED {
                        TicketKind::Closed
                    } else {
                        TicketKind::Disabled
                    };
                    return Ok(Ticket::new(kind, gen_of(w), start, stripe));
                }
                FORCED_OPEN => {
                    return Err(self.reject(stripe, count, CircuitState::ForcedOpen, None, None))
                }
                OPEN => {
                    let t = now();
                    let until = self.open_until.load(Acquire);
                    if t < until {
                        return Err(self.reject(
                            stripe,
                            count,
                            CircuitState::Open,
                            Some(until - t),
                            Some(until - t),
                        ));
                    }
                    if let Some(ticket) = self.open_to_half_open(stripe, w, t) {
                        return Ok(ticket);
                    }
                }
                _ => {
                    // HALF_OPEN
                    if inflight_of(w) < self.params.half_open_max {
                        if self
                            .state
                            .compare_exchange(w, w + INFLIGHT_ONE, AcqRel, Acquire)
                            .is_ok()
                        {
                            let t = now();
                            self.probe_deadline
                                .fetch_max(t.saturating_add(self.params.probe_timeout), AcqRel);
                            return Ok(Ticket::new(TicketKind::Probe, gen_of(w), t, stripe));
                        }
                    } else {
                        let t = now();
                        let deadline = self.probe_deadline.load(Acquire);
                        if t < deadline {
                            return Err(self.reject(
                                stripe,
                                count,
                                CircuitState::HalfOpen,
                                None,
                                Some(deadline - t),
                            ));
                        }
                        self.probe_timed_out(w, t);
                    }
                }
            }
            w = self.state.load(Acquire);
        }
    }

    fn reject(
        &self,
        stripe: usize,
        count: bool,
        state: CircuitState,
        retry_after: Option<u64>,
        recheck_in: Option<u64>,
    ) -> Rejection {
        if count {
            self.counters.get(stripe).rejected.incr(stripe);
            tracing::debug!(
                target: "steadfast::circuit_breaker",
                layer = "circuit_breaker",
                name = self.name.as_deref().unwrap_or(""),
                event = "rejected",
                state = state.as_str(),
                retry_after_ms = retry_after.map_or(0, |n| n / 1_000_000),
                "circuit breaker rejected a call"
            );
            if !self.on_rejection.is_empty() {
                let event = Rejected {
                    name: self.name.clone(),
                    state,
                    retry_after: retry_after.map(Duration::from_nanos),
                };
                self.on_rejection
                    .call("circuit_breaker", self.name.as_deref(), &event);
            }
        }
        Rejection {
            state,
            retry_after,
            recheck_in,
        }
    }

    /// Records the outcome of an admitted call.
    #[inline]
    pub(crate) fn complete(&self, ticket: Ticket, outcome: Outcome, now: impl Fn() -> u64) {
        let t = if self.record_needs_clock { now() } else { 0 };
        let slow = match self.params.slow_nanos {
            Some(limit) if outcome != Outcome::Ignored => t.saturating_sub(ticket.start) >= limit,
            _ => false,
        };
        // The completing thread's stripe: a future may finish on another
        // thread than the one that called.
        let stripe = self.counter_stripe();
        let c = self.counters.get(stripe);
        match outcome {
            Outcome::Success => c.successes.incr(stripe),
            Outcome::Failure => c.failures.incr(stripe),
            Outcome::Ignored => c.ignored.incr(stripe),
        }
        if slow {
            c.slow.incr(stripe);
        }
        match ticket.kind() {
            TicketKind::Closed => {
                self.complete_closed(ticket.stripe(), ticket.gen(), outcome, slow, t, &now)
            }
            TicketKind::Probe => self.complete_probe(ticket.gen(), outcome, slow, &now),
            TicketKind::Disabled => {
                let w = self.state.load(Acquire);
                if state_of(w) != DISABLED || gen_of(w) != ticket.gen() {
                    self.count_late();
                }
            }
        }
    }

    #[inline]
    fn complete_closed(
        &self,
        stripe: usize,
        gen: u64,
        outcome: Outcome,
        slow: bool,
        t: u64,
        now: &dyn Fn() -> u64,
    ) {
        let w = self.state.load(Acquire);
        if state_of(w) != CLOSED || gen_of(w) != gen {
            self.count_late();
            return;
        }
        let failure = match outcome {
            Outcome::Ignored => return,
            Outcome::Success => {
                if self.params.consecutive.is_some() && self.consecutive.load(Relaxed) != 0 {
                    self.consecutive.store(0, Relaxed);
                }
                false
            }
            Outcome::Failure => true,
        };
        if let Some(window) = &self.window {
            window.record(stripe, t, failure, slow);
        }
        if failure || slow {
            self.check_trip(gen, failure, t, now);
        } else if self.pending.load(Relaxed) {
            self.check_rates(gen, t, now);
        }
    }

    #[cold]
    fn check_trip(&self, gen: u64, failure: bool, t: u64, now: &dyn Fn() -> u64) {
        if failure {
            if let Some(limit) = self.params.consecutive {
                let run = self.consecutive.fetch_add(1, Relaxed).saturating_add(1);
                if run >= limit {
                    self.trip(gen, TransitionReason::ConsecutiveFailures(run), now);
                    return;
                }
            }
        }
        self.check_rates(gen, t, now);
    }

    /// Evaluates the rate rules over the window.
    ///
    /// They run when a failure or slow call is recorded (a success can only
    /// lower a rate), and on successes while `pending` says the window holds
    /// failures that were recorded before it reached `minimum_calls`.
    #[cold]
    fn check_rates(&self, gen: u64, t: u64, now: &dyn Fn() -> u64) {
        let p = &self.params;
        let Some(window) = &self.window else { return };
        let totals = window.totals(t);
        if totals.calls < p.minimum_calls {
            if (totals.failures > 0 || totals.slow > 0) && !self.pending.load(Relaxed) {
                self.pending.store(true, Relaxed);
            }
            return;
        }
        if self.pending.load(Relaxed) {
            self.pending.store(false, Relaxed);
        }
        // Percent as configured, compared without dividing, so that exactly
        // the threshold trips (0.28 * 25 would round above 7).
        let calls = totals.calls as f64;
        let percent = |n: u64| 100.0 * n as f64 / calls;
        if let Some(limit) = p.failure_rate {
            if 100.0 * totals.failures as f64 >= limit * calls {
                let reason = TransitionReason::FailureRate(percent(totals.failures));
                self.trip(gen, reason, now);
                return;
            }
        }
        if let Some(limit) = p.slow_rate {
            if 100.0 * totals.slow as f64 >= limit * calls {
                let reason = TransitionReason::SlowCallRate(percent(totals.slow));
                self.trip(gen, reason, now);
            }
        }
    }

    fn complete_probe(&self, gen: u64, outcome: Outcome, slow: bool, now: &dyn Fn() -> u64) {
        let outcome = if slow && self.params.slow_rate.is_some() {
            Outcome::Failure
        } else {
            outcome
        };
        match outcome {
            Outcome::Ignored => {
                if !self.release_probe(gen) {
                    self.count_late();
                }
            }
            Outcome::Failure => {
                let w = self.state.load(Acquire);
                if state_of(w) != HALF_OPEN || gen_of(w) != gen {
                    self.count_late();
                    return;
                }
                let t = now();
                let event = {
                    let mut slow = lock(&self.slow);
                    self.switch(&mut slow, t, OPEN, TransitionReason::ProbeFailed, |w| {
                        state_of(w) == HALF_OPEN && gen_of(w) == gen
                    })
                };
                self.emit_or_late(event);
            }
            Outcome::Success => loop {
                let w = self.state.load(Acquire);
                if state_of(w) != HALF_OPEN || gen_of(w) != gen {
                    self.count_late();
                    return;
                }
                if succ_of(w) + 1 >= self.params.success_threshold {
                    let t = now();
                    let event = {
                        let mut slow = lock(&self.slow);
                        self.switch(
                            &mut slow,
                            t,
                            CLOSED,
                            TransitionReason::ProbesSucceeded,
                            |w| state_of(w) == HALF_OPEN && gen_of(w) == gen,
                        )
                    };
                    self.emit_or_late(event);
                    return;
                }
                let next = w - INFLIGHT_ONE + SUCC_ONE;
                if self
                    .state
                    .compare_exchange(w, next, AcqRel, Acquire)
                    .is_ok()
                {
                    // A probe slot is free again.
                    self.notify.notify_waiters();
                    return;
                }
            },
        }
    }

    /// Frees a probe slot of generation `gen`; `false` if the generation is over.
    fn release_probe(&self, gen: u64) -> bool {
        let mut w = self.state.load(Acquire);
        loop {
            if state_of(w) != HALF_OPEN || gen_of(w) != gen || inflight_of(w) == 0 {
                return false;
            }
            match self
                .state
                .compare_exchange(w, w - INFLIGHT_ONE, AcqRel, Acquire)
            {
                Ok(_) => {
                    self.notify.notify_waiters();
                    return true;
                }
                Err(actual) => w = actual,
            }
        }
    }

    /// The caller dropped the response future before it finished.
    pub(crate) fn cancel(&self, ticket: Ticket) {
        let stripe = self.counter_stripe();
        self.counters.get(stripe).cancelled.incr(stripe);
        if ticket.kind() == TicketKind::Probe {
            self.release_probe(ticket.gen());
        }
    }

    #[cold]
    fn trip(&self, gen: u64, reason: TransitionReason, now: &dyn Fn() -> u64) {
        let t = now();
        let event = {
            let mut slow = lock(&self.slow);
            self.switch(&mut slow, t, OPEN, reason, |w| {
                state_of(w) == CLOSED && gen_of(w) == gen
            })
        };
        self.emit(event);
    }

    #[cold]
    fn open_to_half_open(&self, stripe: usize, w: u64, t: u64) -> Option<Ticket> {
        let event = {
            let mut slow = lock(&self.slow);
            if self.open_until.load(Acquire) > t {
                return None;
            }
            self.switch(
                &mut slow,
                t,
                HALF_OPEN,
                TransitionReason::OpenElapsed,
                |cur| cur == w,
            )
        };
        let gen = gen_of(w) + 1;
        let admitted = event.is_some();
        self.emit(event);
        admitted.then_some(Ticket::new(TicketKind::Probe, gen, t, stripe))
    }

    #[cold]
    fn probe_timed_out(&self, w: u64, t: u64) {
        let event = {
            let mut slow = lock(&self.slow);
            if self.probe_deadline.load(Acquire) > t {
                return;
            }
            self.switch(&mut slow, t, OPEN, TransitionReason::ProbeTimeout, |cur| {
                state_of(cur) == HALF_OPEN && gen_of(cur) == gen_of(w)
            })
        };
        self.emit(event);
    }

    /// Moves to `to` if the current word passes `check`. Runs under the
    /// `slow` lock, so only lock-free probe bookkeeping can race with it; the
    /// generation cannot change under us.
    fn switch(
        &self,
        slow: &mut Slow,
        t: u64,
        to: u64,
        reason: TransitionReason,
        check: impl Fn(u64) -> bool,
    ) -> Option<Transition> {
        let mut w = self.state.load(Acquire);
        if !check(w) {
            return None;
        }
        let from = state_of(w);
        if from == to && to != CLOSED {
            return None;
        }
        // Leaving an open state: account the time spent open.
        if let Some(since) = slow.open_since.take() {
            slow.open_total = slow.open_total.saturating_add(t.saturating_sub(since));
        }
        // A manual transition starts the open duration afresh.
        if reason == TransitionReason::Manual {
            slow.level = 0;
            slow.closed_at = None;
        }
        let mut open_for = None;
        match to {
            OPEN => {
                // A trip from closed soon after probes closed the breaker is
                // a flap: back off further. One after a longer closed spell
                // starts again from the base. A failed probe (from half-open)
                // keeps the level: the backend is still down, not flapping.
                if from == CLOSED {
                    slow.level = match slow.closed_at {
                        Some(c) if t.saturating_sub(c) < self.params.flap_window => {
                            self.grown(slow.level)
                        }
                        _ => 0,
                    };
                }
                let d = self.open_duration(slow);
                slow.open_since = Some(t);
                self.open_until.store(t.saturating_add(d), Release);
                self.opened.fetch_add(1, Relaxed);
                open_for = Some(Duration::from_nanos(d));
            }
            FORCED_OPEN => {
                slow.open_since = Some(t);
                self.opened.fetch_add(1, Relaxed);
            }
            HALF_OPEN => {
                self.probe_deadline
                    .store(t.saturating_add(self.params.probe_timeout), Release);
                self.half_opened.fetch_add(1, Relaxed);
            }
            CLOSED => {
                if let Some(window) = &self.window {
                    window.clear();
                }
                self.consecutive.store(0, Relaxed);
                self.pending.store(false, Relaxed);
                if from == HALF_OPEN {
                    slow.closed_at = Some(t);
                }
                if from != CLOSED {
                    self.closed.fetch_add(1, Relaxed);
                }
            }
            _ => {}
        }
        // The entering call of a half-open phase is its first probe.
        let inflight = u64::from(to == HALF_OPEN);
        loop {
            let next = pack(to, gen_of(w) + 1, inflight);
            match self.state.compare_exchange(w, next, AcqRel, Acquire) {
                Ok(_) => break,
                Err(actual) => {
                    // Only probe counters can have moved.
                    debug_assert_eq!(gen_of(actual), gen_of(w));
                    w = actual;
                }
            }
        }
        if from == to {
            return None;
        }
        slow.state_since = t;
        Some(Transition {
            name: self.name.clone(),
            from: state_from_bits(from),
            to: state_from_bits(to),
            reason,
            open_for,
        })
    }

    /// The open duration of `level`, before jitter, in nanoseconds:
    /// base × multiplier^level, capped.
    fn level_duration(&self, level: u32) -> f64 {
        let p = &self.params;
        let exp = i32::try_from(level).unwrap_or(i32::MAX);
        (p.open_base * p.open_multiplier.powi(exp)).min(p.open_max)
    }

    /// One step up from `level`, unless its duration is already capped.
    fn grown(&self, level: u32) -> u32 {
        let p = &self.params;
        if p.open_multiplier > 1.0 && self.level_duration(level) < p.open_max {
            level.saturating_add(1)
        } else {
            level
        }
    }

    /// The next open duration, in nanoseconds: the level's duration,
    /// shortened by up to the jitter fraction (uniform in
    /// [d·(1 − jitter), d]), never lengthened, so the configured duration
    /// bounds how long the breaker stays open.
    fn open_duration(&self, slow: &mut Slow) -> u64 {
        let p = &self.params;
        let capped = self.level_duration(slow.level);
        let jittered = if p.open_jitter > 0.0 {
            let u: f64 = slow.rng.random();
            capped * (1.0 - p.open_jitter * u)
        } else {
            capped
        };
        // Nanoseconds, rounded (`as` saturates); at least one.
        (jittered.round() as u64).max(1)
    }

    fn count_late(&self) {
        let stripe = self.counter_stripe();
        self.counters.get(stripe).late.incr(stripe);
    }

    /// A probe result that lost the race to another transition moved
    /// nothing: it is late.
    fn emit_or_late(&self, event: Option<Transition>) {
        if event.is_none() {
            self.count_late();
        }
        self.emit(event);
    }

    fn emit(&self, event: Option<Transition>) {
        let Some(event) = event else { return };
        self.notify.notify_waiters();
        let name = self.name.as_deref().unwrap_or("");
        match event.to {
            CircuitState::Open | CircuitState::ForcedOpen => tracing::warn!(
                target: "steadfast::circuit_breaker",
                layer = "circuit_breaker",
                name,
                event = "state_change",
                state = event.to.as_str(),
                breaker = name,
                from = event.from.as_str(),
                to = event.to.as_str(),
                reason = %event.reason,
                open_for = ?event.open_for,
                "circuit breaker opened"
            ),
            _ => tracing::info!(
                target: "steadfast::circuit_breaker",
                layer = "circuit_breaker",
                name,
                event = "state_change",
                state = event.to.as_str(),
                breaker = name,
                from = event.from.as_str(),
                to = event.to.as_str(),
                reason = %event.reason,
                "circuit breaker state changed"
            ),
        }
        if !self.on_transition.is_empty() {
            self.on_transition
                .call("circuit_breaker", self.name.as_deref(), &event);
        }
    }

    /// Manual transition from any state.
    pub(crate) fn force(&self, to: CircuitState, t: u64) {
        let to = match to {
            CircuitState::ForcedOpen => FORCED_OPEN,
            CircuitState::Disabled => DISABLED,
            _ => CLOSED,
        };
        let event = {
            let mut slow = lock(&self.slow);
            self.switch(&mut slow, t, to, TransitionReason::Manual, |_| true)
        };
        self.emit(event);
    }

    pub(crate) fn snapshot(&self, t: u64) -> CoreSnapshot {
        let c = &self.counters;
        let w = self.state.load(Acquire);
        let state = state_from_bits(state_of(w));
        let (open_total, open_since, state_since) = {
            let slow = lock(&self.slow);
            (slow.open_total, slow.open_since, slow.state_since)
        };
        let open_total = open_total.saturating_add(open_since.map_or(0, |s| t.saturating_sub(s)));
        let retry_after =
            (state == CircuitState::Open).then(|| self.open_until.load(Acquire).saturating_sub(t));
        CoreSnapshot {
            state,
            successes: sum(c, |s| &s.successes),
            failures: sum(c, |s| &s.failures),
            ignored: sum(c, |s| &s.ignored),
            slow: sum(c, |s| &s.slow),
            rejected: sum(c, |s| &s.rejected),
            late: sum(c, |s| &s.late),
            cancelled: sum(c, |s| &s.cancelled),
            opened: self.opened.load(Relaxed),
            half_opened: self.half_opened.load(Relaxed),
            closed: self.closed.load(Relaxed),
            window: self.window.as_ref().map(|w| w.totals(t)),
            consecutive_failures: self.consecutive.load(Relaxed),
            open_total,
            in_state: t.saturating_sub(state_since),
            retry_after,
            probes_in_flight: if state == CircuitState::HalfOpen {
                inflight_of(w) as u32
            } else {
                0
            },
        }
    }

    /// The probe slots in flight (for the model checks).
    #[cfg(all(test, steadfast_loom))]
    pub(crate) fn probes_in_flight(&self) -> u64 {
        inflight_of(self.state.load(Acquire))
    }
}

/// Model checks of admission and transitions: run with
/// `RUSTFLAGS="--cfg steadfast_loom" cargo test --release --lib loom`.
#[cfg(all(test, steadfast_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    const SEC: u64 = 1_000_000_000;

    fn core(half_open_max: u32, success_threshold: u32) -> Arc<Core> {
        core_tripping_after(1, half_open_max, success_threshold)
    }

    fn core_tripping_after(failures: u32, half_open_max: u32, success_threshold: u32) -> Arc<Core> {
        let cfg = CircuitBreakerConfig::builder()
            .without_failure_rate()
            .consecutive_failures(failures)
            .open_jitter(0.0)
            .jitter_seed(7)
            .open_duration(Duration::from_secs(1))
            .half_open_max_calls(half_open_max)
            .success_threshold(success_threshold)
            .build()
            .unwrap();
        Arc::new(Core::new(&cfg))
    }

    /// Trips the breaker at t = 0; it may half-open from t = 1 s.
    fn trip(core: &Core) {
        let t = core.try_acquire(0, || 0).unwrap();
        core.complete(t, Outcome::Failure, || 0);
        assert_eq!(core.state(), CircuitState::Open);
    }

    #[test]
    fn loom_one_probe_from_concurrent_open_to_half_open() {
        loom::model(|| {
            let core = core(1, 1);
            trip(&core);
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let core = core.clone();
                    thread::spawn(move || core.try_acquire(0, || 2 * SEC))
                })
                .collect();
            let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            let admitted = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(admitted, 1, "{results:?}");
            for r in &results {
                if let Err(rej) = r {
                    assert_eq!(rej.state, CircuitState::HalfOpen);
                }
            }
            assert_eq!(core.state(), CircuitState::HalfOpen);
            assert_eq!(core.probes_in_flight(), 1);
            assert_eq!(core.half_opened.load(Relaxed), 1);
        });
    }

    #[test]
    fn loom_released_probe_slot_is_reusable() {
        loom::model(|| {
            let core = core(1, 1);
            trip(&core);
            let probe = core.try_acquire(0, || 2 * SEC).unwrap();
            let c1 = core.clone();
            let releaser = thread::spawn(move || c1.cancel(probe));
            let c2 = core.clone();
            let admitter = thread::spawn(move || c2.try_acquire(0, || 2 * SEC).is_ok());
            releaser.join().unwrap();
            let admitted = admitter.join().unwrap();
            assert_eq!(core.probes_in_flight(), u64::from(admitted));
            assert_eq!(core.state(), CircuitState::HalfOpen);
        });
    }

    #[test]
    fn loom_concurrent_failures_trip_once() {
        loom::model(|| {
            let core = core_tripping_after(2, 1, 1);
            let tickets: Vec<_> = (0..3).map(|_| core.try_acquire(0, || 0).unwrap()).collect();
            let handles: Vec<_> = tickets
                .into_iter()
                .map(|t| {
                    let core = core.clone();
                    thread::spawn(move || core.complete(t, Outcome::Failure, || 0))
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            assert_eq!(core.state(), CircuitState::Open);
            assert_eq!(core.opened.load(Relaxed), 1);
        });
    }

    #[test]
    fn loom_stale_result_cannot_move_a_new_generation() {
        loom::model(|| {
            let core = core(1, 1);
            let old = core.try_acquire(0, || 0).unwrap();
            trip(&core);
            let probe = core.try_acquire(0, || 2 * SEC).unwrap();
            let c1 = core.clone();
            let closer = thread::spawn(move || c1.complete(probe, Outcome::Success, || 2 * SEC));
            let c2 = core.clone();
            let stale = thread::spawn(move || c2.complete(old, Outcome::Failure, || 2 * SEC));
            closer.join().unwrap();
            stale.join().unwrap();
            assert_eq!(core.state(), CircuitState::Closed);
            assert_eq!(core.opened.load(Relaxed), 1);
            assert_eq!(core.consecutive.load(Relaxed), 0);
        });
    }

    #[test]
    fn loom_probe_failure_wins_over_concurrent_success() {
        loom::model(|| {
            let core = core(2, 2);
            trip(&core);
            let p1 = core.try_acquire(0, || 2 * SEC).unwrap();
            let p2 = core.try_acquire(0, || 2 * SEC).unwrap();
            let c1 = core.clone();
            let ok = thread::spawn(move || c1.complete(p1, Outcome::Success, || 2 * SEC));
            let c2 = core.clone();
            let fail = thread::spawn(move || c2.complete(p2, Outcome::Failure, || 2 * SEC));
            ok.join().unwrap();
            fail.join().unwrap();
            assert_eq!(core.state(), CircuitState::Open);
            assert_eq!(core.opened.load(Relaxed), 2);
            assert_eq!(core.closed.load(Relaxed), 0);
        });
    }
}
