use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::state::{Rejected, Transition};
use crate::error::InvalidConfig;
use crate::metrics::listener::Listeners;

/// Which calls the failure-rate and slow-call-rate rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last `n` calls: a ring in which the oldest call falls out as each
    /// new one comes in. One shared sequence number orders the calls
    /// exactly, so every call writes one shared cache line: cheapest on one
    /// core, dearer than [`Window::Time`] when many cores call at once.
    Count(u32),
    /// The calls of the last `duration`, kept in `buckets` buckets of
    /// `duration / buckets` each; a bucket leaves the window whole. Buckets
    /// are kept per thread, so cores never contend; each call reads the clock.
    Time {
        /// How far back the window reaches.
        duration: Duration,
        /// How many buckets it is split into (1 to 1,000).
        buckets: u32,
    },
}

impl Window {
    /// The last `n` calls.
    pub const fn count(n: u32) -> Self {
        Window::Count(n)
    }

    /// The last `duration`, in `buckets` buckets.
    pub const fn time(duration: Duration, buckets: u32) -> Self {
        Window::Time { duration, buckets }
    }
}

impl Default for Window {
    /// The last 10 seconds in 10 buckets.
    fn default() -> Self {
        Window::time(Duration::from_secs(10), 10)
    }
}

/// A validated circuit-breaker configuration; made by
/// [`CircuitBreakerConfig::builder`].
///
/// See the [module docs](super) for what each setting does.
#[derive(Clone)]
pub struct CircuitBreakerConfig {
    pub(crate) name: Option<Arc<str>>,
    pub(crate) failure_rate: Option<f64>,
    pub(crate) slow_call_duration: Option<Duration>,
    pub(crate) slow_call_rate: Option<f64>,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) window: Window,
    pub(crate) minimum_calls: u32,
    pub(crate) open_duration: Duration,
    pub(crate) open_duration_multiplier: f64,
    pub(crate) max_open_duration: Duration,
    pub(crate) open_jitter: f64,
    pub(crate) flap_window: Duration,
    pub(crate) half_open_max_calls: u32,
    pub(crate) success_threshold: u32,
    pub(crate) probe_timeout: Duration,
    pub(crate) seed: Option<u64>,
    pub(crate) minimum_calls_set: bool,
    pub(crate) max_open_set: bool,
    pub(crate) on_transition: Listeners<Transition>,
    pub(crate) on_rejection: Listeners<Rejected>,
}

impl fmt::Debug for CircuitBreakerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerConfig")
            .field("name", &self.name)
            .field("failure_rate", &self.failure_rate)
            .field("slow_call_duration", &self.slow_call_duration)
            .field("slow_call_rate", &self.slow_call_rate)
            .field("consecutive_failures", &self.consecutive_failures)
            .field("window", &self.window)
            .field("minimum_calls", &self.minimum_calls)
            .field("open_duration", &self.open_duration)
            .field("open_duration_multiplier", &self.open_duration_multiplier)
            .field("max_open_duration", &self.max_open_duration)
            .field("open_jitter", &self.open_jitter)
            .field("flap_window", &self.flap_window)
            .field("half_open_max_calls", &self.half_open_max_calls)
            .field("success_threshold", &self.success_threshold)
            .field("probe_timeout", &self.probe_timeout)
            .field("on_transition", &self.on_transition)
            .field("on_rejection", &self.on_rejection)
            .finish()
    }
}

impl Default for CircuitBreakerConfig {
    /// The defaults of [`CircuitBreakerConfig::builder`].
    fn default() -> Self {
        CircuitBreakerBuilder::new()
            .build()
            .expect("the default configuration is valid")
    }
}

impl CircuitBreakerConfig {
    /// A builder with the defaults: trip on 50 % failures over the last 10 s
    /// (10 buckets, at least 20 calls) **or** 20 consecutive failures; slow
    /// calls off; open for 5 s, shortened by up to 20 % jitter; ×2 up to 60 s
    /// only when the breaker re-trips within 30 s of closing (a flapping
    /// backend), failed probes re-open for the same duration; one half-open
    /// probe, one success to close, probes time out after 30 s.
    pub fn builder() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::new()
    }

    /// The name given with [`CircuitBreakerBuilder::name`], if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

/// Builds a [`CircuitBreakerConfig`]; every setting is optional.
///
/// [`build`](Self::build) checks the values and names the first bad field.
#[derive(Clone, Debug)]
pub struct CircuitBreakerBuilder {
    cfg: CircuitBreakerConfig,
}

impl CircuitBreakerBuilder {
    fn new() -> Self {
        Self {
            cfg: CircuitBreakerConfig {
                name: None,
                failure_rate: Some(50.0),
                slow_call_duration: None,
                slow_call_rate: None,
                consecutive_failures: Some(20),
                window: Window::default(),
                minimum_calls: 20,
                open_duration: Duration::from_secs(5),
                open_duration_multiplier: 2.0,
                max_open_duration: Duration::from_secs(60),
                open_jitter: 0.2,
                flap_window: Duration::from_secs(30),
                half_open_max_calls: 1,
                success_threshold: 1,
                probe_timeout: Duration::from_secs(30),
                seed: None,
                minimum_calls_set: false,
                max_open_set: false,
                on_transition: Listeners::new(),
                on_rejection: Listeners::new(),
            },
        }
    }

    /// A name for this breaker, used in `tracing` events, snapshots and
    /// listener events, to tell several breakers apart. Stored once; every
    /// event and snapshot shares it (no copy per call).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.cfg.name = Some(name.into());
        self
    }

    /// Whether a name was set (the preset names unnamed pieces).
    pub(crate) fn has_name(&self) -> bool {
        self.cfg.name.is_some()
    }

    /// Trip when at least `percent` % of the calls in the window failed
    /// (once the window holds [`minimum_calls`](Self::minimum_calls)).
    /// Must be in (0, 100]. Default 50.
    pub fn failure_rate(mut self, percent: f64) -> Self {
        self.cfg.failure_rate = Some(percent);
        self
    }

    /// Turn the failure-rate rule off.
    pub fn without_failure_rate(mut self) -> Self {
        self.cfg.failure_rate = None;
        self
    }

    /// The window the rate rules look at. Default: the last 10 s in 10 buckets.
    pub fn window(mut self, window: Window) -> Self {
        self.cfg.window = window;
        self
    }

    /// How many calls the window must hold before a rate means anything.
    /// At least 1, and at most the size of a count window. Default 20 (or
    /// the size of a smaller count window).
    pub fn minimum_calls(mut self, n: u32) -> Self {
        self.cfg.minimum_calls = n;
        self.cfg.minimum_calls_set = true;
        self
    }

    /// A call that takes at least `duration` is slow. Together with
    /// [`slow_call_rate`](Self::slow_call_rate) this turns the slow-call rule on.
    pub fn slow_call_duration(mut self, duration: Duration) -> Self {
        self.cfg.slow_call_duration = Some(duration);
        self
    }

    /// Trip when at least `percent` % of the calls in the window were slow.
    /// Must be in (0, 100]; needs [`slow_call_duration`](Self::slow_call_duration).
    pub fn slow_call_rate(mut self, percent: f64) -> Self {
        self.cfg.slow_call_rate = Some(percent);
        self
    }

    /// Trip after `n` failures in a row (an ignored call does not break the
    /// run; a success does). At least 1. Default 20.
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.cfg.consecutive_failures = Some(n);
        self
    }

    /// Turn the consecutive-failures rule off.
    pub fn without_consecutive_failures(mut self) -> Self {
        self.cfg.consecutive_failures = None;
        self
    }

    /// The base open duration: how long the breaker stays open after a trip
    /// (and after each failed probe) unless it is flapping. A backend that
    /// was simply down, for however long, is probed again at most this long
    /// after it came back. Default 5 s.
    pub fn open_duration(mut self, d: Duration) -> Self {
        self.cfg.open_duration = d;
        self
    }

    /// How much the open duration grows on each flap: a trip from closed
    /// less than [`flap_window`](Self::flap_window) after probes closed the
    /// breaker multiplies it by this, up to
    /// [`max_open_duration`](Self::max_open_duration). A failed probe does
    /// not grow it (it re-opens for the current duration), and a trip after
    /// the breaker stayed closed for the whole flap window resets it to
    /// [`open_duration`](Self::open_duration). 1 turns growth off. At least 1.
    /// Default 2.
    pub fn open_duration_multiplier(mut self, factor: f64) -> Self {
        self.cfg.open_duration_multiplier = factor;
        self
    }

    /// The cap on the grown open duration; jitter only shortens, so the
    /// breaker never stays open longer. At least the base. Default 60 s, or
    /// the base when that is longer.
    pub fn max_open_duration(mut self, d: Duration) -> Self {
        self.cfg.max_open_duration = d;
        self.cfg.max_open_set = true;
        self
    }

    /// A trip from closed less than this after probes closed the breaker is
    /// a *flap*: the backend came back and fell over again, often under the
    /// load that returned with it. Each flap grows the open duration by
    /// [`open_duration_multiplier`](Self::open_duration_multiplier); a trip
    /// after the breaker stayed closed at least this long starts again from
    /// [`open_duration`](Self::open_duration).
    ///
    /// Default 30 s: three lengths of the default 10 s failure-rate window,
    /// so a backend that degrades again right after recovering is still
    /// caught by the slower rate rule within the window, while a backend
    /// that served for half a minute before failing is treated as a new
    /// outage, not a relapse. Greater than zero, at most a year.
    pub fn flap_window(mut self, d: Duration) -> Self {
        self.cfg.flap_window = d;
        self
    }

    /// Shorten each open duration by a random fraction of up to this
    /// (uniformly in [d·(1 − fraction), d]), so a fleet of clients that
    /// tripped together does not probe in step. Jitter never lengthens the
    /// open duration, so `open_duration` and `max_open_duration` are upper
    /// bounds. In [0, 1). Default 0.2 (a 5 s open lasts 4 to 5 s).
    pub fn open_jitter(mut self, fraction: f64) -> Self {
        self.cfg.open_jitter = fraction;
        self
    }

    /// Seed the jitter's random number generator (for reproducible tests).
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.cfg.seed = Some(seed);
        self
    }

    /// At most this many probes in flight while half-open. 1 to 1,023. Default 1.
    pub fn half_open_max_calls(mut self, n: u32) -> Self {
        self.cfg.half_open_max_calls = n;
        self
    }

    /// Successful probes needed to close. 1 to 1,023. Default 1.
    pub fn success_threshold(mut self, n: u32) -> Self {
        self.cfg.success_threshold = n;
        self
    }

    /// When every probe slot has stayed taken for this long since the phase
    /// began or the last probe was admitted, the phase counts as a failed
    /// probe and the next call re-opens the breaker, so a hung probe cannot
    /// wedge it. Default 30 s.
    pub fn probe_timeout(mut self, d: Duration) -> Self {
        self.cfg.probe_timeout = d;
        self
    }

    /// Called on every state change, after the change and outside any lock.
    ///
    /// Each call adds a listener; they are called in the order added. A
    /// listener that panics is caught (and reported as a `tracing` error):
    /// the breaker is not poisoned and the listeners after it still get the
    /// event.
    pub fn on_transition<F>(mut self, f: F) -> Self
    where
        F: Fn(&Transition) + Send + Sync + 'static,
    {
        self.cfg.on_transition.push(Arc::new(f));
        self
    }

    /// Called on every call the breaker rejects with
    /// [`CircuitOpen`](super::error::CircuitOpen), outside any lock, on the
    /// rejecting thread: keep it short. As with
    /// [`on_transition`](Self::on_transition), several may be added and a
    /// panic in one is caught. With no listener the rejection path only
    /// checks that the list is empty.
    pub fn on_rejection<F>(mut self, f: F) -> Self
    where
        F: Fn(&Rejected) + Send + Sync + 'static,
    {
        self.cfg.on_rejection.push(Arc::new(f));
        self
    }

    /// Checks every value and returns the configuration.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming the first field that breaks its rule.
    pub fn build(self) -> Result<CircuitBreakerConfig, InvalidConfig> {
        let mut c = self.cfg;
        if !c.max_open_set {
            c.max_open_duration = c.max_open_duration.max(c.open_duration);
        }
        if let Window::Count(n) = c.window {
            // The default minimum shrinks to fit a small count window; one
            // the user chose is checked below.
            if !c.minimum_calls_set && n > 0 {
                c.minimum_calls = c.minimum_calls.min(n);
            }
        }
        let field = |name: &'static str| name;
        let percent = |name: &'static str, v: Option<f64>| match v {
            Some(p) if !(p > 0.0 && p <= 100.0) => Err(InvalidConfig::new(
                field(name),
                format!("must be in (0, 100], got {p}"),
            )),
            _ => Ok(()),
        };
        let positive = |name: &'static str, d: Duration| {
            if d.is_zero() {
                Err(InvalidConfig::new(field(name), "must be greater than zero"))
            } else {
                Ok(())
            }
        };
        percent("circuit_breaker.failure_rate", c.failure_rate)?;
        percent("circuit_breaker.slow_call_rate", c.slow_call_rate)?;
        if let Some(d) = c.slow_call_duration {
            positive("circuit_breaker.slow_call_duration", d)?;
        }
        match (c.slow_call_duration, c.slow_call_rate) {
            (Some(_), None) => {
                return Err(InvalidConfig::new(
                    "circuit_breaker.slow_call_rate",
                    "must be set when slow_call_duration is set",
                ))
            }
            (None, Some(_)) => {
                return Err(InvalidConfig::new(
                    "circuit_breaker.slow_call_duration",
                    "must be set when slow_call_rate is set",
                ))
            }
            _ => {}
        }
        if c.consecutive_failures == Some(0) {
            return Err(InvalidConfig::new(
                "circuit_breaker.consecutive_failures",
                "must be at least 1, got 0",
            ));
        }
        if c.failure_rate.is_none()
            && c.slow_call_rate.is_none()
            && c.consecutive_failures.is_none()
        {
            return Err(InvalidConfig::new(
                "circuit_breaker.trip_rules",
                "no trip rule is set: set failure_rate, slow_call_rate or consecutive_failures",
            ));
        }
        if c.minimum_calls == 0 {
            return Err(InvalidConfig::new(
                "circuit_breaker.minimum_calls",
                "must be at least 1, got 0",
            ));
        }
        match c.window {
            Window::Count(n) => {
                if n == 0 || n > 1_000_000 {
                    return Err(InvalidConfig::new(
                        "circuit_breaker.window",
                        format!("a count window holds 1 to 1,000,000 calls, got {n}"),
                    ));
                }
                if (c.failure_rate.is_some() || c.slow_call_rate.is_some()) && c.minimum_calls > n {
                    return Err(InvalidConfig::new(
                        "circuit_breaker.minimum_calls",
                        format!(
                            "must not exceed the count window ({n}), got {}",
                            c.minimum_calls
                        ),
                    ));
                }
            }
            Window::Time { duration, buckets } => {
                if buckets == 0 || buckets > 1_000 {
                    return Err(InvalidConfig::new(
                        "circuit_breaker.window",
                        format!("a time window has 1 to 1,000 buckets, got {buckets}"),
                    ));
                }
                if duration / buckets < Duration::from_millis(1) {
                    return Err(InvalidConfig::new(
                        "circuit_breaker.window",
                        format!(
                            "each bucket must span at least 1 ms, got {:?}",
                            duration / buckets
                        ),
                    ));
                }
            }
        }
        positive("circuit_breaker.open_duration", c.open_duration)?;
        if !(c.open_duration_multiplier.is_finite() && c.open_duration_multiplier >= 1.0) {
            return Err(InvalidConfig::new(
                "circuit_breaker.open_duration_multiplier",
                format!(
                    "must be a finite number of at least 1, got {}",
                    c.open_duration_multiplier
                ),
            ));
        }
        if c.max_open_duration < c.open_duration {
            return Err(InvalidConfig::new(
                "circuit_breaker.max_open_duration",
                format!(
                    "must be at least open_duration ({:?}), got {:?}",
                    c.open_duration, c.max_open_duration
                ),
            ));
        }
        if c.max_open_duration > Duration::from_secs(365 * 24 * 3600) {
            return Err(InvalidConfig::new(
                "circuit_breaker.max_open_duration",
                "must be at most a year",
            ));
        }
        if !(c.open_jitter >= 0.0 && c.open_jitter < 1.0) {
            return Err(InvalidConfig::new(
                "circuit_breaker.open_jitter",
                format!("must be in [0, 1), got {}", c.open_jitter),
            ));
        }
        positive("circuit_breaker.flap_window", c.flap_window)?;
        if c.flap_window > Duration::from_secs(365 * 24 * 3600) {
            return Err(InvalidConfig::new(
                "circuit_breaker.flap_window",
                "must be at most a year",
            ));
        }
        if !(1..=1023).contains(&c.half_open_max_calls) {
            return Err(InvalidConfig::new(
                "circuit_breaker.half_open_max_calls",
                format!("must be 1 to 1023, got {}", c.half_open_max_calls),
            ));
        }
        if !(1..=1023).contains(&c.success_threshold) {
            return Err(InvalidConfig::new(
                "circuit_breaker.success_threshold",
                format!("must be 1 to 1023, got {}", c.success_threshold),
            ));
        }
        positive("circuit_breaker.probe_timeout", c.probe_timeout)?;
        Ok(c)
    }
}
