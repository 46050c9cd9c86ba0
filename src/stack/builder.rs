//! [`ResilienceBuilder`]: the settings of a preset stack, checked at once.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::{Identity, Stack};

use super::breaker::{BreakerKey, BreakerLayer, NoKey};
use super::handle::{BreakerHandles, KeyedBreakers, Parts, ResilienceHandle};
use super::retry::{Mode, RetryPiece};
use super::toggle::ToggleLayer;
use super::ResilienceLayer;
use crate::bulkhead::{BulkheadBuilder, BulkheadLayer};
use crate::circuit_breaker::{
    CircuitBreakerBuilder, CircuitBreakerConfig, CircuitBreakerLayer, KeyedCircuitBreakerLayer,
};
use crate::error::InvalidConfig;
use crate::fallback::{FallbackHandle, FallbackLayer};
use crate::hedge::{HedgeConfigBuilder, HedgeLayer};
use crate::metrics::MetricsLayer;
use crate::rate_limit::{RateLimitBuilder, RateLimitLayer};
use crate::retry::{RetryConfig, RetryConfigBuilder, RetryLayer};
use crate::timeout::{DeadlineLayer, TimeoutLayer};

/// The deadline of each whole call in the presets: 30 s.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
/// The timeout of each attempt in the presets: 10 s.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// How the preset makes its replay from the retry settings.
pub(crate) type MakeReplay<Rp> = fn(&RetryConfig, &[Box<str>]) -> Rp;

enum ReplaySpec<Rp> {
    Preset(MakeReplay<Rp>),
    Given(Rp),
}

// Keyed breakers need a key, and the only built-in one (per authority) needs `http`.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
enum BreakerSpec<Kf> {
    Off,
    Single(CircuitBreakerBuilder),
    Keyed {
        config: CircuitBreakerBuilder,
        key: Kf,
        max_keys: usize,
        idle_timeout: Duration,
    },
}

/// The settings of a [`ResilienceLayer`], every one optional; made by
/// `ResilienceLayer::http`, `ResilienceLayer::grpc` (feature `http`) or
/// [`ResilienceLayer::new`]. [`build`](Self::build) checks them all and
/// names the first bad field (`stack.retry.max_attempts`, …).
///
/// | piece | default | change | switch off |
/// |---|---|---|---|
/// | idempotency key (HTTP) | on: a UUID v4 `Idempotency-Key` on POST and PATCH | `idempotency_key` | `no_idempotency_key` |
/// | deadline | 30 s per call | [`deadline`](Self::deadline) | [`no_deadline`](Self::no_deadline) |
/// | rate limit | off | [`rate_limit`](Self::rate_limit) | [`no_rate_limit`](Self::no_rate_limit) |
/// | retry | 3 attempts, exponential 50 ms × 2 up to 5 s, full jitter, budget 20 % + 10/s | [`retry`](Self::retry), [`max_attempts`](Self::max_attempts) | [`no_retry`](Self::no_retry) |
/// | hedge (in place of retry) | off | [`hedge`](Self::hedge) | [`no_hedge`](Self::no_hedge) |
/// | bulkhead | off | [`bulkhead`](Self::bulkhead), [`bulkhead_with`](Self::bulkhead_with) | [`no_bulkhead`](Self::no_bulkhead) |
/// | circuit breaker | 50 % failures over 10 s (≥ 20 calls) or 20 in a row; open 5 s (× 2 up to 60 s only on re-trips within 30 s of closing) | [`circuit_breaker`](Self::circuit_breaker), `circuit_breaker_per_authority` (feature `http`) | [`no_circuit_breaker`](Self::no_circuit_breaker) |
/// | attempt timeout | 10 s per attempt | [`attempt_timeout`](Self::attempt_timeout) | [`no_attempt_timeout`](Self::no_attempt_timeout) |
/// | metrics | off | [`metrics`](Self::metrics) | [`no_metrics`](Self::no_metrics) |
/// | fallback (outermost) | off | [`fallback`](Self::fallback) | — |
pub struct ResilienceBuilder<C, On, Rp, Kf = NoKey, Kl = Identity, Ol = Identity> {
    classifier: C,
    retry_on: On,
    replay: ReplaySpec<Rp>,
    key: Kl,
    outer: Ol,
    breaker: BreakerSpec<Kf>,
    /// What does not change the builder's type.
    settings: Settings,
}

/// The settings that do not change the builder's type, moved as one by
/// the methods that do.
struct Settings {
    idempotent_paths: Vec<Box<str>>,
    deadline: Option<Duration>,
    honor_incoming_timeout: bool,
    rate_limit: Option<RateLimitBuilder>,
    retry: Option<RetryConfigBuilder>,
    hedge: Option<HedgeConfigBuilder>,
    bulkhead: Option<BulkheadBuilder>,
    attempt_timeout: Option<Duration>,
    metrics: Option<Arc<str>>,
    name: Option<Arc<str>>,
    fallback: Option<FallbackHandle>,
}

impl<C, On, Rp, Kf, Kl, Ol> fmt::Debug for ResilienceBuilder<C, On, Rp, Kf, Kl, Ol> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResilienceBuilder")
            .field("deadline", &self.settings.deadline)
            .field("rate_limit", &self.settings.rate_limit.is_some())
            .field("retry", &self.settings.retry.is_some())
            .field("hedge", &self.settings.hedge.is_some())
            .field("bulkhead", &self.settings.bulkhead.is_some())
            .field(
                "circuit_breaker",
                &match self.breaker {
                    BreakerSpec::Off => "off",
                    BreakerSpec::Single(_) => "single",
                    BreakerSpec::Keyed { .. } => "keyed",
                },
            )
            .field("attempt_timeout", &self.settings.attempt_timeout)
            .finish_non_exhaustive()
    }
}

impl<C, On, Rp, Kl, Ol> ResilienceBuilder<C, On, Rp, NoKey, Kl, Ol> {
    pub(crate) fn preset(
        classifier: C,
        retry_on: On,
        make_replay: MakeReplay<Rp>,
        key: Kl,
        outer: Ol,
    ) -> Self {
        Self {
            classifier,
            retry_on,
            replay: ReplaySpec::Preset(make_replay),
            key,
            outer,
            breaker: BreakerSpec::Single(CircuitBreakerConfig::builder()),
            settings: Settings {
                idempotent_paths: Vec::new(),
                deadline: Some(DEFAULT_DEADLINE),
                honor_incoming_timeout: true,
                rate_limit: None,
                retry: Some(RetryConfig::builder()),
                hedge: None,
                bulkhead: None,
                attempt_timeout: Some(DEFAULT_ATTEMPT_TIMEOUT),
                metrics: None,
                name: None,
                fallback: None,
            },
        }
    }
}

impl<C, On, Rp, Kf, Kl, Ol> ResilienceBuilder<C, On, Rp, Kf, Kl, Ol> {
    /// Names the stack, for telling the stacks of several dependencies
    /// apart: the retry layer, the bulkhead and the circuit breaker(s) take
    /// this name unless their own builder named them, so their `tracing`
    /// events, listener events and snapshots carry it. Stored once and
    /// shared by the pieces (no copy per call).
    ///
    /// ```
    /// use steadfast::ResilienceLayer;
    ///
    /// let (_layer, handle) = ResilienceLayer::new(steadfast::classify::ErrorsAsFailures)
    ///     .name("inventory")
    ///     .build()?;
    /// assert_eq!(handle.circuit_breaker().unwrap().name(), Some("inventory"));
    /// assert_eq!(handle.retry().unwrap().name(), Some("inventory"));
    /// # Ok::<(), steadfast::InvalidConfig>(())
    /// ```
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.settings.name = Some(name.into());
        self
    }

    /// Bounds each whole call — every attempt and backoff — by `deadline`
    /// (default 30 s); the layers inside see the time left. A shorter
    /// `grpc-timeout` already on a gRPC request wins.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.settings.deadline = Some(deadline);
        self
    }

    /// No deadline on the whole call: only the attempt timeout bounds it.
    pub fn no_deadline(mut self) -> Self {
        self.settings.deadline = None;
        self
    }

    /// Ignores the time limit already on a request (`grpc-timeout`): the
    /// stack's own deadline alone counts (see
    /// [`DeadlineLayer::ignore_incoming_timeout`]).
    pub fn ignore_incoming_timeout(mut self) -> Self {
        self.settings.honor_incoming_timeout = false;
        self
    }

    /// Bounds each attempt by `timeout` (default 10 s), or by the time left
    /// before the deadline when that is shorter. A timed-out attempt is a
    /// failure for the breaker.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.settings.attempt_timeout = Some(timeout);
        self
    }

    /// No per-attempt timeout: only the deadline bounds an attempt.
    pub fn no_attempt_timeout(mut self) -> Self {
        self.settings.attempt_timeout = None;
        self
    }

    /// Adds a [`MetricsLayer`] named `name` as the outermost piece (inside
    /// only the gRPC status mapping): every call counted by outcome — the
    /// stack's classifier judges — and by which piece ended it, an in-flight
    /// gauge and the call-duration histogram, read through
    /// [`ResilienceHandle::metrics`] and in the stack's snapshot. The retry
    /// piece then also times each attempt
    /// ([`RetrySnapshot::attempt_duration`](crate::retry::RetrySnapshot::attempt_duration)),
    /// and `name` names the pieces left unnamed, unless [`name`](Self::name)
    /// did. Off by default; costs two clock reads per call (one of which the
    /// deadline piece then reuses) and one per retry.
    pub fn metrics(mut self, name: impl Into<Arc<str>>) -> Self {
        self.settings.metrics = Some(name.into());
        self
    }

    /// No metrics piece (the default).
    pub fn no_metrics(mut self) -> Self {
        self.settings.metrics = None;
        self
    }

    /// Limits the calls through the stack to a rate, shared by every clone
    /// of the stack's service: the [`RateLimitLayer`] that `limit` builds,
    /// placed outside the retry (one cell per call, whatever its
    /// attempts) and inside the deadline (a waiting call never waits past
    /// it). Off by default. Named after the stack unless `limit` has a
    /// name; [`ResilienceHandle::rate_limit`](super::ResilienceHandle::rate_limit)
    /// reads it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use steadfast::rate_limit::RateLimitLayer;
    /// use steadfast::stack::ResilienceLayer;
    ///
    /// let (layer, handle) = ResilienceLayer::new(steadfast::classify::ErrorsAsFailures)
    ///     .rate_limit(RateLimitLayer::builder(100, Duration::from_secs(1)).max_wait(Duration::from_millis(50)))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(handle.rate_limit().unwrap().burst(), 100);
    /// # let _ = layer;
    /// ```
    pub fn rate_limit(mut self, limit: RateLimitBuilder) -> Self {
        self.settings.rate_limit = Some(limit);
        self
    }

    /// Leaves the rate limit out (the default).
    pub fn no_rate_limit(mut self) -> Self {
        self.settings.rate_limit = None;
        self
    }

    /// Retries with these settings (default: [`RetryConfig::builder`]'s),
    /// in place of hedges if [`hedge`](Self::hedge) asked for them.
    pub fn retry(mut self, retry: RetryConfigBuilder) -> Self {
        self.settings.retry = Some(retry);
        self.settings.hedge = None;
        self
    }

    /// Retries with the default settings but at most `n` attempts in all
    /// (in place of hedges, as [`retry`](Self::retry)).
    pub fn max_attempts(mut self, n: u32) -> Self {
        let retry = self.settings.retry.take().unwrap_or_default();
        self.settings.retry = Some(retry.max_attempts(n));
        self.settings.hedge = None;
        self
    }

    /// No retries: each call is one attempt (unless [`hedge`](Self::hedge)
    /// sends more).
    pub fn no_retry(mut self) -> Self {
        self.settings.retry = None;
        self
    }

    /// Hedges calls in place of retrying them: a
    /// [`HedgeLayer`](crate::hedge::HedgeLayer) where the retry layer
    /// goes, with the stack's rule for what is non-fatal and its replay
    /// (so only requests safe to repeat are hedged, bodies are replayed up
    /// to the hedge's `max_replay_body`, gRPC hedges carry
    /// `grpc-previous-rpc-attempts` and the time left). Retries are off
    /// while hedges are on; [`retry`](Self::retry) or
    /// [`max_attempts`](Self::max_attempts) turn them back on and hedges off.
    ///
    /// **Hedge or retry?** Hedge reads whose latency has a long tail (a
    /// slow replica, a GC pause, a cold cache): a hedge sent after the p95
    /// turns a 1 s tail into the next replica's 10 ms, for a few percent
    /// more calls. Retry calls that *fail* (a reset, a 503): a hedge only
    /// helps while the first attempt is still running, and a retry waits
    /// out a backoff that a failing backend needs. Both draw on a retry
    /// budget, so neither can multiply an overload. Each hedge is an attempt
    /// for the bulkhead (a slot each) and the breaker (counted), with its
    /// own attempt timeout.
    ///
    /// ```
    /// use std::time::Duration;
    /// use steadfast::hedge::HedgeConfig;
    /// use steadfast::ResilienceLayer;
    ///
    /// # #[cfg(feature = "http")]
    /// # fn main() -> Result<(), steadfast::InvalidConfig> {
    /// let (_layer, handle) = ResilienceLayer::http()
    ///     .hedge(HedgeConfig::builder().delay(Duration::from_millis(50)))
    ///     .build()?;
    /// assert!(handle.retry().is_none());
    /// assert_eq!(handle.hedge().unwrap().snapshot().calls, 0);
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "http"))]
    /// # fn main() {}
    /// ```
    pub fn hedge(mut self, hedge: HedgeConfigBuilder) -> Self {
        self.settings.hedge = Some(hedge);
        self.settings.retry = None;
        self
    }

    /// No hedges (the default).
    pub fn no_hedge(mut self) -> Self {
        self.settings.hedge = None;
        self
    }

    /// Requests to these exact paths are safe to repeat: for gRPC, the
    /// methods that can run twice without harm (see
    /// `HttpReplay::idempotent_paths`).
    /// Applies to the preset's own replay, not to one given with
    /// [`replay`](Self::replay).
    pub fn idempotent_paths<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<Box<str>>,
    {
        self.settings
            .idempotent_paths
            .extend(paths.into_iter().map(Into::into));
        self
    }

    /// At most `max_concurrent` attempts in flight, rejected at once beyond
    /// that (off by default).
    pub fn bulkhead(mut self, max_concurrent: usize) -> Self {
        self.settings.bulkhead = Some(BulkheadLayer::builder(max_concurrent));
        self
    }

    /// A bulkhead with these settings (a bounded wait, a name, …); the wait
    /// never outlasts the call's deadline.
    pub fn bulkhead_with(mut self, bulkhead: BulkheadBuilder) -> Self {
        self.settings.bulkhead = Some(bulkhead);
        self
    }

    /// No bulkhead (the default).
    pub fn no_bulkhead(mut self) -> Self {
        self.settings.bulkhead = None;
        self
    }

    /// One breaker for every call, with these settings.
    pub fn circuit_breaker(
        self,
        config: CircuitBreakerBuilder,
    ) -> ResilienceBuilder<C, On, Rp, NoKey, Kl, Ol> {
        self.with_breaker(BreakerSpec::Single(config))
    }

    /// No circuit breaker.
    pub fn no_circuit_breaker(self) -> ResilienceBuilder<C, On, Rp, NoKey, Kl, Ol> {
        self.with_breaker(BreakerSpec::Off)
    }

    /// One breaker per backend host (scheme + authority), for a client that
    /// talks to many: a host that fails does not stop calls to the others.
    /// Each breaker has `config`'s settings; at most 1,024 hosts keep a
    /// breaker of their own (the rest share an overflow breaker), and a
    /// breaker idle for 5 minutes is dropped: change both with
    /// [`max_authorities`](Self::max_authorities) and
    /// [`authority_idle_timeout`](Self::authority_idle_timeout).
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn circuit_breaker_per_authority(
        self,
        config: CircuitBreakerBuilder,
    ) -> ResilienceBuilder<C, On, Rp, crate::circuit_breaker::keys::ByAuthority, Kl, Ol> {
        self.with_breaker(BreakerSpec::Keyed {
            config,
            key: crate::circuit_breaker::keys::ByAuthority,
            max_keys: 1024,
            idle_timeout: Duration::from_secs(300),
        })
    }

    fn with_breaker<Kf2>(
        self,
        breaker: BreakerSpec<Kf2>,
    ) -> ResilienceBuilder<C, On, Rp, Kf2, Kl, Ol> {
        ResilienceBuilder {
            classifier: self.classifier,
            retry_on: self.retry_on,
            replay: self.replay,
            key: self.key,
            outer: self.outer,
            breaker,
            settings: self.settings,
        }
    }

    /// Answers the calls the stack fails with a response of yours:
    /// `layer` goes **outermost**, outside the metrics piece, so it sees the
    /// final result — after every retry, and our rejections (open breaker,
    /// full bulkhead, rate limit, deadline) as the caller would. The metrics
    /// piece still counts the failure it answered; the fallback's own
    /// counters are in [`ResilienceHandle::fallback`](super::ResilienceHandle::fallback).
    ///
    /// ```
    /// use steadfast::deadline::{CarriesDeadline, Deadline};
    /// use steadfast::fallback::{Failed, FallbackLayer};
    /// use steadfast::stack::ResilienceLayer;
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// // The preset's requests carry their deadline.
    /// #[derive(Clone)]
    /// struct Lookup { id: u32, deadline: Option<Deadline> }
    ///
    /// impl CarriesDeadline for Lookup {
    ///     fn deadline(&self) -> Option<Deadline> { self.deadline }
    ///     fn set_deadline(&mut self, deadline: Deadline) { self.deadline = Some(deadline) }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), steadfast::BoxError> {
    /// let (layer, handle) = ResilienceLayer::new(steadfast::classify::ErrorsAsFailures)
    ///     .no_retry()
    ///     .fallback(FallbackLayer::new(|_: Failed<'_, &str>| Ok("cached")))
    ///     .build()?;
    /// let svc = layer.layer(service_fn(|_: Lookup| async {
    ///     Err::<&str, _>(std::io::Error::other("down"))
    /// }));
    /// assert_eq!(svc.oneshot(Lookup { id: 1, deadline: None }).await?, "cached");
    /// assert_eq!(handle.fallback().unwrap().snapshot().served, 1);
    /// # Ok(())
    /// # }
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn fallback<P, Cf, X>(
        mut self,
        layer: FallbackLayer<P, Cf, X>,
    ) -> ResilienceBuilder<C, On, Rp, Kf, Kl, Stack<Ol, FallbackLayer<P, Cf, X>>> {
        let (layer, handle) = layer.pair();
        self.settings.fallback = Some(handle);
        ResilienceBuilder {
            classifier: self.classifier,
            retry_on: self.retry_on,
            replay: self.replay,
            key: self.key,
            outer: Stack::new(self.outer, layer),
            breaker: self.breaker,
            settings: self.settings,
        }
    }

    /// Replays requests with `replay` instead of the preset's (for example
    /// `HttpReplay` in a gRPC stack over a hyper client, whose service takes
    /// the replay body as it is).
    pub fn replay<Rp2>(self, replay: Rp2) -> ResilienceBuilder<C, On, Rp2, Kf, Kl, Ol> {
        ResilienceBuilder {
            classifier: self.classifier,
            retry_on: self.retry_on,
            replay: ReplaySpec::Given(replay),
            key: self.key,
            outer: self.outer,
            breaker: self.breaker,
            settings: self.settings,
        }
    }

    /// Decides which failures are retried with `retry_on` instead of the
    /// preset's rule.
    pub fn retry_on<On2>(self, retry_on: On2) -> ResilienceBuilder<C, On2, Rp, Kf, Kl, Ol> {
        ResilienceBuilder {
            classifier: self.classifier,
            retry_on,
            replay: self.replay,
            key: self.key,
            outer: self.outer,
            breaker: self.breaker,
            settings: self.settings,
        }
    }
}

#[cfg(feature = "http")]
impl<C, On, Rp, Kf, Ol>
    ResilienceBuilder<C, On, Rp, Kf, ToggleLayer<crate::idempotency::IdempotencyKeyLayer>, Ol>
{
    /// Sets `Idempotency-Key`s with `layer` (default:
    /// `IdempotencyKeyLayer::new()`, a UUID v4 on POST and PATCH requests
    /// that have none), so that those requests are retried and a server's
    /// `IdempotencyLayer` runs each once.
    pub fn idempotency_key(mut self, layer: crate::idempotency::IdempotencyKeyLayer) -> Self {
        self.key = ToggleLayer::on(layer);
        self
    }

    /// Sets no `Idempotency-Key`: a POST without one is then retried only
    /// after a failure that proves it was not processed.
    pub fn no_idempotency_key(mut self) -> Self {
        self.key = ToggleLayer::off();
        self
    }
}

#[cfg(feature = "http")]
impl<C, On, Rp, Kl, Ol>
    ResilienceBuilder<C, On, Rp, crate::circuit_breaker::keys::ByAuthority, Kl, Ol>
{
    /// At most `n` hosts keep a breaker of their own (default 1,024); calls
    /// to the others share one overflow breaker, so a client that is sent
    /// to ever new hosts cannot grow without bound.
    ///
    /// # Errors
    ///
    /// [`build`](Self::build) fails naming `stack.circuit_breaker.max_keys`
    /// for zero.
    pub fn max_authorities(mut self, n: usize) -> Self {
        if let BreakerSpec::Keyed { max_keys, .. } = &mut self.breaker {
            *max_keys = n;
        }
        self
    }

    /// A host's breaker unused for `idle` may be dropped to make room for
    /// another host's (default 5 minutes); its next call starts a closed
    /// one.
    ///
    /// # Errors
    ///
    /// [`build`](Self::build) fails naming
    /// `stack.circuit_breaker.idle_timeout` for zero.
    pub fn authority_idle_timeout(mut self, idle: Duration) -> Self {
        if let BreakerSpec::Keyed { idle_timeout, .. } = &mut self.breaker {
            *idle_timeout = idle;
        }
        self
    }
}

fn in_stack(piece: &str, err: InvalidConfig) -> InvalidConfig {
    // The piece's own builders name their fields `retry.max_attempts`,
    // `keyed_circuit_breaker.max_keys`, …
    let field = err.field();
    let field = field.strip_prefix("keyed_").unwrap_or(field);
    let field = if field.starts_with(piece) {
        format!("stack.{field}")
    } else {
        format!("stack.{piece}.{field}")
    };
    InvalidConfig::new(field, err.reason().to_owned())
}

impl<C, On, Rp, Kf, Kl, Ol> ResilienceBuilder<C, On, Rp, Kf, Kl, Ol>
where
    C: Clone,
    Rp: Clone,
    Kf: BreakerKey + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    /// Checks every setting and builds the layer and its handle.
    ///
    /// The pair is a layer too (the handle adds nothing), so
    /// `.layer(ResilienceLayer::http().build()?)` works when the handle is
    /// not needed.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming the first bad field, prefixed `stack.`:
    /// `stack.deadline` or `stack.attempt_timeout` for a zero duration,
    /// `stack.retry.max_attempts`, `stack.circuit_breaker.failure_rate`,
    /// `stack.bulkhead.max_concurrent`, … as the piece's own builder names it.
    #[allow(clippy::type_complexity)]
    pub fn build(
        self,
    ) -> Result<(ResilienceLayer<C, On, Rp, Kf, Kl, Ol>, ResilienceHandle), InvalidConfig>
    where
        C: Clone + Send + Sync + 'static,
    {
        let metrics = self
            .settings
            .metrics
            .clone()
            .map(|name| MetricsLayer::with_classifier(name, self.classifier.clone()).0);
        let deadline = match self.settings.deadline {
            Some(d) => {
                let layer = DeadlineLayer::new(d).map_err(|_| {
                    InvalidConfig::new(
                        "stack.deadline",
                        "must be greater than zero (a zero deadline fails every call; use `no_deadline` to leave it out)",
                    )
                })?;
                // In scope, not in the request's extensions: no allocation
                // (see `crate::deadline`, "Carried in a scope").
                let layer = layer.in_scope();
                // With an attempt timeout, its timer (at the earlier of the
                // attempt's limit and the deadline) ends the call at the
                // deadline: one timer per attempt, not two.
                let layer = if self.settings.attempt_timeout.is_some() {
                    layer.untimed()
                } else {
                    layer
                };
                Some(if self.settings.honor_incoming_timeout {
                    layer
                } else {
                    layer.ignore_incoming_timeout()
                })
            }
            None => None,
        };
        let timeout = match self.settings.attempt_timeout {
            Some(d) => Some(
                TimeoutLayer::new(d)
                    .map_err(|_| {
                        InvalidConfig::new(
                            "stack.attempt_timeout",
                            "must be greater than zero (a zero timeout fails every attempt; use `no_attempt_timeout` to leave it out)",
                        )
                    })?
                    .deadline_aware(),
            ),
            None => None,
        };
        // The metrics piece's name names the stack when `name` did not.
        let name = self.settings.name.or_else(|| self.settings.metrics.clone());
        // The stack's name for a piece its own builder left unnamed.
        let named = |has: bool| name.as_ref().filter(|_| !has).cloned();
        let timed = self.settings.metrics.is_some();
        let config = match self.settings.retry {
            Some(builder) => Some(
                match named(builder.has_name()) {
                    Some(n) => builder.name(n),
                    None => builder,
                }
                // With metrics, attempts are timed apart from whole calls.
                .attempt_durations(timed)
                .build()
                .map_err(|e| in_stack("retry", e))?,
            ),
            None => None,
        };
        let hedge = match self.settings.hedge {
            Some(builder) => Some(
                match named(builder.has_name()) {
                    Some(n) => builder.name(n),
                    None => builder,
                }
                .build()
                .map_err(|e| in_stack("hedge", e))?,
            ),
            None => None,
        };
        // Made even with retries off: it converts each request the same way.
        let replay = match self.replay {
            ReplaySpec::Preset(make) => {
                // Hedges keep bodies up to their own cap.
                let for_hedge = hedge.as_ref().map(|h| {
                    RetryConfig::builder()
                        .max_replay_body(h.max_replay_body)
                        .build()
                        .unwrap_or_default()
                });
                let config = config
                    .as_ref()
                    .or(for_hedge.as_ref())
                    .unwrap_or(&RetryConfig::default())
                    .clone();
                make(&config, &self.settings.idempotent_paths)
            }
            ReplaySpec::Given(replay) => replay,
        };
        let mode = match (config, hedge) {
            (Some(config), _) => Mode::Retry(RetryLayer::with_policy(
                config,
                self.retry_on,
                replay.clone(),
            )),
            (None, Some(hedge)) => Mode::Hedge(HedgeLayer::with_policy(
                hedge,
                self.retry_on,
                replay.clone(),
            )),
            (None, None) => Mode::Off,
        };
        let rate_limit = match self.settings.rate_limit {
            Some(builder) => Some(
                match named(builder.has_name()) {
                    Some(n) => builder.name(n),
                    None => builder,
                }
                .build()
                .map_err(|e| in_stack("rate_limit", e))?
                .deadline_aware(),
            ),
            None => None,
        };
        let bulkhead = match self.settings.bulkhead {
            Some(builder) => Some(
                match named(builder.has_name()) {
                    Some(n) => builder.name(n),
                    None => builder,
                }
                .build()
                .map_err(|e| in_stack("bulkhead", e))?
                .deadline_aware(),
            ),
            None => None,
        };
        let (breaker, breaker_handles) = match self.breaker {
            BreakerSpec::Off => (BreakerLayer::Off, BreakerHandles::Off),
            BreakerSpec::Single(builder) => {
                let config = match named(builder.has_name()) {
                    Some(n) => builder.name(n),
                    None => builder,
                }
                .build()
                .map_err(|e| in_stack("circuit_breaker", e))?;
                let layer = CircuitBreakerLayer::with_classifier(config, self.classifier);
                let handle = layer.handle();
                (BreakerLayer::Single(layer), BreakerHandles::Single(handle))
            }
            BreakerSpec::Keyed {
                config,
                key,
                max_keys,
                idle_timeout,
            } => {
                let config = match named(config.has_name()) {
                    Some(n) => config.name(n),
                    None => config,
                }
                .build()
                .map_err(|e| in_stack("circuit_breaker", e))?;
                let layer = KeyedCircuitBreakerLayer::keyed_by(key)
                    .config(config)
                    .classifier(self.classifier)
                    .max_keys(max_keys)
                    .idle_timeout(idle_timeout)
                    .build()
                    .map_err(|e| in_stack("circuit_breaker", e))?;
                let handle = KeyedBreakers::new(layer.handle());
                (BreakerLayer::Keyed(layer), BreakerHandles::Keyed(handle))
            }
        };
        let handle = ResilienceHandle::new(Parts {
            metrics: metrics.as_ref().and_then(MetricsLayer::try_handle),
            deadline: deadline.as_ref().map(DeadlineLayer::timeout),
            attempt_timeout: timeout.as_ref().map(TimeoutLayer::timeout),
            rate_limit: rate_limit.as_ref().map(RateLimitLayer::handle),
            fallback: self.settings.fallback,
            retry: match &mode {
                Mode::Retry(retry) => Some(retry.handle()),
                _ => None,
            },
            hedge: match &mode {
                Mode::Hedge(hedge) => Some(hedge.handle()),
                _ => None,
            },
            bulkhead: bulkhead.as_ref().map(BulkheadLayer::handle),
            breaker: breaker_handles,
        });
        let layer = ResilienceLayer {
            outer: self.outer,
            metrics: metrics.unwrap_or(MetricsLayer::off()),
            key: self.key,
            deadline: ToggleLayer::new(deadline),
            rate_limit: rate_limit.unwrap_or_else(RateLimitLayer::off),
            retry: RetryPiece::new(mode, replay),
            bulkhead: ToggleLayer::new(bulkhead),
            breaker,
            timeout: ToggleLayer::new(timeout),
            handle: handle.clone(),
        };
        Ok((layer, handle))
    }
}
