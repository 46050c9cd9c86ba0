use std::sync::Arc;
use std::time::Duration;

use super::backoff::{Backoff, Jitter};
use super::budget::RetryBudget;
use crate::error::InvalidConfig;
use crate::metrics::listener::Listeners;

/// A validated retry configuration; made by [`RetryConfig::builder`].
///
/// See the [module docs](super) for what each setting does. Cloning a
/// config shares its [`RetryBudget`]: every layer built from clones of one
/// config draws on the same budget.
#[derive(Debug, Clone)]
pub struct RetryConfig {
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) throttled_backoff: Backoff,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) max_server_delay: Duration,
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) max_replay_body: usize,
    pub(crate) wait_for_open_circuit: bool,
    pub(crate) retry_timeouts: bool,
    pub(crate) seed: Option<u64>,
    pub(crate) name: Option<Arc<str>>,
    pub(crate) attempt_durations: bool,
    pub(crate) on_retry: Listeners<Retried>,
    pub(crate) on_give_up: Listeners<GaveUp>,
}

/// A retryable failure returned without a retry, as given to the
/// [`on_give_up`](RetryConfigBuilder::on_give_up) listeners.
#[derive(Debug, Clone)]
pub struct GaveUp {
    pub(crate) name: Option<Arc<str>>,
    pub(crate) attempts: u32,
    pub(crate) reason: &'static str,
}

impl GaveUp {
    /// The layer's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// Attempts sent for the call, the first included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
    /// Why no retry was made (`"attempts exhausted"`, `"deadline"`,
    /// `"server hint"`, `"budget exhausted"`, `"not safe to repeat"`,
    /// `"not replayable"`), as in the `tracing` event's `reason` field.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

/// A retry about to be made, as given to the
/// [`on_retry`](RetryConfigBuilder::on_retry) listeners.
#[derive(Debug, Clone)]
pub struct Retried {
    pub(crate) name: Option<Arc<str>>,
    pub(crate) attempt: u32,
    pub(crate) delay: Duration,
    pub(crate) reason: &'static str,
}

impl Retried {
    /// The layer's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// The number of the attempt about to be made (2 for the first retry).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
    /// The wait before it.
    pub fn delay(&self) -> Duration {
        self.delay
    }
    /// Why the last attempt is retried (`"retryable failure"`,
    /// `"throttled"`, `"server hint"`, `"circuit open"`), as in the
    /// `tracing` event's `reason` field.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl RetryConfig {
    /// Starts a configuration from the defaults.
    pub fn builder() -> RetryConfigBuilder {
        RetryConfigBuilder::default()
    }

    /// Attempts per call, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The backoff between attempts.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// The budget, unless switched off.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.budget.as_ref()
    }

    /// The name given with [`RetryConfigBuilder::name`], if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl Default for RetryConfig {
    /// The defaults listed on [`RetryConfigBuilder`].
    fn default() -> Self {
        RetryConfigBuilder::default()
            .build()
            .expect("the default retry configuration is valid")
    }
}

/// Builds a [`RetryConfig`]; every setting is optional.
///
/// | setting | default |
/// |---|---|
/// | [`max_attempts`](Self::max_attempts) | 3 (the first call and two retries) |
/// | [`backoff`](Self::backoff) | exponential, 50 ms × 2, capped at 5 s, full jitter |
/// | [`throttled_backoff`](Self::throttled_backoff) | exponential, 1 s × 2, capped at 30 s, full jitter (HTTP 429, RESOURCE_EXHAUSTED) |
/// | [`budget`](Self::budget) | a new [`RetryBudget::default`]: 20 % of requests + 10/s over 10 s |
/// | [`max_server_delay`](Self::max_server_delay) | 30 s |
/// | [`max_replay_body`](Self::max_replay_body) | 64 KiB |
/// | [`wait_for_open_circuit`](Self::wait_for_open_circuit) | off |
/// | [`retry_timeouts`](Self::retry_timeouts) | off: a request not safe to repeat is not sent again after an attempt timeout |
///
/// ```
/// use std::time::Duration;
/// use steadfast::retry::{Backoff, Jitter, RetryConfig};
///
/// let config = RetryConfig::builder()
///     .max_attempts(4)
///     .backoff(Backoff::exponential(Duration::from_millis(100), 2.0).jitter(Jitter::Full))
///     .build()?;
/// assert_eq!(config.max_attempts(), 4);
///
/// let err = RetryConfig::builder().max_attempts(0).build().unwrap_err();
/// assert_eq!(err.field(), "retry.max_attempts");
/// # Ok::<_, steadfast::InvalidConfig>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RetryConfigBuilder {
    max_attempts: u32,
    backoff: Backoff,
    throttled_backoff: Backoff,
    budget: BudgetChoice,
    max_server_delay: Duration,
    max_replay_body: usize,
    wait_for_open_circuit: bool,
    retry_timeouts: bool,
    seed: Option<u64>,
    name: Option<Arc<str>>,
    attempt_durations: bool,
    on_retry: Listeners<Retried>,
    on_give_up: Listeners<GaveUp>,
}

#[derive(Debug, Clone)]
enum BudgetChoice {
    Default,
    Shared(RetryBudget),
    Off,
}

impl Default for RetryConfigBuilder {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff: Backoff::exponential(Duration::from_millis(50), 2.0)
                .max_delay(Duration::from_secs(5))
                .jitter(Jitter::Full),
            throttled_backoff: Backoff::exponential(Duration::from_secs(1), 2.0)
                .max_delay(Duration::from_secs(30))
                .jitter(Jitter::Full),
            budget: BudgetChoice::Default,
            max_server_delay: Duration::from_secs(30),
            max_replay_body: 64 * 1024,
            wait_for_open_circuit: false,
            retry_timeouts: false,
            seed: None,
            name: None,
            attempt_durations: false,
            on_retry: Listeners::new(),
            on_give_up: Listeners::new(),
        }
    }
}

impl RetryConfigBuilder {
    /// Attempts per call, counting the first: `1` means no retries.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// The backoff between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The backoff after the backend asked callers to slow down (HTTP 429 or
    /// gRPC RESOURCE_EXHAUSTED without a server hint).
    pub fn throttled_backoff(mut self, backoff: Backoff) -> Self {
        self.throttled_backoff = backoff;
        self
    }

    /// Draws retries from `budget`, which may be shared with other layers
    /// (every clone of a [`RetryBudget`] is the same budget).
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = BudgetChoice::Shared(budget);
        self
    }

    /// No budget: only `max_attempts` bounds the retries. Not advised: in an
    /// outage every layer of retries multiplies the load.
    pub fn no_budget(mut self) -> Self {
        self.budget = BudgetChoice::Off;
        self
    }

    /// The longest server-requested delay (`Retry-After`,
    /// `grpc-retry-pushback-ms`) that is honoured; a longer one ends the
    /// retries and returns the response.
    pub fn max_server_delay(mut self, max: Duration) -> Self {
        self.max_server_delay = max;
        self
    }

    /// How many bytes of an `http::Request` body are kept for replay; a
    /// larger body is sent once and not retried.
    pub fn max_replay_body(mut self, bytes: usize) -> Self {
        self.max_replay_body = bytes;
        self
    }

    /// When an inner circuit breaker rejects an attempt with `CircuitOpen`,
    /// wait once for its `retry_after` (if that fits the deadline and the
    /// server-delay cap) and try again, instead of failing fast.
    pub fn wait_for_open_circuit(mut self, wait: bool) -> Self {
        self.wait_for_open_circuit = wait;
        self
    }

    /// Also retries a request that is *not* safe to repeat (a POST without
    /// an `Idempotency-Key`, a gRPC call not marked idempotent) after its
    /// attempt timed out ([`Elapsed`](crate::Elapsed), or
    /// with feature `tonic` the `TimeoutExpired` of a tonic `Channel` whose
    /// `grpc-timeout` timer fired first).
    ///
    /// Off by default, and only right when the backend can take the same
    /// call twice: a timed-out attempt may well have been processed, so a
    /// retry can run it again. Requests that are safe to repeat are retried
    /// after a timeout either way.
    pub fn retry_timeouts(mut self, retry: bool) -> Self {
        self.retry_timeouts = retry;
        self
    }

    /// Seeds the jitter, for reproducible schedules in tests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// A name for the layer's `tracing` events, snapshot and listener
    /// events, to tell several retry layers apart. Stored once and shared
    /// (no copy per call).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Times every attempt into a histogram, read as
    /// [`RetrySnapshot::attempt_duration`](super::RetrySnapshot::attempt_duration):
    /// with a [`MetricsLayer`](crate::metrics::MetricsLayer) outside, call
    /// latency and attempt latency apart. Off by default (it costs two clock
    /// reads per attempt); the preset turns it on with
    /// [`metrics`](crate::stack::ResilienceBuilder::metrics). An attempt
    /// dropped unfinished (the call was cancelled) is not recorded.
    pub fn attempt_durations(mut self, on: bool) -> Self {
        self.attempt_durations = on;
        self
    }

    /// Called for each retry once it is decided (after the budget allowed
    /// it, before the backoff), on the thread that polls the call: keep it
    /// short. Each call adds a listener; they are called in the order
    /// added. A listener that panics is caught (and reported as a
    /// `tracing` error): the call goes on and the listeners after it still
    /// get the event. Calls that are not retried cost nothing.
    pub fn on_retry<F>(mut self, f: F) -> Self
    where
        F: Fn(&Retried) + Send + Sync + 'static,
    {
        self.on_retry.push(Arc::new(f));
        self
    }

    /// Called for each retryable failure that is returned without a retry
    /// (attempts exhausted, deadline, server hint, budget refused, not safe
    /// to repeat, not replayable), as [`on_retry`](Self::on_retry) is for
    /// retries: in order, a panic caught, no cost to calls that succeed.
    pub fn on_give_up<F>(mut self, f: F) -> Self
    where
        F: Fn(&GaveUp) + Send + Sync + 'static,
    {
        self.on_give_up.push(Arc::new(f));
        self
    }

    /// Whether a name was set (the preset names unnamed pieces).
    pub(crate) fn has_name(&self) -> bool {
        self.name.is_some()
    }

    /// Checks every setting.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming the first bad field: `retry.max_attempts`
    /// (0), `retry.backoff.*` and `retry.throttled_backoff.*` (see
    /// [`Backoff`]), `retry.max_server_delay` (zero).
    pub fn build(self) -> Result<RetryConfig, InvalidConfig> {
        if self.max_attempts == 0 {
            return Err(InvalidConfig::new(
                "retry.max_attempts",
                "must be at least 1 (1 means no retries), got 0",
            ));
        }
        self.backoff.validate("retry.backoff")?;
        self.throttled_backoff.validate("retry.throttled_backoff")?;
        if self.max_server_delay.is_zero() {
            return Err(InvalidConfig::new(
                "retry.max_server_delay",
                "must be greater than zero (a server hint of 0 s always fits)",
            ));
        }
        let budget = match self.budget {
            BudgetChoice::Default => Some(RetryBudget::default()),
            BudgetChoice::Shared(budget) => Some(budget),
            BudgetChoice::Off => None,
        };
        Ok(RetryConfig {
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            throttled_backoff: self.throttled_backoff,
            budget,
            max_server_delay: self.max_server_delay,
            max_replay_body: self.max_replay_body,
            wait_for_open_circuit: self.wait_for_open_circuit,
            retry_timeouts: self.retry_timeouts,
            seed: self.seed,
            name: self.name,
            attempt_durations: self.attempt_durations,
            on_retry: self.on_retry,
            on_give_up: self.on_give_up,
        })
    }
}
