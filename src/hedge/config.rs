use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::InvalidConfig;
use crate::retry::RetryBudget;

/// The most attempts a call may have in flight, the first included: gRPC's
/// hedging design caps `maxAttempts` at 5 too.
const MAX_ATTEMPTS: u32 = 5;
/// A delay longer than this is not a hedge (and `Instant + delay` stays far
/// from overflow).
const MAX_DELAY: Duration = Duration::from_secs(3600);
const MIN_WINDOW: Duration = Duration::from_secs(1);
const MAX_WINDOW: Duration = Duration::from_secs(600);
const MIN_PERCENTILE: f64 = 50.0;
const MAX_PERCENTILE: f64 = 99.9;

/// When the next hedge goes: [`HedgeConfigBuilder::delay`] or
/// [`HedgeConfigBuilder::delay_percentile`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum HedgeDelay {
    /// A fixed delay.
    Fixed(Duration),
    /// A percentile of the latency of recent calls, within bounds.
    Percentile {
        /// The percentile, 50.0 to 99.9 (95.0 is p95).
        percentile: f64,
        /// How far back calls count.
        window: Duration,
        /// The shortest delay, whatever the calls took.
        min: Duration,
        /// The longest delay, and the delay until the window holds enough
        /// calls to read the percentile from.
        max: Duration,
    },
}

/// A validated hedging configuration; made by [`HedgeConfig::builder`].
///
/// See the [module docs](super) for what each setting does. Cloning a
/// config shares its [`RetryBudget`].
#[derive(Clone)]
pub struct HedgeConfig {
    pub(crate) delay: HedgeDelay,
    pub(crate) max_attempts: u32,
    pub(crate) budget: Option<RetryBudget>,
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) max_replay_body: usize,
    pub(crate) name: Option<Arc<str>>,
}

impl HedgeConfig {
    /// Starts a configuration from the defaults (see [`HedgeConfigBuilder`]).
    pub fn builder() -> HedgeConfigBuilder {
        HedgeConfigBuilder::default()
    }

    /// When the next hedge goes.
    pub fn delay(&self) -> HedgeDelay {
        self.delay
    }

    /// Attempts a call may have in flight, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The budget hedges draw on, unless switched off.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.budget.as_ref()
    }

    /// The name given with [`HedgeConfigBuilder::name`], if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl Default for HedgeConfig {
    /// The defaults listed on [`HedgeConfigBuilder`].
    fn default() -> Self {
        HedgeConfigBuilder::default()
            .build()
            .expect("the default hedge config is valid")
    }
}

impl fmt::Debug for HedgeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeConfig")
            .field("delay", &self.delay)
            .field("max_attempts", &self.max_attempts)
            .field("budget", &self.budget)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Builds a [`HedgeConfig`]; every setting is optional.
///
/// | setting | default |
/// |---|---|
/// | [`delay_percentile`](Self::delay_percentile) | p95 of the last 10 s, within 1 ms to 1 s |
/// | [`max_attempts`](Self::max_attempts) | 2 (one hedge) |
/// | [`budget`](Self::budget) | a [`RetryBudget::default`] of its own (20 % + 10/s over 10 s) |
/// | [`max_replay_body`](Self::max_replay_body) | 64 KiB |
///
/// [`build`](Self::build) checks the values and names the first bad field.
#[derive(Debug, Clone)]
pub struct HedgeConfigBuilder {
    delay: HedgeDelay,
    max_attempts: u32,
    budget: Option<Option<RetryBudget>>,
    max_replay_body: usize,
    name: Option<Arc<str>>,
}

impl Default for HedgeConfigBuilder {
    fn default() -> Self {
        Self {
            delay: HedgeDelay::Percentile {
                percentile: 95.0,
                window: Duration::from_secs(10),
                min: Duration::from_millis(1),
                max: Duration::from_secs(1),
            },
            max_attempts: 2,
            budget: None,
            max_replay_body: 64 * 1024,
            name: None,
        }
    }
}

impl HedgeConfigBuilder {
    /// Sends the next hedge when no acceptable answer came `delay` after the
    /// last attempt was sent. Zero sends every attempt at once (within the
    /// budget). At most 1 hour.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = HedgeDelay::Fixed(delay);
        self
    }

    /// Sends the next hedge after the `percentile` (95.0 for p95) of the
    /// latency of the calls of the last `window`, clamped to `min..=max`.
    ///
    /// Until the window holds `100 / (100 - percentile)` calls (20 for
    /// p95), too few to read the percentile from, the delay is `max`. The
    /// estimate is refreshed every tenth of the window, by the first call
    /// after that time; see the [module docs](super#the-delay).
    ///
    /// `percentile` 50.0 to 99.9, `window` 1 s to 10 min, `min` ≤ `max` ≤
    /// 1 hour.
    pub fn delay_percentile(
        mut self,
        percentile: f64,
        window: Duration,
        min: Duration,
        max: Duration,
    ) -> Self {
        self.delay = HedgeDelay::Percentile {
            percentile,
            window,
            min,
            max,
        };
        self
    }

    /// Attempts a call may have in flight, the first included: 2 to 5.
    /// Default 2 (the first attempt and one hedge).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// Draws hedges from `budget`, which may be shared with a retry layer
    /// or other hedge layers (every clone of a [`RetryBudget`] is the same
    /// budget).
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(Some(budget));
        self
    }

    /// No budget: only `max_attempts` bounds the hedges. Not advised: a
    /// backend that slows down under load then gets `max_attempts` × the
    /// load.
    pub fn no_budget(mut self) -> Self {
        self.budget = Some(None);
        self
    }

    /// How many bytes of an `http::Request` body are kept for the hedges
    /// (`HedgeLayer::http`, `HedgeLayer::grpc`); a larger body is sent once
    /// and not hedged.
    pub fn max_replay_body(mut self, bytes: usize) -> Self {
        self.max_replay_body = bytes;
        self
    }

    /// A name for the layer's `tracing` events and snapshot.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Whether [`name`](Self::name) was given (the preset names an unnamed
    /// piece after the stack).
    pub(crate) fn has_name(&self) -> bool {
        self.name.is_some()
    }

    /// Checks every value and returns the configuration.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming the first field that breaks its rule:
    /// `hedge.max_attempts` (outside 2 to 5: 1 would never hedge, leave the
    /// layer out instead), `hedge.delay` (over 1 hour),
    /// `hedge.delay_percentile.percentile` (not finite, or outside 50 to
    /// 99.9), `hedge.delay_percentile.window` (outside 1 s to 10 min),
    /// `hedge.delay_percentile.max` (over 1 hour) or
    /// `hedge.delay_percentile.min` (above `max`).
    pub fn build(self) -> Result<HedgeConfig, InvalidConfig> {
        if !(2..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(InvalidConfig::new(
                "hedge.max_attempts",
                format!(
                    "must be from 2 to {MAX_ATTEMPTS} (the first attempt included; 1 never \
                     hedges: leave the layer out), got {}",
                    self.max_attempts
                ),
            ));
        }
        match self.delay {
            HedgeDelay::Fixed(delay) if delay > MAX_DELAY => {
                return Err(InvalidConfig::new(
                    "hedge.delay",
                    format!("must be at most 1 hour, got {delay:?}"),
                ));
            }
            HedgeDelay::Fixed(_) => {}
            HedgeDelay::Percentile {
                percentile,
                window,
                min,
                max,
            } => {
                if !(percentile.is_finite()
                    && (MIN_PERCENTILE..=MAX_PERCENTILE).contains(&percentile))
                {
                    return Err(InvalidConfig::new(
                        "hedge.delay_percentile.percentile",
                        format!("must be a finite number from 50 to 99.9, got {percentile}"),
                    ));
                }
                if !(MIN_WINDOW..=MAX_WINDOW).contains(&window) {
                    return Err(InvalidConfig::new(
                        "hedge.delay_percentile.window",
                        format!("must be from 1 s to 10 min, got {window:?}"),
                    ));
                }
                if max > MAX_DELAY {
                    return Err(InvalidConfig::new(
                        "hedge.delay_percentile.max",
                        format!("must be at most 1 hour, got {max:?}"),
                    ));
                }
                if min > max {
                    return Err(InvalidConfig::new(
                        "hedge.delay_percentile.min",
                        format!("must not be above max ({max:?}), got {min:?}"),
                    ));
                }
            }
        }
        Ok(HedgeConfig {
            delay: self.delay,
            max_attempts: self.max_attempts,
            budget: self.budget.unwrap_or_else(|| Some(RetryBudget::default())),
            max_replay_body: self.max_replay_body,
            name: self.name,
        })
    }
}
